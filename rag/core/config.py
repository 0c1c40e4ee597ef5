"""Settings: every model id, size and limit, read once from environment variables.

Nothing else in the project reads the environment. Each field maps to one variable (``RAG_<FIELD>`` unless
``env`` says otherwise); an invalid value fails at start with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from rag.core.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Persistent storage of a Hugging Face Space (when the Space has it); a module constant so tests can move it.
SPACES_STORAGE = Path("/data")
RAPIDOCR_LANGS = frozenset({"eng", "chi_sim"})  # what the OCR models inside the rapidocr-onnxruntime wheel read


def _setting(default: Any, env: str | None = None, *, min: float | None = None, max: float | None = None,
             choices: tuple[str, ...] | None = None, secret: bool = False, doc: str = "") -> Any:
    """Declare one setting: its default, optional variable name, bounds or choices, and a line of help.

    A ``secret`` setting is left out of the settings' repr, so it can't end up in a log line.
    """
    meta = {"env": env, "min": min, "max": max, "choices": choices, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class Settings:
    """All knobs of the app, with defaults that work on a laptop running Ollama."""

    # --- models -----------------------------------------------------------------------------------------------
    backend: str = _setting("auto", choices=("auto", "ollama", "in-process"),
                            doc="Which models answer: ollama, in-process (transformers), or auto = Ollama when its "
                            "server answers at start, else in-process (always in-process on Hugging Face Spaces).")
    ollama_host: str = _setting("http://127.0.0.1:11434", env="OLLAMA_HOST",
                                doc="Ollama server URL: http(s)://host:port, host:port or host (port 11434).")
    embed_ollama_host: str | None = _setting(None, doc="Ollama server for embeddings (empty = OLLAMA_HOST).")
    chat_ollama_host: str | None = _setting(None, doc="Ollama server for answers (empty = OLLAMA_HOST).")
    ollama_token: str | None = _setting(None, secret=True,
                                        doc="Bearer token sent to the Ollama servers (for one behind an "
                                        "authenticating proxy); never logged or shown.")
    ollama_probe_timeout: float = _setting(1.5, min=0.1, max=60,
                                           doc="Seconds RAG_BACKEND=auto waits for Ollama to answer at start.")
    embed_backend: str | None = _setting(None, choices=("ollama", "sentence-transformers", "openai"),
                                         doc="Where embeddings are computed: ollama, sentence-transformers "
                                         "(in-process) or openai (an OpenAI-compatible server at "
                                         "RAG_EMBED_BASE_URL); empty = as RAG_BACKEND decides.")
    embed_model: str = _setting("qwen3-embedding:0.6b",
                                doc="Ollama embedding model (with RAG_EMBED_BACKEND=sentence-transformers, a model "
                                "id or folder here is used in-process too).")
    local_embed_model: str = _setting("Qwen/Qwen3-Embedding-0.6B",
                                      doc="In-process embedding model: sentence-transformers id or local folder.")
    embed_dimensions: int | None = _setting(None, min=32, max=8192,
                                            doc="Matryoshka output size (empty = the model's full size).")
    embed_batch_size: int = _setting(32, min=1, max=1024, doc="Texts per embedding request.")
    embed_across_files: bool = _setting(True, doc="Fill an embedding request with the chunks of several small files "
                                        "(each file is still written on its own); false: one file's chunks a "
                                        "request.")
    embed_num_ctx: int | None = _setting(None, min=512, max=131072,
                                         doc="Context window for embedding calls (empty = sized from the chunk size).")
    keep_alive: str = _setting("10m", doc="How long Ollama keeps a model loaded after a call.")
    query_instruction: str = _setting(
        "Given a question about a set of documents, retrieve the passages that answer it",
        doc="Qwen3-Embedding task text put before each query.")
    chat_backend: str | None = _setting(None, choices=("ollama", "transformers", "openai"),
                                        doc="Where answers are generated: ollama, transformers (in-process) or "
                                        "openai (an OpenAI-compatible server at RAG_CHAT_BASE_URL); empty = as "
                                        "RAG_BACKEND decides.")
    chat_model: str = _setting("qwen3:8b", doc="Ollama chat model (with RAG_CHAT_BACKEND=transformers, a model id "
                               "or folder here is used in-process too).")
    local_chat_model: str = _setting("Qwen/Qwen3-0.6B",
                                     doc="In-process chat model: transformers id or local folder.")
    think: bool = _setting(True, doc="Let the chat model think before answering (Qwen3 thinking mode).")
    chat_num_ctx: int | None = _setting(None, min=1024, max=262144,
                                        doc="Context window for answers (empty = 8192, capped by the model's).")
    max_answer_tokens: int = _setting(2048, min=64, max=32768,
                                      doc="Most tokens generated for an answer (thinking included).")
    rerank_model: str = _setting("Qwen/Qwen3-Reranker-0.6B", doc="Reranker model id or local path.")
    rerank: bool = _setting(True, doc="Rerank retrieved passages with the reranker.")

    rerank_instruction: str = _setting("Given a question, judge whether the passage helps answer it",
                                       doc="Qwen3-Reranker task text.")
    rerank_max_tokens: int = _setting(384, min=32, max=8192, doc="Passages are cut to this many tokens for reranking.")
    rerank_batch_size: int = _setting(8, min=1, max=256, doc="Passages scored together by the reranker.")
    # reranking within a time budget: what the reranker reads per question is bounded by its measured speed
    # 4 s: an answer should start within ~6 s of the question on a laptop CPU, and retrieval and the prompt need
    # well under one; the budget may run over by a fifth before it has adapted to a change of load.
    rerank_seconds: float = _setting(4.0, min=0, max=600,
                                     doc="Seconds the reranker may spend per question (0 = no limit): as many of the "
                                     "best candidates as fit at its measured speed, cut to fewer tokens if need be.")
    rerank_min_passages: int = _setting(5, min=1, max=1000,
                                        doc="The reranker always reads at least this many of the best candidates "
                                        "(even past RAG_RERANK_SECONDS).")
    rerank_min_tokens: int = _setting(64, min=8, max=8192,
                                      doc="Passages are never cut below this many tokens to fit the time budget.")
    rerank_dtype: str = _setting("auto", choices=("auto", "float32", "bfloat16", "float16", "int8"),
                                 doc="Number format of the in-process reranker: auto = bfloat16 where the CPU/GPU "
                                 "has it, else int8 weights on a CPU when they score like float32 and faster "
                                 "(checked at load), else float32.")

    # --- model servers beyond Ollama: OpenAI-compatible APIs, /rerank services, the reranker inside Ollama -------
    embed_base_url: str | None = _setting(None, doc="OpenAI-compatible server for embeddings (RAG_EMBED_BACKEND="
                                          "openai), e.g. http://host:8000/v1; /embeddings is added.")
    embed_api_key: str | None = _setting(None, secret=True, doc="API key for RAG_EMBED_BASE_URL, sent as a bearer "
                                         "token; never logged or shown.")
    chat_base_url: str | None = _setting(None, doc="OpenAI-compatible server for answers (RAG_CHAT_BACKEND=openai), "
                                         "e.g. http://host:8000/v1; /chat/completions is added.")
    chat_api_key: str | None = _setting(None, secret=True, doc="API key for RAG_CHAT_BASE_URL, sent as a bearer "
                                        "token; never logged or shown.")
    chat_context_length: int | None = _setting(None, min=512, max=4194304,
                                               doc="Context length of an OpenAI-compatible chat model (empty = "
                                               "what the server's /models says, else 8192).")
    http_retries: int = _setting(4, min=0, max=10, doc="Retries, with exponential backoff, of a call to an "
                                 "OpenAI-compatible or /rerank server that answered HTTP 429 or 5xx or dropped "
                                 "the connection.")
    http_timeout: float = _setting(120.0, min=1, max=3600,
                                   doc="Seconds an OpenAI-compatible or /rerank server may take to answer.")
    rerank_backend: str = _setting("local", choices=("local", "ollama", "http"),
                                   doc="Where the reranker runs: local (RAG_RERANK_MODEL in-process), ollama "
                                   "(RAG_RERANK_OLLAMA_MODEL scored by its yes/no log-probabilities) or http (a "
                                   "/rerank service at RAG_RERANK_URL).")
    rerank_url: str | None = _setting(None, doc="Base URL of the /rerank service (RAG_RERANK_BACKEND=http), e.g. "
                                      "http://host:8000/v1 or TEI's http://host:8080; /rerank is added.")
    rerank_api_key: str | None = _setting(None, secret=True, doc="API key for RAG_RERANK_URL, sent as a bearer "
                                          "token; never logged or shown.")
    rerank_api: str = _setting("auto", choices=("auto", "cohere", "tei"),
                               doc="The /rerank request shape: cohere (model, query, documents, top_n; also "
                               "Jina, vLLM, llama.cpp, Infinity), tei (query, texts), or auto (cohere, switching "
                               "to tei when the server asks for texts).")
    rerank_prompt: str = _setting("plain", choices=("plain", "qwen3"),
                                  doc="What /rerank receives: plain query and passages, or qwen3 (both wrapped in "
                                  "Qwen3-Reranker's official prompt, for a server that serves it without its "
                                  "template, e.g. vLLM without --chat-template).")
    rerank_ollama_model: str = _setting("dengcao/Qwen3-Reranker-0.6B:Q8_0",
                                        doc="Qwen3-Reranker tag pulled into Ollama (RAG_RERANK_BACKEND=ollama).")
    rerank_ollama_host: str | None = _setting(None, doc="Ollama server for the reranker (empty = OLLAMA_HOST).")
    rerank_concurrency: int = _setting(4, min=1, max=64, doc="Passages scored at once by a remote reranker "
                                       "(Ollama: match OLLAMA_NUM_PARALLEL; /rerank: requests in flight).")

    # --- answering --------------------------------------------------------------------------------------------
    candidate_pool: int = _setting(40, min=1, max=1000, doc="Candidates taken from each retriever before fusion.")
    top_k: int = _setting(6, min=1, max=100, doc="Most passages given to the chat model.")
    min_k: int = _setting(2, min=1, max=100, doc="Fewest passages given to the chat model after reranking.")
    rerank_threshold: float = _setting(0.3, min=0, max=1, doc="Reranked passages scoring below this are dropped "
                                       "(but at least RAG_MIN_K are kept).")
    min_relevance: float = _setting(0.02, min=0, max=1, doc="If the best reranked passage scores below this, the "
                                    "documents are taken not to contain the answer.")
    fusion: str = _setting("zscore", choices=("zscore", "scores", "rrf"),
                           doc="How dense and BM25 results are combined: zscore (each retriever's standard scores "
                           "among the candidates, above their mean, added; plus the title match), scores (each "
                           "scaled 0-1 among the candidates, then weighted 0.8/0.2; title 0.1: the former default) "
                           "or rrf (reciprocal rank fusion).")
    dense_weight: float | None = _setting(None, min=0, max=10, doc="Weight of dense (embedding) search in the "
                                          "fusion (empty = the method's own: zscore 1, scores 0.8, rrf 1).")
    lexical_weight: float | None = _setting(None, min=0, max=10, doc="Weight of BM25 in the fusion (empty = the "
                                            "method's own: zscore 1, scores 0.2, rrf 1).")
    title_weight: float | None = _setting(None, min=0, max=10, doc="Weight of how well a document's title and file "
                                          "name match the question, when several documents are searched (empty = "
                                          "the method's own: zscore 0.5 standard deviations, scores 0.1; rrf has "
                                          "no title term).")
    history_turns: int = _setting(6, min=0, max=100, doc="Earlier messages sent along with a question.")

    # --- storage ----------------------------------------------------------------------------------------------
    data_dir: Path = _setting(Path("data"), doc="Where the index, registry and uploaded PDFs live (on a Hugging "
                              "Face Space with persistent storage: /data/pagewise).")
    chroma_host: str | None = _setting(None, doc="Chroma server host (empty = embedded Chroma under data_dir).")
    chroma_port: int = _setting(8000, min=1, max=65535, doc="Chroma server port.")

    # --- web app ----------------------------------------------------------------------------------------------
    host: str = _setting("127.0.0.1", doc="Address the web app listens on (0.0.0.0 = the network; needs RAG_AUTH).")
    port: int = _setting(7860, min=1, max=65535, doc="Port of the web app.")
    auth: str | None = _setting(None, doc="Login for the web app as user:password (several pairs separated by "
                                "commas); 'none' = no login even on a network address.")

    # --- set by Hugging Face Spaces -----------------------------------------------------------------------------
    space_id: str | None = _setting(None, env="SPACE_ID", doc="Set by Hugging Face Spaces: the app then listens on "
                                    "0.0.0.0, runs its models in-process and keeps its data in /data when it can.")
    zero_gpu: bool = _setting(False, env="SPACES_ZERO_GPU", doc="Set by Hugging Face on ZeroGPU hardware: the "
                              "in-process models load before the app starts and run on a GPU lent per call.")
    gpu_seconds: int = _setting(90, min=5, max=600, doc="On ZeroGPU: the most seconds one model call (an embedding "
                                "batch, a reranking, one answer) may hold the GPU.")

    # --- ingestion --------------------------------------------------------------------------------------------
    chunk_tokens: int = _setting(400, min=32, max=8192, doc="Chunk size in tokens.")
    chunk_overlap: int = _setting(60, min=0, max=4096, doc="Tokens shared by consecutive chunks of a page.")
    tokenizer: str | None = _setting(None, doc="Tokenizer id/path used to count tokens (empty = built-in estimate).")
    parse_workers: int = _setting(0, min=0, max=64, doc="Processes that parse PDFs (0 = one per core, at most 4).")
    parse_timeout: float = _setting(120.0, min=1, max=3600, doc="Seconds one PDF may take to parse.")
    parse_memory_mb: int = _setting(2048, min=0, max=65536,
                                    doc="Memory cap of a parser process in MB (0 = no cap).")
    max_upload_mb: float = _setting(100.0, min=0.01, max=10240, doc="Largest PDF accepted, in MB.")
    max_pages: int = _setting(2000, min=1, max=100000, doc="Most pages accepted in one PDF.")
    stale_ingest_seconds: int = _setting(300, min=5, max=86400,
                                         doc="An unfinished ingest idle this long is treated as crashed.")

    # --- OCR: pages without a usable text layer (scans, slides exported as images) --------------------------------
    ocr: str = _setting("auto", choices=("auto", "off", "force"),
                        doc="Read pages by OCR: auto (pages without a usable text layer: images, blank, glyph codes), "
                        "off, or force (every page, for files whose text layer is junk).")
    ocr_lang: str = _setting("eng", doc="Language(s) OCR reads, as Tesseract codes joined by '+' (eng, chi_sim, "
                             "eng+fra); RapidOCR's built-in models read eng and chi_sim.")
    ocr_engine: str = _setting("rapidocr", choices=("rapidocr", "tesseract"),
                               doc="OCR engine: rapidocr (models inside its wheel) or tesseract (its binary, where "
                               "installed with the languages in RAG_OCR_LANG).")
    ocr_dpi: int = _setting(216, min=72, max=600, doc="Resolution pages are rendered at for OCR, in dots per inch.")
    ocr_page_timeout: float = _setting(120.0, min=1, max=3600,
                                       doc="Seconds OCR may take on one page; a page over it is listed as unreadable.")
    ocr_threads: int = _setting(0, min=0, max=64, doc="onnxruntime threads of each parser process while it reads "
                                "by OCR (0 = the cores shared out among the parser processes).")

    # --- private libraries: who is asking (logins, a users file, guests, Sign in with Hugging Face) ---------------
    users_file: Path | None = _setting(None, doc="Logins kept in a file, one user:argon2-hash a line (written by "
                                       "`python -m rag users add NAME`); read at each login.")
    admins: str | None = _setting(None, doc="Logins that may manage every document, separated by commas (empty = "
                                  "the first login of RAG_AUTH or RAG_USERS_FILE).")
    guests: bool = _setting(False, doc="Public demo: each browser without a login gets its own private library and "
                            "conversations, kept RAG_GUEST_DAYS after its last visit.")
    guest_days: float = _setting(7.0, min=0.01, max=3650, doc="Days a guest's documents and conversations are kept "
                                 "after their last visit.")
    guest_mb: float = _setting(50.0, min=0.1, max=102400, doc="Most megabytes of PDFs one guest may keep.")
    guest_pages: int = _setting(500, min=1, max=1000000, doc="Most pages one guest may keep.")
    hf_login: bool = _setting(False, doc="Show 'Sign in with Hugging Face' (a Space with hf_oauth: true in its "
                              "README); each account gets its own library.")
    hf_allowed: str | None = _setting(None, doc="With RAG_HF_LOGIN: only these Hugging Face users or organisations "
                                      "may sign in, separated by commas (empty = anyone with an account).")

    # --- claim check: each statement of an answer matched against the passages it cites --------------------------
    claim_check: bool = _setting(True, doc="After an answer, check each statement against its cited passages: "
                                 "figures must be there; citations that point at the wrong passage are re-pointed, "
                                 "statements no passage supports are marked.")
    claim_check_reranker: str = _setting("auto", choices=("auto", "on", "off"), doc="Let the reranker judge the "
                                         "statements without figures (\"does the passage support the statement\") "
                                         "instead of their word overlap: auto = when its measured speed keeps the "
                                         "check within 10% of the answer's time, on = always, off = never.")
    rerank_focused_cuts: bool = _setting(True, doc="When the reranking time budget cuts a passage, keep its lead and "
                                         "the sentences that best match the question (off = keep its head).")

    # --- figures, tables and page references ----------------------------------------------------------------------
    reference_weight: float = _setting(1.0, min=0, max=10, doc="How strongly a page or caption a question names "
                                       "(\"page 14\", \"slide 3\", \"Figure 3\", \"Table 2\") lifts that page in the "
                                       "fusion (1 = two standard deviations under zscore; 0 = ignore).")
    figure_ocr: str = _setting("on", choices=("on", "off"), doc="Read by OCR the words inside the figures (images, "
                               "drawings) of pages that have a text layer, and index those the text layer lacks "
                               "(off with RAG_OCR=off too).")
    figure_ocr_pages: int = _setting(40, min=0, max=100000, doc="Most pages of one document whose figures are read "
                                     "(those with the largest figures first; 0 = none).")
    figure_ocr_seconds: float = _setting(120.0, min=1, max=3600, doc="Most seconds reading one document's figures "
                                         "may take, on top of RAG_PARSE_TIMEOUT (later pages keep their text layer).")
    visual: str = _setting("auto", choices=("off", "auto", "on"), doc="Search page images too (Qwen3-VL-Embedding): "
                           "on, off, or auto (on with a GPU or RAG_VISUAL_BASE_URL; on a CPU a page costs minutes).")
    visual_model: str = _setting("Qwen/Qwen3-VL-Embedding-2B", doc="The page-image embedding model (Hugging Face id "
                                 "or path in-process, or the name the server gives it).")
    visual_base_url: str | None = _setting(None, doc="OpenAI-compatible server embedding page images (vLLM "
                                           "--runner pooling), e.g. http://127.0.0.1:8000/v1; empty = in-process.")
    visual_api_key: str | None = _setting(None, doc="Key for RAG_VISUAL_BASE_URL, if it needs one.")
    visual_max_pixels: int = _setting(1310720, min=50176, max=16777216, doc="Pixels a page image is rendered at "
                                      "for the visual embedder (one image token per 32x32 pixels).")
    visual_instruction: str = _setting("Find the document page that answers the question.",
                                       doc="Instruction given with a question to the page-image embedder.")
    visual_weight: float = _setting(1.0, min=0, max=10, doc="Weight of the page-image search in the fusion.")
    visual_answer: bool = _setting(False, doc="Show the chat model the pages of its first sources as images with the "
                                   "question (a vision model: Ollama qwen3-vl, or one on an OpenAI-compatible server).")

    # --- folder sync, the ingest queue and re-indexing ---------------------------------------------------------------
    watch: str = _setting("", doc="Folders the app keeps in step while it runs, separated by ':' (new and changed "
                          "PDFs indexed, deleted ones removed); empty = none. `python -m rag sync` does one pass.")
    watch_interval: float = _setting(30.0, min=1, max=86400, doc="Seconds between two passes over RAG_WATCH.")
    sync_grace: float = _setting(300.0, min=0, max=31536000, doc="Seconds a synced PDF may be missing before its "
                                 "document is removed (0 = at once; a file put back in time is kept).")
    queue_batch: int = _setting(16, min=1, max=1000, doc="Files the ingest queue hands to the parser processes at "
                                "once (parsed in parallel).")
    ingest: bool = _setting(True, doc="Whether this app indexes files (uploads, its queue, RAG_WATCH). false: it only "
                            "answers questions, for replicas beside one that owns the queue (docs/DEPLOYMENT.md).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = env_name(f.name)
            if f.name in overrides:
                raw: Any = overrides.pop(f.name)
            elif var in environ and environ[var].strip() != "":
                raw = environ[var]
            else:
                continue
            values[f.name] = _parse(f, var, raw)
        if overrides:
            raise ConfigError(f"Unknown setting(s): {', '.join(sorted(overrides))}")
        if values.get("space_id"):
            _space_defaults(values)
        settings = cls(**values)
        settings.validate()
        return settings

    def __post_init__(self) -> None:
        # Ollama addresses are kept in one canonical form (scheme://host:port), checked as they are set.
        for name in ("ollama_host", "embed_ollama_host", "chat_ollama_host", "rerank_ollama_host"):
            value = getattr(self, name)
            if value is not None or name == "ollama_host":
                object.__setattr__(self, name, normalise_ollama_host(value or "", env_name(name)))
        for name in ("embed_base_url", "chat_base_url", "rerank_url", "visual_base_url"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, normalise_base_url(getattr(self, name), env_name(name)))

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check relations between settings; raise ConfigError naming the variable."""
        if self.chunk_overlap >= self.chunk_tokens:
            raise ConfigError(f"{env_name('chunk_overlap')}={self.chunk_overlap} must be smaller than "
                              f"{env_name('chunk_tokens')}={self.chunk_tokens}")
        if self.ocr != "off":
            problem = check_lang(self.ocr_engine, self.ocr_lang)
            if problem:
                raise ConfigError(problem)
        for backend, wanted, url in (("embed_backend", "openai", "embed_base_url"),
                                     ("chat_backend", "openai", "chat_base_url"),
                                     ("rerank_backend", "http", "rerank_url")):
            if getattr(self, backend) == wanted and not getattr(self, url):
                raise ConfigError(f"{env_name(backend)}={wanted} needs {env_name(url)}: the server's base URL, "
                                  "e.g. http://127.0.0.1:8000/v1")
        if self.rerank_min_tokens > self.rerank_max_tokens:
            raise ConfigError(f"{env_name('rerank_min_tokens')}={self.rerank_min_tokens} must not exceed "
                              f"{env_name('rerank_max_tokens')}={self.rerank_max_tokens}")
        if self.min_k > self.top_k:
            raise ConfigError(f"{env_name('min_k')}={self.min_k} must not exceed {env_name('top_k')}={self.top_k}")
        if self.auth and self.auth.lower() != "none" and any(":" not in pair or not pair.split(":", 1)[0].strip()
                                                             or not pair.split(":", 1)[1]
                                                             for pair in self.auth.split(",")):
            raise ConfigError("RAG_AUTH must be user:password (or several, separated by commas), or 'none'.")
        if self.host not in _LOCAL_HOSTS and not (self.auth or self.users_file or self.guests or self.hf_login):
            if self.space_id:
                raise ConfigError("On Hugging Face Spaces, anyone who can open the Space can use the app and read "
                                  "its documents: add a secret RAG_AUTH=user:password in the Space's settings "
                                  "(or RAG_AUTH=none for a private Space, RAG_GUESTS=true for a public demo where "
                                  "each visitor gets a private library, RAG_HF_LOGIN=true for Sign in with Hugging "
                                  "Face).")
            raise ConfigError(f"RAG_HOST={self.host} makes your documents reachable from the network: set "
                              "RAG_AUTH=user:password to require a login (or RAG_AUTH=none to go without one).")

    # --- derived values ---------------------------------------------------------------------------------------
    @property
    def logins(self) -> list[tuple[str, str]]:
        """(user, password) pairs from RAG_AUTH; empty when no login is required."""
        if not self.auth or self.auth.lower() == "none":
            return []
        return [(u.strip(), p) for u, p in (pair.split(":", 1) for pair in self.auth.split(","))]

    @property
    def admin_names(self) -> list[str]:
        """Logins that may manage everything: RAG_ADMINS, else the first login of RAG_AUTH (the users file's first
        entry is added by the access gate, which reads that file)."""
        if self.admins:
            return [a.strip() for a in self.admins.split(",") if a.strip()]
        return [self.logins[0][0]] if self.logins else []

    @property
    def needs_login(self) -> bool:
        """Whether the app asks who you are (a login, a users file or Hugging Face) rather than trusting the one
        local user."""
        return bool(self.logins or self.users_file or self.hf_login)

    @property
    def embed_host(self) -> str:
        """The Ollama server that computes embeddings."""
        return self.embed_ollama_host or self.ollama_host

    @property
    def chat_host(self) -> str:
        """The Ollama server that generates answers."""
        return self.chat_ollama_host or self.ollama_host

    @property
    def rerank_host(self) -> str:
        """The Ollama server that reranks (RAG_RERANK_BACKEND=ollama)."""
        return self.rerank_ollama_host or self.ollama_host

    @property
    def ollama_headers(self) -> dict[str, str]:
        """HTTP headers for every Ollama request: the bearer token, when one is set."""
        return {"Authorization": f"Bearer {self.ollama_token}"} if self.ollama_token else {}

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def watch_folders(self) -> list[Path]:
        """RAG_WATCH as paths (separated by ':', as PATH is)."""
        return [Path(p).expanduser() for p in self.watch.split(os.pathsep) if p.strip()]

    @property
    def effective_parse_workers(self) -> int:
        """Parser processes to start."""
        return self.parse_workers or max(1, min(4, os.cpu_count() or 1))

    @property
    def effective_embed_num_ctx(self) -> int:
        """Context for embedding calls: room for a chunk, its header and a generous token-estimate error."""
        return self.embed_num_ctx or max(2048, 4 * self.chunk_tokens)


