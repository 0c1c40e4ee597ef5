"""Command line: ``python -m rag ingest|sync|reindex|queue|ask|docs|rm|chats|users|eval|settings``.

Renders engine events; does no engine work. It acts as the machine's owner (an admin, who sees every document)
unless ``--user NAME`` says whom."""

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
    Claims,
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
    claims_record,
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
    if args.command == "users":
        return _users(args)
    if args.command == "eval" and args.compare:
        return _compare(args)  # reads two finished runs: no model needed
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
    p.add_argument("--collection", help="also list the files in this collection of yours (name or id)")
    _as_user(p)
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
    _as_user(p)
    p.set_defaults(run=_ask)
    p = sub.add_parser("docs", help="list indexed documents")
    _as_user(p)
    p.set_defaults(run=_docs)
    p = sub.add_parser("rm", help="remove a document (by file name or id) from the index")
    p.add_argument("doc", nargs="+")
    _as_user(p)
    p.set_defaults(run=_rm)
    p = sub.add_parser("chats", help="list saved conversations, or print one as Markdown")
    p.add_argument("chat", nargs="?", help="a conversation's id (or its first characters): print it")
    p.add_argument("--user", help="only this login's conversations ('' = those saved without a login)")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(run=_chats)
    p = sub.add_parser("users", help="manage the logins of the users file (RAG_USERS_FILE)")
    users = p.add_subparsers(dest="action", required=True)
    q = users.add_parser("add", help="add a login (or change its password); asks for the password")
    q.add_argument("name")
    q.add_argument("--file", help="the users file (default: RAG_USERS_FILE)")
    q = users.add_parser("list", help="list the logins of the users file")
    q.add_argument("--file", help="the users file (default: RAG_USERS_FILE)")
    sub.add_parser("settings", help="list the environment variables that configure the app")
    _eval_parser(sub)
    return parser


def _as_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="act as this login (default: the machine's owner, who sees everything)")


def _eval_parser(sub: Any) -> None:
    from pathlib import Path

    p = sub.add_parser("eval", help="measure retrieval, citations and refusals on your own questions (JSONL)",
                       description="Ask every question of a JSONL file (question, optional file, pages, answer, "
                       "answerable) and report page recall@1/5/10 and MRR, citation precision, the claim check, "
                       "refusals, the match with the reference answers and the time per stage, as summary.md and "
                       "report.html in the run's folder. An interrupted run resumes when run again.")
    p.add_argument("questions", nargs="?", type=Path, help="the question file (JSON Lines)")
    p.add_argument("--out", type=Path, help="the run's folder (default: QUESTIONS-eval beside the file)")
    p.add_argument("--label", help="the run's name in reports (default: the folder's name)")
    p.add_argument("--no-rerank", action="store_true", help="skip the reranker")
    p.add_argument("--no-think", action="store_true", help="answer without thinking first")
    p.add_argument("--top-k", type=int, help="passages given to the chat model")
    p.add_argument("--chat-model", help="another chat model than the settings' one")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                   help="set two finished runs (their folders) side by side; writes into --out (default: RUN_B)")
    p.add_argument("--generate", type=int, metavar="N",
                   help="draft N questions (with their source pages) from the library into QUESTIONS, to review")
    p.add_argument("--doc", action="append", help="with --generate: only this document; repeatable")
    p.set_defaults(run=_eval)


def _ingest(engine: Any, args: argparse.Namespace) -> int:
    from rag.ingestion.ingest import expand_paths

    files = expand_paths(args.paths)
    if not files:
        _err("No PDF files found in the given paths.")
        return 1
    mine = engine.enqueue(files, replace=not args.keep_old, owner=args.user or "", collection=args.collection)
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

    doc_ids = [engine.find(ref, args.user).doc_id for ref in args.doc] if args.doc else None
    options = AskOptions(think=False if args.no_think else None, rerank=False if args.no_rerank else None)
    if engine.settings.rerank and not args.no_rerank:
        engine.warm_up(background=False)  # the reranker loads (in-process) and is timed, so the budget fits its speed
    thinking: list[str] = []
    answer: list[str] = []
    sources: Sources | None = None
    claims: Claims | None = None
    failure: str | None = None
    in_thinking = False
    for event in engine.ask(args.question, doc_ids=doc_ids, options=options, user=args.user):
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
        elif isinstance(event, Claims):
            claims = event
        elif isinstance(event, Failure):
            failure = event.message
        elif isinstance(event, Progress) and event.stage == "rewritten" and not args.json:
            _err(f"(searching for: {event.detail})")
        elif isinstance(event, Progress) and event.stage == "reranking" and not args.json:
            _err(f"({event.detail})")
    if args.json:
        payload = {"question": args.question, "answer": "".join(answer), "thinking": "".join(thinking),
                   **sources_record(sources), "claims": claims_record(claims), "error": failure}
        _out(json.dumps(payload, ensure_ascii=False, indent=2))
        return 1 if failure else 0
    _write("\n")
    if sources and sources.cited:
        _out("\nSources:")
        for c in sources.cited:
            _out(f"  [{c.number}] {c.passage.file_name}, p. {c.passage.page_name}: {_snippet(c.passage.text)}")
    if claims is not None:
        _claims(claims)
    if failure:
        _err(f"\n{failure}")
        return 1
    return 0


