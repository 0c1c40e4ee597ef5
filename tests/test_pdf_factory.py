"""Sanity checks that each fixture in ``tests/pdf_factory.py`` is what it claims to be, judged by pypdf itself."""

from __future__ import annotations

import struct
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest
from pypdf import PasswordType, PdfReader
from pypdf.errors import EmptyFileError, FileNotDecryptedError, PdfReadError
from reportlab.pdfbase import pdfmetrics

from tests import pdf_factory as pf


def norm(text: str | None) -> str:
    """Collapse all whitespace runs to one space."""
    return " ".join((text or "").split())


def page_texts(path: Path) -> list[str]:
    """Whitespace-normalised extracted text of every page."""
    return [norm(page.extract_text()) for page in PdfReader(path).pages]


# --- text_pdf ---------------------------------------------------------------------------------------------------
def test_text_pdf_round_trips_each_page_including_unicode(tmp_path: Path) -> None:
    pages = ["The first page talks about apples.", f"Unicode: {pf.UNICODE_SAMPLE}", "Third page, last one."]
    path = pf.text_pdf(tmp_path / "doc.pdf", pages)
    assert path == tmp_path / "doc.pdf" and path.read_bytes().startswith(b"%PDF-")
    assert page_texts(path) == [norm(p) for p in pages]
    assert unicodedata.normalize("NFKC", pf.UNICODE_SAMPLE) == pf.UNICODE_SAMPLE  # survives text cleaning too


def test_text_pdf_sets_title_metadata_only_when_given(tmp_path: Path) -> None:
    titled = pf.text_pdf(tmp_path / "titled.pdf", ["Body."], title="Annual Report 2024 — Zürich")
    assert PdfReader(titled).metadata.title == "Annual Report 2024 — Zürich"
    untitled = pf.text_pdf(tmp_path / "untitled.pdf", ["Body."])
    meta = PdfReader(untitled).metadata
    assert meta is None or not meta.title  # empty, not reportlab's placeholder "untitled"
    assert meta is None or not meta.author


def test_text_pdf_wraps_long_paragraphs_to_the_page_width(tmp_path: Path) -> None:
    words = [f"word{i}" for i in range(150)]
    text = " ".join(words[:75]) + "\n\n" + " ".join(words[75:])
    path = pf.text_pdf(tmp_path / "long.pdf", [text])
    extracted = PdfReader(path).pages[0].extract_text()
    assert norm(extracted) == norm(text)
    assert extracted.count("\n") >= 8  # really wrapped onto many lines, not one very long line
    lines = pf.wrap_text(text, pf.PAGE_WIDTH - 2 * pf.MARGIN)
    assert "" in lines  # the paragraph break became a blank line
    assert all(pdfmetrics.stringWidth(line, pf.FONT_NAME, pf.FONT_SIZE) <= pf.PAGE_WIDTH - 2 * pf.MARGIN
               for line in lines)


def test_wrap_text_splits_a_word_longer_than_the_line() -> None:
    lines = pf.wrap_text("x" * 300, 100)
    assert len(lines) > 1 and "".join(lines) == "x" * 300


def test_text_pdf_raises_when_a_page_overflows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pf.text_pdf(tmp_path / "overflow.pdf", ["lorem ipsum dolor " * 800])
    with pytest.raises(ValueError):
        pf.text_pdf(tmp_path / "none.pdf", [])


def test_text_pdf_empty_string_is_a_blank_page(tmp_path: Path) -> None:
    path = pf.text_pdf(tmp_path / "blank.pdf", ["Some text.", ""])
    assert page_texts(path) == ["Some text.", ""]


# --- two_column_pdf ---------------------------------------------------------------------------------------------
LEFT = "Apples grow on trees in temperate orchards. " * 6
RIGHT = "Volcanoes erupt molten basalt near tectonic ridges. " * 6


def test_two_column_pdf_extracts_both_columns_left_then_right(tmp_path: Path) -> None:
    path = pf.two_column_pdf(tmp_path / "cols.pdf", LEFT, RIGHT)
    reader = PdfReader(path)
    assert len(reader.pages) == 1
    text = norm(reader.pages[0].extract_text())
    assert set(LEFT.split()) | set(RIGHT.split()) <= set(text.split())
    # Columns are drawn one after the other, so pypdf's default mode gives the whole left column first.
    assert text == norm(LEFT + " " + RIGHT)


