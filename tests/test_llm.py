"""Chat backends: Ollama over real HTTP (stand-in server) and in-process transformers (tiny random Qwen3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rag.core.config import Settings
from rag.core.errors import BackendUnavailable, GenerationError, ModelNotFound
from rag.core.events import AnswerDelta, ThinkingDelta
from rag.models.chat import ThinkSplitter
from rag.models.factory import make_chat_model
from rag.models.providers.local_chat import TransformersChat
from rag.models.providers.ollama import OllamaChat
from tests.fake_ollama import CHAT_CONTEXT_LENGTH, FakeOllama

SOURCES_MESSAGE = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": '<sources>\n<source id="1" file="a.pdf" page="2">\nThe reactor core runs at 300 '
                                 "kelvin.\n</source>\n</sources>\n\nQuestion: What temperature does the reactor "
                                 "core run at?"},
]


def split(pieces: list[str], in_thinking: bool = False) -> tuple[str, str]:
    splitter = ThinkSplitter(in_thinking)
    deltas = [d for p in pieces for d in splitter.feed(p)] + splitter.close()
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    answer = "".join(d.text for d in deltas if isinstance(d, AnswerDelta))
    return thinking, answer


# --- splitting <think> out of a streamed reply --------------------------------------------------------------------
def test_think_block_is_split_out_even_when_tags_are_cut_across_pieces() -> None:
    text = "<think>\nThe user asks X.\n</think>\n\nThe answer is 42 [1]."
    for size in (1, 2, 3, 5, 7, len(text)):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        thinking, answer = split(pieces)
        assert thinking.strip() == "The user asks X."
        assert answer == "The answer is 42 [1]."


def test_reply_without_think_block_is_all_answer() -> None:
    assert split(["Plain ", "answer <", "b>not a tag</b>"]) == ("", "Plain answer <b>not a tag</b>")


def test_think_tag_inside_the_answer_is_text() -> None:
    assert split(["Use the <think> tag."]) == ("", "Use the <think> tag.")


def test_prompt_that_opened_the_think_block_starts_in_thinking() -> None:
    thinking, answer = split(["reasoning here</th", "ink>\n\nDone."], in_thinking=True)
    assert (thinking, answer) == ("reasoning here", "Done.")


def test_unfinished_thinking_stays_thinking() -> None:
    assert split(["<think>still going"]) == ("still going", "")


# --- Ollama ---------------------------------------------------------------------------------------------------------
def test_ollama_streams_thinking_then_answer(settings: Settings, fake_ollama: FakeOllama) -> None:
    chat = OllamaChat(settings)
    deltas = list(chat.stream(SOURCES_MESSAGE, think=True, num_ctx=4096, max_tokens=300))
    kinds = [type(d) for d in deltas]
    assert ThinkingDelta in kinds and AnswerDelta in kinds
    assert kinds.index(AnswerDelta) > max(i for i, k in enumerate(kinds) if k is ThinkingDelta)
    answer = "".join(d.text for d in deltas if isinstance(d, AnswerDelta))
    assert "300 kelvin" in answer and answer.endswith("[1].")
    body = [b for p, b in fake_ollama.requests if p == "/api/chat"][-1]
    assert body["think"] is True and body["stream"] is True
    assert body["options"]["num_ctx"] == 4096 and body["options"]["num_predict"] == 300


def test_ollama_without_thinking_sends_think_false(settings: Settings, fake_ollama: FakeOllama) -> None:
    deltas = list(OllamaChat(settings).stream(SOURCES_MESSAGE, think=False))
    assert deltas and all(isinstance(d, AnswerDelta) for d in deltas)
    assert [b for p, b in fake_ollama.requests if p == "/api/chat"][-1]["think"] is False


def test_model_that_cannot_think_is_retried_without(settings: Settings, fake_ollama: FakeOllama) -> None:
    fake_ollama.no_think_models = {"qwen3:8b"}
    deltas = list(OllamaChat(settings).stream(SOURCES_MESSAGE, think=True))
    assert "".join(d.text for d in deltas).endswith("[1].")
    thinks = [b["think"] for p, b in fake_ollama.requests if p == "/api/chat"]
    assert thinks == [True, False]


def test_complete_is_a_non_thinking_call(settings: Settings, fake_ollama: FakeOllama) -> None:
    text = OllamaChat(settings).complete([{"role": "user", "content": "hello there"}], max_tokens=50)
    assert text == "You said: hello there"
    body = [b for p, b in fake_ollama.requests if p == "/api/chat"][-1]
    assert body["think"] is False and body["stream"] is False and body["options"]["num_predict"] == 50


def test_context_length_comes_from_the_server(settings: Settings, fake_ollama: FakeOllama) -> None:
    assert OllamaChat(settings).context_length() == CHAT_CONTEXT_LENGTH


def test_missing_chat_model_says_ollama_pull(settings: Settings, fake_ollama: FakeOllama) -> None:
    chat = OllamaChat(settings.with_(chat_model="qwen3:32b"))
    with pytest.raises(ModelNotFound, match=r"ollama pull qwen3:32b"):
        list(chat.stream(SOURCES_MESSAGE))
    with pytest.raises(ModelNotFound, match=r"ollama pull qwen3:32b"):
        chat.check()


def test_ollama_down_says_ollama_serve(settings: Settings, fake_ollama: FakeOllama) -> None:
    chat = OllamaChat(settings)
    fake_ollama.stop()
    with pytest.raises(BackendUnavailable, match=r"ollama serve") as err:
        list(chat.stream(SOURCES_MESSAGE))
    assert fake_ollama.url in str(err.value)
    with pytest.raises(BackendUnavailable):
        chat.complete(SOURCES_MESSAGE)
    with pytest.raises(BackendUnavailable):
        chat.check()


def test_mid_stream_error_keeps_what_was_streamed(settings: Settings, fake_ollama: FakeOllama) -> None:
    fake_ollama.chat_error_after = 3
    received = []
    with pytest.raises(GenerationError):
        for delta in OllamaChat(settings).stream(SOURCES_MESSAGE):
            received.append(delta)
    assert sum(isinstance(d, AnswerDelta) for d in received) == 3


def test_settings_choose_the_backend(settings: Settings) -> None:
    assert isinstance(make_chat_model(settings), OllamaChat)
    assert isinstance(make_chat_model(settings.with_(chat_backend="transformers")), TransformersChat)


# --- in-process transformers ----------------------------------------------------------------------------------------
def test_transformers_chat_streams_from_the_chat_template(tiny_qwen3_dir: Path) -> None:
    torch.manual_seed(0)  # sampling from random weights: seeded so the run is repeatable
    chat = TransformersChat(str(tiny_qwen3_dir), device="cpu", dtype="float32")
    prompt = chat.prompt(SOURCES_MESSAGE, think=False)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<think>\n\n</think>\n\n")
    assert not chat.prompt(SOURCES_MESSAGE, think=True).endswith("</think>\n\n")
    deltas = list(chat.stream(SOURCES_MESSAGE, think=False, max_tokens=12))
    assert deltas, "the tiny model generated nothing"
    assert all(isinstance(d, (AnswerDelta, ThinkingDelta)) and d.text for d in deltas)
    assert chat.count_tokens("yes no") == 2
    assert chat.context_length() == 2048


def test_transformers_chat_stops_when_the_consumer_stops(tiny_qwen3_dir: Path) -> None:
    torch.manual_seed(0)
    chat = TransformersChat(str(tiny_qwen3_dir), device="cpu", dtype="float32")
    stream = chat.stream(SOURCES_MESSAGE, think=True, max_tokens=2000)
    first = next(stream)
    assert first.text
    stream.close()  # sets the stop event and joins the generation thread
    assert chat._generate_lock.acquire(timeout=10), "generation kept running after the stream was closed"
    chat._generate_lock.release()


def test_missing_local_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="RAG_CHAT_MODEL"):
        TransformersChat(str(tmp_path / "nowhere")).check()
