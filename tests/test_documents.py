"""PDF loading: pages numbered from 1, protected files opened, and one specific error per kind of bad file."""

from pathlib import Path

import pytest

from rag.core.errors import (
    CorruptPdfError,
    EmptyFileError,
    NotAPdfError,
    NoTextError,
    PasswordRequiredError,
    TooLargeError,
)
from rag.ingestion.documents import clean_text, load_pdf, title_from_file_name, unreadable
from tests import pdf_factory as pf

PAGES = ["Alpha page talks about apples.", "Beta page talks about bananas.", "Gamma page talks about cherries."]


def test_pages_are_numbered_from_one(tmp_path: Path) -> None:
    doc = load_pdf(pf.text_pdf(tmp_path / "fruit.pdf", PAGES, title="Fruit Facts Handbook"))
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert "bananas" in doc.pages[1].text and "bananas" not in doc.pages[0].text
    assert doc.page_count == 3 and doc.pages_without_text == []
    assert doc.title == "Fruit Facts Handbook"  # the file name "fruit" is already part of it


@pytest.mark.parametrize(("meta", "expected"), [
    ("Q1 2023 8-K - Exhibit 99.1", "Acme Q1 — Q1 2023 8-K - Exhibit 99.1"),  # a real title: kept after the file name
    ("0000078003-22-000027", "Acme Q1"),  # a filing number, not a title
    ("Microsoft Word - F20_10K_VFinal.docx", "Acme Q1"),
    ("untitled", "Acme Q1"),
])
def test_metadata_title_kept_only_when_it_reads_as_one(tmp_path: Path, meta: str, expected: str) -> None:
    assert load_pdf(pf.text_pdf(tmp_path / "Acme_Q1.pdf", PAGES, title=meta)).title == expected


def test_unicode_text_survives(tmp_path: Path) -> None:
    doc = load_pdf(pf.text_pdf(tmp_path / "u.pdf", ["Zürich café naïve — Straße, Ærø, cost €100"]))
    text = doc.pages[0].text
    assert "Zürich" in text and "naïve" in text and "Straße" in text and "Ærø" in text and "€100" in text


def test_two_columns_keep_both_columns(tmp_path: Path) -> None:
    doc = load_pdf(pf.two_column_pdf(tmp_path / "cols.pdf", "Left column mentions walruses.",
                                     "Right column mentions penguins."))
    assert "walruses" in doc.pages[0].text and "penguins" in doc.pages[0].text


@pytest.mark.parametrize("algorithm", ["AES-256", "AES-128", "RC4-128"])
def test_empty_password_pdfs_open(tmp_path: Path, algorithm: str) -> None:
    doc = load_pdf(pf.empty_password_pdf(tmp_path / "p.pdf", PAGES, algorithm=algorithm))
    assert "cherries" in doc.pages[2].text


def test_password_required(tmp_path: Path) -> None:
    with pytest.raises(PasswordRequiredError, match="password"):
        load_pdf(pf.password_pdf(tmp_path / "locked.pdf", PAGES))


@pytest.mark.parametrize("make", [pf.corrupt_pdf, lambda p: pf.truncated_pdf(p, PAGES)])
def test_corrupt_files_get_a_specific_message(tmp_path: Path, make) -> None:  # noqa: ANN001
    with pytest.raises(CorruptPdfError, match="damaged"):
        load_pdf(make(tmp_path / "broken.pdf"))


@pytest.mark.parametrize(("kind", "says"), [("png", "PNG"), ("zip", "ZIP"), ("html", "HTML"),
                                            ("text", "not a PDF")])
def test_not_a_pdf_is_judged_by_its_bytes(tmp_path: Path, kind: str, says: str) -> None:
    with pytest.raises(NotAPdfError, match=says):
        load_pdf(pf.not_a_pdf(tmp_path / "looks-like.pdf", kind=kind))


def test_zero_bytes(tmp_path: Path) -> None:
    with pytest.raises(EmptyFileError, match="empty"):
        load_pdf(pf.empty_file(tmp_path / "empty.pdf"))


def test_scanned_document_says_to_run_ocr(tmp_path: Path) -> None:
    with pytest.raises(NoTextError, match="OCR"):
        load_pdf(pf.image_only_pdf(tmp_path / "scan.pdf", n_pages=2))


