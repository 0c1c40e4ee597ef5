"""Rerank retrieved passages with Qwen3-Reranker, run in-process (Ollama has no rerank endpoint).

Qwen3-Reranker is a causal LM asked "does this Document meet the Query? yes/no"; the relevance score is
``softmax([logit(no), logit(yes)])[yes]`` at the last position. The model is loaded through sentence-transformers'
``CrossEncoder`` (which recognises a ``*ForCausalLM`` as ``Transformer(text-generation) + LogitScore(yes, no)``),
and the official prompt is given to it as its chat template.

``score`` exploits what every candidate of one query shares: the system prompt, the instruction and the query. That
prefix runs through the model once and its keys/values are reused by every candidate, so only each passage's own
tokens are computed; candidates of similar length go together in left-padded batches; and only two logits (``no``,
``yes``) of the last position are ever produced. This runs as a lean forward pass over the loaded model's own
weights (``_LeanQwen3``); it agrees with the plain path to float rounding (~1e-6 in float32). ``score_uncached`` is
that plain path, ``CrossEncoder.predict`` on whole prompts, used for models that aren't plain Qwen3 and as the
reference in tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from rag.accel import gpu_call
from rag.chunking import estimate_tokens
from rag.errors import MissingDependency

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install torch 'sentence-transformers>=5.6'"

# The official Qwen3-Reranker prompt (model card): system text, user turn, and an assistant turn opened with an
# empty think block, so that the next token is the answer itself.
SYSTEM_PROMPT = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)
_PROMPT_HEAD = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Instruct>: {instruction}\n<Query>: "
_PROMPT_MIDDLE = "\n<Document>: "
_PROMPT_TAIL = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


class RerankerUnavailable(RuntimeError):
    """The reranker model can't be loaded (not downloaded, wrong path, not a Qwen3-Reranker-style model)."""


