"""The viewer's highlight on right-to-left pages, in real headless Chromium against the app and the stand-in Ollama (a
test double): many PDFs place Arabic or Hebrew text letter by letter (or letter-spaced), and PDF.js then gives one
text-layer span per letter or letter group, sometimes in visual (right-to-left reversed) order. The cited passage is
still marked on its lines, and the rest of the page is not."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.core.config import Settings
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama
from tests.live_app import LiveApp, register_stored
from tests.test_ui import CHROMIUM, ask, open_app, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

# A page of four sentences; the passage cited is the middle two, the sentence drawn on is the second of them.
ARABIC = ["التقرير السنوي لشركة النجم للتقنية، ورسالة رئيس مجلس الإدارة إلى جميع المساهمين والموظفين والعملاء في نهاية "
          "العام.",
          "ارتفعت إيرادات الشركة في السنة المالية إلى واحد وأربعين مليون دينار بفضل مبيعات الساعات الذكية.",
          "وافتتحت الشركة ثلاثة فروع جديدة في المدن الكبرى، وزاد عدد عملائها إلى أكثر من مئتي ألف عميل في جميع أنحاء "
          "المنطقة.",
          "وافق مجلس الإدارة على توزيع أرباح نقدية على المساهمين في شهر ديسمبر من كل عام، كما وافق على خطة التوسع "
          "للسنوات الخمس القادمة."]
HEBREW = ["הדוח השנתי של חברת הכוכב לטכנולוגיה, ומכתב יושב ראש הדירקטוריון לכל בעלי המניות והעובדים בסוף השנה.",
          "הכנסות החברה בשנת הכספים עלו לארבעים ואחד מיליון שקל בזכות מכירות השעונים החכמים והטלפונים החדשים בכל "
          "השווקים.",
          "החברה פתחה שלושה סניפים חדשים בערים הגדולות, ומספר לקוחותיה עלה ליותר ממאתיים אלף לקוחות קבועים ונאמנים "
          "בכל רחבי האזור.",
          "הדירקטוריון אישר חלוקת דיבידנד במזומן לבעלי המניות בחודש דצמבר בכל שנה, וכן אישר את תוכנית ההתרחבות לחמש "
          "השנים הבאות."]
QUESTION = "كم بلغت إيرادات الشركة وما هي المنتجات التي زادت المبيعات؟"
LINES_JS = """() => {
  // The text layer's letters, line by line from the top: [text, marked, stressed] for each span with a letter.
  const rows = new Map();
  for (const span of document.querySelectorAll('#pw-viewer .textLayer span')) {
    if (!/[\\p{L}\\p{N}]/u.test(span.textContent) || span.firstElementChild) continue;
    const top = Math.round(span.getBoundingClientRect().top);
    if (!rows.has(top)) rows.set(top, []);
    rows.get(top).push([span.textContent, span.classList.contains('pw-hit'), span.classList.contains('pw-focus')]);
  }
  return [...rows.keys()].sort((a, b) => a - b).map((top) => rows.get(top));
}"""


def letters(text: str) -> str:
    """Letters and digits only, as the viewer compares text."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def drawn_lines(text: str, glyphs: pf.Glyphs | None) -> list[str]:
    """The page's lines as text_pdf draws them, in reading order."""
    return pf.wrap_text(text, pf.PAGE_WIDTH - 2 * pf.MARGIN, pf.arabic_font(), spacing=glyphs.spacing if glyphs else 0)


def check_marks(page: Any, lines: list[str], sentences: list[str], quote: str, focus: str) -> tuple[int, int]:
    """Assert, for each drawn line of a dozen letters or more: wholly inside ``quote``, all its letters are marked;
    wholly inside a sentence outside it, none are; wholly inside ``focus``, all are stressed; wholly inside another
    sentence, none are. Returns how many lines were wholly inside the quote and wholly outside it."""
    shown = page.evaluate(LINES_JS)
    assert len(shown) == len(lines)  # the viewer's lines are the drawn ones
    inside = outside = 0
    for line, spans in zip(lines, shown, strict=True):
        text, marked, stressed = letters(line), [s[1] for s in spans], [s[2] for s in spans]
        home = [letters(s) for s in sentences if text in letters(s)]  # the sentence holding the whole line
        if len(text) < 12:
            continue
        if text in letters(quote):
            inside += 1
            assert all(marked), (line, spans)
        elif home and home[0] not in letters(quote):
            outside += 1
            assert not any(marked), (line, spans)
        if text in letters(focus):
            assert all(stressed), (line, spans)
        elif home and letters(focus) not in home[0]:
            assert not any(stressed), (line, spans)
    return inside, outside


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, ollama_server: FakeOllama) -> Iterator[LiveApp]:
    with LiveApp(Settings.from_env({}, ollama_host=ollama_server.url, rerank=False, parse_workers=1,
                                   data_dir=tmp_path_factory.mktemp("rtl") / "data")) as live:
        yield live


