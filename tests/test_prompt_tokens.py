"""Token counts of a prompt: added up from counts kept per passage (from ingestion, or the first time a prompt
quotes it), with the same result as counting the whole prompt."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

import numpy as np
import pytest

import rag.text.tokencount as tokencount
from rag.answering.prompts import SYSTEM, _PromptSizes, build_messages, user_turn
from rag.core.config import Settings
from rag.core.records import Chunk, DocumentInfo, Passage
from rag.search.store import Store
from rag.text.tokencount import counted, estimate, estimate_tokens

TEXTS = {
    "en": ("The company reported revenue of $4,512 million in fiscal 2018, up 7% from the prior year. Operating "
           "margin improved to 21.3%, driven by pricing & cost controls <see note 4>. ",
           "What was the revenue in 2018?"),
    "de": ("Das Unternehmen meldete für das Geschäftsjahr 2018 einen Umsatz von 4.512 Millionen Euro, sieben "
           "Prozent mehr als im Vorjahr. Die Betriebsmarge stieg auf 21,3 Prozent. ",
           "Wie hoch war der Umsatz im Jahr 2018?"),
    "zh": ("公司报告2018财年收入为45.12亿美元，比上年增长7%。由于定价和成本控制，营业利润率提高到21.3%。",
           "2018年的收入是多少？"),
    "ru": ("Компания сообщила о выручке в размере 4512 миллионов долларов в 2018 финансовом году, что на 7% "
           "больше, чем годом ранее. ", "Какой была выручка в 2018 году?"),
    "ar": ("أعلنت الشركة عن إيرادات بلغت 4512 مليون دولار في السنة المالية 2018، بزيادة 7٪ عن العام السابق. ",
           "كم كانت الإيرادات في عام 2018؟"),
}
# How a chunk's text may start and end: the pieces a prompt is cut into must still add up.
STARTS = ["", "\n", "\r\n", "  ", "(a) ", "<b>", "2018 ", "&"]
ENDS = ["", ".", " ", "\n", "  ", "<", ")", "7", "\n\n"]


def _passages(language: str, seed: int) -> list[Passage]:
    rng = np.random.default_rng(seed)
    text, _ = TEXTS[language]
    out = []
    for i in range(int(rng.integers(1, 9))):
        body = (text * 8)[: int(rng.integers(150, 900))]
        body = STARTS[int(rng.integers(len(STARTS)))] + body + ENDS[int(rng.integers(len(ENDS)))]
        out.append(Passage(f"d:{i}", "d", f"R&D report {i}.pdf", body, i + 1, i + 1 + i % 2, 0, len(body)))
    return out


@pytest.fixture(autouse=True)
def _forget() -> None:
    tokencount.forget()  # each test starts with nothing counted


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_a_prompt_counts_as_the_sum_of_its_passages_counted_once(language: str) -> None:
    question = TEXTS[language][1]
    for seed in range(25):
        passages = _passages(language, seed)
        if any(tokencount.language_of(user_turn(question, passages[:n])) != counted(passages[0].text)[0]
               for n in range(1, len(passages) + 1)):
            continue  # the whole turn reads as another language than its passages: counted per passage instead
        sizes = _PromptSizes(question, passages)
        for n in range(len(passages) + 1):
            assert sizes.user_turn(n) == estimate_tokens(user_turn(question, passages[:n])), (seed, n)


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_build_messages_keeps_what_counting_the_whole_prompt_keeps(language: str) -> None:
    question = TEXTS[language][1]
    history = [{"role": "user", "content": "Earlier question about 2017?"},
               {"role": "assistant", "content": "The report says revenue was 4,200 million [1]."}]
    passages = _passages(language, 3)[:1] + _passages(language, 5)
    whole = sum(estimate_tokens(m) + 4 for m in (SYSTEM, *(h["content"] for h in history),
                                                 user_turn(question, passages)))
    for budget in range(whole - 2000, whole + 3, 37):
        fast = build_messages(question, passages, history, budget, estimate_tokens)
        slow = build_messages(question, passages, history, budget, lambda text: estimate_tokens(text))
        assert fast == slow, budget


def test_a_passage_in_another_language_is_counted_in_its_own() -> None:
    english, german = _passages("en", 1)[:1], _passages("de", 2)[:1]
    question = TEXTS["en"][1]
    text = escape(german[0].text, quote=False) + "\n"
    sizes = _PromptSizes(question, english + german)
    assert sizes.counts[1] == ("de", pytest.approx(estimate(text, "de")))
    whole = user_turn(question, english + german)
    assert tokencount.language_of(whole) == "en"  # counting the whole turn, German would count as English
    assert sizes.user_turn(2) - estimate_tokens(whole) == pytest.approx(estimate(text, "de") - estimate(text, "en"),
                                                                        abs=1)


def test_a_passage_is_counted_once_then_added_up(monkeypatch: pytest.MonkeyPatch) -> None:
    passages = _passages("en", 4)
    expected = _PromptSizes("How much?", passages).user_turn(len(passages))
    calls: list[str] = []
    guess = tokencount.language_of
    monkeypatch.setattr(tokencount, "language_of", lambda text: calls.append(text) or guess(text))
    assert _PromptSizes("How much?", passages).user_turn(len(passages)) == expected
    assert calls == []


def _store(tmp_path: Path, texts: list[str]) -> Store:
    store = Store(Settings.from_env({}, data_dir=tmp_path), "test-4")
    info = DocumentInfo(doc_id="doc", file_name="doc.pdf", title="", pages=len(texts), chunks=len(texts),
                        status="indexing", added_at=time.time())
    store.begin(info)
    store.add_chunks("doc", "doc.pdf", "", [Chunk(i, t, i + 1, i + 1, 0, len(t)) for i, t in enumerate(texts)],
                     np.eye(len(texts), 4).tolist())
    store.commit(info)
    return store


def test_the_store_keeps_each_chunks_count_from_ingestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [TEXTS[code][0] * 3 for code in ("en", "de", "zh")]
    store = _store(tmp_path, texts)
    expected = {t: tokencount.measure(t) for t in texts}
    tokencount.forget()  # as after a restart
    monkeypatch.setattr(tokencount, "measure", lambda text: pytest.fail("counted again: " + text[:30]))
    found = store.get_passages([f"doc:{i}" for i in range(3)])
    assert {p.text: counted(p.text) for p in found.values()} == expected
    assert [counted(t)[0] for t in texts] == ["en", "de", "zh"]


def test_chunks_of_an_older_index_are_counted_once_when_quoted(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [TEXTS["en"][0], TEXTS["ru"][0]]
    store = _store(tmp_path, texts)
    store.chunks.update(ids=["doc:0", "doc:1"], metadatas=[{"tokens": None, "language": None}] * 2)
    store._passages_path("doc").unlink()  # nor had it passage files: its passages come from Chroma
    assert all("tokens" not in m for m in store.chunks.get(ids=["doc:0"], include=["metadatas"])["metadatas"])
    tokencount.forget()
    calls: list[str] = []
    measure = tokencount.measure
    monkeypatch.setattr(tokencount, "measure", lambda text: calls.append(text) or measure(text))
    passages = list(store.get_passages(["doc:0", "doc:1"]).values())
    first = _PromptSizes("Revenue?", passages).user_turn(2)
    assert _PromptSizes("Revenue?", passages).user_turn(2) == first
    assert sorted(calls) == sorted(texts)  # each text once, then kept
    assert first == estimate_tokens(user_turn("Revenue?", passages)) or tokencount.language_of(
        user_turn("Revenue?", passages)) not in ("en", "ru")


@pytest.mark.parametrize("language", sorted(TEXTS))
@pytest.mark.parametrize("joint", ["", " ", "\n…\n", "\n\n", ". "])
def test_a_page_whose_chunks_were_joined_is_counted_from_its_first_chunk(language: str, joint: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    text = TEXTS[language][0] * 4
    first, second = text[:500], text[380:900]  # chunks overlap; the page's passage stitches them
    counted(first)
    monkeypatch.setattr(tokencount, "language_of", lambda text: pytest.fail("guessed again: " + text[:30]))
    for joined in (first + second[120:], first + joint + second):
        found_language, tokens = counted(joined)
        assert found_language == counted(first)[0]
        assert tokens == pytest.approx(estimate(joined, found_language), abs=1e-6)