class Reranker(Protocol):
    """Scores how well each passage answers a query (higher is better, 0..1).

    ``score`` is all a backend must implement: the time budget (``RerankBudget``) times each call itself and learns
    the backend's throughput from it. Two optional members make it more exact: ``count_tokens(texts) -> list[int]``
    (the reranker's own tokenizer; without it, tokens are estimated) and ``loaded``/``load()`` (a model loaded in
    this process: the budget loads it before timing, so loading never counts as scoring time).
    """

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Return one score per passage, in the order given."""
        ...


# --- the time budget ----------------------------------------------------------------------------------------------
# The reranker reads every token it is sent (~0.9 GFLOP per token for the 0.6B model: about 10 ms a token on a
# laptop CPU in float32), so what it is sent is bounded by time, not by count. The throughput is measured on the
# machine it runs on, from the reranker's own calls, whatever the backend (in-process, Ollama, a /rerank service).
@dataclass(frozen=True)
class RerankPlan:
    """What one question sends to the reranker: the ``count`` best of ``total`` fused candidates, each cut to at
    most ``token_cap`` tokens (``cut`` of them were longer), ``tokens`` to read in all (prompt included)."""

    total: int
    count: int
    token_cap: int
    cut: int
    tokens: int
    budget_seconds: float
    expected_seconds: float | None  # None until the reranker has been timed once
    passages: list[str] = field(repr=False)  # the texts sent, cut

    @property
    def detail(self) -> str:
        """What the user is told while it runs, e.g. "ranking 8 of 29 passages, 6 cut to 150 tokens"."""
        text = f"ranking {self.count} of {self.total} passages"
        return text + (f", {self.cut} cut to {self.token_cap} tokens" if self.cut else "")


class Throughput:
    """Tokens per second a reranker has reached on its recent calls, learned in this process; thread-safe.

    A moving average of seconds per token that weighs the latest call as much as all before it, so a busier machine
    (or a remote server under load) shows in the next question's budget, and one odd call is soon forgotten.
    """

    def __init__(self) -> None:
        self._seconds_per_token: float | None = None
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def tokens_per_second(self) -> float | None:
        """The current estimate; None before the first call."""
        spt = self._seconds_per_token
        return None if spt is None else 1.0 / spt

    def record(self, tokens: int, seconds: float) -> None:
        """Learn from a call that read ``tokens`` tokens in ``seconds``."""
        if tokens <= 0 or seconds <= 0:
            return
        spt = seconds / tokens
        with self._lock:
            old = self._seconds_per_token
            self._seconds_per_token = spt if old is None else _SMOOTHING * spt + (1 - _SMOOTHING) * old
            self.calls += 1


_SMOOTHING = 0.5  # weight of the latest call in the throughput estimate


class RerankBudget:
    """Bounds what the reranker reads per question by the seconds a question may spend there.

    Candidates come in fused order (best first). The plan sends all of them at full length when they fit; else the
    ``breadth`` best (twice the passages an answer uses, as the caller decides) cut to the longest length that
    fits, then more at that length while they fit; when not even those fit at ``min_tokens`` each, fewer, but never
    fewer than ``min_passages`` (or all there are), which may then run over the budget. Until the reranker has been
    timed once, it sends ``min_passages`` at ``min_tokens`` (the least allowed) and learns from that call.
    ``seconds`` 0 means no limit.
    """

    def __init__(self, seconds: float, min_passages: int = 5, min_tokens: int = 64, max_tokens: int = 384,
                 instruction: str = "", estimate: Callable[[str], int] = estimate_tokens,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if min_passages < 1 or not 1 <= min_tokens <= max_tokens or seconds < 0:
            raise ValueError("need min_passages >= 1, 1 <= min_tokens <= max_tokens and seconds >= 0")
        self.seconds = seconds
        self.min_passages = min_passages
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.instruction = instruction
        self.estimate = estimate
        self.clock = clock
        self.throughput = Throughput()

    @classmethod
    def from_settings(cls, s: Any) -> RerankBudget:
        """The budget the settings describe (RAG_RERANK_SECONDS and its neighbours)."""
        return cls(s.rerank_seconds, s.rerank_min_passages, s.rerank_min_tokens, s.rerank_max_tokens,
                   s.rerank_instruction)

    def plan(self, reranker: Any, query: str, passages: Sequence[str], breadth: int) -> RerankPlan:
        """Choose how many of ``passages`` (best first) to send and how far to cut them."""
        _ensure_loaded(reranker)
        count_many = self._counter(reranker)
        lengths = count_many(list(passages))
        instruction = getattr(reranker, "instruction", None) or self.instruction
        prefix = count_many([_prompt_head(instruction) + query])[0]
        pair = count_many([_PROMPT_MIDDLE + _PROMPT_TAIL])[0]
        rate = self.throughput.tokens_per_second
        n, cap = choose(lengths, rate, self.seconds, prefix=prefix, pair=pair, floor=self.min_passages,
                        min_cap=self.min_tokens, max_cap=self.max_tokens, breadth=breadth)
        chosen = lengths[:n]
        tokens = _cost(chosen, cap, prefix, pair)
        return RerankPlan(total=len(passages), count=n, token_cap=cap, cut=sum(t > cap for t in chosen),
                          tokens=tokens, budget_seconds=self.seconds,
                          expected_seconds=None if rate is None else tokens / rate,
                          passages=cut_passages(list(passages[:n]), chosen, cap, count_many))

    def score(self, reranker: Any, query: str, plan: RerankPlan) -> list[float]:
        """Score the plan's passages (in its order), timing the call to learn the throughput."""
        _ensure_loaded(reranker)
        started = self.clock()
        scores = reranker.score(query, plan.passages)
        seconds = self.clock() - started
        self.throughput.record(plan.tokens, seconds)
        log.info("Reranked %s in %.2f s (budget %.1f s, expected %s); now ~%.0f tokens/s", plan.detail, seconds,
                 plan.budget_seconds, "-" if plan.expected_seconds is None else f"{plan.expected_seconds:.2f} s",
                 self.throughput.tokens_per_second or 0)
        return scores

    def _counter(self, reranker: Any) -> Callable[[list[str]], list[int]]:
        own = getattr(reranker, "count_tokens", None)
        return own if callable(own) else (lambda texts: [self.estimate(t) for t in texts])


