"""An upload's path into a user's library: the index deduplicates by content, this gives each indexed file to the
user who sent it, under the name they gave it, and keeps their library's own rules (a new version of one of their
files replaces their old one; a guest stays within the quota). What the user hears never depends on anyone else's
files: a PDF someone else already has is "indexed" for them, as if it were new."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

from rag.access.gate import Access, is_guest
from rag.core.errors import RagError
from rag.core.events import FileFailed, FileIndexed, IngestEvent
from rag.core.records import DocumentInfo
from rag.ingestion.ingest import Ingestor, SourceFile, human_size


def ingest(access: Access, ingestor: Ingestor, items: Sequence[object], user: str | None, replace: bool,
           collection: str | None) -> Iterator[IngestEvent]:
    """Index ``items`` (files) for ``user``, yielding the ingest's events with each file's outcome as ``user``
    sees it."""
    accepted, refused = admit(access, [SourceFile.of(i) for i in items], user)  # type: ignore[arg-type]
    yield from refused
    if not accepted:
        return
    for event in ingestor.ingest(accepted, replace=False):
        if isinstance(event, FileIndexed) and event.doc_id:
            yield own(access, event, user, replace, collection)
        else:
            yield event


def admit(access: Access, files: Sequence[SourceFile], user: str | None
          ) -> tuple[list[SourceFile], list[FileFailed]]:
    """The files ``user`` may add now, and the others, each with why: a visitor who has not signed in adds
    nothing; a guest adds what fits in the room left of their quota."""
    if is_guest(access.who(user)) and not access.settings.guests:  # a visitor who has not signed in
        return [], [FileFailed(f.name, f"{f.name} was not added: sign in to keep documents here.", "sign in")
                    for f in files]
    quota = access.quota_left(user)
    if quota is None:
        return list(files), []
    accepted, refused = [], []
    room = quota[0]
    for f in files:
        size = f.path.stat().st_size if f.path.exists() else 0
        if size > room:
            refused.append(FileFailed(f.name, f"{f.name} ({human_size(size)}) would go over your space as a guest "
                                      f"({human_size(int(access.settings.guest_mb * 1024 * 1024))}). Remove a "
                                      "document first.", "quota"))
            continue
        room -= size
        accepted.append(f)
    return accepted, refused


def own(access: Access, event: FileIndexed, user: str | None, replace: bool,
        collection: str | None) -> IngestEvent:
    """``event``'s file given to ``user``; the event as they should see it."""
    name = access.who(user)
    held = access.library.holdings(name)
    had = event.doc_id in held
    quota = access.quota_left(user)
    if quota is not None and not had and quota[1] < event.pages:
        if not access.library.referenced(event.doc_id):
            access.store.delete(event.doc_id)
        return FileFailed(event.file_name, f"{event.file_name} has {event.pages} pages, more than the "
                          f"{max(quota[1], 0)} left of your {access.settings.guest_pages} as a guest. Remove a "
                          "document first.", "quota")
    info = access.store.get(event.doc_id) or DocumentInfo(event.doc_id, event.file_name, "", event.pages,
                                                          event.chunks, "ready", 0.0)
    access.give(user, info, collection, file_name=event.file_name)
    if had:
        return event
    replaced = None
    if replace:
        older = [d for d, (n, _) in held.items() if n == event.file_name and d != event.doc_id]
        for doc_id in older:
            try:
                access.remove(doc_id, user)
            except RagError:
                continue  # listed through a shared collection only: not theirs to replace
            replaced = doc_id
    status = "replaced" if replaced else "indexed"
    return dataclasses.replace(event, status=status, replaced_doc_id=replaced)
