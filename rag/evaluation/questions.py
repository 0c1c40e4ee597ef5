"""The question file of ``rag eval``: JSON Lines, one question a line.

Each line: ``question`` (required); ``file`` (optional: the document it is about, by file name or id: the search is
scoped to it); ``pages`` (the evidence pages, 1-based); ``answer`` (a reference answer); ``answerable`` (default
true: false marks a question the documents can't answer, which a good answer refuses). ``id`` is optional.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.core.errors import RagError


class QuestionFileError(RagError):
    """The question file can't be read or a line of it is not a question; the message names the line."""


@dataclass(frozen=True)
class EvalQuestion:
    """One question of a question file (see the module's docstring)."""

    id: str
    question: str
    file: str | None = None
    pages: list[int] = field(default_factory=list)
    answer: str = ""
    answerable: bool = True


def load_questions(path: Path) -> list[EvalQuestion]:
    """The questions of a JSONL file; a bad line raises QuestionFileError naming it and what to fix."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionFileError(f"Can't read the question file {path}: {exc.strerror or exc}.") from exc
    out: list[EvalQuestion] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path.name}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{where} is not JSON ({exc.msg}). Each line must be one object such as "
                                    '{"question": "...", "pages": [3], "answer": "..."}.') from exc
        if not isinstance(row, dict) or not str(row.get("question") or "").strip():
            raise QuestionFileError(f'{where} has no "question". Each line needs at least {{"question": "..."}}.')
        pages = row.get("pages") or []
        if isinstance(pages, int):
            pages = [pages]
        if not isinstance(pages, list) or not all(isinstance(p, int) and p >= 1 for p in pages):
            raise QuestionFileError(f'{where}: "pages" must be a list of page numbers counted from 1, like [3, 4].')
        answerable = row.get("answerable", True)
        if not isinstance(answerable, bool):
            raise QuestionFileError(f'{where}: "answerable" must be true or false.')
        text = str(row["question"]).strip()
        qid = str(row.get("id") or hashlib.sha256(f"{text}\n{row.get('file') or ''}".encode()).hexdigest()[:12])
        if qid in seen:
            raise QuestionFileError(f"{where} repeats the question (or id) of an earlier line: give it an \"id\".")
        seen.add(qid)
        out.append(EvalQuestion(qid, text, str(row["file"]) if row.get("file") else None, sorted(set(pages)),
                                str(row.get("answer") or ""), answerable))
    if not out:
        raise QuestionFileError(f"{path} holds no questions. Each line must be one object such as "
                                '{"question": "...", "file": "report.pdf", "pages": [3], "answer": "..."}.')
    return out
