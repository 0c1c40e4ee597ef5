"""A document is indexed whole or not at all, even when the process is killed with SIGKILL half-way."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag.core.config import Settings
from rag.engine import Engine
from rag.models.factory import make_embedder
from rag.search.store import Store
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parent.parent

# The child ingests one PDF; a patched store method kills the process with SIGKILL at the chosen point.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from rag.core.config import Settings
    from rag.engine import Engine
    from rag.search.store import Store

    point, host, data_dir, pdf = sys.argv[1:5]
    if point != "none":
        original = getattr(Store, point)
        def die(self, *args, **kwargs):
            original(self, *args, **kwargs) if point == "_heartbeat" else None
            os.kill(os.getpid(), signal.SIGKILL)
        setattr(Store, point, die)
    engine = Engine(Settings.from_env({}, ollama_host=host, data_dir=Path(data_dir), chunk_tokens=60,
                                      chunk_overlap=10, embed_batch_size=4, parse_workers=1))
    for event in engine.ingest([Path(pdf)]):
        print(type(event).__name__, flush=True)
""")

PAGES = [" ".join(f"Line {i} of page {p} describes the quarterly budget." for i in range(25)) for p in range(5)]


def _child(point: str, fake: FakeOllama, settings: Settings, pdf: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, point, fake.url, str(settings.data_dir), str(pdf)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("point", ["_heartbeat", "commit"])
def test_kill_9_while_writing_leaves_no_partial_document(point: str, tmp_path: Path, settings: Settings,
                                                         fake_ollama: FakeOllama) -> None:
    pdf = pf.text_pdf(tmp_path / "budget.pdf", PAGES)
    child = _child(point, fake_ollama, settings, pdf)
    assert child.wait(timeout=120) == -9  # really killed, not a clean exit

    # The dead process left a document marked "indexing" with chunks written...
    store = Store(settings, make_embedder(settings).index_name)  # look before an engine's recovery runs
    pending = store.documents(include_pending=True)
    assert [d.status for d in pending] == ["indexing"] and store.count_chunks() > 0
    assert store.documents() == []  # ... which searches never see

    # ... and a restart removes it, after which the same file indexes normally.
    restarted = Engine(settings)
    try:
        assert restarted.recovered == ["budget.pdf"]
        assert restarted.store.documents(include_pending=True) == [] and restarted.store.count_chunks() == 0
        events = list(restarted.ingest([pdf]))
        assert events[-1].status == "indexed"
    finally:
        restarted.close()


def test_kill_9_while_embedding_leaves_nothing(tmp_path: Path, settings: Settings, fake_ollama: FakeOllama) -> None:
    pdf = pf.text_pdf(tmp_path / "budget.pdf", PAGES)
    fake_ollama.embed_delay = 0.3
    child = _child("none", fake_ollama, settings, pdf)
    assert child.stdout is not None
    for line in child.stdout:  # wait until it is embedding, then kill it from outside
        if line.startswith("Embedded"):
            break
    child.kill()
    assert child.wait(timeout=30) == -9
    time.sleep(0.1)
    restarted = Engine(settings)
    try:
        assert restarted.store.documents(include_pending=True) == [] and restarted.store.count_chunks() == 0
    finally:
        restarted.close()


def test_a_live_ingest_elsewhere_is_not_cleaned_up(settings: Settings, fake_ollama: FakeOllama) -> None:
    from rag.core.records import DocumentInfo

    engine = Engine(settings)
    try:
        info = DocumentInfo("abc123", "busy.pdf", "busy", 1, 1, "indexing", time.time())
        engine.store.begin(info)  # owned by this (live) process, heartbeat fresh
        assert engine.store.recover() == []
        assert [d.status for d in engine.store.documents(include_pending=True)] == ["indexing"]
    finally:
        engine.close()
