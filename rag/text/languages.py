"""Writing systems and languages: how lexical search cuts text of any script into terms.

Every text (a chunk, a question, a title) goes through the same steps, so a question and the passage that answers
it meet on the same terms:

1. Normalise: Unicode NFKC (full-width Latin and digits, ligatures, Kangxi radicals and Arabic presentation forms
   become plain letters; so do the CJK radicals some PDF fonts put for common characters), case folded (``ß`` →
   ``ss``, final ``ς`` → ``σ``), every script's digits read as ASCII digits (``٢٠١٩`` is ``2019``), Arabic tatweel
   and invisible joiners dropped.
2. Cut into runs by script: numbers (kept whole with their separators: ``1,204.5``); Chinese and Japanese (Han and
   kana, written without spaces) and Korean (Hangul) become overlapping character bigrams, as Lucene's CJK analyzer
   does (a lone character stays a unigram); Thai, Lao, Khmer and Burmese (no spaces between words either) become
   bigrams of characters with their combining vowel and tone marks; every other script is read as words of letters
   *and combining marks*, so Devanagari, Tamil or Arabic words with vowel signs stay whole. A line break inside a
   Chinese or Japanese sentence (a PDF's line wrap) joins the characters around it.
3. Stop words and stemming per language: a word is stemmed (Snowball, through PyStemmer) and its stop words are
   dropped only in the language it belongs to. The text's language is guessed by ``py3langid`` (a small
   naive-Bayes detector over 97 languages); when it is sure enough (``DETECT_CONFIDENCE``, or ``UNSURE_FLOOR``
   for a guess of a language Snowball stems), the words of the text's main script (the word script with the most
   letters) take that language's stemmer and stop words, or none if Snowball has no stemmer for it (Vietnamese,
   Hebrew, Ukrainian...). Words of other scripts, and every word of a text the detector is unsure
   about (a few keywords), take their script's usual language: English for Latin (so an English term inside a
   Chinese sentence is stemmed as English), Russian for Cyrillic, Arabic, Greek, Hindi for Devanagari, Armenian,
   Tamil; other scripts are not stemmed.

``analyze(text)`` does all of it; ``analyze(text, detect_language=False)`` skips the detector and uses the
scripts' usual languages, for text too short to tell (titles), on both sides of a comparison.
"""

from __future__ import annotations

import logging
import sys
import threading
import unicodedata
from functools import cache, lru_cache
from typing import Any

import regex

log = logging.getLogger(__name__)

DETECT_CONFIDENCE = 0.5  # the detector's probability needed to trust its guess over the script's usual language
UNSURE_FLOOR = 0.2  # below DETECT_CONFIDENCE, a guess of a language with a stemmer still counts above this

# The language a script's words are stemmed in when the text's language isn't known (Snowball's names).
SCRIPT_LANGUAGE = {"latin": "english", "cyrillic": "russian", "greek": "greek", "arabic": "arabic",
                   "devanagari": "hindi", "armenian": "armenian", "tamil": "tamil"}

# py3langid's language codes -> Snowball stemmers (languages missing here are not stemmed).
SNOWBALL = {"en": "english", "de": "german", "es": "spanish", "fr": "french", "it": "italian", "pt": "portuguese",
            "nl": "dutch", "sv": "swedish", "no": "norwegian", "nn": "norwegian", "da": "danish", "fi": "finnish",
            "hu": "hungarian", "ro": "romanian", "tr": "turkish", "id": "indonesian", "ms": "indonesian",
            "ga": "irish", "lt": "lithuanian", "ca": "catalan", "eu": "basque", "cs": "czech", "pl": "polish",
            "et": "estonian", "eo": "esperanto", "ru": "russian", "sr": "serbian", "hr": "serbian",
            "bs": "serbian", "el": "greek", "ar": "arabic", "arz": "arabic", "ary": "arabic", "fa": "persian",
            "hi": "hindi", "ne": "nepali", "ta": "tamil", "hy": "armenian", "st": "sesotho"}

# Stop words bm25s ships, by Snowball language (other languages keep theirs: BM25's idf weighs them down anyway).
_STOPWORD_LISTS = {"english": "STOPWORDS_EN", "german": "STOPWORDS_GERMAN", "spanish": "STOPWORDS_SPANISH",
                   "french": "STOPWORDS_FRENCH", "italian": "STOPWORDS_ITALIAN", "portuguese": "STOPWORDS_PORTUGUESE",
                   "dutch": "STOPWORDS_DUTCH", "swedish": "STOPWORDS_SWEDISH", "norwegian": "STOPWORDS_NORWEGIAN",
                   "danish": "STOPWORDS_DANISH", "russian": "STOPWORDS_RUSSIAN", "turkish": "STOPWORDS_TURKISH"}
