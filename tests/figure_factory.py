"""PDFs for the figure, table and page-label tests: printed page labels, pictures of text over a text page, tables.
Built by the suite itself (reportlab, pypdf), never taken from elsewhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from pypdf import PdfReader, PdfWriter

from tests import pdf_factory as pf


def labelled_pdf(path: Path | str, pages: Sequence[str], *, roman: int = 0, first: int = 1) -> Path:
    """A text PDF whose first ``roman`` pages are labelled i, ii, … and the rest numbered from ``first``, as a book
    with front matter (or an article in a journal issue) prints them."""
    reader = PdfReader(io.BytesIO(pf._text_pdf_bytes(list(pages))))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    if roman:
        writer.set_page_label(0, roman - 1, style="/r")
    writer.set_page_label(roman, len(pages) - 1, style="/D", start=first)
    buffer = io.BytesIO()
    writer.write(buffer)
    return pf._write(path, buffer.getvalue())
