"""A question's path after it is asked: rewrite a follow-up, search, rerank within the time budget, build the
prompt (``prompts``), stream the answer (``answer``), map its ``[n]`` to passages (``citations``) and check each
statement against them (``claims``, with the reranker as a support scorer where it fits: ``support``).

May import: rag.search, rag.models, rag.text, rag.core. Never rag.ingestion.
"""
