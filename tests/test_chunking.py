"""Chunks are sized in tokens and know their pages and exact character offsets."""

import random

import pytest

from rag.core.records import Page, ParsedDocument
from rag.ingestion.chunking import LEAD_TOKENS, PAGE_BREAK, chunk_document, document_text, page_lead, token_counter
from rag.text.tokencount import estimate_tokens, language_of
from tests.multilingual import SAMPLES

WORDS = ("revenue margin segment dividend liquidity 2022 1,204.5 operating capital expenditure acquisitions "
         "guidance inventory goodwill").split()


def _doc(pages: list[str]) -> ParsedDocument:
    return ParsedDocument("report.pdf", "Report 2022", [Page(i + 1, t) for i, t in enumerate(pages)], len(pages))


def _long_page(seed: int, paragraphs: int = 6) -> str:
    rnd = random.Random(seed)
    return "\n\n".join(" ".join(rnd.choice(WORDS) for _ in range(45)) + "." for _ in range(paragraphs))


def test_offsets_point_at_the_chunk_text() -> None:
    doc = _doc([_long_page(1), "Short page.", _long_page(2)])
    text, _ = document_text(doc.pages)
    chunks = chunk_document(doc, chunk_tokens=80, overlap_tokens=15)
    assert len(chunks) > 6
    for c in chunks:
        assert text[c.char_start:c.char_end].replace(PAGE_BREAK, "\n") == c.text


def test_chunks_respect_the_token_budget_and_overlap() -> None:
    doc = _doc([_long_page(3, paragraphs=12)])
    chunks = chunk_document(doc, chunk_tokens=80, overlap_tokens=20)
    count = token_counter(None, language_of(doc.pages[0].text))  # the page's language, as chunking counts
    assert max(count(c.text) for c in chunks) <= 80
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:], strict=False) if b.char_start < a.char_end)
    assert overlapping >= len(chunks) // 3


def test_pages_are_right_and_never_share_a_chunk() -> None:
    pages = [_long_page(4), _long_page(5), _long_page(6)]
    doc = _doc(pages)
    _, starts = document_text(doc.pages)
    for c in chunk_document(doc, chunk_tokens=80, overlap_tokens=10):
        assert c.page_start == c.page_end
        page_text = pages[c.page_start - 1]
        local = c.char_start - starts[c.page_start - 1]
        assert page_text[local:local + len(c.text)] == c.text


def test_short_pages_stay_apart_so_citations_name_one_page() -> None:
    doc = _doc(["Cover: Annual Report", "Contents: 1 Overview 2 Results", _long_page(7)])
    chunks = chunk_document(doc, chunk_tokens=80, overlap_tokens=10)
    assert [(c.page_start, c.page_end, c.text) for c in chunks[:2]] == [
        (1, 1, "Cover: Annual Report"), (2, 2, "Contents: 1 Overview 2 Results")]
    assert all(c.page_start == c.page_end == 3 for c in chunks[2:])


def test_empty_pages_keep_page_numbers_right() -> None:
    doc = _doc(["", "Second page has the answer about goodwill impairment.", ""])
    (chunk,) = chunk_document(doc, chunk_tokens=80, overlap_tokens=10)
    assert chunk.page_start == 2 and chunk.page_end == 2


def test_chunks_carry_title_and_page_into_the_embedding() -> None:
    doc = _doc(["x", _long_page(8)])
    first, *_, last = chunk_document(doc, chunk_tokens=80, overlap_tokens=10)
    assert first.context == "Report 2022 (p. 1)"
    assert first.embed_text == "Report 2022 (p. 1)\nx"
    assert last.embed_text.startswith("Report 2022 (p. 2) — ")  # then the page's lead (below)


def test_later_chunks_of_a_table_keep_its_caption_and_columns() -> None:
    rows = "\n".join(f"Line item {i} of the statement\n{i},204\n{i},117" for i in range(40))
    statement = f"Table of Contents\nConsolidated Statement of Cash Flows\n(Millions)\n2022\n2021\n{rows}"
    pages = [f"Table of Contents\n{_long_page(n)}" for n in range(4)] + [statement]
    chunks = [c for c in chunk_document(_doc(pages), chunk_tokens=80, overlap_tokens=10) if c.page_start == 5]
    assert len(chunks) > 2
    assert chunks[0].context == "Report 2022 (p. 5)"  # the first chunk holds the caption itself
    for later in chunks[1:]:
        # The running header ("Table of Contents" opens every page) is left out; the caption, units and years stay.
        assert later.context.startswith(
            "Report 2022 (p. 5) — Consolidated Statement of Cash Flows · (Millions) · 2022 · 2021")
        assert later.embed_text.startswith(later.context + "\n")


def test_page_lead_is_short_and_skips_page_numbers() -> None:
    lead, end = page_lead("12\nRisk Factors\n" + "word " * 200, frozenset())
    assert (lead, end) == ("Risk Factors", len("12\nRisk Factors"))  # the paragraph would overflow the lead
    lead, _ = page_lead("12\n" + "word " * 200, frozenset())
    assert lead.startswith("word word") and lead.endswith("…") and estimate_tokens(lead) <= LEAD_TOKENS


def test_token_estimate_counts_digits_like_qwen() -> None:
    assert estimate_tokens("2022") == 4
    assert estimate_tokens("The revenue grew") == 3  # "The", " revenue", " grew"
    assert estimate_tokens("$1.5") == 4


PARAGRAPHS = [(language, qwen3, text) for language, (text, qwen3) in SAMPLES.items()]


@pytest.mark.parametrize(("language", "qwen3", "text"), PARAGRAPHS, ids=[p[0] for p in PARAGRAPHS])
def test_token_estimate_follows_qwen3_in_every_script(language: str, qwen3: int, text: str) -> None:
    assert abs(estimate_tokens(text) / qwen3 - 1) <= 0.25


def test_token_estimate_is_within_ten_percent_over_all_scripts() -> None:
    estimated = sum(estimate_tokens(text) for _, _, text in PARAGRAPHS)
    assert abs(estimated / sum(qwen3 for _, qwen3, _ in PARAGRAPHS) - 1) <= 0.1


def test_token_estimate_knows_the_language_of_a_page() -> None:
    # A Greek word takes about a token per letter; English words about one token each.
    assert language_of(SAMPLES["el"][0]) == "el" and language_of(SAMPLES["en"][0]) == "en"
    assert language_of(SAMPLES["zh-hant"][0]) == "zh-hant" and language_of(SAMPLES["zh"][0]) == "zh"
    assert estimate_tokens("πρωτεύουσα") >= 8 and estimate_tokens("capital") == 1


def test_chunks_of_other_scripts_end_at_their_sentence_marks() -> None:
    pages = {
        "zh": "".join(f"第{i}句话说明公司在这个季度的营业收入和利润情况。" for i in range(40)),
        "ar": " ".join(f"هذه هي الجملة رقم {i} عن إيرادات الشركة في هذا الربع؟" for i in range(30)),
        "hi": " ".join(f"यह वाक्य संख्या {i} कंपनी की आय के बारे में है।" for i in range(30)),
    }
    for language, text in pages.items():
        chunks = chunk_document(_doc([text]), chunk_tokens=80, overlap_tokens=0)
        assert len(chunks) > 3, language
        assert all(c.text.endswith(("。", "؟", "।")) for c in chunks), language  # never mid-sentence
