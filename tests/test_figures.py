"""Words inside figures: read by OCR on pages that have a text layer, indexed as figure text, cited with the
figure's boxes for the viewer; bounded, and off by a setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.core.config import Settings
from rag.engine import Engine
from rag.ingestion.documents import load_pdf
from rag.ingestion.ocr import FigureOptions, OcrOptions, figure_candidates, from_json, read_figures
from rag.search.retrieval import Fusion, hybrid_search
from tests import pdf_factory as pf
from tests.figure_factory import figure_pdf

FAST = OcrOptions(dpi=100)  # the pictured words are large: 100 dpi reads them, and fast
TEXT = ("Quarterly report of the widget company. Shipments grew in every region this year, as the chart below "
        "shows, and the board expects the same next year.")
PICTURE = ["Zorbex shipments 48", "Quillon returns 17"]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.with_(ocr_dpi=FAST.dpi)


def test_words_in_a_picture_are_added_as_figure_text(tmp_path: Path) -> None:
    pdf = figure_pdf(tmp_path / "report.pdf", TEXT, PICTURE)
    doc = load_pdf(pdf)
    read = read_figures(pdf, doc.pages, FAST, FigureOptions(), figure_candidates(pdf, doc.pages))
    text, lines = read[1]
    assert "Zorbex" in text and "Quillon" in text and "widget" not in text
    assert [line.text for line in lines] == PICTURE
    x0, y0, x1, y1 = lines[0].box
    assert 0.1 < x0 < x1 < 0.9 and 0.4 < y0 < y1 < 0.9  # in the lower half, where the picture is


def test_words_the_text_layer_has_already_are_not_added_again(tmp_path: Path) -> None:
    pdf = figure_pdf(tmp_path / "report.pdf", TEXT + " Zorbex shipments 48. Quillon returns 17.", PICTURE)
    doc = load_pdf(pdf)
    assert read_figures(pdf, doc.pages, FAST, FigureOptions()) == {}


def test_pages_without_figures_are_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.ingestion.ocr as ocr

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("no figure, no OCR")

    monkeypatch.setattr(ocr, "recognise", fail)
    pdf = pf.text_pdf(tmp_path / "plain.pdf", ["Short page.", "Another short page with some words."])
    doc = load_pdf(pdf)
    assert read_figures(pdf, doc.pages, FAST, FigureOptions(), figure_candidates(pdf, doc.pages)) == {}
    long = pf.text_pdf(tmp_path / "long.pdf", [TEXT * 6] * 3)
    assert figure_candidates(long, load_pdf(long).pages) == []  # long text pages drawing no image: not even looked at


def test_the_bounds_hold(tmp_path: Path) -> None:
    pdf = figure_pdf(tmp_path / "report.pdf", TEXT, PICTURE)
    doc = load_pdf(pdf)
    assert read_figures(pdf, doc.pages, FAST, FigureOptions(max_pages=0)) == {}
    assert read_figures(pdf, doc.pages, FAST, FigureOptions(min_share=0.9)) == {}  # the figure is smaller than that


def test_a_question_about_a_figure_finds_its_page_and_cites_its_boxes(fast: Settings, tmp_path: Path) -> None:
    engine = Engine(fast)
    try:
        pages = [f"Chapter {n}. The widget company's {topic} are described here in some detail for readers."
                 for n, topic in enumerate(["history", "factories", "people", "products"], 1)]
        list(engine.ingest([pf.text_pdf(tmp_path / "intro.pdf", pages),
                            figure_pdf(tmp_path / "report.pdf", TEXT, PICTURE)]))
        docs = {d.file_name: d for d in engine.documents()}
        found = hybrid_search(engine.store, engine.embedder, "How many Zorbex shipments?",
                              [d.doc_id for d in docs.values()], 20, Fusion.from_settings(engine.settings))
        first = found[0]
        assert first.file_name == "report.pdf" and first.figure and "Zorbex shipments 48" in first.text
        saved = json.loads(engine.store.ocr_path(docs["report.pdf"].doc_id).read_text(encoding="utf-8"))
        page = saved["pages"]["1"]
        assert page["figure"] is True and [line["text"] for line in page["lines"]] == PICTURE
        assert from_json(json.dumps(saved), FAST) == {}  # never taken for a page read by OCR
        assert docs["report.pdf"].ocr_pages == []
    finally:
        engine.close()


def test_figures_are_not_read_when_turned_off(fast: Settings, tmp_path: Path) -> None:
    engine = Engine(fast.with_(figure_ocr="off"))
    try:
        list(engine.ingest([figure_pdf(tmp_path / "report.pdf", TEXT, PICTURE)]))
        (doc,) = engine.documents()
        texts = engine.store.chunk_texts(doc.doc_id)[1]
        assert not any("Zorbex" in t for t in texts)
        assert not engine.store.ocr_path(doc.doc_id).exists()
    finally:
        engine.close()
