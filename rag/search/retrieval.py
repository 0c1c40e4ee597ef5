"""Candidates for a question: dense search (Qwen3 query instruction) and BM25, fused into one ranking.

Both retrievers return their ``pool`` best, and then score the other's finds too, so every candidate has a dense
score and a BM25 score (0 when it shares no term with the question). A passage BM25 ranks first and dense search
just missed can then rise above dense finds BM25 knows nothing of.

Fusion (``RAG_FUSION``):

- ``zscore`` (default): each retriever's scores become standard scores among the candidates (how many standard
  deviations above their mean), counted from the mean up (below-average scores count 0), and are added, plus a
  title term (below). A retriever that clearly separates a few candidates from the rest gives them several units;
  one whose scores are all alike gives every candidate about the same small amount, and one whose scores are all
  equal gives nothing, so the retriever that has something to say about this question decides it. Counting only
  the part above the mean means a retriever can lift a passage but never sink one the other found: a passage in
  another language than the question (dense search can find it, BM25 shares no word with it) or in other words
  keeps what dense search gave it. Dense search weighs 1; BM25 weighs 1 times its confidence for this question
  (``lexical_confidence``): how far its best find outscores its average find. Standard scores alone can't see that
  BM25 found the same words everywhere (a question naming the company whose filing is searched matches every
  chunk's header): they stretch the leftover differences to the same size as a real find. BM25 scores have a true
  zero, so their ratio says it; cosine similarities don't (texts of one language and field sit well above 0
  whatever their relevance, by an amount that depends on the embedder), so dense search keeps its weight.
- ``scores``: each retriever's scores scaled to 0–1 among the candidates (min-max) and added with fixed weights
  (0.8 dense, 0.2 BM25, title 0.1): the default before, chosen on English filings where dense search is strong.
  Min-max scaling stretches any retriever to the full 0–1, however little its scores say, so the fixed weights
  decide: where dense search is weak (other languages, a weak embedder) it buries BM25's first hit.
- ``rrf``: weighted reciprocal rank fusion, ``sum(weight / (60 + rank))`` over the two rankings (each candidate's
  rank among all candidates by that retriever's score), weights 1 and 1, without the title term.

The title term (``zscore`` and ``scores``, several documents searched): how well each document's title (file name
and PDF title, BM25 over the titles of the documents searched) matches the question, scaled so the best-matching
title gets 1, times the title weight, added to each candidate of that document: under ``zscore`` at most half a
standard deviation. It favours the passages of the document a question names ("3M's FY2018 capex"), which chunk
text alone rarely does in a library of look-alike documents; it only reorders candidates the retrievers found, is
too small to outweigh what a retriever found on its own, and with one document selected it changes nothing.

The reference term (every method): a question that names a page ("the chart on page 14", "p. 14", "slide 3", in
the languages of ``rag.text.references``) or a figure or table ("Figure 3", "Table 2") lifts the chunks of that page
and those holding that caption (``references``). The page is looked up by its printed label first (the PDF's page
labels, "14" on the PDF's 16th page), then by its position (counted half where another page is printed so); a caption
counts fully where a line opens with it and half where the text only mentions it. Those chunks join the candidates
(scored by both retrievers like any other) and get ``reference`` times the method's ``REFERENCE_WEIGHTS`` on top:
under ``zscore`` two standard deviations, enough to put the named page first unless the retrievers find it clearly
unrelated, and never a filter: the other pages stay in the ranking.

The page-image term (``RAG_VISUAL``, with a visual embedder): the question is embedded by Qwen3-VL-Embedding and
compared with the stored vectors of rendered pages (``Store.page_scores``); the chunks of the ``VISUAL_PAGES``
nearest pages join the candidates, each with its page's similarity as a third retriever's score, scaled and
weighed (``Fusion.visual``) like dense search's.

The methods were compared on FinanceBench (both scopes), SciFact, Cranfield and XQuAD in six languages
(docs/BENCHMARKS.md): ``zscore`` is above the better of the two retrievers or at most 0.03 below it (recall@1,
recall@5, MRR@10) on every one, where ``scores`` falls up to 0.85 below it in recall@1 (0.79 in MRR@10) in languages
the embedder reads poorly and ``rrf`` up to 0.74 (0.60).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from rag.core.config import Settings
from rag.core.records import Passage
from rag.models.embedder import Embedder
from rag.models.visual import PageEmbedder
from rag.search.store import Store, split_chunk_id
from rag.text.references import References, caption_kind, caption_strings, find_references

RRF_K = 60
# Each method's weights (dense, BM25, title) where the settings leave them empty.
DEFAULT_WEIGHTS = {"zscore": (1.0, 1.0, 0.5), "scores": (0.8, 0.2, 0.1), "rrf": (1.0, 1.0, 0.0)}
# What a full reference match adds under each method (times ``Fusion.reference``): standard deviations under zscore,
# a share of the 0-1 scale under scores, and under rrf the weight of the references' own ranking.
REFERENCE_WEIGHTS = {"zscore": 2.0, "scores": 0.4, "rrf": 1.0}
VISUAL_PAGES = 10  # pages taken from the page-image search
NAMED_BY_POSITION = 0.5  # a page named by its position whose printed label differs (label first, then position)


@dataclass(frozen=True)
class Fusion:
    """How the two rankings become one: ``method`` ("zscore", "scores" or "rrf") and the weight of each signal."""

    method: str = "zscore"
    dense: float = DEFAULT_WEIGHTS["zscore"][0]
    lexical: float = DEFAULT_WEIGHTS["zscore"][1]
    title: float = DEFAULT_WEIGHTS["zscore"][2]
    reference: float = 1.0  # times REFERENCE_WEIGHTS[method]; 0 ignores pages and captions a question names
    visual: float = 1.0  # the page-image search, where there is one

    @classmethod
    def of(cls, method: str, dense: float | None = None, lexical: float | None = None,
           title: float | None = None, reference: float = 1.0, visual: float = 1.0) -> Fusion:
        """``method`` with the weights given, and its own defaults for those left None."""
        defaults = DEFAULT_WEIGHTS[method]
        return cls(method, *(d if w is None else w for w, d in zip((dense, lexical, title), defaults, strict=True)),
                   reference=reference, visual=visual)

    @classmethod
    def from_settings(cls, settings: Settings) -> Fusion:
        return cls.of(settings.fusion, settings.dense_weight, settings.lexical_weight, settings.title_weight,
                      settings.reference_weight, settings.visual_weight)


def fuse(rankings: Sequence[tuple[float, Sequence[str]]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion of ranked id lists; best first, ties broken by first appearance."""
    scores: dict[str, float] = {}
    for weight, ids in rankings:
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def min_max(values: dict[str, float]) -> dict[str, float]:
    """Scores scaled to 0-1 (lowest 0, highest 1); all 0 when they are all equal."""
    low, high = min(values.values()), max(values.values())
    return {cid: (v - low) / (high - low) if high > low else 0.0 for cid, v in values.items()}


