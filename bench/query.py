"""Query overhead: the engine's own time per question at 100k chunks, with the model calls taken out.

A synthetic library (200 documents x 500 chunks by default; words drawn from a Zipf-distributed vocabulary with
some numbers; random unit vectors of 1024 dims, Qwen3-Embedding-0.6B's size) is written once through the real
``Store`` (Chroma PersistentClient + the BM25 index) into ``bench/.cache/`` and reused by later runs. Then
``Engine.ask`` runs end to end with ZERO-COST STAND-INS for the models, clearly not models:

- ``PrecomputedEmbedder``: returns a query vector computed before the timing (a noisy copy of the vector of the
  chunk the question was drawn from);
- ``FixedAnswerChat``: a ``rag.models.chat.ChatModel`` that yields a fixed short answer citing [1] and [2];
- no reranker.

The time spent inside the stand-ins is measured and subtracted, so what is reported is engine overhead:
retrieval (Chroma HNSW query, BM25, fusion, fetching passages), prompt building (token counting) and citation
resolution, for three scopes: all documents, 20 documents and 1 document.

    python bench/query.py                      # build the index once (a few minutes), then 200 queries per scope
    python bench/query.py --queries 50         # quicker
    python bench/query.py --docs 2000          # 1M chunks (grown from the largest smaller library already built)
    python bench/query.py --chroma-server      # the same, with the index served by `chroma run` (HTTP)
    python bench/query.py --rebuild            # rebuild the cached index
    python bench/query.py --profile all        # pyinstrument profile of one scope (pip install pyinstrument)

Prints the cold start (opening the store, the first question: loading the BM25 index and the HNSW index), p50/p95
per scope against the 25 ms target, a per-stage breakdown (mean ms per query), and memory: the resident size of
this process (and of the Chroma server) beside the raw vector bytes, the BM25 index's arrays and its load time.
A library of N documents starts as a copy of the largest smaller one built (its documents are the first N of it),
so growing 100k to 250k chunks writes only the new 150k.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import numpy as np  # noqa: E402

import rag.answering.answer  # noqa: E402
import rag.search.retrieval  # noqa: E402
from bench.timing import Stopwatch, percentile  # noqa: E402
from rag.answering.answer import AskOptions  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.core.events import AnswerDelta, Sources  # noqa: E402
from rag.core.records import Chunk, DocumentInfo  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.models.chat import ChatModel, Delta, Messages  # noqa: E402
from rag.models.embedder import Embedder  # noqa: E402
from rag.search.lexical import LexicalIndex  # noqa: E402
from rag.search.store import Store, token_count  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
TARGET_MS = 25.0
DIM = 1024
INDEX_NAME = "synthetic-bench-1024"
FORMAT = 4  # bump when the synthetic data changes, so a stale cache is rebuilt (2: + saved vectors, 3: + token counts,
#             4: + passage files)
CHUNKS_PER_PAGE = 2


# --- the synthetic library -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Library:
    """Parameters of the synthetic library; everything is derived from them deterministically."""

    docs: int
    chunks: int  # per document
    words: int  # per chunk
    vocab: int
    seed: int = 0

    @property
    def folder(self) -> Path:
        return CACHE / f"query-{self.docs}x{self.chunks}-{self.words}w-{self.vocab}v-{DIM}d-s{self.seed}"

    def doc_id(self, d: int) -> str:
        return hashlib.sha256(f"synthetic-{self.seed}-{d}".encode()).hexdigest()[:32]

    @functools.cached_property
    def vocabulary(self) -> list[str]:
        """Made-up words of 3-10 letters; rank 0 is the most frequent."""
        rng = np.random.default_rng([self.seed, 1])
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        lengths = rng.integers(3, 11, size=self.vocab)
        return ["".join(rng.choice(letters, size=n)) for n in lengths]

    def texts(self, d: int) -> list[str]:
        """The chunk texts of document ``d``: Zipf-distributed words, about one number per 25 words."""
        rng = np.random.default_rng([self.seed, 2, d])
        vocab = self.vocabulary
        ranks = (rng.zipf(1.15, size=(self.chunks, self.words)) - 1) % self.vocab
        numbers = rng.random((self.chunks, self.words)) < 0.04
        out = []
        for c in range(self.chunks):
            words = [vocab[r] for r in ranks[c]]
            for i in np.flatnonzero(numbers[c]):
                words[i] = f"{rng.integers(1, 100000):,}" if rng.random() < 0.5 else str(rng.integers(1900, 2030))
            out.append(" ".join(words))
        return out

    def vectors(self, d: int) -> np.ndarray:
        """Random unit vectors, one per chunk of document ``d``."""
        rng = np.random.default_rng([self.seed, 3, d])
        v = rng.standard_normal((self.chunks, DIM), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def chunk_records(self, d: int, texts: Sequence[str]) -> list[Chunk]:
        title = f"Synthetic report {d:03d}"
        records, offset = [], 0
        for i, text in enumerate(texts):
            page = i // CHUNKS_PER_PAGE + 1
            records.append(Chunk(index=i, text=text, page_start=page, page_end=page, char_start=offset,
                                 char_end=offset + len(text), context=f"{title}, page {page}"))
            offset += len(text) + 1
        return records


def settings_for(lib: Library) -> Settings:
    # No model is contacted: the stand-ins replace them. Defaults otherwise (pool 40, top_k 6, weights).
    return Settings.from_env(data_dir=lib.folder, rerank=False)


def build(lib: Library, rebuild: bool) -> None:
    """Write the library through the real Store once; a marker file records a finished build."""
    marker = lib.folder / "BUILT.json"
    expected = {"format": FORMAT, "docs": lib.docs, "chunks": lib.chunks}
    built = json.loads(marker.read_text()) if marker.exists() and not rebuild else {}
    lexical = lib.folder / "lexical" / INDEX_NAME
    if built and any(lexical.glob("*.json")):
        # BM25 token files of the previous format: the index converts them on first use, once (not timed here).
        print("converting the cached BM25 token files to the current format (once)", flush=True)
        LexicalIndex(lexical).search("convert", 1, [])
    if built == expected:
        return
    if built == {**expected, "format": 3}:
        # A cache built before the store kept each document's passages in a file: written from Chroma, as the app
        # does for such a library when it starts (Store.fill_passages, in the background there).
        print("writing each document's passage file from Chroma (once)", flush=True)
        started = time.perf_counter()
        written = Store(settings_for(lib), INDEX_NAME).fill_passages()
        print(f"  {written} documents in {time.perf_counter() - started:.0f} s", flush=True)
        marker.write_text(json.dumps(expected))
        return
    if built == {**expected, "format": 2}:
        # A cache built before the store kept each chunk's token count: add it the way add_chunks writes it.
        add_token_counts(Store(settings_for(lib), INDEX_NAME), lib, lib.docs)
        marker.write_text(json.dumps(expected))
        return
    if built == {**expected, "format": 1}:
        # A cache built before Store kept vectors beside Chroma: add those files the way add_chunks writes them.
        store = Store(settings_for(lib), INDEX_NAME)
        for d in range(lib.docs):
            store._save_vectors(lib.doc_id(d), lib.chunk_records(d, [""] * lib.chunks), lib.vectors(d))
        marker.write_text(json.dumps(expected))
        return
    if lib.folder.exists():
        shutil.rmtree(lib.folder)
    first, first_format = grow_from(lib) if not rebuild else (0, FORMAT)
    lib.folder.mkdir(parents=True, exist_ok=True)
    store = Store(settings_for(lib), INDEX_NAME)
    if first_format == 2:
        add_token_counts(store, lib, first)
    print(f"building {lib.docs} x {lib.chunks} = {lib.docs * lib.chunks:,} chunks in {lib.folder} "
          f"(once; later runs reuse it){f', from the {first} documents of a smaller one' if first else ''}",
          flush=True)
    started = time.perf_counter()
    for d in range(first, lib.docs):
        texts = lib.texts(d)
        chunks = lib.chunk_records(d, texts)
        info = DocumentInfo(doc_id=lib.doc_id(d), file_name=f"synthetic-{d:03d}.pdf", title=f"Synthetic report {d:03d}",
                            pages=(lib.chunks + CHUNKS_PER_PAGE - 1) // CHUNKS_PER_PAGE, chunks=lib.chunks,
                            status="indexing", added_at=time.time(), size_bytes=0)
        store.begin(info)
        store.add_chunks(info.doc_id, info.file_name, info.title, chunks, lib.vectors(d).tolist())
        store.commit(info)
        if (d + 1) % 10 == 0 or d + 1 == lib.docs:
            elapsed = time.perf_counter() - started
            print(f"  {d + 1}/{lib.docs} documents, {elapsed:.0f} s "
                  f"(~{elapsed / (d + 1 - first) * (lib.docs - d - 1):.0f} s left)", flush=True)
    if first and first_format < 4:  # the documents copied from a library built before passage files
        print(f"writing the passage files of the first {first} documents from Chroma (once)", flush=True)
        store.fill_passages()
    marker.write_text(json.dumps(expected))


def add_token_counts(store: Store, lib: Library, docs: int) -> None:
    """Give the chunks of the first ``docs`` documents of a library built before the store kept each chunk's token
    count that count, as ``Store.add_chunks`` now writes it."""
    print(f"adding each chunk's token count to the first {docs} documents (once)", flush=True)
    for d in range(docs):
        ids = [f"{lib.doc_id(d)}:{c}" for c in range(lib.chunks)]
        store.chunks.update(ids=ids, metadatas=[token_count(t) for t in lib.texts(d)])


def grow_from(lib: Library) -> tuple[int, int]:
    """Copy the largest finished smaller library of the same parameters into ``lib.folder``: its documents are
    the first ones of ``lib`` (every document is derived from the seed and its number alone). Returns how many,
    and the format it was built in."""
    best: tuple[int, Path, int] | None = None
    for marker in CACHE.glob(f"query-*x{lib.chunks}-{lib.words}w-{lib.vocab}v-{DIM}d-s{lib.seed}/BUILT.json"):
        built = json.loads(marker.read_text())
        if built.get("format") in (2, 3, FORMAT) and built.get("chunks") == lib.chunks and built["docs"] < lib.docs:
            if best is None or built["docs"] > best[0]:
                best = (int(built["docs"]), marker.parent, int(built["format"]))
    if best is None:
        return 0, FORMAT
    print(f"copying the {best[0]}-document library to start from it", flush=True)
    shutil.copytree(best[1], lib.folder)
    (lib.folder / "BUILT.json").unlink()
    return best[0], best[2]


# --- zero-cost stand-ins for the models (NOT models) -----------------------------------------------------------
class PrecomputedEmbedder(Embedder):
    """STAND-IN for the embedding model: returns query vectors computed before the timing; time spent is kept."""

    model_id = "synthetic-bench"
    dimensions = DIM

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.spent = 0.0

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        started = time.perf_counter()
        out = [self.vectors[t] for t in texts]
        self.spent += time.perf_counter() - started
        return out

    @property
    def index_name(self) -> str:
        return INDEX_NAME


class FixedAnswerChat(ChatModel):
    """STAND-IN for the chat model: streams a fixed short answer with citations; time spent inside is kept."""

    model_id = "fixed-answer-stand-in"
    ANSWER = ("The report gives the figure for that year [1], and the same total appears in the summary table [2]. "
              "It does not say more.")

    def __init__(self) -> None:
        self.spent = 0.0

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        started = time.perf_counter()
        pieces = [AnswerDelta(w + " ") for w in self.ANSWER.split(" ")]
        self.spent += time.perf_counter() - started
        yield from pieces


STAGES = {
    "scope": "registry read (ready_ids)",
    "dense": "dense search (ids and scores)",
    "lexical": "lexical: BM25 search",
    "cross": "scoring the other retriever's finds",
    "title": "title match (BM25 over titles)",
    "fuse": "fusion (scaled scores)",
    "fetch": "fetch the pool's passages",
    "prompt": "prompt building (token counting)",
    "cite": "citation resolution",
}


def instrument(watch: Stopwatch) -> None:
    """Time the engine's stages by wrapping them where the engine looks them up (the bench only)."""
    Store.ready_ids = watch.wrap("scope", Store.ready_ids)  # type: ignore[method-assign]
    Store.nearest = watch.wrap("dense", Store.nearest)  # type: ignore[method-assign]
    Store.dense_scores = watch.wrap("cross", Store.dense_scores)  # type: ignore[method-assign]
    Store.lexical_scores = watch.wrap("cross", Store.lexical_scores)  # type: ignore[method-assign]
    Store.get_passages = watch.wrap("fetch", Store.get_passages)  # type: ignore[method-assign]
    LexicalIndex.search = watch.wrap("lexical", LexicalIndex.search)  # type: ignore[method-assign]
    Store.title_scores = watch.wrap("title", Store.title_scores)  # type: ignore[method-assign]
    rag.search.retrieval.fuse = watch.wrap("fuse", rag.search.retrieval.fuse)
    rag.search.retrieval.fuse_scores = watch.wrap("fuse", rag.search.retrieval.fuse_scores)
    rag.answering.answer.build_messages = watch.wrap("prompt", rag.answering.answer.build_messages)
    rag.answering.answer.resolve = watch.wrap("cite", rag.answering.answer.resolve)


