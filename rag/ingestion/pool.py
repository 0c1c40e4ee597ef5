"""Parser processes: files are read, their pages OCR'd and chunked in worker processes, each task under a time and
memory cap.

PDF parsing is CPU-bound and, on hostile files, can run away in time or memory. Each file is read by a long-lived
worker process; one that overruns its time is killed and replaced, one that hits its memory cap fails that file
with a clear reason (and is replaced), one that dies says how, and the rest of the batch goes on. A new process's
start-up doesn't count against its first task's time.

OCR. A file whose pages need OCR (see ``rag.ingestion.documents.pages_to_ocr``) comes back from its first reading with
those pages listed; each of them is then its own task, handed to whichever worker is free, so the pages of one scanned
file are read in parallel by all the workers (each bound to its share of the cores, see ``OcrOptions.from_settings``). A
page has its own time limit (``RAG_OCR_PAGE_TIMEOUT``): one that overruns it, or whose OCR fails or kills its process,
is listed as unreadable and the rest of the file goes on. Once every page is back, a worker puts the pages into the
document and chunks it. Pages read by OCR are kept in a cache file (``ParseJob.ocr_cache``) as soon as the file's last
page is read, so a file whose indexing fails later (the embedding server away) is not read again when it is added again.

The pool runs in a thread of its own, so the workers are kept busy while the caller embeds the files already read.
Results come back in job order; between them come ``PageProgress`` reports, one per page read by OCR.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Iterator, Sequence

from rag.core.datadir import atomic_write
from rag.core.records import Page
from rag.ingestion.ocr import from_json, to_json
from rag.ingestion.workers import (
    CRASHED,
    MEMORY_LIMIT,
    READY,
    STARTUP_S,
    TIME_LIMIT,
    FinishJob,
    PageJob,
    PageResult,
    ParseJob,
    ParseResult,
    worker_main,
)

log = logging.getLogger(__name__)

_POLL_S = 0.25  # how often the pool's thread looks up from waiting (to notice that it should stop)


@dataclass(frozen=True)
class PageProgress:
    """Page ``page`` of the batch's job number ``index`` was read by OCR: ``done`` of its ``total`` pages are."""

    index: int
    page: int
    done: int
    total: int


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, memory_mb: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, args=(child, memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.task: _Task | None = None
        self.started = False  # True once the process said it is ready
        self.deadline = time.monotonic() + STARTUP_S

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


@dataclass
class _Task:
    """What a busy worker is doing: reading job ``index`` (kind "read"), one of its pages ("page") or putting it
    together ("finish")."""

    kind: str
    index: int
    payload: Any
    page: int = 0


@dataclass
class _Scan:
    """A file whose pages are being read by OCR."""

    result: ParseResult  # its first reading, with the pages to OCR
    todo: deque[int]
    total: int
    read: dict[int, Page] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    out: int = 0  # pages handed to workers and not back yet
    seconds: float = 0.0
    new: int = 0  # pages read in this run (not from the cache)
    retried: set[int] = field(default_factory=set)  # pages tried again after their process ran out of memory

    @property
    def complete(self) -> bool:
        return not self.todo and not self.out


class ParserPool:
    """A few worker processes that parse files (and OCR their pages) under a time and memory cap."""

    def __init__(self, workers: int, timeout_s: float, memory_mb: int, page_timeout_s: float = 120.0) -> None:
        self.size = max(1, workers)
        self.timeout_s = timeout_s
        self.page_timeout_s = page_timeout_s
        self.memory_mb = memory_mb
        self._ctx = mp.get_context("spawn")  # never fork: the app has threads (web server, model clients)
        self._idle: list[_Worker] = []
        self._running: tuple[_Run, threading.Thread] | None = None  # the run that owns the workers now

    def parse(self, jobs: Sequence[ParseJob], lookahead: int | None = None) -> Iterator[ParseResult | PageProgress]:
        """Parse ``jobs`` in parallel; yield their results in job order, with a ``PageProgress`` for each page read
        by OCR as it comes back. At most ``lookahead`` files (default: twice the workers) are read ahead of the
        results taken. Closing the iterator early stops the work and kills the busy workers."""
        self._stop_running()  # an earlier run abandoned without being closed
        run = _Run(self, list(jobs), lookahead)
        thread = threading.Thread(target=run.loop, name="parser-pool", daemon=True)
        self._running = (run, thread)
        thread.start()
        try:
            while True:
                item = run.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, ParseResult):
                    run.taken()
                yield item
        finally:
            self._stop_running(run)

    def ready(self) -> int:
        """How many parsed files of the current run wait to be taken: the next that many results come without
        waiting."""
        return self._running[0].waiting() if self._running is not None else 0

    def _stop_running(self, run: _Run | None = None) -> None:
        """Stop the run that owns the workers (only ``run``, when given: a later run is left alone)."""
        if self._running is not None and (run is None or self._running[0] is run):
            running, thread = self._running
            running.stop()
            thread.join()
            self._running = None

    def _start(self, task: Any) -> _Worker | None:
        """Hand ``task`` to an idle worker (one that died while idle is replaced); None if none can take it."""
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
                worker.conn.send(task)
                return worker
            except (OSError, ValueError) as exc:  # a broken pipe, or no process could be started
                log.warning("A PDF reader process failed to take a task: %s", exc)
                if worker is not None:
                    worker.kill()
                worker = None
        return None

    def _crash_message(self, job: ParseJob, worker: _Worker) -> str:
        """Why a worker vanished mid-file, as far as its exit status tells."""
        how = _exit(worker)
        memory = (f" or needs more memory than the limit of {self.memory_mb} MB (setting RAG_PARSE_MEMORY_MB)"
                  if self.memory_mb else "")
        return (f"{job.file_name} made the PDF reader process fail ({how}). The file is probably malformed"
                f"{memory}.")

    def close(self) -> None:
        """Stop the workers (a run still going is stopped first)."""
        self._stop_running()
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
            worker.process.join(2)
            if worker.process.is_alive():
                worker.kill()
        self._idle.clear()


