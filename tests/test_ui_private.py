"""Private libraries in the real app (headless Chromium with one browser context per person, and gradio_client
with real logins; the stand-in Ollama is a test double): what Alice uploads, Bob cannot list, search, ask over,
open, delete or export, by the page or by a script; the stored PDF's route answers him exactly as for a PDF that
does not exist; guests in two browsers each get a library of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp
from tests.test_access import HANDBOOK, PRICE, SECRET
from tests.test_ui import CHROMIUM, ask, drop_files, open_app, shot
from tests.test_ui_conversations import _log_in

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def _settings(ollama: FakeOllama, data: Path, **extra: Any) -> Settings:
    return Settings.from_env({}, ollama_host=ollama.url, data_dir=data, rerank=False, parse_workers=1, think=False,
                             **extra)


def _upload(page: Any, pdf: Path) -> None:
    drop_files(page, [pdf])
    page.wait_for_function("document.querySelectorAll('#pw-upload-log .pw-done, #pw-upload-log .pw-same')"
                           ".length == 1", timeout=60_000)


def _answer(page: Any, question: str) -> str:
    count = page.locator("#pw-chat .pw-copy-md").count()
    ask(page, question)
    page.wait_for_function(f"document.querySelectorAll('#pw-chat .pw-copy-md').length > {count} || "
                           "document.querySelector('#pw-chat .pw-error')", timeout=60_000)
    return page.inner_text("#pw-chat")


def _scope(page: Any) -> list[str]:
    return page.locator("#pw-scope label").all_inner_texts()


def test_another_users_pdf_is_out_of_reach_in_the_browser_and_the_api(browser: Any, ollama_server: FakeOllama,
                                                                      tmp_path: Path) -> None:
    from gradio_client import Client

    app = LiveApp(_settings(ollama_server, tmp_path / "data", auth="alice:wonderland,bob:builder")).start()
    alice_context = browser.new_context(viewport={"width": 1400, "height": 950})
    bob_context = browser.new_context(viewport={"width": 1400, "height": 950}, accept_downloads=True)
    try:
        alice = _log_in(alice_context, app.url, "alice", "wonderland")
        _upload(alice, pf.text_pdf(tmp_path / "nightjar.pdf", SECRET))
        assert "812 million" in _answer(alice, PRICE)
        alice.click("#pw-chat .pw-cite")
        alice.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
        pdf_url = alice.evaluate("document.querySelector('#pw-open-tab').href").split("#")[0]
        doc_id = alice.get_attribute("#pw-viewer", "data-doc")
        assert alice_context.request.get(pdf_url).body().startswith(b"%PDF")
        shot(alice, "private-alice")

        bob = _log_in(bob_context, app.url, "bob", "builder")
        _upload(bob, pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK))
        assert "nightjar" not in bob.inner_text("#pw-library") and "nightjar" not in " ".join(_scope(bob))
        chat = _answer(bob, PRICE)
        assert "812" not in chat and "nightjar" not in chat
        shot(bob, "private-bob")

        # The PDF: Alice's link, and Bob's own key with her document's id, get what a missing PDF gets.
        own_key = bob_context.request.get(f"{app.url}/pagewise/key").json()["key"]
        missing = bob_context.request.get(f"{app.url}/pagewise/files/{own_key}/{'0' * 32}.pdf")
        theirs = bob_context.request.get(f"{app.url}/pagewise/files/{own_key}/{doc_id}.pdf")
        link = bob_context.request.get(pdf_url)
        ocr = bob_context.request.get(f"{app.url}/pagewise/files/{own_key}/{doc_id}.ocr.json")
        for reply in (theirs, link, ocr):
            assert (reply.status, reply.headers.get("content-type"), reply.body()) == \
                (missing.status, missing.headers.get("content-type"), missing.body())
        assert missing.status == 404
        assert browser.new_context().request.get(pdf_url).status == 404  # nobody logged in

        # Bob's conversation, exported, names nothing of hers.
        with bob.expect_download() as download:
            bob.click("#pw-download")
        assert "nightjar" not in Path(download.value.path()).read_text().lower()

        # A script with Bob's login: not listed, not searched even by id, not deleted.
        as_bob = Client(app.url, auth=("bob", "builder"), verbose=False)
        assert [d["file_name"] for d in as_bob.predict(api_name="/documents")] == ["handbook.pdf"]
        result = as_bob.predict(PRICE, [doc_id], False, api_name="/ask")
        assert result["cited"] == [] and result["other"] == [] and "812" not in result["answer"]
        with pytest.raises(Exception) as refused:  # noqa: B017 - gradio_client raises AppError
            as_bob.predict(doc_id, api_name="/delete")
        assert "No indexed document" in str(refused.value)
        as_alice = Client(app.url, auth=("alice", "wonderland"), verbose=False)
        assert [d["doc_id"] for d in as_alice.predict(api_name="/documents")] == [doc_id]
        assert app.engine.store.file_path(doc_id).exists()
    finally:
        alice_context.close()
        bob_context.close()
        app.stop()


def test_guests_in_two_browsers_have_their_own_libraries(browser: Any, ollama_server: FakeOllama,
                                                         tmp_path: Path) -> None:
    app = LiveApp(_settings(ollama_server, tmp_path / "data", guests=True)).start()
    first = browser.new_context(viewport={"width": 1400, "height": 950})
    second = browser.new_context(viewport={"width": 1400, "height": 950})
    try:
        one = first.new_page()
        open_app(one, app.url)
        _upload(one, pf.text_pdf(tmp_path / "nightjar.pdf", SECRET))
        assert "812 million" in _answer(one, PRICE)
        one.reload(wait_until="load")
        one.wait_for_selector("#pw-chat .pw-cite", timeout=30_000)  # the same guest after a reload
        assert "nightjar.pdf" in one.inner_text("#pw-library")

        two = second.new_page()
        open_app(two, app.url)
        assert "nightjar" not in two.inner_text("#pw-library") and _scope(two) == []
        assert two.locator("#pw-chats label").count() == 0  # nor the first guest's conversation
        assert "812" not in _answer(two, PRICE)
        doc_id = app.engine.documents()[0].doc_id
        key = second.request.get(f"{app.url}/pagewise/key").json()["key"]
        assert second.request.get(f"{app.url}/pagewise/files/{key}/{doc_id}.pdf").status == 404

        # A script is a guest too, kept by its cookie from call to call, and alone with its documents.
        from gradio_client import Client, handle_file

        script, other = Client(app.url, verbose=False), Client(app.url, verbose=False)
        (handbook,) = script.predict([handle_file(str(pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK)))],
                                     api_name="/upload")
        assert handbook["status"] == "indexed"
        assert [d["file_name"] for d in script.predict(api_name="/documents")] == ["handbook.pdf"]
        assert other.predict(api_name="/documents") == []
    finally:
        first.close()
        second.close()
        app.stop()


def test_a_collection_shared_to_read_can_be_asked_not_changed_and_revoked_at_once(
        browser: Any, ollama_server: FakeOllama, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    app = LiveApp(_settings(ollama_server, tmp_path / "data", auth="alice:wonderland,bob:builder")).start()
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    try:
        as_alice = Client(app.url, auth=("alice", "wonderland"), verbose=False)
        as_bob = Client(app.url, auth=("bob", "builder"), verbose=False)
        (memo,) = as_alice.predict([handle_file(str(pf.text_pdf(tmp_path / "nightjar.pdf", SECRET)))],
                                   api_name="/upload")
        deals = as_alice.predict("Deals", api_name="/create_collection")
        as_alice.predict(deals["id"], "nightjar.pdf", api_name="/collection_add")
        shared = as_alice.predict(deals["id"], "bob", "read", api_name="/share_collection")
        assert shared["shared_with"] == {"bob": "read"}

        ((seen),) = as_bob.predict(api_name="/collections")
        assert seen["mode"] == "read" and seen["owner"] == "alice" and "shared_with" not in seen
        result = as_bob.predict(PRICE, None, False, api_name="/ask")
        assert "812 million" in result["answer"] and result["cited"][0]["doc_id"] == memo["doc_id"]
        for call in ((memo["doc_id"], "/delete"), (deals["id"], memo["doc_id"], "/collection_remove"),
                     (deals["id"], "carol", "edit", "/share_collection")):
            with pytest.raises(Exception):  # noqa: B017 - gradio_client raises AppError
                as_bob.predict(*call[:-1], api_name=call[-1])
        assert [d["doc_id"] for d in as_alice.predict(api_name="/documents")] == [memo["doc_id"]]

        # In Bob's browser, "Ask about a collection" checks the shared document.
        page = _log_in(context, app.url, "bob", "builder")
        page.click("#pw-group input")
        page.get_by_role("option", name="Deals · alice's (read)").click()
        page.wait_for_function("document.querySelectorAll('#pw-scope input[type=checkbox]:checked').length == 1")
        assert "812 million" in _answer(page, PRICE)
        page.click("#pw-collections button")
        page.click("#pw-collection input")
        page.get_by_role("option", name="Deals · alice's (read)").click()
        page.wait_for_function("document.querySelector('#pw-collection-info').innerText.includes('to read')")
        shot(page, "private-shared-collection")
        page.click("#pw-chat .pw-cite")
        page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
        pdf_url = page.evaluate("document.querySelector('#pw-open-tab').href").split("#")[0]

        as_alice.predict(deals["id"], "bob", "", api_name="/share_collection")  # revoked: gone on the next request
        assert as_bob.predict(api_name="/documents") == [] and as_bob.predict(api_name="/collections") == []
        result = as_bob.predict(PRICE, [memo["doc_id"]], False, api_name="/ask")
        assert result["cited"] == [] and "812" not in result["answer"]
        assert context.request.get(pdf_url).status == 404
        (chat,) = as_bob.predict(api_name="/chats")
        cited = as_bob.predict(chat["id"], api_name="/chat")["messages"][-1]["cited"]
        assert cited and all(c["removed"] for c in cited)  # his old answer's citations no longer open
    finally:
        context.close()
        app.stop()
