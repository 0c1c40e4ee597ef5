"""The README's screenshots: ``python -m tests.screenshots`` writes assets/screenshot.png (a conversation with a
citation open beside it) and assets/screenshot-large.png (the cited page in the large view).

The app runs for real against the stand-in Ollama (tests/fake_ollama.py, a test double) over three small
generated PDFs; the stand-in's answers here are the best sentences of the (at most two) most relevant passages.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.fake_ollama import _SENTENCE_END_RE, _SOURCE_RE, FakeOllama, _content_words, _last_user_text
from tests.live_app import LiveApp
from tests.test_ui import CHROMIUM

ASSETS = Path(__file__).resolve().parent.parent / "assets"
HANDBOOK = [
    "Zephyr Institute - Employee Handbook 2024\n\n1. Welcome\n\nThis handbook describes how we work together at the "
    "Zephyr Institute: your time off, where to park, how to claim expenses and whom to ask when something is "
    "unclear. It applies to every employee, full time or part time, from their first day.\n\nQuestions about "
    "anything in it go to the People team (people@zephyr.example), who answer within two working days.",
    "2. Time off\n\nVacation policy: every employee receives 30 days of paid leave each year, in addition to public "
    "holidays. Part-time employees receive the same share of their working days.\n\nLeave is booked in the staff "
    "portal at least two weeks ahead for periods longer than three days. Your manager confirms within five working "
    "days.\n\nUp to five unused days carry over to the next year; they must be taken before the end of March, after "
    "which they lapse.\n\nSick leave is separate from vacation and is not counted against your 30 days. Tell your "
    "manager on the first morning of absence.",
    "3. Getting here\n\nParking rules: the north garage is free for cyclists and for employees with a disability "
    "badge. Cars park in the south lot with a permit from reception (40 euros a month, taken from your salary)."
    "\n\nShowers and lockers are on level -1 of the north garage. Public transport passes are reimbursed in full up "
    "to 90 euros a month.",
    "4. Working from home\n\nEmployees may work from home up to three days a week, agreed with their manager. Core "
    "hours are 10:00 to 15:00, when you should be reachable.\n\nThe Institute provides a laptop and a second "
    "screen; a desk chair can be borrowed from the facilities team.",
]
ANNUAL_REPORT = [
    "Acme Corporation - Annual Report 2022\n\nLetter from the chief executive\n\nFiscal 2022 was our strongest year "
    "yet. We grew revenue, opened two new plants and paid our first dividend.",
    "Results\n\nRevenue grew to 41 million dollars in fiscal 2022, up 18 percent, driven by sales of rocket skates "
    "and portable holes. Operating margin rose to 12 percent.\n\nCosts of raw materials rose in the second half, "
    "which we offset with price increases in October.",
    "Shareholders\n\nThe board approved a dividend of 3 cents per share in December 2022, payable in January 2023 to "
    "shareholders on record on 20 December.\n\nThe board intends to review the dividend each year.",
]
EARNINGS = ["Amcor fourth quarter 2023 earnings presentation.", "Net sales of 3.6 billion dollars in the quarter.",
            "Outlook for fiscal 2024."]


def two_sources(body: dict[str, Any]) -> tuple[str, str]:
    """The stand-in's answer: the best sentence of each of the (at most two) sources sharing most question words."""
    text = _last_user_text(body)
    question = text.rsplit("Question:", 1)[1].strip() if "Question:" in text else text.rsplit("</sources>", 1)[-1]
    asked = _content_words(question)
    scored = sorted(((len(asked & _content_words(p)), i, p) for i, p in _SOURCE_RE.findall(text)), reverse=True)
    parts = []
    for overlap, source, passage in scored[:2]:
        if overlap == 0 or overlap < 0.75 * scored[0][0]:
            continue
        lines = [line for line in passage.splitlines() if len(line.strip()) > 25 or line.strip().endswith(".")]
        paragraphs = [" ".join(par.split()) for par in re.split(r"\n\s*\n", "\n".join(lines))]
        sentences = [s for par in paragraphs for s in _SENTENCE_END_RE.split(par) if s.strip()]
        best = max(sentences, key=lambda s: len(asked & _content_words(s))).rstrip(".!?;:, ")
        if ":" in best and best.split(":")[0].lower() in ("vacation policy", "parking rules"):
            best = best.split(":", 1)[1].strip()
            best = best[0].upper() + best[1:]
        parts.append(f"{best} [{source}].")
    return f"Looking for: {question}", " ".join(parts) or "The documents don't say."


def main() -> None:
    """Start the app on three PDFs, hold a few conversations and take the two screenshots."""
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="pagewise-screenshots-"))
    ollama = FakeOllama().start()
    ollama.responder = two_sources
    settings = Settings.from_env({}, ollama_host=ollama.url, data_dir=root / "data", rerank=False, parse_workers=1,
                                 chunk_tokens=90, chunk_overlap=10)
    app = LiveApp(settings).start()
    for name, pages, title in [("acme-annual-report-2022.pdf", ANNUAL_REPORT, "Acme Corporation Annual Report 2022"),
                               ("AMCOR_2023Q4_EARNINGS_PRESENTATION.pdf", EARNINGS, None),
                               ("zephyr-employee-handbook-2024.pdf", HANDBOOK, "Zephyr Employee Handbook 2024")]:
        list(app.engine.ingest([pf.text_pdf(root / name, pages, title=title)]))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(app.url, wait_until="load")
            page.wait_for_selector("#pw-status-box .pw-status", timeout=60_000)

            def ask(question: str, answers: int) -> None:
                page.fill("#pw-question textarea", question)
                page.click("#pw-send")
                page.wait_for_function(f"document.querySelectorAll('#pw-chat .pw-copy-md').length == {answers}",
                                       timeout=60_000)

            page.click("#pw-settings")  # answers without the reasoning block, so two of them fit
            page.click("#pw-settings input[type=checkbox] >> nth=0")
            page.click("#pw-settings")
            for question in ("What revenue did Acme report for fiscal 2022?", "Where can cyclists park?"):
                ask(question, 1)
                page.click("#pw-new-chat")
                page.wait_for_function("document.querySelectorAll('#pw-chat .pw-copy-md').length == 0")
            ask("How many days of paid vacation do employees get?", 1)
            ask("Can unused days carry over to the next year?", 2)
            page.locator("#pw-chat .pw-cite").nth(1).click()
            page.wait_for_selector("#pw-viewer[data-state=ready] .pw-focus")
            page.mouse.move(0, 0)
            page.screenshot(path=str(ASSETS / "screenshot.png"))
            page.click("#pw-large")
            page.wait_for_function("Number(document.getElementById('pw-viewer').dataset.zoom) > 100 && "
                                   "document.querySelector('#pw-viewer .pw-focus')")
            page.screenshot(path=str(ASSETS / "screenshot-large.png"))
            browser.close()
    finally:
        app.stop()
        ollama.stop()


if __name__ == "__main__":
    main()
