"""Saved conversations: per-user chats in SQLite (``chats``) and their Markdown export (``markdown``).

May import: rag.answering (citations, to write sources out), rag.core. Never rag.ingestion.
"""
