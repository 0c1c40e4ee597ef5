"""What the app renders: chips, sources, progress and status as HTML in which PDF and model text stay inert."""

from __future__ import annotations

import re
from html import unescape

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.events import Sources
from rag.core.records import Citation, DocumentInfo, Health, Passage
from rag.ingestion.ingest import SourceFile, safe_file_name
from ui import render

EVIL = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def passage(n: int, text: str, file_name: str = "a.pdf", page: int = 2) -> Passage:
    return Passage(f"c{n}", f"doc{n}", file_name, text, page, page, 0, len(text))


def test_answer_chips_for_real_sources_only() -> None:
    p1, p2 = passage(1, "Revenue was 41 million."), passage(2, "Dividend of 3 cents.", page=3)
    sources = Sources([Citation(1, p1), Citation(2, p2)], [], dropped_citations=1)
    html = render.answer_html("Revenue was 41 million [1, 2] and more [7].", sources)
    assert html.count('class="pw-cite') == 2
    assert 'pw-d-doc2 pw-p-3' in html and 'title="a.pdf, p. 3\nDividend of 3 cents."' in html
    assert "[7]" not in html and "1 citation to a source that doesn't exist was removed" in html


def test_model_and_pdf_text_is_escaped_everywhere() -> None:
    p = passage(1, f"Parking is free. {EVIL}", file_name=f"{EVIL}.pdf")
    sources = Sources([Citation(1, p)], [passage(2, EVIL)])
    for html in (render.answer_html(f"Free {EVIL} [1].", sources), render.sources_html(sources, "Free [1]."),
                 render.upload_html({f"{EVIL}.pdf": ("failed", EVIL, 1.0)}), render.streaming_html(EVIL),
                 render.status_html(Health("e", "c", [EVIL]))):
        assert "<img" not in html and "<script" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_library_table_lists_documents_escaped_newest_first() -> None:
    docs = [DocumentInfo("d1", "<b>q3</b>.pdf", 'Q3 "report"', 12, 40, "ready", 100.0),
            DocumentInfo("d2", "notes.pdf", "", 1, 2, "ready", 200.0)]
    html = render.library_html(docs)
    assert "2 documents" in html and html.count("<tr") == 3  # header + 2 rows
    assert "&lt;b&gt;q3&lt;/b&gt;.pdf" in html and "<b>q3" not in html
    assert 'title="&lt;b&gt;q3&lt;/b&gt;.pdf\nQ3 &quot;report&quot;\n12 pages · 40 passages"' in html  # on hover
    assert 'title="notes.pdf\n1 page · 2 passages"' in html
    assert html.index("notes.pdf") < html.index("q3")  # the newest first
    assert 'data-name="notes.pdf" data-pages="1" data-added="200.000"' in html  # what the headers sort by
    assert [h for h in ("name", "pages", "added") if f'data-sort="{h}"' in html] == ["name", "pages", "added"]
    assert "pw-lib-filter" not in html  # a short library needs no filter box
    assert "No documents yet" in render.library_html([])


def test_documents_read_by_ocr_are_marked_in_the_library() -> None:
    scanned = DocumentInfo("d1", "scan.pdf", "", 3, 6, "ready", 1.0, ocr_pages=[1, 2, 3])
    mixed = DocumentInfo("d2", "deck.pdf", "", 12, 20, "ready", 2.0, ocr_pages=[4, 7])
    typed = DocumentInfo("d3", "typed.pdf", "", 2, 4, "ready", 3.0)
    html = render.library_html([scanned, mixed, typed])
    assert html.count(">OCR</span>") == 2
    assert 'title="Every page read by OCR">OCR' in html and 'title="Pages 4, 7 read by OCR">OCR' in html
    assert "typed.pdf</span></div>" in html  # no mark
    assert "6 passages\nevery page read by OCR" in html  # the name's tooltip says it too


def test_a_long_library_gets_a_filter_box() -> None:
    docs = [DocumentInfo(f"d{i}", f"report-{i}.pdf", "", 3, 9, "ready", float(i))
            for i in range(render.FILTER_AFTER + 1)]
    assert "pw-lib-filter" in render.library_html(docs)
    assert "pw-lib-filter" not in render.library_html(docs[:render.FILTER_AFTER])


def test_sources_mark_the_cited_sentence() -> None:
    text = "The company was founded in 1990. Revenue grew to 41 million dollars in 2022. Staff count is 300."
    sources = Sources([Citation(1, passage(1, text))], [passage(2, "Other text.")])
    html = render.sources_html(sources, "Revenue grew to 41 million dollars [1].")
    assert "<mark>Revenue grew to 41 million dollars in 2022.</mark>" in html
    assert "Other retrieved passages (1)" in html


def test_empty_sources_say_what_to_do() -> None:
    assert "Click one to open its page" in render.sources_html(None)


def test_chat_html_back_to_plain_text() -> None:
    sources = Sources([Citation(1, passage(1, "x"))], [])
    html = render.answer_html("Fish &amp; chips <b> cost 3 [1].", sources)
    assert render.plain_text(html) == "Fish &amp; chips <b> cost 3 ."


