"""OpenAI-compatible servers over HTTP: embeddings (``/embeddings``), streamed chat (``/chat/completions``), and
``/rerank`` services (the Jina/Cohere shape and Text Embeddings Inference's).

vLLM, llama.cpp's server, LM Studio, TEI, Infinity and hosted APIs (DashScope's compatible mode, Novita, Morph,
Jina, Cohere) each speak some of these. A model is reached through one ``Service``: its base URL, its key, and one
retry policy (HTTP 429 and 5xx and dropped connections are retried with exponential backoff, honouring
``Retry-After``, then fail with a message naming the setting to change). The key goes into the ``Authorization``
header only and is scrubbed from anything the server sends back, so it never reaches a log line, an error or the
status badge.

Plain httpx rather than the ``openai`` package: httpx is already installed (the ollama client is built on it), so
nothing is added; the three protocols here share one small request path and one retry policy, and ``/rerank`` is not
in the openai package at all; and the fields that servers really send beyond the OpenAI schema are read directly:
``delta.reasoning_content`` (vLLM before 0.19.1, llama.cpp, DashScope) or ``delta.reasoning`` (newer vLLM), an
``error`` event in the middle of a stream, a plain JSON reply to a streamed request, ``max_model_len`` in
``/models``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from rag.config import Settings, env_name
from rag.embeddings import Embedder, query_prompt
from rag.errors import BackendUnavailable, GenerationError, ModelError, ModelNotFound, WrongModelKind
from rag.events import ThinkingDelta
from rag.llm import FALLBACK_CONTEXT, ChatModel, Delta, Messages, ThinkSplitter
from rag.rerank import clip, document_part, query_part

log = logging.getLogger(__name__)

_MAX_DELAY = 8.0  # seconds: the longest backoff between two tries (a server's Retry-After may ask for up to 30)
_DETAIL_CHARS = 300  # of a server's error text, quoted in our message
RECHECK_SECONDS = 300.0  # a /rerank service that answered is asked again by the status check after this long


class Refused(ModelError):
    """The server turned the request down (a 4xx other than a missing key or model); ``status`` and ``detail``
    say how, so a caller can adapt the request and try once more."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass
