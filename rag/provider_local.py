"""In-process models: sentence-transformers embeddings, a transformers chat model, and Qwen3-Reranker.

For Hugging Face Spaces and offline use; each model loads lazily, once, and runs through ``rag.accel`` (a lent GPU
under ZeroGPU).

The reranker: Qwen3-Reranker is loaded through sentence-transformers' ``CrossEncoder`` (which recognises a
``*ForCausalLM`` as ``Transformer(text-generation) + LogitScore(yes, no)``), and the official prompt is given to it
as its chat template.

``Qwen3Reranker.score`` exploits what every candidate of one query shares: the system prompt, the instruction and
the query. That prefix runs through the model once and its keys/values are reused by every candidate, so only each
passage's own tokens are computed; candidates of similar length go together in left-padded batches; and only two
logits (``no``, ``yes``) of the last position are ever produced. This runs as a lean forward pass over the loaded
model's own weights (``_LeanQwen3``); it agrees with the plain path to float rounding (~1e-6 in float32).
``score_uncached`` is that plain path, ``CrossEncoder.predict`` on whole prompts, used for models that aren't plain
Qwen3 and as the reference in tests and benchmarks.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from rag.accel import gpu_call, gpu_stream
from rag.backends import hub_cached, is_ollama_tag
from rag.config import Settings
from rag.embeddings import Embedder, query_prompt
from rag.errors import GenerationError, MissingDependency, ModelNotFound, WrongModelKind
from rag.llm import FALLBACK_CONTEXT, THINK_OPEN, ChatModel, Delta, Messages, ThinkSplitter
from rag.rerank import RerankerUnavailable, chat_template, format_prompt, prompt_head
from rag.tokencount import estimate_tokens

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install torch 'sentence-transformers>=5.6'"


# --- embeddings -------------------------------------------------------------------------------------------------
class SentenceTransformerEmbedder(Embedder):
    """Embeddings computed in-process by sentence-transformers (any model id or local path); loaded lazily."""

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        self.model_id = settings.embed_model
        self.batch_size = settings.embed_batch_size
        self.dimensions_setting = settings.embed_dimensions
        self.instruction = settings.query_instruction
        self.device = device
        self.gpu_seconds = settings.gpu_seconds
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (the first embedding otherwise does); downloads it on first use."""
        self._load()

    def check(self) -> None:
        """Load the model (once): a model that can't be had says so here, not at the first upload."""
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if is_ollama_tag(self.model_id):
                    raise WrongModelKind(f"'{self.model_id}' is an Ollama tag, which sentence-transformers can't "
                                         "load. Set RAG_LOCAL_EMBED_MODEL to a Hugging Face id (e.g. "
                                         "Qwen/Qwen3-Embedding-0.6B) or a local folder.")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingDependency("In-process embeddings need sentence-transformers: "
                                            "pip install sentence-transformers") from exc
                log.info("%s the embedding model %s …", "Loading" if hub_cached(self.model_id) else "Downloading",
                         self.model_id)
                try:
                    self._model = SentenceTransformer(self.model_id, device=self.device,
                                                      truncate_dim=self.dimensions_setting)
                except (OSError, ValueError) as exc:
                    raise ModelNotFound(f"Can't load the embedding model '{self.model_id}': {str(exc).rstrip('.')}. "
                                        "Set RAG_LOCAL_EMBED_MODEL (or RAG_EMBED_MODEL with RAG_EMBED_BACKEND="
                                        "sentence-transformers) to a sentence-transformers model id or a local "
                                        "folder.") from exc
                log.info("Loaded the embedding model %s on %s", self.model_id, self._model.device)
            return self._model

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        model = self._load()
        kwargs: dict[str, Any] = {}
        prompts = getattr(model, "prompts", {}) or {}
        if query and "qwen3" in self.model_id.lower():
            kwargs["prompt"] = query_prompt(self.instruction, "")
        elif query and "query" in prompts:
            kwargs["prompt_name"] = "query"
        elif not query and prompts.get("document"):
            kwargs["prompt_name"] = "document"
        vectors = gpu_call(self, "_encode", list(texts), kwargs, seconds=self.gpu_seconds)
        if vectors:
            self.dimensions = len(vectors[0])
        return vectors

    def _encode(self, texts: list[str], kwargs: dict[str, Any]) -> list[list[float]]:
        """The model's forward pass (on a lent GPU under ZeroGPU): plain lists in, plain lists out."""
        array = self._load().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False, **kwargs)
        return array.tolist()


