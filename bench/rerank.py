"""Benchmark the reranker on a random model of Qwen3-Reranker-0.6B's exact shape (no download).

Scores N candidates of ~T tokens for one query three ways and prints seconds and ratios:

- naive: one pair at a time, float32, logits for every position (the "obvious" transformers loop);
- ours:  ``rag.models.providers.local_reranker.Qwen3Reranker.score`` (shared prefix computed once, batches of
         similar length, bf16 where the CPU/GPU has it, two logits of the last position only), loaded from disk
         through the real CrossEncoder path;
- floor: this machine's large-matmul FLOP/s in the dtype ours uses, times the FLOPs of the tokens that must be
         computed (2 x non-embedding params x tokens, the shared prefix counted once).

The weights are random and the tokenizer is Qwen3's own (bench/reranker_model.py): timings are real, scores mean
nothing. Usage: ``python bench/rerank.py [--candidates 20] [--tokens 300] [--skip-naive] [--dtype int8]``.

``--formats`` compares the number formats instead: the same candidates (windows of 3M's 2018 10-K) for a few
questions, scored by ours in float32, bfloat16 and int8 (or ``--formats float32,int8,float16``), each timed and
compared with float32: Spearman and Kendall correlation of the scores per question, how many of float32's top 5
stay in the top 5, and the largest score difference. On random weights these agreement figures are only indicative:
a trained model's activations (outliers included) quantize differently, which is why ``RAG_RERANK_DTYPE=auto``
checks int8 against float32 on the model itself before keeping it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

from bench.reranker_model import EVALDATA, QWEN3_RERANKER_06B, build_model_dir  # noqa: E402
from rag.models.providers.local_reranker import Qwen3Reranker, quantize_int8  # noqa: E402
from rag.models.reranker import format_prompt  # noqa: E402

log = logging.getLogger("bench.rerank")
DEFAULT_CACHE = Path("/work/benchcache") if Path("/work/benchcache").is_dir() else ROOT / "bench" / ".cache"
FILING = EVALDATA / "financebench" / "pdfs" / "3M_2018_10K.pdf"

QUERY = "What does the lease say about returning the security deposit when the tenant moves out?"


def passages(tokenizer, n: int, tokens: int, seed: int = 0) -> list[str]:
    """``n`` made-up passages of exactly ``tokens`` tokens each (tokenized alone)."""
    rng = random.Random(seed)
    words = ("the tenant landlord deposit rent month notice clause contract return days after move out damage "
             "repair invoice amount due paid bank account report page section within written keys property").split()
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(tokens * 2))
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        out.append(text[: offsets[tokens - 1][1]])
    return out


def filing_passages(tokenizer, n: int, tokens: int, seed: int = 0) -> list[str]:
    """``n`` windows of ``tokens`` tokens from the 10-K's text, starting at the top of randomly chosen pages."""
    from rag.ingestion.documents import load_pdf

    pages = [p.text for p in load_pdf(FILING).pages if len(p.text) > 8 * tokens]
    out = []
    for text in random.Random(seed).sample(pages, n):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        out.append(text[: offsets[tokens - 1][1]])
    return out


def matmul_flops(dtype: torch.dtype, seconds: float = 4.0, n: int = 4096) -> float:
    """This machine's best large-matmul FLOP/s in ``dtype`` (int8: a dynamically quantized Linear) over about
    ``seconds`` of trials."""
    if dtype == torch.qint8:
        layer = torch.nn.Linear(n, n, bias=False)
        quantize_int8(wrapper := torch.nn.Sequential(layer))
        a, run = torch.randn(n, n), wrapper
    else:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.mm(x, b)
    with torch.inference_mode():
        run(a)
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            run(a)
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def non_embedding_params() -> int:
    """Parameters that cost FLOPs per token (embeddings are a lookup; the tied head is used for 2 rows only)."""
    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_RERANKER_06B))
    embed = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embed


