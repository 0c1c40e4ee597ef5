"""Typed events the engine yields while it works; the CLI and the UI render them and do no engine work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rag.core.records import Citation, Passage


# --- ingestion --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileStarted:
    """A file entered the pipeline."""

    file_name: str
    index: int
    total: int


@dataclass(frozen=True)
class PageRead:
    """A page of the file was read by OCR (``page``): ``done`` of the ``total`` pages OCR reads in it are."""

    file_name: str
    page: int
    done: int
    total: int


@dataclass(frozen=True)
class PagesParsed:
    """The file was read: how many pages, which had no text (even after OCR), and which were read by OCR."""

    file_name: str
    pages: int
    pages_without_text: list[int] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ChunksMade:
    """The pages were split into chunks."""

    file_name: str
    chunks: int


@dataclass(frozen=True)
class Embedded:
    """Embedding progress for a file: ``done`` of ``total`` chunks."""

    file_name: str
    done: int
    total: int


@dataclass(frozen=True)
class FileIndexed:
    """The file is searchable (``status`` "indexed", "replaced" or "already indexed")."""

    file_name: str
    doc_id: str
    status: str
    pages: int
    chunks: int
    pages_without_text: list[int] = field(default_factory=list)
    replaced_doc_id: str | None = None
    ocr_pages: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class FileFailed:
    """The file was not indexed; ``reason`` says why in words a user can act on."""

    file_name: str
    reason: str
    kind: str = "error"


@dataclass(frozen=True)
class Failure:
    """The whole run stopped (e.g. the embedding server is down); nothing partial was kept."""

    message: str


# --- answering --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """A step of answering started (``stage``: "rewriting", "retrieving", "reranking", "generating")."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of the model's reasoning (shown apart from the answer, never sent back to the model)."""

    text: str


@dataclass(frozen=True)
class AnswerDelta:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class Sources:
    """The passages behind the answer: those cited, in citation order, and the other retrieved ones."""

    cited: list[Citation]
    other: list[Passage]
    dropped_citations: int = 0
    query: str = ""


@dataclass(frozen=True)
class Claim:
    """A statement of the answer (``text`` = ``answer[start:end]``) and how its sources bear it out.

    ``cited``: the source numbers the answer wrote; ``citations``: those that hold it once checked (re-pointed ones
    included). ``supported`` is True, False or "re-pointed"; ``reason`` says why when it isn't True.
    """

    text: str
    start: int
    end: int
    citations: list[int]
    cited: list[int]
    supported: bool | str
    reason: str = ""


@dataclass(frozen=True)
class Claims:
    """The answer's statements checked against its sources (after ``Sources``); ``added`` are the passages that
    re-pointed citations now name and the answer had not cited; ``seconds``, how long the check took."""

    claims: list[Claim]
    added: list[Citation] = field(default_factory=list)
    seconds: float = 0.0  # how long the check took

    @property
    def unsupported(self) -> int:
        """Statements no passage the answer was given supports."""
        return sum(1 for c in self.claims if c.supported is False)

    @property
    def repointed(self) -> int:
        """Statements whose citation was moved to the passage that supports them."""
        return sum(1 for c in self.claims if c.supported == "re-pointed")


def claims_record(claims: Claims | None) -> list[dict[str, Any]]:
    """The checked statements as the CLI's ``--json`` and the ``/ask`` API give them (empty before they come)."""
    if claims is None:
        return []
    return [{"text": c.text, "citations": c.citations, "cited": c.cited, "supported": c.supported,
             "reason": c.reason, "start": c.start, "end": c.end} for c in claims.claims]


def passage_record(p: Passage) -> dict[str, Any]:
    """A passage as the CLI's ``--json`` and the ``/ask`` API give it (a chunk never crosses a page: one page;
    ``ocr``: the page was read by OCR; ``page_label``: the number printed on the page; ``figure``: text read inside a
    figure)."""
    return {"doc_id": p.doc_id, "file_name": p.file_name, "title": p.title, "page": p.page_start, "text": p.text,
            "char_start": p.char_start, "char_end": p.char_end, "score": p.score, "ocr": p.ocr,
            "page_label": p.page_name, "figure": p.figure}


def sources_record(sources: Sources | None) -> dict[str, Any]:
    """The sources of an answer as the CLI's ``--json`` and the ``/ask`` API give them (empty before they come)."""
    if sources is None:
        return {"query": "", "cited": [], "other": [], "dropped_citations": 0}
    return {"query": sources.query,
            "cited": [{"number": c.number, **passage_record(c.passage)} for c in sources.cited],
            "other": [passage_record(p) for p in sources.other], "dropped_citations": sources.dropped_citations}


IngestEvent = FileStarted | PageRead | PagesParsed | ChunksMade | Embedded | FileIndexed | FileFailed | Failure
AnswerEvent = Progress | ThinkingDelta | AnswerDelta | Sources | Claims | Failure
