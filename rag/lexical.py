"""BM25 over chunk text (bm25s), for questions that hinge on a rare term, a name or a number.

Each document's tokenized chunks are saved beside Chroma (``<data_dir>/lexical/<index>/<doc_id>.json``) when it
is ingested and removed when it is deleted. The in-memory BM25 index is rebuilt from those files, without
re-tokenizing, only when the set of documents has changed (a version file marks changes by any process); a
query never rebuilds anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

# Words, and numbers kept whole with their separators ("1,204.5", "10-k" stays two tokens).
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # stemming is a quality boost, not a requirement
        log.warning("PyStemmer is not installed; lexical search runs without stemming (pip install PyStemmer)")
        return None


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | {"what", "which", "who", "how", "when", "where", "why", "does", "did", "do"}


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed tokens without stop words; numbers keep their digits, commas and points."""
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    stemmer = _stemmer()
    if stemmer is None:
        return words
    return [w if w[0].isdigit() else s for w, s in zip(words, stemmer.stemWords(words), strict=True)]


class LexicalIndex:
    """BM25 search over the chunks of ready documents, kept on disk per document."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._version: tuple[str, int] | None = None  # (version file content, local change count)
        self._changes = 0
        self._bm25: Any = None
        self._chunk_ids: list[str] = []
        self._doc_ranges: dict[str, tuple[int, int]] = {}

    # --- writing ------------------------------------------------------------------------------------------------
    def add(self, doc_id: str, chunk_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Save a document's tokenized chunks (written atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"ids": list(chunk_ids), "tokens": [tokenize(t) for t in texts]}
        target = self._path(doc_id)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)
        self._touch()

    def remove(self, doc_id: str) -> None:
        """Forget a document."""
        path = self._path(doc_id)
        if path.exists():
            path.unlink()
            self._touch()

    # --- searching ----------------------------------------------------------------------------------------------
    def search(self, query: str, k: int, doc_ids: Iterable[str]) -> list[tuple[str, float]]:
        """The ``k`` best (chunk_id, score) among the chunks of ``doc_ids``, best first; only positive scores."""
        import numpy as np

        tokens = tokenize(query)
        with self._lock:
            self._refresh()
            bm25, ids, ranges = self._bm25, self._chunk_ids, self._doc_ranges
        if bm25 is None or not tokens or k <= 0:
            return []
        known = [t for t in tokens if t in bm25.vocab_dict]
        if not known:
            return []
        scores = bm25.get_scores(known)
        mask = np.zeros(len(ids), dtype=bool)
        for doc_id in doc_ids:
            if doc_id in ranges:
                start, end = ranges[doc_id]
                mask[start:end] = True
        scores = np.where(mask, scores, 0.0)
        k = min(k, int(np.count_nonzero(scores)))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top]

    # --- internals ------------------------------------------------------------------------------------------
    def _path(self, doc_id: str) -> Path:
        return self.folder / f"{doc_id}.json"

    def _touch(self) -> None:
        self._changes += 1
        stamp = f"{os.getpid()}-{time.time_ns()}-{self._changes}"
        (self.folder / "VERSION").write_text(stamp, encoding="utf-8")

    def _refresh(self) -> None:
        """Rebuild the BM25 index if documents changed since it was built (by this or another process)."""
        try:
            stamp = (self.folder / "VERSION").read_text(encoding="utf-8")
        except FileNotFoundError:
            stamp = ""
        version = (stamp, self._changes)
        if version == self._version:
            return
        import bm25s

        # bm25s sets its own logger to DEBUG when imported, which would print a line per rebuild in the CLI and app.
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        ids: list[str] = []
        corpus: list[list[str]] = []
        ranges: dict[str, tuple[int, int]] = {}
        for path in sorted(self.folder.glob("*.json")) if self.folder.exists() else []:
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("Skipping unreadable lexical index file %s", path)
                continue
            ranges[path.stem] = (len(ids), len(ids) + len(payload["ids"]))
            ids.extend(payload["ids"])
            corpus.extend(payload["tokens"])
        bm25 = None
        if corpus:
            bm25 = bm25s.BM25()
            bm25.index(corpus, show_progress=False)
        self._bm25, self._chunk_ids, self._doc_ranges, self._version = bm25, ids, ranges, version
