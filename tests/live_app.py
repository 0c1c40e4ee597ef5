"""The real app (engine + Gradio UI) served in-process on 127.0.0.1 at a free port, for tests and benchmarks that
drive it over HTTP with gradio_client or a browser. Model calls go to whatever ``OLLAMA_HOST`` the settings name
(in tests, the stand-in server from tests/fake_ollama.py: a test double)."""

from __future__ import annotations

import os
import socket
from types import TracebackType
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # gradio_client looks up huggingface.co otherwise

from rag.core.config import Settings  # noqa: E402
from rag.core.records import DocumentInfo  # noqa: E402
from rag.engine import Engine  # noqa: E402


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_stored(engine: Engine, doc_id: str, file_name: str = "stored.pdf", pages: int = 1,
                    user: str | None = None) -> None:
    """Make a PDF a test wrote straight into the files folder openable, as an indexed document of ``user`` (None:
    the machine's owner) is: the file route serves only documents the registry says are ready and the caller may
    read."""
    info = DocumentInfo(doc_id, file_name, "", pages, 0, "ready", 0.0)
    engine.store.commit(info)
    engine.give(user, info)


class LiveApp:
    """The app as ``python app.py`` builds it (``build``, ``queue``, ``launch_options``), on a free local port (or
    ``port``: a restarted app on the same address is the same site to a browser, with the same local storage).

    ``launch`` overrides ``Blocks.launch`` arguments (e.g. ``max_file_size``). Use as a context manager.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None, port: int | None = None,
                 **launch: Any) -> None:
        self.settings = settings.with_(host="127.0.0.1", port=port or free_port())
        self.engine = engine or Engine(self.settings)
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self._launch = launch
        self._demo: Any = None

    def start(self) -> LiveApp:
        """Build the UI on the engine and serve it (returns at once; the server runs on its own threads)."""
        from ui.app import build, launch_options, queue

        self.engine.store.files_dir.mkdir(parents=True, exist_ok=True)
        self._demo = queue(build(self.engine))
        options = {**launch_options(self.settings, self.engine), **self._launch}
        self._demo.launch(**options, prevent_thread_lock=True, quiet=True)
        return self

    def client(self) -> Any:
        """A new gradio_client session (each has its own session hash, like a browser tab)."""
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def stop(self) -> None:
        """Stop serving and release the engine's worker processes."""
        if self._demo is not None:
            self._demo.close()
            self._demo = None
        self.engine.close()

    def __enter__(self) -> LiveApp:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
