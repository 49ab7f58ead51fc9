"""Training runs end to end on a tiny random BERT: foreground, stop/resume, crash, CLI, detach, mining."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import require_models
from tiny_models import run_wb, tiny_bert, topic_beir, topic_groups

pytest.importorskip("accelerate")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with the splade-tiny tokenizer, and 24 FlagEmbedding rows."""
    require_models()
    root = tmp_path_factory.mktemp("tiny")
    base = root / "base"
    tiny_bert(base, tokenizer="splade-tiny")
    data = topic_groups(root / "train.jsonl", 24, 2, phrasing="passage")
    return base, data


def _new(root: Path, name: str, base: Path, data: Path, **options):
    from trainers.config import EmbedderConfig
    from trainers.runs import new_run

    settings = dict(batch_size=4, max_steps=6, lr=1e-3, warmup_ratio=0.0, save_every=100)
    settings.update(options)
    config = EmbedderConfig(data=str(data), base=str(base), name=name, **settings)
    return new_run(root, name, config.to_json())


def _losses(run) -> list[float]:
    return [e["loss"] for e in run.events() if e["event"] == "step"]


def test_foreground_run_finishes_with_a_loadable_model(tiny, tmp_path, capsys, monkeypatch):
    from trainers.embedder import train_embedder
    from workbench.encoders.dense import DenseEncoder

    base, data = tiny
    run = _new(tmp_path, "fg", base, data)
    status = train_embedder(run)
    assert status["state"] == "finished" and status["step"] == 6 and status["total_steps"] == 6
    steps = [e for e in run.events() if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    for e in steps:
        assert {"epoch", "loss", "lr", "examples_per_s", "tokens_per_s", "gpu_mem_gb"} <= set(e)
        assert "task" not in e  # one task: nothing to tell apart
    # the lr logged is the one the step used: no warm-up, linear decay over 6 steps from 1e-3
    assert [e["lr"] for e in steps] == pytest.approx([1e-3 * (6 - i) / 6 for i in range(6)])
    losses = _losses(run)
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2  # decreasing-ish
    assert status["loss_recent"] == pytest.approx(sum(losses[-20:]) / len(losses[-20:]))  # `wb runs`'s figure
    assert run.events()[-1]["event"] == "finished"
    meta = json.loads((run.model_dir / "wb_model.json").read_text())
    assert meta["pooling"] == "mean" and meta["normalize"] is True
    encoder = DenseEncoder(str(run.model_dir), device="cpu")
    assert encoder.layout.pooling == "mean" and encoder.normalize
    out = encoder.encode(["a passage about cats", "chess"])
    assert out.dense.shape == (2, 32)
    # status.json lost: resuming would have trained again from step 0 over the saved model
    run.status_path.unlink()
    saved = (run.model_dir / "model.safetensors").stat().st_mtime_ns
    code, _out, err = run_wb(capsys, monkeypatch, "train", "resume", "fg", "-w", str(tmp_path))
    assert code == 2 and "no readable status.json but a saved model" in err
    assert (run.model_dir / "model.safetensors").stat().st_mtime_ns == saved


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_model_trained_with_another_pooling_than_its_st_base_serves_that_pooling(tiny, tmp_path, pooling):
    """A sentence-transformers base (mean pooling in its 1_Pooling) trained with `pooling = "cls"`:
    the saved folder's layout, which serving reads, says cls (and wb_model.json agrees)."""
    from trainers.backbone import _write_st_files, load_backbone, save_final
    from workbench.encoders.layout import read_layout

    base = tmp_path / "st-base"
    shutil.copytree(tiny[0], base)
    _write_st_files(base, 32, "mean", True, 128)
    assert read_layout(str(base)).pooling == "mean"
    model, tokenizer, used, normalize, kind = load_backbone(str(base), pooling)
    assert used == pooling
    out = save_final(model, tokenizer, str(base), tmp_path / "model", pooling=used, normalize=normalize, kind=kind)
    layout = read_layout(str(out))
    assert (layout.pooling, layout.normalize) == (pooling, True)
    assert json.loads((out / "wb_model.json").read_text())["pooling"] == pooling


def test_last_token_pooling_on_an_encoder_trains_and_is_served_alike(tiny, tmp_path):
    """`pooling = "last"` on a BERT base (no EOS token): the run trains (no TypeError after it
    started), pooling the encoder's own last token ([SEP]) as DenseEncoder serves the saved model."""
    import torch

    from trainers.backbone import encode, load_backbone
    from trainers.embedder import train_embedder
    from workbench.encoders.dense import DenseEncoder

    base, data = tiny
    run = _new(tmp_path, "last", base, data, max_steps=1, pooling="last")
    assert train_embedder(run)["state"] == "finished"
    texts = ["a passage about cats", "chess openings"]
    model, tokenizer, pooling, normalize, _kind = load_backbone(str(run.model_dir))
    assert pooling == "last" and tokenizer.eos_token_id is None
    model.eval()
    with torch.no_grad():
        trained = encode(model, tokenizer, texts, 64, pooling, normalize).numpy()
        first = encode(model, tokenizer, texts, 64, "cls", normalize).numpy()  # another token
    served = DenseEncoder(str(run.model_dir), device="cpu")  # (bf16 on a bf16-capable CPU)
    assert served.layout.pooling == "last"
    cosines = (served.encode(texts).dense * trained).sum(axis=1)
    assert cosines.min() > 0.999 and (first * trained).sum(axis=1).max() < 0.99


def test_last_pooling_appends_eos_for_decoders_only(tiny, tmp_path):
    """As DenseEncoder.tokenize serves them: a decoder's inputs end with EOS, an encoder's with its
    own last token."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from trainers.backbone import load_backbone, tokenize
    from workbench.models.cache import is_installed, resolve_model_path

    _model, bert_tok, _p, _n, kind = load_backbone(str(tiny[0]), "last")
    ids = tokenize(bert_tok, ["cats"], 16, "last")["input_ids"][0].tolist()
    assert kind == "encoder" and ids[-1] == bert_tok.sep_token_id and ids.count(bert_tok.sep_token_id) == 1
    if not is_installed("smollm2-135m-instruct"):
        pytest.skip("smollm2-135m-instruct is not installed: its tokenizer is needed")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    _model, llm_tok, pooling, _n, kind = load_backbone(str(tmp_path / "llm"))
    assert (kind, pooling) == ("decoder", "last")
    ids = tokenize(llm_tok, ["cats"], 16, pooling)["input_ids"][0].tolist()
    assert ids == llm_tok(["cats"])["input_ids"][0] + [llm_tok.eos_token_id]


def test_a_runs_query_template_is_served_with_its_model(tiny, tmp_path):
    """run.toml's query_template is how the queries trained: the index settings of a workspace
    serving the model use it (a model without one keeps the defaults)."""
    from dataclasses import replace

    from trainers.embedder import train_embedder
    from workbench.config import WorkspaceConfig
    from workbench.index.settings import settings_from_config

    base, data = tiny
    run = _new(tmp_path, "tpl", base, data, max_steps=1, query_template="search for: {instruction}{text}")
    assert train_embedder(run)["state"] == "finished"
    config = WorkspaceConfig()
    served = settings_from_config(replace(config, models=replace(config.models, dense=str(run.model_dir))))
    assert served.query_template == "search for: {instruction}{text}"
    assert served.templates.render_query("cats", "find facts") == "search for: find facts: cats"
    plain = settings_from_config(replace(config, models=replace(config.models, dense=str(base))))
    assert plain.query_template == "{instruction}{text}"


def test_more_negatives_asked_than_any_row_has_trains_on_the_ones_there_are(tiny, tmp_path, capsys):
    """negatives_per_query 50 over rows of 2: said in the log, and the run is the 2-negative run
    (each negative once, not drawn 25 times over)."""
    from trainers.embedder import train_embedder

    base, data = tiny
    most = max(len(json.loads(line)["neg"]) for line in data.read_text().splitlines())
    asked = _new(tmp_path, "asked", base, data, max_steps=3, negatives_per_query=50)
    assert train_embedder(asked)["state"] == "finished"
    assert f"negatives_per_query 50 is more than any example has ({most}): using {most}" in capsys.readouterr().out
    exact = _new(tmp_path, "exact", base, data, max_steps=3, negatives_per_query=most)
    assert train_embedder(exact)["state"] == "finished"
    assert _losses(asked) == pytest.approx(_losses(exact), abs=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_stop_reproduces_the_uninterrupted_loss_curve(tiny, tmp_path, lora):
    from trainers.embedder import train_embedder

    base, data = tiny
    a = _new(tmp_path, "a", base, data, max_steps=8, lora=lora, negatives_per_query=1)
    assert train_embedder(a)["state"] == "finished"

    b = _new(tmp_path, "b", base, data, max_steps=8, lora=lora, negatives_per_query=1)

    def stop_at_4(step, run):
        if step == 4:
            run.stop_path.touch()

    status = train_embedder(b, on_step=stop_at_4)
    assert status["state"] == "stopped" and status["step"] == 4
    assert b.latest_checkpoint().name == "step-4"
    assert not b.model_dir.exists()
    status = train_embedder(b, resume=True)
    assert status["state"] == "finished" and status["step"] == 8
    assert [e["step"] for e in b.events() if e["event"] == "step"] == list(range(1, 9))
    assert b.model_dir.exists() and not b.checkpoints.exists()  # finished: its checkpoints are pruned
    assert _losses(b) == pytest.approx(_losses(a), rel=1e-4)
    assert b.status()["loss_recent"] == pytest.approx(a.status()["loss_recent"], rel=1e-4)  # `wb runs` agrees too
    if lora:
        assert (b.model_dir / "adapter" / "adapter_config.json").exists()


def test_a_resumed_rand1lh_run_draws_the_positives_the_uninterrupted_one_drew(tiny, tmp_path):
    """Rand1LH samples one positive a query: a run stopped at step 4 and resumed makes the same
    draws (and so the same losses) as one that ran straight through."""
    from trainers.embedder import train_embedder

    base, _ = tiny
    data = topic_groups(tmp_path / "multi.jsonl", 24, 0, phrasing="passage")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    with open(data, "w") as fh:
        for i, row in enumerate(rows):
            row["pos"] = row["pos"] + [f"more notes {i} {p}" for p in row["pos"]] + [f"also {i}"]
            fh.write(json.dumps(row) + "\n")
    a = _new(tmp_path, "a", base, data, max_steps=8, loss="rand1lh")
    assert train_embedder(a)["state"] == "finished"
    b = _new(tmp_path, "b", base, data, max_steps=8, loss="rand1lh")

    def stop_at_4(step, run):
        if step == 4:
            run.stop_path.touch()

    assert train_embedder(b, on_step=stop_at_4)["state"] == "stopped"
    assert train_embedder(b, resume=True)["state"] == "finished"
    assert _losses(b) == pytest.approx(_losses(a), rel=1e-4)


def test_a_step_run_again_after_a_kill_is_one_point_of_the_loss_curve(tiny, tmp_path):
    """Killed after logging step 3 and before its checkpoint: the resume runs step 3 again from the
    step-2 checkpoint and logs it again; the run's events (the stop wait's step time, the TUI's curve)
    hold each step once, as the run went."""
    from trainers.embedder import train_embedder

    base, data = tiny
    run = _new(tmp_path, "again", base, data, max_steps=4, save_every=2, negatives_per_query=1)

    def stop_at_3(step, r):
        if step == 3:
            r.stop_path.touch()

    assert train_embedder(run, on_step=stop_at_3)["state"] == "stopped"
    shutil.rmtree(run.checkpoints / "step-3")  # as if killed before this checkpoint was written
    assert run.latest_checkpoint().name == "step-2"
    assert train_embedder(run, resume=True)["state"] == "finished"
    logged = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    assert [e["step"] for e in logged if e["event"] == "step"] == [1, 2, 3, 3, 4]
    assert [e["step"] for e in run.events() if e["event"] == "step"] == [1, 2, 3, 4]
    # steps of the lost branch that were not run again are gone too (resumed at 5 of 8, stopped at 6)
    from trainers.runs import drop_replayed

    logged = ([{"event": "step", "step": s} for s in range(1, 9)] + [{"event": "eval", "step": 8}]
              + [{"event": "resumed"}] + [{"event": "step", "step": s} for s in (5, 6)])
    assert [e.get("step") for e in drop_replayed(logged) if e["event"] in ("step", "eval")] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_a_crash_left_half_written_is_never_resumed_and_is_pruned(tiny, tmp_path):
    """A checkpoint folder without its sampler.json (a kill mid-save) is skipped by resume and removed
    by the next save; complete checkpoints are written whole (no partial marker left behind)."""
    from trainers.embedder import train_embedder

    base, data = tiny
    run = _new(tmp_path, "crash", base, data, max_steps=8, save_every=2, negatives_per_query=1)

    def stop_at(n):
        def hook(step, r):
            if step == n:
                r.stop_path.touch()
        return hook

    assert train_embedder(run, on_step=stop_at(3))["state"] == "stopped"
    broken = run.checkpoints / "step-9"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"cut off")
    assert run.latest_checkpoint().name == "step-3"
    assert train_embedder(run, resume=True, on_step=stop_at(5))["state"] == "stopped"
    assert [e["step"] for e in run.events() if e["event"] == "step"] == list(range(1, 6))
    assert not broken.exists()
    left = sorted(p.name for p in run.checkpoints.iterdir())
    assert left[-1] == "step-5" and all((run.checkpoints / name / "sampler.json").is_file() for name in left)
    assert not list(run.checkpoints.rglob("*.partial"))


def test_finish_now_saves_the_model_at_that_step_and_ends_finished(tiny, tmp_path):
    """`wb runs stop --finish` (early stop): the run ends `finished` at the step it was asked at, with
    a model that loads and encodes, the same loss curve up to there, and no stop file left."""
    from trainers.embedder import train_embedder
    from workbench.encoders.dense import DenseEncoder

    base, data = tiny
    a = _new(tmp_path, "a", base, data, max_steps=6, negatives_per_query=1)
    train_embedder(a)
    b = _new(tmp_path, "b", base, data, max_steps=6, negatives_per_query=1)

    def finish_at_3(step, run):
        if step == 3:
            run.request_stop(finish=True)  # the stop file says "finish", then SIGTERM to this process

    status = train_embedder(b, on_step=finish_at_3)
    assert status["state"] == "finished" and status["step"] == 3 and status["total_steps"] == 6
    assert status["early"] is True and a.status()["early"] is False  # `wb runs --json` tells them apart
    last = b.events()[-1]
    assert last["event"] == "finished" and last["early"] is True and last["step"] == 3
    assert _losses(b) == pytest.approx(_losses(a)[:3], rel=1e-4)
    assert not b.stop_path.exists()
    out = DenseEncoder(str(b.model_dir), device="cpu").encode(["a passage about cats"])
    base_out = DenseEncoder(str(a.model_dir), device="cpu").encode(["a passage about cats"])
    assert out.dense.shape == base_out.dense.shape and not np.allclose(out.dense, base_out.dense)


def test_finish_on_a_stopped_run_saves_its_checkpoint_model(tiny, tmp_path, capsys, monkeypatch):
    """`wb runs stop NAME --finish` on a run that is stopped already: the model of its last checkpoint,
    the very weights an early stop at that step gives, and the run ends finished (early)."""
    from trainers.embedder import train_embedder
    from workbench.encoders.dense import DenseEncoder

    base, data = tiny
    early = _new(tmp_path, "early", base, data, max_steps=6, negatives_per_query=1)
    train_embedder(early, on_step=lambda step, run: step == 3 and run.request_stop(finish=True))
    stopped = _new(tmp_path, "stopped", base, data, max_steps=6, negatives_per_query=1)
    status = train_embedder(stopped, on_step=lambda step, run: step == 3 and run.request_stop())
    assert status["state"] == "stopped" and status["step"] == 3 and not stopped.model_dir.exists()
    capsys.readouterr()  # the two runs' own lines above
    code, out, err = run_wb(capsys, monkeypatch, "runs", "stop", "stopped", "--finish", "-w", str(tmp_path))
    assert code == 0, err
    assert out.strip() == f"run stopped finished with the model of its last complete checkpoint, step 3 of 6: " \
                          f"model in {stopped.model_dir}"  # only the outcome: the resume's lines go to the log
    final = stopped.status()
    assert final["state"] == "finished" and final["step"] == 3 and stopped.events()[-1]["early"] is True
    assert len([e for e in stopped.events() if e["event"] == "step"]) == 3  # no step trained after the stop
    texts = ["a passage about cats", "question 4 about dogs"]
    assert np.allclose(DenseEncoder(str(stopped.model_dir), device="cpu").encode(texts).dense,
                       DenseEncoder(str(early.model_dir), device="cpu").encode(texts).dense, atol=1e-5)
    # a run with no checkpoint has nothing to finish from: one line, the run as it was
    fresh = _new(tmp_path, "fresh", base, data)
    fresh.write_status(state="stopped", step=0)
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "stop", "fresh", "--finish", "-w", str(tmp_path))
    assert code == 2 and "has no checkpoint to take its model from" in err and fresh.status()["state"] == "stopped"
    (fresh.checkpoints / "step-0").mkdir(parents=True)  # a stop at step 0: the untrained base, checkpointed
    (fresh.checkpoints / "step-0" / "sampler.json").write_text("{}")
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "stop", "fresh", "--finish", "-w", str(tmp_path))
    assert code == 2 and "no step trained" in err and not fresh.model_dir.exists()


def test_keep_best_saves_the_best_evaluated_step_not_the_last(tiny, tmp_path):
    """keep_best: the run's model is the weights of the step with the best eval metric, so
    re-evaluating the saved model gives that metric, not the last evaluation's."""
    from trainers.config import EmbedderConfig
    from trainers.embedder import EmbedderTrainer, train_embedder
    from workbench.errors import UsageError

    base, data = tiny
    beir = topic_beir(tmp_path / "beir")
    run = _new(tmp_path, "best", base, data, max_steps=8, lr=2e-2, eval_data=str(beir), eval_every=1, keep_best=True)
    status = train_embedder(run)
    evals = {e["step"]: e["ndcg@10"] for e in run.events() if e["event"] == "eval" and not e.get("base")}
    best_step = max(evals, key=lambda s: (evals[s], -s))  # among trained steps (the base's is step 0's)
    assert status["best_step"] == best_step == status["model_step"]
    assert evals[best_step] > evals[8], evals  # the setup's premise: the last step is not the best
    assert not run.best_weights_path.exists()
    cfg = EmbedderConfig.from_dict({**run.read_config(), "base": str(run.model_dir)})
    trainer = EmbedderTrainer(cfg)
    model = trainer.build()
    assert trainer.evaluate(model, "cpu") == pytest.approx(evals[best_step], abs=1e-6)
    with pytest.raises(UsageError, match=r"--keep-best \(keep_best\) needs --eval-data"):
        EmbedderConfig.from_dict({"data": str(data), "base": str(base), "name": "x", "keep_best": True})
    with pytest.raises(UsageError, match=r"--keep-best \(keep_best\) needs --eval-every N"):
        EmbedderConfig.from_dict({"data": str(data), "base": str(base), "name": "x", "keep_best": True,
                                  "eval_data": str(beir)})


def test_wrong_eval_data_is_refused_before_training_and_a_failing_eval_never_costs_the_run(
        tiny, tmp_path, capsys, monkeypatch):
    from trainers.embedder import train_embedder

    base, data = tiny
    ws = tmp_path / "ws"
    beir = topic_beir(tmp_path / "beir")
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                             "--out", "e1", "--eval-data", str(data), "-w", str(ws))
    assert code == 2 and "is not a BEIR folder with a test split" in err and not (ws / "runs" / "e1").exists()
    code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(data), "--base", str(base),
                             "--out", "r1", "--eval-data", str(beir), "-w", str(ws))
    assert code == 2 and "is a folder" in err and not (ws / "runs" / "r1").exists()
    # the eval data breaks during the run: that evaluation is logged as failed, the run still finishes
    run = _new(tmp_path, "brittle", base, data, max_steps=4, eval_data=str(beir), eval_every=2)

    def break_eval_data(step, _run):
        if step == 1:
            (beir / "qrels" / "test.tsv").unlink()

    status = train_embedder(run, on_step=break_eval_data)
    assert status["state"] == "finished" and run.model_dir.is_dir()
    failed = [e for e in run.events() if e["event"] == "eval_failed"]
    assert [e["step"] for e in failed] == [2, 4] and "qrels/test.tsv" in failed[0]["error"]
    assert "missing" in status["eval_error"]


