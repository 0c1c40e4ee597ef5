"""Concurrent users: sessions ask about different documents while an ingest runs, through the real app.

The app (engine + Gradio UI with its queue, exactly as ``app.py`` builds it) is served in-process on 127.0.0.1 at a
free port. The model server is the stand-in Ollama (tests/fake_ollama.py, a test double) streaming its answers a
piece at a time with a delay, or a real Ollama with ``--ollama``. Each gradio_client session (its own session hash,
like a browser tab) asks its questions one after another, each scoped to its own PDF and tagged with a ticket that
the stand-in's answer repeats; meanwhile another session uploads more PDFs through ``/upload``.

    python bench/load.py                                   # 8 sessions × 3 questions, 6 PDFs uploaded meanwhile
    python bench/load.py --sessions 16 --chat-delay 0.05   # more users, slower model
    python bench/load.py --concurrency 1                   # compare the queue's limit on questions
    python bench/load.py --model-slots 1                   # a model server answering one chat at a time

Checks: every question completes; no final answer, citation or streamed update of one session carries another
session's ticket or project (so nothing leaks between sessions, even mid-stream); every uploaded PDF is indexed.
Reports latency (submit → last update) and time to first token (submit → first update with answer text), p50 and
p95, measured by polling each job every 5 ms. Exits 1 on any failure or leak.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.timing import percentile  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.core.events import FileIndexed  # noqa: E402
from tests import pdf_factory as pf  # noqa: E402
from tests.fake_ollama import FakeOllama, default_responder  # noqa: E402
from tests.live_app import LiveApp  # noqa: E402

PROJECTS = ["Kestrel", "Osprey", "Heron", "Falcon", "Merlin", "Harrier", "Condor", "Petrel", "Avocet", "Bittern",
            "Curlew", "Dunlin", "Egret", "Fulmar", "Gannet", "Hoopoe", "Ibis", "Jacana", "Kittiwake", "Lapwing",
            "Mallard", "Nightjar", "Oriole", "Plover"]
CITIES = ["Tromsø", "Valparaíso", "Nagoya", "Windhoek", "Tbilisi", "Halifax", "Perth", "Cusco"]
QUESTIONS = ["What is the vault code of project {name}?", "Who leads project {name} day to day?",
             "In which city is the team of project {name} based?", "How many sensors does project {name} deploy?"]
_TICKET = re.compile(r"ticket (s\d+q\d+)")


@dataclass
class Session:
    """One user: a project, its PDF, and what happened to each of its questions."""

    number: int
    name: str
    pdf: Path
    doc_id: str = ""
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # (submitted, done) of each question
    problems: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What a run measured and found."""

    sessions: int
    questions: int
    completed: int
    latencies: list[float]
    first_tokens: list[float]
    problems: list[str]
    ingest_seconds: float
    ingest_overlap: float  # seconds the upload ran while questions were being answered
    ingested: int
    wall: float
    concurrency: int

    @property
    def ok(self) -> bool:
        """Every question answered, nothing leaked, every upload indexed."""
        return not self.problems and self.completed == self.sessions * self.questions


def project_pages(name: str, number: int) -> list[str]:
    """The three pages of a session's PDF: facts only this project has."""
    city = CITIES[number % len(CITIES)]
    return [f"Project {name} field report. Project {name} is a survey programme of the northern wetlands.",
            f"The vault code of project {name} is {4100 + 37 * number}-{name[:2].upper()}. Project {name} is led "
            f"day to day by engineer {name}son of the survey office.",
            f"The team of project {name} is based in the city of {city}. Project {name} deploys "
            f"{120 + number} sensors along the river."]


def ticket_responder(body: dict[str, Any]) -> tuple[str, str]:
    """The stand-in's usual answer (it quotes the best source and cites it), prefixed with the question's ticket,
    so a streamed piece that reached the wrong session would show a foreign ticket."""
    thinking, content = default_responder(body)
    asked = _TICKET.search(body["messages"][-1]["content"].rsplit("Question:", 1)[-1])
    return thinking, (f"Ticket {asked.group(1)}. " if asked else "") + content


class SlottedOllama(FakeOllama):
    """The stand-in answering at most ``slots`` chats at once, as Ollama does with OLLAMA_NUM_PARALLEL=slots: the
    others wait, unseen, until a slot frees."""

    def __init__(self, slots: int) -> None:
        super().__init__()
        self._slots = threading.Semaphore(slots)

    def _chat(self, h: Any, body: dict[str, Any]) -> None:
        with self._slots:
            super()._chat(h, body)


