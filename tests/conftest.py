"""Shared fixtures: stand-in Ollama and OpenAI-compatible servers (test doubles), settings in a temp data dir, and an
engine.

Tests never download anything: the Ollama stand-in speaks the real HTTP protocol to the real client, and the
in-process model tests use tiny random-weight Qwen3 models built locally (tests/tiny_models.py).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.core.config import Settings  # noqa: E402
from rag.engine import Engine  # noqa: E402
from tests.chroma_server import ChromaServer  # noqa: E402
from tests.fake_ollama import FakeOllama  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

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


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    """One stand-in OpenAI-compatible server (and /rerank service) for the whole session."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The stand-in OpenAI-compatible server, reset to its defaults for this test."""
    openai_server.reset()
    yield openai_server
    openai_server.reset()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: a model server not installed, or not started."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One real Chroma server (`chroma run`) for the session's server-mode tests."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def chroma(chroma_server: ChromaServer) -> Iterator[ChromaServer]:
    """The shared Chroma server, emptied after the test."""
    yield chroma_server
    chroma_server.clear()


SERVER_MODE_MODULES = ("test_ingest", "test_answer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the ingest and answer tests twice: with Chroma embedded on disk, and against a real Chroma server."""
    if "settings" in metafunc.fixturenames and metafunc.module.__name__.rsplit(".", 1)[-1] in SERVER_MODE_MODULES:
        metafunc.parametrize("store_mode", ["embedded", "chroma-server"], indirect=True)


@pytest.fixture
def store_mode(request: pytest.FixtureRequest) -> str:
    """Where the index lives: "embedded" (PersistentClient under the data dir) or "chroma-server"."""
    return getattr(request, "param", "embedded")


@pytest.fixture
def settings(tmp_path: Path, fake_ollama: FakeOllama, store_mode: str, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at the stand-in server and a fresh data dir, with small chunks and batches."""
    server: dict[str, object] = {}
    if store_mode == "chroma-server":
        chroma = request.getfixturevalue("chroma")
        server = {"chroma_host": chroma.host, "chroma_port": chroma.port}
    return Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path / "data", chunk_tokens=120,
                             chunk_overlap=20, embed_batch_size=8, parse_workers=2, parse_timeout=60,
                             rerank=False, **server)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the temp data dir."""
    eng = Engine(settings)
    yield eng
    eng.close()


CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's /usr/bin/chromium driven by Playwright) for the session's browser tests; each
    test opens its own context (cookies, local storage) in it."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def browser_page(browser: Any) -> Iterator[Any]:
    """A fresh page in a context of its own; dialogs are recorded in ``page.dialogs`` and dismissed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()
