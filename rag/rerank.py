"""Reranking: the ``Reranker`` interface, the official Qwen3-Reranker prompt every backend sends, and the factory.

Qwen3-Reranker is a causal LM asked "does this Document meet the Query? yes/no"; the relevance score is
``softmax([logit(no), logit(yes)])[yes]`` at the last position. The backends: in-process
(``rag.provider_local.Qwen3Reranker``), inside Ollama by the log-probabilities of its first token
(``rag.provider_ollama.OllamaReranker``), or a ``/rerank`` service (``rag.provider_openai.HttpReranker``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from rag.config import Settings
from rag.tokencount import estimate_tokens

log = logging.getLogger(__name__)

# The official Qwen3-Reranker prompt (model card): system text, user turn, and an assistant turn opened with an
# empty think block, so that the next token is the answer itself.
SYSTEM_PROMPT = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)
_PROMPT_HEAD = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Instruct>: {instruction}\n<Query>: "
_PROMPT_MIDDLE = "\n<Document>: "
_PROMPT_TAIL = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


class RerankerUnavailable(RuntimeError):
    """The reranker model can't be loaded (not downloaded, wrong path, not a Qwen3-Reranker-style model)."""


class Reranker(Protocol):
    """Scores how well each passage answers a query (higher is better, 0..1).

    ``score`` is all a backend must implement: the time budget (``RerankBudget``) times each call itself and learns
    the backend's throughput from it. Optional members make it more exact: ``count_tokens(texts) -> list[int]``
    (the reranker's own tokenizer; without it, tokens are estimated); ``loaded``/``load()`` (a model loaded in
    this process: the budget loads it before timing, so loading never counts as scoring time); and ``incremental``
    with ``batch_size`` (true when scoring one query's passages in several calls costs no more than in one: the
    budget then sends them a batch at a time and stops when the time is up).
    """

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Return one score per passage, in the order given."""
        ...

    @property
    def describe(self) -> str:
        """Where reranking happens, in a few words (for the status badge and ``rag settings``)."""
        ...


# --- the time budget ----------------------------------------------------------------------------------------------
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

    @classmethod
    def from_settings(cls, s: Settings) -> RerankBudget:
        """The budget the settings describe (RAG_RERANK_SECONDS and its neighbours)."""
        return cls(s.rerank_seconds, s.rerank_min_passages, s.rerank_min_tokens, s.rerank_max_tokens,
                   s.rerank_instruction)

    def plan(self, reranker: Any, query: str, passages: Sequence[str], breadth: int) -> RerankPlan:
        """Choose how many of ``passages`` (best first) to send and how far to cut them."""
        _ensure_loaded(reranker)
        count_many = self._counter(reranker)
        lengths = count_many(list(passages))
        instruction = getattr(reranker, "instruction", None) or self.instruction
        prefix = count_many([prompt_head(instruction) + query])[0]
        pair = count_many([_PROMPT_MIDDLE + _PROMPT_TAIL])[0]
        rate = self.throughput.tokens_per_second
        n, cap = choose(lengths, rate, self.seconds, prefix=prefix, pair=pair, floor=self.min_passages,
                        min_cap=self.min_tokens, max_cap=self.max_tokens, breadth=breadth)
        chosen = lengths[:n]
        tokens = _cost(chosen, cap, prefix, pair)
        return RerankPlan(total=len(passages), count=n, token_cap=cap, cut=sum(t > cap for t in chosen),
                          tokens=tokens, budget_seconds=self.seconds,
                          expected_seconds=None if rate is None else tokens / rate,
                          passages=cut_passages(list(passages[:n]), chosen, cap, count_many),
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

    def _counter(self, reranker: Any) -> Callable[[list[str]], list[int]]:
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


def cut_passages(texts: list[str], lengths: list[int], cap: int,
                 count_many: Callable[[list[str]], list[int]]) -> list[str]:
    """Each text cut to at most ``cap`` tokens as ``count_many`` counts them, at a word boundary where one is near."""
    out = list(texts)
    ratio = {i: cap / n for i, n in enumerate(lengths) if n > cap}
    for _ in range(6):  # a cut in proportion is nearly always right first time; shrink the few that aren't
        if not ratio:
            return out
        todo = list(ratio)
        for i in todo:
            out[i] = _cut_chars(texts[i], int(len(texts[i]) * ratio[i]))
        counts = count_many([out[i] for i in todo])
        ratio = {i: ratio[i] * cap / k * 0.97 for i, k in zip(todo, counts, strict=True) if k > cap}
    for i in ratio:  # pathological counts: fall back to a blunt cut
        out[i] = texts[i][: max(1, cap)]
    return out


def _cut_chars(text: str, end: int) -> str:
    end = max(1, min(end, len(text)))
    space = text.rfind(" ", 0, end + 1)
    return text[:space].rstrip() if space > end * 0.8 else text[:end]


def _ensure_loaded(reranker: Any) -> None:
    if getattr(reranker, "loaded", True) is False:
        reranker.load()


def format_prompt(instruction: str, query: str, passage: str) -> str:
    """The full official Qwen3-Reranker prompt for one (query, passage) pair, as text."""
    return query_part(instruction, query) + document_part(passage)


def query_part(instruction: str, query: str) -> str:
    """The prompt up to the document (system turn, instruction, query): what a /rerank server gets as the query."""
    return prompt_head(instruction) + query + "\n"


def document_part(passage: str) -> str:
    """The prompt from the document on (document, end of turn, the assistant's empty think block)."""
    return _PROMPT_MIDDLE.lstrip("\n") + passage + _PROMPT_TAIL


def prompt_head(instruction: str) -> str:
    """The start of every prompt of one instruction: system turn and instruction, up to the query."""
    return _PROMPT_HEAD.format(system=SYSTEM_PROMPT, instruction=instruction)


def chat_template(instruction: str) -> str:
    """A Jinja chat template rendering a CrossEncoder ``query``/``document`` pair exactly as ``format_prompt``."""
    # Fixed text goes in as JSON string literals (valid Jinja literals), so any instruction text is safe.
    def lit(text: str) -> str:
        return "{{- " + json.dumps(text, ensure_ascii=False) + " -}}"

    def role(name: str) -> str:
        # sentence-transformers sends a role's content either as a string or as a list of text blocks.
        return (
            f'{{%- set {name} = messages | selectattr("role", "eq", "{name}") | map(attribute="content") | first -%}}'
            f'{{%- if {name} is not string %}}{{%- set {name} = {name} | map(attribute="text") | join("") -%}}'
            "{%- endif -%}"
        )

    return (
        role("query") + role("document")
        + lit(prompt_head(instruction)) + "{{- query -}}" + lit(_PROMPT_MIDDLE) + "{{- document -}}"
        + lit(_PROMPT_TAIL)
    )


def clip(texts: Sequence[str], tokens: int) -> list[str]:
    """Each text cut to at most ``tokens`` tokens by the built-in estimate, for a backend without the tokenizer."""
    def count(batch: list[str]) -> list[int]:
        return [estimate_tokens(t) for t in batch]

    return cut_passages(list(texts), count(list(texts)), tokens, count)


def make_reranker(settings: Settings) -> Reranker:
    """The reranker the settings ask for: in-process (its weights load on the first question that needs them),
    inside Ollama, or a /rerank service."""
    if settings.rerank_backend == "ollama":
        from rag.provider_ollama import OllamaReranker

        return OllamaReranker(settings)
    if settings.rerank_backend == "http":
        from rag.provider_openai import HttpReranker

        return HttpReranker(settings)
    from rag.provider_local import Qwen3Reranker

    s = settings
    return Qwen3Reranker(s.rerank_model, s.rerank_instruction, s.rerank_max_tokens, s.rerank_batch_size,
                         dtype=s.rerank_dtype, gpu_seconds=s.gpu_seconds)
