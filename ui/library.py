"""The library for thousands of documents: the table and "Ask about" show one page of the documents that match a
search (name or title) and a folder, and the selection that questions are asked about is kept on the server.

The selection (``chosen``) is None for "the whole library" (new documents join it as they are indexed) or a list of
document ids. The "Ask about" checkboxes show the current page's documents, checked when chosen; ticking one changes
the selection for that document only. Also: the ingest queue's progress line and the watched folders' states.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from html import escape
from typing import Any, Sequence

from rag.core.records import DocumentInfo
from rag.engine import Engine
from ui import render

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # documents per page of the table and of "Ask about"
ALL_FOLDERS = "All documents"


@dataclass(frozen=True)
class View:
    """What the library shows: the current page of the matching documents, and how many match in all."""

    page_docs: list[DocumentInfo]
    matching: list[DocumentInfo]
    all_ids: list[str]
    page: int
    pages: int

    @property
    def page_ids(self) -> list[str]:
        return [d.doc_id for d in self.page_docs]


class Library:
    """Reads the engine's documents (kept until documents come or go: reading 10,000 registry records takes a
    second or two, which a page load must not wait for) and pages and searches them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._docs: tuple[list[Any], list[DocumentInfo]] | None = None
        self._lock = threading.Lock()

    def warm(self) -> threading.Thread:
        """Read the documents on a thread now, so that the first page load finds them ready."""
        thread = threading.Thread(target=self._warm, name="library-warm", daemon=True)
        thread.start()
        return thread

    def _warm(self) -> None:
        try:
            self.documents()
        except Exception:  # noqa: BLE001 - the page load reads them again and reports the problem
            log.warning("Could not read the library ahead of the first page load", exc_info=True)

    def documents(self, user: str | None = None, fresh: bool = False) -> list[DocumentInfo]:
        """The documents ``user`` may read (None: every document), newest first. The whole library is read again
        only when documents came or went (``signature``); what one user may read of it is decided on every call."""
        now = signature(self.engine)
        with self._lock:
            cached = self._docs
            if fresh or cached is None or cached[0] != now:
                docs = sorted(self.engine.documents(), key=lambda d: -d.added_at)
                cached = (now, docs)
                self._docs = cached
        if user is None:
            return cached[1]
        return sorted(self.engine.documents(user, among=cached[1]), key=lambda d: -d.added_at)

    def forget(self) -> None:
        """Read the documents again next time (after a change made here)."""
        with self._lock:
            self._docs = None

    def view(self, query: str = "", folder: str | None = None, page: int = 0, user: str | None = None) -> View:
        """The page ``page`` of ``user``'s documents whose name or title contains ``query``, in ``folder``."""
        docs = self.documents(user)
        matching = docs
        if folder and folder != ALL_FOLDERS:
            inside = self.engine.folder_sync.doc_ids(folder)
            matching = [d for d in matching if d.doc_id in inside]
        words = (query or "").lower().split()
        if words:
            matching = [d for d in matching if all(w in f"{d.file_name} {d.title}".lower() for w in words)]
        pages = max(1, -(-len(matching) // PAGE_SIZE))
        page = min(max(0, int(page or 0)), pages - 1)
        return View(matching[page * PAGE_SIZE:(page + 1) * PAGE_SIZE], matching, [d.doc_id for d in docs], page,
                    pages)

    def folders(self, user: str | None = None) -> list[str]:
        """The folder filter's choices: the whole library, then each synced folder (for an admin: the folders
        are the machine's)."""
        if user is not None and not self.engine.access.is_admin(user):
            return [ALL_FOLDERS]
        return [ALL_FOLDERS] + [s.folder for s in self.engine.folder_sync.states()]


def checked(view: View, chosen: list[str] | None) -> list[str]:
    """The current page's documents that are chosen."""
    if chosen is None:
        return view.page_ids
    keep = set(chosen)
    return [i for i in view.page_ids if i in keep]


def tick(view: View, ticked: Sequence[str] | None, chosen: list[str] | None) -> list[str] | None:
    """The selection after the "Ask about" boxes of the current page were changed to ``ticked``."""
    base = list(view.all_ids) if chosen is None else list(chosen)
    page = set(view.page_ids)
    now = [i for i in base if i not in page] + [i for i in view.page_ids if i in set(ticked or [])]
    return None if set(now) >= set(view.all_ids) else now


def with_added(chosen: list[str] | None, added: Sequence[str], all_ids: Sequence[str]) -> list[str] | None:
    """The selection after new documents were indexed (they join it); ids no longer in the library leave it."""
    if chosen is None:
        return None
    present = set(all_ids)
    now = [i for i in chosen if i in present] + [i for i in added if i in present and i not in chosen]
    return None if present and set(now) >= present else now


def select_matching(view: View, chosen: list[str] | None, on: bool) -> list[str] | None:
    """"All" / "None": with no search or folder, the whole library or nothing; with one, add or remove the
    matching documents."""
    matching = [d.doc_id for d in view.matching]
    if len(matching) == len(view.all_ids):
        return None if on else []
    base = list(view.all_ids) if chosen is None else list(chosen)
    if on:
        now = base + [i for i in matching if i not in set(base)]
    else:
        drop = set(matching)
        now = [i for i in base if i not in drop]
    return None if set(now) >= set(view.all_ids) else now


def scope_label(chosen: list[str] | None, total: int) -> str:
    """The "Ask about" box's line: what questions are answered from."""
    if chosen is None:
        return f"Questions are answered from the whole library ({total} document{'s' if total != 1 else ''})."
    return f"Questions are answered from {len(chosen)} of {total} documents."


def table_html(view: View) -> str:
    """The library table of the current page, with where it is in the whole (the table's own filter box and
    sorting work within the page)."""
    if view.all_ids and not view.page_docs:
        return (f'<div class="pw-lib-title">Library <span>· {len(view.all_ids)} documents</span></div>'
                '<div class="pw-library-empty">No document matches the search or folder.</div>')
    html = render.library_html(view.page_docs, total=len(view.all_ids))
    if len(view.matching) <= PAGE_SIZE and len(view.matching) == len(view.all_ids):
        return html
    first = view.page * PAGE_SIZE + 1 if view.matching else 0
    last = view.page * PAGE_SIZE + len(view.page_docs)
    return (html + f'<div class="pw-lib-pager" data-total="{len(view.matching)}">Showing {first}–{last} of '
            f"{len(view.matching)} matching · {len(view.all_ids)} in the library</div>")


def pager_text(view: View) -> str:
    """"Page 3 of 100"."""
    return f"Page {view.page + 1} of {view.pages}"


def _queue_for(engine: Engine, user: str | None) -> tuple[Any, list[Any]]:
    """The queue's status and the watched folders as ``user`` may see them: an admin sees the file at hand and
    the folders; anyone else only their own files (another user's files, even their number, are theirs)."""
    if user is None or engine.access.is_admin(user):
        return engine.queue.status(), engine.watched_folders()
    return engine.queue.status(owner=user), []


def queue_html(engine: Engine, user: str | None = None) -> str:
    """The ingest queue's progress (with the time left) and each watched folder's state; empty when idle and
    nothing is watched."""
    status, folders = _queue_for(engine, user)
    if not status.busy and not status.total and not folders:
        return ""
    parts = []
    if status.busy or status.total:
        kind = "pw-busy" if status.busy else "pw-ok"
        parts.append(f'<div class="pw-queue-line {kind}" data-queued="{status.queued + status.running}" '
                     f'data-done="{status.done}">{escape(status.describe())}</div>')
    for f in folders:
        when = time.strftime("%H:%M:%S", time.localtime(f.scanned_at)) if f.scanned_at else "not yet"
        extra = f", {f.removing} missing" if f.removing else ""
        parts.append(f'<div class="pw-folder" data-state="{escape(f.state)}"><span class="pw-folder-path" '
                     f'title="{escape(f.folder)}">{escape(f.folder)}</span> · {escape(f.state)} · '
                     f"{f.indexed} of {f.files} indexed{extra} · checked {when}"
                     + (f" · {escape(f.error)}" if f.error else "") + "</div>")
    return '<div class="pw-queue">' + "".join(parts) + "</div>"


def reindex_text(engine: Engine) -> str:
    """What a re-index would do, or how the one running stands."""
    return engine.reindex_plan().describe()


def signature(engine: Engine, user: str | None = None) -> list[Any]:
    """Changes when documents come or go: the index in use, its registry's size, the queue's last finished job;
    with ``user``, also when what they may read changes (a collection shared with them or no longer)."""
    mark = [engine.store.index_name, int(engine.store.registry.count()), engine.queue.last_change()]
    return mark if user is None else [*mark, engine.access.stamp(user)]


def api_status(engine: Engine, user: str | None = None) -> dict[str, Any]:
    """The /queue API's answer: counts, the file at hand, the estimate, and the watched folders (the file at hand
    and the folders for an admin only)."""
    s, folders = _queue_for(engine, user)
    return {"queued": s.queued, "running": s.running, "done": s.done, "failed": s.failed, "current": s.current,
            "eta_seconds": s.eta_s, "pages_per_second": s.pages_per_s, "paused": s.paused,
            "summary": s.describe(),
            "folders": [{"folder": f.folder, "state": f.state, "files": f.files, "indexed": f.indexed,
                         "waiting": f.waiting, "failed": f.failed, "missing": f.removing, "error": f.error}
                        for f in folders]}
