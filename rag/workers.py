"""Parsing and chunking in worker processes, each file under a time and memory cap.

PDF parsing is CPU-bound and, on hostile files, can run away in time or memory. Each file is parsed by a
long-lived worker process; one that overruns its time is killed and replaced, one that hits its memory cap
fails that file with a clear reason (and is replaced), one that dies says how, and the rest of the batch goes on.
A new process's start-up doesn't count against its first file's time. Results come back in job order while the
workers parse ahead, so parsing overlaps with the embedding the caller does meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Iterator, Sequence

from rag.chunking import chunk_document
from rag.documents import load_pdf
from rag.errors import DocumentError, RagError
from rag.models import Chunk, ParsedDocument

log = logging.getLogger(__name__)

# Kinds of failure that belong to the parser process rather than to the document's content.
TIME_LIMIT = "time limit"
MEMORY_LIMIT = "memory limit"
CRASHED = "parser crashed"
_READY = "ready"  # a new worker's first message: the time limit of its first file starts then, not at spawn
STARTUP_S = 60.0  # how long a new worker may take to start (imports on a busy machine take seconds)


@dataclass(frozen=True)
class ParseJob:
    """One file to parse and chunk, with the limits to apply."""

    path: str
    file_name: str
    max_bytes: int
    max_pages: int
    chunk_tokens: int
    chunk_overlap: int
    tokenizer: str | None = None


@dataclass(frozen=True)
class ParseResult:
    """A parsed and chunked file, or why it could not be read (``error`` is a message for the user)."""

    job: ParseJob
    document: ParsedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0
    chunk_seconds: float = 0.0


def parse_file(job: ParseJob, memory_mb: int = 0) -> ParseResult:
    """Parse and chunk one file in this process; document problems become an error result.

    ``memory_mb`` is the cap this process runs under (only named in the message when it is hit).
    """
    started = time.perf_counter()
    out_of_memory = False
    try:
        doc = load_pdf(Path(job.path), job.file_name, max_bytes=job.max_bytes, max_pages=job.max_pages)
        parsed = time.perf_counter()
        chunks = chunk_document(doc, job.chunk_tokens, job.chunk_overlap, job.tokenizer)
    except DocumentError as exc:
        return ParseResult(job, error=str(exc), error_kind=exc.reason, seconds=time.perf_counter() - started)
    except MemoryError:
        out_of_memory = True  # answered below, once the frames that hold the memory are gone
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
    if out_of_memory:
        limit = f"the limit of {memory_mb} MB" if memory_mb else "the memory available"
        return ParseResult(job, error=f"{job.file_name} needs more memory to read than {limit} (setting "
                                      "RAG_PARSE_MEMORY_MB) and was skipped. The PDF may be malformed; if it is a "
                                      "genuine large document, raise the limit.",
                           error_kind=MEMORY_LIMIT, seconds=time.perf_counter() - started)
    return ParseResult(job, document=doc, chunks=chunks, seconds=parsed - started,
                       chunk_seconds=time.perf_counter() - parsed)


def _worker_main(conn: Connection, memory_mb: int) -> None:
    """Loop of a worker process: receive a job, send back its result; None ends the loop."""
    # pypdf warns about every repair it makes; the outcome reaches the user through the result instead.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if memory_mb > 0:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):  # not on this platform: run without the cap
            pass
    try:  # load the libraries before saying ready: a file's time limit then measures its own reading only
        import langchain_text_splitters  # noqa: F401
        import pypdf  # noqa: F401

        from rag.tokencount import language_of

        language_of("warm up")  # the language detector chunking uses for each page's token counts
    except ImportError:  # reported when the first file needs them
        pass
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        result = parse_file(job, memory_mb)
        conn.send(result)
        if result.error_kind == MEMORY_LIMIT:
            return  # a heap that hit its cap may stay fragmented: the pool starts a fresh process


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, memory_mb: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.job_index = -1
        self.started = False  # True once the process said it is ready
        self.deadline = time.monotonic() + STARTUP_S

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class ParserPool:
    """A few worker processes that parse files under a per-file time and memory cap."""

    def __init__(self, workers: int, timeout_s: float, memory_mb: int) -> None:
        self.size = max(1, workers)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._ctx = mp.get_context("spawn")  # never fork: the app has threads (web server, model clients)
        self._idle: list[_Worker] = []

    def parse(self, jobs: Sequence[ParseJob]) -> Iterator[ParseResult]:
        """Parse ``jobs`` in parallel; yield their results in job order."""
        queue = deque(range(len(jobs)))
        done: dict[int, ParseResult] = {}
        busy: list[_Worker] = []
        next_out = 0
        lookahead = 2 * self.size
        try:
            while next_out < len(jobs):
                while queue and len(busy) < self.size and len(done) + len(busy) < lookahead:
                    index = queue.popleft()
                    worker = self._start(jobs[index])
                    if worker is None:
                        done[index] = _failed(jobs[index], f"{jobs[index].file_name} was not read: no PDF reader "
                                              "process could be started (is the machine out of memory?).", CRASHED)
                        continue
                    worker.job_index = index
                    if worker.started:
                        worker.deadline = time.monotonic() + self.timeout_s
                    busy.append(worker)
                if next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                    continue
                if not busy:
                    continue
                timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = wait([w.conn for w in busy], timeout=timeout)
                for worker in list(busy):
                    index = worker.job_index
                    if worker.conn in ready:
                        try:
                            message = worker.conn.recv()
                            if message == _READY:  # a new process is up: its file's time starts now
                                worker.started = True
                                worker.deadline = time.monotonic() + self.timeout_s
                                continue
                            done[index] = message
                            busy.remove(worker)
                            if done[index].error_kind == MEMORY_LIMIT:
                                worker.kill()  # it exits by itself; make sure of it
                            else:
                                self._idle.append(worker)
                            continue
                        except (EOFError, OSError):
                            done[index] = _failed(jobs[index], self._crash_message(jobs[index], worker), CRASHED)
                    elif time.monotonic() >= worker.deadline and not worker.started:
                        done[index] = _failed(jobs[index], f"{jobs[index].file_name} was not read: the PDF reader "
                                              f"process did not start within {STARTUP_S:g} s (is the machine "
                                              "overloaded?).", CRASHED)
                    elif time.monotonic() >= worker.deadline:
                        done[index] = _failed(jobs[index], f"{jobs[index].file_name} took longer than "
                                              f"{self.timeout_s:g} s to read and was skipped (setting "
                                              "RAG_PARSE_TIMEOUT). The PDF may be malformed; if it is a genuine "
                                              "large document, raise the limit.", TIME_LIMIT)
                    else:
                        continue
                    busy.remove(worker)
                    worker.kill()
        finally:
            for worker in busy:  # abandoned mid-run: their results would be stale
                worker.kill()

    def _start(self, job: ParseJob) -> _Worker | None:
        """Hand ``job`` to an idle worker (one that died while idle is replaced); None if none can take it."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                break
            worker.kill()
        else:
            worker = None
        for _ in range(2):
            try:
                worker = worker or _Worker(self._ctx, self.memory_mb)
                worker.conn.send(job)
                return worker
            except (OSError, ValueError) as exc:  # a broken pipe, or no process could be started
                log.warning("A PDF reader process failed to take %s: %s", job.file_name, exc)
                if worker is not None:
                    worker.kill()
                worker = None
        return None

    def _crash_message(self, job: ParseJob, worker: _Worker) -> str:
        """Why a worker vanished mid-file, as far as its exit status tells."""
        worker.process.join(2)
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        memory = (f" or needs more memory than the limit of {self.memory_mb} MB (setting RAG_PARSE_MEMORY_MB)"
                  if self.memory_mb else "")
        return (f"{job.file_name} made the PDF reader process fail ({how}). The file is probably malformed"
                f"{memory}.")

    def close(self) -> None:
        """Stop the idle workers."""
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(2)
            if worker.process.is_alive():
                worker.kill()
        self._idle.clear()


def _failed(job: ParseJob, message: str, kind: str) -> ParseResult:
    log.warning(message)
    return ParseResult(job, error=message, error_kind=kind)