def test_a_crash_marks_the_run_failed(tiny, tmp_path):
    from trainers.embedder import train_embedder
    from workbench.errors import ModelError

    _base, data = tiny
    run = _new(tmp_path, "bad", tmp_path / "no-such-model", data)
    with pytest.raises(ModelError):
        train_embedder(run)
    status = run.status()
    assert status["state"] == "failed"
    assert "no-such-model" in status["error"]


def test_cli_foreground_then_runs_lists_it_and_model_override(tiny, tmp_path, capsys, monkeypatch):
    base, data = tiny
    ws = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                            "--out", "cli1", "--max-steps", "2", "--batch-size", "4", "-w", str(ws))
    assert code == 0, err
    assert "finished" in out
    log_text = (ws / "runs" / "cli1" / "log.txt").read_text()  # the foreground log is kept too
    assert "step 2/2" in log_text and "finished" in log_text
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws))
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("cli1"))
    assert "finished" in line and "2/2" in line
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws), "--json")
    assert code == 0, err
    listed = json.loads(out.splitlines()[0])
    assert listed["name"] == "cli1" and listed["state"] == "finished"
    assert None not in listed.values() and "error" not in listed and "best_metric" not in listed  # no eval data
    # a second run of the same name is refused
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                             "--out", "cli1", "-w", str(ws))
    assert code == 2 and "exists already" in err
    # --model dense=runs/NAME resolves to the run's model folder
    from workbench.cli.common import _run_model_overrides
    from workbench.errors import UsageError
    from workbench.workspace import Workspace

    resolved = _run_model_overrides(Workspace(ws), {"dense": "runs/cli1"})
    assert resolved["dense"] == str(ws / "runs" / "cli1" / "model")
    with pytest.raises(UsageError):
        _run_model_overrides(Workspace(ws), {"dense": "runs/nope"})


