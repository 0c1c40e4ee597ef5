"""Folder sync: keep the library in step with folders of PDFs.

Each synced folder has a manifest (path, size, modification time, content hash) in the queue's SQLite file. A pass
walks the folder and only stats the files: a file whose size and time are unchanged is not read again, so a second
pass over 10,000 unchanged PDFs takes seconds. New and changed files are hashed and queued (see
``rag.ingestion.queue``); a file whose hash is already indexed (renamed, moved, or copied from elsewhere) goes
through the queue without being embedded again. A deleted file's document is removed once it has been missing for
the grace period (``RAG_SYNC_GRACE``), unless another synced file still has the same bytes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rag.ingestion.ingest import PDF_SUFFIXES, SourceFile, content_id
from rag.ingestion.queue import DONE, FAILED, QUEUED, RUNNING, IngestQueue

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS synced (
    folder TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    doc_id TEXT NOT NULL,
    job_id INTEGER,
    missing_since REAL,
    PRIMARY KEY (folder, path)
);
CREATE INDEX IF NOT EXISTS synced_doc ON synced (doc_id);
CREATE TABLE IF NOT EXISTS folders (
    folder TEXT PRIMARY KEY,
    scanned_at REAL,
    seconds REAL,
    error TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class SyncReport:
    """What one pass over a folder found and did."""

    folder: str
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    renamed: int = 0
    removed: int = 0
    removing: int = 0  # missing files within their grace period
    queued: list[int] | None = None  # job ids
    seconds: float = 0.0
    error: str = ""

    def describe(self) -> str:
        """One line for a person."""
        if self.error:
            return f"{self.folder}: {self.error}"
        parts = [f"{n} {what}" for n, what in ((self.new, "new"), (self.changed, "changed"),
                                                (self.renamed, "renamed or moved"), (self.removed, "removed"),
                                                (self.removing, "missing (removed after the grace period)"),
                                                (self.unchanged, "unchanged")) if n]
        return f"{self.folder}: {', '.join(parts) or 'no PDFs'} ({self.seconds:.1f} s)"


@dataclass(frozen=True)
class FolderState:
    """A synced folder as the UI shows it: its files, how many are indexed, waiting or failed, when it was last
    looked at, and a problem if it can't be read."""

    folder: str
    files: int = 0
    indexed: int = 0
    waiting: int = 0
    failed: int = 0
    removing: int = 0
    scanned_at: float | None = None
    error: str = ""

    @property
    def state(self) -> str:
        """"unreadable", "never synced", "indexing", "in step" or "in step, N failed"."""
        if self.error:
            return "unreadable"
        if self.scanned_at is None:
            return "never synced"
        if self.waiting:
            return "indexing"
        return f"in step, {self.failed} failed" if self.failed else "in step"


