"""What the reranker reads under a time budget: head cuts against focused cuts, on FinanceBench.

On a CPU the reranking budget cuts each passage to its first 64-136 tokens. For each FinanceBench question (scoped to
its filing, as bench/retrieval_eval.py does), the app's hybrid search gives the candidates the reranker would read
(one passage per page); those on an evidence page that hold the answer (a figure of the reference answer, or,
for an answer without figures, most of its words) are cut to each cap, by their head (``rag.models.reranker.clip``
without a query: the former behaviour) and focused (the page's lead, then the run of sentences that best matches the
question). Reported: the share of cut passages that still hold the answer. Tokens are counted with the Qwen3
tokenizer from the shared evaluation data when it is there (the estimate otherwise).

    python bench/focused_cuts.py
    python bench/focused_cuts.py --caps 64,110,136,200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_eval import DEFAULT_CACHE, EVALDATA, _default_embedder, financebench, load_embedder, sources_hash  # noqa: E402

from rag.answering.claims import PassageFigures, content_words, figures  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.core.records import Passage  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.models.reranker import cut_passages  # noqa: E402
from rag.search.retrieval import Fusion, hybrid_search  # noqa: E402
from rag.text.tokencount import estimate_tokens  # noqa: E402


def counter(tokenizer_file: Path) -> tuple[str, Callable[[list[str]], list[int]]]:
    """How tokens are counted: the Qwen3 tokenizer when its file is there, else the built-in estimate."""
    if tokenizer_file.exists():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
        return "Qwen3 tokenizer", lambda texts: [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
    return "estimate", lambda texts: [estimate_tokens(t) for t in texts]


def holds(text: str, answer: str) -> bool:
    """Whether ``text`` holds the answer: one of its figures (amounts first), or most of its words."""
    wanted = [f for f in figures(answer) if not f.year] or figures(answer)
    if wanted:
        found = PassageFigures(Passage("", "", "", text, 0, 0, 0, len(text)))
        return any(found.holds(f) for f in wanted)
    words = content_words(answer)
    return bool(words) and len(words & content_words(text)) / len(words) >= 0.6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=EVALDATA / "financebench")
    parser.add_argument("--embedder", default=_default_embedder())
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--data-dir", type=Path, default=None, help="an indexed data folder to use instead")
    parser.add_argument("--caps", default="64,110,136", help="token caps, comma-separated")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]

    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=args.embedder, rerank=False)
    key = sources_hash([args.embedder, "float32", base.chunk_tokens, base.chunk_overlap, base.tokenizer])
    settings = base.with_(data_dir=args.data_dir or args.cache / f"ours-{key}")
    files, questions = financebench(args.data, 0)
    answers = {}
    import json

    for line in (args.data / "subset_questions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[row["financebench_id"]] = row["answer"]
    embedder = load_embedder(settings, "float32")
    how, count_many = counter(EVALDATA / "qwen_tokenizer" / "tokenizer.json")
    engine = Engine(settings, embedder=embedder, chat=object())
    by_name = {d.file_name: d.doc_id for d in engine.documents()}
    if len(by_name) < len(files):
        raise SystemExit(f"The filings are not indexed in {settings.data_dir}: run bench/retrieval_eval.py once, "
                         "or pass --data-dir")

    passages: list[tuple[str, str]] = []  # (question, passage text) for passages that hold the answer
    for q in questions:
        found = hybrid_search(engine.store, embedder, q.text, [by_name[f"{q.doc}.pdf"]], settings.candidate_pool,
                              Fusion.from_settings(settings))
        passages += [(q.text, p.text) for p in found if p.page_start in q.pages and holds(p.text, answers[q.qid])]
    engine.close()
    lengths = count_many([t for _, t in passages])
    print(f"FinanceBench: {len(questions)} questions; {len(passages)} retrieved passages on an evidence page hold the "
          f"answer (median {sorted(lengths)[len(lengths) // 2]} tokens, {how}).\n")
    print(f"{'cap (tokens)':>12}{'cut':>6}{'head keeps answer':>20}{'focused keeps answer':>23}{'ms per cut':>12}")
    for cap in caps:
        cut = [(q, t) for (q, t), n in zip(passages, lengths, strict=True) if n > cap]
        head_kept = focus_kept = 0
        seconds = 0.0
        for q, t in cut:
            n = count_many([t])
            head = cut_passages([t], n, cap, count_many)[0]
            started = time.perf_counter()
            focused = cut_passages([t], n, cap, count_many, q)[0]
            seconds += time.perf_counter() - started
            head_kept += holds(head, answers_for(q, questions, answers))
            focus_kept += holds(focused, answers_for(q, questions, answers))
        total = max(1, len(cut))
        print(f"{cap:>12}{len(cut):>6}{head_kept / total:>14.2f} ({head_kept:>3}){focus_kept / total:>17.2f} "
              f"({focus_kept:>3}){seconds / total * 1000:>12.1f}")
    return 0


def answers_for(question: str, questions: list, answers: dict[str, str]) -> str:
    return next(answers[q.qid] for q in questions if q.text == question)


if __name__ == "__main__":
    sys.exit(main())
