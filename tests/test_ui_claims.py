"""The claim check in the browser: a re-pointed citation says so, a statement no source holds is underlined with
the reason on hover, and the answer ends with the count. Real headless Chromium against the stand-in Ollama."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.test_ui import CHROMIUM, App, app, ask, open_app, page, shot  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed")


def erring(body: dict[str, Any]) -> tuple[str, str]:
    """Test double of a chat model that cites the wrong source for the dividend and alters the revenue."""
    prompt = body["messages"][-1]["content"]
    number = {("revenue" if "Revenue grew" in text else "dividend" if "dividend" in text else "other"): n
              for n, text in re.findall(r'<source id="(\d+)"[^>]*>(.*?)</source>', prompt, re.DOTALL)}
    return "", (f"The board approved a dividend of 3 cents per share [{number['revenue']}]. "
                f"Revenue grew to 47 million dollars [{number['revenue']}].")


def test_the_answer_shows_what_the_check_found(page: Any, app: App) -> None:  # noqa: F811
    list(app.engine.ingest([app.pdfs["acme.pdf"]]))
    app.ollama.responder = erring
    try:
        open_app(page, app.url)
        ask(page, "What dividend did the board approve, and how much did revenue grow to?")
        page.wait_for_selector("#pw-chat .pw-claims-note", timeout=60_000)
        unsupported = page.locator("#pw-chat .pw-unsupported")
        assert unsupported.count() == 1 and "47 million" in unsupported.inner_text()
        assert "47 million" in unsupported.get_attribute("title")
        moved = page.locator("#pw-chat .pw-repointed")
        assert moved.count() == 1 and "re-pointed" in moved.get_attribute("title")
        note = page.inner_text("#pw-chat .pw-claims-note")
        assert note == "1 statement could not be matched to the sources; 1 citation re-pointed to the passage that " \
                       "supports it."
        cited = page.locator("#pw-sources .pw-source .pw-num")
        assert sorted(cited.all_inner_texts()) == ["1", "2"]  # the passage a citation was re-pointed to is listed
        shot(page, "5-claim-check")
    finally:
        app.ollama.reset()
