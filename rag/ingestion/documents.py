"""PDF → pages of clean text, with one specific, actionable error for each kind of bad input."""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rag.core.errors import (
    CorruptPdfError,
    DocumentError,
    EmptyFileError,
    MissingDependency,
    NotAPdfError,
    NoTextError,
    PasswordRequiredError,
    TooLargeError,
)
from rag.core.records import OcrLine, Page, ParsedDocument
from rag.text.languages import RADICALS

log = logging.getLogger(__name__)

# Leading bytes of formats people mistake for PDFs, to say what a file really is.
_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (or a Word/Excel/PowerPoint file)"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
    (b"{\\rtf", "an RTF document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
]


def sniff(data: bytes, file_name: str) -> None:
    """Raise if ``data`` is empty or not a PDF (judged by its bytes, never by its name)."""
    if not data:
        raise EmptyFileError(f"{file_name} is empty (0 bytes). Check that the file finished downloading.")
    # The PDF header may be preceded by junk, but must appear within the first 1024 bytes.
    if b"%PDF-" in data[:1024]:
        return
    what = next((name for sig, name in _SIGNATURES if data.startswith(sig)), None)
    if what is None:
        head = data[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            what = "a web page (HTML)"
        else:
            what = "not a PDF"
    described = what if what == "not a PDF" else f"not a PDF but {what}"
    raise NotAPdfError(f"{file_name} is {described}. Export or print it to PDF, then upload the PDF.")


def clean_text(text: str) -> str:
    """Repair common extraction noise: ligatures, CJK radicals standing for characters (增⻓ for 增长), soft
    hyphens, words hyphenated at line ends, runs of spaces, and table rows torn into one cell per line.

    Some PDF generators (common in financial filings) draw every table cell as its own text object, and pypdf
    puts each on its own line with blank lines between: "Depreciation and amortization", "1,488", "1,544",
    "1,474". A line that holds only figures (numbers, bracketed or signed ones, percentages, currency signs,
    dashes, or a bracket or percent sign split from its number) is joined to the line before it, so the row reads
    "Depreciation and amortization 1,488 1,544 1,474" again: the label and its figures then stay in one chunk, a
    chunk holds more of the table, and a column heading line ("(Millions) 2018 2017 2016") keeps its years
    together. Page numbers closing a page join its last line, which is harmless.
    """
    text = unicodedata.normalize("NFKC", text).translate(RADICALS)  # radicals some CJK fonts map characters to
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad", "")
    text = _CONTROL.sub("", text)
    # "infor-\nmation" → "information" (only when the next line goes on in lower case).
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _CELL_BREAK.sub(" ", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(?=[a-z])(\w)")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_SPACE_AROUND_NEWLINE = re.compile(r" *\n *")
_MANY_NEWLINES = re.compile(r"\n{3,}")
# A figure: a number with its sign, currency, brackets and percent sign, or one of those alone (an empty cell's
# dash, a bracket or percent sign split from its number). A line of figures joins the line before it.
_FIGURE = r"[(\[$€£¥−–—-]{0,3}\d[\d,]*(?:\.\d+)?[)\]%]{0,2}|[()$€£¥%−–—-]{1,3}"
_CELL_BREAK = re.compile(rf"(?<=\S)\n+(?=(?:{_FIGURE})(?: (?:{_FIGURE}))*(?:\n|$))")


def title_from_file_name(file_name: str) -> str:
    """A readable title from a file name: "3M_2018_10K.pdf" → "3M 2018 10K"."""
    stem = Path(file_name).stem
    return re.sub(r"[_\s]+", " ", stem).strip() or file_name


def load_pdf(source: Path | bytes, file_name: str | None = None, *, max_bytes: int | None = None,
             max_pages: int | None = None, ocr: str | None = None,
             ocr_missing: Callable[[], str | None] | None = None) -> ParsedDocument:
    """Read a PDF (a path or its bytes) into 1-based pages of cleaned text from its text layer.

    Raises a ``DocumentError`` subclass whose message says what is wrong and what to do. A document where some
    pages have no text layer is returned with those pages listed in ``pages_without_text``. One where no page has
    text raises ``NoTextError``, unless its pages are to be read by OCR next (``ocr`` is the ``RAG_OCR`` mode:
    "auto" or "force", see ``pages_to_ocr`` and ``with_ocr``). ``ocr_missing``, asked only then, says why OCR can't
    run here (the engine is not installed), and the message then says how to install it; with "off" it says OCR is
    turned off.
    """
    if isinstance(source, Path):
        file_name = file_name or source.name
        size = source.stat().st_size
        _check_size(size, file_name, max_bytes)
        data = source.read_bytes()
    else:
        data = source
        file_name = file_name or "document.pdf"
        _check_size(len(data), file_name, max_bytes)
    sniff(data, file_name)
    reader = _open(data, file_name)

    try:
        page_count = len(reader.pages)
    except MemoryError:
        raise  # the parser process's memory cap: reported as such by rag.ingestion.workers, not as damage
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on a broken page tree
        raise CorruptPdfError(f"{file_name} is damaged: its page list can't be read ({_short(exc)}). "
                              "Try re-saving it with a PDF viewer's \"Save as\" or \"Print to PDF\".") from exc
    if page_count == 0:
        raise CorruptPdfError(f"{file_name} has no pages.")
    if max_pages is not None and page_count > max_pages:
        raise TooLargeError(f"{file_name} has {page_count} pages; the limit is {max_pages} "
                            "(setting RAG_MAX_PAGES). Split the PDF or raise the limit.")

    labels = page_labels(reader, page_count)
    pages: list[Page] = []
    failed_pages = 0
    unmapped = 0
    first_error = ""
    for number in range(1, page_count + 1):
        try:
            raw = reader.pages[number - 1].extract_text() or ""
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken page must not lose the rest
            log.warning("%s: page %d could not be read: %s", file_name, number, _short(exc))
            failed_pages += 1
            first_error = first_error or _short(exc)
            raw = ""
        text = clean_text(raw)
        if text and unreadable(text):
            log.info("%s: page %d has text that can't be read (fonts without a character mapping)", file_name, number)
            unmapped += 1
            text = ""
        pages.append(Page(number, text, label=labels[number - 1]))
    if labels == [str(n) for n in range(1, page_count + 1)]:  # no page labels: the numbers printed on the pages
        pages = printed_numbers(pages)

    without_text = [p.number for p in pages if not p.text]
    if len(without_text) == page_count:
        if failed_pages == page_count:
            raise CorruptPdfError(f"{file_name} is damaged: none of its {page_count} pages could be read "
                                  f"({first_error}). Try re-saving it with a PDF viewer's \"Save as\" or \"Print "
                                  "to PDF\".")
        if _is_xfa_form(reader):
            raise NoTextError(f"{file_name} is a dynamic XFA form (Adobe LiveCycle): its content is not stored as "
                              "PDF pages. Open it in Adobe Acrobat or Reader, print it to PDF, and upload that.")
        cannot = ocr_missing() if ocr not in (None, "off") and ocr_missing is not None else None
        if ocr in (None, "off") or cannot:
            hint = ""
            if ocr == "off":
                hint = " (Pagewise reads such pages itself with OCR, but that is turned off here: RAG_OCR=off.)"
            elif cannot:
                hint = f" Pagewise reads such pages itself with OCR, but {cannot}."
            if unmapped:
                raise NoTextError(f"{file_name}'s text can't be read: its fonts have no mapping from glyphs to "
                                  "characters, so what a parser gets is glyph codes, not words. Run OCR on it, "
                                  "replacing the text layer (for example `ocrmypdf --force-ocr in.pdf out.pdf`), "
                                  f"and upload the result.{hint}")
            raise NoTextError(f"{file_name} has no text layer: its pages are images or blank (a scanned "
                              "document?), so there is nothing to search. Run OCR on it first (for example "
                              f"`ocrmypdf in.pdf out.pdf`) and upload the result.{hint}")
    return ParsedDocument(file_name=file_name, title=_title(reader, file_name), pages=pages,
                          page_count=page_count, pages_without_text=without_text)


def page_labels(reader, page_count: int) -> list[str]:  # noqa: ANN001 - pypdf.PdfReader
    """Each page's printed label from the PDF's page labels ("iv", "14", "A-3"), or its 1-based number where the
    PDF has none or they can't be read. Labels that repeat (two pages both labelled "1") are kept as they are."""
    numbers = [str(n) for n in range(1, page_count + 1)]
    try:
        root = reader.trailer["/Root"]
        if "/PageLabels" not in root:
            return numbers
        labels = [str(label).strip() for label in reader.page_labels]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken number tree costs the labels, never the document
        log.info("Page labels can't be read (%s); pages are named by their position", _short(exc))
        return numbers
    if len(labels) != page_count:
        return numbers
    return [label[:40] or number for label, number in zip(labels, numbers, strict=True)]


def printed_numbers(pages: list[Page]) -> list[Page]:
    """``pages`` labelled with the page numbers printed on them, for a PDF without page labels whose printed
    numbers run at a fixed distance from the positions (a cover and contents before page 1: the 3rd page printed
    "1"). A printed number is a line of digits alone opening or closing a page's text, or the figure closing its
    last line (``clean_text`` joins a page number to the line above); the distance is the one most pages agree on,
    and counts only when at least three pages and a third of those that show a number agree. Pages that show no
    number at that distance keep their position as their label."""
    seen: dict[int, set[int]] = {}
    for page in pages:
        lines = [line.strip() for line in page.text.split("\n") if line.strip()]
        if not lines:
            continue
        found = {int(m) for m in (lines[0], lines[-1]) if _PAGE_NUMBER.fullmatch(m)}
        last = _TRAILING_NUMBER.search(lines[-1])
        if last:
            found.add(int(last.group(1)))
        seen[page.number] = {n for n in found if 0 < n < page.number}
    shifts: dict[int, int] = {}
    for number, found in seen.items():
        for printed in found:
            shifts[number - printed] = shifts.get(number - printed, 0) + 1
    if not shifts:
        return pages
    shift, agree = max(shifts.items(), key=lambda item: (item[1], -item[0]))
    if agree < max(3, len([f for f in seen.values() if f]) / 3):
        return pages
    return [replace(p, label=str(p.number - shift)) if p.number - shift in seen.get(p.number, ()) else p
            for p in pages]


_PAGE_NUMBER = re.compile(r"\d{1,4}")
_TRAILING_NUMBER = re.compile(r"\s(\d{1,4})$")


def pages_to_ocr(doc: ParsedDocument, mode: str | None) -> list[int]:
    """The pages OCR reads with ``RAG_OCR`` = ``mode``: with "auto", those without a usable text layer (images,
    blank, glyph codes, unreadable); with "force", every page (for files whose text layer is junk); none with
    "off". A page with good text is never read by OCR in "auto"."""
    if mode == "force":
        return [p.number for p in doc.pages]
    return list(doc.pages_without_text) if mode == "auto" else []


def with_ocr(doc: ParsedDocument, read: dict[int, Page], failed: dict[int, str]) -> ParsedDocument:
    """``doc`` with the pages OCR read (``read``: page number → text and lines, not yet cleaned). A page where OCR
    found no words (not one run of three letters or two digits: what it makes of specks, lines and pictures), or
    failed (``failed``: page number → why), keeps its text layer if it has one and is otherwise listed without text.
    Raises NoTextError when no page has text even so."""
    pages = []
    for page in doc.pages:
        got = read.get(page.number)
        text = clean_text(got.text) if got is not None else ""
        text = text if _WORDISH.search(text) else ""
        pages.append(replace(got, text=text, label=page.label) if text else page)  # the printed number stays
    without_text = [p.number for p in pages if not p.text]
    if len(without_text) == doc.page_count:
        if failed and len(failed) == len(without_text):
            first = failed[min(failed)]
            raise NoTextError(f"{doc.file_name} has no text layer, and OCR could not read its pages ({first}).")
        raise NoTextError(f"{doc.file_name} has no text layer, and OCR found no words on its pages (blank pages, or "
                          "pictures without text?), so there is nothing to search.")
    return replace(doc, pages=pages, pages_without_text=without_text)


def with_figures(doc: ParsedDocument, read: dict[int, tuple[str, tuple[OcrLine, ...]]]) -> ParsedDocument:
    """``doc`` with the words read inside its pages' figures (``read``: page number → text not yet cleaned, and its
    lines) added after each page's text layer, from ``Page.figure_start`` on; a page where they hold no word (not
    one run of three letters or two digits) is left as it was."""
    pages = []
    for page in doc.pages:
        got = read.get(page.number)
        text = clean_text(got[0]) if got is not None else ""
        if not page.text or not _WORDISH.search(text):
            pages.append(page)
            continue
        pages.append(replace(page, text=f"{page.text}\n\n{text}", figure_start=len(page.text) + 2, lines=got[1]))
    return replace(doc, pages=pages)


def unreadable(text: str) -> bool:
    """True for a page's extracted text that is glyph codes rather than words: a font without a character mapping
    gives pypdf's glyph names ("/g437/g258") or private-use code points, or five or more symbols and single
    digits with no word or number among them ('"7+%-'). Any run of three letters (in any script) or two digits
    counts as readable."""
    visible = len("".join(text.split()))
    codes = sum(len(m) for m in _GLYPH_CODES.findall(text))
    if codes * 2 >= visible:
        return True
    return visible >= 5 and not _WORDISH.search(text)


_GLYPH_CODES = re.compile(r"/g\d+|[\ue000-\uf8ff]+")
_WORDISH = re.compile(r"[^\W\d_]{3,}|\d{2,}")


def _is_xfa_form(reader) -> bool:  # noqa: ANN001 - pypdf.PdfReader
    """True for a dynamic XFA form, whose pages are drawn by the viewer from XML rather than stored."""
    try:
        root = reader.trailer["/Root"]
        form = root.get("/AcroForm")
        return bool(root.get("/NeedsRendering")) or bool(form is not None and "/XFA" in form.get_object())
    except Exception:  # noqa: BLE001 - a broken catalog just means "not known to be a form"
        return False


def _check_size(size: int, file_name: str, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLargeError(f"{file_name} is {size / 1048576:.1f} MB; the limit is {max_bytes / 1048576:.0f} MB "
                            "(setting RAG_MAX_UPLOAD_MB).")


def _open(data: bytes, file_name: str):  # noqa: ANN202 - returns pypdf.PdfReader, imported lazily
    """Open the bytes with pypdf, decrypting "protected" files that have an empty user password."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, WrongPasswordError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except (PdfReadError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError,
            OSError) as exc:
        raise CorruptPdfError(f"{file_name} is damaged and can't be read ({_short(exc)}). "
                              "Try re-saving it with a PDF viewer's \"Save as\" or \"Print to PDF\".") from exc
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except DependencyError as exc:
            raise MissingDependency(f"{file_name} is encrypted with AES; reading it needs the 'cryptography' "
                                    "package: pip install 'pypdf[crypto]'") from exc
        except (WrongPasswordError, FileNotDecryptedError, PdfReadError, NotImplementedError) as exc:
            raise PasswordRequiredError(_password_message(file_name)) from exc
        if not ok:
            raise PasswordRequiredError(_password_message(file_name))
    return reader


def _password_message(file_name: str) -> str:
    return (f"{file_name} is protected by a password. Open it with the password and save an unprotected copy "
            "(for example `qpdf --decrypt --password=... in.pdf out.pdf`), then upload that.")


def _title(reader, file_name: str) -> str:  # noqa: ANN001 - pypdf.PdfReader
    """The document's title: a plausible metadata title, else one made from the file name."""
    fallback = title_from_file_name(file_name)
    try:
        meta = reader.metadata
        title = (meta.title or "").strip() if meta else ""
    except Exception:  # noqa: BLE001 - broken metadata is common and harmless
        return fallback
    # Metadata titles are often junk ("untitled", "Microsoft Word - x.docx", a temp file name, or a filing number
    # such as "0000078003-22-000027", which has hardly a letter).
    if len(title) < 4 or len(title) > 200 or title.lower() in {"untitled", "title", "document"} or \
            re.search(r"\.(docx?|indd|tmp|pdf)$|^microsoft word", title, re.I) or \
            len(re.findall(r"[^\W\d_]", title)) < 3:
        return fallback
    return f"{fallback} — {title}" if fallback.lower() not in title.lower() else title


def _short(exc: BaseException) -> str:
    """The gist of a parser exception, for a message (pypdf reports a stack overflow as "Error reading PDF file")."""
    if isinstance(exc, RecursionError) or isinstance(exc.__cause__ or exc.__context__, RecursionError):
        return "its objects are nested too deeply to read"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


__all__ = ["DocumentError", "clean_text", "load_pdf", "page_labels", "pages_to_ocr", "sniff", "title_from_file_name",
           "with_figures", "with_ocr"]
