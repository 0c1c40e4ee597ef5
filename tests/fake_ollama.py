"""A test double standing in for Ollama: a small Ollama-protocol HTTP server for the test suite.

It is not Ollama and runs no model. It speaks real HTTP on 127.0.0.1 so the real ``ollama`` Python
client (``ollama.Client(host=server.url)``) talks to it exactly as it would to ``ollama serve``:
``/api/embed``, ``/api/chat`` (streamed NDJSON or one JSON), ``/api/tags``, ``/api/show``,
``/api/version`` and ``/``, with the status codes and error texts real Ollama uses.

Its embeddings are hashed word unigrams and bigrams (see :func:`fake_embed`), so retrieval over them is
meaningful: a question shares words with the passage that answers it. Its chat model
(:func:`default_responder`) answers from the ``<sources>`` block the engine puts in the prompt, quoting
the best-matching sentence and citing it as ``[n]``.

A reranker tag (``rerank_models``) answers ``/api/generate`` as Qwen3-Reranker would, one token, "yes" or "no", with
``logprobs``/``top_logprobs`` when asked (see :func:`fake_relevance`); ``logprobs_supported = False`` plays an Ollama
older than 0.12.11, which ignores the request for them.

Switches on :class:`FakeOllama` simulate an outage (:meth:`FakeOllama.stop`), Ollama dying mid-ingest
(``fail_embed_after``), a model runner that crashes on one text (``fail_embed_when``), a model crashing mid-answer
(``chat_error_after``), a slow embedder
(``embed_delay``) and a model that streams at a human pace (``chat_delay``, seconds before each piece).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["FakeOllama", "HttpDouble", "Responder", "default_responder", "fake_embed"]

Responder = Callable[[dict[str, Any]], tuple[str, str]]
"""Maps a ``/api/chat`` request body to ``(thinking, content)``."""

DEFAULT_EMBED_MODELS: dict[str, int] = {"qwen3-embedding:0.6b": 256}
DEFAULT_CHAT_MODELS: frozenset[str] = frozenset({"qwen3:8b", "qwen3:4b"})
RERANK_MODEL = "dengcao/Qwen3-Reranker-0.6B:Q8_0"

VERSION = "0.13.0"  # new enough for log-probabilities (0.12.11)
MODIFIED_AT = "2025-09-01T12:00:00.000000000Z"
CHAT_CONTEXT_LENGTH = 40960
EMBED_CONTEXT_LENGTH = 32768
CHAT_HIDDEN_SIZE = 4096
EMBED_FAILURE_MESSAGE = "llama runner process has terminated: exit status 2"
CHAT_FAILURE_MESSAGE = "an error was encountered while running the model: unexpected EOF"
NO_ANSWER = "The provided documents do not contain the answer to this question."

# --- embeddings -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[a-z0-9]+|[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+|[^\W\da-z_]+")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_QUERY_MARK = "\nQuery:"


def _tokens(text: str) -> list[str]:
    """Lowercased words, with a trailing "s" stripped from ASCII words longer than 3 chars; runs of Chinese,
    Japanese or Korean characters as character pairs (so the stand-in reads those languages, as Qwen3 does)."""
    out = []
    for w in _TOKEN_RE.findall(text.lower()):
        if _CJK_RE.match(w):
            out.extend(w[i:i + 2] for i in range(max(1, len(w) - 1)))
        else:
            out.append(w[:-1] if len(w) > 3 and w.endswith("s") and w.isascii() else w)
    return out


@lru_cache(maxsize=1 << 17)
def _slot(feature: str, dim: int) -> tuple[int, float]:
    """Hash a feature to (bucket in [0, dim), sign ±1)."""
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return h % dim, (1.0 if h >> 63 else -1.0)


def fake_embed(text: str, dim: int) -> list[float]:
    """Deterministic unit-length embedding of ``text`` from hashed word unigrams and bigrams.

    Like Qwen3-Embedding, a query written as ``"Instruct: {task}\\nQuery:{query}"`` is embedded as the
    query alone, so a query with the instruction embeds equal to the bare query. Texts that share
    words get a positive cosine; unrelated texts get a cosine near 0. Text with no words maps to e_0.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    if text.startswith("Instruct: ") and _QUERY_MARK in text:
        text = text.split(_QUERY_MARK, 1)[1]
    toks = _tokens(text)
    features = [(_slot(t, dim), 1.0) for t in toks]
    features += [(_slot(f"{a} {b}", dim), 0.5) for a, b in zip(toks, toks[1:], strict=False)]
    if not features:
        return [1.0] + [0.0] * (dim - 1)
    index = np.fromiter((slot[0] for slot, _ in features), dtype=np.int64, count=len(features))
    weight = np.fromiter((slot[1] * w for slot, w in features), dtype=np.float64, count=len(features))
    vec = np.bincount(index, weights=weight, minlength=dim)
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:  # every feature cancelled out
        return [1.0] + [0.0] * (dim - 1)
    return (vec / norm).tolist()


