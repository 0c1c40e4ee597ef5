"""A test double: a chat model that answers from the passages it is given, but errs as a small local model does.

It is not a language model. It reads the ``<sources>`` block of the prompt, picks the passages that share the most
words with the question, and writes one statement per passage: a figure with the words that label it in the
passage ("Purchases of property, plant and equipment were $1,577 million [2].") or, for prose, the passage's
best-matching sentence. Faithful rewordings are part of its style (a "$" and the table's scale word added,
"(1,577)" written 1,577, millions restated as "$1.58 billion").

Then, with set shares and a seeded random generator, it errs the way small models do:

- **misattributes** a statement: cites a neighbouring source (the one listed before or after; one that does not
  hold the statement's figure), as a model does when two passages look alike;
- **alters** a figure: changes one digit, swaps its scale (million ↔ billion / thousand), or rounds it wrongly
  (1,577 million → "$1.5 billion").

Every statement it wrote, and what it did to it, is kept in ``log`` (the ground truth a benchmark compares the claim
check with).
"""

from __future__ import annotations

import html
import math
import random
import re
from dataclasses import dataclass, replace
from typing import Iterator

from rag.answering.claims import content_words, declared_scales, figures
from rag.core.events import AnswerDelta
from rag.models.chat import ChatModel, Delta, Messages

_SOURCE = re.compile(r'<source id="(\d+)"[^>]*>\n?(.*?)\n?</source>', re.DOTALL)
_UNIT = re.compile(r"\s*(?:\n|(?<=[.!?;:])\s+)\s*")
_SCALE_WORDS = {1e3: "thousand", 1e6: "million", 1e9: "billion"}


@dataclass(frozen=True)
class Statement:
    """What the double wrote and did: ``source`` holds the statement; ``cited`` is the number it wrote; ``error``
    is "" (a correct statement), "citation" (cited a neighbour instead) or "number" (a figure altered, how in
    ``detail``); ``before`` joins it to the statement before it (" ", or ", and " within one sentence)."""

    text: str
    source: int
    cited: int
    error: str = ""
    detail: str = ""
    before: str = " "  # what joins it to the statement before it in the answer


