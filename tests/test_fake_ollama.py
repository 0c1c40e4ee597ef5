"""The stand-in Ollama server speaks the protocol the real `ollama` client expects."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.fake_ollama import NO_ANSWER, RERANK_MODEL, VERSION, FakeOllama, default_responder, fake_embed

EMBEDDER = "qwen3-embedding:0.6b"
CHAT = "qwen3:8b"
INSTRUCTION = "Given a question, retrieve passages from the user's PDFs that answer it"

SOURCES_PROMPT = """<sources>
<source id="1" file="pets.pdf" page="1">
Cats are small animals. They sleep most of the day.
</source>
<source id="2" file="report.pdf" page="3">
Costs stayed flat last year. The company's revenue grew by 12 percent in 2023,
driven by exports. Headcount rose slightly.
</source>
</sources>

Question: How much did revenue grow in 2023?"""
EXPECTED_ANSWER = "The company's revenue grew by 12 percent in 2023, driven by exports [2]."


@pytest.fixture()
def server() -> Iterator[FakeOllama]:
    """A fresh stand-in Ollama for one test."""
    with FakeOllama() as fake:
        yield fake


@pytest.fixture()
def client(server: FakeOllama) -> ollama.Client:
    """The real ollama client pointed at the stand-in."""
    return ollama.Client(host=server.url)


def _norm(vec: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vec))


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (_norm(a) * _norm(b))


def _ask(question_prompt: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer from the sources and cite them as [n]."},
        {"role": "user", "content": question_prompt},
    ]


# Embeddings ---------------------------------------------------------------------------------------


def test_embed_returns_one_unit_vector_per_input(client: ollama.Client) -> None:
    texts = ["Revenue grew in 2023.", "Cats sleep a lot.", ""]
    response = client.embed(model=EMBEDDER, input=texts)

    assert response.model == EMBEDDER
    assert len(response.embeddings) == 3
    assert all(len(vec) == 256 for vec in response.embeddings)
    assert all(math.isclose(_norm(vec), 1.0, rel_tol=1e-9) for vec in response.embeddings)
    assert list(response.embeddings[2]) == [1.0] + [0.0] * 255  # no words: the fixed unit vector
    assert list(response.embeddings[0]) == fake_embed(texts[0], 256)


def test_dimensions_truncates_and_renormalises_like_matryoshka(client: ollama.Client) -> None:
    full = client.embed(model=EMBEDDER, input="quarterly revenue by region").embeddings[0]
    short = client.embed(model=EMBEDDER, input="quarterly revenue by region", dimensions=64).embeddings[0]

    assert len(short) == 64
    assert math.isclose(_norm(short), 1.0, rel_tol=1e-9)
    head_norm = _norm(list(full[:64]))
    assert all(math.isclose(s, f / head_norm, abs_tol=1e-12) for s, f in zip(short, full[:64], strict=True))
    # Like Ollama, a size at or above the model's is ignored, not an error.
    assert len(client.embed(model=EMBEDDER, input="x", dimensions=4096).embeddings[0]) == 256


def test_query_instruction_is_ignored(client: ollama.Client) -> None:
    query = "how much did revenue grow in 2023"
    with_instruction = f"Instruct: {INSTRUCTION}\nQuery:{query}"
    vectors = client.embed(model=EMBEDDER, input=[with_instruction, query]).embeddings

    assert list(vectors[0]) == list(vectors[1])
    # Only the exact Qwen3 shape is recognised: other text containing "Instruct" is embedded as is.
    assert fake_embed(f"Instruct: {INSTRUCTION} {query}", 256) != fake_embed(query, 256)


def test_related_texts_score_higher_than_unrelated(client: ollama.Client) -> None:
    question = f"Instruct: {INSTRUCTION}\nQuery:How much did revenue grow in 2023?"
    answer = "The company's revenue grew by 12 percent in 2023, driven by exports."
    unrelated = "Cats are small animals that sleep most of the day."
    q, a, u = client.embed(model=EMBEDDER, input=[question, answer, unrelated]).embeddings

    assert _cosine(q, a) > 0.15
    assert _cosine(q, a) > _cosine(q, u) + 0.1


def test_missing_model_is_404_with_ollamas_wording(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as embed_error:
        client.embed(model="nomic-embed-text", input="hello")
    assert embed_error.value.status_code == 404
    assert embed_error.value.error == 'model "nomic-embed-text" not found, try pulling it first'

    with pytest.raises(ollama.ResponseError) as chat_error:
        client.chat(model="llama3:70b", messages=_ask("hi"))
    assert chat_error.value.status_code == 404
    assert chat_error.value.error == "model 'llama3:70b' not found"

    # Streaming: the error status arrives before any line, raised on first iteration.
    stream = client.chat(model="llama3:70b", messages=_ask("hi"), stream=True)
    with pytest.raises(ollama.ResponseError) as stream_error:
        next(iter(stream))
    assert stream_error.value.status_code == 404

    with pytest.raises(ollama.ResponseError) as show_error:
        client.show("llama3:70b")
    assert show_error.value.status_code == 404


def test_models_are_used_only_for_what_they_can_do(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as embed_error:
        client.embed(model=CHAT, input="hello")
    assert embed_error.value.status_code == 501
    assert embed_error.value.error == "this model does not support embeddings"

    with pytest.raises(ollama.ResponseError) as chat_error:
        client.chat(model=EMBEDDER, messages=_ask("hi"))
    assert chat_error.value.status_code == 400
    assert chat_error.value.error == f'"{EMBEDDER}" does not support chat'


# Model listing --------------------------------------------------------------------------------------


def test_tags_and_show_describe_the_models(client: ollama.Client) -> None:
    listed = {m.model for m in client.list().models}
    assert listed == {EMBEDDER, "qwen3:8b", "qwen3:4b", RERANK_MODEL}

    embedder = client.show(EMBEDDER)
    assert embedder.capabilities == ["embedding"]
    assert embedder.modelinfo is not None
    assert embedder.modelinfo["qwen3.embedding_length"] == 256

    chat = client.show(CHAT)
    assert chat.capabilities is not None
    assert {"completion", "thinking"} <= set(chat.capabilities)
    assert chat.modelinfo is not None
    assert chat.modelinfo["qwen3.context_length"] == 40960


def test_custom_models_and_plain_http_endpoints() -> None:
    with FakeOllama(embed_models={"tiny-embed": 32}, chat_models={"tiny-chat"}, rerank_models=set()) as fake:
        client = ollama.Client(host=fake.url)
        assert {m.model for m in client.list().models} == {"tiny-embed", "tiny-chat"}
        assert len(client.embed(model="tiny-embed", input="x").embeddings[0]) == 32

        assert httpx.get(fake.url + "/").text == "Ollama is running"
        assert httpx.get(fake.url + "/api/version").json() == {"version": VERSION}
        assert httpx.post(fake.url + "/api/generate", json={"model": "qwen3:8b"}).status_code == 404


# Chat ---------------------------------------------------------------------------------------------


def test_chat_streams_thinking_then_the_cited_answer(client: ollama.Client) -> None:
    chunks = list(client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT), stream=True))

    thinking_at = [i for i, c in enumerate(chunks) if c.message.thinking]
    content_at = [i for i, c in enumerate(chunks) if c.message.content]
    assert len(thinking_at) > 1 and len(content_at) > 1
    assert max(thinking_at) < min(content_at)
    assert "".join(c.message.thinking or "" for c in chunks) == (
        "The question asks about How much did revenue grow in 2023. Source 2 looks relevant."
    )
    assert "".join(c.message.content or "" for c in chunks) == EXPECTED_ANSWER
    assert [c.done for c in chunks].count(True) == 1
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    assert chunks[-1].eval_count is not None and chunks[-1].eval_count > 0


def test_chat_without_streaming_returns_one_message(client: ollama.Client) -> None:
    response = client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT), stream=False)

    assert response.done and response.done_reason == "stop"
    assert response.message.content == EXPECTED_ANSWER
    assert response.message.thinking is not None and "Source 2" in response.message.thinking


def test_think_false_gives_no_thinking(client: ollama.Client) -> None:
    chunks = list(client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT), stream=True, think=False))
    assert not any(c.message.thinking for c in chunks)
    assert "".join(c.message.content or "" for c in chunks) == EXPECTED_ANSWER

    response = client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT), think=False)
    assert response.message.thinking is None
    assert response.message.content == EXPECTED_ANSWER


def test_default_responder_admits_when_sources_do_not_answer() -> None:
    prompt = SOURCES_PROMPT.replace("How much did revenue grow in 2023?", "Who painted the Mona Lisa?")
    thinking, content = default_responder({"messages": _ask(prompt)})
    assert content == NO_ANSWER
    assert "Mona Lisa" in thinking


def test_default_responder_echoes_a_message_without_sources() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 300}, {"role": "assistant", "content": "ok"}]}
    thinking, content = default_responder(body)
    assert content == "You said: " + "x" * 200
    assert thinking == "Echoing the message."


def test_custom_responder_and_reset(server: FakeOllama, client: ollama.Client) -> None:
    server.responder = lambda body: ("hmm", f"{len(body['messages'])} messages")
    assert client.chat(model=CHAT, messages=_ask("hi")).message.content == "2 messages"

    server.reset()
    assert server.requests == []
    assert client.chat(model=CHAT, messages=_ask("hi")).message.content == "You said: hi"


# Failure switches ---------------------------------------------------------------------------------


def test_chat_error_after_raises_mid_stream(server: FakeOllama, client: ollama.Client) -> None:
    server.chat_error_after = 2
    received: list[str] = []
    with pytest.raises(ollama.ResponseError) as error:
        for chunk in client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT), stream=True):
            received.append(chunk.message.content or "")
    assert "".join(received) == "The company's"  # two content chunks got through first
    assert error.value.error == "an error was encountered while running the model: unexpected EOF"
    assert error.value.status_code == -1  # the HTTP status was 200; the client has no code to give

    with pytest.raises(ollama.ResponseError) as whole:
        client.chat(model=CHAT, messages=_ask(SOURCES_PROMPT))
    assert whole.value.status_code == 500


def test_fail_embed_after_simulates_ollama_dying_mid_ingest(server: FakeOllama, client: ollama.Client) -> None:
    server.fail_embed_after = 2
    client.embed(model=EMBEDDER, input=["a"])
    client.embed(model=EMBEDDER, input=["b"])
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as error:
            client.embed(model=EMBEDDER, input=["c"])
        assert error.value.status_code == 500

    server.fail_embed_after = None
    assert len(client.embed(model=EMBEDDER, input=["c"]).embeddings) == 1


def test_embed_delay_slows_each_call(server: FakeOllama, client: ollama.Client) -> None:
    server.embed_delay = 0.2
    started = time.perf_counter()
    client.embed(model=EMBEDDER, input=["a", "b"])
    assert time.perf_counter() - started >= 0.2


def test_stopped_server_refuses_connections_then_restarts_on_the_same_port(
    server: FakeOllama, client: ollama.Client
) -> None:
    url = server.url
    server.stop()
    assert not server.running

    # Non-streaming calls: the client turns httpx.ConnectError into the builtin ConnectionError.
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        client.embed(model=EMBEDDER, input="x")
    with pytest.raises(ConnectionError):
        client.chat(model=CHAT, messages=_ask("hi"))
    # Streaming calls: nothing happens until iteration, which raises httpx.ConnectError unwrapped.
    stream = client.chat(model=CHAT, messages=_ask("hi"), stream=True)
    with pytest.raises(httpx.ConnectError):
        next(iter(stream))

    server.start()
    assert server.url == url
    assert client.chat(model=CHAT, messages=_ask("hi")).message.content == "You said: hi"


def test_stop_during_a_request_drops_the_connection(server: FakeOllama, client: ollama.Client) -> None:
    server.embed_delay = 0.5
    caught: list[BaseException] = []

    def embed() -> None:
        try:
            client.embed(model=EMBEDDER, input="x")
        except (httpx.HTTPError, ollama.ResponseError, ConnectionError) as exc:  # checked below
            caught.append(exc)

    worker = threading.Thread(target=embed)
    worker.start()
    time.sleep(0.2)
    server.stop()
    worker.join(timeout=5)
    # A connection cut mid-request is not wrapped by the client either.
    assert len(caught) == 1 and isinstance(caught[0], httpx.RemoteProtocolError)


def test_requests_are_logged_with_their_bodies(server: FakeOllama, client: ollama.Client) -> None:
    client.embed(model=EMBEDDER, input=["a", "b"], dimensions=64, options={"num_ctx": 8192})
    client.chat(model=CHAT, messages=_ask("hi"), think=False, options={"num_ctx": 16384})

    paths = [path for path, _ in server.requests]
    assert paths == ["/api/embed", "/api/chat"]
    embed_body, chat_body = server.requests[0][1], server.requests[1][1]
    assert embed_body["input"] == ["a", "b"]
    assert embed_body["dimensions"] == 64
    assert embed_body["options"] == {"num_ctx": 8192}
    assert chat_body["think"] is False
    assert chat_body["stream"] is False
    assert chat_body["messages"][-1] == {"role": "user", "content": "hi"}
