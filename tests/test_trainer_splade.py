"""SPLADE runs on a tiny random BertForMaskedLM: FLOPS by hand, trains with non-zero counts in the
events, and the saved folder serves through SparseEncoder with the trained weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import require_models
from tiny_models import run_wb, tiny_bert, topic_groups

pytest.importorskip("accelerate")


def test_flops_matches_hand_computation():
    from trainers.losses import FlopsRegularizer

    w = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 2.0]], dtype=torch.float64)
    expected = (1.5 ** 2) + (0.5 ** 2) + (2.0 ** 2)
    assert FlopsRegularizer()(w).item() == pytest.approx(expected, rel=1e-12)


def test_splade_vectors_are_max_pooled_log1p_relu():
    from trainers.splade import splade_vectors

    logits = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [9.0, 9.0]]])  # the last token is padding
    mask = torch.tensor([[1, 1, 0]])
    got = splade_vectors(logits, mask)
    assert torch.allclose(got, torch.tensor([[np.log1p(3.0), 0.0]], dtype=got.dtype))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    require_models()
    root = tmp_path_factory.mktemp("tiny_splade")
    base = root / "base"
    tiny_bert(base, masked_lm=True)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def test_splade_trains_reports_nonzeros_and_serves(tiny, tmp_path, monkeypatch):
    from trainers.config import SpladeConfig
    from trainers.loop import train_run
    from trainers.runs import new_run
    from workbench.encoders.sparse import SparseEncoder

    base, data = tiny
    cfg = SpladeConfig(data=str(data), base=str(base), name="sp", batch_size=4, max_steps=14, lr=5e-3,
                       warmup_ratio=0.0, save_every=100, passage_max_length=64, lambda_q=1e-3, lambda_d=1e-3)
    run = new_run(tmp_path, "sp", cfg.to_json())
    status = train_run(run)
    assert status["state"] == "finished"
    steps = [e for e in run.events() if e["event"] == "step"]
    assert all({"q_nnz", "d_nnz", "flops_q", "flops_d"} <= set(e) for e in steps)
    assert all(e["q_nnz"] > 0 and e["d_nnz"] > 0 for e in steps)
    ranking = [e["ranking_loss"] for e in steps]
    assert sum(ranking[-3:]) / 3 < sum(ranking[:3]) / 3
    assert json.loads((run.model_dir / "wb_model.json").read_text())["kind"] == "splade"

    # SparseEncoder serves the trained weights: log1p(relu(max logit)) by hand
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    enc = SparseEncoder(str(run.model_dir), device="cpu")
    vec = enc.encode(["the answer: cats 0"])[0].as_dict()
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForMaskedLM.from_pretrained(run.model_dir).eval()
    with torch.no_grad():
        logits = model(**tok(["the answer: cats 0"], return_tensors="pt")).logits[0]
    expected = torch.log1p(torch.relu(logits.max(dim=0).values))
    ids = torch.nonzero(expected > 0).flatten().tolist()
    assert set(vec) == set(ids)
    assert np.allclose([vec[i] for i in ids], expected[ids].numpy(), atol=1e-4)


def test_cli_train_splade(tiny, tmp_path, capsys, monkeypatch):
    base, data = tiny
    ws = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "splade", "--data", str(data), "--base", str(base),
                            "--out", "sp1", "--max-steps", "2", "--batch-size", "4", "-w", str(ws))
    assert code == 0, err
    assert "finished" in out
    assert json.loads((ws / "runs" / "sp1" / "config.json").read_text())["trainer"] == "splade"


def test_a_base_without_a_masked_lm_head_is_said(tiny, tmp_path, capsys, monkeypatch):
    """A bi-encoder (BertModel: no cls.predictions) trains as SPLADE with a random head: said in
    the log, which a masked-LM base is not."""
    _base, data = tiny
    encoder = tiny_bert(tmp_path / "encoder")  # a BertModel
    ws = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "splade", "--data", str(data), "--base", str(encoder),
                            "--out", "sp-enc", "--max-steps", "1", "--batch-size", "4", "-w", str(ws))
    assert code == 0, err
    assert "has no masked-LM head" in out
    code, out, err = run_wb(capsys, monkeypatch, "train", "splade", "--data", str(data), "--base", str(_base),
                            "--out", "sp-mlm", "--max-steps", "1", "--batch-size", "4", "-w", str(ws))
    assert code == 0, err
    assert "masked-LM head" not in out


def test_step_metrics_describe_the_whole_step_under_grad_accum(tiny, tmp_path):
    """With two micro-batches a step, the logged terms are the step's means, as its loss is: the
    event's own ranking loss and FLOPS terms add up to its loss (they described the last micro-batch)."""
    from trainers.config import SpladeConfig
    from trainers.loop import train_run
    from trainers.runs import new_run

    base, data = tiny
    cfg = SpladeConfig(data=str(data), base=str(base), name="acc", batch_size=2, grad_accum=2, max_steps=4,
                       lr=5e-3, warmup_ratio=0.0, save_every=100, passage_max_length=64, lambda_q=0.3,
                       lambda_d=0.1, flops_warmup_ratio=0.0)
    run = new_run(tmp_path, "acc", cfg.to_json())
    assert train_run(run)["state"] == "finished"
    steps = [e for e in run.events() if e["event"] == "step"]
    assert len(steps) == 4
    for e in steps:
        total = e["ranking_loss"] + 0.3 * e["flops_q"] + 0.1 * e["flops_d"]
        assert total == pytest.approx(e["loss"], rel=1e-4, abs=1e-5)


