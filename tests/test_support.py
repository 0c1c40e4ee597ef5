"""The reranker as the claim check's support scorer (RAG_CLAIM_CHECK_RERANKER): each backend that builds the Qwen3
prompt asks with the support instruction for that call only; ``on`` lets its verdict decide; ``auto`` uses it only
when its measured speed keeps the check within a tenth of the answer's time; a failing reranker leaves the verdict
to the words, and the answer stands.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from rag.answering.claims import check_claims, support_pairs
from rag.answering.support import RerankerSupport, SupportOutOfTime, support_scorer
from rag.core.config import Settings
from rag.core.errors import ModelError
from rag.core.events import Claims, Failure
from rag.core.records import Passage
from rag.engine import Engine
from rag.models.budget import RerankBudget
from rag.models.factory import make_reranker
from rag.models.providers.ollama import OllamaReranker
from rag.models.providers.rerank_service import HttpReranker
from rag.models.reranker import SUPPORT_INSTRUCTION, format_prompt, query_part
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.fake_openai import FakeOpenAI

RETRIEVAL = "Given a question, judge whether the passage helps answer it"


class ScriptedReranker:
    """Test double: a reranker that builds the Qwen3 prompt itself (so it takes an instruction). Retrieval calls
    (no instruction) score the passages in the order given; support calls answer ``support(statement, passage)``,
    or raise with ``fail``. ``seconds_per_passage`` makes it slow. Every call is recorded."""

    takes_instruction = True
    describe = "scripted test double"

    def __init__(self, support: Callable[[str, str], float] = lambda s, p: 0.9, fail: bool = False,
                 seconds_per_passage: float = 0.0) -> None:
        self.instruction = RETRIEVAL
        self.support = support
        self.fail = fail
        self.seconds_per_passage = seconds_per_passage
        self.calls: list[tuple[str | None, str, list[str]]] = []

    def score(self, query: str, passages: Sequence[str], instruction: str | None = None) -> list[float]:
        self.calls.append((instruction, query, list(passages)))
        time.sleep(self.seconds_per_passage * len(passages))
        if instruction is None:
            return [0.9 - 0.01 * i for i in range(len(passages))]
        if self.fail:
            raise ModelError("the reranker went away")
        return [self.support(query, p) for p in passages]

    def support_calls(self) -> list[tuple[str | None, str, list[str]]]:
        return [c for c in self.calls if c[0] is not None]


def passage(n: int, text: str) -> Passage:
    return Passage(f"c{n}", "doc", "report.pdf", text, n, n, 0, len(text))


SALES = passage(1, "Net sales increased 3.5% to $32,765 million in 2018 compared with 2017, driven by organic growth.")
PEOPLE = passage(2, "The company employs about 93,000 people worldwide and sells products in 70 countries.")
PASSAGES = [SALES, PEOPLE]
WORDED = "The company employs people worldwide [2]."  # its words are in [2]: supported by the overlap
REWORDED = "The firm has a large staff across the globe [2]."  # no word in common: unsupported by the overlap


def budget(tokens_per_second: float | None = None) -> RerankBudget:
    b = RerankBudget(4.0)
    if tokens_per_second is not None:
        b.throughput.record(int(tokens_per_second), 1.0)
    return b


def only(answer: str, scorer: Any = None) -> Any:
    claims = check_claims(answer, PASSAGES, scorer).claims
    assert len(claims) == 1, claims
    return claims[0]


# --- the verdict ----------------------------------------------------------------------------------------------------
def test_on_asks_the_reranker_with_the_support_instruction_and_its_verdict_decides() -> None:
    assert only(WORDED).supported is True and only(REWORDED).supported is False  # the words alone
    says_no = ScriptedReranker(support=lambda s, p: 0.1)
    claim = only(WORDED, support_scorer("on", says_no, budget(), WORDED, PASSAGES, "", 1.0))
    assert claim.supported is False and "reranker" in claim.reason
    instruction, statement, sent = says_no.support_calls()[0]
    assert instruction == SUPPORT_INSTRUCTION and statement == WORDED and sent == [PEOPLE.text]
    says_yes = ScriptedReranker(support=lambda s, p: 0.9)
    assert only(REWORDED, support_scorer("on", says_yes, budget(), REWORDED, PASSAGES, "", 1.0)).supported is True
    assert says_yes.instruction == RETRIEVAL


def test_the_reranker_re_points_to_the_passage_it_finds_supports_the_statement() -> None:
    miscited = "The company employs people worldwide [1]."
    reranker = ScriptedReranker(support=lambda s, p: 0.9 if "people" in p else 0.1)
    claim = only(miscited, RerankerSupport(reranker, budget()))
    assert claim.supported == "re-pointed" and claim.citations == [2] and claim.cited == [1]
    assert [c[2] for c in reranker.support_calls()] == [[SALES.text], [PEOPLE.text]]  # cited first, then one more


def test_statements_with_figures_are_never_sent_to_the_reranker() -> None:
    answer = "Net sales increased 3.5% [1]. The company employs people worldwide [2]."
    assert support_pairs(answer, PASSAGES) == [(WORDED, [2])]
    reranker = ScriptedReranker()
    check_claims(answer, PASSAGES, RerankerSupport(reranker, budget()))
    assert [c[1] for c in reranker.support_calls()] == [WORDED]


# --- when it is used ------------------------------------------------------------------------------------------------
def test_auto_uses_the_reranker_only_when_its_measured_speed_fits_a_tenth_of_the_answer() -> None:
    reranker = ScriptedReranker()
    fast, slow = budget(tokens_per_second=1e6), budget(tokens_per_second=50)
    assert isinstance(support_scorer("auto", reranker, fast, WORDED, PASSAGES, "", elapsed=5.0), RerankerSupport)
    # ~100 tokens at 50 tokens/s is about 2 s: more than 10% of a 5 s answer, so the words judge
    assert support_scorer("auto", reranker, slow, WORDED, PASSAGES, "", elapsed=5.0) is None
    assert support_scorer("auto", reranker, budget(), WORDED, PASSAGES, "", elapsed=5.0) is None  # never timed
    assert support_scorer("auto", reranker, fast, "Net sales increased 3.5% [1].", PASSAGES, "", 5.0) is None
    assert support_scorer("off", reranker, fast, WORDED, PASSAGES, "", elapsed=5.0) is None
    assert reranker.calls == []


def test_a_call_that_would_run_past_the_allowance_is_not_made() -> None:
    reranker = ScriptedReranker()
    scorer = RerankerSupport(reranker, budget(tokens_per_second=50), seconds=0.1)
    with pytest.raises(SupportOutOfTime):
        scorer(WORDED, [PEOPLE.text])
    assert reranker.calls == []


# --- the backends: the support instruction for that call, the retrieval one untouched -------------------------
def _bodies(fake: Any, path: str) -> list[dict[str, Any]]:
    return [body for p, body in fake.requests if p == path]


def test_ollama_sends_the_support_instruction_for_that_call_only(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", rerank_backend="ollama", ollama_host=fake_ollama.url)
    reranker = make_reranker(settings)
    assert isinstance(reranker, OllamaReranker)
    assert support_scorer("on", reranker, budget(), WORDED, PASSAGES, "", 1.0) is not None
    RerankerSupport(reranker, budget())(WORDED, [PEOPLE.text])
    reranker.score("How many people?", [PEOPLE.text])
    support, retrieval = [b["prompt"] for b in _bodies(fake_ollama, "/api/generate")]
    assert support == format_prompt(SUPPORT_INSTRUCTION, WORDED, PEOPLE.text)
    assert retrieval == format_prompt(settings.rerank_instruction, "How many people?", PEOPLE.text)
    assert reranker.instruction == settings.rerank_instruction


def test_a_rerank_service_takes_the_instruction_only_with_the_qwen3_prompt(tmp_path: Path,
                                                                           fake_openai: FakeOpenAI) -> None:
    def http(prompt: str) -> HttpReranker:
        r = make_reranker(Settings.from_env({}, data_dir=tmp_path / "data", rerank_backend="http",
                                            rerank_url=fake_openai.base_url, rerank_prompt=prompt))
        assert isinstance(r, HttpReranker)
        return r

    qwen3 = http("qwen3")
    RerankerSupport(qwen3, budget())(WORDED, [PEOPLE.text])
    assert _bodies(fake_openai, "/v1/rerank")[0]["query"] == query_part(SUPPORT_INSTRUCTION, WORDED)
    qwen3.score("How many people?", [PEOPLE.text])
    assert _bodies(fake_openai, "/v1/rerank")[1]["query"] == query_part(qwen3.instruction, "How many people?")
    plain = http("plain")  # the server applies its own template, with its own task: never asked
    assert support_scorer("on", plain, budget(tokens_per_second=1e6), WORDED, PASSAGES, "", 1.0) is None
    with pytest.raises(ValueError):
        plain.score(WORDED, [PEOPLE.text], instruction=SUPPORT_INSTRUCTION)


def test_the_in_process_reranker_scores_with_the_support_instruction(tiny_qwen3_dir: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    from rag.models.providers.local_reranker import Qwen3Reranker

    def local(instruction: str = RETRIEVAL) -> Qwen3Reranker:
        return Qwen3Reranker(str(tiny_qwen3_dir), instruction=instruction, dtype="float32", device="cpu")

    texts = [PEOPLE.text, SALES.text]
    reranker = local()
    before = reranker.score(WORDED, texts)
    tokens = reranker.encode(WORDED, texts, SUPPORT_INSTRUCTION)
    prefix = reranker._state().tokenizer.decode(tokens.prefix)
    assert SUPPORT_INSTRUCTION in prefix and RETRIEVAL not in prefix
    support = reranker.score(WORDED, texts, instruction=SUPPORT_INSTRUCTION)
    # the same as a reranker made for that task, through the plain CrossEncoder path
    assert support == pytest.approx(local(SUPPORT_INSTRUCTION).score_uncached(WORDED, texts), abs=1e-5)
    assert support != pytest.approx(before, abs=1e-6)
    # and the retrieval task is untouched afterwards
    assert reranker.instruction == RETRIEVAL
    assert reranker.score(WORDED, texts) == pytest.approx(before, abs=1e-6)


# --- through the engine -------------------------------------------------------------------------------------------
ACME = ["Acme Corporation annual report for fiscal 2022. Letter from the chief executive.",
        "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates.",
        "The board approved a dividend of 3 cents per share in December 2022."]
DIVIDEND = "The board approved a dividend for shareholders"


def _dividend_answer(body: dict[str, Any]) -> tuple[str, str]:
    """A chat model (on the stand-in Ollama) that states the dividend, without its figure, citing its passage."""
    prompt = body["messages"][-1]["content"]
    n = next(m.group(1) for m in re.finditer(r'<source id="(\d+)"[^>]*>(.*?)</source>', prompt, re.DOTALL)
             if "dividend" in m.group(2))
    return "", f"{DIVIDEND} [{n}]."


def _ask(settings: Settings, tmp_path: Path, fake_ollama: FakeOllama, reranker: ScriptedReranker,
         mode: str) -> list[Any]:
    fake_ollama.responder = _dividend_answer
    engine = Engine(settings.with_(rerank=True, claim_check_reranker=mode), reranker=reranker)
    try:
        list(engine.ingest([pf.text_pdf(tmp_path / "acme.pdf", ACME)]))
        return list(engine.ask("Did the board approve a dividend?"))
    finally:
        engine.close()


def _claim(events: list[Any]) -> Any:
    assert not any(isinstance(e, Failure) for e in events)
    claims = next(e for e in events if isinstance(e, Claims))
    assert len(claims.claims) == 1
    return claims.claims[0]


def test_the_engine_lets_the_reranker_judge_when_on(settings: Settings, tmp_path: Path,
                                                    fake_ollama: FakeOllama) -> None:
    reranker = ScriptedReranker(support=lambda s, p: 0.05)
    claim = _claim(_ask(settings, tmp_path, fake_ollama, reranker, "on"))
    assert claim.supported is False and "reranker" in claim.reason  # the words alone would pass it
    assert reranker.support_calls() and all(c[1].startswith(DIVIDEND) for c in reranker.support_calls())
    assert all(c[1] == "Did the board approve a dividend?" for c in reranker.calls if c[0] is None)


def test_a_failing_reranker_leaves_the_verdict_to_the_words(settings: Settings, tmp_path: Path,
                                                            fake_ollama: FakeOllama) -> None:
    reranker = ScriptedReranker(fail=True)
    claim = _claim(_ask(settings, tmp_path, fake_ollama, reranker, "on"))
    assert reranker.support_calls() and claim.supported is True and claim.reason == ""


def test_auto_with_a_fast_reranker_uses_it(settings: Settings, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    reranker = ScriptedReranker(support=lambda s, p: 0.05)
    # the answer streams at a model's pace (as a real one does), so that a tenth of it leaves the instant
    # reranker room even when a loaded machine stretches one of its calls
    fake_ollama.chat_delay = 0.05
    assert _claim(_ask(settings, tmp_path, fake_ollama, reranker, "auto")).supported is False
    assert reranker.support_calls()


def test_auto_with_a_slow_reranker_leaves_it_to_the_words(settings: Settings, tmp_path: Path,
                                                          fake_ollama: FakeOllama) -> None:
    # reranking the question's passages takes most of the answer: judging a statement by two more would be far
    # over a tenth of it
    reranker = ScriptedReranker(support=lambda s, p: 0.05, seconds_per_passage=0.1)
    assert _claim(_ask(settings, tmp_path, fake_ollama, reranker, "auto")).supported is True
    assert reranker.calls and not reranker.support_calls()
