"""OCR: a page image → its lines of text with their boxes, assembled into text in reading order.

A page without a usable text layer (see ``rag.ingestion.documents.unreadable``) is rendered with pypdfium2 and read by
an OCR engine: RapidOCR on onnxruntime by default (the ``rapidocr-onnxruntime`` wheel carries its PP-OCRv4 detection and
recognition models, so nothing is downloaded), or Tesseract where its binary is installed (more languages). The
recognised lines are put in reading order (``reading_order``) and joined into the page's text, so chunking, BM25 and
citations work as on a text page; the lines keep their boxes as fractions of the page, for the viewer to highlight a
cited passage on the page image (saved beside the stored PDF as ``<doc_id>.ocr.json``).

Resolution and framing. Pages are rendered at ``RAG_OCR_DPI`` (216 by default: three times the PDF's 72 units per
inch); at 144 the small print of filings is misread far more often, at 300 no better (see docs/BENCHMARKS.md). Text
detection, whose cost grows with the pixels, runs on the image scaled to at most ``DETECT_SIDE`` pixels; the lines
it finds are cut out of the full-resolution image and reframed (``_framed``) before recognition, which is what keeps
the model from running English words together ("BigDataPure-PlayVendors"). A page larger than ``MAX_SIDE`` pixels
at that resolution (a poster, a 20000×20000 scan) is rendered smaller, so memory and time stay bounded.

RapidOCR's direction classifier is off: it is meant for lines turned upside down in photos, and on long lines of
a document page it often takes a line for upside down and turns it into garbage. Page rotation is applied by the
renderer (the PDF's /Rotate).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from statistics import median
from typing import Any, Callable, Sequence

from rag.core.config import Settings
from rag.core.errors import MissingDependency, RagError
from rag.core.records import OcrLine, Page

log = logging.getLogger(__name__)

MAX_SIDE = 5000  # pixels: a page is rendered no larger than this on its longer side
DETECT_SIDE = 2000  # pixels: text detection runs on the page scaled to at most this on its longer side
MIN_SCORE = 0.5  # recognised lines the engine is less sure of are dropped (RapidOCR's own default)
PAD = 0.35  # margin around the letters of each line given to recognition, as a share of their height (_framed)
INK = 60  # grey levels from the background that count as ink (of 255)
GUTTER = 0.25  # a vertical strip this wide (times the median line height), hardly crossed, separates columns
BAND = 0.5  # an empty horizontal band this high (times the median line height) may separate blocks
ASSEMBLY = 1  # bump when reading order or text assembly changes: pages OCR'd before are read again
INSTALL = "pip install rapidocr-onnxruntime pypdfium2"


class OcrError(RagError):
    """A page could not be rendered or recognised."""


@dataclass(frozen=True)
class OcrOptions:
    """How pages are read: the engine, its language(s) (Tesseract codes, "+" between several), the rendering
    resolution, and the onnxruntime threads of one process."""

    engine: str = "rapidocr"
    lang: str = "eng"
    dpi: int = 216
    threads: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> OcrOptions:
        """How parser processes read pages by OCR (onnxruntime threads: the cores shared out among them)."""
        s = settings
        threads = s.ocr_threads or max(1, (os.cpu_count() or 1) // s.effective_parse_workers)
        return cls(engine=s.ocr_engine, lang=s.ocr_lang, dpi=s.ocr_dpi, threads=threads)

    @property
    def signature(self) -> str:
        """What a page's OCR result depends on: the engine and its version, language, resolution, assembly."""
        package = "rapidocr-onnxruntime" if self.engine == "rapidocr" else None
        try:
            version = metadata.version(package) if package else _tesseract_version()
        except (metadata.PackageNotFoundError, OcrError):
            version = "missing"
        return f"{self.engine} {version} {self.lang} {self.dpi}dpi v{ASSEMBLY}"


