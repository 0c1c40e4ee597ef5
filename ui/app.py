"""The Gradio app: upload PDFs, choose which to ask about, chat with streamed answers whose citations open the PDF
at the cited page. Handlers translate engine events into Gradio updates; all engine work happens in ``rag``."""

from __future__ import annotations

import html
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from rag.answering.answer import AskOptions, flatten
from rag.conversations.markdown import escape_markdown
from rag.core.config import Settings
from rag.core.errors import ChatNotFound, RagError
from rag.core.events import (
    AnswerDelta,
    Claims,
    Embedded,
    Failure,
    FileFailed,
    FileIndexed,
    FileStarted,
    PageRead,
    PagesParsed,
    Progress,
    Sources,
    ThinkingDelta,
    claims_record,
    sources_record,
)
from rag.engine import Engine
from rag.ingestion.ingest import SourceFile
from ui import collections, conversations, identity, render
from ui import library as library_view
from ui.conversations import Turn
from ui.files import PREFIX, FileRoutes

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent.parent / "assets"
STAGES = {"rewriting": "Understanding the follow-up…", "rewritten": "Searching…", "retrieving": "Searching…",
          "reranking": "Ranking passages…", "generating": "Writing…"}
# The queue's limits, chosen on purpose (measured with bench/load.py, see docs/BENCHMARKS.md):
# - questions (the chat and /ask share the "ask" group): 4 answered at once. The engine's part is light (~15 ms);
#   the time goes to the chat model, and Ollama answers OLLAMA_NUM_PARALLEL requests per model at once (1 or 4,
#   by version and memory) and queues the rest where nobody sees it. Four keeps every slot of a parallel Ollama
#   busy; the fifth user waits in Gradio's queue, which shows their place, instead of in Ollama's, which shows
#   nothing. More is not faster: the extra questions wait inside Ollama, unseen and in no particular order,
#   which makes the slowest first tokens slower.
# - ingestion (the upload box and /upload share the "ingest" group): uploads go into the ingest queue, whose one
#   runner indexes them in order (parsing a batch in parallel processes); a request only follows its files there,
#   so several uploads may be followed at once.
# - everything else (library, status, delete): the same limit of 4 each; they take milliseconds.
# - at most 64 waiting events; beyond that Gradio refuses new ones with "queue full" rather than growing memory.
CONCURRENCY = 4
INGEST_CONCURRENCY = CONCURRENCY
QUEUE_SIZE = 64
UPLOADS = "uploads"  # Gradio's cache folder, inside the data folder (uploads, and Markdown downloads)
UPLOAD_DELETE_AFTER_S = 3600  # uploads are copied into the index when they arrive; the upload itself goes after this


