"""The library tab with thousands of documents, in headless Chromium: one page of the table and of "Ask about" at a
time, search by name or title, a synced folder as a filter, the selection kept across pages, and the ingest queue's
line. Registry entries are written straight into the registry (the page reads only the registry); the models are
the stand-in Ollama (a test double)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.core.config import Settings
from rag.core.records import DocumentInfo
from rag.engine import Engine
from rag.search.store import READY, _meta
from tests import pdf_factory as pf
from tests.live_app import LiveApp
from ui import library as library_view

MANY = 2 * library_view.PAGE_SIZE + 50


def fill_registry(engine: Engine, count: int) -> None:
    """``count`` ready documents in the registry (no chunks: enough for the library's lists)."""
    now = time.time()
    infos = [DocumentInfo(doc_id=f"{i:032x}", file_name=f"report-{i:05d}.pdf", title=f"Quarterly report {i}",
                          pages=3, chunks=6, status=READY, added_at=now - 1000 - i, size_bytes=1000)
             for i in range(count)]
    engine.store.registry.upsert(ids=[d.doc_id for d in infos], embeddings=[[1.0]] * len(infos),
                                 metadatas=[_meta(d, READY) for d in infos])


def _app(settings: Settings, tmp_path: Path, registry: int) -> Iterator[LiveApp]:
    folder = tmp_path / "contracts"
    folder.mkdir()
    pf.text_pdf(folder / "lease.pdf", ["Lease agreement for the harbour office.", "The rent is 900 euros."])
    pf.text_pdf(folder / "supply.pdf", ["Supply contract for turbines.", "Delivery within 30 days."])
    engine = Engine(settings.with_(watch=str(folder), watch_interval=0.5))
    if registry:
        fill_registry(engine, registry)
    with LiveApp(settings, engine) as app:
        deadline = time.monotonic() + 120
        while len(app.engine.documents()) < registry + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield app


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[LiveApp]:
    """A large library (registry entries without chunks) and a watched folder of two PDFs."""
    yield from _app(settings, tmp_path, MANY)


@pytest.fixture
def small(settings: Settings, tmp_path: Path) -> Iterator[LiveApp]:
    """Only the watched folder's two PDFs (every document can be searched)."""
    yield from _app(settings, tmp_path, 0)


def _open(page: Any, url: str) -> None:
    page.goto(url, wait_until="load")
    page.wait_for_selector("#pw-status-box .pw-status", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#pw-scope input').length > 0", timeout=60_000)


def _boxes(page: Any) -> tuple[int, int]:
    return (page.eval_on_selector_all("#pw-scope input[type=checkbox]", "els => els.length"),
            page.eval_on_selector_all("#pw-scope input[type=checkbox]:checked", "els => els.length"))


def test_a_large_library_pages_searches_and_keeps_the_selection(live: LiveApp, browser_page: Any) -> None:
    page = browser_page
    total = MANY + 2
    _open(page, live.url)
    library = page.inner_text("#pw-library")
    assert f"{total} documents" in library and f"Showing 1–{library_view.PAGE_SIZE} of {total}" in library
    assert _boxes(page) == (library_view.PAGE_SIZE, library_view.PAGE_SIZE)  # one page, all chosen
    assert f"whole library ({total} documents)" in page.inner_text("#pw-scope")
    assert "Page 1 of 3" in page.inner_text("#pw-lib-page")
    assert "in step" in page.inner_text("#pw-queue")  # the watched folder and its state

    page.click("#pw-lib-next")
    page.wait_for_function("document.querySelector('#pw-lib-page').innerText.includes('Page 2 of 3')")
    assert f"Showing {library_view.PAGE_SIZE + 1}–" in page.inner_text("#pw-library")

    # Unticking one document chooses all the others.
    page.locator("#pw-scope label").first.click()
    page.wait_for_function(f"document.querySelector('#pw-scope').innerText.includes('{total - 1} of {total}')")

    # Search by title (every word): the matches only; the selection is unchanged by searching.
    page.fill("#pw-lib-search input, #pw-lib-search textarea", "quarterly report 42")
    page.wait_for_function("document.querySelectorAll('#pw-scope input').length == 3", timeout=30_000)
    names = page.inner_text("#pw-library")
    assert all(f"report-{n:05d}.pdf" in names for n in (42, 142, 242))
    assert f"{total - 1} of {total}" in page.inner_text("#pw-scope")
    page.fill("#pw-lib-search input, #pw-lib-search textarea", "no such thing anywhere")
    page.wait_for_function("document.querySelector('#pw-library').innerText.includes('No document matches')")
    page.fill("#pw-lib-search input, #pw-lib-search textarea", "")

    # A synced folder as a filter; "None" then unchooses just its documents.
    page.click("#pw-lib-folder")
    page.get_by_role("option", name=str(Path(live.engine.settings.watch_folders[0]).resolve())).click()
    page.wait_for_function("document.querySelectorAll('#pw-scope input').length == 2", timeout=30_000)
    assert "lease.pdf" in page.inner_text("#pw-library") and "supply.pdf" in page.inner_text("#pw-library")
    page.get_by_role("button", name="None", exact=True).click()
    page.wait_for_function(f"document.querySelector('#pw-scope').innerText.includes('{total - 3} of {total}')")
    assert _boxes(page) == (2, 0)


def test_questions_are_asked_about_the_chosen_documents_only(small: LiveApp, browser_page: Any) -> None:
    page = browser_page
    _open(page, small.url)
    page.get_by_role("button", name="None", exact=True).click()  # nothing chosen
    page.wait_for_function("document.querySelector('#pw-scope').innerText.includes('from 0 of')")
    page.fill("#pw-lib-search input, #pw-lib-search textarea", "supply")
    page.wait_for_function("document.querySelectorAll('#pw-scope input').length == 1", timeout=30_000)
    page.locator("#pw-scope label").first.click()  # the supply contract only
    page.wait_for_function("document.querySelector('#pw-scope').innerText.includes('from 1 of')")
    page.fill("#pw-question textarea", "How much is the rent of the harbour office?")
    page.click("#pw-send")
    page.wait_for_function("document.querySelector('#pw-sources').textContent.includes('supply.pdf')",
                           timeout=60_000)  # the passages retrieved come from what is chosen
    assert "lease.pdf" not in page.text_content("#pw-sources")


def test_selection_rules() -> None:
    docs = [DocumentInfo(doc_id=str(i), file_name=f"f{i}.pdf", title="", pages=1, chunks=1, status=READY,
                         added_at=float(i)) for i in range(5)]
    view = library_view.View(docs[:2], docs[:2], [d.doc_id for d in docs], 0, 3)
    assert library_view.checked(view, None) == ["0", "1"]
    assert library_view.tick(view, ["0"], None) == ["2", "3", "4", "0"]
    assert library_view.tick(view, ["0", "1"], ["2", "3", "4"]) is None  # everything again: the whole library
    assert library_view.select_matching(view, None, False) == ["2", "3", "4"]
    assert library_view.select_matching(view, ["4"], True) == ["4", "0", "1"]
    assert library_view.with_added(["4"], ["9", "3"], ["3", "4", "9"]) is None
    assert library_view.with_added(["4"], ["9"], ["3", "4", "9"]) == ["4", "9"]
    assert "2 of 5" in library_view.scope_label(["1", "2"], 5)
