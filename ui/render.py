"""HTML for the app: answers with citation chips, the sources panel, upload progress and the status badge.

Every piece of text that comes from a PDF, a file name or the model is HTML-escaped here, so none of it can
execute or add markup; the only tags on the page are the ones written in this module.
"""

from __future__ import annotations

import re
import time
from html import escape, unescape
from typing import Collection, Sequence

from rag.answering.citations import cited_numbers, cited_sentence
from rag.answering.claims import summary_line
from rag.answering.prompts import CITATION
from rag.conversations.chats import ChatMessage
from rag.conversations.markdown import answer_markdown
from rag.core.events import Claim, Claims, Sources
from rag.core.records import Citation, DocumentInfo, Health, Passage

FILTER_AFTER = 10  # documents in the library before it gets a filter box
QUOTE_LIMIT = 1500  # characters of a passage carried by a chip, for highlighting it in the viewer
_CHIP = re.compile(r'<span class="pw-(?:cite|repointed|claims-note|note pw-claims-note)[^"]*"[^>]*>.*?</span>',
                   re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
REMOVED = "removed from the library"  # said of a source whose document has been removed since


def _attrs(p: Passage, number: int | None = None, removed: bool = False) -> str:
    """Attributes that let the page open ``p`` in the viewer (read by assets/viewer.js).

    The chat's HTML sanitiser keeps only ``class`` and ``title``, so the document and page ride in class names and
    the passage (also the chip's tooltip) in the title, after a first line naming file and page (and saying so
    when the document has been removed since). The chat renders Markdown, where a blank line ends an HTML tag
    even inside an attribute: the passage's blank lines (between paragraphs) are closed up.
    """
    note = f" · {REMOVED}" if removed else ""
    title = f"{p.file_name}, p. {p.page_name}{note}\n{_BLANK_LINES.sub(chr(10), p.text[:QUOTE_LIMIT])}"
    return f'data-n="{number or 0}" title="{escape(title)}"'


def _place(p: Passage, removed: bool, sentence: tuple[int, int] | None = None) -> str:
    """Class names that tell the viewer the document and page, the cited sentence's span in the passage
    (``pw-s-a-b``, stressed in the highlight), that the page was read by OCR (``pw-ocr``: its passage is highlighted
    over the recognised lines, as a scan has no text layer) and that the document was removed (``pw-gone``)."""
    span = f" pw-s-{sentence[0]}-{sentence[1]}" if sentence and sentence[1] <= QUOTE_LIMIT else ""
    return (f"pw-d-{escape(p.doc_id)} pw-p-{p.page_start}{span}" + (" pw-ocr" if p.ocr or p.figure else "")
            + (" pw-gone" if removed else ""))


def chip(c: Citation, removed: bool = False, answer: str = "") -> str:
    """A clickable citation chip: opens the cited page in the viewer (or says the document was removed), the
    sentence of the passage that ``answer`` draws on stressed."""
    sentence = cited_sentence(c.passage.text, answer, c.number) if answer else None
    return (f'<span class="pw-cite {_place(c.passage, removed, sentence)}" role="button" tabindex="0" '
            f'{_attrs(c.passage, c.number, removed)}>{c.number}</span>')


def streaming_html(text: str) -> str:
    """The answer while it streams: escaped text (chips come once the sources are known)."""
    return escape(text, quote=False)


def answer_html(text: str, sources: Sources | None, removed: Collection[str] = (),
                claims: Claims | None = None) -> str:
    """The final answer: escaped text with each valid [n] turned into a chip and invented ones removed.
    ``removed``: ids of documents no longer in the library. With ``claims`` (the claim check), a statement whose
    citation was re-pointed shows the chip of the passage that supports it, with a mark saying so; a statement no
    passage supports is underlined, the reason on hover; a line at the end counts them."""
    by_number = {c.number: c for c in (claims.added if claims else [])}
    by_number.update({c.number: c for c in (sources.cited if sources else [])})
    marked = sorted((c for c in (claims.claims if claims else []) if c.supported is not True), key=lambda c: c.start)
    parts, last = [], 0
    for claim in marked:
        if claim.start < last or claim.end > len(text) or text[claim.start:claim.end] != claim.text:
            continue  # the answer changed since the check (it should not): leave the rest plain
        if "|" in claim.text:
            continue  # a row of a Markdown table: a tag around it would break the table (the line at the end counts it)
        parts.append(_with_chips(text[last:claim.start], by_number, removed, text))
        parts.append(_claim_html(claim, text, by_number, removed))
        last = claim.end
    parts.append(_with_chips(text[last:], by_number, removed, text))
    html = "".join(parts)
    if sources and sources.dropped_citations:
        n = sources.dropped_citations
        html += (f'\n\n<span class="pw-note">{n} citation{"s" if n > 1 else ""} to a source that doesn\'t exist '
                 f'{"were" if n > 1 else "was"} removed.</span>')
    if claims and summary_line(claims):
        html += f'\n\n<span class="pw-note pw-claims-note">{escape(summary_line(claims), quote=False)}</span>'
    return html


def _with_chips(text: str, by_number: dict[int, Citation], removed: Collection[str], answer: str,
                numbers_for: dict[int, list[int]] | None = None) -> str:
    """Escaped text with its [n] markers as chips (``numbers_for`` re-points numbers: n → the numbers shown)."""
    parts, last, shown = [], 0, set()
    for match in CITATION.finditer(text):
        parts.append(escape(text[last:match.start()], quote=False))
        numbers = cited_numbers(match.group(0))
        if numbers_for is not None:
            numbers = [m for n in numbers for m in numbers_for.get(n, [n]) if m not in shown]
            shown.update(numbers)
        parts.append("".join(chip(by_number[n], by_number[n].passage.doc_id in removed, answer) for n in numbers
                             if n in by_number))
        last = match.end()
    parts.append(escape(text[last:], quote=False))
    return "".join(parts)


def _claim_html(claim: Claim, answer: str, by_number: dict[int, Citation], removed: Collection[str]) -> str:
    """A checked statement that was not matched as cited: re-pointed (the supporting passage's chip, and a mark
    whose hover says what moved) or unsupported (underlined, the reason on hover)."""
    if claim.supported == "re-pointed":
        new = [n for n in claim.citations if n not in claim.cited]
        moved = {n: ([n] if n in claim.citations else []) for n in claim.cited}
        if moved:
            first = next(iter(moved))
            moved[first] = moved[first] + new
        body = _with_chips(claim.text, by_number, removed, answer, moved)
        if not CITATION.search(claim.text):  # cited nothing: the supporting passage's chip goes at the end
            body += "".join(chip(by_number[n], by_number[n].passage.doc_id in removed, answer) for n in new
                            if n in by_number)
        mark = f'<span class="pw-repointed" title="{escape(claim.reason)}">re-pointed</span>'
        return f"{body}{mark}"
    body = _with_chips(claim.text, by_number, removed, answer)
    return f'<span class="pw-unsupported" title="{escape(claim.reason)}">{body}</span>'


def answer_message(text: str, sources: Sources | None, error: str | None = None,
                   removed: Collection[str] = (), claims: Claims | None = None) -> str:
    """A finished answer as the chat shows it: text with chips, why it was cut short (if it was), and a "Copy as
    Markdown" action whose Markdown (answer and sources: file, page, quoted passage) rides in a hidden title."""
    html = answer_html(text, sources, removed, claims)
    if error:
        note = f"<span class='pw-error'>⚠ {streaming_html(error)}</span>"
        html = f"{html}\n\n{note}" if text else note
    if not text.strip():
        return html
    markdown = escape(answer_markdown(text, sources, error, removed, claims)).replace("\n", "&#10;")
    return (f'{html}\n\n<span class="pw-actions"><span class="pw-copy-md" title="Copy this answer as Markdown, '
            f'with its sources"></span><span class="pw-md" title="{markdown}"></span></span>')


def chat_messages(messages: Sequence[ChatMessage], removed: Collection[str] = ()) -> list[dict[str, object]]:
    """A saved conversation as the chat shows it: questions, folded reasoning, answers with chips; a question
    whose answer was never saved (the app stopped while answering) says so."""
    out: list[dict[str, object]] = []
    for i, m in enumerate(messages):
        if m.role == "user":
            out.append({"role": "user", "content": m.content})
            if i + 1 == len(messages) or messages[i + 1].role != "assistant":
                out.append({"role": "assistant", "content": "<span class='pw-note'>No answer was saved: the app "
                            "stopped while answering. Ask again.</span>"})
            continue
        if m.thinking:
            out.append({"role": "assistant", "content": streaming_html(m.thinking),
                        "metadata": {"title": f"Thought for {m.thinking_seconds:.0f} s", "status": "done"}})
        out.append({"role": "assistant", "content": answer_message(m.content, m.sources, m.error, removed,
                                                                   m.claims)})
    return out


def plain_text(content: str) -> str:
    """An answer as rendered in the chat, back to plain text (for the conversation sent to the model)."""
    return unescape(_TAG.sub("", _CHIP.sub("", content)))


def _passage_body(p: Passage, span: tuple[int, int] | None) -> str:
    if span is None:
        return escape(p.text, quote=False)
    a, b = span
    return (escape(p.text[:a], quote=False) + "<mark>" + escape(p.text[a:b], quote=False) + "</mark>"
            + escape(p.text[b:], quote=False))


def _card(p: Passage, number: int | None, span: tuple[int, int] | None, removed: Collection[str]) -> str:
    badge = f'<span class="pw-num">{number}</span>' if number is not None else ""
    gone = p.doc_id in removed
    note = f'<span class="pw-gone-note">{REMOVED}</span>' if gone else ""
    if p.ocr:
        note += ('<span class="pw-ocr-tag" title="This page is an image: its words were read by OCR">read by OCR'
                 '</span>')
    elif p.figure:
        note += ('<span class="pw-ocr-tag" title="Words inside a figure of this page, read by OCR">in a figure'
                 '</span>')
    return (f'<div class="pw-source {_place(p, gone, span)}" role="button" tabindex="0" {_attrs(p, number, gone)}>'
            f'<div class="pw-source-head">{badge}<span class="pw-file" title="{escape(p.file_name)}">'
            f'{escape(p.file_name)}</span>{note}'
            f'<span class="pw-page"{_page_tip(p)}>p. {escape(p.page_name)}</span></div>'
            f'<div class="pw-passage">{_passage_body(p, span)}</div></div>')


def _page_tip(p: Passage) -> str:
    """A tooltip giving the page's position in the PDF where the printed page number differs from it."""
    return f' title="page {p.page_start} of the PDF"' if p.page_label else ""


def sources_html(sources: Sources | None, answer: str = "", removed: Collection[str] = (),
                 claims: Claims | None = None) -> str:
    """The sources panel: cited passages in citation order (cited sentence marked), then the others, folded.
    ``removed``: ids of documents no longer in the library (their cards say so). Passages that the claim check
    re-pointed a citation to (``claims.added``) join the cited ones."""
    if sources is None or (not sources.cited and not sources.other):
        return '<div class="pw-empty">Sources of the answer appear here. Click one to open its page.</div>'
    added = list(claims.added) if claims else []
    if added:
        moved = {c.passage.chunk_id for c in added}
        sources = Sources(sources.cited + added, [p for p in sources.other if p.chunk_id not in moved],
                          sources.dropped_citations, sources.query)
    parts = []
    if sources.cited:
        parts.append('<div class="pw-section">Cited</div>')
        parts += [_card(c.passage, c.number, cited_sentence(c.passage.text, answer, c.number), removed)
                  for c in sources.cited]
    else:
        parts.append('<div class="pw-section">No passage was cited</div>')
    if sources.other:
        parts.append(f'<details class="pw-other"><summary>Other retrieved passages ({len(sources.other)})</summary>')
        parts += [_card(p, None, None, removed) for p in sources.other]
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
        rows.append(f'<li class="pw-up pw-{kind}"><span class="pw-up-name" title="{escape(name)}">'
                    f'{escape(name)}</span><span class="pw-up-state">{escape(text)}</span>{bar}</li>')
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


def library_html(docs: Sequence[DocumentInfo], total: int | None = None) -> str:
    """The library as a table for a narrow column: each document's name (cut short with an ellipsis; the full name,
    title and counts on hover), pages and when it was added, newest first. The headers sort it (name, pages, date;
    assets/library.js) and, past FILTER_AFTER documents, a box filters it by name. A hint to drop PDFs when empty.
    ``total``: the library's size, when ``docs`` is one page of it."""
    if not docs:
        return ('<div class="pw-lib-title">Library</div>'
                '<div class="pw-library-empty">No documents yet: drop PDFs above.</div>')
    rows = "".join(
        f'<tr data-name="{escape(d.file_name.lower())}" data-pages="{d.pages}" data-added="{d.added_at:.3f}">'
        f'<td class="pw-lib-name"><div class="pw-lib-cell"><span class="pw-lib-file" '
        f'title="{escape(_doc_tooltip(d))}">{escape(d.file_name)}</span>{_ocr_mark(d)}</div></td>'
        f'<td class="pw-lib-n">{d.pages}</td>'
        f'<td class="pw-lib-date" title="{time.strftime("%d %B %Y, %H:%M", time.localtime(d.added_at))}">'
        f'{_short_date(d.added_at)}</td></tr>'
        for d in sorted(docs, key=lambda d: -d.added_at))
    total = len(docs) if total is None else total  # a page of a larger library says the library's size
    count = f"{total} document{'s' if total != 1 else ''}"
    search = ('<input type="search" class="pw-lib-filter" placeholder="Filter by name…" '
              'aria-label="Filter the documents by name">' if len(docs) > FILTER_AFTER else "")
    return (f'<div class="pw-lib-head"><div class="pw-lib-title">Library <span>· {count}</span></div>{search}</div>'
            '<table class="pw-library"><thead><tr>'
            f'{_sort_header("name", "Document")}{_sort_header("pages", "Pages", "pw-lib-n")}'
            f'{_sort_header("added", "Added", sort="descending")}</tr></thead><tbody>{rows}</tbody></table>'
            '<div class="pw-lib-none" hidden>No document matches.</div>')


def _sort_header(key: str, label: str, cls: str = "", sort: str = "none") -> str:
    return (f'<th class="{cls}" data-sort="{key}" aria-sort="{sort}"><button type="button" class="pw-lib-sort" '
            f'title="Sort by {label.lower()}">{label}</button></th>')


def _short_date(when: float) -> str:
    """A date in few characters: "04 Mar" this year, "Mar 2023" before."""
    local = time.localtime(when)
    return time.strftime("%d %b" if local.tm_year == time.localtime().tm_year else "%b %Y", local)


def _ocr_pages(d: DocumentInfo) -> str:
    """Which pages of a document were read by OCR, in words ("" when none)."""
    if not d.ocr_pages:
        return ""
    if len(d.ocr_pages) >= d.pages:
        return "every page read by OCR"
    shown = ", ".join(map(str, d.ocr_pages[:10])) + (f" and {len(d.ocr_pages) - 10} more" if len(d.ocr_pages) > 10
                                                     else "")
    return f"page{'s' if len(d.ocr_pages) > 1 else ''} {shown} read by OCR"


def _ocr_mark(d: DocumentInfo) -> str:
    """A small "OCR" mark after the name of a document (some of) whose pages were read by OCR."""
    words = _ocr_pages(d)
    return f'<span class="pw-lib-ocr" title="{escape(words[0].upper() + words[1:])}">OCR</span>' if words else ""


def _doc_tooltip(d: DocumentInfo) -> str:
    """What hovering a document's name says: its full name, its title, and how much of it is indexed."""
    lines = [d.file_name] + ([d.title] if d.title and d.title != d.file_name else [])
    lines.append(f"{d.pages} page{'s' if d.pages != 1 else ''} · {d.chunks} passage{'s' if d.chunks != 1 else ''}")
    lines += [_ocr_pages(d)] if d.ocr_pages else []
    return "\n".join(lines)


def doc_label(d: DocumentInfo) -> str:
    """How a document is named in the scope and delete lists."""
    return f"{d.file_name} ({d.pages} page{'s' if d.pages != 1 else ''})"
