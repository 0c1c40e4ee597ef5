"""Parsing, OCR and chunking of one file, as done inside a parser process (see ``rag.ingestion.pool`` for the
processes).

Jobs and results are plain records sent through a pipe. A file is read in up to three tasks: its text layer
(``ParseJob``, which lists the pages without usable text when they are to be read by OCR), each such page
(``PageJob``), and the assembly of the pages OCR read into the document, then chunking (``FinishJob``). Problems
with the document become an error result with a message for the user; the process itself is kept running, except
after it hit its memory cap. ``parse_file`` does all of it in this process, one page after another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from rag.core.errors import DocumentError, RagError
from rag.core.records import Chunk, Page, ParsedDocument
from rag.ingestion.chunking import chunk_document
from rag.ingestion.documents import load_pdf, pages_to_ocr, with_figures, with_ocr
from rag.ingestion.ocr import FigureOptions, OcrOptions, figure_candidates, missing, read_figures, read_page

log = logging.getLogger(__name__)

# Kinds of failure that belong to the parser process rather than to the document's content.
TIME_LIMIT = "time limit"
MEMORY_LIMIT = "memory limit"
CRASHED = "parser crashed"
READY = "ready"  # a new worker's first message: the time limit of its first task starts then, not at spawn
STARTUP_S = 60.0  # how long a new worker may take to start (imports on a busy machine take seconds)


@dataclass(frozen=True)
class ParseJob:
    """One file to parse and chunk, with the limits to apply and how to OCR pages without a text layer."""

    path: str
    file_name: str
    max_bytes: int
    max_pages: int
    chunk_tokens: int
    chunk_overlap: int
    tokenizer: str | None = None
    ocr: str = "off"  # RAG_OCR: "auto", "off" or "force"
    ocr_options: OcrOptions = field(default_factory=OcrOptions)
    ocr_cache: str | None = None  # a JSON file keeping this file's OCR'd pages (see rag.ingestion.ocr.to_json)
    figures: FigureOptions | None = None  # read the words inside figures of pages with a text layer (None: don't)


@dataclass(frozen=True)
class ParseResult:
    """A parsed and chunked file, or why it could not be read (``error`` is a message for the user).

    ``seconds`` is the time its text layer took to read, ``ocr_seconds`` the time its pages took to OCR (summed over
    the workers that read them), ``chunk_seconds`` the time chunking took. ``ocr_todo`` lists the pages still to be
    read by OCR (only between a worker and the pool: results the pool hands out have none).
    """

    job: ParseJob
    document: ParsedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0
    chunk_seconds: float = 0.0
    ocr_seconds: float = 0.0
    ocr_todo: list[int] = field(default_factory=list)
    figure_seconds: float = 0.0  # the time reading the words inside figures took (part of ``seconds``)


@dataclass(frozen=True)
class PageJob:
    """Read one page by OCR."""

    path: str
    number: int
    options: OcrOptions


@dataclass(frozen=True)
class PageResult:
    """A page read by OCR (``page``, its text not yet cleaned), or why it could not be."""

    number: int
    page: Page | None = None
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class FinishJob:
    """Put the pages OCR read into a document, then chunk it."""

    result: ParseResult
    read: dict[int, Page]
    failed: dict[int, str]


# --- inside a worker process ----------------------------------------------------------------------------------------
def parse_file(job: ParseJob, memory_mb: int = 0) -> ParseResult:
    """Parse, OCR and chunk one file in this process (one page after another); problems become an error result.

    The pool does the same in parallel (``ParserPool.parse``). ``memory_mb`` is the cap this process runs under
    (only named in the message when it is hit).
    """
    result = _read(job, memory_mb)
    if not result.ocr_todo:
        return result
    read: dict[int, Page] = {}
    failed: dict[int, str] = {}
    seconds = 0.0
    for number in result.ocr_todo:
        page = _ocr_page(PageJob(job.path, number, job.ocr_options))
        seconds += page.seconds
        if page.page is not None:
            read[number] = page.page
        else:
            failed[number] = page.error or "unreadable"
    return _finish(FinishJob(replace(result, ocr_seconds=seconds), read, failed), memory_mb)


def _read(job: ParseJob, memory_mb: int) -> ParseResult:
    """Read the file's text layer; chunk it, or list the pages OCR must read first."""
    started = time.perf_counter()

    def read() -> ParseResult:
        doc = load_pdf(Path(job.path), job.file_name, max_bytes=job.max_bytes, max_pages=job.max_pages,
                       ocr=job.ocr, ocr_missing=lambda: missing(job.ocr_options))
        todo = pages_to_ocr(doc, job.ocr)
        cannot = missing(job.ocr_options) if todo else None
        if cannot:
            log.warning("%s: %d page(s) not read by OCR: %s", job.file_name, len(todo), cannot)
            todo = []
        doc, figure_seconds = _figures(job, doc)
        parsed = time.perf_counter()
        if todo:
            return ParseResult(job, document=doc, seconds=parsed - started, ocr_todo=todo,
                               figure_seconds=figure_seconds)
        chunks = chunk_document(doc, job.chunk_tokens, job.chunk_overlap, job.tokenizer)
        return ParseResult(job, document=doc, chunks=chunks, seconds=parsed - started,
                           chunk_seconds=time.perf_counter() - parsed, figure_seconds=figure_seconds)

    return _guarded(job, memory_mb, started, read)


