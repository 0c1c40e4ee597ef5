"""Whose documents are whose: each user's library, their collections and whom those are shared with, in one SQLite
file in the data folder (``library.sqlite3``).

A document is known by its content hash (the same id the index uses), so the vectors of a PDF two people uploaded
are stored once and this file says that both hold it, each under the name they gave it. Ownership lives apart
from the index on purpose: it survives a change of embedding model and a reindex. A user who deletes a document
only lets go of it; the index forgets it when nobody holds it and no collection lists it.

Tables: ``holdings`` (user, doc_id, the user's file name), ``collections`` (owner, name, and whether everyone
signed in may read or edit it), ``members`` (which documents a collection lists), ``shares`` (named users and
their mode), ``visitors`` (when each user was last seen, for guests' expiry) and ``meta``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from rag.core.datadir import storage_problem
from rag.core.errors import StoreError

FILE_NAME = "library.sqlite3"
READ, EDIT = "read", "edit"
MODES = (READ, EDIT)
_CACHED_READS = 512  # distinct queries whose rows are kept until the database changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holdings (
    user TEXT NOT NULL, doc_id TEXT NOT NULL, file_name TEXT NOT NULL, added_at REAL NOT NULL,
    PRIMARY KEY (user, doc_id)
);
CREATE INDEX IF NOT EXISTS holdings_by_doc ON holdings (doc_id);
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, everyone TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS collections_by_owner ON collections (owner);
CREATE TABLE IF NOT EXISTS members (
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE, doc_id TEXT NOT NULL,
    file_name TEXT NOT NULL, added_by TEXT NOT NULL, PRIMARY KEY (collection_id, doc_id)
);
CREATE INDEX IF NOT EXISTS members_by_doc ON members (doc_id);
CREATE TABLE IF NOT EXISTS shares (
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE, user TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('read', 'edit')), PRIMARY KEY (collection_id, user)
);
CREATE INDEX IF NOT EXISTS shares_by_user ON shares (user);
CREATE TABLE IF NOT EXISTS visitors (user TEXT PRIMARY KEY, guest INTEGER NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Collection:
    """A named set of documents, its owner, and who else may read or edit it (``everyone``: "", "read" or "edit"
    for everyone signed in; ``shares``: named users and their mode)."""

    id: str
    owner: str
    name: str
    everyone: str = ""
    shares: dict[str, str] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)  # doc_id -> the name it is listed under

    def mode_for(self, user: str, signed_in: bool) -> str | None:
        """What ``user`` may do with the collection: "owner", "edit", "read" or None."""
        if user == self.owner:
            return "owner"
        modes = {self.shares.get(user, "")} | ({self.everyone} if signed_in else set())
        return EDIT if EDIT in modes else READ if READ in modes else None


class Library:
    """The ownership database (see the module's docstring). Safe to use from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None  # kept open: it tells when any connection has written
        self._rows: dict[tuple[str, tuple], list[tuple]] = {}  # (query, arguments) -> rows, while unchanged
        self._version: int | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"Can't open the library of owners: {storage_problem(path.parent, exc)}") from exc

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(self._connect()) as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"Can't update the library of owners: {storage_problem(self.path.parent, exc)}") \
                from exc

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """The rows of a query. Every question asks who may read what, so rows are kept until the database
        changes: SQLite's ``data_version`` on the open reading connection moves with every write committed by any
        other connection, this process's own writes (each its own connection) and other processes' alike."""
        try:
            with self._lock:
                if self._reader is None:
                    self._reader = self._connect()
                version = self._reader.execute("PRAGMA data_version").fetchone()[0]
                if version != self._version:
                    self._rows.clear()
                    self._version = version
                rows = self._rows.get((sql, args))
                if rows is None:
                    rows = self._reader.execute(sql, args).fetchall()
                    if len(self._rows) >= _CACHED_READS:
                        self._rows.clear()
                    self._rows[(sql, args)] = rows
                return list(rows)
        except (sqlite3.Error, OSError) as exc:
            self._close_reader()
            raise StoreError(f"Can't read the library of owners: {storage_problem(self.path.parent, exc)}") from exc

    def close(self) -> None:
        """Close the connection kept for reading (the next read opens it again)."""
        self._close_reader()

    def _close_reader(self) -> None:
        with self._lock:
            reader, self._reader, self._version = self._reader, None, None
            self._rows.clear()
        if reader is not None:
            reader.close()

    # --- holdings ---------------------------------------------------------------------------------------------
    def hold(self, user: str, doc_id: str, file_name: str, added_at: float | None = None) -> bool:
        """Put ``doc_id`` in ``user``'s library as ``file_name``; False if it was there already (name kept)."""
        with self._tx() as con:
            cur = con.execute("INSERT OR IGNORE INTO holdings VALUES (?, ?, ?, ?)",
                              (user, doc_id, file_name, added_at or time.time()))
            return cur.rowcount > 0

    def hold_all(self, user: str, docs: Sequence[tuple[str, str, float]], collection_id: str | None = None) -> None:
        """Put each (doc_id, file_name, added_at) of ``docs`` in ``user``'s library, and in a collection when given,
        in one transaction (an upgrade of a library of thousands)."""
        with self._tx() as con:
            con.executemany("INSERT OR IGNORE INTO holdings VALUES (?, ?, ?, ?)",
                            [(user, d, n, a) for d, n, a in docs])
            if collection_id is not None:
                con.executemany("INSERT OR IGNORE INTO members VALUES (?, ?, ?, ?)",
                                [(collection_id, d, n, user) for d, n, _ in docs])

    def release(self, user: str, doc_id: str) -> bool:
        """Take ``doc_id`` out of ``user``'s library and out of the collections ``user`` owns; False if not held."""
        with self._tx() as con:
            cur = con.execute("DELETE FROM holdings WHERE user = ? AND doc_id = ?", (user, doc_id))
            con.execute("DELETE FROM members WHERE doc_id = ? AND collection_id IN "
                        "(SELECT id FROM collections WHERE owner = ?)", (doc_id, user))
            return cur.rowcount > 0

    def forget(self, doc_id: str) -> None:
        """Remove ``doc_id`` from every library and collection (the document itself is going)."""
        with self._tx() as con:
            con.execute("DELETE FROM holdings WHERE doc_id = ?", (doc_id,))
            con.execute("DELETE FROM members WHERE doc_id = ?", (doc_id,))

    def referenced(self, doc_id: str) -> bool:
        """Whether anyone holds ``doc_id`` or any collection lists it."""
        return bool(self._read("SELECT 1 FROM holdings WHERE doc_id = ? UNION ALL "
                               "SELECT 1 FROM members WHERE doc_id = ? LIMIT 1", (doc_id, doc_id)))

    def holdings(self, user: str) -> dict[str, tuple[str, float]]:
        """``user``'s documents: doc_id -> (file name, when added)."""
        return {d: (n, a) for d, n, a in self._read(
            "SELECT doc_id, file_name, added_at FROM holdings WHERE user = ?", (user,))}

    def held_ids(self) -> set[str]:
        """Every document someone holds or a collection lists."""
        return {d for (d,) in self._read("SELECT doc_id FROM holdings UNION SELECT doc_id FROM members")}

    def names(self) -> dict[str, str]:
        """A name for every held document (some holder's), for views that see everything."""
        return {d: n for d, n in self._read("SELECT doc_id, MIN(file_name) FROM holdings GROUP BY doc_id")}

    def usage(self, user: str) -> list[str]:
        """Ids of the documents ``user`` holds (for quotas)."""
        return [d for (d,) in self._read("SELECT doc_id FROM holdings WHERE user = ?", (user,))]

    # --- collections ------------------------------------------------------------------------------------------
    def create(self, owner: str, name: str, everyone: str = "") -> Collection:
        """A new, empty collection of ``owner``'s."""
        cid = uuid.uuid4().hex[:16]
        with self._tx() as con:
            con.execute("INSERT INTO collections VALUES (?, ?, ?, ?, ?)", (cid, owner, name, everyone, time.time()))
        return Collection(cid, owner, name, everyone)

    def collections(self, user: str, signed_in: bool, everything: bool = False) -> list[Collection]:
        """The collections ``user`` owns or that are shared with them (all, with ``everything``), by name."""
        if everything:
            rows = self._read("SELECT id, owner, name, everyone FROM collections")
        else:
            rows = self._read("SELECT id, owner, name, everyone FROM collections WHERE owner = ? OR (everyone != '' "
                              "AND ?) OR id IN (SELECT collection_id FROM shares WHERE user = ?)",
                              (user, int(signed_in), user))
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        shares: dict[str, dict[str, str]] = {i: {} for i in ids}
        for cid, who, mode in self._read(f"SELECT collection_id, user, mode FROM shares WHERE collection_id IN "
                                         f"({marks})", tuple(ids)):
            shares[cid][who] = mode
        docs: dict[str, dict[str, str]] = {i: {} for i in ids}
        for cid, doc_id, name in self._read(f"SELECT collection_id, doc_id, file_name FROM members WHERE "
                                            f"collection_id IN ({marks})", tuple(ids)):
            docs[cid][doc_id] = name
        out = [Collection(cid, owner, name, everyone, shares[cid], docs[cid]) for cid, owner, name, everyone in rows]
        return sorted(out, key=lambda c: (c.name.lower(), c.id))

    def rename(self, collection_id: str, name: str) -> None:
        """Give a collection a new name."""
        with self._tx() as con:
            con.execute("UPDATE collections SET name = ? WHERE id = ?", (name, collection_id))

    def drop(self, collection_id: str) -> None:
        """Delete a collection (its documents stay in their owners' libraries)."""
        with self._tx() as con:
            con.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    def put(self, collection_id: str, doc_id: str, file_name: str, by: str) -> None:
        """List ``doc_id`` in a collection (as ``file_name``)."""
        with self._tx() as con:
            con.execute("INSERT OR IGNORE INTO members VALUES (?, ?, ?, ?)", (collection_id, doc_id, file_name, by))

    def take(self, collection_id: str, doc_id: str) -> None:
        """Take ``doc_id`` out of a collection."""
        with self._tx() as con:
            con.execute("DELETE FROM members WHERE collection_id = ? AND doc_id = ?", (collection_id, doc_id))

    def share(self, collection_id: str, user: str | None, mode: str) -> None:
        """Let ``user`` (None: everyone signed in) read or edit a collection; ``mode`` "" takes that away."""
        with self._tx() as con:
            if user is None:
                con.execute("UPDATE collections SET everyone = ? WHERE id = ?", (mode, collection_id))
            elif mode:
                con.execute("INSERT OR REPLACE INTO shares VALUES (?, ?, ?)", (collection_id, user, mode))
            else:
                con.execute("DELETE FROM shares WHERE collection_id = ? AND user = ?", (collection_id, user))

    # --- visitors (guests' expiry) ----------------------------------------------------------------------------
    def seen(self, user: str, guest: bool, now: float | None = None) -> None:
        """Record that ``user`` was here now."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO visitors VALUES (?, ?, ?)", (user, int(guest), now or time.time()))

    def guests_idle_since(self, before: float) -> list[str]:
        """Guests last seen before ``before``."""
        return [u for (u,) in self._read("SELECT user FROM visitors WHERE guest = 1 AND last_seen < ?", (before,))]

    def forget_user(self, user: str) -> list[str]:
        """Remove ``user``'s holdings, collections and visits; return the ids of the documents they held."""
        with self._tx() as con:
            held = [d for (d,) in con.execute("SELECT doc_id FROM holdings WHERE user = ?", (user,))]
            con.execute("DELETE FROM holdings WHERE user = ?", (user,))
            con.execute("DELETE FROM collections WHERE owner = ?", (user,))
            con.execute("DELETE FROM shares WHERE user = ?", (user,))
            con.execute("DELETE FROM visitors WHERE user = ?", (user,))
        return held

    # --- meta ---------------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A stored value (the upgrade mark, the file-link secret)."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str, only_if_missing: bool = False) -> str:
        """Store a value; with ``only_if_missing``, keep one already there. Returns the value now stored."""
        with self._tx() as con:
            verb = "INSERT OR IGNORE" if only_if_missing else "INSERT OR REPLACE"
            con.execute(f"{verb} INTO meta VALUES (?, ?)", (key, value))
            return str(con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
