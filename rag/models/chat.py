"""Chat models: the ``ChatModel`` interface and the ``<think>`` splitter every text-streaming provider shares.

``stream`` yields ``ThinkingDelta`` and ``AnswerDelta`` events, so reasoning never mixes with the answer;
``complete`` is a short non-thinking call (used to rewrite follow-up questions). The providers are in
``rag.models.providers``: Ollama's ``/api/chat`` (default), transformers in-process (``local_chat``) and an
OpenAI-compatible server's ``/chat/completions``; ``rag.models.factory.make_chat_model`` picks one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Sequence

from rag.core.events import AnswerDelta, ThinkingDelta
from rag.text.tokencount import estimate_tokens

Delta = ThinkingDelta | AnswerDelta
Messages = Sequence[dict[str, str]]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FALLBACK_CONTEXT = 8192


class ChatModel(ABC):
    """A chat model. Subclasses implement ``stream``; the rest has sensible defaults built on it."""

    model_id: str

    @abstractmethod
    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        """Generate a reply to ``messages``, yielding thinking and answer pieces as they come."""

    def complete(self, messages: Messages, *, max_tokens: int = 256, num_ctx: int | None = None) -> str:
        """The whole reply to ``messages``, without thinking."""
        return "".join(d.text for d in self.stream(messages, think=False, num_ctx=num_ctx, max_tokens=max_tokens)
                       if isinstance(d, AnswerDelta))

    def context_length(self) -> int:
        """The most tokens the model can attend to."""
        return FALLBACK_CONTEXT

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in a prompt (an estimate unless the backend has the tokenizer)."""
        return estimate_tokens(text)

    def check(self) -> None:
        """Raise a ModelError saying what to do if the model can't answer right now (default: load it)."""
        self.context_length()

    @property
    def describe(self) -> str:
        """Where answers come from, in a few words."""
        return f"{self.model_id} (in-process)"


class ThinkSplitter:
    """Splits streamed text of a Qwen3 reply into thinking and answer at ``<think>``/``</think>``.

    Tags can arrive cut across pieces, so a tail that could be the start of a tag is held back until the next
    piece decides it. ``in_thinking`` starts True when the prompt already opened the think block.
    """

    def __init__(self, in_thinking: bool = False) -> None:
        self.in_thinking = in_thinking
        self._pending = ""
        self._at_start = True  # only leading whitespace seen so far: a <think> here opens the block

    def feed(self, text: str) -> list[Delta]:
        """Deltas for ``text`` (possibly none yet)."""
        self._pending += text
        out: list[Delta] = []
        while self._pending:
            tag = THINK_CLOSE if self.in_thinking else THINK_OPEN
            index = self._pending.find(tag)
            if index >= 0:
                before, self._pending = self._pending[:index], self._pending[index + len(tag):]
                if self.in_thinking:
                    self._emit(out, before)
                    self.in_thinking = False
                    self._pending = self._pending.lstrip()
                    self._at_start = True
                elif self._at_start and not before.strip():
                    self.in_thinking = True
                else:
                    self._emit(out, before + tag)  # a <think> in the middle of the answer is just text
                continue
            keep = _partial_tag(self._pending, tag)
            head, self._pending = self._pending[:len(self._pending) - keep], self._pending[len(self._pending) - keep:]
            self._emit(out, head)
            break
        return out

    def close(self) -> list[Delta]:
        """Whatever was held back."""
        out: list[Delta] = []
        self._emit(out, self._pending)
        self._pending = ""
        return out

    def _emit(self, out: list[Delta], text: str) -> None:
        if not text:
            return
        if self.in_thinking:
            out.append(ThinkingDelta(text))
            return
        if self._at_start:
            text = text.lstrip()
            if not text:
                return
            self._at_start = False
        out.append(AnswerDelta(text))


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
