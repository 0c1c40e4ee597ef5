"""Several users at once: each session asks about its own PDF while another uploads more, through the real app and
its queue (the small version of bench/load.py; the stand-in Ollama, a test double, streams each answer slowly
enough that the sessions overlap). Nothing may leak between sessions, not even one streamed piece."""

from __future__ import annotations

from pathlib import Path

from bench.load import run_load


def test_concurrent_sessions_get_only_their_own_answers_while_an_upload_runs(tmp_path: Path) -> None:
    report = run_load(sessions=3, questions=1, uploads=2, chat_delay=0.05, time_limit=240, workdir=tmp_path)
    assert report.problems == []
    assert report.completed == 3 and report.ingested == 2
    assert report.ingest_overlap > 0  # the upload really ran while the questions were answered
