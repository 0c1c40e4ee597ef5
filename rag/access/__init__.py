"""Who is asking and what they may see: logins (``users``), each person's documents and collections
(``library``, SQLite in the data folder), and the one access decision every path goes through (``gate``).

May import: rag.conversations, rag.answering, rag.ingestion, rag.search, rag.models, rag.text, rag.core.
"""
