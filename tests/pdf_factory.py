"""Builds the test suite's own PDF fixtures (and look-alike non-PDFs), so no test needs an external file.

Every factory writes one file and returns its ``Path``. Text is drawn with reportlab using the Vera TrueType font
that ships inside reportlab, so non-ASCII Latin text (see ``UNICODE_SAMPLE``) survives extraction with pypdf.
Encryption is done with pypdf. Pages that are pictures of text (scans, slides exported as images; see
``scanned_pdf``) are drawn with Pillow in the same font. Nothing here needs network access or files outside the
test's ``tmp_path``.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import reportlab
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 72.0
FONT_NAME = "Vera"
FONT_SIZE = 11.0
LEADING = 14.0
COLUMN_GAP = 24.0

# Non-ASCII text that the bundled Vera font covers, that pypdf extracts back verbatim and that NFKC leaves as is
# (so no "µ": NFKC turns the micro sign into Greek mu).
UNICODE_SAMPLE = "Zürich naïve café façade Straße œuvre São Paulo Ærø €5 – Ω π"

ENCRYPTION_ALGORITHMS = ("RC4-40", "RC4-128", "AES-128", "AES-256", "AES-256-R5")
NOT_A_PDF_KINDS = ("png", "zip", "html", "text", "jpeg")

_font_registered = False


def _register_font() -> str:
    """Register reportlab's bundled Vera TTF once and return its font name."""
    global _font_registered
    if not _font_registered:
        font_file = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"
        pdfmetrics.registerFont(TTFont(FONT_NAME, str(font_file)))
        _font_registered = True
    return FONT_NAME


