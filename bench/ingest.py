"""Ingestion speed: our pipeline against the tutorial pipeline, same PDFs, same embedder, same chunk size, one run.

The reference is written the way popular tutorials do it: pypdf page by page → RecursiveCharacterTextSplitter →
embed that page's chunks → Chroma ``add``. Ours parses in worker processes while the main process embeds, batches
embedding calls and store writes. Both use the same token-sized splitter settings and the same embedder:

    python bench/ingest.py                                  # stand-in Ollama server (test double, separate process)
    python bench/ingest.py --embedder /path/to/st-model     # a sentence-transformers model folder or id
    python bench/ingest.py --folder DIR --limit 10          # other PDFs, first N files

Prints pages/s for both, their ratio, and our time split (parse / chunk / embed / store).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.core.config import Settings  # noqa: E402
from rag.core.events import FileFailed, FileIndexed  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.ingestion.chunking import token_counter  # noqa: E402
from rag.models.embedder import Embedder  # noqa: E402
from rag.models.factory import make_embedder  # noqa: E402

DEFAULT_FOLDER = ROOT.parent / "shared" / "evaldata" / "financebench" / "pdfs"


def _serve_stand_in(queue: Any) -> None:
    """Run the stand-in Ollama (a test double from tests/) in its own process, like a real server."""
    from tests.fake_ollama import FakeOllama

    server = FakeOllama(embed_models={"qwen3-embedding:0.6b": 1024}).start()
    queue.put(server.url)
    while True:
        time.sleep(3600)


def reference_ingest(files: list[Path], settings: Settings, embedder: Embedder, data_dir: Path) -> int:
    """The tutorial pipeline; returns the number of pages it indexed."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from pypdf import PdfReader

    client = chromadb.PersistentClient(path=str(data_dir), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("docs", embedding_function=None,
                                                 configuration={"hnsw": {"space": "cosine"}})
    splitter = RecursiveCharacterTextSplitter(chunk_size=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
                                              length_function=token_counter(settings.tokenizer))
    pages = 0
    for path in files:
        try:
            reader = PdfReader(path)
            for number, page in enumerate(reader.pages, 1):
                chunks = splitter.split_text(page.extract_text() or "")
                pages += 1
                if not chunks:
                    continue
                collection.add(ids=[f"{path.name}:{number}:{i}" for i in range(len(chunks))],
                               embeddings=embedder.embed_documents(chunks), documents=chunks,
                               metadatas=[{"source": path.name, "page": number} for _ in chunks])
        except Exception as exc:  # noqa: BLE001 - the tutorial skips what it can't read
            print(f"  reference skipped {path.name}: {exc}", file=sys.stderr)
    return pages


def ours(files: list[Path], settings: Settings) -> tuple[int, dict[str, float]]:
    """Our pipeline; returns pages indexed and the time split."""
    engine = Engine(settings)
    pages = 0
    try:
        for event in engine.ingest(files):
            if isinstance(event, FileIndexed):
                pages += event.pages
            elif isinstance(event, FileFailed):
                print(f"  ours skipped {event.file_name}: {event.reason}", file=sys.stderr)
        return pages, dict(engine.ingestor.timings)
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--limit", type=int, default=0, help="only the first N PDFs (0 = all)")
    parser.add_argument("--embedder", default="stand-in",
                        help="'stand-in' (Ollama test double), 'ollama' (OLLAMA_HOST), or a sentence-transformers "
                             "model id/path")
    parser.add_argument("--chunk-tokens", type=int, default=400)
    parser.add_argument("--overlap", type=int, default=60)
    args = parser.parse_args()

    files = sorted(p for p in args.folder.glob("*.pdf"))[: args.limit or None]
    if not files:
        print(f"No PDFs in {args.folder}", file=sys.stderr)
        return 1
    overrides: dict[str, Any] = {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.overlap}
    server = None
    if args.embedder == "stand-in":
        queue: Any = mp.get_context("spawn").Queue()
        server = mp.get_context("spawn").Process(target=_serve_stand_in, args=(queue,), daemon=True)
        server.start()
        overrides["ollama_host"] = queue.get(timeout=30)
        label = "stand-in Ollama server (test double, hashed n-gram embeddings)"
    elif args.embedder == "ollama":
        label = f"Ollama at {os.environ.get('OLLAMA_HOST', 'http://127.0.0.1:11434')}"
    else:
        overrides.update(embed_backend="sentence-transformers", embed_model=args.embedder)
        label = f"sentence-transformers {args.embedder}"

    print(f"{len(files)} PDFs from {args.folder}; embedder: {label}; chunks of {args.chunk_tokens} tokens")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(data_dir=Path(tmp) / "ours", **overrides)
        embedder = make_embedder(settings)
        embedder.embed_documents(["warm-up"])  # load the model once, outside both timings

        started = time.perf_counter()
        ref_pages = reference_ingest(files, settings, embedder, Path(tmp) / "reference")
        ref_seconds = time.perf_counter() - started

        started = time.perf_counter()
        our_pages, split = ours(files, settings)
        our_seconds = time.perf_counter() - started

    if server is not None:
        server.kill()
    ref_rate, our_rate = ref_pages / ref_seconds, our_pages / our_seconds
    print(f"\n{'pipeline':<12}{'pages':>8}{'seconds':>10}{'pages/s':>10}")
    print(f"{'reference':<12}{ref_pages:>8}{ref_seconds:>10.1f}{ref_rate:>10.1f}")
    print(f"{'ours':<12}{our_pages:>8}{our_seconds:>10.1f}{our_rate:>10.1f}")
    print(f"\nspeed-up (ours / reference pages/s): {our_rate / ref_rate:.2f}x")
    workers = settings.effective_parse_workers
    print(f"our time split: parse {split.get('parse', 0):.1f} s and chunk {split.get('chunk', 0):.1f} s "
          f"(CPU seconds summed over {workers} worker processes, overlapped with the rest), "
          f"embed {split.get('embed', 0):.1f} s, store {split.get('store', 0):.1f} s (wall, main process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
