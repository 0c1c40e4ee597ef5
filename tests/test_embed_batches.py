"""Small files embedded together: the chunks of several one-page PDFs share an ``/api/embed`` request (up to
``RAG_EMBED_BATCH_SIZE`` texts), while each file is still written on its own, with its events together and in order.
Against the stand-in Ollama (tests/fake_ollama.py), which counts the requests and their inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.core.config import Settings
from rag.core.events import (
    ChunksMade,
    Embedded,
    Failure,
    FileFailed,
    FileIndexed,
    FileStarted,
    PagesParsed,
)
from rag.engine import Engine
from tests import pdf_factory as pf
from tests.fake_ollama import EMBED_FAILURE_MESSAGE, FakeOllama

TOPICS = ["volcano", "glacier", "lighthouse", "orchard", "submarine", "telescope", "vineyard", "windmill",
          "harbour", "monastery", "quarry", "observatory"]


def one_page_pdfs(folder: Path, topics: list[str] = TOPICS) -> list[Path]:
    """One one-page PDF per topic, each with a fact only it holds."""
    return [pf.text_pdf(folder / f"{topic}.pdf", [f"The {topic} report: the {topic} inspection found "
                                                  f"{i + 3} cracked {topic} beams."])
            for i, topic in enumerate(topics)]


def embed_requests(fake: FakeOllama) -> list[list[str]]:
    """The inputs of each passage-embedding request (queries left out)."""
    return [list(body["input"]) for path, body in fake.requests if path == "/api/embed"
            and not any(str(t).startswith("Instruct:") for t in body["input"])]


def final(events: list[Any]) -> dict[str, Any]:
    return {e.file_name: e for e in events if isinstance(e, (FileIndexed, FileFailed))}


def ingest(settings: Settings, files: list[Path], fake: FakeOllama, **changes: Any) -> tuple[Engine, list[Any]]:
    """Ingest ``files`` with a fresh engine (the embedder answers in 0.2 s, so the parsers run ahead of it)."""
    engine = Engine(settings.with_(**changes))
    fake.embed_delay = 0.2
    fake.requests.clear()
    return engine, list(engine.ingest(files))


def test_small_files_share_embedding_requests_and_each_is_indexed_whole(settings: Settings, tmp_path: Path,
                                                                        fake_ollama: FakeOllama) -> None:
    files = one_page_pdfs(tmp_path / "pdfs")
    copy = tmp_path / "copy-of-volcano.pdf"  # the same bytes again: recognised by content hash
    copy.write_bytes(files[0].read_bytes())
    engine, events = ingest(settings, files + [copy], fake_ollama)
    try:
        requests = embed_requests(fake_ollama)
        results = final(events)
        assert [results[f.name].status for f in files] == ["indexed"] * len(files)
        assert results[copy.name].status == "already indexed"
        assert len(requests) < len(files)  # fewer requests than files: some carried several files' chunks
        assert all(len(inputs) <= settings.embed_batch_size for inputs in requests)
        assert any(len({topic for topic in TOPICS for t in inputs if topic in t}) > 1 for inputs in requests)
        chunks = sum(e.chunks for e in events if isinstance(e, ChunksMade))
        assert sum(map(len, requests)) == chunks  # each chunk embedded once

        # Each file's events come together and in order, and every file ends searchable with its own chunks.
        names = [e.file_name for e in events]
        for f in files:
            mine = [type(e) for e in events if e.file_name == f.name]
            assert mine == [FileStarted, PagesParsed, ChunksMade, Embedded, FileIndexed], (f.name, mine)
            first = names.index(f.name)
            assert names[first:first + len(mine)] == [f.name] * len(mine)
        docs = {d.file_name: d for d in engine.documents()}
        assert sorted(docs) == sorted(f.name for f in files)
        for i, topic in enumerate(TOPICS):
            doc = docs[f"{topic}.pdf"]
            assert doc.status == "ready" and engine.store.count_chunks(doc.doc_id) == doc.chunks
            best = engine.store.query(engine.embedder.embed_query(f"How many cracked {topic} beams?"), k=1)[0]
            assert best.file_name == f"{topic}.pdf" and f"{i + 3} cracked {topic}" in " ".join(best.text.split())
    finally:
        engine.close()

    # The same files with batching across files turned off: one request per file.
    again, events = ingest(settings.with_(data_dir=tmp_path / "data-off"), files, fake_ollama,
                           embed_across_files=False)
    again.close()
    assert [final(events)[f.name].status for f in files] == ["indexed"] * len(files)
    assert len(embed_requests(fake_ollama)) == len(files)


def test_a_failed_batch_fails_only_the_file_the_model_cant_embed(settings: Settings, tmp_path: Path,
                                                                 fake_ollama: FakeOllama) -> None:
    files = one_page_pdfs(tmp_path / "pdfs", TOPICS[:6])
    fake_ollama.fail_embed_when = "lighthouse"  # the model runner crashes on this file's text
    engine, events = ingest(settings, files, fake_ollama)
    try:
        results = final(events)
        failed = results["lighthouse.pdf"]
        assert isinstance(failed, FileFailed) and failed.kind == "model"
        assert EMBED_FAILURE_MESSAGE in failed.reason and "add it again" in failed.reason
        others = [f.name for f in files if f.name != "lighthouse.pdf"]
        assert [results[name].status for name in others] == ["indexed"] * len(others)
        assert not any(isinstance(e, Failure) for e in events)  # the run went on
        # The failed request held other files' chunks too; each was then tried on its own.
        refused = [inputs for inputs in embed_requests(fake_ollama) if any("lighthouse" in t for t in inputs)]
        assert any(len(inputs) > 1 for inputs in refused)
        docs = engine.store.documents(include_pending=True)
        assert sorted(d.file_name for d in docs) == sorted(others) and all(d.status == "ready" for d in docs)
        assert engine.store.count_chunks() == sum(d.chunks for d in docs)
    finally:
        engine.close()


def test_a_server_that_fails_every_request_stops_the_run_as_before(settings: Settings, tmp_path: Path,
                                                                   fake_ollama: FakeOllama) -> None:
    files = one_page_pdfs(tmp_path / "pdfs", TOPICS[:5])
    fake_ollama.fail_embed_after = 0
    engine, events = ingest(settings, files, fake_ollama)
    try:
        results = final(events)
        kinds = [results[f.name].kind for f in files]
        assert kinds[0] == "model" and set(kinds[1:]) == {"stopped"}
        assert isinstance(events[-1], Failure) and EMBED_FAILURE_MESSAGE in events[-1].message
        assert engine.store.documents(include_pending=True) == [] and engine.store.count_chunks() == 0
    finally:
        engine.close()
