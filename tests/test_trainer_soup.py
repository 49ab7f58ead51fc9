"""Model soups (`wb runs soup`): two cross-encoders fine-tuned from one tiny random BERT are averaged
into a finished run whose weights are their mean (checked tensor by tensor), which serves as a
reranker, and bad ingredients are refused in one line without leaving a run behind."""

from __future__ import annotations

import json

import pytest

from conftest import require_models
from tiny_models import run_wb, tiny_bert, topic_groups

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A workspace with two finished cross-encoder runs (seeds 1 and 2) from one tiny base, and a
    ColBERT-kind folder made by relabelling a copy."""
    require_models()
    from trainers.config import RerankerConfig
    from trainers.loop import train_run
    from trainers.runs import new_run

    root = tmp_path_factory.mktemp("soup")
    base = tiny_bert(root / "base")
    data = topic_groups(root / "train.jsonl", 16, 3)
    ws = root / "ws"
    for name, seed in (("a", 1), ("b", 2)):
        config = RerankerConfig(data=str(data), base=str(base), name=name, batch_size=4, max_steps=8, lr=1e-2,
                                head_lr=1e-2, warmup_ratio=0.0, save_every=100, group_size=4, max_length=64, seed=seed)
        assert train_run(new_run(ws, name, config.to_json()))["state"] == "finished"
    return ws


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_soup_is_the_mean_of_its_ingredients_and_serves(two_runs, capsys, monkeypatch):
    from workbench.encoders.rerankers import CrossEncoderReranker, load_reranker
    from workbench.models.registry import RoleModel

    ws = two_runs
    code, out, err = run_wb(capsys, monkeypatch, "runs", "soup", "s", "a", "runs/b", "-w", str(ws))
    assert code == 0, err
    assert "soup of a ×0.5 + b ×0.5" in out
    # runs/NAME/model (the run's model folder, as a path) names the run as runs/NAME does
    code, out, err = run_wb(capsys, monkeypatch, "runs", "soup", "s-path", "runs/a/model", "runs/b", "-w", str(ws))
    assert code == 0 and "soup of a ×0.5 + b ×0.5" in out, err
    a, b, s = (_weights(ws / "runs" / n / "model") for n in ("a", "b", "s"))
    assert s.keys() == a.keys()
    moved = 0
    for key, value in s.items():
        if value.is_floating_point():
            assert value == pytest.approx((a[key] + b[key]) / 2, abs=1e-6), key
            moved += not bool((a[key] == b[key]).all())
        else:
            assert bool((value == a[key]).all()), key
    assert moved > 0  # the two seeds trained to different weights, so the mean is a third model

    run_dir = ws / "runs" / "s"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["kind"] == "cross-encoder"
    meta = json.loads((run_dir / "model" / "wb_model.json").read_text())
    assert meta["kind"] == "cross-encoder" and meta["soup"]["weights"] == [0.5, 0.5]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["trainer"] == "soup" and config["ingredient_trainer"] == "reranker"
    # the Runs screen treats it as a reranker run (compare / evaluate in the reranker role)
    from workbench.tui.runs import RunRow, soup_line

    row = RunRow("s", status, config)
    assert row.trainer == "reranker" and row.spec is not None and row.has_model
    assert soup_line(config) == "soup of a ×0.5 + b ×0.5 (reranker)"
    code, out, _err = run_wb(capsys, monkeypatch, "runs", "-w", str(ws))
    assert any(line.startswith("s ") and "finished" in line for line in out.splitlines())

    reranker = load_reranker(RoleModel("reranker", str(run_dir / "model"), str(run_dir / "model"), "s", False),
                             device="cpu")
    assert isinstance(reranker, CrossEncoderReranker)
    scores = reranker.score("cats question 0", ["the answer: cats 0", "unrelated notes, chess 0"])
    assert scores.shape == (2,) and scores[0] > scores[1]

    # weights 3:1 lean to the first model
    code, out, err = run_wb(capsys, monkeypatch, "runs", "soup", "s31", "a", "b", "--weights", "3,1", "-w", str(ws))
    assert code == 0, err
    s31 = _weights(ws / "runs" / "s31" / "model")
    key = next(k for k in a if a[k].is_floating_point() and not bool((a[k] == b[k]).all()))
    assert s31[key] == pytest.approx(0.75 * a[key] + 0.25 * b[key], abs=1e-6)

    # a soup among the ingredients is a reranker too (it recorded "soup" or nothing, losing its role)
    for name, ingredients in (("ss", ["s", "s31"]), ("sa", ["s", "a"])):
        code, out, err = run_wb(capsys, monkeypatch, "runs", "soup", name, *ingredients, "-w", str(ws))
        assert code == 0, err
        config = json.loads((ws / "runs" / name / "config.json").read_text())
        assert config["ingredient_trainer"] == "reranker", name


def test_damaged_ingredients_and_weights_that_overflow_are_one_line(two_runs, tmp_path, capsys, monkeypatch):
    """A corrupt weight file, a run whose config.json is no JSON object (both were internal errors,
    exit 1) and weights whose sum overflows (1e308 twice: every scaled weight became 0, an all-zero
    model, exit 0): one line, exit 2, no soup left. Huge and tiny weights that sum finitely keep
    their ratio."""
    import shutil

    from trainers.soup import normalised_weights

    ws = two_runs
    junk = tmp_path / "junk"
    shutil.copytree(ws / "runs" / "a" / "model", junk)
    (junk / "model.safetensors").write_text("junk\n")
    damaged = ws / "runs" / "listed"
    shutil.copytree(ws / "runs" / "b", damaged)
    (damaged / "config.json").write_text("[]\n")
    try:
        for args, says in ((["j1", "a", str(junk)], f"cannot read {junk / 'model.safetensors'}: "),
                           (["j2", "a", "runs/listed/model"], "config.json is not a JSON object (found list)"),
                           (["j3", "a", "b", "--weights", "1e308,1e308"], "soup weights must have a finite sum")):
            code, _out, err = run_wb(capsys, monkeypatch, "runs", "soup", *args, "-w", str(ws))
            assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, err)
            assert not (ws / "runs" / args[0]).exists()
    finally:
        shutil.rmtree(damaged)
    assert normalised_weights(2, [1e308, 5e307]) == pytest.approx([2 / 3, 1 / 3])
    assert normalised_weights(2, [1e-320, 3e-320]) == pytest.approx([0.25, 0.75], rel=1e-3)


def test_soup_refuses_what_cannot_be_averaged(two_runs, tmp_path, capsys, monkeypatch):
    import shutil

    ws = two_runs
    other = tmp_path / "other"
    shutil.copytree(ws / "runs" / "a" / "model", other)
    meta = json.loads((other / "wb_model.json").read_text())
    (other / "wb_model.json").write_text(json.dumps({**meta, "kind": "colbert"}))
    wider = tiny_bert(tmp_path / "wider", layers=3)
    # layer-wise rerankers serve at their saved max_length: one served at another length is refused
    layerwise, longer = tmp_path / "layerwise", tmp_path / "longer"
    for folder, length in ((layerwise, 64), (longer, 128)):
        shutil.copytree(ws / "runs" / "b" / "model", folder)
        (folder / "wb_model.json").write_text(json.dumps({**meta, "kind": "layerwise-reranker", "max_length": length}))

    cases = [
        (["one", "a"], "at least two"),
        (["k1", "a", str(other)], "one kind"),
        (["k9", str(layerwise), str(longer)], "served with max_length = 128"),
        (["k2", "a", "runs/nope"], "no run named 'nope'"),
        (["k6", "a", "nope"], "'nope' is neither a run"),
        (["k7", "a", "runs/a"], "is named twice"),
        (["k3", "a", "b", "--weights", "1,x"], "--weights"),
        (["k4", "a", "b", "--weights", "1,1,1"], "3 weights for 2 models"),
        (["k5", "a", "b", "--weights", "nan,1"], "must be finite numbers"),
        (["k8", "a", "b", "--weights", "inf,1"], "must be finite numbers"),
        (["a", "a", "b"], "exists already"),
        (["../up", "a", "b"], "bad run name"),
    ]
    for args, message in cases:
        code, _out, err = run_wb(capsys, monkeypatch, "runs", "soup", *args, "-w", str(ws))
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    # a model of another shape: refused, and no half-made run is left
    (wider / "wb_model.json").write_text((ws / "runs" / "a" / "model" / "wb_model.json").read_text())
    from transformers import BertForSequenceClassification

    BertForSequenceClassification.from_pretrained(str(wider), num_labels=1).save_pretrained(str(wider))
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "soup", "k5", "a", str(wider), "-w", str(ws))
    assert code == 2 and ("hold different tensors" in err or "shape" in err), err
    for name in ("one", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k9"):
        assert not (ws / "runs" / name).exists(), name
    # another base, served alike (a fine-tune averaged with where it started, WiSE-FT): a soup
    rebased = tmp_path / "rebased"
    shutil.copytree(ws / "runs" / "b" / "model", rebased)
    (rebased / "wb_model.json").write_text(json.dumps({**meta, "base": "runs/a"}))
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "soup", "wise", "a", str(rebased), "-w", str(ws))
    assert code == 0, err


def test_cross_encoders_differing_in_training_only_settings_soup(two_runs, tmp_path, capsys, monkeypatch):
    """A cross-encoder is served at 512 tokens from its weights alone: runs trained with another
    ``residual`` weight or ``max_length`` average (as model soups mean to); a field of wb_model.json
    the soup does not know still has to agree."""
    import shutil

    ws = two_runs
    meta = json.loads((ws / "runs" / "a" / "model" / "wb_model.json").read_text())
    assert meta["kind"] == "cross-encoder" and meta["residual"] == 0.0 and meta["max_length"] == 64
    tuned = tmp_path / "tuned"
    shutil.copytree(ws / "runs" / "b" / "model", tuned)
    (tuned / "wb_model.json").write_text(json.dumps({**meta, "residual": 0.5, "max_length": 128}))
    code, out, err = run_wb(capsys, monkeypatch, "runs", "soup", "tuned-soup", "a", str(tuned), "-w", str(ws))
    assert code == 0 and "soup of a ×0.5 + tuned ×0.5" in out, err
    assert (ws / "runs" / "tuned-soup" / "model" / "model.safetensors").exists()

    (tuned / "wb_model.json").write_text(json.dumps({**meta, "prompt": "x"}))
    code, _out, err = run_wb(capsys, monkeypatch, "runs", "soup", "unknown-soup", "a", str(tuned), "-w", str(ws))
    assert code == 2 and 'served with prompt = "x"' in err, err
    assert not (ws / "runs" / "unknown-soup").exists()


def test_a_soups_name_is_taken_before_it_averages(two_runs, monkeypatch):
    """Two `wb runs soup NAME ...` at once: the one that starts second is refused at once, and the
    first one's run is never removed (the second averaged too, then removed the first's folder)."""
    from trainers import soup
    from workbench.errors import UsageError

    ws = two_runs
    ingredients = [ws / "runs" / "a" / "model", ws / "runs" / "b" / "model"]
    real, refused = soup.make_soup, []

    def average_while_another_soup_starts(folders, out, weights=None):
        if not refused:  # the other command, started while this one averages
            refused.append("")
            try:
                soup.soup_run(ws, "race", ingredients)
            except UsageError as exc:
                refused[0] = str(exc)
        return real(folders, out, weights)

    monkeypatch.setattr(soup, "make_soup", average_while_another_soup_starts)
    soup.soup_run(ws, "race", ingredients)
    assert "a run named 'race' exists already: pick another name for the soup" in refused[0]
    run_dir = ws / "runs" / "race"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert (run_dir / "model" / "model.safetensors").exists()
