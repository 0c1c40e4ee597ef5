"""bench/timing.py: the one percentile definition and stage timer every benchmark reports with."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bench.timing
from bench.timing import Stopwatch, percentile, timed


@pytest.mark.parametrize("values", [[3.0], [5.0, 1.0], list(range(20)), [0.4, 2.5, 1.1, 9.0, 3.3, 3.3, 7.2]])
@pytest.mark.parametrize("p", [0, 25, 50, 90, 95, 99, 100])
def test_percentile_interpolates_between_the_nearest_ranks_as_numpy_does(values: list[float], p: float) -> None:
    assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


def test_p95_of_twenty_timings_is_not_the_slowest() -> None:
    timings = [float(i) for i in range(1, 21)]
    assert percentile(timings, 95) == pytest.approx(19.05)
    assert percentile(timings, 50) == pytest.approx(10.5)


def test_percentile_of_nothing_is_nan_and_p_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_a_stage_counts_its_own_time_without_the_stages_it_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(bench.timing, "clock", lambda: now[0])  # a clock the test moves by hand

    def spend(seconds: float) -> None:
        now[0] += seconds

    watch = Stopwatch()
    kept: list[str] = []
    inner = watch.wrap("inner", lambda: spend(5.0) or "inner done", keep=kept)

    def outer() -> str:
        spend(2.0)
        return inner()

    assert watch.wrap("outer", outer)() == "inner done" and kept == ["inner done"]
    assert watch.reset() == {"inner": 5.0, "outer": 2.0}  # the outer stage's own 2 s, not the 7 s of the whole call
    assert watch.reset() == {}


def test_timed_gives_seconds_and_the_result_and_collects_garbage_first(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(bench.timing.gc, "collect", lambda: events.append("collect"))
    seconds, result = timed(lambda: events.append("call") or sorted([3, 1, 2]))
    assert result == [1, 2, 3] and seconds >= 0
    assert events == ["collect", "call"]
