"""Scores of ``rag eval``: one answer's result, and the figures of a whole run.

Pages are matched as (file name, page): a question with a ``file`` counts only that file's pages, one without
counts its evidence pages in any file. Page-level recall@k and MRR read the search stage's ranking (dense ⊕ BM25,
one passage per page); citation precision is the share of cited pages that are evidence pages; a refusal is an
answer that cites nothing or says the documents don't hold the answer; the reference match is the share of the
reference answer's figures the answer states (after the claim check's normalising: "$1,577 million" = "1577.00")
and the token F1 of the two texts.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from rag.answering.claims import figures

KS = (1, 5, 10)
STAGES = ("rewrite", "search", "rerank", "generate", "check", "total")
_REFUSAL = re.compile(
    r"(?:do(?:es)? not|don't|doesn't|cannot|can't|couldn't|could not|unable to|no information|not (?:mentioned|"
    r"stated|provided|found|available|enough)|none of the (?:sources|passages|documents))", re.IGNORECASE)


@dataclass
class Result:
    """One question's result, as appended to the run's ``results.jsonl``."""

    id: str
    question: str
    file: str | None
    pages: list[int]
    answerable: bool
    reference: str
    answer: str = ""
    error: str | None = None
    search: list[list[Any]] = field(default_factory=list)  # [file, page] in the search stage's rank order
    given: list[list[Any]] = field(default_factory=list)   # [file, page] of the passages the model had
    cited: list[list[Any]] = field(default_factory=list)   # [file, page] of each cited passage, citation order
    claims: dict[str, int] = field(default_factory=dict)    # statements, supported, re-pointed, unsupported
    timings: dict[str, float] = field(default_factory=dict)  # stage → seconds

    def record(self) -> dict[str, Any]:
        """The result as one JSON object."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Result:
        """A result read back from ``results.jsonl`` (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    # --- per-question scores ----------------------------------------------------------------------------------
    def is_evidence(self, file: str, page: int) -> bool:
        """Whether (file, page) is one of the question's evidence pages."""
        return page in self.pages and (self.file is None or file == self.file)

    @property
    def first_hit(self) -> int | None:
        """Rank (1-based) of the first evidence page in the search ranking, None when not found."""
        return next((i for i, (f, p) in enumerate(self.search, 1) if self.is_evidence(f, p)), None)

    @property
    def citation_precision(self) -> float | None:
        """Share of cited pages that are evidence pages (None when nothing was cited or no pages are known)."""
        if not self.cited or not self.pages:
            return None
        return sum(self.is_evidence(f, p) for f, p in self.cited) / len(self.cited)

    @property
    def refused(self) -> bool:
        """Whether the answer declined: it cites nothing, or says the documents don't hold the answer."""
        return not self.cited or bool(_REFUSAL.search(self.answer[:400]))

    @property
    def number_match(self) -> float | None:
        """Share of the reference answer's figures the answer states (None when the reference has none)."""
        wanted = [f for f in figures(self.reference) if not f.year] or figures(self.reference)
        if not wanted:
            return None
        said = figures(self.answer)
        return sum(any(_same(w, s) for s in said) for w in wanted) / len(wanted)

    @property
    def token_f1(self) -> float | None:
        """Token F1 of the answer against the reference (None without a reference)."""
        return token_f1(self.reference, self.answer) if self.reference.strip() else None


def _same(a: Any, b: Any) -> bool:
    """Two figures say the same number: equal within the coarser one's rounding, in any of the usual scales."""
    if a.year or b.year:
        return a.year and b.year and a.value == b.value
    if a.percent or b.percent:
        return abs(a.value - b.value) <= 0.5 * max(a.step, b.step) * (1 + 1e-9)
    for s in (1.0, 1e3, 1e6, 1e9):  # one of the two written in thousands, millions or billions without saying so
        for x, y in ((a, b), (b, a)):
            tolerance = 0.5 * max(x.step * x.scale * s, y.step * y.scale) * (1 + 1e-9)
            if abs(x.full * s - y.full) <= tolerance:
                return True
    return False


def _normal_tokens(text: str) -> list[str]:
    text = re.sub(r"\[\d+(?:[-–,\s]+\d+)*\]", " ", text.lower())
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return [t for t in text.split() if t not in ("a", "an", "the")]


def token_f1(reference: str, answer: str) -> float:
    """SQuAD-style token F1 (lower case, punctuation and articles dropped, citation markers left out)."""
    ref, got = _normal_tokens(reference), _normal_tokens(answer)
    common = sum((Counter(ref) & Counter(got)).values())
    if not ref or not got or not common:
        return 0.0
    precision, recall = common / len(got), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, interpolated between the nearest ranks; nan when empty."""
    if not 0 <= p <= 100:
        raise ValueError(f"p must be within 0 and 100, not {p}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    """The figures of a run: retrieval (R@k, MRR over answerable questions with pages), citations, claim check,
    refusals, reference match and time per stage (p50, p95)."""
    ok = [r for r in results if r.error is None]
    paged = [r for r in ok if r.answerable and r.pages]
    firsts = [r.first_hit for r in paged]
    answerable = [r for r in ok if r.answerable]
    unanswerable = [r for r in ok if not r.answerable]
    claims = Counter()
    for r in ok:
        claims.update(r.claims)
    out: dict[str, Any] = {
        "questions": len(results), "errors": len(results) - len(ok), "with_pages": len(paged),
        **{f"recall@{k}": _mean([1.0 if f is not None and f <= k else 0.0 for f in firsts]) for k in KS},
        "mrr": _mean([1.0 / f if f else 0.0 for f in firsts]),
        "given_recall": _mean([1.0 if any(r.is_evidence(f, p) for f, p in r.given) else 0.0 for r in paged]),
        "citation_precision": _mean([r.citation_precision for r in answerable]),
        "statements": claims["statements"], "supported": claims["supported"], "re-pointed": claims["re-pointed"],
        "unsupported": claims["unsupported"],
        "unsupported_share": claims["unsupported"] / claims["statements"] if claims["statements"] else None,
        "repointed_share": claims["re-pointed"] / claims["statements"] if claims["statements"] else None,
        "unanswerable": len(unanswerable),
        "refusal_rate": _mean([1.0 if r.refused else 0.0 for r in unanswerable]),
        "false_refusal_rate": _mean([1.0 if r.refused else 0.0 for r in answerable]),
        "number_match": _mean([r.number_match for r in answerable]),
        "token_f1": _mean([r.token_f1 for r in answerable]),
        "timings": {stage: {"p50": percentile(values, 50), "p95": percentile(values, 95)}
                    for stage in STAGES if (values := [r.timings[stage] for r in ok if stage in r.timings])},
    }
    return out