_QUESTION_WORDS_EN = {"what", "which", "who", "how", "when", "where", "why", "does", "did", "do"}

_UNSPACED_LANGUAGES = frozenset({"zh", "wuu", "yue", "ja", "ko", "th", "lo", "km", "my"})
_SPACELESS = r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc\u3005"  # with the prolonged sound mark and the iteration mark
_WORD_SCRIPTS = ("latin", "cyrillic", "greek", "arabic", "devanagari", "armenian", "tamil")
_TOKEN = regex.compile(
    r"(?P<number>\d+(?:[.,]\d+)*)"
    rf"|(?P<cjk>[{_CJK}]+)"
    r"|(?P<hangul>\p{Hangul}+)"
    rf"|(?P<spaceless>[{_SPACELESS}]+)"
    + "".join(rf"|(?P<{s}>\p{{{s}}}[\p{{{s}}}\p{{M}}]*)" for s in _WORD_SCRIPTS)
    + rf"|(?P<other>[\p{{L}}--[{_CJK}\p{{Hangul}}{_SPACELESS}]][\p{{L}}\p{{M}}--[{_CJK}\p{{Hangul}}{_SPACELESS}]]*)",
    regex.V1,
)
_WRAPPED = regex.compile(rf"(?<=[{_CJK}])[ \t]*\n[ \t]*(?=[{_CJK}])")  # a line wrapped inside a CJK sentence
_CLUSTER = regex.compile(r"\P{M}\p{M}*")  # a letter with its combining marks
_DROP = dict.fromkeys(map(ord, "\u0640\u00ad\u200b\u200c\u200d\u2060\ufeff"))  # tatweel, soft hyphen, joiners
# CJK radicals that PDF fonts (Noto CJK among them) map some common characters to, as the characters they stand
# for (Unicode's EquivalentUnifiedIdeograph; NFKC maps the Kangxi radicals, not these): "增⻓" is "增长".
_RADICALS = ("⺁厂⺇几⺊卜⺌小⺎兀⺐尢⺒巳⺓幺⺖忄⺘扌⺙攵⺛旡⺝月⺞歺⺟母⺠民⺡氵⺢氺⺣灬⺤爫"
             "⺦丬⺨犭⺩王⺪疋⺫罒⺬示⺭礻⺮竹⺯糸⺰纟⺲罒⺶羊⺷羊⺹耂⺺肀⺻聿⺼月⺽臼⺾艹⺿艹"
             "⻀艹⻁虎⻂衤⻃覀⻄西⻅见⻆角⻈讠⻉贝⻋车⻌辶⻍辶⻎辶⻏阝⻐钅⻑長⻓长⻔门⻖阝⻗雨"
             "⻘青⻙韦⻚页⻛风⻜飞⻝食⻟飠⻠饣⻢马⻣骨⻤鬼⻥鱼⻦鸟⻧卤⻨麦⻩黄⻪黾⻫斉⻬齐⻭歯"
             "⻮齿⻯竜⻰龙⻱龜⻲亀⻳龟")


RADICALS = {ord(_RADICALS[i]): _RADICALS[i + 1] for i in range(0, len(_RADICALS), 2)}  # for str.translate


@lru_cache(maxsize=1)
def _digits() -> dict[int, int | None]:
    """Every decimal digit of every script, as its ASCII digit; CJK radicals as their characters; and the
    characters normalising drops."""
    table: dict[int, int | None] = dict(_DROP)
    table.update((code, ord(char)) for code, char in RADICALS.items())
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) == "Nd":
            table[code] = ord("0") + unicodedata.digit(char)
    return table