def test_two_column_pdf_interleaved_mixes_the_columns_line_by_line(tmp_path: Path) -> None:
    path = pf.two_column_pdf(tmp_path / "rows.pdf", LEFT, RIGHT, interleaved=True)
    lines = [line for line in PdfReader(path).pages[0].extract_text().splitlines() if line.strip()]
    assert "Apples" in lines[0] and "Volcanoes" in lines[1] and "Volcanoes" not in lines[0]


# --- encryption -------------------------------------------------------------------------------------------------
def test_password_pdf_needs_the_password(tmp_path: Path) -> None:
    path = pf.password_pdf(tmp_path / "locked.pdf", ["Top secret plans."])
    reader = PdfReader(path)
    assert reader.is_encrypted
    assert reader.decrypt("") == PasswordType.NOT_DECRYPTED
    with pytest.raises(FileNotDecryptedError):
        reader.pages[0].extract_text()
    assert reader.trailer["/Encrypt"]["/V"] == 5  # AES-256

    reader = PdfReader(path)
    assert reader.decrypt("secret") == PasswordType.USER_PASSWORD
    assert norm(reader.pages[0].extract_text()) == "Top secret plans."


def test_password_pdf_with_custom_password(tmp_path: Path) -> None:
    path = pf.password_pdf(tmp_path / "locked.pdf", ["Hidden."], user_password="hunter2")
    reader = PdfReader(path)
    assert not reader.decrypt("secret")
    assert reader.decrypt("hunter2") == PasswordType.USER_PASSWORD


# algorithm → (/V, /R, /CFM or None) in the file's /Encrypt dictionary
ALGORITHMS = {
    "RC4-40": (1, 2, None),
    "RC4-128": (2, 3, None),
    "AES-128": (4, 4, "/AESV2"),
    "AES-256": (5, 6, "/AESV3"),
    "AES-256-R5": (5, 5, "/AESV3"),
}


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_empty_password_pdf_opens_with_empty_password(tmp_path: Path, algorithm: str) -> None:
    path = pf.empty_password_pdf(tmp_path / "protected.pdf", ["Readable by anyone.", "Page two."], algorithm)
    reader = PdfReader(path)
    assert reader.is_encrypted
    encrypt = reader.trailer["/Encrypt"].get_object()
    version, revision, cfm = ALGORITHMS[algorithm]
    assert (encrypt["/V"], encrypt["/R"]) == (version, revision)
    assert (encrypt["/CF"]["/StdCF"]["/CFM"] if cfm else None) == cfm
    assert reader.decrypt("") == PasswordType.USER_PASSWORD
    assert [norm(p.extract_text()) for p in reader.pages] == ["Readable by anyone.", "Page two."]
    # It is still owner-protected: the owner password is a different one.
    assert PdfReader(path).decrypt("owner-secret") == PasswordType.OWNER_PASSWORD


def test_empty_password_pdf_default_is_aes_256(tmp_path: Path) -> None:
    reader = PdfReader(pf.empty_password_pdf(tmp_path / "p.pdf", ["x"]))
    assert reader.trailer["/Encrypt"]["/V"] == 5 and reader.trailer["/Encrypt"]["/R"] == 6


def test_unknown_algorithm_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        pf.empty_password_pdf(tmp_path / "p.pdf", ["x"], algorithm="DES")


# --- damaged files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strict", [False, True])
def test_corrupt_pdf_has_a_header_but_cannot_be_read(tmp_path: Path, strict: bool) -> None:
    path = pf.corrupt_pdf(tmp_path / "corrupt.pdf")
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.7") and b"%%EOF" not in data
    with pytest.raises(PdfReadError):  # pypdf 7: PdfStreamError (strict=False), PdfReadError (strict=True)
        PdfReader(path, strict=strict)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_pdf_is_a_cut_off_valid_pdf(tmp_path: Path, keep: float) -> None:
    full = pf.text_pdf(tmp_path / "full.pdf", ["This PDF was cut off in the middle of its transfer."])
    cut = pf.truncated_pdf(tmp_path / "cut.pdf", keep=keep)
    assert cut.read_bytes() == full.read_bytes()[: int(full.stat().st_size * keep)]
    with pytest.raises(PdfReadError):
        PdfReader(cut, strict=False)