def above_mean(values: dict[str, float]) -> dict[str, float]:
    """Standard scores (how many standard deviations above the mean), 0 for those at or below the mean; all 0
    when the scores are all equal."""
    n, low, high = len(values), min(values.values()), max(values.values())
    mean = math.fsum(values.values()) / n
    # pstdev, without its exact fractions (a third of a question's fusion); exactly 0 when the scores are equal
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values.values()) / n) if high > low else 0.0
    return {cid: max(0.0, (v - mean) / spread) if spread > 0 else 0.0 for cid, v in values.items()}


def fuse_scores(signals: Sequence[tuple[float, dict[str, float]]], candidates: Sequence[str],
                boost: dict[str, float] | None = None,
                scale: Callable[[dict[str, float]], dict[str, float]] = min_max) -> list[tuple[str, float]]:
    """Weighted sum of each signal's scores among ``candidates`` put on a common ``scale`` (a candidate a signal
    didn't score gets that signal's lowest score), plus ``boost`` as given; best first, ties in candidate order."""
    total = dict.fromkeys(candidates, 0.0)
    for weight, scores in signals:
        if weight <= 0 or not scores or not candidates:
            continue
        floor = min(scores.values())
        for cid, value in scale({cid: scores.get(cid, floor) for cid in candidates}).items():
            total[cid] += weight * value
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
    references: dict[str, float] = field(default_factory=dict)  # chunk id → how surely it is what the question names
    visual: dict[str, float] = field(default_factory=dict)  # chunk id → its page image's similarity to the question

    @property
    def candidates(self) -> list[str]:
        """Every candidate once: dense search's finds, then BM25's, the chunks the question names, and those of
        the pages whose images match it."""
        return list(dict.fromkeys([*self.dense, *self.lexical, *self.references, *self.visual]))