@dataclass(frozen=True)
class Query:
    question: str
    doc: int


def make_queries(lib: Library, n: int, seed: int = 7) -> tuple[list[Query], dict[str, list[float]]]:
    """Questions made of words of one random chunk (so BM25 finds it), and a noisy copy of its vector."""
    rng = np.random.default_rng([lib.seed, 4, seed])
    queries, vectors = [], {}
    picks = [(int(rng.integers(lib.docs)), int(rng.integers(lib.chunks))) for _ in range(n)]
    for i, (d, c) in enumerate(picks):
        words = lib.texts(d)[c].split()
        start = int(rng.integers(0, max(1, len(words) - 8)))
        question = f"What does the report say about {' '.join(words[start:start + 6])}? (q{i})"
        v = lib.vectors(d)[c] + rng.standard_normal(DIM).astype(np.float32) * 0.05
        vectors[question] = (v / np.linalg.norm(v)).tolist()
        queries.append(Query(question, d))
    return queries, vectors


def scope_for(lib: Library, q: Query, size: int | None, rng: np.random.Generator) -> list[str] | None:
    """``None`` (all documents) or ``size`` documents including the one the question came from."""
    if size is None:
        return None
    others = [d for d in rng.permutation(lib.docs).tolist() if d != q.doc][: size - 1]
    return [lib.doc_id(d) for d in [q.doc, *others]]


