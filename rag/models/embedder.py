"""Text → vectors: the ``Embedder`` interface and the Qwen3-Embedding query format.

Qwen3-Embedding wants an instruction on queries only (``Instruct: {task}\\nQuery:{query}``, no space after
``Query:``); documents are embedded raw. Ollama does not add the instruction, so we do. The providers are in
``rag.models.providers`` (Ollama, OpenAI-compatible servers, sentence-transformers in-process);
``rag.models.factory.make_embedder`` picks one.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence


def query_prompt(instruction: str, query: str) -> str:
    """The Qwen3-Embedding query format."""
    return f"Instruct: {instruction}\nQuery:{query}"


class Embedder(ABC):
    """Embeds documents and queries. Subclasses implement ``_embed``; ``dimensions`` is known after a call."""

    model_id: str
    batch_size: int = 32
    dimensions: int | None = None
    dimensions_setting: int | None = None

    @abstractmethod
    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        """Embed one batch (at most ``batch_size`` texts)."""

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed passages, ``batch_size`` at a time."""
        vectors: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed(texts[i:i + self.batch_size], query=False))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (with the model's query instruction)."""
        return self._embed([text], query=True)[0]

    def check(self) -> None:
        """Raise a ModelError saying what to do if embeddings can't be made right now."""
        return None

    @property
    def describe(self) -> str:
        """Where embeddings come from, in a few words."""
        return f"{self.model_id} (in-process)"

    @property
    def index_name(self) -> str:
        """Names the vector collection: model and output size (a local path is shortened and hashed)."""
        name = self.model_id
        if "/" in name and Path(name).expanduser().exists():
            name = f"{Path(name).name}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:80] or "model"
        return f"{slug}-{self.dimensions_setting or 'full'}"