class Service:
    """One remote model service: its base URL and key, the settings that name them, and how calls are retried.

    ``role`` words the messages ("the embedding server at …"); ``hint`` is added to a refusal that may come from
    sending too much at once.
    """

    role: str
    base_url: str
    api_key: str | None
    url_setting: str
    key_setting: str
    model_setting: str
    retries: int = 4
    timeout: float = 120.0
    backoff: float = 0.5
    hint: str = ""
    sleep: Callable[[float], None] = time.sleep
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                                    headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, role: str, url: str, key: str, model: str, hint: str = "") -> Service:
        """The service whose base URL, key and model are the settings fields ``url``, ``key`` and ``model``."""
        return cls(role, getattr(settings, url) or "", getattr(settings, key), env_name(url), env_name(key),
                   env_name(model), retries=settings.http_retries, timeout=settings.http_timeout, hint=hint)

    @property
    def where(self) -> str:
        """The base URL, for messages (keys are never part of it)."""
        return self.base_url

    # --- requests -----------------------------------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any], model: str = "") -> Any:
        """POST ``body`` as JSON and return the decoded JSON reply (retried as the class docstring says)."""
        response = self._send(lambda: self._client.post(self.base_url + path, json=body), path, model)
        try:
            return response.json()
        except ValueError as exc:
            raise ModelError(f"The {self.role} server at {self.where} sent a reply that is not JSON "
                             f"(HTTP {response.status_code}).") from exc

    @contextmanager
    def stream(self, path: str, body: dict[str, Any], model: str = "") -> Iterator[Any]:
        """POST ``body`` and hand over the open streamed response; only failures before the first byte are
        retried (after that, what was streamed would be repeated)."""
        def open_stream() -> Any:
            request = self._client.build_request("POST", self.base_url + path, json=body)
            return self._client.send(request, stream=True)

        response = self._send(open_stream, path, model)
        try:
            yield response
        finally:
            response.close()

    def models(self) -> list[dict[str, Any]] | None:
        """The server's ``/models`` entries (one try, no retries), or None when it has no such list; a server
        that can't be reached or refuses the key raises."""
        response = self._send(lambda: self._client.get(self.base_url + "/models"), "/models", "", retries=0,
                              missing_ok=True)
        if response is None:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        entries = data.get("data") if isinstance(data, dict) else data
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None

    def _send(self, call: Callable[[], Any], path: str, model: str, retries: int | None = None,
              missing_ok: bool = False) -> Any:
        """Make the request with retries; return the response (status < 400), or raise a ModelError that says
        what to change. With ``missing_ok``, a 404/405 returns None instead."""
        import httpx

        retries = self.retries if retries is None else retries
        waited, attempt = 0.0, 0
        while True:
            retry_after: float | None = None
            try:
                response = call()
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"The {self.role} server at {self.where} did not answer within "
                                         f"{self.timeout:g} s (RAG_HTTP_TIMEOUT).") from exc
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise BackendUnavailable(self.unreachable(exc)) from exc
                why = type(exc).__name__
            else:
                if response.status_code < 400:
                    return response
                status = response.status_code
                detail = self._detail(response)
                if missing_ok and status in (404, 405):
                    return None
                if not (status == 429 or status == 408 or status >= 500) or attempt >= retries:
                    raise self._refusal(status, detail, path, model, attempt, waited)
                why = f"HTTP {status}"
                retry_after = _retry_after(response)
            delay = retry_after if retry_after is not None else \
                min(_MAX_DELAY, self.backoff * 2 ** attempt) * (1 + 0.25 * random.random())
            log.info("The %s server at %s: %s; trying again in %.1f s (%d of %d)", self.role, self.where, why,
                     delay, attempt + 1, retries)
            self.sleep(delay)
            waited += delay
            attempt += 1

    # --- messages -----------------------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the key blanked out (a server may echo what it was sent)."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def _detail(self, response: Any) -> str:
        """The server's own words about an error response, short and without the key."""
        try:
            response.read()
        finally:
            response.close()  # a streamed response holds its connection until closed
        text = response.text
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error", data.get("detail", data.get("message")))
            if isinstance(error, dict):
                error = error.get("message") or error
            text = error if isinstance(error, str) else json.dumps(error) if error is not None else text
        text = " ".join(self.scrub(str(text)).split())
        return text[:_DETAIL_CHARS] + ("…" if len(text) > _DETAIL_CHARS else "")

    def unreachable(self, exc: Exception) -> str:
        """What to tell a user whose server can't be reached."""
        return (f"Can't reach the {self.role} server at {self.where} ({type(exc).__name__}). Check that it is "
                f"running and that {self.url_setting} is its base URL.")

    def _refusal(self, status: int, detail: str, path: str, model: str, attempt: int, waited: float) -> ModelError:
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            if self.api_key:
                return BackendUnavailable(f"The {self.role} server at {self.where} refused the key in "
                                          f"{self.key_setting} (HTTP {status}{said}). Set {self.key_setting} to a "
                                          "key it accepts.")
            return BackendUnavailable(f"The {self.role} server at {self.where} asks for a key (HTTP {status}"
                                      f"{said}). Set {self.key_setting}.")
        lower = detail.lower()
        if model and "model" in lower and (status == 404 or "not found" in lower or "does not exist" in lower
                                           or "not exist" in lower):
            return ModelNotFound(f"The {self.role} server at {self.where} has no model '{model}' (HTTP {status}"
                                 f"{said}). Set {self.model_setting} to a model it serves.")
        if status in (404, 405):
            return BackendUnavailable(f"{self.where}{path} does not exist (HTTP {status}). Check {self.url_setting}: "
                                      "it is the address the API lives under, usually ending in /v1.")
        if status == 429 or status == 408 or status >= 500:
            tries = f"{attempt + 1} time{'s' if attempt else ''}" + (f" over {waited:.0f} s" if attempt else "")
            hint = f" {self.hint}" if self.hint and status == 429 else ""
            return BackendUnavailable(f"The {self.role} server at {self.where} answered HTTP {status}{said} "
                                      f"({tries}). Try again later.{hint}")
        hint = f" {self.hint}" if self.hint and status in (400, 413, 422) else ""
        return Refused(f"The {self.role} server at {self.where} refused the request (HTTP {status}{said}).{hint}",
                       status, detail)


