"""Text → vectors: Qwen3-Embedding through Ollama (default) or any sentence-transformers model in-process.

Qwen3-Embedding wants an instruction on queries only (``Instruct: {task}\\nQuery:{query}``, no space after
``Query:``); documents are embedded raw. Ollama does not add the instruction, so we do.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rag.accel import gpu_call
from rag.backends import hub_cached, is_ollama_tag
from rag.config import Settings
from rag.errors import BackendUnavailable, MissingDependency, ModelError, ModelNotFound, WrongModelKind

log = logging.getLogger(__name__)


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


class OllamaEmbedder(Embedder):
    """Embeddings from an Ollama server's ``/api/embed``, batched, with ``num_ctx``, ``dimensions`` and keep-alive."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        import ollama

        self.model_id = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.dimensions_setting = settings.embed_dimensions
        self.host = settings.embed_host
        self.has_token = bool(settings.ollama_token)
        self.instruction = settings.query_instruction
        self.keep_alive = settings.keep_alive
        self.num_ctx = settings.effective_embed_num_ctx
        self._client = client or ollama.Client(host=self.host, timeout=600, headers=settings.ollama_headers)

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        inputs = [query_prompt(self.instruction, t) if query else t for t in texts]
        with ollama_errors(self.host, self._translate):
            response = self._client.embed(model=self.model_id, input=inputs, truncate=True,
                                          dimensions=self.dimensions_setting, keep_alive=self.keep_alive,
                                          options={"num_ctx": self.num_ctx})
        vectors = [list(v) for v in response.embeddings]
        if len(vectors) != len(inputs):
            raise ModelError(f"Ollama returned {len(vectors)} embeddings for {len(inputs)} texts.")
        if vectors and self.dimensions_setting and len(vectors[0]) != self.dimensions_setting:
            # Ollama ignores `dimensions` at or above the model's size instead of refusing it.
            raise ModelError(f"'{self.model_id}' makes {len(vectors[0])}-dimensional vectors, so "
                             f"RAG_EMBED_DIMENSIONS={self.dimensions_setting} can't apply. Choose a smaller value "
                             "or leave it empty.")
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors

    @property
    def describe(self) -> str:
        return f"{self.model_id} via Ollama at {self.host}"

    def check(self) -> None:
        """Ask the server about the model: reachable, installed, and able to embed."""
        with ollama_errors(self.host, self._translate):
            info = self._client.show(self.model_id)
        capabilities = list(getattr(info, "capabilities", None) or [])
        if capabilities and "embedding" not in capabilities:
            raise WrongModelKind(f"'{self.model_id}' is not an embedding model. Set RAG_EMBED_MODEL to one, "
                                 "for example qwen3-embedding:0.6b.")

    def _translate(self, exc: Any) -> ModelError:
        message = str(getattr(exc, "error", exc))
        if exc.status_code in (401, 403):
            return access_denied(self.host, exc.status_code, self.has_token)
        if exc.status_code == 404 or "not found" in message.lower():
            return ModelNotFound(f"The embedding model '{self.model_id}' is not installed in Ollama at {self.host}. "
                                 f"Run `ollama pull {self.model_id}`, or set RAG_EMBED_MODEL to a model you have.")
        if "support" in message.lower() and "embed" in message.lower():
            return WrongModelKind(f"'{self.model_id}' is not an embedding model. Set RAG_EMBED_MODEL to one, "
                                  "for example qwen3-embedding:0.6b.")
        return ModelError(f"Ollama could not embed with '{self.model_id}': {message}")


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


@contextmanager
def ollama_errors(host: str, translate: Callable[[Any], ModelError]) -> Iterator[None]:
    """Turn the ollama client's errors into ModelErrors a user can act on: a connection failure says how to start
    Ollama at ``host``; an error the server sent goes through ``translate``."""
    import httpx
    import ollama

    try:
        yield
    except (ConnectionError, httpx.TransportError) as exc:
        raise BackendUnavailable(unreachable_message(host)) from exc
    except ollama.ResponseError as exc:
        raise translate(exc) from exc


def access_denied(host: str, status: int, has_token: bool) -> ModelError:
    """The error for an Ollama server (or the proxy in front of it) that refuses our credentials."""
    if has_token:
        return BackendUnavailable(f"Ollama at {host} refused the token in RAG_OLLAMA_TOKEN (HTTP {status}). Set "
                                  "RAG_OLLAMA_TOKEN to the token the server expects.")
    return BackendUnavailable(f"Ollama at {host} asks for a token (HTTP {status}). Set RAG_OLLAMA_TOKEN to the "
                              "server's bearer token.")


def unreachable_message(host: str) -> str:
    """What to tell a user whose Ollama server can't be reached."""
    return (f"Can't reach Ollama at {host}. Start it with `ollama serve` (or set OLLAMA_HOST to the address "
            "where it runs).")


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for."""
    if settings.embed_backend == "sentence-transformers":
        return SentenceTransformerEmbedder(settings)
    return OllamaEmbedder(settings)
