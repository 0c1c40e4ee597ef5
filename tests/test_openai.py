"""OpenAI-compatible servers: embeddings and streamed chat through the real client in rag.models.providers.openai,
against the stand-in server of tests/fake_openai.py (a test double speaking real HTTP on 127.0.0.1).

Covers what the servers really do: reasoning as ``reasoning_content``, ``reasoning`` or ``<think>`` in the text,
429 then success, a 500 in the middle of a stream, a server that drops ``dimensions`` or refuses Qwen3's thinking
switch, and the whole app (ingest, ask, citations) on these backends, with the key never shown.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.core.errors import BackendUnavailable, ConfigError, GenerationError, ModelNotFound, WrongModelKind
from rag.core.events import AnswerDelta, Failure, Progress, Sources, ThinkingDelta
from rag.engine import Engine
from rag.models.backends import resolve_backends
from rag.models.embedder import query_prompt
from rag.models.factory import make_chat_model, make_embedder
from rag.models.providers.http import Refused
from rag.models.providers.openai import OpenAIChat, OpenAIEmbedder
from tests import pdf_factory as pf
from tests.fake_openai import CHAT_MODEL, EMBED_DIM, EMBED_MODEL, MAX_MODEL_LEN, RERANK_MODEL, FakeOpenAI

KEY = "sk-test-0123456789abcdef"
ZEPHYR = ["Employee handbook of the Zephyr Institute. Welcome to the team.",
          "Vacation policy: every employee receives 30 days of paid leave each year.",
          "Parking is free in the north garage for cyclists and electric cars."]
ACME = ["Acme Corporation annual report for fiscal 2022. Letter from the chief executive.",
        "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates.",
        "The board approved a dividend of 3 cents per share in December 2022."]
SOURCES = [{"role": "system", "content": "Answer from the sources and cite them as [n]."},
           {"role": "user", "content": '<sources>\n<source id="1" file="z.pdf" page="2">Every employee receives 30 '
                                       'days of paid leave each year.</source>\n</sources>\n\nQuestion: How many '
                                       'days of paid leave does an employee receive?'}]


def _settings(tmp_path: Path, fake: FakeOpenAI, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data", "chunk_tokens": 120, "chunk_overlap": 20, "parse_workers": 1,
        "parse_timeout": 60, "rerank": False,
        "embed_backend": "openai", "embed_base_url": fake.base_url, "embed_model": EMBED_MODEL,
        "chat_backend": "openai", "chat_base_url": fake.base_url, "chat_model": CHAT_MODEL,
    }
    return Settings.from_env({}, **{**base, **overrides})


def _calls(fake: FakeOpenAI, path: str) -> list[dict[str, Any]]:
    return [body for p, body in fake.requests if p == path]


class Sleeps(list):
    """Records the backoff delays instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _embedder(tmp_path: Path, fake: FakeOpenAI, **overrides: Any) -> tuple[OpenAIEmbedder, Sleeps]:
    return _with_sleeps(make_embedder(_settings(tmp_path, fake, **overrides)), OpenAIEmbedder)


def _chat(tmp_path: Path, fake: FakeOpenAI, **overrides: Any) -> tuple[OpenAIChat, Sleeps]:
    return _with_sleeps(make_chat_model(_settings(tmp_path, fake, **overrides)), OpenAIChat)


def _with_sleeps(model: Any, kind: type) -> tuple[Any, Sleeps]:
    """The model (checked to be of ``kind``) with its backoff recorded instead of slept."""
    assert isinstance(model, kind)
    sleeps = Sleeps()
    model.service.sleep = sleeps
    return model, sleeps


def _split(deltas: list[Any]) -> tuple[str, str]:
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    answer = "".join(d.text for d in deltas if isinstance(d, AnswerDelta))
    return thinking, answer


