"""Start the app: read settings, build the engine and the UI, and serve them (default http://127.0.0.1:7860)."""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> int:
    """Wire settings, engine and UI together and launch the web server."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from rag.models import accel

    accel.init()  # ZeroGPU (Hugging Face Spaces) wants its package imported before anything touches CUDA
    from rag.core.config import Settings
    from rag.core.errors import RagError
    from rag.engine import Engine
    from ui.app import build, launch_options, queue

    try:
        settings = Settings.from_env()
        engine = Engine(settings)
    except RagError as exc:
        sys.stderr.write(f"Can't start: {exc}\n")
        return 1
    engine.store.files_dir.mkdir(parents=True, exist_ok=True)
    # In-process models download on first use: start now, so the status badge can tell while the app is up.
    # ZeroGPU needs them loaded (on this thread) before the app launches.
    engine.warm_up(background=not settings.zero_gpu)
    demo = queue(build(engine))
    demo.launch(**launch_options(settings, engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
