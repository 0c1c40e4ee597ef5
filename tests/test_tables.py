"""Tables kept whole: a chunk never cuts a row in half, and a table split over chunks repeats its header row."""

from __future__ import annotations

from pathlib import Path

from rag.core.records import Page, ParsedDocument
from rag.ingestion.chunking import chunk_document, tables
from rag.ingestion.documents import load_pdf
from tests import pdf_factory as pf

PROSE = ("The company sells industrial adhesives, safety equipment and consumer goods in seventy countries. "
         "Its segments are reported below, and the notes explain each line of the statement in turn. ") * 3
ITEMS = ["Net sales", "Cost of sales", "Selling, general and administrative", "Research and development",
         "Gain on sale of businesses", "Operating income", "Interest expense", "Other income, net",
         "Income before taxes", "Provision for income taxes", "Net income", "Depreciation and amortization",
         "Capital expenditures", "Dividends paid", "Purchases of treasury stock", "Free cash flow"]
ROWS = [f"{item} {1000 + 37 * i:,} ({200 + 11 * i:,}) {12 + i}.{i}%" for i, item in enumerate(ITEMS)]
HEADER = "(Millions) 2018 2017 2016"


def _page_doc(text: str) -> ParsedDocument:
    return ParsedDocument("filing.pdf", "Filing", [Page(1, text)], 1)


def test_a_table_split_over_chunks_repeats_its_header_and_keeps_rows_whole() -> None:
    text = PROSE + "\n\nConsolidated Statement of Income\n" + HEADER + "\n" + "\n".join(ROWS) + "\n\n" + PROSE
    chunks = chunk_document(_page_doc(text), chunk_tokens=60, overlap_tokens=10)
    holding = [c for c in chunks if any(row in c.text for row in ROWS)]
    assert len(holding) >= 3  # the table spans several chunks
    for c in holding:
        for line in c.text.split("\n"):
            assert line in text.split("\n")  # whole lines only: no row cut in half
        assert HEADER in c.text or HEADER in c.context  # every part says which years its columns are
    assert sum(HEADER in c.context for c in holding) >= 2


def test_a_header_row_of_text_is_found_above_the_rows() -> None:
    text = "Fees and charges\nService Fee Minimum\n" + "\n".join(f"Item {i} {i * 5} {i * 2}" for i in range(6))
    (table,) = tables(text)
    assert table.header == "Service Fee Minimum"


def test_prose_with_numbers_is_no_table() -> None:
    assert tables("In 2018 we had 93,000 employees.\nSales rose 3.5% to 32,765 in 2018.\nWe paid 5.44 a share.") == []


def test_a_table_typeset_cell_by_cell_reads_as_rows(tmp_path: Path) -> None:
    rows = [["(Millions)", "2018", "2017"]] + [[item, f"{100 + i}", f"({50 + i})"] for i, item in enumerate(ITEMS)]
    doc = load_pdf(pf.table_pdf(tmp_path / "t.pdf", "Table 4: Selected financial data", rows))
    (table,) = tables(doc.pages[0].text)
    assert table.header == "(Millions) 2018 2017"
    chunks = chunk_document(doc, chunk_tokens=40, overlap_tokens=5)
    assert len(chunks) >= 3
    assert all("(Millions) 2018 2017" in c.text + c.context for c in chunks)
    assert any("Net income 110 (60)" in c.text for c in chunks)
