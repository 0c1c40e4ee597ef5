"""Lexical index at 100k chunks: the previous BM25 (bm25s, rebuilt from every document's token file whenever the
set of documents changed) against the incremental one (``rag.search.lexical``), measured in the same run.

The corpus is bench/query.py's synthetic library (200 documents x 500 chunks of ~250 Zipf-distributed words, with
numbers), tokenized once into ``bench/.cache/lexical-.../`` in both formats: ``old/`` holds the previous version's
JSON token files, ``new/`` the per-document ``.bm25`` files. Then, for both:

- first search after start: a new index object on the folder, then one search (old: read every JSON file and
  build bm25s; new: ``sync`` with every document, i.e. load every file and merge them into one segment);
- add one 500-chunk document, then search (old: write its JSON, rebuild everything; new: ``add``, then search);
- search latency, p50/p95, over all documents, 20 documents and 1 document (old and new alternate per query),
  and for the worst case of the new index's pruning: six words that nearly every chunk holds;
- agreement: the top 10 of both for every timed query, and the largest score difference.

    python bench/lexical.py                  # first run tokenizes the library (~2 min), later runs ~2 min
    python bench/lexical.py --queries 50     # quicker
    python bench/lexical.py --migration      # also time converting the old JSON files (once per install)

Timings depend on what else runs on the machine: compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.timing import percentile, timed  # noqa: E402
from rag.search.lexical import LexicalIndex, _count, _write, tokenize  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_query", ROOT / "bench" / "query.py")
if _spec is None or _spec.loader is None:
    raise SystemExit("bench/query.py not found")
query_bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_query"] = query_bench
_spec.loader.exec_module(query_bench)
Library = query_bench.Library

CACHE = ROOT / "bench" / ".cache"
FORMAT = 1  # bump when the cached data changes


# --- the previous implementation, kept here for comparison (rag/search/lexical.py before the incremental index) ---
class OldLexicalIndex:
    """The previous BM25: per-document JSON token files; bm25s rebuilt from all of them when any changed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._version: tuple[str, int] | None = None
        self._changes = 0
        self._bm25: Any = None
        self._chunk_ids: list[str] = []
        self._doc_ranges: dict[str, tuple[int, int]] = {}

    def add(self, doc_id: str, chunk_ids: Sequence[str], texts: Sequence[str]) -> None:
        payload = {"ids": list(chunk_ids), "tokens": [tokenize(t) for t in texts]}
        target = self.folder / f"{doc_id}.json"
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)
        self._touch()

    def remove(self, doc_id: str) -> None:
        path = self.folder / f"{doc_id}.json"
        if path.exists():
            path.unlink()
            self._touch()

    def search(self, query: str, k: int, doc_ids: Iterable[str]) -> list[tuple[str, float]]:
        tokens = tokenize(query)
        self._refresh()
        bm25, ids, ranges = self._bm25, self._chunk_ids, self._doc_ranges
        if bm25 is None or not tokens or k <= 0:
            return []
        known = [t for t in tokens if t in bm25.vocab_dict]
        if not known:
            return []
        scores = bm25.get_scores(known)
        mask = np.zeros(len(ids), dtype=bool)
        for doc_id in doc_ids:
            if doc_id in ranges:
                start, end = ranges[doc_id]
                mask[start:end] = True
        scores = np.where(mask, scores, 0.0)
        k = min(k, int(np.count_nonzero(scores)))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top]

    def _touch(self) -> None:
        self._changes += 1
        (self.folder / "VERSION").write_text(f"{os.getpid()}-{time.time_ns()}-{self._changes}", encoding="utf-8")

    def _refresh(self) -> None:
        try:
            stamp = (self.folder / "VERSION").read_text(encoding="utf-8")
        except FileNotFoundError:
            stamp = ""
        version = (stamp, self._changes)
        if version == self._version:
            return
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)
        ids: list[str] = []
        corpus: list[list[str]] = []
        ranges: dict[str, tuple[int, int]] = {}
        for path in sorted(self.folder.glob("*.json")):
            payload = json.loads(path.read_text(encoding="utf-8"))
            ranges[path.stem] = (len(ids), len(ids) + len(payload["ids"]))
            ids.extend(payload["ids"])
            corpus.extend(payload["tokens"])
        bm25 = None
        if corpus:
            bm25 = bm25s.BM25()
            bm25.index(corpus, show_progress=False)
        self._bm25, self._chunk_ids, self._doc_ranges, self._version = bm25, ids, ranges, version