def normalize(text: str) -> str:
    """NFKC, case folded, digits in ASCII, tatweel and invisible joiners removed."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_digits())


def bigrams(units: list[str]) -> list[str]:
    """Overlapping pairs of ``units`` (a single unit stays alone)."""
    if len(units) < 2:
        return units
    return [a + b for a, b in zip(units, units[1:], strict=False)]


# --- languages ----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        log.warning("py3langid is not installed; lexical search stems every Latin word as English "
                    "(pip install py3langid)")
        return None
    try:
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    except MemoryError:  # its model takes ~80 MB: a process under a tight memory cap goes on by script alone
        log.warning("Not enough memory to load the language detector; languages are told by their script only")
        return None


_detect_lock = threading.Lock()


def _classify(text: str) -> tuple[str, float] | None:
    identifier = _identifier()
    if identifier is None or not text.strip():
        return None
    with _detect_lock:  # the identifier keeps no state, but numpy scratch space is cheaper to share than to copy
        code, probability = identifier.classify(text)
    return code, float(probability)


def guess(text: str) -> str | None:
    """The detector's best guess at the language of ``text`` (py3langid's code), however unsure."""
    found = _classify(text)
    return found[0] if found else None


def detect(text: str) -> str | None:
    """The language of ``text`` (py3langid's code), or None when the detector can't tell.

    The detector's best guess counts when it is sure enough (``DETECT_CONFIDENCE``), and below that still when
    it names a language Snowball can stem (a short question is often unsure between its language and a close
    one); an unsure guess of a language without a stemmer (Bulgarian for a Russian question, Latin for two
    English keywords) leaves the text to its scripts' usual languages.
    """
    found = _classify(text)
    if found is None:
        return None
    code, probability = found
    return code if probability >= DETECT_CONFIDENCE or (code in SNOWBALL and probability >= UNSURE_FLOOR) else None


@cache
def _available() -> frozenset[str]:
    try:
        import Stemmer
    except ImportError:  # stemming is a quality boost, not a requirement
        log.warning("PyStemmer is not installed; lexical search runs without stemming (pip install PyStemmer)")
        return frozenset()
    return frozenset(Stemmer.algorithms())


_local = threading.local()  # a PyStemmer object must not be shared between threads


def _stemmer(language: str) -> Any:
    stemmers = _local.__dict__.setdefault("stemmers", {})
    if language not in stemmers:
        import Stemmer

        stemmers[language] = Stemmer.Stemmer(language)
    return stemmers[language]


@cache
def stopwords(language: str | None) -> frozenset[str]:
    """The stop words dropped from ``language``'s words (Snowball's name; empty when there is no list)."""
    name = _STOPWORD_LISTS.get(language or "")
    if name is None:
        return frozenset()
    import bm25s.stopwords

    words = frozenset(normalize(w) for w in getattr(bm25s.stopwords, name))
    return words | _QUESTION_WORDS_EN if language == "english" else words


def _stem(words: list[str], language: str | None) -> list[str]:
    """Each word stemmed in ``language`` (as it is if it has no stemmer); "" for its stop words."""
    stop = stopwords(language)
    kept = [w for w in words if w not in stop]
    if language in _available() and kept:
        kept = _stemmer(language).stemWords(kept)
    stems = iter(kept)
    return ["" if w in stop else next(stems) for w in words]


# --- analysis -----------------------------------------------------------------------------------------------------
def analyze(text: str, detect_language: bool = True) -> list[str]:
    """The search terms of ``text``, in order (see the module notes)."""
    text = _WRAPPED.sub("", normalize(text))
    terms: list[str] = []
    words: dict[str, list[tuple[int, str]]] = {}  # script -> (position in terms, word)
    letters: dict[str, int] = {}
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup or "", match.group()
        if kind == "number":
            terms.append(token)
        elif kind in ("cjk", "hangul"):
            terms.extend(bigrams(list(token)))
            letters[kind] = letters.get(kind, 0) + len(token)
        elif kind == "spaceless":
            terms.extend(bigrams(_CLUSTER.findall(token)))
            letters[kind] = letters.get(kind, 0) + len(token)
        else:
            words.setdefault(kind, []).append((len(terms), token))
            terms.append("")  # filled in once the word's language is known
            letters[kind] = letters.get(kind, 0) + len(token)
    if not words:
        return terms
    language = detect(text) if detect_language else None
    # The detected language's words are those of its script: the word script with the most letters (none for a
    # language written in Han, kana, Hangul or Thai-like scripts, whose Latin words are then read as English).
    scripts = {k: n for k, n in letters.items() if k in words}
    main = max(scripts, key=scripts.__getitem__) if language and language not in _UNSPACED_LANGUAGES else None
    for script, found in words.items():
        stems = _stem([w for _, w in found], SNOWBALL.get(language or "") if script == main
                      else SCRIPT_LANGUAGE.get(script))
        for (at, _), term in zip(found, stems, strict=True):
            terms[at] = term
    return [t for t in terms if t]
