"""A Qwen3 chat model in-process with transformers, for Hugging Face Spaces and offline use. Loads lazily, once, and
generates through ``rag.models.accel`` (a lent GPU under ZeroGPU)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterator

from rag.core.errors import GenerationError, MissingDependency, ModelNotFound, WrongModelKind
from rag.models.accel import gpu_stream
from rag.models.chat import FALLBACK_CONTEXT, THINK_OPEN, ChatModel, Delta, Messages, ThinkSplitter
from rag.models.hub import hub_cached, is_ollama_tag
from rag.models.providers.local_runtime import auto_device, resolve_dtype
from rag.text.tokencount import estimate_tokens

log = logging.getLogger(__name__)


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
