"""Claim check: an answer split into statements, each matched against the passages it cites.

A statement is a sentence (or a line of a list) with the ``[n]`` markers inside or right after it. Its figures
(amounts, percentages, years, plain numbers) must appear in a cited passage after normalising how filings write
them ("1,234.5", "$1.2 billion", "1.2bn", "(370)" for -370, "(in millions)" tables); faithful rounding is accepted
("$1.2 billion" for 1,234 million), a changed digit or scale is not. A figure counts where the passage says it of
what the statement speaks of: when the statement's words lead up to another figure of the passage (its row's label,
its clause) and are near no place the figure is written, the passage gives that other figure for it (a statement of
one figure; where the words are unclear, the figure counts). A statement without figures is matched by its
words (a lexical support score), or by a support scorer (the reranker asked "does the passage support the
statement", ``rag.answering.support``) when one is given: it judges the cited passages, and the passage whose words
match best when they fail.

A statement unsupported by what it cites but supported by another passage the model was given has its citation
re-pointed there; one that no passage supports is marked, with the reason. Without a scorer the check reads only
text already in memory: it costs milliseconds, not model calls.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from rag.answering.citations import cited_numbers
from rag.answering.prompts import CITATION
from rag.core.events import Claim, Claims
from rag.core.records import Citation, Passage

SUPPORTED, REPOINTED, UNSUPPORTED = True, "re-pointed", False
LEXICAL_SUPPORT = 0.34  # share of a statement's content words a passage must hold to support it
LEXICAL_REPOINT = 0.5  # ... and another passage must hold to take the citation over, by LEXICAL_MARGIN more
LEXICAL_MARGIN = 0.25
PHRASE_REPOINT = 0.6  # a passage that says the statement this closely (words and phrasing) ...
PHRASE_MARGIN = 0.3  # ... and this much more closely than the cited ones takes the citation, even from a match
LABEL_WORDS = 12  # a figure's label: at most this many content words leading up to it
AFTER_WORDS = 4  # ... and the words after it that count as near it
CONTEXT_WORDS = 2  # another figure's label must hold this many of the statement's words to speak for it
MIN_WORDS = 3  # statements with fewer content words (and no figure) are not judged by their words
SupportScorer = Callable[[str, Sequence[str]], list[float]]  # (statement, passages) → support 0..1 each
SUPPORT_LINE = 0.5  # a support scorer's line between "supports" and "does not"
SUPPORT_MARGIN = 0.2  # ... and how much better another passage must score to take the citation

# --- figures ------------------------------------------------------------------------------------------------------
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "millions": 1e6, "mn": 1e6, "mm": 1e6, "m": 1e6,
           "mln": 1e6, "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9, "trillion": 1e12, "tn": 1e12,
           "thousands": 1e3}
_FIGURE = re.compile(
    r"(?<![\w.])(?P<open>\()?(?P<sign>[-−–])?\s?(?P<cur>(?:US)?[$€£¥])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:(?P<glued>bn|mn|mm|mln|[kmb])\b|\s?(?P<pct>%|percent\b|per cent\b)|"
    r"\s(?P<word>thousands?|millions?|billions?|trillion|bn|mn)\b)?(?P<close>\))?"
    r"(?![\w-]*[A-Za-z])", re.IGNORECASE)
_UNIT_DECLARED = re.compile(r"\b(?:in|\$\s?in|amounts? in|dollars in|\(|)\s*(thousands|millions|billions)\b",
                            re.IGNORECASE)
_REFERENCE_WORD = re.compile(r"(?:note|item|page|p\.|pp\.|section|part|exhibit|rule|asc|asu|topic|level|tier|"
                             r"step|phase|form|schedule|article|chapter|q|fy)\s*$", re.IGNORECASE)
_MONTH = re.compile(r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
                    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    """A number as written: its value (sign dropped: "(370)" and "a fall of 370" say the same), the scale a word
    gave it (1 when none), whether it is a percentage or a year, and the rounding its digits imply (``step``)."""

    text: str
    value: float
    scale: float
    percent: bool
    year: bool
    step: float

    @property
    def full(self) -> float:
        """The value with its scale word applied."""
        return self.value * self.scale


def figures(text: str, everything: bool = False) -> list[Figure]:
    """The figures written in ``text`` (citation markers, list numbers and references like "Note 7" left out,
    unless ``everything``: a passage's figures are all kept, as an answer may quote any of them)."""
    return [f for f, _, _ in _figure_spans(CITATION.sub(" ", text), everything)]


def _figure_spans(text: str, everything: bool) -> Iterator[tuple[Figure, int, int]]:
    """``figures`` with where each is written in ``text`` (start, end)."""
    for m in _FIGURE.finditer(text):
        raw = m.group("num")
        before = text[max(0, m.start() - 12):m.start()]
        if not everything and text[_line_start(text, m.start()):m.start()].strip() == "" and \
                re.match(r"[.)]\s", text[m.end():]):
            continue  # "1. " at the start of a line: a list number
        if not everything and _REFERENCE_WORD.search(before) and not m.group("cur"):
            continue
        glued = (m.group("glued") or "").lower()
        if glued in ("k", "m", "b") and not m.group("cur"):
            continue  # "3M", "10b": a name, not "$3 million"
        digits = raw.replace(",", "")
        value = float(digits)
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        unit = (glued or m.group("word") or "").lower()
        scale = _SCALES.get(unit, 1.0)
        percent = bool(m.group("pct"))
        year = (not decimals and "," not in raw and 1900 <= value <= 2100 and not m.group("cur") and not percent
                and scale == 1.0)
        if _MONTH.search(before) and value <= 31 and not decimals:
            continue  # the day of a date; its year is checked
        figure = Figure(m.group(0).strip(), abs(value), scale, percent, year, _step(digits, decimals, year))
        yield figure, m.start(), m.end()


def _step(digits: str, decimals: int, year: bool) -> float:
    """The rounding a figure's last written digit implies: 0.01 for "3.25"; for a whole number, its trailing zeros
    count as rounding ("1,600" may stand for 1,577) as long as two significant digits remain ("2,000" is exact to
    the hundred)."""
    if decimals or year:
        return 10.0 ** -decimals
    whole = digits.lstrip("0") or "0"
    zeros = len(whole) - len(whole.rstrip("0"))
    return 10.0 ** max(0, min(zeros, len(whole) - 2))


def _line_start(text: str, at: int) -> int:
    return text.rfind("\n", 0, at) + 1


def declared_scales(text: str) -> set[float]:
    """The units a passage declares for its tables ("(in millions)", "(Millions)", "$ in thousands")."""
    return {_SCALES[m.group(1).lower()] for m in _UNIT_DECLARED.finditer(text)}


_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
                                                      "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


class PassageFigures:
    """The figures of one passage, ready to be matched: each value with the scales it may stand for (a table's
    bare numbers in its declared unit or as written; with no unit declared, in thousands or millions)."""

    def __init__(self, passage: Passage) -> None:
        text = self._text = CITATION.sub(" ", passage.text)
        head = f"{passage.title}\n{passage.file_name}\n{text}"
        self.years = {int(y) for y in re.findall(r"(?<!\d)((?:19|20)\d\d)(?!\d)", head)}
        # Filings' tables are in units, thousands or millions; a table in billions declares it.
        scales = self._scales = {1.0} | (declared_scales(text) or {1e3, 1e6})
        values: set[float] = set()
        bare: set[float] = set()  # what a figure written without a scale word may stand for
        plain: set[float] = set()
        percents: set[float] = set()
        for f in figures(text, everything=True):
            plain.add(f.value)
            if f.percent:
                percents.add(f.value)
            if f.scale != 1.0:  # "$1.2 billion"; as a bare number also 1,200 (millions) or 1,200,000 (thousands)
                values.add(f.full)
                bare.update(f.full / s for s in (1.0, 1e3, 1e6, 1e9))
            else:
                values.update(f.value * s for s in scales)
        words = {float(_NUMBER_WORDS[w.lower()]) for w in _NUMBER_WORD.findall(text)}  # "three segments"
        self.values = sorted(values | words)
        self.bare = sorted(values | bare | words)
        # A percentage is looked for among the passage's percentages, and among its bare numbers only where a
        # "%" stands alone (a table's column header: "% change").
        self._loose = text.count("%") + len(re.findall(r"\bper ?cent", text, re.IGNORECASE)) > len(percents)
        self.percents = sorted(plain | words) if self._loose else sorted(percents)

    def holds(self, f: Figure) -> bool:
        """Whether the passage says figure ``f``: the same value, or ``f`` a faithful rounding of one of its values
        ("$1.2 billion" for 1,234 million; "12%" for 11.8%)."""
        if f.year:
            return int(f.value) in self.years
        return _near(f, self.percents if f.percent else self.values if f.scale != 1.0 else self.bare)

    def context(self, f: Figure, words: set[str]) -> tuple[int, int, str]:
        """How the words around ``f`` in the passage bear on a statement with content ``words``: the most of them
        near an occurrence of ``f`` (its row or clause, the one before, the next few words: read generously), the
        most in the label of another figure of the same kind (the words that lead up to it: read strictly), and
        that figure as written."""
        near, best, other = 0, (0, 0.0), ""
        words = words - _UNIT_WORDS  # "billion", "percent": how the figure is written, not what it is of
        wanted = f.value if f.percent else f.full
        for occurrence in self._occurrences:
            figure = occurrence.figure
            if figure.year or (figure.percent and not f.percent):
                continue
            values = self._stands_for(figure, f)
            if _near(f, values):
                near = max(near, len(words & occurrence.near))
            elif figure.percent == f.percent and values:
                # of the figures its words lead up to equally, the one closest to the statement's
                score = (len(words & occurrence.label), -min(abs(v - wanted) for v in values))
                if score > best:
                    best, other = score, figure.text
        return near, best[0], other

    def _stands_for(self, figure: Figure, wanted: Figure) -> list[float]:
        """The values one written figure may stand for, as ``holds`` reads them for ``wanted``."""
        if wanted.percent:
            return [figure.value] if figure.percent or self._loose else []
        if figure.scale != 1.0:
            return [figure.full] if wanted.scale != 1.0 else [figure.full / s for s in (1.0, 1e3, 1e6, 1e9)]
        return [figure.value * s for s in self._scales]

    @functools.cached_property
    def _occurrences(self) -> list[_Occurrence]:
        """The passage's figures (years aside) in order, each with its label and surroundings. Figures written
        together (a table row's columns, "3.5% to $32,765 million") share the label that leads up to the first."""
        spans = [(f, a, b) for f, a, b in _figure_spans(self._text, True) if not f.year]
        ends = [0] + [b for _, _, b in spans]
        gaps = [self._text[a:b] for a, b in zip(ends, [a for _, a, _ in spans] + [len(self._text)], strict=True)]
        out: list[_Occurrence] = []
        label: list[str] = []
        before: list[str] = []
        for i, (figure, _, _) in enumerate(spans):
            sentences = _SENTENCE_END.split(gaps[i])
            words = _content_list(sentences[-1])
            if words or len(sentences) > 1:  # words between it and the figure before: a new row or clause
                before = label if len(sentences) == 1 else []  # the clause before, in the same sentence
                label = words[-LABEL_WORDS:]
            after: list[str] = []  # the first words after it, up to the end of its sentence
            for gap in gaps[i + 1:]:
                parts = _SENTENCE_END.split(gap)
                after = _content_list(parts[0])[:AFTER_WORDS]
                if after or len(parts) > 1:
                    break
            out.append(_Occurrence(figure, set(label), set(label) | set(before) | set(after)))
        return out


@dataclass(frozen=True)
class _Occurrence:
    """A figure as a passage writes it: the words that lead up to it (``label``), and those around it (``near``:
    the label, the label before it, the first words after it)."""

    figure: Figure
    label: set[str]
    near: set[str]


def _near(f: Figure, pool: Sequence[float]) -> bool:
    """Whether ``f`` is one of ``pool``'s values, or a faithful rounding of one."""
    wanted = f.value if f.percent else f.full
    tolerance = 0.5 * f.step * f.scale * (1 + 1e-9) + 1e-9 * abs(wanted)
    return any(abs(v - wanted) <= tolerance for v in pool)


# --- words --------------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_STOP = frozenset("""a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers him his how i if in into is it its itself just me more most my no nor not of off on once only or other
our ours out over own same she should so some such than that the their theirs them then there these they this those
through to too under until up very was we were what when where which while who whom why will with would you your
yours according based source sources passage passages document documents shows states stated reported report
reports company company's total""".split())


def content_words(text: str) -> set[str]:
    """The words that carry meaning, lower-cased and lightly stemmed ("revenues" → "revenu")."""
    return set(_content_list(text))


def _content_list(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(CITATION.sub(" ", text).lower()) if len(w) > 2 and w not in _STOP]


@functools.lru_cache(maxsize=1 << 16)  # a passage's words recur in the next answer's passages
def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "s", "e", "y"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


_SENTENCE_END = re.compile(r"(?<=[a-z)%])[.!?;]\s+(?=[A-Z(])|\n\s*\n")
_UNIT_WORDS = frozenset(_stem(w) for w in [*_SCALES, "percent", "cent", "dollars", "usd"])


def lexical_support(statement_words: set[str], passage_words: set[str]) -> float:
    """The share of the statement's content words the passage holds (0..1)."""
    return len(statement_words & passage_words) / len(statement_words) if statement_words else 0.0


def word_pairs(text: str) -> set[tuple[str, str]]:
    """Consecutive content words of ``text`` (stemmed), as pairs: the phrasing, not only the vocabulary."""
    return _pairs(_content_list(text))


def _pairs(words: list[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:], strict=False))


