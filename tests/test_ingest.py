"""Ingestion through the real Ollama client against the stand-in server, into a real Chroma on disk."""

from pathlib import Path

import pytest

from rag.core.config import Settings
from rag.core.events import ChunksMade, Embedded, Failure, FileFailed, FileIndexed, FileStarted, PagesParsed
from rag.engine import Engine
from rag.ingestion.ingest import SourceFile
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama

ANNUAL = ["Acme Corporation annual report for fiscal 2022.",
          "Revenue grew to 41 million dollars, driven by rocket skates.",
          "The board approved a dividend of 3 cents per share in December."]
HANDBOOK = ["Employee handbook of the Zephyr Institute.", "Vacation policy: staff receive 30 days of leave.",
            "Parking is free in the north garage for cyclists and electric cars."]


def _run(engine: Engine, items: list) -> list:
    return list(engine.ingest(items))


def _final(events: list) -> dict[str, object]:
    return {e.file_name: e for e in events if isinstance(e, (FileIndexed, FileFailed))}


def test_a_pdf_is_indexed_with_its_pages(engine: Engine, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    pdf = pf.text_pdf(tmp_path / "acme.pdf", ANNUAL)
    events = _run(engine, [pdf])
    kinds = [type(e) for e in events]
    assert kinds[:3] == [FileStarted, PagesParsed, ChunksMade] and kinds[-1] is FileIndexed
    assert any(isinstance(e, Embedded) for e in events)
    done = events[-1]
    assert done.status == "indexed" and done.pages == 3
    (doc,) = engine.documents()
    assert doc.file_name == "acme.pdf" and doc.pages == 3 and doc.status == "ready"
    assert engine.store.count_chunks(doc.doc_id) == doc.chunks
    assert engine.store.file_path(doc.doc_id).read_bytes() == pdf.read_bytes()

    # The dividend sentence is on page 3, and a query about it finds page 3.
    vector = engine.embedder.embed_query("When was the dividend approved by the board?")
    best = engine.store.query(vector, k=1)[0]
    assert best.file_name == "acme.pdf" and best.page_start == 3 and "dividend" in best.text


def test_embedding_calls_are_batched_with_the_settings(tmp_path: Path, fake_ollama: FakeOllama,
                                                       settings: Settings) -> None:
    engine = Engine(settings.with_(embed_batch_size=4, embed_dimensions=64, chunk_tokens=40, chunk_overlap=5))
    try:
        pages = [" ".join(f"Paragraph {p}.{i} about topic {i} of page {p}." for i in range(12)) for p in range(4)]
        events = _run(engine, [pf.text_pdf(tmp_path / "long.pdf", pages)])
    finally:
        engine.close()
    chunks = next(e for e in events if isinstance(e, ChunksMade)).chunks
    calls = [body for path, body in fake_ollama.requests if path == "/api/embed"]
    assert len(calls) == -(-chunks // 4) and all(len(c["input"]) <= 4 for c in calls)
    assert all(c["dimensions"] == 64 and c["options"]["num_ctx"] >= 2048 and c["keep_alive"] for c in calls)
    assert not any(str(text).startswith("Instruct:") for c in calls for text in c["input"])


def test_queries_get_the_qwen3_instruction(engine: Engine, fake_ollama: FakeOllama) -> None:
    engine.embedder.embed_query("what is the vacation policy?")
    body = [b for p, b in fake_ollama.requests if p == "/api/embed"][-1]
    assert body["input"] == [f"Instruct: {engine.settings.query_instruction}\nQuery:what is the vacation policy?"]


def test_same_bytes_again_is_already_indexed(engine: Engine, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    pdf = pf.text_pdf(tmp_path / "acme.pdf", ANNUAL)
    _run(engine, [pdf])
    embeds = len(fake_ollama.requests)
    copy = tmp_path / "copy-of-acme.pdf"
    copy.write_bytes(pdf.read_bytes())
    events = _run(engine, [pdf, copy])
    assert [e.status for e in events if isinstance(e, FileIndexed)] == ["already indexed", "already indexed"]
    assert len(fake_ollama.requests) == embeds  # nothing re-embedded
    assert len(engine.documents()) == 1


def test_new_version_replaces_the_old_one(engine: Engine, tmp_path: Path) -> None:
    _run(engine, [pf.text_pdf(tmp_path / "v1" / "policy.pdf", HANDBOOK)])
    (old,) = engine.documents()
    events = _run(engine, [pf.text_pdf(tmp_path / "v2" / "policy.pdf", HANDBOOK + ["New page on remote work."])])
    done = events[-1]
    assert done.status == "replaced" and done.replaced_doc_id == old.doc_id
    (new,) = engine.documents()
    assert new.pages == 4 and new.doc_id != old.doc_id
    assert engine.store.count_chunks(old.doc_id) == 0 and not engine.store.file_path(old.doc_id).exists()


def test_keeping_the_old_version(engine: Engine, tmp_path: Path) -> None:
    _run(engine, [pf.text_pdf(tmp_path / "v1" / "policy.pdf", HANDBOOK)])
    list(engine.ingest([pf.text_pdf(tmp_path / "v2" / "policy.pdf", HANDBOOK[:2])], replace=False))
    assert len(engine.documents()) == 2


def test_delete_removes_every_chunk_and_the_file(engine: Engine, tmp_path: Path) -> None:
    _run(engine, [pf.text_pdf(tmp_path / "a.pdf", ANNUAL), pf.text_pdf(tmp_path / "b.pdf", HANDBOOK)])
    doc = engine.find("a.pdf")
    before = engine.store.count_chunks()
    engine.delete("a.pdf")
    assert engine.store.count_chunks(doc.doc_id) == 0
    assert engine.store.count_chunks() == before - doc.chunks
    assert [d.file_name for d in engine.documents()] == ["b.pdf"]
    assert not engine.store.file_path(doc.doc_id).exists()


def test_bad_files_fail_alone_with_specific_reasons(engine: Engine, tmp_path: Path) -> None:
    files = [
        pf.text_pdf(tmp_path / "good1.pdf", ANNUAL),
        pf.password_pdf(tmp_path / "locked.pdf", HANDBOOK),
        pf.corrupt_pdf(tmp_path / "corrupt.pdf"),
        pf.not_a_pdf(tmp_path / "photo.pdf", kind="png"),
        pf.empty_file(tmp_path / "empty.pdf"),
        pf.image_only_pdf(tmp_path / "scan.pdf"),
        pf.empty_password_pdf(tmp_path / "protected.pdf", HANDBOOK),
        pf.mixed_scan_pdf(tmp_path / "mixed.pdf", ["Text on the first page.", None]),
        tmp_path / "missing.pdf",
    ]
    final = _final(_run(engine, files))
    assert final["good1.pdf"].status == "indexed"
    assert final["protected.pdf"].status == "indexed"
    assert final["mixed.pdf"].status == "indexed" and final["mixed.pdf"].pages_without_text == [2]
    assert "password" in final["locked.pdf"].reason
    assert "damaged" in final["corrupt.pdf"].reason
    assert "PNG" in final["photo.pdf"].reason
    assert "empty" in final["empty.pdf"].reason
    assert "OCR" in final["scan.pdf"].reason
    assert "not found" in final["missing.pdf"].reason
    assert sorted(d.file_name for d in engine.documents()) == ["good1.pdf", "mixed.pdf", "protected.pdf"]


def test_uploads_keep_the_users_file_name(engine: Engine, tmp_path: Path) -> None:
    tmp = pf.text_pdf(tmp_path / "tmpx8c2.pdf", ANNUAL)
    _run(engine, [SourceFile(tmp, "Acme Annual Report.pdf")])
    assert engine.documents()[0].file_name == "Acme Annual Report.pdf"


def test_too_many_pages_is_refused(settings: Settings, tmp_path: Path) -> None:
    engine = Engine(settings.with_(max_pages=5))
    try:
        final = _final(_run(engine, [pf.many_pages_pdf(tmp_path / "long.pdf", 8)]))
    finally:
        engine.close()
    assert "RAG_MAX_PAGES" in final["long.pdf"].reason and not engine.documents()


def test_ollama_down_gives_a_clear_error_and_writes_nothing(engine: Engine, tmp_path: Path,
                                                           fake_ollama: FakeOllama) -> None:
    fake_ollama.stop()
    events = _run(engine, [pf.text_pdf(tmp_path / "a.pdf", ANNUAL), pf.text_pdf(tmp_path / "b.pdf", HANDBOOK)])
    failure = [e for e in events if isinstance(e, Failure)]
    assert len(failure) == 1 and "ollama serve" in failure[0].message and fake_ollama.url in failure[0].message
    stopped = _final(events)["b.pdf"]  # the run stopped: b.pdf was not tried, and says so
    assert isinstance(stopped, FileFailed) and stopped.kind == "stopped" and "add it again" in stopped.reason.lower()
    assert engine.store.documents(include_pending=True) == [] and engine.store.count_chunks() == 0
    assert not engine.store.files_dir.exists() or not any(engine.store.files_dir.iterdir())


def test_ollama_dying_mid_document_leaves_no_partial_document(engine: Engine, tmp_path: Path,
                                                              fake_ollama: FakeOllama) -> None:
    pages = [" ".join(f"Sentence {i} of page {p} about budgets." for i in range(30)) for p in range(4)]
    pdf = pf.text_pdf(tmp_path / "big.pdf", pages)
    fake_ollama.fail_embed_after = 1  # the second batch of this document fails
    events = _run(engine, [pdf])
    assert any(isinstance(e, Failure) for e in events)
    assert engine.store.documents(include_pending=True) == [] and engine.store.count_chunks() == 0
    fake_ollama.fail_embed_after = None
    assert _run(engine, [pdf])[-1].status == "indexed"  # a retry completes it


def test_missing_model_says_how_to_pull_it(settings: Settings, tmp_path: Path) -> None:
    engine = Engine(settings.with_(embed_model="nomic-embed-text"))
    try:
        events = _run(engine, [pf.text_pdf(tmp_path / "a.pdf", ANNUAL)])
    finally:
        engine.close()
    (failure,) = [e for e in events if isinstance(e, Failure)]
    assert "ollama pull nomic-embed-text" in failure.message


def test_chat_model_used_for_embeddings_is_named(settings: Settings, tmp_path: Path) -> None:
    engine = Engine(settings.with_(embed_model="qwen3:8b"))
    try:
        events = _run(engine, [pf.text_pdf(tmp_path / "a.pdf", ANNUAL)])
    finally:
        engine.close()
    (failure,) = [e for e in events if isinstance(e, Failure)]
    assert "not an embedding model" in failure.message and "RAG_EMBED_MODEL" in failure.message


def test_index_survives_a_restart(settings: Settings, tmp_path: Path) -> None:
    first = Engine(settings)
    _run(first, [pf.text_pdf(tmp_path / "a.pdf", ANNUAL)])
    first.close()
    second = Engine(settings)
    try:
        (doc,) = second.documents()
        assert doc.file_name == "a.pdf" and second.store.count_chunks(doc.doc_id) == doc.chunks
    finally:
        second.close()


@pytest.mark.parametrize("chunk_tokens", [60, 400])
def test_folder_ingest_indexes_every_pdf(settings: Settings, tmp_path: Path, chunk_tokens: int) -> None:
    from rag.ingestion.ingest import expand_paths

    folder = tmp_path / "docs"
    pf.text_pdf(folder / "a.pdf", ANNUAL)
    pf.text_pdf(folder / "sub" / "b.PDF", HANDBOOK)
    (folder / "notes.txt").write_text("not a pdf")
    engine = Engine(settings.with_(chunk_tokens=chunk_tokens, chunk_overlap=10))
    try:
        files = expand_paths([folder])
        assert [f.name for f in files] == ["a.pdf", "b.PDF"]
        _run(engine, files)
        assert sorted(d.file_name for d in engine.documents()) == ["a.pdf", "b.PDF"]
    finally:
        engine.close()
