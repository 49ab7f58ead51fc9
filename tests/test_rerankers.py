"""Rerankers on real (tiny, randomly initialised) models with the real built-in tokenizers.

* Cross-encoder: a 2-layer, 32-wide BertForSequenceClassification with the splade-tiny
  tokenizer. Batched, length-sorted scores must equal the logits of the same model run on one
  pair at a time (pairs of very different lengths, so a padding or reordering bug shows).
* LLM yes/no: a 2-layer, 64-wide LlamaForCausalLM with SmolLM2's tokenizer and chat template.
  Batched scores must equal one-pair-at-a-time scores and a hand computation of
  logit(Yes) - logit(No) from a plain forward pass on the rendered prompt.
* ``load_reranker`` dispatch and its one-line ``ModelError``s.
* ``slow``: the real SmolLM2-135M-Instruct judge on easy pairs (reports ordering and pairs/s).

Every check forces float32 (``WB_DTYPE=float32``) so equality holds to 1e-4.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from workbench.encoders.rerankers import (
    CrossEncoderReranker,
    LLMYesNoReranker,
    Reranker,
    load_reranker,
)
from workbench.errors import ModelError
from workbench.models.cache import is_installed, resolve_model_path
from workbench.models.registry import RoleModel

LLM_NAME = "smollm2-135m-instruct"

LONG = " ".join(f"word{i} alpha beta gamma" for i in range(250))  # > 512 tokens: truncated
PAIRS = [
    ("what is a heap", "A heap is a binary tree where every parent is no larger than its children. " * 3),
    ("what is a heap", "no"),
    ("how to sleep in python", LONG),
    ("x", "time.sleep(secs) suspends execution of the calling thread for the given number of seconds."),
    ("a much longer query about copying directory trees recursively with shutil", "copytree"),
    ("what is a heap", "heapq implements the heap queue algorithm, also known as the priority queue."),
    ("how to sleep in python", "Sleep."),
]


@pytest.fixture(autouse=True)
def float32(monkeypatch):
    monkeypatch.setenv("WB_DTYPE", "float32")


def role_for(path, name=None) -> RoleModel:
    return RoleModel("reranker", name or str(path), str(path), name or str(path), False)


# -- cross-encoder ------------------------------------------------------------------------
def _tiny_bert(dest, num_labels: int):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("splade-tiny"))
    torch.manual_seed(num_labels)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=num_labels,
        initializer_range=0.2,  # spread the logits so orderings are not ties
    )
    BertForSequenceClassification(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("ce"), num_labels=1)


@pytest.fixture(scope="module")
def ce2_dir(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("ce2"), num_labels=2)


def _unbatched_ce_logits(path, pairs, max_length=512):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    rows = []
    with torch.inference_mode():
        for q, p in pairs:
            enc = tokenizer(q, p, truncation="only_second", max_length=max_length, return_tensors="pt")
            rows.append(model(**enc).logits[0].numpy())
    return np.stack(rows)


def test_cross_encoder_batched_equals_one_pair_at_a_time(ce_dir):
    reranker = load_reranker(role_for(ce_dir))
    assert isinstance(reranker, CrossEncoderReranker) and isinstance(reranker, Reranker)
    scores = reranker.score_pairs(PAIRS)
    assert scores.dtype == np.float32 and scores.shape == (len(PAIRS),)
    expected = _unbatched_ce_logits(ce_dir, PAIRS)[:, 0]
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)
    assert len(set(np.round(scores, 4).tolist())) == len(PAIRS)  # distinct, so order is tested

    # outputs follow inputs: reversing the inputs reverses the outputs
    np.testing.assert_allclose(reranker.score_pairs(PAIRS[::-1]), scores[::-1], atol=1e-5, rtol=0)
    # score() is score_pairs() for one query
    passages = [p for q, p in PAIRS if q == "what is a heap"]
    mine = [s for (q, _), s in zip(PAIRS, scores) if q == "what is a heap"]
    np.testing.assert_allclose(reranker.score("what is a heap", passages), mine, atol=1e-5, rtol=0)
    assert reranker.score("q", []).shape == (0,)


def test_cross_encoder_small_batches_and_long_query(ce_dir):
    reranker = CrossEncoderReranker(str(ce_dir), batch_tokens=64)  # forces many small batches
    expected = _unbatched_ce_logits(ce_dir, PAIRS)[:, 0]
    np.testing.assert_allclose(reranker.score_pairs(PAIRS), expected, atol=1e-4, rtol=0)
    # a query longer than the window is cut (to half of it), not an error
    values = reranker.score(LONG, ["short passage", LONG])
    assert np.isfinite(values).all()


def test_cross_encoder_two_label_head_scores_log_odds(ce2_dir):
    reranker = load_reranker(role_for(ce2_dir))
    logits = _unbatched_ce_logits(ce2_dir, PAIRS)
    np.testing.assert_allclose(reranker.score_pairs(PAIRS), logits[:, 1] - logits[:, 0], atol=1e-4, rtol=0)


# -- LLM yes/no ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    if not is_installed(LLM_NAME):
        pytest.skip(f"{LLM_NAME} is not installed (run `wb models install`): its tokenizer is needed")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(LLM_NAME))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
    )
    dest = tmp_path_factory.mktemp("llm")
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def _hand_scores(path, reranker: LLMYesNoReranker, pairs):
    """logit(yes) - logit(no) at the last position of a plain forward pass on each rendered prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    yes, no = reranker.answer_tokens
    out = []
    with torch.inference_mode():
        for q, p in pairs:
            text = reranker.render(q, p)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            logits = model(input_ids=ids).logits[0, -1]
            out.append(float(logits[yes] - logits[no]))
    return np.array(out)


