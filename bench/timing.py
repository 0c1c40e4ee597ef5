"""What every benchmark measures time with: one percentile definition, one clock, one way to time a stage.

- ``percentile(values, p)``: linear interpolation between the two nearest ranks (Hyndman & Fan's type 7, the
  default of numpy, R and Excel's PERCENTILE.INC): of 20 timings, p95 lies 5% of the way from the 19th to the 20th.
  It is ``rag.evaluation.metrics``'s, so that `rag eval` reports its p50 and p95 the same way.
  Every table in docs/BENCHMARKS.md that gives a p50 or p95 uses it.
- ``clock()``: ``time.perf_counter``.
- ``timed(fn, *args)``: (seconds, result) of one call, garbage collected first.
- ``Stopwatch``: wraps functions so that each call adds its time to a named stage; a stage's time is its own,
  without the wrapped stages it calls (so stages add up to no more than the whole).
"""

from __future__ import annotations

import functools
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rag.evaluation.metrics import percentile as percentile  # one definition, shared with `rag eval`

clock = time.perf_counter


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of one call of ``fn``; garbage is collected first, so that a collection owed by earlier work
    doesn't land inside the timing."""
    gc.collect()
    started = clock()
    result = fn(*args, **kwargs)
    return clock() - started, result


@dataclass
class Stopwatch:
    """Time per stage, by wrapping the functions that make up each stage (see ``wrap``)."""

    totals: dict[str, float] = field(default_factory=dict)
    _stack: list[float] = field(default_factory=list)  # time of the wrapped calls made inside each open stage

    def wrap(self, stage: str, fn: Callable[..., Any], keep: list[Any] | None = None) -> Callable[..., Any]:
        """``fn``, adding each call's own time to ``stage`` (and its result to ``keep``, when given)."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            started = clock()
            try:
                result = fn(*args, **kwargs)
            finally:
                elapsed = clock() - started
                inner = self._stack.pop()
                self.totals[stage] = self.totals.get(stage, 0.0) + elapsed - inner
                if self._stack:
                    self._stack[-1] += elapsed
            if keep is not None:
                keep.append(result)
            return result
        return wrapper

    def reset(self) -> dict[str, float]:
        """The totals so far, starting afresh."""
        out, self.totals = self.totals, {}
        return out
