"""Test doubles: tiny random Qwen3 models built on the spot, for the in-process backends.

``build_tiny_qwen3`` trains a small byte-level BPE tokenizer (Qwen2-style pre-tokenizer, left padding, the Qwen3
chat tokens and a Qwen3-style chat template) and saves it next to a 2-layer ``Qwen3ForCausalLM`` with random
weights. The pair loads in about a second and exercises the real code paths: chat template, truncation,
batching, yes/no scoring, streaming generation. The weights are random: nothing these models output says
anything about quality.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

# The special tokens of Qwen3's tokenizer that our code relies on.
PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK = "<think>"
END_THINK = "</think>"

# Qwen2/Qwen3's pre-tokenization regex, so token boundaries behave like the real tokenizer's.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# A Qwen3-style chat template: system/user/assistant turns, add_generation_prompt, and enable_thinking=False
# opening the assistant turn with an empty think block (as Qwen3's own template does).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set content = message['content'] %}"
    "{%- else %}{%- set content = message['content'] | map(attribute='text') | join('') %}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

_MARKER = "tiny_qwen3.json"

_WORDS = (
    "the a of to in is was for on that with as by at from it this be are or an which document page passage "
    "question answer query instruct judge whether meets requirements based provided note can only yes no "
    "system user assistant think paris france capital city river bank money water energy solar panel battery "
    "contract clause tenant landlord rent deposit invoice total amount due date report revenue growth quarter "
    "protein cell gene enzyme reaction model training data loss accuracy network layer token vector search"
).split()


def _corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    """A few hundred generated lines that put "yes" and "no" (alone and in sentences) in front of the trainer."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ter", "son", "via", "bel", "dra", "qu", "is", "ent", "ron", "pha", "gel", "stu"]
    # Made-up words widen the vocabulary towards ~1000 merges; real words keep prompts readable.
    vocab = list(_WORDS) + ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(400)]
    lines = []
    for i in range(n_lines):
        words = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 14)))
        lines.append(f"{words.capitalize()}. Answer {i}: " + rng.choice(["yes", "no"]))
        lines.append(rng.choice(["yes", "no"]))
        lines.append(f"<Instruct>: judge\n<Query>: {words}?\n<Document>: {words}.")
    lines += ["yes", "no", "Yes", "No", "yes no yes no"] * 50
    return lines


def _train_tokenizer(vocab_size: int = 1000):
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    # As in Qwen3's tokenizer, <think> and </think> are atomic added tokens that decoding keeps.
    tok.add_tokens([AddedToken(THINK, special=False, normalized=False),
                    AddedToken(END_THINK, special=False, normalized=False)])

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    for word in ("yes", "no"):
        if len(fast.encode(word, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer failed to learn {word!r} as a single token")
    return fast


def build_tiny_qwen3(dir: Path) -> Path:  # noqa: A002 - the name the callers use
    """Build (once) a tiny random ``Qwen3ForCausalLM`` and its tokenizer under ``dir``; return ``dir``."""
    dir = Path(dir)
    if (dir / _MARKER).exists():
        return dir

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    config = Qwen3Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # Wider than the default 0.02 so that random yes/no logits differ visibly between inputs.
        initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    model.save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    (dir / _MARKER).write_text(json.dumps({"vocab_size": len(tokenizer), "seed": 0}))
    return dir


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 causal LM + tokenizer saved to a temp dir, built once per test session."""
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


_VL_MARKER = "tiny_qwen3_vl.json"


def build_tiny_qwen3_vl(dir: Path) -> Path:  # noqa: A002 - the name the callers use
    """Build (once) a tiny random Qwen3-VL (``Qwen3VLModel``: a 2-layer vision tower and a 2-layer text model), its
    tokenizer with the vision tokens and its image processor under ``dir``; return ``dir``. Test double for the
    in-process page-image embedder: the real code path (image processor, image tokens, pooling), random output."""
    dir = Path(dir)
    if (dir / _VL_MARKER).exists():
        return dir

    import torch
    from transformers import Qwen3VLConfig, Qwen3VLModel
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    vision = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END, *vision]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in vision}
    config = Qwen3VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "max_position_embeddings": 4096,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                         "mrope_interleaved": True}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    Qwen3VLModel(config).eval().save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                             size={"shortest_edge": 32 * 32 * 4, "longest_edge": 512 * 512}).save_pretrained(dir)
    (dir / _VL_MARKER).write_text(json.dumps({"vocab_size": len(tokenizer), "seed": 0}))
    return dir
