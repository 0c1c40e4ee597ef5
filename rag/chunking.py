"""Pages → chunks sized in tokens, each knowing its page and its character offsets in the document.

Page breaks. A chunk never crosses a page break: each page is split on its own paragraphs, lines and sentences,
so every chunk, and so every citation, points at exactly one page (``page_start == page_end``), which also keeps
slides and short pages distinct. The cost is that a sentence running over a page break is split in two at the
break; each half stays searchable, carries the document title and page in its header, and is cited to the page
it is printed on. Overlap between consecutive chunks of a page keeps local context.

Headers. Each chunk's ``context`` (embedded and indexed with it, never shown) names the document and page, and a
chunk that does not begin the page also carries the page's lead: its first lines up to ``LEAD_TOKENS``, skipping
running headers and footers (lines that open or close many pages, such as "Table of Contents" or the company
name). On most pages the lead is the section heading or a table's caption, units and column headings
("Consolidated Statement of Cash Flows · (Millions) · 2018 2017 2016"), so the rows of a table split over several
chunks still say which statement and which years they belong to.

Offsets. ``char_start``/``char_end`` index the joined document text (see ``document_text``: pages in order,
separated by a form feed); they are computed by locating each chunk in its page, never taken from the splitter,
which is unreliable with a token length function.

Tokens. Sizes are counted with the tokenizer named by ``RAG_TOKENIZER`` when set, otherwise with an estimate
tuned to Qwen3's tokenizer: every digit is one token (Qwen splits numbers into digits), runs of letters count one
token per six characters, and every other visible character counts one.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Callable

from rag.models import Chunk, Page, ParsedDocument

log = logging.getLogger(__name__)

PAGE_BREAK = "\f"
LEAD_TOKENS = 40  # most tokens of a page's lead repeated in the header of its later chunks
_RUNNING_SHARE = 0.3  # a line among the first/last three of this share of pages is a running header/footer
_EDGE_LINES = 3
_ESTIMATE = re.compile(r"\d|[^\W\d_]{1,6}|[^\s\w]|_")


def estimate_tokens(text: str) -> int:
    """Approximate the number of Qwen3 tokens in ``text`` without loading a tokenizer."""
    return len(_ESTIMATE.findall(text))


@lru_cache(maxsize=4)
def token_counter(tokenizer: str | None = None) -> Callable[[str], int]:
    """A function counting tokens: with the named Hugging Face tokenizer, else the built-in estimate."""
    if not tokenizer:
        return estimate_tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def document_text(pages: list[Page]) -> tuple[str, list[int]]:
    """Join pages with form feeds; return the text and the offset where each page starts."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in pages:
        starts.append(offset)
        parts.append(page.text)
        offset += len(page.text) + len(PAGE_BREAK)
    return PAGE_BREAK.join(parts), starts


def chunk_document(doc: ParsedDocument, chunk_tokens: int, overlap_tokens: int,
                   tokenizer: str | None = None) -> list[Chunk]:
    """Split a parsed document into chunks of at most ``chunk_tokens`` tokens (see module notes)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    _, starts = document_text(doc.pages)
    count = token_counter(tokenizer)
    running = _running_lines(doc.pages)
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=count,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
        strip_whitespace=True,
    )
    chunks: list[Chunk] = []
    for page, page_offset in zip(doc.pages, starts, strict=True):
        cursor = 0
        lead, lead_end = page_lead(page.text, running, count)
        for piece in splitter.split_text(page.text):
            start = page.text.find(piece, cursor)
            if start < 0:  # the splitter changed the text; fall back to a search from the top of the page
                log.warning("%s: a chunk of page %d not found after offset %d", doc.file_name, page.number, cursor)
                start = max(page.text.find(piece), 0)
            cursor = start + 1
            chunks.append(Chunk(index=len(chunks), text=piece, page_start=page.number, page_end=page.number,
                                char_start=page_offset + start, char_end=page_offset + start + len(piece),
                                context=_context(doc.title, page.number, lead if start >= lead_end else ""),
                                ocr=page.ocr))
    return chunks


def page_lead(text: str, running: frozenset[str] = frozenset(),
              count: Callable[[str], int] = estimate_tokens) -> tuple[str, int]:
    """A page's first lines (running headers and page numbers skipped) up to ``LEAD_TOKENS``, joined by " · ";
    and the offset where the lead ends, so chunks starting before it (which already contain it) can skip it."""
    parts: list[str] = []
    used = 0
    end = 0
    offset = 0
    for line in text.split("\n"):
        line_start, offset = offset, offset + len(line) + 1
        key = _line_key(line)
        if not line.strip() or key in running or (not key and not parts):  # skip page numbers opening a page
            continue
        cost = count(line)
        if parts and used + cost > LEAD_TOKENS:
            break
        end = line_start + len(line)
        if cost > LEAD_TOKENS:  # a long first line (a paragraph): keep its first words
            line = " ".join(line.split()[:LEAD_TOKENS // 2]) + " …"
        parts.append(line.strip())
        used += cost
        if used >= LEAD_TOKENS:
            break
    lead = " · ".join(parts)
    return lead, end


def _running_lines(pages: list[Page]) -> frozenset[str]:
    """Lines that open or close many pages (running headers and footers), as ``_line_key`` normalises them."""
    texts = [p.text for p in pages if p.text]
    if len(texts) < 4:
        return frozenset()
    seen: dict[str, int] = {}
    for text in texts:
        lines = [k for k in map(_line_key, text.split("\n")) if k]
        for key in set(lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]):
            seen[key] = seen.get(key, 0) + 1
    return frozenset(k for k, n in seen.items() if n >= max(3, _RUNNING_SHARE * len(texts)))


def _line_key(line: str) -> str:
    """A line without digits and case, so "Page 4 of 80" and "Page 5 of 80" compare equal; "" for no letters."""
    key = re.sub(r"[\d\W_]+", " ", line.lower()).strip()
    return key


def _context(title: str, page: int, lead: str = "") -> str:
    head = f"{title} (p. {page})"
    return f"{head} — {lead}" if lead else head