def _retry_after(response: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (capped at 30), when it gives a number."""
    try:
        return min(30.0, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None


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


# --- /rerank ----------------------------------------------------------------------------------------------------
class HttpReranker:
    """Scores passages with a ``/rerank`` service, in batches of ``batch_size`` sent ``concurrency`` at a time.

    Speaks the Jina/Cohere shape (``model, query, documents, top_n`` → ``results[].index/relevance_score``: vLLM,
    ``llama-server --reranking``, Infinity, Jina, Cohere, Novita, Morph) or TEI's (``query, texts`` →
    ``[{index, score}]``); ``api="auto"`` starts with the first and switches for good when the server asks for
    ``texts``. Scores come back in 0-1: when a server returns raw logits (some TEI and llama.cpp setups), which shows
    as a score outside [0, 1], a sigmoid maps them, for that reply and every later one.
    """

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.model_name = settings.rerank_model
        self.instruction = settings.rerank_instruction
        self.max_passage_tokens = settings.rerank_max_tokens
        self.batch_size = settings.rerank_batch_size
        self.concurrency = settings.rerank_concurrency
        self.api = settings.rerank_api
        self.qwen3_prompt = settings.rerank_prompt == "qwen3"
        self.service = service or Service.from_settings(settings, "rerank", "rerank_url", "rerank_api_key",
                                                        "rerank_model")
        self._tei = self.api == "tei"
        self._logits = False
        self._answered_at: float | None = None  # when a request last succeeded (hosted services bill per call)
        self._lock = threading.Lock()

    @property
    def describe(self) -> str:
        return f"{self.model_name} at {self.service.where}/rerank"

    def check(self) -> None:
        """One tiny request: reachable, key accepted, model served (skipped for RECHECK_SECONDS after a request
        succeeded; a failed one clears that)."""
        if self._answered_at is None or time.monotonic() - self._answered_at >= RECHECK_SECONDS:
            self.score("ping", ["pong"])

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query`` in 0..1, in input order."""
        if not passages:
            return []
        texts = clip(passages, self.max_passage_tokens)
        if self.qwen3_prompt:
            query, texts = query_part(self.instruction, query), [document_part(t) for t in texts]
        batches = [list(range(i, min(i + self.batch_size, len(texts)))) for i in range(0, len(texts), self.batch_size)]
        try:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
                raw = list(pool.map(lambda b: self._batch(query, [texts[i] for i in b]), batches))
        except ModelError:
            self._answered_at = None
            raise
        self._answered_at = time.monotonic()
        scores = [s for part in raw for s in part]
        with self._lock:
            if not self._logits and any(s < 0.0 or s > 1.0 for s in scores):
                log.info("The rerank server at %s returns raw scores; mapping them to 0-1 with a sigmoid",
                         self.service.where)
                self._logits = True
            logits = self._logits
        return [1.0 / (1.0 + math.exp(-s)) if logits else s for s in scores]

    def _batch(self, query: str, texts: list[str]) -> list[float]:
        """Raw scores of one batch, in its order."""
        if not self._tei:
            body = {"model": self.model_name, "query": query, "documents": texts, "top_n": len(texts)}
            try:
                return self._parse(self.service.post("/rerank", body, model=self.model_name), len(texts))
            except Refused as exc:
                if self.api != "auto" or "texts" not in exc.detail:
                    raise
                log.info("The rerank server at %s asks for TEI's shape; switching to it", self.service.where)
                self._tei = True
        body = {"query": query, "texts": texts, "truncate": True}
        return self._parse(self.service.post("/rerank", body, model=self.model_name), len(texts))

    def _parse(self, data: Any, count: int) -> list[float]:
        """Scores in input order from either reply shape."""
        rows = data if isinstance(data, list) else data.get("results", data.get("data")) \
            if isinstance(data, dict) else None
        scores: dict[int, float] = {}
        for row in rows if isinstance(rows, list) else []:
            value = row.get("relevance_score", row.get("score")) if isinstance(row, dict) else None
            if isinstance(row, dict) and isinstance(row.get("index"), int) and isinstance(value, (int, float)):
                scores[row["index"]] = float(value)
        if sorted(scores) != list(range(count)):
            raise ModelError(f"The rerank server at {self.service.where} returned scores for {len(scores)} of "
                             f"{count} passages.")
        return [scores[i] for i in range(count)]
