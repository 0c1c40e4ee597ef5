"""``/rerank`` services over HTTP: the Jina/Cohere shape (vLLM, ``llama-server --reranking``, Infinity, Jina, Cohere,
Novita, Morph) and Text Embeddings Inference's, reached through one ``Service`` (``rag.models.providers.http``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.errors import ModelError
from rag.models.providers.http import Refused, Service
from rag.models.reranker import clip, document_part, query_part

log = logging.getLogger(__name__)

RECHECK_SECONDS = 300.0  # a /rerank service that answered is asked again by the status check after this long


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

    @property
    def takes_instruction(self) -> bool:
        """Whether ``score`` takes ``instruction=``: only when this side builds the Qwen3 prompt
        (RAG_RERANK_PROMPT=qwen3); a plain /rerank server applies its own template, with its own task."""
        return self.qwen3_prompt

    def score(self, query: str, passages: Sequence[str], instruction: str | None = None) -> list[float]:
        """Relevance of each passage to ``query`` in 0..1, in input order; ``instruction`` (with the qwen3 prompt
        only) replaces the reranker's own task for this call."""
        if not passages:
            return []
        if instruction and not self.qwen3_prompt:
            raise ValueError("a plain /rerank request carries no instruction (RAG_RERANK_PROMPT=plain)")
        texts = clip(passages, self.max_passage_tokens, query)
        if self.qwen3_prompt:
            query, texts = query_part(instruction or self.instruction, query), [document_part(t) for t in texts]
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