def test_llm_batched_equals_single_and_hand_computation(llm_dir):
    short_pairs = [(q, p) for q, p in PAIRS if p is not LONG]  # within max_length: no truncation
    reranker = load_reranker(role_for(llm_dir))
    assert isinstance(reranker, LLMYesNoReranker) and isinstance(reranker, Reranker)
    tok = reranker.tokenizer
    # chat template ends with "<|im_start|>assistant\n", so the bare words are the answer tokens
    assert reranker.render("Q", "P").endswith("<|im_start|>assistant\n")
    assert reranker.answer_tokens == (
        tok.encode("Yes", add_special_tokens=False)[0],
        tok.encode("No", add_special_tokens=False)[0],
    )
    batched = reranker.score_pairs(short_pairs)
    single = np.array([reranker.score_pairs([pair])[0] for pair in short_pairs])
    assert batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    np.testing.assert_allclose(batched, _hand_scores(llm_dir, reranker, short_pairs), atol=1e-4, rtol=0)
    assert len(set(np.round(batched, 4).tolist())) == len(short_pairs)
    np.testing.assert_allclose(reranker.score_pairs(short_pairs[::-1]), batched[::-1], atol=1e-4, rtol=0)


def test_llm_truncates_only_the_passage(llm_dir):
    reranker = LLMYesNoReranker(str(llm_dir), max_length=120)
    tok = reranker.tokenizer
    fixed = len(tok(reranker.render("how to sleep in python", ""), add_special_tokens=False)["input_ids"])
    assert fixed < 120
    ids = reranker.tokenize([("how to sleep in python", LONG), ("what is a heap", "no")])
    assert len(ids[0]) <= 120 and len(ids[0]) >= 120 - 4  # filled up to the window
    text = tok.decode(ids[0])
    tail = reranker.question + "<|im_end|>\n<|im_start|>assistant\n"
    assert text.endswith(tail) and "Query: how to sleep in python\nPassage: word0 alpha" in text
    # the ids are exactly those of a rendered prompt, so the hand computation still agrees
    cut = text[text.index("Passage: ") + len("Passage: ") : text.index("\n" + reranker.question)]
    rendered = reranker.render("how to sleep in python", cut)
    assert ids[0] == tok(rendered, add_special_tokens=False)["input_ids"]
    pairs = [("how to sleep in python", LONG), ("what is a heap", "no")]
    scores = reranker.score_pairs(pairs)
    hand = _hand_scores(llm_dir, reranker, [("how to sleep in python", cut), ("what is a heap", "no")])
    np.testing.assert_allclose(scores, hand, atol=1e-4, rtol=0)