# --- data ---------------------------------------------------------------------------------------------------------
def folder_for(lib: Any) -> Path:
    return CACHE / f"lexical-{lib.docs}x{lib.chunks}-{lib.words}w-{lib.vocab}v-s{lib.seed}"


def prepare(lib: Any) -> tuple[Path, Path]:
    """Tokenize the library once into both formats (old JSON, new .bm25)."""
    base = folder_for(lib)
    marker = base / "BUILT.json"
    expected = {"format": FORMAT, "docs": lib.docs, "chunks": lib.chunks}
    if not (marker.exists() and json.loads(marker.read_text()) == expected):
        if base.exists():
            shutil.rmtree(base)
        (base / "old").mkdir(parents=True)
        (base / "new").mkdir(parents=True)
        print(f"tokenizing {lib.docs} x {lib.chunks} chunks into {base} (once)", flush=True)
        started = time.perf_counter()
        for d in range(lib.docs):
            doc_id = lib.doc_id(d)
            ids = [f"{doc_id}:{i}" for i in range(lib.chunks)]
            tokens = [tokenize(t) for t in lib.texts(d)]
            (base / "old" / f"{doc_id}.json").write_text(json.dumps({"ids": ids, "tokens": tokens},
                                                                    separators=(",", ":")), encoding="utf-8")
            _write(base / "new" / f"{doc_id}.bm25", _count(ids, tokens))
            if (d + 1) % 20 == 0:
                print(f"  {d + 1}/{lib.docs} documents, {time.perf_counter() - started:.0f} s", flush=True)
        marker.write_text(json.dumps(expected))
    return base / "old", base / "new"


def make_queries(lib: Any, n: int, seed: int = 7) -> list[tuple[str, int]]:
    """Questions made of six consecutive words of a random chunk, as bench/query.py asks them; (question, doc)."""
    rng = np.random.default_rng([lib.seed, 5, seed])
    texts: dict[int, list[str]] = {}
    out = []
    for _ in range(n):
        d, c = int(rng.integers(lib.docs)), int(rng.integers(lib.chunks))
        if d not in texts:
            texts[d] = lib.texts(d)
        words = texts[d][c].split()
        start = int(rng.integers(0, max(1, len(words) - 8)))
        out.append((f"What does the report say about {' '.join(words[start:start + 6])}?", d))
    return out