def test_a_positive_two_rows_share_is_no_negative_of_either(tiny):
    """Two examples of a batch with one positive text: the duplicate column is masked, as the
    embedder masks it (the loss left is the FLOPS term). Before, the ranking loss was log 2 at best."""
    import math

    from tiny_models import shared_positive_loss
    from trainers.config import SpladeConfig
    from trainers.splade import SpladeTrainer

    base, data = tiny
    cfg = SpladeConfig(data=str(data), base=str(base), name="n", negatives_per_query=0)
    assert shared_positive_loss(SpladeTrainer(cfg)) < math.log(2) / 10


def test_an_example_without_hard_negatives_leaves_the_others_theirs(tiny):
    """One example of a micro-batch without hard negatives: the others still bring theirs (it
    dropped every hard negative of the batch: 5% of rows without any left most batches without)."""
    from tiny_models import passages_of_a_mixed_batch
    from trainers.config import SpladeConfig
    from trainers.splade import SpladeTrainer

    base, data = tiny
    cfg = SpladeConfig(data=str(data), base=str(base), name="n", negatives_per_query=1)
    assert passages_of_a_mixed_batch(SpladeTrainer(cfg)) == ["cats question", "dogs question",
                                                             "cats purr", "dogs bark", "NEG chess"]


def test_served_queries_are_cut_at_the_trained_query_length(tiny, tmp_path):
    """A query longer than query_max_length: SparseEncoder and NumpySparseEncoder (at the bundle's
    document length, 256) serve the trainer's own vector of it, cut where the trainer cut it; a
    document is read whole. Before, queries were read at the document length: another vector."""
    from trainers.config import SpladeConfig
    from trainers.loop import train_run
    from trainers.runs import new_run
    from trainers.splade import SpladeTrainer
    from workbench.encoders.numpy_bert import NumpySparseEncoder
    from workbench.encoders.sparse import SparseEncoder

    base, data = tiny
    cfg = SpladeConfig(data=str(data), base=str(base), name="sp", batch_size=4, max_steps=1, save_every=100,
                       query_max_length=6, passage_max_length=12)
    run = new_run(tmp_path, "sp", cfg.to_json())
    assert train_run(run)["state"] == "finished"
    meta = json.loads((run.model_dir / "wb_model.json").read_text())
    assert (meta["query_max_length"], meta["passage_max_length"]) == (6, 12)
    query = "a long question about cats rivers engines bread stars and chess"
    trainer = SpladeTrainer(SpladeConfig(data=str(data), base=str(run.model_dir), name="x", query_max_length=6))
    model = trainer.build().eval()
    with torch.no_grad():
        want, _ = trainer.encode(model, [query], trainer.q_len, "cpu")
        whole, _ = trainer.encode(model, [query], 256, "cpu")
    want, whole = want[0].numpy(), whole[0].numpy()
    for enc in (SparseEncoder(str(run.model_dir), device="cpu", max_length=256),
                NumpySparseEncoder.load(str(run.model_dir), max_length=256)):
        got = enc.encode([query], queries=True)[0]
        assert np.array_equal(got.ids, np.flatnonzero(want > 0)), type(enc).__name__
        np.testing.assert_allclose(got.weights, want[got.ids], atol=1e-4, rtol=0)
        doc = enc.encode([query])[0]
        assert np.array_equal(doc.ids, np.flatnonzero(whole > 0)), type(enc).__name__
    # a run saved before wb_model.json recorded the length: its run folder's config.json says it
    meta.pop("query_max_length")
    (run.model_dir / "wb_model.json").write_text(json.dumps(meta))
    for enc in (SparseEncoder(str(run.model_dir), device="cpu", max_length=256),
                NumpySparseEncoder.load(str(run.model_dir), max_length=256)):
        got = enc.encode([query], queries=True)[0]
        assert np.array_equal(got.ids, np.flatnonzero(want > 0)), type(enc).__name__
