"""Yes/no LLM reranker runs (`wb train llm-reranker`) on a tiny random LlamaForCausalLM with the real
SmolLM2 tokenizer (its chat template): LoRA training lowers the loss, the merged folder serves through
load_reranker -> LLMYesNoReranker with exactly the trainer's score, stop + resume reproduces the loss
curve, and the CLI runs end to end (bad input: exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiny_models import run_wb, topic_groups

pytest.importorskip("accelerate")
pytest.importorskip("peft")

LLM_NAME = "smollm2-135m-instruct"
LONG = " ".join(f"word{i} alpha beta gamma" for i in range(60))  # cut to max_length (96 tokens)
PAIRS = [
    ("cats question 0", "the answer: cats 0"),
    ("cats question 0", "unrelated notes, chess 0"),
    ("rivers question 7", "the answer: rivers 7 " + LONG),
    ("a much longer query about engines and how they turn fuel into motion", "bread"),
]
INSTRUCTION = "Decide whether the Passage answers the Query. Say Yes or No."


@pytest.fixture(autouse=True)
def float32(monkeypatch):
    monkeypatch.setenv("WB_DTYPE", "float32")  # served in float32, so scores agree to 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer, 32-wide LlamaForCausalLM with SmolLM2's tokenizer, and 24 groups (3 negatives)."""
    from workbench.models.cache import is_installed, resolve_model_path

    if not is_installed(LLM_NAME):
        pytest.skip(f"{LLM_NAME} is not installed (run `wb models install`): its tokenizer is needed")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny_llm_rr")
    base = root / "base"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(LLM_NAME))
    assert tokenizer.chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,  # at 0.02 the tied yes/no rows span < 1 logit: the scores saturate
    )
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def _config(base: Path, data: Path, name: str, **options):
    from trainers.config import LlmRerankerConfig

    settings = dict(batch_size=4, max_steps=10, lr=5e-3, warmup_ratio=0.0, save_every=100, group_size=4,
                    max_length=96, instruction=INSTRUCTION)
    settings.update(options)
    return LlmRerankerConfig(data=str(data), base=str(base), name=name, **settings)


def _losses(run) -> list[float]:
    return [e["loss"] for e in run.events() if e["event"] == "step"]