def phrase_support(words: set[str], pairs: set[tuple[str, str]], passage_words: set[str],
                   passage_pairs: set[tuple[str, str]]) -> float:
    """Word and phrase overlap together (0..1): how closely the passage says what the statement says."""
    pair_share = len(pairs & passage_pairs) / len(pairs) if pairs else lexical_support(words, passage_words)
    return (lexical_support(words, passage_words) + pair_share) / 2


# --- statements ---------------------------------------------------------------------------------------------------
_BOUNDARY = re.compile(r"(?<=[.!?])(?:\s*" + CITATION.pattern + r")*\s+(?=[^\sa-z])|\n+")


def split_claims(answer: str) -> list[tuple[int, int]]:
    """The spans of an answer's statements: sentences and lines, each with the citation markers that follow it."""
    spans, start = [], 0
    for m in _BOUNDARY.finditer(answer):
        cut = m.start()
        # citations written after the full stop ("... rose. [2] Next") belong to the sentence before
        tail = re.match(r"(?:\s*" + CITATION.pattern + r")+", answer[cut:])
        end = cut + (tail.end() if tail else 0)
        if _is_abbreviation(answer[start:cut]):
            continue
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(answer)))
    out = []
    for a, b in spans:
        while a < b and answer[a].isspace():
            a += 1
        marker = _MARKER.match(answer, a, b)
        if marker:  # a list item's or heading's marker stays outside the statement (and its underline)
            a = marker.end()
        while b > a and answer[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


_CLAUSE_END = re.compile(r"(?:\s*" + CITATION.pattern + r")+(?=[,;:]?\s+\S+\s+\S)")


def split_clauses(answer: str, start: int, end: int) -> list[tuple[int, int]]:
    """A statement cut after each citation that more words follow ("Revenue was $5 million [1], and net income $1
    million [2]." → two clauses), unless the citation comes in its first few words ("According to [1], …")."""
    spans, at = [], start
    for m in _CLAUSE_END.finditer(answer, start, end):
        if len(answer[at:m.start()].split()) < 4:
            continue
        spans.append((at, m.end()))
        at = m.end()
        while at < end and answer[at] in ",;: ":
            at += 1
    spans.append((at, end))
    return [(a, b) for a, b in spans if answer[a:b].strip()]


_MARKER = re.compile(r"(?:[-*+•>]|#{1,6}|\d{1,3}[.)])[ \t]+")


def _is_abbreviation(text: str) -> bool:
    """Whether a sentence "ends" on an abbreviation or initial rather than a full stop ("Inc.", "U.S.", "e.g."), or
    is the number of a list item ("1.")."""
    if re.fullmatch(r"\s*\d{1,3}[.)]", text):
        return True
    return bool(re.search(r"(?:\b(?:inc|corp|co|ltd|no|vs|approx|e\.g|i\.e|etc|mr|ms|dr|u\.s|u\.k)|\b[A-Z])\.$",
                          text.strip(), re.IGNORECASE))


# --- the check ----------------------------------------------------------------------------------------------------
def check_claims(answer: str, passages: Sequence[Passage], scorer: SupportScorer | None = None,
                 question: str = "") -> Claims:
    """Check each statement of ``answer`` against ``passages`` (the numbered sources the model was given, [1]
    first). Statements that cite nothing and hold no figure are not judged; years the question names count as
    given. ``scorer`` (optional) judges statements without amounts instead of the word overlap; whatever it
    raises goes to the caller."""
    found = [_Source(p) for p in passages]
    claims = [_judge(c.text, c.start, c.end, c.cited, c.figs, c.words, found, scorer)
              for c in _clauses(answer, len(found), question)]
    added = {n for c in claims for n in c.citations} - {n for c in claims for n in c.cited}
    return Claims(claims, [Citation(n, passages[n - 1]) for n in sorted(added)])


def support_pairs(answer: str, passages: Sequence[Passage], question: str = "") -> list[tuple[str, list[int]]]:
    """The statements a support scorer would judge (cited, without amounts, with enough words), each with the
    numbers of the passages it cites: what asking the scorer would cost is for the caller to weigh."""
    found = [_Source(p) for p in passages]
    return [(c.text, c.cited) for c in _clauses(answer, len(found), question) if _judged_by_words(c, found)]


@dataclass(frozen=True)
class _Clause:
    """A statement to judge: its text and span, the passages it cites, its figures and content words."""

    text: str
    start: int
    end: int
    cited: list[int]
    figs: list[Figure]
    words: set[str]


def _clauses(answer: str, count: int, question: str) -> Iterator[_Clause]:
    asked_years = {int(f.value) for f in figures(question) if f.year}
    for sentence in split_claims(answer):
        inherited: list[int] = []
        for start, end in split_clauses(answer, *sentence):
            text = answer[start:end]
            written = [n for n in cited_numbers(text) if 1 <= n <= count]
            cited = written or inherited  # a clause after the last citation of its sentence draws on it too
            inherited = cited
            figs = [f for f in figures(text) if not (f.year and int(f.value) in asked_years)]
            if not cited and not any(not f.year for f in figs):
                continue  # an uncited sentence without an amount: framing, not a claim about the sources
            yield _Clause(text, start, end, cited, figs, content_words(text))


def _judged_by_words(clause: _Clause, sources: list[_Source]) -> bool:
    """Whether ``_judge`` decides this clause by its words (where a support scorer is asked): as it goes."""
    if not clause.cited or any(not f.year for f in clause.figs) or len(clause.words) < MIN_WORDS:
        return False
    return all(any(s.figures.holds(f) for s in sources) for f in clause.figs)  # no year missing everywhere


class _Source:
    """A passage as the check reads it, each part worked out the first time a claim needs it (most claims are
    settled by the passages they cite)."""

    def __init__(self, passage: Passage) -> None:
        self.passage = passage

    @functools.cached_property
    def figures(self) -> PassageFigures:
        return PassageFigures(self.passage)

    @functools.cached_property
    def _words(self) -> list[str]:
        return _content_list(self.passage.text)

    @functools.cached_property
    def words(self) -> set[str]:
        return set(self._words) | content_words(self.passage.title)

    @functools.cached_property
    def pairs(self) -> set[tuple[str, str]]:
        return _pairs(self._words)


def _judge(text: str, start: int, end: int, cited: list[int], figs: list[Figure], words: set[str],
           sources: list[_Source], scorer: SupportScorer | None) -> Claim:
    def claim(citations: list[int], supported: bool | str, reason: str = "") -> Claim:
        return Claim(text, start, end, citations, cited, supported, reason)

    # Amounts decide (and the years said with them): each must be in a cited passage, or the citation goes where
    # they all are; of several citations, one whose passage holds none of them is dropped.
    amounts = [f for f in figs if not f.year]
    if amounts:
        amounts = figs
        missing = [f for f in amounts if not any(sources[n - 1].figures.holds(f) for n in cited)]
        # a figure the cited passages hold, but where they give another for what the statement speaks of
        # (only with one: the words of a statement of several figures are not each one's)
        alone = [f for f in amounts if not f.year]
        elsewhere = {f: said for f in alone if len(alone) == 1 and f not in missing
                     and (said := _said_instead(f, words, cited, sources))}
        missing += list(elsewhere)
        if not missing:
            idle = [n for n in cited if not any(sources[n - 1].figures.holds(f) for f in amounts if not f.year)]
            if idle and len(idle) < len(cited):
                return claim([n for n in cited if n not in idle], REPOINTED,
                             f"{_numbers(idle)} hold{'s' if len(idle) == 1 else ''} none of its figures: citation "
                             "dropped")
            return claim(cited, SUPPORTED)
        holders = [i for i, s in enumerate(sources, 1) if i not in cited and all(s.figures.holds(f) for f in missing)
                   and not any(_said_instead(f, words, [i], sources) for f in elsewhere)]
        if holders:  # the best-worded of the passages that hold what the cited ones lack
            best = max(holders, key=lambda i: lexical_support(words, sources[i - 1].words))
            keep = [n for n in cited if any(sources[n - 1].figures.holds(f) for f in amounts if f not in elsewhere)]
            if cited:
                reason = f"{_quote(missing)} in source [{best}], not in {_numbers(cited)}: citation re-pointed"
            else:
                reason = f"{_quote(missing)} in source [{best}]: citation added"
            return claim(keep + [best], REPOINTED, reason)
        if elsewhere:
            f, said = next(iter(elsewhere.items()))
            reason = (f"“{f.text}” is not what {_numbers(cited)} say{'s' if len(cited) == 1 else ''} for this: "
                      f"{said}")
        elif cited:
            reason = (f"{_quote(missing)} neither in the cited source{'s' if len(cited) > 1 else ''} "
                      f"{_numbers(cited)} nor in any other passage the answer was given")
        else:
            reason = f"{_quote(missing)} in none of the passages the answer was given"
        return claim(cited, UNSUPPORTED, reason)
    if not cited:
        return claim(cited, SUPPORTED)
    # Years must be somewhere among the passages; then the words decide, the cited passages first.
    years = [f for f in figs if f.year]
    absent = [f for f in years if not any(s.figures.holds(f) for s in sources)]
    if absent:
        return claim(cited, UNSUPPORTED, f"{_quote(absent)} in none of the passages the answer was given")
    if len(words) < MIN_WORDS:
        return claim(cited, SUPPORTED)
    if scorer is not None:
        return _judge_by_scorer(text, cited, years, words, sources, scorer, claim)
    scores = [lexical_support(words, s.words) for s in sources]
    best_cited = max(scores[n - 1] for n in cited)
    # another passage that says the statement far more closely takes the citation
    pairs = word_pairs(text)
    phrase = [phrase_support(words, pairs, s.words, s.pairs) for s in sources]
    cited_phrase = max(phrase[n - 1] for n in cited)
    closest = max((i for i in range(1, len(sources) + 1) if i not in cited), key=lambda i: phrase[i - 1],
                  default=None)
    if closest is not None and phrase[closest - 1] >= PHRASE_REPOINT and \
            phrase[closest - 1] - cited_phrase >= PHRASE_MARGIN:
        return claim([closest], REPOINTED, f"The statement is what source [{closest}] says, more closely than "
                     f"{_numbers(cited)}: citation re-pointed")
    if best_cited >= LEXICAL_SUPPORT and all(any(sources[n - 1].figures.holds(f) for n in cited) for f in years):
        return claim(cited, SUPPORTED)
    other = max((i for i in range(1, len(sources) + 1) if i not in cited), key=lambda i: scores[i - 1], default=None)
    if other is not None and scores[other - 1] >= LEXICAL_REPOINT and scores[other - 1] - best_cited >= LEXICAL_MARGIN \
            and all(sources[other - 1].figures.holds(f) for f in years):
        return claim([other], REPOINTED, f"The statement matches source [{other}] rather than {_numbers(cited)}: "
                     "citation re-pointed")
    if best_cited >= LEXICAL_SUPPORT:
        return claim(cited, SUPPORTED)  # a year the cited passage leaves out, but its words are there
    return claim(cited, UNSUPPORTED, f"Few of the statement's words are in {_numbers(cited)} "
                 f"({best_cited:.0%} of them), nor in another passage")


def _judge_by_scorer(text: str, cited: list[int], years: list[Figure], words: set[str], sources: list[_Source],
                     scorer: SupportScorer, claim: Callable[..., Claim]) -> Claim:
    """A statement without amounts judged by the support scorer: its cited passages first; when none supports it
    (or none holds its years), the uncited passage its words match best, which takes the citation if the scorer
    finds it supports the statement clearly better. At most one call more than the cited passages."""
    scores = scorer(text, [sources[n - 1].passage.text for n in cited])
    best_cited = max(scores)
    if best_cited >= SUPPORT_LINE and all(any(sources[n - 1].figures.holds(f) for n in cited) for f in years):
        return claim(cited, SUPPORTED)
    lexical = {i: lexical_support(words, s.words) for i, s in enumerate(sources, 1)
               if i not in cited and all(s.figures.holds(f) for f in years)}
    other = max(lexical, key=lambda i: lexical[i], default=None)
    if other is not None and lexical[other] > 0:
        score = scorer(text, [sources[other - 1].passage.text])[0]
        if score >= SUPPORT_LINE and score - best_cited >= SUPPORT_MARGIN:
            return claim([other], REPOINTED, f"The reranker finds the statement supported by source [{other}] "
                         f"({score:.0%}) rather than {_numbers(cited)} ({best_cited:.0%}): citation re-pointed")
    if best_cited >= SUPPORT_LINE:
        return claim(cited, SUPPORTED)  # a year the cited passage leaves out, but it supports the rest
    return claim(cited, UNSUPPORTED, f"The reranker finds the statement not supported by {_numbers(cited)} "
                 f"({best_cited:.0%}), nor by another passage")


def _said_instead(f: Figure, words: set[str], cited: list[int], sources: list[_Source]) -> str:
    """Where the cited passages hold ``f`` but say another figure for what the statement speaks of (its words
    lead up to that one, and are not near any place ``f`` is written), that: "source [3] gives “58”"; else ""."""
    if f.year:
        return ""
    near, best, other, where = 0, 0, "", 0
    for n in cited:
        held = sources[n - 1].figures
        n_near, n_best, n_other = held.context(f, words)
        if held.holds(f):
            near = max(near, n_near)
        if n_best > best:
            best, other, where = n_best, n_other, n
    other = re.sub(r"([$€£¥])\s+", r"\1", other)
    return f"source [{where}] gives “{other}”" if best >= CONTEXT_WORDS and best > near else ""


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(f"[{n}]" for n in numbers)


def _quote(missing: Sequence[Figure]) -> str:
    """The figures named, with their verb: "“12%” is", "“12%” and “$3 million” are"."""
    shown = [f"“{f.text}”" for f in missing[:3]]
    names = " and ".join(shown) if len(shown) <= 2 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return names + (" are" if len(shown) > 1 else " is")


def summary_line(claims: Claims) -> str:
    """One line saying how many statements could not be matched and how many citations were re-pointed ("" when
    every statement was matched where it pointed)."""
    parts = []
    if claims.unsupported:
        n = claims.unsupported
        parts.append(f"{n} statement{'s' if n > 1 else ''} could not be matched to the sources")
    if claims.repointed:
        n = claims.repointed
        parts.append(f"{n} citation{'s' if n > 1 else ''} re-pointed to the passage that supports "
                     f"{'them' if n > 1 else 'it'}")
    return ("; ".join(parts) + ".")[:1].upper() + ("; ".join(parts) + ".")[1:] if parts else ""
