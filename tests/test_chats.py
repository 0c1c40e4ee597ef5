"""Saved conversations: the SQLite store (owners apart, newest first, atomic writes that survive a crash), the
Markdown an answer or a conversation is taken away as, and ``python -m rag chats``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.cli import main as cli_main
from rag.conversations.chats import ChatMessage, ChatStore, sources_from_json, sources_to_json, title_from
from rag.conversations.markdown import answer_markdown, conversation_markdown, file_name
from rag.core.config import Settings
from rag.core.errors import ChatNotFound, StoreError
from rag.core.events import AnswerDelta, Sources
from rag.core.records import Citation, Passage
from rag.engine import Engine
from tests import pdf_factory as pf
from ui import render

VACATION = "Vacation policy: every employee receives 30 days of paid leave each year."


def passage(doc: str, file: str, page: int, text: str) -> Passage:
    return Passage(f"{doc}:{page}", doc, file, text, page, page, 10, 10 + len(text), 0.8, "Title")


def answer(text: str, *cited: Passage, other: tuple[Passage, ...] = ()) -> ChatMessage:
    sources = Sources([Citation(i, p) for i, p in enumerate(cited, 1)], list(other), 0, "query")
    return ChatMessage("assistant", text, thinking="Let me look.", thinking_seconds=2.0, sources=sources)


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats.sqlite3")


def test_conversations_are_listed_newest_first_and_named_by_their_first_question(store: ChatStore) -> None:
    first = store.start("", ChatMessage("user", "What was   the revenue\nin 2022?"))
    second = store.start("", ChatMessage("user", "Who is the CEO?"))
    assert [c.title for c in store.conversations("")] == ["Who is the CEO?", "What was the revenue in 2022?"]
    store.add(first.id, "", answer("41 million [1].", passage("d1", "acme.pdf", 2, "Revenue was 41 million.")))
    listed = store.conversations("")
    assert [c.id for c in listed] == [first.id, second.id]  # the one answered last comes first
    assert listed[0].messages == 2 and listed[0].title == "What was the revenue in 2022?"
    assert len(title_from("word " * 100)) <= 80 and title_from("word " * 100).endswith("…")

    store.rename(second.id, "", "  CEO  question ")
    store.rename(second.id, "", "   ")  # a blank title is refused: the old one stays
    assert store.get(second.id, "").title == "CEO question"
    store.delete(first.id, "")
    assert [c.id for c in store.conversations("")] == [second.id]
    with pytest.raises(ChatNotFound):
        store.messages(first.id, "")


def test_each_user_sees_only_their_own_conversations(store: ChatStore) -> None:
    alice = store.start("alice", ChatMessage("user", "Alice's question"))
    bob = store.start("bob", ChatMessage("user", "Bob's question"))
    shared = store.start("", ChatMessage("user", "Asked without a login"))
    assert [c.id for c in store.conversations("alice")] == [alice.id]
    assert [c.id for c in store.conversations("bob")] == [bob.id]
    assert [c.id for c in store.conversations("")] == [shared.id]
    assert len(store.conversations(None)) == 3  # the command line sees every user's
    for attempt in (lambda: store.get(alice.id, "bob"), lambda: store.messages(alice.id, "bob"),
                    lambda: store.add(alice.id, "bob", ChatMessage("user", "x")),
                    lambda: store.rename(alice.id, "bob", "mine now"), lambda: store.delete(alice.id, "bob")):
        with pytest.raises(ChatNotFound):
            attempt()
    assert [m.content for m in store.messages(alice.id, "alice")] == ["Alice's question"]
    assert store.get(alice.id, "alice").title == "Alice's question"


def test_answers_keep_their_sources_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "data" / "chats.sqlite3"
    cited = passage("d1", "acme.pdf", 2, "Revenue was 41 million.")
    other = passage("d2", "zephyr.pdf", 3, "Parking is free.")
    chat = ChatStore(path).start("", ChatMessage("user", "Revenue?"))
    ChatStore(path).add(chat.id, "", answer("It was 41 million [1].", cited, other=(other,)))

    reopened = ChatStore(path)  # as after a restart of the app
    question, saved = reopened.messages(chat.id, "")
    assert question.role == "user" and question.content == "Revenue?"
    assert saved.content == "It was 41 million [1]." and saved.thinking == "Let me look."
    assert saved.sources is not None
    assert saved.sources.cited == [Citation(1, cited)] and saved.sources.other == [other]
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stored_sources_outlive_changes_to_the_passage_record() -> None:
    """Fields a newer or older version adds to a passage don't stop an old conversation from opening."""
    stored = json.loads(sources_to_json(Sources([Citation(1, passage("d", "a.pdf", 4, "Text."))], [])) or "")
    stored["cited"][0]["passage"]["a_field_from_elsewhere"] = True
    del stored["cited"][0]["passage"]["title"]
    back = sources_from_json(json.dumps(stored))
    assert back is not None and back.cited[0].passage.page_start == 4 and back.cited[0].passage.title == ""


