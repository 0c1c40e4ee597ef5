"""Page images as vectors: the interface of a visual embedder (Qwen3-VL-Embedding), which embeds a rendered page
and a question into one space, so that pages can be searched by what they show (charts, diagrams, photos, layout)
as well as by their words."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence


class PageEmbedder(ABC):
    """Embeds page images (PIL images) and questions; ``model_id`` names the model, ``batch_size`` the pages sent
    at once, ``describe`` where it runs."""

    model_id: str = ""
    batch_size: int = 4

    @abstractmethod
    def embed_pages(self, images: Sequence[Any]) -> list[list[float]]:
        """One normalised vector per page image."""

    @abstractmethod
    def embed_query(self, text: str) -> list[float]:
        """The vector of a question, in the pages' space."""

    @property
    def describe(self) -> str:
        return self.model_id

    @property
    def key(self) -> str:
        """A short name for files of this model's page vectors."""
        return "".join(c if c.isalnum() else "-" for c in self.model_id.rsplit("/", 1)[-1].lower())[:60]