def choose(lengths: Sequence[int], rate: float | None, seconds: float, *, prefix: int, pair: int, floor: int,
           min_cap: int, max_cap: int, breadth: int) -> tuple[int, int]:
    """(how many of the candidates, best first, to send; the token cap of each) for ``RerankBudget``'s rule.

    ``lengths``: each candidate's tokens; ``prefix``: the prompt's tokens read once per call (instruction, query);
    ``pair``: the prompt's tokens around each passage; ``rate``: tokens per second, None if not measured yet.
    """
    total = len(lengths)
    least = min(floor, total)
    if seconds <= 0:
        return total, max_cap
    if rate is None:
        return least, min_cap
    if _cost(lengths, max_cap, prefix, pair) <= rate * seconds:
        return total, max_cap
    room = rate * seconds

    def fits(n: int, cap: int) -> bool:
        return _cost(lengths[:n], cap, prefix, pair) <= room

    wanted = min(total, max(least, breadth))
    n = wanted if fits(wanted, min_cap) else max([least] + [k for k in range(least, wanted) if fits(k, min_cap)])
    lo, hi = min_cap, max_cap  # the longest cap at which those n fit (min_cap if none does)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(n, mid) else (lo, mid - 1)
    while n < total and fits(n + 1, lo):
        n += 1
    return n, lo


def _cost(lengths: Sequence[int], cap: int, prefix: int, pair: int) -> int:
    return prefix + sum(min(t, cap) + pair for t in lengths)


def cut_passages(texts: list[str], lengths: list[int], cap: int,
                 count_many: Callable[[list[str]], list[int]]) -> list[str]:
    """Each text cut to at most ``cap`` tokens as ``count_many`` counts them, at a word boundary where one is near."""
    out = list(texts)
    ratio = {i: cap / n for i, n in enumerate(lengths) if n > cap}
    for _ in range(6):  # a cut in proportion is nearly always right first time; shrink the few that aren't
        if not ratio:
            return out
        todo = list(ratio)
        for i in todo:
            out[i] = _cut_chars(texts[i], int(len(texts[i]) * ratio[i]))
        counts = count_many([out[i] for i in todo])
        ratio = {i: ratio[i] * cap / k * 0.97 for i, k in zip(todo, counts, strict=True) if k > cap}
    for i in ratio:  # pathological counts: fall back to a blunt cut
        out[i] = texts[i][: max(1, cap)]
    return out


def _cut_chars(text: str, end: int) -> str:
    end = max(1, min(end, len(text)))
    space = text.rfind(" ", 0, end + 1)
    return text[:space].rstrip() if space > end * 0.8 else text[:end]


def _ensure_loaded(reranker: Any) -> None:
    if getattr(reranker, "loaded", True) is False:
        reranker.load()


def format_prompt(instruction: str, query: str, passage: str) -> str:
    """The full official Qwen3-Reranker prompt for one (query, passage) pair, as text."""
    return _prompt_head(instruction) + query + _PROMPT_MIDDLE + passage + _PROMPT_TAIL


def _prompt_head(instruction: str) -> str:
    return _PROMPT_HEAD.format(system=SYSTEM_PROMPT, instruction=instruction)


