"""Chat models: Qwen3 through Ollama (default) or in-process with transformers, streamed as typed deltas.

``stream`` yields ``ThinkingDelta`` and ``AnswerDelta`` events, so reasoning never mixes with the answer;
``complete`` is a short non-thinking call (used to rewrite follow-up questions).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Any, Iterator, Sequence

from rag.accel import gpu_stream
from rag.backends import hub_cached, is_ollama_tag
from rag.config import Settings
from rag.embeddings import access_denied, ollama_errors, unreachable_message
from rag.errors import (
    BackendUnavailable,
    GenerationError,
    MissingDependency,
    ModelError,
    ModelNotFound,
    WrongModelKind,
)
from rag.events import AnswerDelta, ThinkingDelta
from rag.tokencount import estimate_tokens

log = logging.getLogger(__name__)

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


class OllamaChat(ChatModel):
    """Qwen3 (or any chat model) served by Ollama's ``/api/chat``, streamed with thinking kept apart."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import ollama

        self.model_id = settings.chat_model
        self.host = settings.chat_host
        self.has_token = bool(settings.ollama_token)
        self.keep_alive = settings.keep_alive
        self._client = client or ollama.Client(host=self.host, timeout=600, headers=settings.ollama_headers)
        self._context: int | None = None
        self._no_think = False  # set once the model says it can't think

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        options: dict[str, Any] = {}
        if num_ctx:
            options["num_ctx"] = int(num_ctx)
        if max_tokens:
            options["num_predict"] = int(max_tokens)
        use_think = think and not self._no_think
        try:
            yield from self._stream(list(messages), use_think, options)
        except _ThinkingUnsupported:
            self._no_think = True
            log.info("'%s' can't think; answering without thinking", self.model_id)
            yield from self._stream(list(messages), False, options)

    def _stream(self, messages: list[dict[str, str]], think: bool, options: dict[str, Any]) -> Iterator[Delta]:
        import httpx
        import ollama

        started = False
        try:
            for part in self._client.chat(model=self.model_id, messages=messages, stream=True, think=think,
                                          options=options or None, keep_alive=self.keep_alive):
                message = part.message
                if message.thinking:
                    started = True
                    yield ThinkingDelta(message.thinking)
                if message.content:
                    started = True
                    yield AnswerDelta(message.content)
        except (ConnectionError, httpx.TransportError) as exc:
            if started:  # the server went away mid-answer: what was streamed stays
                raise GenerationError(f"the connection to Ollama at {self.host} was lost ({exc}).") from exc
            raise BackendUnavailable(unreachable_message(self.host)) from exc
        except ollama.ResponseError as exc:
            error = self._translate(exc)
            if started and not isinstance(error, GenerationError):
                error = GenerationError(str(error))
            raise error from exc

    def complete(self, messages: Messages, *, max_tokens: int = 256, num_ctx: int | None = None) -> str:
        options: dict[str, Any] = {"num_predict": int(max_tokens)}
        if num_ctx:
            options["num_ctx"] = int(num_ctx)
        try:
            with ollama_errors(self.host, self._translate):
                response = self._client.chat(model=self.model_id, messages=list(messages), stream=False,
                                             think=False if not self._no_think else None, options=options,
                                             keep_alive=self.keep_alive)
        except _ThinkingUnsupported:
            self._no_think = True
            return self.complete(messages, max_tokens=max_tokens, num_ctx=num_ctx)
        return response.message.content or ""

    @property
    def describe(self) -> str:
        return f"{self.model_id} via Ollama at {self.host}"

    def context_length(self) -> int:
        """The model's context length from ``/api/show`` (cached; 8192 when the server doesn't say)."""
        if self._context is None:
            info = self._show()
            lengths = [v for k, v in (info.modelinfo or {}).items() if k.endswith(".context_length")]
            self._context = int(lengths[0]) if lengths else FALLBACK_CONTEXT
        return self._context

    def check(self) -> None:
        """Raise BackendUnavailable / ModelNotFound / WrongModelKind with the command that fixes it."""
        info = self._show()
        capabilities = list(getattr(info, "capabilities", None) or [])
        if capabilities and "completion" not in capabilities:
            raise WrongModelKind(f"'{self.model_id}' can't chat (it is an embedding model). Set RAG_CHAT_MODEL "
                                 "to a chat model, for example qwen3:8b.")

    def _show(self) -> Any:
        with ollama_errors(self.host, self._translate):
            return self._client.show(self.model_id)

    def _translate(self, exc: Any) -> ModelError:
        message = str(getattr(exc, "error", exc))
        lower = message.lower()
        if "does not support thinking" in lower:
            return _ThinkingUnsupported(message)
        if exc.status_code in (401, 403):
            return access_denied(self.host, exc.status_code, self.has_token)
        if exc.status_code == 404 or "not found" in lower:
            return ModelNotFound(f"The chat model '{self.model_id}' is not installed in Ollama at {self.host}. "
                                 f"Run `ollama pull {self.model_id}`, or set RAG_CHAT_MODEL to a model you have.")
        if "does not support chat" in lower or "does not support generate" in lower:
            return WrongModelKind(f"'{self.model_id}' can't chat (it is an embedding model). Set RAG_CHAT_MODEL "
                                  "to a chat model, for example qwen3:8b.")
        if exc.status_code == -1:  # an {"error": ...} line in the middle of the stream
            return GenerationError(f"Ollama reported an error: {message}")
        return ModelError(f"Ollama could not answer with '{self.model_id}': {message}")


