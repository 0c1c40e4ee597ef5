"""Dense search in the store: the exact scan of saved vectors (scoped), the unfiltered search (everything) and
Chroma's filter (documents without saved vectors) give the same passages."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from rag.core.config import Settings
from rag.core.records import Chunk, DocumentInfo
from rag.engine import Engine
from rag.search.store import Store


def _library(tmp_path: Path, docs: int = 4, chunks: int = 30) -> tuple[Store, list[str], np.ndarray]:
    store = Store(Settings.from_env({}, data_dir=tmp_path), "test-16")
    rng = np.random.default_rng(0)
    ids, vectors = [], rng.standard_normal((docs, chunks, 16)).astype(np.float32)
    for d in range(docs):
        doc_id = f"doc{d:02d}"
        info = DocumentInfo(doc_id=doc_id, file_name=f"{doc_id}.pdf", title="", pages=chunks, chunks=chunks,
                            status="indexing", added_at=time.time())
        store.begin(info)
        store.add_chunks(doc_id, info.file_name, "", [Chunk(i, f"text {d} {i}", i + 1, i + 1, 0, 9)
                                                      for i in range(chunks)], vectors[d].tolist())
        store.commit(info)
        ids.append(doc_id)
    return store, ids, vectors


def test_scoped_exact_search_matches_chromas_filter(tmp_path: Path) -> None:
    store, ids, vectors = _library(tmp_path)
    query = (vectors[1, 3] + 0.1).tolist()
    for scope in ([ids[1]], ids[:2], None):
        exact = store.query(query, 10, scope)
        filtered = store._nearest_filtered(query, 10, scope or ids)
        assert [p.chunk_id for p in exact] == [cid for cid, _ in filtered]
        assert np.allclose([p.score for p in exact], [score for _, score in filtered], atol=1e-4)
    assert store.query(query, 10, [ids[1]])[0].chunk_id == f"{ids[1]}:3"


def test_search_without_saved_vectors_or_with_a_pending_document(tmp_path: Path) -> None:
    store, ids, vectors = _library(tmp_path)
    expected = [p.chunk_id for p in store.query(vectors[2, 5].tolist(), 5, ids[2:])]
    for path in store.vectors_dir.glob("*.npy"):
        path.unlink()  # as indexed by an older version: Chroma's filter answers
    assert [p.chunk_id for p in store.query(vectors[2, 5].tolist(), 5, ids[2:])] == expected
    store.begin(DocumentInfo(doc_id="pending", file_name="p.pdf", title="", pages=1, chunks=0,
                             status="indexing", added_at=time.time()))
    assert {p.doc_id for p in store.query(vectors[0, 0].tolist(), 200)} == set(ids)  # never the pending one
    store.delete(ids[2])
    assert not (store.vectors_dir / f"{ids[2]}.npy").exists()
    assert ids[2] not in {p.doc_id for p in store.query(vectors[2, 5].tolist(), 200)}


def test_title_scores_read_the_registry_and_follow_changes(tmp_path: Path) -> None:
    store = Store(Settings.from_env({}, data_dir=tmp_path), "test-16")

    def add(doc_id: str, file_name: str, title: str) -> None:
        info = DocumentInfo(doc_id=doc_id, file_name=file_name, title=title, pages=1, chunks=1,
                            status="indexing", added_at=time.time())
        store.begin(info)
        store.add_chunks(doc_id, file_name, title, [Chunk(0, "text", 1, 1, 0, 4)], [[1.0] * 16])
        store.commit(info)

    add("a", "acme-2021.pdf", "Acme 2021 annual report")
    add("b", "acme-2022.pdf", "Acme 2022 annual report")
    add("c", "globex.pdf", "")  # no title: the file name stands in
    question = "What was Acme's revenue in 2022?"
    scores = store.title_scores(question, ["a", "b", "c"])
    assert scores["b"] == 1.0 and 0 < scores["a"] < 1 and "c" not in scores
    assert store.title_scores("Globex margins", ["a", "b", "c"]) == {"c": 1.0}
    assert set(store.title_scores(question, ["a"])) == {"a"}  # only the documents asked about
    store.delete("b")
    add("b", "renamed.pdf", "Initech quarterly filing")  # the same PDF again, under another title
    assert store.title_scores(question, ["a", "b", "c"]) == {"a": 1.0}


def test_ready_documents_follow_another_process_without_rereading_an_unchanged_registry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, vectors = _library(tmp_path, docs=3, chunks=4)
    other = Store(Settings.from_env({}, data_dir=tmp_path), "test-16")  # another process on the same index
    assert sorted(store.ready_ids()) == ids

    reads: list[object] = []
    get = store.registry.get
    count = store.registry.count
    monkeypatch.setattr(store.registry, "get", lambda *a, **kw: reads.append(kw.get("where")) or get(*a, **kw))
    monkeypatch.setattr(store.registry, "count", lambda: reads.append("count") or count())
    for _ in range(3):
        store._ready = None  # a question a while later
        assert sorted(store.ready_ids()) == ids
    assert reads == []  # nothing changed, as the writers' change file says: the registry was not read at all

    def added(doc_id: str) -> DocumentInfo:
        return DocumentInfo(doc_id=doc_id, file_name=f"{doc_id}.pdf", title="", pages=1, chunks=1,
                            status="indexing", added_at=time.time())

    other.begin(added("new"))  # being written: not searchable
    store._ready = None
    assert sorted(store.ready_ids()) == ids
    other.add_chunks("new", "new.pdf", "", [Chunk(0, "text", 1, 1, 0, 4)], [[1.0] * 16])
    other.commit(added("new"))  # the same size, one document fewer being written
    store._ready = None
    assert sorted(store.ready_ids()) == sorted([*ids, "new"])
    other.delete(ids[0])
    store._ready = None
    assert sorted(store.ready_ids()) == sorted([*ids[1:], "new"])

    # A delete and a whole ingest between two looks leave size and pending alike: read again within the limit.
    other.delete(ids[1])
    other.begin(added("newer"))
    other.add_chunks("newer", "newer.pdf", "", [Chunk(0, "text", 1, 1, 0, 4)], [[1.0] * 16])
    other.commit(added("newer"))
    seen = store._registry_seen
    assert seen is not None
    store._registry_seen = (seen[0], seen[1], seen[2] - 31.0, seen[3], seen[4])
    store._ready = None
    assert sorted(store.ready_ids()) == sorted([ids[2], "new", "newer"])


def test_warming_a_reopened_store_reads_its_indexes_before_a_question(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, vectors = _library(tmp_path, docs=2, chunks=5)
    reopened = Store(Settings.from_env({}, data_dir=tmp_path), "test-16")
    searched: list[int] = []
    query = reopened.chunks.query

    def counted(**kwargs: object) -> object:
        searched.append(len(kwargs["query_embeddings"]))  # type: ignore[arg-type]
        return query(**kwargs)

    monkeypatch.setattr(reopened.chunks, "query", counted)
    assert reopened.lexical._synced != frozenset(ids)
    reopened.warm()
    assert reopened.lexical._synced == frozenset(ids)  # BM25 read
    assert set(reopened._matrices) == set(ids)  # each document's vector file mapped
    assert searched == [1]  # one search with a stored vector: Chroma has read its vector index
    assert reopened.lexical.search("text 1", 3, ids)  # and it answers as before

    empty = Store(Settings.from_env({}, data_dir=tmp_path / "empty"), "test-16")
    empty.warm()  # nothing to read: no error
    assert empty.query(vectors[0, 0].tolist(), 3, None) == []


def test_the_app_reads_the_index_in_the_background_as_it_starts(engine: Engine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    warmed = []
    monkeypatch.setattr(Store, "warm", lambda self: warmed.append(self.index_name))
    monkeypatch.setattr(Store, "fill_passages", lambda self: warmed.append("passages") or 0)
    engine.warm_up(background=False)  # the CLI and ZeroGPU: the question reads it
    assert warmed == []
    engine.warm_up()
    deadline = time.time() + 10
    while len(warmed) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert warmed == [engine.store.index_name, "passages"]  # then the passages of an older library kept apart


def test_passages_are_read_from_their_documents_files_as_chroma_holds_them(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(Settings.from_env({}, data_dir=tmp_path), "test-16")
    chunks = [Chunk(0, "Der Umsatz stieg um 12 % auf 3,4 Mrd. €.", 1, 1, 0, 40, "Bericht, Seite 1"),
              Chunk(1, "图 3：收入", 2, 2, 41, 47, "Bericht, Seite 2", ocr=True, page_label="ii", figure=True),
              Chunk(2, 'A "quoted" line\nand a tab\there', 2, 3, 48, 80)]
    info = DocumentInfo(doc_id="docA", file_name="bericht.pdf", title="Bericht", pages=3, chunks=3,
                        status="indexing", added_at=time.time())
    store.begin(info)
    store.add_chunks("docA", "bericht.pdf", "Bericht", chunks, np.eye(3, 16).tolist())
    store.commit(info)
    ids = ["docA:2", "docA:0", "docA:1", "docA:7"]  # the last one does not exist

    got = store.chunks.get(ids=ids[:3], include=["documents", "metadatas"])
    held = {cid: (text, meta) for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
    asked: list[object] = []
    get = store.chunks.get
    monkeypatch.setattr(store.chunks, "get", lambda **kw: asked.append(kw.get("ids")) or get(**kw))
    found = store.get_passages(ids)
    assert asked == []  # read from the document's file, not from Chroma
    assert set(found) == set(ids[:3])
    def rounded(rows: dict) -> dict:  # Chroma hands floats back through its own encoding (15.342 for 15.3419…)
        return {k: (text, {m: round(v, 9) if isinstance(v, float) else v for m, v in meta.items()})
                for k, (text, meta) in rows.items()}

    kept = store._read_passages("docA", [0, 1, 2])
    assert rounded(kept) == rounded({int(cid.split(":")[1]): held[cid] for cid in held})
    assert found["docA:1"].page_label == "ii" and found["docA:1"].figure and found["docA:1"].ocr
    assert found["docA:0"].text == chunks[0].text and found["docA:0"].file_name == "bericht.pdf"

    store._passages_path("docA").unlink()  # indexed before passages were kept apart: Chroma answers
    assert store.get_passages(ids) == found and asked == [ids]
    assert store.fill_passages() == 1 and store.fill_passages() == 0  # written once, from Chroma
    asked.clear()
    assert store.get_passages(ids) == found and asked == []  # from the file fill_passages wrote

    store.delete("docA")
    assert not store._passages_path("docA").exists() and store.get_passages(ids) == {}


def test_replicas_behind_a_chroma_server_see_each_others_documents(tmp_path: Path, chroma: object) -> None:
    # Each replica has its own data folder, so no change file is shared: the registry's own checks tell.
    def replica(name: str) -> Store:
        settings = Settings.from_env({}, data_dir=tmp_path / name, chroma_host=chroma.host,  # type: ignore[attr-defined]
                                     chroma_port=chroma.port)  # type: ignore[attr-defined]
        return Store(settings, "test-16")

    one, two = replica("one"), replica("two")
    assert two.ready_ids() == []
    info = DocumentInfo(doc_id="shared", file_name="s.pdf", title="", pages=1, chunks=1, status="indexing",
                        added_at=time.time())
    one.begin(info)
    one.add_chunks("shared", "s.pdf", "", [Chunk(0, "text", 1, 1, 0, 4)], [[1.0] * 16])
    one.commit(info)
    two._ready = None  # a question a moment later
    assert two.ready_ids() == ["shared"]
    assert two.get_passages(["shared:0"])["shared:0"].text == "text"  # from Chroma: no file in its folder
    one.delete("shared")
    two._ready = None
    assert two.ready_ids() == []
