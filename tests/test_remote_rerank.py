"""Remote rerankers through their real clients: a /rerank service (Jina/Cohere shape and TEI's) against
tests/fake_openai.py, and Qwen3-Reranker inside Ollama (/api/generate with log-probabilities) against
tests/fake_ollama.py. Both stand-ins are test doubles speaking real HTTP on 127.0.0.1; their relevance is the cosine of
hashed words, so a passage that shares the question's words must come first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.errors import BackendUnavailable, ModelNotFound
from rag.core.events import Progress, Sources
from rag.engine import Engine
from rag.models.budget import RerankBudget
from rag.models.factory import make_reranker
from rag.models.providers.ollama import OllamaReranker, yes_probability
from rag.models.providers.rerank_service import HttpReranker
from rag.models.reranker import document_part, format_prompt, query_part
from rag.text.tokencount import estimate_tokens
from tests import pdf_factory as pf
from tests.fake_ollama import RERANK_MODEL as OLLAMA_RERANKER
from tests.fake_ollama import FakeOllama, fake_relevance
from tests.fake_openai import RERANK_MODEL, FakeOpenAI

QUERY = "How many days of paid vacation leave does an employee receive?"
PASSAGES = ["Parking is free in the north garage for cyclists.",
            "Vacation policy: every employee receives 30 days of paid leave each year.",
            "The board approved a dividend of 3 cents per share.",
            "Employees receive a laptop on their first day.",
            "Solar panel output peaked in June."]


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "rerank_batch_size": 2}
    return Settings.from_env({}, **{**base, **overrides})


def _http(tmp_path: Path, fake: FakeOpenAI, url: str | None = None, **overrides: Any) -> HttpReranker:
    reranker = make_reranker(_settings(tmp_path, rerank_backend="http", rerank_url=url or fake.base_url,
                                       **overrides))
    assert isinstance(reranker, HttpReranker)
    return reranker


def _ollama(tmp_path: Path, fake: FakeOllama, **overrides: Any) -> OllamaReranker:
    reranker = make_reranker(_settings(tmp_path, rerank_backend="ollama", ollama_host=fake.url, **overrides))
    assert isinstance(reranker, OllamaReranker)
    return reranker


def _bodies(fake: Any, path: str) -> list[dict[str, Any]]:
    return [body for p, body in fake.requests if p == path]


# --- /rerank ----------------------------------------------------------------------------------------------------
def test_cohere_shape_scores_every_passage_in_order(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    scores = _http(tmp_path, fake_openai).score(QUERY, PASSAGES)
    assert scores == pytest.approx([fake_relevance(QUERY, p) for p in PASSAGES])  # input order, not the server's
    assert max(range(5), key=scores.__getitem__) == 1 and all(0 < s < 1 for s in scores)
    bodies = _bodies(fake_openai, "/v1/rerank")
    assert sorted(len(b["documents"]) for b in bodies) == [1, 2, 2]  # RAG_RERANK_BATCH_SIZE a request
    assert all(b["model"] == RERANK_MODEL and b["query"] == QUERY and b["top_n"] == len(b["documents"])
               for b in bodies)


def test_auto_switches_to_tei_for_good(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.rerank_api = "tei"
    reranker = _http(tmp_path, fake_openai, url=fake_openai.url)  # TEI's base URL has no /v1
    assert reranker.score(QUERY, PASSAGES) == pytest.approx([fake_relevance(QUERY, p) for p in PASSAGES])
    first = _bodies(fake_openai, "/rerank")
    asked_cohere = [b for b in first if "documents" in b]
    assert 1 <= len(asked_cohere) <= 3  # the batches already in flight asked the Cohere way once each
    assert sum("texts" in b and b["truncate"] is True for b in first) == 3
    reranker.score(QUERY, PASSAGES[:2])
    assert ["texts" in b for b in _bodies(fake_openai, "/rerank")[len(first):]] == [True]  # TEI straight away


def test_tei_can_be_chosen_outright(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.rerank_api = "tei"
    _http(tmp_path, fake_openai, url=fake_openai.url, rerank_api="tei").score(QUERY, PASSAGES)
    assert all("texts" in b for b in _bodies(fake_openai, "/rerank"))


def test_raw_logits_are_mapped_to_0_1_with_a_sigmoid(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.rerank_logits = True
    scores = _http(tmp_path, fake_openai).score(QUERY, PASSAGES)
    assert scores == pytest.approx([fake_relevance(QUERY, p) for p in PASSAGES])
    assert all(0 < s < 1 for s in scores)


def test_the_qwen3_prompt_can_be_sent_for_a_server_without_the_template(tmp_path: Path,
                                                                        fake_openai: FakeOpenAI) -> None:
    reranker = _http(tmp_path, fake_openai, rerank_prompt="qwen3")
    scores = reranker.score(QUERY, PASSAGES[:2])
    body = _bodies(fake_openai, "/v1/rerank")[0]
    assert body["query"] == query_part(reranker.instruction, QUERY)
    assert body["documents"] == [document_part(p) for p in PASSAGES[:2]]
    assert body["query"] + body["documents"][1] == format_prompt(reranker.instruction, QUERY, PASSAGES[1])
    assert scores[1] > scores[0]


def test_passages_are_cut_to_the_token_cap(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    long = "revenue " * 1000
    _http(tmp_path, fake_openai, rerank_max_tokens=50, rerank_min_tokens=32).score(QUERY, [long])
    sent = _bodies(fake_openai, "/v1/rerank")[0]["documents"][0]
    assert long.startswith(sent) and 45 <= estimate_tokens(sent) <= 50


def test_a_rerank_service_that_fails_says_which_setting_to_fix(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.api_key = "sk-service"
    reranker = _http(tmp_path, fake_openai)
    with pytest.raises(BackendUnavailable, match="asks for a key.*RAG_RERANK_API_KEY"):
        reranker.check()
    fake_openai.api_key = None
    unknown = _http(tmp_path, fake_openai, rerank_model="jina-reranker-v2")
    with pytest.raises(ModelNotFound, match="no model 'jina-reranker-v2'.*RAG_RERANK_MODEL"):
        unknown.score(QUERY, PASSAGES)


def test_the_app_answers_without_reranking_when_the_service_is_down(tmp_path: Path, fake_ollama: FakeOllama,
                                                                    closed_port: int) -> None:
    settings = Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path / "data", chunk_tokens=120,
                                 chunk_overlap=20, parse_workers=1, rerank_backend="http", http_retries=0,
                                 rerank_url=f"http://127.0.0.1:{closed_port}/v1")
    engine = Engine(settings)
    try:
        list(engine.ingest([pf.text_pdf(tmp_path / "handbook.pdf", ["Welcome.", PASSAGES[1], PASSAGES[0]])]))
        events = list(engine.ask(QUERY))
        sources = next(e for e in events if isinstance(e, Sources))
        assert sources.cited and sources.cited[0].passage.page_start == 2
        assert [e.stage for e in events if isinstance(e, Progress)] == ["retrieving", "reranking", "generating"]
        problems = engine.health().problems
        assert any(f"Can't reach the rerank server at http://127.0.0.1:{closed_port}/v1" in p and
                   "RAG_RERANK_URL" in p for p in problems)
    finally:
        engine.close()


@pytest.mark.parametrize("backend", ["http", "ollama"])
def test_the_time_budget_learns_a_remote_rerankers_speed_from_its_calls(tmp_path: Path, fake_openai: FakeOpenAI,
                                                                         fake_ollama: FakeOllama,
                                                                         backend: str) -> None:
    reranker = _http(tmp_path, fake_openai) if backend == "http" else _ollama(tmp_path, fake_ollama)
    budget = RerankBudget(seconds=3.0, min_passages=2, min_tokens=32, max_tokens=384)
    first = budget.plan(reranker, QUERY, PASSAGES, breadth=4)
    assert first.expected_seconds is None and first.count == 2  # not timed yet: the least allowed
    scores = budget.score(reranker, QUERY, first)
    assert len(scores) == 2 and budget.throughput.calls == 1 and budget.throughput.tokens_per_second
    second = budget.plan(reranker, QUERY, PASSAGES, breadth=4)
    assert second.expected_seconds is not None and second.count == len(PASSAGES)  # a fast server: all of them


def test_the_app_times_a_remote_reranker_at_start_so_the_first_question_reads_every_candidate(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_ollama: FakeOllama) -> None:
    settings = Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path / "data", chunk_tokens=120,
                                 chunk_overlap=20, parse_workers=1, rerank_backend="http",
                                 rerank_url=fake_openai.base_url, rerank_min_passages=2, min_relevance=0)
    engine = Engine(settings)
    try:
        list(engine.ingest([pf.text_pdf(tmp_path / "handbook.pdf", PASSAGES)]))
        engine.warm_up(background=False)  # as the app and `rag ask` do before the first question
        assert len(_bodies(fake_openai, "/v1/rerank")) >= 1 and engine.rerank_budget.throughput.tokens_per_second
        assert engine.health().loading == []
        timing_calls = len(_bodies(fake_openai, "/v1/rerank"))
        events = list(engine.ask(QUERY))
        ranking = [e.detail for e in events if isinstance(e, Progress) and e.stage == "reranking"]
        assert ranking and ranking[-1].startswith(f"ranking {len(PASSAGES)} of {len(PASSAGES)} passages")
        sent = sum(len(b["documents"]) for b in _bodies(fake_openai, "/v1/rerank")[timing_calls:])
        assert sent == len(PASSAGES)  # untimed, the budget would have sent the least allowed: 2
        assert next(e for e in events if isinstance(e, Sources)).cited[0].passage.page_start == 2
        calls = len(_bodies(fake_openai, "/v1/rerank"))
        engine.warm_up(background=False)  # timed once: no further call
        assert len(_bodies(fake_openai, "/v1/rerank")) == calls
    finally:
        engine.close()


# --- inside Ollama ----------------------------------------------------------------------------------------------
def test_ollama_scores_the_official_prompt_by_yes_and_no_logprobs(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    reranker = _ollama(tmp_path, fake_ollama)
    scores = reranker.score(QUERY, PASSAGES)
    assert scores == pytest.approx([fake_relevance(QUERY, p) for p in PASSAGES], rel=1e-3)
    assert max(range(5), key=scores.__getitem__) == 1
    bodies = _bodies(fake_ollama, "/api/generate")
    assert sorted(b["prompt"] for b in bodies) == sorted(format_prompt(reranker.instruction, QUERY, p)
                                                         for p in PASSAGES)
    for body in bodies:
        assert body["model"] == OLLAMA_RERANKER and body["raw"] is True and body["logprobs"] is True
        assert body["top_logprobs"] >= 2 and body["options"]["num_predict"] == 1
        assert body["options"]["num_ctx"] >= 2048


def test_ollama_candidates_go_concurrently_up_to_the_setting(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.generate_gate = 3  # the first three wait for each other: only a concurrent client gets past
    _ollama(tmp_path, fake_ollama, rerank_concurrency=3).score(QUERY, PASSAGES + PASSAGES)
    assert fake_ollama.max_in_flight == 3


def test_an_ollama_too_old_for_logprobs_says_to_update(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.logprobs_supported = False  # it ignores the request, as Ollama before 0.12.11 does
    reranker = _ollama(tmp_path, fake_ollama)
    with pytest.raises(BackendUnavailable, match="does not return log-probabilities.*0.12.11.*RAG_RERANK_BACKEND"):
        reranker.score(QUERY, PASSAGES)
    fake_ollama.version = "0.11.10"
    with pytest.raises(BackendUnavailable, match=r"\(0\.11\.10\) does not return log-probabilities"):
        reranker.check()


def test_a_reranker_tag_not_pulled_says_how_to_pull_it(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.rerank_models = set()
    reranker = _ollama(tmp_path, fake_ollama)
    pull = f"`ollama pull {OLLAMA_RERANKER}`"
    with pytest.raises(ModelNotFound, match=pull):
        reranker.check()
    with pytest.raises(ModelNotFound, match=pull):
        reranker.score(QUERY, PASSAGES[:1])
    fake_ollama.rerank_models = {OLLAMA_RERANKER}
    reranker.check()


def test_yes_probability_is_the_softmax_of_yes_and_no() -> None:
    assert yes_probability([("yes", math.log(0.6)), ("no", math.log(0.3)), ("Yes", math.log(0.1))]) == \
        pytest.approx(2 / 3)
    assert yes_probability([("yes", -0.01), ("maybe", -5.0)]) > 0.999999  # "no" missing: very unlikely
    assert yes_probability([("no", -0.01), ("maybe", -5.0)]) < 1e-6
    assert yes_probability([("maybe", -0.1)]) == pytest.approx(0.5)


def test_the_badge_and_settings_say_where_the_reranker_runs(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    from ui import render

    engine = Engine(_settings(tmp_path, rerank_backend="ollama", ollama_host=fake_ollama.url, backend="ollama"))
    try:
        health = engine.health()
        assert health.ok, health.problems
        assert f"reranking by {OLLAMA_RERANKER} via Ollama at {fake_ollama.url}" in render.status_html(health)
        fake_ollama.rerank_models = set()
        assert any("ollama pull" in p for p in engine.health().problems)
    finally:
        engine.close()
