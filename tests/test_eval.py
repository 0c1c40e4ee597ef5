"""`python -m rag eval`: a user's own questions, asked through the engine, measured and reported.

The chat model is the stand-in Ollama (tests/fake_ollama.py: it quotes the best-matching source and cites it, or
says the documents don't hold the answer); the PDFs are built by tests/pdf_factory.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.engine import Engine
from rag.evaluation.metrics import Result, summarize, token_f1
from rag.evaluation.questions import QuestionFileError, load_questions
from rag.evaluation.runner import EvalRun, run
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.test_answer import ACME, ZEPHYR

QUESTIONS = [
    {"id": "revenue", "question": "How much did Acme revenue grow to in fiscal 2022?", "file": "acme.pdf",
     "pages": [2], "answer": "$41 million"},
    {"id": "leave", "question": "How many days of paid vacation leave does an employee receive?", "pages": [2],
     "answer": "30 days of paid leave"},
    {"id": "dividend", "question": "What dividend per share did the board approve?", "file": "acme.pdf",
     "pages": [3], "answer": "3 cents per share"},
    {"id": "volcano", "question": "Which volcano erupted near Reykjavik?", "answerable": False},
]


@pytest.fixture
def library(engine: Engine, tmp_path: Path) -> Engine:
    list(engine.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME), pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]))
    return engine


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_RERANK", "false")


def write_questions(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_calls(fake: FakeOllama) -> int:
    return sum(1 for path, _ in fake.requests if path == "/api/chat")


def test_eval_reports_retrieval_citations_refusals_and_time(library: Engine, cli_env: None, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    questions = write_questions(tmp_path / "mine.jsonl", QUESTIONS)
    assert cli_main(["eval", str(questions), "--no-think"]) == 0
    folder = tmp_path / "mine-eval"
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out.startswith("# rag eval: mine-eval")
    row = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^\| ([^|]+) \| ([^|]+) \|$", summary, re.M)}
    assert row["questions"] == "4" and row["questions that failed"] == "0"
    assert row["page recall@1 (search)"] == "1.00" and row["MRR (search)"] == "1.00"
    assert row["citation precision (cited pages that are evidence)"] == "1.00"
    assert row["refusals on unanswerable questions"] == "1.00"
    assert row["refusals on answerable questions"] == "0.00"
    assert row["reference figures stated"] == "1.00"
    assert float(row["token F1 against the reference"]) > 0.2
    assert row["statements checked"] == "3" and row["statements no source supports"] == "0.00"
    assert re.search(r"^\| generate \| \d+ ms / \d+ ms \|$", summary, re.M)
    results = EvalRun(folder).results()
    assert [r.id for r in results] == ["revenue", "leave", "dividend", "volcano"]
    assert results[0].search[0] == ["acme.pdf", 2] and results[0].cited == [["acme.pdf", 2]]
    assert set(results[0].timings) >= {"search", "generate", "check", "total"}

    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and "How much did Acme revenue grow" in page
    assert not re.search(r"<script|<link|\bsrc=|href=|@import|url\(", page)  # nothing fetched from elsewhere


def test_an_interrupted_run_resumes_where_it_stopped(library: Engine, cli_env: None, tmp_path: Path,
                                                     fake_ollama: FakeOllama) -> None:
    questions = write_questions(tmp_path / "mine.jsonl", QUESTIONS)
    folder = tmp_path / "run"
    first = next(run(library, folder, load_questions(questions)))  # stopped after the first question
    assert first.id == "revenue"
    with (folder / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "leave", "question": "cut sho')  # a crash mid-line: that question is asked again
    fake_ollama.requests.clear()
    assert cli_main(["eval", str(questions), "--out", str(folder), "--no-think"]) == 0
    assert chat_calls(fake_ollama) == 3  # revenue was not asked again
    assert [r.id for r in EvalRun(folder).results()] == ["revenue", "leave", "dividend", "volcano"]
    fake_ollama.requests.clear()
    assert cli_main(["eval", str(questions), "--out", str(folder), "--no-think"]) == 0
    assert chat_calls(fake_ollama) == 0  # finished: only the reports are written again


def test_compare_sets_two_runs_side_by_side(library: Engine, cli_env: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    questions = write_questions(tmp_path / "mine.jsonl", QUESTIONS)
    assert cli_main(["eval", str(questions), "--out", str(tmp_path / "wide"), "--no-think"]) == 0
    assert cli_main(["eval", str(questions), "--out", str(tmp_path / "narrow"), "--top-k", "1", "--no-think",
                     "--label", "one passage"]) == 0
    capsys.readouterr()
    assert cli_main(["eval", "--compare", str(tmp_path / "wide"), str(tmp_path / "narrow"),
                     "--out", str(tmp_path / "both")]) == 0
    summary = (tmp_path / "both" / "summary.md").read_text(encoding="utf-8")
    assert "| | wide | one passage |" in summary and "top k 1" in summary
    assert re.search(r"^\| page recall@1 \(search\) \| 1\.00 \| 1\.00 \|$", summary, re.M)
    page = (tmp_path / "both" / "report.html").read_text(encoding="utf-8")
    assert "wide" in page and "one passage" in page and page.count("<svg") == 3


def test_a_bad_question_file_says_which_line_to_fix(tmp_path: Path, cli_env: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Fine?"}\n{"question": "Pages?", "pages": "three"}\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="bad.jsonl, line 2"):
        load_questions(bad)
    assert cli_main(["eval", str(bad)]) == 1
    assert "line 2" in capsys.readouterr().err
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match="line 1 is not JSON"):
        load_questions(bad)


def test_a_question_about_a_missing_file_fails_alone(library: Engine, cli_env: None, tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "mine.jsonl", [QUESTIONS[0], {**QUESTIONS[1], "file": "gone.pdf"}])
    assert cli_main(["eval", str(questions), "--no-think"]) == 0
    results = EvalRun(tmp_path / "mine-eval").results()
    assert results[0].error is None and "gone.pdf" in (results[1].error or "")
    assert summarize(results)["errors"] == 1


def test_generate_drafts_questions_with_their_pages(library: Engine, cli_env: None, tmp_path: Path,
                                                    fake_ollama: FakeOllama) -> None:
    def drafter(body: dict[str, Any]) -> tuple[str, str]:
        passage = body["messages"][-1]["content"]
        page = re.search(r"page (\d+)", passage)
        return "", json.dumps({"question": f"What does page {page.group(1) if page else '?'} say?",
                               "answer": passage.splitlines()[-1][:40]})

    fake_ollama.responder = drafter
    import rag.evaluation.drafting as drafting

    drafting.MIN_WORDS = 5  # the test's pages are one sentence each
    try:
        target = tmp_path / "drafts.jsonl"
        assert cli_main(["eval", str(target), "--generate", "4"]) == 0
    finally:
        drafting.MIN_WORDS = 40
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and {r["file"] for r in rows} == {"acme.pdf", "zephyr.pdf"}
    assert all(r["question"] == f"What does page {r['pages'][0]} say?" and r["answerable"] for r in rows)
    questions = load_questions(target)  # a draft file is a question file
    assert len(questions) == 4
    assert cli_main(["eval", str(target), "--generate", "2"]) == 1  # never overwrites the user's edits


# --- the scores ------------------------------------------------------------------------------------------------
def test_reference_figures_match_however_written() -> None:
    r = Result("q", "Capex?", None, [4], True, "$1577.00", answer="Capital expenditure was $1,577 million [1].",
               cited=[["a.pdf", 4]])
    assert r.number_match == 1.0 and r.citation_precision == 1.0 and not r.refused
    assert Result("q", "?", None, [], True, "$1577.00", answer="It was $1,517 million [1].").number_match == 0.0
    assert Result("q", "?", None, [], True, "12.5%", answer="Margin was 12.5 percent [2].").number_match == 1.0
    refusal = Result("q", "?", None, [], False, "", answer="The documents do not contain this.", cited=[])
    assert refusal.refused
    assert token_f1("30 days of paid leave", "Employees receive 30 days of paid leave [2].") > 0.7


def test_the_readme_example_runs(engine: Engine, cli_env: None, tmp_path: Path) -> None:
    """examples/questions.jsonl over the report examples/make_example_pdf.py writes: everything found."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("make_example_pdf", root / "examples" / "make_example_pdf.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    list(engine.ingest([module.build(tmp_path / "northwind-annual-report.pdf")]))
    assert cli_main(["eval", str(root / "examples" / "questions.jsonl"), "--out", str(tmp_path / "run"),
                     "--no-think"]) == 0
    summary = summarize(EvalRun(tmp_path / "run").results())
    assert summary["questions"] == 6 and summary["errors"] == 0 and summary["recall@1"] == 1.0
    assert summary["refusal_rate"] == 1.0 and summary["citation_precision"] == 1.0
