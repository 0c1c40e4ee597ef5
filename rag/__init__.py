"""Pagewise's engine: PDFs in, cited answers out. The packages follow the pipeline, and imports only go down.

    rag.cli            the command line (``python -m rag``), a surface over the engine, like ``ui`` is
    rag.engine         wires the stages together: ``Engine.ingest``, ``Engine.ask``, documents, conversations
    rag.conversations  saved conversations and their Markdown export
    rag.ingestion      a PDF's path: read (pypdf, OCR) → chunk, in worker processes → embed → store
    rag.answering      a question's path after search: rerank within the budget → prompt → streamed answer → citations
    rag.search         the vector store (Chroma), the BM25 index and hybrid retrieval with fusion
    rag.models         embedder, chat model and reranker: interfaces, one module per provider, the factory
    rag.text           languages (BM25's terms) and token estimates
    rag.core           settings, errors, events, records and the data folder: what every package shares

``rag.ingestion`` and ``rag.answering`` don't import each other. The rule is checked by the import-linter contracts
in pyproject.toml (``lint-imports``, and tests/test_layers.py); docs/ARCHITECTURE.md draws it.

``from rag import Engine, Settings`` gives the two names a script needs; they are imported on first use, so that
importing one stage (a parser process imports only ``rag.ingestion``) doesn't load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.core.config import Settings
    from rag.engine import Engine

__all__ = ["Engine", "Settings"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from rag.engine import Engine

        return Engine
    if name == "Settings":
        from rag.core.config import Settings

        return Settings
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