_END = object()  # the last item of a run's output


def _exit(worker: _Worker) -> str:
    """How a worker's process ended, in words."""
    worker.process.join(2)
    code = worker.process.exitcode
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"


class _Run:
    """One ``ParserPool.parse`` call, run on the pool's thread: hands tasks to workers, enforces their time limits,
    and puts results (in job order) and page progress on ``out``."""

    def __init__(self, pool: ParserPool, jobs: list[ParseJob], lookahead: int | None = None) -> None:
        self.pool = pool
        self.jobs = jobs
        self.out: queue.Queue[Any] = queue.Queue()
        self.done: dict[int, ParseResult] = {}
        self.scans: dict[int, _Scan] = {}
        self.busy: list[_Worker] = []
        self.next_job = 0  # the next job to start reading
        self.next_out = 0  # the next result to hand out
        self.lookahead = max(1, lookahead or 2 * pool.size)  # files read ahead of the one the caller is on
        self._taken = 0
        self._wake = threading.Condition()
        self._stopping = False

    # --- called by the consumer ---------------------------------------------------------------------------------------
    def taken(self) -> None:
        with self._wake:
            self._taken += 1
            self._wake.notify()

    def waiting(self) -> int:
        """Results handed out (on ``out``) and not taken yet."""
        with self._wake:
            return self.next_out - self._taken

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    # --- the thread ---------------------------------------------------------------------------------------------------
    def loop(self) -> None:
        try:
            while self.next_out < len(self.jobs) and not self._stopping:
                self._dispatch()
                while self.next_out in self.done:
                    self.out.put(self.done.pop(self.next_out))
                    self.next_out += 1
                if self.busy:
                    self._poll()
                elif self.next_out < len(self.jobs):
                    with self._wake:  # waiting for the caller to take results before reading further ahead
                        if not self._stopping and not self._can_start():
                            self._wake.wait(_POLL_S)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            self.out.put(exc)
        finally:
            for worker in self.busy:  # abandoned mid-run: their results would be stale
                worker.kill()
            self.busy.clear()
            self.out.put(_END)

    def _can_start(self) -> bool:
        return self.next_job < len(self.jobs) and self.next_job - self._taken < self.lookahead

    def _next_task(self) -> _Task | None:
        """The most urgent task: pages and assembly of the earliest files first, then the next file."""
        for index in sorted(self.scans):
            scan = self.scans[index]
            if scan.complete:
                del self.scans[index]
                return _Task("finish", index, self._finish_job(index, scan))
            if scan.todo:
                number = scan.todo.popleft()
                scan.out += 1
                job = self.jobs[index]
                return _Task("page", index, PageJob(job.path, number, job.ocr_options), page=number)
        if self._can_start():
            index = self.next_job
            self.next_job += 1
            return _Task("read", index, self.jobs[index])
        return None

    def _dispatch(self) -> None:
        while len(self.busy) < self.pool.size:
            task = self._next_task()
            if task is None:
                return
            worker = self.pool._start(task.payload)
            if worker is None:
                self._failed(task, CRASHED, None, "no PDF reader process could be started (is the machine out of "
                             "memory?)")
                continue
            worker.task = task
            if worker.started:
                worker.deadline = time.monotonic() + self._limit(task)
            self.busy.append(worker)

    def _limit(self, task: _Task) -> float:
        if task.kind == "page":
            return self.pool.page_timeout_s
        figures = getattr(task.payload, "figures", None) if task.kind == "read" else None
        return self.pool.timeout_s + (figures.budget_s if figures is not None else 0.0)  # figures have their own

    def _poll(self) -> None:
        timeout = max(0.0, min(min(w.deadline for w in self.busy) - time.monotonic(), _POLL_S))
        ready = wait([w.conn for w in self.busy], timeout=timeout)
        for worker in list(self.busy):
            task = worker.task
            if task is None:
                continue
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    self._failed(task, CRASHED, worker)
                    self.busy.remove(worker)
                    worker.kill()
                    continue
                if message == READY:  # a new process is up: its task's time starts now
                    worker.started = True
                    worker.deadline = time.monotonic() + self._limit(task)
                    continue
                self.busy.remove(worker)
                if message.error_kind == MEMORY_LIMIT:
                    worker.kill()  # it exits by itself; make sure of it
                else:
                    self.pool._idle.append(worker)
                self._received(task, message)
            elif time.monotonic() >= worker.deadline and not worker.started:
                self._failed(task, CRASHED, worker, f"the PDF reader process did not start within {STARTUP_S:g} s "
                             "(is the machine overloaded?)")
                self.busy.remove(worker)
                worker.kill()
            elif time.monotonic() >= worker.deadline:
                self._failed(task, TIME_LIMIT, worker)
                self.busy.remove(worker)
                worker.kill()

    def _received(self, task: _Task, message: Any) -> None:
        if task.kind == "page":
            self._page_done(task.index, message)
        elif task.kind == "read" and message.ocr_todo:
            self._start_scan(task.index, message)
        else:
            self.done[task.index] = message

    def _failed(self, task: _Task, kind: str, worker: _Worker | None, why: str | None = None) -> None:
        """A task that got no result: no process could take it or start (``why``), or its process died or ran out
        of time (``kind``). A page is listed as unreadable and its file goes on; a file fails."""
        job = self.jobs[task.index]
        if task.kind == "page":
            if kind == TIME_LIMIT:
                why = f"it took longer than {self.pool.page_timeout_s:g} s (setting RAG_OCR_PAGE_TIMEOUT)"
            elif why is None:
                why = "it made the OCR process fail" + (f" ({_exit(worker)})" if worker else "")
            self._page_done(task.index, PageResult(task.page, error=why, error_kind=kind))
            return
        if why is not None:
            message = f"{job.file_name} was not read: {why}."
        elif kind == TIME_LIMIT:
            message = (f"{job.file_name} took longer than {self.pool.timeout_s:g} s to read and was skipped "
                       "(setting RAG_PARSE_TIMEOUT). The PDF may be malformed; if it is a genuine large document, "
                       "raise the limit.")
        else:
            message = self.pool._crash_message(job, worker) if worker else f"{job.file_name} was not read."
        log.warning(message)
        self.done[task.index] = ParseResult(job, error=message, error_kind=kind)

    # --- OCR ----------------------------------------------------------------------------------------------------------
    def _start_scan(self, index: int, result: ParseResult) -> None:
        """A file came back with pages to OCR: take those already in its cache, queue the others."""
        job = result.job
        cached: dict[int, Page] = {}
        if job.ocr_cache and Path(job.ocr_cache).exists():
            try:
                cached = from_json(Path(job.ocr_cache).read_text(encoding="utf-8"), job.ocr_options)
            except OSError as exc:
                log.warning("Could not read the OCR cache of %s: %s", job.file_name, exc)
        todo = [n for n in result.ocr_todo if n not in cached]
        scan = _Scan(result, deque(todo), total=len(result.ocr_todo),
                     read={n: cached[n] for n in result.ocr_todo if n in cached})
        self.scans[index] = scan
        if scan.read:
            self.out.put(PageProgress(index, max(scan.read), len(scan.read), scan.total))

    def _page_done(self, index: int, got: PageResult) -> None:
        scan = self.scans[index]
        scan.out -= 1
        scan.seconds += got.seconds
        if got.error_kind == MEMORY_LIMIT and got.number not in scan.retried:
            scan.retried.add(got.number)  # a process that has read many pages may be short of memory: a fresh one
            scan.todo.appendleft(got.number)  # (its replacement) tries once more
            return
        if got.page is not None:
            scan.read[got.number] = got.page
            scan.new += 1
        else:
            scan.failed[got.number] = got.error or "unreadable"
        self.out.put(PageProgress(index, got.number, len(scan.read) + len(scan.failed), scan.total))

    def _finish_job(self, index: int, scan: _Scan) -> FinishJob:
        """All pages are back: keep them in the cache, then have a worker put the document together."""
        job = self.jobs[index]
        if job.ocr_cache and scan.new and scan.read:
            try:
                text = to_json(sorted(scan.read.values(), key=lambda p: p.number), job.ocr_options)
                atomic_write(Path(job.ocr_cache), lambda tmp: tmp.write_text(text, encoding="utf-8"))
            except OSError as exc:
                log.warning("Could not keep the OCR of %s: %s", job.file_name, exc)
        return FinishJob(replace(scan.result, ocr_seconds=scan.seconds), scan.read, scan.failed)
