"""Page images embedded in-process by Qwen3-VL-Embedding with transformers: the model's last hidden state at the
last token, normalised (the model's own pooling), for a page image and for a question (after its instruction).

sentence-transformers (≥ 5.4) wraps the same model, but loads its video processor too, which needs torchvision;
the image path here needs only the model, its tokenizer and its image processor (the Pillow one where torchvision
is missing), so it runs wherever transformers does. The image processor's ``max_pixels`` bounds the image tokens
(one per 32×32 pixels): on a GPU a page takes about a second, on a CPU minutes, which is why ``RAG_VISUAL=auto``
only turns this on with a GPU (``rag.models.factory``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.errors import MissingDependency
from rag.models.visual import PageEmbedder

log = logging.getLogger(__name__)

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
DOCUMENT_INSTRUCTION = "Represent the user's input."


class LocalPageEmbedder(PageEmbedder):
    """Qwen3-VL-Embedding loaded with transformers, on the GPU when there is one."""

    def __init__(self, settings: Settings) -> None:
        self.model_id = settings.visual_model
        self.instruction = settings.visual_instruction
        self.max_pixels = settings.visual_max_pixels
        self.batch_size = 1
        self._parts: tuple[Any, Any, Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def describe(self) -> str:
        return f"{self.model_id} (in-process)"

    def load(self) -> tuple[Any, Any, Any, Any]:
        """(model, tokenizer, image processor, device), loaded once."""
        with self._lock:
            if self._parts is None:
                try:
                    import torch
                    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
                except ImportError as exc:
                    raise MissingDependency("Embedding page images in-process needs torch and transformers: pip "
                                            "install torch transformers") from exc
                device = "cuda" if torch.cuda.is_available() else "cpu"
                dtype = torch.bfloat16 if device == "cuda" else torch.float32
                model = AutoModel.from_pretrained(self.model_id, dtype=dtype).to(device).eval()
                tokenizer = AutoTokenizer.from_pretrained(self.model_id, padding_side="left")
                images = AutoImageProcessor.from_pretrained(self.model_id)
                if isinstance(getattr(images, "size", None), dict) and "longest_edge" in images.size:
                    images.size = {**images.size, "longest_edge": self.max_pixels}  # in pixels, despite its name
                else:
                    images.max_pixels = self.max_pixels
                self._parts = (model, tokenizer, images, device)
            return self._parts

    def embed_pages(self, images: Sequence[Any]) -> list[list[float]]:
        return [self._embed(DOCUMENT_INSTRUCTION, IMAGE, image) for image in images]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(self.instruction, text, None)

    def _embed(self, system: str, user: str, image: Any | None) -> list[float]:
        import torch

        model, tokenizer, processor, device = self.load()
        extra: dict[str, Any] = {}
        if image is not None:
            pixels = processor(images=[image], return_tensors="pt")
            grid = pixels["image_grid_thw"]
            merge = getattr(processor, "merge_size", 2)
            user = user.replace("<|image_pad|>", "<|image_pad|>" * int(grid.prod() // (merge * merge)))
            extra = {"pixel_values": pixels["pixel_values"].to(device, model.dtype),
                     "image_grid_thw": grid.to(device)}
        prompt = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                  "<|im_start|>assistant\n")
        tokens = tokenizer([prompt], return_tensors="pt").to(device)
        if image is not None:  # which tokens are the image's, for the multimodal rotary positions
            image_token = getattr(model.config, "image_token_id", None)
            extra["mm_token_type_ids"] = (tokens["input_ids"] == image_token).long()
        with torch.inference_mode():
            hidden = model(**tokens, **extra).last_hidden_state[0, -1].float()
        return torch.nn.functional.normalize(hidden, dim=0).cpu().tolist()
