"""Command line: ``python -m rag ingest|sync|reindex|queue|ask|docs|rm|chats|settings``.

Renders engine events; does no engine work."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any, Sequence

from rag.core.config import Settings, describe
from rag.core.errors import RagError
from rag.core.events import (
    AnswerDelta,
    ChunksMade,
    Embedded,
    Failure,
    FileFailed,
    FileIndexed,
    FileStarted,
    PageRead,
    PagesParsed,
    Progress,
    Sources,
    ThinkingDelta,
    sources_record,
)


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
    p = sub.add_parser("sync", help="keep the library in step with folders of PDFs (new, changed, renamed, deleted)")
    p.add_argument("folders", nargs="*", help="folders to sync (default: RAG_WATCH)")
    p.add_argument("--watch", action="store_true", help="keep watching: sync again every RAG_WATCH_INTERVAL seconds")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds a deleted PDF may stay missing before its document is removed (default: "
                   "RAG_SYNC_GRACE; 0 = at once)")
    p.set_defaults(run=_sync)
    p = sub.add_parser("reindex", help="index the stored PDFs again with the current embedding model")
    p.set_defaults(run=_reindex)
    p = sub.add_parser("queue", help="show the ingest queue: files waiting, failed, and the time left")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(run=_queue)
    p = sub.add_parser("ask", help="ask a question about the indexed documents")
    p.add_argument("question")
    p.add_argument("--doc", action="append", help="only this document (file name or id); repeatable")
    p.add_argument("--no-rerank", action="store_true", help="skip the reranker")
    p.add_argument("--no-think", action="store_true", help="answer without thinking first")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    p.set_defaults(run=_ask)
    p = sub.add_parser("docs", help="list indexed documents")
    p.set_defaults(run=_docs)
    p = sub.add_parser("rm", help="remove a document (by file name or id) from the index")
    p.add_argument("doc", nargs="+")
    p.set_defaults(run=_rm)
    p = sub.add_parser("chats", help="list saved conversations, or print one as Markdown")
    p.add_argument("chat", nargs="?", help="a conversation's id (or its first characters): print it")
    p.add_argument("--user", help="only this login's conversations ('' = those saved without a login)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(run=_chats)
    sub.add_parser("settings", help="list the environment variables that configure the app")
    return parser


def _ingest(engine: Any, args: argparse.Namespace) -> int:
    from rag.ingestion.ingest import expand_paths

    files = expand_paths(args.paths)
    if not files:
        _err("No PDF files found in the given paths.")
        return 1
    mine = engine.enqueue(files, replace=not args.keep_old)
    return _run_queue(engine, mine)


def _sync(engine: Any, args: argparse.Namespace) -> int:
    folders = args.folders or [str(f) for f in engine.settings.watch_folders]
    if not folders:
        _err("Name the folders to sync (or set RAG_WATCH).")
        return 1
    code = 0
    while True:
        mine: list[int] = []
        for report in engine.sync(folders, grace_s=args.grace):
            _out(report.describe(), dim=not report.error)
            code = 1 if report.error else code
            mine += report.queued or []
        code = max(code, _run_queue(engine, mine))
        if not args.watch:
            return code
        time.sleep(engine.settings.watch_interval)


def _reindex(engine: Any, args: argparse.Namespace) -> int:
    plan = engine.reindex()
    _out(plan.describe())
    return _run_queue(engine, plan.jobs) if plan.jobs else 0


def _queue(engine: Any, args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rag.ingestion.queue import FAILED, QUEUED, RUNNING

    status = engine.queue.status()
    waiting = engine.queue.jobs(states=(QUEUED, RUNNING), limit=10**9)
    failed = engine.queue.jobs(states=(FAILED,))
    if args.json:
        _out(json.dumps({**asdict(status), "waiting": [j.name for j in waiting],
                         "failed": [{"file_name": j.name, "reason": j.detail} for j in failed]}, indent=2))
        return 0
    _out(f"{_n(len(waiting), 'file')} waiting" + (f", {len(failed)} failed recently" if failed else "")
         + (". Run `python -m rag sync` or `python -m rag ingest` to work through them here, or start the app."
            if waiting else "."))
    for j in failed:
        _out(f"  \u2717 {j.name}: {j.detail}")
    for state in engine.watched_folders():
        _out(f"{state.folder}: {state.state} ({state.indexed} of {state.files} indexed)")
    return 0


def _run_queue(engine: Any, mine: Sequence[int]) -> int:
    """Work through the ingest queue in this process (the jobs just added, and any left by an earlier run),
    printing each file's result, with a bar for the whole queue (files, time left) and one for the file at hand."""
    from tqdm import tqdm

    from rag.ingestion.queue import FAILED, QUEUED, RUNNING

    queue = engine.queue
    queue.resume_orphans()
    total = len(queue.jobs(states=(QUEUED, RUNNING), limit=10**9))
    earlier = total - len([j for j in queue.jobs(mine) if not j.finished])
    if earlier > 0:
        _out(f"Resuming {_n(earlier, 'file')} left in the queue by an earlier run.", dim=True)
    if not total:
        _out("Done: nothing to do" + (" (all already indexed)" if mine else "."))
        return 0
    counts = {"indexed": 0, "replaced": 0, "already indexed": 0, "failed": 0}
    overall = tqdm(total=total, desc="queue", unit="file", file=sys.stderr, position=0, disable=total < 2,
                   bar_format="{desc} {n_fmt}/{total_fmt} files {bar} [{elapsed}<{remaining}]")
    bar: tqdm | None = None
    started = time.perf_counter()
    pages = number = 0
    prefix = ""
    aborted: str | None = None
    stop = threading.Event()
    for _job, event in queue.run(stop=stop):
        if isinstance(event, FileStarted):
            number += 1
            prefix = f"[{number}/{total}] {event.file_name}"
        elif isinstance(event, PageRead):
            if bar is None:
                bar = tqdm(total=event.total, desc="  reading page", unit="page", leave=False, file=sys.stderr,
                           position=1, bar_format="{desc} {n_fmt}/{total_fmt} (OCR) {bar} [{elapsed}<{remaining}]")
            bar.update(event.done - bar.n)
            bar.refresh()  # pages take seconds each: show every one
        elif isinstance(event, PagesParsed):
            bar = _close(bar)
            note = f", no text on page(s) {_pages(event.pages_without_text)}" if event.pages_without_text else ""
            ocr = f", {_n(len(event.ocr_pages), 'page')} read by OCR" if event.ocr_pages else ""
            _out(f"{prefix}: {_n(event.pages, 'page')} parsed{ocr}{note}", dim=True, bar=overall)
        elif isinstance(event, ChunksMade):
            bar = tqdm(total=event.chunks, desc="  embedding", unit="chunk", leave=False, file=sys.stderr,
                       position=1)
        elif isinstance(event, Embedded) and bar is not None:
            bar.update(event.done - bar.n)
        elif isinstance(event, FileIndexed):
            bar = _close(bar)
            overall.update(1)
            counts[event.status] += 1
            pages += event.pages if event.status != "already indexed" else 0
            detail = f"{_n(event.pages, 'page')}, {_n(event.chunks, 'chunk')}"
            if event.ocr_pages:
                detail += f", {len(event.ocr_pages)} read by OCR"
            _out(f"{prefix}: \u2713 {event.status} ({detail})", bar=overall)
        elif isinstance(event, FileFailed):
            bar = _close(bar)
            if event.kind == "stopped":
                continue
            if queue.jobs([_job.id])[0].state == FAILED:
                overall.update(1)
                counts["failed"] += 1
                _out(f"{prefix}: \u2717 {event.reason}", bar=overall)
        elif isinstance(event, Failure):
            aborted = event.message
            stop.set()  # the queue keeps the rest; a later run resumes it
    _close(bar)
    overall.close()
    seconds = time.perf_counter() - started
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    _out(f"Done in {seconds:.1f} s: {summary or 'nothing to do'}"
         + (f" ({pages / seconds:.1f} pages/s)" if pages and seconds > 0 else ""))
    if aborted:
        left = len(queue.jobs(states=(QUEUED, RUNNING), limit=10**9))
        _err(f"Stopped: {aborted} {_n(left, 'file')} wait in the queue: run the command again once that is fixed "
             "to resume.")
        return 1
    return 2 if counts["failed"] else 0