# --- chat -------------------------------------------------------------------------------------------------------
class TransformersChat(ChatModel):
    """A Qwen3 chat model run in-process with transformers (for Spaces and offline use); loaded lazily.

    Uses the model's chat template with ``enable_thinking``, streams with ``TextIteratorStreamer`` and splits
    ``<think>`` out. Generation is serialised (one model, one request at a time); closing the stream stops it.
    """

    def __init__(self, model_id: str, device: str | None = None, dtype: str = "auto", gpu_seconds: int = 90) -> None:
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.gpu_seconds = gpu_seconds
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now (the first answer otherwise does); downloads it on first use."""
        self._load()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                if is_ollama_tag(self.model_id):
                    raise WrongModelKind(f"'{self.model_id}' is an Ollama tag, which transformers can't load. Set "
                                         "RAG_LOCAL_CHAT_MODEL to a Hugging Face id (e.g. Qwen/Qwen3-0.6B) or a "
                                         "local folder, or start Ollama to use its models.")
                try:
                    import torch
                    from transformers import AutoModelForCausalLM, AutoTokenizer
                except ImportError as exc:
                    raise MissingDependency("The in-process chat model needs transformers and torch: "
                                            "pip install torch==2.13.0 transformers") from exc
                device = self.device or auto_device(torch)
                log.info("%s the chat model %s …", "Loading" if hub_cached(self.model_id) else "Downloading",
                         self.model_id)
                try:
                    tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                    model = AutoModelForCausalLM.from_pretrained(
                        self.model_id, dtype=resolve_dtype(torch, self.dtype, device))
                except (OSError, ValueError) as exc:
                    raise ModelNotFound(f"Can't load the chat model '{self.model_id}': {str(exc).rstrip('.')}. Set "
                                        "RAG_LOCAL_CHAT_MODEL (or RAG_CHAT_MODEL with RAG_CHAT_BACKEND=transformers) "
                                        "to a transformers model id (e.g. Qwen/Qwen3-1.7B) or a local folder.") \
                        from exc
                self._model, self._tokenizer = model.to(device).eval(), tokenizer
                log.info("Loaded the chat model %s on %s", self.model_id, device)
            return self._model, self._tokenizer

    def context_length(self) -> int:
        model, _ = self._load()
        return int(getattr(model.config, "max_position_embeddings", FALLBACK_CONTEXT) or FALLBACK_CONTEXT)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            return estimate_tokens(text)
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def check(self) -> None:
        self._load()

    def prompt(self, messages: Messages, think: bool) -> str:
        """The prompt text the chat template makes (generation prompt included)."""
        _, tokenizer = self._load()
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                             enable_thinking=think)

    def stream(self, messages: Messages, *, think: bool = True, num_ctx: int | None = None,
               max_tokens: int | None = None) -> Iterator[Delta]:
        text = self.prompt(messages, think)
        splitter = ThinkSplitter(in_thinking=text.rstrip().endswith(THINK_OPEN))
        pieces = gpu_stream(self, "_generate", text, think, num_ctx or self.context_length(), max_tokens or 1024,
                            seconds=self.gpu_seconds)
        try:
            for piece in pieces:
                yield from splitter.feed(piece)
            yield from splitter.close()
        finally:
            pieces.close()  # stops the generation when the consumer stops early

    def _generate(self, text: str, think: bool, limit: int, max_tokens: int) -> Iterator[str]:
        """Generate from the prompt ``text``, yielding decoded pieces (on a lent GPU under ZeroGPU)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self._load()
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        if inputs["input_ids"].shape[1] > limit:  # keep the end: the question and the sources nearest it
            inputs = {k: v[:, -limit:] for k, v in inputs.items()}
        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._generate_lock, torch.inference_mode():
                    model.generate(**inputs, streamer=streamer, max_new_tokens=max_tokens,
                                   do_sample=True, temperature=0.6 if think else 0.7, top_p=0.95 if think else 0.8,
                                   top_k=20, stopping_criteria=StoppingCriteriaList([_Stop()]),
                                   pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                errors.append(exc)
                streamer.on_finalized_text("", stream_end=True)

        thread = threading.Thread(target=run, name="chat-generate", daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            stop.set()
            thread.join(timeout=60)
        if errors:
            raise GenerationError(f"the in-process model failed: {errors[0]}") from errors[0]


# --- reranker ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptTokens:
    """What the model is fed for one query: a shared prefix and, per passage, the token ids that follow it."""

    prefix: list[int]
    suffixes: list[list[int]]

    def full(self, i: int) -> list[int]:
        """The whole prompt of passage ``i``."""
        return self.prefix + self.suffixes[i]


@dataclass
class _Loaded:
    cross_encoder: Any
    model: Any  # the transformers *ForCausalLM inside the CrossEncoder
    tokenizer: Any
    yes_id: int
    no_id: int
    device: Any
    dtype: Any
    lean: _LeanQwen3 | None


class Qwen3Reranker:
    """Qwen3-Reranker run in-process through sentence-transformers' CrossEncoder; loaded lazily, once, thread-safe."""

    incremental = True  # one query's passages may come in several calls: its prefix is computed once (kept)

    def __init__(
        self,
        model: str = "Qwen/Qwen3-Reranker-0.6B",
        instruction: str = "Given a question, judge whether the passage answers it",
        max_passage_tokens: int = 384,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        gpu_seconds: int = 90,
    ) -> None:
        if max_passage_tokens < 1 or batch_size < 1:
            raise ValueError("max_passage_tokens and batch_size must be at least 1")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
        self.model_name = model
        self.instruction = instruction
        self.max_passage_tokens = max_passage_tokens
        self.batch_size = batch_size
        self.requested_device = device
        self.requested_dtype = dtype
        self.gpu_seconds = gpu_seconds  # the most one scoring may hold a ZeroGPU GPU (see rag.accel)
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self._prefix: tuple[Any, Any] | None = None  # (key, keys/values) of the last query's shared prefix
        # One forward pass at a time: the tokenizer isn't safe to share across threads, and on a CPU parallel
        # passes only fight for the same cores.
        self._run_lock = threading.Lock()

    # --- loading ------------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (otherwise the first ``score`` does); safe to call from many threads."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    self._loaded = self._load()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._loaded is not None

    @property
    def describe(self) -> str:
        """Where reranking happens, in a few words."""
        return f"{self.model_name} (in-process)"

    def _state(self) -> _Loaded:
        self.load()
        if self._loaded is None:  # unreachable: load() sets it or raises
            raise RerankerUnavailable(f"the reranker {self.model_name!r} is not loaded")
        return self._loaded

    def _load(self) -> _Loaded:
        torch = _import_backend()[0]
        device = self.requested_device or auto_device(torch)
        if not int8_wanted(torch, self.requested_dtype, device):
            requested = "auto" if self.requested_dtype == "int8" else self.requested_dtype  # int8 on a GPU
            return self._load_as(resolve_dtype(torch, requested, device), device)
        # int8 is made from the float32 weights; "auto" keeps it only if it scores like float32 (checked here).
        state = self._load_as(torch.float32, device)
        state = self._to_int8(state, check=self.requested_dtype == "auto") or self._load_as(torch.float32, device)
        self._prefix = None  # computed by the checks, maybe with other weights
        return state

    def _load_as(self, dtype: Any, device: str) -> _Loaded:
        torch, cross_encoder_cls, logit_score_cls = _import_backend()
        started = time.perf_counter()
        try:
            ce = cross_encoder_cls(
                self.model_name,
                device=device,
                processor_kwargs={"chat_template": chat_template(self.instruction)},
                model_kwargs={"dtype": dtype},
            )
        except Exception as exc:  # any loading failure (missing files, offline hub, bad config) means the same
            raise RerankerUnavailable(
                f"Can't load the reranker model {self.model_name!r} ({type(exc).__name__}: {exc}). Download it "
                "while online, or set RAG_RERANK_MODEL to a local Qwen3-Reranker directory; set RAG_RERANK=false "
                "to answer without reranking."
            ) from exc
        scorer = ce[-1] if len(ce) else None
        if not isinstance(scorer, logit_score_cls) or scorer.false_token_id is None:
            raise RerankerUnavailable(
                f"{self.model_name!r} is not a Qwen3-Reranker-style causal LM scored by its 'yes'/'no' logits; set "
                "RAG_RERANK_MODEL to such a model (e.g. Qwen/Qwen3-Reranker-0.6B)."
            )
        model = ce.model.eval()
        tokenizer = ce.tokenizer
        tokenizer.padding_side = "left"
        yes_id, no_id = int(scorer.true_token_id), int(scorer.false_token_id)
        lean = _LeanQwen3(model, no_id, yes_id) if _LeanQwen3.supports(model) else None
        log.info("Loaded reranker %s on %s as %s in %.1f s%s", self.model_name, ce.device, dtype,
                 time.perf_counter() - started, "" if lean else " (not plain Qwen3: scoring whole prompts)")
        return _Loaded(ce, model, tokenizer, yes_id, no_id, ce.device, dtype, lean)

    def _to_int8(self, state: _Loaded, check: bool) -> _Loaded | None:
        """``state`` with the decoder's Linear layers in int8, or None when it can't be had or, with ``check``, its
        scores of a few fixed pairs are off float32's by more than ``INT8_TOLERANCE``, or it scores them less than
        ``INT8_MIN_SPEEDUP`` times as fast (int8 pays off where the CPU has VNNI instructions; on plain AVX2 it may
        not)."""
        torch = _import_backend()[0]
        started = time.perf_counter()
        float_seconds, reference = self._timed_check(state) if check else (0.0, [])
        try:
            quantize_int8(state.model.get_decoder())
        except RerankerUnavailable:
            if not check:
                raise
            log.info("int8 is not available in this torch build: the reranker runs in float32")
            return None
        state = replace(state, dtype=torch.qint8)
        if check:
            int8_seconds, scores = self._timed_check(state)
            off = max(abs(a - b) for a, b in zip(reference, scores, strict=True))
            speedup = float_seconds / max(int8_seconds, 1e-9)
            if off > INT8_TOLERANCE or speedup < INT8_MIN_SPEEDUP:
                log.info("Reranker in float32: in int8 it scores the check pairs %.2f times as fast, within %.3f of "
                         "float32 (int8 needs at least %.1f times and within %.2f)", speedup, off, INT8_MIN_SPEEDUP,
                         INT8_TOLERANCE)
                return None
            log.info("Reranker weights in int8: %.2f times as fast as float32 on the check pairs, scores within %.3f "
                     "(%.1f s to decide)", speedup, off, time.perf_counter() - started)
        return state

    def _timed_check(self, state: _Loaded) -> tuple[float, list[float]]:
        """(seconds, scores) of the check pairs; the faster of two runs, so one-off start-up costs don't count."""
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            scores = self._check_scores(state)
            runs.append((time.perf_counter() - started, scores))
        return min(runs[0][0], runs[1][0]), runs[1][1]

    def _check_scores(self, state: _Loaded) -> list[float]:
        """Scores of the fixed check pairs, computed as ``score`` does (used to compare number formats)."""
        torch = _import_backend()[0]
        scores: list[float] = []
        with torch.inference_mode():
            for query, passages in _INT8_CHECK:
                if state.lean is not None:
                    tokens = _encode(state.tokenizer, self.instruction, query, passages, self.max_passage_tokens)
                    scores += self._score_tokens(state, tokens)
                else:
                    scores += [float(x) for x in state.cross_encoder.predict(
                        [(query, p) for p in passages], show_progress_bar=False, convert_to_numpy=True)]
        return scores

    @property
    def yes_token_id(self) -> int:
        """Vocabulary id of ``yes`` (loads the model)."""
        return self._state().yes_id

    @property
    def no_token_id(self) -> int:
        """Vocabulary id of ``no`` (loads the model)."""
        return self._state().no_id

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model runs in (loads the model)."""
        return self._state().dtype

    @property
    def device(self) -> torch.device:
        """The device the model runs on (loads the model)."""
        return self._state().device

    # --- prompts ------------------------------------------------------------------------------------------------
    def truncate(self, passages: Sequence[str]) -> list[str]:
        """Cut each passage to at most ``max_passage_tokens`` tokens (tokenized alone), at a token boundary."""
        return _truncate(self._state().tokenizer, passages, self.max_passage_tokens)

    def prompts(self, query: str, passages: Sequence[str]) -> list[str]:
        """The full prompt texts for each passage, after truncation."""
        return [format_prompt(self.instruction, query, p) for p in self.truncate(passages)]

    def encode(self, query: str, passages: Sequence[str]) -> PromptTokens:
        """Tokenize the prompts and split off the longest token prefix they all share (at most the query part)."""
        return _encode(self._state().tokenizer, self.instruction, query, passages, self.max_passage_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone, as this reranker's tokenizer counts them (the time budget sizes by them)."""
        tokenizer = self._state().tokenizer
        with self._run_lock:  # the tokenizer isn't safe to share across threads
            return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    # --- scoring ------------------------------------------------------------------------------------------------
    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query`` in 0..1, in input order; the shared prefix is computed once."""
        if not passages:
            return []
        return gpu_call(self, "_score", query, list(passages), seconds=self.gpu_seconds)

    def _score(self, query: str, passages: list[str]) -> list[float]:
        state = self._state()
        if state.lean is None:
            return self._score_uncached(query, passages)
        torch = _import_backend()[0]
        with self._run_lock, torch.inference_mode():
            started = time.perf_counter()
            tokens = self.encode(query, passages)
            scores = self._score_tokens(state, tokens)
            log.debug("Reranked %d passages (%d prefix + %d own tokens) in %.2f s", len(passages),
                      len(tokens.prefix), sum(map(len, tokens.suffixes)), time.perf_counter() - started)
        return scores

    def _prefix_kv(self, state: _Loaded, prefix: list[int]) -> Any:
        """The prefix's keys/values: the last query's when it is the same (the time budget may send a query's
        passages in several calls), else computed now. Called under the run lock."""
        if not prefix:
            return None
        key = (state.dtype, tuple(prefix))
        if self._prefix is None or self._prefix[0] != key:
            self._prefix = (key, state.lean.prefix(prefix))
        return self._prefix[1]

    def score_uncached(self, query: str, passages: Sequence[str]) -> list[float]:
        """The same scores through plain ``CrossEncoder.predict`` (whole prompt per pair): the reference path."""
        if not passages:
            return []
        return gpu_call(self, "_score_uncached", query, list(passages), seconds=self.gpu_seconds)

    def _score_uncached(self, query: str, passages: list[str]) -> list[float]:
        state = self._state()
        with self._run_lock:
            pairs = [(query, p) for p in self.truncate(passages)]
            scores = state.cross_encoder.predict(pairs, batch_size=self.batch_size, show_progress_bar=False,
                                                 convert_to_numpy=True)
        return [float(s) for s in scores]

    def _score_tokens(self, state: _Loaded, tokens: PromptTokens) -> list[float]:
        torch = _import_backend()[0]
        lean = state.lean
        prefix_kv = self._prefix_kv(state, tokens.prefix)
        # Similar lengths together keep padding small; results go back to input order.
        order = sorted(range(len(tokens.suffixes)), key=lambda i: len(tokens.suffixes[i]))
        scores = [0.0] * len(order)
        pad_id = state.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(tokens.suffixes[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, i in enumerate(batch):  # left padding: the last position is always a real token
                suffix = tokens.suffixes[i]
                ids[row, width - len(suffix):] = torch.tensor(suffix)
                mask[row, width - len(suffix):] = True
            probs = torch.softmax(lean.last_logits(ids, mask, prefix_kv, len(tokens.prefix)).float(), dim=-1)
            for row, i in enumerate(batch):
                scores[i] = float(probs[row, 1])
        return scores


def _truncate(tokenizer: Any, passages: Sequence[str], cap: int) -> list[str]:
    enc = tokenizer(list(passages), add_special_tokens=False, return_offsets_mapping=True)
    return [text if len(offsets) <= cap else text[: offsets[cap - 1][1]]
            for text, offsets in zip(passages, enc["offset_mapping"], strict=True)]


def _encode(tokenizer: Any, instruction: str, query: str, passages: Sequence[str], cap: int) -> PromptTokens:
    # Everything up to the "<Document>" marker is the same for every passage.
    head = tokenizer(prompt_head(instruction) + query + "\n", add_special_tokens=False)["input_ids"]
    prompts = [format_prompt(instruction, query, p) for p in _truncate(tokenizer, passages, cap)]
    full = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    # Token boundaries normally fall right before "<Document>", so the whole head is shared; if a tokenizer
    # merged across it, sharing fewer tokens is still exact. Every candidate keeps at least one own token.
    shared = min([len(head)] + [len(ids) - 1 for ids in full])
    for ids in full:
        shared = next((k for k in range(shared) if ids[k] != head[k]), shared)
    return PromptTokens(prefix=list(head[:shared]), suffixes=[list(ids[shared:]) for ids in full])


class _LeanQwen3:
    """A lean forward pass of a loaded ``Qwen3ForCausalLM``, on its own weights, for yes/no scoring only.

    It differs from calling the model only in what it leaves out: the shared prefix's keys/values are computed
    once and reused by every row of a batch; the last layer computes its queries, attention output and MLP for the
    last position only (earlier positions are needed only as keys/values); and just the ``no``/``yes`` rows of
    the output matrix are applied. Attention is plain batched matmuls with the key/value heads grouped, which on
    CPUs is faster than ``scaled_dot_product_attention`` with an explicit mask.
    """

    def __init__(self, model: Any, no_id: int, yes_id: int) -> None:
        cfg = model.config
        self.eps = cfg.rms_norm_eps
        self.hidden = cfg.hidden_size
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.group = self.n_heads // self.n_kv
        backbone = model.get_decoder()
        self.embed = backbone.embed_tokens
        self.rotary = backbone.rotary_emb
        self.norm = backbone.norm.weight
        self.layers = backbone.layers
        self.head = model.get_output_embeddings().weight[[no_id, yes_id]]  # [2, hidden]: [no, yes]

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether ``model`` is the plain Qwen3 architecture this forward pass reproduces."""
        cfg = model.config
        return (
            getattr(cfg, "model_type", None) == "qwen3"
            and not getattr(cfg, "attention_bias", False)
            and getattr(cfg, "hidden_act", None) == "silu"
            and all(t == "full_attention" for t in (getattr(cfg, "layer_types", None) or ["full_attention"]))
            and model.get_output_embeddings() is not None
        )

    def prefix(self, ids: list[int]) -> list[tuple[Any, Any]]:
        """Keys/values of every layer for the shared prefix ``ids`` (batch of one)."""
        import torch

        x = self.embed(torch.tensor([ids], device=self.head.device))
        positions = torch.arange(len(ids), device=x.device)[None]
        allowed = torch.ones(len(ids), len(ids), dtype=torch.bool, device=x.device).tril()[None]
        bias = self._bias(allowed, x.dtype)
        cos, sin = self.rotary(x, positions)
        kv = []
        for layer in self.layers:
            x, k, v = self._layer(layer, x, cos, sin, None, bias, last_only=False)
            kv.append((k, v))
        return kv

    def last_logits(self, ids: Any, mask: Any, prefix_kv: list[tuple[Any, Any]] | None, prefix_len: int) -> Any:
        """``[no, yes]`` logits at the last position of each left-padded row of ``ids`` that follows the prefix."""
        import torch

        device = self.head.device
        ids, mask = ids.to(device), mask.to(device)
        rows, width = ids.shape
        x = self.embed(ids)
        # Positions continue from the prefix, skipping this row's padding.
        positions = prefix_len + (mask.cumsum(1) - 1).clamp(min=0)
        # Query i sees the prefix, the real tokens up to itself, and itself (so padded rows stay finite).
        ar = torch.arange(width, device=device)
        own = (ar[None, :] <= ar[:, None])[None] & mask[:, None, :] | torch.eye(width, dtype=torch.bool,
                                                                                 device=device)[None]
        allowed = torch.cat([torch.ones(rows, width, prefix_len, dtype=torch.bool, device=device), own], 2)
        bias = self._bias(allowed, x.dtype)
        cos, sin = self.rotary(x, positions)
        last = len(self.layers) - 1
        for n, layer in enumerate(self.layers):
            past = prefix_kv[n] if prefix_kv else None
            x, _, _ = self._layer(layer, x, cos, sin, past, bias, last_only=n == last)
        x = _rms_norm(x[:, -1], self.norm, self.eps)
        return torch.nn.functional.linear(x, self.head)

    @staticmethod
    def _bias(allowed: Any, dtype: Any) -> Any:
        import torch

        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))

    def _layer(self, layer: Any, x: Any, cos: Any, sin: Any, past: tuple[Any, Any] | None, bias: Any,
               last_only: bool) -> tuple[Any, Any, Any]:
        """One decoder layer; returns the new hidden states and this call's (post-RoPE) keys and values."""
        import torch
        from torch.nn.functional import silu

        attn, mlp = layer.self_attn, layer.mlp
        rows, width, _ = x.shape
        h = _rms_norm(x, layer.input_layernorm.weight, self.eps)
        hq = h[:, -1:] if last_only else h
        if last_only:
            x, cos_q, sin_q, bias = x[:, -1:], cos[:, -1:], sin[:, -1:], bias[:, -1:]
        else:
            cos_q, sin_q = cos, sin
        # The attention scaling rides along with the query norm's per-row factor, for free.
        # Projections are called as modules, so int8 layers (``quantize_int8``) run here as they are.
        q = _rms_norm(attn.q_proj(hq).view(rows, -1, self.n_heads, self.head_dim),
                      attn.q_norm.weight, self.eps, scale=attn.scaling)
        k = _rms_norm(attn.k_proj(h).view(rows, width, self.n_kv, self.head_dim), attn.k_norm.weight, self.eps)
        v = attn.v_proj(h).view(rows, width, self.n_kv, self.head_dim)
        q = _rope(q, cos_q, sin_q)
        k = _rope(k, cos, sin).transpose(1, 2)  # [rows, kv heads, width, head_dim]
        v = v.transpose(1, 2)
        keys, values = k, v
        if past is not None:
            keys = torch.cat([past[0].expand(rows, -1, -1, -1), k], 2)
            values = torch.cat([past[1].expand(rows, -1, -1, -1), v], 2)

        out = self._attend(q, keys, values, bias)
        x = x + attn.o_proj(out)

        h = _rms_norm(x, layer.post_attention_layernorm.weight, self.eps)
        act = silu(mlp.gate_proj(h), inplace=True).mul_(mlp.up_proj(h))
        x = x + mlp.down_proj(act)
        return x, k, v

    def _attend(self, q: Any, keys: Any, values: Any, bias: Any) -> Any:
        """Causal grouped-query attention of ``q`` [rows, n, heads, d] over ``keys``/``values`` [rows, kv, s, d].

        The query heads that share a key/value head are stacked so that each step is one batched matmul, and the
        queries go in chunks that each read keys only up to their own last position (skipping the masked part).
        """
        import torch

        rows, n_q = q.shape[:2]
        kv, group, dim = self.n_kv, self.group, self.head_dim
        first_key_end = keys.shape[2] - n_q  # keys visible to the first query: the past and the earlier positions
        q = q.view(rows, n_q, kv, group, dim).transpose(1, 2).reshape(rows, kv, n_q * group, dim)
        outs = []
        for a in range(0, n_q, _QUERY_CHUNK):
            b = min(a + _QUERY_CHUNK, n_q)
            end = first_key_end + b
            scores = torch.matmul(q[:, :, a * group:b * group], keys[:, :, :end].transpose(2, 3))
            scores.view(rows, kv, b - a, group, end).add_(bias[:, None, a:b, None, :end])
            outs.append(torch.matmul(torch.softmax(scores, dim=-1), values[:, :, :end]))
        out = torch.cat(outs, 2) if len(outs) > 1 else outs[0]
        return out.view(rows, kv, n_q, group, dim).transpose(1, 2).reshape(rows, n_q, self.n_heads * dim)


