"""OCR: how well scanned pages are read, how fast, and how well questions find them.

    python bench/ocr.py accuracy                     # pages with a text layer, OCR'd as images, vs that text layer
    python bench/ocr.py accuracy --docs 6 --pages 1  # a quick subset
    python bench/ocr.py speed                        # pages/s, and an image-only filing's ingest vs its original
    python bench/ocr.py retrieval --cache /work/benchcache   # FinanceBench through OCR beside the originals

Accuracy: pages of FinanceBench filings and MMLongBench-Doc PDFs (documents with a good text layer) are rendered to
images and read by the app's OCR (``rag.ingestion.ocr.read_page``, default settings: 216 dpi, RapidOCR), and the words
are compared with the page's text layer as the app extracts it (``rag.ingestion.documents.load_pdf``): word recall (how
many of the text layer's words OCR found) and precision (how many of OCR's words are in the text layer), counted as
multisets of lower-cased letter-and-digit runs, per kind of document. "Body text" recall counts only the words of the
text layer's lines of running text (six words or more, mostly letters: not tables, headers or figure labels). Pages with
under 200 characters of text are skipped; ``--pages`` pages per document are taken, evenly spaced.

Speed: OCR pages per second through ``Engine.ingest`` at the default settings (parser processes, onnxruntime
threads), on an image-only copy of a filing; and that copy's whole ingest time against the original's (same
embedder, all-MiniLM-L6-v2 in-process).

Retrieval: image-only copies of the ``--limit-docs`` shortest FinanceBench filings (every page rasterised at
``--scan-dpi`` as a greyscale JPEG, no text layer) are indexed through OCR and scored with
``bench/retrieval_eval.py``'s questions and scoring beside the originals, same embedder, same run; each question
searches its own filing. Image-only copies are kept under ``--cache`` (as are the indexes).

Heavy: run it under the shared CPU lock (``flock /work/wt/.cpu.lock``) with a ``timeout``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
import time
import unicodedata
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.core.config import Settings  # noqa: E402
from rag.core.events import FileFailed, FileIndexed  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.ingestion.documents import clean_text, load_pdf  # noqa: E402
from rag.ingestion.ocr import OcrOptions, read_page  # noqa: E402

# ../shared/evaldata beside the main checkout (or beside the folder of worktrees)
EVALDATA = next((p for p in (ROOT.parent / "shared" / "evaldata", ROOT.parent.parent / "shared" / "evaldata")
                 if p.is_dir()), ROOT.parent / "shared" / "evaldata")
DEFAULT_CACHE = ROOT / "bench" / ".cache"
MIN_CHARS = 200
_TOKEN = re.compile(r"[^\W_]+")


# --- accuracy -------------------------------------------------------------------------------------------------------
def kind_of(path: Path) -> str:
    """What kind of document a benchmark PDF is (by its folder and name)."""
    name = path.name.lower()
    if "financebench" in str(path) or re.search(r"_(10k|10q|8k|earnings)", name):
        return "filing"
    if re.match(r"^\d{4}\.\d{4,5}|^tacl|^\d{4}\.findings|stepback", name):
        return "paper"
    if "manual" in name or "readthedocs" in name or name.startswith("watch"):
        return "manual"
    if "brochure" in name or "handbook" in name or "seniors" in name:
        return "brochure"
    return "report"


def tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def body_tokens(text: str) -> list[str]:
    """Tokens of the lines of running text: six words or more, at least 70% of them words of letters."""
    out: list[str] = []
    for line in text.split("\n"):
        words = tokens(line)
        if len(words) >= 6 and sum(w.isalpha() for w in words) >= 0.7 * len(words):
            out.extend(words)
    return out


@dataclass
class Counts:
    """Matched and total words of a set of pages."""

    found: int = 0  # text-layer words OCR found
    truth: int = 0
    body_found: int = 0
    body: int = 0
    correct: int = 0  # OCR words that are in the text layer
    read: int = 0
    pages: int = 0
    seconds: float = 0.0

    def add(self, truth: str, ocr: str, seconds: float) -> None:
        t, o, b = Counter(tokens(truth)), Counter(tokens(ocr)), Counter(body_tokens(truth))
        common = sum((t & o).values())
        self.found += common
        self.correct += common
        self.truth += sum(t.values())
        self.read += sum(o.values())
        self.body_found += sum((b & o).values())
        self.body += sum(b.values())
        self.pages += 1
        self.seconds += seconds

    def row(self, label: str) -> str:
        ratio = lambda a, b: f"{a / b:.3f}" if b else "–"  # noqa: E731
        per_page = self.seconds / self.pages if self.pages else 0
        return (f"| {label} | {self.pages} | {ratio(self.body_found, self.body)} | {ratio(self.found, self.truth)} | "
                f"{ratio(self.correct, self.read)} | {per_page:.1f} |")


def sample_pages(path: Path, per_doc: int) -> list[tuple[int, str]]:
    """``per_doc`` pages of a PDF with text, evenly spaced (not the first), with their text layer."""
    doc = load_pdf(path)
    candidates = [p for p in doc.pages if len(p.text) >= MIN_CHARS]
    if not candidates:
        return []
    step = len(candidates) / (per_doc + 1)
    picked = {candidates[min(len(candidates) - 1, int(step * (i + 1)))].number for i in range(per_doc)}
    return [(p.number, p.text) for p in doc.pages if p.number in picked]


def _ocr_one(args: tuple[str, int, OcrOptions]) -> tuple[str, float]:
    path, number, options = args
    started = time.perf_counter()
    page = read_page(path, number, options)
    return clean_text(page.text), time.perf_counter() - started


def accuracy(args: argparse.Namespace, options: OcrOptions) -> int:
    """OCR sampled pages of documents with a text layer and compare the words; prints a table per kind."""
    folders = [EVALDATA / "financebench" / "pdfs", EVALDATA / "mmlongbench_doc" / "documents"]
    files: list[Path] = []
    for folder in folders:
        found = sorted(folder.glob("*.pdf"), key=lambda p: (p.stat().st_size, p.name))
        files += found[:args.docs or None]
    jobs: list[tuple[Path, int, str]] = []
    for path in files:
        try:
            jobs += [(path, number, text) for number, text in sample_pages(path, args.pages)]
        except Exception as exc:  # noqa: BLE001 - a document the reader refuses is left out, and said so
            print(f"  skipped {path.name}: {exc}", file=sys.stderr)
    print(f"{len(jobs)} pages of {len(files)} documents; {options.engine} at {options.dpi} dpi, "
          f"{args.workers} processes × {options.threads} thread(s)", file=sys.stderr)
    by_kind: dict[str, Counts] = {}
    total = Counts()
    started = time.perf_counter()
    worst: list[tuple[float, str]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        work = [(str(path), number, options) for path, number, _ in jobs]
        for (path, number, truth), (ocr, seconds) in zip(jobs, pool.map(_ocr_one, work), strict=True):
            one = Counts()
            one.add(truth, ocr, seconds)
            for counts in (by_kind.setdefault(kind_of(path), Counts()), total):
                counts.add(truth, ocr, seconds)
            recall = one.body_found / one.body if one.body else 1.0
            worst.append((recall, f"{path.name} p. {number}"))
            print(f"  {path.name} p. {number}: body recall {recall:.3f} ({seconds:.1f} s)", file=sys.stderr)
    wall = time.perf_counter() - started
    print("\n| documents | pages | word recall, body text | word recall, all | word precision | s/page (one process) |")
    print("|---|---|---|---|---|---|")
    for kind in sorted(by_kind):
        print(by_kind[kind].row(kind))
    print(total.row("**all**"))
    print(f"\n{total.pages} pages in {wall:.0f} s wall ({total.pages / wall:.2f} pages/s with {args.workers} "
          "processes). Lowest body-text recall: " + ", ".join(f"{name} {r:.2f}" for r, name in sorted(worst)[:5]))
    return 0


# --- image-only copies ----------------------------------------------------------------------------------------------
def rasterise(source: Path, target: Path, dpi: int) -> Path:
    """An image-only copy of a PDF: every page rendered at ``dpi`` to a greyscale JPEG, no text layer."""
    if target.exists():
        return target
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument(str(source))
    images: list[Image.Image] = []
    try:
        for page in pdf:
            images.append(page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L"))
    finally:
        pdf.close()
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=dpi, quality=85)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)
    return target


def page_count(path: Path) -> int:
    """The number of pages of a PDF."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def ingest_timed(settings: Settings, files: Sequence[Path], embedder: object) -> tuple[float, dict[str, float], int]:
    """Ingest ``files`` into a fresh index; (seconds, stage timings, pages read by OCR)."""
    engine = Engine(settings, embedder=embedder)  # type: ignore[arg-type]
    ocr_pages = 0
    started = time.perf_counter()
    try:
        for event in engine.ingest(list(files)):
            if isinstance(event, FileFailed):
                print(f"  {event.file_name} failed: {event.reason}", file=sys.stderr)
            elif isinstance(event, FileIndexed):
                ocr_pages += len(event.ocr_pages)
        seconds = time.perf_counter() - started
        return seconds, dict(engine.ingestor.timings), ocr_pages
    finally:
        engine.close()


