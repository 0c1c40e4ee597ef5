"""The engine: one object that holds the settings, models and store, and offers every use case.

The UI, the CLI and the benchmarks all go through it, so what one can do the others can script.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from rag.access.gate import Access
from rag.access.intake import ingest as owned_ingest
from rag.access.library import FILE_NAME as LIBRARY_FILE
from rag.access.library import Library
from rag.answering.answer import Answerer, AskOptions
from rag.conversations.chats import FILE_NAME as CHATS_FILE
from rag.conversations.chats import ChatMessage, ChatStore
from rag.core.config import Settings
from rag.core.errors import ModelError, StoreError
from rag.core.events import AnswerEvent, IngestEvent
from rag.core.records import DocumentInfo, Health
from rag.ingestion.ingest import Ingestor, SourceFile
from rag.models.backends import Backends, resolve_backends
from rag.models.budget import RerankBudget
from rag.models.embedder import Embedder
from rag.models.factory import make_chat_model, make_embedder, make_page_embedder, make_reranker
from rag.models.hub import hub_cached
from rag.search.store import Store

log = logging.getLogger(__name__)

_OTHER_CHAT_MODELS = 4  # chat models typed in the settings, besides the default, kept ready


class Engine:
    """Chat-with-your-PDFs engine: ingest, list, delete (and, built on these, ask)."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, store: Store | None = None,
                 chat: Any | None = None, reranker: Any | None = None) -> None:
        # Where the models run is decided once, here (unless both models are given).
        self.backends: Backends | None = None
        if embedder is None or chat is None:
            self.backends = resolve_backends(settings)
            settings = self.backends.apply(settings)
        self.settings = settings
        self.embedder = embedder or make_embedder(settings)
        self.store = store or Store(settings, self.embedder.index_name)
        self.recovered = self.store.recover()
        self._ingestor: Ingestor | None = None
        self._chat = chat
        self._chats: dict[str, Any] = {}
        self._reranker = reranker
        self.rerank_budget = RerankBudget.from_settings(settings)  # learns the reranker's speed, question by question
        self._warming: dict[str, str] = {}  # model name -> "Downloading …" / "Loading …", while warm_up runs
        self._warming_lock = threading.Lock()
        self._chat_store: ChatStore | None = None
        self._chat_store_lock = threading.Lock()
        self._access: Access | None = None
        self._access_lock = threading.Lock()
        # Page images (RAG_VISUAL): a visual embedder, or None and why there is none.
        self.visual, self.visual_off = make_page_embedder(settings)
        if self.visual_off and settings.visual != "off":
            log.info("%s", self.visual_off)

    @property
    def ingestor(self) -> Ingestor:
        """The ingestion pipeline (its parser processes start on first use)."""
        if self._ingestor is None:
            self._ingestor = Ingestor(self.settings, self.embedder, self.store)
            self._ingestor.visual = self.visual
        return self._ingestor

    def ingest(self, items: Sequence[Path | str | SourceFile], replace: bool = True, user: str | None = None,
               collection: str | None = None) -> Iterator[IngestEvent]:
        """Index files (see ``Ingestor.ingest``) into ``user``'s library (None: the machine's owner), yielding
        progress events; with ``collection``, each file is listed in that collection of theirs too."""
        self.access.visit(user, self.chat_store)  # a guest's days count from their last upload or visit
        return owned_ingest(self.access, self.ingestor, items, user, replace, collection)

    @property
    def access(self) -> Access:
        """Who may see what (``rag.access``): the ownership library, opened on first use; a data folder from before
        private libraries is upgraded then (see ``Access.upgrade``)."""
        with self._access_lock:
            if self._access is None:
                access = Access(self.settings, Library(self.settings.data_dir / LIBRARY_FILE), self.store)
                access.upgrade()
                self._access = access
            return self._access

    def give(self, user: str | None, doc_info: DocumentInfo | str, collection: str | None = None,
             file_name: str | None = None) -> bool:
        """Put an indexed document (its record or id) in ``user``'s library, and in their ``collection`` when
        given; True if it was new to them. The hook for anything that indexes on a user's behalf."""
        return self.access.give(user, doc_info, collection, file_name)

    @property
    def chat_store(self) -> ChatStore:
        """The saved conversations (``chats.sqlite3`` in the data folder, opened on first use)."""
        with self._chat_store_lock:
            if self._chat_store is None:
                self._chat_store = ChatStore(self.settings.data_dir / CHATS_FILE)
            return self._chat_store

    @property
    def chat(self) -> Any:
        """The chat model (created on first use)."""
        if self._chat is None:
            self._chat = make_chat_model(self.settings)
        return self._chat

    def chat_for(self, model_id: str | None) -> Any:
        """The chat model called ``model_id`` (the default one when empty), created once and then reused; the
        few most recently used other models are kept."""
        if not model_id or model_id == self.settings.chat_model:
            return self.chat
        model = self._chats.pop(model_id, None)
        if model is None:
            model = make_chat_model(self.settings.with_(chat_model=model_id))
        self._chats[model_id] = model  # most recent last
        while len(self._chats) > _OTHER_CHAT_MODELS:
            self._chats.pop(next(iter(self._chats)))
        return model

    def health(self, chat_model: str | None = None) -> Health:
        """Check that the embedding and chat models can be used; each problem comes with its fix."""
        problems = []
        try:
            self.store.check()
        except StoreError as exc:
            problems.append(str(exc))
        chat = self.chat_for(chat_model)
        with self._warming_lock:
            loading = dict(self._warming)
        # A remote reranker is asked too (the in-process one has no check: it would load the weights).
        reranker = self.reranker if self.settings.rerank else None
        for model in (self.embedder, chat, reranker):
            if model is None or _model_name(model) in loading or not hasattr(model, "check"):
                continue  # checking would wait for the download
            try:
                model.check()
            except ModelError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        if self.backends is None:  # models given by the caller: each says where it runs
            embedder, answers, backend = self.embedder.describe, chat.describe, ""
        else:
            embedder, answers, backend = self.embedder.model_id, chat.model_id, self.backends.summary
        return Health(embedder, answers, problems, backend=backend, loading=list(loading.values()),
                      index=self.embedder.index_name, reranker=getattr(reranker, "describe", ""))

    def warm_up(self, background: bool = True) -> threading.Thread | None:
        """Load the in-process models now (downloading them on first use) rather than on the first question.

        In the background by default, with progress in the log and in ``health().loading``; ZeroGPU needs it done
        in the foreground before the app starts. Ollama's models are Ollama's business and are not touched.
        """
        models = [self.embedder, self.chat] + ([self.reranker] if self.settings.rerank else [])
        todo = [(_model_name(m), m) for m in models if _needs_load(m)]
        if self._untimed_reranker() and not _needs_load(self.reranker):  # on a server: timed, nothing to load
            todo.append((_model_name(self.reranker), self.reranker))
        if not todo:
            return None
        with self._warming_lock:
            for name, model in todo:
                self._warming[name] = f"Timing {name} …" if not _needs_load(model) else \
                    f"Loading {name} …" if hub_cached(name) else \
                    f"Downloading {name} … (first start only; progress in the console)"
        if not background:
            self._load_all(todo)
            return None
        thread = threading.Thread(target=self._load_all, args=(todo,), name="warm-up", daemon=True)
        thread.start()
        return thread

    def _load_all(self, todo: list[tuple[str, Any]]) -> None:
        for name, model in todo:
            started = time.perf_counter()
            try:
                if _needs_load(model):
                    model.load()
                if model is self._reranker and self._untimed_reranker():
                    self.rerank_budget.calibrate(model)  # the first question is then planned from its speed
                log.info("%s is ready (%.0f s)", name, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - logged here; the first real use raises it again
                log.warning("Could not load or time %s: %s", name, exc)
            finally:
                with self._warming_lock:
                    self._warming.pop(name, None)

    def _untimed_reranker(self) -> bool:
        """Whether warm-up should time the reranker (one small scoring, so the first question is planned from its
        speed), wherever it runs: reranking is on, within a time budget, not on ZeroGPU (whose GPU time is scarce),
        and its speed is not known yet."""
        s = self.settings
        return (s.rerank and s.rerank_seconds > 0 and not s.zero_gpu
                and self.rerank_budget.throughput.tokens_per_second is None)

    @property
    def reranker(self) -> Any:
        """The reranker (created on first use; its weights load on the first question that needs them)."""
        if self._reranker is None:
            self._reranker = make_reranker(self.settings)
        return self._reranker

    def ask(self, question: str, history: Sequence[dict[str, Any]] = (), doc_ids: Sequence[str] | None = None,
            options: AskOptions = AskOptions(), user: str | None = None) -> Iterator[AnswerEvent]:
        """Answer a question from the documents ``user`` may read (all, or those of ``doc_ids``), yielding events."""
        wants_rerank = self.settings.rerank if options.rerank is None else options.rerank
        answerer = Answerer(self.settings, self.embedder, self.access.scoped(user), self.chat_for(options.chat_model),
                            self.reranker if wants_rerank else None, self.rerank_budget)
        answerer.visual = self.visual
        return answerer.ask(question, history, doc_ids, options)

    def documents(self, user: str | None = None) -> list[DocumentInfo]:
        """The indexed documents ``user`` may read (None: the machine's owner, who sees all), under their names."""
        return self.access.documents(user)

    def removed_documents(self, messages: Sequence[ChatMessage], user: str | None = None) -> set[str]:
        """Ids of the documents that saved answers draw on but ``user``'s library no longer holds (deleted, or no
        longer shared with them)."""
        used = {p.doc_id for m in messages if m.sources for p in [c.passage for c in m.sources.cited]
                + m.sources.other}
        return self.access.removed(used, user)

    def find(self, ref: str, user: str | None = None) -> DocumentInfo:
        """One of ``user``'s documents by id, id prefix or file name; raises DocumentNotFound when none or several
        match (another user's document is not found, just like a missing one)."""
        return self.access.find(ref, user)

    def delete(self, ref: str, user: str | None = None) -> DocumentInfo:
        """Remove a document (by id or file name) from ``user``'s library; what was indexed from it goes once
        nobody holds it."""
        return self.access.remove(ref, user)

    def close(self) -> None:
        """Release worker processes."""
        if self._ingestor is not None:
            self._ingestor.close()


def _needs_load(model: Any) -> bool:
    """Whether a model object has weights still to load (in-process models say ``loaded``; servers' don't)."""
    return getattr(model, "loaded", True) is False


def _model_name(model: Any) -> str:
    """The id a model object was loaded from (chat and embedding models: ``model_id``; the reranker:
    ``model_name``)."""
    return str(getattr(model, "model_id", None) or getattr(model, "model_name", "model"))
