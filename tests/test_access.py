"""Private libraries through the engine (the stand-in Ollama is a test double): each user sees, searches, opens and
deletes only their own documents and those shared with them; a file two users upload is stored once and each keeps
their own copy of it; an old data folder upgrades with every document kept; a users file holds argon2 hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.access import users
from rag.access.gate import SHARED
from rag.core.config import Settings
from rag.core.errors import AccessDenied, CollectionNotFound, ConfigError, DocumentNotFound
from rag.core.events import AnswerDelta, FileFailed, FileIndexed, Sources
from rag.engine import Engine
from tests import pdf_factory as pf
from tests.fake_ollama import FakeOllama

SECRET = ["Project Nightjar merger memo. Confidential.", "The acquisition price is 812 million euros.",
          "Closing is planned for the third quarter."]
HANDBOOK = ["Employee handbook of the Zephyr Institute.", "Vacation policy: staff receive 30 days of leave.",
            "Parking is free in the north garage for cyclists."]
PRICE = "What is the acquisition price in the merger memo?"


def _settings(ollama: FakeOllama, data: Path, **extra: Any) -> Settings:
    return Settings.from_env({}, ollama_host=ollama.url, data_dir=data, chunk_tokens=120, chunk_overlap=20,
                             parse_workers=1, rerank=False, think=False, **extra)


@pytest.fixture
def team(fake_ollama: FakeOllama, tmp_path: Path) -> Any:
    engine = Engine(_settings(fake_ollama, tmp_path / "data", auth="alice:a,bob:b,carol:c"))
    yield engine
    engine.close()


def _ingest(engine: Engine, path: Path, user: str | None, **kw: Any) -> FileIndexed | FileFailed:
    return [e for e in engine.ingest([path], user=user, **kw) if isinstance(e, (FileIndexed, FileFailed))][-1]


def _answer(engine: Engine, question: str, user: str | None, doc_ids: list[str] | None = None) -> tuple[str, Any]:
    text, sources = "", None
    for event in engine.ask(question, doc_ids=doc_ids, user=user):
        if isinstance(event, AnswerDelta):
            text += event.text
        elif isinstance(event, Sources):
            sources = event
    return text, sources


def _passages(sources: Any) -> list[Any]:
    return [] if sources is None else [c.passage for c in sources.cited] + list(sources.other)


def test_another_users_document_is_out_of_reach_on_every_path(team: Engine, tmp_path: Path) -> None:
    memo = pf.text_pdf(tmp_path / "nightjar.pdf", SECRET)
    doc_id = _ingest(team, memo, "alice").doc_id
    _ingest(team, pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK), "bob")

    assert [d.file_name for d in team.documents("alice")] == ["nightjar.pdf"]
    assert [d.file_name for d in team.documents("bob")] == ["handbook.pdf"]
    _, sources = _answer(team, PRICE, "alice")
    assert any("812 million" in p.text for p in _passages(sources))

    # Bob: not listed, not searched (even when he names its id), not found, not deleted, not opened.
    _, sources = _answer(team, PRICE, "bob")
    assert all(p.doc_id != doc_id for p in _passages(sources))
    _, sources = _answer(team, PRICE, "bob", doc_ids=[doc_id])
    assert _passages(sources) == []
    assert all(cid.split(":")[0] != doc_id for cid in team.access.scoped("bob").get_passages([f"{doc_id}:0"]))
    for ref in (doc_id, "nightjar.pdf", doc_id[:8]):
        with pytest.raises(DocumentNotFound) as missing:
            team.delete(ref, "bob")
        with pytest.raises(DocumentNotFound) as absent:
            team.find(ref.replace(doc_id[:8], "ffffffff"), "bob")
        assert str(missing.value).replace(ref, "X") == str(absent.value).replace(ref.replace(doc_id[:8], "ffffffff"),
                                                                                 "X")
    assert not team.access.readable_file(doc_id, "bob")
    assert team.access.readable_file(doc_id, "alice")
    # The machine's owner (the CLI) sees everything. The first login is an admin by default, and still sees only
    # her own documents and those shared with her.
    assert {d.file_name for d in team.documents()} == {"nightjar.pdf", "handbook.pdf"}
    assert team.access.owner == "alice" and team.access.is_admin("alice") and not team.access.is_admin("bob")


def test_the_same_file_is_stored_once_and_each_user_keeps_their_own(team: Engine, tmp_path: Path,
                                                                    fake_ollama: FakeOllama) -> None:
    memo = pf.text_pdf(tmp_path / "nightjar.pdf", SECRET)
    first = _ingest(team, memo, "bob")
    embeds = sum(1 for path, _ in fake_ollama.requests if path == "/api/embed")
    copy = tmp_path / "copy"
    copy.mkdir()
    same = copy / "my-notes.pdf"
    same.write_bytes(memo.read_bytes())
    second = _ingest(team, same, "carol")
    # Carol hears "indexed", as for a new file, and knows it by her own name, in the list and in citations.
    assert second.status == "indexed" and second.doc_id == first.doc_id
    assert sum(1 for path, _ in fake_ollama.requests if path == "/api/embed") == embeds  # not embedded again
    assert [d.file_name for d in team.documents("carol")] == ["my-notes.pdf"]
    _, sources = _answer(team, PRICE, "carol")
    assert {p.file_name for p in _passages(sources)} == {"my-notes.pdf"}
    assert _ingest(team, same, "carol").status == "already indexed"  # her own second upload

    # Bob lets go of it: Carol still has it. Carol lets go: the index forgets it.
    team.delete("nightjar.pdf", "bob")
    assert team.documents("bob") == [] and [d.file_name for d in team.documents("carol")] == ["my-notes.pdf"]
    assert team.store.count_chunks(first.doc_id) > 0
    team.delete("my-notes.pdf", "carol")
    assert team.store.get(first.doc_id) is None and team.store.count_chunks(first.doc_id) == 0
    assert not team.store.file_path(first.doc_id).exists()


def test_a_new_version_replaces_only_the_uploaders_old_one(team: Engine, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = _ingest(team, pf.text_pdf(tmp_path / "a" / "report.pdf", SECRET), "bob")
    theirs = _ingest(team, pf.text_pdf(tmp_path / "b" / "report.pdf", HANDBOOK), "carol")
    new = _ingest(team, pf.text_pdf(tmp_path / "report.pdf", SECRET[:2]), "bob")
    assert new.status == "replaced" and new.replaced_doc_id == old.doc_id
    assert [d.doc_id for d in team.documents("bob")] == [new.doc_id]
    assert [d.doc_id for d in team.documents("carol")] == [theirs.doc_id]


def test_a_collection_shared_to_read_can_be_asked_but_not_changed_and_revoking_is_immediate(
        team: Engine, tmp_path: Path) -> None:
    memo = _ingest(team, pf.text_pdf(tmp_path / "nightjar.pdf", SECRET), "bob")
    mine = _ingest(team, pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK), "carol")
    access = team.access
    deals = access.create_collection("bob", "Deals")
    access.add_to_collection("bob", deals.id, "nightjar.pdf")
    assert team.documents("carol") == [d for d in team.documents("carol") if d.doc_id == mine.doc_id]

    access.share("bob", "Deals", "carol", "read")
    assert {d.file_name for d in team.documents("carol")} == {"nightjar.pdf", "handbook.pdf"}
    _, sources = _answer(team, PRICE, "carol")
    assert any("812 million" in p.text for p in _passages(sources))
    assert team.access.readable_file(memo.doc_id, "carol")
    with pytest.raises(AccessDenied):
        team.delete("nightjar.pdf", "carol")
    with pytest.raises(AccessDenied):
        access.add_to_collection("carol", "Deals", "handbook.pdf")
    with pytest.raises(AccessDenied):
        access.remove_from_collection("carol", "Deals", "nightjar.pdf")
    with pytest.raises(AccessDenied):
        access.share("carol", "Deals", "dave", "read")
    access.share("bob", "Deals", "alice", "read")  # an admin, who still can't delete what she only reads
    with pytest.raises(AccessDenied):
        team.delete("nightjar.pdf", "alice")
    assert team.store.get(memo.doc_id) is not None

    access.share("bob", "Deals", "carol", "")  # revoked: the very next request sees it gone
    assert [d.file_name for d in team.documents("carol")] == ["handbook.pdf"]
    _, sources = _answer(team, PRICE, "carol")
    assert all(p.doc_id != memo.doc_id for p in _passages(sources))
    assert not team.access.readable_file(memo.doc_id, "carol")
    with pytest.raises(CollectionNotFound):
        access.collection("carol", "Deals")

    # To edit: Carol adds her handbook and takes the memo out; the memo stays Bob's.
    access.share("bob", "Deals", "carol", "edit")
    access.add_to_collection("carol", "Deals", "handbook.pdf")
    access.remove_from_collection("carol", "Deals", "nightjar.pdf")
    assert set(access.collection("bob", "Deals").docs) == {mine.doc_id}
    assert [d.file_name for d in team.documents("bob")] == ["nightjar.pdf", "handbook.pdf"]
    # Shared with everyone signed in: Alice sees it too.
    access.share("bob", "Deals", None, "read")
    assert mine.doc_id in {d.doc_id for d in team.documents("dave")}


def test_an_old_data_folder_upgrades_with_every_document_kept(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Today's data folder: documents indexed before anyone owned them (the ingestor alone, no ownership library).
    old = Engine(_settings(fake_ollama, data))
    try:
        events = list(old.ingestor.ingest([pf.text_pdf(tmp_path / "nightjar.pdf", SECRET),
                                           pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK)]))
        ids = {e.doc_id for e in events if isinstance(e, FileIndexed)}
        chunks = {d: old.store.count_chunks(d) for d in ids}
    finally:
        old.close()
    assert len(ids) == 2 and not (data / "library.sqlite3").exists()

    fake_ollama.reset()
    engine = Engine(_settings(fake_ollama, data, auth="alice:a,bob:b", admins="alice"))
    try:
        assert {d.doc_id for d in engine.documents("alice")} == ids  # the first admin holds them all
        assert {d.doc_id for d in engine.documents("bob")} == ids  # ... in a collection everyone signed in reads
        ((shared, mode),) = engine.access.collections("bob")
        assert shared.name == SHARED and shared.owner == "alice" and mode == "read"
        assert {d: engine.store.count_chunks(d) for d in ids} == chunks
        _, sources = _answer(engine, PRICE, "bob")
        assert any("812 million" in p.text for p in _passages(sources))
        assert engine.documents("guest-0123") == []  # guests are not signed in
        with pytest.raises(AccessDenied):
            engine.delete("nightjar.pdf", "bob")
        # Nothing was embedded again: the one text embedded since is the question.
        assert sum(len(b["input"]) for p, b in fake_ollama.requests if p == "/api/embed") == 1
    finally:
        engine.close()
    # Opening it again changes nothing.
    engine = Engine(_settings(fake_ollama, data, auth="alice:a,bob:b", admins="alice"))
    try:
        assert len(engine.access.collections("alice")) == 1 and engine.access.upgrade() == 0
    finally:
        engine.close()


def test_guests_keep_to_their_quota_and_expire(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    engine = Engine(_settings(fake_ollama, tmp_path / "data", guests=True, guest_pages=4, guest_days=2))
    try:
        one, two = "guest-aaaaaaaa", "guest-bbbbbbbb"
        memo = _ingest(engine, pf.text_pdf(tmp_path / "nightjar.pdf", SECRET), one)
        assert memo.status == "indexed"
        refused = _ingest(engine, pf.text_pdf(tmp_path / "handbook.pdf", HANDBOOK), one)
        assert isinstance(refused, FileFailed) and "guest" in refused.reason and "Remove a document" in refused.reason
        assert [d.file_name for d in engine.documents(one)] == ["nightjar.pdf"]
        assert engine.documents(two) == []
        engine.access.library.seen(one, guest=True, now=1000.0)
        engine.access.library.seen(two, guest=True)
        from rag.conversations.chats import ChatMessage

        engine.chat_store.start(one, ChatMessage("user", "hello"))
        assert engine.access.expire_guests(engine.chat_store) == [one]
        assert engine.documents(one) == [] and engine.store.get(memo.doc_id) is None
        assert engine.chat_store.conversations(one) == []
    finally:
        engine.close()


def test_a_users_file_holds_hashes_and_the_cli_adds_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from rag import cli

    path = tmp_path / "users.txt"
    answers = iter(["correct horse", "correct horse"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert cli.main(["users", "add", "dana", "--file", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("dana:$argon2id$") and "correct horse" not in text
    assert users.verify(path, "dana", "correct horse") and not users.verify(path, "dana", "wrong")
    assert not users.verify(path, "eve", "correct horse")
    answers = iter(["one", "two"])
    assert cli.main(["users", "add", "dana", "--file", str(path)]) == 1  # the two passwords differ
    assert users.verify(path, "dana", "correct horse")
    with pytest.raises(ConfigError):
        users.add(path, "bad name", "x")
    settings = Settings.from_env({"RAG_HOST": "0.0.0.0", "RAG_USERS_FILE": str(path)})
    assert settings.needs_login and settings.admin_names == []


def test_the_cli_acts_as_a_user_when_told(fake_ollama: FakeOllama, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rag import cli

    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_AUTH", "alice:a,bob:b")
    monkeypatch.setenv("RAG_PARSE_WORKERS", "1")
    memo = pf.text_pdf(tmp_path / "nightjar.pdf", SECRET)
    assert cli.main(["ingest", str(memo), "--user", "bob"]) == 0
    capsys.readouterr()
    assert cli.main(["docs", "--user", "carol"]) == 0
    assert "nightjar" not in capsys.readouterr().out
    assert cli.main(["rm", "nightjar.pdf", "--user", "carol"]) == 1
    assert cli.main(["docs"]) == 0  # the machine's owner sees everything
    assert "nightjar.pdf" in capsys.readouterr().out
    assert cli.main(["docs", "--user", "bob"]) == 0
    assert "nightjar.pdf" in capsys.readouterr().out


def test_a_visitor_who_has_not_signed_in_can_look_but_not_upload(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    engine = Engine(_settings(fake_ollama, tmp_path / "data", hf_login=True))
    try:
        refused = _ingest(engine, pf.text_pdf(tmp_path / "nightjar.pdf", SECRET), "guest-cafe")
        assert isinstance(refused, FileFailed) and "sign in" in refused.reason
        assert engine.store.documents() == [] and engine.documents("guest-cafe") == []
    finally:
        engine.close()


def test_who_may_read_what_is_read_once_and_again_after_any_write(tmp_path: Path) -> None:
    from rag.access.library import Library

    path = tmp_path / "library.sqlite3"
    app, other = Library(path), Library(path)  # ``other``: another process on the same data folder (the CLI)
    app.hold("bob", "doc-1", "memo.pdf")
    assert app.holdings("bob") == {"doc-1": ("memo.pdf", app.holdings("bob")["doc-1"][1])}
    reads = []
    app._reader.set_trace_callback(reads.append)
    app.holdings("bob")
    app.holdings("bob")
    assert [r for r in reads if "holdings" in r] == []  # unchanged: the rows kept are reused

    other.release("bob", "doc-1")  # written elsewhere: the very next read sees it
    assert app.holdings("bob") == {}
    other.hold("carol", "doc-2", "handbook.pdf")
    app.hold("bob", "doc-3", "notes.pdf")  # and this process's own writes
    assert set(app.holdings("bob")) == {"doc-3"} and set(app.holdings("carol")) == {"doc-2"}
    assert any("holdings" in r for r in reads)
    app.close()  # as the engine does when it closes: a later read opens the connection again
    assert app._reader is None and set(app.holdings("bob")) == {"doc-3"}