# --- timing -------------------------------------------------------------------------------------------------------
def index_bytes(index: LexicalIndex) -> int:
    snap = index._snap
    return sum(a.nbytes for seg in snap.segments for a in (seg.starts, seg.ids, seg.lengths, seg.keys, seg.indptr,
                                                           seg.rows, seg.tf))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=500, help="chunks per document")
    parser.add_argument("--words", type=int, default=250, help="words per chunk")
    parser.add_argument("--vocab", type=int, default=50000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per scope")
    parser.add_argument("--k", type=int, default=40, help="results per search (the engine's candidate pool)")
    parser.add_argument("--adds", type=int, default=5, help="add-then-search repeats for the new index")
    parser.add_argument("--migration", action="store_true", help="also time converting the old JSON files")
    args = parser.parse_args()

    lib = Library(args.docs, args.chunks, args.words, args.vocab)
    old_dir, new_dir = prepare(lib)
    all_ids = [lib.doc_id(d) for d in range(lib.docs)]
    queries = make_queries(lib, args.queries + 1)
    extra_id = lib.doc_id(lib.docs)  # a document outside the library, to add
    extra = ([f"{extra_id}:{i}" for i in range(lib.chunks)], lib.texts(lib.docs))
    import bm25s  # noqa: F401 - imported before timing: the old path's import is not counted against it

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    print(f"{lib.docs} documents x {lib.chunks} chunks = {lib.docs * lib.chunks:,} chunks of ~{lib.words} words; "
          f"k={args.k}; {args.queries} timed queries per scope\n")

    # First search after start.
    first_q = queries[0][0]
    old = OldLexicalIndex(old_dir)
    old_start, _ = timed(old.search, first_q, args.k, all_ids)

    def start_synced() -> None:
        index = LexicalIndex(new_dir)
        index.sync(all_ids)  # as the store does: the registry's ready documents
        index.search(first_q, args.k, all_ids)

    def start_unsynced() -> None:
        LexicalIndex(new_dir).search(first_q, args.k, all_ids)  # every file in the folder

    starts = [(timed(start_synced)[0], timed(start_unsynced)[0]) for _ in range(3)]
    new_start = statistics.median(s for s, _ in starts)
    implicit_start = statistics.median(u for _, u in starts)
    new = LexicalIndex(new_dir)
    new.sync(all_ids)
    print(f"in memory: old (bm25s) {sum(old._bm25.scores[k].nbytes for k in ('data', 'indices', 'indptr')) / 2**20:.0f}"
          f" MiB, new {index_bytes(new) / 2**20:.0f} MiB (arrays)")

    # Search latency per scope, old and new alternating; and their agreement.
    rng = np.random.default_rng(11)
    latency: dict[str, tuple[list[float], list[float]]] = {}
    agree = total = 0
    worst = 0.0
    for label, size in (("all", None), ("20", 20), ("1", 1)):
        old_ms, new_ms = [], []
        for question, d in queries[1:]:
            if size is None:
                scope = all_ids
            else:
                others = [all_ids[i] for i in rng.permutation(lib.docs).tolist() if i != d][: size - 1]
                scope = [all_ids[d], *others]
            t_old, old_hits = timed(old.search, question, args.k, scope)
            t_new, new_hits = timed(new.search, question, args.k, scope)
            old_ms.append(t_old * 1000)
            new_ms.append(t_new * 1000)
            old_top, new_top = dict(old_hits[:10]), dict(new_hits[:10])
            total += 1
            # The same top 10 scores (chunks with tied scores may come in another order).
            agree += len(old_top) == len(new_top) and np.allclose(sorted(old_top.values()),
                                                                  sorted(new_top.values()), atol=1e-4)
            common = old_top.keys() & new_top.keys()
            worst = max([worst, *(abs(old_top[c] - new_top[c]) for c in common)])
        latency[label] = (old_ms, new_ms)

    # The worst case for pruning: six words found in nearly every chunk.
    common = f"What does the report say about {' '.join(lib.vocabulary[:6])}?"
    worst_old = statistics.median(timed(old.search, common, args.k, all_ids)[0] for _ in range(20)) * 1000
    worst_new = statistics.median(timed(new.search, common, args.k, all_ids)[0] for _ in range(20)) * 1000

    # Add one document, then search.
    old_add, _ = timed(lambda: old.add(extra_id, *extra) or old.search(first_q, args.k, [*all_ids, extra_id]))
    old.remove(extra_id)
    adds = []
    for _ in range(args.adds):
        t, hits = timed(lambda: new.add(extra_id, *extra) or new.search(first_q, args.k, [*all_ids, extra_id]))
        adds.append(t)
        new.remove(extra_id)
        new._wait_for_merges()
    new_add = statistics.median(adds)
    tokenizing, _ = timed(lambda: [tokenize(t) for t in extra[1]])
    sync_noop, _ = timed(lambda: [new.sync(all_ids) for _ in range(1000)])

    print("\n| measurement | old (bm25s rebuild) | new (incremental) | old / new |")
    print("|---|---|---|---|")
    print(f"| first search after start | {old_start:.2f} s | {new_start:.2f} s (sync) / {implicit_start:.2f} s "
          f"(no sync), medians of 3 | {old_start / new_start:.0f}x |")
    print(f"| add a {lib.chunks}-chunk document, then search | {old_add:.2f} s | {new_add:.3f} s "
          f"(median of {args.adds}) | {old_add / new_add:.0f}x |")
    names = {"all": f"all {lib.docs} documents", "20": "20 documents", "1": "1 document"}
    for label, (old_ms, new_ms) in latency.items():
        (old50, old95), (new50, new95) = ((percentile(ms, 50), percentile(ms, 95)) for ms in (old_ms, new_ms))
        print(f"| search p50 / p95, {names[label]} | {old50:.2f} / {old95:.2f} ms | {new50:.2f} / {new95:.2f} ms | "
              f"{old50 / new50:.2f}x |")
    print(f"| search, six words found in nearly every chunk (median) | {worst_old:.2f} ms | {worst_new:.2f} ms | "
          f"{worst_old / worst_new:.2f}x |")
    print(f"\nof adding a document, tokenizing its text (the same for both): {tokenizing:.3f} s")
    print(f"sync with an unchanged set: {sync_noop * 1000:.1f} us per call")
    print(f"top 10 agree (same scores to 1e-4) on {agree}/{total} searches; largest score difference on shared "
          f"results {worst:.1e}")
    print("targets: first search <= ~2 s, add + search <= ~0.3 s, search p50 <= ~5 ms")

    if args.migration:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            folder = Path(tmp) / "lexical"
            shutil.copytree(old_dir, folder)
            migrate, _ = timed(lambda: LexicalIndex(folder).search(first_q, args.k, all_ids))
            print(f"\nconverting the old JSON files (once, on the first search after upgrading): {migrate:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
