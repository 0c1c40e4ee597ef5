"""OpenAI-compatible servers over HTTP: embeddings (``/embeddings``) and streamed chat (``/chat/completions``).

vLLM, llama.cpp's server, LM Studio and hosted APIs (DashScope's compatible mode, Novita, Morph) speak these. Each
model is reached through one ``Service`` (``rag.models.providers.http``: base URL, key, retries). The fields that
servers really send beyond the OpenAI schema are read directly: ``delta.reasoning_content`` (vLLM before 0.19.1,
llama.cpp, DashScope) or ``delta.reasoning`` (newer vLLM), an ``error`` event in the middle of a stream, a plain JSON
reply to a streamed request, ``max_model_len`` in ``/models``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from typing import Any, Iterator, Sequence

from rag.core.config import Settings
from rag.core.errors import BackendUnavailable, GenerationError, ModelError, ModelNotFound, WrongModelKind
from rag.core.events import ThinkingDelta
from rag.models.chat import FALLBACK_CONTEXT, ChatModel, Delta, Messages, ThinkSplitter
from rag.models.embedder import Embedder, query_prompt
from rag.models.providers.http import Refused, Service

log = logging.getLogger(__name__)


def _listed(entries: list[dict[str, Any]] | None, model: str) -> bool:
    """Whether ``model`` is among the served models (False when the server keeps no list)."""
    return any(e.get("id") == model for e in entries or [])


def _names(entries: list[dict[str, Any]] | None) -> str:
    names = [str(e.get("id")) for e in entries or [] if e.get("id")]
    return ", ".join(names[:8]) + (" …" if len(names) > 8 else "")


# --- embeddings -------------------------------------------------------------------------------------------------
class OpenAIEmbedder(Embedder):
    """Embeddings from an OpenAI-compatible ``/embeddings``: the Qwen3 query instruction added here, ``dimensions``
    sent when set (and applied here, Matryoshka-style, when the server ignores or refuses it, as vLLM does for
    models whose config doesn't declare Matryoshka support), ``batch_size`` texts a call."""

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.model_id = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.dimensions_setting = settings.embed_dimensions
        self.instruction = settings.query_instruction
        self.service = service or Service.from_settings(
            settings, "embedding", "embed_base_url", "embed_api_key", "embed_model",
            hint="If it takes fewer texts per request, lower RAG_EMBED_BATCH_SIZE (DashScope takes 10).")
        self._name_ok = False  # set once the server embedded with our model name although /models doesn't list it
        self._send_dimensions = bool(self.dimensions_setting)  # until the server refuses the field
        self._sliced_logged = False

    @property
    def describe(self) -> str:
        return f"{self.model_id} at {self.service.where}"

    def check(self) -> None:
        """Reachable, the key accepted, and the model served: by its /models list, or else by one tiny embedding
        (once: a server that ignores model names, as llama.cpp's, or keeps no list, passes from then on)."""
        entries = self.service.models()
        if self._name_ok or _listed(entries, self.model_id):
            return
        try:
            self._embed(["ping"], query=False)
        except ModelNotFound as exc:
            raise ModelNotFound(f"{exc} It serves: {_names(entries)}.") from exc
        self._name_ok = True

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        inputs = [query_prompt(self.instruction, t) if query else t for t in texts]
        body: dict[str, Any] = {"model": self.model_id, "input": inputs, "encoding_format": "float"}
        try:
            data = self.service.post("/embeddings", body | self._dimensions(), model=self.model_id)
        except Refused as exc:
            if not self._send_dimensions or not any(w in exc.detail.lower() for w in ("dimension", "matryoshka")):
                raise
            log.info("The embedding server refuses dimensions=%d (%s); slicing the vectors here instead",
                     self.dimensions_setting, exc.detail)
            self._send_dimensions = False
            data = self.service.post("/embeddings", body, model=self.model_id)
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list) or len(rows) != len(inputs):
            count = len(rows) if isinstance(rows, list) else "no"
            raise ModelError(f"The embedding server at {self.service.where} returned {count} embeddings for "
                             f"{len(inputs)} texts.")
        rows = sorted(rows, key=lambda r: r.get("index", 0))
        vectors = [self._fit(self._vector(r.get("embedding"))) for r in rows]
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors

    def _vector(self, raw: Any) -> list[float]:
        """One embedding as floats (a list, or base64 of little-endian float32 from a server that sends that
        anyway)."""
        if isinstance(raw, str):
            import numpy as np

            return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(float).tolist()
        if isinstance(raw, list) and raw and isinstance(raw[0], list):
            # llama.cpp servers do this for a model whose GGUF names no pooling (a chat model, say).
            raise WrongModelKind(
                f"The embedding server at {self.service.where} returned one vector per token, not one per text: it "
                f"runs '{self.model_id}' without pooling. Serve an embedding model (its GGUF says how to pool), or "
                "set the pooling on the server: llama-server --pooling last (Qwen3-Embedding), or llama-cpp-python "
                "--kv_overrides ARCH.pooling_type=int:3 (3 = last token, 1 = mean).")
        if not isinstance(raw, list) or not all(isinstance(x, (int, float)) for x in raw):
            raise ModelError(f"The embedding server at {self.service.where} sent an embedding that is not a list "
                             "of numbers.")
        return [float(x) for x in raw]

    def _dimensions(self) -> dict[str, int]:
        return {"dimensions": self.dimensions_setting} if self._send_dimensions and self.dimensions_setting else {}

    def _fit(self, vector: list[float]) -> list[float]:
        """The vector at RAG_EMBED_DIMENSIONS: a server that ignored ``dimensions`` gets sliced and re-normalised
        here, as Ollama does (Qwen3-Embedding is trained for it)."""
        size = self.dimensions_setting
        if not size or len(vector) == size:
            return vector
        if len(vector) < size:
            raise ModelError(f"'{self.model_id}' makes {len(vector)}-dimensional vectors, so RAG_EMBED_DIMENSIONS="
                             f"{size} can't apply. Choose a smaller value or leave it empty.")
        if not self._sliced_logged:
            log.info("The embedding server ignored dimensions=%d; keeping the first %d of %d values", size, size,
                     len(vector))
            self._sliced_logged = True
        head = vector[:size]
        norm = math.sqrt(sum(x * x for x in head)) or 1.0
        return [x / norm for x in head]