def _claims(claims: Claims) -> None:
    """The claim check under the sources: one line of summary, then each statement not matched as cited."""
    from rag.answering.claims import summary_line

    line = summary_line(claims)
    if not line:
        return
    _out(f"\n{line}")
    for c in claims.claims:
        if c.supported is not True:
            mark = "\u21aa" if c.supported == "re-pointed" else "?"
            _out(f"  {mark} {_snippet(c.text)}\n    {c.reason}")
    for c in claims.added:
        _out(f"  [{c.number}] {c.passage.file_name}, p. {c.passage.page_start}: {_snippet(c.passage.text)}")


def _eval(engine: Any, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag.answering.answer import AskOptions
    from rag.evaluation.metrics import summarize
    from rag.evaluation.questions import load_questions
    from rag.evaluation.report import RunView, html, markdown
    from rag.evaluation.runner import EvalRun, run

    if args.questions is None:
        _err("Give the question file: python -m rag eval QUESTIONS.jsonl (or --compare RUN_A RUN_B).")
        return 2
    if args.generate:
        return _generate(engine, args)
    questions = load_questions(args.questions)
    folder = args.out or args.questions.with_name(f"{args.questions.stem}-eval")
    options = AskOptions(think=False if args.no_think else None, rerank=False if args.no_rerank else None,
                         top_k=args.top_k, chat_model=args.chat_model)
    current = EvalRun(folder)
    todo = current.pending(questions)
    if todo and engine.settings.rerank and not args.no_rerank:
        engine.warm_up(background=False)
    current.start(engine, args.questions, options, args.label or "")
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), desc="questions", unit="q",
               file=sys.stderr)
    try:
        for _ in run(engine, folder, questions, options):
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        _err(f"Interrupted. The answers so far are kept in {current.results_path}; run the same command again to "
             "go on from there.")
        return 130
    bar.close()
    wanted = {q.id for q in questions}
    results = [r for r in current.results() if r.id in wanted]
    view = RunView(current.info().get("label") or folder.name, current.info(), summarize(results), results)
    return _write_reports(folder, [view], markdown, html)


def _compare(args: argparse.Namespace) -> int:
    from rag.evaluation.metrics import summarize
    from rag.evaluation.report import RunView, html, markdown
    from rag.evaluation.runner import EvalRun

    views = []
    for folder in args.compare:
        current = EvalRun(folder)
        results = current.results()
        if not results:
            _err(f"{folder} holds no results: give the folders of two runs of `python -m rag eval`.")
            return 1
        views.append(RunView(current.info().get("label") or folder.name, current.info(), summarize(results),
                             results))
    if views[0].label == views[1].label:
        views[1] = RunView(f"{views[1].label} (2)", views[1].info, views[1].summary, views[1].results)
    out = args.out or args.compare[1].with_name(f"{args.compare[0].name}-vs-{args.compare[1].name}")
    out.mkdir(parents=True, exist_ok=True)
    return _write_reports(out, views, markdown, html)


def _write_reports(folder: Any, views: list[Any], markdown: Any, html: Any) -> int:
    text = markdown(views)
    (folder / "summary.md").write_text(text, encoding="utf-8")
    (folder / "report.html").write_text(html(views), encoding="utf-8")
    _out(text)
    _out(f"Written: {folder / 'summary.md'} and {folder / 'report.html'}")
    return 0


def _generate(engine: Any, args: argparse.Namespace) -> int:
    import json

    from rag.evaluation.drafting import draft_questions

    if args.questions.exists():
        _err(f"{args.questions} exists: --generate writes a new file. Give another name, or move that one away.")
        return 1
    doc_ids = [engine.find(ref).doc_id for ref in args.doc] if args.doc else None
    drafts = draft_questions(engine, args.generate, doc_ids, model=args.chat_model)
    if not drafts:
        _err("No question could be drafted: is any document indexed, and does the chat model answer?")
        return 1
    args.questions.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in drafts), encoding="utf-8")
    _out(f"Drafted {len(drafts)} questions into {args.questions}. Read each one: fix the question, its pages and "
         "its answer, delete the bad ones, then run: python -m rag eval " + str(args.questions))
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
    docs = engine.documents(args.user)
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
        doc = engine.delete(ref, args.user)
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
        removed = engine.removed_documents(messages, args.user)
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


def _users(args: argparse.Namespace) -> int:
    """``users add NAME``: ask for a password (twice, not echoed) and write its argon2 hash; ``users list``."""
    import getpass
    from pathlib import Path

    from rag.access import users

    try:
        path = Path(args.file).expanduser() if args.file else Settings.from_env().users_file
        if path is None:
            _err("Say which users file: set RAG_USERS_FILE (the app reads it too) or pass --file.")
            return 1
        if args.action == "list":
            for name in users.read(path):
                _out(name)
            return 0
        users.check_name(args.name)
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("The same again: "):
            _err("The two passwords differ; nothing was written.")
            return 1
        new = users.add(path, args.name, password)
    except RagError as exc:
        _err(str(exc))
        return 1
    except OSError as exc:
        _err(f"Can't write the users file: {exc}")
        return 1
    _out(f"{'Added' if new else 'Changed the password of'} {args.name} in {path}.")
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
