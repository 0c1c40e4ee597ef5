"""In real headless Chromium: an answer citing words read inside a figure opens its page with the figure's boxes
highlighted, and the viewer and the sources name the page by the number printed on it. The app runs against the
stand-in Ollama (a test double)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.core.config import Settings
from tests.figure_factory import figure_pdf, relabelled
from tests.live_app import LiveApp
from tests.test_ocr_viewer import _boxes
from tests.test_ui import ask, drop_files, open_app, shot

TEXT = ("Quarterly report of the widget company. Shipments grew in every region this year, as the chart below "
        "shows, and the board expects the same next year.")
PICTURE = ["Zorbex shipments 48", "Quillon returns 17"]


def test_a_cited_figure_is_highlighted_and_pages_show_their_printed_number(settings: Settings, tmp_path: Path,
                                                                           browser_page: Any) -> None:
    pdf = relabelled(figure_pdf(tmp_path / "widgets.pdf", TEXT, PICTURE), first=57)
    with LiveApp(settings.with_(ocr_dpi=100)) as app:
        open_app(browser_page, app.url)
        drop_files(browser_page, [pdf])
        browser_page.wait_for_selector("#pw-upload-log .pw-done", timeout=120_000)
        ask(browser_page, "How many Zorbex shipments were there?")
        browser_page.wait_for_selector("#pw-chat .pw-cite.pw-ocr", timeout=60_000)
        sources = browser_page.inner_text("#pw-sources")
        assert "in a figure" in sources and "p. 57" in sources
        browser_page.click("#pw-chat .pw-cite.pw-ocr")
        browser_page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
        assert browser_page.inner_text("#pw-viewer-page") == "page 57 (1 of 1)"
        marked = browser_page.eval_on_selector_all("#pw-viewer .pw-ocr-box", "els => els.map((e) => e.title)")
        assert "Zorbex shipments 48" in marked
        for box in _boxes(browser_page):  # on the picture, in the lower half of the page
            assert 0.1 < box["x0"] < box["x1"] < 0.9 and 0.4 < box["y0"] < box["y1"] < 0.9
        shot(browser_page, "figure-highlight")
