"""PDFs for the figure, table and page-label tests: printed page labels, pictures of text over a text page, tables.
Built by the suite itself (reportlab, pypdf), never taken from elsewhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import reportlab
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


def figure_pdf(path: Path | str, text: str, picture: Sequence[str]) -> Path:
    """A one-page PDF with ``text`` in its text layer above a figure whose words (``picture``, one line each) are
    not in the text layer: a raster image of them in a frame, as a chart or a screenshot exported as a picture."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    font = ImageFont.truetype(str(Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"), 40)
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(pf.PAGE_WIDTH, pf.PAGE_HEIGHT), invariant=1)
    canvas.setFont("Helvetica", 11)
    y = pf.PAGE_HEIGHT - 72
    for line in pf.wrap_text(text, pf.PAGE_WIDTH - 144, "Helvetica", 11):
        canvas.drawString(72, y, line)
        y -= 15
    x, bottom, width, height = 72, 120, round(pf.PAGE_WIDTH - 144), 330  # points: the lower half of the page
    image = Image.new("L", (width * 2, height * 2), 255)  # two pixels a point: about 144 dpi
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(picture):
        draw.text((40, 40 + 68 * i), line, fill=0, font=font)
    draw.rectangle((6, 6, width * 2 - 6, height * 2 - 6), outline=0, width=4)
    canvas.drawImage(ImageReader(image), x, bottom, width, height)
    canvas.showPage()
    canvas.save()
    return pf._write(path, buffer.getvalue())


def relabelled(path: Path | str, first: int) -> Path:
    """``path`` rewritten with its pages labelled from ``first`` on (as pages of a journal issue are printed)."""
    reader = PdfReader(str(path))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.set_page_label(0, len(reader.pages) - 1, style="/D", start=first)
    buffer = io.BytesIO()
    writer.write(buffer)
    return pf._write(path, buffer.getvalue())


def shaded_pdf(path: Path | str, pages: Sequence[str], dark: Sequence[int]) -> Path:
    """Text pages, the 1-based pages in ``dark`` with a large black rectangle (a figure without words) under their
    text: only a picture of the page tells them apart."""
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(pf.PAGE_WIDTH, pf.PAGE_HEIGHT), invariant=1)
    for number, text in enumerate(pages, 1):
        if number in dark:
            canvas.rect(72, 100, pf.PAGE_WIDTH - 144, pf.PAGE_HEIGHT - 300, fill=1)
        canvas.setFont("Helvetica", 11)
        canvas.drawString(72, pf.PAGE_HEIGHT - 72, text)
        canvas.showPage()
    canvas.save()
    return pf._write(path, buffer.getvalue())
