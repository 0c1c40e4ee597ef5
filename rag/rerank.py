"""Reranking: the ``Reranker`` interface, the official Qwen3-Reranker prompt every backend sends, and the factory.

Qwen3-Reranker is a causal LM asked "does this Document meet the Query? yes/no"; the relevance score is
``softmax([logit(no), logit(yes)])[yes]`` at the last position. The backends: in-process
(``rag.provider_local.Qwen3Reranker``), inside Ollama by the log-probabilities of its first token
(``rag.provider_ollama.OllamaReranker``), or a ``/rerank`` service (``rag.provider_openai.HttpReranker``).
"""

from __future__ import annotations

import json
from typing import Protocol, Sequence

from rag.chunking import estimate_tokens
from rag.config import Settings

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
    """Scores how well each passage answers a query (higher is better, 0..1)."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Return one score per passage, in the order given."""
        ...

    @property
    def describe(self) -> str:
        """Where reranking happens, in a few words (for the status badge and ``rag settings``)."""
        ...


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


def clip(text: str, tokens: int) -> str:
    """``text`` cut to at most ``tokens`` tokens by the built-in estimate, for a backend without the tokenizer."""
    if estimate_tokens(text) <= tokens:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if estimate_tokens(text[:middle]) <= tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]


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
                         gpu_seconds=s.gpu_seconds)
