"""One remote model service over HTTP, shared by the OpenAI-compatible and ``/rerank`` providers: its base URL, its
key, and one retry policy.

HTTP 429 and 5xx and dropped connections are retried with exponential backoff, honouring ``Retry-After``, then fail
with a message naming the setting to change. The key goes into the ``Authorization`` header only and is scrubbed
from anything the server sends back, so it never reaches a log line, an error or the status badge.

Plain httpx rather than the ``openai`` package: httpx is already installed (the ollama client is built on it), so
nothing is added; the protocols share one small request path and one retry policy, and ``/rerank`` is not in the
openai package at all.
"""

from __future__ import annotations

import json
import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from rag.core.config import Settings, env_name
from rag.core.errors import BackendUnavailable, ModelError, ModelNotFound

log = logging.getLogger(__name__)

_MAX_DELAY = 8.0  # seconds: the longest backoff between two tries (a server's Retry-After may ask for up to 30)
_DETAIL_CHARS = 300  # of a server's error text, quoted in our message


class Refused(ModelError):
    """The server turned the request down (a 4xx other than a missing key or model); ``status`` and ``detail``
    say how, so a caller can adapt the request and try once more."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass
class Service:
    """One remote model service: its base URL and key, the settings that name them, and how calls are retried.

    ``role`` words the messages ("the embedding server at …"); ``hint`` is added to a refusal that may come from
    sending too much at once.
    """

    role: str
    base_url: str
    api_key: str | None
    url_setting: str
    key_setting: str
    model_setting: str
    retries: int = 4
    timeout: float = 120.0
    backoff: float = 0.5
    hint: str = ""
    sleep: Callable[[float], None] = time.sleep
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                                    headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, role: str, url: str, key: str, model: str, hint: str = "") -> Service:
        """The service whose base URL, key and model are the settings fields ``url``, ``key`` and ``model``."""
        return cls(role, getattr(settings, url) or "", getattr(settings, key), env_name(url), env_name(key),
                   env_name(model), retries=settings.http_retries, timeout=settings.http_timeout, hint=hint)

    @property
    def where(self) -> str:
        """The base URL, for messages (keys are never part of it)."""
        return self.base_url

    # --- requests -----------------------------------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any], model: str = "") -> Any:
        """POST ``body`` as JSON and return the decoded JSON reply (retried as the class docstring says)."""
        response = self._send(lambda: self._client.post(self.base_url + path, json=body), path, model)
        try:
            return response.json()
        except ValueError as exc:
            raise ModelError(f"The {self.role} server at {self.where} sent a reply that is not JSON "
                             f"(HTTP {response.status_code}).") from exc

    @contextmanager
    def stream(self, path: str, body: dict[str, Any], model: str = "") -> Iterator[Any]:
        """POST ``body`` and hand over the open streamed response; only failures before the first byte are
        retried (after that, what was streamed would be repeated)."""
        def open_stream() -> Any:
            request = self._client.build_request("POST", self.base_url + path, json=body)
            return self._client.send(request, stream=True)

        response = self._send(open_stream, path, model)
        try:
            yield response
        finally:
            response.close()

    def models(self) -> list[dict[str, Any]] | None:
        """The server's ``/models`` entries (one try, no retries), or None when it has no such list; a server
        that can't be reached or refuses the key raises."""
        response = self._send(lambda: self._client.get(self.base_url + "/models"), "/models", "", retries=0,
                              missing_ok=True)
        if response is None:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        entries = data.get("data") if isinstance(data, dict) else data
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None

    def _send(self, call: Callable[[], Any], path: str, model: str, retries: int | None = None,
              missing_ok: bool = False) -> Any:
        """Make the request with retries; return the response (status < 400), or raise a ModelError that says
        what to change. With ``missing_ok``, a 404/405 returns None instead."""
        import httpx

        retries = self.retries if retries is None else retries
        waited, attempt = 0.0, 0
        while True:
            retry_after: float | None = None
            try:
                response = call()
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"The {self.role} server at {self.where} did not answer within "
                                         f"{self.timeout:g} s (RAG_HTTP_TIMEOUT).") from exc
            except httpx.TransportError as exc:
                if attempt >= retries:
                    raise BackendUnavailable(self.unreachable(exc)) from exc
                why = type(exc).__name__
            else:
                if response.status_code < 400:
                    return response
                status = response.status_code
                detail = self._detail(response)
                if missing_ok and status in (404, 405):
                    return None
                if not (status == 429 or status == 408 or status >= 500) or attempt >= retries:
                    raise self._refusal(status, detail, path, model, attempt, waited)
                why = f"HTTP {status}"
                retry_after = _retry_after(response)
            delay = retry_after if retry_after is not None else \
                min(_MAX_DELAY, self.backoff * 2 ** attempt) * (1 + 0.25 * random.random())
            log.info("The %s server at %s: %s; trying again in %.1f s (%d of %d)", self.role, self.where, why,
                     delay, attempt + 1, retries)
            self.sleep(delay)
            waited += delay
            attempt += 1

    # --- messages -----------------------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the key blanked out (a server may echo what it was sent)."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def _detail(self, response: Any) -> str:
        """The server's own words about an error response, short and without the key."""
        try:
            response.read()
        finally:
            response.close()  # a streamed response holds its connection until closed
        text = response.text
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error", data.get("detail", data.get("message")))
            if isinstance(error, dict):
                error = error.get("message") or error
            text = error if isinstance(error, str) else json.dumps(error) if error is not None else text
        text = " ".join(self.scrub(str(text)).split())
        return text[:_DETAIL_CHARS] + ("…" if len(text) > _DETAIL_CHARS else "")

    def unreachable(self, exc: Exception) -> str:
        """What to tell a user whose server can't be reached."""
        return (f"Can't reach the {self.role} server at {self.where} ({type(exc).__name__}). Check that it is "
                f"running and that {self.url_setting} is its base URL.")

    def _refusal(self, status: int, detail: str, path: str, model: str, attempt: int, waited: float) -> ModelError:
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            if self.api_key:
                return BackendUnavailable(f"The {self.role} server at {self.where} refused the key in "
                                          f"{self.key_setting} (HTTP {status}{said}). Set {self.key_setting} to a "
                                          "key it accepts.")
            return BackendUnavailable(f"The {self.role} server at {self.where} asks for a key (HTTP {status}"
                                      f"{said}). Set {self.key_setting}.")
        lower = detail.lower()
        if model and "model" in lower and (status == 404 or "not found" in lower or "does not exist" in lower
                                           or "not exist" in lower):
            return ModelNotFound(f"The {self.role} server at {self.where} has no model '{model}' (HTTP {status}"
                                 f"{said}). Set {self.model_setting} to a model it serves.")
        if status in (404, 405):
            return BackendUnavailable(f"{self.where}{path} does not exist (HTTP {status}). Check {self.url_setting}: "
                                      "it is the address the API lives under, usually ending in /v1.")
        if status == 429 or status == 408 or status >= 500:
            tries = f"{attempt + 1} time{'s' if attempt else ''}" + (f" over {waited:.0f} s" if attempt else "")
            hint = f" {self.hint}" if self.hint and status == 429 else ""
            return BackendUnavailable(f"The {self.role} server at {self.where} answered HTTP {status}{said} "
                                      f"({tries}). Try again later.{hint}")
        hint = f" {self.hint}" if self.hint and status in (400, 413, 422) else ""
        return Refused(f"The {self.role} server at {self.where} refused the request (HTTP {status}{said}).{hint}",
                       status, detail)


def _retry_after(response: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (capped at 30), when it gives a number."""
    try:
        return min(30.0, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None