def test_broken_page_pdf_fails_only_on_the_broken_page(tmp_path: Path) -> None:
    path = pf.broken_page_pdf(tmp_path / "broken.pdf", ["Page one.", "Page two.", "Page three."], broken={2})
    reader = PdfReader(path, strict=False)
    assert len(reader.pages) == 3
    assert norm(reader.pages[0].extract_text()) == "Page one."
    with pytest.raises(NotImplementedError):
        reader.pages[1].extract_text()
    assert norm(reader.pages[2].extract_text()) == "Page three."
    with pytest.raises(ValueError):
        pf.broken_page_pdf(tmp_path / "bad.pdf", ["one"], broken={2})


# --- scans ------------------------------------------------------------------------------------------------------
def _has_image_and_no_font(page) -> bool:  # noqa: ANN001 - pypdf PageObject
    resources = page["/Resources"]
    images = [x.get_object() for x in resources.get("/XObject", {}).values()]
    return "/Font" not in resources and any(x["/Subtype"] == "/Image" for x in images)


def test_image_only_pdf_has_images_and_no_text(tmp_path: Path) -> None:
    path = pf.image_only_pdf(tmp_path / "scan.pdf", n_pages=3)
    reader = PdfReader(path)
    assert len(reader.pages) == 3
    for page in reader.pages:
        assert page.extract_text().strip() == ""
        assert _has_image_and_no_font(page)
        assert len(page.images) == 1 and page.images[0].data
    assert len(PdfReader(pf.image_only_pdf(tmp_path / "default.pdf")).pages) == 2


def test_mixed_scan_pdf_mixes_text_and_image_pages_in_order(tmp_path: Path) -> None:
    path = pf.mixed_scan_pdf(tmp_path / "mixed.pdf", [None, "Typed page two.", None, "Typed page four."])
    reader = PdfReader(path)
    assert [norm(p.extract_text()) for p in reader.pages] == ["", "Typed page two.", "", "Typed page four."]
    assert _has_image_and_no_font(reader.pages[0]) and _has_image_and_no_font(reader.pages[2])


# --- not PDFs ---------------------------------------------------------------------------------------------------
SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "zip": b"PK\x03\x04",
    "html": b"<!DOCTYPE html>",
    "text": b"Plain",
    "jpeg": b"\xff\xd8\xff",
}


@pytest.mark.parametrize("kind", pf.NOT_A_PDF_KINDS)
def test_not_a_pdf_is_another_format_under_a_pdf_name(tmp_path: Path, kind: str) -> None:
    path = pf.not_a_pdf(tmp_path / "fake.pdf", kind)
    data = path.read_bytes()
    assert path.name == "fake.pdf" and data
    assert not data.startswith(b"%PDF") and b"%PDF-" not in data[:1024]
    assert data.startswith(SIGNATURES[kind])
    with pytest.raises(PdfReadError):
        PdfReader(path)


def test_not_a_pdf_png_and_zip_are_well_formed(tmp_path: Path) -> None:
    png = pf.not_a_pdf(tmp_path / "a.pdf", "png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    idat_len = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    assert len(zlib.decompress(png[41:41 + idat_len])) == height * (1 + 3 * width)
    assert png.endswith(b"IEND\xaeB`\x82")
    with zipfile.ZipFile(pf.not_a_pdf(tmp_path / "b.pdf", "zip")) as archive:
        assert archive.testzip() is None and "word/document.xml" in archive.namelist()
    with pytest.raises(ValueError):
        pf.not_a_pdf(tmp_path / "c.pdf", "exe")


def test_empty_file_has_zero_bytes(tmp_path: Path) -> None:
    path = pf.empty_file(tmp_path / "empty.pdf")
    assert path.exists() and path.stat().st_size == 0
    with pytest.raises(EmptyFileError):
        PdfReader(path)


# --- many pages -------------------------------------------------------------------------------------------------
def test_many_pages_pdf_numbers_every_page(tmp_path: Path) -> None:
    path = pf.many_pages_pdf(tmp_path / "many.pdf", 250)
    reader = PdfReader(path)
    assert len(reader.pages) == 250
    for k in (1, 2, 125, 250):
        assert norm(reader.pages[k - 1].extract_text()) == f"This is page {k}."


def test_factories_create_missing_parent_folders(tmp_path: Path) -> None:
    path = pf.many_pages_pdf(tmp_path / "a" / "b" / "c.pdf", 1)
    assert path.is_file()