def gather(store: Store, embedder: Embedder, query: str, doc_ids: Sequence[str], pool: int,
           fusion: Fusion = Fusion(), visual: PageEmbedder | None = None) -> Signals:
    """The ``pool`` best of dense and BM25 search among ``doc_ids``, each scored by the other retriever too (and,
    with a ``visual`` embedder, the chunks of the pages whose images are nearest the question)."""
    vector = embedder.embed_query(query) if fusion.dense > 0 else None
    dense = dict(store.nearest(vector, pool, doc_ids)) if vector is not None else {}
    lexical = dict(store.lexical_search(query, pool, doc_ids)) if fusion.lexical > 0 else {}
    found = len(dense), len(lexical)
    if dense and lexical:
        dense.update(store.dense_scores(vector, [cid for cid in lexical if cid not in dense]))
        lexical.update({cid: s for cid, s in store.lexical_scores(query, list(dense)).items() if s > 0})
    named = references(store, find_references(query), doc_ids, pool) if fusion.reference > 0 else {}
    pictured = page_images(store, visual, query, doc_ids) if visual is not None and fusion.visual > 0 else {}
    unseen = [cid for cid in dict.fromkeys([*named, *pictured]) if cid not in dense and cid not in lexical]
    if unseen:  # the named page's chunks are scored by both retrievers like any other candidate
        if vector is not None:
            dense.update(store.dense_scores(vector, unseen))
        if fusion.lexical > 0:
            lexical.update({cid: s for cid, s in store.lexical_scores(query, unseen).items() if s > 0})
    wants_titles = fusion.method != "rrf" and fusion.title > 0 and len(set(doc_ids)) > 1
    titles = store.title_scores(query, doc_ids) if wants_titles else {}
    return Signals(dense, lexical, *found, titles, named, pictured)


