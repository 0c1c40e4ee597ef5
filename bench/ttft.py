"""Time to first answer token, beside its parts, with the reranker inside its time budget.

Twenty questions a reader of 3M's 2018 annual report might ask go through ``Engine.ask`` over that 10-K (160 pages,
from ``../shared/evaldata/financebench``), indexed once. Embeddings and the chat model are the stand-in Ollama
server (tests/fake_ollama.py, a test double in its own process that answers at once), so the time measured is ours:
retrieval (query embedding, dense + BM25, fusion), the rerank stage (the budget's plan, then the reranker), the
prompt, and the stand-in's first token. The reranker is a random-weight model of Qwen3-Reranker-0.6B's exact shape
with Qwen3's real tokenizer (bench/reranker_model.py): its timings are real, its scores mean nothing, so the bench
sets RAG_RERANK_THRESHOLD=0 and RAG_MIN_RELEVANCE=0 (every question goes on to a prompt); all else is default.

Each configuration runs in its own process (a fresh budget, as when the app starts), loads the reranker and times
it once before the first question (as the app's warm-up does), and asks the questions in order:

    before        the reranker without a budget (RAG_RERANK_SECONDS=0: every candidate, up to 384 tokens each),
                  auto number format; only the first --before-questions questions (each takes tens of seconds)
    auto          default settings (bf16 on a CPU with AVX512-BF16 or AMX)
    float32       RAG_RERANK_DTYPE=float32
    int8          RAG_RERANK_DTYPE=int8
    avx2-auto     as auto, float32 and int8, with torch, oneDNN, MKL and FBGEMM held to AVX2 instructions: the
    avx2-float32  kernels a laptop without AVX-512 runs (on this machine's cores and clock); avx2-auto is the
    avx2-int8     default there (no bf16: float32, or int8 where the load-time check finds it faster and close)
    http          RAG_RERANK_BACKEND=http against a stand-in /rerank server (a test double in its own process,
                  Jina/Cohere protocol) scoring with the same random-weight model, bf16 where the CPU has it

    python bench/ttft.py                                  # all of the above (~15 min here)
    python bench/ttft.py --configs auto,float32 --questions 5
    python bench/ttft.py --cache /work/benchcache         # where the index and the model are kept (default)

Prints, per configuration, the time to first answer token (p50 / p95 / max) and its parts (p50), the rerank stage
against its budget, and how many of the fused candidates the reranker read, at what cut.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.reranker_model import EVALDATA, build_model_dir  # noqa: E402
from bench.timing import Stopwatch, percentile  # noqa: E402

PDF = EVALDATA / "financebench" / "pdfs" / "3M_2018_10K.pdf"
DEFAULT_CACHE = Path("/work/benchcache") if Path("/work/benchcache").is_dir() else ROOT / "bench" / ".cache"
EMBED_DIMS = 1024  # Qwen3-Embedding-0.6B's size, from the stand-in
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"settings": {"rerank_seconds": 0}},
    "auto": {"settings": {}},
    "float32": {"settings": {"rerank_dtype": "float32"}},
    "int8": {"settings": {"rerank_dtype": "int8"}},
    "avx2-auto": {"settings": {}, "env": AVX2},
    "avx2-float32": {"settings": {"rerank_dtype": "float32"}, "env": AVX2},
    "avx2-int8": {"settings": {"rerank_dtype": "int8"}, "env": AVX2},
    "http": {"settings": {"rerank_backend": "http"}, "rerank_server": True},
}

# Questions a reader of the filing might ask (written for this bench, not taken from FinanceBench's set).
QUESTIONS = [
    "What were 3M's total net sales in 2018 and how much did they grow over 2017?",
    "How much did 3M spend on property, plant and equipment in 2018?",
    "What dividend per share did 3M pay its shareholders in 2018?",
    "How much of its own stock did 3M buy back during 2018?",
    "Which business segment earned the most operating income in 2018?",
    "How much did 3M spend on research and development in 2018?",
    "How many employees did 3M have at the end of 2018?",
    "What did 3M agree to pay in the settlement with the State of Minnesota over PFAS in 2018?",
    "How did the Tax Cuts and Jobs Act affect 3M's income taxes for 2018?",
    "What was 3M's effective tax rate in 2018?",
    "Which businesses did 3M sell or buy in 2018?",
    "How much long-term debt did 3M have at the end of 2018?",
    "What were 3M's diluted earnings per share in 2018?",
    "How much cash did 3M's operating activities provide in 2018?",
    "How do changes in foreign exchange rates affect 3M's results?",
    "What is the status of the Bair Hugger patient warming litigation?",
    "How much goodwill was on 3M's balance sheet at the end of 2018?",
    "What restructuring actions did 3M take in 2018 and what did they cost?",
    "How much did 3M contribute to its pension and postretirement plans in 2018?",
    "What share of 3M's 2018 sales came from outside the United States?",
]


# --- stand-in servers (test doubles), each in its own process -----------------------------------------------------
def _serve_ollama(queue: Any) -> None:
    """The stand-in Ollama (tests/fake_ollama.py): hashed n-gram embeddings, a chat model that answers at once."""
    from tests.fake_ollama import FakeOllama

    server = FakeOllama(embed_models={"qwen3-embedding:0.6b": EMBED_DIMS}).start()
    queue.put(server.url)
    while True:
        time.sleep(3600)


def _serve_rerank(queue: Any, model_dir: str) -> None:
    """A stand-in /rerank service (a test double, not vLLM or TEI): the Jina/Cohere request and response shapes,
    scored by the in-process reranker on the random-weight model, one request at a time."""
    from rag.models.providers.local_reranker import Qwen3Reranker

    reranker = Qwen3Reranker(model_dir)
    reranker.load()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            scores = reranker.score(body["query"], body["documents"])
            order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.get("top_n") or len(scores)]
            payload = json.dumps({"model": body.get("model", ""), "results": [
                {"index": i, "relevance_score": scores[i]} for i in order]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    queue.put(f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.serve_forever()


def _start(target: Callable[..., None], *args: Any) -> tuple[Any, str]:
    queue: Any = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=target, args=(queue, *args), daemon=True)
    process.start()
    return process, queue.get(timeout=600)


# --- one configuration (run in a child process) -------------------------------------------------------------------
def worker(spec: dict[str, Any]) -> None:
    """Ask the questions with one configuration; print one JSON line per question and one for the set-up."""
    import rag.answering.answer
    from rag.answering.answer import AskOptions
    from rag.core.config import Settings
    from rag.core.events import AnswerDelta, Progress
    from rag.engine import Engine

    settings = Settings.from_env({}, **spec["settings"])
    started = time.perf_counter()
    engine = Engine(settings)
    engine.warm_up(background=False)  # the reranker loads before the first question, as in the app
    reranker = engine.reranker
    setup = {"setup_s": time.perf_counter() - started, "reranker": type(reranker).__name__,
             "dtype": str(getattr(reranker, "dtype", "remote")).removeprefix("torch."), "budget_s":
             settings.rerank_seconds}
    print("SETUP " + json.dumps(setup), flush=True)

    plans: list[Any] = []
    scored: list[Any] = []

    watch = Stopwatch()
    rag.answering.answer.hybrid_search = watch.wrap("retrieval", rag.answering.answer.hybrid_search)
    rag.answering.answer.build_messages = watch.wrap("prompt", rag.answering.answer.build_messages)
    budget = engine.rerank_budget
    budget.plan = watch.wrap("plan", budget.plan, plans)
    budget.score = watch.wrap("score", budget.score, scored)

    for question in spec["questions"]:
        watch.reset()
        plans.clear()
        scored.clear()
        generating = first = None
        t0 = time.perf_counter()
        for event in engine.ask(question, options=AskOptions(think=False)):
            now = time.perf_counter()
            if isinstance(event, Progress) and event.stage == "generating":
                generating = now
            elif isinstance(event, AnswerDelta) and first is None:
                first = now
        plan = plans[0] if plans else None
        times = watch.reset()
        row = {"ttft": (first or time.perf_counter()) - t0, "chat_first_token": (first or 0) - (generating or 0),
               **times, "rerank": times.get("plan", 0.0) + times.get("score", 0.0)}
        if plan is not None:
            row.update(planned=plan.count, count=len(scored[0]) if scored else 0, total=plan.total,
                       cap=plan.token_cap, tokens=plan.tokens, expected=plan.expected_seconds)
        print("RESULT " + json.dumps(row), flush=True)
    engine.close()


# --- the comparison -----------------------------------------------------------------------------------------------
def ensure_index(cache: Path, ollama_url: str) -> Path:
    """Index the 10-K once (stand-in embeddings, default chunking); return the data folder."""
    from rag.core.config import Settings
    from rag.engine import Engine

    data = cache / f"ttft-3m-2018-standin{EMBED_DIMS}"
    settings = Settings.from_env({}, ollama_host=ollama_url, data_dir=data, rerank=False)
    engine = Engine(settings)
    try:
        if not engine.documents():
            started = time.perf_counter()
            list(engine.ingest([PDF]))
            print(f"indexed {PDF.name} in {time.perf_counter() - started:.0f} s", flush=True)
        doc = engine.documents()[0]
        print(f"{doc.file_name}: {doc.pages} pages, {doc.chunks} chunks", flush=True)
    finally:
        engine.close()
    return data


def run_config(name: str, questions: list[str], base: dict[str, Any], rerank_url: str | None,
               timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = CONFIGS[name]
    settings = {**base, **config["settings"]}
    if config.get("rerank_server"):
        settings["rerank_url"] = rerank_url
    env = {**os.environ, **config.get("env", {}), "PYTHONPATH": str(ROOT)}
    spec = {"settings": {k: str(v) for k, v in settings.items()}, "questions": questions}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    setup: dict[str, Any] = {}
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("SETUP "):
            setup = json.loads(line[6:])
        elif line.startswith("RESULT "):
            rows.append(json.loads(line[7:]))
    if proc.returncode != 0 or not rows:
        setup["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return setup, rows


def report(results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], isa_note: str) -> None:
    print()
    print("| configuration | number format | questions | TTFT p50 / p95 / max s | retrieval p50 s | rerank stage "
          "p50 / p95 / max s | budget s | stage / budget p95 | prompt p50 ms | stand-in chat first token p50 ms | "
          "passages ranked (median, min) of | token cap median (min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (setup, rows) in results.items():
        if not rows:
            print(f"| {name} | - | 0 | failed: {setup.get('error', '?')} |")
            continue

        def col(key: str, rows: list[dict[str, Any]] = rows) -> list[float]:
            return [r.get(key, 0.0) for r in rows]

        ttft, stage = col("ttft"), col("rerank")
        budget = float(setup.get("budget_s", 0) or 0)
        ratio = f"{percentile([s / budget for s in stage], 95):.2f}" if budget else "no limit"
        counts = [r["count"] for r in rows if "count" in r]
        totals = [r["total"] for r in rows if "total" in r]
        caps = [r["cap"] for r in rows if "cap" in r]
        p50 = {key: percentile(col(key), 50) for key in ("ttft", "retrieval", "rerank", "prompt", "chat_first_token")}
        print(f"| {name} | {setup.get('dtype', '?')} | {len(rows)} | {p50['ttft']:.2f} / {percentile(ttft, 95):.2f} / "
              f"{max(ttft):.2f} | {p50['retrieval']:.3f} | {p50['rerank']:.2f} / {percentile(stage, 95):.2f} / "
              f"{max(stage):.2f} | {budget:g} | {ratio} | {p50['prompt'] * 1000:.0f} | "
              f"{p50['chat_first_token'] * 1000:.0f} | {statistics.median(counts):.0f}, {min(counts)} of "
              f"{statistics.median(totals):.0f} | {statistics.median(caps):.0f} ({min(caps)}) |")
    print()
    print(isa_note)
    for name, (setup, rows) in results.items():
        if rows:
            print(f"{name}: set-up {setup.get('setup_s', 0):.0f} s; first question TTFT {rows[0]['ttft']:.2f} s; "
                  "plan p50 {:.0f} ms; rerank stage per question (s): ".format(
                      percentile([r.get('plan', 0.0) for r in rows], 50) * 1000)
                  + ", ".join(f"{r['rerank']:.1f}" for r in rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="first N questions (default 20)")
    parser.add_argument("--before-questions", type=int, default=2,
                        help="questions for the 'before' configuration (default 2)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the index and model are kept")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one configuration may take")
    parser.add_argument("--model", type=Path, help="another reranker folder instead of the random 0.6B-shaped one")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0

    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not PDF.exists():
        print(f"unknown configuration(s) {unknown}" if unknown else f"{PDF} not found", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or build_model_dir(args.cache / "qwen3-reranker-0.6b-random")
    ollama, ollama_url = _start(_serve_ollama)
    data = ensure_index(args.cache, ollama_url)
    rerank_server, rerank_url = _start(_serve_rerank, str(model_dir)) if "http" in names else (None, None)
    base = {"ollama_host": ollama_url, "data_dir": data, "rerank": True, "rerank_model": model_dir,
            "rerank_threshold": 0, "min_relevance": 0}
    results = {}
    try:
        for name in names:
            count = args.before_questions if name == "before" else args.questions
            started = time.perf_counter()
            results[name] = run_config(name, QUESTIONS[:count], base, rerank_url, args.timeout)
            print(f"{name}: {len(results[name][1])} questions in {time.perf_counter() - started:.0f} s "
                  f"{results[name][0].get('error', '')}", flush=True)
    finally:
        for process in (ollama, rerank_server):
            if process is not None:
                process.kill()
    import torch

    report(results, f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
                    f"{torch.backends.cpu.get_cpu_capability()} (avx2-* configurations: AVX2 kernels only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