def test_partly_scanned_document_reports_the_pages_without_text(tmp_path: Path) -> None:
    doc = load_pdf(pf.mixed_scan_pdf(tmp_path / "mixed.pdf", ["First page text.", None, "Third page text.", None]))
    assert doc.pages_without_text == [2, 4]
    assert doc.pages[2].text.startswith("Third")


def test_too_large_by_bytes_and_by_pages(tmp_path: Path) -> None:
    path = pf.many_pages_pdf(tmp_path / "long.pdf", 30)
    with pytest.raises(TooLargeError, match="RAG_MAX_PAGES"):
        load_pdf(path, max_pages=10)
    with pytest.raises(TooLargeError, match="RAG_MAX_UPLOAD_MB"):
        load_pdf(path, max_bytes=100)
    assert load_pdf(path, max_pages=30).page_count == 30


def test_clean_text_repairs_extraction_noise() -> None:
    raw = "The infor-\nmation  was   \ufb01ne.\r\nA well-\nKnown soft\u00adhyphen.\n\n\n\nEnd \x00"
    assert clean_text(raw) == "The information was fine.\nA well-\nKnown softhyphen.\n\nEnd"


def test_table_rows_drawn_cell_by_cell_read_as_rows(tmp_path: Path) -> None:
    rows = [["(Millions)", "2018", "2017", "2016"],
            ["Net income", "$ 5,363", "$ 4,869", "$ 5,058"],
            ["Purchases of property, plant and equipment (PP&E)", "(1,577)", "(1,373)", "(1,420)"],
            ["Other — net", "—", "(6)", "(4)"],
            ["Operating income margin", "22.4 %", "−3.1%", "-0.5"]]
    path = pf.table_pdf(tmp_path / "cash.pdf", "Consolidated Statement of Cash Flows", rows)
    text = load_pdf(path).pages[0].text
    lines = text.split("\n")
    assert lines[0] == "Consolidated Statement of Cash Flows"
    for row in rows:
        assert " ".join(row) in lines, (row, lines)


def test_lone_figures_join_the_line_before_and_nothing_else_does() -> None:
    raw = ("Net income\n \n$\n5,363\n \n$\n4,869\nMargin\n22.4\n%\nIn fiscal\n2022\nwe grew.\n\nSee item 7.\n\n"
           "Risks\n1.\nItem 1A")
    assert clean_text(raw) == ("Net income $ 5,363 $ 4,869\nMargin 22.4 %\nIn fiscal 2022\nwe grew.\n\nSee item 7.\n\n"
                               "Risks\n1.\nItem 1A")
    assert clean_text("42\nFirst line") == "42\nFirst line"  # a figure opening the text has no line before it
    # a bracket or percent sign split from its number, and a line of several figures
    raw = "Interest, net (4,378\n) (0.1\n%) 467 0.1 %\nTaxes"
    assert clean_text(raw) == "Interest, net (4,378 ) (0.1 %) 467 0.1 %\nTaxes"


def test_text_in_fonts_without_a_character_mapping_is_not_indexed_as_words(tmp_path: Path) -> None:
    mixed = load_pdf(pf.unmapped_font_pdf(tmp_path / "mixed.pdf", ["Readable page about apples and pears."]))
    assert [p.text for p in mixed.pages] == ["Readable page about apples and pears.", ""]
    assert mixed.pages_without_text == [2]  # listed like a scanned page, not indexed as "/g437/g258"
    with pytest.raises(NoTextError, match="no mapping from glyphs to characters.*ocrmypdf --force-ocr"):
        load_pdf(pf.unmapped_font_pdf(tmp_path / "glyphs.pdf"))


@pytest.mark.parametrize(("text", "expected"), [
    ("/g437/g258/g437", True), ('"7+%-', True), ("\ue001\ue002\ue003 ab", True),
    ("12", False), ("A-1", False), ("x = 5", False), ("Fig. 3", False), ("第一章", False),
    ("(1,577) (1,373)", False), ("/g437 and the rest of a long readable sentence", False),
])
def test_unreadable_text(text: str, expected: bool) -> None:
    assert unreadable(text) is expected


def test_title_from_file_name() -> None:
    assert title_from_file_name("3M_2018_10K.pdf") == "3M 2018 10K"
