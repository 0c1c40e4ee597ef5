"""Page images embedded by an OpenAI-compatible server that serves Qwen3-VL-Embedding (vLLM ``--runner pooling``).

vLLM's ``/v1/embeddings`` takes chat-style ``messages`` for a multimodal embedding model: a page is one user message
whose content is an ``image_url`` part holding the PNG as a data URL, a question one whose content is its text.
One request embeds one input, so pages go one by one. Pages are resized here, before sending (see
``rag.ingestion.pageimages``): vLLM and the Hugging Face processor resize differently.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.errors import ModelError
from rag.models.providers.http import Service
from rag.models.visual import PageEmbedder


class ServerPageEmbedder(PageEmbedder):
    """Qwen3-VL-Embedding on an OpenAI-compatible server (``RAG_VISUAL_BASE_URL``)."""

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.model_id = settings.visual_model
        self.instruction = settings.visual_instruction
        self.service = service or Service.from_settings(settings, "page-image embedding", "visual_base_url",
                                                        "visual_api_key", "visual_model")

    @property
    def describe(self) -> str:
        return f"{self.model_id} at {self.service.where}"

    def embed_pages(self, images: Sequence[Any]) -> list[list[float]]:
        return [self._one([{"type": "image_url", "image_url": {"url": _data_url(image)}}]) for image in images]

    def embed_query(self, text: str) -> list[float]:
        return self._one([{"type": "text", "text": text}], system=self.instruction)

    def _one(self, content: list[dict[str, Any]], system: str = "") -> list[float]:
        messages = ([{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []) + \
            [{"role": "user", "content": content}]
        data = self.service.post("/embeddings", {"model": self.model_id, "messages": messages,
                                                 "encoding_format": "float"}, model=self.model_id)
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows or not isinstance(rows[0].get("embedding"), list):
            raise ModelError(f"The page-image embedding server at {self.service.where} sent no embedding back. Is "
                             f"{self.model_id} served with --runner pooling?")
        return _unit([float(x) for x in rows[0]["embedding"]])


def _data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]