_QUERY_CHUNK = 64  # queries per attention step: smaller skips more masked keys, larger makes bigger matmuls


def _rms_norm(x: Any, weight: Any, eps: float, scale: float = 1.0) -> Any:
    """Qwen3's RMSNorm over the last dim (statistics in float32), times ``scale``; fewer passes than the module."""
    import torch

    factor = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
    factor = factor.square_().div_(x.shape[-1]).add_(eps).rsqrt_().mul_(scale)
    return (x * factor.to(x.dtype)).mul_(weight)


def _rope(x: Any, cos: Any, sin: Any) -> Any:
    """Rotary embedding, half-split layout as in Qwen3: ``x * cos + rotate_half(x) * sin``; x is [b, n, heads, d]."""
    import torch

    half = x.shape[-1] // 2
    cos, sin = cos[:, :, None], sin[:, :, None]
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


# --- backend helpers -------------------------------------------------------------------------------------------
_DTYPES = {"auto", "float32", "bfloat16", "float16", "int8"}
INT8_TOLERANCE = 0.05  # the most an int8 score may differ from float32's on the check pairs for "auto" to keep it
INT8_MIN_SPEEDUP = 1.2  # and how much faster than float32 it must score them
# Pairs "auto" scores in float32 and in int8 before choosing int8: each query with passages from clearly relevant to
# unrelated, so that a format that can't tell them apart, or moves a score by more than the tolerance, shows.
_INT8_CHECK = (
    ("How many days of paid leave do employees get?", (
        "Every employee receives 30 days of paid vacation leave each year.",
        "Sick leave is paid from the first day of illness, with a doctor's note after three days.",
        "Parking in the north garage is free for cyclists and electric cars.")),
    ("What were the company's net sales in 2018?", (
        "Net sales were $32.8 billion in 2018, up 3.5 percent from 2017.",
        "Revenue is recognised when control of the goods passes to the customer.",
        "The annual meeting of shareholders will be held on May 14 in St. Paul.")),
)


