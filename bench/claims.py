"""Claim check against a citer that errs: FinanceBench questions over the shared filings, answered by a test double.

The app's own path answers each question (``Engine.ask``: hybrid retrieval with the real all-MiniLM-L6-v2 embedder,
reranker off, the question scoped to its filing as in bench/retrieval_eval.py), but the chat model is
``tests.erring_citer.ErringCiter``: it answers from the passages it is given, and a set share of its statements cite
a neighbouring passage instead, another share has a figure altered (a digit changed, the scale swapped, rounded the
wrong way). Its log is the ground truth; the claim check (``rag.answering.claims``) never sees it.

Reported, in one run:
- wrong citations caught (marked or re-pointed), and re-pointed to the right passage;
- altered figures flagged (the statement marked, or its citation moved: not passed as supported);
- false alarms: correct statements not passed as supported;
- time: the check against the whole answer (retrieval, prompt, the double's instant answer; a real chat model on a
  CPU adds seconds to the answer and nothing to the check).

With ``--support-reranker`` each answer is checked a second time with the reranker judging the statements without
figures (as ``RAG_CLAIM_CHECK_RERANKER=on``): by default a random model of Qwen3-Reranker-0.6B's shape with Qwen3's
tokenizer (bench/reranker_model.py: real timings, meaningless verdicts), or a reranker folder. It reports what that
check costs per answer, its share of the answer's time here, and on how many answers ``auto`` would have used it.

    python bench/claims.py                       # all 28 filings' 83 questions, seeds 0 and 1
    python bench/claims.py --miscite 0.5 --alter 0.2 --seeds 3
    python bench/claims.py --support-reranker    # and the reranker's check, timed
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_eval import (  # noqa: E402
    DEFAULT_CACHE,
    EVALDATA,
    ROOT,
    _default_embedder,
    financebench,
    load_embedder,
    sources_hash,
)
from timing import percentile  # noqa: E402

from rag.answering.answer import AskOptions  # noqa: E402
from rag.answering.claims import check_claims, support_pairs  # noqa: E402
from rag.answering.support import RerankerSupport, support_scorer  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.core.events import AnswerDelta, Claims  # noqa: E402
from rag.core.records import Passage  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.models.budget import RerankBudget  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.erring_citer import ErringCiter  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=EVALDATA / "financebench", help="FinanceBench folder")
    parser.add_argument("--embedder", default=_default_embedder())
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where bench/retrieval_eval.py keeps its "
                        "index (shared: nothing is embedded twice)")
    parser.add_argument("--data-dir", type=Path, default=None, help="an indexed data folder to use instead")
    parser.add_argument("--miscite", type=float, default=0.3, help="share of statements citing a neighbour")
    parser.add_argument("--alter", type=float, default=0.3, help="share of statements with a figure altered")
    parser.add_argument("--seeds", type=int, default=2, help="runs over the questions, each with its own seed")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all)")
    parser.add_argument("--show", action="store_true", help="print the source of each false alarm")
    parser.add_argument("--support-reranker", nargs="?", const="random", default=None, metavar="MODEL",
                        help="also time the check with the reranker judging statements without figures: the random "
                        "0.6B-shaped model (default) or a Qwen3-Reranker folder")
    args = parser.parse_args()

    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=args.embedder, rerank=False)
    key = sources_hash([args.embedder, "float32", base.chunk_tokens, base.chunk_overlap, base.tokenizer])
    settings = base.with_(data_dir=args.data_dir or args.cache / f"ours-{key}")
    files, questions = financebench(args.data, 0)
    support = SupportTimer(settings, args.support_reranker) if args.support_reranker else None
    questions = questions[:args.limit or None]
    embedder = load_embedder(settings, "float32")
    print(f"FinanceBench: {len(questions)} questions over {len(files)} filings; embedder {Path(args.embedder).name}; "
          f"the erring citer miscites {args.miscite:.0%} and alters {args.alter:.0%} of its statements; "
          f"{args.seeds} seed(s).")

    tally: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    check_ms: list[float] = []
    ask_ms: list[float] = []
    misses: list[str] = []
    for seed in range(args.seeds):
        citer = ErringCiter(args.miscite, args.alter, seed=seed)
        engine = Engine(settings, embedder=embedder, chat=citer)
        try:
            by_name = {d.file_name: d.doc_id for d in engine.documents()}
            missing = [f.name for f in files if f.name not in by_name]
            if missing:
                engine.close()
                raise SystemExit(f"{len(missing)} filings are not indexed in {settings.data_dir}: run "
                                 "bench/retrieval_eval.py once (it indexes them), or pass --data-dir")
            for q in questions:
                started = time.perf_counter()
                events = list(engine.ask(q.text, doc_ids=[by_name[f"{q.doc}.pdf"]],
                                         options=AskOptions(think=False, rerank=False)))
                ask_ms.append((time.perf_counter() - started) * 1000)
                claims = next((e for e in events if isinstance(e, Claims)), None)
                if claims is None:
                    continue
                check_ms.append(claims.seconds * 1000)
                if support is not None:
                    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
                    support.check(answer, citer.sources, q.text, ask_ms[-1] / 1000)
                at = 0
                for i, s in enumerate(citer.log):
                    at += len(s.before) if i else 0
                    # the check's statements over the double's one
                    over = [c for c in claims.claims if c.start < at + len(s.text) and c.end > at]
                    at += len(s.text)
                    c = next((c for c in over if c.supported is False), None) or \
                        next((c for c in over if c.supported == "re-pointed"), None) or (over[0] if over else None)
                    verdict = "unjudged" if c is None else "ok" if c.supported is True else \
                        "re-pointed" if c.supported == "re-pointed" else "marked"
                    kind = s.error or "correct"
                    tally[f"{kind}:{verdict}"] += 1
                    tally[kind] += 1
                    if kind == "citation" and c is not None and c.supported == "re-pointed" and \
                            s.source in c.citations:
                        tally["citation:right passage"] += 1
                    if s.error == "number":
                        kinds[s.detail.split(":")[0] + (":caught" if verdict != "ok" else ":missed")] += 1
                    if (kind == "correct") == (verdict != "ok") and len(misses) < 12:
                        misses.append(f"  [{kind} → {verdict}] {s.text[:110]} {s.detail} | "
                                      f"{c.reason[:110] if c else ''}")
                        if args.show:
                            source = citer.sources.get(s.cited, "")
                            misses.append("      source: " + " ".join(source.split())[:600])
        finally:
            engine.close()

    def share(kind: str, *verdicts: str) -> str:
        n = tally[kind]
        hit = sum(tally[f"{kind}:{v}"] for v in verdicts)
        return f"{hit / n:.2f} ({hit}/{n})" if n else "n/a"

    print(f"\n{'statements':<44}{'share':>16}")
    print(f"{'wrong citations caught (re-pointed or marked)':<44}{share('citation', 're-pointed', 'marked'):>16}")
    right = tally["citation:right passage"]
    moved = f"{right / max(1, tally['citation']):.2f} ({right})"
    print(f"{'  re-pointed to the right passage':<44}{moved:>16}")
    print(f"{'altered figures flagged':<44}{share('number', 'marked', 're-pointed'):>16}")
    print(f"{'false alarms on correct statements':<44}{share('correct', 'marked', 're-pointed'):>16}")
    print(f"{'  of which re-pointed':<44}{share('correct', 're-pointed'):>16}")
    unjudged = sum(v for k, v in tally.items() if k.endswith(":unjudged"))
    print(f"statements the check did not judge (no figure, no citation found): {unjudged}")
    print("altered figures by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    ask50, check50 = percentile(ask_ms, 50), percentile(check_ms, 50)
    print(f"\ntime per answer: whole ask p50 {ask50:.1f} ms (retrieval with MiniLM, prompt, the double's instant "
          f"answer); claim check p50 {check50:.2f} ms, p95 {percentile(check_ms, 95):.2f} ms = {check50 / ask50:.1%} "
          "of the answer without generation")
    if support is not None:
        print(support.report(ask50))
    if misses:
        print("\nexamples the check got wrong:")
        print("\n".join(misses))
    return 0


class SupportTimer:
    """The claim check run again on each answer with the reranker as its support scorer, timed."""

    def __init__(self, settings: Settings, model: str) -> None:
        from reranker_model import build_model_dir

        from rag.models.providers.local_reranker import Qwen3Reranker

        folder = build_model_dir(DEFAULT_CACHE / "qwen3-reranker-0.6b-random") if model == "random" else Path(model)
        self.name = "random Qwen3-Reranker-0.6B shape" if model == "random" else folder.name
        self.reranker = Qwen3Reranker(str(folder), settings.rerank_instruction, settings.rerank_max_tokens,
                                      settings.rerank_batch_size, dtype=settings.rerank_dtype)
        self.budget = RerankBudget.from_settings(settings)
        self.budget.calibrate(self.reranker)  # loads it and learns its speed, as the app does at start
        self.ms: list[float] = []
        self.shares: list[float] = []
        self.pairs = 0
        self.auto = 0

    def check(self, answer: str, sources: dict[int, str], question: str, ask_seconds: float) -> None:
        """Check ``answer`` against the prompt's ``sources`` (by number) with the reranker judging the statements
        without figures; ``ask_seconds``: the answer's time without that check."""
        passages = [Passage(f"s{n}", "doc", "filing.pdf", text, 1, 1, 0, len(text))
                    for n, text in sorted(sources.items())]
        self.pairs += len(support_pairs(answer, passages, question))
        self.auto += support_scorer("auto", self.reranker, self.budget, answer, passages, question,
                                    ask_seconds) is not None
        started = time.perf_counter()
        check_claims(answer, passages, RerankerSupport(self.reranker, self.budget), question=question)
        seconds = time.perf_counter() - started
        self.ms.append(seconds * 1000)
        self.shares.append(seconds / max(ask_seconds, 1e-9))

    def report(self, ask50_ms: float) -> str:
        """What the reranker's check added, in a few lines."""
        n = len(self.ms)
        if not n:
            return "\nreranker check: no answer was checked"
        rate = self.budget.throughput.tokens_per_second or 0
        return (f"\nreranker check ({self.name}, {self.reranker.dtype}, ~{rate:.0f} tokens/s): {self.pairs} "
                f"statements without figures in {n} answers sent to it; check p50 "
                f"{percentile(self.ms, 50):.1f} ms, p95 {percentile(self.ms, 95):.1f} ms = p50 "
                f"{percentile(self.shares, 50):.1%} (p95 {percentile(self.shares, 95):.1%}) of the answer here "
                f"(p50 {ask50_ms:.1f} ms; the double answers at once, a real chat model adds seconds); "
                f"RAG_CLAIM_CHECK_RERANKER=auto would have used it on {self.auto} of {n} answers")


if __name__ == "__main__":
    sys.exit(main())