def test_several_datasets_train_one_task_each_from_the_cli_and_a_run_toml(tiny, tmp_path, capsys, monkeypatch):
    base, data = tiny
    second = topic_groups(tmp_path / "second.jsonl", 8, 1, phrasing="answer")
    ws = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--data", str(second),
                            "--base", str(base), "--out", "mt", "--max-steps", "3", "--batch-size", "4", "-w", str(ws))
    assert code == 0, err
    config = json.loads((ws / "runs" / "mt" / "config.json").read_text())
    assert config["data"] == [str(data), str(second)]
    log_text = (ws / "runs" / "mt" / "log.txt").read_text()
    assert "tasks: train (24), second (8)" in log_text and "finished" in log_text
    from trainers.runs import RunFolder

    steps = [e for e in RunFolder(ws / "runs" / "mt").events() if e["event"] == "step"]
    assert len(steps) == 3 and all(e["task"] in ("train", "second") for e in steps)  # each step's task
    # run.toml: [[data]] tables, paths relative to the file (not to where wb runs), an instruction preset
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "run.toml").write_text(
        f'base = "{base}"\nmax_steps = 2\nbatch_size = 4\n'
        '[[data]]\npath = "second.jsonl"\ninstruction = "scifact"\ntask = "claims"\n'
        f'[[data]]\npath = "{data}"\n')
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--config", "../run.toml", "--out", "mt2",
                            "-w", str(ws))
    assert code == 0, err
    from workbench.encoders.templates import resolve_instruction

    first = json.loads((ws / "runs" / "mt2" / "config.json").read_text())["data"][0]
    assert first == {"path": str(second), "instruction": resolve_instruction("scifact"), "task": "claims"}
    assert "tasks: claims (8), train (24)" in (ws / "runs" / "mt2" / "log.txt").read_text()
    # a missing second dataset is refused before the run folder exists
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--data", "nope.jsonl",
                             "--base", str(base), "--out", "mt3", "-w", str(ws))
    assert code == 2 and "--data: no such file or folder: nope.jsonl" in err and not (ws / "runs" / "mt3").exists()
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--task-sampling", "even",
                             "--base", str(base), "--out", "mt3", "-w", str(ws))
    assert code == 2 and "task_sampling must be one of proportional, uniform, temperature" in err


@pytest.mark.slow
def test_detached_run_finishes(tiny, tmp_path, capsys, monkeypatch):
    from trainers.runs import TERMINAL, get_run

    base, data = tiny
    ws = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                            "--out", "bg", "--max-steps", "3", "--batch-size", "4", "--detach", "-w", str(ws))
    assert code == 0, err
    assert out.strip() == "bg"
    run = get_run(ws, "bg")
    deadline = time.monotonic() + 80
    while run.status().get("state") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run.status()["state"] == "finished", run.log_path.read_text()[-2000:]
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws))
    assert any(line.startswith("bg") and "finished" in line for line in out.splitlines())


def indexed_tinydocs(tmp_path: Path):
    """test_eval's tiny BEIR folder (train split) and a workspace that indexes its corpus."""
    require_models()
    from test_eval import make_dataset

    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    dataset = make_dataset(tmp_path / "tinydocs", split="train")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(dataset / "corpus.jsonl")
    return dataset, ws


