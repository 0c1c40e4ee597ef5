"""Saved conversations: each question and answer (with its sources) in SQLite in the data folder.

One row per conversation (its owner, title and times) and one per message. Each message is written in its own
transaction, so a crash mid-answer keeps the conversation up to the last complete message; the database runs in
WAL mode, so readers (another tab, the CLI) never wait for a writer. An answer keeps the passages it was given, so
its citations still open their page later, and say so when that document has been removed since.

``owner`` is the login name when the app asks for one (``RAG_AUTH``) and "" otherwise: one shared list. Every
call that names a conversation also names its owner, and another owner's conversation is simply not found.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from rag.core.datadir import storage_problem
from rag.core.errors import ChatNotFound, StoreError
from rag.core.events import Claim, Claims, Sources, claims_record, sources_record
from rag.core.records import Citation, Passage

log = logging.getLogger(__name__)

FILE_NAME = "chats.sqlite3"
TITLE_CHARS = 80  # a conversation is named after its first question, cut to this length
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated_at DESC);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    thinking TEXT NOT NULL DEFAULT '',
    thinking_seconds REAL NOT NULL DEFAULT 0,
    sources TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
"""


@dataclass(frozen=True)
class Conversation:
    """A saved conversation: who it belongs to ("" without login), its title, when it began and last changed."""

    id: str
    owner: str
    title: str
    created_at: float
    updated_at: float
    messages: int = 0


@dataclass(frozen=True)
class ChatMessage:
    """One message: a question (``role`` "user") or an answer with its reasoning, sources and, when it was cut
    short, why (``error``)."""

    role: str
    content: str
    created_at: float = 0.0
    thinking: str = ""
    thinking_seconds: float = 0.0
    sources: Sources | None = None
    error: str | None = None
    claims: Claims | None = None  # its statements checked against the sources (None: saved before the check)


def title_from(question: str) -> str:
    """A conversation's title made from its first question: one line, at most TITLE_CHARS characters."""
    flat = " ".join(question.split())
    return flat if len(flat) <= TITLE_CHARS else flat[:TITLE_CHARS - 1].rstrip() + "…"


class ChatStore:
    """Conversations and their messages in one SQLite file (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                con.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"Can't open the saved conversations: {storage_problem(path.parent, exc)}") from exc

    # --- reading --------------------------------------------------------------------------------------------------
    def conversations(self, owner: str | None) -> list[Conversation]:
        """``owner``'s conversations (every owner's with None), the most recently changed first."""
        return self._select("WHERE c.owner = ?", (owner,)) if owner is not None else self._select("", ())

    def get(self, chat_id: str, owner: str | None) -> Conversation:
        """One of ``owner``'s conversations (any owner's with None); raises ChatNotFound otherwise."""
        where, args = ("WHERE c.id = ? AND c.owner = ?", (chat_id, owner)) if owner is not None else \
            ("WHERE c.id = ?", (chat_id,))
        found = self._select(where, args)
        if not found:
            raise ChatNotFound(f"No saved conversation has the id '{chat_id}'.")
        return found[0]

    def find(self, ref: str, owner: str | None = None) -> Conversation:
        """A conversation by id or id prefix (at least 6 characters), for the command line."""
        chats = self.conversations(owner)
        matches = [c for c in chats if c.id == ref] or [c for c in chats if len(ref) >= 6 and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ChatNotFound(f"No saved conversation is called '{ref}'. `python -m rag chats` lists them.")
        raise ChatNotFound(f"'{ref}' matches {len(matches)} conversations; give more of the id.")

    def messages(self, chat_id: str, owner: str | None) -> list[ChatMessage]:
        """The messages of one of ``owner``'s conversations, in order."""
        self.get(chat_id, owner)
        with self._read() as con:
            rows = con.execute("SELECT role, content, created_at, thinking, thinking_seconds, sources, error "
                               "FROM messages WHERE conversation_id = ? ORDER BY seq", (chat_id,)).fetchall()
        return [ChatMessage(role, content, created_at, thinking, seconds, sources_from_json(sources), error,
                            claims_from_json(sources))
                for role, content, created_at, thinking, seconds, sources, error in rows]

    # --- writing --------------------------------------------------------------------------------------------------
    def start(self, owner: str, question: ChatMessage) -> Conversation:
        """A new conversation of ``owner``, named after its first message and saved with it in one transaction."""
        now = time.time()
        chat = Conversation(uuid.uuid4().hex, owner, title_from(question.content) or "Conversation", now, now, 1)
        with self._write() as con:
            con.execute("INSERT INTO conversations (id, owner, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (chat.id, chat.owner, chat.title, chat.created_at, chat.updated_at))
            _insert(con, chat.id, question, now)
        return chat

    def add(self, chat_id: str, owner: str, message: ChatMessage) -> None:
        """Append a message to one of ``owner``'s conversations (one transaction; the conversation moves to the top
        of the list)."""
        now = time.time()
        with self._write() as con:
            if con.execute("UPDATE conversations SET updated_at = ? WHERE id = ? AND owner = ?",
                           (now, chat_id, owner)).rowcount != 1:
                raise ChatNotFound(f"No saved conversation has the id '{chat_id}'.")
            _insert(con, chat_id, message, now)

    def rename(self, chat_id: str, owner: str, title: str) -> Conversation:
        """Give one of ``owner``'s conversations a new title (blank titles are refused: the old one stays)."""
        title = title_from(title)
        if title:
            with self._write() as con:
                con.execute("UPDATE conversations SET title = ? WHERE id = ? AND owner = ?", (title, chat_id, owner))
        return self.get(chat_id, owner)

    def delete(self, chat_id: str, owner: str) -> Conversation:
        """Remove one of ``owner``'s conversations and its messages."""
        chat = self.get(chat_id, owner)
        with self._write() as con:
            con.execute("DELETE FROM messages WHERE conversation_id = ?", (chat_id,))
            con.execute("DELETE FROM conversations WHERE id = ? AND owner = ?", (chat_id, owner))
        return chat

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Conversation]:
        with self._read() as con:
            rows = con.execute(
                "SELECT c.id, c.owner, c.title, c.created_at, c.updated_at, "
                "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) "
                f"FROM conversations c {where} ORDER BY c.updated_at DESC, c.created_at DESC", args).fetchall()
        return [Conversation(*row) for row in rows]

    # --- connections ----------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # A connection per call: each thread of the web server gets its own, and SQLite waits for a busy writer.
        con = sqlite3.connect(self.path, timeout=10)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(self._connect()) as con:
                yield con
        except sqlite3.Error as exc:
            raise StoreError(f"Can't read the saved conversations in {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction: committed whole when the block ends, rolled back whole if it fails."""
        try:
            with closing(self._connect()) as con, con:
                yield con
        except sqlite3.Error as exc:
            raise StoreError(f"Can't save the conversation: {storage_problem(self.path.parent, exc)}") from exc


def _insert(con: sqlite3.Connection, chat_id: str, m: ChatMessage, now: float) -> None:
    seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
                      (chat_id,)).fetchone()[0]
    con.execute("INSERT INTO messages (conversation_id, seq, role, content, thinking, thinking_seconds, sources, "
                "error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chat_id, seq, m.role, m.content, m.thinking, m.thinking_seconds, sources_to_json(m.sources, m.claims),
                 m.error, m.created_at or now))


