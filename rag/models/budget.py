"""The reranking time budget: how many fused candidates a question sends to the reranker, and cut to how many
tokens, so that reranking takes about ``RAG_RERANK_SECONDS`` on the machine (or server) it runs on.

Works with any ``Reranker`` (in-process, Ollama, a ``/rerank`` service): it times each call and learns the
throughput from it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rag.core.config import Settings
from rag.models.reranker import PASSAGE_FRAME, cut_passages, prompt_head
from rag.text.tokencount import estimate_tokens

log = logging.getLogger(__name__)


# The reranker reads every token it is sent (~0.9 GFLOP per token for the 0.6B model: about 10 ms a token on a
# laptop CPU in float32), so what it is sent is bounded by time, not by count. The throughput is measured on the
# machine it runs on, from the reranker's own calls, whatever the backend (in-process, Ollama, a /rerank service).
@dataclass(frozen=True)
class RerankPlan:
    """What one question sends to the reranker: the ``count`` best of ``total`` fused candidates, each cut to at
    most ``token_cap`` tokens (``cut`` of them were longer), ``tokens`` to read in all (prompt included)."""

    total: int
    count: int
    token_cap: int
    cut: int
    tokens: int
    budget_seconds: float
    expected_seconds: float | None  # None until the reranker has been timed once
    passages: list[str] = field(repr=False)  # the texts sent, cut
    # ``tokens`` = ``prefix_tokens`` (read once per query) + each passage's own, its part of the prompt included
    prefix_tokens: int = field(default=0, repr=False)
    passage_tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def detail(self) -> str:
        """What the user is told while it runs, e.g. "ranking 8 of 29 passages, 6 cut to 150 tokens"."""
        text = f"ranking {self.count} of {self.total} passages"
        return text + (f", {self.cut} cut to {self.token_cap} tokens" if self.cut else "")


class Throughput:
    """Tokens per second a reranker has reached on its recent calls, learned in this process; thread-safe.

    A moving average of seconds per token that weighs the latest call as much as all before it, so a busier machine
    (or a remote server under load) shows in the next question's budget, and one odd call is soon forgotten.
    """

    def __init__(self) -> None:
        self._seconds_per_token: float | None = None
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def tokens_per_second(self) -> float | None:
        """The current estimate; None before the first call."""
        spt = self._seconds_per_token
        return None if spt is None else 1.0 / spt

    def record(self, tokens: int, seconds: float) -> None:
        """Learn from a call that read ``tokens`` tokens in ``seconds``."""
        if tokens <= 0 or seconds <= 0:
            return
        spt = seconds / tokens
        with self._lock:
            old = self._seconds_per_token
            self._seconds_per_token = spt if old is None else _SMOOTHING * spt + (1 - _SMOOTHING) * old
            self.calls += 1


_SMOOTHING = 0.5  # weight of the latest call in the throughput estimate
_STOP_AFTER = 1.1  # an incremental reranker gets no further batch that would end past 110% of the budget


class RerankBudget:
    """Bounds what the reranker reads per question by the seconds a question may spend there.

    Candidates come in fused order (best first). The plan sends all of them at full length when they fit; else the
    ``breadth`` best (twice the passages an answer uses, as the caller decides) cut to the longest length that
    fits, then more at that length while they fit; when not even those fit at ``min_tokens`` each, fewer, but never
    fewer than ``min_passages`` (or all there are), which may then run over the budget. Until the reranker has been
    timed once, it sends ``min_passages`` at ``min_tokens`` (the least allowed) and learns from that call.
    ``seconds`` 0 means no limit.
    """

    def __init__(self, seconds: float, min_passages: int = 5, min_tokens: int = 64, max_tokens: int = 384,
                 instruction: str = "", estimate: Callable[[str], int] = estimate_tokens,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if min_passages < 1 or not 1 <= min_tokens <= max_tokens or seconds < 0:
            raise ValueError("need min_passages >= 1, 1 <= min_tokens <= max_tokens and seconds >= 0")
        self.seconds = seconds
        self.min_passages = min_passages
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.instruction = instruction
        self.estimate = estimate
        self.clock = clock
        self.throughput = Throughput()
        self.focused = True  # a cut passage keeps what matches the query, not its head (RAG_RERANK_FOCUSED_CUTS)

    @classmethod
    def from_settings(cls, s: Settings) -> RerankBudget:
        """The budget the settings describe (RAG_RERANK_SECONDS and its neighbours)."""
        budget = cls(s.rerank_seconds, s.rerank_min_passages, s.rerank_min_tokens, s.rerank_max_tokens,
                     s.rerank_instruction)
        budget.focused = s.rerank_focused_cuts
        return budget

    def plan(self, reranker: Any, query: str, passages: Sequence[str], breadth: int) -> RerankPlan:
        """Choose how many of ``passages`` (best first) to send and how far to cut them."""
        _ensure_loaded(reranker)
        count_many = self.counter(reranker)
        lengths = count_many(list(passages))
        instruction = getattr(reranker, "instruction", None) or self.instruction
        prefix = count_many([prompt_head(instruction) + query])[0]
        pair = count_many([PASSAGE_FRAME])[0]
        rate = self.throughput.tokens_per_second
        n, cap = choose(lengths, rate, self.seconds, prefix=prefix, pair=pair, floor=self.min_passages,
                        min_cap=self.min_tokens, max_cap=self.max_tokens, breadth=breadth)
        chosen = lengths[:n]
        tokens = _cost(chosen, cap, prefix, pair)
        return RerankPlan(total=len(passages), count=n, token_cap=cap, cut=sum(t > cap for t in chosen),
                          tokens=tokens, budget_seconds=self.seconds,
                          expected_seconds=None if rate is None else tokens / rate,
                          passages=cut_passages(list(passages[:n]), chosen, cap, count_many,
                                                query if self.focused else ""),
                          prefix_tokens=prefix, passage_tokens=[min(t, cap) + pair for t in chosen])

    def calibrate(self, reranker: Any) -> None:
        """Time one small scoring (what a question sends at the least: ``min_passages`` of ``min_tokens``) so that
        even the first question is planned from a measured speed; the app does this once its reranker has loaded."""
        filler = " ".join(["Net sales rose in every region, while costs for raw materials and freight fell."]
                          * (self.min_tokens // 8 + 1))
        query = "How did sales and costs change during the year?"
        self.score(reranker, query, self.plan(reranker, query, [filler] * self.min_passages, self.min_passages))

    def score(self, reranker: Any, query: str, plan: RerankPlan) -> list[float]:
        """Scores of the plan's passages, best first, timing each call to learn the throughput.

        An ``incremental`` reranker gets the ``min_passages`` first, then a batch at a time, and no further batch
        once it would end past the budget by more than a tenth (the machine got slower since the plan): the scores
        are then those of the first passages only, never fewer than ``min_passages``.
        """
        _ensure_loaded(reranker)
        started = self.clock()
        scores: list[float] = []
        for a, b in self._steps(reranker, plan):
            tokens = (plan.prefix_tokens if a == 0 else 0) + sum(plan.passage_tokens[a:b])
            rate = self.throughput.tokens_per_second
            if scores and rate and self.clock() - started + tokens / rate > plan.budget_seconds * _STOP_AFTER:
                log.info("Time is up: reranked %d of the %d planned passages", len(scores), plan.count)
                break
            step_started = self.clock()
            scores += reranker.score(query, plan.passages[a:b])
            self.throughput.record(tokens or plan.tokens, self.clock() - step_started)
        log.info("Reranked %d (%s) in %.2f s (budget %.1f s, expected %s); now ~%.0f tokens/s", len(scores),
                 plan.detail, self.clock() - started, plan.budget_seconds,
                 "-" if plan.expected_seconds is None else f"{plan.expected_seconds:.2f} s",
                 self.throughput.tokens_per_second or 0)
        return scores

    def _steps(self, reranker: Any, plan: RerankPlan) -> list[tuple[int, int]]:
        """(start, end) of each call: all at once, or for an incremental reranker the floor and then batches."""
        first = min(self.min_passages, plan.count)
        if not getattr(reranker, "incremental", False) or plan.budget_seconds <= 0 or first == plan.count:
            return [(0, plan.count)]
        size = max(1, int(getattr(reranker, "batch_size", 8)))
        return [(0, first)] + [(a, min(a + size, plan.count)) for a in range(first, plan.count, size)]

    def counter(self, reranker: Any) -> Callable[[list[str]], list[int]]:
        """Counts tokens as the reranker does (its own tokenizer), else by the built-in estimate."""
        own = getattr(reranker, "count_tokens", None)
        return own if callable(own) else (lambda texts: [self.estimate(t) for t in texts])


def choose(lengths: Sequence[int], rate: float | None, seconds: float, *, prefix: int, pair: int, floor: int,
           min_cap: int, max_cap: int, breadth: int) -> tuple[int, int]:
    """(how many of the candidates, best first, to send; the token cap of each) for ``RerankBudget``'s rule.

    ``lengths``: each candidate's tokens; ``prefix``: the prompt's tokens read once per call (instruction, query);
    ``pair``: the prompt's tokens around each passage; ``rate``: tokens per second, None if not measured yet.
    """
    total = len(lengths)
    least = min(floor, total)
    if seconds <= 0:
        return total, max_cap
    if rate is None:
        return least, min_cap
    if _cost(lengths, max_cap, prefix, pair) <= rate * seconds:
        return total, max_cap
    room = rate * seconds

    def fits(n: int, cap: int) -> bool:
        return _cost(lengths[:n], cap, prefix, pair) <= room

    wanted = min(total, max(least, breadth))
    n = wanted if fits(wanted, min_cap) else max([least] + [k for k in range(least, wanted) if fits(k, min_cap)])
    lo, hi = min_cap, max_cap  # the longest cap at which those n fit (min_cap if none does)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(n, mid) else (lo, mid - 1)
    while n < total and fits(n + 1, lo):
        n += 1
    return n, lo


def _cost(lengths: Sequence[int], cap: int, prefix: int, pair: int) -> int:
    return prefix + sum(min(t, cap) + pair for t in lengths)


def _ensure_loaded(reranker: Any) -> None:
    if getattr(reranker, "loaded", True) is False:
        reranker.load()
