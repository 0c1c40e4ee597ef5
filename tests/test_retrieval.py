"""Fusion of dense and BM25 results: each retriever scores the other's finds, so a passage only BM25 found can
still make the candidate pool, and one BM25 knows nothing of gets nothing from it; scaled scores keep how far
apart candidates are; standard scores let the retriever that separates the candidates decide; the title term
favours the document a question names."""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Sequence

import pytest

from rag.core.config import Settings
from rag.core.records import Passage
from rag.search.lexical import title_scores, tokenize
from rag.search.retrieval import (
    Fusion,
    Signals,
    above_mean,
    fuse,
    fuse_scores,
    hybrid_search,
    lexical_confidence,
    merge_pages,
    rank,
)

RRF = Fusion("rrf", 1.0, 0.6, 0.0)
SCORES = Fusion("scores", 0.8, 0.2, 0.1)  # the former default


def _passage(cid: str, score: float = 0.0, per_page: int = 1) -> Passage:
    """Chunk i of a document lies on page i // per_page + 1."""
    page = int(cid.split(":")[1]) // per_page + 1
    return Passage(chunk_id=cid, doc_id=cid.split(":")[0], file_name="f.pdf", text=cid, page_start=page,
                   page_end=page, char_start=0, char_end=1, score=score)


class StubEmbedder:
    """Any query → the same vector (the stub store below ignores it)."""

    def embed_query(self, text: str) -> list[float]:
        return [1.0]


class StubStore:
    """Dense search finds d0..d39 (cosine 0.9 down to 0.51); BM25 finds "rare:0" first, then d30..d38."""

    def __init__(self, per_page: int = 1, titles: dict[str, float] | None = None) -> None:
        self.per_page = per_page
        self.titles = titles or {}
        self.title_asked: list[list[str]] = []
        self.dense = {f"d:{i}": 0.9 - 0.01 * i for i in range(40)}
        self.dense["rare:0"] = 0.45  # just below dense search's weakest find
        self.bm25 = {"rare:0": 12.0, **{f"d:{i}": 5.0 - 0.1 * (i - 30) for i in range(30, 39)}}
        self.scored: list[str] = []

    def nearest(self, vector: Sequence[float], k: int, doc_ids: Sequence[str]) -> list[tuple[str, float]]:
        return list(self.dense.items())[:40][:k]

    def lexical_search(self, query: str, k: int, doc_ids: Sequence[str]) -> list[tuple[str, float]]:
        return sorted(self.bm25.items(), key=lambda kv: -kv[1])[:k]

    def dense_scores(self, vector: Sequence[float], ids: Sequence[str]) -> dict[str, float]:
        self.scored.extend(ids)
        return {cid: self.dense[cid] for cid in ids if cid in self.dense}

    def lexical_scores(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        return {cid: self.bm25.get(cid, 0.0) for cid in ids}

    def title_scores(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        self.title_asked.append(list(doc_ids))
        return {d: s for d, s in self.titles.items() if d in doc_ids}

    def get_passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        self.read = list(ids)
        return {cid: _passage(cid, per_page=self.per_page) for cid in ids}


@pytest.mark.parametrize("fusion", [Fusion(), SCORES, RRF], ids=["zscore", "scores", "rrf"])
def test_a_passage_only_bm25_found_makes_the_pool(fusion: Fusion) -> None:
    store = StubStore()
    found = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 40, fusion)]
    assert len(found) == 40
    assert "rare:0" in found and "d:39" not in found  # BM25's first beats dense's weakest find that BM25 lacks
    assert store.scored == ["rare:0"]  # only the passage dense search missed was scored again
    # Plain RRF over the two truncated lists would have left it out of the pool.
    plain = [cid for cid, _ in fuse([(1.0, list(store.dense)[:40]),
                                     (0.6, [c for c, _ in store.lexical_search("q", 40, [])])])][:40]
    assert "rare:0" not in plain


def test_rank_fusion_lifts_bm25s_first_above_middling_dense_finds() -> None:
    store = StubStore()
    found = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 40, RRF)]
    # Ranked by both: BM25's first and dense's 41st beats dense's 20th that BM25 ranks nowhere.
    assert found.index("rare:0") < found.index("d:20")


