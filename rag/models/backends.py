"""Which models run where: Ollama over HTTP, in-process (sentence-transformers / transformers), or an
OpenAI-compatible server.

Decided once, when the engine starts, from ``RAG_BACKEND`` (auto | ollama | in-process):

- ``RAG_EMBED_BACKEND`` / ``RAG_CHAT_BACKEND``, when set, win for their part; the other part follows RAG_BACKEND.
  ``openai`` is only ever chosen this way (with ``RAG_EMBED_BASE_URL`` / ``RAG_CHAT_BASE_URL``).
- ``auto`` is in-process on Hugging Face Spaces; elsewhere it asks Ollama (``GET /api/version`` with a short
  timeout) and uses it when it answers, else the in-process models.
- Ollama and OpenAI-compatible servers run the models named in ``RAG_EMBED_MODEL`` / ``RAG_CHAT_MODEL``; in-process
  runs ``RAG_LOCAL_EMBED_MODEL`` / ``RAG_LOCAL_CHAT_MODEL`` (Hugging Face ids or folders). An Ollama tag is never
  handed to transformers.
- The reranker's place is its own setting, ``RAG_RERANK_BACKEND`` (local | ollama | http), and is not decided here.

The embedding model names the index (``Embedder.index_name``), so switching backends switches indexes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlsplit

from rag.core.config import Settings
from rag.models.factory import make_chat_model, make_embedder, make_reranker
from rag.models.hub import is_ollama_tag

log = logging.getLogger(__name__)

OLLAMA = "ollama"
IN_PROCESS = "in-process"
ST = "sentence-transformers"
TRANSFORMERS = "transformers"
OPENAI = "openai"
REMOTE = (OLLAMA, OPENAI)  # backends that run the model named in RAG_EMBED_MODEL / RAG_CHAT_MODEL as it is

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

Probe = Callable[[str, float, Mapping[str, str]], "str | None"]


def probe_ollama(host: str, timeout: float, headers: Mapping[str, str]) -> str | None:
    """None when an Ollama server answers at ``host``; otherwise a few words saying what happened instead."""
    import httpx

    try:
        response = httpx.get(f"{host}/api/version", timeout=timeout, headers=dict(headers))
    except httpx.TimeoutException:
        return f"did not answer within {timeout:g} s"
    except httpx.HTTPError:
        return "not found"
    if response.status_code in (401, 403):
        return None  # it is there but wants a (different) token: the models' own check says so, naming the setting
    try:
        ok = response.status_code == 200 and "version" in response.json()
    except ValueError:
        ok = False
    return None if ok else f"not found (HTTP {response.status_code} from /api/version)"


@dataclass(frozen=True)
class Backends:
    """The backends and models the engine uses, and why, in words for the status badge."""

    embed: str  # "ollama" | "sentence-transformers" | "openai"
    chat: str  # "ollama" | "transformers" | "openai"
    embed_model: str
    chat_model: str
    summary: str

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with the backends and models spelled out, so everything downstream reads plain values."""
        return settings.with_(embed_backend=self.embed, embed_model=self.embed_model, chat_backend=self.chat,
                              chat_model=self.chat_model)


