"""Shared fixtures: a stand-in Ollama server (test double), settings in a temp data dir, and an engine.

Tests never download anything: the Ollama stand-in speaks the real HTTP protocol to the real client, and the
in-process model tests use tiny random-weight Qwen3 models built locally (tests/tiny_models.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.config import Settings  # noqa: E402
from rag.engine import Engine  # noqa: E402
from tests.fake_ollama import FakeOllama  # noqa: E402

pytest_plugins = ["tests.tiny_models"]

EMBED_MODEL = "qwen3-embedding:0.6b"


@pytest.fixture(scope="session")
def ollama_server() -> Iterator[FakeOllama]:
    """One stand-in Ollama for the whole session."""
    server = FakeOllama().start()
    yield server
    server.stop()


@pytest.fixture
def fake_ollama(ollama_server: FakeOllama) -> Iterator[FakeOllama]:
    """The stand-in Ollama, running and reset to its defaults for this test."""
    ollama_server.reset()
    if not ollama_server.running:
        ollama_server.start()
    yield ollama_server
    ollama_server.reset()
    if not ollama_server.running:
        ollama_server.start()


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama) -> Settings:
    """Settings pointing at the stand-in server and a fresh data dir, with small chunks and batches."""
    return Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path / "data", chunk_tokens=120,
                             chunk_overlap=20, embed_batch_size=8, parse_workers=2, parse_timeout=60,
                             rerank=False)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the temp data dir."""
    eng = Engine(settings)
    yield eng
    eng.close()