def test_mine_writes_negatives_without_positives(tmp_path, capsys, monkeypatch):
    from test_eval import QUERIES

    dataset, ws = indexed_tinydocs(tmp_path)
    out = tmp_path / "mined.jsonl"
    code, stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root),
                               "--pipeline", "bm25", "--out", str(out), "--range", "2-20", "--negatives", "3")
    assert code == 0, err
    assert "wrote" in stdout
    corpus = {}
    for line in (dataset / "corpus.jsonl").read_text().splitlines():
        obj = json.loads(line)
        corpus[obj["_id"]] = (obj["title"] + " " + obj["text"]).strip()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(QUERIES)
    by_query = {text: rel for text, rel in QUERIES.values()}
    for row in rows:
        assert set(row) == {"query", "pos", "neg", "prompt"}
        positives = {corpus[d] for d, s in by_query[row["query"]].items() if s > 0}
        assert set(row["pos"]) == positives
        assert len(row["neg"]) <= 3
        assert not set(row["neg"]) & positives
    # a query can lose every candidate to the false-negative margin; most keep some
    assert sum(1 for row in rows if row["neg"]) >= len(rows) - 2
    # the false negatives said to be dropped are those of the range (2-20) only, recounted by hand
    from workbench.search.searcher import Searcher

    searcher, expected = Searcher(ws), 0
    for text, rel in QUERIES.values():
        hits = searcher.search(text, pipeline="bm25", k=20).results
        positive_scores = [h.score for h in hits if rel.get(h.doc_id, 0) > 0]
        if positive_scores:
            threshold = 0.95 * min(positive_scores)
            expected += sum(1 for rank, h in enumerate(hits, 1)
                            if rank >= 2 and rel.get(h.doc_id, 0) <= 0 and h.score >= threshold)
    assert f"; {expected} likely false negatives dropped" in " ".join(stdout.split())
    # --out -: the same rows on stdout (no file named "-"), the summary on stderr
    code, stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root),
                               "--pipeline", "bm25", "--out", "-", "--range", "2-20", "--negatives", "3")
    assert code == 0, err
    assert [json.loads(line) for line in stdout.splitlines()] == rows
    assert "wrote" in err and "stdout" in err
    assert not (Path.cwd() / "-").exists() and not (Path.cwd() / "-.partial").exists()
    # bad split: one clear line, exit 2
    code, _out, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root),
                             "--out", str(tmp_path / "x.jsonl"), "--split", "dev")
    assert code == 2 and "dev" in err
    # --out a folder: refused before mining (it mined every query, then failed at the rename and
    # left `<folder>.partial` beside it)
    (tmp_path / "outdir").mkdir()
    code, _out, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root),
                             "--pipeline", "bm25", "--out", str(tmp_path / "outdir"))
    assert code == 2 and "is a folder: give the jsonl file to write" in err
    assert not (tmp_path / "outdir.partial").exists() and not list((tmp_path / "outdir").iterdir())


def test_mine_pseudo_titles_pairs_each_title_with_its_text_and_never_leaks_the_title(tmp_path, capsys, monkeypatch):
    """`wb mine --pseudo titles` needs no queries or qrels: every titled document's title becomes a
    query whose one positive is that document's text without its title; negatives are other
    documents, also without titles, so neither side can be matched by copying the title."""
    dataset, ws = indexed_tinydocs(tmp_path)
    (dataset / "queries.jsonl").unlink()  # a bare corpus is enough
    out = tmp_path / "titles.jsonl"
    code, stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "--pseudo",
                               "titles", "-p", "dense+bm25", "--out", str(out), "--range", "2-10", "--negatives", "3")
    assert code == 0, err
    docs = [json.loads(line) for line in (dataset / "corpus.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"wrote {len(docs)} examples" in stdout and len(rows) == len(docs)
    text_of_title = {d["title"]: d["text"].strip() for d in docs}
    texts = set(text_of_title.values())
    for row in rows:
        assert row["pos"] == [text_of_title[row["query"]]]
        assert row["neg"] and set(row["neg"]) <= texts and row["pos"][0] not in row["neg"]
    code, _out, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "--pseudo",
                             "nope", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "titles, conclusions" in err and "Traceback" not in err


def test_mine_pseudo_titles_from_a_folder_the_workspace_indexes(small_workspace, tmp_path, capsys, monkeypatch):
    """No BEIR corpus needed: `--data` the indexed folder of markdown files; the titles are the
    documents' own (as `wb index` read them) and every row's negatives are other documents."""
    from workbench.ingest.readers import corpus_documents

    ws, corpus = small_workspace
    out = tmp_path / "titles.jsonl"
    code, stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(corpus), "-w", str(ws.root), "--pseudo",
                               "titles", "-p", "bm25", "--out", str(out), "--range", "2-10", "--negatives", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    titles = {title for title, _text in corpus_documents(corpus).values()}
    assert len(rows) >= 10 and {r["query"] for r in rows} <= titles
    assert all(r["pos"][0] not in r["neg"] for r in rows)
    # the text of a Markdown file keeps its `# Title` line: the positive (the query's own document)
    # and the negatives are written without it
    for r in rows:
        assert f"# {r['query']}" not in r["pos"][0]
        for text in r["pos"] + r["neg"]:
            assert not any(line.startswith("# ") and line[2:].strip() in titles for line in text.splitlines())
    assert sum(bool(r["neg"]) for r in rows) > len(rows) // 2  # a short BM25 list can leave one without


def test_conclusion_pseudo_queries_cut_the_closing_sentence_out_of_the_positive():
    from workbench.pseudo_queries import make_pseudo_queries, split_sentences

    text = ("Background matters here. We measured the thing in 40 mice. Results were clear in all groups. "
            "CONCLUSIONS: Inhibiting the kinase reduces tumour growth in mice with the mutation.")
    short = "One sentence. Two sentences. Three."
    made = make_pseudo_queries("conclusions", [("d1", "Kinase study", text), ("d2", "T", short),
                                               ("d3", "T", text.rsplit("CONCLUSIONS", 1)[0] + "It works.")])
    assert [q.doc_id for q in made] == ["d1"]  # d2: three sentences; d3: a closing sentence of two words
    q = made[0]
    assert q.text == "Inhibiting the kinase reduces tumour growth in mice with the mutation."
    assert q.positive == "Kinase study " + " ".join(split_sentences(text)[:-1])
    assert q.text not in q.positive and q.query_id == "c:d1"


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_mine_with_a_teacher_writes_its_scores_and_distillation_trains_on_them(tiny, tmp_path, capsys, monkeypatch):
    """`wb mine --teacher` scores every written passage with the reranker; `--loss kl` then trains a
    student towards those scores (lower KL), and rows without scores are refused in one line."""
    from trainers.embedder import train_embedder
    from workbench.encoders.rerankers import load_reranker
    from workbench.models.registry import resolve_role

    dataset, ws = indexed_tinydocs(tmp_path)
    out = tmp_path / "mined.jsonl"
    code, _stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "--pipeline",
                                "bm25", "--out", str(out), "--range", "2-20", "--negatives", "2", "--teacher", "llm",
                                "--margin", "1.5")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # piped, progress is a line per tenth of each phase on stderr (a long teacher run shows it is alive)
    assert f"retrieving {len(rows)}/{len(rows)}" in err and f"scoring with the teacher {len(rows)}/{len(rows)}" in err
    from dataclasses import replace

    teacher = load_reranker(resolve_role("reranker", replace(ws.config().models, reranker="llm")))
    for i, row in enumerate(rows):
        assert len(row["pos_scores"]) == len(row["pos"]) and len(row["neg_scores"]) == len(row["neg"])
        if i >= 2:
            continue  # re-scoring two rows shows the scores are the teacher's
        expected = teacher.score(row["query"], row["pos"] + row["neg"])
        assert row["pos_scores"] + row["neg_scores"] == pytest.approx(expected.tolist(), abs=1e-4)

    base, _ = tiny
    kept = tmp_path / "with_scores.jsonl"
    kept.write_text("".join(json.dumps(r) + "\n" for r in rows if r["neg"]))
    run = _new(tmp_path, "kl", base, kept, loss="kl", negatives_per_query=2, batch_size=3, max_steps=8, lr=1e-3,
               temperature=0.05, teacher_temperature=0.1)
    train_embedder(run)
    losses = _losses(run)
    assert run.status()["state"] == "finished"
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3

    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({k: r[k] for k in ("query", "pos", "neg")}) + "\n" for r in rows))
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "-w", str(tmp_path / "ws2"), "--data", str(bare),
                             "--base", str(base), "--out", "nokl", "--distill", "0.5")
    assert code == 2 and "teacher scores" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # heavy (25 s on a 2-core AVX2 machine: an index): `make test-all` and .ci/run run it
def test_mine_refuses_a_teacher_that_scores_nan_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """A teacher reranker giving NaN (a broken or overflowing model) wrote `NaN` into the JSONL,
    which no JSON reader (nor `wb train`) reads back; now one line names the query and no file is left."""
    import torch
    from test_tui import tiny_bert as tiny_cross_encoder
    from transformers import AutoModelForSequenceClassification

    dataset, ws = indexed_tinydocs(tmp_path)
    teacher = tiny_cross_encoder(tmp_path / "nan-ce", head=True)
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    model.save_pretrained(teacher)
    out = tmp_path / "mined.jsonl"
    code, _stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "-p", "bm25",
                                "--out", str(out), "--range", "1-6", "--negatives", "2", "--teacher", str(teacher))
    assert code != 0 and "Traceback" not in err
    assert "the teacher reranker scored a candidate of query" in err and "nan" in err
    assert not out.exists() and not list(tmp_path.glob("mined.jsonl*"))