def test_status_badge_shows_commands() -> None:
    html = render.status_html(Health("e", "c", ["Can't reach Ollama. Start it with `ollama serve`."]))
    assert "<code>ollama serve</code>" in html and "pw-bad" in html
    assert "pw-ok" in render.status_html(Health("qwen3-embedding", "qwen3:8b"))


@pytest.mark.parametrize(("raw", "safe"), [("../../x.pdf", "x.pdf"), ("..\\..\\evil.pdf", "evil.pdf"),
                                           ("/etc/passwd", "passwd"), ("a\x00b\n.pdf", "ab.pdf"),
                                           ("", "document.pdf"), (".hidden.pdf", "hidden.pdf")])
def test_uploaded_file_names_are_sanitised(raw: str, safe: str) -> None:
    assert safe_file_name(raw) == safe
    assert SourceFile.of(SourceFile(__file__, raw)).name == safe  # type: ignore[arg-type]


def test_network_binding_needs_a_login() -> None:
    with pytest.raises(ConfigError, match="RAG_AUTH"):
        Settings.from_env({"RAG_HOST": "0.0.0.0"})
    assert Settings.from_env({"RAG_HOST": "0.0.0.0", "RAG_AUTH": "ann:pw1,bob:pw2"}).logins == [("ann", "pw1"),
                                                                                               ("bob", "pw2")]
    assert Settings.from_env({"RAG_HOST": "0.0.0.0", "RAG_AUTH": "none"}).logins == []
    with pytest.raises(ConfigError, match="RAG_AUTH"):
        Settings.from_env({"RAG_AUTH": "no-colon"})


def test_chips_carry_the_cited_sentence_and_say_when_their_document_is_gone() -> None:
    text = "The company was founded in 1990. Revenue grew to 41 million dollars in 2022. Staff count is 300."
    sources = Sources([Citation(1, passage(1, text, file_name="acme.pdf", page=2))], [])
    html = render.answer_html("Revenue grew to 41 million dollars [1].", sources)
    a, b = map(int, re.search(r"pw-s-(\d+)-(\d+)", html).groups())  # type: ignore[union-attr]
    assert text[a:b] == "Revenue grew to 41 million dollars in 2022."  # the viewer stresses this sentence
    gone = render.answer_html("Revenue grew [1].", sources, removed={"doc1"})
    assert "pw-gone" in gone and 'title="acme.pdf, p. 2 · removed from the library\n' in gone
    assert "removed from the library" in render.sources_html(sources, "", removed={"doc1"})


def test_a_finished_answer_carries_its_markdown_for_copying() -> None:
    sources = Sources([Citation(1, passage(1, "Revenue was 41 million.", file_name="acme.pdf", page=2))], [])
    html = render.answer_message("Revenue was 41 million [1].", sources, error="Stopped before the end.")
    markdown = unescape(re.search(r'class="pw-md" title="([^"]*)"', html).group(1))  # type: ignore[union-attr]
    assert markdown.startswith("Revenue was 41 million [1].\n\n*Stopped before the end.*")
    assert "- **[1]** `acme.pdf`, page 2\n  > Revenue was 41 million." in markdown
    assert "\n" not in html.split('class="pw-md"')[1].split(">")[0]  # no raw line break inside the attribute
    assert render.plain_text(html).strip() == "Revenue was 41 million .\n\n⚠ Stopped before the end."


def test_a_passage_read_by_ocr_says_so_and_tells_the_viewer() -> None:
    scanned = Passage("c1", "doc1", "scan.pdf", "Revenue was 41 million.", 4, 4, 0, 23, ocr=True)
    typed = passage(2, "Dividend of 3 cents.")
    sources = Sources([Citation(1, scanned), Citation(2, typed)], [])
    chips = render.answer_html("Revenue [1]. Dividend [2].", sources)
    assert 'class="pw-cite pw-d-doc1 pw-p-4 pw-ocr"' in chips and 'class="pw-cite pw-d-doc2 pw-p-2"' in chips
    cards = render.sources_html(sources, "Revenue [1]. Dividend [2].")
    assert cards.count(">read by OCR<") == 1 and 'class="pw-source pw-d-doc1 pw-p-4 pw-ocr"' in cards


def test_a_chip_keeps_working_for_a_passage_of_several_paragraphs() -> None:
    # In the chat's Markdown a blank line ends an HTML tag, even inside an attribute: the chip would break.
    p = passage(1, "Chapter II\n\nWe went tip-toeing along a path.\n \nThen he says, \"Who dah?\"")
    html = render.chip(Citation(1, p))
    title = html.split('title="', 1)[1].split('"', 1)[0]
    assert "\n\n" not in title and "\n \n" not in title
    assert title == "a.pdf, p. 2\nChapter II\nWe went tip-toeing along a path.\nThen he says, &quot;Who dah?&quot;"


def test_the_stylesheet_and_scripts_are_whole() -> None:
    """No merge left its conflict markers in the assets (a browser silently drops the rules they break)."""
    from pathlib import Path

    assets = Path(__file__).resolve().parent.parent / "assets"
    for path in [*assets.glob("*.css"), *assets.glob("*.js")]:
        assert not re.search(r"^(<{7}|={7}|>{7})( |$)", path.read_text(), re.MULTILINE), path.name
