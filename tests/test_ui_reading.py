"""Reading in the browser (real headless Chromium against the real app and the stand-in Ollama, a test double): the
library table in a narrow column (names cut with an ellipsis, sortable, filterable), the app at phone width, and the
viewer (zoom, fit width, the large view, the keyboard) keeping the cited passage highlighted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp, register_stored
from tests.test_ui import ACME, CHROMIUM, ZEPHYR, ask, open_app, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
LONG_NAME = "AMCOR_2023Q4_EARNINGS_PRESENTATION_FINAL.pdf"
REPORTS = [f"report-{i:02d}-quarterly-results.pdf" for i in range(9)]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, ollama_server: FakeOllama) -> Iterator[LiveApp]:
    """The app with a library longer than the filter threshold: acme and zephyr (3 pages each), one long name (5
    pages) and nine short reports (1 or 2 pages)."""
    root = tmp_path_factory.mktemp("reading")
    settings = Settings.from_env({}, ollama_host=ollama_server.url, data_dir=root / "data", rerank=False,
                                 parse_workers=1)
    live = LiveApp(settings).start()
    files = [pf.text_pdf(root / "acme.pdf", ACME), pf.text_pdf(root / "zephyr.pdf", ZEPHYR),
             pf.text_pdf(root / LONG_NAME, ["Amcor fourth quarter.", "Net sales.", "Margins.", "Cash.", "Outlook."])]
    files += [pf.text_pdf(root / name, [f"Quarterly report number {i}."] * (i % 2 + 1))
              for i, name in enumerate(REPORTS)]
    for file in files:  # one at a time, so each has its own "added" time
        list(live.engine.ingest([file]))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def page(browser: Any, app: LiveApp) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = context.new_page()
    open_app(pg, app.url)
    pg.wait_for_selector("#pw-library table")
    yield pg
    context.close()


def _names(page: Any) -> list[str]:
    return page.eval_on_selector_all("#pw-library tbody tr:not([hidden]) .pw-lib-file",
                                     "cells => cells.map(c => c.textContent)")


def test_library_names_fit_the_column_and_sort_and_filter(page: Any) -> None:
    name = page.locator(f"#pw-library .pw-lib-file[title^='{LONG_NAME}']")
    box = name.evaluate("e => ({scroll: e.scrollWidth, client: e.clientWidth, height: e.getBoundingClientRect()"
                        ".height, line: parseFloat(getComputedStyle(e).lineHeight)})")
    assert box["scroll"] > box["client"]  # cut short (with an ellipsis), not wrapped mid-word...
    assert box["height"] <= box["line"] * 1.2  # ...on one line
    assert name.get_attribute("title").startswith(LONG_NAME + "\n")  # the full name on hover
    assert _names(page)[0] == REPORTS[-1] and _names(page)[-1] == "acme.pdf"  # the newest first

    page.click("#pw-library th[data-sort=name] button")
    assert _names(page)[:3] == ["acme.pdf", LONG_NAME, REPORTS[0]]
    page.click("#pw-library th[data-sort=name] button")  # again: Z→A
    assert _names(page)[0] == "zephyr.pdf"
    page.click("#pw-library th[data-sort=pages] button")  # the longest first (5 pages, then 3 and 3)
    assert _names(page)[0] == LONG_NAME and set(_names(page)[1:3]) == {"acme.pdf", "zephyr.pdf"}

    page.fill("#pw-library .pw-lib-filter", "QUARTERLY-results")
    assert sorted(_names(page)) == REPORTS
    page.fill("#pw-library .pw-lib-filter", "nothing like it")
    assert _names(page) == [] and page.is_visible("#pw-library .pw-lib-none")
    page.fill("#pw-library .pw-lib-filter", "")
    assert len(_names(page)) == 12
    shot(page, "8-library")


def _highlight(page: Any) -> dict[str, Any]:
    """Where the highlighted passage sits on the rendered page, as fractions of the page, and the viewer's state."""
    return page.evaluate("""(() => {
        const viewer = document.getElementById('pw-viewer'), hit = viewer.querySelector('.pw-hit');
        const box = viewer.querySelector('.pw-page').getBoundingClientRect();
        const at = hit ? hit.getBoundingClientRect() : null;
        return {page: viewer.dataset.page, zoom: Number(viewer.dataset.zoom), large: viewer.dataset.large,
                width: box.width, text: hit ? hit.textContent : '',
                spot: at ? [(at.left - box.left) / box.width, (at.top - box.top) / box.height,
                            at.width / box.width] : null}; })()""")


def _same_spot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["spot"] is not None and b["spot"] is not None and \
        all(abs(x - y) < 0.01 for x, y in zip(a["spot"], b["spot"], strict=True))


