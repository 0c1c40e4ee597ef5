"""The reranking time budget: what the reranker reads per question follows its measured speed, never below the floor,
each passage cut to a token cap, and the user is told ("ranking 5 of 9 passages") while it runs.

Speeds are simulated: the test doubles below advance a fake clock by the tokens they are sent, so nothing here
depends on how fast this machine is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import pytest

from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.events import Progress, Sources
from rag.engine import Engine
from rag.models.budget import RerankBudget, Throughput, choose
from rag.models.reranker import cut_passages
from rag.text.tokencount import estimate_tokens
from tests import pdf_factory as pf

FLOOR = 5


class FakeClock:
    """Test double for ``time.perf_counter``: moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedReranker:
    """Test double for a reranker that reads ``rate`` tokens per second (on the fake clock) and scores by order."""

    def __init__(self, clock: FakeClock, rate: float) -> None:
        self.clock, self.rate = clock, rate
        self.seen: list[list[str]] = []

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        self.seen.append(list(passages))
        # Its own cost model: a prompt of ~60 tokens per call and ~15 around each passage, plus the passages.
        self.clock.now += (60 + sum(estimate_tokens(p) + 15 for p in passages)) / self.rate
        return [0.9 - 0.01 * i for i in range(len(passages))]


VOCABULARY = "tenant rent month notice clause return days after move out damage repair amount due paid bank".split()


def words(n: int, seed: int = 0) -> str:
    """A passage of ``n`` words of at most six letters (one estimated token each)."""
    return " ".join(VOCABULARY[(seed * 7 + i * i) % len(VOCABULARY)] for i in range(n))


# --- the rule -----------------------------------------------------------------------------------------------------
LENGTHS = [300] * 29
RULE = dict(prefix=60, pair=15, floor=FLOOR, min_cap=64, max_cap=384, breadth=12)


def test_all_candidates_at_full_length_when_they_fit() -> None:
    assert choose(LENGTHS, rate=1e6, seconds=3, **RULE) == (29, 384)


def test_no_limit_sends_everything() -> None:
    assert choose(LENGTHS, rate=None, seconds=0, **RULE) == (29, 384)
    assert choose(LENGTHS, rate=1.0, seconds=0, **RULE) == (29, 384)


def test_before_the_first_measurement_the_floor_at_the_shortest_cut() -> None:
    assert choose(LENGTHS, rate=None, seconds=3, **RULE) == (FLOOR, 64)
    assert choose([300] * 3, rate=None, seconds=3, **RULE) == (3, 64)  # fewer candidates than the floor: all


@pytest.mark.parametrize("rate", [5000, 2000, 1000, 500, 250, 100, 10, 1])
def test_slower_means_fewer_or_shorter_never_below_the_floor(rate: float) -> None:
    n, cap = choose(LENGTHS, rate=rate, seconds=3, **RULE)
    faster_n, faster_cap = choose(LENGTHS, rate=rate * 2, seconds=3, **RULE)
    assert FLOOR <= n <= 29 and 64 <= cap <= 384
    assert (n, cap) <= (faster_n, faster_cap)  # twice as fast never reads fewer passages, nor shorter ones
    cost = 60 + n * (min(300, cap) + 15)
    if (n, cap) != (FLOOR, 64):
        assert cost <= rate * 3  # within the budget unless the floor itself doesn't fit


def test_breadth_comes_before_length() -> None:
    # 3 s at 1000 tokens/s: 12 candidates fit at ~220 tokens each, not 29 at 384.
    n, cap = choose(LENGTHS, rate=1000, seconds=3, **RULE)
    assert n == 12 and 64 < cap < 384
    assert 60 + 12 * (cap + 15) <= 3000 < 60 + 12 * (cap + 1 + 15)  # the longest cap that fits


def test_once_the_breadth_fits_whole_more_follow_while_they_fit() -> None:
    lengths = [300] * 12 + [20] * 17
    # 4200 tokens: the 12 best whole (60 + 12 x 315 = 3840), then ten short ones (35 each).
    assert choose(lengths, rate=1400, seconds=3, **RULE) == (22, 384)


# --- learning the speed -------------------------------------------------------------------------------------------
def budget(clock: FakeClock, seconds: float = 3.0) -> RerankBudget:
    return RerankBudget(seconds, min_passages=FLOOR, min_tokens=64, max_tokens=384, clock=clock)


