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
tuned to Qwen3's tokenizer per script and language (``rag.text.tokencount``); each page's language is guessed once.

Break points. A page is cut at blank lines, then line breaks, then sentence ends (``. ! ?`` followed by a space;
the Chinese and Japanese ``。！？``, which need none; Arabic ``؟ ۔``, Devanagari ``। ॥``), then clause marks
(``; : ,`` with a space, ``；：，、``, Arabic ``، ؛``), then spaces (Thai and Lao put them between phrases), and only
then anywhere.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache, partial
from typing import Callable

from rag.core.records import Chunk, Page, ParsedDocument
from rag.text.tokencount import estimate, estimate_tokens, language_of

log = logging.getLogger(__name__)

PAGE_BREAK = "\f"
_MILLI = 1000  # the splitter counts thousandths of tokens (see _milli_counter)
LEAD_TOKENS = 40  # most tokens of a page's lead repeated in the header of its later chunks
_RUNNING_SHARE = 0.3  # a line among the first/last three of this share of pages is a running header/footer
_EDGE_LINES = 3
# Where a page may be cut, best first (regular expressions; the mark stays with the text before it).
SEPARATORS = [
    r"\n\n",
    r"\n",
    r"[.!?\u061f\u06d4\u0964\u0965]\s+|[\u3002\uff01\uff1f]",  # sentence ends
    r"[;:,\u060c\u061b]\s+|[\uff1b\uff1a\uff0c\u3001]",  # clause marks
    r"\s",
    r"",
]


@lru_cache(maxsize=64)
def token_counter(tokenizer: str | None = None, language: str | None = "") -> Callable[[str], int]:
    """A function counting tokens: with the named Hugging Face tokenizer, else the built-in estimate for text in
    ``language`` (see ``rag.text.tokencount.estimate_tokens``; "" guesses the language of each text)."""
    if not tokenizer:
        return partial(estimate_tokens, language=language)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda text: len(tok.encode(text, add_special_tokens=False))


def _milli_counter(tokenizer: str | None, language: str | None) -> Callable[[str], int]:
    """Thousandths of tokens, for the splitter: it adds up its pieces' sizes, and the estimate of a text is the
    sum of its pieces' unrounded estimates (integers, so that the splitter's running total returns to zero)."""
    if tokenizer:
        count = token_counter(tokenizer)
        return lambda text: count(text) * _MILLI
    return lambda text: round(estimate(text, language) * _MILLI)


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
    running = _running_lines(doc.pages)
    chunks: list[Chunk] = []
    for page, page_offset in zip(doc.pages, starts, strict=True):
        language = None if tokenizer else language_of(page.text)
        count = token_counter(tokenizer, language)
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_tokens * _MILLI,
            chunk_overlap=overlap_tokens * _MILLI,
            length_function=_milli_counter(tokenizer, language),
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",
            strip_whitespace=True,
        )
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
                                ocr=page.ocr, page_label=label_of(page)))
    return chunks


def label_of(page: Page) -> str:
    """The page's printed label where it differs from its 1-based number, else ""."""
    return page.label if page.label and page.label != str(page.number) else ""


def page_lead(text: str, running: frozenset[str] = frozenset(),
              count: Callable[[str], float] = estimate_tokens) -> tuple[str, int]:
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
            line = _head(line, LEAD_TOKENS // 2, count) + " …"
        parts.append(line.strip())
        used += cost
        if used >= LEAD_TOKENS:
            break
    lead = " · ".join(parts)
    return lead, end


def _head(line: str, budget: int, count: Callable[[str], float]) -> str:
    """The longest start of ``line`` within ``budget`` tokens, cut after a word (anywhere in unspaced text)."""
    words = line.split()
    units = words if len(words) > 1 else list(line.strip())
    joiner = " " if len(words) > 1 else ""
    keep = 0
    while keep < len(units) and count(joiner.join(units[:keep + 1])) <= budget:
        keep += 1
    return joiner.join(units[:max(keep, 1)])


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
