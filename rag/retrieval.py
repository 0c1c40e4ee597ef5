"""Candidates for a question: dense search (Qwen3 query instruction) and BM25, fused by weighted reciprocal rank.

Reciprocal rank fusion scores a passage ``sum(weight / (k + rank))`` over the rankings. Each retriever returns its
``pool`` best, and then scores the other's finds too, so every candidate has a rank in both rankings: its rank among
all candidates by that retriever's score. For a retriever's own finds that is their true rank; for the others it is
the best rank they could have (they scored below its last find). Plain RRF, which gives a passage missing from a
list no contribution, would let a passage found by one retriever only never beat the other's weakest find; here a
passage BM25 ranks first and dense search just missed can rise above dense finds that BM25 ranks low. A passage
that shares no term with the question gets nothing from BM25. Dense retrieval is the stronger signal on most
questions, so BM25's weight is lower (``RAG_LEXICAL_WEIGHT``).
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
                  dense_weight: float = 1.0, lexical_weight: float = 0.6, keep: int | None = None) -> list[Passage]:
    """The best passages of ``doc_ids`` for ``query``, fused from the ``pool`` best of dense and BM25 search.

    ``keep`` (default ``pool``) is how many fused chunks are read and returned (fewer once chunks of one page are
    joined): a caller that needs only the first few saves reading the rest.
    """
    if not doc_ids or pool <= 0:
        return []
    vector = embedder.embed_query(query) if dense_weight > 0 else None
    dense = dict(store.nearest(vector, pool, doc_ids)) if vector is not None else {}
    lexical = dict(store.lexical_search(query, pool, doc_ids)) if lexical_weight > 0 else {}
    if dense and lexical:
        dense.update(store.dense_scores(vector, [cid for cid in lexical if cid not in dense]))
        lexical.update({cid: s for cid, s in store.lexical_scores(query, list(dense)).items() if s > 0})
    fused = fuse([(dense_weight, _ranked(dense)), (lexical_weight, _ranked(lexical))])[:keep or pool]
    found = store.get_passages([cid for cid, _ in fused])  # one read, of what is kept only
    return merge_pages([replace(found[cid], score=score) for cid, score in fused if cid in found])


def merge_pages(passages: Sequence[Passage]) -> list[Passage]:
    """One passage per page: chunks of the same page are joined, in reading order, at the rank of the best one.

    A page's second chunk then widens its context instead of taking a place another page could have, so the
    passages a question gets cover more of the documents.
    """
    groups: dict[tuple[str, int, int], list[Passage]] = {}
    for p in passages:
        groups.setdefault((p.doc_id, p.page_start, p.page_end), []).append(p)
    return [_join(group) if len(group) > 1 else group[0] for group in groups.values()]


def _join(group: Sequence[Passage]) -> Passage:
    """Chunks of one page as one passage: overlapping text stitched, gaps marked with an ellipsis."""
    ordered = sorted(group, key=lambda p: p.char_start)
    text, end = ordered[0].text, ordered[0].char_end
    for p in ordered[1:]:
        overlap = end - p.char_start
        exact = len(p.text) == p.char_end - p.char_start
        if 0 <= overlap <= len(p.text) and exact:
            text += p.text[overlap:]
        elif p.char_end > end or not exact:
            text += "\n…\n" + p.text
        end = max(end, p.char_end)
    best = group[0]
    return replace(best, text=text, char_start=ordered[0].char_start, char_end=end)


def _ranked(scores: dict[str, float]) -> list[str]:
    """Ids by descending score (ties keep their order)."""
    return sorted(scores, key=lambda cid: -scores[cid])
