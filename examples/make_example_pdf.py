"""Writes examples/northwind-annual-report.pdf, the four-page report that examples/questions.jsonl asks about.

    python examples/make_example_pdf.py      # needs reportlab (pip install -e ".[test]")
    python -m rag ingest examples/northwind-annual-report.pdf
    python -m rag eval examples/questions.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pdf_factory import text_pdf  # noqa: E402

PAGES = [
    "Northwind Traders annual report for fiscal 2024. Letter from the chief executive: a year of steady growth in "
    "every region, and the opening of our first warehouse in Lisbon.",
    "Results of operations. Net sales rose 8.2% to $1,245.6 million in fiscal 2024, from $1,151.2 million in fiscal "
    "2023. Gross margin was 38.5%, up from 37.9%. Operating income was $142.3 million.",
    "Cash flows. Capital expenditures were $63.8 million, mostly for the Lisbon warehouse. The board approved a "
    "quarterly dividend of 24 cents per share and a share repurchase of up to $50 million.",
    "Employees and locations. Northwind employed 4,120 people at year end, in 14 countries. Our headquarters are in "
    "Seattle, Washington.",
]

OUT = ROOT / "examples" / "northwind-annual-report.pdf"


def build(path: Path = OUT) -> Path:
    """The example report, written to ``path``."""
    return text_pdf(path, PAGES, title="Northwind Traders annual report 2024")


if __name__ == "__main__":
    print(build())