def test_lora_training_lowers_the_loss_and_the_served_score_is_the_trained_one(tiny, tmp_path):
    from trainers.llm_reranker import LlmRerankerTrainer
    from trainers.loop import run_training
    from trainers.runs import new_run
    from workbench.encoders.rerankers import LLMYesNoReranker, load_reranker
    from workbench.models.registry import RoleModel

    base, data = tiny
    # fp32 training: the comparison below is of the two scoring paths, not of bf16 against fp32
    cfg = _config(base, data, "llm", max_steps=12, eval_data=str(data), eval_every=100, mixed_precision="no")
    run = new_run(tmp_path, "llm", cfg.to_json())
    trainer = LlmRerankerTrainer(cfg)
    trained: dict = {}

    def at_the_end(step, _run):
        if step == 12:  # after the last optimizer step, before save_final merges the adapter
            trained["scores"] = trainer.score_pairs(trainer.scorer, PAIRS, "cpu")

    status = run_training(run, trainer, on_step=at_the_end)
    assert status["state"] == "finished" and status["step"] == 12 and status["lora"] is True
    losses = _losses(run)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    evals = [e for e in run.events() if e["event"] == "eval"]
    assert evals and evals[-1]["mrr"] > 0.9  # 4 candidates: chance is about 0.52

    model = run.model_dir
    meta = json.loads((model / "wb_model.json").read_text())
    assert meta["kind"] == "llm-reranker" and meta["instruction"] == INSTRUCTION and meta["max_length"] == 96
    assert (model / "adapter" / "adapter_config.json").exists()
    assert json.loads((model / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    served = load_reranker(RoleModel("reranker", str(model), str(model), "runs/llm", False), device="cpu")
    assert isinstance(served, LLMYesNoReranker)
    # the prompt settings come from wb_model.json: the long pair is cut to 96 tokens as in training
    assert served.instruction == INSTRUCTION and served.max_length == 96
    assert served.tokenize(PAIRS) == trainer.prompt.tokenize(PAIRS)
    assert max(len(x) for x in served.tokenize(PAIRS)) == 96
    scores = served.score_pairs(PAIRS)
    np.testing.assert_allclose(scores, trained["scores"], atol=1e-4, rtol=0)
    # and training changed the judge: the untrained base scores these pairs differently
    before = LLMYesNoReranker(str(base), device="cpu", instruction=INSTRUCTION, max_length=96).score_pairs(PAIRS)
    assert np.abs(before - scores).max() > 1e-2
    assert scores[0] > scores[1]  # a training group: the positive outranks its negative


def test_resume_after_stop_reproduces_the_loss_curve(tiny, tmp_path):
    from trainers.loop import train_run
    from trainers.runs import new_run

    base, data = tiny
    a = new_run(tmp_path, "a", _config(base, data, "a", max_steps=6).to_json())
    assert train_run(a)["state"] == "finished"
    b = new_run(tmp_path, "b", _config(base, data, "b", max_steps=6).to_json())

    def stop_at_3(step, run):
        if step == 3:
            run.stop_path.touch()

    status = train_run(b, on_step=stop_at_3)
    assert status["state"] == "stopped" and status["step"] == 3
    assert not b.model_dir.exists()
    status = train_run(b, resume=True)
    assert status["state"] == "finished" and status["step"] == 6
    assert [e["step"] for e in b.events() if e["event"] == "step"] == list(range(1, 7))
    assert _losses(b) == pytest.approx(_losses(a), rel=1e-4)


def test_cli_trains_then_reranks_labelled_as_trained(tiny, tmp_path, capsys, monkeypatch, small_workspace):
    base, data = tiny
    ws_dir = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "llm-reranker", "--data", str(data), "--base", str(base),
                            "--out", "l1", "--max-steps", "2", "--batch-size", "2", "--group-size", "3",
                            "--loss", "pairwise", "--max-length", "96", "--lora-r", "4", "-w", str(ws_dir))
    assert code == 0, err
    assert "finished" in out
    config = json.loads((ws_dir / "runs" / "l1" / "config.json").read_text())
    assert config["trainer"] == "llm-reranker" and config["lora"] is True and config["lora_r"] == 4
    assert config["group_size"] == 3 and config["loss"] == "pairwise" and config["max_length"] == 96
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws_dir))
    assert any(line.startswith("l1") and "finished" in line and "2/2" in line for line in out.splitlines())
    # bad input: exit 2 and one line, no traceback
    code, _out, err = run_wb(capsys, monkeypatch, "train", "llm-reranker", "--data", str(tmp_path / "nope.jsonl"),
                             "--base", str(base), "--out", "l2", "-w", str(ws_dir))
    assert code == 2 and "nope.jsonl" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q"}\n')
    code, _out, err = run_wb(capsys, monkeypatch, "train", "llm-reranker", "--data", str(bad), "--base", str(base),
                             "--out", "l3", "--max-steps", "1", "-w", str(ws_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # the trained folder reranks a real workspace's hybrid results, labelled as trained (not zero-shot)
    ws, _corpus = small_workspace
    model = ws_dir / "runs" / "l1" / "model"
    code, out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                            "-p", "hybrid+rerank", "--model", f"reranker={model}", "--json", "-k", "3",
                            "--rerank-depth", "5")
    assert code == 0, err
    result = json.loads(out)
    label = result["models"]["reranker"]
    assert "zero-shot" not in label and "trained LLM yes/no" in label
    assert len(result["results"]) == 3 and "rerank" in result["timings_ms"]


def test_a_max_length_the_prompt_alone_fills_is_refused_and_so_are_equal_answers(tiny, tmp_path):
    """Below the prompt's fixed tokens every prompt would be the same (loss ln 2, a constant model):
    refused in one line; so are two equal answer words (their logit difference is always 0)."""
    from trainers.config import LlmRerankerConfig
    from trainers.llm_reranker import LlmRerankerTrainer
    from workbench.errors import UsageError

    base, data = tiny
    with pytest.raises(UsageError, match=r"max_length 16 leaves no room .* the prompt alone takes \d+ tokens"):
        LlmRerankerTrainer(_config(base, data, "short", max_length=16)).build()
    with pytest.raises(UsageError, match="two different words"):
        LlmRerankerConfig.from_dict({"data": str(data), "base": str(base), "name": "same", "answers": ["Yes", "Yes"]})
