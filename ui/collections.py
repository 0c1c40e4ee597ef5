"""The library's sharing side in the app: "Ask about" a collection (which checks its documents), the collections
box (create, add or remove the checked documents, share to read or edit, revoke), the guest's note and the
Hugging Face sign-in button, and the collection endpoints of the API. Every decision is the engine's
(``rag.access``); this module only asks it and renders."""

from __future__ import annotations

import logging
from typing import Any, Callable

import gradio as gr

from rag.access.library import Collection
from rag.conversations.markdown import escape_markdown
from rag.core.config import Settings
from rag.core.errors import RagError
from rag.engine import Engine
from rag.ingestion.ingest import human_size
from ui.conversations import owner

log = logging.getLogger(__name__)
ALL, MINE = "*all", "*mine"  # the two groups that are not collections
EVERYONE = "everyone"  # typed in the share box: everyone signed in


def sign_in(settings: Settings) -> None:
    """The sign-in button (Sign in with Hugging Face) and, for guests, what this browser's library is; placed in the
    current layout."""
    if settings.hf_login:
        gr.LoginButton(elem_id="pw-hf-login")
    if settings.guests:
        gr.Markdown(guest_note(settings), elem_id="pw-guest-note")


def guest_note(settings: Settings) -> str:
    """What a guest is told on the page."""
    days = f"{settings.guest_days:g} day" + ("" if settings.guest_days == 1 else "s")
    room = human_size(int(settings.guest_mb * 1024 * 1024))
    return (f"You are a guest: your PDFs and conversations are private to this browser and are deleted {days} after "
            f"your last visit. Room for {room} and {settings.guest_pages} pages.")


def _label(c: Collection, mode: str, who: str) -> str:
    whose = "" if c.owner == who else f" · {c.owner}'s"
    return f"{c.name}{whose} ({'yours' if mode == 'owner' else mode})"


def _choices(engine: Engine, who: str) -> tuple[Any, Any]:
    """The "Ask about" groups and the collection picker for ``who``."""
    shown = engine.access.collections(who)
    groups = [("All my documents", ALL), ("My documents", MINE)] + [(_label(c, m, who), c.id) for c, m in shown]
    return gr.update(choices=groups, value=None), gr.update(choices=[(_label(c, m, who), c.id) for c, m in shown])


def _describe(engine: Engine, who: str, chosen: str | None) -> str:
    found = next(((c, m) for c, m in engine.access.collections(who) if c.id == chosen), None)
    if found is None:
        return ""
    c, mode = found
    names = engine.access.view(who).names
    docs = ", ".join(f"`{escape_markdown(names.get(d, n))}`" for d, n in c.docs.items()) or "no documents yet"
    shared = [f"{u} ({m})" for u, m in sorted(c.shares.items())]
    if c.everyone:
        shared.append(f"everyone signed in ({c.everyone})")
    lines = [f"**{escape_markdown(c.name)}**: {docs}."]
    if mode == "owner":
        lines.append("Shared with " + (", ".join(shared) if shared else "nobody") + ".")
    else:
        lines.append(f"{escape_markdown(c.owner)} shares it with you to {mode}.")
    return "  \n".join(lines)


