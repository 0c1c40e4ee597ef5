"""Settings → model objects: the one place that picks a provider for each kind of model.

The interfaces (``embedder``, ``chat``, ``reranker``) sit below the providers and never name them; this module sits
above both. Providers are imported only when chosen, so an Ollama-only setup never imports torch, and nothing loads
weights here: in-process models load on first use (or at the app's warm-up).
"""

from __future__ import annotations

from rag.core.config import Settings
from rag.models.chat import ChatModel
from rag.models.embedder import Embedder
from rag.models.reranker import Reranker
from rag.models.visual import PageEmbedder


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for: Ollama (default), sentence-transformers in-process, or an
    OpenAI-compatible server."""
    if settings.embed_backend == "sentence-transformers":
        from rag.models.providers.local_embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(settings)
    if settings.embed_backend == "openai":
        from rag.models.providers.openai import OpenAIEmbedder

        return OpenAIEmbedder(settings)
    from rag.models.providers.ollama import OllamaEmbedder

    return OllamaEmbedder(settings)


def make_chat_model(settings: Settings) -> ChatModel:
    """The chat model the settings ask for: Ollama (default), transformers in-process, or an OpenAI-compatible
    server."""
    if settings.chat_backend == "transformers":
        from rag.models.providers.local_chat import TransformersChat

        return TransformersChat(settings.chat_model, gpu_seconds=settings.gpu_seconds)
    if settings.chat_backend == "openai":
        from rag.models.providers.openai import OpenAIChat

        return OpenAIChat(settings)
    from rag.models.providers.ollama import OllamaChat

    return OllamaChat(settings)


def make_reranker(settings: Settings) -> Reranker:
    """The reranker the settings ask for: in-process (its weights load on the first question that needs them),
    inside Ollama, or a /rerank service."""
    if settings.rerank_backend == "ollama":
        from rag.models.providers.ollama import OllamaReranker

        return OllamaReranker(settings)
    if settings.rerank_backend == "http":
        from rag.models.providers.rerank_service import HttpReranker

        return HttpReranker(settings)
    from rag.models.providers.local_reranker import Qwen3Reranker

    s = settings
    return Qwen3Reranker(s.rerank_model, s.rerank_instruction, s.rerank_max_tokens, s.rerank_batch_size,
                         dtype=s.rerank_dtype, gpu_seconds=s.gpu_seconds)


def make_page_embedder(settings: Settings) -> tuple[PageEmbedder | None, str]:
    """The page-image embedder ``RAG_VISUAL`` asks for, or None and why there is none: "off"; "auto" on a CPU
    without a server (a page costs minutes there, so it doesn't start); "on" always builds one (in-process unless
    ``RAG_VISUAL_BASE_URL`` names a server)."""
    if settings.visual == "off":
        return None, "page images are off (RAG_VISUAL=off)"
    if settings.visual_base_url:
        from rag.models.providers.visual_server import ServerPageEmbedder

        return ServerPageEmbedder(settings), ""
    if settings.visual == "auto" and not has_gpu():
        return None, ("page images are not searched: RAG_VISUAL=auto found no GPU and no RAG_VISUAL_BASE_URL, and on "
                      "a CPU Qwen3-VL-Embedding takes minutes a page. Set RAG_VISUAL_BASE_URL to a vLLM server, or "
                      "RAG_VISUAL=on to embed on this CPU anyway.")
    from rag.models.providers.local_visual import LocalPageEmbedder

    return LocalPageEmbedder(settings), ""


def has_gpu() -> bool:
    """True when this machine has an NVIDIA (or AMD ROCm) GPU driver loaded and torch is installed to use it;
    decided without importing torch where there is no driver, so a CPU machine doesn't pay for the import."""
    import os
    from importlib.util import find_spec

    if not (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd")):
        return False
    if find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
