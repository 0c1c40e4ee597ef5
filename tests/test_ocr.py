"""Scanned pages and slides: pages without a usable text layer are read by OCR (RapidOCR, its real models), indexed
like any page, cited, and highlighted; pages with text are never OCR'd; bad pages fail alone.

The PDFs are built here: Pillow draws text into page images (tests/pdf_factory.py, ``scanned_pdf``). The pictured
text is large and the pages are read at 100 dpi rather than the default 216, so each page takes about a second.
Answers come from the stand-in Ollama (tests/fake_ollama.py, a test double).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from rag.answering.answer import AskOptions
from rag.cli import main as cli_main
from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.events import FileFailed, FileIndexed, PageRead, PagesParsed, Sources, sources_record
from rag.core.records import Page
from rag.engine import Engine
from rag.ingestion.ingest import OCR_CACHE_DAYS, Ingestor, prune_ocr_cache
from rag.ingestion.ocr import (
    MAX_SIDE,
    Fragment,
    OcrOptions,
    assemble,
    from_json,
    missing,
    reading_order,
    render,
    to_json,
)
from rag.ingestion.pool import PageProgress, ParserPool
from rag.ingestion.workers import ParseJob, ParseResult, parse_file
from tests import pdf_factory as pf

ACME = ["Acme Corporation annual report for fiscal 2022. Letter from the chief executive.",
        "Vacation policy: every employee receives 30 days of paid leave each year.",
        "The board approved a dividend of 3 cents per share in December 2022."]
FAST = OcrOptions(dpi=100)  # the pictured text is large: 100 dpi reads it, in a quarter of the default's time


@pytest.fixture
def ocr_settings(settings: Settings) -> Settings:
    return settings.with_(ocr_dpi=FAST.dpi)


@pytest.fixture
def ocr_engine(ocr_settings: Settings) -> Any:
    eng = Engine(ocr_settings)
    yield eng
    eng.close()


def _final(events: list[Any]) -> dict[str, Any]:
    return {e.file_name: e for e in events if isinstance(e, (FileIndexed, FileFailed))}


def _job(path: Path, mode: str = "auto", options: OcrOptions = FAST, cache: Path | None = None) -> ParseJob:
    return ParseJob(path=str(path), file_name=path.name, max_bytes=10**8, max_pages=100, chunk_tokens=120,
                    chunk_overlap=20, ocr=mode, ocr_options=options, ocr_cache=str(cache) if cache else None)


def _words(text: str) -> set[str]:
    return set(text.lower().replace(".", " ").replace(":", " ").split())


# --- end to end -----------------------------------------------------------------------------------------------------
def test_a_scanned_pdf_is_read_by_ocr_cited_and_never_read_twice(ocr_engine: Engine, tmp_path: Path) -> None:
    scan = pf.scanned_pdf(tmp_path / "scan.pdf", ACME)
    events = list(ocr_engine.ingest([scan]))
    progress = [e for e in events if isinstance(e, PageRead)]
    assert sorted(e.page for e in progress) == [1, 2, 3] and [e.done for e in progress] == [1, 2, 3]
    assert {e.total for e in progress} == {3}
    indexed = _final(events)["scan.pdf"]
    assert indexed.status == "indexed" and indexed.ocr_pages == [1, 2, 3] and indexed.pages_without_text == []
    (doc,) = ocr_engine.documents()
    assert doc.ocr_pages == [1, 2, 3]

    # The recognised lines are kept beside the PDF for the viewer: text and boxes as fractions of the page.
    saved = json.loads(ocr_engine.store.ocr_path(doc.doc_id).read_text())
    lines = saved["pages"]["2"]["lines"]
    assert "30 days" in " ".join(line["text"] for line in lines)
    assert all(0 <= x <= 1 for line in lines for x in line["box"])
    assert not any((ocr_engine.settings.data_dir / "ocr-cache").glob("*"))  # the cache went with the commit

    answer = list(ocr_engine.ask("How many days of paid vacation leave does an employee receive?",
                                 options=AskOptions(think=False)))
    sources = next(e for e in answer if isinstance(e, Sources))
    cited = sources.cited[0].passage
    assert cited.page_start == 2 and cited.ocr and "30 days of paid leave" in " ".join(cited.text.split())
    assert sources_record(sources)["cited"][0]["ocr"] is True  # as `ask --json` and the /ask API give it

    again = list(ocr_engine.ingest([scan]))
    assert _final(again)["scan.pdf"].status == "already indexed"
    assert not any(isinstance(e, PageRead) for e in again)  # the same bytes are never read again

    ocr_engine.delete(doc.doc_id)
    assert not ocr_engine.store.ocr_path(doc.doc_id).exists()


def test_a_mixed_pdf_reads_only_its_image_pages(ocr_engine: Engine, tmp_path: Path) -> None:
    mixed = pf.scanned_pdf(tmp_path / "mixed.pdf", ACME, typed=[1, 3])
    events = list(ocr_engine.ingest([mixed]))
    assert [(e.page, e.total) for e in events if isinstance(e, PageRead)] == [(2, 1)]
    parsed = next(e for e in events if isinstance(e, PagesParsed))
    assert parsed.ocr_pages == [2] and parsed.pages_without_text == []
    passages = ocr_engine.store.query(ocr_engine.embedder.embed_query("paid vacation leave days"), 3)
    by_page = {p.page_start: p for p in passages}
    assert by_page[2].ocr and "30 days" in by_page[2].text
    assert not by_page[1].ocr and not by_page[3].ocr


def test_with_ocr_off_a_scan_keeps_the_message_to_run_ocr(settings: Settings, tmp_path: Path) -> None:
    engine = Engine(settings.with_(ocr="off"))
    try:
        results = _final(list(engine.ingest([pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:1]),
                                             pf.scanned_pdf(tmp_path / "mixed.pdf", ACME[:2], typed=[1])])))
    finally:
        engine.close()
    reason = results["scan.pdf"].reason
    assert results["scan.pdf"].kind == "no text layer"
    assert "has no text layer" in reason and "Run OCR on it first" in reason and "RAG_OCR=off" in reason
    assert results["mixed.pdf"].status == "indexed" and results["mixed.pdf"].pages_without_text == [2]
    assert results["mixed.pdf"].ocr_pages == []


def test_force_reads_every_page_over_a_junk_text_layer(tmp_path: Path) -> None:
    picture = "Vacation policy: every employee receives 30 days of paid leave."
    junk = pf.scan_with_text_layer(tmp_path / "junk.pdf", picture, layer="Qwerty zxcvb plokij mnbvcx lkjhg")
    kept = parse_file(_job(junk, "auto")).document
    assert kept is not None and kept.ocr_pages == [] and kept.pages[0].text.startswith("Qwerty")  # good text: kept
    forced = parse_file(_job(junk, "force")).document
    assert forced is not None and forced.ocr_pages == [1] and {"vacation", "30", "leave"} <= _words(
        forced.pages[0].text)

    # Glyph codes ("/g437/g258") are not words: such a page is read by OCR without being asked to.
    glyphs = parse_file(_job(pf.scan_with_text_layer(tmp_path / "glyphs.pdf", picture), "auto")).document
    assert glyphs is not None and glyphs.ocr_pages == [1] and "g437" not in glyphs.pages[0].text
    assert {"vacation", "30", "leave"} <= _words(glyphs.pages[0].text)


def test_a_page_ocr_cannot_read_in_time_is_listed_and_the_rest_indexed(tmp_path: Path) -> None:
    mixed = pf.scanned_pdf(tmp_path / "mixed.pdf", ACME[:2], typed=[1])
    pool = ParserPool(1, timeout_s=60, memory_mb=0, page_timeout_s=0.01)  # no page can be read that fast
    try:
        items = list(pool.parse([_job(mixed)]))
    finally:
        pool.close()
    assert [(p.page, p.done, p.total) for p in items if isinstance(p, PageProgress)] == [(2, 1, 1)]
    (result,) = [r for r in items if isinstance(r, ParseResult)]
    assert result.error is None and result.document is not None
    assert result.document.pages_without_text == [2] and result.document.ocr_pages == []
    assert "Acme Corporation" in result.document.pages[0].text and result.chunks

    scan = pf.scanned_pdf(tmp_path / "scan.pdf", ACME[1:2])
    pool = ParserPool(1, timeout_s=60, memory_mb=0, page_timeout_s=0.01)
    try:
        (result,) = [r for r in pool.parse([_job(scan)]) if isinstance(r, ParseResult)]
    finally:
        pool.close()
    assert result.error_kind == "no text layer" and "RAG_OCR_PAGE_TIMEOUT" in (result.error or "")


def test_pages_already_read_come_from_the_cache(tmp_path: Path) -> None:
    scan = pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:2])
    cache = tmp_path / "cache" / "scan.json"
    pool = ParserPool(2, timeout_s=60, memory_mb=0)
    try:
        first = [r for r in pool.parse([_job(scan, cache=cache)]) if isinstance(r, ParseResult)][0]
        assert cache.exists() and first.ocr_seconds > 0
        second = [r for r in pool.parse([_job(scan, cache=cache)]) if isinstance(r, ParseResult)][0]
    finally:
        pool.close()
    assert second.ocr_seconds == 0 and second.document == first.document
    # Read another way (another resolution), the cached pages don't count.
    assert from_json(cache.read_text(), OcrOptions(dpi=216)) == {}


def test_pages_kept_for_a_file_never_added_again_are_removed_in_time(tmp_path: Path) -> None:
    folder = tmp_path / "ocr-cache"
    folder.mkdir()
    stale, fresh = folder / "stale.json", folder / "fresh.json"
    stale.write_text("{}")
    fresh.write_text("{}")
    old = time.time() - (OCR_CACHE_DAYS + 1) * 86400
    os.utime(stale, (old, old))
    assert prune_ocr_cache(folder, OCR_CACHE_DAYS * 86400) == 1
    assert not stale.exists() and fresh.exists()  # a file stopped recently can still resume
    assert prune_ocr_cache(tmp_path / "missing", 1) == 0

    # An engine starting over that data dir prunes it.
    stale.write_text("{}")
    os.utime(stale, (old, old))
    settings = Settings(data_dir=tmp_path, backend="sentence-transformers", rerank=False)
    Ingestor(settings, embedder=None, store=None)  # type: ignore[arg-type]
    assert not stale.exists() and fresh.exists()


def test_without_the_engine_the_message_says_what_to_install(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.ingestion.ocr

    real = rag.ingestion.ocr.find_spec
    monkeypatch.setattr(rag.ingestion.ocr, "find_spec",
                        lambda name: None if name == "rapidocr_onnxruntime" else real(name))
    assert "pip install rapidocr-onnxruntime" in (missing(OcrOptions()) or "")
    result = parse_file(_job(pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:1])))
    assert result.error_kind == "no text layer"
    assert "Run OCR on it first" in (result.error or "") and "pip install rapidocr-onnxruntime" in (result.error or "")
    mixed = parse_file(_job(pf.scanned_pdf(tmp_path / "mixed.pdf", ACME[:2], typed=[1]))).document
    assert mixed is not None and mixed.pages_without_text == [2]  # the rest is indexed without it


def test_a_huge_page_is_rendered_within_bounds(tmp_path: Path) -> None:
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, FloatObject, NameObject

    writer = PdfWriter(clone_from=pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:1]))
    writer.pages[0][NameObject("/MediaBox")] = ArrayObject([FloatObject(v) for v in (0, 0, 14400, 14400)])
    writer.write(tmp_path / "poster.pdf")  # 200 × 200 inches: 43200 pixels a side at 216 dpi
    image = render(tmp_path / "poster.pdf", 1, 216)
    assert max(image.shape) == MAX_SIDE


def test_an_ocr_language_the_engine_lacks_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="RAG_OCR_ENGINE=tesseract"):
        Settings.from_env({"RAG_OCR_LANG": "deu"})
    assert Settings.from_env({"RAG_OCR_LANG": "deu", "RAG_OCR": "off"}).ocr == "off"
    assert Settings.from_env({"RAG_OCR_LANG": "deu", "RAG_OCR_ENGINE": "tesseract"}).ocr_lang == "deu"


def test_the_cli_reports_pages_read_by_ocr(ocr_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ocr_settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(ocr_settings.data_dir))
    monkeypatch.setenv("RAG_OCR_DPI", str(FAST.dpi))
    monkeypatch.setenv("RAG_PARSE_WORKERS", "2")
    if ocr_settings.chroma_host:
        monkeypatch.setenv("RAG_CHROMA_HOST", ocr_settings.chroma_host)
        monkeypatch.setenv("RAG_CHROMA_PORT", str(ocr_settings.chroma_port))
    assert cli_main(["ingest", str(pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:2], typed=[1]))]) == 0
    out, err = capsys.readouterr()
    assert "reading page 1/1 (OCR)" in err
    assert "1 page read by OCR" in out and "✓ indexed (2 pages" in out and "1 read by OCR)" in out
    assert cli_main(["docs"]) == 0
    assert "(1 page read by OCR)" in capsys.readouterr().out


# --- reading order --------------------------------------------------------------------------------------------------
def _fragments(*rows: tuple[str, float, float, float, float]) -> list[Fragment]:
    return [Fragment(*row) for row in rows]


def test_two_columns_are_read_one_after_the_other_under_their_title() -> None:
    # A narrow gutter (490-510) that one box of each column overlaps a little, as padded boxes do.
    left = [(f"Left column line {n} of the running text", 100, 140 + 30 * n, 515 if n == 3 else 490, 160 + 30 * n)
            for n in range(8)]
    right = [(f"Right column line {n} of the running text", 485 if n == 5 else 510, 140 + 30 * n, 900, 160 + 30 * n)
             for n in range(7)]
    found = _fragments(*right, *left, ("A title across both columns", 300, 60, 700, 90),
                       # the detector joined the last lines of both columns across the gutter into one box
                       ("Left column line 8 Right column line 7", 100, 380, 900, 400))
    text, lines = assemble(reading_order(found), 1000, 1400)
    assert text.split("\n") == (["A title across both columns", ""] + [line[0] for line in left]
                                + ["Left column line 8 Right column line 7", ""] + [line[0] for line in right])
    assert [line.text for line in lines][0] == "A title across both columns"
    assert lines[0].box == (0.3, round(60 / 1400, 4), 0.7, round(90 / 1400, 4))


def test_table_rows_are_read_as_rows() -> None:
    found = _fragments(("(Millions)", 100, 100, 200, 120), ("2018", 600, 100, 660, 120), ("2017", 750, 100, 810, 120),
                       ("Net income attributable to 3M", 100, 130, 420, 150), ("5,363", 600, 131, 660, 151),
                       ("4,869", 750, 129, 810, 149), ("Operating income margin", 100, 160, 380, 180),
                       ("22.4 %", 600, 160, 670, 180), ("23.1 %", 750, 160, 820, 180))
    text, _ = assemble(reading_order(found), 1000, 1400)
    assert text.split("\n") == ["(Millions) 2018 2017", "Net income attributable to 3M 5,363 4,869",
                                "Operating income margin 22.4 % 23.1 %"]


def test_ocr_json_round_trip() -> None:
    found = _fragments(("Revenue grew to 41 million", 100, 100, 500, 130))
    text, lines = assemble(reading_order(found), 1000, 1000)
    page = Page(4, text, ocr=True, lines=lines)
    assert from_json(to_json([page], FAST), FAST) == {4: page}


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (an optional engine)")
def test_tesseract_reads_pages_where_it_is_installed(tmp_path: Path) -> None:
    options = OcrOptions(engine="tesseract", dpi=FAST.dpi)
    assert missing(options) is None and options.signature.startswith("tesseract ")
    doc = parse_file(_job(pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:2]), options=options)).document
    assert doc is not None and doc.ocr_pages == [1, 2] and {"vacation", "30", "leave"} <= _words(doc.pages[1].text)
    assert all(0 <= x <= 1 for line in doc.pages[1].lines for x in line.box)


def test_the_upload_api_streams_the_pages_read_by_ocr(ocr_settings: Settings, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from tests.live_app import LiveApp

    scan = pf.scanned_pdf(tmp_path / "scan.pdf", ACME[:2])
    with LiveApp(ocr_settings) as app:
        job = app.client().submit([handle_file(str(scan))], api_name="/upload")
        final = job.result(timeout=120)
        updates = job.outputs()
    working = [r for update in updates for r in update if r["status"] == "working"]
    assert [r["progress"] for r in working] == ["reading page 1/2 (OCR)", "reading page 2/2 (OCR)"]
    (result,) = final
    assert result["status"] == "indexed" and result["ocr_pages"] == [1, 2]


def test_an_abandoned_run_does_not_stop_the_next_one(tmp_path: Path) -> None:
    texts = [pf.text_pdf(tmp_path / f"t{n}.pdf", ACME) for n in range(3)]
    pool = ParserPool(1, timeout_s=60, memory_mb=0)
    try:
        first = pool.parse([_job(texts[0]), _job(texts[1])])
        assert next(first).error is None  # then left half-read, as a closed browser tab leaves an upload
        second = pool.parse([_job(texts[1]), _job(texts[2])])
        got = [next(second)]
        first.close()  # the abandoned one goes away late (garbage collection): the run going on is not its
        got += list(second)
    finally:
        pool.close()
    assert [r.document.file_name for r in got if r.document] == ["t1.pdf", "t2.pdf"]