def test_scaled_scores_keep_how_far_apart_the_candidates_are() -> None:
    dense = {"x": 0.80, "y": 0.79, "z": 0.50}  # x and y nearly tied in dense search
    bm25 = {"x": 1.0, "y": 9.0, "z": 0.0}  # y far ahead in BM25
    by_scores = [cid for cid, _ in fuse_scores([(0.8, dense), (0.2, bm25)], ["x", "y", "z"])]
    by_ranks = [cid for cid, _ in fuse([(1.0, ["x", "y", "z"]), (0.6, ["y", "x"])])]
    assert by_scores[0] == "y"  # a hair behind in one, far ahead in the other
    assert by_ranks[0] == "x"  # ranks see only first and second in each
    scored = dict(fuse_scores([(0.8, dense), (0.2, bm25)], ["x", "y", "z"]))
    assert scored["z"] == 0.0 and scored["y"] == pytest.approx(0.8 * 0.29 / 0.30 + 0.2)
    # A candidate a signal didn't score gets that signal's lowest score; a signal without spread adds nothing.
    assert dict(fuse_scores([(1.0, {"a": 0.9, "b": 0.6})], ["a", "b", "c"]))["c"] == 0.0
    assert dict(fuse_scores([(1.0, {"a": 0.5, "b": 0.5})], ["a", "b"])) == {"a": 0.0, "b": 0.0}


def test_bm25_only_lifts_passages_that_share_a_term_with_the_question() -> None:
    store = StubStore()
    for fusion in (Fusion(), SCORES, RRF):
        found = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 41, fusion)]
        # d:30..d:38 match the question's words; d:39 doesn't, so BM25 can't lift it above them.
        assert found.index("d:39") > max(found.index(f"d:{i}") for i in range(30, 39))
        # Dense order holds among passages BM25 scores alike (none of d0..d29 matches a term).
        assert [c for c in found if c in {f"d:{i}" for i in range(30)}] == [f"d:{i}" for i in range(30)]


def test_weights_of_zero_leave_one_retriever() -> None:
    store = StubStore()
    for method in ("zscore", "scores", "rrf"):
        dense_only = hybrid_search(store, StubEmbedder(), "q", ["d"], 10, Fusion(method, 1.0, 0.0, 0.0))
        assert [p.chunk_id for p in dense_only] == [f"d:{i}" for i in range(10)]
        lexical_only = hybrid_search(store, StubEmbedder(), "q", ["d"], 3, Fusion(method, 0.0, 1.0, 0.0))
        assert [p.chunk_id for p in lexical_only] == ["rare:0", "d:30", "d:31"]


def test_the_document_a_question_names_comes_first() -> None:
    store = StubStore(titles={"rare": 1.0})  # the question matches the title of document "rare" best
    plain = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 40,
                                               replace(SCORES, title=0.0))]
    named = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 40,
                                               replace(SCORES, title=1.0))]
    assert plain.index("rare:0") > 10 and named[0] == "rare:0"
    assert [c for c in named if c != "rare:0"] == [c for c in plain if c != "rare:0"]  # others keep their order
    # With one document searched the title can't choose between documents: it isn't asked for.
    store.title_asked.clear()
    hybrid_search(store, StubEmbedder(), "q", ["d"], 40, Fusion(title=1.0))
    assert store.title_asked == []
    # Rank fusion has no title term, whatever its weight.
    rrf = [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], 40, replace(RRF, title=1.0))]
    assert rrf.index("rare:0") > 0 and store.title_asked == []


def test_title_scores_favour_the_named_company_and_year() -> None:
    titles = {"a": tokenize("3M 2018 10K"), "b": tokenize("3M 2022 10K"), "c": tokenize("ADOBE 2022 10K"),
              "d": tokenize("Annual report")}
    scores = title_scores("What is the FY2018 capital expenditure amount for 3M?", titles)
    assert scores["a"] == 1.0 and 0 < scores["b"] < 1.0  # company and year, then company alone
    assert "c" not in scores and "d" not in scores  # no shared term
    assert title_scores("How did Adobe do in 2022?", titles)["c"] == 1.0
    assert title_scores("the of and", titles) == {} and title_scores("3M", {}) == {}