class ErringCiter(ChatModel):
    """The test double described in the module's docstring: ``miscite`` and ``alter`` are the shares of statements
    given a wrong citation and an altered figure (each statement gets at most one error)."""

    model_id = "erring-citer (test double)"

    def __init__(self, miscite: float = 0.3, alter: float = 0.3, seed: int = 0, statements: int = 3) -> None:
        self.miscite = miscite
        self.alter = alter
        self.rng = random.Random(seed)
        self.statements = statements
        self.log: list[Statement] = []  # the last answer's statements
        self.sources: dict[int, str] = {}  # the last prompt's sources, by number

    @property
    def describe(self) -> str:
        return self.model_id

    def context_length(self) -> int:
        return 32768

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        prompt = messages[-1]["content"]
        question = prompt.rsplit("Question:", 1)[-1].strip()
        sources = [(int(n), html.unescape(text)) for n, text in _SOURCE.findall(prompt)]
        self.sources = dict(sources)
        self.log = self._answer(question, sources)
        text = "".join((s.before if i else "") + s.text for i, s in enumerate(self.log)) or "The sources do not say."
        for i in range(0, len(text), 40):
            yield AnswerDelta(text[i:i + 40])

    # --- writing ----------------------------------------------------------------------------------------------
    def _answer(self, question: str, sources: list[tuple[int, str]]) -> list[Statement]:
        asked = content_words(question)
        ranked = sorted(sources, key=lambda s: -len(asked & content_words(s[1])))
        out: list[Statement] = []
        for number, text in ranked:
            if len(out) >= self.statements:
                break
            written = self._statement(asked, text)
            if written is None:
                continue
            statement, figure_text, scale = written
            out.append(self._err(Statement(f"{statement} [{number}].", number, number), figure_text, scale, sources))
        return self._join(out)

    def _join(self, statements: list[Statement]) -> list[Statement]:
        """Some pairs of statements written as one sentence of two clauses ("… [2], and … [4].")."""
        out: list[Statement] = []
        for s in statements:
            if out and self.rng.random() < 0.25 and out[-1].text.endswith("].") and out[-1].before == " ":
                first = out.pop()
                out.append(replace(first, text=first.text[:-1]))
                out.append(replace(s, text=s.text[:1].lower() + s.text[1:], before=", and "))
            else:
                out.append(s)
        return out

    def _statement(self, asked: set[str], text: str) -> tuple[str, str, float] | None:
        """(statement without its citation, the figure it states as written, the scale that figure carries)."""
        units = [u.strip() for u in _UNIT.split(text) if len(u.split()) >= 3]
        with_figures = [u for u in units if any(not f.year for f in figures(u))]
        prose = [u for u in units if len(u.split()) >= 6 and u[:1].isupper()]  # whole sentences, not fragments
        pool = with_figures or prose
        if not pool:
            return None
        unit = max(pool, key=lambda u: (len(asked & content_words(u)), -len(u)))
        amounts = [f for f in figures(unit) if not f.year]
        if not amounts:  # prose without a figure: the sentence, lightly trimmed
            words = unit.rstrip(".;:").split()[:40]
            return " ".join(words), "", 1.0
        f = amounts[0]
        label = unit[:unit.find(f.text)].strip(" :$.-–(") if f.text in unit else ""
        label = " ".join(label.split()[-10:]) or "The figure"
        declared = sorted(declared_scales(text))
        figure, scale = self._restate(f.text, f.value, f.scale, f.percent, declared[0] if declared else None)
        verb = self.rng.choice(["was", "stood at", "came to", "amounted to"])
        return f"{label[:1].upper()}{label[1:]} {verb} {figure}", figure, scale

    def _restate(self, text: str, value: float, scale: float, percent: bool, declared: float | None
                 ) -> tuple[str, float]:
        """The figure as a model would write it: as in the passage, or with "$" and the scale word of the table,
        or restated in billions (faithfully rounded)."""
        if percent or scale != 1.0 or declared is None:
            return text.strip("()"), scale
        digits = text.strip("()$ ")
        style = self.rng.random()
        if style < 0.4:
            return f"${digits} {_SCALE_WORDS[declared]}", declared
        if style < 0.6 and declared == 1e6 and value >= 1000:
            return f"${value / 1000:.2f} billion", 1e9
        return digits, 1.0

    # --- erring -----------------------------------------------------------------------------------------------
    def _err(self, s: Statement, figure: str, scale: float, sources: list[tuple[int, str]]) -> Statement:
        roll = self.rng.random()
        if roll < self.miscite:
            wrong = self._neighbour(s.source, figure, sources)
            if wrong is not None:
                return Statement(s.text.replace(f"[{s.source}]", f"[{wrong}]"), s.source, wrong, "citation",
                                 f"cited [{wrong}] for [{s.source}]")
        elif roll < self.miscite + self.alter and figure:
            altered, how = self._alter(figure, scale)
            if altered and altered != figure:
                return Statement(s.text.replace(figure, altered, 1), s.source, s.cited, "number",
                                 f"{how}: {figure} → {altered}")
        return s

    def _neighbour(self, source: int, figure: str, sources: list[tuple[int, str]]) -> int | None:
        """A source listed next to ``source`` that does not hold the figure (else any other that doesn't)."""
        numbers = [n for n, _ in sources]
        text = dict(sources)
        value = figures(figure)[0] if figure and figures(figure) else None

        def holds(n: int) -> bool:
            return value is not None and _holds(text[n], value)

        near = [n for n in (source - 1, source + 1) if n in text and not holds(n)]
        rest = [n for n in numbers if n != source and not holds(n)]
        pick = near or rest
        return self.rng.choice(pick) if pick else None

    def _alter(self, figure: str, scale: float) -> tuple[str, str]:
        kind = self.rng.choice(["digit", "scale", "rounding"])
        if kind == "scale":
            for word, other in (("million", "billion"), ("billion", "million"), ("thousand", "million")):
                if word in figure:
                    return figure.replace(word, other), "scale swapped"
            if "%" not in figure and "percent" not in figure:
                return f"{figure} {'billion' if scale != 1e9 else 'million'}", "scale added"
            kind = "digit"
        if kind == "rounding":
            wrong = _round_wrongly(figure)
            if wrong:
                return wrong, "rounded wrongly"
        return _change_digit(figure, self.rng), "digit changed"


def _holds(text: str, figure: object) -> bool:
    from rag.answering.claims import PassageFigures
    from rag.core.records import Passage

    return PassageFigures(Passage("", "", "", text, 0, 0, 0, len(text))).holds(figure)  # type: ignore[arg-type]


def _change_digit(figure: str, rng: random.Random) -> str:
    """One digit after the first changed ("1,577" → "1,517"); a one-digit figure gets a new first digit."""
    spots = [i for i, ch in enumerate(figure) if ch.isdigit()]
    if not spots:
        return figure
    i = rng.choice(spots[1:] or spots)
    digit = rng.choice([d for d in "0123456789" if d != figure[i] and not (i == spots[0] and d == "0")])
    return figure[:i] + digit + figure[i + 1:]


def _round_wrongly(figure: str) -> str:
    """A figure cut to two significant digits the wrong way ("1,577" → "1,500", "$1.58 billion" → "$1.5
    billion"): truncated where rounding goes up, one step up where it goes down."""
    m = re.search(r"\d[\d,]*(?:\.\d+)?", figure)
    if not m:
        return ""
    raw = m.group(0).replace(",", "")
    value = float(raw)
    if value == 0:
        return ""
    exponent = math.floor(math.log10(value)) - 1  # keep two significant digits
    step = 10.0 ** exponent
    right = math.floor(value / step + 0.5) * step  # half up, as people round
    wrong = math.floor(value / step) * step
    if abs(wrong - right) < step / 2:
        wrong = right + step
    decimals = max(0, -exponent)
    text = f"{wrong:,.{decimals}f}" if "," in m.group(0) else f"{wrong:.{decimals}f}"
    return figure[:m.start()] + text + figure[m.end():]
