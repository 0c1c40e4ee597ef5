"""Claim check: each statement of an answer matched against the passages it cites.

Figures must be in a cited passage (as filings write them); a citation that points at the wrong passage is
re-pointed to the one that holds the statement; a statement no passage holds is marked, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.answering.claims import check_claims, figures, split_claims, summary_line
from rag.cli import main as cli_main
from rag.conversations.chats import ChatMessage, ChatStore, claims_from_json, message_record, sources_to_json
from rag.conversations.markdown import answer_markdown
from rag.core.config import Settings
from rag.core.events import Claims, Sources
from rag.core.records import Citation, Passage
from rag.engine import Engine
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from ui import render


def passage(n: int, text: str, title: str = "") -> Passage:
    return Passage(f"c{n}", "doc", "report.pdf", text, n, n, 0, len(text), title=title)


CASH_FLOW = passage(1, "Consolidated Statement of Cash Flows (Millions) 2018 2017 Purchases of property, plant and "
                       "equipment (PP&E) (1,577) (1,373) Net income including noncontrolling interest 5,363 4,869")
SALES = passage(2, "Net sales increased 3.5% to $32,765 million in 2018 compared with 2017, driven by organic growth.")
PEOPLE = passage(3, "The company employs about 93,000 people worldwide and sells products in 70 countries.")
PASSAGES = [CASH_FLOW, SALES, PEOPLE]


def only(answer: str, passages: list[Passage] = PASSAGES) -> Any:
    claims = check_claims(answer, passages).claims
    assert len(claims) == 1, claims
    return claims[0]


# --- figures as filings write them --------------------------------------------------------------------------------
@pytest.mark.parametrize(("statement", "supported"), [
    ("Capital expenditure was $1,577 million in 2018 [1].", True),
    ("Capital expenditure was $1577.00 million [1].", True),
    ("Capital expenditure was 1,577 [1].", True),
    ("Capital expenditure was about $1.6 billion [1].", True),       # a faithful rounding
    ("Capital expenditure was $1.58bn [1].", True),
    ("Capital expenditure was $1,577,000,000 [1].", True),           # the table's "(Millions)" applied
    ("Capital expenditure was -1,577 [1].", True),                    # "(1,577)" is how the table writes -1,577
    ("Net sales grew 3.5% [2].", True),
    ("Net sales grew 3.5 percent [2].", True),
    ("Net sales grew 4% [2].", True),                                 # 3.5% rounded
    ("Capital expenditure was $1,517 million [1].", False),           # a digit changed
    ("Capital expenditure was $1.577 million [1].", False),           # the scale swapped
    ("Capital expenditure was $1.7 billion [1].", False),             # rounded the wrong way
    ("Net sales grew 5.3% [2].", False),
])
def test_a_figure_must_be_in_the_cited_passage(statement: str, supported: bool) -> None:
    claim = only(statement)
    assert claim.supported is supported, claim.reason
    if not supported:
        assert "“" in claim.reason and "[" in claim.reason  # names the figure and where it was looked for


def test_figures_skip_names_list_numbers_and_references() -> None:
    found = [f.text for f in figures("1. 3M's revenue rose 12% to $1.2 billion, see Note 7 of the 10-K [3].")]
    assert found == ["12%", "$1.2 billion"]
    assert [f.full for f in figures("1.2bn and $5M and (370)")] == [1.2e9, 5e6, 370]


def test_statements_keep_the_citations_written_after_the_full_stop() -> None:
    answer = "Sales rose 3.5%. [2] Capex was $1,577 million [1]. Inc. names stay whole, e.g. 3M Co. is one."
    spans = [answer[a:b] for a, b in split_claims(answer)]
    assert spans == ["Sales rose 3.5%. [2]", "Capex was $1,577 million [1].",
                     "Inc. names stay whole, e.g. 3M Co. is one."]


@pytest.mark.parametrize(("statement", "supported"), [
    ("Capital expenditure was about $1,600 million [1].", True),     # trailing zeros: rounded to the hundred
    ("Capital expenditure was about $1,500 million [1].", False),
    ("The company sells in 70 countries [3].", True),
    ("The company sells in 71 countries [3].", False),                 # small counts are checked too
    ("Net sales grew 3.5% in 2018 [2].", True),
    ("Net sales grew 3.5% in 2016 [2].", False),                       # a year said with a figure must be there
])
def test_rounding_counts_and_years(statement: str, supported: bool) -> None:
    assert only(statement).supported is supported


def test_number_words_in_a_passage_count() -> None:
    words = passage(1, "The company reports three operating segments and employs twelve directors.")
    assert check_claims("It reports 3 operating segments [1].", [words]).claims[0].supported is True


def test_a_sentence_of_two_clauses_is_checked_clause_by_clause() -> None:
    answer = "Net sales increased 3.5% [3], and purchases of PP&E were $1,577 million [2]."
    claims = check_claims(answer, PASSAGES).claims
    assert [answer[c.start:c.end] for c in claims] == ["Net sales increased 3.5% [3]",
                                                       "and purchases of PP&E were $1,577 million [2]."]
    assert [(c.supported, c.citations) for c in claims] == [("re-pointed", [2]), ("re-pointed", [1])]
    # a clause after the sentence's last citation draws on it
    tail = check_claims("Net sales rose to $32,765 million [2], up 3.5% from 2017.", PASSAGES).claims
    assert [(c.supported, c.cited) for c in tail] == [(True, [2]), (True, [2])]


def test_of_several_citations_one_that_holds_nothing_is_dropped() -> None:
    claim = only("Net sales increased 3.5% to $32,765 million [1, 2].")
    assert claim.supported == "re-pointed" and claim.citations == [2] and "[1] holds none" in claim.reason


# --- re-pointing and marking ---------------------------------------------------------------------------------------
def test_a_figure_in_another_passage_re_points_the_citation() -> None:
    claim = only("The company employs about 93,000 people [1].")
    assert claim.supported == "re-pointed"
    assert (claim.cited, claim.citations) == ([1], [3])
    assert "[3]" in claim.reason and "93,000" in claim.reason


def test_a_statement_without_figures_is_re_pointed_by_its_words() -> None:
    claim = only("The company sells its products in many countries and employs people worldwide [2].")
    assert claim.supported == "re-pointed" and claim.citations == [3]


def test_a_statement_no_passage_supports_is_marked_with_the_reason() -> None:
    claims = check_claims("Net sales grew 9.9% [2]. The dividend rose sharply after the merger of the divisions [2].",
                          PASSAGES)
    assert [c.supported for c in claims.claims] == [False, False]
    assert summary_line(claims) == "2 statements could not be matched to the sources."
    assert "9.9%" in claims.claims[0].reason


def test_correct_statements_and_framing_raise_no_alarm() -> None:
    answer = ("Based on the sources, here is what the filing says:\n"
              "- Net sales increased 3.5% to $32,765 million in 2018 [2].\n"
              "- Purchases of property, plant and equipment were $1,577 million [1].\n"
              "In short, the company grew.")
    claims = check_claims(answer, PASSAGES)
    assert [c.supported for c in claims.claims] == [True, True]
    assert summary_line(claims) == "" and claims.added == []


def test_list_markers_stay_outside_the_statement_and_its_underline() -> None:
    answer = "The filing says:\n- Net sales grew 9.9% [2].\n1. Capex was $1,577 million [1]."
    claims = check_claims(answer, PASSAGES).claims
    assert [c.text for c in claims] == ["Net sales grew 9.9% [2].", "Capex was $1,577 million [1]."]
    html = render.answer_html(answer, Sources([Citation(1, CASH_FLOW), Citation(2, SALES)], []),
                              claims=check_claims(answer, PASSAGES))
    assert "\n- <span class=\"pw-unsupported\"" in html


def test_an_uncited_figure_gets_the_citation_of_its_passage() -> None:
    claims = check_claims("Net income was $5,363 million.", PASSAGES)
    assert claims.claims[0].supported == "re-pointed" and claims.claims[0].citations == [1]
    assert [c.number for c in claims.added] == [1]


# --- a figure where the passage says it -----------------------------------------------------------------------------
CASH = passage(1, "Cash and cash equivalents were $58 million at year end. Restricted cash held in escrow for the "
                  "pending acquisition was $50 million.")
PROFIT = passage(1, "Consolidated Gross Profit ($ in millions) 2023 2022 Gross profit $ 2,725 $ 2,820 Operating "
                    "income 512 498 Net sales 14,700 14,540")
GROWTH = passage(1, "In 2022, worldwide sales increased 1.3% to $94.9 billion as compared to an increase of 13.6% in "
                    "2021. Revenue was $5 million and net income $1 million in the new segment.")


def test_a_figure_the_passage_gives_for_something_else_is_marked() -> None:
    claim = only("Cash and cash equivalents were $50 million [1].", [CASH])
    assert claim.supported is False
    assert "“$50 million”" in claim.reason and "“$58 million”" in claim.reason


def test_a_passage_that_says_the_figure_in_its_context_takes_the_citation() -> None:
    elsewhere = passage(2, "At the end of the year, cash and cash equivalents stood at $50 million.")
    claim = only("Cash and cash equivalents were $50 million [1].", [CASH, elsewhere])
    assert claim.supported == "re-pointed" and claim.citations == [2]


@pytest.mark.parametrize(("statement", "supported"), [
    ("Gross profit was $2,725 million in 2023 [1].", True),
    ("Gross profit in 2022 was $2,820 million [1].", True),          # the row's other column
    ("Net sales came to $14.7 billion [1].", True),
    ("Net sales came to $2,725 million [1].", False),                # the gross profit row's figure
])
def test_a_table_row_gives_its_label_to_its_figures(statement: str, supported: bool) -> None:
    claim = only(statement, [PROFIT])
    assert claim.supported is supported, claim.reason
    if not supported:
        assert "“14,700”" in claim.reason


@pytest.mark.parametrize("statement", [
    "Sales worldwide grew by 13.6% in 2021 [1].",                     # a paraphrase, its words a clause away
    "The company's worldwide sales reached $94.9 billion [1].",
    "The new segment's net income was $1 million [1].",
    "The segment had revenue of $5 million and net income of $1 million [1].",   # two figures, one set of words
    "It reported $1 million [1].",                                    # no words to place it: held
])
def test_a_correct_statement_in_other_words_stays_supported(statement: str) -> None:
    claim = only(statement, [GROWTH])
    assert claim.supported is True, claim.reason


# --- through the engine, the CLI, the saved chat and the page -------------------------------------------------------
ACME = ["Acme Corporation annual report for fiscal 2022. Letter from the chief executive.",
        "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates.",
        "The board approved a dividend of 3 cents per share in December 2022. Headcount reached 1,250 employees."]


@pytest.fixture
def acme(engine: Engine, tmp_path: Path) -> str:
    list(engine.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME)]))
    return engine.documents()[0].doc_id


def misattributing(body: dict[str, Any]) -> tuple[str, str]:
    """A chat model that cites the revenue passage for the headcount and alters the revenue figure."""
    text = body["messages"][-1]["content"]
    numbers = {page: n for n, page in _sources(text)}
    return "", (f"Headcount reached 1,250 employees [{numbers[2]}]. Revenue grew to 47 million dollars "
                f"[{numbers[2]}].")


def _sources(prompt: str) -> list[tuple[int, int]]:
    import re

    found = []
    for m in re.finditer(r'<source id="(\d+)"[^>]*>(.*?)</source>', prompt, re.DOTALL):
        page = 2 if "Revenue grew" in m.group(2) else 3 if "Headcount" in m.group(2) else 1
        found.append((int(m.group(1)), page))
    return found


def test_the_engine_checks_an_answer_after_its_sources(engine: Engine, acme: str, fake_ollama: FakeOllama) -> None:
    fake_ollama.responder = misattributing
    events = list(engine.ask("How many employees and how much revenue did Acme have in fiscal 2022?"))
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Claims") == kinds.index("Sources") + 1
    claims = next(e for e in events if isinstance(e, Claims))
    headcount, revenue = claims.claims
    assert headcount.supported == "re-pointed" and revenue.supported is False
    assert "47 million" in revenue.reason
    assert [c.passage.page_start for c in claims.added] == [3]


def test_the_check_can_be_turned_off(settings: Settings, acme: str, fake_ollama: FakeOllama) -> None:
    fake_ollama.responder = misattributing
    with_off = Engine(settings.with_(claim_check=False))
    try:
        assert not any(isinstance(e, Claims) for e in with_off.ask("How many employees did Acme have?"))
    finally:
        with_off.close()


def test_cli_json_returns_claims(acme: str, settings: Settings, fake_ollama: FakeOllama,
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_ollama.responder = misattributing
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_RERANK", "false")
    assert cli_main(["ask", "How many employees did Acme have?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(c["supported"], c["citations"] != c["cited"]) for c in payload["claims"]] == [("re-pointed", True),
                                                                                         (False, False)]
    assert all({"text", "citations", "supported", "reason"} <= set(c) for c in payload["claims"])
    assert cli_main(["ask", "How many employees did Acme have?"]) == 0
    out = capsys.readouterr().out
    assert "1 statement could not be matched to the sources; 1 citation re-pointed" in out


def _answer_with_claims() -> tuple[str, Sources, Claims]:
    answer = "The company employs about 93,000 people [1]. Net sales grew 9.9% [2]."
    sources = Sources([Citation(1, CASH_FLOW), Citation(2, SALES)], [PEOPLE])
    return answer, sources, check_claims(answer, PASSAGES)


def test_claims_are_saved_with_the_answer_and_old_chats_still_load(tmp_path: Path) -> None:
    answer, sources, claims = _answer_with_claims()
    store = ChatStore(tmp_path / "chats.sqlite3")
    chat = store.start("", ChatMessage("user", "How many people?"))
    store.add(chat.id, "", ChatMessage("assistant", answer, sources=sources, claims=claims))
    store.add(chat.id, "", ChatMessage("assistant", "Old answer [1].", sources=sources))  # saved before the check
    saved, old = store.messages(chat.id, "")[1:]
    assert saved.claims == claims and old.claims is None
    assert message_record(saved)["claims"][0]["supported"] == "re-pointed"
    legacy = json.loads(sources_to_json(sources) or "")
    assert "claims" not in legacy and claims_from_json(json.dumps(legacy)) is None


def test_the_page_re_points_the_chip_and_underlines_what_no_source_holds() -> None:
    answer, sources, claims = _answer_with_claims()
    html = render.answer_html(answer, sources, claims=claims)
    assert 'class="pw-repointed"' in html and "93,000" in html
    first = html.split("Net sales")[0]
    assert 'data-n="3"' in first and 'data-n="1"' not in first  # the chip now opens source 3
    assert '<span class="pw-unsupported" title="“9.9%” is neither in the cited source [2]' in html
    assert "1 statement could not be matched to the sources; 1 citation re-pointed" in html
    assert "re-pointed" not in render.plain_text(render.answer_message(answer, sources, claims=claims))
    panel = render.sources_html(sources, answer, claims=claims)
    assert panel.count('class="pw-num"') == 3 and "Other retrieved passages" not in panel  # [3] joined the cited
    markdown = answer_markdown(answer, sources, claims=claims)
    assert "*1 statement could not be matched to the sources; 1 citation re-pointed" in markdown
    assert "9.9%" in markdown.split("**Sources**")[0] and "**[3]**" in markdown  # the re-pointed source is listed
    # without a check (an old saved chat) the answer renders as before
    assert "pw-unsupported" not in render.answer_html(answer, sources)