def _figures(job: ParseJob, doc: ParsedDocument) -> tuple[ParsedDocument, float]:
    """``doc`` with the words inside the figures of its text pages that their text layer lacks (when ``job`` asks
    for them and the OCR engine is here), and the seconds that took."""
    if job.figures is None or job.ocr == "force":  # with "force" OCR reads whole pages, figures included
        return doc, 0.0
    started = time.perf_counter()
    candidates = figure_candidates(job.path, doc.pages)
    if not candidates:
        return doc, time.perf_counter() - started
    read = read_figures(job.path, doc.pages, job.ocr_options, job.figures, candidates,
                        unavailable=lambda: missing(job.ocr_options))
    return with_figures(doc, read), time.perf_counter() - started


def _finish(task: FinishJob, memory_mb: int) -> ParseResult:
    """Merge the OCR'd pages into the document and chunk it."""
    result = task.result
    job = result.job
    started = time.perf_counter()

    def finish() -> ParseResult:
        if result.document is None:
            raise DocumentError(f"{job.file_name} was not read.")
        for number, why in sorted(task.failed.items()):
            log.warning("%s: page %d could not be read by OCR: %s", job.file_name, number, why)
        doc = with_ocr(result.document, task.read, task.failed)
        chunks = chunk_document(doc, job.chunk_tokens, job.chunk_overlap, job.tokenizer)
        return replace(result, document=doc, chunks=chunks, ocr_todo=[],
                       chunk_seconds=time.perf_counter() - started)

    return _guarded(job, memory_mb, started, finish, seconds=result.seconds)


def _guarded(job: ParseJob, memory_mb: int, started: float, work: Callable[[], ParseResult],
             seconds: float = 0.0) -> ParseResult:
    """Run ``work``; a problem with the document (or this process's memory cap) becomes an error result."""
    try:
        return work()
    except DocumentError as exc:
        return ParseResult(job, error=str(exc), error_kind=exc.reason, seconds=seconds or time.perf_counter() - started)
    except MemoryError:
        pass  # answered below, once the frames that hold the memory are gone
    except RecursionError:
        return ParseResult(job, error=f"{job.file_name} is damaged: its structure nests too deeply to read.",
                           error_kind="corrupt", seconds=time.perf_counter() - started)
    except RagError as exc:  # e.g. a missing optional package: the message says what to install
        return ParseResult(job, error=str(exc), error_kind="missing dependency", seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - a reader bug on a malformed file must not take the process with it
        log.exception("Reading %s failed", job.file_name)
        detail = str(exc)[:160] or type(exc).__name__
        return ParseResult(job, error=f"{job.file_name} is damaged: the PDF reader failed on it ({detail}). Try "
                                      "re-saving it with a PDF viewer's \"Save as\" or \"Print to PDF\".",
                           error_kind="corrupt", seconds=time.perf_counter() - started)
    limit = f"the limit of {memory_mb} MB" if memory_mb else "the memory available"
    return ParseResult(job, error=f"{job.file_name} needs more memory to read than {limit} (setting "
                                  "RAG_PARSE_MEMORY_MB) and was skipped. The PDF may be malformed; if it is a "
                                  "genuine large document, raise the limit.",
                       error_kind=MEMORY_LIMIT, seconds=time.perf_counter() - started)


def _ocr_page(task: PageJob) -> PageResult:
    """Read one page by OCR; a failure becomes an error result naming the page."""
    started = time.perf_counter()
    try:
        page = read_page(task.path, task.number, task.options)
        return PageResult(task.number, page=page, seconds=time.perf_counter() - started)
    except MemoryError:
        pass  # answered below, once the frames that hold the memory are gone
    except RagError as exc:
        return PageResult(task.number, error=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one page the renderer or the engine chokes on must not lose the file
        log.exception("OCR of page %d of %s failed", task.number, task.path)
        return PageResult(task.number, error=f"OCR failed ({str(exc)[:160] or type(exc).__name__})",
                           seconds=time.perf_counter() - started)
    return PageResult(task.number, error="it needs more memory to read than the parser's limit (setting "
                       "RAG_PARSE_MEMORY_MB)", error_kind=MEMORY_LIMIT, seconds=time.perf_counter() - started)


def _few_malloc_arenas() -> None:
    """Have glibc share two malloc arenas among this process's threads. By default each thread that allocates
    (onnxruntime's and OpenCV's, while reading by OCR) reserves an arena of its own, 64 MB of address space each,
    which the memory cap counts although little of it is used."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def worker_main(conn: Connection, memory_mb: int) -> None:
    """Loop of a worker process: receive a task, send back its result; None ends the loop."""
    # pypdf warns about every repair it makes; the outcome reaches the user through the result instead.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if memory_mb > 0:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):  # not on this platform: run without the cap
            pass
        _few_malloc_arenas()
    try:  # load the libraries before saying ready: a file's time limit then measures its own reading only
        import langchain_text_splitters  # noqa: F401
        import pypdf  # noqa: F401

        from rag.text.tokencount import language_of

        language_of("warm up")  # the language detector chunking uses for each page's token counts
    except ImportError:  # reported when the first file needs them
        pass
    conn.send(READY)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        if isinstance(task, PageJob):
            result: Any = _ocr_page(task)
        elif isinstance(task, FinishJob):
            result = _finish(task, memory_mb)
        else:
            result = _read(task, memory_mb)
        conn.send(result)
        if result.error_kind == MEMORY_LIMIT:
            return  # a heap that hit its cap may stay fragmented: the pool starts a fresh process