def panel(engine: Engine, demo: gr.Blocks, selection: gr.State) -> Any:
    """The "Ask about" group picker and the collections box, placed in the current layout and wired to
    ``selection`` (the documents questions are asked about: None for all, or their ids). Returns the picker's
    event, for the library to be drawn again after it."""
    group = gr.Dropdown(label="Ask about a collection", choices=[], elem_id="pw-group",
                        info="Checks the documents of one collection below.")
    with gr.Accordion("Collections", open=False, elem_id="pw-collections"):
        chosen = gr.Dropdown(label="Collection", choices=[], elem_id="pw-collection")
        about = gr.Markdown(elem_id="pw-collection-info")
        with gr.Row():
            name = gr.Textbox(placeholder="New collection's name", show_label=False, max_lines=1, scale=3,
                              elem_id="pw-collection-name")
            create = gr.Button("Create", size="sm", scale=1, elem_id="pw-collection-create")
        with gr.Row():
            add = gr.Button("Add checked", size="sm", elem_id="pw-collection-add")
            take = gr.Button("Remove checked", size="sm", elem_id="pw-collection-remove")
        with gr.Row():
            person = gr.Textbox(placeholder=f"a login, or '{EVERYONE}'", show_label=False, max_lines=1, scale=3,
                                elem_id="pw-share-with")
            mode = gr.Radio([("read", "read"), ("edit", "edit"), ("stop sharing", "")], value="read",
                            show_label=False, scale=3, elem_id="pw-share-mode")
            share = gr.Button("Share", size="sm", scale=1, elem_id="pw-share")

    def load(request: gr.Request) -> tuple[Any, ...]:
        who = owner(request)
        try:
            engine.access.visit(who, engine.chat_store)
        except RagError as exc:
            log.warning("Could not note the visit: %s", exc)
        return _choices(engine, who)

    demo.load(load, None, [group, chosen], api_visibility="private")

    def pick(value: str | None, request: gr.Request) -> Any:
        who = owner(request)
        if not value:
            return gr.skip()
        if value == ALL:
            return None
        view = engine.access.view(who)
        if value == MINE:
            ids = set(view.held)
        else:
            found = next((c for c, _ in view.collections if c.id == value), None)
            ids = set(found.docs) if found else set()
        return [d.doc_id for d in engine.documents(who) if d.doc_id in ids]

    picked = group.input(pick, group, selection, api_visibility="private")

    def describe(current: str | None, request: gr.Request) -> str:
        return _describe(engine, owner(request), current)

    chosen.change(describe, chosen, about, api_visibility="private")

    def refreshed(who: str, current: str | None) -> tuple[Any, ...]:
        groups, picker = _choices(engine, who)
        return groups, gr.update(choices=picker["choices"], value=current), _describe(engine, who, current)

    def do_create(current: str | None, new: str, request: gr.Request) -> tuple[Any, ...]:
        who = owner(request)
        try:
            current = engine.access.create_collection(who, new).id
        except RagError as exc:
            gr.Warning(str(exc))
        return refreshed(who, current)

    def members(change: Callable[[str, str, str], object]) -> Callable[..., tuple[Any, ...]]:
        """A handler that puts the checked documents in the chosen collection, or takes them out."""
        def handle(current: str | None, checked: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
            who = owner(request)
            try:
                for doc_id in _checked(engine, who, current, checked):
                    change(who, str(current), doc_id)
            except RagError as exc:
                gr.Warning(str(exc))
            return refreshed(who, current)
        return handle

    do_add = members(lambda who, current, doc: engine.access.add_to_collection(who, current, doc))
    do_take = members(lambda who, current, doc: engine.access.remove_from_collection(who, current, doc))

    def do_share(current: str | None, to: str, how: str, request: gr.Request) -> tuple[Any, ...]:
        who = owner(request)
        target = (to or "").strip()
        try:
            if not current:
                raise RagError("Choose a collection first.")
            if not target:
                raise RagError(f"Type the login to share with, or '{EVERYONE}'.")
            engine.access.share(who, current, None if target.lower() == EVERYONE else target, how or "")
            gr.Info(f"{'Stopped sharing' if not how else 'Shared'} with {target}.")
        except RagError as exc:
            gr.Warning(str(exc))
        return refreshed(who, current)

    outputs = [group, chosen, about]
    create.click(do_create, [chosen, name], outputs, api_visibility="private")
    add.click(do_add, [chosen, selection], outputs, api_visibility="private")
    take.click(do_take, [chosen, selection], outputs, api_visibility="private")
    share.click(do_share, [chosen, person, mode], outputs, api_visibility="private")
    return picked


def _checked(engine: Engine, who: str, current: str | None, checked: list[str] | None) -> list[str]:
    """The documents checked under Ask about (None: all of this user's)."""
    if not current:
        raise RagError("Choose a collection first.")
    if checked is None:
        return [d.doc_id for d in engine.documents(who)]
    if not checked:
        raise RagError("Check the documents first (under Ask about).")
    return list(checked)


def collection_record(engine: Engine, who: str, c: Collection, mode: str) -> dict[str, Any]:
    """A collection as the API gives it."""
    names = engine.access.view(who).names
    return {"id": c.id, "name": c.name, "owner": c.owner, "mode": mode,
            "documents": [{"doc_id": d, "file_name": names.get(d, n)} for d, n in c.docs.items()],
            **({"everyone": c.everyone, "shared_with": dict(c.shares)} if mode == "owner" else {})}


def api(engine: Engine) -> None:
    """The collection endpoints (each for the login the client uses): /collections, /create_collection,
    /collection_add, /collection_remove, /share_collection and /delete_collection."""

    def _call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc

    def collections(request: gr.Request) -> list[dict[str, Any]]:
        """The collections you own or that are shared with you, and what you may do with each (owner/edit/read)."""
        who = owner(request)
        return [collection_record(engine, who, c, m) for c, m in engine.access.collections(who)]

    def _one(who: str, ref: str) -> dict[str, Any]:
        c, m = next((c, m) for c, m in engine.access.collections(who) if c.id == ref)
        return collection_record(engine, who, c, m)

    def create_collection(name: str, request: gr.Request) -> dict[str, Any]:
        """Make a new, empty collection of yours."""
        who = owner(request)
        return _one(who, _call(engine.access.create_collection, who, name).id)

    def collection_add(collection: str, doc: str, request: gr.Request) -> dict[str, Any]:
        """Add one of your documents (id or file name) to a collection you may edit (id or name)."""
        who = owner(request)
        return _one(who, _call(engine.access.add_to_collection, who, collection, doc).id)

    def collection_remove(collection: str, doc: str, request: gr.Request) -> dict[str, Any]:
        """Take a document out of a collection you may edit."""
        who = owner(request)
        return _one(who, _call(engine.access.remove_from_collection, who, collection, doc).id)

    def share_collection(collection: str, user: str, mode: str, request: gr.Request) -> dict[str, Any]:
        """Share one of your collections with a login (or 'everyone' signed in) to 'read' or 'edit'; mode ''
        stops sharing it with them."""
        who = owner(request)
        target = None if (user or "").strip().lower() == EVERYONE else (user or "").strip()
        return _one(who, _call(engine.access.share, who, collection, target, mode or "").id)

    def delete_collection(collection: str, request: gr.Request) -> dict[str, Any]:
        """Delete one of your collections (its documents stay in their owners' libraries)."""
        c = _call(engine.access.delete_collection, owner(request), collection)
        return {"deleted": c.id, "name": c.name}

    for fn in (collections, create_collection, collection_add, collection_remove, share_collection,
               delete_collection):
        gr.api(fn, api_name=fn.__name__)
