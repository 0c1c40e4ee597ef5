"""Who is asking, decided from a request the way the app sees it: a Hugging Face account signed in (Gradio's OAuth
session, as on a Space; off a Space Gradio fills the same session from the local account), limited to named users or
organisations when set; otherwise the browser's guest cookie. Plus the settings that turn these on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from rag.core.config import Settings
from rag.core.errors import ConfigError
from ui import identity


def _request(session: dict[str, Any] | None = None, cookies: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(session=session if session is not None else {}, cookies=cookies or {})


def _signed_in(name: str, orgs: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"oauth_info": {"userinfo": {"preferred_username": name,
                                        "orgs": [{"preferred_username": o} for o in orgs]}}}


def test_a_hugging_face_account_is_the_user_and_others_are_guests() -> None:
    settings = Settings.from_env({}, hf_login=True)
    who = identity.dependency(settings)
    assert who is not None
    assert who(_request(_signed_in("alice"), {identity.GUEST_COOKIE: "t0k3n"})) == "alice"
    guest = who(_request({}, {identity.GUEST_COOKIE: "t0k3n"}))
    assert guest == identity.guest_name("t0k3n") and guest.startswith("guest-") and "t0k3n" not in guest
    assert who(_request({}, {identity.GUEST_COOKIE: "other"})) != guest
    assert who(_request({}, {})) is None


def test_sign_in_can_be_limited_to_named_users_and_organisations() -> None:
    settings = Settings.from_env({}, hf_login=True, hf_allowed="alice, Acme-Research")
    assert identity.hf_user(_request(_signed_in("alice")), settings) == "alice"
    assert identity.hf_user(_request(_signed_in("bob", ("acme-research",))), settings) == "bob"
    assert identity.hf_user(_request(_signed_in("mallory", ("other-org",))), settings) is None
    assert identity.hf_user(_request({}), settings) is None


def test_without_guests_or_hugging_face_gradio_s_own_login_decides() -> None:
    assert identity.dependency(Settings.from_env({})) is None
    check = identity.check_login(Settings.from_env({}, auth="alice:s3cret"))
    assert check("alice", "s3cret") and not check("alice", "wrong") and not check("bob", "s3cret")


def test_guests_or_a_sign_in_count_as_a_login_on_a_network_address() -> None:
    for extra in ({"RAG_GUESTS": "true"}, {"RAG_HF_LOGIN": "true"}, {"RAG_USERS_FILE": "/tmp/users.txt"}):
        assert Settings.from_env({"RAG_HOST": "0.0.0.0", **extra}).host == "0.0.0.0"
    with pytest.raises(ConfigError, match="RAG_AUTH"):
        Settings.from_env({"RAG_HOST": "0.0.0.0"})


@pytest.fixture
def local_hf_account(monkeypatch: pytest.MonkeyPatch) -> str:
    """STAND-IN for the machine's `hf auth login` account, which Gradio's sign-in uses off a Space (no network)."""
    import gradio.oauth

    monkeypatch.setattr(gradio.oauth, "get_token", lambda: "hf_stand_in_token")
    monkeypatch.setattr(gradio.oauth, "whoami", lambda *a, **k: {"type": "user", "name": "alice",
                                                                 "fullname": "Alice", "avatarUrl": ""})
    return "alice"


def test_signing_in_with_hugging_face_opens_your_own_library(local_hf_account: str, fake_ollama: Any,
                                                             tmp_path: Any) -> None:
    import gradio as gr
    import httpx

    from tests import pdf_factory as pf
    from tests.live_app import LiveApp

    settings = Settings.from_env({}, ollama_host=fake_ollama.url, data_dir=tmp_path / "data", rerank=False,
                                 parse_workers=1, hf_login=True, guests=True, guest_days=2, guest_mb=20,
                                 guest_pages=200)
    with LiveApp(settings) as app:
        assert app._demo.expects_oauth  # the page has the "Sign in with Hugging Face" button
        notes = [b.value for b in app._demo.blocks.values()
                 if isinstance(b, gr.Markdown) and b.elem_id == "pw-guest-note"]
        assert notes == ["You are a guest: your PDFs and conversations are private to this browser and are deleted "
                         "2 days after your last visit. Room for 20.0 MB and 200 pages."]
        events = list(app.engine.ingest([pf.text_pdf(tmp_path / "memo.pdf", ["A memo.", "Its second page."])],
                                        user=local_hf_account))
        doc_id = events[-1].doc_id
        with httpx.Client(base_url=app.url, follow_redirects=True) as alice, \
                httpx.Client(base_url=app.url, follow_redirects=True) as visitor:
            assert alice.get("/login/huggingface").status_code == 200
            # Gradio's session cookie is Secure (Spaces are https); a browser sends it to 127.0.0.1 anyway, httpx
            # does not: send it as the browser would.
            cookies = {"cookie": "; ".join(f"{c.name}={c.value}" for c in alice.cookies.jar)}
            assert "session=" in cookies["cookie"]
            key = alice.get("/pagewise/key", headers=cookies).json()["key"]
            reply = alice.get(f"/pagewise/files/{key}/{doc_id}.pdf", headers=cookies)
            assert reply.status_code == 200 and reply.content.startswith(b"%PDF")
            visitor.get("/")  # a guest: the cookie comes with the page
            other = visitor.get("/pagewise/key").json()["key"]
            assert other != key and visitor.get(f"/pagewise/files/{other}/{doc_id}.pdf").status_code == 404
            assert visitor.get(f"/pagewise/files/{key}/{doc_id}.pdf").status_code == 404
