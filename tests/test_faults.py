"""Faults a user meets: hostile PDFs, the model server dying mid-ingest or mid-answer, a read-only data folder and a
full disk. Each ends in a message that says what happened and what to do, and loses nothing already indexed.

The model server is the stand-in Ollama (tests/fake_ollama.py, a test double); stopping it closes its port and cuts
its open connections, as a crashed ``ollama serve`` does.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from rag.answering.answer import INTERRUPTED, NO_DOCUMENTS
from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.core.errors import StoreError
from rag.core.events import AnswerDelta, Embedded, Failure, FileFailed, FileIndexed, Sources
from rag.engine import Engine
from rag.ingestion.pool import ParserPool
from rag.ingestion.workers import CRASHED, MEMORY_LIMIT, TIME_LIMIT, ParseJob
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp

ACME = ["Acme Corporation annual report for fiscal 2022.",
        "Revenue grew to 41 million dollars, driven by rocket skates.",
        "The board approved a dividend of 3 cents per share in December."]
ZEPHYR = ["Employee handbook of the Zephyr Institute.", "Vacation policy: staff receive 30 days of paid leave.",
          "Parking is free in the north garage for cyclists and electric cars."]
LONG = [" ".join(f"Sentence {i} of page {p} is about the quarterly budget review." for i in range(30))
        for p in range(1, 5)]


def final(events: list[Any]) -> dict[str, Any]:
    """Each file's last word: FileIndexed or FileFailed, by file name."""
    return {e.file_name: e for e in events if isinstance(e, (FileIndexed, FileFailed))}


def nothing_kept(engine: Engine) -> None:
    """Assert that no trace of any document is in the index or the data folder."""
    store = engine.store
    assert store.documents(include_pending=True) == [] and store.count_chunks() == 0
    for folder in (store.files_dir, store.vectors_dir):
        assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


# --- hostile PDFs ---------------------------------------------------------------------------------------------------
def test_hostile_structures_fail_alone_with_specific_reasons(engine: Engine, tmp_path: Path) -> None:
    files = [pf.text_pdf(tmp_path / "acme.pdf", ACME),
             pf.cyclic_page_tree_pdf(tmp_path / "loop.pdf"),
             pf.page_tree_bomb_pdf(tmp_path / "billion-pages.pdf"),
             pf.deeply_nested_pdf(tmp_path / "nested.pdf"),
             pf.flate_bomb_pdf(tmp_path / "zip-bomb.pdf"),
             pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]
    results = final(list(engine.ingest(files)))
    assert results["acme.pdf"].status == "indexed" and results["zephyr.pdf"].status == "indexed"
    assert "cyclic" in results["loop.pdf"].reason
    assert "page tree" in results["billion-pages.pdf"].reason and "limit" in results["billion-pages.pdf"].reason
    assert "nested too deeply" in results["nested.pdf"].reason
    assert "decompress" in results["zip-bomb.pdf"].reason
    for name in ("loop.pdf", "billion-pages.pdf", "nested.pdf", "zip-bomb.pdf"):
        assert results[name].kind == "corrupt" and results[name].reason.startswith(f"{name} is damaged")
    assert sorted(d.file_name for d in engine.documents()) == ["acme.pdf", "zephyr.pdf"]


@pytest.mark.parametrize("cap", [
    # The slow PDF needs a minute or more of CPU.
    ("parse_timeout", 2, pf.slow_pdf, TIME_LIMIT, ["longer than 2 s", "RAG_PARSE_TIMEOUT"]),
    # The hog needs ~400 MB; a plain PDF ~60 MB.
    pytest.param(("parse_memory_mb", 250, pf.memory_hog_pdf, MEMORY_LIMIT, ["250 MB", "RAG_PARSE_MEMORY_MB"]),
                 marks=pytest.mark.skipif(not sys.platform.startswith("linux"),
                                          reason="the memory cap uses RLIMIT_AS (Linux)")),
], ids=["time", "memory"])
def test_a_pdf_over_a_reader_cap_is_stopped_while_the_rest_index(settings: Settings, tmp_path: Path,
                                                                 cap: tuple[Any, ...]) -> None:
    setting, limit, make_pdf, kind, says = cap
    engine = Engine(settings.with_(**{setting: limit}))
    try:
        files = [pf.text_pdf(tmp_path / "acme.pdf", ACME), make_pdf(tmp_path / "hostile.pdf"),
                 pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]
        results = final(list(engine.ingest(files)))
        assert results["hostile.pdf"].kind == kind
        assert all(words in results["hostile.pdf"].reason for words in says)
        assert results["acme.pdf"].status == "indexed" and results["zephyr.pdf"].status == "indexed"
        # The stopped reader was replaced: the next file reads as usual.
        more = final(list(engine.ingest([pf.text_pdf(tmp_path / "more.pdf", LONG)])))
        assert more["more.pdf"].status == "indexed"
    finally:
        engine.close()