def _ask(app: LiveApp, session: Session, others: list[Session], questions: int, deadline: float,
         go: threading.Event) -> None:
    """One session's questions, one after another, each checked for leaks while it streams."""
    try:
        client = app.client()
    except Exception as exc:  # noqa: BLE001 - a session that can't connect is a finding, not a crash
        session.problems.append(f"session {session.number}: could not connect ({exc})")
        return
    foreign = [(o.name, re.compile(rf"\bs{o.number}q\d")) for o in others]
    go.wait()
    for q in range(questions):
        ticket = f"s{session.number}q{q}"
        question = QUESTIONS[q % len(QUESTIONS)].format(name=session.name) + f" (ticket {ticket})"
        started = time.perf_counter()
        job = client.submit(question, [session.doc_id], False, api_name="/ask")
        seen, first = 0, None
        updates: list[dict[str, Any]] = []
        while time.perf_counter() < deadline:
            outputs = job.outputs()
            for update in outputs[seen:]:
                if first is None and update.get("answer"):
                    first = time.perf_counter() - started
                updates.append(update)
            seen = len(outputs)
            if job.done():
                break
            time.sleep(0.005)
        else:
            session.problems.append(f"{ticket}: no answer before the time limit")
            return
        try:
            final = job.result(timeout=1)
        except Exception as exc:  # noqa: BLE001 - the server's error, reported
            session.problems.append(f"{ticket}: failed ({exc})")
            continue
        session.latencies.append(time.perf_counter() - started)
        session.spans.append((started, time.perf_counter()))
        if first is not None:
            session.first_tokens.append(first)
        session.problems += _leaks(ticket, session, final, updates, foreign)


def _leaks(ticket: str, session: Session, final: dict[str, Any], updates: list[dict[str, Any]],
           foreign: list[tuple[str, re.Pattern[str]]]) -> list[str]:
    """What in this question's result belongs to another session (or is missing from its own)."""
    problems = []
    answer = final.get("answer") or ""
    if final.get("error"):
        problems.append(f"{ticket}: error {final['error']!r}")
    if not answer.startswith(f"Ticket {ticket}.") or session.name not in answer:
        problems.append(f"{ticket}: the answer is not about its own question: {answer[:120]!r}")
    for update in updates:
        text = update.get("answer") or ""
        if not answer.startswith(text):
            problems.append(f"{ticket}: a streamed update is not a prefix of the answer: {text[:120]!r}")
        for name, other_ticket in foreign:
            if name in text or other_ticket.search(text):
                problems.append(f"{ticket}: a streamed update carries project {name}'s content: {text[:120]!r}")
    passages = list(final.get("cited") or []) + list(final.get("other") or [])
    if not final.get("cited"):
        problems.append(f"{ticket}: nothing cited")
    for p in passages:
        if p["doc_id"] != session.doc_id:
            problems.append(f"{ticket}: cites {p['file_name']}, not its own document")
    return problems


