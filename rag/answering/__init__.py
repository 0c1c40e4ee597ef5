"""A question's path after it is asked: rewrite a follow-up, search, rerank within the time budget, build the
prompt (``prompts``), stream the answer (``answer``) and map its ``[n]`` to passages (``citations``).

May import: rag.search, rag.models, rag.text, rag.core. Never rag.ingestion.
"""
