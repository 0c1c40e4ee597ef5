"""Chroma: the chunk vectors, and a registry of documents that makes each one indexed whole or not at all.

Two collections per embedding model and output size: ``chunks-<index>`` holds the chunks (cosine space) and
``docs-<index>`` holds one record per document (id = content hash, status, counts, the process writing it). An
ingest marks its document ``indexing``, writes the chunks, then flips it to ``ready``; searches only see ready
documents. A document left ``indexing`` by a process that died (``kill -9``, power loss) is removed by
``recover()``, which the engine runs at start.

Beside Chroma, each document's normalised vectors are kept in ``<data_dir>/vectors/<index>/<doc_id>.npy``, so a
search limited to some documents is an exact scan of those rows: Chroma's ``where`` filter on ``doc_id`` costs
tens to hundreds of milliseconds at 100k chunks, and a search over every document skips the filter altogether.
Each document's chunks (text and metadata) are kept beside them too, in ``<doc_id>.passages`` (row i at a known
offset): reading the passages a question keeps is then a few reads of their documents' files, where Chroma's
``get`` by id costs a few tenths of a millisecond a chunk, more as the collection outgrows the page cache.

Chroma holds the truth; the files under the data dir are caches. With several app instances sharing one Chroma
server, the set of searchable documents always comes from the registry, and a document's vector file and BM25
token file (see ``rag.search.lexical``) are rebuilt from its chunks in Chroma by whichever instance lacks them. A
document id is the hash of the PDF's bytes, so a cached file never goes stale: it is only ever missing.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from rag.core.config import Settings
from rag.core.datadir import atomic_write, check_writable, has_ended, process_tag, read_ahead
from rag.core.errors import StoreError
from rag.core.records import Chunk, DocumentInfo, Passage, indexed_text
from rag.search.lexical import LexicalIndex, TitleIndex, title_terms
from rag.text.tokencount import measure, remember

log = logging.getLogger(__name__)

READY = "ready"
INDEXING = "indexing"
_OWNER = process_tag()
_READY_TTL = 1.0  # seconds another process's commit may take to become searchable here (this one's: at once)
_READY_REREAD = 30.0  # seconds: the ready ids are read whole at least this often, whatever the checks say
_EXACT_SCAN_LIMIT = 250_000  # chunks; larger scopes go through Chroma's filter (a scan reads 4 KB per chunk)
_PASSAGES_MAGIC = b"pagewise-passages-1\n"


def open_client(settings: Settings) -> Any:
    """A Chroma client: embedded on disk under the data dir, or a Chroma server when one is configured."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    try:
        if settings.chroma_host:
            return _Guarded(chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                                settings=chroma_settings), server_unreachable(settings))
        path = settings.data_dir / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except (OSError, ValueError, RuntimeError) as exc:
        if settings.chroma_host:
            raise StoreError(f"{server_unreachable(settings)} ({exc})") from exc
        raise StoreError(f"Can't open the index in the data folder {settings.data_dir} (RAG_DATA_DIR); check that "
                         f"it exists, is writable and has free space: {exc}") from exc


def server_unreachable(settings: Settings) -> str:
    """What to tell a user whose Chroma server can't be reached."""
    return (f"Can't reach the Chroma server at {settings.chroma_host}:{settings.chroma_port}. Start it with "
            f"`chroma run --path DIR --host {settings.chroma_host} --port {settings.chroma_port}`, or check "
            "RAG_CHROMA_HOST and RAG_CHROMA_PORT. Nothing was lost: the app carries on once the server is back.")


