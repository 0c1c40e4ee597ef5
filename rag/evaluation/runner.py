"""Running a question file through the engine: each question asked as the app asks it, its result appended to
``results.jsonl`` in the run's folder as soon as it is known. A run that stops (Ctrl-C, a crash, a closed laptop)
resumes where it stopped: questions already in the file are not asked again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from rag.answering.answer import AskOptions
from rag.core.errors import DocumentNotFound, RagError
from rag.core.events import AnswerDelta, Claims, Failure, Progress, Sources
from rag.engine import Engine
from rag.evaluation.metrics import Result
from rag.evaluation.questions import EvalQuestion
from rag.search.retrieval import Fusion, hybrid_search

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
RUN = "run.json"
_STAGE_OF = {"rewriting": "rewrite", "retrieving": "search", "reranking": "rerank", "generating": "generate"}


class EvalRun:
    """One run's folder: ``run.json`` (what was run, with which settings) and ``results.jsonl`` (one line per
    question answered)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results_path = folder / RESULTS

    def results(self) -> list[Result]:
        """The results written so far, the last one of each question (a line cut short by a crash is skipped:
        that question is asked again)."""
        if not self.results_path.exists():
            return []
        out: dict[str, Result] = {}
        for line in self.results_path.read_text(encoding="utf-8").splitlines():
            try:
                result = Result.from_record(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                log.warning("Skipping an unreadable line of %s", self.results_path)
                continue
            out.pop(result.id, None)
            out[result.id] = result
        return list(out.values())

    def info(self) -> dict[str, Any]:
        """What ``run.json`` says about the run ({} when absent)."""
        path = self.folder / RUN
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except json.JSONDecodeError:
            return {}

    def pending(self, questions: Sequence[EvalQuestion]) -> list[EvalQuestion]:
        """The questions not answered yet in this folder (those that failed are asked again)."""
        done = {r.id for r in self.results() if r.error is None}
        return [q for q in questions if q.id not in done]

    def start(self, engine: Engine, questions_file: Path, options: AskOptions, label: str = "") -> None:
        """Create the folder and describe the run in ``run.json`` (kept when resuming)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / RUN
        if path.exists():
            return
        s = engine.settings
        rerank = s.rerank if options.rerank is None else options.rerank
        info = {"label": label or self.folder.name, "questions": str(questions_file), "started": time.time(),
                "chat_model": options.chat_model or s.chat_model, "embedder": engine.embedder.model_id,
                "rerank": _describe(engine.reranker) if rerank else "off", "top_k": options.top_k or s.top_k,
                "think": s.think if options.think is None else options.think, "fusion": s.fusion,
                "claim_check": s.claim_check}
        path.write_text(json.dumps(info, indent=2), encoding="utf-8")

    def append(self, result: Result) -> None:
        """Add one result to ``results.jsonl`` (flushed at once, so a crash loses at most the question it was on)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.results_path.open("a+b") as f:
            f.seek(0, 2)
            if f.tell():  # a line a crash cut short stays alone on its line
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(result.record(), ensure_ascii=False) + "\n").encode("utf-8"))
            f.flush()


def run(engine: Engine, folder: Path, questions: Sequence[EvalQuestion], options: AskOptions = AskOptions()
        ) -> Iterator[Result]:
    """Ask each question of ``questions`` not yet answered in ``folder``; yield and append each result."""
    current = EvalRun(folder)
    for q in current.pending(questions):
        result = ask_one(engine, q, options)
        current.append(result)
        yield result


def ask_one(engine: Engine, q: EvalQuestion, options: AskOptions = AskOptions()) -> Result:
    """One question asked through the engine, with what the metrics need: the search ranking (pages), the pages the
    model had and cited, the claim check's counts and each stage's time."""
    result = Result(q.id, q.question, q.file, q.pages, q.answerable, q.answer)
    try:
        doc_ids = None
        if q.file:
            doc = engine.find(q.file)
            result.file = doc.file_name
            doc_ids = [doc.doc_id]
        scope = doc_ids if doc_ids is not None else engine.store.ready_ids()
        s = engine.settings
        ranked = hybrid_search(engine.store, engine.embedder, q.question, scope, s.candidate_pool,
                               Fusion.from_settings(s))
        result.search = [[p.file_name, p.page_start] for p in ranked]
        _answer(engine, q, doc_ids, options, result)
    except DocumentNotFound as exc:
        result.error = f"{exc} (the question's \"file\")"
    except RagError as exc:
        result.error = str(exc)
    return result


def _answer(engine: Engine, q: EvalQuestion, doc_ids: list[str] | None, options: AskOptions, result: Result) -> None:
    started = time.perf_counter()
    stage, stage_start = None, started
    answer: list[str] = []
    for event in engine.ask(q.question, doc_ids=doc_ids, options=options):
        now = time.perf_counter()
        if isinstance(event, Progress) and event.stage in _STAGE_OF:
            if stage is not None:
                result.timings[stage] = now - stage_start
            stage, stage_start = _STAGE_OF[event.stage], now
        elif isinstance(event, AnswerDelta):
            answer.append(event.text)
        elif isinstance(event, Sources):
            if stage is not None:
                result.timings[stage] = now - stage_start
                stage = None
            result.cited = [[c.passage.file_name, c.passage.page_start] for c in event.cited]
            result.given = result.cited + [[p.file_name, p.page_start] for p in event.other]
        elif isinstance(event, Claims):
            result.timings["check"] = event.seconds
            result.claims = {"statements": len(event.claims), "re-pointed": event.repointed,
                             "unsupported": event.unsupported,
                             "supported": len(event.claims) - event.repointed - event.unsupported}
        elif isinstance(event, Failure):
            result.error = event.message
    result.timings["total"] = time.perf_counter() - started
    result.answer = "".join(answer)


def _describe(reranker: Any) -> str:
    """The reranker as the run used it (model and where it ran), not only the in-process model's setting."""
    return str(getattr(reranker, "describe", None) or type(reranker).__name__)
