"""Layer-wise reranker runs on a tiny random 4-layer BERT with the real MiniLM tokenizer: the loss by
hand, training lowers every layer's loss, early-exit serving equals a full forward's layer-L state
through head L and runs only L layers (also for ModernBERT, whose final norm follows the last
layer), exact resume, and the CLI (`wb train layerwise`, `wb query -p hybrid+rerank --model
reranker=FOLDER@L`)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from conftest import require_models
from tiny_models import run_wb, tiny_bert, tiny_modernbert, topic_groups

pytest.importorskip("accelerate")

N_LAYERS = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 4-layer, 32-wide BertModel with the MiniLM tokenizer, and 24 groups with 3 negatives."""
    require_models()
    root = tmp_path_factory.mktemp("tiny_lw")
    base = root / "base"
    tiny_bert(base, layers=N_LAYERS)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def _new(root: Path, name: str, base: Path, data: Path, **options):
    from trainers.config import LayerwiseConfig
    from trainers.runs import new_run

    settings = dict(batch_size=4, max_steps=12, lr=1e-2, head_lr=1e-2, warmup_ratio=0.0, save_every=100,
                    group_size=4, max_length=64, mixed_precision="no")
    settings.update(options)
    config = LayerwiseConfig(data=str(data), base=str(base), name=name, **settings)
    return new_run(root, name, config.to_json())


def _steps(run) -> list[dict]:
    return [e for e in run.events() if e["event"] == "step"]


# -- the loss ----------------------------------------------------------------------------------
def test_loss_by_hand():
    """Two layers, one group of (positive, negative, padding): sum of the per-layer CE plus
    w * KL(softmax(last) || softmax(first)) at temperature T, computed with math; the last layer's
    gradient comes from its own CE only (the teacher is detached)."""
    import torch

    from trainers.layerwise import layerwise_loss
    from trainers.losses import KLDistillationLoss, ListwiseCELoss

    w, temp = 0.5, 2.0
    first, last = [1.0, 0.0, 7.0], [2.0, -1.0, 7.0]  # column 2 is padding (masked: its 7.0 must not count)
    scores = torch.tensor([[first[0], last[0]], [first[1], last[1]], [first[2], last[2]]]).unsqueeze(0)
    scores.requires_grad_(True)  # [1 group, 3 candidates, 2 layers]
    mask = torch.tensor([[True, True, False]])
    total, per_layer = layerwise_loss(scores, mask, ListwiseCELoss(),
                                      KLDistillationLoss(temperature=temp, teacher_temperature=temp), w)

    def softmax(xs):
        e = [math.exp(x) for x in xs]
        return [v / sum(e) for v in e]

    ce_first = -math.log(softmax(first[:2])[0])
    ce_last = -math.log(softmax(last[:2])[0])
    t = softmax([x / temp for x in last[:2]])
    p = softmax([x / temp for x in first[:2]])
    kl = sum(ti * (math.log(ti) - math.log(pi)) for ti, pi in zip(t, p))
    assert [float(x.detach()) for x in per_layer] == pytest.approx([ce_first, ce_last], abs=1e-6)
    assert float(total.detach()) == pytest.approx(ce_first + ce_last + w * kl, abs=1e-6)
    total.backward()
    # d CE_last / d s_last = softmax(s_last) - onehot(0): no KL term reaches the teacher layer
    q = softmax(last[:2])
    assert scores.grad[0, :2, 1].tolist() == pytest.approx([q[0] - 1, q[1]], abs=1e-6)
    assert scores.grad[0, 2].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)  # padding gets nothing
    # without distillation the first layer's gradient is its CE's alone
    scores.grad = None
    total0, _ = layerwise_loss(scores, mask, ListwiseCELoss(), KLDistillationLoss(), 0.0)
    assert float(total0.detach()) == pytest.approx(ce_first + ce_last, abs=1e-6)