def env_name(field_name: str) -> str:
    """The environment variable behind a settings field."""
    for f in fields(Settings):
        if f.name == field_name:
            return f.metadata.get("env") or "RAG_" + field_name.upper()
    raise KeyError(field_name)


def normalise_ollama_host(value: str, var: str = "OLLAMA_HOST") -> str:
    """``scheme://host:port[/path]`` from any form the ollama client accepts (``https://h:8443``, ``h:8443``, ``h``).

    Without a scheme, http and Ollama's port 11434 are assumed; with one, its usual port (as the client does).
    Raises ConfigError naming ``var`` for anything else.
    """
    raw = value.strip()
    if not raw:
        raise ConfigError(f"{var} is empty: set it to the Ollama URL, e.g. http://127.0.0.1:11434")
    has_scheme = "://" in raw
    parts = urlsplit(raw if has_scheme else f"http://{raw}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"{var}={raw!r} is not valid: the address must start with http:// or https:// (or "
                          "be host:port).")
    if parts.username is not None or parts.password is not None:
        # The value is not repeated here: it holds a password.
        raise ConfigError(f"{var} must not contain a user name or password: put a bearer token in "
                          "RAG_OLLAMA_TOKEN instead.")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not valid: the port must be a number from 1 to 65535.") from None
    host = parts.hostname or ("127.0.0.1" if parts.netloc.startswith(":") else "")
    if not host or port == 0:
        raise ConfigError(f"{var}={raw!r} is not valid: expected an address like http://127.0.0.1:11434, "
                          "https://ollama.example.com or gpu-box:11434.")
    if port is None:
        port = 11434 if not has_scheme else 443 if scheme == "https" else 80
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def normalise_base_url(value: str, var: str) -> str:
    """An http(s) base URL without a trailing slash; raises ConfigError naming ``var`` for anything else.

    Credentials in the URL are refused (keys go in the ``*_API_KEY`` settings, which are never shown), and the value
    is not repeated in that message.
    """
    raw = value.strip().rstrip("/")
    parts = urlsplit(raw)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{var} must not contain a user name or password: put the key in the matching "
                          "*_API_KEY setting instead.")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{var}={raw!r} is not valid: expected an address like http://127.0.0.1:8000/v1 or "
                          "https://api.example.com/v1.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that isn't a number
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not valid: the port must be a number from 1 to 65535.") from None
    return raw


