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

Tables. A page is cut at blank lines, then line breaks, so a table row (one line of pypdf's text once
``rag.ingestion.documents.clean_text`` has joined its cells) is never cut in half: only a single line longer than a
whole chunk could be. A table split over several chunks repeats its header row in the header of each chunk that
doesn't hold it (``tables``: runs of at least ``TABLE_ROWS`` lines ending in two or more figures, and the line of
column headings above them, such as "(Millions) 2018 2017 2016"), so every part of the table says which columns its
figures are, as the lead does for the table that opens a page.

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
TABLE_ROWS = 3  # lines ending in figures that make a table
TABLE_GAP = 2  # lines of text (subheadings such as "Cash Flows from Investing Activities") a table may hold in a row
HEADER_TOKENS = 40  # most tokens of a table's header row repeated in its later chunks
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
        body_end = page.figure_start if page.figure_start >= 0 else len(page.text)
        found = tables(page.text[:body_end])
        for piece in splitter.split_text(page.text[:body_end]):
            start = page.text.find(piece, cursor)
            if start < 0:  # the splitter changed the text; fall back to a search from the top of the page
                log.warning("%s: a chunk of page %d not found after offset %d", doc.file_name, page.number, cursor)
                start = max(page.text.find(piece), 0)
            cursor = start + 1
            head = lead if start >= lead_end else ""
            header = next((t.header for t in found if t.header_end <= start < t.end), "")
            if header and header not in head:
                head = f"{head} · {header}" if head else header
            chunks.append(Chunk(index=len(chunks), text=piece, page_start=page.number, page_end=page.number,
                                char_start=page_offset + start, char_end=page_offset + start + len(piece),
                                context=_context(doc.title, _page_name(page), head), ocr=page.ocr,
                                page_label=label_of(page)))
        if page.figure_start >= 0:  # words read inside the page's figures: chunks of their own, marked as such
            cursor = page.figure_start
            for piece in splitter.split_text(page.figure_text):
                start = page.text.find(piece, cursor)
                start = start if start >= 0 else page.figure_start
                cursor = start + 1
                chunks.append(Chunk(index=len(chunks), text=piece, page_start=page.number, page_end=page.number,
                                    char_start=page_offset + start, char_end=page_offset + start + len(piece),
                                    context=_context(doc.title, _page_name(page), f"{FIGURE_HEADER} · {lead}"
                                                     if lead else FIGURE_HEADER),
                                    page_label=label_of(page), figure=True))
    return chunks


FIGURE_HEADER = "text in a figure"  # the header of chunks of text read inside a page's figures


class Table:
    """A table found in a page's text: where its rows end (``end``), its header row (``header``, "" for none) and
    where that header ends (chunks starting from there to ``end`` repeat it)."""

    __slots__ = ("end", "header", "header_end")

    def __init__(self, end: int, header: str, header_end: int) -> None:
        self.end, self.header, self.header_end = end, header, header_end


def tables(text: str) -> list[Table]:
    """The tables of a page's text: runs of ``TABLE_ROWS`` or more lines that end in two or more figures (numbers,
    bracketed or signed ones, percentages, dashes), at most ``TABLE_GAP`` lines of text apart; each with its
    header row: the first row whose figures are all years ("(Millions) 2018 2017 2016"), or else the line of text
    just above the first row, cut to ``HEADER_TOKENS``."""
    lines: list[tuple[int, int, str]] = []  # (start, end, line) of each non-empty line
    offset = 0
    for line in text.split("\n"):
        if line.strip():
            lines.append((offset, offset + len(line), line.strip()))
        offset += len(line) + 1
    found: list[Table] = []
    i = 0
    while i < len(lines):
        if not _ROW.search(lines[i][2]):
            i += 1
            continue
        rows, j, gap, last = [i], i + 1, 0, i
        while j < len(lines) and gap <= TABLE_GAP:
            if _ROW.search(lines[j][2]):
                rows.append(j)
                last, gap = j, 0
            else:
                gap += 1
            j += 1
        if len(rows) >= TABLE_ROWS:
            years = next((r for r in rows[:3] if _YEARS.search(lines[r][2])), None)
            if years is not None:
                header, header_end = lines[years][2], lines[years][1]
            elif rows[0] > 0 and not _ROW.search(lines[rows[0] - 1][2]):
                header, header_end = lines[rows[0] - 1][2], lines[rows[0] - 1][1]
            else:
                header, header_end = "", lines[rows[0]][0]
            if estimate_tokens(header) > HEADER_TOKENS:
                header = _head(header, HEADER_TOKENS, estimate_tokens)
            found.append(Table(lines[last][1], header, header_end))
        i = last + 1
    return found


_CELL = r"[(\[$€£¥−–—-]{0,3}\d[\d,]*(?:\.\d+)?[)\]%]{0,2}|[—–-]{1,2}|n/?[am]"  # a figure, a dash, n/a, nm
_ROW = re.compile(rf"(?:^|\s)(?:{_CELL})(?:\s+\$?\s*(?:{_CELL})){{1,}}\s*$", re.IGNORECASE)
_YEARS = re.compile(r"(?:^|\s)(?:19|20)\d\d(?:\s+(?:19|20)\d\d)+\s*$")  # a row of years: column headings


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


def _page_name(page: Page) -> str:
    """The page as its header names it: its printed label where the PDF has one, else its position."""
    return page.label or str(page.number)


def _context(title: str, page: int | str, lead: str = "") -> str:
    head = f"{title} (p. {page})"
    return f"{head} — {lead}" if lead else head
