"""Parsing and chunking in worker processes, each file under a time and memory cap.

PDF parsing is CPU-bound and, on hostile files, can run away in time or memory. Each file is parsed by a
long-lived worker process; one that overruns its time is killed and replaced, one that hits its memory cap
fails that file with a clear reason, and the rest of the batch goes on. Results come back in job order while the
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
from rag.errors import DocumentError
from rag.models import Chunk, ParsedDocument

log = logging.getLogger(__name__)


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


def parse_file(job: ParseJob) -> ParseResult:
    """Parse and chunk one file in this process; document problems become an error result."""
    started = time.perf_counter()
    try:
        doc = load_pdf(Path(job.path), job.file_name, max_bytes=job.max_bytes, max_pages=job.max_pages)
        parsed = time.perf_counter()
        chunks = chunk_document(doc, job.chunk_tokens, job.chunk_overlap, job.tokenizer)
    except DocumentError as exc:
        return ParseResult(job, error=str(exc), error_kind=exc.reason, seconds=time.perf_counter() - started)
    except MemoryError:
        return ParseResult(job, error=f"{job.file_name} needs more memory to parse than the limit allows "
                                      "(setting RAG_PARSE_MEMORY_MB). The PDF may be malformed.",
                           error_kind="too large", seconds=time.perf_counter() - started)
    except RecursionError:
        return ParseResult(job, error=f"{job.file_name} is damaged: its structure nests too deeply to read.",
                           error_kind="corrupt", seconds=time.perf_counter() - started)
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
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(parse_file(job))


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, memory_mb: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.job_index = -1
        self.deadline = 0.0

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
                    worker = self._idle.pop() if self._idle else _Worker(self._ctx, self.memory_mb)
                    worker.job_index = queue.popleft()
                    worker.deadline = time.monotonic() + self.timeout_s
                    worker.conn.send(jobs[worker.job_index])
                    busy.append(worker)
                if next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                    continue
                timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = wait([w.conn for w in busy], timeout=timeout)
                for worker in list(busy):
                    index = worker.job_index
                    if worker.conn in ready:
                        try:
                            done[index] = worker.conn.recv()
                            busy.remove(worker)
                            self._idle.append(worker)
                            continue
                        except (EOFError, OSError):
                            done[index] = _failed(jobs[index], f"{jobs[index].file_name} made the PDF reader "
                                                  "crash. The file is probably malformed.")
                    elif time.monotonic() >= worker.deadline:
                        done[index] = _failed(jobs[index], f"{jobs[index].file_name} took longer than "
                                              f"{self.timeout_s:g} s to read and was skipped (setting "
                                              "RAG_PARSE_TIMEOUT). The PDF may be malformed.")
                    else:
                        continue
                    busy.remove(worker)
                    worker.kill()
        finally:
            for worker in busy:  # abandoned mid-run: their results would be stale
                worker.kill()

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


def _failed(job: ParseJob, message: str) -> ParseResult:
    log.warning(message)
    return ParseResult(job, error=message, error_kind="unreadable")