def int8_wanted(torch: Any, dtype: str, device: str) -> bool:
    """Whether the reranker's Linear weights go to int8: asked for (on a CPU), or "auto" on a CPU without bf16."""
    on_cpu = str(device).split(":")[0] == "cpu"
    if dtype == "int8":
        if not on_cpu:
            log.warning("RAG_RERANK_DTYPE=int8 applies to CPUs only; on %s the reranker runs as auto decides", device)
        return on_cpu
    return dtype == "auto" and on_cpu and resolve_dtype(torch, "auto", device) == torch.float32


def quantize_int8(module: Any) -> None:
    """Make the Linear layers of ``module`` int8, in place: weights int8 per output channel, activations quantized
    at each call (torch's dynamic quantization; its x86 kernels use 7-bit activations, so AVX2's 16-bit sums can't
    saturate). torchao's replacement is slower than this on CPUs without torch.compile."""
    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:
        raise RerankerUnavailable(f"this torch build has no int8 dynamic quantization ({exc}); set "
                                  "RAG_RERANK_DTYPE=float32") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks torch.ao.quantization deprecated in favour of torchao
        quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def _import_backend() -> tuple[Any, Any, Any]:
    """torch, CrossEncoder and LogitScore, or an error naming what to install."""
    try:
        import torch
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.modules import LogitScore
    except ImportError as exc:
        raise MissingDependency(
            f"The in-process reranker needs torch and sentence-transformers >= 5.6 ({exc}): {INSTALL_HINT}"
        ) from exc
    return torch, CrossEncoder, LogitScore


def auto_device(torch: Any) -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 / AMX on x86, BF16 on Arm)."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None:
        try:
            # oneDNN also reports plain AVX512 as "supported" (emulated); require a native flag as well below.
            if not check():
                return False
        except RuntimeError:
            pass
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(torch: Any, dtype: str, device: str) -> Any:
    """Map the dtype setting to a torch dtype; "auto" is bf16 where the hardware has it, else float32."""
    if dtype != "auto":
        return getattr(torch, dtype)
    kind = str(device).split(":")[0]
    if kind == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
