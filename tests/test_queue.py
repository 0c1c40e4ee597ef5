"""The persistent ingest queue and folder sync, through the engine against the stand-in Ollama (a test double)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.engine import Engine
from rag.ingestion import sync as sync_module
from rag.ingestion.queue import DONE, FAILED, FILE_NAME, QUEUED, RUNNING
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parent.parent


def _pdf(folder: Path, name: str, topic: str, pages: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return pf.text_pdf(folder / name, [f"{topic} report, page {p}. The {topic} figure for year {p} is {p * 7}."
                                       for p in range(1, pages + 1)])


def _drain(engine: Engine) -> list:
    return list(engine.queue.run())


def test_queued_files_are_indexed_into_their_owners_library_and_a_bad_one_does_not_stop_the_rest(
        engine: Engine, tmp_path: Path) -> None:
    engine.access.create_collection("ann", "work")
    good = [_pdf(tmp_path / "in", f"f{i}.pdf", topic) for i, topic in enumerate(["alpha", "beta"])]
    bad = pf.corrupt_pdf(tmp_path / "in" / "broken.pdf")
    ids = engine.enqueue([good[0], bad, good[1]], owner="ann", collection="work")
    assert engine.queue.status().queued == 3
    _drain(engine)
    jobs = {j.name: j for j in engine.queue.jobs(ids)}
    assert jobs["f0.pdf"].state == DONE and jobs["f1.pdf"].state == DONE
    assert jobs["broken.pdf"].state == FAILED and "broken.pdf" in jobs["broken.pdf"].detail
    assert sorted(d.file_name for d in engine.documents()) == ["f0.pdf", "f1.pdf"]
    assert sorted(d.file_name for d in engine.documents("ann")) == ["f0.pdf", "f1.pdf"]
    assert engine.documents("bob") == []  # ann's files are hers
    assert sorted(engine.access.collection("ann", "work").docs.values()) == ["f0.pdf", "f1.pdf"]
    status = engine.queue.status()
    assert not status.busy and status.done == 2 and status.failed == 1
    assert "2 indexed, 1 failed" in status.describe()

    # The same bytes from bob: "indexed" for him (nothing tells him that ann has it; nothing is embedded again).
    again = engine.enqueue([good[0]], owner="bob")
    _drain(engine)
    assert engine.queue.jobs(again)[0].status == "indexed"
    assert [d.file_name for d in engine.documents("bob")] == ["f0.pdf"]
    assert len(engine.documents()) == 2


def test_the_queue_line_tells_each_user_of_their_own_files_only(engine: Engine, tmp_path: Path) -> None:
    from ui import library as library_view

    engine.enqueue([_pdf(tmp_path / "in", f"ann{i}.pdf", t) for i, t in enumerate(["alpha", "beta"])], owner="ann")
    late = engine.enqueue([_pdf(tmp_path / "in", "bob.pdf", "delta")], owner="bob")
    assert engine.queue.status(owner="bob").queued == 1 and engine.queue.status().queued == 3
    _drain(engine)
    assert engine.queue.jobs(late)[0].state == DONE
    assert "1 files handled: 1 indexed" in library_view.queue_html(engine, "bob")
    assert "2 files handled: 2 indexed" in library_view.queue_html(engine, "ann")
    assert library_view.queue_html(engine, "carl") == ""  # nothing of his: not even that others added files
    mine = library_view.api_status(engine, "carl")
    assert (mine["done"], mine["queued"], mine["current"]) == (0, 0, "")
    assert "3 files handled" in library_view.queue_html(engine, None)  # the machine's owner sees the whole queue


def test_an_upload_is_copied_so_its_temporary_file_may_go(engine: Engine, tmp_path: Path) -> None:
    upload = _pdf(tmp_path / "tmp", "upload.pdf", "gamma")
    (job_id,) = engine.enqueue([upload], copy=True)
    upload.unlink()  # Gradio removes its temporary upload
    _drain(engine)
    job = engine.queue.jobs([job_id])[0]
    assert job.state == DONE and [d.file_name for d in engine.documents()] == ["upload.pdf"]
    assert not Path(job.path).exists()  # the copy went once its job was done


def test_a_model_outage_pauses_the_queue_and_loses_nothing(engine: Engine, tmp_path: Path,
                                                          fake_ollama: FakeOllama) -> None:
    files = [_pdf(tmp_path / "in", f"f{i}.pdf", t) for i, t in enumerate(["alpha", "beta", "delta"])]
    ids = engine.enqueue(files)
    fake_ollama.stop()
    events = list(engine.queue.run(until=lambda: True))  # one pass: the run stops at the outage
    assert events and engine.queue.status().paused
    assert all(j.state == QUEUED for j in engine.queue.jobs(ids))  # none failed, none lost
    assert engine.documents() == []
    fake_ollama.start()
    engine.queue._paused_until = 0.0  # the pause (RAG retry) is over
    _drain(engine)
    assert all(j.state == DONE for j in engine.queue.jobs(ids))
    assert len(engine.documents()) == 3


def test_kill_9_mid_queue_then_resume_loses_duplicates_and_half_indexes_nothing(
        settings: Settings, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    folder = tmp_path / "many"
    files = [_pdf(folder, f"doc{i:02d}.pdf", f"topic{i}", pages=3) for i in range(8)]
    fake_ollama.embed_delay = 0.15  # slow enough that the kill lands mid-queue
    env = {**os.environ, "OLLAMA_HOST": settings.ollama_host, "RAG_DATA_DIR": str(settings.data_dir),
           "RAG_CHUNK_TOKENS": "40", "RAG_CHUNK_OVERLAP": "5", "RAG_EMBED_BATCH_SIZE": "2",
           "RAG_PARSE_WORKERS": "2", "RAG_RERANK": "false", "RAG_QUEUE_BATCH": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "ingest", str(folder)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_path = settings.data_dir / FILE_NAME
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=5) as db:
                    done = db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (DONE,)).fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the ingest ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= done < len(files)
    fake_ollama.embed_delay = 0.0

    engine = Engine(settings.with_(chunk_tokens=40, chunk_overlap=5))
    try:
        interrupted = engine.queue.jobs(states=(RUNNING,))
        assert interrupted, "the kill should have left a job running"
        _drain(engine)  # the resume
        jobs = engine.queue.jobs()
        assert len(jobs) == len(files) and all(j.state == DONE for j in jobs)
        docs = engine.store.documents(include_pending=True)
        assert sorted(d.file_name for d in docs) == [f.name for f in files]  # each once
        assert all(d.status == "ready" for d in docs)
        for d in docs:  # whole: every chunk of every document, no more
            assert engine.store.count_chunks(d.doc_id) == d.chunks > 0
        assert engine.store.count_chunks() == sum(d.chunks for d in docs)
    finally:
        engine.close()


# --- folder sync ------------------------------------------------------------------------------------------------------
def test_sync_indexes_a_folder_and_a_second_pass_only_stats(engine: Engine, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "papers"
    for i, topic in enumerate(["alpha", "beta", "gamma"]):
        _pdf(folder / ("sub" if i == 2 else ""), f"p{i}.pdf", topic)
    (folder / "notes.txt").write_text("not a pdf")
    (report,) = engine.sync([folder])
    assert (report.new, report.unchanged) == (3, 0) and len(report.queued or []) == 3
    _drain(engine)
    assert sorted(d.file_name for d in engine.documents()) == ["p0.pdf", "p1.pdf", "p2.pdf"]

    hashed: list[Path] = []
    real = sync_module.content_id
    monkeypatch.setattr(sync_module, "content_id", lambda p: hashed.append(p) or real(p))
    (report,) = engine.sync([folder])
    assert (report.unchanged, report.new, report.queued) == (3, 0, [])
    assert hashed == []  # nothing unchanged is read
    (state,) = engine.folder_sync.states([str(folder)])
    assert (state.files, state.indexed, state.state) == (3, 3, "in step")


def test_sync_recognises_a_rename_and_replaces_a_changed_file(engine: Engine, tmp_path: Path,
                                                              fake_ollama: FakeOllama) -> None:
    folder = tmp_path / "papers"
    a = _pdf(folder, "a.pdf", "alpha")
    _pdf(folder, "b.pdf", "beta")
    engine.sync([folder], grace_s=0)
    _drain(engine)
    old_b = next(d for d in engine.documents() if d.file_name == "b.pdf")

    fake_ollama.requests.clear()
    a.rename(folder / "renamed.pdf")
    (report,) = engine.sync([folder], grace_s=0)
    assert report.renamed == 1 and report.removed == 0
    _drain(engine)
    assert not [r for r in fake_ollama.requests if r[0] == "/api/embed"]  # not embedded again
    assert "alpha" in " ".join(engine.store.chunk_texts(
        next(d for d in engine.documents() if d.file_name == "a.pdf").doc_id)[1])

    _pdf(folder, "b.pdf", "omega")  # new content under the same name
    (report,) = engine.sync([folder], grace_s=0)
    assert report.changed == 1
    _drain(engine)
    ids = {d.doc_id for d in engine.documents()}
    assert old_b.doc_id not in ids and len(ids) == 2  # the old version went once the new one was indexed


def test_a_deleted_file_is_removed_after_the_grace_period(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "papers"
    keep = _pdf(folder, "keep.pdf", "alpha")
    gone = _pdf(folder, "gone.pdf", "beta")
    engine.sync([folder])
    _drain(engine)
    gone.unlink()
    (report,) = engine.sync([folder], grace_s=3600)
    assert report.removing == 1 and len(engine.documents()) == 2  # kept while it may come back
    (state,) = engine.folder_sync.states([str(folder)])
    assert state.removing == 1
    (report,) = engine.sync([folder], grace_s=0)
    assert report.removed == 1 and [d.file_name for d in engine.documents()] == [keep.name]


def test_a_missing_folder_is_reported_not_raised(engine: Engine, tmp_path: Path) -> None:
    (report,) = engine.sync([tmp_path / "nowhere"])
    assert report.error and "not found" in report.describe()
    (state,) = engine.folder_sync.states([str(tmp_path / "nowhere")])
    assert state.state == "unreadable"


def test_watched_folders_are_kept_in_step_in_the_background(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    _pdf(folder, "first.pdf", "alpha")
    engine = Engine(settings.with_(watch=str(folder), watch_interval=0.2, sync_grace=0))
    try:
        engine.start_background()
        _wait(lambda: [d.file_name for d in engine.documents()] == ["first.pdf"])
        _pdf(folder, "second.pdf", "beta")
        _wait(lambda: len(engine.documents()) == 2)
        # Questions are answered while it runs.
        assert any(type(e).__name__ == "Sources" for e in engine.ask("What is the alpha figure?"))
        (folder / "first.pdf").unlink()
        _wait(lambda: [d.file_name for d in engine.documents()] == ["second.pdf"])
        (state,) = engine.watched_folders()
        assert state.files == 1 and state.state == "in step"
    finally:
        engine.close()


def _wait(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


# --- the command line -------------------------------------------------------------------------------------------------
def test_the_cli_syncs_and_shows_the_queue(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_PARSE_WORKERS", "2")
    folder = tmp_path / "papers"
    _pdf(folder, "a.pdf", "alpha")
    _pdf(folder, "b.pdf", "beta")
    assert cli_main(["sync", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 new" in out and "a.pdf: ✓ indexed" in out and "2 indexed" in out
    assert cli_main(["sync", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 unchanged" in out and "nothing to do" in out
    pf.corrupt_pdf(folder / "c.pdf")
    assert cli_main(["sync", str(folder)]) == 2  # a file failed
    assert cli_main(["queue"]) == 0
    out = capsys.readouterr().out
    assert "c.pdf" in out and "0 files waiting" in out


def test_a_replica_that_only_answers_indexes_nothing(settings: Settings, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.live_app import LiveApp

    with LiveApp(settings.with_(ingest=False)) as app:
        (result,) = app.client().predict([handle_file(str(_pdf(tmp_path, "a.pdf", "alpha")))], api_name="/upload")
        assert result["status"] == "failed" and "RAG_INGEST=false" in result["reason"]
        status = app.client().predict(api_name="/queue")
        assert status["queued"] == 0 and app.engine.documents() == []


def test_the_queue_api_reports_progress(settings: Settings, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.live_app import LiveApp

    with LiveApp(settings) as app:
        client = app.client()
        results = client.predict([handle_file(str(_pdf(tmp_path, "a.pdf", "alpha"))),
                                  handle_file(str(_pdf(tmp_path, "b.pdf", "beta")))], api_name="/upload")
        assert [r["status"] for r in results] == ["indexed", "indexed"]
        status = client.predict(api_name="/queue")
        assert status["done"] == 2 and status["queued"] == 0 and "2 indexed" in status["summary"]
        assert status["eta_seconds"] == 0.0