def speed(args: argparse.Namespace) -> int:
    """OCR pages/s at the default settings, and an image-only filing's ingest time against its original's."""
    import tempfile

    from retrieval_eval import _default_embedder, load_embedder

    source = EVALDATA / "financebench" / "pdfs" / args.filing
    scan = rasterise(source, args.cache / "ocr-scans" / f"{args.scan_dpi}dpi" / source.name, args.scan_dpi)
    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=_default_embedder(), rerank=False)
    embedder = load_embedder(base, "float32")
    with tempfile.TemporaryDirectory() as tmp:
        original_s, _, _ = ingest_timed(base.with_(data_dir=Path(tmp) / "original"), [source], embedder)
        scan_s, timings, pages = ingest_timed(base.with_(data_dir=Path(tmp) / "scan"), [scan], embedder)
    options = OcrOptions.from_settings(base)
    print(f"{source.name}: original ingested in {original_s:.1f} s; its image-only copy ({args.scan_dpi} dpi) in "
          f"{scan_s:.1f} s ({scan_s / original_s:.0f}x), {pages} pages read by OCR: {pages / scan_s:.2f} pages/s "
          f"with {base.effective_parse_workers} parser processes × {options.threads} onnxruntime thread(s) "
          f"({timings.get('ocr', 0) / max(1, pages):.1f} s of one process per page; stages: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(timings.items())) + ")")
    return 0