def test_mine_first_stage_scores_are_the_pipelines_own_min_max_over_the_retrieved_top(tmp_path, capsys, monkeypatch):
    """`wb mine --first-stage-scores` writes each candidate's pipeline score, min-max normalised over
    the query's retrieved top END (what a reranker's interpolation sees; a positive not retrieved: 0),
    checked against a direct search; with --teacher too it is refused in one line."""
    from workbench.eval.dataset import load_dataset
    from workbench.search.fusion import min_max
    from workbench.search.searcher import Searcher

    dataset, ws = indexed_tinydocs(tmp_path)
    out = tmp_path / "mined.jsonl"
    code, _stdout, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "-p", "bm25",
                                "--out", str(out), "--range", "1-6", "--negatives", "3", "--first-stage-scores")
    assert code == 0, err
    data = load_dataset(dataset, "train")
    id_of = {}
    for line in (dataset / "corpus.jsonl").read_text().splitlines():
        obj = json.loads(line)
        id_of[(obj["title"] + " " + obj["text"]).strip()] = obj["_id"]
    query_ids = {text: qid for qid, text in data.queries.items()}
    searcher = Searcher(ws)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and sum(len(r["neg"]) for r in rows) > 0
    for row in rows:
        hits = searcher.search(row["query"], pipeline="bm25", k=6, unit="doc").results
        expected = min_max({h.doc_id: h.score for h in hits})
        assert row["neg_scores"] == pytest.approx([expected[id_of[t]] for t in row["neg"]], abs=1e-5)
        assert row["pos_scores"] == pytest.approx([expected.get(id_of[t], 0.0) for t in row["pos"]], abs=1e-5)
        assert {id_of[t] for t in row["pos"]} == {d for d, s in data.qrels[query_ids[row["query"]]].items() if s > 0}
    code, _out, err = run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "--out",
                             str(tmp_path / "x.jsonl"), "--first-stage-scores", "--teacher", "llm")
    assert code == 2 and "choose one" in err and len(err.strip().splitlines()) == 1


def test_runs_stop_waits_for_a_slow_step_and_says_so_when_it_does_not_end(tmp_path, capsys, monkeypatch):
    """A stop lands at the end of a step: the default wait covers two of the run's own steps, and a
    run that outlives the wait gets a one-line error (exit 1), with its stop request left in place."""
    import signal
    import subprocess
    import sys

    from tui_fake import fake_run

    ws = tmp_path / "ws"
    ignores_term = subprocess.Popen([sys.executable, "-c",
                                     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    try:
        run = fake_run(ws, "slow", "running", steps=6, total=100, pid=ignores_term.pid)
        assert run.step_seconds() == 2.0 and run.stop_wait_seconds() == 60.0  # fake steps are 2 s apart
        for step, t in ((7, 1_700_000_200.0), (8, 1_700_000_400.0), (9, 1_700_000_600.0), (10, 1_700_000_800.0)):
            run.append_event({"event": "step", "step": step, "loss": 1.0, "time": t})
        assert run.step_seconds() == 200.0  # the median of the last five gaps: 2, 188, 200, 200, 200
        assert run.stop_wait_seconds() == 430.0
        time.sleep(0.3)  # let the child install its handler
        code, _out, err = run_wb(capsys, monkeypatch, "runs", "stop", "slow", "--wait", "1", "-w", str(ws))
        assert code == 1
        assert err.strip().count("\n") == 0 and "did not stop within 1 s" in err and "--wait" in err
        assert run.stop_path.exists() and ignores_term.poll() is None
        ignores_term.send_signal(signal.SIGKILL)
        ignores_term.wait()
        code, out, err = run_wb(capsys, monkeypatch, "runs", "stop", "slow", "-w", str(ws))
        assert code == 0 and "has died already" in out
    finally:
        ignores_term.kill()
        ignores_term.wait()


def test_a_stop_right_after_a_periodic_checkpoint_reuses_it(tiny, tmp_path):
    from trainers.embedder import train_embedder

    base, data = tiny
    run = _new(tmp_path, "c", base, data, max_steps=8, save_every=2)

    def stop_at_4(step, run):
        if step == 4:
            run.stop_path.touch()

    assert train_embedder(run, on_step=stop_at_4)["state"] == "stopped"
    saved = [e["step"] for e in run.events() if e["event"] == "checkpoint"]
    assert saved == [2, 4]  # step 4 written once, not again by the stop
    assert run.latest_checkpoint().name == "step-4"


def test_data_that_is_no_training_data_is_refused_before_the_run_exists(tmp_path, capsys, monkeypatch):
    """A BEIR queries.jsonl, a plain folder of documents, a malformed row past the first lines, a
    row without its positives or one whose text is a lone surrogate escape given as --data: one
    line, exit 2, and no run folder (a detached run used to say it started, then failed)."""
    require_models()
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "1", "text": "a query"}\n')
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\ntext\n")
    late = tmp_path / "late.jsonl"  # a good first row: the format is known, the second row is broken
    late.write_text('{"query": "q", "pos": ["p"]}\n{"query": "q2", "pos": ["p2"\n')
    nopos = tmp_path / "nopos.jsonl"
    nopos.write_text('{"query": "q", "neg": ["n"]}\n')
    surrogate = tmp_path / "surrogate.jsonl"  # valid JSON, but "\ud800" is no text a tokenizer takes
    surrogate.write_text('{"query": "q", "pos": ["p"]}\n{"query": "\\ud800 q2", "pos": ["p2"]}\n')
    for data, says in ((queries, "cannot tell the format"), (docs, "not a BEIR dataset"),
                       (late, "late.jsonl:2: invalid JSON"), (nopos, "nopos.jsonl:1: missing field 'pos'"),
                       (surrogate, "surrogate.jsonl:2: text is not valid Unicode (a lone surrogate)")):
        code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "-w", str(tmp_path / "ws"), "--data",
                                str(data), "--base", "dense", "--out", "e1", "--max-steps", "1", "--detach")
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "ws" / "runs").exists()


def test_a_run_that_cannot_learn_says_so(tiny, tmp_path, capsys, monkeypatch):
    """One pair and no hard negatives: nothing to rank a positive above (a constant loss), said in
    the log; with the 24 rows and their negatives, nothing is said."""
    base, data = tiny
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"query": "remove a directory", "pos": ["shutil.rmtree deletes a tree"]}) + "\n")
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(one), "--base", str(base),
                            "--out", "one", "--max-steps", "1", "-w", str(tmp_path / "ws"))
    assert code == 0, err
    assert "1 example at batch size" in out and "the loss stays constant" in out
    code, out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                            "--out", "many", "--max-steps", "1", "--batch-size", "4", "-w", str(tmp_path / "ws"))
    assert code == 0, err
    assert "loss stays constant" not in out


def test_runs_says_where_a_died_run_resumes(tmp_path, capsys, monkeypatch):
    """A killed run's step counts past its last checkpoint: `wb runs` says where resume starts."""
    from tui_fake import fake_run
    from workbench.workspace import Workspace

    died = fake_run(tmp_path, "killed", "died", steps=42, total=400)
    (died.checkpoints / "step-40").mkdir(parents=True)
    (died.checkpoints / "step-40" / "sampler.json").write_text("{}")
    fake_run(tmp_path, "fresh-kill", "died", steps=3, total=400)  # killed before its first checkpoint
    fake_run(tmp_path, "paused", "stopped", steps=12, total=400)
    fake_run(tmp_path, "my run's", "died", steps=3, total=400)  # the command printed is one to paste
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(tmp_path))
    assert code == 0, err
    flag = Workspace(tmp_path).flag  # ` -w TMP`: a pasted command resumes the run of this workspace
    assert flag and f"`wb train resume killed{flag}` continues from step 40 (its last checkpoint)" in out
    assert f"`wb train resume 'my run'\"'\"'s'{flag}` continues from step 0" in out
    assert f"`wb train resume fresh-kill{flag}` continues from step 0 (no checkpoint yet)" in out
    assert "resume paused" not in out  # a stop checkpoints where it stops


def test_the_launcher_never_overwrites_a_state_its_run_wrote_first(tmp_path):
    """`wb train --detach`: the launcher marks the run running after Popen returns, but a run that
    failed (or started) in between wrote its own state then: that state stays (a failure became
    "died" when the launcher's "running" came last)."""
    from trainers.runs import new_run

    run = new_run(tmp_path, "r", "{}")
    before = run.status_seq()
    run.write_status(state="failed", error="bad data", message="bad data")  # the run, quicker than its launcher
    assert not run.write_status(unless_changed_since=before, state="running", pid=12345)
    assert run.status()["state"] == "failed" and run.status()["pid"] != 12345
    assert run.write_status(unless_changed_since=run.status_seq(), state="running", pid=12345)
    assert run.status()["pid"] == 12345
    assert json.loads(run.config_path.read_text()) == {} and not list(run.path.glob(".config.json.tmp*"))


def test_a_run_whose_creator_died_before_training_is_died_and_frees_its_name(tmp_path):
    """Killed while starting (torch still importing, a terminal closed): the queued run reads as
    died, not queued forever, and its name can be taken again."""
    import subprocess

    from trainers.runs import new_run

    run = new_run(tmp_path, "q1", "{}")
    assert run.status()["state"] == "queued" and run.status()["pid"] == os.getpid()  # its creator, alive
    gone = subprocess.Popen(["true"])
    gone.wait()
    run.write_status(pid=gone.pid)  # as if the creating process had been killed
    assert run.status()["state"] == "died"
    again = new_run(tmp_path, "q1", '{"second": true}')
    assert json.loads(again.config_path.read_text()) == {"second": True}


