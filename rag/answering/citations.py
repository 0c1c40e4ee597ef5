"""Citations: the [n], [n, m] and [n-m] markers of an answer, mapped to the passages they name."""

from __future__ import annotations

import re
from typing import Sequence

from rag.answering.prompts import CITATION
from rag.core.records import Citation, Passage

_RANGE_LIMIT = 50  # "[1-9999]" is not a real citation
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def cited_numbers(answer: str) -> list[int]:
    """Source numbers in order of first appearance ("[2] ... [1, 3] ... [4-5]" → 2, 1, 3, 4, 5)."""
    seen: list[int] = []
    for match in CITATION.finditer(answer):
        for part in re.split(r"\s*(?:,|;|and)\s*", match.group(1)):
            bounds = re.split(r"\s*[-–]\s*", part)
            if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
                low, high = int(bounds[0]), int(bounds[1])
                numbers = list(range(low, high + 1)) if 0 <= high - low <= _RANGE_LIMIT else [low, high]
            else:
                numbers = [int(b) for b in bounds if b.isdigit()]
            seen.extend(n for n in numbers if n not in seen)
    return seen


def resolve(answer: str, passages: Sequence[Passage]) -> tuple[list[Citation], list[Passage], int]:
    """(cited passages in citation order, the other passages, how many cited numbers name no source)."""
    numbers = cited_numbers(answer)
    valid = [n for n in numbers if 1 <= n <= len(passages)]
    cited = [Citation(n, passages[n - 1]) for n in valid]
    other = [p for i, p in enumerate(passages, 1) if i not in valid]
    return cited, other, len(numbers) - len(valid)


def cited_sentence(passage_text: str, answer: str, number: int) -> tuple[int, int] | None:
    """Span of the passage sentence that best matches the answer's sentences citing ``number``, or None."""
    claims = [s for s in _SENTENCE.split(answer) if number in cited_numbers(s)]
    words = {w.lower() for s in claims for w in _WORD.findall(CITATION.sub("", s)) if len(w) > 2}
    if not words:
        return None
    best, best_score, start = None, 0, 0
    for sentence in _SENTENCE.split(passage_text):
        at = passage_text.find(sentence, start)
        start = at + len(sentence) if at >= 0 else start
        score = len(words & {w.lower() for w in _WORD.findall(sentence)})
        if at >= 0 and score > best_score:
            best, best_score = (at, at + len(sentence)), score
    return best if best_score >= 2 else None