def test_a_reader_process_that_dies_is_reported_and_replaced(tmp_path: Path) -> None:
    import psutil

    def job(path: Path) -> ParseJob:
        return ParseJob(path=str(path), file_name=path.name, max_bytes=10**8, max_pages=100, chunk_tokens=120,
                        chunk_overlap=20)

    pool = ParserPool(1, timeout_s=120, memory_mb=0)
    slow, good = pf.slow_pdf(tmp_path / "slow.pdf"), pf.text_pdf(tmp_path / "acme.pdf", ACME)
    others = {p.pid for p in psutil.Process().children()}

    def kill_the_reader() -> None:  # as the kernel's OOM killer would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            readers = [p for p in psutil.Process().children() if p.pid not in others]
            if readers:
                time.sleep(0.3)
                readers[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_reader)
    killer.start()
    try:
        died, fine = list(pool.parse([job(slow), job(good)]))
    finally:
        killer.join()
        pool.close()
    assert died.error_kind == CRASHED and "signal 9" in died.error and died.error.startswith("slow.pdf")
    assert fine.error is None and fine.document is not None and fine.document.page_count == 3


# --- Ollama dies mid-ingest -----------------------------------------------------------------------------------------
def ingest_until_ollama_dies(engine: Engine, fake: FakeOllama, files: list[Path]) -> list[Any]:
    """Ingest ``files``, stopping the model server once the first batch of embeddings has come back."""
    events = []
    for event in engine.ingest(files):
        events.append(event)
        if isinstance(event, Embedded) and fake.running:
            fake.stop()
    return events


