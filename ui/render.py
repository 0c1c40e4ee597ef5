"""HTML for the app: answers with citation chips, the sources panel, upload progress and the status badge.

Every piece of text that comes from a PDF, a file name or the model is HTML-escaped here, so none of it can
execute or add markup; the only tags on the page are the ones written in this module.
"""

from __future__ import annotations

import re
from html import escape, unescape
from typing import Sequence

from rag.citations import cited_numbers
from rag.events import Sources
from rag.models import Citation, DocumentInfo, Health, Passage
from rag.prompts import CITATION

QUOTE_LIMIT = 1500  # characters of a passage carried by a chip, for highlighting it in the viewer
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_CHIP = re.compile(r'<span class="pw-cite[^"]*"[^>]*>.*?</span>', re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _attrs(p: Passage, number: int | None = None) -> str:
    """Attributes that let the page open ``p`` in the viewer (read by assets/viewer.js).

    The chat's HTML sanitiser keeps only ``class`` and ``title``, so the document and page ride in class names and
    the passage (also the chip's tooltip) in the title, after a first line naming file and page.
    """
    title = f"{p.file_name}, p. {p.page_start}\n{p.text[:QUOTE_LIMIT]}"
    return f'data-n="{number or 0}" title="{escape(title)}"'


def chip(c: Citation) -> str:
    """A clickable citation chip: opens the cited page in the viewer."""
    return (f'<span class="pw-cite pw-d-{escape(c.passage.doc_id)} pw-p-{c.passage.page_start}" role="button" '
            f'tabindex="0" {_attrs(c.passage, c.number)}>{c.number}</span>')


def streaming_html(text: str) -> str:
    """The answer while it streams: escaped text (chips come once the sources are known)."""
    return escape(text, quote=False)


def answer_html(text: str, sources: Sources | None) -> str:
    """The final answer: escaped text with each valid [n] turned into a chip and invented ones removed."""
    by_number = {c.number: c for c in (sources.cited if sources else [])}

    def replace(match: re.Match[str]) -> str:
        numbers = cited_numbers(match.group(0))
        return "".join(chip(by_number[n]) for n in numbers if n in by_number)

    parts, last = [], 0
    for match in CITATION.finditer(text):
        parts.append(escape(text[last:match.start()], quote=False))
        parts.append(replace(match))
        last = match.end()
    parts.append(escape(text[last:], quote=False))
    html = "".join(parts)
    if sources and sources.dropped_citations:
        n = sources.dropped_citations
        html += (f'\n\n<span class="pw-note">{n} citation{"s" if n > 1 else ""} to a source that doesn\'t exist '
                 f'{"were" if n > 1 else "was"} removed.</span>')
    return html


def plain_text(content: str) -> str:
    """An answer as rendered in the chat, back to plain text (for the conversation sent to the model)."""
    return unescape(_TAG.sub("", _CHIP.sub("", content)))


def cited_sentence(passage_text: str, answer: str, number: int) -> tuple[int, int] | None:
    """Span of the passage sentence that best matches the answer's sentences citing ``number``, or None."""
    claims = [s for s in _SENTENCE.split(answer) if number in cited_numbers(s)]
    words = {w.lower() for s in claims for w in _WORD.findall(CITATION.sub("", s)) if len(w) > 2}
    if not words:
        return None
    best, best_score, start = None, 0, 0
    for sentence in _SENTENCE.split(passage_text):
        at = passage_text.find(sentence, start)
        start = at + len(sentence) if at >= 0 else start
        score = len(words & {w.lower() for w in _WORD.findall(sentence)})
        if at >= 0 and score > best_score:
            best, best_score = (at, at + len(sentence)), score
    return best if best_score >= 2 else None


def _passage_body(p: Passage, span: tuple[int, int] | None) -> str:
    if span is None:
        return escape(p.text, quote=False)
    a, b = span
    return (escape(p.text[:a], quote=False) + "<mark>" + escape(p.text[a:b], quote=False) + "</mark>"
            + escape(p.text[b:], quote=False))


def _card(p: Passage, number: int | None, span: tuple[int, int] | None) -> str:
    badge = f'<span class="pw-num">{number}</span>' if number is not None else ""
    return (f'<div class="pw-source pw-d-{escape(p.doc_id)} pw-p-{p.page_start}" role="button" tabindex="0" '
            f'{_attrs(p, number)}>'
            f'<div class="pw-source-head">{badge}<span class="pw-file">{escape(p.file_name)}</span>'
            f'<span class="pw-page">p. {p.page_start}</span></div>'
            f'<div class="pw-passage">{_passage_body(p, span)}</div></div>')


def sources_html(sources: Sources | None, answer: str = "") -> str:
    """The sources panel: cited passages in citation order (cited sentence marked), then the others, folded."""
    if sources is None or (not sources.cited and not sources.other):
        return '<div class="pw-empty">Sources of the answer appear here. Click one to open its page.</div>'
    parts = []
    if sources.cited:
        parts.append('<div class="pw-section">Cited</div>')
        parts += [_card(c.passage, c.number, cited_sentence(c.passage.text, answer, c.number))
                  for c in sources.cited]
    else:
        parts.append('<div class="pw-section">No passage was cited</div>')
    if sources.other:
        parts.append(f'<details class="pw-other"><summary>Other retrieved passages ({len(sources.other)})</summary>')
        parts += [_card(p, None, None) for p in sources.other]
        parts.append("</details>")
    return "".join(parts)


def upload_html(states: dict[str, tuple[str, str, float]]) -> str:
    """Per-file upload progress: name → (kind, text, fraction done); kind is working, done, same or failed."""
    if not states:
        return ""
    rows = []
    for name, (kind, text, fraction) in states.items():
        bar = (f'<div class="pw-bar"><div style="width:{max(0.0, min(1.0, fraction)) * 100:.0f}%"></div></div>'
               if kind == "working" else "")
        rows.append(f'<li class="pw-up pw-{kind}"><span class="pw-up-name">{escape(name)}</span>'
                    f'<span class="pw-up-state">{escape(text)}</span>{bar}</li>')
    return '<ul class="pw-uploads">' + "".join(rows) + "</ul>"


def status_html(health: Health) -> str:
    """The status badge: ready (where the models run, which ones), models still loading, or each problem with the
    command that fixes it. Hovering says which index is in use (each embedding model has its own)."""
    note = (f"Index: {health.index}. Each embedding model has its own index: documents added with another "
            "backend or embedding model are not listed here.")
    title = f' title="{escape(note)}"' if health.index else ""
    backend = f"{escape(health.backend)} · " if health.backend else ""
    reranking = f" · reranking by {escape(health.reranker)}" if health.reranker else ""
    if health.ok:
        return (f'<div class="pw-status pw-ok"{title}><span class="pw-dot"></span>Ready · {backend}answers by '
                f"{escape(health.chat)} · embeddings by {escape(health.embedder)}{reranking}</div>")
    if not health.problems:
        items = "".join(f"<li>{escape(m, quote=False)}</li>" for m in health.loading)
        return (f'<div class="pw-status pw-busy"{title}><span class="pw-dot"></span>Starting · {backend}'
                f"the models load before the first answer<ul>{items}</ul></div>")
    items = "".join(f"<li>{_code(escape(p, quote=False))}</li>" for p in health.problems + health.loading)
    where = f" · {escape(health.backend)}" if health.backend else ""
    return f'<div class="pw-status pw-bad"{title}><span class="pw-dot"></span>Not ready{where}<ul>{items}</ul></div>'


def _code(text: str) -> str:
    """`command` spans of a message as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def library_html(docs: Sequence[DocumentInfo]) -> str:
    """The library as a table: each document's file name (its title as a tooltip), pages, chunks and when it was
    added; a hint to drop PDFs when there are none."""
    import time

    if not docs:
        return ('<div class="pw-lib-title">Library</div>'
                '<div class="pw-library-empty">No documents yet: drop PDFs above.</div>')
    rows = "".join(
        f'<tr><td class="pw-lib-name" title="{escape(d.title or d.file_name)}">{escape(d.file_name)}</td>'
        f'<td class="pw-lib-n">{d.pages}</td><td class="pw-lib-n">{d.chunks}</td>'
        f'<td class="pw-lib-date">{time.strftime("%d %b %Y", time.localtime(d.added_at))}</td></tr>'
        for d in docs)
    count = f"{len(docs)} document{'s' if len(docs) != 1 else ''}"
    return (f'<div class="pw-lib-title">Library <span>· {count}</span></div>'
            '<table class="pw-library"><thead><tr><th>Document</th><th class="pw-lib-n">Pages</th>'
            f'<th class="pw-lib-n">Chunks</th><th>Added</th></tr></thead><tbody>{rows}</tbody></table>')


def doc_label(d: DocumentInfo) -> str:
    """How a document is named in the scope and delete lists."""
    return f"{d.file_name} ({d.pages} page{'s' if d.pages != 1 else ''})"