def test_chunks_of_one_page_become_one_passage_at_the_best_rank() -> None:
    page = "Revenue grew to 41 million dollars. The board approved a dividend. Parking is free."
    a = Passage("d:0", "d", "f.pdf", page[0:40], 3, 3, 0, 40, score=0.9)
    b = Passage("d:1", "d", "f.pdf", page[30:70], 3, 3, 30, 70, score=0.5)
    other = Passage("d:2", "d", "f.pdf", "Another page.", 4, 4, 100, 113, score=0.7)
    late = Passage("d:3", "d", "f.pdf", page[75:], 3, 3, 75, len(page), score=0.4)
    merged = merge_pages([b, other, a, late])
    assert [(p.page_start, p.chunk_id) for p in merged] == [(3, "d:1"), (4, "d:2")]
    first = merged[0]
    assert first.text == page[0:70] + "\n…\n" + page[75:]  # overlap stitched once, the gap marked
    assert (first.char_start, first.char_end, first.score) == (0, len(page), 0.5)
    assert merge_pages([other]) == [other]


def test_a_page_found_twice_is_one_candidate() -> None:
    store = StubStore(per_page=2)  # chunks 0 and 1 on page 1, 2 and 3 on page 2, ...
    found = hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], pool=10, fusion=RRF)
    assert len(found) < 10 and len({(p.doc_id, p.page_start) for p in found}) == len(found)
    assert found[0].page_start == 16 and found[0].text == "d:30\n…\nd:31"  # both found by both retrievers


def test_only_the_passages_kept_are_read() -> None:
    store = StubStore()
    found = hybrid_search(store, StubEmbedder(), "q", ["d", "rare"], pool=40, keep=3)
    assert [p.chunk_id for p in found] == store.read and len(store.read) == 3
    assert [p.chunk_id for p in found] == [p.chunk_id for p in hybrid_search(store, StubEmbedder(), "q",
                                                                             ["d", "rare"], pool=40)][:3]


def test_the_fusion_follows_the_settings() -> None:
    assert Fusion.from_settings(Settings.from_env({})) == Fusion() == Fusion("zscore", 1.0, 1.0, 0.5)
    # Each method brings its own weights unless they are set: the former default is one setting away.
    assert Fusion.from_settings(Settings.from_env({"RAG_FUSION": "scores"})) == SCORES
    assert Fusion.from_settings(Settings.from_env({"RAG_FUSION": "rrf"})) == Fusion("rrf", 1.0, 1.0, 0.0)
    custom = Settings.from_env({"RAG_FUSION": "rrf", "RAG_DENSE_WEIGHT": "1", "RAG_LEXICAL_WEIGHT": "0.6",
                                "RAG_TITLE_WEIGHT": "0"})
    assert Fusion.from_settings(custom) == RRF
    assert Fusion.from_settings(Settings.from_env({"RAG_LEXICAL_WEIGHT": "2"})) == Fusion("zscore", 1.0, 2.0, 0.5)


# --- standard scores (the default fusion) on constructed candidates ----------------------------------------------
def _signals(dense: dict[str, float], lexical: dict[str, float], titles: dict[str, float] | None = None) -> Signals:
    """Each retriever's scores of every candidate, as ``gather`` hands them over (BM25 leaves out non-matches)."""
    return Signals(dense, {c: s for c, s in lexical.items() if s > 0}, len(dense), len(lexical), titles or {})


def _order(signals: Signals, fusion: Fusion = Fusion()) -> list[str]:
    return [cid for cid, _ in rank(signals, fusion)]


def test_standard_scores_count_from_the_mean_up() -> None:
    scores = above_mean({"a": 4.0, "b": 2.0, "c": 0.0, "d": 2.0})
    assert scores["a"] == pytest.approx(2 / 2 ** 0.5) and scores["b"] == scores["c"] == scores["d"] == 0.0
    assert above_mean({"a": 0.5, "b": 0.5}) == {"a": 0.0, "b": 0.0}  # no spread, nothing to say


