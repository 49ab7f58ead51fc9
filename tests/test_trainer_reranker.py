"""Cross-encoder reranker runs on a tiny random BERT: trains, serves through load_reranker, resumes,
which parameters form the new head (BERT, DistilBERT, ModernBERT), and the CLI (`wb train
reranker`, `wb query -p ...+rerank --model reranker=...`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import require_models
from tiny_models import run_wb, tiny_bert, tiny_modernbert, topic_groups

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with the MiniLM tokenizer, and 24 groups with 3 negatives."""
    require_models()
    root = tmp_path_factory.mktemp("tiny_rr")
    base = root / "base"
    tiny_bert(base)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def _new(root: Path, name: str, base: Path, data: Path, **options):
    from trainers.config import RerankerConfig
    from trainers.runs import new_run

    settings = dict(batch_size=4, max_steps=12, lr=1e-2, head_lr=1e-2, warmup_ratio=0.0, save_every=100, group_size=4,
                    max_length=64)
    settings.update(options)
    config = RerankerConfig(data=str(data), base=str(base), name=name, **settings)
    return new_run(root, name, config.to_json())


def _losses(run) -> list[float]:
    return [e["loss"] for e in run.events() if e["event"] == "step"]


@pytest.mark.parametrize("loss", ["listwise", "pairwise", "pointwise"])
def test_reranker_trains_and_serves(tiny, tmp_path, loss):
    from trainers.loop import train_run
    from workbench.encoders.rerankers import CrossEncoderReranker, load_reranker
    from workbench.models.registry import RoleModel

    base, data = tiny
    run = _new(tmp_path, "rr", base, data, loss=loss, max_steps=14, eval_data=str(data), eval_every=100)
    status = train_run(run)
    assert status["state"] == "finished" and status["step"] == status["total_steps"]
    losses = _losses(run)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    if loss != "listwise":
        return
    # the final eval on the training groups: the positive mostly ranks first
    evals = [e for e in run.events() if e["event"] == "eval"]
    assert evals and evals[-1]["mrr"] > 0.9
    meta = json.loads((run.model_dir / "wb_model.json").read_text())
    assert meta["kind"] == "cross-encoder"
    reranker = load_reranker(RoleModel("reranker", str(run.model_dir), str(run.model_dir), "rr", False), device="cpu")
    assert isinstance(reranker, CrossEncoderReranker) and reranker.num_labels == 1
    scores = reranker.score("cats question 0", ["the answer: cats 0", "unrelated notes, chess 0"])
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_resume_after_stop_reproduces_the_loss_curve(tiny, tmp_path):
    from trainers.loop import train_run

    base, data = tiny
    a = _new(tmp_path, "a", base, data, max_steps=8)
    assert train_run(a)["state"] == "finished"
    b = _new(tmp_path, "b", base, data, max_steps=8)

    def stop_at_3(step, run):
        if step == 3:
            run.stop_path.touch()

    status = train_run(b, on_step=stop_at_3)
    assert status["state"] == "stopped" and status["step"] == 3
    assert not b.model_dir.exists()
    status = train_run(b, resume=True)
    assert status["state"] == "finished" and status["step"] == 8
    assert [e["step"] for e in b.events() if e["event"] == "step"] == list(range(1, 9))
    assert _losses(b) == pytest.approx(_losses(a), rel=1e-4)


