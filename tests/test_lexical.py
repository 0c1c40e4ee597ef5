"""The incremental BM25 index: same scores as bm25s, scoped search, adds/removes/syncs that match a fresh index,
its files (written, migrated, rebuilt from the vector store), other processes' changes, and concurrent searches."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from rag.search import lexical
from rag.search.lexical import LexicalIndex, _Query, tokenize

WORDS = ("revenue profit margin growth energy market orbit satellite vacation leave salary pension board audit "
         "lease tax dividend inventory 2019 2020 1,204.5 35786 acquisition goodwill").split()
QUERIES = ["revenue growth", "satellite orbit 35786", "vacation leave vacation", "1,204.5 dividend tax",
           "audit board pension salary lease", "nothing matches this"]


def corpus(docs: int = 6, seed: int = 0) -> dict[str, tuple[list[str], list[str]]]:
    """doc_id -> (chunk ids, texts): uneven chunk counts and lengths, an empty chunk, shared and rare words."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in range(docs):
        doc_id = f"doc{d:02d}"
        n = int(rng.integers(1, 15))
        texts = [" ".join(rng.choice(WORDS[: 8 + 2 * d], size=int(rng.integers(0, 40)))) for _ in range(n)]
        texts += [""] if d == 0 else []  # a chunk with no terms still counts in the statistics
        out[doc_id] = ([f"{doc_id}:{i}" for i in range(len(texts))], texts)
    return out


def build(folder: Path, docs: dict[str, tuple[list[str], list[str]]]) -> LexicalIndex:
    index = LexicalIndex(folder)
    for doc_id, (ids, texts) in docs.items():
        index.add(doc_id, ids, texts)
    return index


