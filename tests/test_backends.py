"""Runs anywhere: which backend answers (Ollama or in-process), remote Ollama servers with a token, ZeroGPU, and
the settings Hugging Face Spaces needs.

Nothing here downloads: "Ollama is down" is a closed port, the in-process models are the tiny random Qwen3 built by
tests/tiny_models.py, and ZeroGPU is a stand-in ``spaces`` module.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from rag.answering.answer import AskOptions
from rag.core import config as config_module
from rag.core.config import Settings, normalise_ollama_host
from rag.core.errors import BackendUnavailable, ConfigError, WrongModelKind
from rag.core.events import AnswerDelta, Failure, FileIndexed, Progress, Sources, ThinkingDelta
from rag.engine import Engine
from rag.models import accel
from rag.models.backends import resolve_backends
from rag.models.hub import is_ollama_tag
from rag.models.providers.local_chat import TransformersChat
from rag.models.providers.local_embedder import SentenceTransformerEmbedder
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from ui import render

HANDBOOK = ["Employee handbook of the Zephyr Institute. Welcome to the team.",
            "Vacation policy: every employee receives 30 days of paid leave each year.",
            "Parking is free in the north garage for cyclists and electric cars."]


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "chunk_tokens": 120, "chunk_overlap": 20,
                            "parse_workers": 1, "parse_timeout": 60, "rerank": False}
    return Settings.from_env({}, **{**base, **overrides})


def _versions(fake: FakeOllama) -> int:
    return sum(path == "/api/version" for path, _ in fake.requests)


# --- which backend -----------------------------------------------------------------------------------------------
def test_auto_uses_ollama_when_it_answers(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    b = resolve_backends(_settings(tmp_path, ollama_host=fake_ollama.url))
    assert (b.embed, b.chat, b.embed_model, b.chat_model) == ("ollama", "ollama", "qwen3-embedding:0.6b", "qwen3:8b")
    assert b.summary == f"Ollama at {fake_ollama.url}" and _versions(fake_ollama) == 1


def test_auto_runs_in_process_when_ollama_is_not_there(tmp_path: Path, closed_port: int) -> None:
    host = f"http://127.0.0.1:{closed_port}"
    engine = Engine(_settings(tmp_path, ollama_host=host))
    try:
        assert isinstance(engine.embedder, SentenceTransformerEmbedder) and isinstance(engine.chat, TransformersChat)
        assert engine.settings.embed_model == "Qwen/Qwen3-Embedding-0.6B"
        assert engine.settings.chat_model == "Qwen/Qwen3-0.6B"
        assert engine.backends is not None
        assert engine.backends.summary == f"in-process models (Ollama not found at {host})"
        # The embedding model names the index: Ollama's documents stay in theirs.
        assert "Qwen3-Embedding-0.6B" in engine.store.index_name
        assert not engine.embedder.loaded and not engine.chat.loaded  # nothing loads (or downloads) until used
    finally:
        engine.close()


def test_on_spaces_auto_means_in_process_without_asking(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    b = resolve_backends(_settings(tmp_path, ollama_host=fake_ollama.url, space_id="someone/pagewise", auth="none"))
    assert (b.embed, b.chat) == ("sentence-transformers", "transformers")
    assert b.summary == "in-process models (on Hugging Face Spaces)" and _versions(fake_ollama) == 0


def test_an_explicit_backend_is_used_without_asking(tmp_path: Path, fake_ollama: FakeOllama,
                                                    closed_port: int) -> None:
    down = resolve_backends(_settings(tmp_path, ollama_host=f"127.0.0.1:{closed_port}", backend="ollama"))
    assert (down.embed, down.chat) == ("ollama", "ollama")  # its check will say `ollama serve`
    local = resolve_backends(_settings(tmp_path, ollama_host=fake_ollama.url, backend="in-process"))
    assert (local.embed, local.chat) == ("sentence-transformers", "transformers")
    assert local.summary == "in-process models (RAG_BACKEND=in-process)" and _versions(fake_ollama) == 0


def test_per_model_backends_win_over_rag_backend(tmp_path: Path, fake_ollama: FakeOllama, tiny_qwen3_dir: Path) -> None:
    # The older way: RAG_EMBED_BACKEND=sentence-transformers with RAG_EMBED_MODEL naming the model.
    b = resolve_backends(_settings(tmp_path, ollama_host=fake_ollama.url, embed_backend="sentence-transformers",
                                   embed_model=str(tiny_qwen3_dir)))
    assert (b.embed, b.embed_model, b.chat, b.chat_model) == ("sentence-transformers", str(tiny_qwen3_dir),
                                                              "ollama", "qwen3:8b")
    assert b.summary == f"embeddings in-process, answers by Ollama at {fake_ollama.url}"
    both = resolve_backends(_settings(tmp_path, backend="in-process", embed_backend="ollama", chat_backend="ollama",
                                      ollama_host=fake_ollama.url))
    assert (both.embed, both.chat) == ("ollama", "ollama")


def test_ollama_tags_never_reach_transformers(tmp_path: Path) -> None:
    b = resolve_backends(_settings(tmp_path, chat_backend="transformers", chat_model="qwen3:14b",
                                   embed_backend="sentence-transformers"))
    assert (b.chat_model, b.embed_model) == ("Qwen/Qwen3-0.6B", "Qwen/Qwen3-Embedding-0.6B")
    assert is_ollama_tag("qwen3:8b") and is_ollama_tag("hf.co/Qwen/Qwen3-Embedding-0.6B-GGUF:Q8_0")
    assert not is_ollama_tag("Qwen/Qwen3-0.6B") and not is_ollama_tag(str(tmp_path))
    # Typed into the app's chat-model box while the models run in-process:
    with pytest.raises(WrongModelKind, match="RAG_LOCAL_CHAT_MODEL"):
        TransformersChat("qwen3:8b").check()
    with pytest.raises(WrongModelKind, match="RAG_LOCAL_EMBED_MODEL"):
        SentenceTransformerEmbedder(_settings(tmp_path, embed_model="qwen3-embedding:0.6b")).load()


def test_backend_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="RAG_BACKEND"):
        Settings.from_env({"RAG_BACKEND": "gpu"})
    assert Settings.from_env({"RAG_BACKEND": "in-process"}).backend == "in-process"


# --- in-process, end to end (tiny random models: events, not answer quality) ---------------------------------------
@pytest.fixture
def fake_spaces(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, int]]]:
    """A stand-in ``spaces`` package whose ``GPU`` records each call and, like ZeroGPU, pickles what crosses over."""
    calls: list[tuple[str, str, int]] = []

    def gpu(task: Callable[..., Any] | None = None, *, duration: Any = None, size: Any = None) -> Any:
        def decorated(*args: Any) -> Any:
            pickle.dumps(args)  # ZeroGPU sends the arguments to a forked worker
            key, method, _, seconds = args
            calls.append((task.__name__, method, duration(*args)))
            result = task(*args)
            if task.__name__ == "_stream":
                return (pickle.loads(pickle.dumps(item)) for item in result)
            return pickle.loads(pickle.dumps(result))
        return decorated

    module = types.ModuleType("spaces")
    module.GPU = gpu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spaces", module)
    accel.reset()
    yield calls
    accel.reset()


def test_in_process_models_ingest_and_answer(tmp_path: Path, tiny_qwen3_dir: Path, closed_port: int,
                                             fake_spaces: list[tuple[str, str, int]]) -> None:
    tiny = str(tiny_qwen3_dir)
    settings = _settings(tmp_path, ollama_host=f"http://127.0.0.1:{closed_port}", local_embed_model=tiny,
                         local_chat_model=tiny, rerank=True, rerank_model=tiny, rerank_threshold=0.0,
                         min_relevance=0.0, max_answer_tokens=64, gpu_seconds=45)
    assert accel.init()  # app.py does this first: the GPU entry points exist before the app launches
    engine = Engine(settings)
    try:
        assert engine.backends is not None and engine.backends.embed == "sentence-transformers"
        engine.warm_up(background=False)
        assert engine.embedder.loaded and engine.chat.loaded and engine.reranker.loaded
        health = engine.health()
        assert health.ok and health.backend.startswith("in-process models (Ollama not found at")
        assert "pw-ok" in render.status_html(health)

        events = list(engine.ingest([pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK)]))
        indexed = [e for e in events if isinstance(e, FileIndexed)]
        assert len(indexed) == 1 and indexed[0].status == "indexed" and indexed[0].pages == 3

        answer = list(engine.ask("How many days of paid leave does an employee get?", options=AskOptions(think=False)))
        assert not any(isinstance(e, Failure) for e in answer)
        stages = [e.stage for e in answer if isinstance(e, Progress)]
        assert "reranking" in stages and "generating" in stages
        sources = next(e for e in answer if isinstance(e, Sources))
        assert [p.file_name for p in [c.passage for c in sources.cited] + sources.other][:1] == ["handbook.pdf"]
        assert any(isinstance(e, (AnswerDelta, ThinkingDelta)) and e.text for e in answer)
    finally:
        engine.close()
    # Every model call went through spaces.GPU, with plain arguments and the configured duration.
    methods = {method for _, method, _ in fake_spaces}
    assert {"_encode", "_score", "_generate"} <= methods
    assert {seconds for _, _, seconds in fake_spaces} == {45}
    assert ("_stream", "_generate", 45) in fake_spaces


def test_without_spaces_model_calls_are_plain_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError, as on any machine but a Space
    accel.reset()
    try:
        class Model:
            def twice(self, x: int) -> int:
                return 2 * x

            def count(self, n: int) -> Iterator[int]:
                yield from range(n)

        assert accel.spaces_module() is None and not accel.init()
        assert accel.gpu_call(Model(), "twice", 21) == 42
        assert list(accel.gpu_stream(Model(), "count", 3)) == [0, 1, 2]
    finally:
        accel.reset()


def test_the_badge_says_what_is_downloading(tmp_path: Path, tiny_qwen3_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    tiny = str(tiny_qwen3_dir)
    engine = Engine(_settings(tmp_path, backend="in-process", local_embed_model=tiny, local_chat_model=tiny))
    release = threading.Event()
    original = engine.embedder.load

    def slow_load() -> None:
        release.wait(30)
        original()

    monkeypatch.setattr(engine.embedder, "load", slow_load)
    try:
        thread = engine.warm_up()
        assert thread is not None
        health = engine.health()  # answers at once: it doesn't wait for the model being loaded
        assert not health.ok and not health.problems and health.loading == [f"Loading {tiny} …"]
        html = render.status_html(health)
        assert "pw-busy" in html and "Starting" in html and "in-process models (RAG_BACKEND=in-process)" in html
        assert "Index: " in html  # hovering names the index in use
        release.set()
        thread.join(60)
        assert engine.health().ok
    finally:
        release.set()
        engine.close()


# --- remote Ollama: hosts, token ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "canonical"), [
    ("https://gpu.example.com:8443", "https://gpu.example.com:8443"),
    ("gpu-box:11435", "http://gpu-box:11435"),
    ("gpu-box", "http://gpu-box:11434"),
    ("https://ollama.example.com/", "https://ollama.example.com:443"),
    ("http://[::1]:11434", "http://[::1]:11434"),
])
def test_ollama_hosts_take_the_forms_the_client_takes(raw: str, canonical: str) -> None:
    import ollama

    assert normalise_ollama_host(raw) == canonical
    s = Settings.from_env({"OLLAMA_HOST": raw, "RAG_CHAT_OLLAMA_HOST": "chat-box:9000"})
    assert (s.ollama_host, s.embed_host, s.chat_host) == (canonical, canonical, "http://chat-box:9000")
    # The client reads the raw value and ours the same way.
    assert ollama.Client(host=s.ollama_host)._client.base_url == ollama.Client(host=raw)._client.base_url


@pytest.mark.parametrize(("env", "var"), [
    ({"OLLAMA_HOST": "ftp://gpu-box"}, "OLLAMA_HOST"),
    ({"OLLAMA_HOST": "gpu-box:99999"}, "OLLAMA_HOST"),
    ({"RAG_EMBED_OLLAMA_HOST": "http://:0"}, "RAG_EMBED_OLLAMA_HOST"),
    ({"RAG_CHAT_OLLAMA_HOST": "https://user:hunter2@gpu-box"}, "RAG_CHAT_OLLAMA_HOST"),
])
def test_bad_ollama_hosts_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var) as err:
        Settings.from_env(env)
    assert "hunter2" not in str(err.value)


def test_embeddings_and_answers_go_to_their_own_servers_with_the_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOllama() as embed_server, FakeOllama() as chat_server:
        embed_server.token = chat_server.token = "s3cret-token"
        settings = _settings(tmp_path, ollama_host="http://127.0.0.1:9", embed_ollama_host=embed_server.url,
                             chat_ollama_host=chat_server.url, ollama_token="s3cret-token")
        engine = Engine(settings)
        try:
            assert engine.backends is not None
            assert engine.backends.summary == f"Ollama (embeddings at {embed_server.url}, answers at {chat_server.url})"
            health = engine.health()
            assert health.ok, health.problems
            list(engine.ingest([pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK)]))
            answer = list(engine.ask("How many days of paid vacation leave does an employee receive?"))
            assert "30 days" in "".join(e.text for e in answer if isinstance(e, AnswerDelta))
        finally:
            engine.close()
        embed_paths = {path for path, _ in embed_server.requests}
        chat_paths = {path for path, _ in chat_server.requests}
        assert "/api/embed" in embed_paths and "/api/chat" not in embed_paths
        assert "/api/chat" in chat_paths and "/api/embed" not in chat_paths
        assert set(embed_server.authorizations) == set(chat_server.authorizations) == {"Bearer s3cret-token"}
    shown = render.status_html(health) + repr(settings) + str(health) + caplog.text
    assert "s3cret-token" not in shown


@pytest.mark.parametrize(("token", "says"), [(None, "asks for a token"), ("wrong", "refused the token")])
def test_a_missing_or_wrong_token_names_the_setting(tmp_path: Path, token: str | None, says: str) -> None:
    with FakeOllama() as server:
        server.token = "s3cret-token"
        engine = Engine(_settings(tmp_path, ollama_host=server.url, ollama_token=token))
        try:
            assert engine.backends is not None and engine.backends.embed == "ollama"  # the server is there
            problems = engine.health().problems
            assert problems and all("RAG_OLLAMA_TOKEN" in p and says in p and "401" in p for p in problems)
            events = list(engine.ingest([pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK)]))
            failures = [e.message for e in events if isinstance(e, Failure)]
            assert failures and "RAG_OLLAMA_TOKEN" in failures[0]
            with pytest.raises(BackendUnavailable, match="RAG_OLLAMA_TOKEN"):
                list(engine.chat.stream([{"role": "user", "content": "hi"}]))
        finally:
            engine.close()
        assert server.authorizations and all(a in (None, "Bearer wrong") for a in server.authorizations)


# --- Hugging Face Spaces ---------------------------------------------------------------------------------------------
def test_on_spaces_data_goes_to_persistent_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "data"
    monkeypatch.setattr(config_module, "SPACES_STORAGE", storage)
    space = {"SPACE_ID": "someone/pagewise", "RAG_AUTH": "none"}
    assert Settings.from_env(space).data_dir == Path("data")  # no persistent storage on this Space
    storage.mkdir()
    assert Settings.from_env(space).data_dir == storage / "pagewise"
    assert Settings.from_env({**space, "RAG_DATA_DIR": "/srv/pw"}).data_dir == Path("/srv/pw")  # explicit wins
    assert Settings.from_env({}).data_dir == Path("data")  # not a Space
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert Settings.from_env(space).data_dir == Path("data")  # there but not writable


def test_on_spaces_the_app_listens_on_the_network_and_asks_for_a_login() -> None:
    with pytest.raises(ConfigError, match=r"RAG_AUTH=user:password in the Space"):
        Settings.from_env({"SPACE_ID": "someone/pagewise"})
    s = Settings.from_env({"SPACE_ID": "someone/pagewise", "RAG_AUTH": "none"})
    assert s.host == "0.0.0.0" and s.logins == []
    assert Settings.from_env({"SPACE_ID": "x/y", "RAG_AUTH": "me:pw", "RAG_HOST": "127.0.0.1"}).host == "127.0.0.1"