# --- embeddings -------------------------------------------------------------------------------------------------
def test_embeddings_are_batched_and_queries_get_the_qwen3_instruction(tmp_path: Path,
                                                                       fake_openai: FakeOpenAI) -> None:
    embedder, _ = _embedder(tmp_path, fake_openai, embed_batch_size=2)
    texts = ["cats sleep all day", "company revenue grew strongly in 2023", "the tenant pays rent", "solar panels"]
    vectors = embedder.embed_documents(texts)
    calls = _calls(fake_openai, "/v1/embeddings")
    assert [c["input"] for c in calls] == [texts[:2], texts[2:]]  # documents go in raw, two a call
    assert all(c["model"] == EMBED_MODEL and c["encoding_format"] == "float" and "dimensions" not in c
               for c in calls)
    # The server lists embeddings in reverse: the client orders them by index.
    assert len(vectors) == 4 and len(vectors[0]) == EMBED_DIM == embedder.dimensions
    query = embedder.embed_query("How much did revenue grow?")
    cosines = [sum(a * b for a, b in zip(query, v, strict=True)) for v in vectors]
    assert cosines[1] > 0.1 and cosines[1] == max(cosines)  # each vector went back to its own text
    assert _calls(fake_openai, "/v1/embeddings")[-1]["input"] == [
        query_prompt(embedder.instruction, "How much did revenue grow?")]


@pytest.mark.parametrize("server", ["applies it", "ignores it", "refuses it"])
def test_dimensions_are_sent_and_applied_either_way(tmp_path: Path, fake_openai: FakeOpenAI, server: str) -> None:
    fake_openai.ignore_dimensions = server == "ignores it"
    fake_openai.refuse_dimensions = server == "refuses it"
    embedder, _ = _embedder(tmp_path, fake_openai, embed_dimensions=64)
    full = fake_openai.embed_models[EMBED_MODEL]
    for _ in range(2):
        vector = embedder.embed_documents(["cats sleep all day"])[0]
        assert len(vector) == 64 and math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-6)
    sent = ["dimensions" in c for c in _calls(fake_openai, "/v1/embeddings")]
    assert sent == ([True, False, False] if server == "refuses it" else [True, True])  # refused once, then not sent
    assert embedder.index_name.endswith("-64") and full > 64


def test_429_and_503_are_retried_with_growing_backoff(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    embedder, sleeps = _embedder(tmp_path, fake_openai)
    fake_openai.fail_next = [429, 503, 500]
    assert len(embedder.embed_documents(["cats"])[0]) == EMBED_DIM
    assert len(_calls(fake_openai, "/v1/embeddings")) == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]


