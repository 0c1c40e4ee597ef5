"""Embeddings in-process: any sentence-transformers model (Qwen3-Embedding by default), for Hugging Face Spaces and
offline use. Loads lazily, once, and encodes through ``rag.models.accel`` (a lent GPU under ZeroGPU)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.errors import MissingDependency, ModelNotFound, WrongModelKind
from rag.models.accel import gpu_call
from rag.models.embedder import Embedder, query_prompt
from rag.models.hub import hub_cached, is_ollama_tag

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder(Embedder):
    """Embeddings computed in-process by sentence-transformers (any model id or local path); loaded lazily."""

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        self.model_id = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.dimensions_setting = settings.embed_dimensions
        self.instruction = settings.query_instruction
        self.device = device
        self.gpu_seconds = settings.gpu_seconds
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (the first embedding otherwise does); downloads it on first use."""
        self._load()

    def check(self) -> None:
        """Load the model (once): a model that can't be had says so here, not at the first upload."""
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if is_ollama_tag(self.model_id):
                    raise WrongModelKind(f"'{self.model_id}' is an Ollama tag, which sentence-transformers can't "
                                         "load. Set RAG_LOCAL_EMBED_MODEL to a Hugging Face id (e.g. "
                                         "Qwen/Qwen3-Embedding-0.6B) or a local folder.")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingDependency("In-process embeddings need sentence-transformers: "
                                            "pip install sentence-transformers") from exc
                log.info("%s the embedding model %s …", "Loading" if hub_cached(self.model_id) else "Downloading",
                         self.model_id)
                try:
                    self._model = SentenceTransformer(self.model_id, device=self.device,
                                                      truncate_dim=self.dimensions_setting)
                except (OSError, ValueError) as exc:
                    raise ModelNotFound(f"Can't load the embedding model '{self.model_id}': {str(exc).rstrip('.')}. "
                                        "Set RAG_LOCAL_EMBED_MODEL (or RAG_EMBED_MODEL with RAG_EMBED_BACKEND="
                                        "sentence-transformers) to a sentence-transformers model id or a local "
                                        "folder.") from exc
                log.info("Loaded the embedding model %s on %s", self.model_id, self._model.device)
            return self._model

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        model = self._load()
        kwargs: dict[str, Any] = {}
        prompts = getattr(model, "prompts", {}) or {}
        if query and "qwen3" in self.model_id.lower():
            kwargs["prompt"] = query_prompt(self.instruction, "")
        elif query and "query" in prompts:
            kwargs["prompt_name"] = "query"
        elif not query and prompts.get("document"):
            kwargs["prompt_name"] = "document"
        vectors = gpu_call(self, "_encode", list(texts), kwargs, seconds=self.gpu_seconds)
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors

    def _encode(self, texts: list[str], kwargs: dict[str, Any]) -> list[list[float]]:
        """The model's forward pass (on a lent GPU under ZeroGPU): plain lists in, plain lists out."""
        array = self._load().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False, **kwargs)
        return array.tolist()
