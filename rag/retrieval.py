"""Candidates for a question: dense search (Qwen3 query instruction) and BM25, fused into one ranking.

Both retrievers return their ``pool`` best, and then score the other's finds too, so every candidate has a dense
score and a BM25 score (0 when it shares no term with the question). A passage BM25 ranks first and dense search
just missed can then rise above dense finds BM25 knows nothing of.

Fusion (``RAG_FUSION``):

- ``scores`` (default): each retriever's scores are scaled to 0–1 among the candidates (min-max) and added with
  their weights, plus a title term: how well the document's title (file name and PDF title, BM25 over the titles
  of the documents searched) matches the question, scaled so the best-matching title gets 1. Scaled scores keep
  how far apart the candidates are, which ranks throw away: a passage far ahead in one retriever and middling in
  the other stays ahead. The title term favours the passages of the document a question names ("3M's FY2018
  capex"), which chunk text alone rarely does in a library of look-alike documents; it only reorders candidates
  the retrievers found, and with one document selected it changes nothing.
- ``rrf``: weighted reciprocal rank fusion, ``sum(weight / (60 + rank))`` over the two rankings (each candidate's
  rank among all candidates by that retriever's score), without the title term.

The default weights (dense 0.8, BM25 0.2, title 0.1) and the choice of scaled scores over RRF were measured on
FinanceBench filings, SciFact and Cranfield together (docs/BENCHMARKS.md): dense search is the stronger signal on
long documents, BM25 on short abstracts, and scaled scores beat rank fusion on all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from rag.config import Settings
from rag.embeddings import Embedder
from rag.models import Passage
from rag.store import Store, split_chunk_id

RRF_K = 60


@dataclass(frozen=True)
class Fusion:
    """How the two rankings become one: ``method`` ("scores" or "rrf") and the weight of each signal."""

    method: str = "scores"
    dense: float = 0.8
    lexical: float = 0.2
    title: float = 0.1

    @classmethod
    def from_settings(cls, settings: Settings) -> Fusion:
        return cls(settings.fusion, settings.dense_weight, settings.lexical_weight, settings.title_weight)


def fuse(rankings: Sequence[tuple[float, Sequence[str]]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of ranked id lists; best first, ties broken by first appearance."""
    scores: dict[str, float] = {}
    for weight, ids in rankings:
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def fuse_scores(signals: Sequence[tuple[float, dict[str, float]]], candidates: Sequence[str],
                boost: dict[str, float] | None = None) -> list[tuple[str, float]]:
    """Weighted sum of each signal's scores scaled to 0-1 among ``candidates`` (a candidate a signal didn't score
    gets that signal's lowest score), plus ``boost`` as given; best first, ties in candidate order."""
    total = dict.fromkeys(candidates, 0.0)
    for weight, scores in signals:
        if weight <= 0 or not scores:
            continue
        floor = min(scores.values())
        values = {cid: scores.get(cid, floor) for cid in candidates}
        low, high = min(values.values()), max(values.values())
        if high > low:
            for cid, value in values.items():
                total[cid] += weight * (value - low) / (high - low)
    for cid, value in (boost or {}).items():
        if cid in total:
            total[cid] += value
    return sorted(total.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class Signals:
    """What fusion works from for one question: each retriever's score of every candidate (``dense``: cosine;
    ``lexical``: BM25, absent where a candidate shares no term with the question), how many of each it found
    itself (its first entries), and the title match of the documents searched (empty with one document)."""

    dense: dict[str, float]
    lexical: dict[str, float]
    dense_found: int = 0
    lexical_found: int = 0
    titles: dict[str, float] = field(default_factory=dict)

    @property
    def candidates(self) -> list[str]:
        """Every candidate once: dense search's finds, then BM25's."""
        return list(dict.fromkeys([*self.dense, *self.lexical]))


def gather(store: Store, embedder: Embedder, query: str, doc_ids: Sequence[str], pool: int,
           fusion: Fusion = Fusion()) -> Signals:
    """The ``pool`` best of dense and BM25 search among ``doc_ids``, each scored by the other retriever too."""
    vector = embedder.embed_query(query) if fusion.dense > 0 else None
    dense = dict(store.nearest(vector, pool, doc_ids)) if vector is not None else {}
    lexical = dict(store.lexical_search(query, pool, doc_ids)) if fusion.lexical > 0 else {}
    found = len(dense), len(lexical)
    if dense and lexical:
        dense.update(store.dense_scores(vector, [cid for cid in lexical if cid not in dense]))
        lexical.update({cid: s for cid, s in store.lexical_scores(query, list(dense)).items() if s > 0})
    titles = store.title_scores(query, doc_ids) if fusion.title > 0 and len(set(doc_ids)) > 1 else {}
    return Signals(dense, lexical, *found, titles)


def rank(signals: Signals, fusion: Fusion = Fusion()) -> list[tuple[str, float]]:
    """The candidates fused into one ranking, best first: (chunk_id, fused score)."""
    dense, lexical = signals.dense, signals.lexical
    if fusion.method == "rrf":
        return fuse([(fusion.dense, _ranked(dense)), (fusion.lexical, _ranked(lexical))])
    candidates = signals.candidates
    boost: dict[str, float] = {}
    if fusion.title > 0 and signals.titles:
        boost = {cid: fusion.title * signals.titles.get(split_chunk_id(cid)[0], 0.0) for cid in candidates}
    matched = {cid: lexical.get(cid, 0.0) for cid in candidates} if lexical else {}  # no shared term: 0
    return fuse_scores([(fusion.dense, dense), (fusion.lexical, matched)], candidates, boost)


def hybrid_search(store: Store, embedder: Embedder, query: str, doc_ids: Sequence[str], pool: int,
                  fusion: Fusion = Fusion(), keep: int | None = None) -> list[Passage]:
    """The best passages of ``doc_ids`` for ``query``, fused from the ``pool`` best of dense and BM25 search.

    ``keep`` (default ``pool``) is how many fused chunks are read and returned (fewer once chunks of one page are
    joined): a caller that needs only the first few saves reading the rest.
    """
    if not doc_ids or pool <= 0:
        return []
    fused = rank(gather(store, embedder, query, doc_ids, pool, fusion), fusion)[:keep or pool]
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
