"""Ollama over HTTP: embeddings from ``/api/embed``, streamed chat from ``/api/chat``, and Qwen3-Reranker scored
through ``/api/generate``'s log-probabilities, with the ollama client's errors turned into messages a user can act
on."""

from __future__ import annotations

import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from rag.core.config import Settings
from rag.core.errors import BackendUnavailable, GenerationError, ModelError, ModelNotFound, WrongModelKind
from rag.core.events import AnswerDelta, ThinkingDelta
from rag.models.chat import FALLBACK_CONTEXT, ChatModel, Delta, Messages
from rag.models.embedder import Embedder, query_prompt
from rag.models.reranker import clip, format_prompt

log = logging.getLogger(__name__)


class OllamaEmbedder(Embedder):
    """Embeddings from an Ollama server's ``/api/embed``, batched, with ``num_ctx``, ``dimensions`` and keep-alive."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import ollama

        self.model_id = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.dimensions_setting = settings.embed_dimensions
        self.host = settings.embed_host
        self.has_token = bool(settings.ollama_token)
        self.instruction = settings.query_instruction
        self.keep_alive = settings.keep_alive
        self.num_ctx = settings.effective_embed_num_ctx
        self._client = client or ollama.Client(host=self.host, timeout=600, headers=settings.ollama_headers)

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        inputs = [query_prompt(self.instruction, t) if query else t for t in texts]
        with ollama_errors(self.host, self._translate):
            response = self._client.embed(model=self.model_id, input=inputs, truncate=True,
                                          dimensions=self.dimensions_setting, keep_alive=self.keep_alive,
                                          options={"num_ctx": self.num_ctx})
        vectors = [list(v) for v in response.embeddings]
        if len(vectors) != len(inputs):
            raise ModelError(f"Ollama returned {len(vectors)} embeddings for {len(inputs)} texts.")
        if vectors and self.dimensions_setting and len(vectors[0]) != self.dimensions_setting:
            # Ollama ignores `dimensions` at or above the model's size instead of refusing it.
            raise ModelError(f"'{self.model_id}' makes {len(vectors[0])}-dimensional vectors, so "
                             f"RAG_EMBED_DIMENSIONS={self.dimensions_setting} can't apply. Choose a smaller value "
                             "or leave it empty.")
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors

    @property
    def describe(self) -> str:
        return f"{self.model_id} via Ollama at {self.host}"

    def check(self) -> None:
        """Ask the server about the model: reachable, installed, and able to embed."""
        with ollama_errors(self.host, self._translate):
            info = self._client.show(self.model_id)
        capabilities = list(getattr(info, "capabilities", None) or [])
        if capabilities and "embedding" not in capabilities:
            raise WrongModelKind(f"'{self.model_id}' is not an embedding model. Set RAG_EMBED_MODEL to one, "
                                 "for example qwen3-embedding:0.6b.")

    def _translate(self, exc: Any) -> ModelError:
        message = str(getattr(exc, "error", exc))
        if exc.status_code in (401, 403):
            return access_denied(self.host, exc.status_code, self.has_token)
        if exc.status_code == 404 or "not found" in message.lower():
            return ModelNotFound(f"The embedding model '{self.model_id}' is not installed in Ollama at {self.host}. "
                                 f"Run `ollama pull {self.model_id}`, or set RAG_EMBED_MODEL to a model you have.")
        if "support" in message.lower() and "embed" in message.lower():
            return WrongModelKind(f"'{self.model_id}' is not an embedding model. Set RAG_EMBED_MODEL to one, "
                                  "for example qwen3-embedding:0.6b.")
        return ModelError(f"Ollama could not embed with '{self.model_id}': {message}")


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


# Ollama returns log-probabilities from this version on (``logprobs`` / ``top_logprobs`` on /api/generate).
LOGPROBS_SINCE = (0, 12, 11)
_TOP_LOGPROBS = 20
_MISSING_LOGPROB = -30.0  # "yes" or "no" not among the top tokens: taken as all but impossible


class OllamaReranker:
    """Qwen3-Reranker pulled into Ollama, scored by the log-probabilities of its first generated token.

    Each candidate's official prompt goes raw to ``/api/generate`` with one token to predict and ``logprobs`` +
    ``top_logprobs``; the score is softmax over the "yes"/"no" log-probabilities (a missing one counts as very
    unlikely). Candidates go ``concurrency`` at a time, to fill Ollama's parallel slots (``OLLAMA_NUM_PARALLEL``).
    """

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import ollama

        self.model_name = settings.rerank_ollama_model
        self.host = settings.rerank_host
        self.headers = settings.ollama_headers
        self.has_token = bool(settings.ollama_token)
        self.instruction = settings.rerank_instruction
        self.max_passage_tokens = settings.rerank_max_tokens
        self.concurrency = settings.rerank_concurrency
        self.keep_alive = settings.keep_alive
        # Room for the prompt: the fixed parts, a long question and a passage at its cap (Ollama cuts silently).
        self.num_ctx = max(2048, 2 * settings.rerank_max_tokens + 1024)
        self.probe_timeout = settings.ollama_probe_timeout
        self._client = client or ollama.Client(host=self.host, timeout=600, headers=self.headers)

    @property
    def describe(self) -> str:
        return f"{self.model_name} via Ollama at {self.host}"

    def check(self) -> None:
        """The server is new enough to return log-probabilities and has the tag, as a model that generates."""
        version = ollama_version(self.host, self.headers, max(self.probe_timeout, 5.0))
        if version is not None and version < LOGPROBS_SINCE:
            raise BackendUnavailable(self._too_old(".".join(map(str, version))))
        with ollama_errors(self.host, self._translate):
            info = self._client.show(self.model_name)
        capabilities = list(getattr(info, "capabilities", None) or [])
        if capabilities and "completion" not in capabilities:
            raise WrongModelKind(self._wrong_kind())

    takes_instruction = True  # ``score(..., instruction=)``: another task for one call (see rag.models.reranker)

    def score(self, query: str, passages: Sequence[str], instruction: str | None = None) -> list[float]:
        """Relevance of each passage to ``query`` in 0..1, in input order; ``instruction`` replaces the reranker's
        own task for this call only."""
        if not passages:
            return []
        task = instruction or self.instruction
        prompts = [format_prompt(task, query, p) for p in clip(passages, self.max_passage_tokens, query)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self._one, prompts))

    def _one(self, prompt: str) -> float:
        with ollama_errors(self.host, self._translate):
            response = self._client.generate(model=self.model_name, prompt=prompt, raw=True, logprobs=True,
                                             top_logprobs=_TOP_LOGPROBS, keep_alive=self.keep_alive,
                                             options={"num_predict": 1, "temperature": 0, "num_ctx": self.num_ctx})
        if not response.logprobs:
            raise BackendUnavailable(self._too_old("older than 0.12.11"))
        first = response.logprobs[0]
        tops = [(first.token, first.logprob)] + [(t.token, t.logprob) for t in first.top_logprobs or []]
        return yes_probability(tops)

    def _too_old(self, version: str) -> str:
        return (f"Ollama at {self.host} ({version}) does not return log-probabilities, which reranking inside it "
                "needs: update Ollama to 0.12.11 or later, or set RAG_RERANK_BACKEND=local.")

    def _wrong_kind(self) -> str:
        return (f"'{self.model_name}' can't generate text, so it can't rerank. Set RAG_RERANK_OLLAMA_MODEL to a "
                "Qwen3-Reranker tag, for example dengcao/Qwen3-Reranker-0.6B:Q8_0.")

    def _translate(self, exc: Any) -> ModelError:
        message = str(getattr(exc, "error", exc))
        lower = message.lower()
        if exc.status_code in (401, 403):
            return access_denied(self.host, exc.status_code, self.has_token)
        if exc.status_code == 404 or "not found" in lower:
            return ModelNotFound(f"The reranker '{self.model_name}' is not pulled into Ollama at {self.host}. Run "
                                 f"`ollama pull {self.model_name}`, or set RAG_RERANK_OLLAMA_MODEL to a "
                                 "Qwen3-Reranker tag you have.")
        if "does not support" in lower:
            return WrongModelKind(self._wrong_kind())
        return ModelError(f"Ollama could not rerank with '{self.model_name}': {message}")


def yes_probability(tokens: Sequence[tuple[str, float]]) -> float:
    """softmax([no, yes])[yes] from (token, log-probability) pairs of the first generated token; a missing "yes"
    or "no" counts as very unlikely."""
    best = {"yes": _MISSING_LOGPROB, "no": _MISSING_LOGPROB}
    for token, logprob in tokens:
        if token in best:
            best[token] = max(best[token], logprob)
    return 1.0 / (1.0 + math.exp(best["no"] - best["yes"]))


def ollama_version(host: str, headers: dict[str, str], timeout: float) -> tuple[int, ...] | None:
    """The server's version from ``/api/version`` as numbers (None when it can't be read; the calls that follow
    say why)."""
    import httpx

    try:
        response = httpx.get(f"{host}/api/version", headers=headers, timeout=timeout)
        text = str(response.json().get("version", ""))
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    numbers = re.findall(r"\d+", text.split("-")[0])[:3]
    return tuple(int(n) for n in numbers) if numbers else None


@contextmanager
def ollama_errors(host: str, translate: Callable[[Any], ModelError]) -> Iterator[None]:
    """Turn the ollama client's errors into ModelErrors a user can act on: a connection failure says how to start
    Ollama at ``host``; an error the server sent goes through ``translate``."""
    import httpx
    import ollama

    try:
        yield
    except (ConnectionError, httpx.TransportError) as exc:
        raise BackendUnavailable(unreachable_message(host)) from exc
    except ollama.ResponseError as exc:
        raise translate(exc) from exc


def access_denied(host: str, status: int, has_token: bool) -> ModelError:
    """The error for an Ollama server (or the proxy in front of it) that refuses our credentials."""
    if has_token:
        return BackendUnavailable(f"Ollama at {host} refused the token in RAG_OLLAMA_TOKEN (HTTP {status}). Set "
                                  "RAG_OLLAMA_TOKEN to the token the server expects.")
    return BackendUnavailable(f"Ollama at {host} asks for a token (HTTP {status}). Set RAG_OLLAMA_TOKEN to the "
                              "server's bearer token.")


def unreachable_message(host: str) -> str:
    """What to tell a user whose Ollama server can't be reached."""
    return (f"Can't reach Ollama at {host}. Start it with `ollama serve` (or set OLLAMA_HOST to the address "
            "where it runs).")