# -- training, serving -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """One finished run (14 steps, heads at layers 2, 3, 4, eval at the end picks the default cutoff)."""
    from trainers.loop import train_run

    base, data = tiny
    root = tmp_path_factory.mktemp("lw_runs")
    run = _new(root, "lw", base, data, max_steps=14, eval_data=str(data))
    status = train_run(run)
    assert status["state"] == "finished" and status["step"] == 14
    return run


@pytest.fixture(scope="module")
def trained_modernbert(tiny, tmp_path_factory):
    """A finished 3-step run (heads at layers 2, 3, 4) on a random 4-layer ModernBERT, which applies
    ``final_norm`` after its last layer: cut to fewer layers, its ``last_hidden_state`` is normed."""
    from trainers.loop import train_run

    _, data = tiny
    root = tmp_path_factory.mktemp("lw_modernbert")
    base = tiny_modernbert(root / "base", layers=N_LAYERS)
    run = _new(root, "lw-mb", base, data, max_steps=3)
    assert train_run(run)["state"] == "finished"
    return run


def test_training_lowers_the_loss_at_every_layer(trained):
    steps = _steps(trained)
    assert len(steps) == 14
    for layer in (2, 3, 4):
        curve = [e[f"loss_layer{layer}"] for e in steps]
        assert sum(curve[-3:]) / 3 < 0.5 * sum(curve[:3]) / 3, (layer, curve)
    meta = json.loads((trained.model_dir / "wb_model.json").read_text())
    assert meta["kind"] == "layerwise-reranker" and meta["layers"] == [2, 3, 4]
    assert meta["num_hidden_layers"] == N_LAYERS and meta["max_length"] == 64
    by_layer = {int(k): v for k, v in meta["eval_mrr_by_layer"].items()}
    assert set(by_layer) == {2, 3, 4}
    # the default cutoff: the smallest layer within 98% of the last layer's MRR
    keep = [l for l in (2, 3, 4) if by_layer[l] >= 0.98 * by_layer[4]]
    assert meta["default_cutoff"] == keep[0]
    assert (trained.model_dir / "layerwise_heads.safetensors").exists()
    assert (trained.model_dir / "tokenizer.json").exists()


PAIRS = [
    ("cats question 0", "the answer: cats 0"),
    ("cats question 0", "unrelated notes, chess 0"),
    ("a much longer query about rivers and bread and engines", "the answer: rivers 7, and then some more words"),
    ("stars", "x"),
    ("bread question 3", "the answer: bread 3 " * 5),
]