def test_ollama_dying_mid_ingest_keeps_nothing_says_what_to_do_and_a_retry_completes(
        engine: Engine, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    budget, acme = pf.text_pdf(tmp_path / "budget.pdf", LONG), pf.text_pdf(tmp_path / "acme.pdf", ACME)
    events = ingest_until_ollama_dies(engine, fake_ollama, [budget, acme])

    results = final(events)
    assert results["budget.pdf"].kind == "model"
    assert "ollama serve" in results["budget.pdf"].reason and "add it again" in results["budget.pdf"].reason
    assert results["acme.pdf"].kind == "stopped"  # never tried: it says why, and what to do
    assert "run stopped" in results["acme.pdf"].reason and "ollama serve" in results["acme.pdf"].reason
    assert isinstance(events[-1], Failure) and "ollama serve" in events[-1].message
    nothing_kept(engine)
    assert NO_DOCUMENTS in "".join(e.text for e in engine.ask("What is the budget?") if isinstance(e, AnswerDelta))

    fake_ollama.start()  # Ollama is back: the same files again
    results = final(list(engine.ingest([budget, acme])))
    assert results["budget.pdf"].status == "indexed" and results["acme.pdf"].status == "indexed"
    answer = "".join(e.text for e in engine.ask("What dividend per share did the board approve?")
                     if isinstance(e, AnswerDelta))
    assert "3 cents" in answer


def test_the_upload_box_says_what_happened_to_each_file(engine: Engine, tmp_path: Path,
                                                        fake_ollama: FakeOllama) -> None:
    from ui import render
    from ui.app import _track

    events = ingest_until_ollama_dies(engine, fake_ollama, [pf.text_pdf(tmp_path / "budget.pdf", LONG),
                                                            pf.text_pdf(tmp_path / "acme.pdf", ACME)])
    states: dict[str, tuple[str, str, float]] = {}
    for event in events:
        _track(states, event)
    assert states["budget.pdf"][0] == "failed" and "add it again" in states["budget.pdf"][1]
    assert states["acme.pdf"][0] == "failed" and "run stopped" in states["acme.pdf"][1]
    html = render.upload_html(states)
    assert "ollama serve" in html and html.count("pw-failed") == 3  # both files and the run's own line


def test_upload_api_reports_a_model_crash_and_the_retry_indexes(settings: Settings, tmp_path: Path,
                                                                fake_ollama: FakeOllama) -> None:
    from gradio_client import handle_file

    budget = pf.text_pdf(tmp_path / "budget.pdf", LONG)
    with LiveApp(settings) as app:
        client = app.client()
        fake_ollama.fail_embed_after = 1  # Ollama's model runner dies after the first batch
        (result,) = [r for r in client.predict([handle_file(str(budget))], api_name="/upload") if r["file_name"]]
        assert result["status"] == "failed" and "add it again" in result["reason"]
        assert "llama runner process has terminated" in result["reason"]
        assert client.predict(api_name="/documents") == []

        fake_ollama.fail_embed_after = None
        (result,) = client.predict([handle_file(str(budget))], api_name="/upload")
        assert result["status"] == "indexed" and result["pages"] == 4


# --- Ollama dies mid-answer -----------------------------------------------------------------------------------------
@pytest.fixture
def library(engine: Engine, tmp_path: Path) -> Engine:
    """An engine with two indexed PDFs."""
    list(engine.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME), pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR)]))
    return engine


def test_ollama_dying_mid_answer_keeps_the_partial_answer_marked_interrupted(library: Engine,
                                                                            fake_ollama: FakeOllama) -> None:
    fake_ollama.chat_delay = 0.05  # a piece every 50 ms: the server dies while the answer streams
    events = []
    for event in library.ask("How many days of paid leave do staff receive under the vacation policy?"):
        events.append(event)
        if isinstance(event, AnswerDelta) and fake_ollama.running:
            fake_ollama.stop()
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert answer and "30 days of paid leave" not in answer  # a true part of the answer, not all of it
    sources, failure = events[-2], events[-1]
    assert isinstance(sources, Sources) and sources.other  # the passages are still there to check
    assert isinstance(failure, Failure) and failure.message.startswith(INTERRUPTED)
    assert "connection to Ollama" in failure.message and "incomplete" in failure.message