@pytest.mark.parametrize("toml, extra, says", [
    ('pooling = "max"\n', [], "training option pooling must be one of auto, mean, cls, last, not 'max'"),
    ('unsupervised = "bert"\n', ["--data", "unsupervised", "--corpus", "CORPUS"],
     "training option unsupervised must be 'cropping' or 'ict', not 'bert'"),
    ("", ["--data", "unsupervised"], "--data unsupervised needs --corpus"),
    ("", ["--corpus", "CORPUS"], "--corpus is the passages of --data unsupervised"),
    ("", ["--data", "unsupervised", "--corpus", "CORPUS", "--distill", "0.5"], "--data unsupervised has none"),
    ("", ["--distill", "0.5", "--loss", "jointlh"], "distillation goes with the infonce loss"),
    ("", ["--distill", "0.5", "--negatives", "0"], "set negatives_per_query (--negatives) >= 1"),
    ("", ["--loss", "kl"], "distillation needs teacher scores (pos_scores and neg_scores)"),
    ('data = ["unsupervised", "DATA"]\n', [], "cannot be one of several datasets"),
    ("", ["--data", "unsupervised", "--corpus", "EMPTY"], "no corpus for unsupervised training"),
    ("", ["--data", "unsupervised", "--corpus", "SHORT"], "no passage has at least 8 words"),
])
def test_options_a_run_would_fail_on_are_refused_before_it_exists(tiny, tmp_path, capsys, monkeypatch,
                                                                   toml, extra, says):
    """Found only inside the run, these made a detached run say it started and then fail (its name
    taken), and left a failed run folder behind a foreground mistake: now one line, exit 2, no folder."""
    base, data = tiny
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "a passage about cats and how they sleep"}\n')
    config = tmp_path / "run.toml"
    config.write_text(toml.replace("DATA", str(data)))
    given = ["--data", str(data)] if "--data" not in extra and "data =" not in toml else []
    (tmp_path / "empty").mkdir()  # a folder without corpus.jsonl
    short = tmp_path / "short.jsonl"
    short.write_text('{"_id": "d1", "text": "too short"}\n')
    args = [a.replace("CORPUS", str(corpus)).replace("EMPTY", str(tmp_path / "empty")).replace("SHORT", str(short))
            for a in extra]
    for detach in (["--detach"], []):
        code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "-w", str(tmp_path / "ws"), *given, *args,
                                 "--base", str(base), "--out", "r", "--max-steps", "1", "--config", str(config),
                                 *detach)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "ws" / "runs" / "r").exists()


@pytest.mark.parametrize("kind", ["embedder", "colbert", "splade", "joint", "layerwise", "reranker", "llm-reranker"])
def test_a_base_that_is_no_model_for_the_trainer_is_refused_before_the_run_exists(tiny, tmp_path, capsys,
                                                                                   monkeypatch, kind):
    """A folder that is no model (every trainer), one with no tokenizer (the message was cut off
    at "from one of: "), a file, and for the LLM reranker an encoder: found inside the trainer,
    these left a failed run behind (or a detached run that said it started): now one line, exit 2,
    no run folder, from config.json alone."""
    base, data = tiny
    (tmp_path / "empty").mkdir()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(base / "config.json", no_tokenizer)
    cases = [(tmp_path / "empty", "the folder has no config.json (it is not a model folder)"),
             (no_tokenizer, "the folder has no tokenizer"), (base / "config.json", "is a file, not a model folder")]
    if kind == "llm-reranker":
        cases.append((base, "is not a causal LM (BertModel): the LLM reranker needs a *ForCausalLM model"))
    for folder, says in cases:
        for detach in (["--detach"], []):
            code, _out, err = run_wb(capsys, monkeypatch, "train", kind, "--data", str(data), "--base", str(folder),
                                     "--out", "r", "--max-steps", "1", "-w", str(tmp_path / "ws"), *detach)
            assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (folder, err)
            assert not (tmp_path / "ws" / "runs" / "r").exists()


def test_a_base_refused_once_the_run_exists_leaves_no_run_but_a_trained_run_stays(tiny, tmp_path, capsys,
                                                                                    monkeypatch):
    """A base whose config.json and tokenizer pass the checks but whose weights are missing fails
    only inside the run: a foreground run refused so (exit 2, no step) leaves no folder; a run that
    trained a step and then failed keeps its folder."""
    from trainers.runs import discard_unstarted

    base, data = tiny
    weightless = tmp_path / "weightless"
    shutil.copytree(base, weightless, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(weightless),
                             "--out", "w", "--max-steps", "1", "-w", str(tmp_path / "ws"))
    assert code == 2 and "cannot load base model" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws" / "runs" / "w").exists()
    run = _new(tmp_path, "trained", base, data, max_steps=1)
    from trainers.embedder import train_embedder

    assert train_embedder(run)["state"] == "finished"
    run.write_status(state="failed", error="later", message="later")
    assert not discard_unstarted(run) and run.exists()


def test_a_residual_reranker_on_data_without_first_stage_scores_is_refused_before_the_run_exists(
        tiny, tmp_path, capsys, monkeypatch):
    base, data = tiny
    for detach in (["--detach"], []):
        code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(data), "--base", str(base),
                                 "--residual", "1", "--out", "r", "--max-steps", "1", "-w", str(tmp_path / "ws"),
                                 *detach)
        assert code == 2 and "--residual needs every example's first-stage scores" in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ws" / "runs" / "r").exists()


@pytest.mark.parametrize("launcher, says", [
    ("'unbalanced", "$WB_TRAIN_LAUNCHER is not a valid command line (No closing quotation)"),
    ("/nonexistent/launcher --flag", "could not start /nonexistent/launcher: no such program (check $WB_TRAIN_LAUNCHER)"),
])
def test_a_launcher_that_cannot_start_a_detached_run_is_refused_before_it_exists(tiny, tmp_path, capsys, monkeypatch,
                                                                                 launcher, says):
    """An unbalanced quote was an internal error that left a run "died"; a missing program a failed
    run and exit 1: both are one line, exit 2, and no run folder."""
    base, data = tiny
    monkeypatch.setenv("WB_TRAIN_LAUNCHER", launcher)
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--data", str(data), "--base", str(base),
                             "--out", "l", "--max-steps", "1", "-w", str(tmp_path / "ws"), "--detach")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws" / "runs" / "l").exists()


@pytest.mark.parametrize("toml, extra, says", [
    ('base = ""\n', [], "--base is required"),  # was read as the run.toml's own folder
    ("", ["--config", ""], "--config is empty"),  # was read as no --config
    ("", ["--instruction", ""], "the instruction is empty (leave --instruction out"),  # `wb query -i ""` is refused too
])
def test_empty_values_are_refused_as_an_empty_option_is(tiny, tmp_path, capsys, monkeypatch, toml, extra, says):
    base, data = tiny
    config = tmp_path / "run.toml"
    config.write_text(f'data = "{data}"\n' + toml)
    given = extra if "--config" in extra else ["--config", str(config), *extra]
    base_args = [] if "base =" in toml else ["--base", str(base)]
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", *base_args, *given, "--data", str(data),
                             "--out", "e", "--max-steps", "1", "-w", str(tmp_path / "ws"))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws" / "runs" / "e").exists()


def test_resuming_a_run_whose_config_is_damaged_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    """Malformed JSON or a JSON array in config.json: exit 2 naming the file (was exit 1 and
    "JSONDecodeError"); the run stays as it was."""
    base, data = tiny
    run = _new(tmp_path, "c", base, data)
    run.write_status(state="stopped", pid=None)
    for text, says in (("{nope", "config.json is not valid JSON"), ("[]", "config.json is not a JSON object")):
        run.config_path.write_text(text)
        code, _out, err = run_wb(capsys, monkeypatch, "train", "resume", "c", "-w", str(tmp_path))
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert run.status()["state"] == "stopped"


def test_a_loader_message_announcing_its_lines_is_given_whole():
    """transformers' "Couldn't instantiate the backend tokenizer from one of:" was all a user saw."""
    from workbench.errors import first_line

    error = ValueError("Couldn't instantiate the backend tokenizer from one of: \n(1) a `tokenizers` file, \n"
                       "(2) a slow tokenizer instance to convert")
    assert first_line(error) == ("Couldn't instantiate the backend tokenizer from one of: (1) a `tokenizers` file, "
                                 "(2) a slow tokenizer instance to convert")
    assert first_line(OSError("no file\nmore detail")) == "no file" and first_line(ValueError()) == "ValueError"


def test_the_check_before_a_run_keeps_no_example_for_the_run_to_come(tiny, tmp_path):
    """`wb train` reads every row before the run folder exists; a foreground run then reads the data
    again, so what the check keeps must not be the examples (2x the data in memory for the whole
    run): only the query texts, and only when the overlap warning needs them."""
    import gc

    from trainers.config import EmbedderConfig
    from trainers.data import TrainingExample
    from workbench.cli.train_cmd import _checked_training_queries

    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is TrainingExample)

    base, data = tiny
    before = alive()
    cfg = EmbedderConfig(data=str(data), base=str(base), name="r")
    assert _checked_training_queries(cfg) == set() and alive() == before
    cfg = EmbedderConfig(data=str(data), base=str(base), name="r", eval_data=str(tmp_path))
    queries = _checked_training_queries(cfg)
    assert len(queries) == 24 and all(isinstance(q, str) for q in queries) and alive() == before