def _reference_scores(model_dir: Path, pairs, layer: int) -> list[float]:
    """A full transformers forward of the saved encoder, one pair at a time, ``hidden_states[layer]``'s
    [CLS] through head ``layer`` read from the safetensors file."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    heads = load_file(str(model_dir / "layerwise_heads.safetensors"))
    out = []
    with torch.no_grad():
        for q, p in pairs:
            enc = tokenizer(q, p, truncation="only_second", max_length=64, return_tensors="pt")
            states = encoder(**enc, output_hidden_states=True).hidden_states
            assert len(states) == N_LAYERS + 1
            cls = states[layer][:, 0]
            out.append(float(cls @ heads[f"{layer}.weight"][0] + heads[f"{layer}.bias"][0]))
    return out


@pytest.mark.parametrize("cutoff", [2, 3, 4])
@pytest.mark.parametrize("arch, layer_class", [("bert", "BertLayer"), ("modernbert", "ModernBertEncoderLayer")])
def test_served_scores_equal_the_full_forward_at_that_layer(request, monkeypatch, arch, layer_class, cutoff):
    import torch

    from workbench.encoders.layerwise import LayerwiseReranker

    trained = request.getfixturevalue("trained" if arch == "bert" else "trained_modernbert")
    monkeypatch.setenv("WB_DTYPE", "float32")
    reranker = LayerwiseReranker(str(trained.model_dir), device="cpu", cutoff=cutoff)
    assert reranker.layers_run == cutoff and reranker.name.endswith(f"@{cutoff}")
    ran = []

    def count(module, _args, _out):
        if type(module).__name__ == layer_class:
            ran.append(module)

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        scores = reranker.score_pairs(PAIRS)
    finally:
        handle.remove()
    assert len({id(m) for m in ran}) == cutoff  # only the first `cutoff` layers ever ran
    assert len(ran) >= cutoff and len(ran) % cutoff == 0  # each batch ran them all once
    assert scores.dtype.name == "float32"
    assert scores.tolist() == pytest.approx(_reference_scores(trained.model_dir, PAIRS, cutoff), abs=1e-4)
    # score() is score_pairs() for one query; batching does not change a score
    alone = [float(reranker.score_pairs([pair])[0]) for pair in PAIRS]
    assert scores.tolist() == pytest.approx(alone, abs=1e-4)


def test_a_cross_encoder_base_starts_every_head_as_its_classifier(tiny, tmp_path, monkeypatch):
    """From a trained cross-encoder (BertForSequenceClassification, one logit) the last layer's head
    scores exactly as the cross-encoder at step 0; after training, serving a pooled head at any
    cutoff equals the trainer's own forward."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from trainers.config import LayerwiseConfig
    from trainers.layerwise import LayerwiseTrainer
    from trainers.loop import train_run
    from workbench.encoders.layerwise import LayerwiseReranker, load_heads

    base, data = tiny
    torch.manual_seed(3)
    cross = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1).eval()
    with torch.no_grad():  # a "trained" classifier: weights large enough that scores spread out
        cross.classifier.weight.normal_(0.0, 1.0)
        cross.bert.pooler.dense.weight.normal_(0.0, 0.5)
    ce_dir = tmp_path / "ce"
    cross.save_pretrained(str(ce_dir))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(ce_dir))

    trainer = LayerwiseTrainer(LayerwiseConfig(data=str(data), base=str(ce_dir), name="x", max_length=64))
    model = trainer.build().eval()
    assert model.pooled and trainer.head_init == "cross-encoder"
    batch = trainer._batch(PAIRS, "cpu")
    with torch.no_grad():
        expected = cross(**batch).logits[:, 0]
        scores = model(**batch)
    assert scores[:, -1].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert scores[:, 0].tolist() != pytest.approx(expected.tolist(), abs=1e-2)  # layer 2's state differs
    groups = trainer.param_groups(model)
    assert [g["lr"] for g in groups] == [trainer.cfg.lr, trainer.cfg.head_lr]
    last_head = set(map(id, model.heads["4"].parameters()))
    assert last_head <= set(map(id, groups[0]["params"]))  # the copied classifier on its own layer: the encoder's lr
    assert not last_head & set(map(id, groups[1]["params"])) and len(groups[1]["params"]) == 4 * 2  # layers 2, 3

    run = _new(tmp_path, "lw-ce", ce_dir, data, max_steps=4, lr=1e-3)
    assert train_run(run)["state"] == "finished"
    meta = json.loads((run.model_dir / "wb_model.json").read_text())
    assert meta["head"] == "pooled" and meta["heads_from"] == "cross-encoder"
    heads = load_heads(str(run.model_dir), [2, 3, 4])
    assert heads[2].pool_weight.shape == (32, 32) and heads[4].out_weight.shape == (1, 32)
    monkeypatch.setenv("WB_DTYPE", "float32")
    encoder = AutoModel.from_pretrained(str(run.model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        states = encoder(**batch, output_hidden_states=True).hidden_states
    for cutoff in (2, 3, 4):
        served = LayerwiseReranker(str(run.model_dir), device="cpu", cutoff=cutoff).score_pairs(PAIRS)
        assert served.tolist() == pytest.approx(heads[cutoff](states[cutoff][:, 0]).tolist(), abs=1e-4)


def test_a_base_whose_layers_cannot_be_found_is_refused_before_training(tiny, monkeypatch):
    """Early exit cuts the layer list and reads the last kept layer's output: an encoder whose layers
    are not at a known place is refused when the model is built, not when it is served."""
    import workbench.encoders.layerwise as layerwise
    from trainers.config import LayerwiseConfig
    from trainers.layerwise import LayerwiseTrainer
    from workbench.errors import ModelError

    base, data = tiny
    trainer = LayerwiseTrainer(LayerwiseConfig(data=str(data), base=str(base), name="x", max_length=64))
    model = trainer.build()
    assert len(model.layer_list) == N_LAYERS and "layer_list" not in dict(model.named_children())
    monkeypatch.setattr(layerwise, "_LAYER_PATHS", ("nowhere",))
    with pytest.raises(ModelError, match="cannot find the 4 transformer layers of BertModel"):
        trainer.build()


def test_load_reranker_dispatch_and_cutoff_errors(trained, monkeypatch):
    from workbench.encoders.layerwise import LayerwiseReranker
    from workbench.encoders.rerankers import load_reranker
    from workbench.errors import ModelError
    from workbench.models.registry import RoleModel

    monkeypatch.setenv("WB_DTYPE", "float32")
    folder = str(trained.model_dir)
    meta = json.loads((trained.model_dir / "wb_model.json").read_text())

    def role(path):
        return RoleModel("reranker", path, path, path, False)

    default = load_reranker(role(folder), device="cpu")
    assert isinstance(default, LayerwiseReranker) and default.cutoff == meta["default_cutoff"]
    at3 = load_reranker(role(folder + "@3"), device="cpu")
    assert at3.cutoff == 3 and at3.layers_run == 3
    scores = at3.score("cats question 0", ["the answer: cats 0", "unrelated notes, chess 0"])
    assert scores.shape == (2,) and scores[0] > scores[1]  # it learned the toy task at layer 3 too
    with pytest.raises(ModelError, match="cutoff 1 is not one of them"):
        load_reranker(role(folder + "@1"), device="cpu")


def test_resume_after_stop_reproduces_every_layer(tiny, tmp_path):
    from trainers.loop import train_run

    base, data = tiny
    a = _new(tmp_path, "a", base, data, max_steps=6, layers=[1, 4], distill_weight=0.5)
    assert train_run(a)["state"] == "finished"
    b = _new(tmp_path, "b", base, data, max_steps=6, layers=[1, 4], distill_weight=0.5)

    def stop_at_3(step, run):
        if step == 3:
            run.stop_path.touch()

    status = train_run(b, on_step=stop_at_3)
    assert status["state"] == "stopped" and status["step"] == 3 and not b.model_dir.exists()
    status = train_run(b, resume=True)
    assert status["state"] == "finished" and status["step"] == 6
    assert [e["step"] for e in _steps(b)] == list(range(1, 7))
    for key in ("loss", "loss_layer1", "loss_layer4"):
        assert [e[key] for e in _steps(b)] == pytest.approx([e[key] for e in _steps(a)], rel=1e-4)
    meta = json.loads((b.model_dir / "wb_model.json").read_text())
    assert meta["layers"] == [1, 4] and meta["default_cutoff"] == 4  # no eval data: the last layer


def test_keep_best_records_the_kept_weights_per_layer_mrr(tiny, tmp_path, monkeypatch):
    """With keep_best the saved weights may be an earlier step's than the last: wb_model.json's
    per-layer MRRs (and so the default cutoff chosen from them) are those weights' own. Served in
    float32, as they were measured (a CPU with native bf16 serves in bf16)."""
    monkeypatch.setenv("WB_DTYPE", "float32")
    from trainers.loop import train_run
    from trainers.reranker import eval_groups, group_mrr
    from workbench.encoders.layerwise import LayerwiseReranker

    base, data = tiny
    held_out = topic_groups(tmp_path / "eval.jsonl", 30, 6, phrasing="passage")
    run = _new(tmp_path, "best", base, data, lr=3e-2, head_lr=3e-2, eval_data=str(held_out), eval_every=2,
               keep_best=True)
    status = train_run(run)
    assert status["state"] == "finished"
    assert status["model_step"] < 12  # this run's best evaluation is not its last step's
    meta = json.loads((run.model_dir / "wb_model.json").read_text())
    pairs, spans = eval_groups(str(held_out))
    for layer in meta["layers"]:
        served = LayerwiseReranker(str(run.model_dir), device="cpu", cutoff=layer)
        measured = group_mrr(list(served.score_pairs(pairs)), spans)
        assert meta["eval_mrr_by_layer"][str(layer)] == pytest.approx(measured, abs=1e-3), layer


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_train_then_rerank_at_a_cutoff(tiny, tmp_path, capsys, monkeypatch, small_workspace):
    from workbench.variants import resolve_model_overrides
    from workbench.workspace import Workspace

    base, data = tiny
    ws_dir = tmp_path / "ws"
    code, out, err = run_wb(capsys, monkeypatch, "train", "layerwise", "--data", str(data), "--base", str(base),
                            "--out", "lw1", "--layers", "2,4", "--max-steps", "2", "--batch-size", "4",
                            "--group-size", "3", "--distill-weight", "0.5", "-w", str(ws_dir))
    assert code == 0, err
    assert "finished" in out
    config = json.loads((ws_dir / "runs" / "lw1" / "config.json").read_text())
    assert config["trainer"] == "layerwise" and config["layers"] == [2, 4] and config["distill_weight"] == 0.5
    model = ws_dir / "runs" / "lw1" / "model"
    assert json.loads((model / "wb_model.json").read_text())["layers"] == [2, 4]
    # runs/NAME@L resolves to the run's model folder at layer L
    resolved = resolve_model_overrides(Workspace(ws_dir), {"reranker": "runs/lw1@2"})
    assert resolved["reranker"] == f"{model}@2"
    # bad input: one line, exit 2
    code, _out, err = run_wb(capsys, monkeypatch, "train", "layerwise", "--data", str(data), "--base", str(base),
                             "--out", "lw2", "--layers", "2,9", "--max-steps", "1", "-w", str(ws_dir))
    assert code == 2 and "out of range" in err and "Traceback" not in err
    code, _out, err = run_wb(capsys, monkeypatch, "train", "layerwise", "--data", str(data), "--base", str(base),
                             "--out", "lw3", "--layers", "two", "-w", str(ws_dir))
    assert code == 2 and "layers" in err and "Traceback" not in err
    code, _out, err = run_wb(capsys, monkeypatch, "train", "layerwise", "--data", str(tmp_path / "missing.jsonl"),
                             "--base", str(base), "--out", "lw4", "-w", str(ws_dir))
    assert code == 2 and "missing.jsonl" in err
    # the trained folder, cut at layer 2, reranks a real workspace's hybrid results
    ws, _corpus = small_workspace
    code, out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                            "-p", "hybrid+rerank", "--model", f"reranker={model}@2", "--json", "-k", "5")
    assert code == 0, err
    result = json.loads(out)
    assert result["models"]["reranker"] == "runs/lw1@2 (trained layer-wise)"
    assert len(result["results"]) == 5 and "rerank" in result["timings_ms"]
    code, _out, err = run_wb(capsys, monkeypatch, "query", "group consecutive items", "-w", str(ws.root),
                             "-p", "hybrid+rerank", "--model", f"reranker={model}@3")
    assert code == 2 and "cutoff 3 is not one of them" in err


# -- bench/bench_layerwise.py on a tiny BEIR dataset ---------------------------------------------
@pytest.mark.slow  # ~25 s (indexing + four searchers); `make test-all` runs it
def test_bench_layerwise_table_on_a_tiny_dataset(trained, tmp_path):
    """The benchmark indexes a 12-document BEIR folder, reranks the hybrid top 5 at every cutoff,
    writes the table and stores its chosen cutoff in the run's wb_model.json."""
    import shutil

    from conftest import SAMPLE, SMALL_DOCS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_layerwise

    data = tmp_path / "tiny-beir"
    (data / "qrels").mkdir(parents=True)
    with open(data / "corpus.jsonl", "w") as fh:
        for name in SMALL_DOCS:
            fh.write(json.dumps({"_id": name, "title": name.split("/")[0], "text": (SAMPLE / name).read_text()}) + "\n")
    queries = {"q1": ("group consecutive items by a key", "itertools/groupby.md"),
               "q2": ("delete a directory tree", "shutil/rmtree.md"),
               "q3": ("pause the program for some seconds", "time/sleep.md")}
    with open(data / "queries.jsonl", "w") as fh:
        for qid, (text, _doc) in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_t, d) in queries.items()))
    model = tmp_path / "lw-model"
    shutil.copytree(trained.model_dir, model)
    out = tmp_path / "table.json"
    code = bench_layerwise.main([str(model), "-w", str(tmp_path / "ws"), "--data", str(data),
                                 "--rerank-depth", "5", "--depth", "10", "--out", str(out), "--write-default"])
    assert code == 0
    table = json.loads(out.read_text())
    assert set(table["layers"]) == {"2", "3", "4"} and table["queries"] == 3
    for row in table["layers"].values():
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["ms_per_query"] > 0 and row["pairs"] == 15
    ndcg = {int(k): v["ndcg@10"] for k, v in table["layers"].items()}
    assert table["chosen_cutoff"] == min(l for l in ndcg if ndcg[l] >= 0.98 * ndcg[4])
    assert [table["layers"][k]["layers_run"] for k in ("2", "3", "4")] == [2, 3, 4]
    meta = json.loads((model / "wb_model.json").read_text())
    assert meta["default_cutoff"] == table["chosen_cutoff"] and set(meta["bench_ndcg@10_by_layer"]) == {"2", "3", "4"}


