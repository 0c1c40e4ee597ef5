"""Ingestion: files → parsed and chunked in worker processes → embedded → written to the store, as events.

Each file is indexed whole or not at all. Files already indexed (same bytes) are recognised by content hash and
skipped; a file whose name is indexed with other bytes is a new version that replaces the old one once it is
fully written. One bad file never stops the others; a model server that fails, a full disk or a read-only data
folder stops the run, since every later file would fail the same way, and leaves nothing half-written. Every file
gets a result either way, saying what happened and what to do.

Small files are embedded together: a file's last, partial batch of chunks is filled with the chunks of the files
parsed after it and ready by then, so a folder of one-page PDFs costs one embedding request per
``RAG_EMBED_BATCH_SIZE`` chunks rather than one per file (``RAG_EMBED_ACROSS_FILES``). Each file is still written and
committed on its own, in order. When such a request fails, each of its files is tried on its own: only a file the
model can't embed fails; when they all fail, or the server is away, the run stops as above.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generator, Iterator, Sequence

from rag.core.config import Settings
from rag.core.datadir import is_fatal, storage_problem, write_errors
from rag.core.errors import (
    BackendUnavailable,
    EmbeddingSizeChanged,
    ModelError,
    ModelNotFound,
    RagError,
    StoreError,
    WrongModelKind,
)
from rag.core.events import (
    ChunksMade,
    Embedded,
    Failure,
    FileFailed,
    FileIndexed,
    FileStarted,
    IngestEvent,
    PageRead,
    PagesParsed,
)
from rag.core.records import DocumentInfo
from rag.ingestion.ocr import FigureOptions, OcrOptions, to_json
from rag.ingestion.pool import PageProgress, ParserPool
from rag.ingestion.workers import ParseJob, ParseResult
from rag.models.embedder import Embedder
from rag.search.pageimages import render_page
from rag.search.store import Store

log = logging.getLogger(__name__)

PDF_SUFFIXES = {".pdf"}
OCR_CACHE = "ocr-cache"  # under the data dir: pages read by OCR for files not indexed yet (see rag.ingestion.workers)
OCR_CACHE_DAYS = 14  # pages read by OCR for a file whose ingest stopped are kept this long for it to be added again
READ_AHEAD_FILES = 16  # files parsed ahead of the one being embedded, when small files fill a batch together
# Model errors that say nothing about the texts sent: every later request would fail the same way.
_SERVER_TROUBLE = (BackendUnavailable, ModelNotFound, WrongModelKind, EmbeddingSizeChanged)


def prune_ocr_cache(folder: Path, max_age_s: float) -> int:
    """Remove the OCR'd pages kept for files whose ingest stopped and that were not added again within
    ``max_age_s`` seconds (a file added again resumes from them; an indexed one keeps its pages beside its PDF).
    Returns how many were removed; a file that can't be removed is left for the next start."""
    removed = 0
    cutoff = time.time() - max_age_s
    for path in folder.iterdir() if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            log.warning("Could not remove the stale OCR cache file %s", path)
    if removed:
        log.info("Removed %d OCR cache file(s) of files not added again within %d days", removed, max_age_s // 86400)
    return removed


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: where its bytes are and the name the user knows it by (uploads live in temp files)."""

    path: Path
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", safe_file_name(self.name))

    @classmethod
    def of(cls, item: Path | str | SourceFile) -> SourceFile:
        """Accept a path or a SourceFile."""
        if isinstance(item, SourceFile):
            return item
        path = Path(item)
        return cls(path, path.name)


def safe_file_name(name: str) -> str:
    """A display name from whatever a browser or shell sent: no folders, no control characters, bounded length.

    Names are only shown and compared; files are stored under their content hash, never under this name.
    """
    base = re.split(r"[\\/]", str(name))[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().lstrip(".")
    if len(base) > 180:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:170] + dot + ext[:8]) if dot else base[:180]
    return base or "document.pdf"


def human_size(size: int) -> str:
    """A byte count as people write it: "2.4 MB", "812 KB"."""
    return f"{size / 1048576:.1f} MB" if size >= 1048576 else f"{max(1, round(size / 1024))} KB"


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given, and the PDFs inside folders (recursively, sorted)."""
    out: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            out.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in PDF_SUFFIXES))
        else:
            out.append(item)
    return out


