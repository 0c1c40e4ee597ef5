"""The engine: one object that holds the settings, models and store, and offers every use case.

The UI, the CLI and the benchmarks all go through it, so what one can do the others can script.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

from rag.config import Settings
from rag.embeddings import Embedder, make_embedder
from rag.errors import DocumentNotFound
from rag.events import IngestEvent
from rag.ingest import Ingestor, SourceFile
from rag.models import DocumentInfo
from rag.store import Store

log = logging.getLogger(__name__)


class Engine:
    """Chat-with-your-PDFs engine: ingest, list, delete (and, built on these, ask)."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, store: Store | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or make_embedder(settings)
        self.store = store or Store(settings, self.embedder.index_name)
        self.recovered = self.store.recover()
        self._ingestor: Ingestor | None = None

    @property
    def ingestor(self) -> Ingestor:
        """The ingestion pipeline (its parser processes start on first use)."""
        if self._ingestor is None:
            self._ingestor = Ingestor(self.settings, self.embedder, self.store)
        return self._ingestor

    def ingest(self, items: Sequence[Path | str | SourceFile], replace: bool = True) -> Iterator[IngestEvent]:
        """Index files (see ``Ingestor.ingest``), yielding progress events."""
        return self.ingestor.ingest(items, replace=replace)

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents."""
        return self.store.documents()

    def find(self, ref: str) -> DocumentInfo:
        """A document by id, id prefix or file name; raises DocumentNotFound when none or several match."""
        docs = self.store.documents()
        matches = [d for d in docs if d.doc_id == ref] or [d for d in docs if d.file_name == ref] or \
            [d for d in docs if len(ref) >= 6 and d.doc_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DocumentNotFound(f"No indexed document is called '{ref}'. `python -m rag docs` lists them.")
        raise DocumentNotFound(f"'{ref}' matches {len(matches)} documents; use the id from `python -m rag docs`.")

    def delete(self, ref: str) -> DocumentInfo:
        """Remove a document (by id or file name) and everything indexed from it."""
        doc = self.find(ref)
        self.store.delete(doc.doc_id)
        return doc

    def close(self) -> None:
        """Release worker processes."""
        if self._ingestor is not None:
            self._ingestor.close()