def test_a_crash_mid_answer_keeps_the_conversation_up_to_the_last_complete_message(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    store = ChatStore(path)
    chat = store.start("", ChatMessage("user", "First question"))
    store.add(chat.id, "", ChatMessage("assistant", "First answer."))
    store.add(chat.id, "", ChatMessage("user", "Second question"))
    # Another process dies (SIGKILL) half-way through saving the second answer: after the row is written, before
    # the transaction commits.
    script = textwrap.dedent(f"""
        import os, signal
        import rag.conversations.chats as chats
        from rag.conversations.chats import ChatMessage, ChatStore
        real = chats._insert
        def insert_then_die(*args):
            real(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        chats._insert = insert_then_die
        ChatStore(chats.Path({str(path)!r})).add({chat.id!r}, "", ChatMessage("assistant", "Half an ans"))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == -signal.SIGKILL

    after = ChatStore(path)
    assert [m.content for m in after.messages(chat.id, "")] == ["First question", "First answer.", "Second question"]
    after.add(chat.id, "", ChatMessage("assistant", "Second answer."))  # and the conversation carries on
    assert after.messages(chat.id, "")[-1].content == "Second answer."
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The chat says the answer is missing rather than showing the question alone.
    shown = render.chat_messages(ChatStore(path).messages(chat.id, "")[:3])
    assert "No answer was saved" in str(shown[-1]["content"])


def test_a_data_folder_that_cannot_hold_the_database_is_explained(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    with pytest.raises(StoreError, match="RAG_DATA_DIR"):
        ChatStore(blocked / "chats.sqlite3")


# --- Markdown ---------------------------------------------------------------------------------------------------
def test_answer_markdown_names_file_and_page_of_every_citation() -> None:
    p1 = passage("d1", "AMCOR_2023Q4_EARNINGS.pdf", 7, "Intro. Net sales were $3.6 billion in the quarter. More.")
    p2 = passage("d2", "zephyr.pdf", 2, VACATION)
    sources = Sources([Citation(1, p1), Citation(3, p2)], [], dropped_citations=1)
    text = answer_markdown("Net sales were $3.6 billion [1]. Staff get 30 days [3] and *more* [9].", sources)
    assert text.startswith("Net sales were $3.6 billion [1]. Staff get 30 days [3] and *more*.")  # [9] is dropped
    assert "- **[1]** `AMCOR_2023Q4_EARNINGS.pdf`, page 7\n  > … Net sales were $3.6 billion in the quarter." in text
    assert "- **[3]** `zephyr.pdf`, page 2\n  > Vacation policy: every employee receives 30 days" in text

    removed = answer_markdown("Net sales [1].", sources, error="Stopped before the answer was complete.",
                              removed={"d1"})
    assert "page 7 (since removed from the library)" in removed and "*Stopped before the answer" in removed


def test_markdown_keeps_pdf_text_from_becoming_markup() -> None:
    evil = passage("d", "a`b.pdf", 1, "# Heading <script>alert(1)</script> [link](http://x) **bold**")
    text = answer_markdown("See [1].", Sources([Citation(1, evil)], []))
    assert "<script>" not in text and "\\<script\\>" in text and "\\[link\\]" in text and "\\#" in text
    assert "``a`b.pdf``" in text


def test_conversation_markdown_and_its_file_name(store: ChatStore) -> None:
    chat = store.start("", ChatMessage("user", "How many days of leave? / Zephyr"))
    store.add(chat.id, "", answer("30 days [1].", passage("d2", "zephyr.pdf", 2, VACATION)))
    store.add(chat.id, "", ChatMessage("user", "And parking?"))
    store.add(chat.id, "", answer("It is free [1].", passage("d2", "zephyr.pdf", 3, "Parking is free.")))
    chat = store.get(chat.id, "")
    text = conversation_markdown(chat, store.messages(chat.id, ""))
    assert text.startswith("# How many days of leave? / Zephyr\n")
    assert text.count("**Question:**") == 2 and text.count("**Answer:**") == 2
    assert "`zephyr.pdf`, page 2" in text and "`zephyr.pdf`, page 3" in text
    assert text.index("And parking?") < text.index("page 3")
    assert file_name(chat) == "pagewise-how-many-days-of-leave-zephyr.md"


# --- a real answer, saved, its document removed, then read back from the command line ----------------------------
def test_cli_lists_and_prints_conversations(engine: Engine, settings: Settings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    list(engine.ingest([pf.text_pdf(tmp_path / "zephyr.pdf", ["Employee handbook.", VACATION])]))
    question = "How many days of paid vacation leave does an employee receive?"
    events = list(engine.ask(question))
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    sources = next(e for e in events if isinstance(e, Sources))
    chat = engine.chat_store.start("", ChatMessage("user", question))
    engine.chat_store.add(chat.id, "", ChatMessage("assistant", text, sources=sources))
    engine.chat_store.start("alice", ChatMessage("user", "Alice asks something else"))
    engine.delete("zephyr.pdf")

    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    assert cli_main(["chats"]) == 0
    listing = capsys.readouterr().out
    assert chat.id[:10] in listing and question in listing and "alice" in listing
    assert cli_main(["chats", "--user", ""]) == 0
    assert "Alice asks" not in capsys.readouterr().out

    assert cli_main(["chats", chat.id[:8]]) == 0
    printed = capsys.readouterr().out
    assert f"# {question}" in printed and "30 days" in printed
    assert "`zephyr.pdf`, page 2 (since removed from the library)" in printed

    assert cli_main(["chats", chat.id, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["messages"][1]["cited"][0]["page"] == 2 and record["messages"][1]["cited"][0]["removed"] is True
    assert cli_main(["chats", "nothing-like-this"]) == 1
    assert "No saved conversation" in capsys.readouterr().err