def run(b: RerankBudget, reranker: TimedReranker, passages: list[str], breadth: int = 12) -> tuple[Any, float]:
    plan = b.plan(reranker, "what does the lease say about the deposit?", passages, breadth=breadth)
    started = reranker.clock.now
    b.score(reranker, "what does the lease say about the deposit?", plan)
    return plan, reranker.clock.now - started


@pytest.mark.parametrize("rate", [20, 200, 2000])
def test_the_budget_learns_the_speed_and_keeps_to_it(rate: float) -> None:
    clock = FakeClock()
    b, reranker = budget(clock), TimedReranker(clock, rate)
    passages = [words(300, seed) for seed in range(29)]
    first, _ = run(b, reranker, passages)
    assert (first.count, first.token_cap) == (FLOOR, 64) and first.expected_seconds is None
    for _ in range(4):
        plan, took = run(b, reranker, passages)
        assert plan.count >= FLOOR and reranker.seen[-1] == plan.passages
        if (plan.count, plan.token_cap) != (FLOOR, 64):
            assert took <= 3.0 * 1.2 and plan.expected_seconds <= 3.0
    assert b.throughput.tokens_per_second == pytest.approx(rate, rel=0.3)


def test_slow_rerankers_read_fewer_passages_fast_ones_all() -> None:
    passages = [words(300, seed) for seed in range(29)]
    counts = {}
    for rate in (150, 100_000):
        clock = FakeClock()
        b, reranker = budget(clock), TimedReranker(clock, rate)
        for _ in range(3):
            plan, _ = run(b, reranker, passages)
        counts[rate] = (plan.count, plan.token_cap)
    assert FLOOR <= counts[150][0] < 29 and counts[150][1] < 384
    assert counts[100_000] == (29, 384)


def test_a_slower_machine_shows_in_the_next_question() -> None:
    clock = FakeClock()
    b, reranker = budget(clock), TimedReranker(clock, 2000)
    passages = [words(300, seed) for seed in range(29)]
    for _ in range(3):
        fast, _ = run(b, reranker, passages)
    reranker.rate = 500  # other work started on the machine
    run(b, reranker, passages)
    slow, _ = run(b, reranker, passages)
    assert FLOOR <= slow.count and (slow.count, slow.token_cap) < (fast.count, fast.token_cap)


def test_throughput_ignores_empty_calls() -> None:
    t = Throughput()
    t.record(0, 1.0)
    t.record(100, 0.0)
    assert t.tokens_per_second is None and t.calls == 0
    t.record(1000, 2.0)
    assert t.tokens_per_second == 500


# --- cutting ------------------------------------------------------------------------------------------------------
def test_passages_are_cut_to_the_token_cap_from_their_start() -> None:
    texts = [words(300, 1), words(40, 2), "x" * 900, words(65, 3)]
    lengths = [estimate_tokens(t) for t in texts]
    cut = cut_passages(texts, lengths, 64, lambda ts: [estimate_tokens(t) for t in ts])
    assert all(estimate_tokens(c) <= 64 for c in cut)
    assert all(t.startswith(c) and c for t, c in zip(texts, cut, strict=True))
    assert cut[1] == texts[1]  # shorter than the cap: untouched
    assert estimate_tokens(cut[0]) >= 56  # cut near the cap, not far below it


def test_the_rerankers_own_tokenizer_counts_when_it_has_one(tiny_qwen3_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)

    class Counting(TimedReranker):
        def count_tokens(self, texts: Sequence[str]) -> list[int]:
            return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    clock = FakeClock()
    reranker = Counting(clock, 1000)
    plan = budget(clock).plan(reranker, "deposit?", [words(300, s) for s in range(8)], breadth=12)
    assert plan.cut == FLOOR and max(reranker.count_tokens(plan.passages)) <= plan.token_cap == 64


def test_settings_bound_the_budget() -> None:
    s = Settings.from_env({"RAG_RERANK_SECONDS": "1.5", "RAG_RERANK_MIN_PASSAGES": "3", "RAG_RERANK_MIN_TOKENS": "32"})
    b = RerankBudget.from_settings(s)
    assert (b.seconds, b.min_passages, b.min_tokens, b.max_tokens) == (1.5, 3, 32, s.rerank_max_tokens)
    with pytest.raises(ConfigError, match="RAG_RERANK_MIN_TOKENS"):
        Settings.from_env({"RAG_RERANK_MIN_TOKENS": "500", "RAG_RERANK_MAX_TOKENS": "400"})
    with pytest.raises(ConfigError, match="RAG_RERANK_SECONDS"):
        Settings.from_env({"RAG_RERANK_SECONDS": "-1"})