def content_id(path: Path) -> str:
    """A document's id: the SHA-256 of its bytes (first 32 hex digits)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


@dataclass(eq=False)
class _Entry:
    """A file of a run on its way through: its place (``number``), what was found before parsing (``problem``), its
    parse result, the OCR progress to report at its turn (``read``), and the vectors of its chunks so far."""

    number: int
    file: SourceFile
    doc_id: str | None
    problem: str | None
    result: ParseResult | None = None
    read: list[IngestEvent] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    announced: int = 0  # chunks whose embedding was reported (Embedded)
    failure: ModelError | None = None  # the model could not embed its chunks

    @property
    def failed_parse(self) -> bool:
        return self.result is not None and (self.result.error is not None or self.result.document is None)

    @property
    def document(self) -> Any:
        return self.result.document if self.result is not None else None

    @property
    def chunks(self) -> list[Any]:
        return list(self.result.chunks) if self.result is not None else []

    @cached_property
    def texts(self) -> list[str]:
        return [c.embed_text for c in self.chunks]


class _Reader:
    """The parser pool's results in job order; the OCR progress of files read ahead is kept for their turn."""

    def __init__(self, results: Iterator[ParseResult | PageProgress], pool: ParserPool) -> None:
        self._results = results
        self._pool = pool
        self._index = 0  # the job whose result comes next
        self._progress: dict[int, PageProgress] = {}

    def next(self, name: str) -> Generator[IngestEvent, None, ParseResult]:
        """The next file's parse result (waiting for it), reporting its pages read by OCR as they come back."""
        index = self._index
        self._index += 1
        if index in self._progress:
            p = self._progress.pop(index)
            yield PageRead(name, p.page, p.done, p.total)
        for item in self._results:
            if isinstance(item, ParseResult):
                return item
            if item.index == index:
                yield PageRead(name, item.page, item.done, item.total)
            else:
                self._progress[item.index] = item
        raise RuntimeError("the parser pool ended before the last file was read")

    def ready(self) -> bool:
        """Whether the next file's result is there, so that ``take`` doesn't wait."""
        return self._pool.ready() > 0

    def take(self, name: str) -> tuple[ParseResult, list[IngestEvent]]:
        """The next file's result (once ``ready``), and its OCR progress, to report at its turn."""
        events: list[IngestEvent] = []
        steps = self.next(name)
        while True:
            try:
                events.append(next(steps))
            except StopIteration as done:
                return done.value, events

    def close(self) -> None:
        """Stop the parsing (the parser processes still busy are stopped)."""
        close = getattr(self._results, "close", None)
        if close is not None:
            close()


