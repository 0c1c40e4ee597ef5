"""Pages → chunks sized in tokens, each knowing its pages and its character offsets in the document.

Page breaks. The pages are joined into one text with a form feed between them, and the form feed is the
splitter's first separator. So a page longer than a chunk is split on its own paragraphs, lines and sentences
and never shares a chunk with its neighbour, which keeps citations to one page; consecutive short pages (a cover,
a table of contents, a page with one table) are merged into one chunk that records ``page_start``/``page_end``.
A sentence cut by a page break is therefore split at the break; overlap between chunks of the same page keeps
local context.

Offsets. ``char_start``/``char_end`` index the joined document text (see ``document_text``); they are computed
by locating each chunk in that text, never taken from the splitter, which is unreliable with a token length.

Tokens. Sizes are counted with the tokenizer named by ``RAG_TOKENIZER`` when set, otherwise with an estimate
tuned to Qwen3's tokenizer: every digit is one token (Qwen splits numbers into digits), runs of letters count one
token per six characters, and every other visible character counts one.
"""

from __future__ import annotations

import bisect
import logging
import re
from functools import lru_cache
from typing import Callable

from rag.models import Chunk, Page, ParsedDocument

log = logging.getLogger(__name__)

PAGE_BREAK = "\f"
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

    text, starts = document_text(doc.pages)
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=token_counter(tokenizer),
        separators=[PAGE_BREAK, "\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
        strip_whitespace=True,
    )
    numbers = [p.number for p in doc.pages]
    chunks: list[Chunk] = []
    cursor = 0
    for piece in splitter.split_text(text):
        start = text.find(piece, cursor)
        if start < 0:  # the splitter changed the text; fall back to a search from the top
            log.warning("%s: chunk %d not found after offset %d", doc.file_name, len(chunks), cursor)
            start = max(text.find(piece), 0)
        end = start + len(piece)
        cursor = start + 1
        page_start = numbers[bisect.bisect_right(starts, start) - 1]
        page_end = numbers[bisect.bisect_right(starts, end - 1) - 1]
        # A form feed inside a merged chunk becomes a newline: same length, so offsets still hold.
        body = piece.replace(PAGE_BREAK, "\n")
        chunks.append(Chunk(index=len(chunks), text=body, page_start=page_start, page_end=page_end,
                            char_start=start, char_end=end, context=_context(doc.title, page_start, page_end)))
    return chunks


def _context(title: str, page_start: int, page_end: int) -> str:
    pages = f"p. {page_start}" if page_start == page_end else f"pp. {page_start}-{page_end}"
    return f"{title} ({pages})"
