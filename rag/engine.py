"""The engine: one object that holds the settings, models and store, and offers every use case.

The UI, the CLI and the benchmarks all go through it, so what one can do the others can script.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from rag.access.gate import Access
from rag.access.intake import admit, own
from rag.access.intake import ingest as owned_ingest
from rag.access.library import FILE_NAME as LIBRARY_FILE
from rag.access.library import Library
from rag.answering.answer import Answerer, AskOptions
from rag.conversations.chats import FILE_NAME as CHATS_FILE
from rag.conversations.chats import ChatMessage, ChatStore
from rag.core.config import Settings
from rag.core.errors import DocumentNotFound, ModelError, RagError, StoreError
from rag.core.events import AnswerEvent, Failure, FileFailed, FileIndexed, IngestEvent
from rag.core.records import DocumentInfo, Health
from rag.ingestion.ingest import Ingestor, SourceFile
from rag.ingestion.queue import FILE_NAME as QUEUE_FILE
from rag.ingestion.queue import REINDEX, IngestQueue
from rag.ingestion.reindex import IndexBook, ReindexPlan, SizeChecked, index_dimension, other_registries, size_index
from rag.ingestion.sync import FolderState, FolderSync, SyncReport
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
        self.index_book = IndexBook.load(settings.data_dir)  # the index in use (a re-index may have moved it)
        self.store = store or Store(settings, self.index_book.in_use(self.embedder.index_name))
        self._building: Store | None = None  # the index a re-index fills, when it is not the one in use
        self._serving: tuple[Any, Store] | None = None  # the old model and index answering until a re-index is done
        self._checked = SizeChecked(self.embedder, lambda: self._building or self.store, self._reindex_note)
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
        self._queue: IngestQueue | None = None  # the persistent ingest queue and folder sync, opened on first use
        self._sync: FolderSync | None = None
        self._queue_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        if store is None:
            self._note_model()
        if self.index_book.building.get(self.embedder.index_name):  # a re-index was under way: go on with it
            self._resume_reindex()
            self._finish_reindex()

    @property
    def ingestor(self) -> Ingestor:
        """The ingestion pipeline (its parser processes start on first use)."""
        if self._ingestor is None:
            self._ingestor = Ingestor(self.settings, self._checked, self.store)  # type: ignore[arg-type]
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
                # The store that answers: the old index while a re-index fills the new one.
                access = Access(self.settings, Library(self.settings.data_dir / LIBRARY_FILE),
                                lambda: self._answering()[1])
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
        in the foreground before the app starts. Ollama's models are Ollama's business and are not touched. In the
        background, the search index is read too (``Store.warm``).
        """
        if background:
            self._warm_index()
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

    def _warm_index(self) -> threading.Thread:
        """Read the search index in the background (see ``Store.warm``), so that the first question after a start
        doesn't wait for it. Silent: a question asked meanwhile waits for the read, as it would have read it."""
        def read() -> None:
            started = time.perf_counter()
            try:
                store = self._answering()[1]
                store.warm()
                log.info("The search index is read (%.1f s)", time.perf_counter() - started)
                written = store.fill_passages()  # once, for a library indexed before passages were kept apart
                if written:
                    log.info("Kept the passages of %d documents beside their vectors", written)
            except Exception as exc:  # noqa: BLE001 - logged; the first question reads it (and reports a problem)
                log.warning("Could not read the search index ahead of the first question: %s", exc)

        thread = threading.Thread(target=read, name="index-warm-up", daemon=True)
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
        embedder, _ = self._answering()
        answerer = Answerer(self.settings, embedder, self.access.scoped(user), self.chat_for(options.chat_model),
                            self.reranker if wants_rerank else None, self.rerank_budget)
        answerer.visual = self.visual
        return self._guarded(answerer.ask(question, history, doc_ids, options))

    def _guarded(self, events: Iterator[AnswerEvent]) -> Iterator[AnswerEvent]:
        """An answer's events, with any unexpected error of the store or a model turned into a Failure that says
        what to do (a RagError already does, and goes through as it is)."""
        try:
            yield from events
        except RagError:
            raise
        except Exception as exc:  # noqa: BLE001 - the edge: nothing reaches a user as a bare "Error"; logged
            log.exception("Answering failed")
            hint = (" If the embedding model changed, re-index the library with it: the “Re-index” button under "
                    "the library, or `python -m rag reindex`." if "dimension" in str(exc).lower() else "")
            yield Failure(f"The question could not be answered: {exc}.{hint} Nothing was lost; try again, and see "
                          "the app's log for the details if it happens again.")

    def documents(self, user: str | None = None, among: Sequence[DocumentInfo] | None = None) -> list[DocumentInfo]:
        """The indexed documents ``user`` may read (None: the machine's owner, who sees all), under their names;
        ``among``: of these (the library already read), rather than the registry read again."""
        return self.access.documents(user, among)

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

    # --- the ingest queue and folder sync -----------------------------------------------------------------------
    @property
    def queue(self) -> IngestQueue:
        """The persistent ingest queue (``ingest-queue.sqlite3`` in the data folder)."""
        with self._queue_lock:
            if self._queue is None:
                self._queue = IngestQueue(self.settings.data_dir / QUEUE_FILE, self._ingest_jobs,
                                          delete=self._remove_replaced,
                                          batch=self.settings.queue_batch)
            return self._queue

    @property
    def folder_sync(self) -> FolderSync:
        """Folder sync over the queue (its manifest lives in the queue's file)."""
        queue = self.queue
        with self._queue_lock:
            if self._sync is None:
                self._sync = FolderSync(queue, self._remove_synced)
            return self._sync

    def enqueue(self, items: Sequence[Path | str | SourceFile], owner: str = "", collection: str | None = None,
                copy: bool = False, replace: bool = True) -> list[int]:
        """Queue files for indexing (see ``IngestQueue.add``); returns their job ids."""
        return self.queue.add(items, owner=owner, collection=collection, copy=copy, replace=replace)

    def sync(self, folders: Sequence[Path | str], grace_s: float | None = None, owner: str = "",
             collection: str | None = None) -> list[SyncReport]:
        """One pass over each folder: new and changed PDFs are queued, missing ones removed after the grace period."""
        grace = self.settings.sync_grace if grace_s is None else grace_s
        return [self.folder_sync.sync(f, grace, owner, collection) for f in folders]

    def watched_folders(self) -> list[FolderState]:
        """The folders of RAG_WATCH, each with its state."""
        return self.folder_sync.states([str(f) for f in self.settings.watch_folders])

    def start_background(self) -> None:
        """Run the ingest queue on a background thread, and keep RAG_WATCH's folders in step (polling every
        RAG_WATCH_INTERVAL seconds). Questions are answered meanwhile."""
        self.queue.start()
        if self.settings.watch_folders and (self._watcher is None or not self._watcher.is_alive()):
            self._watcher = threading.Thread(target=self._watch, name="folder-sync", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                for report in self.sync(self.settings.watch_folders):
                    if report.error or report.queued or report.removed:
                        log.info("Sync: %s", report.describe())
            except Exception:  # noqa: BLE001 - one bad pass must not end the watching; logged
                log.exception("Syncing the watched folders failed; trying again in %g s",
                              self.settings.watch_interval)
            self._stopping.wait(self.settings.watch_interval)

    def _ingest_jobs(self, files: Sequence[SourceFile], replace: bool, kind: str, owner: str = "",
                     collection: str | None = None) -> Iterator[IngestEvent]:
        """The queue's way into the pipeline (into the index a re-index is filling, while one runs). Each indexed
        file goes into ``owner``'s library ("" = the machine's owner), under the name it was added with; a new
        version replaces only that user's older one (see ``rag.access.intake``)."""
        access = self.access  # first: a data folder from before private libraries is upgraded before files come
        ingestor = self.ingestor
        ingestor.store = self._building or self.store
        try:
            if kind == REINDEX:  # the same documents again, for another model: whose they are has not changed
                yield from ingestor.ingest(files, replace=replace)
                return
            for event in ingestor.ingest(files, replace=False):
                if isinstance(event, FileIndexed) and event.doc_id:
                    event = own(access, event, owner or None, replace, collection)
                yield event
        finally:
            self._finish_reindex()

    def admit(self, files: Sequence[SourceFile], user: str | None = None
              ) -> tuple[list[SourceFile], list[FileFailed]]:
        """Which of ``files`` ``user`` may add now (a guest within the quota, a visitor only once signed in), and
        why the others can't be."""
        return admit(self.access, files, user)

    # --- re-indexing ----------------------------------------------------------------------------------------------
    def reindex_plan(self) -> ReindexPlan:
        """What ``reindex`` would queue (or how the one under way stands): the stored PDFs missing from the current
        model's index (indexed with another model), or all of them when the model's vectors changed size."""
        entry = self.index_book.building.get(self.embedder.index_name)
        left = self.queue.pending(REINDEX)
        if entry and left:
            return ReindexPlan(entry["target"], running=True, left=left)
        try:
            model_size: int | None = len(self.embedder.embed_query("size"))
        except ModelError:
            model_size = None  # unreachable now: only the other models' documents are looked for
        index_size = index_dimension(self.store)
        if model_size and index_size and model_size != index_size:
            target = self.embedder.index_name
            if target == self.store.index_name or index_dimension(Store(self.settings, target,
                                                                        client=self.store.client)) not in (None,
                                                                                                           model_size):
                target = size_index(self.embedder.index_name, model_size)
            docs, sources, why = self.store.documents(), [self.store.index_name], "size"
        else:
            target, why = self.store.index_name, "model"
            have = set(self.store.ready_ids())
            found: dict[str, DocumentInfo] = {}
            sources = []
            for name in other_registries(self.store.client, self.store.index_name):
                other = [d for d in Store(self.settings, name, client=self.store.client).documents()
                         if d.doc_id not in have and d.doc_id not in found]
                if other:
                    sources.append(name)
                    found.update((d.doc_id, d) for d in other)
            docs = list(found.values())
        stored = [d for d in docs if self.store.file_path(d.doc_id).exists()]
        return ReindexPlan(target, stored, sources, why, missing=len(docs) - len(stored))

    def reindex(self) -> ReindexPlan:
        """Queue the stored PDFs to be embedded again with the current model (see ``reindex_plan``), in the
        background; questions are answered from the old index until the new one is complete."""
        plan = self.reindex_plan()
        if plan.running or not plan.documents:
            return plan
        serve = ""
        if plan.why == "model":  # the old model answers meanwhile, if the data folder knows how to make it
            serve = next((name for name in plan.sources if name in self.index_book.models), "")
        self.index_book.building[self.embedder.index_name] = {"target": plan.target, "serve": serve}
        self.index_book.save()
        self._resume_reindex()
        jobs = self.queue.add([SourceFile(self.store.file_path(d.doc_id), d.file_name) for d in plan.documents],
                              kind=REINDEX, replace=False)
        return replace(plan, jobs=jobs)

    def _resume_reindex(self) -> None:
        """Set up the index being filled and the one answering meanwhile, as recorded (also after a restart)."""
        entry = self.index_book.building.get(self.embedder.index_name)
        if not entry:
            return
        if entry["target"] != self.store.index_name:
            self._building = Store(self.settings, entry["target"], client=self.store.client)
        serve = entry.get("serve") or ""
        if serve and serve in self.index_book.models:
            try:
                old = make_embedder(self.settings.with_(**self.index_book.models[serve]))
                self._serving = (old, Store(self.settings, serve, client=self.store.client))
            except RagError as exc:
                log.warning("The previous embedding model can't answer while the re-index runs: %s", exc)

    def _finish_reindex(self) -> None:
        """Once no re-index job is left: switch to the new index."""
        entry = self.index_book.building.get(self.embedder.index_name)
        if not entry or self.queue.pending(REINDEX):
            return
        if self._building is not None:
            self.store = self._building
            self.index_book.active[self.embedder.index_name] = self._building.index_name
        self._building = None
        self._serving = None
        del self.index_book.building[self.embedder.index_name]
        self.index_book.save()
        log.info("Re-index complete: questions are answered from %s", self.store.index_name)

    def _note_model(self) -> None:
        """Record which embedding settings made the index in use, so that it can answer during a re-index after
        the model setting changed."""
        s = self.settings
        model = {"embed_backend": s.embed_backend, "embed_model": s.embed_model,
                 "embed_dimensions": s.embed_dimensions}
        if self.index_book.models.get(self.store.index_name) != model:
            self.index_book.models[self.store.index_name] = model
            try:
                self.index_book.save()
            except OSError as exc:
                log.warning("Could not record the index's model in the data folder: %s", exc)

    def _answering(self) -> tuple[Any, Store]:
        """The embedder and index that answer questions (the old ones while a re-index fills the new index)."""
        serving = self._serving
        if serving is not None:
            return serving
        return self._checked, self.store

    def _reindex_note(self) -> str:
        if self.index_book.building.get(self.embedder.index_name):
            return (f"A re-index with the current model is under way ({self.queue.pending(REINDEX)} file(s) to "
                    "go): questions are answered again once it is complete.")
        return ""

    def _remove_replaced(self, doc_id: str) -> None:
        """A synced file's older version, once the new one is indexed (unless another synced file has its bytes)."""
        if not self.folder_sync.referenced(doc_id):
            self._remove_synced(doc_id)

    def _remove_synced(self, doc_id: str) -> None:
        try:
            self.delete(doc_id)
        except DocumentNotFound:
            pass  # never indexed (it failed), or removed already

    def close(self) -> None:
        """Release worker processes, and the ownership library's open connection."""
        self._stopping.set()
        if self._queue is not None:
            self._queue.close()
        if self._ingestor is not None:
            self._ingestor.close()
        if self._access is not None:
            self._access.library.close()


def _needs_load(model: Any) -> bool:
    """Whether a model object has weights still to load (in-process models say ``loaded``; servers' don't)."""
    return getattr(model, "loaded", True) is False


def _model_name(model: Any) -> str:
    """The id a model object was loaded from (chat and embedding models: ``model_id``; the reranker:
    ``model_name``)."""
    return str(getattr(model, "model_id", None) or getattr(model, "model_name", "model"))
