"""Candidates for a question: dense search (Qwen3 query instruction) and BM25, fused by weighted reciprocal rank.

Reciprocal rank fusion scores a passage ``sum(weight / (k + rank))`` over the rankings it appears in. Dense
retrieval is the stronger signal on most questions, so BM25's weight is lower (``RAG_LEXICAL_WEIGHT``): a passage
both retrievers rank high rises to the top, and weak lexical matches don't push out good dense ones. With the
default weights and equal pools, a passage found by BM25 alone scores below every dense candidate, so it enters the
pool only when dense search returns fewer than ``pool`` passages; BM25's effect is mostly to reorder.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from rag.embeddings import Embedder
from rag.models import Passage
from rag.store import Store

RRF_K = 60


def fuse(rankings: Sequence[tuple[float, Sequence[str]]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of ranked id lists; best first, ties broken by first appearance."""
    scores: dict[str, float] = {}
    for weight, ids in rankings:
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def hybrid_search(store: Store, embedder: Embedder, query: str, doc_ids: Sequence[str], pool: int,
                  dense_weight: float = 1.0, lexical_weight: float = 0.6) -> list[Passage]:
    """The ``pool`` best passages of ``doc_ids`` for ``query``, fused from dense and BM25 rankings."""
    if not doc_ids or pool <= 0:
        return []
    dense = store.query(embedder.embed_query(query), pool, doc_ids) if dense_weight > 0 else []
    lexical = store.lexical.search(query, pool, doc_ids) if lexical_weight > 0 else []
    fused = fuse([(dense_weight, [p.chunk_id for p in dense]), (lexical_weight, [cid for cid, _ in lexical])])
    known = {p.chunk_id: p for p in dense}
    missing = [cid for cid, _ in fused[:pool] if cid not in known]
    known.update(store.get_passages(missing))
    return [replace(known[cid], score=score) for cid, score in fused[:pool] if cid in known]
