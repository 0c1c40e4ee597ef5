"""A test double standing in for an OpenAI-compatible model server and for /rerank services.

It is not vLLM, llama.cpp, TEI or any hosted API, and runs no model. It speaks real HTTP on 127.0.0.1 so the real
clients in ``rag.models.providers.openai`` talk to it as they would to a real server:

- ``/v1/models``, ``/v1/embeddings`` (``dimensions`` as Matryoshka slicing, ``encoding_format``),
  ``/v1/chat/completions`` streamed as server-sent events (reasoning as ``delta.reasoning_content``,
  ``delta.reasoning`` or ``<think>`` inside the text, as the ``reasoning`` switch says) or as one JSON;
- ``/v1/rerank`` in the Jina/Cohere shape and ``/rerank`` in TEI's (``rerank_api``), scores in 0-1 or, with
  ``rerank_logits``, raw logits.

Embeddings, answers and relevance come from the same stand-ins as the Ollama double (``tests.fake_ollama``): hashed
words, so retrieval and reranking are meaningful and an answer quotes the source that shares the question's words.

Switches: ``api_key`` (every request must carry it as a bearer token; a wrong one is echoed back in the 401, as some
servers do, to prove the client scrubs it), ``fail_next`` (statuses to answer the next POSTs with, e.g. ``[429]``,
with ``retry_after``), ``chat_error_after`` (an error event after that many answer pieces: a 500 mid-stream),
``chat_drop_after`` (the connection cut after that many), ``refuse_thinking_switch`` (400 for
``chat_template_kwargs`` / ``enable_thinking``, as OpenAI's own API), ``ignore_dimensions`` /
``refuse_dimensions`` (as vLLM for a model not declared Matryoshka), ``per_token`` (a vector per token, as a
llama.cpp server running a model without pooling), ``max_batch``
(400 above it, as DashScope), ``list_models``, ``max_model_len`` and ``streaming``.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from tests.fake_ollama import (
    HttpDouble,
    _Handler,
    _pieces,
    _truncate_dims,
    default_responder,
    fake_embed,
    fake_relevance,
)

EMBED_MODEL = "Qwen/Qwen3-Embedding-0.6B"
CHAT_MODEL = "Qwen/Qwen3-8B"
RERANK_MODEL = "Qwen/Qwen3-Reranker-0.6B"
EMBED_DIM = 1024
MAX_MODEL_LEN = 32768
_QWEN3_QUERY = re.compile(r"<Query>: (.*)\n\Z", re.DOTALL)
_QWEN3_DOCUMENT = re.compile(r"\A<Document>: (.*?)<\|im_end\|>", re.DOTALL)


class FakeOpenAI(HttpDouble):
    """Test double: an OpenAI-compatible server (embeddings, chat) and a /rerank service on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    @property
    def base_url(self) -> str:
        """What RAG_*_BASE_URL is set to (the API under /v1)."""
        return self.url + "/v1"

    def reset(self) -> None:
        """Forget recorded requests and put every switch back."""
        with self._lock:
            self.requests.clear()
            self.authorizations.clear()
        self.api_key: str | None = None
        self.embed_models = {EMBED_MODEL: EMBED_DIM}
        self.chat_models = {CHAT_MODEL}
        self.rerank_models = {RERANK_MODEL}
        self.list_models = True
        self.max_model_len: int | None = MAX_MODEL_LEN
        self.reasoning = "reasoning_content"  # or "reasoning", "think" (inside the text), "none"
        self.streaming = True
        self.fail_next: list[int] = []
        self.retry_after: str | None = None
        self.chat_error_after: int | None = None
        self.chat_drop_after: int | None = None
        self.refuse_thinking_switch = False
        self.ignore_dimensions = False
        self.refuse_dimensions = False
        self.per_token = False
        self.max_batch: int | None = None
        self.rerank_api = "cohere"  # or "tei"
        self.rerank_logits = False

    # --- routing ------------------------------------------------------------------------------------------------
    def _handle(self, h: _Handler, path: str, body: dict[str, Any]) -> None:
        authorization = self._record(h, path, body)
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            given = (authorization or "").removeprefix("Bearer ")
            h.send_json(401, {"error": {"message": f"Incorrect API key provided: {given}", "type": "auth_error",
                                        "code": "invalid_api_key"}})
            return
        if h.command == "POST" and self.fail_next:
            status = self.fail_next.pop(0)
            payload = json.dumps({"error": {"message": "Rate limit reached" if status == 429 else
                                            "Internal server error", "code": status}}).encode()
            extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            h.send_body(status, payload, "application/json", extra)
            return
        routes = {("GET", "/v1/models"): self._models, ("POST", "/v1/embeddings"): self._embeddings,
                  ("POST", "/v1/chat/completions"): self._chat, ("POST", "/v1/rerank"): self._rerank,
                  ("POST", "/rerank"): self._rerank}
        route = routes.get((h.command, path))
        if route is None or (route == self._models and not self.list_models):
            h.send_json(404, {"detail": "Not Found"})
            return
        route(h, body)

    def _models(self, h: _Handler, body: dict[str, Any]) -> None:
        names = sorted(self.embed_models) + sorted(self.chat_models) + sorted(self.rerank_models)
        data = [{"id": n, "object": "model", "owned_by": "test-double",
                 **({"max_model_len": self.max_model_len} if self.max_model_len and n in self.chat_models else {})}
                for n in names]
        h.send_json(200, {"object": "list", "data": data})

    def _unknown_model(self, h: _Handler, model: Any) -> None:
        h.send_json(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                    "code": 404}})

    # --- embeddings ---------------------------------------------------------------------------------------------
    def _embeddings(self, h: _Handler, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model not in self.embed_models:
            self._unknown_model(h, model)
            return
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts:
            h.send_json(400, {"error": {"message": "input must be a string or a list of strings", "code": 400}})
            return
        if self.max_batch is not None and len(texts) > self.max_batch:
            h.send_json(400, {"error": {"message": f"batch size is invalid, it should not be larger than "
                                                   f"{self.max_batch}.", "code": "InvalidParameter"}})
            return
        dims = body.get("dimensions")
        if dims is not None and self.refuse_dimensions:  # vLLM, for a model whose config doesn't declare Matryoshka
            h.send_json(400, {"error": {"message": f'Model "{model}" does not support matryoshka representation, '
                                                   "changing output dimensions will lead to poor results.",
                                        "type": "BadRequestError", "code": 400}})
            return
        vectors = [fake_embed(t, self.embed_models[model]) for t in texts]
        if isinstance(dims, int) and 0 < dims < self.embed_models[model] and not self.ignore_dimensions:
            vectors = [_truncate_dims(v, dims) for v in vectors]
        if self.per_token:  # what llama.cpp servers send for a model without pooling: a vector per token
            vectors = [[fake_embed(w, self.embed_models[model]) for w in t.split()] for t in texts]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        data.reverse()  # the order of `data` is not promised: `index` is
        h.send_json(200, {"object": "list", "model": model, "data": data,
                          "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})

    # --- chat ---------------------------------------------------------------------------------------------------
    def _chat(self, h: _Handler, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model not in self.chat_models:
            self._unknown_model(h, model)
            return
        if self.refuse_thinking_switch and ("chat_template_kwargs" in body or "enable_thinking" in body):
            field = "chat_template_kwargs" if "chat_template_kwargs" in body else "enable_thinking"
            h.send_json(400, {"error": {"message": f"Unrecognized request argument supplied: {field}",
                                        "type": "invalid_request_error", "code": None}})
            return
        thinking, content = default_responder(body)
        switch = body.get("chat_template_kwargs", {}).get("enable_thinking", body.get("enable_thinking", True))
        if switch is False:
            thinking = ""
        limit = body.get("max_tokens")
        if isinstance(limit, int):
            content = "".join(_pieces(content)[:limit])
        pieces: list[tuple[str, str]] = []  # (field, text)
        if thinking and self.reasoning in ("reasoning_content", "reasoning"):
            pieces += [(self.reasoning, p) for p in _pieces(thinking)]
        elif thinking and self.reasoning == "think":
            content = f"<think>\n{thinking}\n</think>\n\n{content}"
        pieces += [("content", p) for p in _split_tags(content)]
        created = int(time.time())
        head = {"id": "chatcmpl-test", "created": created, "model": model}
        if not self.streaming or body.get("stream") is not True:
            message: dict[str, Any] = {"role": "assistant",
                                       "content": "".join(p for f, p in pieces if f == "content")}
            if self.reasoning in ("reasoning_content", "reasoning") and thinking:
                message[self.reasoning] = thinking
            h.send_json(200, {**head, "object": "chat.completion",
                              "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
            return
        h.start_stream("text/event-stream")
        h.send_chunk(b": keep-alive\n\n")

        def event(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            h.send_chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        event({"role": "assistant", "content": ""})
        answered = 0
        for field, text in pieces:
            if field == "content":
                if self.chat_error_after is not None and answered == self.chat_error_after:
                    error = {"error": {"object": "error", "message": "CUDA error: an illegal memory access was "
                                       "encountered", "type": "InternalServerError", "code": 500}}
                    h.send_chunk(b"data: " + json.dumps(error).encode() + b"\n\n")
                    h.send_chunk(b"data: [DONE]\n\n")
                    h.end_stream()
                    return
                if self.chat_drop_after is not None and answered == self.chat_drop_after:
                    h.close_connection = True
                    h.wfile.flush()
                    h.connection.shutdown(2)  # cut without ending the chunked body
                    return
                answered += 1
            event({field: text})
        event({}, "stop")
        h.send_chunk(b"data: [DONE]\n\n")
        h.end_stream()

    # --- rerank -------------------------------------------------------------------------------------------------
    def _rerank(self, h: _Handler, body: dict[str, Any]) -> None:
        tei = self.rerank_api == "tei"
        if tei and "texts" not in body:
            h.send_body(422, b"Failed to deserialize the JSON body into the target type: missing field `texts` at "
                        b"line 1 column 120", "text/plain; charset=utf-8")
            return
        if not tei and body.get("model") not in self.rerank_models:
            self._unknown_model(h, body.get("model"))
            return
        query = str(body.get("query") or "")
        texts = body.get("texts") if tei else body.get("documents")
        if not isinstance(texts, list):
            h.send_json(400, {"error": {"message": "documents must be a list", "code": 400}})
            return
        query = m.group(1) if (m := _QWEN3_QUERY.search(query)) else query
        texts = [m.group(1) if (m := _QWEN3_DOCUMENT.search(str(t))) else str(t) for t in texts]
        scores = [fake_relevance(query, t) for t in texts]
        if self.rerank_logits:
            scores = [math.log(s / (1 - s)) for s in scores]
        ranked = sorted(range(len(texts)), key=lambda i: -scores[i])
        if tei:
            payload: Any = [{"index": i, "score": scores[i]} for i in ranked]
            h.send_body(200, json.dumps(payload).encode(), "application/json")
            return
        top_n = body.get("top_n") or len(ranked)
        h.send_json(200, {"id": "rerank-test", "model": body.get("model"),
                          "results": [{"index": i, "relevance_score": scores[i]} for i in ranked[:top_n]],
                          "usage": {"total_tokens": len(texts)}})


def _split_tags(text: str) -> list[str]:
    """Word-sized pieces, with each <think> tag cut in two across pieces (as a tokenizer may send it)."""
    out: list[str] = []
    for piece in _pieces(text):
        if "<think>" in piece or "</think>" in piece:
            middle = len(piece) // 2
            out += [piece[:middle], piece[middle:]]
        else:
            out.append(piece)
    return out
