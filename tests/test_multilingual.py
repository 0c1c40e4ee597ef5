"""Every language: PDFs in Chinese and Arabic are searched and cited like English ones, each script is cut into
terms that mean something, BM25 files of the English-only analysis still load, and the prompts keep the
question's language."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rag.answering.prompts import REWRITE_SYSTEM, SYSTEM, needs_rewrite
from rag.core.config import Settings
from rag.core.events import AnswerDelta, Sources
from rag.engine import Engine
from rag.ingestion.documents import clean_text
from rag.search import lexical
from rag.search.lexical import LexicalIndex, _count, _write, title_scores, title_terms, tokenize
from rag.search.retrieval import fuse_scores
from rag.text.languages import _RADICALS, analyze
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama

# Three pages each: a cover, then two pages on different subjects; the questions are about page 3.
CHINESE = ["星海科技有限公司二零二二年度报告。董事长致股东的信。",
           "员工手册：每位员工每年享有三十天带薪年假，停车场对骑自行车的员工免费开放。",
           "本财年公司营业收入增长到四十一亿元，主要来自智能手表的销售。董事会批准每股派发三角现金股息。"]
ARABIC = ["التقرير السنوي لشركة النجم للتقنية. رسالة رئيس مجلس الإدارة إلى المساهمين.",
          "دليل الموظفين: يحصل كل موظف على ثلاثين يوما من الإجازة المدفوعة كل عام، ومواقف السيارات مجانية.",
          "ارتفعت إيرادات الشركة في السنة المالية إلى واحد وأربعين مليون دينار بفضل مبيعات الساعات الذكية."]
QUESTIONS = {"chinese.pdf": "公司的营业收入增长了多少？主要来自什么产品的销售？",
             "arabic.pdf": "كم بلغت إيرادات الشركة وما هي المنتجات التي زادت المبيعات؟"}
ENGLISH = ["Acme Corporation annual report for fiscal 2022.",
           "Vacation policy: every employee receives 30 days of paid leave each year.",
           "Revenue grew to 41 million dollars in fiscal 2022, driven by sales of rocket skates."]


@pytest.fixture(params=[0.0, 0.8], ids=["bm25-only", "hybrid"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings, with dense search off (BM25 alone) or at its default weight (hybrid)."""
    return replace(settings, dense_weight=request.param)


@pytest.fixture
def library(engine: Engine, tmp_path: Path) -> dict[str, str]:
    """A Chinese, an Arabic and an English PDF, indexed; file name → doc id."""
    files = [pf.text_pdf(tmp_path / "chinese.pdf", CHINESE, font=pf.chinese_font()),
             pf.text_pdf(tmp_path / "arabic.pdf", ARABIC, font=pf.arabic_font(), rtl=True),
             pf.text_pdf(tmp_path / "english.pdf", ENGLISH)]
    list(engine.ingest(files))
    return {d.file_name: d.doc_id for d in engine.documents()}


def ask(engine: Engine, question: str) -> tuple[Sources, str]:
    events: list[Any] = list(engine.ask(question))
    return next(e for e in events if isinstance(e, Sources)), "".join(
        e.text for e in events if isinstance(e, AnswerDelta))


# --- PDFs in Chinese and Arabic ---------------------------------------------------------------------------------
@pytest.mark.parametrize("file_name", sorted(QUESTIONS))
def test_a_question_in_the_language_of_a_pdf_cites_its_page(engine: Engine, library: dict[str, str],
                                                           file_name: str) -> None:
    sources, answer = ask(engine, QUESTIONS[file_name])
    # The stand-in chat model quotes the source sharing the most words with the question and cites it.
    assert len(sources.cited) == 1 and f"[{sources.cited[0].number}]" in answer
    cited = sources.cited[0].passage
    assert (cited.file_name, cited.page_start) == (file_name, 3)
    pages = CHINESE if file_name == "chinese.pdf" else ARABIC
    assert set(analyze(pages[2])) <= set(analyze(cited.text))  # the page's text, read back as it was written


