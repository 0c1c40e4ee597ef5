"""Broken and hostile PDFs through the app's real ingestion: each file is indexed or fails with its specific reason.

Every PDF of a folder (default ``../shared/evaldata/badpdfs``) goes through ``Engine.ingest`` on its own, with a
fresh parser process, against the stand-in Ollama (tests/fake_ollama.py, a test double started in-process) or a real
server (``--ollama URL``), under the app's limits (RAG_PARSE_TIMEOUT, RAG_PARSE_MEMORY_MB, RAG_MAX_PAGES,
RAG_OCR_PAGE_TIMEOUT, ... from the environment, or ``--timeout`` / ``--memory-mb``). Pages without a text layer are
read by OCR as in the app (RAG_OCR=auto; set RAG_OCR=off to see the files without it).

    python bench/robustness.py
    python bench/robustness.py --folder DIR --timeout 30 --memory-mb 1024
    python bench/robustness.py --hostile --timeout 10 --memory-mb 300   # also the test suite's generated attacks

Prints a table: file, outcome (pages and chunks indexed, or the message the user sees, with its kind), seconds
(the whole ingest of that file: parsing, embedding, storing) and the peak memory of the parser process that read it:
its kernel high-water mark of resident memory (VmHWM in /proc/<pid>/status), polled every 20 ms and read once more
before the process is stopped, so only the last 20 ms of a process killed at its time limit can go unseen. It
includes the process's own ~40 MB of Python and libraries. Ends with a summary line; exits 1 if any file crashed
the run or the parser, hung, or failed without a specific reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.core.config import Settings  # noqa: E402
from rag.core.events import Failure, FileFailed, FileIndexed  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.ingestion.workers import CRASHED  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "evaldata" / "badpdfs"
SPECIFIC = {"empty", "not a pdf", "password required", "corrupt", "no text layer", "too large", "time limit",
            "memory limit", "missing dependency"}  # kinds of failure whose message names the cause


@dataclass
class Outcome:
    """What happened to one file."""

    file: str
    verdict: str  # indexed, failed (a specific reason), unspecific, crashed, hung
    detail: str
    kind: str
    seconds: float
    peak_mb: float | None


class PeakMemory:
    """Polls the high-water mark of resident memory of this process's children started after it was created."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._known = {p.pid for p in self._me.children(recursive=True)}  # e.g. multiprocessing's resource tracker
        self._peaks: dict[int, int] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """Read each new child's high-water mark now."""
        for child in self._me.children(recursive=True):
            if child.pid in self._known:
                continue
            peak = _high_water_mark(child.pid)
            if peak is None:
                try:
                    peak = child.memory_info().rss  # not Linux: the current size, at this moment
                except (self._psutil.Error, OSError):
                    continue
            self._peaks[child.pid] = max(peak, self._peaks.get(child.pid, 0))

    def take(self) -> float | None:
        """The largest peak seen since the last call, in MB (None if no new process ran); forgets those processes."""
        peak = max(self._peaks.values(), default=None)
        self._known |= set(self._peaks)
        self._peaks.clear()
        return None if peak is None else peak / 1048576


def _high_water_mark(pid: int) -> int | None:
    """VmHWM of a process in bytes (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def hang_limit(settings: Settings, path: Path) -> float:
    """Seconds after which the ingest of ``path`` counts as hung: its reading, each page's OCR, and two minutes."""
    try:
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        pages = len(pdf)
        pdf.close()
    except Exception:  # noqa: BLE001 - a file the renderer can't open is not OCR'd either
        pages = 0
    ocr = settings.ocr_page_timeout * min(pages, settings.max_pages) if settings.ocr != "off" else 0
    return settings.parse_timeout + ocr + 120


def run_one(engine: Engine, path: Path, limit_s: float) -> tuple[str, str, str]:
    """Ingest one file in a thread; (verdict, detail, kind). A file still running after ``limit_s`` has hung."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["events"] = list(engine.ingest([path]))
        except BaseException as exc:  # noqa: BLE001 - anything escaping the engine is what this benchmark looks for
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"ingest {path.name}", daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        return "hung", f"no result after {limit_s:g} s", ""
    if "error" in box:
        exc = box["error"]
        return "crashed", f"{type(exc).__name__}: {exc}", ""
    events = box["events"]
    stop = next((e for e in events if isinstance(e, Failure)), None)
    result = next((e for e in events if isinstance(e, (FileIndexed, FileFailed))), None)
    if stop is not None:
        return "crashed", f"the run stopped: {stop.message}", ""
    if isinstance(result, FileIndexed):
        detail = f"indexed: {result.pages} pages, {result.chunks} chunks"
        if result.ocr_pages:
            detail += f", {len(result.ocr_pages)} read by OCR"
        if result.pages_without_text:
            detail += f" ({len(result.pages_without_text)} pages without text)"
        return "indexed", detail, ""
    if isinstance(result, FileFailed):
        if result.kind == CRASHED:
            return "crashed", result.reason, result.kind
        specific = result.kind in SPECIFIC and result.reason.startswith(path.name) and len(result.reason) > 40
        return ("failed" if specific else "unspecific"), result.reason, result.kind
    return "unspecific", "no result event", ""


def hostile_folder(folder: Path) -> Path:
    """Write the test suite's generated attacks (tests/pdf_factory.py) into ``folder``."""
    from tests import pdf_factory as pf

    pf.cyclic_page_tree_pdf(folder / "gen-cyclic-page-tree.pdf")
    pf.page_tree_bomb_pdf(folder / "gen-billion-page-tree.pdf")
    pf.deeply_nested_pdf(folder / "gen-nested-100k.pdf")
    pf.flate_bomb_pdf(folder / "gen-flate-bomb-256mb.pdf")
    pf.slow_pdf(folder / "gen-slow-60-pages.pdf")
    pf.memory_hog_pdf(folder / "gen-memory-hog.pdf")
    pf.many_pages_pdf(folder / "gen-5000-pages.pdf", 5000)
    pf.not_a_pdf(folder / "gen-html-named-pdf.pdf", "html")
    pf.empty_file(folder / "gen-empty.pdf")
    return folder