def _ask(engine: Any, args: argparse.Namespace) -> int:
    import json

    from rag.answering.answer import AskOptions

    doc_ids = [engine.find(ref).doc_id for ref in args.doc] if args.doc else None
    options = AskOptions(think=False if args.no_think else None, rerank=False if args.no_rerank else None)
    if engine.settings.rerank and not args.no_rerank:
        engine.warm_up(background=False)  # the reranker loads (in-process) and is timed, so the budget fits its speed
    thinking: list[str] = []
    answer: list[str] = []
    sources: Sources | None = None
    failure: str | None = None
    in_thinking = False
    for event in engine.ask(args.question, doc_ids=doc_ids, options=options):
        if isinstance(event, ThinkingDelta):
            thinking.append(event.text)
            if not args.json:
                in_thinking = True
                _write(event.text, dim=True)
        elif isinstance(event, AnswerDelta):
            answer.append(event.text)
            if not args.json:
                if in_thinking:
                    _write("\n\n")
                    in_thinking = False
                _write(event.text)
        elif isinstance(event, Sources):
            sources = event
        elif isinstance(event, Failure):
            failure = event.message
        elif isinstance(event, Progress) and event.stage == "rewritten" and not args.json:
            _err(f"(searching for: {event.detail})")
        elif isinstance(event, Progress) and event.stage == "reranking" and not args.json:
            _err(f"({event.detail})")
    if args.json:
        payload = {"question": args.question, "answer": "".join(answer), "thinking": "".join(thinking),
                   **sources_record(sources), "error": failure}
        _out(json.dumps(payload, ensure_ascii=False, indent=2))
        return 1 if failure else 0
    _write("\n")
    if sources and sources.cited:
        _out("\nSources:")
        for c in sources.cited:
            _out(f"  [{c.number}] {c.passage.file_name}, p. {c.passage.page_start}: {_snippet(c.passage.text)}")
    if failure:
        _err(f"\n{failure}")
        return 1
    return 0


