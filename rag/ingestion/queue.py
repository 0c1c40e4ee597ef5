"""The ingest queue: files waiting to be indexed, kept in SQLite in the data folder so that a restart resumes them.

Uploads, ``python -m rag ingest``, folder sync and re-indexing all add jobs here; one runner per process takes them
in order, a batch at a time, and hands each batch to the ingestion pipeline (``rag.ingestion.ingest``), which parses
the batch's files in parallel across the parser processes. Each job ends ``done`` or ``failed``; one failed file
never stops the queue.

Crash safety: a job is ``running`` only while a live process works on it (``runner`` names host and pid). A runner
that died (``kill -9``, power loss) leaves its jobs ``running``; the next runner puts them back in the queue. The
store removes a document whose writing never finished (``Store.recover``), and a document already indexed is
recognised by its content hash, so a resumed job neither duplicates nor half-indexes anything.

Transient trouble (the embedding model away, a full disk) stops the pipeline's run; the jobs it did not finish go
back in the queue and the runner pauses for ``retry_s`` before trying again, so nothing is lost and nothing loops.
"""

from __future__ import annotations

import logging
import os
import queue as queues
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from rag.core.datadir import has_ended, process_tag
from rag.core.events import (
    Embedded,
    Failure,
    FileFailed,
    FileIndexed,
    FileStarted,
    IngestEvent,
    PageRead,
    PagesParsed,
)
from rag.ingestion.ingest import SourceFile

log = logging.getLogger(__name__)

FILE_NAME = "ingest-queue.sqlite3"  # in the data folder
COPIES = "queue-files"  # uploads are copied here (the upload itself is temporary) until their job is finished
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
ADD, REINDEX = "add", "reindex"
_TRANSIENT = {"stopped", "model", "store"}  # FileFailed kinds that say nothing about the file itself
_MAX_ATTEMPTS = 5  # a file whose run stopped this many times is failed, so it can't hold the queue for ever
_KEEP_DONE_S = 7 * 86400  # finished jobs are listed this long, then forgotten
_RUNNER = process_tag()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    collection TEXT,
    kind TEXT NOT NULL DEFAULT 'add',
    replace INTEGER NOT NULL DEFAULT 1,
    copied INTEGER NOT NULL DEFAULT 0,
    folder TEXT NOT NULL DEFAULT '',
    replaces TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'queued',
    runner TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    doc_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    pages INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
"""


@dataclass(frozen=True)
class Job:
    """One file to index: where its bytes are, the name it is known by, whose library it goes to (``owner``, "" =
    the machine's owner, and ``collection``), and how it ended (``state``, ``status``, ``detail``, ``doc_id``).

    ``kind`` is ``add`` (a new file) or ``reindex`` (a stored PDF embedded again with the current model);
    ``folder`` is the synced folder it came from ("" otherwise); ``replaces`` a document id to remove once this one
    is indexed (a synced file's older version)."""

    id: int
    path: str
    name: str
    owner: str = ""
    collection: str | None = None
    kind: str = ADD
    replace: bool = True
    copied: bool = False
    folder: str = ""
    replaces: str = ""
    state: str = QUEUED
    attempts: int = 0
    doc_id: str = ""
    status: str = ""
    detail: str = ""
    pages: int = 0
    added_at: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)


@dataclass(frozen=True)
class QueueStatus:
    """Where the queue stands: jobs waiting, running, finished since it last ran dry, and an estimate of the time
    left (None until a file has been finished)."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    current: str = ""
    current_detail: str = ""
    eta_s: float | None = None
    pages_per_s: float | None = None
    paused: str = ""  # why the runner waits before trying again (the model server away, ...)

    @property
    def busy(self) -> bool:
        return bool(self.queued or self.running)

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.failed

    def describe(self) -> str:
        """One line for a person: "12 of 40 files indexed, 1 failed · about 3 min left · now: report.pdf"."""
        if not self.busy:
            if not self.total:
                return "Nothing waiting to be indexed."
            failed = f", {self.failed} failed" if self.failed else ""
            return f"All {self.total} files handled: {self.done} indexed{failed}."
        parts = [f"{self.done} of {self.total} files indexed" + (f", {self.failed} failed" if self.failed else "")]
        if self.eta_s is not None:
            parts.append(f"about {human_duration(self.eta_s)} left")
        if self.paused:
            parts.append(f"paused: {self.paused}")
        elif self.current:
            parts.append(f"now: {self.current}" + (f" ({self.current_detail})" if self.current_detail else ""))
        return " · ".join(parts)


def human_duration(seconds: float) -> str:
    """"45 s", "3 min", "2 h 10 min"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60)} min"