def ask_timed(engine: Engine, embedder: PrecomputedEmbedder, chat: FixedAnswerChat, question: str,
              **ask: object) -> tuple[float, float, Sources]:
    """Ask one question; (engine overhead ms, stand-ins' seconds, its last Sources). The stand-ins' time is left
    out of the overhead, and a question that cites nothing stops the bench (it would time nothing real)."""
    embedder.spent = chat.spent = 0.0
    engine.store._ready = None  # questions come seconds apart: each one reads the registry afresh
    started = time.perf_counter()
    events = list(engine.ask(question, **ask))  # type: ignore[arg-type]
    wall = time.perf_counter() - started
    sources = [e for e in events if isinstance(e, Sources)]
    if not sources or not sources[-1].cited:
        raise SystemExit(f"a question gave no cited sources (events: {events[-3:]!r}); the bench is broken")
    stand_ins = embedder.spent + chat.spent
    return (wall - stand_ins) * 1000, stand_ins, sources[-1]


def run_scope(engine: Engine, lib: Library, queries: list[Query], size: int | None, watch: Stopwatch,
              embedder: PrecomputedEmbedder, chat: FixedAnswerChat) -> tuple[list[float], dict[str, float]]:
    """Engine overhead (ms) per query for one scope, and the mean exclusive ms per stage."""
    rng = np.random.default_rng(size or 0)
    overheads: list[float] = []
    stages: dict[str, float] = {}
    options = AskOptions(rerank=False)
    for q in queries:
        doc_ids = scope_for(lib, q, size, rng)
        watch.reset()
        overhead, stand_ins, _ = ask_timed(engine, embedder, chat, q.question, doc_ids=doc_ids, options=options)
        overheads.append(overhead)
        for stage, seconds in watch.reset().items():
            stages[stage] = stages.get(stage, 0.0) + seconds * 1000
        stages["stand-ins"] = stages.get("stand-ins", 0.0) + stand_ins * 1000
    n = len(queries)
    return overheads, {stage: total / n for stage, total in stages.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=500, help="chunks per document")
    parser.add_argument("--words", type=int, default=250, help="words per chunk (~400 tokens with numbers)")
    parser.add_argument("--vocab", type=int, default=50000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per scope")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries per scope first")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached index")
    parser.add_argument("--profile", choices=("all", "20", "1"), help="profile one scope with pyinstrument")
    parser.add_argument("--chroma-server", action="store_true",
                        help="serve the library's Chroma folder with `chroma run` and search it through HTTP")
    parser.add_argument("--warm", action="store_true",
                        help="read the index ahead of the first query, as the app does when it starts")
    parser.add_argument("--cold-only", action="store_true", help="only the cold start")
    parser.add_argument("--chroma-port", type=int, default=7401, help="port for --chroma-server")
    args = parser.parse_args()

    lib = Library(args.docs, args.chunks, args.words, args.vocab)
    build(lib, args.rebuild)
    queries, vectors = make_queries(lib, args.queries + args.warmup)
    warmup, timed = queries[:args.warmup], queries[args.warmup:]

    embedder, chat = PrecomputedEmbedder(vectors), FixedAnswerChat()
    settings = settings_for(lib)
    server = None
    if args.chroma_server:
        from tests.chroma_server import ChromaServer

        server = ChromaServer(lib.folder / "chroma", port=args.chroma_port).start(timeout=600)
        settings = settings.with_(chroma_host=server.host, chroma_port=server.port)
    try:
        return measure(args, lib, settings, embedder, chat, warmup, timed, server)
    finally:
        if server is not None:
            server.stop()


