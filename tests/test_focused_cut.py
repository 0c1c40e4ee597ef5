"""What the reranker reads when its time budget cuts a passage: the page's lead and the sentences that match the
question, not the head."""

from __future__ import annotations

import pytest

from rag.models.budget import RerankBudget
from rag.models.reranker import GAP, clip, cut_passages, focus, query_terms
from rag.text.tokencount import estimate_tokens

FILLER = "Our stores opened in many regions and we hired staff across the chain. "
ANSWER = "Capital expenditures were $1,577 million in 2018, up from $1,373 million in 2017."
PAGE = "3M Company, Management's Discussion and Analysis. " + FILLER * 12 + ANSWER + " " + FILLER * 12
QUESTION = "How much were capital expenditures in 2018?"


def count(texts: list[str]) -> list[int]:
    return [estimate_tokens(t) for t in texts]


@pytest.mark.parametrize("cap", [64, 110, 136])
def test_a_focused_cut_keeps_the_lead_and_the_answer_within_the_cap(cap: int) -> None:
    head, focused = clip([PAGE], cap)[0], clip([PAGE], cap, QUESTION)[0]
    assert ANSWER not in head and PAGE.startswith(head)
    assert ANSWER in focused and focused.startswith("3M Company") and GAP in focused
    assert estimate_tokens(focused) <= cap


def test_without_a_match_or_a_query_the_head_is_kept() -> None:
    assert clip([PAGE], 64, "Which volcano erupted near Reykjavik?") == clip([PAGE], 64)
    assert focus(PAGE, query_terms("capital expenditure"), len(PAGE) + 10) == PAGE  # nothing to cut


def test_words_meet_across_endings() -> None:
    assert ANSWER in focus(PAGE, query_terms("capital expenditure 2018"), 260)


def test_a_short_passage_is_left_whole() -> None:
    short = "Net sales rose 3%."
    assert cut_passages([short, PAGE], count([short, PAGE]), 64, count, QUESTION)[0] == short


class Reranker:
    """Test double: a reranker that records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, query: str, passages: list[str]) -> list[float]:
        self.seen += passages
        return [0.5] * len(passages)


def test_the_budget_sends_focused_cuts_unless_turned_off() -> None:
    budget = RerankBudget(3.0, min_passages=5, min_tokens=64, max_tokens=384)
    plan = budget.plan(Reranker(), QUESTION, [PAGE] * 6, breadth=12)  # not timed yet: five at the shortest cut
    assert plan.cut == 5 and all(ANSWER in p for p in plan.passages)
    budget.focused = False
    assert not any(ANSWER in p for p in budget.plan(Reranker(), QUESTION, [PAGE] * 6, breadth=12).passages)