# --- chat -------------------------------------------------------------------------------------------------------
_CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length", "context_window")


class OpenAIChat(ChatModel):
    """A chat model behind an OpenAI-compatible ``/chat/completions``, streamed, with Qwen3's reasoning kept apart
    whether it comes as ``delta.reasoning_content`` / ``delta.reasoning`` or as ``<think>`` inside the text.

    Qwen3's thinking switch is sent both ways servers read it (``chat_template_kwargs.enable_thinking`` for vLLM and
    llama.cpp, ``enable_thinking`` for DashScope); a server that refuses those fields gets requests without them.
    """

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.model_id = settings.chat_model
        self.service = service or Service.from_settings(settings, "chat", "chat_base_url", "chat_api_key",
                                                        "chat_model")
        self.context_setting = settings.chat_context_length
        self._context: int | None = None
        self._thinking_switch = True
        self._name_ok = False

    @property
    def describe(self) -> str:
        return f"{self.model_id} at {self.service.where}"

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        body: dict[str, Any] = {"model": self.model_id, "messages": list(messages), "stream": True}
        if max_tokens:
            body["max_tokens"] = int(max_tokens)
        if self._thinking_switch:
            switched = {**body, "chat_template_kwargs": {"enable_thinking": think}, "enable_thinking": think}
            try:
                yield from self._stream(switched)
                return
            except Refused as exc:
                if "enable_thinking" not in exc.detail and "chat_template_kwargs" not in exc.detail:
                    raise
                self._thinking_switch = False
                log.info("The chat server at %s takes no thinking switch; sending requests without it",
                         self.service.where)
        yield from self._stream(body)

    def _stream(self, body: dict[str, Any]) -> Iterator[Delta]:
        import httpx

        splitter = ThinkSplitter()
        started = False
        with self.service.stream("/chat/completions", body, model=self.model_id) as response:
            try:
                if "json" in response.headers.get("content-type", ""):  # the server did not stream
                    response.read()
                    pieces: Iterator[Any] = iter([response.json()])
                else:
                    pieces = _sse(response)
                for piece in pieces:
                    if not isinstance(piece, dict):
                        continue
                    if piece.get("error"):
                        raise GenerationError(f"the chat server at {self.service.where} reported an error: "
                                              f"{self.service.scrub(_error_text(piece['error']))}")
                    for choice in piece.get("choices") or []:
                        delta = choice.get("delta") or choice.get("message") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        if isinstance(reasoning, str) and reasoning:
                            started = True
                            yield ThinkingDelta(reasoning)
                        content = delta.get("content")
                        if isinstance(content, str) and content:
                            started = True
                            yield from splitter.feed(content)
            except httpx.TransportError as exc:
                if started:  # the server went away mid-answer: what was streamed stays
                    raise GenerationError(f"the connection to the chat server at {self.service.where} was lost "
                                          f"({type(exc).__name__}).") from exc
                raise BackendUnavailable(self.service.unreachable(exc)) from exc
        yield from splitter.close()

    def context_length(self) -> int:
        """RAG_CHAT_CONTEXT_LENGTH; else what the server's /models says (vLLM's ``max_model_len`` and the like);
        else 8192."""
        if self.context_setting:
            return self.context_setting
        if self._context is None:
            try:
                entries = self.service.models() or []
            except ModelError:
                return FALLBACK_CONTEXT  # check() reports it; try again next time
            mine = [e for e in entries if e.get("id") == self.model_id] or (entries if len(entries) == 1 else [])
            lengths = [int(e[k]) for e in mine for k in _CONTEXT_KEYS if isinstance(e.get(k), int) and e[k] > 0]
            self._context = lengths[0] if lengths else FALLBACK_CONTEXT
        return self._context

    def check(self) -> None:
        """Reachable, the key accepted, and the model served: by its /models list, or else by a one-token answer
        (once, as for embeddings)."""
        entries = self.service.models()
        if self._name_ok or _listed(entries, self.model_id):
            return
        try:
            self.complete([{"role": "user", "content": "ping"}], max_tokens=1)
        except ModelNotFound as exc:
            raise ModelNotFound(f"{exc} It serves: {_names(entries)}.") from exc
        self._name_ok = True


def _sse(response: Any) -> Iterator[Any]:
    """The JSON payloads of a server-sent-event stream, up to ``[DONE]``."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue  # a comment, an event name, or a blank line between events
        payload, data = "\n".join(data), []
        if payload.strip() == "[DONE]":
            return
        yield _json(payload)
    if data and "\n".join(data).strip() != "[DONE]":
        yield _json("\n".join(data))


def _json(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise GenerationError(f"the chat server sent something that is not JSON: {payload[:80]!r}") from exc


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
