"""Finding passages: the vector store (``store``: Chroma embedded or a server, with the BM25 index beside it), the
BM25 index itself (``lexical``), and hybrid retrieval (``retrieval``: dense ⊕ BM25, each scoring the other's finds,
fused, one passage per page).

May import: rag.models (the ``Embedder`` interface, to embed a question), rag.text, rag.core.
"""
