"""Pages and captions a question names: found in a dozen languages, stored labels read back, and one signal in the
fusion that puts the named page first without filtering the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.core.records import Passage
from rag.engine import Engine
from rag.ingestion.documents import load_pdf
from rag.search.retrieval import Fusion, hybrid_search
from rag.text.references import caption_kind, find_references
from tests import pdf_factory as pf
from tests.figure_factory import labelled_pdf


@pytest.mark.parametrize(("question", "pages", "captions"), [
    ("What does the chart on page 14 show?", ("14",), ()),
    ("Summarise p. 14", ("14",), ()),
    ("What is on slide 3?", ("3",), ()),
    ("What does Figure 3 plot?", (), (("figure", "3"),)),
    ("Which fees are in Table 2?", (), (("table", "2"),)),
    ("What is in Fig. 2b?", (), (("figure", "2b"),)),
    ("Was zeigt Abbildung 3 auf Seite 14?", ("14",), (("figure", "3"),)),
    ("¿Qué muestra la tabla 2 en la página 7?", ("7",), (("table", "2"),)),
    ("Que montre le tableau 4 page 9 ?", ("9",), (("table", "4"),)),
    ("第14页的图3说明了什么？", ("14",), (("figure", "3"),)),
    ("14ページの表2は？", ("14",), (("table", "2"),)),
    ("Что на странице 14 на рисунке 3?", ("14",), (("figure", "3"),)),
    ("ما الذي يظهر في الجدول ٢ في صفحة ١٤؟", ("14",), (("table", "2"),)),
    ("पृष्ठ 5 पर क्या है?", ("5",), ()),
    ("What does the preface on page iv say?", ("iv",), ()),
    ("Read pp. 12-13", ("12-13", "12", "13"), ()),
])
def test_pages_and_captions_a_question_names(question: str, pages: tuple, captions: tuple) -> None:
    found = find_references(question)
    assert found.pages == pages and found.captions == captions


@pytest.mark.parametrize("question", ["Revenue in 2018 across 14 pages?", "U.S. 14 states", "Compare 3M vs. 14 peers",
                                      "The table of fees", "Which figure is largest?"])
def test_a_number_alone_is_no_reference(question: str) -> None:
    assert not find_references(question)


def test_a_caption_line_counts_more_than_a_mention() -> None:
    assert caption_kind("Results\nFigure 3: Accuracy by year", "figure", "3") == 1.0
    assert caption_kind("as Figure 3 shows, accuracy rose", "figure", "3") == 0.5
    assert caption_kind("Figure 31: something else", "figure", "3") == 0.0
    assert caption_kind("Table 3: fees", "figure", "3") == 0.0


def test_printed_page_labels_are_read_and_default_to_the_position(tmp_path: Path) -> None:
    book = load_pdf(labelled_pdf(tmp_path / "book.pdf", ["Preface.", "Contents.", "Chapter one.", "Chapter two."],
                                 roman=2))
    assert [p.label for p in book.pages] == ["i", "ii", "1", "2"]
    plain = load_pdf(pf.text_pdf(tmp_path / "plain.pdf", ["One page.", "Two page."]))
    assert [p.label for p in plain.pages] == ["1", "2"]


TOPICS = ["Orchard apples ripen in the autumn sun of the valley.", "Harbour ships unload grain at the northern quay.",
          "Mountain goats climb the steep granite ridges in spring.", "Desert lizards bask on warm sandstone rocks.",
          "River otters hunt trout beneath the willow branches.", "City trams run along the avenue every ten minutes."]


def test_the_page_a_question_names_by_its_printed_number_comes_first(engine: Engine, tmp_path: Path) -> None:
    # A journal article printed as pages 101-106: "page 103" is the PDF's third page, "page 2" its second position.
    pdf = labelled_pdf(tmp_path / "article.pdf", TOPICS, first=101)
    list(engine.ingest([pdf]))
    (doc,) = engine.documents()
    fusion = Fusion.from_settings(engine.settings)

    def pages(question: str) -> list[tuple[int, str]]:
        found = hybrid_search(engine.store, engine.embedder, question, [doc.doc_id], 20, fusion)
        return [(p.page_start, p.page_name) for p in found]

    assert pages("What is said on page 103?")[0] == (3, "103")
    assert pages("Qu'est-ce qui est dit à la page 105 ?")[0] == (5, "105")
    assert pages("What is on page 2?")[0] == (2, "102")  # no page is printed "2": its position counts instead
    # A signal, not a filter: the other pages stay, and a question naming no page ranks by content alone.
    assert len(pages("What is said on page 103?")) == len(TOPICS)
    assert pages("Which animals climb granite ridges?")[0][0] == 3
    off = hybrid_search(engine.store, engine.embedder, "What is said on page 105?", [doc.doc_id], 20,
                        Fusion.of(fusion.method, reference=0.0))
    assert off[0].page_start != 5 or off[0].page_label == "105"  # without the signal, nothing lifts page 105


def test_a_named_figure_s_caption_comes_first(engine: Engine, tmp_path: Path) -> None:
    pages = [f"{topic} Further notes follow." for topic in TOPICS]
    pages[4] = "Figure 7: Otters counted along the river each year."
    pages[1] = "Harbour notes. As Figure 7 shows, otters thrive."
    list(engine.ingest([pf.text_pdf(tmp_path / "report.pdf", pages)]))
    (doc,) = engine.documents()
    found = hybrid_search(engine.store, engine.embedder, "What does Figure 7 show?", [doc.doc_id], 20,
                          Fusion.from_settings(engine.settings))
    assert [p.page_start for p in found[:2]] == [5, 2]  # the caption, then the mention


def test_citations_show_the_printed_page_number(engine: Engine, tmp_path: Path) -> None:
    list(engine.ingest([labelled_pdf(tmp_path / "article.pdf", TOPICS, first=101)]))
    passages = [e.passage for e in _cited(engine, "Which ships unload grain at the quay?")]
    assert passages and passages[0].page_start == 2 and passages[0].page_name == "102"


def _cited(engine: Engine, question: str) -> list:
    from rag.core.events import Sources

    sources = [e for e in engine.ask(question) if isinstance(e, Sources)]
    return sources[-1].cited or [type("C", (), {"passage": p})() for p in sources[-1].other]


def test_passages_stored_before_labels_name_their_position() -> None:
    old = Passage(chunk_id="d:0", doc_id="d", file_name="f.pdf", text="t", page_start=7, page_end=7, char_start=0,
                  char_end=1)
    assert old.page_name == "7"


def test_the_printed_number_wins_over_the_position(engine: Engine, tmp_path: Path) -> None:
    # Front matter i, ii, then 1-4: "page 2" is the fourth page of the PDF, not its second (printed "ii").
    list(engine.ingest([labelled_pdf(tmp_path / "book.pdf", TOPICS, roman=2)]))
    (doc,) = engine.documents()
    found = hybrid_search(engine.store, engine.embedder, "What is on page 2?", [doc.doc_id], 20,
                          Fusion.from_settings(engine.settings))
    assert [(p.page_start, p.page_name) for p in found[:2]] == [(4, "2"), (2, "ii")]


def test_the_sources_panel_and_chips_show_the_printed_number() -> None:
    from rag.core.events import Sources
    from rag.core.records import Citation
    from ui.render import chip, sources_html

    p = Passage(chunk_id="d:0", doc_id="d", file_name="article.pdf", text="Harbour ships unload grain.", page_start=2,
                page_end=2, char_start=0, char_end=10, page_label="102")
    figure = Passage(chunk_id="d:5", doc_id="d", file_name="article.pdf", text="Zorbex shipments 48", page_start=3,
                     page_end=3, char_start=20, char_end=39, figure=True)
    html = sources_html(Sources([Citation(1, p), Citation(2, figure)], []))
    assert '<span class="pw-page" title="page 2 of the PDF">p. 102</span>' in html
    assert "in a figure" in html and '<span class="pw-page">p. 3</span>' in html
    assert "article.pdf, p. 102" in chip(Citation(1, p))  # the chip's tooltip, which the viewer reads the file from
    assert "pw-p-2" in chip(Citation(1, p))  # the viewer still opens the PDF's second page
    assert "pw-ocr" in chip(Citation(2, figure))  # highlighted over the figure's boxes, as an OCR'd page


def test_printed_page_numbers_are_read_from_the_pages_when_the_pdf_has_no_labels(tmp_path: Path) -> None:
    body = [f"{topic}\n{n}" for n, topic in enumerate(TOPICS[:4], 1)]  # each page closes with its printed number
    doc = load_pdf(pf.text_pdf(tmp_path / "report.pdf", ["Annual report 2024", "Contents"] + body))
    assert [p.label for p in doc.pages] == ["1", "2", "1", "2", "3", "4"]
    stray = load_pdf(pf.text_pdf(tmp_path / "stray.pdf", ["Sales 12", "Costs 40", "Profit 7", "Tax 2", "Cash 99"]))
    assert [p.label for p in stray.pages] == ["1", "2", "3", "4", "5"]  # figures that don't run with the pages


def test_a_number_printed_on_a_page_wins_over_a_page_showing_none(engine: Engine, tmp_path: Path) -> None:
    body = [f"{topic}\n{n}" for n, topic in enumerate(TOPICS[:4], 1)]
    list(engine.ingest([pf.text_pdf(tmp_path / "report.pdf", ["Annual report of the harbour", "Contents"] + body)]))
    (doc,) = engine.documents()
    found = hybrid_search(engine.store, engine.embedder, "What is on page 2?", [doc.doc_id], 20,
                          Fusion.from_settings(engine.settings))
    assert found[0].page_start == 4 and found[0].page_name == "2"
