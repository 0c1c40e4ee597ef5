"""Reranking: the ``Reranker`` interface and the official Qwen3-Reranker prompt every provider sends.

Qwen3-Reranker is a causal LM asked "does this Document meet the Query? yes/no"; the relevance score is
``softmax([logit(no), logit(yes)])[yes]`` at the last position. The providers: in-process
(``rag.models.providers.local_reranker``), inside Ollama by the log-probabilities of its first token
(``rag.models.providers.ollama``), or a ``/rerank`` service (``rag.models.providers.rerank_service``);
``rag.models.factory.make_reranker`` picks one. How much a question may send is ``rag.models.budget``'s job.
"""

from __future__ import annotations

import json
from typing import Callable, Protocol, Sequence

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
