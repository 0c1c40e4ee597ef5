"""Drafting a question file from the library: ``python -m rag eval QUESTIONS.jsonl --generate N``.

Passages are picked across the documents (evenly, the wordier ones of each first, one per page), and the chat model
writes one question each passage answers, with a short answer. Each draft keeps its source (file, page): the user
reads the drafts, fixes or deletes them, and the file is then a question set for ``rag eval``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Sequence

from rag.core.errors import ModelError
from rag.core.records import Passage
from rag.engine import Engine

log = logging.getLogger(__name__)

SYSTEM = ("You write test questions for a search engine over documents. Given one passage, write one question that "
          "the passage answers on its own and a reader could ask without seeing it (name the company, product or "
          "topic; no 'this passage'), and its short answer taken from the passage. Reply with JSON only: "
          '{"question": "...", "answer": "..."}')
MIN_WORDS = 40  # a passage with fewer words rarely answers a question on its own


def pick_passages(engine: Engine, count: int, doc_ids: Sequence[str] | None = None) -> list[Passage]:
    """Up to ``count`` passages, one per page, spread evenly across the documents (the wordiest pages of each)."""
    per_doc: list[list[Passage]] = []
    for doc_id in (doc_ids if doc_ids is not None else engine.store.ready_ids()):
        ids, _ = engine.store.chunk_texts(doc_id)
        found = engine.store.get_passages(ids)
        pages: dict[int, Passage] = {}
        for cid in ids:
            p = found.get(cid)
            if p is not None and len(p.text.split()) >= MIN_WORDS and \
                    len(p.text) > len(pages.get(p.page_start, p).text if p.page_start in pages else ""):
                pages[p.page_start] = p
        ranked = sorted(pages.values(), key=lambda p: -len(p.text.split()))
        if ranked:
            per_doc.append(ranked)
    picked: list[Passage] = []
    while len(picked) < count and any(per_doc):
        for ranked in per_doc:
            if ranked and len(picked) < count:
                picked.append(ranked.pop(0))
    return picked


def draft_questions(engine: Engine, count: int, doc_ids: Sequence[str] | None = None,
                    model: str | None = None) -> list[dict[str, Any]]:
    """Drafts as question-file rows (question, file, pages, answer, answerable), in the order written."""
    chat = engine.chat_for(model)
    drafts = []
    for p in pick_passages(engine, count, doc_ids):
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Passage (from {p.file_name}, page {p.page_start}):\n{p.text}"}]
        try:
            reply = chat.complete(messages, max_tokens=200)
        except ModelError as exc:
            log.warning("No question drafted for %s p. %d: %s", p.file_name, p.page_start, exc)
            continue
        parsed = parse_draft(reply)
        if parsed is None:
            log.info("Unusable draft for %s p. %d: %r", p.file_name, p.page_start, reply[:200])
            continue
        question, answer = parsed
        drafts.append({"question": question, "file": p.file_name, "pages": [p.page_start], "answer": answer,
                       "answerable": True})
    return drafts


def parse_draft(reply: str) -> tuple[str, str] | None:
    """(question, answer) from the model's reply: JSON, or "Question: … Answer: …" lines; None when neither."""
    reply = re.sub(r"<think>.*?</think>", "", reply, flags=re.DOTALL).strip()
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            question, answer = str(data.get("question", "")).strip(), str(data.get("answer", "")).strip()
            if question:
                return question, answer
        except (json.JSONDecodeError, AttributeError):
            pass
    q = re.search(r"question\s*:\s*(.+)", reply, re.IGNORECASE)
    a = re.search(r"answer\s*:\s*(.+)", reply, re.IGNORECASE)
    if q and q.group(1).strip():
        return q.group(1).strip(), a.group(1).strip() if a else ""
    return None
