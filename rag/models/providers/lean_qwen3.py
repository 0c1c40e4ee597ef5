"""A lean forward pass of a loaded ``Qwen3ForCausalLM`` for Qwen3-Reranker's yes/no scoring: the shared prompt prefix
computed once, the last layer for the last position only, and just the ``no``/``yes`` rows of the output matrix.
Runs on the loaded model's own weights (int8 layers included); agrees with the plain forward pass to float
rounding (~1e-6 in float32)."""

from __future__ import annotations

from typing import Any


class LeanQwen3:
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
