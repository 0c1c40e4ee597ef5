"""A PDF's path into the index: read its pages (``documents``: pypdf, with ``ocr`` for pages without usable text),
cut them into page-aware chunks (``chunking``), in parser processes (``workers``, run by ``pool``), then embed and
store them whole or not at all (``ingest``).

May import: rag.search, rag.models, rag.text, rag.core. Never rag.answering or rag.conversations.
"""