IngestFn = Callable[[Sequence[SourceFile], bool, str, str, "str | None"], Iterator[IngestEvent]]


@dataclass
class _Session:
    """The jobs finished since the queue last ran dry, for the counts and the estimate."""

    started: float = field(default_factory=time.time)
    pages: int = 0
    busy_s: float = 0.0


class IngestQueue:
    """The persistent queue of files to index (see the module's docstring).

    ``ingest(files, replace, kind, owner, collection)`` runs the pipeline on a batch (of one owner's files) and
    yields its events; ``indexed(job)`` is called for each job whose document is indexed or found already indexed;
    ``delete(doc_id)`` removes a replaced version.
    """

    def __init__(self, path: Path, ingest: IngestFn, indexed: Callable[[Job], None] | None = None,
                 delete: Callable[[str], None] | None = None, batch: int = 16, retry_s: float = 30.0) -> None:
        self.path = path
        self.copies = path.parent / COPIES
        self._ingest = ingest
        self._indexed = indexed
        self._delete = delete
        self.batch = max(1, batch)
        self.retry_s = retry_s
        self._wake = threading.Condition()
        self._live: dict[int, str] = {}  # job id -> what it is doing now ("embedding 40/120")
        self._session = _Session()
        self._dry = True  # nothing run yet, or the queue ran dry: the next batch starts a new session
        self._paused_until = 0.0
        self._paused_why = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._run_lock = threading.Lock()  # one runner per process: the parser pool is not shared between threads
        self._listeners: list[tuple[set[int], queues.Queue[tuple[Job, IngestEvent]]]] = []
        self._listeners_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)
            db.execute("DELETE FROM jobs WHERE state IN (?, ?) AND finished_at < ?",
                       (DONE, FAILED, time.time() - _KEEP_DONE_S))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # --- adding ---------------------------------------------------------------------------------------------------
    def add(self, files: Sequence[SourceFile | Path | str], *, owner: str = "", collection: str | None = None,
            kind: str = ADD, replace: bool = True, copy: bool = False, folder: str = "",
            replaces: Sequence[str] | None = None) -> list[int]:
        """Queue files; returns their job ids. ``copy`` keeps a copy of each file until its job is finished (for
        uploads, whose temporary file may go before their turn). A file already waiting (same path, owner and
        collection) is not queued twice: its waiting job's id is returned."""
        ids: list[int] = []
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            for n, item in enumerate(files):
                f = SourceFile.of(item)
                path = str(f.path)
                if copy:
                    self.copies.mkdir(parents=True, exist_ok=True)
                    target = self.copies / f"{uuid.uuid4().hex}{f.path.suffix.lower() or '.pdf'}"
                    shutil.copyfile(f.path, target)
                    path = str(target)
                else:
                    row = db.execute("SELECT id FROM jobs WHERE path = ? AND owner = ? AND collection IS ? AND "
                                     "state IN (?, ?)", (path, owner, collection, QUEUED, RUNNING)).fetchone()
                    if row:
                        ids.append(int(row["id"]))
                        continue
                old = replaces[n] if replaces else ""
                cur = db.execute("INSERT INTO jobs (path, name, owner, collection, kind, replace, copied, folder, "
                                 "replaces, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (path, f.name, owner, collection, kind, int(replace), int(copy), folder, old, now))
                ids.append(int(cur.lastrowid or 0))
            db.execute("COMMIT")
        self._paused_until = 0.0  # someone added files: try again now rather than after the pause
        with self._wake:
            self._wake.notify_all()
        return ids

    def follow(self, ids: Sequence[int], poll_s: float = 1.0) -> Iterator[tuple[Job, IngestEvent]]:
        """The events of the given jobs as the runner (on another thread) produces them, until all are finished.
        A job finished elsewhere (another process, or before this call) gives one event saying how it ended."""
        inbox: queues.Queue[tuple[Job, IngestEvent]] = queues.Queue()
        entry = (set(ids), inbox)
        with self._listeners_lock:
            self._listeners.append(entry)
        told: set[int] = set()
        try:
            while True:
                try:
                    job, event = inbox.get(timeout=poll_s)
                    if isinstance(event, (FileIndexed, FileFailed)) and job.id in told:
                        continue
                    if isinstance(event, FileIndexed) or (isinstance(event, FileFailed)
                                                          and self.jobs([job.id])[0].state == FAILED):
                        told.add(job.id)
                    elif isinstance(event, FileFailed):
                        continue  # back in the queue: not this job's end
                    yield job, event
                    continue
                except queues.Empty:
                    pass
                jobs = self.jobs(ids)
                for job in jobs:
                    if job.finished and job.id not in told:
                        told.add(job.id)
                        yield job, _ending(job)
                if all(j.finished for j in jobs):
                    return
        finally:
            with self._listeners_lock:
                self._listeners.remove(entry)

    # --- reading --------------------------------------------------------------------------------------------------
    def jobs(self, ids: Sequence[int] | None = None, states: Sequence[str] | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs by id, or by state (oldest first)."""
        query, args = "SELECT * FROM jobs", []
        clauses = []
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += f" ORDER BY id LIMIT {int(limit)}"
        with self._db() as db:
            return [_job(r) for r in db.execute(query, args)]

    def pending(self, kind: str | None = None) -> int:
        """Jobs queued or running (of one kind, or all)."""
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?) AND (? IS NULL OR kind = ?)",
                                  (QUEUED, RUNNING, kind, kind)).fetchone()[0])

    def last_change(self) -> float:
        """When the last job finished (0 when none has)."""
        with self._db() as db:
            return float(db.execute("SELECT MAX(finished_at) FROM jobs").fetchone()[0] or 0.0)

    def live(self, job_id: int) -> str:
        """What a running job is doing now ("embedding 40/120"), or ""."""
        return self._live.get(job_id, "")

    def status(self, owner: str | None = None) -> QueueStatus:
        """Counts, the file being worked on and the estimated time left; with ``owner``, of that owner's files
        only (their time left counts the files queued before theirs), so that nobody learns of anyone else's."""
        mine, args = ("", ()) if owner is None else (" AND owner = ?", (owner,))
        with self._db() as db:
            counts = dict(db.execute("SELECT state, COUNT(*) FROM jobs WHERE state IN (?, ?)" + mine +
                                     " GROUP BY state", (QUEUED, RUNNING, *args)).fetchall())
            finished = dict(db.execute("SELECT state, COUNT(*) FROM jobs WHERE finished_at >= ?" + mine +
                                       " GROUP BY state", (self._session.started, *args)).fetchall())
            running = db.execute("SELECT id, name FROM jobs WHERE state = ?" + mine + " ORDER BY id LIMIT 1",
                                 (RUNNING, *args)).fetchone()
            handled = waiting = None
            if owner is not None:  # the rate counts everyone's files; the files before the owner's last one wait too
                (handled,) = db.execute("SELECT COUNT(*) FROM jobs WHERE finished_at >= ?",
                                        (self._session.started,)).fetchone()
                (waiting,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?) AND id <= (SELECT MAX(id) "
                                        "FROM jobs WHERE state IN (?, ?) AND owner = ?)",
                                        (QUEUED, RUNNING, QUEUED, RUNNING, owner)).fetchone()
        queued, busy = int(counts.get(QUEUED, 0)), int(counts.get(RUNNING, 0))
        done, failed = int(finished.get(DONE, 0)), int(finished.get(FAILED, 0))
        handled = done + failed if handled is None else int(handled)
        s = self._session
        eta = pages_per_s = None
        if handled and s.busy_s > 0:
            ahead = queued + busy if waiting is None else int(waiting)
            eta = ahead * s.busy_s / handled
            pages_per_s = s.pages / s.busy_s if s.pages else None
        paused = self._paused_why if time.time() < self._paused_until else ""
        return QueueStatus(queued, busy, done, failed, running["name"] if running else "",
                           self._live.get(int(running["id"]), "") if running else "", eta, pages_per_s, paused)

    # --- running --------------------------------------------------------------------------------------------------
    def resume_orphans(self) -> int:
        """Put back in the queue the jobs left ``running`` by a process that no longer runs (or by this one, before
        it restarted). Returns how many."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id, runner FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
            orphans = [int(r["id"]) for r in rows if _runner_gone(str(r["runner"]))]
            if orphans:
                db.execute(f"UPDATE jobs SET state = ?, runner = '' WHERE id IN ({','.join('?' * len(orphans))})",
                           (QUEUED, *orphans))
            db.execute("COMMIT")
        if orphans:
            log.warning("Resuming %d file(s) whose indexing was interrupted", len(orphans))
        return len(orphans)

    def run(self, until: Callable[[], bool] | None = None, stop: threading.Event | None = None,
            wait_s: float = 1.0) -> Iterator[tuple[Job, IngestEvent]]:
        """Work through the queue, yielding each job's events. Returns when ``until()`` is true (checked between
        batches; by default: when nothing is left to do) or ``stop`` is set. A stopped run leaves the rest queued."""
        stop = stop or threading.Event()
        if until is None:
            def until() -> bool:
                return not self.jobs(states=(QUEUED,), limit=1)
        with self._run_lock:
            self.resume_orphans()
            while not stop.is_set():
                pause = self._paused_until - time.time()
                batch = self._claim() if pause <= 0 else []
                if not batch:
                    self._dry = self._dry or pause <= 0
                    if until():
                        return
                    with self._wake:
                        self._wake.wait(min(wait_s, pause) if pause > 0 else wait_s)
                    continue
                yield from self._run_batch(batch, stop)

    def start(self) -> threading.Thread:
        """Run the queue on a background thread until ``close``."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._background, name="ingest-queue", daemon=True)
            self._thread.start()
        return self._thread

    def close(self, timeout: float = 10.0) -> None:
        """Stop the background runner (the job it is on goes back in the queue at the next start)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, ids: Sequence[int], timeout: float | None = None, poll_s: float = 0.25) -> list[Job]:
        """Block until the given jobs are finished (or ``timeout``); returns them."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = self.jobs(ids)
            if all(j.finished for j in jobs) or (end is not None and time.monotonic() > end):
                return jobs
            time.sleep(poll_s)

    def _background(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in self.run(until=self._stop.is_set, stop=self._stop, wait_s=2.0):
                    pass
            except Exception:  # noqa: BLE001 - the runner must outlive anything one batch throws; logged
                log.exception("The ingest queue hit an unexpected error; it carries on in %g s", self.retry_s)
                self._stop.wait(self.retry_s)

    def _claim(self) -> list[Job]:
        """Mark the next batch of queued jobs as running by this process."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY id LIMIT ?",
                              (QUEUED, self.batch)).fetchall()
            ids = [int(r["id"]) for r in rows]
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(f"UPDATE jobs SET state = ?, runner = ?, attempts = attempts + 1 WHERE id IN ({marks})",
                           (RUNNING, _RUNNER, *ids))
            db.execute("COMMIT")
        return self.jobs(ids) if ids else []

    def _run_batch(self, batch: list[Job], stop: threading.Event) -> Iterator[tuple[Job, IngestEvent]]:
        """One pipeline run over a batch (jobs of one kind, replace mode, owner and collection go together, in
        order)."""
        if self._dry:  # the queue ran dry before this batch: counts and estimate start afresh
            self._session = _Session()
            self._dry = False
        groups: list[list[Job]] = []
        for job in batch:
            if groups and _together(groups[-1][0], job):
                groups[-1].append(job)
            else:
                groups.append([job])
        for group in groups:
            if not stop.is_set():
                yield from self._run_group(group, stop)

    def _run_group(self, group: list[Job], stop: threading.Event) -> Iterator[tuple[Job, IngestEvent]]:
        started = time.perf_counter()
        current: Job | None = None
        left = {j.id for j in group}
        try:
            files = [SourceFile(Path(j.path), j.name) for j in group]
            first = group[0]
            for event in self._ingest(files, first.replace, first.kind, first.owner, first.collection):
                if stop.is_set():  # between two steps of a file: nothing of it is half-written (the rest waits)
                    break
                if isinstance(event, FileStarted):
                    current = group[event.index - 1] if 0 < event.index <= len(group) else current
                if isinstance(event, Failure):
                    self._pause(event.message)
                    if current is not None:
                        self._tell(current, event)
                        yield current, event
                    continue
                if current is None:
                    continue
                self._note(current, event)
                if isinstance(event, FileIndexed):
                    self._finish_indexed(current, event)
                    left.discard(current.id)
                elif isinstance(event, FileFailed):
                    self._finish_failed(current, event)
                    left.discard(current.id)
                self._tell(current, event)
                yield current, event
        except Exception as exc:  # noqa: BLE001 - one file's unexpected error must not stop the queue
            log.exception("Indexing %s failed unexpectedly", current.name if current else "a batch")
            if current is not None and current.id in left:
                self._set(current.id, FAILED, status="failed",
                          detail=f"{current.name} was not indexed: an unexpected error ({exc}). The log has the "
                          "details; add it again to retry.")
                left.discard(current.id)
                self._release(current)
        finally:
            self._session.busy_s += time.perf_counter() - started
            for job_id in left:  # not reached (the run stopped early): back in the queue
                self._set(job_id, QUEUED, finished=False)
            for job in group:
                self._live.pop(job.id, None)

    def _tell(self, job: Job, event: IngestEvent) -> None:
        with self._listeners_lock:
            for ids, inbox in self._listeners:
                if job.id in ids:
                    inbox.put((job, event))

    def _note(self, job: Job, event: IngestEvent) -> None:
        if isinstance(event, FileStarted):
            self._live[job.id] = "reading…"
        elif isinstance(event, PageRead):
            self._live[job.id] = f"reading page {event.done}/{event.total} (OCR)"
        elif isinstance(event, PagesParsed):
            self._live[job.id] = f"{event.pages} pages read, embedding…"
        elif isinstance(event, Embedded):
            self._live[job.id] = f"embedding {event.done}/{event.total}"

    def _finish_indexed(self, job: Job, event: FileIndexed) -> None:
        if event.status != "already indexed":
            self._session.pages += event.pages
        self._set(job.id, DONE, status=event.status, doc_id=event.doc_id, pages=event.pages)
        done = Job(**{**job.__dict__, "state": DONE, "status": event.status, "doc_id": event.doc_id,
                      "pages": event.pages})
        if self._indexed is not None and event.doc_id:
            try:
                self._indexed(done)
            except Exception:  # noqa: BLE001 - a library hook's failure must not stop the queue; logged
                log.exception("After indexing %s, attaching it to %s's library failed", job.name, job.owner or
                              "the owner")
        if job.replaces and job.replaces != event.doc_id and self._delete is not None:
            try:
                self._delete(job.replaces)
            except Exception:  # noqa: BLE001 - the older version stays listed; logged
                log.exception("Could not remove the older version of %s", job.name)
        self._release(job)

    def _finish_failed(self, job: Job, event: FileFailed) -> None:
        if job.copied:  # an upload: its sender is told (and adds it again), as when indexing ran in the request
            self._set(job.id, FAILED, status="failed", detail=event.reason)
            self._release(job)
            return
        if event.kind == "stopped":  # not tried: the run stopped before it (that costs the file no attempt)
            self._set(job.id, QUEUED, finished=False, attempts=max(0, job.attempts - 1))
            return
        if event.kind in _TRANSIENT and job.attempts < _MAX_ATTEMPTS:
            self._set(job.id, QUEUED, finished=False, detail=event.reason)  # tried again once the cause is gone
            return
        self._set(job.id, FAILED, status="failed", detail=event.reason)
        self._release(job)

    def _pause(self, why: str) -> None:
        self._paused_until = time.time() + self.retry_s
        self._paused_why = why
        log.warning("Indexing paused for %g s: %s", self.retry_s, why)

    def _release(self, job: Job) -> None:
        """Remove the copy an upload kept until its job finished."""
        if job.copied:
            Path(job.path).unlink(missing_ok=True)

    def _set(self, job_id: int, state: str, finished: bool = True, **values: object) -> None:
        columns = {"state": state, "runner": _RUNNER if state == RUNNING else "", **values}
        if finished:
            columns["finished_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in columns)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*columns.values(), job_id))


def _together(a: Job, b: Job) -> bool:
    """Whether two jobs go through the pipeline in one run: the same kind, replace mode, owner and collection."""
    return (a.kind, a.replace, a.owner, a.collection) == (b.kind, b.replace, b.owner, b.collection)


def _ending(job: Job) -> IngestEvent:
    """How a finished job ended, as the event the pipeline gave then (counts only)."""
    if job.state == DONE:
        return FileIndexed(job.name, job.doc_id, job.status or "indexed", job.pages, 0)
    return FileFailed(job.name, job.detail or "not indexed", "error")


def _job(row: sqlite3.Row) -> Job:
    return Job(id=int(row["id"]), path=row["path"], name=row["name"], owner=row["owner"],
               collection=row["collection"], kind=row["kind"], replace=bool(row["replace"]),
               copied=bool(row["copied"]), folder=row["folder"], replaces=row["replaces"], state=row["state"],
               attempts=int(row["attempts"]), doc_id=row["doc_id"], status=row["status"], detail=row["detail"],
               pages=int(row["pages"]), added_at=float(row["added_at"]), finished_at=row["finished_at"])


def _runner_gone(runner: str) -> bool:
    """Whether the process that marked a job running is gone (this process counts as gone: a job it marked running
    and did not finish was interrupted, since one runner per process works at a time)."""
    _, _, pid = runner.rpartition(":")
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    return has_ended(runner)
