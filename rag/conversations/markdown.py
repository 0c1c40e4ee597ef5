"""Answers and conversations as Markdown to take away: each citation stays a [n] and every source is listed with
its file, page and the passage quoted, so the text still says where each claim comes from outside the app."""

from __future__ import annotations

import re
import time
from typing import Collection, Sequence

from rag.answering.citations import cited_numbers, cited_sentence
from rag.answering.claims import summary_line
from rag.answering.prompts import CITATION
from rag.conversations.chats import ChatMessage, Conversation
from rag.core.events import Claims, Sources
from rag.core.records import Citation

QUOTE_CHARS = 600  # characters of a passage quoted under its source
_ESCAPE = re.compile(r"([\\`*_\[\]<>|])")
_BLOCK_START = re.compile(r"^([#+\-=]|\d+[.)])")
_SPACED_CITATION = re.compile(r"([ \t]*)" + CITATION.pattern, CITATION.flags)  # a dropped one takes its space


def answer_markdown(answer: str, sources: Sources | None, error: str | None = None,
                    removed: Collection[str] = (), claims: Claims | None = None) -> str:
    """An answer as Markdown: its text with the citations that name a source (the others dropped), a note when it
    was cut short, what the claim check found (``claims``: each statement re-pointed or not matched, with why),
    then the cited sources (file, page, quoted passage). ``removed``: ids of documents no longer in the library
    (their sources say so)."""
    cited = {c.number: c for c in (sources.cited if sources else [])}
    parts = [_citations_kept(answer, set(cited)).strip()]
    if error:
        parts.append(f"*{escape_markdown(error)}*")
    if claims and summary_line(claims):
        flagged = [c for c in claims.claims if c.supported is not True]
        parts.append(f"*{summary_line(claims)}*\n\n" + "\n".join(
            f"- {escape_markdown(c.text)} — {escape_markdown(c.reason)}" for c in flagged))
        cited.update({c.number: c for c in claims.added if c.number not in cited})
    if cited:
        parts.append("**Sources**\n\n" + "\n".join(_source(c, answer, c.passage.doc_id in removed)
                                                  for c in cited.values()))
    return "\n\n".join(p for p in parts if p) + "\n"


def conversation_markdown(chat: Conversation, messages: Sequence[ChatMessage], removed: Collection[str] = ()) -> str:
    """A whole conversation as Markdown: its title and date, then each question and its answer with sources."""
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created_at))
    parts = [f"# {escape_markdown(chat.title)}", f"Conversation with Pagewise, started {started}."]
    for m in messages:
        if m.role == "user":
            parts.append("---")
            parts.append("**Question:** " + m.content.strip())
        else:
            parts.append("**Answer:**\n\n" + answer_markdown(m.content, m.sources, m.error, removed,
                                                             m.claims).strip())
    return "\n\n".join(parts) + "\n"


def file_name(chat: Conversation) -> str:
    """A file name for a conversation's Markdown: ``pagewise-<title in a few words>.md``."""
    slug = re.sub(r"[^\w]+", "-", chat.title.lower(), flags=re.UNICODE).strip("-")
    if len(slug) > 60:
        slug = slug[:61].rsplit("-", 1)[0]  # whole words
    return f"pagewise-{slug or 'conversation'}.md"


def _citations_kept(answer: str, valid: set[int]) -> str:
    """``answer`` with each citation rewritten to the numbers that name a source ("[1, 7]" → "[1]")."""
    def keep(match: re.Match[str]) -> str:
        numbers = [n for n in cited_numbers(match.group(0)) if n in valid]
        return f"{match.group(1)}[{', '.join(map(str, numbers))}]" if numbers else ""

    return _SPACED_CITATION.sub(keep, answer)


def _source(c: Citation, answer: str, removed: bool) -> str:
    p = c.passage
    note = " (since removed from the library)" if removed else ""
    return f"- **[{c.number}]** {_code(p.file_name)}, page {p.page_name}{note}\n  > {_quote(p.text, answer, c.number)}"


def _quote(text: str, answer: str, number: int) -> str:
    """The passage on one line, from the sentence the answer cites (when it can be told) for QUOTE_CHARS."""
    span = cited_sentence(text, answer, number)
    start = span[0] if span else 0
    flat = " ".join(text[start:].split())
    cut = flat if len(flat) <= QUOTE_CHARS else flat[:QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    return ("… " if start > 0 else "") + _BLOCK_START.sub(r"\\\1", escape_markdown(cut))


def escape_markdown(text: str) -> str:
    """Text from a PDF or a model, with the characters Markdown would read as markup escaped."""
    return _ESCAPE.sub(r"\\\1", text)


def _code(name: str) -> str:
    """A file name as inline code (longer backtick fences when the name holds backticks)."""
    fence = "`" * (max((len(r) for r in re.findall(r"`+", name)), default=0) + 1)
    pad = " " if name.startswith("`") or name.endswith("`") else ""
    return f"{fence}{pad}{name}{pad}{fence}"