def test_cli_train_then_rerank_with_the_run(tiny, tmp_path, capsys, monkeypatch, small_workspace):
    base, data = tiny
    ws_dir = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(data), "--base", str(base),
                            "--out", "ce1", "--max-steps", "2", "--batch-size", "4", "--group-size", "3",
                            "--loss", "pairwise", "-w", str(ws_dir))
    assert code == 0, err
    assert "finished" in out
    config = json.loads((ws_dir / "runs" / "ce1" / "config.json").read_text())
    assert config["trainer"] == "reranker" and config["group_size"] == 3 and config["loss"] == "pairwise"
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws_dir))
    assert any(line.startswith("ce1") and "finished" in line and "2/2" in line for line in out.splitlines())
    code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(data), "--base", str(base),
                             "--out", "ce2", "--loss", "lambdarank", "-w", str(ws_dir))
    assert code == 2 and "lambdarank" in err
    # the trained folder reranks a real workspace's hybrid results
    ws, _corpus = small_workspace
    model = ws_dir / "runs" / "ce1" / "model"
    code, out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                            "-p", "hybrid+rerank", "--model", f"reranker={model}", "--json", "-k", "5")
    assert code == 0, err
    result = json.loads(out)
    assert result["models"]["reranker"] == "runs/ce1 (trained cross-encoder)"
    assert len(result["results"]) == 5 and "rerank" in result["timings_ms"]
    timings = result["timings_ms"]
    assert "load_reranker" in timings  # the model's load is not counted as rerank time...
    stages = sum(v for key, v in timings.items() if key != "total")
    assert timings["total"] < stages + timings["load_reranker"] / 2 + 20  # ...nor twice in the total
    # the human output names the trained model that reranked (it named only zero-shot stand-ins)
    code, out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                            "-p", "hybrid+rerank", "--model", f"reranker={model}", "-k", "2")
    assert code == 0 and "reranker: runs/ce1 (trained cross-encoder)" in out
    # --rerank-interpolation 0: the order is the reranker's alone
    code, out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                            "-p", "hybrid+rerank", "--model", f"reranker={model}", "--json", "-k", "5",
                            "--rerank-interpolation", "0")
    assert code == 0, err
    alone = json.loads(out)["results"]
    scores = [r["score"] for r in alone]
    assert scores == sorted(scores, reverse=True)
    code, _out, err = run_wb(capsys, monkeypatch, "query", "x", "-w", str(ws.root), "-p", "hybrid+rerank",
                             "--rerank-interpolation", "1.5")
    assert code == 2 and "between 0 and 1" in err


def test_groups_carry_each_drawn_passage_score_and_draw_the_same_passages_without_scores():
    """Scores travel with the passage drawn (positive first; in-batch negatives and padding 0), and a
    file's scores never change which passages a seed draws."""
    import random

    from trainers.data.example import TrainingExample
    from trainers.reranker import build_groups

    scored = [TrainingExample(f"q{i}", (f"p{i}a", f"p{i}b"), tuple(f"n{i}{k}" for k in range(5 - i)),
                              positive_scores=(0.9, 0.8), negative_scores=tuple(k / 10 for k in range(5 - i)))
              for i in range(4)]
    bare = [TrainingExample(ex.query, ex.positives, ex.negatives) for ex in scored]
    drawn = build_groups(scored, 5, random.Random(3))
    assert drawn.passages == build_groups(bare, 5, random.Random(3)).passages
    for ex, group, mask, scores in zip(scored, drawn.passages, drawn.masks, drawn.scores):
        own = {**dict(zip(ex.positives, ex.positive_scores)), **dict(zip(ex.negatives, ex.negative_scores))}
        for passage, real, score in zip(group, mask, scores):
            expected = own.get(passage, 0.0) if real else 0.0  # another query's positive: 0
            assert score == expected
    assert drawn.masks[3].count(False) == 0 and drawn.scores[3][-1] == 0.0  # q3: 2 own + 2 in-batch negatives
    assert all(s == [0.0] * 5 for s in build_groups(bare, 5, random.Random(3)).scores)


def test_pairs_without_negatives_train_even_when_a_query_is_alone_in_its_micro_batch(tiny, tmp_path):
    """Pairs (no hard negatives) with an odd count: the last micro-batch holds one query, which draws
    its negative from the data's other passages instead of failing the run mid-way; data with no
    other passage to draw from is refused before any run starts."""
    from trainers.loop import train_run
    from workbench.errors import InputError

    base, _ = tiny
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query\tpositive\n" + "".join(f"cats question {i}\tthe answer: cats {i}\n" for i in range(5)))
    run = _new(tmp_path, "pairs", base, pairs, batch_size=2, max_steps=6)
    status = train_run(run)
    assert status["state"] == "finished" and status["step"] == 6, status
    lone = tmp_path / "lone.jsonl"
    lone.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": []}) + "\n")
    with pytest.raises(InputError, match="has no negative"):
        from trainers.reranker import RerankerTrainer
        from trainers.config import RerankerConfig

        RerankerTrainer(RerankerConfig(data=str(lone), base=str(base), name="lone")).examples()