def missing(options: OcrOptions) -> str | None:
    """Why OCR can't run here with these options (with what to install), or None when it can."""
    if options.engine == "tesseract" and shutil.which("tesseract") is None:
        return ("the Tesseract OCR engine is not installed (on Debian or Ubuntu: apt-get install tesseract-ocr "
                "tesseract-ocr-<language>; or set RAG_OCR_ENGINE=rapidocr)")
    modules = ["pypdfium2"] + (["rapidocr_onnxruntime"] if options.engine == "rapidocr" else ["cv2"])
    for module in modules:
        if find_spec(module) is None:
            return f"the OCR engine is not installed ({INSTALL})"
        problem = _unloadable(module)
        if problem:
            return problem
    return None


@functools.lru_cache(maxsize=8)
def _unloadable(module: str) -> str | None:
    """Why an installed module fails to import (OpenCV without its system libraries, typically), or None."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:
        return (f"the OCR engine can't be loaded ({exc}); on Debian or Ubuntu the system libraries it needs come "
                f"with `apt-get install libgl1 libglib2.0-0`")
    return None


# --- rendering ------------------------------------------------------------------------------------------------------
def render(path: str | Path, number: int, dpi: int) -> Any:
    """The 1-based page ``number`` of the PDF at ``path`` as a greyscale numpy array, at ``dpi`` (less for a page
    that would exceed ``MAX_SIDE`` pixels)."""
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise MissingDependency(f"Reading scanned pages needs pypdfium2: {INSTALL}") from exc
    pdf = None
    try:
        pdf = pdfium.PdfDocument(str(path))
        page = pdf[number - 1]
        width, height = page.get_size()
        scale = min(dpi / 72, MAX_SIDE / max(width, height, 1.0))
        bitmap = page.render(scale=scale, grayscale=True)
        image = bitmap.to_numpy()
        if image.ndim == 3:  # some pdfium builds keep three channels in grayscale mode
            image = image[:, :, 0]
        return image.copy()
    except pdfium.PdfiumError as exc:
        raise OcrError(f"page {number} could not be rendered ({exc})") from exc
    finally:
        if pdf is not None:
            pdf.close()


# --- recognition --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fragment:
    """A piece of text the engine found (a line, or a part of one such as a table cell), box in pixels."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def middle(self) -> float:
        return (self.y0 + self.y1) / 2


def recognise(image: Any, options: OcrOptions) -> list[Fragment]:
    """The text fragments on a greyscale page image, in no particular order."""
    if options.engine == "tesseract":
        return _tesseract(image, options.lang, options.threads)
    import cv2
    import numpy as np

    engine = _rapidocr(options.threads)
    height, width = image.shape[:2]
    try:
        # Detection (where the lines are) on the page scaled down to DETECT_SIDE; recognition on the full image.
        shrink = min(1.0, DETECT_SIDE / max(height, width))
        small = image if shrink == 1.0 else cv2.resize(image, (max(1, round(width * shrink)),
                                                              max(1, round(height * shrink))),
                                                       interpolation=cv2.INTER_AREA)
        boxes, _ = engine(small, use_cls=False, use_rec=False)
        if not boxes:
            return []
        quads = [np.asarray(box, dtype=np.float32) / shrink for box in boxes]
        crops = [_framed(crop) for crop in engine.get_crop_img_list(image, quads)]
        found, _ = engine.text_rec([cv2.cvtColor(c, cv2.COLOR_GRAY2BGR) if c.ndim == 2 else c for c in crops])
    except Exception as exc:  # noqa: BLE001 - onnxruntime and OpenCV raise their own types on a bad image
        detail = str(exc.__cause__ or exc)  # RapidOCR wraps onnxruntime's error in a traceback
        if "bad_alloc" in detail or "Failed to allocate" in detail:
            raise MemoryError(detail) from exc  # the parser's memory cap: its process is replaced
        raise OcrError(f"the OCR engine failed ({detail[:160] or type(exc).__name__})") from exc
    fragments = []
    for quad, (text, score) in zip(quads, found, strict=True):
        xs, ys = quad[:, 0], quad[:, 1]
        fragment = Fragment(str(text).strip(), max(0.0, float(xs.min())), max(0.0, float(ys.min())),
                            min(float(width), float(xs.max())), min(float(height), float(ys.max())))
        if score >= MIN_SCORE and fragment.text and fragment.x1 > fragment.x0 and fragment.y1 > fragment.y0:
            fragments.append(fragment)
    return fragments


