"""The one access decision: what a user may see and change, applied by the engine on every path (listing, search,
passages, files, delete, conversations, export).

Identities are plain names: a login (``RAG_AUTH``, ``RAG_USERS_FILE``, Sign in with Hugging Face), a guest
(``guest-…``, one per browser), or ``""``, the machine's own user when the app runs without logins. ``None``, what
the CLI and scripts pass, is the machine's owner: the first admin of ``RAG_ADMINS`` (or ``""``). The machine's
owner and the local user see and manage every document. Everyone else, admins included, sees the documents they
hold ("My documents") and those of the collections they own or that are shared with them (by name, or with everyone
signed in; guests are not "signed in"); an admin may also edit and share every collection they see. Nothing here
says who else holds a document: each user sees their own name for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from rag.access import users
from rag.access.library import EDIT, MODES, READ, Collection, Library
from rag.core.config import Settings
from rag.core.errors import AccessDenied, CollectionNotFound, DocumentNotFound
from rag.core.records import DocumentInfo, Passage
from rag.search.store import READY, Store

log = logging.getLogger(__name__)

GUEST = "guest-"  # the prefix of a guest's name
SHARED = "Shared library"  # the collection an upgrade puts the existing documents in
UPGRADED = "ownership-v1"  # meta key: the documents of an older data folder have been given an owner


def is_guest(user: str) -> bool:
    """Whether ``user`` is a guest (a browser with no login)."""
    return user.startswith(GUEST)


@dataclass(frozen=True)
class View:
    """What one user may read: each document's id with the name this user knows it by, those the user holds (with
    when they added each), and the collections they see with what they may do with each ("owner", "edit",
    "read")."""

    user: str
    everything: bool
    names: dict[str, str]
    held: dict[str, float]
    collections: tuple[tuple[Collection, str], ...] = ()

    def can_read(self, doc_id: str) -> bool:
        """Whether the user may see ``doc_id`` (list it, search it, open its pages)."""
        return self.everything or doc_id in self.names

    def seen(self, doc: DocumentInfo) -> DocumentInfo:
        """``doc`` as this user knows it: under their name, added when they added it."""
        return replace(doc, file_name=self.names.get(doc.doc_id, doc.file_name),
                       added_at=self.held.get(doc.doc_id, doc.added_at))

    def rename(self, passage: Passage) -> Passage:
        """``passage`` under the name this user gave its document."""
        name = self.names.get(passage.doc_id)
        return passage if name is None or name == passage.file_name else replace(passage, file_name=name)


class ScopedStore:
    """The store as one user sees it: only the documents of their view are searchable, and passages carry the
    user's own file names. Everything else is the store's."""

    def __init__(self, store: Store, view: View) -> None:
        self._store = store
        self._view = view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def ready_ids(self) -> list[str]:
        """The searchable documents this user may read."""
        ids = self._store.ready_ids()
        return ids if self._view.everything else [d for d in ids if d in self._view.names]

    def _scope(self, doc_ids: Sequence[str] | None) -> list[str]:
        allowed = self.ready_ids()
        if doc_ids is None:
            return allowed
        keep = set(allowed)
        return [d for d in doc_ids if d in keep]

    def nearest(self, vector: Sequence[float], k: int, doc_ids: Sequence[str] | None = None
                ) -> list[tuple[str, float]]:
        """The store's dense search, within this user's documents."""
        return self._store.nearest(vector, k, self._scope(doc_ids))

    def query(self, vector: Sequence[float], k: int, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        """The store's nearest passages, within this user's documents, under their names."""
        return [self._view.rename(p) for p in self._store.query(vector, k, self._scope(doc_ids))]

    def lexical_search(self, query: str, k: int, doc_ids: Sequence[str]) -> list[tuple[str, float]]:
        """BM25 within this user's documents."""
        return self._store.lexical_search(query, k, self._scope(doc_ids))

    def title_scores(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """Title matches within this user's documents."""
        return self._store.title_scores(query, self._scope(doc_ids))

    def get_passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        """Stored chunks of this user's documents, under their names."""
        from rag.search.store import split_chunk_id

        wanted = [cid for cid in ids if self._view.can_read(split_chunk_id(cid)[0])]
        return {cid: self._view.rename(p) for cid, p in self._store.get_passages(wanted).items()}


class Access:
    """Who may do what (see the module's docstring), over the ownership library and the store."""

    def __init__(self, settings: Settings, library: Library, store: Store | Callable[[], Store]) -> None:
        self.settings = settings
        self.library = library
        self._store = store
        self.admins = settings.admin_names
        if not self.admins and settings.users_file:  # no RAG_ADMINS nor RAG_AUTH: the users file's first login
            self.admins = list(users.read(settings.users_file))[:1]
        self.owner = self.admins[0] if self.admins else ""
        self._expired_at = 0.0  # when guests' expiry last ran

    @property
    def store(self) -> Store:
        """The index that answers (given as a function where it can change: a re-index switches it)."""
        return self._store() if callable(self._store) else self._store

    # --- who ----------------------------------------------------------------------------------------------------
    def who(self, user: str | None) -> str:
        """The name acting: ``user``, or the machine's owner for None."""
        return self.owner if user is None else user

    def is_admin(self, user: str | None) -> bool:
        """Whether ``user`` may manage what they see: the machine (None), the local user without login, an admin."""
        return self.sees_everything(user) or user in self.admins

    @staticmethod
    def sees_everything(user: str | None) -> bool:
        """Whether ``user`` sees every document: the machine's owner (None) and the local user without login."""
        return user is None or user == ""

    # --- the decision -----------------------------------------------------------------------------------------
    def view(self, user: str | None) -> View:
        """What ``user`` may read, decided now (a revoked share is gone on the next call)."""
        name, admin, everything = self.who(user), self.is_admin(user), self.sees_everything(user)
        held = self.library.holdings(name)
        signed_in = not is_guest(name)
        names: dict[str, str] = {}
        shown: list[tuple[Collection, str]] = []
        for c in self.library.collections(name, signed_in, everything=everything):
            mode = c.mode_for(name, signed_in) or ("edit" if admin else None)
            if mode is None:
                continue
            shown.append((c, mode))
            for doc_id, doc_name in c.docs.items():
                names.setdefault(doc_id, doc_name)
        if everything:  # every document: those nobody holds keep the registry's name (see View.can_read)
            names.update(self.library.names())
        names.update({d: n for d, (n, _) in held.items()})  # the user's own name wins
        return View(name, everything, names, {d: added for d, (_, added) in held.items()}, tuple(shown))

    def stamp(self, user: str | None) -> int:
        """Changes when what ``user`` may read changes (a document given or let go, a collection shared or no
        longer), for a page to know when to draw the library again."""
        view = self.view(user)
        return hash((frozenset(view.names.items()), tuple((c.id, m, len(c.docs)) for c, m in view.collections)))

    def scoped(self, user: str | None) -> ScopedStore:
        """The store as ``user`` may search it."""
        return ScopedStore(self.store, self.view(user))

    # --- documents --------------------------------------------------------------------------------------------
    def documents(self, user: str | None, among: Iterable[DocumentInfo] | None = None) -> list[DocumentInfo]:
        """The ready documents ``user`` may read (of ``among``, default the registry's), under their names, oldest
        first (their own added time)."""
        view = self.view(user)
        out = [view.seen(d) for d in (self.store.documents() if among is None else among) if view.can_read(d.doc_id)]
        return sorted(out, key=lambda d: (d.added_at, d.file_name))

    def find(self, ref: str, user: str | None) -> DocumentInfo:
        """One of ``user``'s readable documents by id, file name or id prefix (6+ characters); DocumentNotFound
        otherwise, the same whether it does not exist or belongs to someone else."""
        view = self.view(user)
        if view.can_read(ref):  # an id (what the app passes): one registry record, not the whole registry
            info = self.store.get(ref)
            if info is not None and info.status == READY:
                return view.seen(info)
        docs = self.documents(user)
        matches = [d for d in docs if d.doc_id == ref] or [d for d in docs if d.file_name == ref] or \
            [d for d in docs if len(ref) >= 6 and d.doc_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DocumentNotFound(f"No indexed document is called '{ref}'. `python -m rag docs` lists them.")
        raise DocumentNotFound(f"'{ref}' matches {len(matches)} documents; use the id from `python -m rag docs`.")

    def give(self, user: str | None, doc: DocumentInfo | str, collection: str | None = None,
             file_name: str | None = None) -> bool:
        """Put an indexed document in ``user``'s library (as ``file_name``, default the registry's name), and in
        one of their collections when ``collection`` names one; True if it was new to their library."""
        info = self.store.get(doc) if isinstance(doc, str) else doc
        if info is None:
            raise DocumentNotFound(f"No indexed document has the id '{doc}'.")
        name = self.who(user)
        new = self.library.hold(name, info.doc_id, file_name or info.file_name)
        if collection:
            self.add_to_collection(user, collection, info.doc_id)
        return new

    def remove(self, ref: str, user: str | None) -> DocumentInfo:
        """``user`` lets go of a document: out of their library and their collections. The index forgets it when
        nobody holds it and no collection lists it. The machine's owner (and the local user) removes a document
        they don't hold for everyone; anyone else who may only read it (a shared collection) can't remove it."""
        doc = self.find(ref, user)
        name = self.who(user)
        if doc.doc_id in self.library.holdings(name):
            self.library.release(name, doc.doc_id)
        elif self.sees_everything(user):
            self.library.forget(doc.doc_id)
        else:
            raise AccessDenied(f"{doc.file_name} is in a collection shared with you; only its owner can remove it "
                               "(an editor can take it out of the collection).")
        if not self.library.referenced(doc.doc_id):
            self.store.delete(doc.doc_id)
        return doc

    def removed(self, doc_ids: Iterable[str], user: str | None) -> set[str]:
        """Which of ``doc_ids`` ``user`` can no longer read (deleted, or no longer shared with them)."""
        wanted = set(doc_ids)
        if not wanted:
            return set()
        view = self.view(user)
        ready = set(self.store.ready_ids())
        return {d for d in wanted if d not in ready or not view.can_read(d)}

    def readable_file(self, doc_id: str, user: str | None) -> bool:
        """Whether ``user`` may open the stored PDF of ``doc_id`` (and its OCR lines)."""
        return self.view(user).can_read(doc_id) and doc_id in set(self.store.ready_ids())

    # --- collections ------------------------------------------------------------------------------------------
    def collections(self, user: str | None) -> list[tuple[Collection, str]]:
        """The collections ``user`` sees, each with what they may do with it ("owner", "edit", "read")."""
        return list(self.view(user).collections)

    def collection(self, user: str | None, ref: str, wants: str = READ) -> Collection:
        """One of ``user``'s collections by id or name, if they may ``wants`` ("read", "edit", "owner") it."""
        seen = self.collections(user)
        found = [(c, m) for c, m in seen if c.id == ref] or [(c, m) for c, m in seen if c.name == ref]
        if not found:
            raise CollectionNotFound(f"No collection of yours is called '{ref}'.")
        if len(found) > 1:
            raise CollectionNotFound(f"'{ref}' names {len(found)} collections; use its id.")
        c, mode = found[0]
        rank = {READ: 0, EDIT: 1, "owner": 2}
        if rank[mode] < rank[wants] and not self.is_admin(user):
            raise AccessDenied(f"The collection '{c.name}' is shared with you to {mode}; you can't change it.")
        return c

    def create_collection(self, user: str | None, name: str) -> Collection:
        """A new, empty collection of ``user``'s."""
        name = " ".join((name or "").split())[:80]
        if not name:
            raise CollectionNotFound("Give the collection a name.")
        return self.library.create(self.who(user), name)

    def add_to_collection(self, user: str | None, collection: str, doc_ref: str) -> Collection:
        """List one of ``user``'s readable documents in a collection they may edit."""
        c = self.collection(user, collection, EDIT)
        doc = self.find(doc_ref, user)
        self.library.put(c.id, doc.doc_id, doc.file_name, self.who(user))
        return c

    def remove_from_collection(self, user: str | None, collection: str, doc_ref: str) -> Collection:
        """Take a document out of a collection ``user`` may edit (it stays in its owners' libraries)."""
        c = self.collection(user, collection, EDIT)
        doc_id = next((d for d in c.docs if d == doc_ref or c.docs[d] == doc_ref), None)
        if doc_id is None:
            raise DocumentNotFound(f"The collection '{c.name}' doesn't list '{doc_ref}'.")
        self.library.take(c.id, doc_id)
        if not self.library.referenced(doc_id):
            self.store.delete(doc_id)
        return c

    def share(self, user: str | None, collection: str, with_user: str | None, mode: str) -> Collection:
        """Share one of ``user``'s own collections with ``with_user`` (None: everyone signed in) to "read" or
        "edit"; mode "" takes the share back, effective on the other user's next request."""
        if mode not in (*MODES, ""):
            raise AccessDenied(f"A collection is shared to read or edit, not '{mode}'.")
        c = self.collection(user, collection, "owner")
        self.library.share(c.id, with_user, mode)
        return c

    def delete_collection(self, user: str | None, collection: str) -> Collection:
        """Delete one of ``user``'s own collections; its documents stay in their owners' libraries."""
        c = self.collection(user, collection, "owner")
        self.library.drop(c.id)
        for doc_id in c.docs:
            if not self.library.referenced(doc_id):
                self.store.delete(doc_id)
        return c

    # --- upgrade and guests -------------------------------------------------------------------------------------
    def upgrade(self) -> int:
        """Give the documents of a data folder from before private libraries an owner (the machine's owner) and
        put them in a collection everyone signed in may read; nothing is re-embedded. Runs once; returns how
        many documents it took in."""
        if self.library.meta(UPGRADED):
            return 0
        held = self.library.held_ids()
        unowned = [d for d in self.store.documents() if d.doc_id not in held]
        if unowned:
            shared = self.library.create(self.owner, SHARED, everyone=READ)
            self.library.hold_all(self.owner, [(d.doc_id, d.file_name, d.added_at) for d in unowned], shared.id)
            log.info("%d documents from before private libraries now belong to %s, in '%s' (read by everyone "
                     "signed in)", len(unowned), self.owner or "the local user", SHARED)
        self.library.set_meta(UPGRADED, str(time.time()), only_if_missing=True)
        return len(unowned)

    def quota_left(self, user: str | None) -> tuple[int, int] | None:
        """(bytes, pages) a guest may still add; None for anyone else (no quota)."""
        name = self.who(user)
        if not is_guest(name):
            return None
        found = (self.store.get(d) for d in self.library.usage(name))  # a guest's few, not the whole registry
        docs = [d for d in found if d is not None and d.status == READY]
        s = self.settings
        return (int(s.guest_mb * 1024 * 1024) - sum(d.size_bytes for d in docs),
                s.guest_pages - sum(d.pages for d in docs))

    def visit(self, user: str | None, chats: Any = None, now: float | None = None) -> None:
        """Note that ``user`` is here (a guest's days count from their last visit) and, at most once an hour,
        remove the guests gone for longer than RAG_GUEST_DAYS."""
        now = now or time.time()
        name = self.who(user)
        if is_guest(name):
            self.library.seen(name, guest=True, now=now)
        if self.settings.guests and now - self._expired_at > 3600:
            self._expired_at = now
            self.expire_guests(chats, now)

    def expire_guests(self, chats: Any = None, now: float | None = None) -> list[str]:
        """Remove the guests not seen for RAG_GUEST_DAYS: their documents (the index forgets those nobody else
        holds) and their conversations (``chats``: the chat store). Returns their names."""
        before = (now or time.time()) - self.settings.guest_days * 86400
        gone = self.library.guests_idle_since(before)
        for guest in gone:
            for doc_id in self.library.forget_user(guest):
                if not self.library.referenced(doc_id):
                    self.store.delete(doc_id)
            if chats is not None:
                for chat in chats.conversations(guest):
                    chats.delete(chat.id, guest)
        if gone:
            log.info("Removed %d guest(s) not seen for %g days", len(gone), self.settings.guest_days)
        return gone
