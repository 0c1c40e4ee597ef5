"""Command line: ``python -m rag ingest|docs|rm|settings``. Renders engine events; does no engine work."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Sequence

from rag.config import Settings, describe
from rag.errors import RagError
from rag.events import ChunksMade, Embedded, Failure, FileFailed, FileIndexed, FileStarted, PagesParsed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if args.command == "settings":
        return _settings()
    try:
        from rag.engine import Engine

        engine = Engine(Settings.from_env())
    except RagError as exc:
        _err(str(exc))
        return 1
    try:
        return int(args.run(engine, args))
    except RagError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err("Interrupted. Nothing half-indexed is kept.")
        return 130
    finally:
        engine.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Chat with your PDFs, from the terminal.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="index PDF files or folders of PDFs")
    p.add_argument("paths", nargs="+", help="PDF files or folders")
    p.add_argument("--keep-old", action="store_true",
                   help="keep the old version when a file with the same name but new content is indexed")
    p.set_defaults(run=_ingest)
    p = sub.add_parser("docs", help="list indexed documents")
    p.set_defaults(run=_docs)
    p = sub.add_parser("rm", help="remove a document (by file name or id) from the index")
    p.add_argument("doc", nargs="+")
    p.set_defaults(run=_rm)
    sub.add_parser("settings", help="list the environment variables that configure the app")
    return parser


def _ingest(engine: Any, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag.ingest import expand_paths

    files = expand_paths(args.paths)
    if not files:
        _err("No PDF files found in the given paths.")
        return 1
    counts = {"indexed": 0, "replaced": 0, "already indexed": 0, "failed": 0}
    bar: tqdm | None = None
    started = time.perf_counter()
    pages = 0
    aborted = False
    for event in engine.ingest(files, replace=not args.keep_old):
        if isinstance(event, FileStarted):
            prefix = f"[{event.index}/{event.total}] {event.file_name}"
        elif isinstance(event, PagesParsed):
            note = f", no text on page(s) {_pages(event.pages_without_text)}" if event.pages_without_text else ""
            _out(f"{prefix}: {_n(event.pages, 'page')} parsed{note}", dim=True)
        elif isinstance(event, ChunksMade):
            bar = tqdm(total=event.chunks, desc="  embedding", unit="chunk", leave=False, file=sys.stderr)
        elif isinstance(event, Embedded) and bar is not None:
            bar.update(event.done - bar.n)
        elif isinstance(event, FileIndexed):
            bar = _close(bar)
            counts[event.status] += 1
            pages += event.pages if event.status != "already indexed" else 0
            detail = f"{_n(event.pages, 'page')}, {_n(event.chunks, 'chunk')}"
            _out(f"{prefix}: \u2713 {event.status} ({detail})")
        elif isinstance(event, FileFailed):
            bar = _close(bar)
            counts["failed"] += 1
            _out(f"{prefix}: \u2717 {event.reason}")
        elif isinstance(event, Failure):
            aborted = True
            _err(f"Stopped: {event.message}")
    _close(bar)
    seconds = time.perf_counter() - started
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    _out(f"Done in {seconds:.1f} s: {summary or 'nothing to do'}"
         + (f" ({pages / seconds:.1f} pages/s)" if pages and seconds > 0 else ""))
    if aborted:
        return 1
    return 2 if counts["failed"] else 0


def _docs(engine: Any, args: argparse.Namespace) -> int:
    docs = engine.documents()
    if not docs:
        _out("No documents indexed yet. Add some with: python -m rag ingest FILE_OR_FOLDER")
        return 0
    width = max(len(d.file_name) for d in docs)
    _out(f"{'ID':10}  {'NAME':{width}}  {'PAGES':>5}  {'CHUNKS':>6}  {'ADDED':16}  STATUS")
    for d in docs:
        added = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.added_at))
        note = f" (no text on p. {_pages(d.pages_without_text)})" if d.pages_without_text else ""
        _out(f"{d.doc_id[:10]}  {d.file_name:{width}}  {d.pages:>5}  {d.chunks:>6}  {added:16}  {d.status}{note}")
    return 0


def _rm(engine: Any, args: argparse.Namespace) -> int:
    for ref in args.doc:
        doc = engine.delete(ref)
        _out(f"Removed {doc.file_name} ({doc.chunks} chunks).")
    return 0


def _settings() -> int:
    for var, default, doc in describe():
        _out(f"{var:28} {default or '(empty)':40} {doc}")
    return 0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pages(numbers: Sequence[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _close(bar: Any) -> None:
    if bar is not None:
        bar.close()
    return None


def _out(text: str, dim: bool = False) -> None:
    if dim and sys.stdout.isatty():
        text = f"\033[2m{text}\033[0m"
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