class Ingestor:
    """Runs ingestion for an engine's store and embedder, reusing one pool of parser processes."""

    visual: Any = None  # a page-image embedder (rag.models.visual.PageEmbedder): pages are rendered and embedded too

    def __init__(self, settings: Settings, embedder: Embedder, store: Store) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.pool = ParserPool(settings.effective_parse_workers, settings.parse_timeout, settings.parse_memory_mb,
                               page_timeout_s=settings.ocr_page_timeout)
        self.timings: Counter[str] = Counter()  # seconds per stage (parse, OCR and chunk are summed over workers)
        prune_ocr_cache(settings.data_dir / OCR_CACHE, OCR_CACHE_DAYS * 86400)

    def ingest(self, items: Sequence[Path | str | SourceFile], replace: bool = True) -> Iterator[IngestEvent]:
        """Index the files; yield progress events. With ``replace``, a new version replaces the old one.

        Each file's events come together and in order (FileStarted … FileIndexed or FileFailed). A file's full
        batches of chunks are embedded on their own; its last, partial batch is filled with the chunks of the small
        files parsed after it and ready by then (``RAG_EMBED_ACROSS_FILES``), and each file is then written on its
        own."""
        files = [SourceFile.of(i) for i in items]
        entries: deque[_Entry] = deque()
        jobs: list[ParseJob] = []
        seen: set[str] = set()
        for number, f in enumerate(files, 1):
            doc_id, problem = self._precheck(f)
            if doc_id and doc_id in seen:
                problem = "duplicate"
            if doc_id and not problem:
                seen.add(doc_id)
                jobs.append(self._job(f, doc_id))
            entries.append(_Entry(number, f, doc_id, problem))

        across = self.settings.embed_across_files
        lookahead = max(2 * self.pool.size, READ_AHEAD_FILES) if across else None
        reader = _Reader(self.pool.parse(jobs, lookahead), self.pool)
        stopped: str | None = None  # why the run stopped: the files after that one are not tried
        try:
            while entries:
                head = entries.popleft()
                yield FileStarted(head.file.name, head.number, len(files))
                if head.problem or stopped:
                    yield self._unparsed(head, stopped)
                    continue
                if head.result is None:
                    head.result = yield from reader.next(head.file.name)
                yield from head.read
                if head.failed_parse:
                    yield self._parse_failure(head)
                    continue
                yield from self._parsed(head)
                # The file's full batches on their own, with progress; its last, partial batch with the files after.
                stopped = yield from self._embed_full_batches(head)
                if stopped:
                    continue
                group = [head] + (self._gather(entries, reader, head) if across else [])
                stopper = self._embed_together(group)
                for entry in group:
                    if entry is not head:
                        yield FileStarted(entry.file.name, entry.number, len(files))
                        yield from entry.read
                    if entry.problem or stopped:
                        yield self._unparsed(entry, stopped)
                    elif entry.failed_parse:
                        yield self._parse_failure(entry)
                    elif entry.failure is not None:
                        yield FileFailed(entry.file.name, f"{entry.failure} Nothing from {entry.file.name} was kept: "
                                         "add it again once that is fixed.", "model")
                        if entry is stopper:  # the model is away or wrong: the files after it are not tried
                            stopped = str(entry.failure)
                    else:
                        if entry is not head:
                            yield from self._parsed(entry)
                        if entry.announced < len(entry.vectors):
                            yield Embedded(entry.file.name, len(entry.vectors), len(entry.texts))
                        stopped = yield from self._store_file(entry, replace)
        finally:
            reader.close()
        if stopped:
            yield Failure(stopped)

    def close(self) -> None:
        """Stop the parser processes."""
        self.pool.close()

    # --- steps --------------------------------------------------------------------------------------------------
    def _precheck(self, f: SourceFile) -> tuple[str | None, str | None]:
        """(doc_id, problem): problems found without parsing (missing, too large, already indexed)."""
        try:
            size = f.path.stat().st_size
        except OSError:
            return None, f"{f.name} was not found or can't be read."
        if size > self.settings.max_upload_bytes:
            return None, (f"{f.name} is {human_size(size)}; the limit is {human_size(self.settings.max_upload_bytes)} "
                          "(setting RAG_MAX_UPLOAD_MB). Split the PDF, or raise the limit.")
        doc_id = content_id(f.path)
        try:
            existing = self.store.get(doc_id)
        except write_errors() as exc:
            return None, f"{f.name} was not indexed: {self._problem(exc)}"
        if existing and existing.status == "ready":
            return doc_id, "indexed"
        return doc_id, None

    def _job(self, f: SourceFile, doc_id: str) -> ParseJob:
        s = self.settings
        return ParseJob(path=str(f.path), file_name=f.name, max_bytes=s.max_upload_bytes, max_pages=s.max_pages,
                        chunk_tokens=s.chunk_tokens, chunk_overlap=s.chunk_overlap, tokenizer=s.tokenizer,
                        ocr=s.ocr, ocr_options=OcrOptions.from_settings(s), ocr_cache=str(self._ocr_cache(doc_id)),
                        figures=FigureOptions.from_settings(s))

    def _ocr_cache(self, doc_id: str) -> Path:
        return self.settings.data_dir / OCR_CACHE / f"{doc_id}.json"

    def _unparsed(self, entry: _Entry, stopped: str | None) -> IngestEvent:
        """The last word on a file that is not parsed: found before parsing, or not tried because the run stopped."""
        f = entry.file
        if entry.problem in ("duplicate", "indexed"):
            return self._already(f, entry.doc_id)
        if entry.problem:
            return FileFailed(f.name, entry.problem)
        return FileFailed(f.name, f"{f.name} was not indexed because the run stopped: {stopped} Add it again once "
                          "that is fixed.", "stopped")

    @staticmethod
    def _parse_failure(entry: _Entry) -> FileFailed:
        result = entry.result
        return FileFailed(entry.file.name, (result.error if result else None) or "unreadable",
                          (result.error_kind if result else None) or "error")

    def _parsed(self, entry: _Entry) -> Iterator[IngestEvent]:
        """A file was read: its pages and chunks."""
        result, doc = entry.result, entry.document
        if result is None:
            return
        self.timings.update(parse=result.seconds - result.figure_seconds, chunk=result.chunk_seconds,
                            ocr=result.ocr_seconds, figures=result.figure_seconds)
        yield PagesParsed(entry.file.name, doc.page_count, doc.pages_without_text, doc.ocr_pages)
        yield ChunksMade(entry.file.name, len(entry.texts))

    def _gather(self, entries: deque[_Entry], reader: _Reader, head: _Entry) -> list[_Entry]:
        """The files after ``head`` whose chunks fill its last batch: taken while their parse results are ready
        without waiting (and files with nothing to parse, in between). A file too large for the room left starts
        the next batch."""
        room = self.embedder.batch_size - (len(head.texts) - len(head.vectors))
        group: list[_Entry] = []
        while entries and room > 0:
            entry = entries[0]
            if not entry.problem and entry.result is None:
                if not reader.ready():
                    break
                entry.result, entry.read = reader.take(entry.file.name)
                if not entry.failed_parse and len(entry.texts) > room:
                    break  # it stays first in line, parsed
            entries.popleft()
            group.append(entry)
            if not entry.problem and not entry.failed_parse:
                room -= len(entry.texts)
        return group

    def _embed_full_batches(self, entry: _Entry) -> Generator[IngestEvent, None, str | None]:
        """Embed a file's full batches of chunks, reporting each; the partial last one is left for
        ``_embed_together``. Returns a message when the whole run must stop (the file has failed then)."""
        step = self.embedder.batch_size
        full = len(entry.texts) // step * step
        started = time.perf_counter()
        try:
            for i in range(0, full, step):
                entry.vectors.extend(self.embedder.embed_documents(entry.texts[i:i + step]))
                entry.announced = len(entry.vectors)
                yield Embedded(entry.file.name, len(entry.vectors), len(entry.texts))
        except ModelError as exc:
            yield FileFailed(entry.file.name, f"{exc} Nothing from {entry.file.name} was kept: add it again once "
                             "that is fixed.", "model")
            return str(exc)
        finally:
            self.timings["embed"] += time.perf_counter() - started
        return None

    def _embed_together(self, group: list[_Entry]) -> _Entry | None:
        """Embed the chunks of ``group`` not embedded yet, in one batch; when that fails, each file on its own, so
        that only the files the model can't embed fail (``_Entry.failure``). Returns the file whose failure stops
        the run: the model is away or wrong (the first file then), or every file failed on its own."""
        todo = [e for e in group if not e.problem and not e.failed_parse and len(e.vectors) < len(e.texts)]
        if not todo:
            return None
        started = time.perf_counter()
        try:
            vectors = self.embedder.embed_documents([t for e in todo for t in e.texts[len(e.vectors):]])
        except ModelError as exc:
            if len(todo) == 1 or isinstance(exc, _SERVER_TROUBLE):
                todo[0].failure = exc
                return todo[0]
            log.warning("Embedding %d files together failed (%s); embedding each on its own", len(todo), exc)
            return self._embed_each(todo)
        finally:
            self.timings["embed"] += time.perf_counter() - started
        for entry in todo:
            took = len(entry.texts) - len(entry.vectors)
            entry.vectors.extend(vectors[:took])
            del vectors[:took]
        return None

    def _embed_each(self, todo: list[_Entry]) -> _Entry | None:
        """Embed each file's remaining chunks on its own (after their batch failed); see ``_embed_together``."""
        for entry in todo:
            try:
                entry.vectors.extend(self.embedder.embed_documents(entry.texts[len(entry.vectors):]))
            except ModelError as exc:
                entry.failure = exc
                if isinstance(exc, _SERVER_TROUBLE):
                    return entry
        failed = [e for e in todo if e.failure is not None]
        if len(failed) == len(todo):  # none went through on its own: the server is at fault, not the files
            return failed[0]
        return None

    def _already(self, f: SourceFile, doc_id: str | None) -> FileIndexed:
        info = self.store.get(doc_id) if doc_id else None
        return FileIndexed(f.name, doc_id or "", "already indexed", info.pages if info else 0,
                           info.chunks if info else 0, ocr_pages=info.ocr_pages if info else [])

    def _store_file(self, entry: _Entry, replace: bool) -> Generator[IngestEvent, None, str | None]:
        """Write one embedded file to the store, whole or not at all. Returns a message when the whole run must
        stop."""
        f, doc_id, doc, chunks, vectors = entry.file, str(entry.doc_id), entry.document, entry.chunks, entry.vectors
        page_vectors: list[list[float]] = []
        if self.visual is not None:  # page images, for the visual retriever (RAG_VISUAL)
            started = time.perf_counter()
            try:
                page_vectors = self._embed_pages(f.path, doc.page_count)
            except (ModelError, RagError) as exc:
                yield FileFailed(f.name, f"{exc} Nothing from {f.name} was kept: add it again once that is fixed.",
                                 "model")
                return str(exc)
            self.timings["page images"] += time.perf_counter() - started

        started = time.perf_counter()
        info = DocumentInfo(doc_id=doc_id, file_name=f.name, title=doc.title, pages=doc.page_count,
                            chunks=len(chunks), status="indexing", added_at=time.time(),
                            size_bytes=f.path.stat().st_size, pages_without_text=doc.pages_without_text,
                            ocr_pages=doc.ocr_pages)
        try:
            older = [d for d in self.store.documents_named(f.name) if d.doc_id != doc_id] if replace else []
            self.store.begin(info)
            self.store.add_chunks(doc_id, f.name, doc.title, chunks, vectors)
            self.store.save_file(doc_id, f.path)
            if page_vectors:
                self.store.save_page_vectors(doc_id, self.visual.key, range(1, doc.page_count + 1), page_vectors)
            if doc.ocr_pages or doc.figure_pages:  # the recognised lines, for the viewer to highlight a passage
                self.store.save_ocr(doc_id, to_json(doc.pages, OcrOptions.from_settings(self.settings)))
            self.store.commit(info)
        except write_errors() as exc:
            log.exception("Writing %s failed", f.name)
            self._discard(doc_id)
            problem = self._problem(exc)
            yield FileFailed(f.name, f"{f.name} was not indexed: {problem} Nothing from it was kept: add it again "
                             "once that is fixed.", "store")
            return problem[:1].upper() + problem[1:] if is_fatal(exc) else None  # a full disk fails every file
        self.timings["store"] += time.perf_counter() - started
        self._ocr_cache(doc_id).unlink(missing_ok=True)  # the viewer's copy is kept with the PDF now
        replaced = None
        if replace and older:
            for old in older:
                try:
                    self.store.delete(old.doc_id)
                except write_errors():
                    log.exception("Could not remove the older version of %s; both stay listed", f.name)
            replaced = older[-1].doc_id
        yield FileIndexed(f.name, doc_id, "replaced" if replaced else "indexed", doc.page_count, len(chunks),
                          doc.pages_without_text, replaced, doc.ocr_pages)
        return None

    def _embed_pages(self, path: Path, pages: int) -> list[list[float]]:
        """Each page rendered within ``RAG_VISUAL_MAX_PIXELS`` and embedded by the visual embedder."""
        vectors: list[list[float]] = []
        step = max(1, self.visual.batch_size)
        for first in range(1, pages + 1, step):
            images = [render_page(path, n, self.settings.visual_max_pixels)
                      for n in range(first, min(pages, first + step - 1) + 1)]
            vectors.extend(self.visual.embed_pages(images))
        return vectors

    def _discard(self, doc_id: str) -> None:
        """Remove what was written of a document; if even that fails, it stays unsearchable ("indexing") and the
        next start removes it."""
        try:
            self.store.delete(doc_id)
        except write_errors():
            log.exception("Could not clean up %s; it will be removed at the next start", doc_id)

    def _problem(self, exc: BaseException) -> str:
        """A failed store call in words: a StoreError already says what to do; a disk problem is explained."""
        return str(exc) if isinstance(exc, StoreError) else storage_problem(self.settings.data_dir, exc)