def _truncate_dims(vec: list[float], dims: int) -> list[float]:
    """Matryoshka truncation as Ollama does it: keep the first ``dims`` values and re-normalise."""
    head = np.asarray(vec[:dims], dtype=np.float64)
    norm = float(np.linalg.norm(head))
    if norm == 0.0:
        return [1.0] + [0.0] * (dims - 1)
    return (head / norm).tolist()


# --- the stand-in reranker -------------------------------------------------------------------------

_RERANK_QUERY = re.compile(r"<Query>: (.*?)\n<Document>: (.*?)<\|im_end\|>", re.DOTALL)


def fake_relevance(query: str, document: str) -> float:
    """A stand-in relevance in (0, 1): a sigmoid of the fake embeddings' cosine (shared words count)."""
    cosine = float(np.dot(fake_embed(query, 1024), fake_embed(document, 1024)))
    return 1.0 / (1.0 + math.exp(-(10.0 * cosine - 3.0)))


# --- the stand-in chat model ------------------------------------------------------------------------

_SOURCE_RE = re.compile(r'<source id="(\d+)"[^>]*>(.*?)</source>', re.DOTALL)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    """the and for are was were what which who whom whose how why when where does did done this that
    these those with from into about there their them they has have had not but can could would should
    will you your our its any all some than then also please tell give show say said many much
    document pdf file page""".split()
)


