"""The Gradio app: upload PDFs and see the library. Translates engine events into Gradio updates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from rag.config import Settings
from rag.engine import Engine
from rag.events import Embedded, Failure, FileFailed, FileIndexed, FileStarted, PagesParsed
from rag.ingest import SourceFile

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def build(engine: Engine) -> gr.Blocks:
    """The app's page."""
    with gr.Blocks(title="Pagewise: chat with your PDFs") as demo:
        gr.Markdown("# Pagewise\nDrop PDFs to index them. Chat with them is coming next.")
        files = gr.File(label="PDFs", file_count="multiple", file_types=[".pdf"])
        log = gr.Markdown()
        library = gr.Dataframe(headers=["Document", "Pages", "Chunks", "Added"], value=_rows(engine),
                               interactive=False, label="Library")

        def on_upload(paths: list[str] | None) -> Iterator[tuple[str, Any]]:
            yield from _ingest(engine, paths or [])

        files.upload(on_upload, inputs=files, outputs=[log, library], api_name="upload")
    return demo


def _ingest(engine: Engine, paths: list[str]) -> Iterator[tuple[str, Any]]:
    lines: dict[str, str] = {}
    items = [SourceFile(Path(p), Path(p).name) for p in paths]
    for event in engine.ingest(items):
        if isinstance(event, FileStarted):
            lines[event.file_name] = "parsing…"
        elif isinstance(event, PagesParsed):
            lines[event.file_name] = f"{event.pages} pages parsed, embedding…"
        elif isinstance(event, Embedded):
            lines[event.file_name] = f"embedding {event.done}/{event.total}"
        elif isinstance(event, FileIndexed):
            lines[event.file_name] = f"✓ {event.status}: {event.pages} pages"
        elif isinstance(event, FileFailed):
            lines[event.file_name] = f"✗ failed: {event.reason}"
        elif isinstance(event, Failure):
            lines["(run)"] = f"✗ {event.message}"
        text = "\n".join(f"- **{gr_escape(name)}**: {gr_escape(state)}" for name, state in lines.items())
        yield text, gr.update(value=_rows(engine))


def gr_escape(text: str) -> str:
    """Escape text for Markdown so PDF content can't inject markup."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!<>|" else ch for ch in text)


def _rows(engine: Engine) -> list[list[Any]]:
    return [[d.file_name, d.pages, d.chunks, time.strftime("%Y-%m-%d %H:%M", time.localtime(d.added_at))]
            for d in engine.documents()]


def launch_options(settings: Settings) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``."""
    return {"server_name": "127.0.0.1", "server_port": 7860}