class _Guarded:
    """A Chroma client or collection whose calls turn a lost connection into a StoreError saying what to do."""

    def __init__(self, target: Any, message: str) -> None:
        self._target = target
        self._message = message

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            import httpx

            try:
                result = value(*args, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out: the server is away
                raise StoreError(self._message) from exc
            # Collections a guarded client hands out are guarded too.
            return _Guarded(result, self._message) if type(result).__name__ == "Collection" else result

        return call


class Store:
    """Chunks and the document registry for one embedding index, plus the stored PDF files."""

    def __init__(self, settings: Settings, index_name: str, client: Any | None = None) -> None:
        self.settings = settings
        self.index_name = index_name
        check_writable(settings.data_dir)  # a read-only folder or a full disk: say so now, not mid-ingest
        self.client = client if client is not None else open_client(settings)
        self.files_dir = settings.data_dir / "files"
        self.lexical = LexicalIndex(settings.data_dir / "lexical" / index_name, source=self.chunk_texts)
        self.vectors_dir = settings.data_dir / "vectors" / index_name
        self._matrices: dict[str, tuple[tuple[int, int], Any]] = {}  # key -> (file stamp, mapped rows); see _mapped
        self._matrices_lock = threading.Lock()
        self._ready: tuple[float, list[str]] | None = None  # (when read, ids); one registry read per question
        self._registry_seen: tuple[int, frozenset[str], float, list[str], str | None] | None = None  # _read_ready
        # Embedded, every writer of the registry is a Store on this data folder, and each says so in this file.
        self._registry_changes = None if settings.chroma_host else \
            settings.data_dir / "changes" / f"registry-{index_name}"
        self._changes = 0
        self._titles = TitleIndex()  # each document's title terms, read once (a doc id is the PDF's hash)
        self._max_batch = max(1, int(self.client.get_max_batch_size()))
        self.registry = self.client.get_or_create_collection(f"docs-{index_name}", embedding_function=None)
        self.chunks = self.client.get_or_create_collection(
            f"chunks-{index_name}", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})

    # --- the registry ---------------------------------------------------------------------------------------------
    def documents(self, include_pending: bool = False) -> list[DocumentInfo]:
        """Indexed documents, oldest first (with ``include_pending``, also those being written)."""
        got = self.registry.get(include=["metadatas"])
        docs = [_info(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)]
        if not include_pending:
            docs = [d for d in docs if d.status == READY]
        return sorted(docs, key=lambda d: (d.added_at, d.file_name))

    def documents_named(self, file_name: str) -> list[DocumentInfo]:
        """The ready documents with this file name, oldest first (one registry query, whatever the library's size)."""
        got = self.registry.get(where={"$and": [{"file_name": file_name}, {"status": READY}]}, include=["metadatas"])
        docs = [_info(i, m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)]
        return sorted(docs, key=lambda d: (d.added_at, d.file_name))

    def get(self, doc_id: str) -> DocumentInfo | None:
        """The registry record of one document, if any."""
        got = self.registry.get(ids=[doc_id], include=["metadatas"])
        return _info(got["ids"][0], got["metadatas"][0]) if got["ids"] else None

    def check(self) -> None:
        """Raise a StoreError saying what to do if the index can't be reached right now."""
        self.client.heartbeat()

    def ready_ids(self) -> list[str]:
        """Ids of the searchable documents."""
        # Ids only (reading every record's metadata costs ~10x more), and reused for a moment: a question asks
        # twice. Changes made through this Store clear it; a deleted document has no chunks left to find anyway.
        cached = self._ready
        if cached is None or time.monotonic() - cached[0] > _READY_TTL:
            cached = (time.monotonic(), self._read_ready())
            self._ready = cached
        return list(cached[1])

    def _read_ready(self) -> list[str]:
        """The ready ids, read again only when the registry may have changed, and at least every
        ``_READY_REREAD`` seconds. Embedded, a change is told by the file every writer rewrites after its write
        (``_changed``: a stat and a read); behind a server, by the registry's size or the documents being written
        differing from the last read (reading 2,000 ids costs ~10-20 ms, those two checks ~1-2 ms; a delete and
        a whole ingest by another process between two checks are seen within ``_READY_REREAD``)."""
        stamp = self._registry_stamp()
        known = self._registry_seen
        fresh = known is not None and time.monotonic() - known[2] < _READY_REREAD
        if known is not None and fresh and stamp is not None and known[4] == stamp:
            return known[3]
        count = int(self.registry.count())
        pending = frozenset(self.registry.get(where={"status": INDEXING}, include=[])["ids"])
        if known is not None and fresh and stamp is None and known[:2] == (count, pending):
            return known[3]
        ids = list(self.registry.get(where={"status": READY}, include=[])["ids"])
        self._registry_seen = (count, pending, time.monotonic(), ids, stamp)
        return ids

    def _registry_stamp(self) -> str | None:
        """What the registry's change file says now ("" before any change); None behind a server."""
        if self._registry_changes is None:
            return None
        try:
            return self._registry_changes.read_text()
        except FileNotFoundError:
            return ""
        except OSError:
            return None  # unreadable: fall back to the registry's own checks

    def _changed(self) -> None:
        """Tell every Store on this data folder (this process's and others') that the registry changed."""
        self._ready = None
        if self._registry_changes is None:
            return
        self._changes += 1
        try:
            self._registry_changes.parent.mkdir(parents=True, exist_ok=True)
            self._registry_changes.write_text(f"{time.time_ns()} {os.getpid()} {id(self)} {self._changes}")
        except OSError as exc:  # the registry checks still see it (see _read_ready)
            log.warning("Could not record a change of the document registry: %s", exc)
            self._registry_changes = None

    def begin(self, info: DocumentInfo) -> None:
        """Record that ``info`` is being written (not searchable until ``commit``)."""
        self.registry.upsert(ids=[info.doc_id], embeddings=[[1.0]],
                             metadatas=[_meta(info, status=INDEXING)])
        self._changed()

    def add_chunks(self, doc_id: str, file_name: str, title: str, chunks: Sequence[Chunk],
                   vectors: Sequence[Sequence[float]]) -> None:
        """Write a document's chunks in batches Chroma accepts, refreshing the ingest's heartbeat."""
        metadatas = [{"doc_id": doc_id, "file_name": file_name, "title": title, "index": c.index,
                      "page_start": c.page_start, "page_end": c.page_end, "char_start": c.char_start,
                      "char_end": c.char_end, "context": c.context, "ocr": c.ocr,
                      **_chunk_extras(c), **token_count(c.text)} for c in chunks]
        for i in range(0, len(chunks), self._max_batch):
            batch = chunks[i:i + self._max_batch]
            self.chunks.upsert(
                ids=[chunk_id(doc_id, c.index) for c in batch],
                embeddings=[list(v) for v in vectors[i:i + self._max_batch]],
                documents=[c.text for c in batch],
                metadatas=metadatas[i:i + self._max_batch],
            )
            self._heartbeat(doc_id)
        self._save_vectors(doc_id, [c.index for c in chunks], vectors)
        self._save_passages(doc_id, [c.index for c in chunks], [c.text for c in chunks], metadatas)
        self.lexical.add(doc_id, [chunk_id(doc_id, c.index) for c in chunks], [c.embed_text for c in chunks])

    def commit(self, info: DocumentInfo) -> None:
        """Make a fully written document searchable."""
        self.registry.upsert(ids=[info.doc_id], embeddings=[[1.0]], metadatas=[_meta(info, status=READY)])
        self._changed()  # after the write, so a concurrent read can't cache the state before it
        self._titles.drop(info.doc_id)

    def delete(self, doc_id: str) -> None:
        """Remove a document: its chunks, its registry record and its stored file."""
        self.chunks.delete(where={"doc_id": doc_id})
        self._vectors_path(doc_id).unlink(missing_ok=True)
        self._passages_path(doc_id).unlink(missing_ok=True)
        self.lexical.remove(doc_id)
        self.registry.delete(ids=[doc_id])
        self._changed()
        self._titles.drop(doc_id)
        self.file_path(doc_id).unlink(missing_ok=True)
        self.ocr_path(doc_id).unlink(missing_ok=True)
        for path in self.vectors_dir.glob(f"{doc_id}.pages-*.np[yz]"):  # page-image vectors, any model
            path.unlink(missing_ok=True)

    def recover(self) -> list[str]:
        """Remove documents whose ingest died half-way; return their file names."""
        removed = []
        now = time.time()
        got = self.registry.get(where={"status": INDEXING}, include=["metadatas"])
        for doc_id, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
            idle = now - float(meta.get("heartbeat", 0))
            if has_ended(str(meta.get("owner", ""))) or idle > self.settings.stale_ingest_seconds:
                log.warning("Removing %s (%s): its indexing never finished", meta.get("file_name"), doc_id)
                self.delete(doc_id)
                removed.append(str(meta.get("file_name", doc_id)))
        return removed

    # --- files ------------------------------------------------------------------------------------------------
    def file_path(self, doc_id: str) -> Path:
        """Where the original PDF of a document is kept (named by its content hash)."""
        return self.files_dir / f"{doc_id}.pdf"

    def ocr_path(self, doc_id: str) -> Path:
        """Where the lines OCR read on a document's pages are kept, beside its PDF (see
        ``rag.ingestion.ocr.to_json``)."""
        return self.files_dir / f"{doc_id}.ocr.json"

    def save_ocr(self, doc_id: str, text: str) -> None:
        """Keep the OCR lines of a document for the viewer (written atomically)."""
        atomic_write(self.ocr_path(doc_id), lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def save_file(self, doc_id: str, source: Path) -> Path:
        """Keep a copy of the original PDF for the viewer (written atomically)."""
        target = self.file_path(doc_id)
        if not target.exists():
            atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
        return target

    # --- search -----------------------------------------------------------------------------------------------
    def lexical_search(self, query: str, k: int, doc_ids: Sequence[str]) -> list[tuple[str, float]]:
        """BM25's ``k`` best (chunk_id, score) among ``doc_ids``, over the documents the registry says are ready."""
        self.lexical.sync(self.ready_ids())
        return self.lexical.search(query, k, doc_ids)

    def lexical_scores(self, query: str, chunk_ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of the given chunks (0 for those that don't match)."""
        self.lexical.sync(self.ready_ids())
        return self.lexical.scores(query, chunk_ids)

    def title_scores(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """How well each document's title matches ``query``, among ``doc_ids`` (best 1; no match left out)."""
        missing = [d for d in dict.fromkeys(doc_ids) if d not in self._titles]
        if missing:
            got = self.registry.get(ids=missing, include=["metadatas"])
            for doc_id, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
                self._titles.put(doc_id, title_terms(str(meta.get("title") or meta.get("file_name", ""))))
        return self._titles.scores(query, doc_ids)

    def dense_scores(self, vector: Sequence[float], chunk_ids: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of ``vector`` to each of the given chunks (those that exist)."""
        import numpy as np

        q = _unit(vector)
        out: dict[str, float] = {}
        missing: list[str] = []
        for doc_id, wanted in _by_document(chunk_ids).items():
            matrices = self._matrices_for([doc_id])
            if matrices is None or matrices[0][1].shape[1] != q.shape[0]:
                missing.extend(cid for cid, _ in wanted)
                continue
            matrix = matrices[0][1]
            present = [(cid, index) for cid, index in wanted if 0 <= index < matrix.shape[0]]
            if present:  # one product per document, not one per chunk
                picked = np.asarray(matrix[np.fromiter((i for _, i in present), dtype=np.intp)])
                out.update(zip((cid for cid, _ in present), (picked @ q).tolist(), strict=True))
        if missing:
            got = self.chunks.get(ids=missing, include=["embeddings"])
            for cid, emb in zip(got["ids"], got["embeddings"], strict=True):
                out[cid] = float(_unit(emb) @ q)
        return out

    def query(self, vector: Sequence[float], k: int, doc_ids: Sequence[str] | None = None) -> list[Passage]:
        """The ``k`` chunks nearest to ``vector`` among ready documents (or the given subset of them)."""
        hits = self.nearest(vector, k, doc_ids)
        found = self.get_passages([cid for cid, _ in hits])
        return [replace(found[cid], score=score) for cid, score in hits if cid in found]

    def warm(self) -> None:
        """Read now what the first question would otherwise wait for: the BM25 index, each document's vector file
        (mapped, not read), and Chroma's vector index (loaded from disk on its first search: seconds for a few
        hundred thousand chunks), by one search with a stored vector. Nothing is read from an empty index."""
        ready = self.ready_ids()
        self.lexical.sync(ready)
        for doc_id in ready:  # map each document's vector file now (the scoped scans and cross-scoring read them)
            if self._vectors_path(doc_id).exists():
                mapped = self._matrices_for([doc_id])
                read_ahead(getattr(mapped[0][1], "_mmap", None) if mapped else None)
        stored = self.chunks.peek(1).get("embeddings")
        if stored is not None and len(stored):
            self.chunks.query(query_embeddings=[list(stored[0])], n_results=1, include=["distances"])

    def nearest(self, vector: Sequence[float], k: int, doc_ids: Sequence[str] | None = None
                ) -> list[tuple[str, float]]:
        """(chunk_id, cosine similarity) of the ``k`` chunks nearest to ``vector``, best first, among ready
        documents (or the given subset of them); the passages themselves are not read."""
        ready = set(self.ready_ids())
        scope = list(dict.fromkeys(d for d in (doc_ids if doc_ids is not None else ready) if d in ready))
        if not scope or k <= 0:
            return []
        found = None
        seen = self._registry_seen  # the registry as ready_ids last read it (a hit outside the scope is checked)
        if len(scope) == len(ready) and seen is not None and not seen[1] and seen[0] == len(ready):
            found = self._nearest_everything(vector, k, ready)  # nothing is pending: no filter needed
        else:
            found = self._nearest_exact(vector, k, scope)
        return found if found is not None else self._nearest_filtered(vector, k, scope)

    def _nearest_everything(self, vector: Sequence[float], k: int, scope: set[str]
                            ) -> list[tuple[str, float]] | None:
        """HNSW search of the whole collection; None if a chunk outside ``scope`` came back (then filter)."""
        found = _hits(self.chunks.query(query_embeddings=[list(vector)], n_results=k, include=["distances"]))
        return found if all(split_chunk_id(cid)[0] in scope for cid, _ in found) else None

    def _nearest_filtered(self, vector: Sequence[float], k: int, scope: Sequence[str]) -> list[tuple[str, float]]:
        """HNSW search through Chroma's ``where`` filter on ``doc_id`` (slow on large collections)."""
        where: dict[str, Any] = {"doc_id": scope[0]} if len(scope) == 1 else {"doc_id": {"$in": list(scope)}}
        return _hits(self.chunks.query(query_embeddings=[list(vector)], n_results=k, where=where,
                                       include=["distances"]))

    def _nearest_exact(self, vector: Sequence[float], k: int, scope: Sequence[str]
                       ) -> list[tuple[str, float]] | None:
        """Exact cosine search over the saved vectors of ``scope``; None if some are missing or it's too big."""
        import numpy as np

        matrices = self._matrices_for(scope)
        if matrices is None:
            return None
        rows = sum(m.shape[0] for _, m in matrices)
        q = _unit(vector)
        if rows == 0 or rows > _EXACT_SCAN_LIMIT or any(m.shape[1] != q.shape[0] for _, m in matrices):
            return None
        # einsum is single-threaded SIMD: steadier than a threaded BLAS gemv on small, memory-bound products.
        scores = np.concatenate([np.einsum("ij,j->i", m, q) for _, m in matrices])
        owners = np.repeat(np.arange(len(matrices)), [m.shape[0] for _, m in matrices])
        starts = np.cumsum([0] + [m.shape[0] for _, m in matrices])
        k = min(k, rows)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(chunk_id(matrices[owners[i]][0], int(i - starts[owners[i]])), float(scores[i])) for i in top]

    def _matrices_for(self, doc_ids: Sequence[str]) -> list[tuple[str, Any]] | None:
        """The saved (normalised, memory-mapped) vectors of each document, or None if any has none."""
        out = []
        for doc_id in doc_ids:
            path = self._vectors_path(doc_id)
            if not path.exists():
                with self._matrices_lock:  # one writer of a missing file at a time
                    try:
                        if not path.exists() and not self._fetch_vectors(doc_id):
                            return None
                    except (OSError, ValueError):
                        return None
            matrix = self._mapped(doc_id, path)
            if matrix is None:
                return None
            out.append((doc_id, matrix))
        return out

    def _save_vectors(self, doc_id: str, indices: Sequence[int], vectors: Sequence[Sequence[float]]) -> None:
        """Keep the document's normalised vectors for exact scoped search (row i is the chunk of index i)."""
        import numpy as np

        path = self._vectors_path(doc_id)
        if not indices or list(indices) != list(range(len(indices))):
            path.unlink(missing_ok=True)  # rows wouldn't map to chunk ids: this document uses Chroma's filter
            return
        matrix = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms > 0, norms, 1.0)
        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:  # np.save would add ".npy" to a path
                np.save(fh, matrix)

        atomic_write(path, write)

    def _stored(self, doc_id: str, what: str) -> list[tuple[str, Any, dict[str, Any]]]:
        """A document's chunks as Chroma holds them, in order: (chunk id, its ``what``, "documents" or
        "embeddings", and its metadata)."""
        got = self.chunks.get(where={"doc_id": doc_id}, include=[what, "metadatas"])
        return sorted(zip(got["ids"], got[what], got["metadatas"], strict=True), key=lambda r: int(r[2]["index"]))

    def _fetch_vectors(self, doc_id: str) -> bool:
        """Write the vector file of a document indexed elsewhere (another app instance, an older version) from
        its chunks in Chroma; False if the document has no complete set of chunks there."""
        rows = self._stored(doc_id, "embeddings")
        if not rows:
            return False
        self._save_vectors(doc_id, [int(meta["index"]) for _, _, meta in rows], [e for _, e, _ in rows])
        return self._vectors_path(doc_id).exists()

    def chunk_texts(self, doc_id: str) -> tuple[list[str], list[str]]:
        """A document's chunk ids and the text BM25 indexes (header and text), read from Chroma, in order."""
        rows = self._stored(doc_id, "documents")
        texts = [indexed_text(str(meta.get("context", "")), text) for _, text, meta in rows]
        return [cid for cid, _, _ in rows], texts

    def _vectors_path(self, doc_id: str) -> Path:
        return self.vectors_dir / f"{doc_id}.npy"

    def get_passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        """Stored chunks by id (those that exist): from their documents' passage files, from Chroma for a
        document that has none (indexed by an older version or another instance; see ``fill_passages``)."""
        if not ids:
            return {}
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        missing: list[str] = []
        for doc_id, wanted in _by_document(ids).items():
            read = self._read_passages(doc_id, [index for _, index in wanted])
            if read is None:
                missing.extend(cid for cid, _ in wanted)
                continue
            found.update((cid, read[index]) for cid, index in wanted if index in read)
        if missing:
            got = self.chunks.get(ids=missing, include=["documents", "metadatas"])
            found.update((cid, (text, meta)) for cid, text, meta in zip(
                got["ids"], got["documents"], got["metadatas"], strict=True))
        for text, meta in found.values():
            if isinstance(meta.get("tokens"), (int, float)):  # counted at ingestion (not in older indexes)
                remember(text, str(meta.get("language") or "") or None, float(meta["tokens"]))
        return {cid: passage(cid, text, meta, 0.0) for cid, (text, meta) in found.items()}

    def _passages_path(self, doc_id: str) -> Path:
        return self.vectors_dir / f"{doc_id}.passages"

    def _save_passages(self, doc_id: str, indices: Sequence[int], texts: Sequence[str],
                       metadatas: Sequence[dict[str, Any]]) -> None:
        """Keep a document's chunks beside its vectors (row i is the chunk of index i): a magic line, the row
        count, the rows' offsets, then each row as JSON ``[text, metadata]``."""
        path = self._passages_path(doc_id)
        if not indices or list(indices) != list(range(len(indices))):
            path.unlink(missing_ok=True)  # rows wouldn't map to chunk ids: this document is read from Chroma
            return
        blobs = [json.dumps([text, meta], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                 for text, meta in zip(texts, metadatas, strict=True)]
        offsets = [0, *itertools.accumulate(len(blob) for blob in blobs)]
        head = _PASSAGES_MAGIC + struct.pack(f"<Q{len(offsets)}Q", len(blobs), *offsets)
        atomic_write(path, lambda tmp: tmp.write_bytes(head + b"".join(blobs)))

    def _read_passages(self, doc_id: str, indices: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]] | None:
        """Rows ``indices`` of a document's passage file (those it has), or None if it has no readable file."""
        try:
            fd = os.open(self._passages_path(doc_id), os.O_RDONLY)
        except OSError:
            return None
        try:
            start = len(_PASSAGES_MAGIC) + 8
            head = os.pread(fd, start, 0)
            if len(head) != start or not head.startswith(_PASSAGES_MAGIC):
                return None
            (count,) = struct.unpack("<Q", head[len(_PASSAGES_MAGIC):])
            body = start + 8 * (count + 1)
            out = {}
            for index in indices:
                if 0 <= index < count:
                    lo, hi = struct.unpack("<QQ", os.pread(fd, 16, start + 8 * index))
                    text, meta = json.loads(os.pread(fd, hi - lo, body + lo))
                    out[index] = (text, meta)
            return out
        except (OSError, ValueError, struct.error):
            return None
        finally:
            os.close(fd)

    def fill_passages(self) -> int:
        """Write the passage file of each ready document that lacks one (indexed before they were kept, or by
        another instance sharing a Chroma server), from its chunks in Chroma; how many were written. Run in the
        background as the app starts: until then such a document's passages are read from Chroma."""
        written = 0
        for doc_id in self.ready_ids():
            if self._passages_path(doc_id).exists():
                continue
            rows = self._stored(doc_id, "documents")
            if rows:
                self._save_passages(doc_id, [int(meta["index"]) for _, _, meta in rows], [t for _, t, _ in rows],
                                    [meta for _, _, meta in rows])
                written += 1
        return written

    def find_chunks(self, doc_ids: Sequence[str], where: dict[str, Any] | None = None,
                    contains: Sequence[str] = (), limit: int = 200) -> dict[str, Passage]:
        """Up to ``limit`` stored chunks of ``doc_ids`` whose metadata match ``where`` (a Chroma filter) and whose
        text holds one of the strings ``contains`` (case-sensitive), by id: the chunks of a page a question names,
        or those holding a caption it names (see ``rag.search.retrieval.references``)."""
        if not doc_ids or (where is None and not contains):
            return {}
        scope: dict[str, Any] = {"doc_id": {"$in": list(doc_ids)}} if len(doc_ids) > 1 else {"doc_id": doc_ids[0]}
        clause = {"$and": [scope, where]} if where else scope
        text = None
        if contains:
            text = {"$contains": contains[0]} if len(contains) == 1 else {"$or": [{"$contains": c} for c in contains]}
        got = self.chunks.get(where=clause, where_document=text, include=["documents", "metadatas"], limit=limit)
        return {cid: passage(cid, doc, meta, 0.0)
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}

    def save_page_vectors(self, doc_id: str, model: str, pages: Sequence[int],
                          vectors: Sequence[Sequence[float]]) -> None:
        """Keep a document's page-image vectors (of the visual embedder named ``model``) beside its chunk vectors:
        one memory-mapped matrix, each row a page's number followed by its normalised vector."""
        import numpy as np

        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:
            matrix = matrix.reshape(len(list(pages)), -1)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)
        rows = np.concatenate([np.asarray(list(pages), dtype=np.float32).reshape(-1, 1), matrix], axis=1)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:  # np.save would add ".npy" to a path
                np.save(fh, rows)

        atomic_write(self._pages_path(doc_id, model), write)

    def page_scores(self, vector: Sequence[float], model: str, doc_ids: Sequence[str],
                    k: int) -> list[tuple[str, int, float]]:
        """The ``k`` pages of ``doc_ids`` whose page-image vectors (of ``model``) are nearest ``vector``: (doc_id,
        page, cosine), best first. Documents indexed without page images have none. Each document's file is mapped
        once and read again only when it changes, as the chunk vectors are."""
        import numpy as np

        query = _unit(vector)
        found: list[tuple[str, int, float]] = []
        for doc_id in doc_ids:
            rows = self._page_rows(doc_id, model)
            if rows is None or not len(rows) or rows.shape[1] != len(query) + 1:
                continue
            sims = np.einsum("ij,j->i", rows[:, 1:], query)
            found.extend((doc_id, int(p), float(s)) for p, s in zip(rows[:, 0], sims, strict=True))
        return sorted(found, key=lambda item: -item[2])[:k]

    def _pages_path(self, doc_id: str, model: str) -> Path:
        return self.vectors_dir / f"{doc_id}.pages-{model}.npy"

    def _page_rows(self, doc_id: str, model: str) -> Any:
        """The memory-mapped page rows of a document (page number, then vector), or None if it has none. A file of
        the earlier layout (``.npz``: pages and vectors apart) is rewritten in this one the first time it is read."""
        import numpy as np

        path = self._pages_path(doc_id, model)
        if not path.exists():
            legacy = path.with_suffix(".npz")
            if not legacy.exists():
                return None
            try:
                with np.load(legacy) as data:
                    pages, vectors = data["pages"], data["vectors"]
                self.save_page_vectors(doc_id, model, pages.tolist(), vectors)
                legacy.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError):
                return None
        return self._mapped(f"pages:{model}:{doc_id}", path)

    def _mapped(self, key: str, path: Path) -> Any:
        """``path``'s 2-d array, memory-mapped and kept under ``key`` until the file changes (any process may
        rewrite it); None if it can't be read."""
        import numpy as np

        with self._matrices_lock:
            try:
                stat = path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                cached = self._matrices.get(key)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, np.load(path, mmap_mode="r"))
                    self._matrices[key] = cached
            except (OSError, ValueError):
                self._matrices.pop(key, None)
                return None
        return cached[1] if cached[1].ndim == 2 else None

    def count_chunks(self, doc_id: str | None = None) -> int:
        """Number of stored chunks (of one document, or all)."""
        if doc_id is None:
            return int(self.chunks.count())
        return len(self.chunks.get(where={"doc_id": doc_id}, include=[])["ids"])

    def _heartbeat(self, doc_id: str) -> None:
        got = self.registry.get(ids=[doc_id], include=["metadatas"])
        if got["ids"]:
            meta = dict(got["metadatas"][0])
            meta["heartbeat"] = time.time()
            self.registry.update(ids=[doc_id], metadatas=[meta])