def main() -> int:
    """Run every PDF of the folder through ingestion; print the table and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help=f"PDFs to try (default {DEFAULT_FOLDER})")
    parser.add_argument("--ollama", help="a real Ollama URL instead of the in-process stand-in")
    parser.add_argument("--timeout", type=float, help="seconds one PDF may take to parse (RAG_PARSE_TIMEOUT)")
    parser.add_argument("--memory-mb", type=int, help="memory cap of a parser process (RAG_PARSE_MEMORY_MB)")
    parser.add_argument("--hostile", action="store_true", help="add the test suite's generated hostile PDFs")
    parser.add_argument("--brief", action="store_true", help="only the first sentence of each message (for docs)")
    args = parser.parse_args()

    fake = None
    if args.ollama is None:
        from tests.fake_ollama import FakeOllama

        fake = FakeOllama().start()
    overrides: dict[str, Any] = {"parse_workers": 1, "rerank": False, "backend": "ollama"}
    if args.timeout is not None:
        overrides["parse_timeout"] = args.timeout
    if args.memory_mb is not None:
        overrides["parse_memory_mb"] = args.memory_mb
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(ollama_host=args.ollama or fake.url, data_dir=Path(tmp) / "data", **overrides)
        files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() == ".pdf") if args.folder.is_dir() else []
        if args.hostile:
            files += sorted(hostile_folder(Path(tmp) / "hostile").iterdir())
        if not files:
            print(f"No PDFs in {args.folder}", file=sys.stderr)
            return 1
        print(f"{len(files)} PDFs; limits: {settings.parse_timeout:g} s and {settings.parse_memory_mb} MB per parser "
              f"process, {settings.ocr_page_timeout:g} s per OCR page (RAG_OCR={settings.ocr}), "
              f"{settings.max_pages} pages, {settings.max_upload_mb:g} MB; "
              f"model server: {'stand-in Ollama (test double)' if fake else args.ollama}", file=sys.stderr)
        engine = Engine(settings)
        try:
            for path in files:
                with PeakMemory() as memory:
                    started = time.perf_counter()
                    verdict, detail, kind = run_one(engine, path, hang_limit(settings, path))
                    seconds = time.perf_counter() - started
                    memory.sample()
                    if verdict != "hung":
                        engine.ingestor.pool.close()  # the next file gets a fresh process: one peak per file
                outcomes.append(Outcome(path.name, verdict, detail, kind, seconds, memory.take()))
                print(f"  {path.name}: {verdict} ({seconds:.1f} s)", file=sys.stderr)
                if verdict == "hung":
                    break  # its thread can't be stopped; what follows would share its parser pool
        finally:
            if not any(o.verdict == "hung" for o in outcomes):
                engine.close()
            if fake is not None:
                fake.stop()

    print("| file | outcome | s | parser peak MB |\n|---|---|---|---|")
    for o in outcomes:
        text = o.detail.replace("|", "\\|").replace("\n", " ")
        if args.brief and ". " in text:
            text = text.split(". ")[0] + ". …"
        label = text if o.verdict == "indexed" else f"**{o.verdict}** ({o.kind or 'no kind'}): {text}"
        peak = f"{o.peak_mb:.0f}" if o.peak_mb is not None else "–"
        print(f"| {o.file} | {label} | {o.seconds:.1f} | {peak} |")
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("indexed", "failed", "unspecific", "crashed", "hung")}
    print(f"\n{len(outcomes)} files: {counts['indexed']} indexed, {counts['failed']} failed with a specific reason, "
          f"{counts['unspecific']} failed without one, {counts['crashed'] + counts['hung']} crashed or hung "
          "(must be 0)")
    bad = counts["unspecific"] + counts["crashed"] + counts["hung"]
    if counts["hung"]:
        sys.stdout.flush()
        os._exit(1)  # a hung ingest thread would keep the interpreter alive
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
