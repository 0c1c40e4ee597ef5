"""Page images (RAG_VISUAL): pages rendered within a pixel budget, embedded by a server speaking vLLM's request
shape for Qwen3-VL-Embedding (a stand-in here), kept beside the chunk vectors, and searched as a third retriever
in the fusion; "auto" says why it doesn't start on a CPU."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.core.config import Settings
from rag.engine import Engine
from rag.models.factory import make_page_embedder
from rag.models.providers.visual_server import ServerPageEmbedder
from rag.search.pageimages import render_page
from rag.search.retrieval import Fusion, gather, hybrid_search
from tests.figure_factory import shaded_pdf

PAGES = ["Notes on the harbour and its ships.", "Notes on the harbour and its cranes.",
         "Notes on the harbour and its quays."]


class FakeVisionEmbeddings:
    """Test double: an OpenAI-compatible ``/v1/embeddings`` taking vLLM's multimodal ``messages``. A page image's
    vector says how dark the picture is; a question's vector points at "dark", so the darkest page matches best."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                parts = [p for m in body["messages"] if m["role"] == "user" for p in m["content"]]
                image = next((p for p in parts if p["type"] == "image_url"), None)
                if image is not None:
                    from PIL import Image

                    png = base64.b64decode(image["image_url"]["url"].split(",", 1)[1])
                    picture = Image.open(io.BytesIO(png)).convert("L")
                    fake.sizes.append(picture.size)
                    dark = 1 - sum(picture.getdata()) / (255 * picture.width * picture.height)
                    vector = [dark, 1 - dark, 0.2]
                else:
                    vector = [1.0, 0.0, 0.2]
                reply = json.dumps({"object": "list", "data": [{"index": 0, "embedding": vector}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.sizes: list[tuple[int, int]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def vision() -> Iterator[FakeVisionEmbeddings]:
    server = FakeVisionEmbeddings()
    yield server
    server.server.shutdown()


def test_auto_does_not_start_on_a_cpu_and_says_why(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.models.factory as factory

    monkeypatch.setattr(factory, "has_gpu", lambda: False)
    embedder, why = make_page_embedder(settings.with_(visual="auto"))
    assert embedder is None and "no GPU" in why and "RAG_VISUAL_BASE_URL" in why and "minutes" in why
    assert make_page_embedder(settings.with_(visual="off"))[0] is None
    served, _ = make_page_embedder(settings.with_(visual="auto", visual_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(served, ServerPageEmbedder)


def test_pages_are_rendered_within_the_pixel_budget(tmp_path: Path) -> None:
    pdf = shaded_pdf(tmp_path / "p.pdf", PAGES, dark=[2])
    image = render_page(pdf, 2, 200_000)
    assert image.mode == "RGB" and image.width * image.height <= 200_000
    assert image.width % 32 == 0 and image.height % 32 == 0 and image.height > image.width  # A4, upright


def test_page_images_join_the_search(settings: Settings, vision: FakeVisionEmbeddings, tmp_path: Path) -> None:
    engine = Engine(settings.with_(visual="on", visual_base_url=vision.url, visual_max_pixels=100_000))
    try:
        list(engine.ingest([shaded_pdf(tmp_path / "harbour.pdf", PAGES, dark=[2])]))
        (doc,) = engine.documents()
        pages = [r for r in vision.requests if any(p["type"] == "image_url" for m in r["messages"]
                                                    for p in m["content"])]
        assert len(pages) == 3 and all(w * h <= 100_000 for w, h in vision.sizes)  # one request a page, as vLLM takes
        assert pages[0]["model"] == "Qwen/Qwen3-VL-Embedding-2B"
        assert pages[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert list(engine.store.vectors_dir.glob(f"{doc.doc_id}.pages-*.npy"))

        fusion = Fusion.from_settings(engine.settings)
        question = "Which page of the notes on the harbour has the dark picture?"
        found = hybrid_search(engine.store, engine.embedder, question, [doc.doc_id], 20, fusion, visual=engine.visual)
        assert found[0].page_start == 2
        signals = gather(engine.store, engine.embedder, question, [doc.doc_id], 20, fusion, engine.visual)
        best = max(signals.visual, key=signals.visual.__getitem__)
        assert engine.store.get_passages([best])[best].page_start == 2  # the third retriever's own first page
        assert not gather(engine.store, engine.embedder, question, [doc.doc_id], 20, fusion).visual  # none without
        asked = vision.requests[-1]["messages"]
        assert asked[-1]["content"] == [{"type": "text", "text": question}] and asked[0]["role"] == "system"

        engine.delete(doc.doc_id)
        assert not list(engine.store.vectors_dir.glob(f"{doc.doc_id}.pages-*.npy"))
    finally:
        engine.close()


def test_page_vectors_are_mapped_once_and_read_again_when_they_change(settings: Settings) -> None:
    import numpy as np

    engine = Engine(settings)
    try:
        store = engine.store
        store.save_page_vectors("doc-a", "vl", [1, 2, 3], [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
        assert [(d, p) for d, p, _ in store.page_scores([0.0, 1.0], "vl", ["doc-a"], 2)] == [("doc-a", 2), ("doc-a", 3)]
        mapped = store._page_rows("doc-a", "vl")
        assert isinstance(mapped, np.memmap)
        assert store._page_rows("doc-a", "vl") is mapped  # the next question reuses the mapping

        store.save_page_vectors("doc-a", "vl", [7], [[0.0, 3.0]])  # re-indexed: the file changes, the mapping follows
        assert store.page_scores([0.0, 1.0], "vl", ["doc-a"], 5) == [("doc-a", 7, 1.0)]

        # A file of the earlier layout (pages and vectors apart, in an .npz) is read, and rewritten in the new one.
        legacy = store.vectors_dir / "doc-b.pages-vl.npz"
        np.savez(legacy, pages=np.array([4, 9], dtype=np.int32), vectors=np.array([[1, 0], [0, 1]], dtype=np.float32))
        assert store.page_scores([1.0, 0.0], "vl", ["doc-b", "doc-c"], 1) == [("doc-b", 4, 1.0)]
        assert not legacy.exists() and (store.vectors_dir / "doc-b.pages-vl.npy").exists()
    finally:
        engine.close()


def test_the_in_process_embedder_runs_a_tiny_qwen3_vl(settings: Settings, tmp_path: Path) -> None:
    from rag.models.providers.local_visual import LocalPageEmbedder
    from tests.tiny_models import build_tiny_qwen3_vl

    model = build_tiny_qwen3_vl(tmp_path / "tiny-vl")
    embedder, _ = make_page_embedder(settings.with_(visual="on", visual_model=str(model), visual_max_pixels=65_536))
    assert isinstance(embedder, LocalPageEmbedder)
    pdf = shaded_pdf(tmp_path / "harbour.pdf", PAGES, dark=[2])
    pages = embedder.embed_pages([render_page(pdf, n, 65_536) for n in (1, 2)])
    question = embedder.embed_query("Which page has the dark picture?")
    assert len(pages) == 2 and len(pages[0]) == len(question) == 64  # the tiny text model's width
    assert abs(sum(x * x for x in question) - 1) < 1e-4  # normalised, as the store expects
    assert pages[0] != pages[1]  # the pictures differ, and so do their vectors (random weights: nothing more)


def test_a_vision_chat_model_is_shown_the_pages_of_the_sources(settings: Settings, fake_ollama: Any,
                                                              tmp_path: Path) -> None:
    engine = Engine(settings.with_(visual="off", visual_answer=True, visual_max_pixels=60_000))
    try:
        list(engine.ingest([shaded_pdf(tmp_path / "harbour.pdf", PAGES, dark=[2])]))
        events = list(engine.ask("What does the harbour have cranes for?"))
        chats = [body for path, body in fake_ollama.requests if path == "/api/chat" and body.get("stream")]
        question = chats[-1]["messages"][-1]
        assert question["role"] == "user" and 1 <= len(question["images"]) <= 3
        from PIL import Image

        picture = Image.open(io.BytesIO(base64.b64decode(question["images"][0])))
        assert picture.width * picture.height <= 60_000  # within the pixel budget
        assert all("images" not in m for m in chats[-1]["messages"][:-1])  # only the question carries them
        assert events  # the answer streamed as usual
    finally:
        engine.close()