def naive_scores(model, tokenizer, prompts: list[str], yes: int, no: int) -> list[float]:
    """One pair at a time, logits for every position, score from the last one."""
    scores = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            logits = model(input_ids=ids, logits_to_keep=0).logits[0, -1]
            scores.append(float(torch.softmax(logits[[no, yes]].float(), dim=-1)[1]))
    return scores


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=20, help="passages scored for the query (default 20)")
    parser.add_argument("--tokens", type=int, default=300, help="tokens per passage (default 300)")
    parser.add_argument("--batch-size", type=int, default=8, help="ours: passages per forward pass (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours; the best counts (default 3)")
    parser.add_argument("--naive-candidates", type=int, default=3,
                        help="naive path is timed on this many candidates and scaled linearly (default 3)")
    parser.add_argument("--skip-naive", action="store_true", help="don't time the naive float32 path")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16", "int8"))
    parser.add_argument("--formats", nargs="?", const="float32,bfloat16,int8", metavar="LIST",
                        help="compare number formats with float32 (speed and score agreement) instead; a comma "
                        "list from float32, bfloat16, float16, int8 (default: float32,bfloat16,int8)")
    parser.add_argument("--queries", type=int, default=3, help="--formats: questions scored (default 3)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the random model is kept")
    parser.add_argument("--model", type=Path, help="another reranker folder instead of the random 0.6B-shaped one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    t0 = time.perf_counter()
    model_dir = args.model or build_model_dir(args.cache / "qwen3-reranker-0.6b-random")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if args.formats:
        compare_formats(args, model_dir, tokenizer)
        return
    texts = passages(tokenizer, args.candidates, args.tokens)

    # Ours: the random model with Qwen3's tokenizer, loaded exactly as the app would.
    reranker = Qwen3Reranker(str(model_dir), max_passage_tokens=max(args.tokens, 1),
                             batch_size=args.batch_size, dtype=args.dtype)
    params = non_embedding_params()
    reranker.load()
    dtype = reranker.dtype
    log.info("setup %.0f s: model in %s on %s, %d threads", time.perf_counter() - t0, dtype, reranker.device,
             torch.get_num_threads())

    reranker.score(QUERY, texts[:2])  # warm-up (allocator, oneDNN kernels)
    tokens = reranker.encode(QUERY, texts)
    n_tokens = len(tokens.prefix) + sum(len(s) for s in tokens.suffixes)
    full_tokens = sum(len(tokens.full(i)) for i in range(len(texts)))
    flops_before = matmul_flops(dtype)
    ours_times, ours = [], []
    for _ in range(max(args.repeats, 1)):
        t = time.perf_counter()
        ours = reranker.score(QUERY, texts)
        ours_times.append(time.perf_counter() - t)
    flops_after = matmul_flops(dtype)
    peak = max(flops_before, flops_after)
    floor = 2 * params * n_tokens / peak
    ours_s = min(ours_times)

    naive_s = naive_note = None
    agreement = ""
    if not args.skip_naive:
        k = max(1, min(args.naive_candidates, args.candidates))
        fp32 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        prompts = [format_prompt(reranker.instruction, QUERY, p) for p in texts[:k]]
        naive_scores(fp32, tokenizer, prompts[:1], reranker.yes_token_id, reranker.no_token_id)  # warm-up
        t = time.perf_counter()
        naive = naive_scores(fp32, tokenizer, prompts, reranker.yes_token_id, reranker.no_token_id)
        naive_s = (time.perf_counter() - t) * args.candidates / k
        naive_note = f"timed on {k} of {args.candidates} candidates, scaled x{args.candidates / k:.2f}" \
            if k < args.candidates else "timed on all candidates"
        diff = max(abs(a - b) for a, b in zip(naive, ours, strict=False))
        agreement = f"max |ours - naive fp32| over {k} scores: {diff:.4f} ({str(dtype).removeprefix('torch.')} vs fp32)"
        del fp32

    print()
    print(f"Qwen3-Reranker-0.6B shape, random weights; {args.candidates} candidates x {args.tokens} passage tokens; "
          f"prompt {len(tokens.full(0))} tokens each, shared prefix {len(tokens.prefix)}; "
          f"{torch.get_num_threads()} threads on {reranker.device}")
    print(f"floor: {n_tokens} tokens to compute (of {full_tokens} in the prompts) x 2 x {params / 1e6:.0f}M params "
          f"= {2 * params * n_tokens / 1e12:.2f} TFLOP at {peak / 1e9:.0f} GFLOP/s "
          f"({str(dtype).removeprefix('torch.')} 4096^3 matmul, best; {flops_before / 1e9:.0f} before, "
          f"{flops_after / 1e9:.0f} after)")
    print()
    print(f"| {'path':<46} | {'seconds':>8} |")
    print(f"|{'-' * 48}|{'-' * 10}|")
    if naive_s is not None:
        print(f"| {'naive (1 pair at a time, fp32, all logits)':<46} | {naive_s:8.1f} |")
    print(f"| {'ours (' + str(dtype).removeprefix('torch.') + ', prefix once, last logits)':<46} | {ours_s:8.1f} |")
    print(f"| {'floor (matmul peak x FLOPs)':<46} | {floor:8.1f} |")
    print()
    if naive_s is not None:
        print(f"naive / ours  = {naive_s / ours_s:5.1f}x   ({naive_note})")
    print(f"ours  / floor = {ours_s / floor:5.2f}x   (target <= 1.5; ours runs: "
          f"{', '.join(f'{t:.1f}' for t in ours_times)} s, median {statistics.median(ours_times):.1f})")
    if agreement:
        print(agreement)
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s")


def compare_formats(args: argparse.Namespace, model_dir: Path, tokenizer) -> None:
    """Each number format against float32 on the same candidates: seconds, and how far the scores agree."""
    from scipy.stats import kendalltau, spearmanr

    from bench.ttft import QUESTIONS

    texts = filing_passages(tokenizer, args.candidates, args.tokens)
    queries = QUESTIONS[: args.queries]
    formats = ["float32"] + [f for f in args.formats.split(",") if f and f != "float32"]
    results: dict[str, tuple[float, list[list[float]]]] = {}
    for fmt in formats:
        reranker = Qwen3Reranker(str(model_dir), max_passage_tokens=args.tokens, batch_size=args.batch_size,
                                 dtype=fmt, device="cpu")
        reranker.load()
        reranker.score(queries[0], texts[:2])  # warm-up (allocator, kernels)
        started = time.perf_counter()
        scores = [reranker.score(q, texts) for q in queries]
        results[fmt] = (time.perf_counter() - started, scores)
        log.info("%s: %.1f s", fmt, results[fmt][0])
        del reranker
        gc.collect()

    base_s, base = results["float32"]
    print()
    print(f"Qwen3-Reranker-0.6B shape, random weights, Qwen3's tokenizer; {len(queries)} questions x "
          f"{args.candidates} windows of {args.tokens} tokens from {FILING.name}; {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print()
    print("| format | seconds | speed vs float32 | Spearman | Kendall | top-5 kept | max abs diff | score spread |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt, (secs, scores) in results.items():
        rho = statistics.mean(spearmanr(a, b).statistic for a, b in zip(base, scores, strict=True))
        tau = statistics.mean(kendalltau(a, b).statistic for a, b in zip(base, scores, strict=True))
        kept = statistics.mean(len(set(_top(a, 5)) & set(_top(b, 5))) for a, b in zip(base, scores, strict=True))
        diff = max(abs(x - y) for a, b in zip(base, scores, strict=True) for x, y in zip(a, b, strict=True))
        spread = statistics.mean(statistics.pstdev(a) for a in scores)
        print(f"| {fmt} | {secs:.1f} | {base_s / secs:.2f}x | {rho:.3f} | {tau:.3f} | {kept:.1f} of 5 | "
              f"{diff:.4f} | {spread:.4f} |")
    print()
    print("Agreement on random weights is only indicative (see the module docstring); 'score spread' is the standard "
          "deviation of one question's scores, the scale the differences compare with.")


def _top(scores: list[float], k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]


if __name__ == "__main__":
    main()
