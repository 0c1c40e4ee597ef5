"""Qwen3-Reranker in-process, for Hugging Face Spaces, offline use and a machine with its own GPU; loads lazily,
once, and scores through ``rag.models.accel`` (a lent GPU under ZeroGPU).

Qwen3-Reranker is loaded through sentence-transformers' ``CrossEncoder`` (which recognises a
``*ForCausalLM`` as ``Transformer(text-generation) + LogitScore(yes, no)``), and the official prompt is given to it
as its chat template.

``Qwen3Reranker.score`` exploits what every candidate of one query shares: the system prompt, the instruction and
the query. That prefix runs through the model once and its keys/values are reused by every candidate, so only each
passage's own tokens are computed; candidates of similar length go together in left-padded batches; and only two
logits (``no``, ``yes``) of the last position are ever produced. This runs as a lean forward pass over the loaded
model's own weights (``rag.models.providers.lean_qwen3``); it agrees with the plain path to float rounding (~1e-6
in float32).
``score_uncached`` is that plain path, ``CrossEncoder.predict`` on whole prompts, used for models that aren't plain
Qwen3 and as the reference in tests and benchmarks.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

from rag.core.errors import MissingDependency
from rag.models.accel import gpu_call
from rag.models.providers.lean_qwen3 import LeanQwen3
from rag.models.providers.local_runtime import auto_device, resolve_dtype
from rag.models.reranker import RerankerUnavailable, chat_template, format_prompt, prompt_head

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install torch 'sentence-transformers>=5.6'"


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
    lean: LeanQwen3 | None


class Qwen3Reranker:
    """Qwen3-Reranker run in-process through sentence-transformers' CrossEncoder; loaded lazily, once, thread-safe."""

    incremental = True  # one query's passages may come in several calls: its prefix is computed once (kept)
    takes_instruction = True  # ``score(..., instruction=)``: another task for one call (see rag.models.reranker)

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
        self.gpu_seconds = gpu_seconds  # the most one scoring may hold a ZeroGPU GPU (see rag.models.accel)
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
        lean = LeanQwen3(model, no_id, yes_id) if LeanQwen3.supports(model) else None
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

    def encode(self, query: str, passages: Sequence[str], instruction: str | None = None) -> PromptTokens:
        """Tokenize the prompts (with ``instruction``, default the reranker's own) and split off the longest token
        prefix they all share (at most the query part)."""
        return _encode(self._state().tokenizer, instruction or self.instruction, query, passages,
                       self.max_passage_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone, as this reranker's tokenizer counts them (the time budget sizes by them)."""
        tokenizer = self._state().tokenizer
        with self._run_lock:  # the tokenizer isn't safe to share across threads
            return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    # --- scoring ------------------------------------------------------------------------------------------------
    def score(self, query: str, passages: Sequence[str], instruction: str | None = None) -> list[float]:
        """Relevance of each passage to ``query`` in 0..1, in input order; the shared prefix is computed once.
        ``instruction`` replaces the reranker's own task for this call only (the claim check's support question)."""
        if not passages:
            return []
        return gpu_call(self, "_score", query, list(passages), instruction, seconds=self.gpu_seconds)

    def _score(self, query: str, passages: list[str], instruction: str | None = None) -> list[float]:
        state = self._state()
        if state.lean is None:
            if instruction and instruction != self.instruction:  # its chat template holds the reranker's own task
                raise RerankerUnavailable(f"{self.model_name!r} is not plain Qwen3: it is scored through its chat "
                                          "template, which holds only the reranking instruction")
            return self._score_uncached(query, passages)
        torch = _import_backend()[0]
        with self._run_lock, torch.inference_mode():
            started = time.perf_counter()
            tokens = self.encode(query, passages, instruction)
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


# --- number formats ------------------------------------------------------------------------------------------
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
