"""Search and token counts in every language: BM25 on XQuAD, and the token estimate against Qwen3's tokenizer.

XQuAD (``--xquad``, default ../shared/evaldata/xquad) holds the same 240 Wikipedia paragraphs and 1,190 questions
in several languages. For each language, each paragraph is a document of one chunk and each question searches all
of them with ``rag.search.lexical.LexicalIndex``; the right document is the paragraph the question was asked about.
Two analyzers run in the same process on the same index code: the one before per-script analysis ("old": runs
of letters, the English stemmer and English stop words for every language) and the current one
(``rag.search.lexical.tokenize``, see ``rag.text.languages``). Reported per language: recall@1, recall@5, MRR@10.

Token estimate: for every paragraph and question of each language, ``rag.text.tokencount.estimate_tokens`` against
the exact count of Qwen3's tokenizer (``--tokenizer``, default ../shared/evaldata/qwen_tokenizer/tokenizer.json; the
product never reads it). Reported: the error of the total (estimate / real - 1), and the mean absolute error per
paragraph, for the old estimate and the current one. ``--texts DIR`` adds every ``*.txt`` file of a folder as a
"language" of its own (one paragraph per blank-line-separated block), to check scripts XQuAD lacks.

    python bench/multilingual.py                       # every XQuAD language (~3 min)
    python bench/multilingual.py --languages zh ar     # some of them
    python bench/multilingual.py --texts /tmp/samples  # also the token estimate on other text
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.search.lexical import LexicalIndex, tokenize  # noqa: E402
from rag.text.tokencount import estimate_tokens  # noqa: E402

SHARED = ROOT.parent.parent / "shared" / "evaldata"
if not SHARED.exists():
    SHARED = Path("/work/shared/evaldata")


# --- the previous analysis and estimate, kept here for comparison -------------------------------------------------
_OLD_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_OLD_ESTIMATE = re.compile(r"\d|[^\W\d_]{1,6}|[^\s\w]|_")


def old_tokenize(text: str) -> list[str]:
    """Before per-script analysis: runs of letters, English stop words and the English stemmer for every text."""
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    stop = set(STOPWORDS_EN) | {"what", "which", "who", "how", "when", "where", "why", "does", "did", "do"}
    words = [w for w in _OLD_TOKEN.findall(text.lower()) if w not in stop]
    stems = Stemmer.Stemmer("english").stemWords(words)
    return [w if w[0].isdigit() else s for w, s in zip(words, stems, strict=True)]


def old_estimate(text: str) -> int:
    """Before per-script counting: a token per digit, per six letters, per other visible character."""
    return len(_OLD_ESTIMATE.findall(text))


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """One language of XQuAD: paragraphs, and questions with the index of their paragraph."""

    language: str
    paragraphs: list[str]
    questions: list[tuple[str, int]]


def load_xquad(folder: Path, language: str) -> Collection:
    data = json.loads((folder / f"xquad.{language}.json").read_text(encoding="utf-8"))
    paragraphs: list[str] = []
    questions: list[tuple[str, int]] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            questions.extend((qa["question"], len(paragraphs)) for qa in para["qas"])
            paragraphs.append(para["context"])
    return Collection(language, paragraphs, questions)


# --- measures -----------------------------------------------------------------------------------------------------
def retrieval(col: Collection, analyzer: Callable[[str], list[str]], work: Path) -> dict[str, float]:
    """Recall@1, recall@5 and MRR@10 of BM25 with ``analyzer`` over the collection's paragraphs."""
    index = LexicalIndex(work, analyzer=analyzer)
    doc_ids = [f"p{i:04d}" for i in range(len(col.paragraphs))]
    for doc_id, text in zip(doc_ids, col.paragraphs, strict=True):
        index.add(doc_id, [f"{doc_id}:0"], [text])
    index._wait_for_merges()
    r1 = r5 = rr = 0.0
    for question, right in col.questions:
        found = [cid.split(":")[0] for cid, _ in index.search(question, 10, doc_ids)]
        rank = found.index(doc_ids[right]) + 1 if doc_ids[right] in found else 0
        r1 += rank == 1
        r5 += 0 < rank <= 5
        rr += 1 / rank if rank else 0.0
    n = len(col.questions)
    return {"r1": r1 / n, "r5": r5 / n, "mrr": rr / n}


def estimate_error(texts: Sequence[str], real: Callable[[str], int],
                   estimate: Callable[[str], int]) -> tuple[float, float]:
    """(error of the total, mean absolute error per text) of ``estimate`` against ``real``."""
    pairs = [(estimate(t), real(t)) for t in texts if t.strip()]
    total = sum(e for e, _ in pairs) / max(1, sum(r for _, r in pairs)) - 1
    mean = sum(abs(e / r - 1) for e, r in pairs if r) / max(1, len(pairs))
    return total, mean


def qwen_counter(path: Path) -> Callable[[str], int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def text_samples(folder: Path) -> dict[str, list[str]]:
    """``name -> paragraphs`` of every ``*.txt`` in ``folder`` (blocks separated by blank lines)."""
    out = {}
    for path in sorted(folder.glob("*.txt")):
        blocks = [b.strip() for b in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if b.strip()]
        out[path.stem] = blocks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xquad", type=Path, default=SHARED / "xquad")
    parser.add_argument("--tokenizer", type=Path, default=SHARED / "qwen_tokenizer" / "tokenizer.json")
    parser.add_argument("--languages", nargs="*", help="XQuAD language codes (default: every file there)")
    parser.add_argument("--texts", type=Path, help="a folder of *.txt samples for the token estimate")
    parser.add_argument("--no-search", action="store_true", help="only the token estimate")
    args = parser.parse_args()

    languages = args.languages or sorted(p.name.split(".")[1] for p in args.xquad.glob("xquad.*.json"))
    real = qwen_counter(args.tokenizer) if args.tokenizer.exists() else None
    rows = []
    for language in languages:
        col = load_xquad(args.xquad, language)
        row: dict[str, object] = {"language": language, "questions": len(col.questions)}
        if not args.no_search:
            with tempfile.TemporaryDirectory() as tmp:
                row["old"] = retrieval(col, old_tokenize, Path(tmp) / "old")
                row["new"] = retrieval(col, tokenize, Path(tmp) / "new")
        if real is not None:
            texts = col.paragraphs + [q for q, _ in col.questions]
            row["estimate_old"] = estimate_error(texts, real, old_estimate)
            row["estimate_new"] = estimate_error(texts, real, estimate_tokens)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    samples = text_samples(args.texts) if args.texts else {}
    for name, texts in samples.items():
        if real is not None:
            rows.append({"language": name, "estimate_old": estimate_error(texts, real, old_estimate),
                         "estimate_new": estimate_error(texts, real, estimate_tokens)})
    print(report(rows))


def report(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    lines = ["| language | BM25 recall@1 old → new | recall@5 old → new | MRR@10 old → new "
             "| token estimate error old → new (total; mean per text) |",
             "|---|---|---|---|---|"]
    for row in rows:
        cells = [row["language"]]
        for key in ("r1", "r5", "mrr"):
            cells.append(f"{row['old'][key]:.3f} → {row['new'][key]:.3f}" if "new" in row else "")
        if "estimate_new" in row:
            (old_total, old_mean), (new_total, new_mean) = row["estimate_old"], row["estimate_new"]
            cells.append(f"{old_total:+.1%}; {old_mean:.1%} → {new_total:+.1%}; {new_mean:.1%}")
        else:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