def _snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _write(text: str, dim: bool = False) -> None:
    if dim and sys.stdout.isatty():
        text = f"\033[2m{text}\033[0m"
    sys.stdout.write(text)
    sys.stdout.flush()


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
        note += f" ({_n(len(d.ocr_pages), 'page')} read by OCR)" if d.ocr_pages else ""
        _out(f"{d.doc_id[:10]}  {d.file_name:{width}}  {d.pages:>5}  {d.chunks:>6}  {added:16}  {d.status}{note}")
    return 0


def _rm(engine: Any, args: argparse.Namespace) -> int:
    for ref in args.doc:
        doc = engine.delete(ref)
        _out(f"Removed {doc.file_name} ({doc.chunks} chunks).")
    return 0


def _chats(engine: Any, args: argparse.Namespace) -> int:
    import json

    from rag.conversations.chats import conversation_record, message_record
    from rag.conversations.markdown import conversation_markdown

    store = engine.chat_store
    if args.chat:
        chat = store.find(args.chat, args.user)
        messages = store.messages(chat.id, chat.owner)
        removed = engine.removed_documents(messages)
        if args.json:
            _out(json.dumps({**conversation_record(chat), "owner": chat.owner,
                             "messages": [message_record(m, removed) for m in messages]}, ensure_ascii=False,
                            indent=2))
        else:
            _out(conversation_markdown(chat, messages, removed).rstrip("\n"))
        return 0
    chats = store.conversations(args.user)
    if args.json:
        _out(json.dumps([{**conversation_record(c), "owner": c.owner} for c in chats], ensure_ascii=False, indent=2))
        return 0
    if not chats:
        _out("No saved conversations yet: they are saved as you ask in the app.")
        return 0
    owners = any(c.owner for c in chats)
    width = max(len(c.owner) for c in chats) if owners else 0
    _out(f"{'ID':10}  {'UPDATED':16}  {'MSGS':>4}  " + (f"{'USER':{width}}  " if owners else "") + "TITLE")
    for c in chats:
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at))
        user = f"{c.owner or '-':{width}}  " if owners else ""
        _out(f"{c.id[:10]}  {updated:16}  {c.messages:>4}  {user}{c.title}")
    return 0


def _settings() -> int:
    """Where the three models run with the current settings (never showing a key), then every variable."""
    from rag.models.backends import placements

    code = 0
    try:
        for role, where in placements(Settings.from_env()):
            _out(f"{role:12} {where}")
        _out("")
    except RagError as exc:
        _err(str(exc))
        code = 1
    for var, default, doc in describe():
        _out(f"{var:28} {default or '(empty)':40} {doc}")
    return code


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pages(numbers: Sequence[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _close(bar: Any) -> None:
    if bar is not None:
        bar.close()
    return None


def _out(text: str, dim: bool = False, bar: Any = None) -> None:
    if dim and sys.stdout.isatty():
        text = f"\033[2m{text}\033[0m"
    if bar is not None and not bar.disable:
        bar.write(text, file=sys.stdout)  # above the progress bars, which stay at the bottom
        return
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
