"""Support scoring for the claim check: the reranker asked whether a passage supports a statement, where it fits.

The claim check (``rag.answering.claims``) judges a statement without figures by its words. With
``RAG_CLAIM_CHECK_RERANKER`` the configured reranker may judge it instead, asked with
``rag.models.reranker.SUPPORT_INSTRUCTION`` for that call only (the retrieval instruction stays as it is):

- ``auto``: only when the reranker's throughput, as the reranking budget has measured it on this machine, says that
  scoring the statements' (statement, cited passage) pairs keeps the check within ``SHARE`` of the answer's time so
  far (retrieval, reranking, generation); never before the reranker has been timed once;
- ``on``: whenever the reranker can take the instruction;
- ``off``: never.

A reranker that cannot take an instruction (a ``/rerank`` server sent plain text) is never asked. Whatever the
reranker raises is the caller's to catch: it then judges by the words (``Answerer`` does).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from rag.answering.claims import support_pairs
from rag.core.records import Passage
from rag.models.budget import RerankBudget
from rag.models.reranker import PASSAGE_FRAME, SUPPORT_INSTRUCTION, cut_passages, prompt_head, takes_instruction

log = logging.getLogger(__name__)

SHARE = 0.1  # the most the check may add to the answer's time, under ``auto``
_STOP_AFTER = 1.1  # a call that would end past the allowance by more than a tenth is not made


class SupportOutOfTime(RuntimeError):
    """The support scoring would run past its allowance (the machine got slower than measured)."""


class RerankerSupport:
    """A ``SupportScorer`` over a reranker that takes an instruction: each (statement, passages) is scored with
    ``SUPPORT_INSTRUCTION``, the passages cut as the reranking budget cuts them (to its token cap, keeping what
    matches the statement), and each call timed into the budget's throughput. With ``seconds``, a call that would
    end past them (by more than a tenth) raises ``SupportOutOfTime`` instead of being made."""

    def __init__(self, reranker: Any, budget: RerankBudget, seconds: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.reranker = reranker
        self.budget = budget
        self.seconds = seconds
        self.clock = clock
        self.calls = 0
        self.spent = 0.0  # seconds spent in the reranker so far

    def __call__(self, statement: str, passages: Sequence[str]) -> list[float]:
        """Support of ``statement`` by each passage, 0..1, in input order."""
        if not passages:
            return []
        count = self.budget.counter(self.reranker)
        lengths = count(list(passages))
        cap = self.budget.max_tokens
        cut = cut_passages(list(passages), lengths, cap, count, statement)
        tokens = self._prefix(count, statement) + sum(min(n, cap) + self._frame(count) for n in lengths)
        rate = self.budget.throughput.tokens_per_second
        if self.seconds is not None and rate and self.spent + tokens / rate > self.seconds * _STOP_AFTER:
            raise SupportOutOfTime(f"scoring {tokens} more tokens would take the check past {self.seconds:.2f} s")
        started = self.clock()
        scores = self.reranker.score(statement, cut, instruction=SUPPORT_INSTRUCTION)
        took = self.clock() - started
        self.budget.throughput.record(tokens, took)
        self.spent += took
        self.calls += 1
        return [float(s) for s in scores]

    def tokens(self, pairs: Sequence[tuple[str, list[int]]], passages: Sequence[Passage]) -> int:
        """The most tokens judging ``pairs`` (statement, cited passage numbers) may read: each statement with its
        cited passages, and one call more for the longest uncited passage (where the cited ones fail)."""
        count = self.budget.counter(self.reranker)
        cap = self.budget.max_tokens
        frame = self._frame(count)
        own = [min(n, cap) + frame for n in count([p.text for p in passages])]
        total = 0
        for statement, cited in pairs:
            prefix = self._prefix(count, statement)
            others = [own[i] for i in range(len(own)) if i + 1 not in cited]
            total += prefix + sum(own[n - 1] for n in cited) + (prefix + max(others) if others else 0)
        return total

    @staticmethod
    def _prefix(count: Callable[[list[str]], list[int]], statement: str) -> int:
        return count([prompt_head(SUPPORT_INSTRUCTION) + statement])[0]

    @staticmethod
    def _frame(count: Callable[[list[str]], list[int]]) -> int:
        return count([PASSAGE_FRAME])[0]


def support_scorer(mode: str, reranker: Any | None, budget: RerankBudget, answer: str, passages: Sequence[Passage],
                   question: str, elapsed: float) -> RerankerSupport | None:
    """The reranker as the claim check's support scorer, or None for the word overlap, by ``mode``
    (RAG_CLAIM_CHECK_RERANKER: auto, on, off); ``elapsed``: the answer's seconds so far."""
    if mode == "off" or reranker is None or not takes_instruction(reranker):
        return None
    if mode == "on":
        return RerankerSupport(reranker, budget)
    pairs = support_pairs(answer, passages, question)
    rate = budget.throughput.tokens_per_second
    if not pairs or rate is None:  # nothing to ask, or the reranker's speed is not known yet
        return None
    allowance = SHARE * elapsed
    scorer = RerankerSupport(reranker, budget, seconds=allowance)
    expected = scorer.tokens(pairs, passages) / rate
    if expected > allowance:
        log.info("Claim check by words: the reranker would take ~%.2f s for %d statements, more than %.0f%% of "
                 "the answer's %.1f s", expected, len(pairs), SHARE * 100, elapsed)
        return None
    return scorer