class FolderSync:
    """Synchronises folders into the queue. ``is_indexed(doc_id)`` says whether a document is in the library;
    ``delete(doc_id)`` removes one (through the engine, so access rules apply)."""

    def __init__(self, queue: IngestQueue, delete: Callable[[str], None]) -> None:
        self.queue = queue
        self._delete = delete
        with queue._db() as db:
            db.executescript(_SCHEMA)

    def sync(self, folder: Path | str, grace_s: float, owner: str = "", collection: str | None = None) -> SyncReport:
        """One pass over ``folder``: queue new and changed PDFs, remove the documents of files missing for longer
        than ``grace_s`` seconds."""
        started = time.perf_counter()
        root = Path(folder).expanduser().resolve()
        key = str(root)
        if not root.is_dir():
            error = "not found or not a folder" if not root.exists() else "not a folder"
            self._record(key, None, error)
            return SyncReport(key, error=f"{error}. Check the path (RAG_WATCH or the command line).")
        try:
            present = dict(_walk(root))
        except OSError as exc:
            self._record(key, None, str(exc))
            return SyncReport(key, error=f"can't be read: {exc}")
        with self.queue._db() as db:
            rows = {r["path"]: r for r in db.execute("SELECT * FROM synced WHERE folder = ?", (key,))}
        now = time.time()
        unchanged = 0
        touched: list[tuple[str, int, float]] = []  # same bytes, new stat
        todo: list[tuple[str, int, float, str, str]] = []  # path, size, mtime, doc_id, replaces
        kept: set[str] = set()  # doc ids that files present now have
        for path, (size, mtime) in present.items():
            row = rows.get(path)
            if row is not None and row["size"] == size and row["mtime"] == mtime:
                unchanged += 1
                kept.add(row["doc_id"])
                if row["missing_since"] is not None:
                    touched.append((path, size, mtime))
                continue
            try:
                doc_id = content_id(Path(path))
            except OSError as exc:  # vanished or unreadable since the walk: the next pass sees it again
                log.warning("Could not read %s: %s", path, exc)
                continue
            kept.add(doc_id)
            if row is not None and row["doc_id"] == doc_id:
                unchanged += 1
                touched.append((path, size, mtime))
            else:
                todo.append((path, size, mtime, doc_id, row["doc_id"] if row is not None else ""))
        missing = [r for p, r in rows.items() if p not in present]
        moved_from = {r["doc_id"] for r in missing}
        renamed = sum(1 for t in todo if not t[4] and t[3] in moved_from)
        changed = sum(1 for t in todo if t[4])
        new = len(todo) - renamed - changed
        job_ids = self.queue.add([SourceFile(Path(t[0]), Path(t[0]).name) for t in todo], owner=owner,
                                 collection=collection, replace=False, folder=key,
                                 replaces=[t[4] for t in todo]) if todo else []
        removed = removing = 0
        gone: list[str] = []  # paths whose rows go
        to_delete: list[str] = []
        with self.queue._db() as db:
            db.execute("BEGIN IMMEDIATE")
            for (path, size, mtime, doc_id, _), job_id in zip(todo, job_ids, strict=True):
                db.execute("INSERT OR REPLACE INTO synced (folder, path, size, mtime, doc_id, job_id, missing_since) "
                           "VALUES (?, ?, ?, ?, ?, ?, NULL)", (key, path, size, mtime, doc_id, job_id))
            for path, size, mtime in touched:
                db.execute("UPDATE synced SET size = ?, mtime = ?, missing_since = NULL WHERE folder = ? AND "
                           "path = ?", (size, mtime, key, path))
            for r in missing:
                since = r["missing_since"] if r["missing_since"] is not None else now
                if r["doc_id"] in kept:  # renamed or moved within the folder: same document, nothing to remove
                    gone.append(r["path"])
                elif now - since >= grace_s:
                    gone.append(r["path"])
                    to_delete.append(r["doc_id"])
                    removed += 1
                else:
                    removing += 1
                    if r["missing_since"] is None:
                        db.execute("UPDATE synced SET missing_since = ? WHERE folder = ? AND path = ?",
                                   (now, key, r["path"]))
            db.executemany("DELETE FROM synced WHERE folder = ? AND path = ?", [(key, p) for p in gone])
            db.execute("COMMIT")
        for doc_id in to_delete:
            if not self.referenced(doc_id):
                self._delete(doc_id)
        seconds = time.perf_counter() - started
        self._record(key, seconds, "")
        return SyncReport(key, unchanged, new, changed, renamed, removed, removing, job_ids, seconds)

    def referenced(self, doc_id: str) -> bool:
        """Whether a synced file (present, or missing within its grace period) still has these bytes."""
        with self.queue._db() as db:
            return db.execute("SELECT 1 FROM synced WHERE doc_id = ? LIMIT 1", (doc_id,)).fetchone() is not None

    def doc_ids(self, folder: Path | str) -> set[str]:
        """The documents of a synced folder's files."""
        key = str(Path(folder).expanduser().resolve())
        with self.queue._db() as db:
            return {r[0] for r in db.execute("SELECT doc_id FROM synced WHERE folder = ?", (key,))}

    def forget(self, folder: Path | str) -> None:
        """Stop tracking a folder (its documents stay in the library)."""
        key = str(Path(folder).expanduser().resolve())
        with self.queue._db() as db:
            db.execute("DELETE FROM synced WHERE folder = ?", (key,))
            db.execute("DELETE FROM folders WHERE folder = ?", (key,))

    def states(self, folders: list[str] | None = None) -> list[FolderState]:
        """Each synced folder's state (``folders``: these, in this order, tracked or not)."""
        with self.queue._db() as db:
            known = {r["folder"]: r for r in db.execute("SELECT * FROM folders")}
            counts: dict[str, dict[str, int]] = {}
            for r in db.execute("SELECT s.folder AS folder, s.missing_since IS NOT NULL AS missing, "
                                "COALESCE(j.state, ?) AS state, COUNT(*) AS n FROM synced s LEFT JOIN jobs j "
                                "ON j.id = s.job_id GROUP BY s.folder, missing, state", (DONE,)):
                c = counts.setdefault(r["folder"], {})
                kind = "removing" if r["missing"] else r["state"]
                c[kind] = c.get(kind, 0) + int(r["n"])
        keys = [str(Path(f).expanduser().resolve()) for f in folders] if folders is not None else sorted(known)
        out = []
        for key in keys:
            c = counts.get(key, {})
            row = known.get(key)
            out.append(FolderState(key, files=sum(v for k, v in c.items() if k != "removing"),
                                   indexed=c.get(DONE, 0), waiting=c.get(QUEUED, 0) + c.get(RUNNING, 0),
                                   failed=c.get(FAILED, 0), removing=c.get("removing", 0),
                                   scanned_at=row["scanned_at"] if row is not None else None,
                                   error=row["error"] if row is not None else ""))
        return out

    def _record(self, key: str, seconds: float | None, error: str) -> None:
        with self.queue._db() as db:
            db.execute("INSERT OR REPLACE INTO folders (folder, scanned_at, seconds, error) VALUES (?, ?, ?, ?)",
                       (key, time.time(), seconds, error))


def _walk(root: Path) -> Iterator[tuple[str, tuple[int, float]]]:
    """(path, (size, mtime)) of every PDF under ``root``, by stat only (hidden files and folders skipped)."""
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in PDF_SUFFIXES:
                    st = entry.stat()
                    yield entry.path, (st.st_size, st.st_mtime)