def test_a_dense_search_with_nothing_to_say_leaves_bm25s_order() -> None:
    bm25 = {"b:7": 12.0, **{f"b:{i}": 5.0 - 0.1 * i for i in range(7)}}
    chunks = [f"b:{i}" for i in range(40)]
    # Every passage equally close to the question (an embedder that can't read the language): BM25 decides alone.
    flat = _signals(dict.fromkeys(chunks, 0.5), bm25)
    assert _order(flat)[:8] == ["b:7"] + [f"b:{i}" for i in range(7)]
    # Scores that differ by noise only: BM25's clear first stays first. Min-max scaling stretches the same noise to
    # the full range and lets its fixed dense weight bury BM25's first hit.
    noisy = _signals({c: 0.5 + 0.001 * ((3 * i) % 10) for i, c in enumerate(chunks)}, bm25)
    assert _order(noisy)[0] == "b:7"
    assert _order(noisy, SCORES)[0] != "b:7"


def test_a_passage_both_retrievers_rank_high_wins() -> None:
    dense = {"a": 0.90, "x": 0.88, "b": 0.60, **{f"o:{i}": 0.70 - 0.005 * i for i in range(20)}}
    bm25 = {"b": 12.0, "x": 11.5, **{f"o:{i}": 3.0 - 0.05 * i for i in range(20)}}
    order = _order(_signals(dense, bm25))
    assert order[0] == "x"  # second in both beats first in one alone
    assert set(order[1:3]) == {"a", "b"}


def test_when_bm25_finds_nothing_the_dense_order_is_kept() -> None:
    dense = {f"d:{i}": 0.8 - 0.01 * i for i in range(30)}
    for fusion in (Fusion(), SCORES, RRF):
        assert _order(_signals(dense, {}), fusion) == list(dense)


def test_a_passage_in_another_language_keeps_its_place() -> None:
    """Dense search finds an English passage far ahead for a Chinese question; BM25 shares no word with it and
    matches the Chinese passages (of a document whose title matches the question) only middlingly."""
    dense = {"en:0": 0.80, **{f"zh:{i}": 0.50 - 0.005 * i for i in range(20)}}
    bm25 = {f"zh:{i}": 4.0 - 0.1 * i for i in range(20)}
    signals = _signals(dense, bm25, titles={"zh": 1.0})
    assert _order(signals)[0] == "en:0"
    # Not counting below-average scores is what keeps it: with BM25's silence counted against it, it would sink.
    def signed(values: dict[str, float]) -> dict[str, float]:
        mean, spread = statistics.fmean(values.values()), statistics.pstdev(values.values())
        return {c: (v - mean) / spread for c, v in values.items()}

    matched = {c: signals.lexical.get(c, 0.0) for c in signals.candidates}
    sunk = fuse_scores([(1.0, signals.dense), (1.0, matched)], signals.candidates, scale=signed)
    assert sunk[0][0] != "en:0"


def test_bm25_that_finds_the_question_s_words_everywhere_has_little_say() -> None:
    """A question naming the company whose filing is searched: every chunk's header matches it, so BM25 scores all
    its finds alike and its order is noise; dense search's clear first stays first."""
    dense = {"d:0": 0.62, **{f"d:{i}": 0.60 - 0.002 * i for i in range(1, 40)}}
    bm25 = {**{f"d:{i}": 10.0 - 0.01 * i for i in range(40)}, "d:15": 10.6}
    signals = _signals(dense, bm25)
    assert lexical_confidence(signals) == pytest.approx(10.6 / (sum(bm25.values()) / 40) - 1)
    assert _order(signals)[0] == "d:0"
    # At a fixed weight, standard scores blow BM25's small lead up to the size of a real find.
    fixed = fuse_scores([(1.0, signals.dense), (1.0, signals.lexical)], signals.candidates, scale=above_mean)
    assert fixed[0][0] == "d:15"


def test_bm25_s_confidence_is_how_far_its_best_find_outscores_its_average() -> None:
    def confidence(scores: list[float]) -> float:
        return lexical_confidence(Signals({}, {f"c:{i}": s for i, s in enumerate(scores)}, 0, len(scores)))

    assert confidence([2.0, 1.0, 1.0, 1.0]) == pytest.approx(2.0 / 1.25 - 1)
    assert confidence([9.0, 1.0, 1.0, 1.0]) == 1.0  # best at twice the average or more: full weight
    assert confidence([5.0, 5.0, 5.0]) == 0.0  # all alike: nothing to say
    assert confidence([3.0]) == 1.0 and confidence([]) == 1.0  # a single find stands out by itself
