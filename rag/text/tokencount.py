"""Qwen3 token counts without the tokenizer: the estimate behind chunk sizes, prompt budgets and reranker cuts.

Qwen3's byte-level BPE cuts text into letter runs, single digits and punctuation before merging bytes, and how
many tokens a run of letters takes depends on how well its language is covered by the vocabulary: an English
word is about one token whatever its length, a German or Finnish one grows with its length, a Greek or Hindi
word takes about a token per letter, a Chinese clause about 0.6 per character. So the estimate counts:

- every digit as one token, every run of punctuation, of line breaks or of several spaces as 1.1;
- every run of letters (with their combining marks) of ``n`` characters as ``max(1, a + b * n)`` tokens, with
  ``(a, b)`` fitted for the run's script in the text's language where it is known, else for the script.

The text's language comes from the caller (a page's language, guessed once for the whole page) or, when not
given, from ``rag.text.languages.guess``; Chinese is further told apart as simplified or traditional by its most common
characters. Letters of Latin script in a text of another script (terms, names, code) are counted as English.

The rates were fitted (``bench/token_rates.py``) against Qwen3's tokenizer on the message translations of 57
languages that Debian ships under ``/usr/share/locale``, and checked on XQuAD's Wikipedia paragraphs
(``bench/multilingual.py``): the total is within a few percent in each language checked, a single paragraph
within about 10%.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import regex

from rag.text.languages import guess

SEPARATOR = 1.1  # tokens per run of punctuation or line breaks (Qwen3 merges some with their neighbours)
_OTHER = (0.7, 1.0)  # letters of a script not listed: about a token each, as for most scripts Qwen3 covers thinly

# (a, b): a run of n letters of the script takes max(1, a + b * n) tokens, when its language isn't known.
SCRIPT_RATES = {
    "Latin": (0.25, 0.274), "Cyrillic": (0.59, 0.438), "Greek": (0.17, 0.979), "Arabic": (0.6, 0.423),
    "Hebrew": (0.24, 0.418), "Armenian": (0.92, 0.984), "Georgian": (0.74, 1.011), "Devanagari": (0.72, 0.97),
    "Bengali": (0.83, 1.048), "Gurmukhi": (0.43, 1.765), "Gujarati": (0.6, 1.652), "Tamil": (1.28, 1.056),
    "Telugu": (0.27, 1.668), "Kannada": (0.49, 1.487), "Malayalam": (1.15, 1.3), "Sinhala": (1.07, 1.471),
    "Thai": (0.89, 0.526), "Khmer": (0.3, 1.166), "Myanmar": (0.38, 1.577), "Han": (1.03, 0.586),
    "Hangul": (0.58, 0.631),
}
# The same for the main script of a text in a known language (py3langid's codes; zh-hant: traditional Chinese).
LANGUAGE_RATES = {
    "en": (-0.41, 0.182), "de": (-0.19, 0.302), "fr": (0.5, 0.165), "es": (0.36, 0.188), "it": (0.29, 0.22),
    "pt": (0.44, 0.199), "nl": (-0.05, 0.307), "sv": (0.23, 0.291), "da": (0.2, 0.305), "no": (0.08, 0.322),
    "fi": (0.21, 0.372), "hu": (-0.08, 0.453), "pl": (0.13, 0.34), "cs": (0.43, 0.397), "sk": (0.39, 0.398),
    "sl": (0.3, 0.37), "hr": (0.31, 0.352), "lt": (0.62, 0.354), "lv": (0.25, 0.457), "et": (0.35, 0.354),
    "ro": (0.36, 0.29), "tr": (0.26, 0.311), "vi": (0.62, 0.16), "id": (-0.07, 0.304), "ca": (0.53, 0.226),
    "eu": (0.38, 0.333), "gl": (0.55, 0.197),
    "ru": (0.31, 0.288), "uk": (0.38, 0.465), "bg": (0.41, 0.412), "sr": (0.62, 0.449), "be": (0.25, 0.557),
    "kk": (1.21, 0.51),
    "ar": (0.29, 0.394), "fa": (0.36, 0.589), "he": (0.22, 0.426), "el": (0.14, 0.981),
    "hi": (0.61, 0.98), "mr": (0.8, 0.961), "ne": (0.85, 0.949),
    "zh": (0.67, 0.595), "zh-hant": (0.9, 0.736), "ja": (0.85, 0.559), "ko": (0.64, 0.61),
}
_ALIASES = {"nn": "no", "nb": "no", "bs": "hr", "ms": "id", "arz": "ar", "ary": "ar", "wuu": "zh", "yue": "zh-hant"}

_SCRIPTS = [s for s in SCRIPT_RATES if s != "Han"]
_RUN = regex.compile(
    r"(?P<Han>[\p{Han}\p{Hiragana}\p{Katakana}\u30fc]+)"  # Japanese kana runs on with kanji, as Qwen3 reads them
    + "".join(rf"|(?P<{s}>\p{{{s}}}[\p{{{s}}}\p{{M}}]*)" for s in _SCRIPTS)
    + r"|(?P<Other>\p{L}[\p{L}\p{M}]*)"
    + r"|(?P<Digit>\p{N})"
    + r"|(?P<Separator>[^\s\p{L}\p{N}\p{M}]+[\r\n]*|[\r\n]+|[ \t]{2,})"
)
_TRADITIONAL = frozenset("們這個為說會來時對後與國學點還關開發經過頁東車長門問見單無現實體產業區當從應將機動樣")
_SIMPLIFIED = frozenset("们这个为说会来时对后与国学点还关开发经过页东车长门问见单无现实体产业区当从应将机动样")


def language_of(text: str) -> str | None:
    """The language whose rates count ``text`` (see ``estimate_tokens``), or None for the scripts' rates."""
    code = guess(text)
    code = _ALIASES.get(code or "", code)
    if code == "zh" and sum(c in _TRADITIONAL for c in text) > sum(c in _SIMPLIFIED for c in text):
        code = "zh-hant"
    return code if code in LANGUAGE_RATES else None


