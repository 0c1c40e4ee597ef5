"""The in-process reranker's number format: bf16 where the hardware has it; else int8 weights on a CPU, kept by "auto"
only when its scores agree with float32's; else float32. On the tiny random Qwen3 (tests/tiny_models.py): these
tests check the choice and the machinery, not the quality of the scores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

import rag.models.providers.local_reranker as local  # noqa: E402
import rag.models.providers.local_runtime as runtime  # noqa: E402
from rag.core.config import Settings  # noqa: E402
from rag.models.factory import make_reranker  # noqa: E402
from rag.models.providers.local_reranker import Qwen3Reranker, int8_wanted  # noqa: E402

QUERY = "What is the capital of France?"
PASSAGES = ["Paris is the capital and largest city of France.", "The tenant must pay the rent deposit.",
            "Solar panel battery energy report: revenue growth in the third quarter was strong. " * 4, "no"]


def int8_layers(r: Qwen3Reranker) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    return sum(isinstance(m, Int8Linear) for m in r._state().model.modules())


@pytest.mark.parametrize(("requested", "device", "bf16", "expected"), [
    ("auto", "cpu", True, False),     # bf16 here: that is faster and closer to float32
    ("auto", "cpu", False, True),     # an AVX2 CPU: try int8
    ("auto", "mps", False, False),    # int8 dynamic quantization is for CPUs
    ("int8", "cpu", True, True),      # asked for
    ("int8", "cuda", False, False),   # not on a GPU
    ("float32", "cpu", False, False),
    ("bfloat16", "cpu", False, False),
])
def test_int8_is_tried_on_cpus_without_bf16(monkeypatch: pytest.MonkeyPatch, requested: str, device: str,
                                            bf16: bool, expected: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: bf16)
    assert int8_wanted(torch, requested, device) is expected


def test_int8_runs_the_fast_path_and_scores_like_float32(tiny_qwen3_dir: Path) -> None:
    fp32 = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", device="cpu")
    int8 = Qwen3Reranker(str(tiny_qwen3_dir), dtype="int8", device="cpu")
    assert int8.dtype == torch.qint8 and int8_layers(int8) == 7 * 2  # q k v o gate up down, 2 layers
    assert int8._state().lean is not None and int8_layers(fp32) == 0
    reference, scores = fp32.score(QUERY, PASSAGES), int8.score(QUERY, PASSAGES)
    assert all(0 <= s <= 1 for s in scores) and scores != reference
    # Near float32 (the tiny model's wide random weights make its activations harder to quantize than a real one's).
    assert max(abs(a - b) for a, b in zip(reference, scores, strict=True)) < 0.15


@pytest.mark.parametrize(("tolerance", "speedup", "kept"), [
    (1.0, 0.0, True),    # agrees and is fast enough: int8
    (0.0, 0.0, False),   # its scores are off float32's: float32
    (1.0, 1e9, False),   # not faster here (plain AVX2 may not be): float32
])
def test_auto_keeps_int8_only_when_it_agrees_and_is_faster(tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture, tolerance: float,
                                                           speedup: float, kept: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(local, "INT8_TOLERANCE", tolerance)
    monkeypatch.setattr(local, "INT8_MIN_SPEEDUP", speedup)
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="auto", device="cpu")
    with caplog.at_level("INFO", logger="rag.models.providers.local_reranker"):
        r.load()
    assert (r.dtype == torch.qint8) is kept and (int8_layers(r) > 0) is kept
    assert (r.dtype == torch.float32) is not kept
    assert ("Reranker weights in int8" in caplog.text) is kept and ("Reranker in float32" in caplog.text) is not kept
    assert len(r.score(QUERY, PASSAGES)) == len(PASSAGES)


def test_the_setting_reaches_the_reranker(tiny_qwen3_dir: Path) -> None:
    r = make_reranker(Settings.from_env({"RAG_RERANK_DTYPE": "int8", "RAG_RERANK_MODEL": str(tiny_qwen3_dir)}))
    assert r.requested_dtype == "int8"


def test_count_tokens_uses_the_rerankers_tokenizer(tiny_qwen3_dir: Path) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", device="cpu")
    tokenizer = r._state().tokenizer
    assert r.count_tokens(PASSAGES) == [len(tokenizer.encode(p, add_special_tokens=False)) for p in PASSAGES]


def test_a_querys_passages_in_several_calls_score_as_in_one_and_share_the_prefix(
        tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", device="cpu", batch_size=2)
    whole = r.score(QUERY, PASSAGES)
    lean = r._state().lean
    prefixes = []
    original = lean.prefix
    monkeypatch.setattr(lean, "prefix", lambda ids: prefixes.append(ids) or original(ids))
    parts = r.score(QUERY, PASSAGES[:2]) + r.score(QUERY, PASSAGES[2:])
    assert parts == pytest.approx(whole, abs=1e-5) and prefixes == []  # the same query: its prefix was kept
    r.score("Another question?", PASSAGES[:1])
    assert len(prefixes) == 1