def _framed(crop: Any) -> Any:
    """A line cut out of the page, reframed so its letters fill the same share of the height whatever the box.

    The detector's boxes fit the letters more or less tightly depending on the resolution and the font, and the
    recognition model is sensitive to it: given a line whose letters touch the top and bottom of its input, it runs
    the words together ("BigDataPure-PlayVendors"); given a loose one, it misreads small print. So the rows that
    hold ink (in any colour against the background, taken from the crop's edges) are found, and framed with a
    margin of ``PAD`` times their height above, below and on both sides: the box's excess is cut off, and the
    missing margin is filled with the background (see docs/BENCHMARKS.md, OCR).
    """
    import cv2
    import numpy as np

    edges = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    paper = float(np.median(edges))  # the background around the letters (dark on a dark slide)
    rows = (np.abs(crop.astype(np.int16) - paper) > INK).sum(axis=1)
    if rows.max() == 0:
        return crop
    inked = np.flatnonzero(rows >= 0.05 * rows.max())  # a neighbour line's stray descenders don't count
    top, bottom = int(inked[0]), int(inked[-1]) + 1
    margin = max(1, round(PAD * (bottom - top)))
    above, below = top - margin, bottom + margin
    body = crop[max(0, above):min(crop.shape[0], below)]
    return cv2.copyMakeBorder(body, max(0, -above), max(0, below - crop.shape[0]), margin, margin,
                              cv2.BORDER_CONSTANT, value=paper)


@functools.lru_cache(maxsize=2)
def _rapidocr(threads: int) -> Any:
    """One RapidOCR engine per process (its models load once), with onnxruntime bound to ``threads`` threads so
    parallel parser processes don't fight over the cores."""
    try:
        import cv2
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise MissingDependency(f"Reading scanned pages needs the OCR engine, which can't be loaded ({exc}): "
                                f"{INSTALL}") from exc
    cv2.setNumThreads(max(1, threads))  # OpenCV's own pool would start a thread per core in every process
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    # The page comes scaled for detection already (see recognise): RapidOCR's own resizing is kept out of the way.
    return RapidOCR(intra_op_num_threads=max(1, threads), inter_op_num_threads=1, max_side_len=MAX_SIDE + 1,
                    det_limit_type="min", det_limit_side_len=32)


def _tesseract(image: Any, lang: str, threads: int) -> list[Fragment]:
    """Lines as Tesseract finds them (its TSV output: words with block, paragraph and line numbers), its OpenMP
    threads bound like onnxruntime's."""
    import cv2

    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OcrError("the page image could not be encoded for Tesseract")
    try:
        done = subprocess.run(["tesseract", "stdin", "stdout", "-l", lang, "--psm", "3", "tsv"], input=png.tobytes(),
                              capture_output=True, timeout=600, check=False,
                              env={**os.environ, "OMP_THREAD_LIMIT": str(max(1, threads))})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OcrError(f"Tesseract failed ({exc})") from exc
    if done.returncode != 0:
        raise OcrError(f"Tesseract failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    lines: dict[tuple[str, str, str, str], list[list[str]]] = {}
    for row in done.stdout.decode(errors="replace").splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) == 12 and cols[11].strip() and float(cols[10] or -1) >= 0:
            lines.setdefault((cols[1], cols[2], cols[3], cols[4]), []).append(cols)
    fragments = []
    for words in lines.values():
        x0 = min(int(w[6]) for w in words)
        y0 = min(int(w[7]) for w in words)
        x1 = max(int(w[6]) + int(w[8]) for w in words)
        y1 = max(int(w[7]) + int(w[9]) for w in words)
        fragments.append(Fragment(" ".join(w[11].strip() for w in words), x0, y0, x1, y1))
    return fragments