def page_images(store: Store, visual: PageEmbedder, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
    """The chunks of the ``VISUAL_PAGES`` pages of ``doc_ids`` whose images are nearest ``query``, each scored with
    its page's cosine similarity."""
    pages = store.page_scores(visual.embed_query(query), visual.key, doc_ids, VISUAL_PAGES)
    by_doc: dict[str, dict[int, float]] = {}
    for doc_id, page, score in pages:
        by_doc.setdefault(doc_id, {})[page] = score
    out: dict[str, float] = {}
    for doc_id, scores in by_doc.items():
        for cid, p in store.find_chunks([doc_id], {"page_start": {"$in": list(scores)}}).items():
            out[cid] = scores[p.page_start]
    return out


def references(store: Store, named: References, doc_ids: Sequence[str], limit: int) -> dict[str, float]:
    """The chunks of ``doc_ids`` a question's ``named`` pages and captions point at, each scored 0-1: 1 for a page
    whose printed label is the one named (a page without a label of its own is labelled by its position), 0.5
    (``NAMED_BY_POSITION``) for the page at that position when another page of its document is printed with that
    label (1 when none is); 1 for a chunk where a line opens with the caption named, 0.5 where it only mentions
    it."""
    if not named or not doc_ids:
        return {}
    scores: dict[str, float] = {}

    def keep(cid: str, value: float) -> None:
        if value > scores.get(cid, 0.0):
            scores[cid] = value

    for label in named.pages:
        labelled = store.find_chunks(doc_ids, {"page_label": label}, limit=limit)
        for cid in labelled:
            keep(cid, 1.0)
        if label.isdigit():  # the page at that position: as sure where no page of its document is printed so
            printed = {p.doc_id for p in labelled.values()}
            for cid, p in store.find_chunks(doc_ids, {"page_start": int(label)}, limit=limit).items():
                keep(cid, NAMED_BY_POSITION if p.doc_id in printed else 1.0)
    for kind, number in named.captions:
        for cid, p in store.find_chunks(doc_ids, None, caption_strings(kind, number), limit).items():
            keep(cid, caption_kind(p.text, kind, number))
    return {cid: value for cid, value in scores.items() if value > 0}


def lexical_confidence(signals: Signals) -> float:
    """How much BM25 has to say about this question, 0-1: how far its best find outscores the average of its own
    finds, as a share of that average (1 once the best scores twice the average; 1 with a single find).

    BM25 scores have a true zero (no word shared with the question), so this compares like with like across
    questions: when every find shares the same words with the question (the company and year it names, in a
    filing about that company), the best barely outscores the average and BM25's order is noise."""
    found = list(signals.lexical.values())[:signals.lexical_found]
    if len(found) < 2:
        return 1.0
    mean = statistics.fmean(found)
    return min(1.0, max(0.0, max(found) / mean - 1.0)) if mean > 0 else 0.0


def rank(signals: Signals, fusion: Fusion = Fusion(),
         scale: Callable[[dict[str, float]], dict[str, float]] | None = None) -> list[tuple[str, float]]:
    """The candidates fused into one ranking, best first: (chunk_id, fused score). Score fusion puts each
    retriever's scores on the method's scale (``above_mean`` for zscore, ``min_max`` for scores) unless ``scale``
    is given; zscore weighs BM25 by its ``lexical_confidence`` too."""
    dense, lexical = signals.dense, signals.lexical
    named = fusion.reference * REFERENCE_WEIGHTS.get(fusion.method, 0.0)
    if fusion.method == "rrf":
        rankings = [(fusion.dense, _ranked(dense)), (fusion.lexical, _ranked(lexical))]
        if fusion.visual > 0 and signals.visual:
            rankings.append((fusion.visual, _ranked(signals.visual)))
        if named > 0 and signals.references:
            rankings.append((named, _ranked(signals.references)))
        return fuse(rankings)
    candidates = signals.candidates
    boost: dict[str, float] = {}
    if fusion.title > 0 and signals.titles:
        boost = {cid: fusion.title * signals.titles.get(split_chunk_id(cid)[0], 0.0) for cid in candidates}
    if named > 0:
        for cid, value in signals.references.items():
            boost[cid] = boost.get(cid, 0.0) + named * value
    matched = {cid: lexical.get(cid, 0.0) for cid in candidates} if lexical else {}  # no shared term: 0
    lexical_weight = fusion.lexical
    if fusion.method == "zscore":
        lexical_weight *= lexical_confidence(signals)
    scale = scale or (above_mean if fusion.method == "zscore" else min_max)
    return fuse_scores([(fusion.dense, dense), (lexical_weight, matched), (fusion.visual, signals.visual)],
                       candidates, boost, scale)


def hybrid_search(store: Store, embedder: Embedder, query: str, doc_ids: Sequence[str], pool: int,
                  fusion: Fusion = Fusion(), keep: int | None = None,
                  visual: PageEmbedder | None = None) -> list[Passage]:
    """The best passages of ``doc_ids`` for ``query``, fused from the ``pool`` best of dense and BM25 search.

    ``keep`` (default ``pool``) is how many fused chunks are read and returned (fewer once chunks of one page are
    joined): a caller that needs only the first few saves reading the rest.
    """
    if not doc_ids or pool <= 0:
        return []
    fused = rank(gather(store, embedder, query, doc_ids, pool, fusion, visual), fusion)[:keep or pool]
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
