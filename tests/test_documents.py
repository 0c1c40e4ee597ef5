"""PDF loading: pages numbered from 1, protected files opened, and one specific error per kind of bad file."""

from pathlib import Path

import pytest

from rag.documents import clean_text, load_pdf, title_from_file_name
from rag.errors import (
    CorruptPdfError,
    EmptyFileError,
    NotAPdfError,
    NoTextError,
    PasswordRequiredError,
    TooLargeError,
)
from tests import pdf_factory as pf

PAGES = ["Alpha page talks about apples.", "Beta page talks about bananas.", "Gamma page talks about cherries."]


def test_pages_are_numbered_from_one(tmp_path: Path) -> None:
    doc = load_pdf(pf.text_pdf(tmp_path / "fruit.pdf", PAGES, title="Fruit Facts Handbook"))
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert "bananas" in doc.pages[1].text and "bananas" not in doc.pages[0].text
    assert doc.page_count == 3 and doc.pages_without_text == []
    assert doc.title == "Fruit Facts Handbook"  # the file name "fruit" is already part of it


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


def test_title_from_file_name() -> None:
    assert title_from_file_name("3M_2018_10K.pdf") == "3M 2018 10K"
