"""Page images embedded in-process by Qwen3-VL-Embedding through sentence-transformers (≥ 5.4, multimodal
``encode``): ``encode_document`` takes PIL images, ``encode_query`` text with the retrieval instruction. The
processor's ``max_pixels`` bounds the image tokens (one per 32×32 pixels). On a GPU a page takes about a second;
on a CPU minutes, which is why ``RAG_VISUAL=auto`` only turns this on with a GPU (``rag.models.factory``)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.errors import MissingDependency
from rag.models.visual import PageEmbedder

log = logging.getLogger(__name__)


class LocalPageEmbedder(PageEmbedder):
    """Qwen3-VL-Embedding loaded with sentence-transformers, on the GPU when there is one."""

    def __init__(self, settings: Settings) -> None:
        self.model_id = settings.visual_model
        self.instruction = settings.visual_instruction
        self.max_pixels = settings.visual_max_pixels
        self.batch_size = 2
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def describe(self) -> str:
        return f"{self.model_id} (in-process)"

    def load(self) -> Any:
        """The model, loaded once."""
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingDependency("Embedding page images in-process needs sentence-transformers: pip "
                                            "install 'sentence-transformers>=5.4'") from exc
                self._model = SentenceTransformer(self.model_id, processor_kwargs={"max_pixels": self.max_pixels},
                                                  trust_remote_code=False)
            return self._model

    def embed_pages(self, images: Sequence[Any]) -> list[list[float]]:
        model = self.load()
        vectors = model.encode_document(list(images), batch_size=self.batch_size, normalize_embeddings=True)
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        model = self.load()
        vector = model.encode_query([text], prompt=f"Instruct: {self.instruction}\nQuery:" if self.instruction
                                    else None, normalize_embeddings=True)[0]
        return [float(x) for x in vector]