def _write(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` (creating parent folders) and return it as a Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def wrap_text(text: str, width: float, font: str = FONT_NAME, size: float = FONT_SIZE,
              spacing: float = 0.0) -> list[str]:
    """Word-wrap ``text`` into lines no wider than ``width``; "\\n\\n" gives a blank line, "\\n" a line break.
    ``spacing``: extra room after each character, in font sizes (letter-spaced text)."""
    _register_font()

    def wide(line: str) -> float:
        return pdfmetrics.stringWidth(line, font, size) + spacing * size * len(line)

    lines: list[str] = []
    paragraphs = re.split(r"\n[ \t]*\n", text.strip("\n"))
    for index, paragraph in enumerate(paragraphs):
        if index:
            lines.append("")
        for hard_line in paragraph.split("\n"):
            current = ""
            for word in hard_line.split():
                candidate = f"{current} {word}" if current else word
                if wide(candidate) <= width:
                    current = candidate
                    continue
                if current:
                    lines.append(current)
                # A single word wider than the line is split by characters.
                while wide(word) > width:
                    cut = len(word) - 1
                    while cut > 1 and wide(word[:cut]) > width:
                        cut -= 1
                    lines.append(word[:cut])
                    word = word[cut:]
                current = word
            lines.append(current)
    return lines


@dataclass(frozen=True)
class Glyphs:
    """Each character drawn on its own at its place, as many producers place right-to-left, shaped or letter-spaced
    text: in ``order`` "visual" (left to right, as on the page) or "logical" (as read: right to left in a
    right-to-left line), ``spacing`` font sizes apart beyond their widths. Spaces are left as gaps."""

    order: str = "logical"
    spacing: float = 0.0


def _draw_lines(canvas: Canvas, lines: list[str], x: float, top: float, bottom: float, font: str = FONT_NAME,
                glyphs: Glyphs | None = None, rtl: bool = False) -> None:
    """Draw ``lines`` downwards from ``top`` (``rtl``: their characters are already in visual order); raise
    ValueError if they would go below ``bottom``."""
    y = top
    for line in lines:
        if y < bottom:
            raise ValueError(f"text does not fit on one page ({len(lines)} lines); shorten it or split it")
        if line and glyphs:
            step = glyphs.spacing * FONT_SIZE
            places = [(x + pdfmetrics.stringWidth(line[:i], font, FONT_SIZE) + i * step, c) for i, c in enumerate(line)]
            for at, char in reversed(places) if rtl and glyphs.order == "logical" else places:
                if not char.isspace():
                    canvas.drawString(at, y, char)
        elif line:
            canvas.drawString(x, y, line)
        y -= LEADING


def _blank_metadata(canvas: Canvas) -> None:
    """Replace reportlab's placeholder metadata ("untitled", "anonymous", "unspecified") with empty strings."""
    canvas.setTitle("")
    canvas.setAuthor("")
    canvas.setSubject("")
    canvas.setCreator("")


def _text_pdf_bytes(pages: list[str], title: str | None = None, font: str | None = None, rtl: bool = False,
                    glyphs: Glyphs | None = None) -> bytes:
    """A PDF (as bytes) with one text page per string (Vera unless ``font``); an empty string gives a blank page."""
    font = font or _register_font()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    _blank_metadata(canvas)
    if title is not None:
        canvas.setTitle(title)
    width = PAGE_WIDTH - 2 * MARGIN
    for text in pages:
        canvas.setFont(font, FONT_SIZE)
        lines = wrap_text(text, width, font, spacing=glyphs.spacing if glyphs else 0.0)
        _draw_lines(canvas, [line[::-1] for line in lines] if rtl else lines, MARGIN, PAGE_HEIGHT - MARGIN - FONT_SIZE,
                    MARGIN, font, glyphs, rtl)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def text_pdf(path: Path | str, pages: list[str], title: str | None = None, font: str | None = None,
             rtl: bool = False, glyphs: Glyphs | None = None) -> Path:
    """Write a text PDF with one page per string (word-wrapped; must fit on the page) and an optional title;
    ``font`` is a font registered with reportlab (see ``chinese_font``, ``arabic_font``), Vera by default; ``rtl``
    lays each line out right to left (see ``arabic_font``); ``glyphs`` places each character on its own (see
    ``Glyphs``)."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    return _write(path, _text_pdf_bytes(pages, title, font, rtl, glyphs))


def chinese_font() -> str:
    """Adobe's STSong-Light, a CJK font every PDF reader knows without embedding it (reportlab ships its metrics):
    pypdf reads the text back through its CMap."""
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


ARABIC_FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core


def arabic_font() -> str:
    """DejaVu Sans, which has Arabic letters. Reportlab neither shapes Arabic nor lays it out right to left: with
    ``text_pdf(..., rtl=True)`` each line is drawn in visual order (its letters reversed, unjoined), as PDF
    producers place right-to-left text, and pypdf reads it back in logical order. Keep digits and Latin words out
    of such lines: reversing a line reverses them too."""
    pdfmetrics.registerFont(TTFont("DejaVuSans", str(ARABIC_FONT_FILE)))
    return "DejaVuSans"


def table_pdf(path: Path | str, caption: str, rows: list[list[str]]) -> Path:
    """A page with a caption and a table drawn cell by cell (each cell its own text object, as many financial
    filings are typeset), which pypdf extracts one cell per line."""
    font = _register_font()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    _blank_metadata(canvas)
    canvas.setFont(font, FONT_SIZE)
    y = PAGE_HEIGHT - MARGIN - FONT_SIZE
    canvas.drawString(MARGIN, y, caption)
    for row in rows:
        y -= 1.6 * FONT_SIZE
        canvas.drawString(MARGIN, y, row[0])
        for i, cell in enumerate(row[1:]):
            canvas.drawRightString(PAGE_WIDTH - MARGIN - 70 * (len(row) - 2 - i), y, cell)
    canvas.showPage()
    canvas.save()
    return _write(path, buffer.getvalue())


def two_column_pdf(path: Path | str, left: str, right: str, *, interleaved: bool = False) -> Path:
    """Write a one-page PDF with two columns of wrapped text side by side.

    By default each column is drawn whole (left, then right), as most layout tools do; ``interleaved=True`` draws
    the page row by row, so naive extraction mixes the two columns line by line.
    """
    font = _register_font()
    column_width = (PAGE_WIDTH - 2 * MARGIN - COLUMN_GAP) / 2
    xs = (MARGIN, MARGIN + column_width + COLUMN_GAP)
    columns = [wrap_text(left, column_width), wrap_text(right, column_width)]
    top = PAGE_HEIGHT - MARGIN - FONT_SIZE
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    _blank_metadata(canvas)
    canvas.setFont(font, FONT_SIZE)
    if interleaved:
        rows = max(len(c) for c in columns)
        padded = [c + [""] * (rows - len(c)) for c in columns]
        for row in range(rows):
            y = top - row * LEADING
            if y < MARGIN:
                raise ValueError("columns do not fit on one page; shorten them")
            for x, column in zip(xs, padded, strict=True):
                if column[row]:
                    canvas.drawString(x, y, column[row])
    else:
        for x, column in zip(xs, columns, strict=True):
            _draw_lines(canvas, column, x, top, MARGIN)
    canvas.showPage()
    canvas.save()
    return _write(path, buffer.getvalue())


def _encrypted(data: bytes, user_password: str, owner_password: str, algorithm: str) -> bytes:
    """Re-save the PDF ``data`` encrypted with pypdf."""
    if algorithm not in ENCRYPTION_ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ENCRYPTION_ALGORITHMS}")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def password_pdf(path: Path | str, pages: list[str], user_password: str = "secret",
                 algorithm: str = "AES-256") -> Path:
    """Write a text PDF that needs ``user_password`` to open (AES-256 unless ``algorithm`` says otherwise)."""
    return _write(path, _encrypted(_text_pdf_bytes(pages), user_password, "owner-" + user_password, algorithm))


def empty_password_pdf(path: Path | str, pages: list[str], algorithm: str = "AES-256") -> Path:
    """Write a text PDF "protected" by an owner password but with an empty user password (opens with "")."""
    return _write(path, _encrypted(_text_pdf_bytes(pages), "", "owner-secret", algorithm))


def corrupt_pdf(path: Path | str) -> Path:
    """Write a file with a PDF header but a garbage body that pypdf cannot open."""
    garbage = bytes((i * 37 + 11) % 256 for i in range(2048)).replace(b"%", b"#")
    return _write(path, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage + b"\nthis is not a PDF body\n")


def truncated_pdf(path: Path | str, pages: list[str] | None = None, keep: float = 0.5) -> Path:
    """Write a valid text PDF cut off after the first ``keep`` fraction of its bytes (a broken download)."""
    data = _text_pdf_bytes(pages or ["This PDF was cut off in the middle of its transfer."])
    return _write(path, data[: max(16, int(len(data) * keep))])


def broken_page_pdf(path: Path | str, pages: list[str], broken: set[int] | frozenset[int] = frozenset({2})) -> Path:
    """Write a text PDF whose 1-based pages in ``broken`` have an undecodable content stream.

    The file opens and lists all its pages; ``extract_text()`` on a broken page raises (pypdf 7:
    ``NotImplementedError: Unsupported filter``) while the other pages read normally.
    """
    if not broken or min(broken) < 1 or max(broken) > len(pages):
        raise ValueError(f"broken pages {sorted(broken)} must be page numbers between 1 and {len(pages)}")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_text_pdf_bytes(pages))))
    for number in broken:
        stream = DecodedStreamObject()
        stream.set_data(b"\x8b\x1f damaged bytes \x00\xff")
        stream[NameObject("/Filter")] = NameObject("/NoSuchDecode")
        writer.pages[number - 1][NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return _write(path, buffer.getvalue())


def _scan_pixels(width: int, height: int, seed: int) -> bytes:
    """Greyscale pixels of a fake scanned page: light noisy paper with dark bars where text lines would be."""
    rows = []
    state = seed * 2654435761 % 2**32 or 1
    for y in range(height):
        in_line = 8 <= y < height - 8 and (y % 12) < 6
        row = bytearray(width)
        for x in range(width):
            state = (state * 1103515245 + 12345) % 2**31  # tiny LCG: deterministic noise without numpy/PIL
            noise = state >> 27  # 0..15
            ink = in_line and 10 <= x < width - 10 - (y * 7 % 40) and (x // 5 + y // 12) % 7 != 0
            row[x] = (40 if ink else 235) + noise
        rows.append(bytes(row))
    return b"".join(rows)


def _add_image_page(writer: PdfWriter, seed: int, pixels: tuple[int, int] = (120, 170)) -> None:
    """Append an A4 page whose only content is one greyscale raster image XObject (no text operators)."""
    width, height = pixels
    page = writer.add_blank_page(PAGE_WIDTH, PAGE_HEIGHT)
    image = DecodedStreamObject()
    image.set_data(_scan_pixels(width, height, seed))
    image.update({
        NameObject("/Type"): NameObject("/XObject"),
        NameObject("/Subtype"): NameObject("/Image"),
        NameObject("/Width"): NumberObject(width),
        NameObject("/Height"): NumberObject(height),
        NameObject("/ColorSpace"): NameObject("/DeviceGray"),
        NameObject("/BitsPerComponent"): NumberObject(8),
    })
    image_ref = writer._add_object(image.flate_encode())
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/XObject"): DictionaryObject({NameObject("/Im0"): image_ref}),
    })
    draw_w, draw_h = PAGE_WIDTH - 2 * 36, PAGE_HEIGHT - 2 * 36
    contents = DecodedStreamObject()
    contents.set_data(f"q {draw_w:.2f} 0 0 {draw_h:.2f} 36 36 cm /Im0 Do Q".encode("ascii"))
    page[NameObject("/Contents")] = writer._add_object(contents)


def mixed_scan_pdf(path: Path | str, pages: list[str | None]) -> Path:
    """Write a PDF with a page per item: None gives an image-only (scanned) page, a string a text page."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    texts = [text for text in pages if text is not None]
    text_pages = iter(PdfReader(io.BytesIO(_text_pdf_bytes(texts))).pages) if texts else iter(())
    writer = PdfWriter()
    for number, text in enumerate(pages, start=1):
        if text is None:
            _add_image_page(writer, seed=number)
        else:
            writer.add_page(next(text_pages))
    buffer = io.BytesIO()
    writer.write(buffer)
    return _write(path, buffer.getvalue())


def image_only_pdf(path: Path | str, n_pages: int = 2) -> Path:
    """Write a PDF whose pages hold only a raster image and no text layer, like an un-OCRed scan."""
    if n_pages < 1:
        raise ValueError("a PDF needs at least one page")
    return mixed_scan_pdf(path, [None] * n_pages)


SCAN_DPI = 100  # pixels per inch of pictured pages: small images keep OCR in tests to about a second a page
SCAN_FONT_PX = 26  # text height in those pictures (about 19 pt): legible without needing a finer scan


def _picture_of_text(text: str, dpi: int = SCAN_DPI, font_px: int = SCAN_FONT_PX,
                     columns: int = 1) -> tuple[object, list[tuple[str, tuple[float, float, float, float]]]]:
    """An A4 page as a greyscale Pillow image with ``text`` drawn on it, word-wrapped (in ``columns`` columns,
    filled left to right), and where each drawn line is: (line, (x0, y0, x1, y1) as fractions of the page)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = round(PAGE_WIDTH / 72 * dpi), round(PAGE_HEIGHT / 72 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"), font_px)
    margin, gap, leading = round(dpi * 0.8), round(dpi * 0.4), round(font_px * 1.5)
    column_width = (width - 2 * margin - (columns - 1) * gap) / columns
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}".strip()
            if current and draw.textlength(candidate, font=font) > column_width:
                lines.append(current)
                candidate = word
            current = candidate
        lines.append(current)
    per_column = max(1, -(-len(lines) // columns))
    drawn = []
    for index, line in enumerate(lines):
        column, row = divmod(index, per_column)
        x, y = margin + column * (column_width + gap), margin + row * leading
        if y + leading > height - margin:
            raise ValueError("the text does not fit on the page")
        if line:
            draw.text((x, y), line, fill=0, font=font)
            x0, y0, x1, y1 = draw.textbbox((x, y), line, font=font)
            drawn.append((line, (x0 / width, y0 / height, x1 / width, y1 / height)))
    return image, drawn


def scanned_pdf(path: Path | str | io.BytesIO, pages: Sequence[str], *, typed: Sequence[int] = (), columns: int = 1,
                dpi: int = SCAN_DPI, font_px: int = SCAN_FONT_PX) -> Path:
    """Write a PDF whose pages are pictures of the given texts (like a scan: an image and no text layer), except
    the 1-based pages listed in ``typed``, which are ordinary text pages. "\\n" in a text starts a new line."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    writer = PdfWriter()
    for number, text in enumerate(pages, start=1):
        if number in typed:
            writer.add_page(PdfReader(io.BytesIO(_text_pdf_bytes([text]))).pages[0])
            continue
        image, _ = _picture_of_text(text, dpi, font_px, columns)
        buffer = io.BytesIO()
        image.save(buffer, format="PDF", resolution=dpi)
        writer.add_page(PdfReader(buffer).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    if isinstance(path, io.BytesIO):
        path.write(buffer.getvalue())
        path.seek(0)
        return path  # type: ignore[return-value] - an in-memory PDF for the other factories
    return _write(path, buffer.getvalue())


def scanned_lines(text: str, columns: int = 1) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Where ``scanned_pdf`` draws each line of ``text`` on its page: (line, box as fractions of the page)."""
    return _picture_of_text(text, columns=columns)[1]


def _png_bytes(width: int = 4, height: int = 4) -> bytes:
    """A small valid RGB PNG image, built with zlib alone."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"".join(bytes((x * 60 % 256, y * 60 % 256, 128)) for x in range(width))
                   for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def not_a_pdf(path: Path | str, kind: str = "png") -> Path:
    """Write the bytes of another format (png, zip, html, text or jpeg) under whatever name ``path`` has."""
    if kind == "png":
        data = _png_bytes()
    elif kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("word/document.xml", "<document>not a pdf</document>")
        data = buffer.getvalue()
    elif kind == "html":
        data = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
                b"<body><p>Please sign in to download report.pdf</p></body></html>\n")
    elif kind == "text":
        data = "Plain notes, saved as .pdf by mistake. Zürich café.\n".encode()
    elif kind == "jpeg":
        # A JPEG signature and header only: enough for content sniffing, not a decodable image.
        data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    else:
        raise ValueError(f"unknown kind {kind!r}; use one of {NOT_A_PDF_KINDS}")
    return _write(path, data)


def empty_file(path: Path | str) -> Path:
    """Write a zero-byte file."""
    return _write(path, b"")


def many_pages_pdf(path: Path | str, n: int) -> Path:
    """Write an ``n``-page PDF whose page k says "This is page k." (fast, for page-limit tests)."""
    if n < 1:
        raise ValueError("a PDF needs at least one page")
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=0)
    _blank_metadata(canvas)
    for k in range(1, n + 1):
        canvas.setFont("Helvetica", FONT_SIZE)
        canvas.drawString(MARGIN, PAGE_HEIGHT - MARGIN, f"This is page {k}.")
        canvas.showPage()
    canvas.save()
    return _write(path, buffer.getvalue())


# --- hostile PDFs: hand-written object graphs that attack the parser rather than carry content -------------------
_HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_PAGE = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
         b"/Resources << /Font << /F1 %d 0 R >> >>%s >>")


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from object bodies (object n is ``objects[n - 1]``; object 1 is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes, compressed: bytes | None = None) -> bytes:
    """A Flate-compressed stream object body (``compressed`` when the caller already compressed ``data``)."""
    body = zlib.compress(data, 9) if compressed is None else compressed
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(body), body)


def _one_page(contents: bytes, page_extra: bytes = b"") -> list[bytes]:
    """Objects of a one-page PDF whose page (object 3) draws the stream body ``contents`` (object 4)."""
    return [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            _PAGE % (4, 5, page_extra), contents, _HELVETICA]


def unmapped_font_pdf(path: Path | str, readable: Sequence[str] = ()) -> Path:
    """Pages of text in a Helvetica font (``readable``), then one page drawn in a Type3 font whose glyphs
    ("g437", "g258") have no mapping to characters: its text can't be extracted, only glyph names."""
    pages = list(readable) + [None]
    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(n)), n),
               _HELVETICA,
               b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 500 700] /FontMatrix [0.001 0 0 0.001 0 0] "
               b"/CharProcs << /g437 %d 0 R /g258 %d 0 R >> /Encoding << /Type /Encoding /Differences [1 /g437 /g258] "
               b">> /FirstChar 1 /LastChar 2 /Widths [500 500] >>" % (5 + 2 * n, 5 + 2 * n)]
    for i, text in enumerate(pages):
        font = 3 if text is not None else 4
        shown = text.encode("latin-1") if text is not None else b"\x01\x02\x01\x02\x01\x02"
        objects.append(_PAGE % (6 + 2 * i, font, b""))
        objects.append(_stream(b"BT /F1 12 Tf 72 700 Td (" + shown + b") Tj ET"))
    objects.append(_stream(b"0 0 0 0 500 700 d1 0 0 500 700 re f"))
    return _write(path, _raw_pdf(objects))


def scan_with_text_layer(path: Path | str, picture: str, layer: str | None = None) -> Path:
    """A one-page scan (a picture of ``picture``, see ``scanned_pdf``) under an invisible text layer (render mode 3,
    as scanners' own OCR adds one) that does not say what the picture shows: the words ``layer``, or, without
    them, glyph codes of a Type3 font with no mapping to characters ("/g437/g258")."""
    writer = PdfWriter(clone_from=scanned_pdf(io.BytesIO(), [picture]))
    if layer is not None:
        overlay = _raw_pdf(_one_page(_stream(b"BT 3 Tr /F1 12 Tf 72 700 Td (" + layer.encode("latin-1") + b") Tj ET")))
    else:
        overlay = _raw_pdf([
            b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            _PAGE % (4, 5, b""), _stream(b"BT 3 Tr /F1 12 Tf 72 700 Td (\x01\x02\x01\x02\x01\x02) Tj ET"),
            b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 500 700] /FontMatrix [0.001 0 0 0.001 0 0] "
            b"/CharProcs << /g437 6 0 R /g258 6 0 R >> /Encoding << /Type /Encoding /Differences [1 /g437 /g258] >> "
            b"/FirstChar 1 /LastChar 2 /Widths [500 500] >>",
            _stream(b"0 0 0 0 500 700 d1 0 0 500 700 re f")])
    writer.pages[0].merge_page(PdfReader(io.BytesIO(overlay)).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    return _write(path, buffer.getvalue())


def cyclic_page_tree_pdf(path: Path | str) -> Path:
    """Write a PDF whose page tree contains itself (/Kids points back at its own node): a naive walk never ends."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
               _PAGE % (4, 5, b""), _stream(b"BT /F1 12 Tf 72 720 Td (A page in a loop) Tj ET"), _HELVETICA]
    return _write(path, _raw_pdf(objects))


def page_tree_bomb_pdf(path: Path | str, depth: int = 9, fan_out: int = 10) -> Path:
    """Write a 2 KB PDF claiming ``fan_out ** depth`` pages (10**9 by default): each page-tree node lists the
    same child ``fan_out`` times, so flattening the tree naively takes forever and all memory."""
    leaf = 2 + depth
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        kids = b" ".join([b"%d 0 R" % (3 + level)] * fan_out)
        objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, fan_out ** (depth - level)))
    objects.append((_PAGE % (leaf + 1, leaf + 2, b"")).replace(b"/Parent 2 0 R", b"/Parent %d 0 R" % (leaf - 1)))
    objects += [_stream(b"BT /F1 12 Tf 72 720 Td (One page, a billion times) Tj ET"), _HELVETICA]
    return _write(path, _raw_pdf(objects))


def deeply_nested_pdf(path: Path | str, depth: int = 100_000) -> Path:
    """Write a PDF whose page dictionary holds an array nested ``depth`` levels deep ([[[...]]]), which blows the
    stack of a recursive parser."""
    nested = b" /Junk " + b"[" * depth + b"]" * depth
    return _write(path, _raw_pdf(_one_page(_stream(b"BT /F1 12 Tf 72 720 Td (Deep) Tj ET"), nested)))


def flate_bomb_pdf(path: Path | str, megabytes: int = 256) -> Path:
    """Write a ~0.25 MB PDF whose page content inflates to ``megabytes`` MB (a "zip bomb")."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(b"BT /F1 12 Tf 72 720 Td (Hello from the bomb) Tj ET\n")]
    block = b" " * (1 << 20)
    parts += [packer.compress(block) for _ in range(megabytes)]
    parts.append(packer.flush())
    return _write(path, _raw_pdf(_one_page(_stream(b"", b"".join(parts)))))


def slow_pdf(path: Path | str, pages: int = 60, megabytes_per_page: int = 2) -> Path:
    """Write a small PDF (a few KB) whose every page draws the same ``megabytes_per_page`` MB content stream of
    text operators: reading it costs seconds of CPU per page and little memory (for time-limit tests)."""
    operator = b"BT /F1 1 Tf 0 0 Td () Tj ET\n"
    contents = _stream(operator * ((megabytes_per_page << 20) // len(operator)))
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
               contents, _HELVETICA] + [_PAGE % (3, 4, b"")] * pages
    return _write(path, _raw_pdf(objects))


def memory_hog_pdf(path: Path | str, megabytes: int = 70) -> Path:
    """Write a ~0.2 MB PDF whose one page is ``megabytes`` MB of text operators (under pypdf's 75 MB inflate
    limit): reading it takes about 400 MB of memory (for memory-limit tests)."""
    operator = b"BT /F1 12 Tf 72 720 Td (word) Tj ET\n"
    return _write(path, _raw_pdf(_one_page(_stream(operator * ((megabytes << 20) // len(operator))))))


__all__ = [
    "broken_page_pdf",
    "ENCRYPTION_ALGORITHMS",
    "NOT_A_PDF_KINDS",
    "UNICODE_SAMPLE",
    "corrupt_pdf",
    "cyclic_page_tree_pdf",
    "deeply_nested_pdf",
    "empty_file",
    "empty_password_pdf",
    "flate_bomb_pdf",
    "image_only_pdf",
    "many_pages_pdf",
    "memory_hog_pdf",
    "mixed_scan_pdf",
    "not_a_pdf",
    "page_tree_bomb_pdf",
    "password_pdf",
    "scan_with_text_layer",
    "scanned_lines",
    "scanned_pdf",
    "slow_pdf",
    "text_pdf",
    "truncated_pdf",
    "two_column_pdf",
    "wrap_text",
]