def build(engine: Engine) -> gr.Blocks:
    """The app's page, wired to ``engine``."""
    s = engine.settings
    # Gradio keeps every upload in its cache folder, by default /tmp/gradio: readable by other users, never emptied.
    # Keep it inside the data folder instead, and have Gradio delete each upload an hour after it arrived.
    os.environ["GRADIO_TEMP_DIR"] = str((s.data_dir / UPLOADS).resolve())
    if s.ingest:  # a replica that only answers questions leaves indexing to the one that owns the queue
        engine.start_background()  # the ingest queue's runner, and RAG_WATCH's folders kept in step
    with gr.Blocks(title="Pagewise · chat with your PDFs", fill_width=True,
                   delete_cache=(UPLOAD_DELETE_AFTER_S, UPLOAD_DELETE_AFTER_S)) as demo:
        with gr.Row(elem_id="pw-header"):
            gr.HTML(_header(), elem_id="pw-brand")
            status = gr.HTML(elem_id="pw-status-box")
            recheck = gr.Button("Check again", size="sm", scale=0, min_width=110, elem_id="pw-recheck")

        with gr.Row(equal_height=False, elem_id="pw-main"):
            # --- library ------------------------------------------------------------------------------------
            with gr.Column(scale=3, min_width=280, elem_id="pw-left"):
                collections.sign_in(s)
                chat_list = gr.Radio(label="Conversations", choices=[], elem_id="pw-chats",
                                     info="None yet: each question you ask is saved here.")
                upload = gr.File(label=f"Drop PDFs here (up to {s.max_upload_mb:g} MB each)", file_count="multiple",
                                 file_types=[".pdf"], elem_id="pw-upload", height=160, visible=s.ingest)
                upload_log = gr.HTML(elem_id="pw-upload-log")
                queue_box = gr.HTML(elem_id="pw-queue")
                with gr.Group(visible=False, elem_id="pw-lib-tools") as lib_tools:  # shown for a large library
                    with gr.Row():
                        lib_search = gr.Textbox(placeholder="Search by name or title…", show_label=False,
                                                container=False, scale=3, elem_id="pw-lib-search")
                        lib_folder = gr.Dropdown(choices=[library_view.ALL_FOLDERS], value=library_view.ALL_FOLDERS,
                                                 show_label=False, container=False, scale=2, elem_id="pw-lib-folder")
                    with gr.Row():
                        lib_prev = gr.Button("‹", size="sm", scale=0, min_width=40, elem_id="pw-lib-prev")
                        lib_pager = gr.HTML(elem_id="pw-lib-page")
                        lib_next = gr.Button("›", size="sm", scale=0, min_width=40, elem_id="pw-lib-next")
                scope = gr.CheckboxGroup(label="Ask about", info="Questions are answered from the checked documents.",
                                         elem_id="pw-scope")
                with gr.Row():
                    all_btn = gr.Button("All", size="sm", min_width=60)
                    none_btn = gr.Button("None", size="sm", min_width=60)
                # The selection questions are asked about (None = the whole library) and the library's page, per tab.
                chosen = gr.State(None)
                lib_page = gr.State(0)
                lib_seen = gr.State(None)  # what the library looked like when this tab last drew it
                picked = collections.panel(engine, demo, chosen)
                library = gr.HTML(render.library_html([]), container=True, elem_id="pw-library")
                with gr.Accordion("Remove a document", open=False):
                    to_delete = gr.Dropdown(label="Document", choices=[], elem_id="pw-delete-doc")
                    delete_btn = gr.Button("Remove…", variant="secondary", size="sm", elem_id="pw-delete")
                    with gr.Group(visible=False, elem_id="pw-confirm") as confirm_box:
                        confirm_text = gr.Markdown()
                        with gr.Row():
                            cancel_btn = gr.Button("Cancel", size="sm")
                            confirm_btn = gr.Button("Remove", variant="stop", size="sm", elem_id="pw-confirm-delete")
                with gr.Accordion("Re-index", open=False, elem_id="pw-reindex-box", visible=s.ingest) as reindex_box:
                    reindex_text = gr.Markdown(elem_id="pw-reindex-text")
                    reindex_btn = gr.Button("Re-index the library with the current model", size="sm",
                                            elem_id="pw-reindex")
                with gr.Accordion("Settings", open=False, elem_id="pw-settings"):
                    chat_model = gr.Textbox(value=s.chat_model, label="Chat model")
                    think = gr.Checkbox(value=s.think, label="Think before answering")
                    top_k = gr.Slider(1, 20, value=s.top_k, step=1, label="Passages given to the model")
                    rerank = gr.Checkbox(value=s.rerank, label="Rerank passages (Qwen3-Reranker)")
                    pool = gr.Slider(5, 200, value=s.candidate_pool, step=5, label="Candidates per retriever")

            # --- chat ---------------------------------------------------------------------------------------
            with gr.Column(scale=5, min_width=300, elem_id="pw-center"):
                with gr.Row(elem_id="pw-chat-bar"):
                    chat_title = gr.Textbox(placeholder="New conversation",
                                            show_label=False, container=False, scale=6, min_width=160,
                                            max_lines=1, elem_id="pw-chat-title")
                    new_chat = gr.Button("New chat", size="sm", scale=0, min_width=80, elem_id="pw-new-chat")
                    download = gr.Button("Markdown", size="sm", scale=0, min_width=90, interactive=False,
                                         elem_id="pw-download")
                    download_file = gr.DownloadButton(visible="hidden", elem_id="pw-download-file")
                    delete_chat = gr.Button("Delete", size="sm", scale=0, min_width=70, interactive=False,
                                            elem_id="pw-delete-chat")
                with gr.Group(visible=False, elem_id="pw-confirm-chat") as chat_confirm_box:
                    chat_confirm_text = gr.Markdown()
                    with gr.Row():
                        chat_cancel = gr.Button("Cancel", size="sm")
                        chat_confirm = gr.Button("Delete", variant="stop", size="sm", elem_id="pw-confirm-delete-chat")
                chatbot = gr.Chatbot(label="Chat", height="68vh", elem_id="pw-chat", buttons=[],
                                     feedback_options=None, placeholder=_placeholder(),
                                     group_consecutive_messages=False)
                with gr.Row(elem_id="pw-ask-row"):
                    question = gr.Textbox(placeholder="Ask a question about your documents…", show_label=False,
                                          scale=8, lines=1, max_lines=6, autofocus=True, elem_id="pw-question")
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="pw-send")
                    stop = gr.Button("Stop", variant="stop", scale=1, min_width=70, elem_id="pw-stop")

            # --- sources and viewer ---------------------------------------------------------------------------
            with gr.Column(scale=4, min_width=320, elem_id="pw-right"):
                gr.HTML(_viewer(), elem_id="pw-viewer-box")
                sources = gr.HTML(render.sources_html(None), elem_id="pw-sources", label="Sources")

        # This tab's conversation (its id), remembered by the browser across reloads and restarts.
        chat_id = gr.State(None)
        saved_chat = gr.BrowserState("", storage_key=conversations.STORAGE_KEY, secret=conversations.STORAGE_SECRET)
        exports = s.data_dir / UPLOADS / "exports"

        # API-only inputs and outputs (hidden): file upload for gradio_client.
        with gr.Group(visible=False):
            api_files = gr.File(file_count="multiple")
            api_result = gr.JSON()
            api_trigger = gr.Button()

        # --- wiring ---------------------------------------------------------------------------------------------
        lib = library_view.Library(engine)
        lib.warm()
        library_outputs = [library, scope, to_delete, chatbot, chosen, lib_tools, lib_pager, lib_folder, lib_page,
                           lib_seen]
        view_inputs = [chosen, lib_search, lib_folder, lib_page]

        def refresh(selected: list[str] | None = None, query: str = "", folder: str | None = None, page: int = 0,
                    add: list[str] | None = None, user: str = "") -> tuple[Any, ...]:
            return _library_updates(engine, lib, selected, query, folder, page, add, user)

        def on_upload(paths: list[str] | None, selected: list[str] | None, query: str, folder: str | None,
                      page: int, request: gr.Request) -> Iterator[tuple[Any, ...]]:
            who = conversations.owner(request)
            states: dict[str, tuple[str, str, float]] = {}
            starts: dict[str, float] = {}
            added: list[str] = []
            unchanged = (gr.update(),) * len(library_outputs)
            for event in _queued(engine, paths or [], who):
                _track(states, event, starts)
                if isinstance(event, FileIndexed):  # the library changes only when a file is indexed
                    added.append(event.doc_id)
                    lib.forget()
                    yield (render.upload_html(states), *refresh(selected, query, folder, page, added, who),
                           gr.update())
                else:
                    yield render.upload_html(states), *unchanged, gr.update()
            lib.forget()
            yield render.upload_html(states), *refresh(selected, query, folder, page, added, who), None

        upload.upload(on_upload, [upload, *view_inputs], [upload_log, *library_outputs, upload],
                      api_visibility="private",
                      concurrency_limit=INGEST_CONCURRENCY, concurrency_id="ingest", show_progress="hidden")

        def api_upload(paths: list[str] | None, request: gr.Request) -> Iterator[list[dict[str, Any]]]:
            yield from _ingest_results(engine, paths or [], conversations.owner(request))

        api_trigger.click(api_upload, api_files, api_result, api_name="upload", concurrency_limit=INGEST_CONCURRENCY,
                          concurrency_id="ingest")

        def select(on: bool) -> Any:
            def handler(selected: list[str] | None, query: str, folder: str | None, page: int,
                        request: gr.Request) -> tuple[Any, ...]:
                who = conversations.owner(request)
                view = lib.view(query, folder, page, who)
                return refresh(library_view.select_matching(view, selected, on), query, folder, page, user=who)
            return handler

        all_btn.click(select(True), view_inputs, library_outputs, api_visibility="private")
        none_btn.click(select(False), view_inputs, library_outputs, api_visibility="private")

        def on_tick(ticked: list[str] | None, selected: list[str] | None, query: str, folder: str | None,
                    page: int, request: gr.Request) -> tuple[Any, ...]:
            who = conversations.owner(request)
            view = lib.view(query, folder, page, who)
            return refresh(library_view.tick(view, ticked, selected), query, folder, page, user=who)

        scope.input(on_tick, [scope, *view_inputs], library_outputs, api_visibility="private",
                    show_progress="hidden")

        def go(step: int | None) -> Any:
            def handler(selected: list[str] | None, query: str, folder: str | None, page: int,
                        request: gr.Request) -> tuple[Any, ...]:
                return refresh(selected, query, folder, 0 if step is None else int(page or 0) + step,
                               user=conversations.owner(request))
            return handler

        gr.on([lib_search.submit, lib_search.change, lib_folder.input], go(None), view_inputs, library_outputs,
              api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        lib_prev.click(go(-1), view_inputs, library_outputs, api_visibility="private", show_progress="hidden")
        picked.then(go(None), view_inputs, library_outputs, api_visibility="private", show_progress="hidden")
        lib_next.click(go(1), view_inputs, library_outputs, api_visibility="private", show_progress="hidden")

        def poll(selected: list[str] | None, query: str, folder: str | None, page: int,
                 seen: Any, request: gr.Request) -> tuple[Any, ...]:
            """Every few seconds: the queue's progress, and the library again if documents came or went (or what
            this user may read changed: a share given or revoked)."""
            who = conversations.owner(request)
            now = library_view.signature(engine, who)
            if now == seen:
                return library_view.queue_html(engine, who), *(gr.skip(),) * len(library_outputs)
            return library_view.queue_html(engine, who), *refresh(selected, query, folder, page, user=who)

        gr.Timer(2).tick(poll, [*view_inputs, lib_seen], [queue_box, *library_outputs], api_visibility="private",
                         show_progress="hidden")

        def reindex(request: gr.Request) -> str:
            try:
                if not engine.access.is_admin(conversations.owner(request)):
                    raise RagError("Only an admin can re-index the library.")
                plan = engine.reindex()
            except RagError as exc:
                gr.Warning(str(exc))
                return gr.skip()
            return plan.describe()

        reindex_btn.click(reindex, None, reindex_text, api_visibility="private")
        reindex_box.expand(lambda: library_view.reindex_text(engine), None, reindex_text, api_visibility="private")

        def ask_delete(ref: str | None, request: gr.Request) -> tuple[Any, Any]:
            doc = next((d for d in engine.documents(conversations.owner(request)) if d.doc_id == ref), None)
            return _confirm(doc and f"Remove **{render.doc_label(doc)}** and its {doc.chunks} passages from the index?")

        delete_btn.click(ask_delete, to_delete, [confirm_box, confirm_text], api_visibility="private")
        cancel_btn.click(lambda: gr.update(visible=False), None, confirm_box, api_visibility="private")

        def do_delete(ref: str | None, selected: list[str] | None, query: str, folder: str | None,
                      page: int, request: gr.Request) -> tuple[Any, ...]:
            who = conversations.owner(request)
            if ref:
                try:
                    doc = engine.delete(ref, who)
                    gr.Info(f"Removed {doc.file_name}.")
                except RagError as exc:
                    gr.Warning(str(exc))
            lib.forget()
            return gr.update(visible=False), *refresh(selected, query, folder, page, user=who)

        confirm_btn.click(do_delete, [to_delete, *view_inputs], [confirm_box, *library_outputs],
                          api_visibility="private")

        conversation_outputs = [chatbot, sources, chat_id, saved_chat, chat_title, download, delete_chat, chat_list]

        def on_ask(message: str, history: list[dict[str, Any]], current: str | None, selected: list[str] | None,
                   model: str, thinking: bool, k: float, use_rerank: bool, candidates: float,
                   request: gr.Request) -> Iterator[tuple[Any, ...]]:
            options = AskOptions(think=thinking, top_k=int(k), rerank=use_rerank, candidate_pool=int(candidates),
                                 chat_model=(model or "").strip() or None)
            who = conversations.owner(request)
            chat = conversations.save_question(engine, who, current, message)
            turn = Turn()
            head: tuple[Any, ...] = (gr.skip(),) * 6
            if chat is not None:
                head = (chat.id, chat.id, gr.update(value=chat.title), conversations.chat_list(engine, who, chat.id),
                        gr.update(interactive=True), gr.update(interactive=True))
            try:
                for history_out, panel in _answer(engine, message, history, selected, options, turn, who):
                    yield history_out, panel, "", *head
                    head = (gr.skip(),) * 6
            finally:  # also when stopped: the answer so far is kept, marked as stopped
                if chat is not None:
                    conversations.save_answer(engine, who, chat.id, turn)

        ask_inputs = [question, chatbot, chat_id, chosen, chat_model, think, top_k, rerank, pool]
        ask_outputs = [chatbot, sources, question, chat_id, saved_chat, chat_title, chat_list, download, delete_chat]
        ask_event = gr.on([send.click, question.submit], on_ask, ask_inputs, ask_outputs,
                          api_visibility="private", concurrency_limit=CONCURRENCY, concurrency_id="ask",
                          show_progress="hidden")
        stop.click(None, None, None, cancels=[ask_event])

        def export(current: str | None, request: gr.Request) -> Any:
            # Written afresh on each click: Gradio deletes files it served an hour ago.
            try:
                chat = engine.chat_store.get(current or "", conversations.owner(request))
                return str(conversations.export(engine, chat, exports))
            except (RagError, OSError) as exc:
                gr.Warning(f"Could not make the Markdown: {exc}")
                return gr.skip()

        # The visible button makes the file, then the hidden download button hands it to the browser.
        download.click(export, chat_id, download_file, api_visibility="private").then(
            None, None, None, js="() => document.querySelector('#pw-download-file')?.click()")

        def open_chat(chosen: str | None, request: gr.Request) -> tuple[Any, ...]:
            return conversations.show(engine, conversations.owner(request), chosen)

        chat_list.input(open_chat, chat_list, conversation_outputs, api_visibility="private", cancels=[ask_event])
        def start_new(request: gr.Request) -> tuple[Any, ...]:
            return conversations.show(engine, conversations.owner(request), None)

        gr.on([new_chat.click, chatbot.clear], start_new, None, conversation_outputs, api_visibility="private",
              cancels=[ask_event])
        demo.load(open_chat, saved_chat, conversation_outputs, api_visibility="private")

        def rename(current: str | None, title: str, request: gr.Request) -> tuple[Any, Any]:
            who = conversations.owner(request)
            if not current:
                return gr.skip(), gr.skip()
            try:
                chat = engine.chat_store.rename(current, who, title or "")
            except RagError as exc:
                gr.Warning(str(exc))
                return gr.skip(), gr.skip()
            return gr.update(value=chat.title), conversations.chat_list(engine, who, chat.id)

        gr.on([chat_title.submit, chat_title.blur], rename, [chat_id, chat_title], [chat_title, chat_list],
              api_visibility="private")

        def ask_delete_chat(current: str | None, request: gr.Request) -> tuple[Any, Any]:
            try:
                chat = engine.chat_store.get(current, conversations.owner(request)) if current else None
            except ChatNotFound:
                chat = None
            return _confirm(chat and f"Delete the conversation **{escape_markdown(chat.title)}** ({chat.messages} "
                            "messages)?")

        delete_chat.click(ask_delete_chat, chat_id, [chat_confirm_box, chat_confirm_text], api_visibility="private")
        chat_cancel.click(lambda: gr.update(visible=False), None, chat_confirm_box, api_visibility="private")

        def do_delete_chat(current: str | None, request: gr.Request) -> tuple[Any, ...]:
            who = conversations.owner(request)
            if current:
                try:
                    engine.chat_store.delete(current, who)
                    conversations.forget_export(current, exports)
                except RagError as exc:
                    gr.Warning(str(exc))
            return gr.update(visible=False), *conversations.show(engine, who, None)

        chat_confirm.click(do_delete_chat, chat_id, [chat_confirm_box, *conversation_outputs],
                           api_visibility="private", cancels=[ask_event])

        def pick_example(event: gr.SelectData) -> str:
            return event.value["text"]

        chatbot.example_select(pick_example, None, question, api_visibility="private")

        def check(model: str) -> str:
            return render.status_html(engine.health((model or "").strip() or None))

        recheck.click(check, chat_model, status, api_visibility="private")
        gr.Timer(30).tick(check, chat_model, status, api_visibility="private", show_progress="hidden")
        def on_load(model: str, request: gr.Request) -> tuple[Any, ...]:
            return (check(model), library_view.queue_html(engine, conversations.owner(request)),
                    *refresh(None, user=conversations.owner(request)))

        demo.load(on_load, chat_model, [status, queue_box, *library_outputs], api_visibility="private")

        # --- public API (gradio_client) ---------------------------------------------------------------------------
        def documents(request: gr.Request) -> list[dict[str, Any]]:
            """Your documents: id, file name, pages, chunks, added (unix time), pages read by OCR."""
            return [{"doc_id": d.doc_id, "file_name": d.file_name, "pages": d.pages, "chunks": d.chunks,
                     "added_at": d.added_at, "ocr_pages": d.ocr_pages}
                    for d in engine.documents(conversations.owner(request))]

        def ask(question: str, doc_ids: list[str] | None = None, think: bool = False,
                request: gr.Request = None) -> Iterator[dict[str, Any]]:
            """Answer a question from your documents (all, or the given ids): answer, thinking, cited, other, error.
            Streams (``client.submit``): each update has the answer so far; the last has ``done`` true."""
            yield from _ask_stream(engine, question, doc_ids, AskOptions(think=think), conversations.owner(request))

        def delete(doc: str, request: gr.Request) -> dict[str, Any]:
            """Remove one of your documents by id or file name."""
            try:
                removed = engine.delete(doc, conversations.owner(request))
            except RagError as exc:  # not found (or not theirs: the same words), or only shared with them to read
                raise gr.Error(str(exc)) from exc
            return {"removed": removed.doc_id, "file_name": removed.file_name}

        gr.api(documents, api_name="documents")
        gr.api(ask, api_name="ask", concurrency_limit=CONCURRENCY, concurrency_id="ask")
        gr.api(delete, api_name="delete")

        def queue_status(request: gr.Request) -> dict[str, Any]:
            """The ingest queue: files waiting and running, finished since it last ran dry, the estimated seconds
            left (``eta_seconds``), and (for an admin) the file at hand and each watched folder's state."""
            return library_view.api_status(engine, conversations.owner(request))

        gr.api(queue_status, api_name="queue")
        conversations.api(engine, exports)
        collections.api(engine)
    return demo


# --- answering ----------------------------------------------------------------------------------------------------
def _answer(engine: Engine, message: str, history: list[dict[str, Any]], selected: list[str] | None,
            options: AskOptions, turn: Turn, user: str = "") -> Iterator[tuple[list[dict[str, Any]], str]]:
    """Stream one question's answer into the chat: thinking in a folding block, then the answer with chips.
    ``turn`` collects what is to be saved; it is ``finished`` once the answer has ended (failed answers too)."""
    message = (message or "").strip()
    history = list(history or [])
    if not message:
        yield history, gr.update()
        return
    conversation = _conversation(history)
    history.append({"role": "user", "content": message})
    answer = {"role": "assistant", "content": "<span class='pw-working'>Searching…</span>"}
    history.append(answer)
    yield history, render.sources_html(None)

    thought, started = None, time.monotonic()
    panel = gr.update()
    try:
        for event in engine.ask(message, conversation, selected, options, user=user):
            if isinstance(event, Progress) and not turn.text:
                answer["content"] = f"<span class='pw-working'>{_stage_text(event)}</span>"
            elif isinstance(event, ThinkingDelta):
                if thought is None:
                    thought = {"role": "assistant", "content": "",
                               "metadata": {"title": "Thinking…", "status": "pending"}}
                    history.insert(len(history) - 1, thought)
                turn.thinking += event.text
                turn.thinking_seconds = time.monotonic() - started
                thought["content"] += render.streaming_html(event.text)  # the model's text is shown, never run
            elif isinstance(event, AnswerDelta):
                if thought is not None and thought["metadata"]["status"] == "pending":
                    thought["metadata"] = {"title": f"Thought for {turn.thinking_seconds:.0f} s", "status": "done"}
                turn.text += event.text
                answer["content"] = render.streaming_html(turn.text)
            elif isinstance(event, Sources):
                turn.sources = event
                answer["content"] = render.answer_message(turn.text, event)
                panel = render.sources_html(event, turn.text)
            elif isinstance(event, Claims):  # statements checked: re-pointed citations, unsupported ones marked
                turn.claims = event
                answer["content"] = render.answer_message(turn.text, turn.sources, claims=event)
                panel = render.sources_html(turn.sources, turn.text, claims=event)
            elif isinstance(event, Failure):  # after a partial answer: it stays, marked as interrupted
                turn.error = event.message
                answer["content"] = render.answer_message(turn.text, turn.sources, event.message, claims=turn.claims)
            yield history, panel
    except RagError as exc:
        turn.error = str(exc)
        answer["content"] = render.answer_message("", None, str(exc))
        yield history, panel
    finally:
        if thought is not None and thought["metadata"]["status"] == "pending":
            thought["metadata"] = {"title": "Thinking (stopped)", "status": "done"}
    turn.finished = True


def _confirm(question: str | None) -> tuple[Any, Any]:
    """A confirmation box: shown with ``question``, hidden when there is nothing to confirm."""
    return gr.update(visible=bool(question)), gr.update(value=question or "")


def _stage_text(event: Progress) -> str:
    """What the chat shows while a step runs; reranking says how many passages it reads ("Ranking 8 of 29 …")."""
    if event.stage == "reranking" and event.detail:
        return html.escape(event.detail[:1].upper() + event.detail[1:]) + "…"
    return STAGES.get(event.stage, "…")


def _conversation(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat so far as the engine wants it: plain text, reasoning blocks kept out (the engine drops them)."""
    out = []
    for m in history:
        content = flatten(m.get("content"))
        if m.get("role") == "assistant":
            content = render.plain_text(content)
        out.append({"role": m.get("role"), "content": content, "metadata": m.get("metadata")})
    return out


def _ask_stream(engine: Engine, question: str, doc_ids: list[str] | None,
                options: AskOptions, user: str = "") -> Iterator[dict[str, Any]]:
    """The /ask API's updates: the answer and thinking so far after each piece, then the whole result (``done``)
    with the cited and other passages and the error, if any (an interrupted answer keeps its text)."""
    answer: list[str] = []
    thinking: list[str] = []
    sources: Sources | None = None
    claims: Claims | None = None
    error: str | None = None

    def result(done: bool) -> dict[str, Any]:
        return {"answer": "".join(answer), "thinking": "".join(thinking), **sources_record(sources),
                "claims": claims_record(claims), "error": error, "done": done}

    for event in engine.ask(question, (), doc_ids, options, user=user):
        if isinstance(event, AnswerDelta):
            answer.append(event.text)
            yield result(False)
        elif isinstance(event, ThinkingDelta):
            thinking.append(event.text)
            yield result(False)
        elif isinstance(event, Sources):
            sources = event
        elif isinstance(event, Claims):
            claims = event
        elif isinstance(event, Failure):
            error = event.message
    yield result(True)


# --- ingestion ----------------------------------------------------------------------------------------------------
OCR_SHARE = 0.6  # of a file's progress bar, while its pages are read by OCR (by far the slowest stage)


def _track(states: dict[str, tuple[str, str, float]], event: Any, starts: dict[str, float] | None = None) -> None:
    """Update the per-file progress from one ingestion event (``starts``: where each file's embedding begins on
    its bar, after the reading, kept between calls)."""
    starts = {} if starts is None else starts
    if isinstance(event, FileStarted):
        states[event.file_name] = ("working", "reading…", 0.02)
    elif isinstance(event, PageRead):
        states[event.file_name] = ("working", f"reading page {event.done}/{event.total} (OCR)",
                                   0.02 + OCR_SHARE * event.done / max(1, event.total))
    elif isinstance(event, PagesParsed):
        missing = f", {len(event.pages_without_text)} without text" if event.pages_without_text else ""
        ocr = f", {len(event.ocr_pages)} by OCR" if event.ocr_pages else ""
        starts[event.file_name] = 0.02 + OCR_SHARE if event.ocr_pages else 0.1
        states[event.file_name] = ("working", f"{event.pages} pages read{ocr}{missing}, embedding…",
                                   starts[event.file_name])
    elif isinstance(event, Embedded):
        start = starts.get(event.file_name, 0.1)
        states[event.file_name] = ("working", f"embedding {event.done}/{event.total}",
                                   start + (0.95 - start) * event.done / max(1, event.total))
    elif isinstance(event, FileIndexed):
        if event.status == "already indexed":
            states[event.file_name] = ("same", "already indexed", 1.0)
        else:
            extra = (f" (pages {', '.join(map(str, event.pages_without_text[:10]))} have no text)"
                     if event.pages_without_text else "")
            ocr = f", {len(event.ocr_pages)} read by OCR" if event.ocr_pages else ""
            verb = "indexed, replacing the older version" if event.status == "replaced" else "indexed"
            states[event.file_name] = ("done", f"{verb}: {event.pages} pages{ocr}{extra}", 1.0)
    elif isinstance(event, FileFailed):
        states[event.file_name] = ("failed", f"failed: {event.reason}", 1.0)
    elif isinstance(event, Failure):
        for name, (kind, _, _) in list(states.items()):
            if kind == "working":
                states[name] = ("failed", "not indexed: the run stopped", 1.0)
        states["⚠"] = ("failed", event.message, 1.0)


def _ingest_results(engine: Engine, paths: list[str], user: str = "") -> Iterator[list[dict[str, Any]]]:
    """The /upload API's updates: each file's result as it is known, with, while a file's pages are read by OCR, a
    "working" entry saying which (``client.submit`` streams them; the last update holds the results only)."""
    results: list[dict[str, Any]] = []
    for event in _queued(engine, paths, user):
        if isinstance(event, PageRead):
            yield results + [{"file_name": event.file_name, "status": "working",
                              "progress": f"reading page {event.done}/{event.total} (OCR)",
                              "pages_read": event.done, "pages_to_read": event.total}]
        elif isinstance(event, FileIndexed):
            results.append({"file_name": event.file_name, "status": event.status, "doc_id": event.doc_id,
                            "pages": event.pages, "chunks": event.chunks,
                            "pages_without_text": event.pages_without_text, "ocr_pages": event.ocr_pages})
        elif isinstance(event, FileFailed):
            results.append({"file_name": event.file_name, "status": "failed", "reason": event.reason})
        elif isinstance(event, Failure):
            results.append({"file_name": None, "status": "failed", "reason": event.message})
    yield results


def _queued(engine: Engine, paths: list[str], user: str = "") -> Iterator[Any]:
    """Add uploads to the ingest queue for ``user`` (copied: Gradio's temporary files go) and follow their events
    while the queue's runner indexes them; closing the page leaves them in the queue. Files the user may not add
    (a guest over the quota, a visitor who has not signed in) are refused first, each with its reason."""
    if not engine.settings.ingest:
        yield Failure("This app only answers questions (RAG_INGEST=false): add files where the library's "
                      "queue runs (`python -m rag sync` or the app that indexes).")
        return
    accepted, refused = engine.admit([SourceFile(Path(p), Path(p).name) for p in paths], user)
    yield from refused
    if accepted:
        ids = engine.enqueue(accepted, owner=user, copy=True)
        yield from (event for _, event in engine.queue.follow(ids))


def _library_updates(engine: Engine, lib: library_view.Library, selected: list[str] | None, query: str = "",
                     folder: str | None = None, page: int = 0, add: list[str] | None = None,
                     user: str = "") -> tuple[Any, ...]:
    """Table (the page of ``user``'s documents matching the search and folder), "Ask about" (that page, checked
    where chosen; new documents join the selection), delete list, the chat's example questions, the selection, the
    search tools (shown for a large library), the pager, the folder choices, the page, and what was drawn. If the
    index can't be read (a Chroma server away), they stay as they are and a warning says why."""
    try:
        view = lib.view(query, folder, page, user)
        folders = lib.folders(user)
    except RagError as exc:
        gr.Warning(str(exc))
        return (gr.update(),) * 10
    docs = lib.documents(user)
    chosen = library_view.with_added(selected, add or [], view.all_ids)
    choices = [(render.doc_label(d), d.doc_id) for d in view.page_docs]
    large = len(view.all_ids) > library_view.PAGE_SIZE or len(folders) > 1
    return (gr.update(value=library_view.table_html(view)),
            gr.update(choices=choices, value=library_view.checked(view, chosen),
                      info=library_view.scope_label(chosen, len(view.all_ids))),
            gr.update(choices=choices, value=None), gr.update(examples=_examples(docs)), chosen,
            gr.update(visible=large), library_view.pager_text(view), gr.update(choices=folders), view.page,
            library_view.signature(engine, user))


def _examples(docs: list[Any]) -> list[dict[str, str]] | None:
    if not docs:
        return None
    first = docs[-1].title or docs[-1].file_name
    return [{"text": f"What is {first} about? Summarise its main points."},
            {"text": "What are the key numbers and dates in these documents?"},
            {"text": f"What conclusions or recommendations does {first} make?"}]


# --- static parts -----------------------------------------------------------------------------------------------
def _header() -> str:
    return ('<div class="pw-brand"><img src="/gradio_api/file=' + str(ASSETS / "logo.svg") + '" alt="" '
            'class="pw-logo"><div><div class="pw-title">Pagewise</div><div class="pw-tagline">Chat with your PDFs · '
            'every answer cites its page</div></div></div>')


def _placeholder() -> str:
    return ("### Ask your documents\nDrop PDFs on the left, then ask a question. Every answer cites its sources; "
            "click a citation to open the PDF at that page.")


def _viewer() -> str:
    return ('<div id="pw-viewer-backdrop"></div>'
            '<div id="pw-viewer" data-state="empty" data-large="false"><div class="pw-viewer-bar">'
            '<span id="pw-viewer-title">Click a citation to open its page here</span>'
            '<span class="pw-viewer-tools">'
            '<button id="pw-zoom-out" type="button" aria-label="Zoom out" title="Zoom out (−)">−</button>'
            '<span id="pw-zoom-level"></span>'
            '<button id="pw-zoom-in" type="button" aria-label="Zoom in" title="Zoom in (+)">+</button>'
            '<button id="pw-fit" type="button" aria-label="Fit the width" title="Fit the page to the width">'
            '↔</button>'
            '<button id="pw-large" type="button" aria-label="Open the page large" title="Open the page large">⤢'
            '</button>'
            '<a id="pw-open-tab" target="_blank" rel="noopener" title="Open the PDF in a new tab at this page">'
            'New tab ↗</a></span>'
            '<span class="pw-viewer-nav"><button id="pw-prev" type="button" aria-label="Previous page" '
            'title="Previous page (←)">‹</button><span id="pw-viewer-page"></span>'
            '<button id="pw-next" type="button" aria-label="Next page" title="Next page (→)">›</button></span>'
            '</div><div id="pw-viewer-scroll"><div id="pw-viewer-page-box"></div></div></div>')


def head(engine: Engine) -> str:
    """Script tags for the PDF viewer (PDF.js, served from assets/) and where the PDFs are."""
    pdfjs = str(ASSETS / "pdfjs")
    # The stored PDFs come from our own route, which checks who asks (ui/files.py), never from a static path.
    config = {"pdfjs": f"{pdfjs}/pdf.min.mjs", "worker": f"{pdfjs}/pdf.worker.min.mjs",
              "fileKey": f"{PREFIX}/key", "files": f"{PREFIX}/files"}
    import json

    return (f"<script>window.PAGEWISE = {json.dumps(config)};</script>"
            f'<link rel="stylesheet" href="/gradio_api/file={pdfjs}/text_layer.css">'
            f'<script type="module" src="/gradio_api/file={ASSETS}/viewer.js"></script>'
            f'<script type="module" src="/gradio_api/file={ASSETS}/copy.js"></script>'
            f'<script type="module" src="/gradio_api/file={ASSETS}/library.js"></script>')


def launch_options(settings: Settings, engine: Engine) -> dict[str, Any]:
    """Arguments for ``Blocks.launch``: address, login, limits, theme, CSS and the viewer's scripts."""
    gr.set_static_paths([str(ASSETS)])
    from starlette.middleware import Middleware

    # Who is asking (ui/identity.py): Gradio's login form for RAG_AUTH and the users file; a dependency for guests
    # and Hugging Face accounts. The stored PDFs are served by a route that checks it (ui/files.py).
    auth: Any = (identity.check_login(settings) if settings.users_file else settings.logins) or None
    app_kwargs: dict[str, Any] = {"routes": FileRoutes(engine).routes()}
    if settings.guests or settings.hf_login:
        app_kwargs["middleware"] = [Middleware(identity.GuestCookie, max_age=int(settings.guest_days * 86400))]
    return {"server_name": settings.host, "server_port": settings.port, "auth": auth,
            "auth_dependency": None if auth else identity.dependency(settings), "app_kwargs": app_kwargs,
            "max_file_size": upload_ceiling(settings),
            "theme": gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
            "css_paths": [str(ASSETS / "style.css")], "head": head(engine), "favicon_path": str(ASSETS / "logo.svg"),
            "footer_links": ["api"]}


def upload_ceiling(settings: Settings) -> int:
    """Bytes the web server accepts per uploaded file: twice RAG_MAX_UPLOAD_MB.

    A file over the limit but under this ceiling reaches the engine, which refuses it with its own message (naming
    the file, its size and the setting) while the other files of the same drop are indexed; the browser refuses a
    whole drop that holds a larger file, so anything bigger never reaches the disk.
    """
    return 2 * settings.max_upload_bytes


def queue(demo: gr.Blocks) -> gr.Blocks:
    """Turn the queue on with the deliberate limits above: ingestion one run at a time, a few questions at once."""
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