def test_retry_after_is_honoured(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    embedder, sleeps = _embedder(tmp_path, fake_openai)
    fake_openai.fail_next, fake_openai.retry_after = [429], "2"
    embedder.embed_query("cats")
    assert sleeps == [2.0]


def test_when_retries_run_out_the_error_says_so(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    embedder, sleeps = _embedder(tmp_path, fake_openai, http_retries=2)
    fake_openai.fail_next = [429] * 5
    with pytest.raises(BackendUnavailable) as caught:
        embedder.embed_documents(["cats"])
    message = str(caught.value)
    assert "HTTP 429" in message and "Rate limit reached" in message and "3 times" in message
    assert "RAG_EMBED_BATCH_SIZE" in message and fake_openai.base_url in message
    assert len(sleeps) == 2


def test_a_server_taking_fewer_texts_says_which_setting_to_lower(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.max_batch = 10  # DashScope's text-embedding-v4
    embedder, _ = _embedder(tmp_path, fake_openai, embed_batch_size=32)
    with pytest.raises(Refused, match="RAG_EMBED_BATCH_SIZE.*DashScope takes 10"):
        embedder.embed_documents([f"text {i}" for i in range(12)])
    embedder, _ = _embedder(tmp_path, fake_openai, embed_batch_size=10)
    assert len(embedder.embed_documents([f"text {i}" for i in range(12)])) == 12


def test_vectors_per_token_say_the_server_runs_the_model_without_pooling(tmp_path: Path,
                                                                          fake_openai: FakeOpenAI) -> None:
    fake_openai.per_token = True  # found with llama-cpp-python's server and a chat model's GGUF
    embedder, _ = _embedder(tmp_path, fake_openai)
    with pytest.raises(WrongModelKind, match="one vector per token.*without pooling.*--pooling last"):
        embedder.embed_documents(["cats sleep all day"])


def test_a_model_the_server_does_not_serve_is_named_with_what_it_serves(tmp_path: Path,
                                                                          fake_openai: FakeOpenAI) -> None:
    embedder, _ = _embedder(tmp_path, fake_openai, embed_model="qwen3-embedding:0.6b")
    with pytest.raises(ModelNotFound) as caught:
        embedder.check()
    assert "RAG_EMBED_MODEL" in str(caught.value) and EMBED_MODEL in str(caught.value)
    # A server without a model list (or one that ignores names, as llama.cpp's) is asked with one tiny embedding.
    fake_openai.list_models = False
    good, _ = _embedder(tmp_path, fake_openai)
    good.check()


def test_an_unreachable_server_names_the_setting(tmp_path: Path, fake_openai: FakeOpenAI, closed_port: int) -> None:
    embedder, sleeps = _embedder(tmp_path, fake_openai, embed_base_url=f"http://127.0.0.1:{closed_port}/v1",
                                 http_retries=1)
    with pytest.raises(BackendUnavailable, match=f"Can't reach the embedding server at http://127.0.0.1:{closed_port}"
                                                 "/v1.*RAG_EMBED_BASE_URL"):
        embedder.embed_query("cats")
    assert len(sleeps) == 1  # a dropped connection is retried like a 5xx
    with pytest.raises(BackendUnavailable, match="RAG_EMBED_BASE_URL"):
        embedder.check()


def test_a_wrong_path_says_to_check_the_base_url(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    embedder, _ = _embedder(tmp_path, fake_openai, embed_base_url=fake_openai.url)  # /v1 forgotten
    with pytest.raises(BackendUnavailable, match="/embeddings does not exist.*RAG_EMBED_BASE_URL.*/v1"):
        embedder.embed_query("cats")
    with pytest.raises(BackendUnavailable, match="RAG_EMBED_BASE_URL"):  # the status check finds it too
        embedder.check()


# --- chat -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reasoning", ["reasoning_content", "reasoning", "think"])
def test_reasoning_is_kept_apart_however_the_server_sends_it(tmp_path: Path, fake_openai: FakeOpenAI,
                                                             reasoning: str) -> None:
    fake_openai.reasoning = reasoning
    chat, _ = _chat(tmp_path, fake_openai)
    deltas = list(chat.stream(SOURCES, think=True, max_tokens=300))
    thinking, answer = _split(deltas)
    assert thinking.strip() == "The question asks about How many days of paid leave does an employee receive. " \
                               "Source 1 looks relevant."
    assert answer == "Every employee receives 30 days of paid leave each year [1]."
    assert "<think>" not in answer + thinking and "</think>" not in answer + thinking
    assert sum(isinstance(d, AnswerDelta) for d in deltas) > 3  # streamed in pieces, not at the end
    body = _calls(fake_openai, "/v1/chat/completions")[0]
    assert body["stream"] is True and body["max_tokens"] == 300 and body["model"] == CHAT_MODEL
    assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["enable_thinking"] is True


def test_no_thinking_asks_the_server_to_skip_it(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    chat, _ = _chat(tmp_path, fake_openai)
    assert chat.complete(SOURCES) == "Every employee receives 30 days of paid leave each year [1]."
    body = _calls(fake_openai, "/v1/chat/completions")[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["enable_thinking"] is False


def test_a_server_that_refuses_the_thinking_switch_gets_requests_without_it(tmp_path: Path,
                                                                             fake_openai: FakeOpenAI) -> None:
    fake_openai.refuse_thinking_switch = True
    chat, _ = _chat(tmp_path, fake_openai)
    assert "30 days" in _split(list(chat.stream(SOURCES)))[1]
    assert "30 days" in chat.complete(SOURCES)
    bodies = _calls(fake_openai, "/v1/chat/completions")
    assert ["chat_template_kwargs" in b for b in bodies] == [True, False, False]  # asked once, then remembered


def test_a_chat_429_is_retried_before_anything_streams(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    chat, sleeps = _chat(tmp_path, fake_openai)
    fake_openai.fail_next = [429]
    thinking, answer = _split(list(chat.stream(SOURCES)))
    assert answer == "Every employee receives 30 days of paid leave each year [1]." and thinking
    assert len(sleeps) == 1


@pytest.mark.parametrize("how", ["error event", "connection cut"])
def test_a_failure_mid_stream_keeps_what_was_streamed(tmp_path: Path, fake_openai: FakeOpenAI, how: str) -> None:
    if how == "error event":
        fake_openai.chat_error_after = 3  # vLLM sends {"error": {..., "code": 500}} inside the stream
    else:
        fake_openai.chat_drop_after = 3
    chat, sleeps = _chat(tmp_path, fake_openai)
    deltas: list[Any] = []
    with pytest.raises(GenerationError) as caught:
        for delta in chat.stream(SOURCES):
            deltas.append(delta)
    assert _split(deltas)[1] == "Every employee receives"  # three pieces arrived before it broke
    assert ("illegal memory access" if how == "error event" else "was lost") in str(caught.value)
    assert sleeps == []  # never retried after text streamed: it would repeat


def test_context_length_comes_from_the_setting_then_the_server_then_8192(tmp_path: Path,
                                                                          fake_openai: FakeOpenAI) -> None:
    assert _chat(tmp_path, fake_openai)[0].context_length() == MAX_MODEL_LEN  # vLLM's max_model_len
    assert _chat(tmp_path, fake_openai, chat_context_length=4096)[0].context_length() == 4096
    fake_openai.list_models = False
    assert _chat(tmp_path, fake_openai)[0].context_length() == 8192


def test_a_reply_that_is_not_streamed_is_read_whole(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.streaming = False
    chat, _ = _chat(tmp_path, fake_openai)
    thinking, answer = _split(list(chat.stream(SOURCES)))
    assert answer == "Every employee receives 30 days of paid leave each year [1]." and "Source 1" in thinking


def test_base_urls_and_backends_are_checked() -> None:
    with pytest.raises(ConfigError, match="RAG_CHAT_BACKEND=openai needs RAG_CHAT_BASE_URL"):
        Settings.from_env({"RAG_CHAT_BACKEND": "openai"})
    with pytest.raises(ConfigError, match="RAG_EMBED_BASE_URL must not contain a user name or password"):
        Settings.from_env({"RAG_EMBED_BASE_URL": "https://me:sk-secret@api.example.com/v1"})
    with pytest.raises(ConfigError, match="RAG_RERANK_URL"):
        Settings.from_env({"RAG_RERANK_URL": "api.example.com"})
    s = Settings.from_env({"RAG_EMBED_BACKEND": "openai", "RAG_EMBED_BASE_URL": "http://gpu:8000/v1/"})
    assert s.embed_base_url == "http://gpu:8000/v1"


def test_backends_resolve_openai_and_say_where_each_model_runs(tmp_path: Path, fake_openai: FakeOpenAI,
                                                               fake_ollama: Any) -> None:
    both = resolve_backends(_settings(tmp_path, fake_openai))
    assert (both.embed, both.chat, both.embed_model, both.chat_model) == ("openai", "openai", EMBED_MODEL,
                                                                          CHAT_MODEL)
    assert both.summary == f"OpenAI-compatible server at {fake_openai.base_url}"
    apart = resolve_backends(_settings(tmp_path, fake_openai, chat_base_url="http://gpu-box:8002/v1"))
    assert apart.summary == f"OpenAI-compatible servers (embeddings at {fake_openai.base_url}, answers at " \
                            "http://gpu-box:8002/v1)"
    mixed = resolve_backends(_settings(tmp_path, fake_openai, chat_backend=None, chat_model="qwen3:8b",
                                       ollama_host=fake_ollama.url))
    assert mixed.chat == "ollama" and mixed.chat_model == "qwen3:8b"
    assert mixed.summary == f"embeddings by OpenAI-compatible server at {fake_openai.base_url}, answers by Ollama at " \
                            f"{fake_ollama.url}"


# --- the whole app on OpenAI-compatible backends ---------------------------------------------------------------
def test_the_whole_app_runs_on_openai_compatible_servers_and_never_shows_the_key(
        tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from ui import render

    caplog.set_level(logging.DEBUG)
    # the status check asks /rerank every time
    monkeypatch.setattr("rag.models.providers.rerank_service.RECHECK_SECONDS", 0.0)
    fake_openai.api_key = KEY
    env = {"RAG_EMBED_BACKEND": "openai", "RAG_EMBED_BASE_URL": fake_openai.base_url, "RAG_EMBED_API_KEY": KEY,
           "RAG_EMBED_MODEL": EMBED_MODEL, "RAG_CHAT_BACKEND": "openai", "RAG_CHAT_BASE_URL": fake_openai.base_url,
           "RAG_CHAT_API_KEY": KEY, "RAG_CHAT_MODEL": CHAT_MODEL, "RAG_RERANK_BACKEND": "http",
           "RAG_RERANK_URL": fake_openai.base_url, "RAG_RERANK_API_KEY": KEY, "RAG_RERANK_MODEL": RERANK_MODEL,
           "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_CHUNK_TOKENS": "120", "RAG_CHUNK_OVERLAP": "20",
           "RAG_PARSE_WORKERS": "1", "OLLAMA_HOST": "http://127.0.0.1:9"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    files = [pf.text_pdf(tmp_path / "zephyr.pdf", ZEPHYR), pf.text_pdf(tmp_path / "acme.pdf", ACME)]

    # The CLI, as a user would run it: nothing but the environment changed.
    assert cli_main(["ingest", *map(str, files)]) == 0
    assert cli_main(["ask", "What dividend per share did the board approve?"]) == 0
    out = capsys.readouterr().out
    assert "3 cents" in out and "[1] acme.pdf, p. 3" in out
    assert cli_main(["settings"]) == 0
    listing = capsys.readouterr().out
    assert f"answers      {CHAT_MODEL} at {fake_openai.base_url}" in listing
    assert f"reranking    {RERANK_MODEL} at {fake_openai.base_url}/rerank" in listing

    # The engine the UI uses: the right page is cited, reranked by the /rerank service; every call carried the key.
    engine = Engine(Settings.from_env())
    try:
        events = list(engine.ask("How many days of paid vacation leave does an employee receive?"))
        answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
        sources = next(e for e in events if isinstance(e, Sources))
        assert "30 days" in answer and not [e for e in events if isinstance(e, Failure)]
        top = sources.cited[0].passage
        assert (top.file_name, top.page_start) == ("zephyr.pdf", 2) and 0 < top.score <= 1
        assert [e.stage for e in events if isinstance(e, Progress)] == ["retrieving", "reranking", "generating"]
        assert _calls(fake_openai, "/v1/rerank") and _calls(fake_openai, "/v1/embeddings")
        assert set(fake_openai.authorizations) == {f"Bearer {KEY}"}

        health = engine.health()
        assert health.ok, health.problems
        badge = render.status_html(health)
        assert f"reranking by {RERANK_MODEL} at {fake_openai.base_url}/rerank" in badge
        assert CHAT_MODEL in badge and EMBED_MODEL in badge

        # A wrong key: every message names the setting, none shows either key.
        fake_openai.api_key = "sk-the-right-one"
        problems = engine.health().problems
        assert any("refused the key in RAG_EMBED_API_KEY" in p for p in problems)
        assert any("RAG_CHAT_API_KEY" in p for p in problems) and any("RAG_RERANK_API_KEY" in p for p in problems)
        shown = " ".join(problems) + render.status_html(engine.health()) + repr(engine.settings)
        failed = list(engine.ask("How many days of paid vacation leave does an employee receive?"))
        shown += " ".join(str(getattr(e, "message", "")) for e in failed)
    finally:
        engine.close()
    assert isinstance(failed[-1], Failure) and "RAG_EMBED_API_KEY" in failed[-1].message
    assert KEY not in shown and "sk-the-right-one" not in shown
    assert KEY not in caplog.text and KEY not in capsys.readouterr().err