# --- in the app ---------------------------------------------------------------------------------------------------
PAGES = [f"Chapter {i}: the tenant pays the deposit of {100 + i} dollars to the landlord before moving in."
         for i in range(9)]


@pytest.fixture
def nine_pages(engine: Engine, tmp_path: Path) -> Engine:
    """An engine with one indexed 9-page PDF whose pages all match the question (9 candidates)."""
    list(engine.ingest([pf.text_pdf(tmp_path / "lease.pdf", PAGES)]))
    return engine


def test_the_user_is_told_how_many_passages_are_ranked(settings: Settings, nine_pages: Engine) -> None:
    clock = FakeClock()
    reranker = TimedReranker(clock, 50)
    engine = Engine(settings.with_(rerank=True, top_k=3, min_k=1, rerank_threshold=0.0),
                    reranker=reranker)
    engine.rerank_budget.clock = clock
    try:
        events = list(engine.ask("How much deposit does the tenant pay?"))
    finally:
        engine.close()
    ranking = [e for e in events if isinstance(e, Progress) and e.stage == "reranking"]
    assert [e.detail for e in ranking] == ["ranking 5 of 9 passages"]
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert stages.index("reranking") < stages.index("generating")
    # The reranker read the 5 best; only those can reach the answer.
    assert len(reranker.seen) == 1 and len(reranker.seen[0]) == 5
    sources = next(e for e in events if isinstance(e, Sources))
    shown = [c.passage for c in sources.cited] + sources.other
    assert shown and {p.text for p in shown} <= set(reranker.seen[0])
    assert {p.score for p in shown} <= {0.9 - 0.01 * i for i in range(5)}  # reranker scores, not fusion scores


def test_a_reranker_that_cannot_load_leaves_the_answer_unranked(settings: Settings, nine_pages: Engine) -> None:
    class Broken:
        loaded = False

        def load(self) -> None:
            raise RuntimeError("no weights offline")

        def score(self, query: str, passages: Sequence[str]) -> list[float]:
            raise AssertionError("never reached")

    engine = Engine(settings.with_(rerank=True), reranker=Broken())
    try:
        events = list(engine.ask("How much deposit does the tenant pay?"))
    finally:
        engine.close()
    assert not any(isinstance(e, Progress) and e.stage == "reranking" for e in events)
    assert next(e for e in events if isinstance(e, Sources)).cited


def test_the_chat_shows_the_ranking_while_it_runs(settings: Settings, nine_pages: Engine) -> None:
    from rag.answering.answer import AskOptions
    from ui.app import _answer
    from ui.conversations import Turn

    clock = FakeClock()
    engine = Engine(settings.with_(rerank=True), reranker=TimedReranker(clock, 50))
    engine.rerank_budget.clock = clock
    try:
        shown = [history[-1]["content"] for history, _ in
                 _answer(engine, "How much deposit does the tenant pay?", [], None, AskOptions(), Turn())]
    finally:
        engine.close()
    assert "<span class='pw-working'>Ranking 5 of 9 passages…</span>" in shown
    assert shown.index("<span class='pw-working'>Ranking 5 of 9 passages…</span>") < len(shown) - 1


