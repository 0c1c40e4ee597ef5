"""The in-process Qwen3 reranker, on a tiny random Qwen3 model (tests/tiny_models.py): loading, the official prompt,
yes/no scoring, truncation, batching, the shared-prefix fast path, thread safety and load failures.

Random weights: these tests check the machinery, not the quality of the scores.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from sentence_transformers.cross_encoder.modules import LogitScore  # noqa: E402

import rag.models.providers.local_runtime as runtime  # noqa: E402
from rag.models.providers.local_reranker import Qwen3Reranker  # noqa: E402
from rag.models.reranker import RerankerUnavailable, chat_template, format_prompt  # noqa: E402

QUERY = "What is the capital of France?"
PASSAGES = [
    "Paris is the capital and largest city of France.",
    "The tenant must pay the rent deposit before the first day of the month.",
    "",
    "Solar panel battery energy report: revenue growth in the third quarter was strong. " * 6,
    "no",
    "The river bank holds water; the money bank holds deposits.",
]


@pytest.fixture(scope="module")
def reranker(tiny_qwen3_dir: Path) -> Qwen3Reranker:
    """One float32 reranker on the tiny model, shared by the tests that only read from it."""
    return Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", batch_size=3, device="cpu")


def naive_scores(r: Qwen3Reranker, query: str, passages: list[str]) -> list[float]:
    """The textbook computation: each full prompt through the transformers model, softmax([no, yes]) at the end."""
    model, tokenizer = r._state().model, r._state().tokenizer
    out = []
    with torch.inference_mode():
        for prompt in r.prompts(query, passages):
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            logits = model(input_ids=ids).logits[0, -1, [r.no_token_id, r.yes_token_id]]
            out.append(float(torch.softmax(logits.float(), dim=-1)[1]))
    return out


def spy_batches(r: Qwen3Reranker, monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], list[int]]]:
    """Record, for each batch the fast path runs, the fed width per row and the real tokens per row."""
    lean = r._state().lean
    seen: list[tuple[list[int], list[int]]] = []
    original = lean.last_logits

    def last_logits(ids, mask, prefix_kv, prefix_len):
        seen.append(([ids.shape[1]] * ids.shape[0], mask.sum(1).tolist()))
        assert bool(mask[:, -1].all()), "left padding: every row must end in a real token"
        return original(ids, mask, prefix_kv, prefix_len)

    monkeypatch.setattr(lean, "last_logits", last_logits)
    return seen


def test_loads_from_a_path_as_a_causal_lm_scored_by_yes_and_no(reranker: Qwen3Reranker) -> None:
    reranker.load()
    state = reranker._state()
    tokenizer = state.tokenizer
    assert tokenizer.encode("yes", add_special_tokens=False) == [reranker.yes_token_id]
    assert tokenizer.encode("no", add_special_tokens=False) == [reranker.no_token_id]
    assert reranker.yes_token_id != reranker.no_token_id
    # sentence-transformers recognised the causal LM: text-generation + LogitScore on those very tokens.
    transformer, scorer = state.cross_encoder[0], state.cross_encoder[-1]
    assert transformer.transformer_task == "text-generation"
    assert isinstance(scorer, LogitScore)
    assert (scorer.true_token_id, scorer.false_token_id) == (reranker.yes_token_id, reranker.no_token_id)
    assert tokenizer.padding_side == "left"
    assert state.lean is not None  # the tiny model is plain Qwen3, so the fast path is used
    assert reranker.dtype == torch.float32 and next(state.model.parameters()).dtype == torch.float32


def test_the_prompt_is_the_official_one_and_the_cross_encoder_feeds_the_same_tokens(reranker: Qwen3Reranker) -> None:
    prompt = format_prompt("Find the answer", "Where?", "Here.")
    assert prompt == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
        "<Instruct>: Find the answer\n<Query>: Where?\n<Document>: Here.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    # The CrossEncoder renders a (query, passage) pair through our chat template to exactly these token ids.
    ce = reranker._state().cross_encoder
    features = ce.preprocess([(QUERY, PASSAGES[0])])
    tokens = reranker.encode(QUERY, [PASSAGES[0]])
    assert features["input_ids"][0].tolist() == tokens.full(0)


def test_chat_template_survives_awkward_instructions(tiny_qwen3_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    instruction = 'Say "yes" if {{ it }} answers {% raw %}\\n the question\nor \'no\' ✓'
    messages = [{"role": "query", "content": "q {{ x }}"}, {"role": "document", "content": "d {% y %}"}]
    rendered = tokenizer.apply_chat_template(messages, chat_template=chat_template(instruction), tokenize=False)
    assert rendered == format_prompt(instruction, "q {{ x }}", "d {% y %}")


def test_scores_are_probabilities_in_input_order(reranker: Qwen3Reranker) -> None:
    scores = reranker.score(QUERY, PASSAGES)
    assert len(scores) == len(PASSAGES)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # Random weights, yet the inputs must be told apart (otherwise the order checks below prove nothing).
    assert max(scores) - min(scores) > 0.1

    order = list(range(len(PASSAGES)))
    random.Random(7).shuffle(order)
    shuffled = reranker.score(QUERY, [PASSAGES[i] for i in order])
    assert shuffled == pytest.approx([scores[i] for i in order], abs=1e-5)


def test_empty_candidate_list_scores_nothing_and_loads_nothing(tiny_qwen3_dir: Path) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir))
    assert r.score(QUERY, []) == []
    assert not r.loaded


def test_fast_path_equals_the_full_prompt_computation(reranker: Qwen3Reranker) -> None:
    fast = reranker.score(QUERY, PASSAGES)
    assert fast == pytest.approx(naive_scores(reranker, QUERY, PASSAGES), abs=1e-4)
    assert fast == pytest.approx(reranker.score_uncached(QUERY, PASSAGES), abs=1e-4)


def test_fast_path_shares_the_query_prefix(reranker: Qwen3Reranker) -> None:
    tokens = reranker.encode(QUERY, PASSAGES)
    tokenizer = reranker._state().tokenizer
    head = tokenizer(format_prompt(reranker.instruction, QUERY, "").split("<Document>")[0],
                     add_special_tokens=False)["input_ids"]
    assert tokens.prefix == head  # system + instruction + query: computed once
    for i, prompt in enumerate(reranker.prompts(QUERY, PASSAGES)):
        assert tokens.full(i) == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(tokens.suffixes[i]).startswith("<Document>: ")


def test_cross_encoder_path_keeps_only_last_position_logits(reranker: Qwen3Reranker,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = reranker._state().model
    calls: list[dict] = []
    original = model.forward

    def forward(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    reranker.score_uncached(QUERY, PASSAGES[:3])
    assert calls and all(c.get("logits_to_keep") == 1 for c in calls)
    assert all(bool(c["attention_mask"][:, -1].all()) for c in calls)  # left padded


def test_long_passages_are_cut_to_max_passage_tokens(tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", max_passage_tokens=16)
    tokenizer = r._state().tokenizer
    long = "The landlord returns the deposit within thirty days after the tenant moves out. " * 40
    short = "Paris is the capital."
    assert len(tokenizer.encode(long, add_special_tokens=False)) > 300

    cut = r.truncate([long, short])
    assert long.startswith(cut[0]) and len(tokenizer.encode(cut[0], add_special_tokens=False)) == 16
    assert cut[1] == short  # short passages are untouched

    overhead = len(r.encode(QUERY, [""]).suffixes[0])  # "<Document>: " + the closing turns
    seen = spy_batches(r, monkeypatch)
    scores = r.score(QUERY, [long, short])
    widths, real = seen[0]
    assert max(real) <= overhead + 16 + 1  # +1: the passage's first token may merge with the space before it
    assert max(widths) == max(real)
    # The rest of the prompt is intact, and the model saw exactly the cut passage.
    assert r.prompts(QUERY, [long])[0].endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert scores[0] == pytest.approx(Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32").score(QUERY, cut)[0],
                                      abs=1e-5)


def test_batches_group_similar_lengths(tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", batch_size=2)
    passages = ["word " * n for n in (40, 3, 25, 1, 10)]
    seen = spy_batches(r, monkeypatch)
    scores = r.score(QUERY, passages)

    assert [len(w) for w, _ in seen] == [2, 2, 1]  # 5 passages in batches of at most 2
    lengths = [n for _, real in seen for n in real]
    assert lengths == sorted(lengths)  # shortest first, so each batch holds neighbours in length
    assert [w[0] for w, _ in seen] == [max(real) for _, real in seen]  # padded only to the batch's longest
    # Padding and grouping don't change the scores.
    one_by_one = [Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32", batch_size=1).score(QUERY, [p])[0]
                  for p in passages]
    assert scores == pytest.approx(one_by_one, abs=1e-5)


def test_bfloat16_runs_and_stays_close_to_float32(tiny_qwen3_dir: Path, reranker: Qwen3Reranker) -> None:
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="bfloat16")
    assert r.dtype == torch.bfloat16
    assert next(r._state().model.parameters()).dtype == torch.bfloat16
    bf16 = r.score(QUERY, PASSAGES)
    assert bf16 == pytest.approx(reranker.score(QUERY, PASSAGES), abs=0.05)
    assert bf16 == pytest.approx(r.score_uncached(QUERY, PASSAGES), abs=0.05)


def test_auto_dtype_is_bfloat16_only_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.resolve_dtype(torch, "auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_dtype(torch, "auto", "cpu") == torch.float32
    assert runtime.resolve_dtype(torch, "float16", "cpu") == torch.float16  # an explicit choice wins
    assert runtime.resolve_dtype(torch, "auto", "mps") == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        Qwen3Reranker(dtype="int4")


def test_concurrent_first_calls_load_the_model_once(tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    original = Qwen3Reranker._load

    def slow_load(self):
        loads.append(threading.get_ident())
        time.sleep(0.2)  # widen the window in which other threads arrive
        return original(self)

    monkeypatch.setattr(Qwen3Reranker, "_load", slow_load)
    r = Qwen3Reranker(str(tiny_qwen3_dir), dtype="float32")
    start = threading.Barrier(6)
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(r.score(QUERY, PASSAGES[:3]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(loads) == 1
    assert len(results) == 6 and all(res == pytest.approx(results[0], abs=1e-6) for res in results)


def test_missing_model_raises_reranker_unavailable_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-reranker"
    r = Qwen3Reranker(str(missing))
    with pytest.raises(RerankerUnavailable, match="RAG_RERANK_MODEL") as info:
        r.score(QUERY, ["a passage"])
    assert str(missing) in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert not r.loaded
