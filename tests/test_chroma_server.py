"""Chroma server mode against a real `chroma run`: several app instances share one server, and an outage is
reported clearly and recovered from without losing anything."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr
import pytest

from rag.core.config import Settings
from rag.core.errors import StoreError
from rag.core.events import AnswerDelta, FileFailed, FileIndexed, Sources
from rag.engine import Engine
from tests import pdf_factory as pf
from tests.chroma_server import ChromaServer, free_port
from tests.fake_ollama import FakeOllama
from ui.app import _library_updates
from ui.library import Library

ACME = ["Acme Corporation annual report for fiscal 2022.",
        "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates."]
ZEPHYR = ["Employee handbook of the Zephyr Institute.",
          "Vacation policy: every employee receives 30 days of paid leave each year."]


def _settings(data_dir: Path, fake_ollama: FakeOllama, server: ChromaServer) -> Settings:
    return Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=data_dir, chunk_tokens=120,
                             chunk_overlap=20, parse_workers=1, rerank=False, chroma_host=server.host,
                             chroma_port=server.port)


@pytest.fixture
def replicas(tmp_path: Path, fake_ollama: FakeOllama, chroma: ChromaServer,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Engine]]:
    """Two app instances with their own data folders (their own caches) and one Chroma server."""
    monkeypatch.setattr("rag.search.store._READY_TTL", 0.0)  # see other instances' changes at once
    a = Engine(_settings(tmp_path / "a", fake_ollama, chroma))
    b = Engine(_settings(tmp_path / "b", fake_ollama, chroma))
    yield a, b
    a.close()
    b.close()


def _cited_pages(engine: Engine, question: str) -> list[tuple[str, int]]:
    sources = next(e for e in engine.ask(question) if isinstance(e, Sources))
    return [(c.passage.file_name, c.passage.page_start) for c in sources.cited]


def test_a_document_indexed_by_one_instance_is_answered_by_another(replicas: tuple[Engine, Engine],
                                                                    tmp_path: Path) -> None:
    a, b = replicas
    events = list(a.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME)]))
    assert any(isinstance(e, FileIndexed) for e in events)
    # B never saw the file: its BM25 tokens and vectors come from the chunks in Chroma.
    assert [d.file_name for d in b.documents()] == ["acme.pdf"]
    assert _cited_pages(b, "How much did revenue grow from rocket skates?") == [("acme.pdf", 2)]
    assert b.store.lexical_search("rocket skates", 5, b.store.ready_ids())[0][0].startswith(
        b.documents()[0].doc_id)

    list(b.ingest([pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]))
    assert _cited_pages(a, "How many days of paid leave does each employee receive?") == [("zephyr.pdf", 2)]
    # Scoped searches read each document's vectors: A fetched Zephyr's from Chroma.
    zephyr = next(d for d in a.documents() if d.file_name == "zephyr.pdf")
    assert a.store.query(a.embedder.embed_query("paid leave"), 3, [zephyr.doc_id])[0].page_start == 2


def test_a_document_removed_by_one_instance_disappears_from_the_others(replicas: tuple[Engine, Engine],
                                                                        tmp_path: Path) -> None:
    a, b = replicas
    list(a.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME), pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]))
    assert _cited_pages(b, "rocket skates revenue") == [("acme.pdf", 2)]
    a.delete("acme.pdf")
    assert [d.file_name for d in b.documents()] == ["zephyr.pdf"]
    events = list(b.ask("rocket skates revenue"))
    cited = [c.passage.file_name for e in events if isinstance(e, Sources) for c in e.cited] + \
        [p.file_name for e in events if isinstance(e, Sources) for p in e.other]
    assert "acme.pdf" not in cited
    assert not any(cid.split(":")[0] not in b.store.ready_ids()
                   for cid, _ in b.store.lexical_search("rocket skates revenue", 10, b.store.ready_ids()))


def test_the_server_going_away_is_a_clear_error_and_the_app_recovers(tmp_path: Path, fake_ollama: FakeOllama,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rag.search.store._READY_TTL", 0.0)
    server = ChromaServer(tmp_path / "chroma").start()
    engine = Engine(_settings(tmp_path / "data", fake_ollama, server))
    try:
        list(engine.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME)]))
        server.stop()
        with pytest.raises(StoreError, match="Can't reach the Chroma server.*chroma run"):
            list(engine.ask("rocket skates revenue"))
        with pytest.raises(StoreError, match="Can't reach the Chroma server"):
            engine.documents()
        health = engine.health()
        assert any("Chroma server" in p for p in health.problems)
        # The web page keeps its library as it was (and warns) instead of failing to load.
        assert _library_updates(engine, Library(engine), None) == (gr.update(),) * 10
        # An upload meanwhile fails with the same message and leaves nothing behind.
        failed = [e for e in engine.ingest([pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)])
                  if isinstance(e, FileFailed)]
        assert failed and "Chroma server" in failed[0].reason

        server.start()
        assert [d.file_name for d in engine.documents()] == ["acme.pdf"]
        events = list(engine.ask("How much did revenue grow from rocket skates?"))
        assert "".join(e.text for e in events if isinstance(e, AnswerDelta))
        assert [c.passage.page_start for e in events if isinstance(e, Sources) for c in e.cited] == [2]
        list(engine.ingest([pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]))
        assert sorted(d.file_name for d in engine.documents()) == ["acme.pdf", "zephyr.pdf"]
    finally:
        engine.close()
        server.stop()


def test_starting_without_the_server_says_how_to_start_it(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    settings = Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path, chroma_host="127.0.0.1",
                                 chroma_port=free_port())
    with pytest.raises(StoreError, match="chroma run --path DIR --host 127.0.0.1"):
        Engine(settings)
