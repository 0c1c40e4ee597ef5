"""Private libraries at scale: the engine's own time per question when 100 users each hold 50 documents of one
100k-chunk index, against one user holding all of them.

The synthetic library of ``bench/query.py`` (imported, not copied: Zipf words, random 1024-d unit vectors, written
once through the real ``Store`` into ``bench/.cache/``) with 5,000 documents x 20 chunks = 100k chunks. The
ownership library (``library.sqlite3`` beside it) is written afresh each run:

- "100 users": user ``u000`` … ``u099`` holds documents 50·i … 50·i+49 (1,000 chunks each); every question is asked
  by the user whose document it was drawn from, so the access decision scopes search to that user's 50 documents.
- "one user": the same questions asked by one login holding all 5,000 documents (the gate decides, and the scope is
  the whole index), and by the machine's owner (no login: sees everything).

The models are bench/query.py's ZERO-COST STAND-INS (a precomputed query vector, a fixed cited answer), clearly not
models; their time is subtracted, so what is reported is engine overhead: the access decision, dense search, BM25,
fusion, passages, prompt and citations.

    python bench/users.py                  # build the index once (minutes), then 200 questions per setting
    python bench/users.py --queries 50     # quicker

Prints p50/p95 per setting and the p50 ratio of 100 users to one user (target <= 1.2x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query import (  # noqa: E402
    INDEX_NAME,
    FixedAnswerChat,
    Library,
    PrecomputedEmbedder,
    Query,
    ask_timed,
    build,
    make_queries,
    settings_for,
)
from bench.timing import percentile  # noqa: E402
from rag.access.gate import UPGRADED  # noqa: E402
from rag.access.library import FILE_NAME  # noqa: E402
from rag.access.library import Library as Owners  # noqa: E402
from rag.answering.answer import AskOptions  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.search.store import Store  # noqa: E402

TARGET_RATIO = 1.2
EVERYONE = "everything"  # the login that holds every document


def own(lib: Library, users: int, per_user: int) -> None:
    """Write the ownership library: each user holds their share of the documents; one login holds them all."""
    path = lib.folder / FILE_NAME
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    owners = Owners(path)
    owners.set_meta(UPGRADED, "bench")  # not an old data folder: nothing to upgrade
    for d in range(lib.docs):
        doc_id, name = lib.doc_id(d), f"synthetic-{d:03d}.pdf"
        owners.hold(f"u{d // per_user:03d}", doc_id, name)
        owners.hold(EVERYONE, doc_id, name)


def run(engine: Engine, queries: list[Query], user_of: object, embedder: PrecomputedEmbedder,
        chat: FixedAnswerChat) -> list[float]:
    """Engine overhead (ms) per question, each asked by ``user_of(query)``."""
    out = []
    options = AskOptions(rerank=False)
    for q in queries:
        user = user_of(q)  # type: ignore[operator]
        overhead, _, sources = ask_timed(engine, embedder, chat, q.question, options=options, user=user)
        if user is not None and any(engine.access.view(user).names.get(c.passage.doc_id) is None
                                    for c in sources.cited):
            raise SystemExit("a question cited a document its user does not hold; the gate is broken")
        out.append(overhead)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--docs-per-user", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per document")
    parser.add_argument("--words", type=int, default=250)
    parser.add_argument("--vocab", type=int, default=50000)
    parser.add_argument("--queries", type=int, default=200, help="timed questions per setting")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    lib = Library(args.users * args.docs_per_user, args.chunks, args.words, args.vocab)
    build(lib, rebuild=False)
    own(lib, args.users, args.docs_per_user)
    queries, vectors = make_queries(lib, args.queries + args.warmup)
    warmup, timed = queries[:args.warmup], queries[args.warmup:]
    embedder, chat = PrecomputedEmbedder(vectors), FixedAnswerChat()
    settings = settings_for(lib)
    engine = Engine(settings, embedder=embedder, store=Store(settings, INDEX_NAME), chat=chat)
    print(f"{lib.docs:,} documents x {lib.chunks} chunks = {engine.store.count_chunks():,} chunks; "
          f"{args.users} users x {args.docs_per_user} documents; {len(timed)} timed questions per setting; "
          "models replaced by zero-cost STAND-INS (their time subtracted)\n")

    settings_run = {
        f"{args.users} users, {args.docs_per_user} documents each": lambda q: f"u{q.doc // args.docs_per_user:03d}",
        f"one user holding all {lib.docs:,}": lambda q: EVERYONE,
        "the machine's owner (no login)": lambda q: None,
    }
    results = {}
    for _ in range(2):  # interleaved twice, so a noisy neighbour on the machine hits every setting alike
        for label, user_of in settings_run.items():
            run(engine, warmup, user_of, embedder, chat)
            results.setdefault(label, []).extend(run(engine, timed, user_of, embedder, chat))
    engine.close()

    print(f"| {'who asks':<38} | {'p50 ms':>7} | {'p95 ms':>7} | {'mean ms':>7} |")
    print(f"|{'-' * 40}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for label, values in results.items():
        print(f"| {label:<38} | {percentile(values, 50):7.1f} | {percentile(values, 95):7.1f} | "
              f"{statistics.fmean(values):7.1f} |")
    many, one = list(results.values())[:2]
    ratio = percentile(many, 50) / percentile(one, 50)
    print(f"\np50 ratio, {args.users} users / one user: {ratio:.2f}x (target <= {TARGET_RATIO:.1f}x: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