# --- terms per script -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("北京是中国的首都", ["北京", "京是", "是中", "中国", "国的", "的首", "首都"]),  # Chinese: character pairs
    ("東京は日本の首都です", ["東京", "京は", "は日", "日本", "本の", "の首", "首都", "都で", "です"]),  # Japanese
    ("서울은 수도", ["서울", "울은", "수도"]),  # Korean: pairs within each word
    ("กรุงเทพ", ["กรุ", "รุง", "งเ", "เท", "ทพ"]),  # Thai: pairs of letters with their marks
    ("Москва столица России", ["москв", "столиц", "росс"]),  # Russian stems
    ("كم عدد سكان القاهرة؟ ٢٠١٩", ["كم", "عدد", "سكان", "قاهر", "2019"]),  # Arabic stems, Arabic-Indic digits
    ("Ｒｅｖｅｎｕｅ ２０１９", ["revenu", "2019"]),  # full-width forms
])
def test_each_script_is_cut_into_meaningful_terms(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_words_keep_their_combining_marks() -> None:
    # Python's \w misses Devanagari vowel signs: "किताब" (book) must stay one word, and match itself.
    terms = tokenize("मुझे यह किताब पसंद है")
    assert len(terms) == 5 and all(len(t) > 1 for t in terms if t != "है")
    assert tokenize("किताब") == [t for t in terms if t.startswith("कित")]


def test_arabic_presentation_forms_from_a_pdf_read_as_letters() -> None:
    # What pypdf extracts from a PDF that Chromium printed: shaped glyphs (presentation forms), not letters.
    shaped = "ﻣﻠﻴﻮن دوﻻر ﻟﻠﺴﻨﺔ اﻟﻤﺎﻟﻴﺔ"
    assert tokenize(shaped) == tokenize("مليون دولار للسنة المالية")


def test_stemming_and_stop_words_belong_to_each_language() -> None:
    assert tokenize("Wie viele Einwohner hat die Stadt?") == ["viel", "einwohn", "stadt"]  # German
    assert tokenize("The cities were connected by railways") == ["citi", "were", "connect", "railway"]
    # German stop words are not dropped from English ("die" is German for "the").
    assert "die" in tokenize("Bruce Willis starred in Die Hard, an action film from 1988")


def test_an_english_term_inside_a_chinese_sentence_matches_the_english_word() -> None:
    terms = tokenize("我们使用Transformers模型进行检索")
    assert "transform" in terms and "模型" in terms
    assert set(tokenize("transformer models")) & set(terms) == {"transform"}


def test_a_line_wrapped_chinese_sentence_keeps_its_words() -> None:
    assert tokenize("营业收\n入增长") == tokenize("营业收入增长")


def test_radicals_that_pdf_fonts_put_for_characters_read_as_the_characters() -> None:
    # pypdf reads "营业收入增长" from a PDF that Chromium printed with Noto Sans CJK as Kangxi and CJK radicals.
    assert tokenize("营业收⼊增⻓") == tokenize("营业收入增长")
    assert clean_text("营业收⼊增⻓") == "营业收入增长"  # what the passage shows and the model reads
    # The viewer maps them the same way to find the passage in pdf.js's text layer.
    assert f'const RADICALS = "{_RADICALS}";' in (Path(__file__).parent.parent / "assets" / "viewer.js").read_text()


# --- cross-language questions ------------------------------------------------------------------------------------
def test_a_question_in_another_language_than_the_titles_boosts_no_document() -> None:
    titles = {"a": title_terms("Apple 10-K 2019"), "b": title_terms("Microsoft annual report")}
    assert title_scores("苹果公司的营业收入是多少？", titles) == {}
    assert title_scores("ما هي إيرادات مايكروسوفت؟", titles) == {}


def test_bm25_scoring_nothing_leaves_the_dense_ranking_as_it_is() -> None:
    dense = {"en:1": 0.9, "en:2": 0.7, "en:3": 0.2}
    fused = fuse_scores([(0.8, dense), (0.2, dict.fromkeys(dense, 0.0))], list(dense))
    assert [cid for cid, _ in fused] == ["en:1", "en:2", "en:3"]


# --- old files ---------------------------------------------------------------------------------------------------
def _english_only(text: str) -> list[str]:
    """The previous analysis: runs of letters (a Chinese sentence is one "word"), English stemming."""
    import re

    return re.findall(r"\d+(?:[.,]\d+)*|[^\W\d_]+", text.lower())


def test_bm25_files_of_the_english_only_analysis_are_analysed_again(tmp_path: Path) -> None:
    docs = {"zh": (["zh:0", "zh:1"], CHINESE[1:]), "ar": (["ar:0", "ar:1"], ARABIC[1:])}
    for doc_id, (ids, texts) in docs.items():  # as the previous version left them
        _write(tmp_path / f"{doc_id}.bm25", _count(ids, [_english_only(t) for t in texts]), version=1)
    assert LexicalIndex(tmp_path).search(QUESTIONS["chinese.pdf"], 3, list(docs)) == []  # no source: as they were
    index = LexicalIndex(tmp_path, source=lambda doc_id: docs[doc_id])
    index.sync(docs)
    assert index.search(QUESTIONS["chinese.pdf"], 1, list(docs))[0][0] == "zh:1"
    assert index.search(QUESTIONS["arabic.pdf"], 1, list(docs))[0][0] == "ar:1"
    assert all(lexical._read(tmp_path / f"{doc_id}.bm25") for doc_id in docs)  # rewritten in the current format


def test_an_index_of_the_previous_version_answers_chinese_after_a_restart_without_re_embedding(
        settings: Settings, tmp_path: Path, fake_ollama: FakeOllama) -> None:
    engine = Engine(settings)
    list(engine.ingest([pf.text_pdf(tmp_path / "chinese.pdf", CHINESE, font=pf.chinese_font())]))
    (doc,) = engine.documents()
    ids, texts = engine.store.chunk_texts(doc.doc_id)
    path = engine.store.lexical.folder / f"{doc.doc_id}.bm25"
    engine.close()
    _write(path, _count(ids, [_english_only(t) for t in texts]), version=1)  # as the previous version saved it
    embedded = len(fake_ollama.requests)

    engine = Engine(settings)
    try:
        sources, _ = ask(engine, QUESTIONS["chinese.pdf"])
        assert sources.cited and sources.cited[0].passage.page_start == 3
        lexical._read(path)  # re-analysed and saved in the current format
        documents = [body for url, body in fake_ollama.requests[embedded:] if url == "/api/embed"
                     and not all(str(text).startswith("Instruct:") for text in body.get("input", []))]
        assert documents == []  # only the question was embedded: the chunks' vectors stayed as they were
    finally:
        engine.close()


def test_old_files_load_as_they_are_without_a_source(tmp_path: Path) -> None:
    ids, texts = ["en:0", "en:1"], ENGLISH[1:]
    _write(tmp_path / "en.bm25", _count(ids, [tokenize(t) for t in texts]), version=1)
    index = LexicalIndex(tmp_path)
    assert index.search("paid vacation leave", 1, ["en"])[0][0] == "en:0"
    with pytest.raises(lexical._Outdated):
        lexical._read(tmp_path / "en.bm25")  # kept as it was: a later start with a source re-analyses it


# --- answers in the question's language -----------------------------------------------------------------------
def test_the_prompts_keep_the_language_of_the_question() -> None:
    assert "language of the question" in SYSTEM and "even when the sources are in another language" in SYSTEM
    assert "language of the last question" in REWRITE_SYSTEM


def test_a_short_chinese_follow_up_is_rewritten_and_a_full_question_is_not() -> None:
    history = [{"role": "user", "content": "苹果公司2019年的收入是多少？"},
               {"role": "assistant", "content": "2600亿美元。"}]
    assert needs_rewrite("那2020年呢？", history)
    assert not needs_rewrite("微软公司二零二零财年的营业收入是多少美元？", history)