def _content_words(text: str) -> set[str]:
    """Words of ``text`` that carry meaning: longer than 2 chars, not stopwords, lightly stemmed."""
    return {w for w in _tokens(text) if (len(w) > 2 or not w.isascii()) and w not in _STOPWORDS}


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat request ("" when there is none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def default_responder(body: dict[str, Any]) -> tuple[str, str]:
    """Answer a chat request from the ``<sources>`` block of its last user message.

    Picks the source sharing the most question words (ties go to the one listed first) and answers
    with its best-matching sentence followed by ``[id].``. With no source sharing a word, it says the
    documents do not contain the answer. Without a ``<sources>`` block it echoes the message.
    Returns ``(thinking, content)``.
    """
    text = _last_user_text(body)
    if "<sources>" not in text:
        return "Echoing the message.", "You said: " + text[:200]

    sources = _SOURCE_RE.findall(text)
    if "Question:" in text:
        question = text.rsplit("Question:", 1)[1].strip()
    else:
        question = text.rsplit("</sources>", 1)[-1].strip()
    asked = _content_words(question)
    topic = question.rstrip("?.! ") or "nothing in particular"

    best_id, best_passage, best_overlap = "", "", 0
    for source_id, passage in sources:
        overlap = len(asked & _content_words(passage))
        if overlap > best_overlap:
            best_id, best_passage, best_overlap = source_id, passage, overlap
    if best_overlap == 0:
        return f"The question asks about {topic}. None of the sources mention it.", NO_ANSWER

    sentences = [s for s in _SENTENCE_END_RE.split(best_passage.strip()) if s.strip()]
    sentence = max(sentences, key=lambda s: len(asked & _content_words(s)))  # first of the best
    sentence = " ".join(sentence.split()).rstrip(".!?;:, ")
    thinking = f"The question asks about {topic}. Source {best_id} looks relevant."
    return thinking, f"{sentence} [{best_id}]."


# --- HTTP plumbing ----------------------------------------------------------------------------------


def _now() -> str:
    """A timestamp shaped like Ollama's ``created_at``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pieces(text: str) -> list[str]:
    """Split text into word-sized stream chunks that concatenate back to exactly ``text``."""
    return re.findall(r"\s*\S+|\s+", text)


def _digest(name: str) -> str:
    """A stable fake sha256 digest for a model name."""
    return hashlib.sha256(name.encode()).hexdigest()


def _details(parameter_size: str, quantization: str) -> dict[str, Any]:
    """The ``details`` object Ollama attaches to a model."""
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "qwen3",
        "families": ["qwen3"],
        "parameter_size": parameter_size,
        "quantization_level": quantization,
    }


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its test double and its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, owner: HttpDouble) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler errors instead of printing tracebacks to stderr."""
        logger.debug("%s: error serving %s", type(self.owner).__name__, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the owning test double."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._dispatch({})

    def do_HEAD(self) -> None:
        self._dispatch({})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            self.server.owner._log(self.path, {})
            self.send_json(400, {"error": f"invalid character in request body: {exc}"})
            return
        if not isinstance(body, dict):
            body = {}
        self._dispatch(body)

    def do_DELETE(self) -> None:
        self._dispatch({})

    def _dispatch(self, body: dict[str, Any]) -> None:
        self.close_connection = True  # one request per connection: stop() then refuses cleanly
        try:
            self.server.owner._handle(self, self.path.split("?", 1)[0], body)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("%s: client went away during %s", type(self.server.owner).__name__, self.path)

    # Responses -----------------------------------------------------------------------------------

    def send_body(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Send a complete response with a Content-Length (and any extra ``headers``)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_json(self, status: int, obj: dict[str, Any]) -> None:
        """Send one JSON object."""
        self.send_body(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def start_stream(self, content_type: str = "application/x-ndjson") -> None:
        """Start a chunked response (NDJSON, as Ollama streams, unless told otherwise)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def send_line(self, obj: dict[str, Any]) -> None:
        """Write and flush one NDJSON line as one HTTP chunk."""
        self.send_chunk(json.dumps(obj).encode() + b"\n")

    def send_chunk(self, data: bytes) -> None:
        """Write and flush ``data`` as one HTTP chunk."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        """Terminate the chunked response."""
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --- the server -------------------------------------------------------------------------------------


class HttpDouble:
    """Base of the protocol test doubles: a real HTTP server on 127.0.0.1 (any free port) in a thread.

    ``requests`` records ``(path, json_body)`` of every request and ``authorizations`` the ``Authorization`` header
    of each well-formed one (None when absent). Subclasses answer in ``_handle``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.url = ""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []

    # Lifecycle -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port (0 before the first start)."""
        return self._port

    def start(self) -> Self:
        """Listen on 127.0.0.1: a free port the first time, the same port on every restart."""
        if self._server is not None:
            return self
        server = _Server(self._port, self)
        self._port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self._port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and cut open connections, as if the server went down."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            open_connections = list(server.connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _log(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))

    def _record(self, h: _Handler, path: str, body: dict[str, Any]) -> str | None:
        """Log a well-formed request and its ``Authorization`` header; return the header."""
        self._log(path, body)
        authorization = h.headers.get("Authorization")
        with self._lock:
            self.authorizations.append(authorization)
        return authorization

    def _handle(self, h: _Handler, path: str, body: dict[str, Any]) -> None:
        raise NotImplementedError


class FakeOllama(HttpDouble):
    """Test double: an Ollama-protocol HTTP server on 127.0.0.1 (any free port).

    Plain attributes are switches a test may flip at any time: ``fail_embed_after``, ``fail_embed_when`` (an
    ``/api/embed`` request with an input containing this text fails with HTTP 500, as a runner crashing on it),
    ``chat_error_after``, ``embed_delay``, ``chat_delay``, ``responder``, ``no_think_models`` (chat models that refuse
    ``think``), ``token`` (when set, every request must carry ``Authorization: Bearer <token>`` or gets
    a 401, as from an authenticating proxy), and the ``embed_models`` /
    ``chat_models`` / ``rerank_models`` it knows. For ``/api/generate``: ``logprobs_supported`` (False: as
    Ollama before 0.12.11), ``version``, and ``generate_gate`` (hold the first that many requests until all of them
    have arrived, at most 5 s: a client that sends them one at a time shows as ``max_in_flight`` 1).
    """

    def __init__(
        self,
        embed_models: dict[str, int] | None = None,
        chat_models: set[str] | None = None,
        rerank_models: set[str] | None = None,
    ) -> None:
        self._initial_embed_models = dict(DEFAULT_EMBED_MODELS if embed_models is None else embed_models)
        self._initial_chat_models = set(DEFAULT_CHAT_MODELS if chat_models is None else chat_models)
        self._initial_rerank_models = {RERANK_MODEL} if rerank_models is None else set(rerank_models)
        super().__init__()
        self.token: str | None = None
        self.embed_models: dict[str, int] = {}
        self.chat_models: set[str] = set()
        self.fail_embed_after: int | None = None
        self.fail_embed_when: str | None = None
        self.chat_error_after: int | None = None
        self.embed_delay = 0.0
        self.chat_delay = 0.0
        self.no_think_models: set[str] = set()
        self.responder: Responder = default_responder
        self.rerank_models: set[str] = set()
        self.logprobs_supported = True
        self.version = VERSION
        self.generate_gate = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._arrived = 0
        self._gate = threading.Condition(self._lock)
        self._embed_ok = 0
        self.reset()

    def reset(self) -> None:
        """Forget recorded requests and put every switch and model list back to its initial value."""
        with self._lock:
            self.requests.clear()
            self.authorizations.clear()
            self._embed_ok = 0
        self.token = None
        self.embed_models = dict(self._initial_embed_models)
        self.chat_models = set(self._initial_chat_models)
        self.fail_embed_after = None
        self.fail_embed_when = None
        self.chat_error_after = None
        self.embed_delay = 0.0
        self.chat_delay = 0.0
        self.no_think_models = set()
        self.responder = default_responder
        self.rerank_models = set(self._initial_rerank_models)
        self.logprobs_supported = True
        self.version = VERSION
        self.generate_gate = 0
        self.max_in_flight = 0
        self._arrived = 0

    # Request handling ----------------------------------------------------------------------------

    def _resolve(self, name: object) -> str | None:
        """The known model a request names (``x`` also matches ``x:latest``), or None."""
        if not isinstance(name, str) or not name:
            return None
        known = set(self.embed_models) | set(self.chat_models) | self.rerank_models
        for candidate in (name, f"{name}:latest", name.removesuffix(":latest")):
            if candidate in known:
                return candidate
        return None

    def _handle(self, h: _Handler, path: str, body: dict[str, Any]) -> None:
        authorization = self._record(h, path, body)
        if self.token is not None and authorization != f"Bearer {self.token}":
            h.send_body(401, b"401 Unauthorized", "text/plain; charset=utf-8")
            return
        method = h.command
        if method in ("GET", "HEAD") and path == "/":
            h.send_body(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif method in ("GET", "HEAD") and path == "/api/version":
            h.send_json(200, {"version": self.version})
        elif method in ("GET", "HEAD") and path == "/api/tags":
            h.send_json(200, {"models": [self._model_entry(name) for name in self._all_models()]})
        elif method == "POST" and path == "/api/show":
            self._show(h, body)
        elif method == "POST" and path == "/api/embed":
            self._embed(h, body)
        elif method == "POST" and path == "/api/chat":
            self._chat(h, body)
        elif method == "POST" and path == "/api/generate":
            self._generate(h, body)
        else:
            h.send_body(404, b"404 page not found", "text/plain")

    def _all_models(self) -> list[str]:
        return sorted(set(self.embed_models) | set(self.chat_models) | self.rerank_models)

    def _model_entry(self, name: str) -> dict[str, Any]:
        embedder = name in self.embed_models
        return {
            "name": name,
            "model": name,
            "modified_at": MODIFIED_AT,
            "size": 639_000_000 if embedder else 5_200_000_000,
            "digest": _digest(name),
            "details": _details(name.partition(":")[2].upper() or "unknown", "Q8_0" if embedder else "Q4_K_M"),
        }

    def _show(self, h: _Handler, body: dict[str, Any]) -> None:
        requested = body.get("model") or body.get("name") or ""
        name = self._resolve(requested)
        if name is None:
            h.send_json(404, {"error": f"model '{requested}' not found"})
            return
        entry = self._model_entry(name)
        if name in self.embed_models:
            capabilities = ["embedding"]
            context_length, embedding_length = EMBED_CONTEXT_LENGTH, self.embed_models[name]
        elif name in self.rerank_models:
            capabilities = ["completion"]
            context_length, embedding_length = CHAT_CONTEXT_LENGTH, 1024
        else:
            capabilities = ["completion", "tools", "thinking"]
            context_length, embedding_length = CHAT_CONTEXT_LENGTH, CHAT_HIDDEN_SIZE
        h.send_json(
            200,
            {
                "license": "Apache License 2.0",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {name}\n',
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": entry["details"],
                "model_info": {
                    "general.architecture": "qwen3",
                    "general.basename": name.split(":", 1)[0],
                    "qwen3.context_length": context_length,
                    "qwen3.embedding_length": embedding_length,
                },
                "capabilities": capabilities,
                "modified_at": MODIFIED_AT,
            },
        )

    def _embed(self, h: _Handler, body: dict[str, Any]) -> None:
        started = time.perf_counter_ns()
        requested = body.get("model") or ""
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            texts = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
            texts = list(raw_input)
        elif raw_input is None:
            texts = []
        else:
            h.send_json(400, {"error": "invalid input type"})
            return

        name = self._resolve(requested)
        if name is None:
            h.send_json(404, {"error": f"model {json.dumps(requested)} not found, try pulling it first"})
            return
        if name not in self.embed_models:
            # What Ollama's runner answers for a model with no pooling layer (a chat model).
            h.send_json(501, {"error": "this model does not support embeddings"})
            return
        with self._lock:
            failing = self.fail_embed_after is not None and self._embed_ok >= self.fail_embed_after
        poison = self.fail_embed_when
        failing = failing or (poison is not None and any(poison in t for t in texts))
        if failing:
            h.send_json(500, {"error": EMBED_FAILURE_MESSAGE})
            return
        if self.embed_delay > 0:
            time.sleep(self.embed_delay)

        dim = self.embed_models[name]
        dims = body.get("dimensions")
        vectors = [fake_embed(t, dim) for t in texts]
        # Like Ollama: slice and re-normalise only when 0 < dimensions < model size; otherwise ignore it.
        if isinstance(dims, int) and 0 < dims < dim:
            vectors = [_truncate_dims(v, dims) for v in vectors]
        with self._lock:
            self._embed_ok += 1
        elapsed = time.perf_counter_ns() - started
        h.send_json(
            200,
            {
                "model": requested,
                "embeddings": vectors,
                "total_duration": elapsed,
                "load_duration": elapsed // 10,
                "prompt_eval_count": sum(len(_tokens(t)) + 1 for t in texts),
            },
        )

    def _generate(self, h: _Handler, body: dict[str, Any]) -> None:
        """``/api/generate`` (not streamed), as a Qwen3-Reranker tag answers the official prompt sent raw."""
        requested = body.get("model") or ""
        name = self._resolve(requested)
        if name is None:
            h.send_json(404, {"error": f"model '{requested}' not found"})
            return
        if name in self.embed_models:
            h.send_json(400, {"error": f"{json.dumps(requested)} does not support generate"})
            return
        with self._gate:  # hold the first `generate_gate` requests until all of them are here (at most 5 s)
            self._in_flight += 1
            self._arrived += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._gate.notify_all()
            self._gate.wait_for(lambda: self._arrived >= self.generate_gate, timeout=5)
        try:
            found = _RERANK_QUERY.search(str(body.get("prompt") or ""))
            p_yes = fake_relevance(found.group(1), found.group(2)) if found and body.get("raw") else 0.5
            tops = sorted([("yes", math.log(p_yes) - 1e-4), ("no", math.log(1 - p_yes) - 1e-4),
                           ("Yes", -9.0), ("No", -9.5), ("maybe", -12.0)], key=lambda x: -x[1])
            token, logprob = tops[0]
            reply: dict[str, Any] = {"model": requested, "created_at": _now(), "response": token, "done": True,
                                     "done_reason": "length", "eval_count": 1}
            if body.get("logprobs") and self.logprobs_supported:
                count = int(body.get("top_logprobs") or 0)
                reply["logprobs"] = [{"token": token, "logprob": logprob,
                                      "top_logprobs": [{"token": t, "logprob": lp} for t, lp in tops[:count]]}]
        finally:
            with self._gate:  # no longer in flight before the client can see the reply and send the next
                self._in_flight -= 1
        h.send_json(200, reply)

    def _chat(self, h: _Handler, body: dict[str, Any]) -> None:
        started = time.perf_counter_ns()
        requested = body.get("model") or ""
        name = self._resolve(requested)
        if name is None:
            h.send_json(404, {"error": f"model '{requested}' not found"})
            return
        if name not in self.chat_models:
            h.send_json(400, {"error": f"{json.dumps(requested)} does not support chat"})
            return

        if body.get("think") is True and name in self.no_think_models:
            h.send_json(400, {"error": f"{json.dumps(requested)} does not support thinking"})
            return
        thinking, content = self.responder(body)
        if body.get("think") is False:
            thinking = ""
        thinking_pieces, content_pieces = _pieces(thinking), _pieces(content)
        error_after = self.chat_error_after
        fails = error_after is not None and len(content_pieces) > error_after
        prompt_tokens = sum(
            len(_tokens(m.get("content") or "")) + 4
            for m in body.get("messages") or []
            if isinstance(m, dict) and isinstance(m.get("content") or "", str)
        )
        head = {"model": requested}

        def final() -> dict[str, Any]:
            elapsed = time.perf_counter_ns() - started
            return {
                "done": True,
                "done_reason": "stop",
                "total_duration": elapsed,
                "load_duration": elapsed // 10,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": elapsed // 4,
                "eval_count": len(thinking_pieces) + len(content_pieces),
                "eval_duration": elapsed // 2,
            }

        if body.get("stream") is False:
            if fails:
                h.send_json(500, {"error": CHAT_FAILURE_MESSAGE})
                return
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            h.send_json(200, {**head, "created_at": _now(), "message": message, **final()})
            return

        h.start_stream()
        for piece in thinking_pieces:
            time.sleep(self.chat_delay)
            message = {"role": "assistant", "content": "", "thinking": piece}
            h.send_line({**head, "created_at": _now(), "message": message, "done": False})
        for sent, piece in enumerate(content_pieces):
            if fails and sent == error_after:
                break
            time.sleep(self.chat_delay)
            message = {"role": "assistant", "content": piece}
            h.send_line({**head, "created_at": _now(), "message": message, "done": False})
        if fails:
            h.send_line({"error": CHAT_FAILURE_MESSAGE})
        else:
            message = {"role": "assistant", "content": ""}
            h.send_line({**head, "created_at": _now(), "message": message, **final()})
        h.end_stream()