def test_llm_plain_prompt_without_chat_template(llm_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(llm_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = plain / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    reranker = LLMYesNoReranker(str(plain))
    assert reranker.render("Q", "P").endswith("\nAnswer:")
    tok = reranker.tokenizer
    assert reranker.answer_tokens == (
        tok.encode(" Yes", add_special_tokens=False)[0],
        tok.encode(" No", add_special_tokens=False)[0],
    )
    pairs = PAIRS[:2]
    np.testing.assert_allclose(
        reranker.score_pairs(pairs),
        [reranker.score_pairs([p])[0] for p in pairs],
        atol=1e-4,
        rtol=0,
    )


def test_llm_role_loads_the_yes_no_reranker(llm_dir):
    reranker = load_reranker(RoleModel("reranker", "llm", str(llm_dir), "llm", True))
    assert isinstance(reranker, LLMYesNoReranker)


# -- load_reranker errors -----------------------------------------------------------------
def test_unknown_architecture_is_a_model_error(tmp_path):
    config = {"architectures": ["FooBarModel"], "model_type": "bert"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as info:
        load_reranker(role_for(tmp_path))
    assert "FooBarModel" in str(info.value) and "\n" not in str(info.value)


def test_maxsim_and_broken_folders_are_model_errors(tmp_path):
    with pytest.raises(ModelError):
        load_reranker(RoleModel("reranker", "maxsim", None, "maxsim", True))
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"], "model_type": "bert"})
    )
    with pytest.raises(ModelError) as info:
        load_reranker(role_for(tmp_path))  # no weights, no tokenizer
    assert "\n" not in str(info.value)


# -- the real zero-shot judge -------------------------------------------------------------
EASY = [
    (
        "What is the capital of France?",
        "Paris is the capital and most populous city of France.",
        "Bananas are a good source of potassium and grow in tropical climates.",
    ),
    (
        "How do I remove a directory tree in Python?",
        "shutil.rmtree(path) deletes an entire directory tree; path must point to a directory.",
        "The Eiffel Tower was completed in 1889 for the World's Fair.",
    ),
    (
        "Who wrote Romeo and Juliet?",
        "Romeo and Juliet is a tragedy written by William Shakespeare early in his career.",
        "Photosynthesis converts light energy into chemical energy in plants.",
    ),
]


@pytest.mark.slow
def test_smollm2_judge_easy_pairs_report(monkeypatch):
    """SmolLM2-135M-Instruct, default dtype: finite scores; ordering and pairs/s are printed.

    Observed (bf16, 2 busy CPU cores): relevant > irrelevant on all 3 pairs, by 0.4-0.7 logits
    (e.g. -2.20 vs -2.79); a 135M model is a weak judge, so the order is printed, not asserted.
    """
    if not is_installed(LLM_NAME):
        pytest.skip(f"{LLM_NAME} is not installed (run `wb models install`)")
    monkeypatch.delenv("WB_DTYPE", raising=False)
    reranker = load_reranker(RoleModel("reranker", "llm", resolve_model_path(LLM_NAME), "llm", True))
    pairs = [(q, p) for q, good, bad in EASY for p in (good, bad)]
    reranker.score_pairs(pairs[:2])  # warm-up
    t0 = time.perf_counter()
    scores = reranker.score_pairs(pairs)
    elapsed = time.perf_counter() - t0
    assert np.isfinite(scores).all()
    for k, (q, _, _) in enumerate(EASY):
        good, bad = scores[2 * k], scores[2 * k + 1]
        print(f"{q!r}: relevant {good:+.3f} vs irrelevant {bad:+.3f} -> {'ok' if good > bad else 'WRONG'}")
    print(f"{len(pairs) / elapsed:.1f} pairs/s ({reranker.dtype})")
