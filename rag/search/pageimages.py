"""A PDF page as an RGB picture within a pixel budget, for a visual embedder (Qwen3-VL-Embedding: one image token
per 32×32 pixels, so ``max_pixels`` bounds what a page costs) and for a vision chat model shown the cited pages.
Rendered with pypdfium2, resized here rather than by the model's processor, so an in-process model and a server
see the same picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.core.errors import MissingDependency


def render_page(path: str | Path, number: int, max_pixels: int) -> Any:
    """The 1-based page ``number`` of the PDF at ``path`` as a PIL RGB image of at most ``max_pixels`` pixels,
    both sides multiples of 32."""
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise MissingDependency("Rendering pages needs pypdfium2: pip install pypdfium2") from exc
    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[number - 1]
        width, height = page.get_size()
        scale = (max_pixels / max(width * height, 1.0)) ** 0.5
        image = page.render(scale=scale).to_pil().convert("RGB")
    finally:
        pdf.close()
    w, h = max(32, image.width // 32 * 32), max(32, image.height // 32 * 32)
    return image.resize((w, h)) if (w, h) != image.size else image


def png_base64(image: Any) -> str:
    """A PIL image as base64 PNG (what Ollama's ``images`` and a data URL carry)."""
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
