"""Reranking: the ``Reranker`` interface and the official Qwen3-Reranker prompt every provider sends.

Qwen3-Reranker is a causal LM asked "does this Document meet the Query? yes/no"; the relevance score is
``softmax([logit(no), logit(yes)])[yes]`` at the last position. The providers: in-process
(``rag.models.providers.local_reranker``), inside Ollama by the log-probabilities of its first token
(``rag.models.providers.ollama``), or a ``/rerank`` service (``rag.models.providers.rerank_service``);
``rag.models.factory.make_reranker`` picks one. How much a question may send is ``rag.models.budget``'s job.
"""

from __future__ import annotations

import json
import math
import re
from typing import Callable, Protocol, Sequence

from rag.text.languages import analyze
from rag.text.tokencount import estimate_tokens

# The official Qwen3-Reranker prompt (model card): system text, user turn, and an assistant turn opened with an
# empty think block, so that the next token is the answer itself.
SYSTEM_PROMPT = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)
_PROMPT_HEAD = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Instruct>: {instruction}\n<Query>: "
_PROMPT_MIDDLE = "\n<Document>: "
_PROMPT_TAIL = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
PASSAGE_FRAME = _PROMPT_MIDDLE + _PROMPT_TAIL  # the prompt text around each passage, read once per pair
# The task the claim check gives the reranker instead of the retrieval one: the Query is a statement of the answer.
SUPPORT_INSTRUCTION = "Judge whether the Document supports the statement in the Query"


class RerankerUnavailable(RuntimeError):
    """The reranker model can't be loaded (not downloaded, wrong path, not a Qwen3-Reranker-style model)."""


class Reranker(Protocol):
    """Scores how well each passage answers a query (higher is better, 0..1).

    ``score`` is all a backend must implement: the time budget (``RerankBudget``) times each call itself and learns
    the backend's throughput from it. Optional members make it more exact: ``count_tokens(texts) -> list[int]``
    (the reranker's own tokenizer; without it, tokens are estimated); ``loaded``/``load()`` (a model loaded in
    this process: the budget loads it before timing, so loading never counts as scoring time); and ``incremental``
    with ``batch_size`` (true when scoring one query's passages in several calls costs no more than in one: the
    budget then sends them a batch at a time and stops when the time is up); and ``takes_instruction`` (true when
    ``score`` accepts ``instruction=``, a task for that call only in place of the retrieval one, as a backend that
    builds the Qwen3 prompt itself does: the claim check asks with ``SUPPORT_INSTRUCTION``).
    """

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Return one score per passage, in the order given."""
        ...

    @property
    def describe(self) -> str:
        """Where reranking happens, in a few words (for the status badge and ``rag settings``)."""
        ...


def takes_instruction(reranker: object) -> bool:
    """Whether ``reranker.score`` accepts ``instruction=`` (see ``Reranker``)."""
    return bool(getattr(reranker, "takes_instruction", False))


def cut_passages(texts: list[str], lengths: list[int], cap: int,
                 count_many: Callable[[list[str]], list[int]], query: str = "") -> list[str]:
    """Each text cut to at most ``cap`` tokens as ``count_many`` counts them, at a word boundary where one is near.

    With a ``query``, a cut keeps what matters to it (``focus``: the page's lead, then the run of sentences that
    best matches the query) instead of the head.
    """
    out = list(texts)
    ratio = {i: cap / n for i, n in enumerate(lengths) if n > cap}
    terms = query_terms(query) if query else set()
    for _ in range(6):  # a cut in proportion is nearly always right first time; shrink the few that aren't
        if not ratio:
            return out
        todo = list(ratio)
        for i in todo:
            end = int(len(texts[i]) * ratio[i])
            out[i] = focus(texts[i], terms, end) if terms else _cut_chars(texts[i], end)
        counts = count_many([out[i] for i in todo])
        ratio = {i: ratio[i] * cap / k * 0.97 for i, k in zip(todo, counts, strict=True) if k > cap}
    for i in ratio:  # pathological counts: fall back to a blunt cut
        out[i] = texts[i][: max(1, cap)]
    return out


def _cut_chars(text: str, end: int) -> str:
    end = max(1, min(end, len(text)))
    space = text.rfind(" ", 0, end + 1)
    return text[:space].rstrip() if space > end * 0.8 else text[:end]


# --- focused cuts: what a passage cut for the reranker keeps ---------------------------------------------------
_UNIT = re.compile(r"[^\n.!?;]*(?:[.!?;]+(?=\s)|\n+|$)")
LEAD_SHARE = 0.25  # of a focused cut, at most this share goes to the passage's first sentence (where it is)
GAP = " … "


def query_terms(query: str) -> set[str]:
    """The query's search terms (as BM25 reads them, cut to their first letters: "expenditures" meets
    "expenditure" in any language), without the empty ones of stop words."""
    return {t for t in _terms(query, detect=True) if len(t) > 1}  # its language's stop words and stray letters out


def _terms(text: str, detect: bool = False) -> set[str]:
    return {t[:_PREFIX] for t in analyze(text, detect_language=detect) if t}


_PREFIX = 6


def focus(text: str, terms: set[str], length: int) -> str:
    """``text`` cut to about ``length`` characters, keeping its lead (the first sentence, at most LEAD_SHARE of the
    length: what page and section this is) and the run of sentences that best matches ``terms`` (each term weighed
    by how rare it is among the text's sentences, as BM25 weighs it), joined by " … ". The head when nothing in the
    text matches."""
    if length >= len(text):
        return text
    spans = [(m.start(), m.end()) for m in _UNIT.finditer(text) if text[m.start():m.end()].strip()]
    if len(spans) < 2:
        return _cut_chars(text, length)
    found = [_terms(text[a:b]) & terms for a, b in spans]
    rarity = {t: math.log(1 + len(spans) / sum(t in f for f in found)) for t in terms if any(t in f for f in found)}
    if not rarity:
        return _cut_chars(text, length)
    score = [sum(rarity[t] for t in f) for f in found]
    lead_end = min(spans[0][1], int(length * LEAD_SHARE))
    room = length - lead_end - len(GAP)
    # the best-scoring run of whole sentences that fits the room (two pointers over the sentences)
    best, best_score, left, total = (1, 1), -1.0, 1, 0.0
    for right in range(1, len(spans)):
        total += score[right]
        while left < right and spans[right][1] - spans[left][0] > room:
            total -= score[left]
            left += 1
        if total > best_score and spans[right][1] - spans[left][0] <= room:
            best, best_score = (left, right), total
    left, right = best
    # what follows a match (a table's figures after its row label, the rest of a sentence) fills the room first
    while right + 1 < len(spans) and spans[right + 1][1] - spans[left][0] <= room:
        right += 1
    while left > 1 and spans[right][1] - spans[left - 1][0] <= room:
        left -= 1
    a, b = spans[left][0], spans[right][1]
    if best_score <= 0 or b - a <= 0:
        return _cut_chars(text, length)
    if a <= lead_end + len(GAP):  # the run starts right after the lead: no gap to mark
        return _cut_chars(text, min(len(text), length))
    lead = _cut_chars(text, lead_end).rstrip()
    return lead + GAP + text[a:b].strip()


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


def clip(texts: Sequence[str], tokens: int, query: str = "") -> list[str]:
    """Each text cut to at most ``tokens`` tokens by the built-in estimate, for a backend without the tokenizer
    (focused on ``query`` when given, see ``cut_passages``)."""
    def count(batch: list[str]) -> list[int]:
        return [estimate_tokens(t) for t in batch]

    return cut_passages(list(texts), count(list(texts)), tokens, count, query)
