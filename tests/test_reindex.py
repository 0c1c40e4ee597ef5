"""Re-indexing after a model change, and a model whose vectors change size behind an unchanged name, through the
engine and in the browser, against the stand-in Ollama (a test double)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.core.events import AnswerDelta, Failure, Sources
from rag.engine import Engine
from rag.ingestion.queue import DONE
from tests import pdf_factory as pf
from tests.conftest import EMBED_MODEL
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp

ACME = ["Acme Corporation annual report for fiscal 2022.", "Revenue grew to 41 million dollars.",
        "The board approved a dividend of 3 cents per share in December."]
ZEPHYR = ["Employee handbook of the Zephyr Institute.", "Vacation policy: staff receive 30 days of paid leave."]
OTHER_MODEL = "nomic-embed-text"


def _library(engine: Engine, tmp_path: Path, background: bool = False) -> None:
    ids = engine.enqueue([pf.text_pdf(tmp_path / "acme.pdf", ACME), pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)])
    if background:  # the app's runner works through the queue
        engine.queue.wait(ids, timeout=120)
    else:
        list(engine.queue.run())
    assert all(j.state == DONE for j in engine.queue.jobs(ids))


def _answer(engine: Engine, question: str) -> tuple[str, Sources | None, str | None]:
    events = list(engine.ask(question))
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    sources = next((e for e in events if isinstance(e, Sources)), None)
    failure = next((e.message for e in events if isinstance(e, Failure)), None)
    return text, sources, failure


def test_a_size_change_behind_the_same_name_is_explained_and_the_reindex_cures_it(
        engine: Engine, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    _library(engine, tmp_path)
    fake_ollama.embed_models[EMBED_MODEL] = 384  # another server, or a new :latest
    _, _, failure = _answer(engine, "What dividend did the board approve?")
    assert failure and "now returns vectors of 384 numbers" in failure and "256" in failure
    assert "python -m rag reindex" in failure and "expecting embedding" not in failure

    plan = engine.reindex_plan()
    assert plan.why == "size" and len(plan.documents) == 2 and plan.target.endswith("-384d")
    plan = engine.reindex()
    assert len(plan.jobs) == 2 and engine.reindex_plan().running
    list(engine.queue.run())
    assert engine.store.index_name.endswith("-384d") and not engine.reindex_plan().running
    text, sources, failure = _answer(engine, "What dividend did the board approve?")
    assert failure is None and sources and sources.cited and sources.cited[0].passage.file_name == "acme.pdf"
    assert "nothing to re-index" in engine.reindex_plan().describe().lower()

    # A restart opens the new index.
    again = Engine(engine.settings)
    try:
        assert again.store.index_name == engine.store.index_name and len(again.documents()) == 2
    finally:
        again.close()


def _old_library(settings: Settings, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    """A library indexed with the settings' model, then another model the stand-in serves (128-d vectors)."""
    old = Engine(settings)
    try:
        _library(old, tmp_path)
    finally:
        old.close()
    fake_ollama.embed_models[OTHER_MODEL] = 128


def test_after_a_model_change_the_old_index_answers_until_the_new_one_is_complete(
        settings: Settings, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    _old_library(settings, tmp_path, fake_ollama)
    engine = Engine(settings.with_(embed_model=OTHER_MODEL))
    try:
        assert engine.store.documents() == []  # the new model's own index is empty
        plan = engine.reindex()
        assert plan.why == "model" and len(plan.jobs) == 2
        # While the queue has not run, the library and the answers still come from the old index.
        assert sorted(d.file_name for d in engine.documents()) == ["acme.pdf", "zephyr.pdf"]
        _, sources, failure = _answer(engine, "How many days of paid leave do staff receive?")
        assert failure is None and sources and sources.cited[0].passage.file_name == "zephyr.pdf"
        assert engine.reindex_plan().running
        list(engine.queue.run())
        assert not engine.reindex_plan().running
        assert sorted(d.file_name for d in engine.store.documents()) == ["acme.pdf", "zephyr.pdf"]
        _, sources, failure = _answer(engine, "How many days of paid leave do staff receive?")
        assert failure is None and sources and sources.cited[0].passage.file_name == "zephyr.pdf"
        embeds = [b for p, b in fake_ollama.requests if p == "/api/embed"]
        assert embeds[-1]["model"] == OTHER_MODEL
    finally:
        engine.close()


def test_the_reindex_command(settings: Settings, tmp_path: Path, fake_ollama: FakeOllama,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _old_library(settings, tmp_path, fake_ollama)
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_EMBED_MODEL", OTHER_MODEL)
    assert cli_main(["docs"]) == 0
    assert "No documents indexed yet" in capsys.readouterr().out
    assert cli_main(["reindex"]) == 0
    out = capsys.readouterr().out
    assert "Queued 2 document(s)" in out and "2 indexed" in out
    assert cli_main(["docs"]) == 0
    assert "acme.pdf" in capsys.readouterr().out
    assert cli_main(["reindex"]) == 0
    assert "Nothing to re-index" in capsys.readouterr().out


# --- in the browser ---------------------------------------------------------------------------------------------------
@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[LiveApp]:
    with LiveApp(settings) as app:
        _library(app.engine, tmp_path, background=True)
        yield app


def _ask(page: Any, question: str) -> None:
    page.fill("#pw-question textarea", question)
    page.click("#pw-send")


def test_the_browser_says_what_happened_and_the_reindex_button_cures_it(
        live: LiveApp, browser_page: Any, fake_ollama: FakeOllama) -> None:
    page = browser_page
    page.goto(live.url, wait_until="load")
    page.wait_for_selector("#pw-status-box .pw-status", timeout=60_000)
    fake_ollama.embed_models[EMBED_MODEL] = 384
    _ask(page, "What dividend did the board approve?")
    page.wait_for_function("document.querySelector('#pw-chat').innerText.includes('now returns vectors')",
                           timeout=60_000)
    chat = page.inner_text("#pw-chat")
    assert "Re-index" in chat and "python -m rag reindex" in chat
    assert "expecting embedding" not in chat and "\nError\n" not in f"\n{chat}\n"

    page.click("#pw-reindex-box button.label-wrap, #pw-reindex-box > button")
    page.click("#pw-reindex")
    page.wait_for_function("document.querySelector('#pw-reindex-text').innerText.includes('Queued 2')",
                           timeout=30_000)
    live.engine.queue.wait([j.id for j in live.engine.queue.jobs()][-2:], timeout=120)
    assert live.engine.store.index_name.endswith("-384d")
    _ask(page, "What dividend did the board approve?")
    page.wait_for_selector("#pw-chat .pw-cite", timeout=60_000)
    assert "acme.pdf" in page.inner_text("#pw-sources")


def test_an_unexpected_store_error_while_answering_becomes_a_message(engine: Engine, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _library(engine, tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("expecting embedding with dimension of 384, got 1024")

    monkeypatch.setattr(engine.store, "nearest", broken)
    monkeypatch.setattr(engine.store, "dense_scores", broken)
    _, _, failure = _answer(engine, "What dividend did the board approve?")
    assert failure and "dimension of 384" in failure and "python -m rag reindex" in failure
