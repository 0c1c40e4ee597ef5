"""A stand-in for Qwen3-Reranker-0.6B in benchmarks: its exact shape, random weights, Qwen3's real tokenizer.

No reranker weights can be downloaded here, so timings use a ``Qwen3ForCausalLM`` with the model's config.json and
random weights; token counts are real because the tokenizer is Qwen3's own vocabulary and merges
(``../shared/evaldata/qwen_tokenizer/tokenizer.json``, with ``<think>``/``</think>`` put back at their Qwen3 ids).
Timings are real; scores mean nothing, and agreement between number formats measured on it is only indicative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The evaluation data sits in ../shared beside the main checkout (worktrees are one level deeper).
EVALDATA = next((p / "shared" / "evaldata" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "evaldata").is_dir()), ROOT.parent / "shared" / "evaldata")
QWEN_TOKENIZER = EVALDATA / "qwen_tokenizer" / "tokenizer.json"

# Qwen/Qwen3-Reranker-0.6B's config.json, minus the weights.
QWEN3_RERANKER_06B = dict(
    hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
    intermediate_size=3072, vocab_size=151669, tie_word_embeddings=True, max_position_embeddings=40960,
    rope_theta=1000000.0, rms_norm_eps=1e-6,
)
_QWEN3_ADDED = {151667: "<think>", 151668: "</think>"}  # Qwen3's additions to the Qwen2 vocabulary
_MARKER = "random_qwen3_reranker.json"


def qwen3_tokenizer(tokenizer_json: Path = QWEN_TOKENIZER) -> Any:
    """Qwen3's tokenizer as a transformers fast tokenizer (left padding, the chat tokens special)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    for token_id, text in _QWEN3_ADDED.items():
        vocab.pop(f"[PAD{token_id}]", None)
        vocab[text] = token_id
        spec["added_tokens"].append({"id": token_id, "content": text, "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": False})
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"], padding_side="left", model_max_length=40960,
        clean_up_tokenization_spaces=False)


def build_model_dir(folder: Path, tokenizer_json: Path = QWEN_TOKENIZER) -> Path:
    """Save (once) the random-weight 0.6B-shaped reranker and Qwen3's tokenizer under ``folder``; return it.

    Weights are stored in bfloat16 (half the disk); loading as float32 widens them exactly.
    """
    folder = Path(folder)
    if (folder / _MARKER).exists():
        return folder
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen3_tokenizer(tokenizer_json)
    torch.manual_seed(0)
    config = Qwen3Config(**QWEN3_RERANKER_06B, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / _MARKER).write_text(json.dumps({"shape": "Qwen3-Reranker-0.6B", "weights": "random", "seed": 0}))
    return folder
