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
    return round(estimate(text, language))


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
