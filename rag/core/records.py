"""Records that flow through the engine: pages, chunks, documents and passages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OcrLine:
    """A line of text recognised on a page image, and where it is: ``box`` is (x0, y0, x1, y1) as fractions (0-1)
    of the page's width and height, origin top-left."""

    text: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Page:
    """One page of a PDF: its 1-based number and its cleaned text (may be empty for image-only pages).

    A page read by OCR has ``ocr`` set and keeps its recognised ``lines`` in reading order (the text is made of
    them), so a citation can highlight them on the page image.
    """

    number: int
    text: str
    ocr: bool = False
    lines: tuple[OcrLine, ...] = ()
    label: str = ""  # the page number printed on the page (the PDF's page labels: "iv", "14", "A-3"); "" = none
    figure_start: int = -1  # where text read inside the page's figures starts in ``text`` (-1: none); its lines
    # are then ``lines`` (with ``ocr`` False), boxes as on an OCR'd page

    @property
    def figure_text(self) -> str:
        """The words read by OCR inside the page's figures that its text layer lacks ("" for none)."""
        return self.text[self.figure_start:] if self.figure_start >= 0 else ""


@dataclass(frozen=True)
class ParsedDocument:
    """A PDF turned into pages, with what a user should know about it."""

    file_name: str
    title: str
    pages: list[Page]
    page_count: int
    pages_without_text: list[int] = field(default_factory=list)

    @property
    def ocr_pages(self) -> list[int]:
        """Pages whose text was read by OCR."""
        return [p.number for p in self.pages if p.ocr]

    @property
    def figure_pages(self) -> list[int]:
        """Pages with text read by OCR inside their figures."""
        return [p.number for p in self.pages if p.figure_start >= 0]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to embed and retrieve.

    ``char_start``/``char_end`` are offsets into the document's text as ``document_text`` joins it (pages in
    order, separated by a form feed); ``page_start``/``page_end`` are the 1-based pages the chunk covers.
    ``context`` is a short header (document title, pages) embedded and indexed with the text but not shown.
    """

    index: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    context: str = ""
    ocr: bool = False  # the chunk's page was read by OCR
    page_label: str = ""  # the printed label of ``page_start`` where it differs from the number ("" otherwise)
    figure: bool = False  # the chunk is text read by OCR inside a figure of its page

    @property
    def embed_text(self) -> str:
        """What the embedder and the lexical index see: the header, then the text."""
        return indexed_text(self.context, self.text)


def indexed_text(context: str, text: str) -> str:
    """A chunk as the embedder and the lexical index see it: its header (if any), then its text."""
    return f"{context}\n{text}" if context else text


@dataclass(frozen=True)
class DocumentInfo:
    """A document as the registry knows it."""

    doc_id: str
    file_name: str
    title: str
    pages: int
    chunks: int
    status: str  # "ready" | "indexing"
    added_at: float
    size_bytes: int = 0
    pages_without_text: list[int] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)  # pages whose text was read by OCR


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with where it came from and how it scored."""

    chunk_id: str
    doc_id: str
    file_name: str
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    score: float = 0.0
    title: str = ""
    ocr: bool = False  # the passage comes from a page read by OCR
    page_label: str = ""  # the printed label of ``page_start`` where it differs from the number ("" otherwise)
    figure: bool = False  # the passage is text read by OCR inside a figure

    @property
    def page_name(self) -> str:
        """The page as a reader names it: the printed label where the PDF has one that differs from the page's
        position ("iv", "14"), else the 1-based position."""
        return self.page_label or str(self.page_start)


@dataclass(frozen=True)
class Citation:
    """A source number used in an answer, and the passage it points at."""

    number: int
    passage: Passage


@dataclass(frozen=True)
class Health:
    """Whether the models answer: ``problems`` are messages that each say what to run or set to fix them.

    ``backend`` says where the models run and why (e.g. "in-process models (Ollama not found at …)"), ``loading``
    lists models still downloading or loading (not a problem: wait), ``index`` names the vector index in use, and
    ``reranker`` says which reranker runs where ("" when reranking is off).
    """

    embedder: str
    chat: str
    problems: list[str] = field(default_factory=list)
    backend: str = ""
    loading: list[str] = field(default_factory=list)
    index: str = ""
    reranker: str = ""

    @property
    def ok(self) -> bool:
        """True when both models are ready."""
        return not self.problems and not self.loading