def resolve_backends(settings: Settings, probe: Probe = probe_ollama) -> Backends:
    """Decide where embeddings and answers come from (see the module docstring for the rules)."""
    s = settings
    mode, reason = s.backend, "RAG_BACKEND=in-process" if s.backend == IN_PROCESS else ""
    if mode == "auto":
        if s.embed_backend and s.chat_backend:
            mode = OLLAMA  # nothing follows RAG_BACKEND: no need to ask
        elif s.space_id:
            mode, reason = IN_PROCESS, "on Hugging Face Spaces"
        else:
            host = s.embed_host if not s.embed_backend else s.chat_host
            problem = probe(host, s.ollama_probe_timeout, s.ollama_headers)
            mode, reason = (OLLAMA, "") if problem is None else (IN_PROCESS, f"Ollama {problem} at {host}")
    embed = s.embed_backend or (ST if mode == IN_PROCESS else OLLAMA)
    chat = s.chat_backend or (TRANSFORMERS if mode == IN_PROCESS else OLLAMA)
    embed_model = s.embed_model if embed in REMOTE else _local_model(s.embed_model, s.local_embed_model,
                                                                     explicit=s.embed_backend == ST)
    chat_model = s.chat_model if chat in REMOTE else _local_model(s.chat_model, s.local_chat_model,
                                                                  explicit=s.chat_backend == TRANSFORMERS)
    backends = Backends(embed, chat, embed_model, chat_model, _summary(s, embed, chat, reason))
    log.info("Models: embeddings by %s (%s), answers by %s (%s): %s", embed_model, embed, chat_model, chat,
             backends.summary)
    secrets = {(h, "RAG_OLLAMA_TOKEN") for h, used in ((s.embed_host, embed == OLLAMA), (s.chat_host, chat == OLLAMA),
                                                       (s.rerank_host, s.rerank_backend == OLLAMA))
               if used and s.ollama_token}
    secrets |= {(url, var) for url, var, used in ((s.embed_base_url, "RAG_EMBED_API_KEY", embed == OPENAI and
                                                   s.embed_api_key),
                                                  (s.chat_base_url, "RAG_CHAT_API_KEY", chat == OPENAI and
                                                   s.chat_api_key),
                                                  (s.rerank_url, "RAG_RERANK_API_KEY", s.rerank_backend == "http"
                                                   and s.rerank_api_key))
                if used and url}
    for host, var in sorted(secrets):
        if host.startswith("http://") and urlsplit(host).hostname not in _LOOPBACK:
            log.warning("%s goes to %s over plain http: anyone on the way can read it. Use https.", var, host)
    return backends


def placements(settings: Settings, probe: Probe = probe_ollama) -> list[tuple[str, str]]:
    """Where each of the three models runs, as (role, words): e.g. ("answers", "qwen3:8b via Ollama at …");
    builds the model objects (cheap: nothing loads) so the words are the ones the badge shows."""
    s = resolve_backends(settings, probe).apply(settings)
    return [("embeddings", make_embedder(s).describe), ("answers", make_chat_model(s).describe),
            ("reranking", make_reranker(s).describe if s.rerank else "off (RAG_RERANK=false)")]


def _local_model(ollama_setting: str, local_setting: str, explicit: bool) -> str:
    """The in-process model: RAG_LOCAL_*_MODEL; or, the older way, RAG_*_MODEL when the in-process backend was
    chosen explicitly (RAG_EMBED_BACKEND / RAG_CHAT_BACKEND) and it names a Hugging Face id or folder."""
    return ollama_setting if explicit and not is_ollama_tag(ollama_setting) else local_setting


def _summary(s: Settings, embed: str, chat: str, reason: str) -> str:
    """E.g. "Ollama at http://127.0.0.1:11434", "in-process models (Ollama not found at http://…)" or
    "embeddings by OpenAI-compatible server at http://gpu:8000/v1, answers by Ollama at http://127.0.0.1:11434"."""
    why = f" ({reason})" if reason else ""
    if embed == chat == OLLAMA and s.embed_host != s.chat_host:
        return f"Ollama (embeddings at {s.embed_host}, answers at {s.chat_host})"
    if embed == chat == OPENAI and s.embed_base_url != s.chat_base_url:
        return f"OpenAI-compatible servers (embeddings at {s.embed_base_url}, answers at {s.chat_base_url})"
    places = (_place(embed, s.embed_host, s.embed_base_url), _place(chat, s.chat_host, s.chat_base_url))
    if places[0] == places[1]:
        return "in-process models" + why if places[0] == IN_PROCESS else places[0]
    words = [f"{part} {'in-process' if place == IN_PROCESS else 'by ' + place}"
             for part, place in zip(("embeddings", "answers"), places, strict=True)]
    return ", ".join(words) + (why if IN_PROCESS in places else "")


def _place(backend: str, ollama_host: str, base_url: str | None) -> str:
    """Where one model runs, in words: "Ollama at …", "OpenAI-compatible server at …", or "in-process"."""
    if backend == OLLAMA:
        return f"Ollama at {ollama_host}"
    if backend == OPENAI:
        return f"OpenAI-compatible server at {base_url}"
    return IN_PROCESS