@pytest.mark.parametrize(("sentences", "glyphs"), [
    pytest.param(ARABIC, pf.Glyphs("logical"), id="arabic-letter-by-letter"),
    pytest.param(ARABIC, pf.Glyphs("visual", spacing=0.6), id="arabic-letter-spaced-visual-order"),
    pytest.param(ARABIC, None, id="arabic-line-by-line"),
    pytest.param(HEBREW, pf.Glyphs("logical"), id="hebrew-letter-by-letter"),
])
def test_a_right_to_left_passage_is_marked_on_its_lines(browser_page: Any, app: LiveApp, sentences: list[str],
                                                        glyphs: pf.Glyphs | None) -> None:
    page = browser_page
    doc_id = hashlib.md5(repr((sentences[0], glyphs)).encode()).hexdigest()  # one stored PDF per case
    text = " ".join(sentences)
    pf.text_pdf(app.engine.store.files_dir / f"{doc_id}.pdf", [text], font=pf.arabic_font(), rtl=True, glyphs=glyphs)
    register_stored(app.engine, doc_id, "rtl.pdf")
    quote, focus = " ".join(sentences[1:3]), sentences[2]
    open_app(page, app.url)
    page.evaluate("""([doc, quote, focus]) => window.pagewise.show({doc, page: 1, file: 'rtl.pdf', quote, focus})""",
                  [doc_id, quote, focus])
    page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
    assert int(page.get_attribute("#pw-viewer", "data-hits")) > 0
    inside, outside = check_marks(page, drawn_lines(text, glyphs), sentences, quote, focus)
    assert inside >= 2 and outside >= 2


def test_a_clicked_citation_marks_its_arabic_passage(browser_page: Any, app: LiveApp, tmp_path: Path) -> None:
    page = browser_page
    text = " ".join(ARABIC)
    list(app.engine.ingest([pf.text_pdf(tmp_path / "annual-report.pdf", [text], font=pf.arabic_font(), rtl=True)]))
    doc_id = next(d.doc_id for d in app.engine.documents() if d.file_name == "annual-report.pdf")
    # The viewer shows the stored copy; make it the same page as a producer placing each letter on its own writes it
    # (pypdf reads such a page one letter per line, so the copy drawn line by line is the one indexed).
    glyphs = pf.Glyphs("logical")
    pf.text_pdf(app.engine.store.files_dir / f"{doc_id}.pdf", [text], font=pf.arabic_font(), rtl=True, glyphs=glyphs)
    open_app(page, app.url)

    ask(page, QUESTION)
    page.wait_for_selector("#pw-chat .pw-cite", timeout=60_000)
    chip = page.locator("#pw-chat .pw-cite").first
    quote = chip.get_attribute("title").split("\n", 1)[1]
    a, b = map(int, re.search(r"pw-s-(\d+)-(\d+)", chip.get_attribute("class")).groups())
    chip.click()
    page.wait_for_selector("#pw-viewer[data-state=ready]", timeout=30_000)
    assert int(page.get_attribute("#pw-viewer", "data-hits")) > 0
    inside, _ = check_marks(page, drawn_lines(text, glyphs), ARABIC, quote, quote[a:b])
    assert inside >= 2
    assert page.locator("#pw-viewer .pw-focus").count() > 0  # the sentence the answer draws on is stressed
    shot(page, "rtl-highlight")
    page.click("#pw-large")  # the large view draws the page anew: its letters are marked again
    page.wait_for_function("(v => v.dataset.large == 'true' && Number(v.dataset.zoom) > 100 && v.dataset.hits"
                           " == v.querySelectorAll('.pw-hit').length)(document.getElementById('pw-viewer'))")
    check_marks(page, drawn_lines(text, glyphs), ARABIC, quote, quote[a:b])
    shot(page, "rtl-highlight-large")