# --- records (the API and ``python -m rag chats --json``) ---------------------------------------------------------
def conversation_record(chat: Conversation) -> dict[str, Any]:
    """A conversation as the API lists it: id, title, created_at and updated_at (unix time), message_count."""
    return {"id": chat.id, "title": chat.title, "created_at": chat.created_at, "updated_at": chat.updated_at,
            "message_count": chat.messages}


def message_record(m: ChatMessage, removed: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """A message as the API gives it: role, content, created_at; an answer adds thinking, error and its sources in
    the shape of ``/ask`` (each passage saying whether its document has been ``removed`` from the library)."""
    record: dict[str, Any] = {"role": m.role, "content": m.content, "created_at": m.created_at}
    if m.role == "assistant":
        sources = sources_record(m.sources)
        for p in sources["cited"] + sources["other"]:
            p["removed"] = p["doc_id"] in removed
        record.update(thinking=m.thinking, error=m.error, **sources, claims=claims_record(m.claims))
    return record


# --- sources as JSON --------------------------------------------------------------------------------------------
def sources_to_json(sources: Sources | None, claims: Claims | None = None) -> str | None:
    """An answer's sources as stored: every field of every passage, cited and other, and its checked statements
    (``claims``, with the passages re-pointed citations added)."""
    if sources is None:
        return None
    data: dict[str, Any] = {"query": sources.query, "dropped_citations": sources.dropped_citations,
                            "cited": [{"number": c.number, "passage": asdict(c.passage)} for c in sources.cited],
                            "other": [asdict(p) for p in sources.other]}
    if claims is not None:
        data["claims"] = {"claims": [asdict(c) for c in claims.claims],
                          "added": [{"number": c.number, "passage": asdict(c.passage)} for c in claims.added]}
    return json.dumps(data, ensure_ascii=False)


_CLAIM_FIELDS = {f.name for f in fields(Claim)}


def claims_from_json(text: str | None) -> Claims | None:
    """The checked statements stored with an answer's sources (None for answers saved before the check)."""
    if not text:
        return None
    data = json.loads(text).get("claims")
    if not isinstance(data, dict):
        return None
    return Claims([Claim(**{k: v for k, v in c.items() if k in _CLAIM_FIELDS}) for c in data.get("claims", [])],
                  [Citation(int(c["number"]), _passage(c["passage"])) for c in data.get("added", [])])


def sources_from_json(text: str | None) -> Sources | None:
    """Stored sources back as ``Sources``; fields a passage no longer has are ignored, new ones take defaults."""
    if not text:
        return None
    data = json.loads(text)
    return Sources([Citation(int(c["number"]), _passage(c["passage"])) for c in data.get("cited", [])],
                   [_passage(p) for p in data.get("other", [])], int(data.get("dropped_citations", 0)),
                   str(data.get("query", "")))


_PASSAGE_FIELDS = {f.name for f in fields(Passage)}


def _passage(data: dict[str, Any]) -> Passage:
    return Passage(**{k: v for k, v in data.items() if k in _PASSAGE_FIELDS})