def test_cpu_batches_split_only_where_padding_outweighs_a_pass():
    """The rerankers' CPU batching (shared by LayerwiseReranker): every pair once, length-sorted,
    no tiny trailing batch (a 126-token row joins the 256-token batch), but a wide length spread
    is split so that padding stays small."""
    import random

    import torch

    from workbench.encoders.rerankers import _CPU_BATCH_OVERHEAD, _batches

    cpu = torch.device("cpu")
    lengths = [256] * 26 + [221, 210, 184, 184, 163, 126]
    assert _batches(lengths, max_tokens=16384, max_batch=256, device=cpu) == [list(range(32))]
    rng = random.Random(0)
    lengths = [rng.randint(60, 512) for _ in range(200)]
    parts = _batches(lengths, max_tokens=16384, max_batch=256, device=cpu)
    assert sorted(i for p in parts for i in p) == list(range(200))
    assert len(parts) > 1
    padded = sum(max(lengths[i] for i in p) * len(p) for p in parts)
    one_pass_each = sum(max(lengths[i] for i in p) * len(p) for p in
                        [[i] for i in range(200)])  # no padding at all
    assert padded + len(parts) * _CPU_BATCH_OVERHEAD < one_pass_each + 200 * _CPU_BATCH_OVERHEAD
    assert padded < 1.15 * sum(lengths)  # padding stays small
    for p in parts:
        widths = [lengths[i] for i in p]
        assert widths == sorted(widths, reverse=True) and max(widths) * len(p) <= 16384
    # on a GPU the length-sorted batches are kept whole
    from workbench.encoders.batching import length_sorted_batches

    whole = list(length_sorted_batches(lengths, max_tokens=16384, max_batch=256))
    assert _batches(lengths, max_tokens=16384, max_batch=256, device=torch.device("cuda")) == whole
    assert len(whole) < len(parts)