def chat_template(instruction: str) -> str:
    """A Jinja chat template rendering a CrossEncoder ``query``/``document`` pair exactly as ``format_prompt``."""
    # Fixed text goes in as JSON string literals (valid Jinja literals), so any instruction text is safe.
    def lit(text: str) -> str:
        return "{{- " + json.dumps(text, ensure_ascii=False) + " -}}"

    def role(name: str) -> str:
        # sentence-transformers sends a role's content either as a string or as a list of text blocks.
        return (
            f'{{%- set {name} = messages | selectattr("role", "eq", "{name}") | map(attribute="content") | first -%}}'
            f'{{%- if {name} is not string %}}{{%- set {name} = {name} | map(attribute="text") | join("") -%}}'
            "{%- endif -%}"
        )

    return (
        role("query") + role("document")
        + lit(_prompt_head(instruction)) + "{{- query -}}" + lit(_PROMPT_MIDDLE) + "{{- document -}}"
        + lit(_PROMPT_TAIL)
    )


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

    def _state(self) -> _Loaded:
        self.load()
        if self._loaded is None:  # unreachable: load() sets it or raises
            raise RerankerUnavailable(f"the reranker {self.model_name!r} is not loaded")
        return self._loaded

    def _load(self) -> _Loaded:
        torch, cross_encoder_cls, logit_score_cls = _import_backend()
        device = self.requested_device or auto_device(torch)
        dtype = resolve_dtype(torch, self.requested_dtype, device)
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
        tokenizer = self._state().tokenizer
        enc = tokenizer(list(passages), add_special_tokens=False, return_offsets_mapping=True)
        cap = self.max_passage_tokens
        return [text if len(offsets) <= cap else text[: offsets[cap - 1][1]]
                for text, offsets in zip(passages, enc["offset_mapping"], strict=True)]

    def prompts(self, query: str, passages: Sequence[str]) -> list[str]:
        """The full prompt texts for each passage, after truncation."""
        return [format_prompt(self.instruction, query, p) for p in self.truncate(passages)]

    def encode(self, query: str, passages: Sequence[str]) -> PromptTokens:
        """Tokenize the prompts and split off the longest token prefix they all share (at most the query part)."""
        tokenizer = self._state().tokenizer
        # Everything up to the "<Document>" marker is the same for every passage.
        head = tokenizer(_prompt_head(self.instruction) + query + "\n", add_special_tokens=False)["input_ids"]
        full = tokenizer(self.prompts(query, passages), add_special_tokens=False)["input_ids"]
        # Token boundaries normally fall right before "<Document>", so the whole head is shared; if a tokenizer
        # merged across it, sharing fewer tokens is still exact. Every candidate keeps at least one own token.
        shared = min([len(head)] + [len(ids) - 1 for ids in full])
        for ids in full:
            shared = next((k for k in range(shared) if ids[k] != head[k]), shared)
        return PromptTokens(prefix=list(head[:shared]), suffixes=[list(ids[shared:]) for ids in full])

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
        prefix_kv = lean.prefix(tokens.prefix) if tokens.prefix else None
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
        from torch.nn.functional import linear, silu

        attn, mlp = layer.self_attn, layer.mlp
        rows, width, _ = x.shape
        h = _rms_norm(x, layer.input_layernorm.weight, self.eps)
        hq = h[:, -1:] if last_only else h
        if last_only:
            x, cos_q, sin_q, bias = x[:, -1:], cos[:, -1:], sin[:, -1:], bias[:, -1:]
        else:
            cos_q, sin_q = cos, sin
        # The attention scaling rides along with the query norm's per-row factor, for free.
        q = _rms_norm(linear(hq, attn.q_proj.weight).view(rows, -1, self.n_heads, self.head_dim),
                      attn.q_norm.weight, self.eps, scale=attn.scaling)
        k = _rms_norm(linear(h, attn.k_proj.weight).view(rows, width, self.n_kv, self.head_dim),
                      attn.k_norm.weight, self.eps)
        v = linear(h, attn.v_proj.weight).view(rows, width, self.n_kv, self.head_dim)
        q = _rope(q, cos_q, sin_q)
        k = _rope(k, cos, sin).transpose(1, 2)  # [rows, kv heads, width, head_dim]
        v = v.transpose(1, 2)
        keys, values = k, v
        if past is not None:
            keys = torch.cat([past[0].expand(rows, -1, -1, -1), k], 2)
            values = torch.cat([past[1].expand(rows, -1, -1, -1), v], 2)

        out = self._attend(q, keys, values, bias)
        x = x + linear(out, attn.o_proj.weight)

        h = _rms_norm(x, layer.post_attention_layernorm.weight, self.eps)
        act = silu(linear(h, mlp.gate_proj.weight), inplace=True).mul_(linear(h, mlp.up_proj.weight))
        x = x + linear(act, mlp.down_proj.weight)
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
_DTYPES = {"auto", "float32", "bfloat16", "float16"}


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