def estimate_tokens(text: str, language: str | None = "") -> int:
    """About how many Qwen3 tokens ``text`` takes; ``language`` (a code of ``LANGUAGE_RATES``) if it is known,
    None to use the scripts' rates, "" (default) to guess it from the text."""
    return whole(estimate(text, language))


def whole(tokens: float) -> int:
    """An estimate as a whole number of tokens, rounded to a millionth first, so that the same pieces added up in
    another order (``estimate`` of a text, or the sum of its parts') round alike."""
    return round(round(tokens, 6))


def estimate(text: str, language: str | None = "") -> float:
    """``estimate_tokens`` before rounding: the estimates of two texts add up to the estimate of the two joined
    (at a space or a line break), which a splitter that sums its pieces' sizes needs."""
    if language == "":
        language = language_of(text) if len(text) > 1 else None
    return _count(text, _rates(language))


@lru_cache(maxsize=64)
def _rates(language: str | None) -> dict[str, tuple[float, float]]:
    """Rates per script for a text in ``language``: its own for its main script, English for Latin letters."""
    rates = {**SCRIPT_RATES, "Latin": LANGUAGE_RATES["en"]}
    own = LANGUAGE_RATES.get(language or "")
    if own is not None:
        main = _RUN.search(_SAMPLES.get(language or "", "a"))
        rates[main.lastgroup if main and main.lastgroup else "Latin"] = own
    return rates


# A letter of each listed language's main script, where it isn't Latin.
_SAMPLES = {"ru": "д", "uk": "д", "bg": "д", "sr": "д", "be": "д", "kk": "д", "ar": "ب", "fa": "ب", "he": "ב",
            "el": "α", "hi": "क", "mr": "क", "ne": "क", "zh": "中", "zh-hant": "中", "ja": "中", "ko": "한"}


