"""Saved conversations in the browser (real headless Chromium against the real app and the stand-in Ollama, a test
double): a conversation survives a reload and a restart of the app and its citation still opens the page; two
logged-in users never see each other's conversations; an answer and a conversation go away as Markdown naming the
file and page of every citation; a citation to a document removed since says so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp, free_port
from tests.test_ui import ACME, CHROMIUM, ZEPHYR, ask, open_app, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
VACATION = "How many days of paid vacation leave does an employee receive?"
DIVIDEND = "What dividend per share did the board approve?"


def _settings(ollama: FakeOllama, data: Path, **extra: Any) -> Settings:
    return Settings.from_env({}, ollama_host=ollama.url, data_dir=data, rerank=False, parse_workers=1, **extra)


def _library(app: LiveApp, folder: Path) -> None:
    list(app.engine.ingest([pf.text_pdf(folder / "acme.pdf", ACME), pf.text_pdf(folder / "zephyr.pdf", ZEPHYR)]))


def _log_in(context: Any, url: str, user: str, password: str) -> Any:
    """A page of ``context`` logged in as ``user`` (through the login form's endpoint) with the app open."""
    assert context.request.post(f"{url}/login", form={"username": user, "password": password}).ok
    page = context.new_page()
    open_app(page, url)
    return page


def _answered(page: Any, question: str) -> None:
    ask(page, question)
    page.wait_for_selector("#pw-chat .pw-copy-md", timeout=60_000)


def _chat_titles(page: Any) -> list[str]:
    return page.locator("#pw-chats label").all_inner_texts()


def test_a_conversation_survives_reload_and_restart_and_stays_with_its_user(browser: Any,
                                                                            ollama_server: FakeOllama,
                                                                            tmp_path: Path) -> None:
    settings = _settings(ollama_server, tmp_path / "data", auth="alice:wonderland,bob:builder")
    port = free_port()
    app = LiveApp(settings, port=port).start()
    alice_browser = browser.new_context(viewport={"width": 1400, "height": 950})
    bob_browser = browser.new_context(viewport={"width": 1400, "height": 950})
    try:
        _library(app, tmp_path)
        alice = _log_in(alice_browser, app.url, "alice", "wonderland")
        _answered(alice, VACATION)
        assert _chat_titles(alice) == [VACATION]

        alice.reload(wait_until="load")  # the conversation comes back, citations and all
        alice.wait_for_selector("#pw-chat .pw-cite", timeout=30_000)
        assert "30 days of paid leave" in alice.inner_text("#pw-chat")
        assert alice.input_value("#pw-chat-title input") == VACATION

        bob = _log_in(bob_browser, app.url, "bob", "builder")
        assert _chat_titles(bob) == [] and bob.locator("#pw-chat .pw-cite").count() == 0
        _answered(bob, DIVIDEND)
        assert _chat_titles(bob) == [DIVIDEND]
        alice.reload(wait_until="load")
        alice.wait_for_selector("#pw-chat .pw-cite", timeout=30_000)
        assert _chat_titles(alice) == [VACATION]  # Bob's question is not in Alice's list
        # ... nor in what the API gives her.
        from gradio_client import Client

        as_alice = Client(app.url, auth=("alice", "wonderland"), verbose=False)
        assert [c["title"] for c in as_alice.predict(api_name="/chats")] == [VACATION]
    finally:
        app.stop()

    # The next day: the app was restarted, Alice logs in again and finds her conversation as she left it.
    app = LiveApp(_settings(ollama_server, tmp_path / "data", auth="alice:wonderland,bob:builder"), port=port).start()
    try:
        alice = _log_in(alice_browser, app.url, "alice", "wonderland")
        alice.wait_for_selector("#pw-chat .pw-cite", timeout=30_000)
        assert _chat_titles(alice) == [VACATION]
        alice.click("#pw-chat .pw-cite")
        alice.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
        assert alice.get_attribute("#pw-viewer", "data-page") == "2"
        assert "Vacation policy" in alice.inner_text("#pw-viewer .pw-hit")
        shot(alice, "7-restored-after-restart")
    finally:
        alice_browser.close()
        bob_browser.close()
        app.stop()


def test_answers_and_conversations_go_away_as_markdown(browser: Any, ollama_server: FakeOllama, tmp_path: Path) -> None:
    app = LiveApp(_settings(ollama_server, tmp_path / "data")).start()
    context = browser.new_context(viewport={"width": 1400, "height": 950}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    try:
        _library(app, tmp_path)
        page = context.new_page()
        open_app(page, app.url)
        _answered(page, VACATION)
        _answered(page, DIVIDEND)
        page.wait_for_function("document.querySelectorAll('#pw-chat .pw-copy-md').length == 2")

        page.locator("#pw-chat .pw-copy-md").last.click()
        page.wait_for_selector("#pw-chat .pw-copy-md[data-copied=yes]")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("The board approved a dividend of 3 cents per share")
        assert "**Sources**" in copied and "`acme.pdf`, page 3" in copied and "> The board approved" in copied

        with page.expect_download() as download:
            page.click("#pw-download")
        assert download.value.suggested_filename == "pagewise-how-many-days-of-paid-vacation-leave-does-an-employee.md"
        markdown = Path(download.value.path()).read_text()
        chips = page.eval_on_selector_all("#pw-chat .pw-cite", "els => els.map(e => e.title.split('\\n')[0])")
        assert len(chips) == 2
        for head in chips:  # "zephyr.pdf, p. 2": every citation's file and page are named
            file, page_number = re.fullmatch(r"(.+), p\. (\d+)", head).groups()
            assert f"`{file}`, page {page_number}" in markdown
        assert markdown.index(VACATION) < markdown.index("30 days") < markdown.index(DIVIDEND)

        # The cited document is removed: its citation says so instead of failing, at once and after a reload.
        app.engine.delete("acme.pdf")
        page.locator("#pw-chat .pw-cite").last.click()
        page.wait_for_selector("#pw-viewer[data-state=removed]", timeout=30_000)
        page.reload(wait_until="load")
        page.wait_for_selector("#pw-chat .pw-cite.pw-gone", timeout=30_000)
        page.click("#pw-chat .pw-cite.pw-gone")
        page.wait_for_selector("#pw-viewer[data-state=removed]")
        assert "acme.pdf has been removed from the library" in page.inner_text("#pw-viewer")
        assert "3 cents per share" in page.inner_text("#pw-viewer")
        page.click("#pw-chat .pw-cite:not(.pw-gone)")  # the other document's citation still opens its page
        page.wait_for_selector("#pw-viewer[data-state=ready][data-page='2']", timeout=30_000)
    finally:
        context.close()
        app.stop()