def test_zoom_and_the_large_view_keep_the_highlight_and_keys_work(page: Any) -> None:
    ask(page, "How many days of paid vacation leave does an employee receive?")
    page.wait_for_selector("#pw-chat .pw-cite", timeout=60_000)
    page.click("#pw-chat .pw-cite")
    page.wait_for_selector("#pw-viewer[data-state=ready][data-page='2']", timeout=30_000)
    fit = _highlight(page)
    assert "Vacation policy" in fit["text"] and fit["large"] == "false"
    # The cited sentence is stressed, and the text layer only marks the page: its own text stays invisible.
    assert "30 days of paid leave" in page.inner_text("#pw-viewer .pw-focus")
    assert page.eval_on_selector("#pw-viewer .pw-hit", "e => getComputedStyle(e).color") == "rgba(0, 0, 0, 0)"

    def rendered(condition: str) -> dict[str, Any]:
        page.wait_for_function(f"(() => {{ const v = document.getElementById('pw-viewer'); return {condition}; }})()")
        return _highlight(page)

    page.click("#pw-zoom-in")
    page.click("#pw-zoom-in")
    zoomed = rendered(f"Number(v.dataset.zoom) > {fit['zoom'] * 1.4} && v.querySelector('.pw-hit')")
    assert zoomed["width"] > fit["width"] * 1.4 and _same_spot(fit, zoomed) and "Vacation policy" in zoomed["text"]
    page.click("#pw-zoom-out")
    out = rendered(f"Number(v.dataset.zoom) < {zoomed['zoom']} && v.querySelector('.pw-hit')")
    assert _same_spot(fit, out)
    page.click("#pw-fit")
    assert rendered(f"Number(v.dataset.zoom) == {fit['zoom']}")["width"] == pytest.approx(fit["width"], abs=1)

    page.click("#pw-large")  # over the whole window, the page fit to its width: legible
    large = rendered("v.dataset.large == 'true' && Number(v.dataset.zoom) > 100 && v.querySelector('.pw-hit')")
    assert large["width"] > 2 * fit["width"] and _same_spot(fit, large) and "Vacation policy" in large["text"]
    covers = page.evaluate("document.getElementById('pw-viewer').getBoundingClientRect().height / innerHeight")
    assert covers > 0.9
    shot(page, "9-large-view")

    page.keyboard.press("ArrowRight")
    assert rendered("v.dataset.page == '3'")["large"] == "true"
    page.keyboard.press("ArrowLeft")
    assert _same_spot(fit, rendered("v.dataset.page == '2' && v.querySelector('.pw-hit')"))
    page.keyboard.press("Escape")
    closed = rendered(f"v.dataset.large == 'false' && Number(v.dataset.zoom) == {fit['zoom']}")
    assert closed["width"] == pytest.approx(fit["width"], abs=1)

    # The keys belong to the viewer, except while typing in the question box.
    taken = "(sel) => { const e = new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true, cancelable: true});" \
            " document.querySelector(sel).dispatchEvent(e); return e.defaultPrevented; }"
    assert page.evaluate(taken, "#pw-question textarea") is False
    assert page.evaluate(taken, "#pw-chat") is True


def test_the_ocr_highlight_holds_at_every_zoom_and_in_the_large_view(page: Any, app: LiveApp) -> None:
    """A page read by OCR is highlighted by boxes over its recognised lines (assets/ocr_overlay.js): zooming and the
    large view redraw them on the same words."""
    from tests.test_ocr_viewer import CITED, PAGE_ONE, PAGE_TWO, _boxes

    doc_id = "fedcba9876543210fedcba9876543210"
    files = app.engine.store.files_dir
    pf.scanned_pdf(files / f"{doc_id}.pdf", [PAGE_ONE, PAGE_TWO])
    lines = pf.scanned_lines(PAGE_TWO)
    (files / f"{doc_id}.ocr.json").write_text(json.dumps(
        {"pages": {"2": {"lines": [{"text": text, "box": list(box)} for text, box in lines]}}}))
    register_stored(app.engine, doc_id, "scan.pdf", pages=2)
    page.evaluate("([doc, quote]) => window.pagewise.show({doc, page: 2, file: 'scan.pdf', quote, ocr: true})",
                  [doc_id, CITED])
    page.wait_for_selector("#pw-viewer[data-state=ready][data-hits='2']", timeout=30_000)
    fit = _boxes(page)
    assert len(fit) == 2

    width = page.eval_on_selector("#pw-viewer .pw-page", "e => e.offsetWidth")
    bigger = ("document.querySelector('#pw-viewer .pw-page').offsetWidth > {} && "
              "document.querySelectorAll('#pw-viewer .pw-ocr-box').length == 2")
    page.click("#pw-zoom-in")
    page.wait_for_function(bigger.format(width * 1.2))
    zoomed = _boxes(page)
    page.click("#pw-zoom-out")
    page.click("#pw-large")
    page.wait_for_function("document.getElementById('pw-viewer').dataset.large == 'true' && "
                           + bigger.format(width * 2))
    for drawn in (zoomed, _boxes(page)):  # the same words at every size
        assert [list(b.values()) for b in drawn] == [pytest.approx(list(b.values()), abs=0.01) for b in fit]
    page.keyboard.press("Escape")