def _tesseract_version() -> str:
    if shutil.which("tesseract") is None:
        raise OcrError("tesseract is not installed")
    done = subprocess.run(["tesseract", "--version"], capture_output=True, timeout=30, check=False)
    first = (done.stdout or done.stderr).decode(errors="replace").splitlines()
    return first[0].split()[-1] if first else "unknown"


# --- reading order ------------------------------------------------------------------------------------------------
def reading_order(fragments: Sequence[Fragment]) -> list[list[Fragment]]:
    """The fragments as rows of text in reading order (each row's fragments left to right).

    A recursive XY cut: a block of fragments is split at its widest gap, either a horizontal band with no text
    (sections, paragraphs, a slide's title above its body: read top to bottom) or a vertical gutter (columns: read
    left to right). A gutter between table columns is no reason to read column by column: where the rows on both
    sides line up and one side is not prose (figures, short cells), the block is read row by row, so a table row
    reads "Net income 5,363 4,869" as it does on a text page. A block with no gap left is read row by row.
    """
    if not fragments:
        return []
    unit = median(f.height for f in fragments)
    rows: list[list[Fragment]] = []
    _cut(list(fragments), unit, rows)
    return rows


def _cut(block: list[Fragment], unit: float, out: list[list[Fragment]]) -> None:
    across = max(_gaps(block, lambda f: (f.y0, f.y1)), key=lambda g: g[1], default=None)
    gutter = _gutter(block, unit)
    if gutter and (across is None or gutter[1] >= across[1]):
        left = [f for f in block if (f.x0 + f.x1) / 2 < gutter[0]]
        right = [f for f in block if (f.x0 + f.x1) / 2 >= gutter[0]]
        if not _table(left, right, unit):
            _cut(left, unit, out)
            _cut(right, unit, out)
            return
    if across and across[1] >= unit * BAND:
        _cut([f for f in block if f.y1 <= across[0]], unit, out)
        _cut([f for f in block if f.y0 >= across[0]], unit, out)
        return
    out.extend(_rows(block))