def _count(text: str, rates: dict[str, tuple[float, float]]) -> float:
    total = 0.0
    for match in _RUN.finditer(text):
        kind = match.lastgroup
        if kind == "Digit":
            total += 1
        elif kind == "Separator":
            total += SEPARATOR
        else:
            a, b = rates.get(kind or "", _OTHER)
            total += max(1.0, a + b * (match.end() - match.start()))
    return total


# --- counts kept per text -------------------------------------------------------------------------------------
# A passage's text is counted once (at ingestion, where the store keeps the count with the chunk, or the first time
# a prompt quotes it) and each later prompt adds up the counts of its pieces instead of counting the whole prompt
# again: a prompt of six passages is ~15,000 characters, which take ~6 ms to count and ~0.01 ms to add up.
_KNOWN_LIMIT = 4096  # texts; about 10 MB of passage text at most
_PREFIX = 48  # characters that file a kept text under its beginning, to find it inside a longer text
_known: dict[str, tuple[str | None, float]] = {}
_starting: dict[str, list[str]] = {}  # the first _PREFIX characters -> kept texts that begin with them
_known_lock = threading.Lock()


def remember(text: str, language: str | None, tokens: float) -> None:
    """Keep ``text``'s language and ``estimate(text, language)`` (as the store has them for a stored chunk), so
    ``counted`` returns them without counting again."""
    with _known_lock:
        if _known.pop(text, None) is None:
            _starting.setdefault(text[:_PREFIX], []).append(text)
        _known[text] = (language, tokens)
        while len(_known) > _KNOWN_LIMIT:
            oldest = next(iter(_known))  # the oldest first
            del _known[oldest]
            same = _starting[oldest[:_PREFIX]]
            same.remove(oldest)
            if not same:
                del _starting[oldest[:_PREFIX]]


def forget() -> None:
    """Drop every kept count (as a restart does)."""
    with _known_lock:
        _known.clear()
        _starting.clear()


def counted(text: str) -> tuple[str | None, float]:
    """``text``'s language (as ``language_of``) and ``estimate(text, language)``: kept from an earlier call or
    ``remember``, else worked out now and kept. A text that continues a kept one (a page's chunks joined into one
    passage) is counted in the kept one's language, and only from near its end on."""
    found = _known.get(text)
    if found is None:
        found = _continued(text) or measure(text)
        remember(text, *found)
    return found


def measure(text: str) -> tuple[str | None, float]:
    """``text``'s language (as ``language_of``) and ``estimate(text, language)``, worked out now."""
    language = language_of(text) if len(text) > 1 else None
    return language, _count(text, _rates(language))


def _continued(text: str) -> tuple[str | None, float] | None:
    """(language, estimate) of ``text`` from the longest kept text it begins with, if any: the count of that text
    up to a single space near its end (where no run of the estimate crosses), plus the count of the rest."""
    with _known_lock:
        heads = [t for t in _starting.get(text[:_PREFIX], ()) if len(t) < len(text) and text.startswith(t)]
        head = max(heads, key=len, default=None)
        known = _known.get(head) if head is not None else None
    if head is None or known is None:
        return None
    language, tokens = known
    rates = _rates(language)
    for cut in range(len(head) - 1, max(1, len(head) - 200), -1):
        if text[cut - 1] == " " and not text[cut - 2].isspace() and not text[cut].isspace():
            return language, tokens - _count(head[cut:], rates) + _count(text[cut:], rates)
    return language, _count(text, rates)


def estimate_in(text: str, language: str | None) -> float:
    """``estimate(text, language)`` for a known language (None: the scripts' rates), never guessing it."""
    return _count(text, _rates(language))


def separates(text: str) -> bool:
    """True when a line break put right after ``text`` joins its last run (punctuation, a line break) instead of
    counting as a run of its own: ``estimate(text + "\\n")`` is then ``estimate(text)``, else that plus
    ``SEPARATOR``, for any language."""
    return bool(text) and (text[-1] in "\r\n" or _PUNCTUATION.fullmatch(text[-1]) is not None)


_PUNCTUATION = regex.compile(r"[^\s\p{L}\p{N}\p{M}]")
