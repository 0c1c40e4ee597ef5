"""Re-indexing: the stored PDFs (``files/`` in the data folder) embedded again with the current model.

Each embedding model has its own index (``Store`` collections named after the model and size). Two things make the
library look empty or broken after a model change:

- the embedding model setting changed: the new model's index is empty, while the old index and every PDF are still
  there. A re-index queues every document of the other indexes (by content hash, so each once) into the current
  index; until it is done, questions are answered from the old index with the old model, when that model can still
  be reached.
- the model behind an unchanged name now returns vectors of another size (another Ollama server, a new
  ``:latest``): the index can't take or be searched with its vectors. A re-index then builds a new index named
  after the new size (``<index>-<size>d``), and the app switches to it once it is complete.

What the app is building and which index is in use survive a restart: ``indexes.json`` in the data folder records,
per model index, the index in use, the one being built, and the settings that made each index's embedder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rag.core.datadir import atomic_write
from rag.core.errors import EmbeddingSizeChanged
from rag.core.records import DocumentInfo

log = logging.getLogger(__name__)

FILE_NAME = "indexes.json"  # in the data folder
REGISTRY_PREFIX = "docs-"


@dataclass
class IndexBook:
    """The data folder's record of indexes: ``active`` (model index name → the index in use), ``building``
    (model index name → the index being filled by a re-index, and the one answering meanwhile) and ``models``
    (index → the embedding settings that made it)."""

    path: Path
    active: dict[str, str] = field(default_factory=dict)
    building: dict[str, dict[str, str]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> IndexBook:
        path = data_dir / FILE_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            log.warning("Could not read %s (%s); starting a new one", path, exc)
            raw = {}
        return cls(path, dict(raw.get("active", {})), dict(raw.get("building", {})), dict(raw.get("models", {})))

    def save(self) -> None:
        text = json.dumps({"active": self.active, "building": self.building, "models": self.models}, indent=1)
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def in_use(self, index_name: str) -> str:
        """The index in use for a model's index name (itself, unless a re-index moved it)."""
        return self.active.get(index_name, index_name)


@dataclass(frozen=True)
class ReindexPlan:
    """What a re-index does: ``documents`` to embed again from ``source`` indexes into ``target``; ``why``: "model"
    (another embedding model) or "size" (the same model, vectors of another size); ``jobs`` once queued;
    ``running``: a re-index is under way with ``left`` files to go."""

    target: str
    documents: list[DocumentInfo] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    why: str = "model"
    jobs: list[int] = field(default_factory=list)
    running: bool = False
    left: int = 0
    missing: int = 0  # documents whose stored PDF is gone (they can't be re-indexed)

    def describe(self) -> str:
        """A line for a person."""
        if self.running:
            return (f"Re-indexing into {self.target}: {self.left} file(s) to go. Answers come from the previous "
                    "index until it is complete.")
        missing = (f" ({self.missing} more have no stored PDF and must be added again)" if self.missing else "")
        if not self.documents:
            return "Nothing to re-index: every stored PDF is in the current model's index." + missing
        what = ("the embedding model now returns vectors of another size" if self.why == "size"
                else f"they were indexed with another model ({', '.join(self.sources)})")
        verb = "Queued" if self.jobs else "Would queue"
        return (f"{verb} {len(self.documents)} document(s) to re-index with the current model into {self.target}: "
                f"{what}.{missing}")


def other_registries(client: Any, current: str) -> list[str]:
    """The index names of every other document registry in Chroma."""
    names = []
    for item in client.list_collections():
        name = item if isinstance(item, str) else getattr(item, "name", "")
        if name.startswith(REGISTRY_PREFIX) and name != REGISTRY_PREFIX + current:
            names.append(name[len(REGISTRY_PREFIX):])
    return sorted(names)


def size_index(index_name: str, dimension: int) -> str:
    """The index for a model whose vectors changed size."""
    return f"{index_name}-{dimension}d"


def index_dimension(store: Any) -> int | None:
    """The size of the vectors an index holds (None while it is empty)."""
    got = store.chunks.get(limit=1, include=["embeddings"])
    vectors = got.get("embeddings")
    return len(vectors[0]) if vectors is not None and len(vectors) else None


class SizeChecked:
    """An embedder that refuses vectors whose size differs from the index's, with a message that says what
    happened and offers the re-index (instead of the store's "expecting embedding with dimension of …")."""

    def __init__(self, embedder: Any, store: Callable[[], Any], note: Callable[[], str] = lambda: "") -> None:
        self._embedder = embedder
        self._store = store
        self._note = note
        self._sizes: dict[str, int] = {}  # index name -> its vectors' size, once known (it never changes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def expected(self) -> tuple[str, int | None]:
        store = self._store()
        size = self._sizes.get(store.index_name)
        if size is None:
            size = index_dimension(store)
            if size is not None:
                self._sizes[store.index_name] = size
        return store.index_name, size

    def _check(self, vectors: list[list[float]]) -> list[list[float]]:
        if not vectors:
            return vectors
        index, size = self.expected()
        if size is not None and len(vectors[0]) != size:
            model = getattr(self._embedder, "model_id", "the embedding model")
            note = self._note()
            raise EmbeddingSizeChanged(
                f"The embedding model {model} now returns vectors of {len(vectors[0])} numbers, but the library "
                f"was indexed with {size} (another server, or a new version behind the same name). "
                + (note or "Re-index the library with the current model: the “Re-index” button under the "
                   "library, or `python -m rag reindex`. The stored PDFs are all kept; nothing has to be "
                   "uploaded again."))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._check([self._embedder.embed_query(text)])[0]

    def embed_documents(self, texts: Any) -> list[list[float]]:
        return self._check(self._embedder.embed_documents(texts))