# --- retrieval ------------------------------------------------------------------------------------------------------
def retrieval(args: argparse.Namespace) -> int:
    """FinanceBench's smallest filings as image-only copies through OCR, scored beside the originals."""
    from retrieval_eval import _fusions, financebench, load_embedder, ours, sources_hash

    every, questions = financebench(EVALDATA / "financebench", 0)
    files = sorted(every, key=lambda p: (page_count(p), p.name))[:args.limit_docs]  # the shortest filings
    questions = [q for q in questions if q.doc in {p.stem for p in files}]
    scans = [rasterise(p, args.cache / "ocr-scans" / f"{args.scan_dpi}dpi" / p.name, args.scan_dpi) for p in files]
    pages = sum(page_count(p) for p in files)
    base = Settings.from_env(embed_backend="sentence-transformers", embed_model=args.embedder, rerank=False)
    key = sources_hash([args.embedder, "float32", base.chunk_tokens, base.chunk_overlap, base.tokenizer])
    fusions = _fusions("", base)[:1]
    embedder = load_embedder(base, "float32")
    print(f"{len(files)} filings, {pages} pages, {len(questions)} questions; embedder {Path(args.embedder).name}; "
          f"scans at {args.scan_dpi} dpi; OCR {OcrOptions.from_settings(base).signature}", file=sys.stderr)
    rows = {}
    for label, docs, folder in (("original", files, f"ours-{key}"),
                                ("image-only, OCR", scans, f"ocr-{args.scan_dpi}dpi-{key}")):
        seconds, got = ours(docs, questions, base.with_(data_dir=args.cache / folder), embedder, fusions)
        rows[label] = (seconds, got)
    print("\n| filings | index s | dense R@5 | BM25 R@5 | hybrid R@1 | hybrid R@5 | hybrid R@10 | hybrid MRR@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, (seconds, got) in rows.items():
        hybrid = got[next(k for k in got if k not in ("dense", "bm25"))]
        print(f"| {label} | {seconds:.0f} | {got['dense'].r5:.2f} | {got['bm25'].r5:.2f} | {hybrid.r1:.2f} | "
              f"{hybrid.r5:.2f} | {hybrid.r10:.2f} | {hybrid.mrr:.3f} |")
    hybrid = {label: got[next(k for k in got if k not in ("dense", "bm25"))].r5 for label, (_, got) in rows.items()}
    ratio = hybrid["image-only, OCR"] / hybrid["original"] if hybrid["original"] else 0.0
    print(f"\nhybrid recall@5 through OCR = {ratio:.2f} × the originals' (target ≥ 0.9); "
          "index s of the originals may come from the cache")
    return 0


def main() -> int:
    from retrieval_eval import _default_embedder

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repair warnings are not what is measured here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    acc = sub.add_parser("accuracy", help="OCR'd words against the text layer")
    acc.add_argument("--docs", type=int, default=0, help="the N smallest documents of each set (0 = all)")
    acc.add_argument("--pages", type=int, default=2, help="pages per document")
    acc.add_argument("--workers", type=int, default=2, help="OCR processes")
    acc.add_argument("--dpi", type=int, default=None, help="rendering resolution (default: the setting's)")
    acc.add_argument("--engine", choices=("rapidocr", "tesseract"), default=None,
                     help="OCR engine (default: the setting's)")
    acc.add_argument("--pad", type=float, default=None, help="margin around each line (default rag.ingestion.ocr.PAD)")
    acc.add_argument("--detect-side", type=int, default=None,
                     help="detection size (default rag.ingestion.ocr.DETECT_SIDE)")
    spd = sub.add_parser("speed", help="pages/s, and an image-only filing's ingest against its original")
    spd.add_argument("--filing", default="ULTABEAUTY_2023Q4_EARNINGS.pdf")
    ret = sub.add_parser("retrieval", help="FinanceBench retrieval through OCR beside the originals")
    ret.add_argument("--limit-docs", type=int, default=8, help="the N shortest filings (fewest pages)")
    ret.add_argument("--embedder", default=_default_embedder())
    for p in (spd, ret):
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
        p.add_argument("--scan-dpi", type=int, default=200, help="resolution of the image-only copies")
    args = parser.parse_args()
    if args.what == "accuracy":
        import rag.ingestion.ocr

        # for trying other values: the workers fork
        rag.ingestion.ocr.PAD = rag.ingestion.ocr.PAD if args.pad is None else args.pad
        rag.ingestion.ocr.DETECT_SIDE = args.detect_side or rag.ingestion.ocr.DETECT_SIDE
        settings = Settings.from_env()
        options = OcrOptions.from_settings(settings)
        options = OcrOptions(args.engine or options.engine, options.lang, args.dpi or options.dpi, threads=1)
        return accuracy(args, options)
    return speed(args) if args.what == "speed" else retrieval(args)


if __name__ == "__main__":
    sys.exit(main())
