"""The saved-conversation side of the app: who the user is, which conversation a tab shows, what a streamed answer
saves once it ends, and a conversation's Markdown download. The saving itself is ``rag.chats``.

A tab remembers its conversation in the browser (``gr.BrowserState``: localStorage, with a fixed key so it
survives a restart of the app), so a reload or a tab opened the next day comes back to it; the list beside the
chat holds every other one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag.chats import ChatMessage, Conversation
from rag.engine import Engine
from rag.errors import ChatNotFound
from rag.events import Sources
from rag.markdown import conversation_markdown, file_name
from ui import render

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

    def message(self) -> ChatMessage:
        """The answer as saved; one that never finished says it was stopped."""
        error = self.error or (None if self.finished else STOPPED)
        return ChatMessage("assistant", self.text, thinking=self.thinking, thinking_seconds=self.thinking_seconds,
                           sources=self.sources, error=error)


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
    text = conversation_markdown(chat, messages, engine.removed_documents(messages))
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
    removed = engine.removed_documents(messages)
    answers = [m for m in messages if m.role == "assistant"]
    panel = render.sources_html(answers[-1].sources, answers[-1].content, removed) if answers else \
        render.sources_html(None)
    return (render.chat_messages(messages, removed), panel, chat.id, chat.id, gr.update(value=chat.title),
            gr.update(interactive=True), gr.update(interactive=True), chat_list(engine, who, chat.id))
