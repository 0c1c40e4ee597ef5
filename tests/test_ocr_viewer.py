"""The viewer's OCR highlight, in real headless Chromium: a page that is a picture of text has no PDF.js text layer,
so a passage read by OCR is shown by boxes drawn over its recognised lines (assets/ocr_overlay.js), placed in
percentages of the page so they stay on the words at any size. The app runs against the stand-in Ollama (a test
double); the stored PDF and its ``<doc_id>.ocr.json`` are written here as ingest would write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.live_app import LiveApp, register_stored
from tests.test_ui import ask, drop_files, open_app, shot

PAGE_ONE = "Acme Corporation annual report for fiscal 2022."
PAGE_TWO = ("Board of directors and officers of the company.\nRevenue grew to 41 million dollars in fiscal 2022, "
            "driven by sales of rocket skates.\nThe board approved a dividend of 3 cents per share.")
CITED = "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates."


def _boxes(page: Any) -> list[dict[str, float]]:
    """The drawn boxes as fractions of the page element."""
    return page.evaluate("""() => {
        const wrap = document.querySelector('#pw-viewer .pw-page').getBoundingClientRect();
        return [...document.querySelectorAll('#pw-viewer .pw-ocr-box')].map((b) => {
          const r = b.getBoundingClientRect();
          return {x0: (r.left - wrap.left) / wrap.width, y0: (r.top - wrap.top) / wrap.height,
                  x1: (r.right - wrap.left) / wrap.width, y1: (r.bottom - wrap.top) / wrap.height}; }); }""")


def test_an_ocr_passage_is_highlighted_over_its_lines(settings: Settings, browser_page: Any) -> None:
    doc_id = "0123456789abcdef0123456789abcdef"
    with LiveApp(settings) as app:
        files = app.engine.store.files_dir
        pf.scanned_pdf(files / f"{doc_id}.pdf", [PAGE_ONE, PAGE_TWO])
        lines = pf.scanned_lines(PAGE_TWO)
        (files / f"{doc_id}.ocr.json").write_text(json.dumps(
            {"pages": {"2": {"lines": [{"text": text, "box": list(box)} for text, box in lines]}}}))
        register_stored(app.engine, doc_id, "scan.pdf", pages=2)
        open_app(browser_page, app.url)
        browser_page.evaluate("""([doc, quote]) => window.pagewise.show({doc, page: 2, file: 'scan.pdf', quote,
                                                                            ocr: true})""", [doc_id, CITED])
        browser_page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)

        cited = [box for text, box in lines if text in CITED or CITED.endswith(text)]
        assert len(cited) == 2  # the quoted sentence was drawn on two lines
        assert browser_page.get_attribute("#pw-viewer", "data-hits") == "2"
        drawn = _boxes(browser_page)
        assert len(drawn) == 2
        for got, want in zip(drawn, cited, strict=True):  # each box sits where its line was drawn on the page
            assert [got["x0"], got["y0"], got["x1"], got["y1"]] == pytest.approx(list(want), abs=0.01)
        shot(browser_page, "ocr-highlight")

        # Resizing the page keeps the boxes on their lines (they are placed in percentages).
        browser_page.evaluate("() => { const p = document.querySelector('#pw-viewer .pw-page');"
                              " p.style.width = (p.offsetWidth * 1.5) + 'px';"
                              " p.style.height = (p.offsetHeight * 1.5) + 'px'; }")
        assert [list(b.values()) for b in _boxes(browser_page)] == \
            [pytest.approx(list(box), abs=0.01) for box in cited]

        # A text page of the same viewer keeps the text-layer highlight, and no OCR boxes are left over.
        browser_page.evaluate("""([doc]) => window.pagewise.show({doc, page: 1, file: 'scan.pdf', quote: 'x',
                                                                   ocr: false})""", [doc_id])
        browser_page.wait_for_function("document.querySelector('#pw-viewer').dataset.page === '1'")
        assert browser_page.locator("#pw-viewer .pw-ocr-box").count() == 0


def test_a_scan_dropped_in_the_browser_is_read_cited_and_highlighted(settings: Settings, tmp_path: Path,
                                                                     browser_page: Any) -> None:
    scan = pf.scanned_pdf(tmp_path / "scanned-report.pdf", [PAGE_ONE, PAGE_TWO])
    with LiveApp(settings.with_(ocr_dpi=100)) as app:  # large pictured text: 100 dpi reads it, and fast
        open_app(browser_page, app.url)
        # Record every state the upload log goes through (the per-page OCR progress comes and goes).
        browser_page.evaluate("""() => { window.seen = []; const log = document.querySelector('#pw-upload-log');
            new MutationObserver(() => window.seen.push(log.innerText)).observe(log, {subtree: true,
              childList: true, characterData: true}); }""")
        drop_files(browser_page, [scan])
        browser_page.wait_for_selector("#pw-upload-log .pw-done", timeout=120_000)
        assert "2 pages, 2 read by OCR" in browser_page.inner_text("#pw-upload-log")
        seen = "\n".join(browser_page.evaluate("window.seen"))
        assert "reading page 1/2 (OCR)" in seen and "reading page 2/2 (OCR)" in seen
        browser_page.wait_for_function("(document.querySelector('#pw-library .pw-lib-ocr') || {}).title"
                                       " === 'Every page read by OCR'")  # the library's OCR mark

        ask(browser_page, "How much did revenue grow in fiscal 2022, driven by rocket skates?")
        browser_page.wait_for_selector("#pw-chat .pw-cite.pw-ocr", timeout=60_000)
        assert "read by OCR" in browser_page.inner_text("#pw-sources")
        browser_page.click("#pw-chat .pw-cite")
        browser_page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
        assert browser_page.get_attribute("#pw-viewer", "data-page") == "2"
        drawn = _boxes(browser_page)
        assert int(browser_page.get_attribute("#pw-viewer", "data-hits")) == len(drawn) >= 2
        # Each box is a recognised line of the cited passage, drawn where the line is on the page.
        passage = " ".join(browser_page.get_attribute("#pw-chat .pw-cite", "title").split("\n", 1)[1].split())
        marked = browser_page.eval_on_selector_all("#pw-viewer .pw-ocr-box", "els => els.map((e) => e.title)")
        assert all(" ".join(text.split()) in passage for text in marked)
        assert any("rocket skates" in text for text in marked)
        where = dict(pf.scanned_lines(PAGE_TWO))
        for text, box in zip(marked, drawn, strict=True):
            if text in where:  # read exactly as drawn: the box covers the drawn line
                x0, y0, x1, y1 = where[text]
                assert box["y0"] <= y0 + 0.005 and box["y1"] >= y1 - 0.005 and box["x0"] <= x0 + 0.01
        shot(browser_page, "ocr-answer")