def _gutter(block: Sequence[Fragment], unit: float) -> tuple[float, float] | None:
    """(middle, width) of the widest vertical strip that splits ``block`` into columns, or None.

    A strip qualifies when it is at least ``GUTTER`` line heights wide and crossed by hardly any fragment: the
    detector's boxes stick out a little past the letters, and now and then it joins two lines across a narrow
    gutter into one box, so a few fragments (a tenth of them, at least three) may cross it. At least two fragments
    must lie on each side.
    """
    import numpy as np

    if len(block) < 4:
        return None
    left = int(min(f.x0 for f in block))
    coverage = np.zeros(int(max(f.x1 for f in block)) - left + 2, dtype=np.int32)
    for f in block:
        coverage[int(f.x0) - left:int(f.x1) - left + 1] += 1
    low = coverage <= max(3, len(block) // 10)
    best: tuple[float, float] | None = None
    start = None
    for x, empty in enumerate(np.append(low, False)):
        if empty and start is None:
            start = x
        elif not empty and start is not None:
            width, middle = x - start, left + (start + x) / 2
            sides = [sum((f.x0 + f.x1) / 2 < middle for f in block), sum((f.x0 + f.x1) / 2 > middle for f in block)]
            if width >= unit * GUTTER and min(sides) >= 2 and (best is None or width > best[1]):
                best = (middle, float(width))
            start = None
    return best


def _gaps(block: Sequence[Fragment], span: Any) -> list[tuple[float, float]]:
    """(position, width) of each empty stretch between the fragments' spans along one axis."""
    spans = sorted(span(f) for f in block)
    gaps = []
    reach = spans[0][1]
    for start, end in spans[1:]:
        if start > reach:
            gaps.append((start, start - reach))
        reach = max(reach, end)
    return gaps


def _table(left: Sequence[Fragment], right: Sequence[Fragment], unit: float) -> bool:
    """True when two sides of a gutter are columns of one table rather than columns of text: most of the smaller
    side's fragments have a partner on the same row across the gutter, and one side is not prose."""
    small, large = sorted((left, right), key=len)
    aligned = sum(any(abs(a.middle - b.middle) <= unit / 2 for b in large) for a in small)
    return aligned * 2 >= len(small) and not (_prose(left) and _prose(right))


def _prose(side: Sequence[Fragment]) -> bool:
    """Lines of running text (several words each, mostly letters) rather than figures or short cells."""
    words = [w for f in side for w in f.text.split()]
    letters = sum(c.isalpha() for w in words for c in w)
    return len(words) >= 3 * len(side) and letters * 2 >= sum(map(len, words))


def _rows(block: Sequence[Fragment]) -> list[list[Fragment]]:
    """Fragments grouped into rows (those that overlap vertically by half the smaller height), top to bottom,
    each row left to right."""
    rows: list[list[Fragment]] = []
    for f in sorted(block, key=lambda f: f.middle):
        row = rows[-1] if rows else None
        if row is not None and _same_row(row, f):
            row.append(f)
        else:
            rows.append([f])
    return [sorted(row, key=lambda f: f.x0) for row in rows]


def _same_row(row: Sequence[Fragment], f: Fragment) -> bool:
    top, bottom = min(r.y0 for r in row), max(r.y1 for r in row)
    overlap = min(bottom, f.y1) - max(top, f.y0)
    return overlap >= 0.5 * min(f.height, bottom - top)


def assemble(rows: Sequence[Sequence[Fragment]], width: float, height: float) -> tuple[str, tuple[OcrLine, ...]]:
    """A page's text from its rows (a blank line where rows are far apart, as between paragraphs) and its lines in
    the same order, boxes as fractions of the page."""
    if not rows:
        return "", ()
    unit = median(f.height for row in rows for f in row)
    parts: list[str] = []
    lines: list[OcrLine] = []
    previous: Sequence[Fragment] | None = None
    for row in rows:
        if previous is not None:
            gap = min(f.y0 for f in row) - max(f.y1 for f in previous)
            jumped = min(f.x0 for f in row) > max(f.x1 for f in previous) or gap < -unit  # a new column
            parts.append("\n\n" if gap > unit * 0.8 or jumped else "\n")
        parts.append(" ".join(f.text for f in row))
        lines.extend(OcrLine(f.text, (_frac(f.x0, width), _frac(f.y0, height), _frac(f.x1, width),
                                      _frac(f.y1, height))) for f in row)
        previous = row
    return "".join(parts), tuple(lines)


def _frac(value: float, size: float) -> float:
    return round(min(1.0, max(0.0, value / size)), 4)


# --- one page -----------------------------------------------------------------------------------------------------
def read_page(path: str | Path, number: int, options: OcrOptions) -> Page:
    """Render and recognise one page: its text in reading order (not yet cleaned) and its lines. A page with no
    words comes back with empty text. Raises OcrError (or MissingDependency) when it can't be read."""
    image = render(path, number, options.dpi)
    height, width = image.shape[:2]
    rows = reading_order(recognise(image, options))
    text, lines = assemble(rows, float(width), float(height))
    return Page(number, text, ocr=True, lines=lines)


# --- the saved boxes ----------------------------------------------------------------------------------------------
def to_json(pages: Sequence[Page], options: OcrOptions) -> str:
    """The OCR'd pages of a document as saved beside its PDF (``<doc_id>.ocr.json``) for the viewer, and as a cache
    so the same bytes are never read twice: ``{"engine", "pages": {"<n>": {"text", "lines": [{"text", "box"}]}}}``,
    boxes (x0, y0, x1, y1) as fractions of the page, origin top-left. A page with a text layer whose figures were
    read keeps the lines read inside them, marked ``"figure": true`` (for the viewer only, never taken as a page
    read by OCR)."""
    return json.dumps({"engine": options.signature,
                       "pages": {str(p.number): {"text": p.figure_text if not p.ocr else p.text,
                                                 "lines": [{"text": line.text, "box": list(line.box)}
                                                           for line in p.lines],
                                                 **({} if p.ocr else {"figure": True})}
                                 for p in pages if p.ocr or p.figure_start >= 0}},
                      ensure_ascii=False, separators=(",", ":"))


def from_json(text: str, options: OcrOptions) -> dict[int, Page]:
    """The pages saved by ``to_json``, if they were read the way ``options`` would read them (else none)."""
    try:
        data = json.loads(text)
        if data.get("engine") != options.signature:
            return {}
        return {int(n): Page(int(n), str(p["text"]), ocr=True,
                             lines=tuple(OcrLine(str(line["text"]), tuple(map(float, line["box"])))
                                         for line in p["lines"]))
                for n, p in data["pages"].items() if not p.get("figure")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("Ignoring an unreadable OCR file: %s", exc)
        return {}


# --- text inside the figures of a text page ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FigureOptions:
    """How the figures of pages that have a text layer are read: at most ``max_pages`` pages of a document (those
    with the largest figures first) and ``max_regions`` figures a page, only figures covering ``min_share`` of the
    page or more, and no longer than ``budget_s`` seconds a document (the pages past it keep their text layer)."""

    max_pages: int = 40
    max_regions: int = 4
    min_share: float = 0.06
    budget_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FigureOptions | None:
        """The settings' bounds, or None where figures are not read (``RAG_FIGURE_OCR=off``, or OCR turned off).
        A document's figures have ``RAG_FIGURE_OCR_SECONDS`` of their own, on top of the time a PDF may take to
        parse."""
        s = settings
        if s.figure_ocr == "off" or s.ocr == "off" or s.figure_ocr_pages == 0:
            return None
        return cls(max_pages=s.figure_ocr_pages, budget_s=s.figure_ocr_seconds)


FIGURE_PATHS = 12  # vector paths (bars, lines, glyph outlines) that make a drawing rather than a rule or a box
LAYER_CHARS = 40  # a drawing with this many characters of the text layer inside has its words indexed already
BACKGROUND = 0.85  # an image covering this share of the page under much text is a background, not a figure
SHORT_PAGE = 600  # characters: a page this short (a slide, a poster, a chart page) is searched for drawings too
_GAP = 0.015  # paths closer than this share of the page belong to one drawing


def figure_regions(page: Any, textpage: Any, min_share: float, max_regions: int) -> list[tuple[float, float, float,
                                                                                                    float]]:
    """The figures of a pypdfium2 page worth reading by OCR, largest first, as (x0, y0, x1, y1) fractions of the
    page (origin top-left): images covering ``min_share`` of the page or more (not a background under the text),
    and clusters of ``FIGURE_PATHS`` or more vector paths as large whose text is not in the text layer (a chart
    whose labels are real text is indexed already; one whose labels are outlines or pictures is not)."""
    import pypdfium2.raw as raw

    x0, y0, x1, y1 = page.get_bbox()
    width, height = x1 - x0, y1 - y0
    if width <= 0 or height <= 0:
        return []
    area = width * height
    images: list[tuple[float, float, float, float]] = []
    paths: list[tuple[float, float, float, float]] = []
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE, raw.FPDF_PAGEOBJ_PATH), max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        box = (max(left, x0), max(bottom, y0), min(right, x1), min(top, y1))
        if box[2] <= box[0] or box[3] <= box[1]:
            if obj.type == raw.FPDF_PAGEOBJ_PATH and (box[2] >= box[0] and box[3] >= box[1]):
                paths.append(box)  # a straight line (an axis, a rule) has no area but belongs to its drawing
            continue
        share = (box[2] - box[0]) * (box[3] - box[1]) / area
        if obj.type == raw.FPDF_PAGEOBJ_IMAGE:
            if share >= min_share:
                images.append(box)
        elif share < 0.5:  # a page-sized frame or background is no drawing
            paths.append(box)

    def layer_chars(box: tuple[float, float, float, float]) -> int:
        return len("".join(textpage.get_text_bounded(*box).split()))

    found = [b for b in _merged(images, 0.0)
             if not ((b[2] - b[0]) * (b[3] - b[1]) / area >= BACKGROUND and layer_chars(b) > 10 * LAYER_CHARS)]
    gap = _GAP * max(width, height)
    for box, count in _clusters(paths, gap):
        if count >= FIGURE_PATHS and (box[2] - box[0]) * (box[3] - box[1]) / area >= min_share and \
                layer_chars(box) < LAYER_CHARS and not any(_inside(box, b) for b in found):
            found.append(box)
    found.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return [(round((b[0] - x0) / width, 4), round((y1 - b[3]) / height, 4), round((b[2] - x0) / width, 4),
             round((y1 - b[1]) / height, 4)) for b in found[:max_regions]]


def _inside(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True when box ``a`` lies mostly (80%) inside box ``b``."""
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return w > 0 and h > 0 and w * h >= 0.8 * (a[2] - a[0]) * (a[3] - a[1])


def _merged(boxes: Sequence[tuple[float, float, float, float]], gap: float) -> list[tuple[float, float, float, float]]:
    return [box for box, _ in _clusters(boxes, gap)]


def _clusters(boxes: Sequence[tuple[float, float, float, float]], gap: float
              ) -> list[tuple[tuple[float, float, float, float], int]]:
    """Boxes that touch (within ``gap``) merged into one, with how many boxes each holds."""
    groups: list[tuple[list[float], int]] = []
    for box in sorted(boxes):
        merged = [list(box), 1]
        changed = True
        while changed:
            changed = False
            for group in list(groups):
                g = group[0]
                if g[0] - gap <= merged[0][2] and merged[0][0] - gap <= g[2] and g[1] - gap <= merged[0][3] and \
                        merged[0][1] - gap <= g[3]:
                    m = merged[0]
                    merged = [[min(m[0], g[0]), min(m[1], g[1]), max(m[2], g[2]), max(m[3], g[3])],
                              merged[1] + group[1]]
                    groups.remove(group)
                    changed = True
        groups.append((merged[0], merged[1]))
    return [((g[0], g[1], g[2], g[3]), n) for g, n in groups]


def new_words(line: str, known: set[str]) -> bool:
    """True when a line read inside a figure holds a word (two or more letters or digits) that the page's text layer
    lacks."""
    return any(w not in known for w in _words(line) if len(w) >= 2)


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[^\W_]+", text.lower())


def read_figures(path: str | Path, pages: Sequence[Page], options: OcrOptions, figures: FigureOptions,
                 candidates: Sequence[int] | None = None,
                 unavailable: Callable[[], str | None] | None = None) -> dict[int, tuple[str, tuple[OcrLine, ...]]]:
    """The words read by OCR inside the figures of ``pages`` (pages with a text layer) that their text layer lacks:
    page number → (text in reading order, not yet cleaned; its lines, boxes as fractions of the page). Only the
    pages in ``candidates`` are looked at when given (those that hold an image, or are short); see
    ``FigureOptions`` for the bounds. A page that can't be read keeps its text layer. ``unavailable`` is asked,
    only once a figure is found, why the OCR engine can't run (so a document without figures never loads it)."""
    import time

    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise MissingDependency(f"Reading figures needs pypdfium2: {INSTALL}") from exc
    wanted = {p.number: p for p in pages if p.text and not p.ocr}
    if candidates is not None:
        wanted = {n: p for n, p in wanted.items() if n in set(candidates)}
    out: dict[int, tuple[str, tuple[OcrLine, ...]]] = {}
    if not wanted:
        return out
    started = time.perf_counter()
    pdf = pdfium.PdfDocument(str(path))
    try:
        plan: list[tuple[float, int, list[tuple[float, float, float, float]]]] = []
        for number in sorted(wanted):
            page = pdf[number - 1]
            try:
                if page.get_rotation():
                    continue  # boxes and renders would disagree; such pages are rare among figure pages
                textpage = page.get_textpage()
                regions = figure_regions(page, textpage, figures.min_share, figures.max_regions)
                textpage.close()
            except pdfium.PdfiumError as exc:
                log.info("Page %d's figures can't be found: %s", number, exc)
                continue
            finally:
                page.close()
            if regions:
                plan.append((sum((b[2] - b[0]) * (b[3] - b[1]) for b in regions), number, regions))
        cannot = unavailable() if plan and unavailable is not None else None
        if cannot:
            log.info("%s: the words inside figures are not read: %s", Path(path).name, cannot)
            return out
        plan.sort(key=lambda item: (-item[0], item[1]))  # the largest figures first, when the cap leaves some out
        for _, number, regions in sorted(plan[:figures.max_pages], key=lambda item: item[1]):
            if time.perf_counter() - started > figures.budget_s:
                log.warning("%s: figures of pages from %d on not read (%.0f s a document at most)", Path(path).name,
                            number, figures.budget_s)
                break
            try:
                got = _read_regions(pdf, number, regions, options, set(_words(wanted[number].text)))
            except OcrError as exc:
                log.info("Page %d's figures can't be read: %s", number, exc)
                continue
            if got[0]:
                out[number] = got
    finally:
        pdf.close()
    return out


def _read_regions(pdf: Any, number: int, regions: Sequence[tuple[float, float, float, float]], options: OcrOptions,
                  known: set[str]) -> tuple[str, tuple[OcrLine, ...]]:
    """OCR the figure ``regions`` of page ``number`` and keep the lines with words the text layer lacks."""
    import pypdfium2 as pdfium

    page = pdf[number - 1]
    try:
        width, height = page.get_size()
        scale = min(options.dpi / 72, MAX_SIDE / max(width, height, 1.0))
        fragments: list[Fragment] = []
        for x0, y0, x1, y1 in regions:
            crop = (x0 * width, (1 - y1) * height, (1 - x1) * width, y0 * height)  # cut from left, bottom, right, top
            try:
                bitmap = page.render(scale=scale, crop=crop, grayscale=True)
            except pdfium.PdfiumError as exc:
                raise OcrError(f"page {number} could not be rendered ({exc})") from exc
            image = bitmap.to_numpy()
            image = (image[:, :, 0] if image.ndim == 3 else image).copy()
            dx, dy = x0 * width * scale, y0 * height * scale
            for f in recognise(image, options):
                if new_words(f.text, known):
                    fragments.append(Fragment(f.text, f.x0 + dx, f.y0 + dy, f.x1 + dx, f.y1 + dy))
    finally:
        page.close()
    return assemble(reading_order(fragments), width * scale, height * scale)


def figure_candidates(path: str | Path, pages: Sequence[Page]) -> list[int]:
    """The pages whose figures are worth looking for: those that draw an image (or a form, which may hold one), as
    the PDF's resources say, and short pages (slides, posters, chart pages), where a drawing may hold the words.
    Reading the resources costs next to nothing, so a long text-only document pays almost nothing for figures."""
    from pypdf import PdfReader

    short = {p.number for p in pages if p.text and len(p.text) < SHORT_PAGE}
    found: set[int] = set()
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            reader.decrypt("")
        for number, page in enumerate(reader.pages, 1):
            resources = page.get("/Resources")
            xobjects = resources.get_object().get("/XObject") if resources is not None else None
            if xobjects is not None and len(xobjects.get_object()) > 0:
                found.add(number)
    except Exception as exc:  # noqa: BLE001 - a broken resource dictionary only means no figures are read there
        log.info("Looking for figures failed: %s", exc)
    with_text = {p.number for p in pages if p.text and not p.ocr}
    return sorted((found | short) & with_text)
