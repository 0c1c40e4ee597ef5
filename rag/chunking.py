"""Pages → chunks sized in tokens, each knowing its page and its character offsets in the document.

Page breaks. A chunk never crosses a page break: each page is split on its own paragraphs, lines and sentences,
so every chunk, and so every citation, points at exactly one page (``page_start == page_end``), which also keeps
slides and short pages distinct. The cost is that a sentence running over a page break is split in two at the
break; each half stays searchable, carries the document title and page in its header, and is cited to the page
it is printed on. Overlap between consecutive chunks of a page keeps local context.

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
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=token_counter(tokenizer),
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
        strip_whitespace=True,
    )
    chunks: list[Chunk] = []
    for page, page_offset in zip(doc.pages, starts, strict=True):
        cursor = 0
        for piece in splitter.split_text(page.text):
            start = page.text.find(piece, cursor)
            if start < 0:  # the splitter changed the text; fall back to a search from the top of the page
                log.warning("%s: a chunk of page %d not found after offset %d", doc.file_name, page.number, cursor)
                start = max(page.text.find(piece), 0)
            cursor = start + 1
            chunks.append(Chunk(index=len(chunks), text=piece, page_start=page.number, page_end=page.number,
                                char_start=page_offset + start, char_end=page_offset + start + len(piece),
                                context=_context(doc.title, page.number)))
    return chunks


def _context(title: str, page: int) -> str:
    return f"{title} (p. {page})"