def test_eval_data_that_asks_training_queries_is_said(tiny, tmp_path, capsys, monkeypatch):
    """Held-out groups cut from the training file itself: the run trains (it is the user's call)
    and says its in-training figure will be optimistic; truly held-out groups say nothing."""
    base, data = tiny
    args = ["train", "reranker", "--data", str(data), "--base", str(base), "--max-steps", "1", "-w", str(tmp_path)]
    code, _out, err = run_wb(capsys, monkeypatch, *args, "--out", "same", "--eval-data", str(data))
    assert code == 0, err
    rows = len(data.read_text().splitlines())
    assert f"{rows} of the {rows} evaluation queries are training queries too" in err
    held_out = tmp_path / "held-out.jsonl"  # the same kind of groups, with queries the run never sees
    held_out.write_text("".join(json.dumps({**row, "query": "held out: " + row["query"]}) + "\n" for row in
                                (json.loads(line) for line in data.read_text().splitlines()[:6])))
    code, _out, err = run_wb(capsys, monkeypatch, *args, "--out", "apart", "--eval-data", str(held_out))
    assert code == 0, err
    assert "training queries too" not in err


def test_finish_asked_before_the_first_step_stops_the_run_instead(tiny, tmp_path):
    """`wb runs stop --finish` before any step: there is no trained model to finish with, so the
    run stops (resumable), never "finished" with the untrained base as its model."""
    from trainers.loop import run_training, trainer_for
    from trainers.runs import FINISH

    base, data = tiny
    run = _new(tmp_path, "f0", base, data, max_steps=4)
    trainer = trainer_for(run)
    build = trainer.build

    def build_then_asked_to_finish():
        model = build()
        run.stop_path.write_text(FINISH + "\n")  # `wb runs stop --finish` while the model loads
        return model

    trainer.build = build_then_asked_to_finish
    status = run_training(run, trainer)
    assert status["state"] == "stopped" and status["step"] == 0 and not run.model_dir.exists()


def test_a_run_being_trained_is_not_trained_again_at_the_same_time(tiny, tmp_path):
    from trainers.loop import train_run
    from trainers.runs import training_lock
    from workbench.errors import UsageError

    base, data = tiny
    run = _new(tmp_path, "busy", base, data, max_steps=2)
    before = run.status()
    with training_lock(run):  # as a resume in another process holds it
        with pytest.raises(UsageError, match="being trained by another process"):
            train_run(run, resume=True)
    assert run.status() == before  # the other process's status is left alone
    assert train_run(run)["state"] == "finished"  # free again once that process ends


def test_a_pid_reused_by_another_process_is_neither_running_nor_signalled(tmp_path):
    """A run whose process died and whose pid a later process took: `wb runs` says died, and
    `wb runs stop` sends that process nothing."""
    import subprocess

    from trainers.runs import new_run

    run = new_run(tmp_path, "reused", "{}")
    other = subprocess.Popen(["sleep", "30"])
    try:
        run.write_status(state="running", pid=other.pid)
        assert run.status()["state"] == "running"  # the process recorded: alive
        run.write_status(pid_start=run.status()["pid_start"] - 1)  # as if the pid had been another process's
        assert run.status()["state"] == "died"
        run.request_stop()
        time.sleep(0.2)
        assert other.poll() is None  # not killed
    finally:
        other.kill()
        other.wait()


def test_weight_decay_reaches_weight_matrices_only_and_keeps_each_groups_lr(tmp_path):
    """AdamW groups: a trainer's groups keep their learning rates; within each, biases and LayerNorm
    scales are not decayed (decaying a LayerNorm gain shrinks activations), matrices are."""
    import torch
    from transformers import AutoModel

    from trainers.loop import decay_groups

    require_models()
    model = AutoModel.from_pretrained(tiny_bert(tmp_path / "tiny"))
    body = list(model.encoder.parameters())
    head = list(model.pooler.parameters())
    groups = decay_groups([{"params": body, "lr": 1e-5}, {"params": head, "lr": 1e-3}], 2e-5, 0.1)
    optimizer = torch.optim.AdamW(groups)
    decay_of = {id(p): (g["weight_decay"], g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    assert len(decay_of) == len(body) + len(head)  # every parameter in exactly one group
    for name, p in model.named_parameters():
        if not name.startswith(("encoder.", "pooler.")):
            continue
        wd, lr = decay_of[id(p)]
        assert lr == (1e-5 if name.startswith("encoder.") else 1e-3), name
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        assert wd == (0.0 if no_decay else 0.1), name
    # a flat list is one group at the default lr
    flat = decay_groups(body, 2e-5, 0.1)
    assert {g["lr"] for g in flat} == {2e-5} and sum(len(g["params"]) for g in flat) == len(body)


def test_a_stop_before_the_first_step_of_a_resume_keeps_the_checkpoint_it_resumed_from(tiny, tmp_path):
    """A stop that lands while a resume loads must not delete and rewrite the checkpoint just
    loaded (a kill during that rewrite left the run with no complete checkpoint: back to step 0)."""
    from trainers.loop import run_training, trainer_for

    base, data = tiny
    run = _new(tmp_path, "rs", base, data, max_steps=8, save_every=100)
    assert run_training(run, trainer_for(run), on_step=lambda s, r: s == 3 and r.stop_path.touch())["state"] == "stopped"
    marker = run.checkpoints / "step-3" / "sampler.json"
    before = marker.stat().st_ino, marker.stat().st_mtime_ns
    trainer = trainer_for(run)
    build = trainer.build

    def build_then_stopped():
        model = build()
        run.stop_path.touch()  # `wb runs stop` while the resumed run loads
        return model

    trainer.build = build_then_stopped
    status = run_training(run, trainer, resume=True)
    assert status["state"] == "stopped" and status["step"] == 3
    assert (marker.stat().st_ino, marker.stat().st_mtime_ns) == before
    assert run.latest_checkpoint().name == "step-3"


def test_an_event_written_after_a_line_a_kill_cut_short_is_kept(tmp_path):
    """events.jsonl: a kill mid-write leaves a line without its newline; the next event starts a new
    line, so only the cut line is lost."""
    from trainers.config import EmbedderConfig
    from trainers.runs import new_run

    run = new_run(tmp_path, "cut", EmbedderConfig(data="d.jsonl", base="b", name="cut").to_json())
    run.append_event({"event": "step", "step": 1, "loss": 1.0})
    with open(run.events_path, "a") as f:
        f.write('{"event": "step", "step": 2, "lo')  # killed here
    run.append_event({"event": "resumed", "step": 1})
    run.append_event({"event": "step", "step": 2, "loss": 0.5})
    assert [(e["event"], e["step"]) for e in run.events()] == [("step", 1), ("resumed", 1), ("step", 2)]


def test_runs_stop_wait_0_asks_and_returns_and_an_unknown_run_is_said_at_once(tmp_path, capsys, monkeypatch):
    """`--wait 0` asks the run to stop and returns 0 at once (it said "did not stop within 0 s", exit 1);
    a run without a readable status.json (no process to wait on) is said unknown at once, not waited
    on for a minute; both leave the stop file for a run that still trains."""
    import subprocess
    import sys

    from tui_fake import fake_run

    ws = tmp_path / "ws"
    ignores_term = subprocess.Popen([sys.executable, "-c",
                                     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    try:
        run = fake_run(ws, "live", "running", steps=3, pid=ignores_term.pid)
        code, out, err = run_wb(capsys, monkeypatch, "runs", "stop", "live", "--wait", "0", "-w", str(ws))
        assert code == 0, err
        assert "run live: stop asked" in out and run.stop_path.exists()
        code, out, _err = run_wb(capsys, monkeypatch, "runs", "--json", "-w", str(ws))
        listed = json.loads(out.splitlines()[0])
        assert listed["name"] == "live" and listed["pid"] == ignores_term.pid
        assert not {"seq", "pid_start", "resume_of"} & set(listed)  # the run folder's own bookkeeping
        lost = fake_run(ws, "lost", "running", steps=3)
        lost.status_path.unlink()
        started = time.monotonic()
        code, out, err = run_wb(capsys, monkeypatch, "runs", "stop", "lost", "-w", str(ws))
        assert code == 0, err
        assert "run lost is in an unknown state" in out and lost.stop_path.exists()
        assert time.monotonic() - started < 30  # the default wait is 60 s
    finally:
        ignores_term.kill()
        ignores_term.wait()


def test_a_closed_terminal_stops_a_foreground_run_with_a_checkpoint_and_never_kills_it(tiny, tmp_path):
    """SIGHUP (the terminal closed) is a stop like SIGTERM: the run checkpoints and ends stopped (it
    died at once, losing the steps since its last checkpoint); and the console tee meeting the closed
    terminal (EIO) stops echoing instead of failing the run."""
    import errno
    import signal

    from trainers.embedder import train_embedder
    from workbench.cli.run_launch import _Tee

    base, data = tiny
    run = _new(tmp_path, "hup", base, data, max_steps=6)

    def hang_up_at_3(step, _run):
        if step == 3:
            os.kill(os.getpid(), signal.SIGHUP)

    unhandled = []  # a SIGHUP the run did not handle lands here (not the test session's death)
    previous = signal.signal(signal.SIGHUP, lambda *_: unhandled.append(1))
    try:
        status = train_embedder(run, on_step=hang_up_at_3)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not unhandled and status["state"] == "stopped" and status["step"] == 3
    assert run.latest_checkpoint().name == "step-3"
    assert [e["why"] for e in run.events() if e["event"] == "stopped"] == ["SIGHUP (terminal closed)"]

    class ClosedTerminal:
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

        flush = write

        def fileno(self):
            raise ValueError("no descriptor")

    tee = _Tee(ClosedTerminal(), tmp_path / "log.txt")
    tee.write("step 1\n")
    tee.flush()
    tee.write("step 2\n")
    tee.file.close()
    assert (tmp_path / "log.txt").read_text() == "step 1\nstep 2\n" and not tee.echo


def test_a_resume_that_fails_before_training_leaves_the_run_as_it_was(tiny, tmp_path, capsys, monkeypatch):
    """A stopped run whose resume cannot start (its base model gone; a launcher that is not there)
    stays stopped, with the reason as its last resume's (it became "failed", or "died" when the
    launcher had marked it running); once the base is back it resumes and finishes."""
    from trainers.embedder import train_embedder
    from trainers.loop import train_run

    base, data = tiny
    own_base = tmp_path / "base"
    shutil.copytree(base, own_base)
    run = _new(tmp_path, "back", own_base, data, max_steps=4)

    def stop_at_2(step, r):
        if step == 2:
            r.stop_path.touch()

    assert train_embedder(run, on_step=stop_at_2)["state"] == "stopped"
    own_base.rename(tmp_path / "gone")
    with pytest.raises(Exception):
        train_run(run, resume=True)
    status = run.status()
    assert status["state"] == "stopped" and status["step"] == 2 and not status.get("resume_of")
    assert status["resume_error"] and run.events()[-1]["event"] == "resume_failed"
    monkeypatch.setenv("WB_TRAIN_LAUNCHER", "no-such-launcher")
    code, _out, err = run_wb(capsys, monkeypatch, "train", "resume", "back", "--detach", "-w", str(tmp_path))
    assert code == 2 and "could not start no-such-launcher" in err and len(err.strip().splitlines()) == 1
    assert run.status()["state"] == "stopped" and "no-such-launcher" in run.status()["resume_error"]
    code, out, _err = run_wb(capsys, monkeypatch, "runs", "-w", str(tmp_path))
    assert "back" in out and "stopped" in out and "its last resume failed: could not start no-such-launcher" in out
    (tmp_path / "gone").rename(own_base)
    status = train_run(run, resume=True)
    assert status["state"] == "finished" and not status.get("resume_error")


def test_runs_remove_deletes_a_run_and_frees_its_name_but_never_one_in_use(tiny, tmp_path, capsys, monkeypatch):
    """`wb runs remove`: a finished or stopped run goes (folder, listing) and its name can be trained
    again; a queued/running run and a run whose model wb.toml serves are refused in one line, before
    any run named with them is deleted."""
    from trainers.embedder import train_embedder
    from workbench.workspace import Workspace

    base, data = tiny
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    done = _new(ws.root, "done", base, data, max_steps=2)
    assert train_embedder(done)["state"] == "finished"
    served = _new(ws.root, "served", base, data, max_steps=2)
    assert train_embedder(served)["state"] == "finished"
    stopped = _new(ws.root, "stopped", base, data, max_steps=6)
    assert train_embedder(stopped, on_step=lambda s, r: s == 2 and r.stop_path.touch())["state"] == "stopped"
    _new(ws.root, "queued", base, data)  # its creator (this process) is alive: it is about to train
    ws.config_path.write_text(ws.config_path.read_text().replace('reranker = "maxsim"',
                                                                  f'reranker = "{served.model_dir}"'))

    code, _out, err = run_wb(capsys, monkeypatch, "runs", "remove", "done", "served", "-w", str(ws.root))
    assert code == 2 and "reranker model" in err and err.count("\n") == 1
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "remove", "done", "queued", "-w", str(ws.root))
    assert code == 2 and "queued" in err and "wb runs stop queued" in err
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "remove", "nope", "-w", str(ws.root))
    assert code == 2 and "no run named 'nope'" in err
    assert done.path.exists()  # nothing was deleted by a refused command

    code, out, err = run_wb(capsys, monkeypatch, "runs", "remove", "done", "stopped", "-w", str(ws.root))
    assert code == 0, err
    assert out.splitlines() == ["removed run done", "removed run stopped"]
    assert not done.path.exists() and not stopped.path.exists()
    assert sorted(p.name for p in ws.runs_dir.iterdir() if not p.name.startswith(".")) == ["queued", "served"]
    code, out, _err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws.root), "--json")
    assert sorted(json.loads(line)["name"] for line in out.splitlines()) == ["queued", "served"]
    again = _new(ws.root, "done", base, data, max_steps=2)  # the name is free again
    assert train_embedder(again)["state"] == "finished"


