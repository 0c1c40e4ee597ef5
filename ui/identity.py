"""Who is asking, for every request the web app serves: a login (Gradio's own form, against RAG_AUTH and the users
file), a Hugging Face account (Sign in with Hugging Face on a Space), a guest (one per browser, by a cookie), or,
with none of these, the one local user (``""``). The engine then decides what that name may see (``rag.access``).

Gradio's ``auth`` gives ``request.username`` for logins; for guests and Hugging Face accounts the app passes
``auth_dependency`` (``dependency``), so every handler reads the same ``request.username`` whichever way the user
came in. A browser without the guest cookie gets one on its first request (``GuestCookie``): a random token whose
hash names the guest, so the name alone never lets anyone in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any, Callable

from rag.access import users
from rag.access.gate import GUEST
from rag.core.config import Settings

GUEST_COOKIE = "pagewise-guest"


def guest_name(token: str) -> str:
    """The guest a browser's cookie stands for."""
    return GUEST + hashlib.sha256(token.encode()).hexdigest()[:24]


def check_login(settings: Settings) -> Callable[[str, str], bool]:
    """Gradio's ``auth`` function: a RAG_AUTH pair, or a login of the users file (read at each login)."""
    pairs = dict(settings.logins)

    def check(name: str, password: str) -> bool:
        if name in pairs:
            return hmac.compare_digest(pairs[name].encode(), (password or "").encode())
        return bool(settings.users_file) and users.verify(settings.users_file, name, password)

    return check


def hf_user(request: Any, settings: Settings) -> str | None:
    """The Hugging Face account signed in on this request (when it may use the app), else None."""
    try:
        info = request.session.get("oauth_info")
    except (AssertionError, AttributeError):  # no session middleware: OAuth is not set up
        return None
    if not info:
        return None
    profile = info.get("userinfo") or {}
    name = str(profile.get("preferred_username") or "")
    if not name:
        return None
    allowed = {a.strip().lower() for a in (settings.hf_allowed or "").split(",") if a.strip()}
    if allowed:
        orgs = {str(o.get("preferred_username") or o.get("name") or "").lower() for o in profile.get("orgs") or []}
        if name.lower() not in allowed and not orgs & allowed:
            return None
    return name


def dependency(settings: Settings) -> Callable[[Any], str | None] | None:
    """Gradio's ``auth_dependency`` for guests and Hugging Face sign-in (None when neither is on): the account
    signed in, else the browser's guest name."""
    if not (settings.guests or settings.hf_login):
        return None

    def who(request: Any) -> str | None:
        account = hf_user(request, settings) if settings.hf_login else None
        if account:
            return account
        token = request.cookies.get(GUEST_COOKIE)
        return guest_name(token) if token else None

    return who


def caller(request: Any) -> str | None:
    """Who sends a request to a route of our own (``request``: Starlette's, ``request.app``: Gradio's): the same
    name ``gr.Request.username`` gives a handler, ``""`` for the local user, or None for nobody (not logged in)."""
    app = request.app
    if getattr(app, "auth_dependency", None) is not None:
        return app.auth_dependency(request)
    if getattr(app, "auth", None):
        token = request.cookies.get(f"access-token-{app.cookie_id}") or \
            request.cookies.get(f"access-token-unsecure-{app.cookie_id}")
        return app.tokens.get(token) if token else None
    return ""


class GuestCookie:
    """ASGI middleware: a request without the guest cookie gets a new one (seen by the app on that same request,
    and set in the browser by the response), kept ``max_age`` seconds after the last page load."""

    def __init__(self, app: Any, max_age: int) -> None:
        self.app = app
        self.max_age = max_age

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        jar: SimpleCookie = SimpleCookie()
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 - a malformed cookie header is treated as none
                    continue
        token = jar[GUEST_COOKIE].value if GUEST_COOKIE in jar else None
        page = scope.get("method") == "GET" and scope.get("path", "").rstrip("/") == scope.get("root_path", "")
        if token and not page:
            await self.app(scope, receive, send)
            return
        if not token:
            token = secrets.token_urlsafe(24)
            # Starlette reads one Cookie header: add ours to it rather than send a second one.
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"cookie"]
            sent = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie")
            ours = f"{GUEST_COOKIE}={token}".encode()
            scope = dict(scope, headers=[*headers, (b"cookie", sent + b"; " + ours if sent else ours)])
        cookie = (f"{GUEST_COOKIE}={token}; Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Lax").encode()

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie)])
            await send(message)

        await self.app(scope, receive, send_with_cookie)