def test_cli_shows_the_partial_answer_and_says_it_was_interrupted(library: Engine, settings: Settings,
                                                                   fake_ollama: FakeOllama,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_RERANK", "false")
    fake_ollama.chat_error_after = 3  # the model runner crashes after three pieces of the answer
    question = "How many days of paid leave do staff receive under the vacation policy?"
    assert cli_main(["ask", question, "--no-think"]) == 1
    out, err = capsys.readouterr()
    assert out.strip() and INTERRUPTED in err and "unexpected EOF" in err

    assert cli_main(["ask", question, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["answer"] and payload["error"].startswith(INTERRUPTED)


def test_api_keeps_the_partial_answer_of_an_interrupted_stream(settings: Settings, library: Engine,
                                                               fake_ollama: FakeOllama) -> None:
    library.close()  # the app below opens the same data folder
    fake_ollama.chat_error_after = 3
    with LiveApp(settings) as app:
        job = app.client().submit("How many days of paid leave do staff receive under the vacation policy?",
                                  None, False, api_name="/ask")
        result = job.result(timeout=60)
        updates = job.outputs()
    assert result["done"] and result["error"].startswith(INTERRUPTED)
    assert len(result["answer"].split()) == 3  # the three pieces that streamed before the crash
    assert [u["answer"] for u in updates if not u["done"]][-1] == result["answer"]


# --- in the browser -------------------------------------------------------------------------------------------------
def test_the_chat_keeps_a_partial_answer_and_says_it_was_interrupted(settings: Settings, library: Engine,
                                                                    fake_ollama: FakeOllama,
                                                                    browser_page: Any) -> None:
    from tests.test_ui import ask, open_app

    library.close()
    fake_ollama.chat_delay = 0.3
    with LiveApp(settings) as app:
        open_app(browser_page, app.url)
        ask(browser_page, "How many days of paid leave do staff receive under the vacation policy?")
        browser_page.wait_for_function("(document.querySelector('#pw-chat').innerText.match(/Vacation/) || [])"
                                       ".length > 0", timeout=60_000)
        fake_ollama.stop()  # Ollama dies while the answer streams
        browser_page.wait_for_selector("#pw-chat .pw-error", timeout=60_000)
        chat = browser_page.inner_text("#pw-chat")
        note = browser_page.inner_text("#pw-chat .pw-error")
    assert "Vacation" in chat and "30 days of paid leave" not in chat  # the partial answer stays
    assert note.startswith(f"⚠ {INTERRUPTED}") and "connection to Ollama" in note
    assert chat.index("Vacation") < chat.index(INTERRUPTED)


# --- the data folder: read-only, full ------------------------------------------------------------------------------
def refuse_writes(monkeypatch: pytest.MonkeyPatch, code: int, under: Path) -> None:
    """Make every file opened for writing under ``under`` fail with ``code`` (as a read-only or full disk does)."""
    original = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+") and str(self.resolve()).startswith(str(under.resolve())):
            raise OSError(code, os.strerror(code), str(self))
        return original(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)


@pytest.mark.parametrize(("code", "words"), [(errno.EROFS, "can't be written"), (errno.ENOSPC, "is full")])
def test_an_unwritable_data_folder_stops_the_start_with_what_to_do(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    code: int, words: str) -> None:
    refuse_writes(monkeypatch, code, settings.data_dir.parent)
    with pytest.raises(StoreError) as caught:
        Engine(settings)
    message = str(caught.value)
    assert str(settings.data_dir) in message and "RAG_DATA_DIR" in message and words in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_data_folder_stops_the_start(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.data_dir.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="RAG_DATA_DIR"):
            Engine(settings)
    finally:
        settings.data_dir.chmod(0o755)


def test_app_py_refuses_to_start_on_a_full_disk(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import app

    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    refuse_writes(monkeypatch, errno.ENOSPC, settings.data_dir.parent)
    assert app.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("Can't start:") and str(settings.data_dir) in err and "is full" in err


def fail_when_writing(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, under: Path) -> Callable[[], None]:
    """Make ``module.name`` (a file-writing function) raise ENOSPC for targets under ``under``; returns an undo."""
    original = getattr(module, name)

    def full(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if str(Path(dst).resolve()).startswith(str(under.resolve())):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(module, name, full)
    return lambda: monkeypatch.setattr(module, name, original)


@pytest.mark.parametrize("write", ["os.replace", "shutil.copyfile"])  # the vector file / the copy of the PDF
def test_a_full_disk_during_ingest_keeps_nothing_and_says_what_to_do(engine: Engine, tmp_path: Path, write: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    files = [pf.text_pdf(tmp_path / "budget.pdf", LONG), pf.text_pdf(tmp_path / "acme.pdf", ACME)]
    module, name = write.split(".")
    disk_freed = fail_when_writing(monkeypatch, {"os": os, "shutil": shutil}[module], name,
                                   engine.settings.data_dir)
    events = list(engine.ingest(files))

    results = final(events)
    assert results["budget.pdf"].kind == "store"
    assert "is full" in results["budget.pdf"].reason and "Free some space" in results["budget.pdf"].reason
    assert "add it again" in results["budget.pdf"].reason
    assert results["acme.pdf"].kind == "stopped" and "is full" in results["acme.pdf"].reason
    assert isinstance(events[-1], Failure) and str(engine.settings.data_dir) in events[-1].message
    nothing_kept(engine)

    disk_freed()
    results = final(list(engine.ingest(files)))
    assert results["budget.pdf"].status == "indexed" and results["acme.pdf"].status == "indexed"