@pytest.mark.parametrize("recipe", ["cropping", "ict"])
def test_unsupervised_pairs_are_drawn_again_each_step_from_their_passage(tiny, tmp_path, recipe):
    """--data unsupervised: an example is its passage, drawn again at every step from the step's seeded
    rng (fresh crops or another cloze sentence each epoch, as Contriever and ORQA draw them; the same
    pair on a resume); a run trains to the end on them."""
    import random

    from trainers.config import EmbedderConfig
    from trainers.embedder import EmbedderTrainer, train_embedder
    from trainers.runs import new_run

    base, _data = tiny
    topics = ["harbour ships cargo cranes tides", "violin concert orchestra music hall",
              "glacier ice mountain snow valley", "bakery bread flour oven morning"]
    texts = [". ".join(f"Sentence {j} about {t} number {j} with words" for j in range(6)) + "." for t in topics * 3]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(texts)))
    settings = dict(data="unsupervised", corpus=str(corpus), unsupervised=recipe, base=str(base), batch_size=4,
                    epochs=2, lr=1e-3, warmup_ratio=0.0, save_every=100)
    trainer = EmbedderTrainer(EmbedderConfig(name="u", **settings))
    examples = trainer.examples()
    ex = examples[0]
    drawn = [trainer.redraw(ex, random.Random(f"0|{step}|0")) for step in range(6)]
    assert trainer.redraw(ex, random.Random("0|3|0")) == drawn[3]  # a resume draws the same pair
    assert len({(d.query, d.positives[0]) for d in drawn}) > 1  # new pairs as steps go
    source = texts[0]
    for d in drawn:
        assert d.query in source and all(w in source.split() for w in d.positives[0].split())
        assert d.task == ex.task and d.instruction == ex.instruction
    run = new_run(tmp_path, "u", EmbedderConfig(name="u", **settings).to_json())
    assert train_embedder(run)["state"] == "finished"


def test_two_detached_resumes_started_together_start_one_run(tiny, tmp_path):
    """Two `wb train resume NAME --detach` that both passed the state check (started in one instant):
    the launch is claimed, so the second is refused in one line instead of starting a second child
    (which the training lock refused after its launcher had said "resumed")."""
    from trainers.embedder import train_embedder
    from trainers.runs import TERMINAL
    from workbench.cli.run_launch import _spawn_run
    from workbench.errors import UsageError

    base, data = tiny
    ws = tmp_path / "ws"
    run = _new(ws, "twice", base, data, max_steps=100_000, save_every=100_000)
    assert train_embedder(run, on_step=lambda s, r: s == 2 and r.stop_path.touch())["state"] == "stopped"
    first = _spawn_run(run, resume=True)
    try:
        with pytest.raises(UsageError, match="run twice is running already"):
            _spawn_run(run, resume=True)  # as the second command, past its own check
        assert run.status()["pid"] == first
    finally:  # stopped once it trains (a SIGTERM during its imports would kill it: died)
        deadline = time.monotonic() + 120
        while not any(e["event"] == "step" and e["step"] > 2 for e in run.events()) and time.monotonic() < deadline:
            time.sleep(0.3)
        run.request_stop()
        deadline = time.monotonic() + 120
        while run.status().get("state") not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
    assert run.status()["state"] == "stopped"


def test_lora_with_gradient_checkpointing_prints_no_library_deprecation(tiny):
    """peft reads ``model.is_gradient_checkpointing``, which transformers deprecates with a
    FutureWarning: every LoRA run with gradient checkpointing printed it, a line its user can do
    nothing about. Loading the backbone must raise no warning at all."""
    import warnings

    from trainers.backbone import load_backbone

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, *_ = load_backbone(str(tiny[0]), "mean", lora=True, gradient_checkpointing=True)
    assert any("lora" in name for name, _ in model.named_parameters())
    assert [str(w.message) for w in caught] == []