def test_residual_training_ranks_logit_plus_the_first_stage_score(tiny, tmp_path, capsys, monkeypatch):
    """With --residual w the loss sees logit + w * score: groups the first stage already orders
    start near zero loss (little to learn), reversed ones start high; data without scores is refused."""
    from trainers.loop import train_run

    base, data = tiny
    rows = [json.loads(line) for line in data.read_text().splitlines()]

    def with_scores(path: Path, pos: float, neg: float) -> Path:
        path.write_text("".join(json.dumps({**r, "pos_scores": [pos], "neg_scores": [neg] * len(r["neg"])}) + "\n"
                                for r in rows))
        return path

    first_losses = {}
    for name, path, w in (("plain", data, 0.0), ("agrees", with_scores(tmp_path / "a.jsonl", 1.0, 0.0), 20.0),
                          ("disagrees", with_scores(tmp_path / "d.jsonl", 0.0, 1.0), 20.0)):
        run = _new(tmp_path, name, base, path, residual=w, max_steps=1, lr=1e-6, head_lr=1e-6)
        assert train_run(run)["state"] == "finished"
        first_losses[name] = _losses(run)[0]
    assert first_losses["agrees"] < 1e-3 < first_losses["plain"] < first_losses["disagrees"]
    assert first_losses["disagrees"] > 15  # the positive starts 20 behind every negative
    capsys.readouterr()  # the runs' own loading bars
    code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(data), "--base", str(base),
                             "--out", "res", "--residual", "2", "-w", str(tmp_path / "ws"))
    assert code == 2 and "--first-stage-scores" in err and len(err.strip().splitlines()) == 1
    logits = with_scores(tmp_path / "logits.jsonl", 7.5, -3.0)  # a teacher's logits, not first-stage scores
    code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(logits), "--base", str(base),
                             "--out", "res2", "--residual", "2", "-w", str(tmp_path / "ws"))
    assert code == 2 and "[0, 1]" in err and "7.5" in err and len(err.strip().splitlines()) == 1


def _tiny_distilbert(dest: Path) -> Path:
    """A random 1-layer, 32-wide DistilBertModel with the MiniLM tokenizer (no token type ids)."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from workbench.models.cache import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"),
                                        model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=128)).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


@pytest.mark.parametrize("arch, new_head", [
    ("bert", {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}),
    ("distilbert", {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}),
    ("modernbert", {"head.dense.weight", "head.norm.weight", "classifier.weight", "classifier.bias"}),
])
def test_every_layer_of_a_new_head_trains_with_head_lr(tiny, tmp_path, arch, new_head):
    """From a plain encoder, every freshly initialised layer of the classifier (DistilBERT's
    pre_classifier, ModernBERT's head.dense and head.norm, BERT's pooler) trains with head_lr and the
    encoder with lr; from a cross-encoder (its head trained) the whole model trains with lr."""
    from trainers.config import RerankerConfig
    from trainers.reranker import RerankerTrainer

    base, data = tiny
    if arch == "distilbert":
        base = _tiny_distilbert(tmp_path / "base")
    elif arch == "modernbert":
        base = tiny_modernbert(tmp_path / "base")
    trainer = RerankerTrainer(RerankerConfig(data=str(data), base=str(base), name="x", lr=2e-5, head_lr=1e-3))
    model = trainer.build()
    assert trainer.kind == "encoder+new head"
    names = {id(p): n for n, p in model.named_parameters()}
    body, head = trainer.param_groups(model)
    assert (body["lr"], head["lr"]) == (2e-5, 1e-3)
    assert {names[id(p)] for p in head["params"]} == new_head
    assert len(body["params"]) + len(head["params"]) == len(names)

    cross = tmp_path / "cross"  # the same model saved as a cross-encoder: fine-tuned further as a whole
    model.save_pretrained(str(cross))
    trainer.tokenizer.save_pretrained(str(cross))
    again = RerankerTrainer(RerankerConfig(data=str(data), base=str(cross), name="y", lr=2e-5, head_lr=1e-3))
    reloaded = again.build()
    assert again.kind == "cross-encoder" and type(reloaded) is type(model)
    groups = again.param_groups(reloaded)
    assert all(not isinstance(g, dict) for g in groups) and len(groups) == len(list(reloaded.parameters()))