class _ThinkingUnsupported(ModelError):
    """The model has no thinking mode; the call is retried without it."""


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


class TransformersChat(ChatModel):
    """A Qwen3 chat model run in-process with transformers (for Spaces and offline use); loaded lazily.

    Uses the model's chat template with ``enable_thinking``, streams with ``TextIteratorStreamer`` and splits
    ``<think>`` out. Generation is serialised (one model, one request at a time); closing the stream stops it.
    """

    def __init__(self, model_id: str, device: str | None = None, dtype: str = "auto", gpu_seconds: int = 90) -> None:
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.gpu_seconds = gpu_seconds
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (the first answer otherwise does); downloads it on first use."""
        self._load()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                if is_ollama_tag(self.model_id):
                    raise WrongModelKind(f"'{self.model_id}' is an Ollama tag, which transformers can't load. Set "
                                         "RAG_LOCAL_CHAT_MODEL to a Hugging Face id (e.g. Qwen/Qwen3-0.6B) or a "
                                         "local folder, or start Ollama to use its models.")
                try:
                    import torch
                    from transformers import AutoModelForCausalLM, AutoTokenizer
                except ImportError as exc:
                    raise MissingDependency("The in-process chat model needs transformers and torch: "
                                            "pip install torch==2.13.0 transformers") from exc
                from rag.rerank import auto_device, resolve_dtype

                device = self.device or auto_device(torch)
                log.info("%s the chat model %s …", "Loading" if hub_cached(self.model_id) else "Downloading",
                         self.model_id)
                try:
                    tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                    model = AutoModelForCausalLM.from_pretrained(
                        self.model_id, dtype=resolve_dtype(torch, self.dtype, device))
                except (OSError, ValueError) as exc:
                    raise ModelNotFound(f"Can't load the chat model '{self.model_id}': {str(exc).rstrip('.')}. Set "
                                        "RAG_LOCAL_CHAT_MODEL (or RAG_CHAT_MODEL with RAG_CHAT_BACKEND=transformers) "
                                        "to a transformers model id (e.g. Qwen/Qwen3-1.7B) or a local folder.") \
                        from exc
                self._model, self._tokenizer = model.to(device).eval(), tokenizer
                log.info("Loaded the chat model %s on %s", self.model_id, device)
            return self._model, self._tokenizer

    def context_length(self) -> int:
        model, _ = self._load()
        return int(getattr(model.config, "max_position_embeddings", FALLBACK_CONTEXT) or FALLBACK_CONTEXT)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            return estimate_tokens(text)
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def check(self) -> None:
        self._load()

    def prompt(self, messages: Messages, think: bool) -> str:
        """The prompt text the chat template makes (generation prompt included)."""
        _, tokenizer = self._load()
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                             enable_thinking=think)

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        text = self.prompt(messages, think)
        splitter = ThinkSplitter(in_thinking=text.rstrip().endswith(THINK_OPEN))
        pieces = gpu_stream(self, "_generate", text, think, num_ctx or self.context_length(), max_tokens or 1024,
                            seconds=self.gpu_seconds)
        try:
            for piece in pieces:
                yield from splitter.feed(piece)
            yield from splitter.close()
        finally:
            pieces.close()  # stops the generation when the consumer stops early

    def _generate(self, text: str, think: bool, limit: int, max_tokens: int) -> Iterator[str]:
        """Generate from the prompt ``text``, yielding decoded pieces (on a lent GPU under ZeroGPU)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self._load()
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        if inputs["input_ids"].shape[1] > limit:  # keep the end: the question and the sources nearest it
            inputs = {k: v[:, -limit:] for k, v in inputs.items()}
        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._generate_lock, torch.inference_mode():
                    model.generate(**inputs, streamer=streamer, max_new_tokens=max_tokens,
                                   do_sample=True, temperature=0.6 if think else 0.7, top_p=0.95 if think else 0.8,
                                   top_k=20, stopping_criteria=StoppingCriteriaList([_Stop()]),
                                   pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                errors.append(exc)
                streamer.on_finalized_text("", stream_end=True)

        thread = threading.Thread(target=run, name="chat-generate", daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            stop.set()
            thread.join(timeout=60)
        if errors:
            raise GenerationError(f"the in-process model failed: {errors[0]}") from errors[0]


def make_chat_model(settings: Settings) -> ChatModel:
    """The chat model the settings ask for."""
    if settings.chat_backend == "transformers":
        return TransformersChat(settings.chat_model, gpu_seconds=settings.gpu_seconds)
    return OllamaChat(settings)
