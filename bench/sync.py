"""Folder sync at scale: a folder of generated PDFs, synced through the ingest queue, against the stand-in Ollama
(a test double from tests/, in its own process, like a real server), all in one run:

1. first sync (queue: files parsed in parallel, batch by batch) against the direct pipeline on the same folder
   (``Engine.ingest`` over every file in one call: what ``python -m rag ingest`` ran before the queue), pages/s;
2. a re-sync with nothing changed (stat only: seconds for the whole folder);
3. a re-sync with 1% of the files changed (at least one): only those are hashed, embedded and replaced;
4. ``python -m rag sync`` killed with SIGKILL at a random point, then resumed: every file indexed once, whole, and
   nothing left half-written;
5. the library page: the app's start-up events (library table, "Ask about", queue line) with as many registry
   entries as ``--library`` says, timed through the real Gradio app in headless Chromium (see ``--library``);
6. many one-page PDFs (``--small``) against a stand-in that charges a fixed latency per embedding request
   (``--latency-ms``, like a remote server): embedding requests and pages/s with batching across files off
   (``RAG_EMBED_ACROSS_FILES=false``, one file's chunks a request) and on, direct and through the queue.

    nice python bench/sync.py                       # 60 PDFs: a few minutes on a shared 2-core machine
    nice python bench/sync.py --files 1000          # the issue's benchmark (about 40 min on 2 cores)
    nice python bench/sync.py --files 10000 --pages 2   # the longer run (hours on 2 cores; see docs/BENCHMARKS.md)
    nice python bench/sync.py --batching-only           # only 6: 60 one-page PDFs, 20 ms a request
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench.timing import clock  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.core.events import FileIndexed  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.ingestion.queue import DONE, FILE_NAME  # noqa: E402

WORDS = ("revenue margin dividend leave policy orbit turbine contract clause warranty invoice audit budget "
         "forecast pipeline reactor enzyme protein lattice kernel scheduler").split()


def _serve_stand_in(queue: Any, delay_s: float = 0.0) -> None:
    from tests.fake_ollama import FakeOllama

    server = FakeOllama(embed_models={"qwen3-embedding:0.6b": 1024}).start()
    server.embed_delay = delay_s  # seconds each /api/embed request takes
    queue.put(server.url)
    while True:
        time.sleep(3600)


def make_folder(folder: Path, files: int, pages: int, seed: int = 7) -> int:
    """``files`` PDFs of ``pages`` pages each, in a few subfolders; returns the page count."""
    from tests import pdf_factory as pf

    rng = random.Random(seed)
    for i in range(files):
        sub = folder / f"part{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        text = [" ".join(rng.choice(WORDS) for _ in range(120)) + f" Document {i}, page {p}."
                for p in range(1, pages + 1)]
        pf.text_pdf(sub / f"doc{i:05d}.pdf", text, title=f"Document {i}")
    return files * pages


def settings_for(url: str, data: Path) -> Settings:
    return Settings.from_env({}, ollama_host=url, data_dir=data, rerank=False, parse_workers=0)


def sync_once(engine: Engine, folder: Path) -> tuple[float, Any, int]:
    """(seconds, report, pages indexed) of one sync pass and the queue run it starts."""
    started = clock()
    (report,) = engine.sync([folder], grace_s=0)
    pages = sum(e.pages for _, e in engine.queue.run() if isinstance(e, FileIndexed) and e.status != "already indexed")
    return clock() - started, report, pages


def direct(url: str, folder: Path, data: Path) -> tuple[float, int]:
    from rag.ingestion.ingest import expand_paths

    engine = Engine(settings_for(url, data))
    try:
        started = clock()
        pages = sum(e.pages for e in engine.ingest(expand_paths([folder])) if isinstance(e, FileIndexed))
        return clock() - started, pages
    finally:
        engine.close()


def count_requests(engine: Engine) -> list[int]:
    """A list that gets the number of texts of each embedding request ``engine`` sends (the provider's one-request
    method, wrapped on this engine's embedder only)."""
    sizes: list[int] = []
    embedder = engine.embedder
    send = embedder._embed

    def counted(texts: Any, *, query: bool) -> list[list[float]]:
        sizes.append(len(texts))
        return send(texts, query=query)

    embedder._embed = counted  # type: ignore[method-assign]
    return sizes


def embed_batching(url: str, folder: Path, root: Path, rounds: int) -> dict[tuple[str, bool], list[tuple[float, int,
                                                                                                          int]]]:
    """(seconds, pages, embedding requests) per (path, batching across files) and round: ``Engine.ingest`` over
    the folder ("direct") and a first sync through the queue ("queue"), each into a fresh data folder; the order of
    off and on alternates between rounds."""
    from rag.ingestion.ingest import expand_paths

    out: dict[tuple[str, bool], list[tuple[float, int, int]]] = {}
    for round_ in range(rounds):
        for across in (False, True) if round_ % 2 == 0 else (True, False):
            for path in ("direct", "queue"):
                data = root / f"batching-{round_}-{path}-{'on' if across else 'off'}"
                engine = Engine(settings_for(url, data).with_(embed_across_files=across))
                try:
                    sizes = count_requests(engine)
                    if path == "direct":
                        started = clock()
                        pages = sum(e.pages for e in engine.ingest(expand_paths([folder]))
                                    if isinstance(e, FileIndexed))
                        seconds = clock() - started
                    else:
                        seconds, _, pages = sync_once(engine, folder)
                finally:
                    engine.close()
                out.setdefault((path, across), []).append((seconds, pages, len(sizes)))
    return out


def report_batching(files: int, latency_ms: float, results: dict[tuple[str, bool], list[tuple[float, int, int]]]
                    ) -> None:
    print(f"{files} one-page PDFs, stand-in embedder at {latency_ms:g} ms a request "
          f"(RAG_EMBED_BATCH_SIZE={Settings().embed_batch_size}):")
    for path in ("direct", "queue"):
        rates = {}
        for across in (False, True):
            runs = results[(path, across)]
            rates[across] = sum(p for _, p, _ in runs) / sum(s for s, _, _ in runs)
            each = ", ".join(f"{p / s:.1f}" for s, p, _ in runs)
            requests = "/".join(str(n) for _, _, n in runs)
            print(f"  {path:6} across files {'on ' if across else 'off'}: {requests} embedding requests, "
                  f"{rates[across]:.1f} pages/s (runs: {each})")
        off, on = results[(path, False)], results[(path, True)]
        print(f"  {path:6} on/off: requests x{sum(n for *_, n in on) / max(1, sum(n for *_, n in off)):.2f}, "
              f"pages/s x{rates[True] / rates[False]:.2f}")


def kill_and_resume(url: str, folder: Path, data: Path, files: int, rng: random.Random) -> dict[str, Any]:
    """``python -m rag sync`` killed at a random point (after 10-80% of the files), then resumed."""
    env = {**os.environ, "OLLAMA_HOST": url, "RAG_DATA_DIR": str(data), "RAG_RERANK": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "sync", str(folder), "--grace", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = max(1, int(files * rng.uniform(0.1, 0.8)))
    done = 0
    while proc.poll() is None:
        try:
            with sqlite3.connect(data / FILE_NAME, timeout=5) as db:
                done = db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (DONE,)).fetchone()[0]
        except sqlite3.Error:
            pass
        if done >= target:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    engine = Engine(settings_for(url, data))
    try:
        interrupted = len(engine.queue.jobs(states=("running",), limit=10**9))
        started = clock()
        (report,) = engine.sync([folder], grace_s=0)  # nothing new: the queue already holds the rest
        list(engine.queue.run())
        seconds = clock() - started
        docs = engine.store.documents(include_pending=True)
        names = [d.file_name for d in docs]
        whole = all(engine.store.count_chunks(d.doc_id) == d.chunks for d in docs)
        return {"killed after": done, "interrupted jobs": interrupted,
                "queued by the re-sync": len(report.queued or []),
                "documents": len(docs), "distinct": len(set(names)), "pending": sum(d.status != "ready" for d in docs),
                "all whole": whole, "jobs done": len(engine.queue.jobs(states=(DONE,), limit=10**9)),
                "resume s": seconds}
    finally:
        engine.close()


def library_page(counts: list[int], root: Path, url: str) -> dict[str, float]:
    """Seconds from opening the app's page until it shows its library (table and "Ask about"), for each number of
    registry entries (written straight into the registry: the page reads the registry only), in headless Chromium:
    a first and a second load each."""
    from playwright.sync_api import sync_playwright

    from rag.core.records import DocumentInfo
    from rag.search.store import READY, _meta
    from tests.live_app import LiveApp

    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for count in counts:
            settings = settings_for(url, root / f"library-{count}")
            engine = Engine(settings)
            now = time.time()
            for start in range(0, count, 2000):
                infos = [DocumentInfo(doc_id=f"{i:032x}", file_name=f"report-{i:05d}.pdf", title=f"Report {i}",
                                      pages=3, chunks=6, status=READY, added_at=now - i, size_bytes=1000)
                         for i in range(start, min(count, start + 2000))]
                engine.store.registry.upsert(ids=[d.doc_id for d in infos], embeddings=[[1.0]] * len(infos),
                                             metadatas=[_meta(d, READY) for d in infos])
            with LiveApp(settings, engine) as app:
                time.sleep(3)  # the app reads its library in the background as it starts
                for run in ("first load", "second load"):
                    page = browser.new_page()
                    started = clock()
                    page.goto(app.url, wait_until="load")
                    page.wait_for_function(f"(document.querySelector('#pw-library') || {{}}).innerText?.includes("
                                           f"'{count} document') && document.querySelectorAll('#pw-scope input')"
                                           ".length > 0", timeout=120_000)
                    out[f"{count} documents, {run}"] = clock() - started
                    page.close()
        browser.close()
    return out


def rescan(count: int, root: Path, url: str) -> tuple[float, float]:
    """(seconds, files) of a sync pass over ``count`` unchanged files whose manifest is already there (the files are
    copies of one small PDF with distinct trailing bytes; an unchanged pass never opens them)."""
    from rag.ingestion.ingest import content_id
    from tests import pdf_factory as pf

    folder = root / "many"
    seed = pf.text_pdf(root / "seed.pdf", ["A small page."])
    data = seed.read_bytes()
    rows = []
    for i in range(count):
        path = folder / f"part{i % 100}" / f"f{i:06d}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data + f"%{i}\n".encode())
        st = path.stat()
        rows.append((str(folder.resolve()), str(path.resolve()), st.st_size, st.st_mtime, content_id(path)))
    engine = Engine(settings_for(url, root / "rescan"))
    try:
        assert engine.folder_sync.states() == []  # opening it creates the manifest tables
        with engine.queue._db() as db:
            db.executemany("INSERT INTO synced (folder, path, size, mtime, doc_id) VALUES (?, ?, ?, ?, ?)", rows)
        started = clock()
        (report,) = engine.sync([folder])
        seconds = clock() - started
        assert report.unchanged == count and not report.queued, report
        return seconds, report.unchanged
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--library", type=int, default=10000, help="registry entries for the page-load timing")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--library-only", action="store_true", help="only the page-load timing")
    parser.add_argument("--rescan", type=int, default=10000, help="unchanged files for the re-sync timing")
    parser.add_argument("--small", type=int, default=60, help="one-page PDFs for the embedding-batching timing "
                        "(0: skip it)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the slow stand-in's time per embedding "
                        "request")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each batching setting (order alternating)")
    parser.add_argument("--batching-only", action="store_true", help="only the embedding-batching timing")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    q: Any = mp.get_context("spawn").Queue()
    server = mp.get_context("spawn").Process(target=_serve_stand_in, args=(q,), daemon=True)
    server.start()
    url = q.get(timeout=60)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        root = Path(tmp)
        if args.batching_only or args.small:
            slow = mp.get_context("spawn").Process(target=_serve_stand_in, args=(q, args.latency_ms / 1000),
                                                   daemon=True)
            slow.start()
            slow_url = q.get(timeout=60)
            make_folder(root / "small", args.small, 1)
            report_batching(args.small, args.latency_ms,
                            embed_batching(slow_url, root / "small", root, max(1, args.rounds)))
            slow.terminate()
            if args.batching_only:
                server.terminate()
                return
        if args.library_only:
            for k, v in library_page([10, args.library], root, url).items():
                print(f"library page, {k}: {v:.2f} s")
            server.terminate()
            return
        folder = root / "pdfs"
        started = clock()
        total_pages = make_folder(folder, args.files, args.pages)
        print(f"{args.files} PDFs, {total_pages} pages generated in {clock() - started:.0f} s "
              f"({os.cpu_count()} cores, shared machine)")

        seconds, pages = direct(url, folder, root / "direct")
        print(f"direct pipeline (Engine.ingest, one call): {seconds:.1f} s, {pages / seconds:.1f} pages/s")

        engine = Engine(settings_for(url, root / "synced"))
        try:
            seconds, report, pages = sync_once(engine, folder)
            first = pages / seconds
            print(f"first sync through the queue:            {seconds:.1f} s, {first:.1f} pages/s "
                  f"({report.new} new)")
            seconds, report, _ = sync_once(engine, folder)
            print(f"re-sync, nothing changed:                {seconds:.2f} s ({report.unchanged} unchanged, "
                  f"{report.seconds:.2f} s scanning)")
            files = sorted(folder.rglob("*.pdf"))
            changed = rng.sample(files, max(1, len(files) // 100))
            for path in changed:
                from tests import pdf_factory as pf

                pf.text_pdf(path, [f"Changed document {path.stem}, a new version about turbines."] * args.pages)
            seconds, report, pages = sync_once(engine, folder)
            print(f"re-sync, {len(changed)} changed ({len(changed) / len(files):.0%}):          {seconds:.2f} s "
                  f"({report.changed} changed, {report.unchanged} unchanged, {pages} pages embedded)")
            docs = engine.documents()
            print(f"library after: {len(docs)} documents (expected {args.files})")
        finally:
            engine.close()

        result = kill_and_resume(url, folder, root / "killed", args.files, rng)
        ok = (result["documents"] == result["distinct"] == args.files and not result["pending"]
              and result["all whole"] and result["jobs done"] == args.files)
        print("kill -9 then resume: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in result.items()) + (" -> OK" if ok else " -> MISMATCH"))
        if args.rescan:
            seconds, files = rescan(args.rescan, root, url)
            print(f"re-sync of {files} unchanged files (manifest already there): {seconds:.2f} s")
        if args.library:
            for k, v in library_page([10, args.library], root, url).items():
                print(f"library page, {k}: {v:.2f} s")
    server.terminate()


if __name__ == "__main__":
    main()
