"""The saved-conversation side of the app: who the user is, which conversation a tab shows, what a streamed answer
saves once it ends, a conversation's Markdown download, and the conversation endpoints of the API. The saving
itself is ``rag.conversations.chats``.

A tab remembers its conversation in the browser (``gr.BrowserState``: localStorage, with a fixed key so it
survives a restart of the app), so a reload or a tab opened the next day comes back to it; the list beside the
chat holds every other one.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag.conversations.chats import ChatMessage, Conversation, conversation_record, message_record
from rag.conversations.markdown import conversation_markdown, file_name
from rag.core.errors import ChatNotFound, RagError
from rag.core.events import Claims, Sources
from rag.engine import Engine
from ui import render

log = logging.getLogger(__name__)
STORAGE_KEY = "pagewise-conversation"  # localStorage key of the tab's conversation id (fixed: survives restarts)
STORAGE_SECRET = "pagewise"  # BrowserState encrypts with it; an id is no secret, ownership is checked on the server
STOPPED = "Stopped before the answer was complete."


def owner(request: gr.Request | None) -> str:
    """Whose conversations these are: the login name when the app asks for one, else "" (one shared list)."""
    return str(getattr(request, "username", None) or "") if request is not None else ""


@dataclass
class Turn:
    """One answer while it streams, and what is saved once it ends (or is cut short)."""

    text: str = ""
    thinking: str = ""
    thinking_seconds: float = 0.0
    sources: Sources | None = None
    error: str | None = None
    finished: bool = False
    claims: Claims | None = None

    def message(self) -> ChatMessage:
        """The answer as saved; one that never finished says it was stopped."""
        error = self.error or (None if self.finished else STOPPED)
        return ChatMessage("assistant", self.text, thinking=self.thinking, thinking_seconds=self.thinking_seconds,
                           sources=self.sources, error=error, claims=self.claims)


def chat_list(engine: Engine, who: str, current: str | None) -> Any:
    """The list of ``who``'s conversations, newest first, with ``current`` chosen."""
    chats = engine.chat_store.conversations(who)
    ids = {c.id for c in chats}
    info = "Saved as you ask; the newest first." if chats else "None yet: each question you ask is saved here."
    return gr.update(choices=[(c.title, c.id) for c in chats], value=current if current in ids else None, info=info)


def export(engine: Engine, chat: Conversation, folder: Path) -> Path:
    """Write ``chat`` as Markdown under ``folder`` for the download button (in a new subfolder each time, so a
    browser never gets a stale copy; the older ones are removed)."""
    messages = engine.chat_store.messages(chat.id, chat.owner)
    text = conversation_markdown(chat, messages, engine.removed_documents(messages, chat.owner))
    for old in folder.glob(f"{chat.id}-*"):
        shutil.rmtree(old, ignore_errors=True)
    target = folder / f"{chat.id}-{time.time_ns()}" / file_name(chat)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def forget_export(chat_id: str, folder: Path) -> None:
    """Remove the Markdown files written for a conversation (when it is deleted)."""
    for old in folder.glob(f"{chat_id}-*"):
        shutil.rmtree(old, ignore_errors=True)


def show(engine: Engine, who: str, chat_id: str | None) -> tuple[Any, ...]:
    """What a tab shows for one of ``who``'s conversations (a new, empty one when ``chat_id`` is unknown): chat,
    sources panel (the last answer's), the tab's and the browser's conversation id, title, the download and delete
    buttons (usable once there is a conversation) and the list."""
    try:
        chat = engine.chat_store.get(chat_id, who) if chat_id else None
    except ChatNotFound:
        chat = None
    if chat is None:
        return ([], render.sources_html(None), None, "", gr.update(value=""), gr.update(interactive=False),
                gr.update(interactive=False), chat_list(engine, who, None))
    messages = engine.chat_store.messages(chat.id, who)
    removed = engine.removed_documents(messages, who)
    answers = [m for m in messages if m.role == "assistant"]
    panel = render.sources_html(answers[-1].sources, answers[-1].content, removed, answers[-1].claims) \
        if answers else render.sources_html(None)
    return (render.chat_messages(messages, removed), panel, chat.id, chat.id, gr.update(value=chat.title),
            gr.update(interactive=True), gr.update(interactive=True), chat_list(engine, who, chat.id))


def save_question(engine: Engine, who: str, current: str | None, message: str) -> Conversation | None:
    """Save a question in the tab's conversation (a new one, named after it, when there is none or it was deleted
    meanwhile); None when there is nothing to save or it could not be saved (a warning says why)."""
    message = (message or "").strip()
    if not message:
        return None
    question = ChatMessage("user", message)
    try:
        if current:
            try:
                engine.chat_store.add(current, who, question)
                return engine.chat_store.get(current, who)
            except ChatNotFound:
                pass  # deleted in another tab: this question starts a new conversation
        return engine.chat_store.start(who, question)
    except RagError as exc:
        gr.Warning(f"This conversation is not being saved: {exc}")
        return None


def save_answer(engine: Engine, who: str, chat_id: str, turn: Turn) -> None:
    """Save an answer (complete, failed or stopped) in its conversation; a failure to save is logged."""
    try:
        engine.chat_store.add(chat_id, who, turn.message())
    except RagError as exc:
        log.warning("The answer was not saved: %s", exc)


def _chat_or_error(engine: Engine, who: str, chat_id: str) -> tuple[Conversation, list[ChatMessage]]:
    """One of ``who``'s conversations and its messages, or the API's error saying it doesn't exist."""
    try:
        return engine.chat_store.get(chat_id, who), engine.chat_store.messages(chat_id, who)
    except ChatNotFound as exc:
        raise gr.Error(str(exc)) from exc


def api(engine: Engine, exports: Path) -> None:
    """The conversation endpoints of the API (each for the login the client uses): /chats, /chat, /chat_markdown,
    /rename_chat and /delete_chat."""

    def chats(request: gr.Request) -> list[dict[str, Any]]:
        """Your saved conversations, newest first: id, title, created_at, updated_at (unix time), message_count."""
        return [conversation_record(c) for c in engine.chat_store.conversations(owner(request))]

    def chat(chat_id: str, request: gr.Request) -> dict[str, Any]:
        """One of your saved conversations with its messages (an answer: thinking, error, cited and other
        passages as /ask gives them, each saying whether its document has been removed since)."""
        who = owner(request)
        found, messages = _chat_or_error(engine, who, chat_id)
        removed = engine.removed_documents(messages, who)
        return {**conversation_record(found), "messages": [message_record(m, removed) for m in messages]}

    def chat_markdown(chat_id: str, request: gr.Request) -> str:
        """One of your saved conversations as Markdown: questions, answers, and every cited file and page."""
        who = owner(request)
        found, messages = _chat_or_error(engine, who, chat_id)
        removed = engine.removed_documents(messages, who)
        return conversation_markdown(found, messages, removed)

    def rename_chat(chat_id: str, title: str, request: gr.Request) -> dict[str, Any]:
        """Give one of your saved conversations a new title."""
        who = owner(request)
        _chat_or_error(engine, who, chat_id)
        return conversation_record(engine.chat_store.rename(chat_id, who, title))

    def delete_chat(chat_id: str, request: gr.Request) -> dict[str, Any]:
        """Delete one of your saved conversations."""
        who = owner(request)
        _chat_or_error(engine, who, chat_id)
        forget_export(chat_id, exports)
        return conversation_record(engine.chat_store.delete(chat_id, who))

    for fn in (chats, chat, chat_markdown, rename_chat, delete_chat):
        gr.api(fn, api_name=fn.__name__)