def bm25s_scores(docs: dict[str, tuple[list[str], list[str]]], query: str) -> dict[str, float]:
    """The reference: bm25s (method lucene, k1 1.5, b 0.75) over the same tokens."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    ids = [cid for chunk_ids, _ in docs.values() for cid in chunk_ids]
    reference = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    reference.index([tokenize(t) for _, texts in docs.values() for t in texts], show_progress=False)
    known = [t for t in tokenize(query) if t in reference.vocab_dict]
    scores = reference.get_scores(known) if known else np.zeros(len(ids))
    return dict(zip(ids, scores.tolist(), strict=True))


def stats(index: LexicalIndex) -> tuple[int, int, list[int]]:
    """Chunk count, total length and the document frequency of every word of the corpora, as the index has them."""
    snap = index._current()
    return snap.n, snap.total, _Query(snap, tokenize(" ".join(WORDS))).df.tolist()


def all_scores(index: LexicalIndex, docs: dict[str, tuple[list[str], list[str]]], query: str) -> dict[str, float]:
    return index.scores(query, [cid for ids, _ in docs.values() for cid in ids])


# --- scores -------------------------------------------------------------------------------------------------------
def test_scores_and_ranking_match_bm25s(tmp_path: Path) -> None:
    docs = corpus()
    index = build(tmp_path, docs)
    for query in QUERIES:
        expected = bm25s_scores(docs, query)
        got = all_scores(index, docs, query)
        assert got.keys() == expected.keys()
        assert max(abs(got[c] - expected[c]) for c in got) < 1e-5, query
        hits = index.search(query, 10, list(docs))
        best = sorted((s for s in expected.values() if s > 0), reverse=True)[:10]
        assert [s for _, s in hits] == pytest.approx(best, abs=1e-5)
        assert all(abs(expected[c] - s) < 1e-5 for c, s in hits)
    assert index.search("nothing matches this", 5, list(docs)) == []
    assert index.search("", 5, list(docs)) == [] and index.search("revenue", 0, list(docs)) == []


def test_pruned_top_k_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Zipf-like text: a few words in nearly every chunk, many rare ones; small k lets MaxScore skip the frequent.
    rng = np.random.default_rng(5)
    vocab = [f"w{i}" for i in range(400)]
    docs = {}
    for d in range(8):
        texts = [" ".join(vocab[r % 400] for r in rng.zipf(1.3, size=int(rng.integers(20, 80)))) for _ in range(40)]
        docs[f"doc{d}"] = ([f"doc{d}:{i}" for i in range(40)], texts)
    index = build(tmp_path, docs)
    skipped: list[int] = []
    top = _Query.top

    def counting(self: _Query, *args: object) -> object:
        found = top(self, *args)  # type: ignore[arg-type]
        skipped.append(self.skipped)  # terms whose columns weren't read whole
        return found

    monkeypatch.setattr(_Query, "top", counting)
    merged = LexicalIndex(tmp_path)  # read from the files at a start: one segment holding every document, so a
    merged.sync(list(docs))  # scope of a few documents is several runs of its rows
    assert len(merged._snap.segments) == 1 and len(merged._snap.segments[0].docs) == len(docs)
    for i in range(40):  # frequent words only, or with a rare word or two
        words = rng.choice(vocab[:60], size=5).tolist() + rng.choice(vocab[100:], size=i % 3).tolist()
        query = " ".join(words)
        expected = bm25s_scores(docs, query)
        for k, scope in ((1, list(docs)), (3, list(docs)), (10, list(docs)), (3, ["doc2", "doc5"]),
                         (1, ["doc0", "doc3", "doc7"]), (25, ["doc1", "doc4", "doc6"]), (3, ["doc3"])):
            best = sorted((s for c, s in expected.items() if s > 0 and c.split(":")[0] in scope), reverse=True)
            for searched in (index, merged):
                hits = searched.search(query, k, scope)
                assert [s for _, s in hits] == pytest.approx(best[:k], abs=1e-5), (query, k, scope)
                assert all(abs(expected[c] - s) < 1e-5 for c, s in hits)
    assert any(skipped), "no query let the index skip a term's column"


def test_terms_sharing_a_key_are_counted_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two terms with the same 64-bit key (odds about 1e-8 at a million terms) act as one term, never corrupt.
    real_key = lexical.term_key
    monkeypatch.setattr(lexical, "term_key", lambda term: real_key("revenu") if term == "profit" else real_key(term))
    docs = corpus()
    index = build(tmp_path, docs)
    merged = {d: (ids, [t.replace("profit", "revenue") for t in texts]) for d, (ids, texts) in docs.items()}
    for query in ("revenue growth", "profit", "tax profit revenue"):
        expected = bm25s_scores(merged, query.replace("profit", "revenue"))
        got = all_scores(index, docs, query)
        assert max(abs(got[c] - expected[c]) for c in got) < 1e-5


def test_search_stays_within_its_scope(tmp_path: Path) -> None:
    docs = corpus()
    index = build(tmp_path, docs)
    for scope in (["doc01"], ["doc00", "doc03", "doc05"], ["doc04", "unknown-doc"], []):
        for query in QUERIES:
            expected = {c: s for c, s in bm25s_scores(docs, query).items()
                        if c.split(":")[0] in scope and s > 0}
            hits = index.search(query, 5, scope)
            assert {c.split(":")[0] for c, _ in hits} <= set(scope)
            assert [s for _, s in hits] == pytest.approx(sorted(expected.values(), reverse=True)[:5], abs=1e-5)
    assert index.scores("revenue", ["doc01:0", "no-such-chunk", "doc01:999"])["no-such-chunk"] == 0.0


# --- changes ------------------------------------------------------------------------------------------------------
def test_adds_and_removes_match_a_fresh_index(tmp_path: Path) -> None:
    docs = corpus(docs=12, seed=1)
    index = LexicalIndex(tmp_path / "a")
    present: set[str] = set()
    rng = np.random.default_rng(2)
    for step in range(40):
        doc_id = f"doc{int(rng.integers(12)):02d}"
        if doc_id in present and rng.random() < 0.5:
            index.remove(doc_id)
            present.discard(doc_id)
            hits = index.search("revenue growth satellite vacation audit tax", 100, list(docs))
            assert not any(c.startswith(f"{doc_id}:") for c, _ in hits)  # never returned once removed
        else:
            index.add(doc_id, *docs[doc_id])
            present.add(doc_id)
        if step % 10 == 9:
            index._wait_for_merges()
        subset = {d: docs[d] for d in sorted(present)}
        fresh = build(tmp_path / f"fresh{step}", subset)
        assert stats(index) == stats(fresh)
        query = QUERIES[step % len(QUERIES)]
        assert all_scores(index, docs, query) == pytest.approx(all_scores(fresh, docs, query), abs=1e-9)
        assert index.search(query, 8, list(docs)) == fresh.search(query, 8, list(docs))
    # The same state, loaded from the files by a new index (as after a restart).
    reloaded = LexicalIndex(tmp_path / "a")
    assert stats(reloaded) == stats(index)
    assert reloaded.search(QUERIES[0], 8, list(docs)) == index.search(QUERIES[0], 8, list(docs))


def test_removed_chunk_comes_back_when_readded(tmp_path: Path) -> None:
    docs = corpus()
    index = build(tmp_path, docs)
    hits = index.search("satellite orbit 35786", 3, list(docs))
    doc_id = hits[0][0].split(":")[0]
    index.remove(doc_id)
    assert not (tmp_path / f"{doc_id}.bm25").exists()
    assert all(not c.startswith(f"{doc_id}:") for c, _ in index.search("satellite orbit 35786", 50, list(docs)))
    assert index.scores("satellite orbit 35786", [hits[0][0]]) == {hits[0][0]: 0.0}
    index.add(doc_id, *docs[doc_id])
    assert index.search("satellite orbit 35786", 3, list(docs)) == hits


def test_small_segments_are_merged_without_changing_results(tmp_path: Path) -> None:
    docs = corpus(docs=24, seed=3)
    index = LexicalIndex(tmp_path)
    for doc_id, (ids, texts) in docs.items():
        index.add(doc_id, ids, texts)
    index.remove("doc05")
    index._wait_for_merges()
    assert len(index._snap.segments) < 6
    fresh = build(tmp_path / "fresh", {d: v for d, v in docs.items() if d != "doc05"})
    assert stats(index) == stats(fresh)
    for query in QUERIES:
        assert index.search(query, 20, list(docs)) == fresh.search(query, 20, list(docs))
        assert index.search(query, 5, ["doc03", "doc17"]) == fresh.search(query, 5, ["doc03", "doc17"])


def test_sync_loads_and_drops_documents(tmp_path: Path) -> None:
    docs = corpus()
    build(tmp_path, docs)
    index = LexicalIndex(tmp_path)
    index.sync(["doc00", "doc02"])
    assert stats(index) == stats(build(tmp_path / "two", {d: docs[d] for d in ("doc00", "doc02")}))
    assert {c.split(":")[0] for c, _ in index.search("revenue profit", 50, list(docs))} <= {"doc00", "doc02"}
    snap = index._snap
    index.sync(["doc02", "doc00"])  # nothing changed: nothing is rebuilt
    assert index._snap is snap
    index.sync(docs)
    assert stats(index) == stats(build(tmp_path / "all", docs))
    index.sync([])
    assert index.search("revenue", 5, list(docs)) == []
    assert all((tmp_path / f"{d}.bm25").exists() for d in docs)  # dropping from memory keeps the files


def test_source_fills_in_a_missing_file(tmp_path: Path) -> None:
    docs = corpus()
    calls: list[str] = []

    def source(doc_id: str) -> tuple[list[str], list[str]]:
        calls.append(doc_id)
        if doc_id == "broken":
            raise ConnectionError("vector store unreachable")
        return docs[doc_id]

    index = LexicalIndex(tmp_path, source=source)
    index.sync(["doc01", "doc03", "broken"])
    assert sorted(calls) == ["broken", "doc01", "doc03"]
    assert (tmp_path / "doc01.bm25").exists() and not (tmp_path / "broken.bm25").exists()
    expected = build(tmp_path / "ref", {d: docs[d] for d in ("doc01", "doc03")})
    assert index.search("revenue growth", 5, ["doc01", "doc03"]) == expected.search("revenue growth", 5,
                                                                                    ["doc01", "doc03"])
    index.sync(["doc01", "doc03", "broken"])
    assert len(calls) == 3  # the same set again: no retry on every search
    replica = LexicalIndex(tmp_path, source=source)  # another instance now finds the file
    replica.sync(["doc01", "doc03"])
    assert len(calls) == 3 and stats(replica) == stats(expected)


def test_another_process_sees_added_and_removed_documents(tmp_path: Path) -> None:
    docs = corpus()
    first = build(tmp_path, {d: docs[d] for d in ("doc00", "doc01")})
    assert first.search("revenue", 50, list(docs))
    synced = LexicalIndex(tmp_path)
    synced.sync(["doc00", "doc01"])
    second = LexicalIndex(tmp_path)  # another process on the same folder
    second.add("doc04", *docs["doc04"])
    second.remove("doc00")
    # Without sync: the next search notices the VERSION change and catches up.
    assert stats(first) == stats(build(tmp_path / "ref", {d: docs[d] for d in ("doc01", "doc04")}))
    assert not any(c.startswith("doc00:") for c, _ in first.search("revenue profit", 50, list(docs)))
    # With sync: the registry's list decides; the other process's file is loaded.
    synced.sync(["doc01", "doc04"])
    assert stats(synced) == stats(first)


def test_legacy_json_files_are_converted(tmp_path: Path) -> None:
    docs = corpus()
    for doc_id, (ids, texts) in docs.items():  # as the previous version wrote them
        payload = {"ids": ids, "tokens": [tokenize(t) for t in texts]}
        (tmp_path / f"{doc_id}.json").write_text(json.dumps(payload), encoding="utf-8")
    (tmp_path / "VERSION").write_text("old", encoding="utf-8")
    index = LexicalIndex(tmp_path)
    reference = build(tmp_path / "ref", docs)
    for query in QUERIES:
        assert index.search(query, 10, list(docs)) == reference.search(query, 10, list(docs))
    assert sorted(p.name for p in tmp_path.glob("doc*")) == sorted(f"{d}.bm25" for d in docs)
    assert stats(LexicalIndex(tmp_path)) == stats(reference)


def test_a_damaged_file_is_rebuilt_from_the_source(tmp_path: Path) -> None:
    docs = corpus()
    build(tmp_path, docs)
    (tmp_path / "doc02.bm25").write_bytes(b"not an index file")
    index = LexicalIndex(tmp_path, source=lambda doc_id: docs[doc_id])
    index.sync(docs)
    assert stats(index) == stats(build(tmp_path / "ref", docs))
    assert stats(LexicalIndex(tmp_path)) == stats(index)  # and the file was rewritten


# --- concurrency ------------------------------------------------------------------------------------------------
def test_searches_run_safely_during_adds_and_removes(tmp_path: Path) -> None:
    docs = corpus(docs=10, seed=4)
    index = build(tmp_path, {d: docs[d] for d in list(docs)[:5]})
    index.remove("doc00")
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher(synced: bool) -> None:
        try:
            while not stop.is_set():
                if synced:
                    index.scores("revenue growth", ["doc03:0", "doc07:1"])
                hits = index.search("revenue growth audit tax vacation", 30, list(docs))
                assert not any(c.startswith("doc00:") for c, _ in hits)
                assert all(c.split(":")[0] in docs for c, _ in hits)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(i == 0,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            for doc_id in list(docs)[5:]:
                index.add(doc_id, *docs[doc_id])
                assert any(c.startswith(f"{doc_id}:") for c, _ in index.search("revenue profit margin", 200,
                                                                               [doc_id]))
            for doc_id in list(docs)[5:]:
                index.remove(doc_id)
                assert index.search("revenue profit margin", 200, [doc_id]) == []
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    index._wait_for_merges()
    assert stats(index) == stats(build(tmp_path / "ref", {d: docs[d] for d in list(docs)[1:5]}))


def test_a_large_merged_segment_is_saved_and_mapped_at_the_next_start(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical, "_SAVE_ROWS", 20)
    docs = corpus(12, seed=3)
    index = LexicalIndex(tmp_path)
    index.sync([])
    for doc_id, (ids, texts) in docs.items():
        index.add(doc_id, ids, texts)
    index._wait_for_merges()
    assert list((tmp_path / "segments").glob("*.seg"))  # merges of 20 rows or more were saved
    shutil.rmtree(tmp_path / "segments")
    index.remove("doc04")
    docs.pop("doc04")
    index = LexicalIndex(tmp_path)  # a restart: one segment made of every file, saved
    index.sync(docs)
    index._wait_for_merges()
    for thread in threading.enumerate():
        if thread.name == "lexical-save":
            thread.join()
    saved = list((tmp_path / "segments").glob("*.seg"))
    assert len(saved) == 1
    expected = {q: index.search(q, 10, docs) for q in QUERIES}
    expected_stats = stats(index)

    # The next start maps the saved segment: no document's file is read, results and statistics are the same.
    read = lexical._read
    monkeypatch.setattr(lexical, "_read", lambda path, outdated=False: pytest.fail(f"read {path.name}"))
    restarted = LexicalIndex(tmp_path)
    restarted.sync(docs)
    assert [seg.rows.flags.writeable for seg in restarted._snap.segments] == [False]  # views of the mapped file
    assert {q: restarted.search(q, 10, docs) for q in QUERIES} == expected
    assert stats(restarted) == expected_stats

    # A document removed since the segment was saved is not searched, and statistics leave it out.
    monkeypatch.setattr(lexical, "_read", read)
    fewer = [d for d in docs if d != "doc07"]
    restarted.sync(fewer)
    fresh = build(tmp_path / "fresh", {d: docs[d] for d in fewer})
    assert stats(restarted) == stats(fresh)
    for q in QUERIES:
        got, want = restarted.search(q, 10, fewer), fresh.search(q, 10, fewer)
        assert [cid for cid, _ in got] == [cid for cid, _ in want]
        assert np.allclose([sc for _, sc in got], [sc for _, sc in want], atol=1e-5)
        assert not any(cid.startswith("doc07:") for cid, _ in got)


def test_a_damaged_saved_segment_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical, "_SAVE_ROWS", 20)
    docs = corpus(8, seed=4)
    index = build(tmp_path, docs)
    index.sync(docs)
    index._wait_for_merges()
    saved = list((tmp_path / "segments").glob("*.seg"))
    assert saved
    for path in saved:
        path.write_bytes(path.read_bytes()[:200])  # (files are replaced whole, never rewritten in place)
    again = LexicalIndex(tmp_path)
    again.sync(docs)
    fresh = build(tmp_path / "fresh", docs)
    assert {q: again.search(q, 5, docs) for q in QUERIES} == {q: fresh.search(q, 5, docs) for q in QUERIES}


def _title_bm25(query: str, titles: dict[str, list[str]]) -> dict[str, float]:
    """BM25 over titles written out plainly, every title scored (what the title index must agree with)."""
    import math
    from collections import Counter

    terms = set(lexical.title_terms(query))
    counts = {d: Counter(t) for d, t in titles.items()}
    average = max(1.0, sum(len(t) for t in titles.values()) / len(titles))
    df = Counter(term for c in counts.values() for term in terms if term in c)
    scores = {}
    for d, c in counts.items():
        norm = lexical.TITLE_K1 * (1 - lexical.B + lexical.B * len(titles[d]) / average)
        score = sum(math.log1p((len(titles) - df[t] + 0.5) / (df[t] + 0.5)) * c[t] * (lexical.TITLE_K1 + 1)
                    / (c[t] + norm) for t in terms if t in c)
        if score > 0:
            scores[d] = score
    best = max(scores.values(), default=0.0)
    return {d: s / best for d, s in scores.items()} if best > 0 else {}


def test_the_title_index_scores_as_bm25_over_the_titles_searched_and_follows_changes() -> None:
    rng = np.random.default_rng(5)
    words = ["annual", "report", "acme", "globex", "initech", "2021", "2022", "2023", "filing", "quarterly",
             "handbook", "policy", "umbrella", "corp"]
    titles = {f"d{i}": " ".join(rng.choice(words, size=int(rng.integers(0, 6)))) for i in range(60)}
    index = lexical.TitleIndex()
    for doc_id, title in titles.items():
        index.put(doc_id, lexical.title_terms(title))
    terms = {d: lexical.title_terms(t) for d, t in titles.items()}
    for _ in range(40):
        question = "What does the " + " ".join(rng.choice(words, size=3)) + " say?"
        scope = sorted(rng.choice(list(titles), size=int(rng.integers(1, 60)), replace=False).tolist())
        expected = _title_bm25(question, {d: terms[d] for d in scope})
        got = index.scores(question, scope)
        assert got.keys() == expected.keys() and all(abs(got[d] - expected[d]) < 1e-12 for d in got), question
    assert index.scores("acme annual report", ["d0", "nowhere"]) == _title_bm25("acme annual report",
                                                                                {"d0": terms["d0"]})
    index.put("d1", lexical.title_terms("Zephyr Institute handbook"))  # a document indexed again, retitled
    index.drop("d2")
    assert "d2" not in index and set(index.scores("zephyr", list(titles))) == {"d1"}
    assert "d2" not in index.scores(titles["d2"], list(titles))


def test_a_question_is_analysed_once_for_its_search_and_the_scoring_of_other_finds(tmp_path: Path) -> None:
    analysed: list[str] = []

    def analyzer(text: str) -> list[str]:
        analysed.append(text)
        return tokenize(text)

    index = LexicalIndex(tmp_path, analyzer=analyzer)
    index.add("d", ["d:0", "d:1"], ["the harbour crane lifts containers", "the orbit of the moon"])
    analysed.clear()
    found = index.search("harbour crane", 2, ["d"])
    assert [cid for cid, _ in found] == ["d:0"]
    assert index.scores("harbour crane", ["d:0", "d:1"]) == {"d:0": found[0][1], "d:1": 0.0}
    assert analysed == ["harbour crane"]
    index.search("orbit", 2, ["d"])
    assert analysed == ["harbour crane", "orbit"]
