"""The stored PDFs (and the lines OCR read on them), served to those who may read them and to nobody else.

Gradio's own file route serves anything under ``allowed_paths`` to whoever has the URL, so the stored PDFs are not
there: this route asks the engine, on every request, whether the caller may read the document. Another user's
document and a document that does not exist get the same 404, so the route can't be used to learn what others
have.

The URLs are ``/pagewise/files/<key>/<doc_id>.pdf``, where ``<key>`` is an HMAC of the caller's name under a
secret kept in the data folder (``GET /pagewise/key`` gives the page its key). A document id is the hash of the
PDF's bytes, which anyone holding the same file can compute; the key makes a link unguessable and useless to anyone
but the user it was made for (a link pasted into a chat or a log opens nothing for someone else), while the access
check on each request makes a revoked share take effect at once. A per-user key rather than a signature per
document keeps the citations rendered into answers and saved conversations unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from rag.engine import Engine
from ui.identity import caller

PREFIX = "/pagewise"
_SECRET = "file-link-secret"  # the key under which the secret is kept in the library's meta table
_NAME = re.compile(r"^([0-9a-f]{8,64})\.(pdf|ocr\.json)$")


def _not_found() -> Response:
    return JSONResponse({"detail": "Not Found"}, status_code=404)


class FileRoutes:
    """The routes (``routes``) and the key of each user (``key``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._secret: bytes | None = None

    def key(self, user: str) -> str:
        """The unguessable part of ``user``'s file URLs."""
        if self._secret is None:
            stored = self.engine.access.library.set_meta(_SECRET, secrets.token_hex(32), only_if_missing=True)
            self._secret = bytes.fromhex(stored)
        return hmac.new(self._secret, user.encode(), hashlib.sha256).hexdigest()[:32]

    def routes(self) -> list[Route]:
        """The Starlette routes to add to the Gradio app."""
        return [Route(f"{PREFIX}/key", self._key, methods=["GET"]),
                Route(PREFIX + "/files/{key}/{name}", self._file, methods=["GET", "HEAD"])]

    async def _key(self, request: Request) -> Response:
        user = caller(request)
        if user is None:
            return _not_found()
        return JSONResponse({"key": self.key(user)}, headers={"Cache-Control": "no-store"})

    async def _file(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        user = caller(request)
        match = _NAME.match(request.path_params["name"])
        if user is None or match is None or not hmac.compare_digest(self.key(user), request.path_params["key"]):
            return _not_found()
        doc_id, kind = match.groups()
        engine_user: Any = user  # "" is the local user: an admin, like the machine's owner
        allowed = await run_in_threadpool(self.engine.access.readable_file, doc_id, engine_user)
        store = self.engine.store
        path = store.file_path(doc_id) if kind == "pdf" else store.ocr_path(doc_id)
        if not allowed or not path.is_file():
            return _not_found()
        media = "application/pdf" if kind == "pdf" else "application/json"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, no-store"})