def run_load(sessions: int = 8, questions: int = 3, uploads: int = 6, chat_delay: float = 0.02,
             time_limit: float = 300.0, concurrency: int | None = None, ollama: str | None = None,
             workdir: Path | None = None, model_slots: int | None = None) -> LoadReport:
    """Serve the app, index one PDF per session, then run the sessions while ``uploads`` PDFs are uploaded."""
    from gradio_client import handle_file

    import ui.app

    if concurrency is not None:
        ui.app.CONCURRENCY = concurrency  # read when the UI is built: the limit on questions answered at once
    if sessions > len(PROJECTS):
        raise ValueError(f"at most {len(PROJECTS)} sessions")
    fake = None
    if ollama is None:
        fake = (SlottedOllama(model_slots) if model_slots else FakeOllama()).start()
        fake.responder = ticket_responder
        fake.chat_delay = chat_delay
        ollama = fake.url
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        settings = Settings.from_env({}, ollama_host=ollama, backend="ollama", data_dir=root / "data", rerank=False,
                                     parse_workers=2, chunk_tokens=200, chunk_overlap=20)
        people = [Session(i, PROJECTS[i], pf.text_pdf(root / f"{PROJECTS[i].lower()}.pdf",
                                                      project_pages(PROJECTS[i], i))) for i in range(sessions)]
        extra = [pf.text_pdf(root / "upload" / f"annex-{k}.pdf",
                             [f"Annex {k}, page {p}: maintenance log of pumping station {k * 10 + p}. " * 6
                              for p in range(1, 13)]) for k in range(uploads)]
        try:
            with LiveApp(settings) as app:
                for event in app.engine.ingest([s.pdf for s in people]):
                    if isinstance(event, FileIndexed):
                        next(s for s in people if s.pdf.name == event.file_name).doc_id = event.doc_id
                deadline = time.perf_counter() + time_limit
                go = threading.Event()
                threads = [threading.Thread(target=_ask, args=(app, s, [o for o in people if o is not s], questions,
                                                               deadline, go), name=f"session-{s.number}")
                           for s in people]
                for thread in threads:
                    thread.start()
                upload: dict[str, Any] = {}

                def do_upload() -> None:
                    client = app.client()
                    go.wait()
                    upload["start"] = time.perf_counter()
                    try:
                        upload["results"] = client.predict([handle_file(str(p)) for p in extra], api_name="/upload")
                    except Exception as exc:  # noqa: BLE001 - reported below
                        upload["error"] = str(exc)
                    upload["end"] = time.perf_counter()

                uploader = threading.Thread(target=do_upload, name="uploader")
                uploader.start()
                time.sleep(0.5)  # let every session connect before the starting gun
                started = time.perf_counter()
                go.set()
                for thread in [*threads, uploader]:
                    thread.join(max(1.0, deadline - time.perf_counter()))
                wall = time.perf_counter() - started
        finally:
            if fake is not None:
                fake.stop()

    problems = [p for s in people for p in s.problems]
    results = upload.get("results") or []
    indexed = sum(1 for r in results if r.get("status") == "indexed")
    if "error" in upload or indexed != uploads:
        problems.append(f"upload: {indexed} of {uploads} indexed ({upload.get('error') or results})")
    if any(t.is_alive() for t in [*threads, uploader]):
        problems.append("some sessions were still running at the time limit")
    spans = [span for s in people for span in s.spans]
    answering = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else (started, started)
    overlap = max(0.0, min(upload.get("end", started), answering[1]) - max(upload.get("start", started), answering[0]))
    return LoadReport(sessions=sessions, questions=questions, completed=sum(len(s.latencies) for s in people),
                      latencies=[x for s in people for x in s.latencies],
                      first_tokens=[x for s in people for x in s.first_tokens], problems=problems,
                      ingest_seconds=upload.get("end", started) - upload.get("start", started),
                      ingest_overlap=overlap, ingested=indexed, wall=wall, concurrency=ui.app.CONCURRENCY)


def main() -> int:
    """Run the load test and print what it measured; exit 1 on a failure or leak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent gradio_client sessions (default 8)")
    parser.add_argument("--questions", type=int, default=3, help="questions per session, asked in turn")
    parser.add_argument("--uploads", type=int, default=6, help="PDFs (12 pages each) uploaded during the questions")
    parser.add_argument("--chat-delay", type=float, default=0.02, help="stand-in's seconds per streamed piece")
    parser.add_argument("--time-limit", type=float, default=300, help="overall limit in seconds")
    parser.add_argument("--concurrency", type=int, help="override the app's limit on questions answered at once")
    parser.add_argument("--model-slots", type=int, help="chats the stand-in answers at once (default: all)")
    parser.add_argument("--ollama", help="a real Ollama URL instead of the stand-in (leak checks need the stand-in)")
    args = parser.parse_args()
    report = run_load(args.sessions, args.questions, args.uploads, args.chat_delay, args.time_limit,
                      args.concurrency, args.ollama, model_slots=args.model_slots)
    lat, ttft = report.latencies, report.first_tokens
    slots = f"{args.model_slots} chat(s) at a time" if args.model_slots else "any number of chats at once"
    print(f"{report.sessions} sessions × {report.questions} questions, queue limit {report.concurrency} questions "
          f"at once, stand-in streaming {args.chat_delay * 1000:g} ms per piece, {slots}")
    print(f"completed {report.completed}/{report.sessions * report.questions} in {report.wall:.1f} s")
    print("| | p50 s | p95 s | max s |\n|---|---|---|---|")
    for label, values in (("latency (submit → done)", lat), ("time to first token", ttft)):
        print(f"| {label} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} | "
              f"{max(values, default=float('nan')):.2f} |")
    if lat:
        print(f"mean latency {statistics.fmean(lat):.2f} s")
    print(f"upload of {args.uploads} PDFs: {report.ingested} indexed in {report.ingest_seconds:.1f} s, "
          f"{report.ingest_overlap:.1f} s of it while questions were being answered")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print("OK: every question answered, nothing leaked between sessions" if report.ok else
          f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