def test_the_cli_says_what_the_reranker_reads(settings: Settings, nine_pages: Engine, tiny_qwen3_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_CHUNK_TOKENS", str(settings.chunk_tokens))
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", str(settings.chunk_overlap))
    monkeypatch.setenv("RAG_RERANK_MODEL", str(tiny_qwen3_dir))
    monkeypatch.setenv("RAG_RERANK_DTYPE", "float32")
    monkeypatch.setenv("RAG_RERANK_THRESHOLD", "0")
    monkeypatch.setenv("RAG_MIN_RELEVANCE", "0")
    if settings.chroma_host:
        monkeypatch.setenv("RAG_CHROMA_HOST", settings.chroma_host)
        monkeypatch.setenv("RAG_CHROMA_PORT", str(settings.chroma_port))
    assert cli_main(["ask", "How much deposit does the tenant pay?", "--no-think"]) == 0
    said = re.search(r"\(ranking (\d+) of 9 passages(, \d+ cut to \d+ tokens)?\)", capsys.readouterr().err)
    assert said and int(said.group(1)) >= FLOOR  # the tiny model, timed at start, is fast: usually all 9


# --- a /rerank service ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "everything"), [(400, False), (1e6, True)])
def test_a_rerank_service_is_bounded_by_its_measured_speed(tmp_path: Path, fake_openai: Any, rate: float,
                                                          everything: bool) -> None:
    """The real /rerank client against the stand-in service (tests/fake_openai.py, a test double over HTTP); the
    clock is the stand-in's work so far at ``rate`` tokens per second, so its speed is simulated, not measured."""
    from rag.models.factory import make_reranker

    reranker = make_reranker(Settings.from_env({}, data_dir=tmp_path / "data", rerank_backend="http",
                                               rerank_url=fake_openai.base_url))

    def work_done() -> float:
        bodies = [body for path, body in fake_openai.requests if path.endswith("/rerank")]
        return sum(estimate_tokens(b["query"]) + sum(estimate_tokens(d) + 15 for d in b["documents"])
                   for b in bodies) / rate

    b = RerankBudget(3.0, min_passages=FLOOR, min_tokens=64, max_tokens=384, clock=work_done)
    passages = [words(300, seed) for seed in range(29)]
    for _ in range(3):
        fake_openai.requests.clear()
        plan = b.plan(reranker, "what does the lease say about the deposit?", passages, breadth=12)
        scores = b.score(reranker, "what does the lease say about the deposit?", plan)
    sent = [d for path, body in fake_openai.requests if path.endswith("/rerank") for d in body["documents"]]
    assert len(scores) == len(sent) == plan.count and all(estimate_tokens(d) <= plan.token_cap for d in sent)
    assert all(any(p.startswith(d) for p in passages[:plan.count]) for d in sent)  # the best, from their start
    if everything:
        assert (plan.count, plan.token_cap) == (29, 384)
    else:
        assert FLOOR <= plan.count < 29 and work_done() <= 3.0 * 1.2


def test_the_apps_warm_up_times_the_reranker_so_the_first_question_is_planned(settings: Settings,
                                                                             nine_pages: Engine,
                                                                             tiny_qwen3_dir: Path) -> None:
    engine = Engine(settings.with_(rerank=True, rerank_model=str(tiny_qwen3_dir), rerank_dtype="float32"))
    try:
        engine.warm_up(background=False)
        assert engine.reranker.loaded and engine.rerank_budget.throughput.calls == 1
        plan = engine.rerank_budget.plan(engine.reranker, "How much deposit does the tenant pay?", PAGES,
                                         breadth=12)
    finally:
        engine.close()
    assert plan.expected_seconds is not None


class SlowingReranker(TimedReranker):
    """Test double for an in-process reranker that takes passages a batch at a time, reading the query's prefix once,
    on a machine ``slowdown`` times slower than it was."""

    incremental = True
    batch_size = 4

    def __init__(self, clock: FakeClock, rate: float, slowdown: float = 1.0) -> None:
        super().__init__(clock, rate)
        self.slowdown = slowdown
        self.query = ""

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        first = query != self.query  # the prefix is read once per query, as the in-process reranker does
        self.query = query
        self.seen.append(list(passages))
        tokens = (60 if first else 0) + sum(estimate_tokens(p) + 15 for p in passages)
        self.clock.now += tokens * self.slowdown / self.rate
        return [0.5] * len(passages)


def test_an_incremental_reranker_is_stopped_when_time_runs_out_never_below_the_floor() -> None:
    clock = FakeClock()
    passages = [words(300, seed) for seed in range(29)]
    reranker = SlowingReranker(clock, 1000)
    b = budget(clock)
    for question in ("deposit?", "rent?"):  # a steady machine: everything planned is read
        plan = b.plan(reranker, question, passages, breadth=12)
        reranker.seen.clear()
        assert len(b.score(reranker, question, plan)) == plan.count
    assert plan.count == 12 and [len(s) for s in reranker.seen] == [FLOOR, 4, 3]  # the floor, then batches

    reranker.slowdown = 2  # other work started on the machine since the last question
    plan = b.plan(reranker, "keys?", passages, breadth=12)
    reranker.seen.clear()
    started = clock.now
    scores = b.score(reranker, "keys?", plan)
    assert FLOOR <= len(scores) < plan.count and clock.now - started <= 3.0 * 1.2
    assert reranker.seen[0] == plan.passages[:FLOOR]  # the best first


def test_a_remote_reranker_gets_the_plan_in_one_call() -> None:
    clock = FakeClock()
    reranker = TimedReranker(clock, 1000)
    b = budget(clock)
    b.calibrate(reranker)
    plan = b.plan(reranker, "deposit?", [words(300, seed) for seed in range(29)], breadth=12)
    reranker.seen.clear()
    assert len(b.score(reranker, "deposit?", plan)) == plan.count and len(reranker.seen) == 1