def measure(args: argparse.Namespace, lib: Library, settings: Settings, embedder: PrecomputedEmbedder,
            chat: FixedAnswerChat, warmup: list[Query], timed: list[Query], server: object | None) -> int:
    """The cold start, then each scope's timed questions, then memory; printed as tables."""
    cold = Stopwatch()
    cold_stages = {"dense": Store.nearest, "load": LexicalIndex.sync}
    Store.nearest = cold.wrap("dense", Store.nearest)  # type: ignore[method-assign]
    LexicalIndex.sync = cold.wrap("load", LexicalIndex.sync)  # type: ignore[method-assign]
    started = time.perf_counter()
    engine = Engine(settings, embedder=embedder, store=Store(settings, INDEX_NAME), chat=chat)
    opened = time.perf_counter() - started
    read_ahead = None
    if args.warm:  # what the app does as it starts (Engine.warm_up): read the index before the first question
        started = time.perf_counter()
        engine.store.warm()
        read_ahead = time.perf_counter() - started
        cold.reset()
    started = time.perf_counter()
    list(engine.ask(warmup[0].question, options=AskOptions(rerank=False)))
    first = time.perf_counter() - started
    spent = cold.reset()
    Store.nearest, LexicalIndex.sync = cold_stages["dense"], cold_stages["load"]  # type: ignore[method-assign]
    chunks = engine.store.count_chunks()
    where = f"a Chroma server (chroma run, port {args.chroma_port})" if server else "embedded Chroma"
    print(f"{len(engine.documents())} documents, {chunks:,} chunks of ~{args.words} words, {DIM}-d vectors, "
          f"{where}; pool {settings.candidate_pool}, top_k {settings.top_k}, rerank off; {len(timed)} timed "
          "queries per scope")
    print(f"cold start: open store {opened * 1000:.0f} ms, first query {first * 1000:.0f} ms, of which loading the "
          f"BM25 files {spent.get('load', 0) * 1000:.0f} ms and the first dense search (loads the HNSW index) "
          f"{spent.get('dense', 0) * 1000:.0f} ms")
    if read_ahead is not None:
        print(f"(the index was read ahead, as the app does when it starts: {read_ahead * 1000:.0f} ms before that "
              "first query)")
    if args.cold_only:
        return 0
    print("models replaced by zero-cost STAND-INS (precomputed query vector, fixed cited answer); their time is "
          "subtracted")
    if not args.warm:  # as the running app has: it reads the index ahead when it starts (Engine.warm_up)
        started = time.perf_counter()
        engine.store.warm()
        print(f"the index read ahead as the app does at start ({time.perf_counter() - started:.1f} s), then timed")
    print()

    scopes: list[tuple[str, int | None]] = [("all", None), ("20", 20), ("1", 1)]
    if args.profile:
        from pyinstrument import Profiler

        size = dict(scopes)[args.profile]
        run_scope(engine, lib, warmup, size, Stopwatch(), embedder, chat)
        profiler = Profiler(interval=0.0005)
        with profiler:
            run_scope(engine, lib, timed, size, Stopwatch(), embedder, chat)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return 0

    watch = Stopwatch()
    instrument(watch)
    results = {}
    for label, size in scopes:
        run_scope(engine, lib, warmup, size, watch, embedder, chat)
        results[label] = run_scope(engine, lib, timed, size, watch, embedder, chat)

    names = {"all": f"all {args.docs} documents", "20": "20 documents", "1": "1 document"}
    print(f"| {'scope':<18} | {'p50 ms':>7} | {'p95 ms':>7} | {'mean ms':>7} | {'p50/target':>10} | "
          f"{'p95/target':>10} |")
    print(f"|{'-' * 20}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 12}|")
    for label, (overheads, _) in results.items():
        p50, p95 = percentile(overheads, 50), percentile(overheads, 95)
        print(f"| {names[label]:<18} | {p50:7.1f} | {p95:7.1f} | {statistics.fmean(overheads):7.1f} | "
              f"{p50 / TARGET_MS:9.2f}x | {p95 / TARGET_MS:9.2f}x |")
    print(f"\ntarget: p50 <= {TARGET_MS:.0f} ms engine overhead per query (ratio <= 1.00x meets it)\n")

    print("per-stage mean ms per query (exclusive time; 'other' = events, scope checks, glue):")
    header = "".join(f"{names[label]:>18}" for label in results)
    print(f"| {'stage':<34} |{header} |")
    rows = [*STAGES.items(), ("other", "other (engine glue)")]
    for key, title in rows:
        cells = []
        for overheads, stages in results.values():
            if key == "other":
                value = statistics.fmean(overheads) - sum(v for k, v in stages.items() if k in STAGES)
            else:
                value = stages.get(key, 0.0)
            cells.append(f"{value:18.2f}")
        print(f"| {title:<34} |{''.join(cells)} |")
    cells = "".join(f"{stages.get('stand-ins', 0.0) * 1000:17.1f}u" for _, stages in results.values())
    print(f"| {'stand-ins (excluded; microseconds)':<34} |{cells} |")
    print_memory(engine, chunks, server)
    return 0