def _space_defaults(values: dict[str, Any]) -> None:
    """On a Hugging Face Space: listen on every interface, and keep data in its persistent storage if it has one."""
    values.setdefault("host", "0.0.0.0")
    if "data_dir" not in values and SPACES_STORAGE.is_dir() and os.access(SPACES_STORAGE, os.W_OK):
        values["data_dir"] = SPACES_STORAGE / "pagewise"


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting, for docs and ``python -m rag settings``."""
    rows = []
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else ""
        rows.append((env_name(f.name), "" if default is None else str(default), f.metadata.get("doc", "")))
    return rows


def _parse(f: Any, var: str, raw: Any) -> Any:
    """Convert one raw value to the field's type, checking bounds and choices."""
    kind = str(f.type)
    meta = f.metadata
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and "None" in kind):
        return None
    try:
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                value: Any = raw
            elif str(raw).strip().lower() in _TRUE:
                value = True
            elif str(raw).strip().lower() in _FALSE:
                value = False
            else:
                raise ValueError("expected true/false")
        elif kind.startswith("int"):
            value = int(str(raw).strip())
        elif kind.startswith("float"):
            value = float(str(raw).strip())
        elif kind.startswith("Path"):
            value = Path(str(raw)).expanduser()
        else:
            value = str(raw).strip()
    except ValueError as exc:
        raise ConfigError(f"{var}={raw!r} is not valid: {exc}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("min") is not None and value < meta["min"]:
            raise ConfigError(f"{var}={raw!r} is too small: the minimum is {meta['min']:g}")
        if meta.get("max") is not None and value > meta["max"]:
            raise ConfigError(f"{var}={raw!r} is too large: the maximum is {meta['max']:g}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{var}={raw!r} is not valid: choose one of {', '.join(meta['choices'])}")
    return value


_LANG = re.compile(r"^[a-z]{3}(_[a-z]+)?(\+[a-z]{3}(_[a-z]+)?)*$")


def check_lang(engine: str, lang: str) -> str | None:
    """Why ``lang`` can't be read by ``engine`` (a message naming the settings), or None."""
    if not _LANG.match(lang):
        return (f"RAG_OCR_LANG={lang!r} is not valid: use Tesseract's language codes, e.g. eng, deu, chi_sim, or "
                "several joined by '+' (eng+fra).")
    if engine == "rapidocr" and not set(lang.split("+")) <= RAPIDOCR_LANGS:
        return (f"RAG_OCR_LANG={lang}: the OCR models that come with RapidOCR read English and Chinese (eng, chi_sim). "
                "For other languages install Tesseract with them (apt-get install tesseract-ocr "
                "tesseract-ocr-<language>) and set RAG_OCR_ENGINE=tesseract.")
    return None