def _by_document(chunk_ids: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """Chunk ids (each once) by document, in the order given: doc_id -> [(chunk id, index)]."""
    out: dict[str, list[tuple[str, int]]] = {}
    for cid in dict.fromkeys(chunk_ids):
        doc_id, index = split_chunk_id(cid)
        out.setdefault(doc_id, []).append((cid, index))
    return out


def chunk_id(doc_id: str, index: int) -> str:
    """The id of a chunk in the vector store."""
    return f"{doc_id}:{index}"


def split_chunk_id(cid: str) -> tuple[str, int]:
    """(doc_id, index) of a chunk id."""
    doc_id, _, index = cid.rpartition(":")
    return doc_id, int(index)


def _unit(vector: Sequence[float]) -> Any:
    """``vector`` as a float32 array of length 1 (a zero vector stays zero)."""
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    return v / (float(np.linalg.norm(v)) or 1.0)


def _hits(got: dict[str, Any]) -> list[tuple[str, float]]:
    """(chunk_id, cosine similarity) from a Chroma query result (one query)."""
    return [(cid, 1.0 - float(dist)) for cid, dist in zip(got["ids"][0], got["distances"][0], strict=True)]


def token_count(text: str) -> dict[str, Any]:
    """A chunk's language and estimated Qwen3 tokens, kept in its metadata so that a prompt quoting it adds the
    count up instead of counting the text (see ``rag.text.tokencount.counted``)."""
    language, tokens = measure(text)
    return {"language": language or "", "tokens": tokens}


def passage(cid: str, text: str, meta: dict[str, Any], score: float) -> Passage:
    """A Passage from a stored chunk (chunks stored before page labels and figure text have neither)."""
    return Passage(chunk_id=cid, doc_id=str(meta["doc_id"]), file_name=str(meta["file_name"]), text=text,
                   page_start=int(meta["page_start"]), page_end=int(meta["page_end"]),
                   char_start=int(meta["char_start"]), char_end=int(meta["char_end"]), score=score,
                   title=str(meta.get("title", "")), ocr=bool(meta.get("ocr", False)),
                   page_label=str(meta.get("page_label", "")), figure=bool(meta.get("figure", False)))


def _chunk_extras(c: Chunk) -> dict[str, Any]:
    """A chunk's printed page label and figure mark, stored only where they say something."""
    return {**({"page_label": c.page_label} if c.page_label else {}), **({"figure": True} if c.figure else {})}


def _meta(info: DocumentInfo, status: str) -> dict[str, Any]:
    return {"file_name": info.file_name, "title": info.title, "pages": info.pages, "chunks": info.chunks,
            "status": status, "added_at": info.added_at, "size_bytes": info.size_bytes,
            "pages_without_text": json.dumps(info.pages_without_text), "ocr_pages": json.dumps(info.ocr_pages),
            "owner": _OWNER, "heartbeat": time.time()}


def _info(doc_id: str, meta: dict[str, Any]) -> DocumentInfo:
    return DocumentInfo(doc_id=doc_id, file_name=str(meta["file_name"]), title=str(meta.get("title", "")),
                        pages=int(meta.get("pages", 0)), chunks=int(meta.get("chunks", 0)),
                        status=str(meta.get("status", INDEXING)), added_at=float(meta.get("added_at", 0)),
                        size_bytes=int(meta.get("size_bytes", 0)),
                        pages_without_text=json.loads(str(meta.get("pages_without_text", "[]"))),
                        ocr_pages=json.loads(str(meta.get("ocr_pages", "[]"))))