def print_memory(engine: Engine, chunks: int, server: object | None) -> None:
    """Resident memory of this process (and of the Chroma server) beside the raw vector bytes, and what the BM25
    index holds and takes to load, per chunk."""
    import psutil

    raw = chunks * DIM * 4
    rss = psutil.Process().memory_info().rss
    snap = engine.store.lexical._snap
    bm25 = sum(a.nbytes for seg in snap.segments for a in (seg.starts, seg.ids, seg.lengths, seg.keys, seg.indptr,
                                                             seg.rows, seg.tf))
    ids = sum(seg.ids.nbytes for seg in snap.segments)
    status = Path("/proc/self/status")
    split = {}
    if status.exists():  # Linux: resident memory of the process's own (anonymous) and of mapped files' pages
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                split[key] = int(value.split()[0]) * 1024
    parts = (f", of which {split['RssAnon'] / 2**20:,.0f} MiB its own and {split['RssFile'] / 2**20:,.0f} MiB pages "
             "of mapped files" if len(split) == 2 else "")
    print(f"\nmemory: raw vectors {raw / 2**20:,.0f} MiB ({chunks:,} x {DIM} float32); this process resident "
          f"{rss / 2**20:,.0f} MiB ({rss / raw:.2f}x the raw vectors){parts}")
    if server is not None:
        proc = psutil.Process(server._process.pid)  # type: ignore[attr-defined]
        served = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        print(f"        Chroma server resident {served / 2**20:,.0f} MiB ({served / raw:.2f}x the raw vectors); "
              f"both {(served + rss) / 2**20:,.0f} MiB")
    print(f"BM25 index in memory: {bm25 / 2**20:,.0f} MiB of arrays in {len(snap.segments)} segments, "
          f"{bm25 / max(chunks, 1):,.0f} bytes per chunk (chunk ids {ids / max(chunks, 1):,.0f} of them)")
    fresh = LexicalIndex(engine.store.lexical.folder)
    started = time.perf_counter()
    fresh.sync(engine.store.ready_ids())
    fresh.search("warm", 1, engine.store.ready_ids()[:1])
    loaded = time.perf_counter() - started
    print(f"BM25 load from its files (a fresh index, as after a restart): {loaded * 1000:,.0f} ms, "
          f"{loaded / max(chunks, 1) * 1e6:.1f} us per chunk")


if __name__ == "__main__":
    sys.exit(main())
