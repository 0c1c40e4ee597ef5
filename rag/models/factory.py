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
