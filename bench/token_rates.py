"""Fit the token estimate's rates (``rag.text.tokencount``) against Qwen3's real tokenizer, and show its error.

Text: the message translations Debian ships under ``/usr/share/locale/<language>/LC_MESSAGES/*.mo`` (up to 2,000
messages of 25+ characters per language, format markers removed), for every language given. Each message is
tokenized with Qwen3's tokenizer (``--tokenizer``; the product never reads it) and each token is credited to the
run of letters, digit or punctuation where it starts; then, per language and script, ``(a, b)`` of
``max(1, a + b * letters)`` is fitted to the runs by least squares, and per script over all languages pooled.
Printed: the rates, and the estimate's error per language (on these messages, and on held-out text if
``bench/multilingual.py`` is run next).

    python bench/token_rates.py                         # the languages below
    python bench/token_rates.py --languages th hi el    # some of them
"""

from __future__ import annotations

import argparse
import bisect
import gettext
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rag.text.tokencount import _RUN, estimate_tokens  # noqa: E402

LANGUAGES = ("en de fr es it pt nl sv da nb fi hu pl cs sk sl hr lt lv et ro tr vi id ca eu gl ru uk bg sr be kk el "
             "ar fa he hi mr ne bn ta te gu pa kn ml si th km my zh_CN zh_TW ja ko ka hy").split()
_FORMAT = re.compile(r"%(\d+\$)?[-#0 +']*\d*(\.\d+)?[hlLqjzt]*[a-zA-Z%]|\{[^}]*\}|<[^>]+>|_(?=\w)|&(?=\w)")
SHARED = Path("/work/shared/evaldata")


def messages(language: str, limit: int = 2000) -> list[str]:
    """Translated messages of ``language`` (English: the original messages of the German catalogues)."""
    folder = Path("/usr/share/locale") / ("de" if language == "en" else language) / "LC_MESSAGES"
    found: set[str] = set()
    for path in sorted(folder.glob("*.mo")):
        try:
            with path.open("rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        except (OSError, UnicodeDecodeError):  # a catalogue in a legacy encoding: skipped
            continue
        for key, value in catalog.items():
            text = key if language == "en" else value
            if isinstance(text, str) and isinstance(key, str) and key:
                text = " ".join(_FORMAT.sub("", text).split())
                if len(text) >= 25:
                    found.add(text)
    out = sorted(found)
    random.Random(0).shuffle(out)
    return out[:limit]


def credited(text: str, encode) -> list[tuple[str, int, int]]:
    """(kind, characters, tokens) for each run of ``text``: each token counts for the run where it starts."""
    runs = [(m.start(), m.end(), m.lastgroup or "") for m in _RUN.finditer(text)]
    starts = [r[0] for r in runs]
    tokens = [0] * len(runs)
    for a, b in encode(text).offsets:
        while a < b and text[a].isspace():
            a += 1
        i = max(0, bisect.bisect_right(starts, a) - 1)
        if runs and runs[i][1] <= a and i + 1 < len(runs):
            i += 1
        if runs:
            tokens[i] += 1
    return [(kind, e - s, t) for (s, e, kind), t in zip(runs, tokens, strict=True)]


def fit(lengths: np.ndarray, tokens: np.ndarray) -> tuple[float, float]:
    from scipy.optimize import least_squares

    return tuple(float(x) for x in least_squares(lambda p: np.maximum(1, p[0] + p[1] * lengths) - tokens,
                                                 [0.5, 0.3], bounds=([-5, 0], [5, 5])).x)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, default=SHARED / "qwen_tokenizer" / "tokenizer.json")
    parser.add_argument("--languages", nargs="*", default=LANGUAGES)
    args = parser.parse_args()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(args.tokenizer))

    def encode(text: str):
        return tok.encode(text, add_special_tokens=False)

    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    rows = []
    for language in args.languages:
        texts = messages(language)
        if len(texts) < 200:
            continue
        runs: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for text in texts:
            for kind, n, t in credited(text, encode):
                runs[kind].append((n, t))
        for kind, pairs in runs.items():
            if kind in ("Digit", "Separator") or len(pairs) < 100:
                continue
            lengths, tokens = np.array(pairs).T
            print(f"{language:6s} {kind:11s} a={fit(lengths, tokens)[0]:+.2f} b={fit(lengths, tokens)[1]:.3f}")
            pooled[kind].append((lengths[:1500], tokens[:1500]))
        blocks = [" ".join(texts[i:i + 8]) for i in range(0, len(texts), 8)]
        real = sum(len(encode(b).ids) for b in blocks)
        rows.append((language, sum(estimate_tokens(b) for b in blocks) / real - 1))
    for kind, parts in sorted(pooled.items()):
        a, b = fit(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        print(f"script {kind:11s} a={a:+.2f} b={b:.3f}")
    print("\n| language | estimate error (current rates) |\n|---|---|")
    for language, error in rows:
        print(f"| {language} | {error:+.1%} |")


if __name__ == "__main__":
    main()
