"""Joint (BGE-M3-style) runs on a tiny random BERT: dense + sparse + ColBERT heads train together, the
self-distillation KL by hand, the sparse-collapse guard, exact resume, and the saved folder served:
`wb train joint` -> `wb index --model joint=runs/NAME` -> queries in every mode, with the trainer's
own vectors and labels that say "trained (joint)"."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import copy_small_corpus, require_models
from tiny_models import TOPICS, run_wb, tiny_bert, topic_groups

pytest.importorskip("accelerate")


def test_self_distillation_is_the_kl_from_the_ensemble_by_hand():
    from trainers.joint import ensemble_scores, self_distillation

    scores = {
        "dense": torch.tensor([[0.9, 0.1, -0.2], [0.3, 0.8, 0.0]], dtype=torch.float64, requires_grad=True),
        "sparse": torch.tensor([[2.0, 0.0, 0.5], [0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True),
        "colbert": torch.tensor([[0.7, 0.4, 0.2], [0.5, 0.6, 0.1]], dtype=torch.float64, requires_grad=True),
    }
    weights = {"dense": 1.0, "sparse": 0.3, "colbert": 1.0}
    tau = 0.5
    teacher = ensemble_scores(scores, weights)
    got = self_distillation(scores, teacher, tau)

    def softmax(row):
        e = [math.exp(x) for x in row]
        return [x / sum(e) for x in e]

    plain = {m: s.detach().tolist() for m, s in scores.items()}
    ens = [[plain["dense"][i][j] + 0.3 * plain["sparse"][i][j] + plain["colbert"][i][j] for j in range(3)]
           for i in range(2)]
    for mode in ("dense", "sparse", "colbert"):
        kl = 0.0
        for i in range(2):
            p = softmax([x / tau for x in ens[i]])
            q = softmax([x / tau for x in plain[mode][i]])
            kl += sum(pj * (math.log(pj) - math.log(qj)) for pj, qj in zip(p, q))
        assert got[mode].item() == pytest.approx(kl / 2, rel=1e-10)
    # the teacher is detached: the KL of a mode sends gradient into that mode's scores only
    got["dense"].backward()
    assert scores["sparse"].grad is None and scores["colbert"].grad is None
    assert scores["dense"].grad.abs().sum() > 0


def test_sparse_terms_are_max_over_occurrences_without_special_tokens():
    from workbench.encoders.joint import sparse_matrix, token_weights

    # [CLS]=101 7 9 7 [SEP]=102 [PAD]=0; the head maps the 1-d state straight to its pre-activation
    ids = torch.tensor([[101, 7, 9, 7, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    hidden = torch.tensor([[[5.0], [0.5], [-1.0], [2.0], [4.0], [9.0]]])
    head = torch.nn.Linear(1, 1)
    with torch.no_grad():
        head.weight.fill_(1.0)
        head.bias.zero_()
    pre, w = token_weights(hidden, ids, mask, head, [0, 101, 102])
    assert pre.tolist() == [[5.0, 0.5, -1.0, 2.0, 4.0, 9.0]]
    assert w.tolist() == [[0.0, 0.5, 0.0, 2.0, 0.0, 0.0]]  # relu; special and padding dropped
    terms = sparse_matrix(ids, w, 120)
    assert terms[0, 7].item() == 2.0 and terms[0, 9].item() == 0.0
    assert int((terms > 0).sum()) == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with the MiniLM tokenizer, and 24 rows with 3 negatives."""
    require_models()
    root = tmp_path_factory.mktemp("tiny_joint")
    base = root / "base"
    tiny_bert(base)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def _as_sentence_transformers(base, dest):
    """A copy of the tiny base at ``dest`` in sentence-transformers layout (modules.json, mean pooling)."""
    import shutil

    shutil.copytree(base, dest)
    (dest / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    return dest


def _config(base, data, name, **kw):
    from trainers.config import JointConfig

    values = dict(batch_size=4, max_steps=12, lr=1e-2, head_lr=1e-2, warmup_ratio=0.0, save_every=100,
                  passage_max_length=64)
    values.update(kw)
    return JointConfig(data=str(data), base=str(base), name=name, **values)


def _steps(run):
    return [e for e in run.events() if e["event"] == "step"]


def _mean(values):
    return sum(values) / len(values)


def test_joint_trains_every_mode_and_saves_a_joint_folder(tiny, tmp_path, capsys, monkeypatch):
    from trainers.loop import train_run
    from trainers.runs import new_run
    from workbench.encoders.joint import COLBERT_HEAD, SPARSE_HEAD, read_joint_meta
    from workbench.encoders.layout import read_layout

    base, data = tiny
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": f"the answer: {t} {i}"}) + "\n" for i, t in enumerate(TOPICS)))
    (beir / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i}", "text": f"{t} question {i}"}) + "\n" for i, t in enumerate(TOPICS)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    run = new_run(tmp_path, "j", _config(base, data, "j", max_steps=12, eval_data=str(beir), eval_every=12).to_json())
    status = train_run(run)
    assert status["state"] == "finished" and status["kind"] == "joint"
    base_eval = [e for e in run.events() if e["event"] == "eval" and e.get("base")]
    evals = [e for e in run.events() if e["event"] == "eval" and not e.get("base")]
    assert len(evals) == 1 and status["best_metric"] == evals[0]["ndcg@10"] == evals[0]["ndcg@10_fused"]
    # the base model measured before the first step: what the run is compared with
    assert [e["step"] for e in base_eval] == [0] and status["base_metric"] == base_eval[0]["ndcg@10"]
    assert status["metric"] == "ndcg@10" and status["best_step"] == 12
    code, out, err = run_wb(capsys, monkeypatch, "runs", "-w", str(tmp_path))  # `wb runs` names the metric
    assert code == 0, err
    assert f"{status['best_metric']:.4f} (ndcg@10, step 12)" in next(line for line in out.splitlines() if line.startswith("j "))
    assert all(0.0 <= evals[0][f"ndcg@10_{m}"] <= 1.0 for m in ("dense", "sparse", "colbert"))
    steps = _steps(run)
    assert len(steps) == 12
    for key in ("loss", "dense_loss", "sparse_loss", "colbert_loss"):
        values = [e[key] for e in steps]
        assert _mean(values[-3:]) < _mean(values[:3]), (key, values)
    assert all(e["q_nnz"] > 0 and e["d_nnz"] > 0 and e["sparse_guard"] == 0 for e in steps)
    assert all({"kl_dense", "kl_sparse", "kl_colbert"} <= set(e) for e in steps)
    meta = read_joint_meta(run.model_dir)
    assert meta["kind"] == "joint" and meta["colbert_dim"] == 32 and meta["pooling"] == "mean"
    assert {101, 102, 0} <= set(meta["special_ids"])
    assert (run.model_dir / SPARSE_HEAD).is_file() and (run.model_dir / COLBERT_HEAD).is_file()
    # the encoder is a sentence-transformers folder: `--model dense=runs/NAME` reads it as an embedder
    layout = read_layout(str(run.model_dir))
    assert layout.kind == "sentence-transformers" and layout.pooling == "mean" and layout.normalize


def test_sparse_collapse_guard_revives_a_dead_head(tiny, tmp_path):
    """A head whose bias starts at -3 is dead (every token weight 0): without the guard it stays dead
    (no gradient reaches a relu that passes none), with it the terms come back."""
    from trainers.loop import train_run
    from trainers.runs import new_run

    base, data = tiny
    off = new_run(tmp_path, "off", _config(base, data, "off", max_steps=5, sparse_bias_init=-3.0,
                                           sparse_min_terms=0.0).to_json())
    assert train_run(off)["state"] == "finished"
    steps = _steps(off)
    assert all(e["q_nnz"] == 0 and e["d_nnz"] == 0 and e["sparse_guard"] == 0 for e in steps)
    assert all(e["sparse_loss"] == pytest.approx(math.log(8), rel=1e-5) for e in steps)  # uniform over 8
    head = torch.load(off.model_dir / "sparse_linear.pt")
    assert float(head["bias"]) < -2.9

    on = new_run(tmp_path, "on", _config(base, data, "on", max_steps=5, sparse_bias_init=-3.0).to_json())
    assert train_run(on)["state"] == "finished"
    steps = _steps(on)
    assert steps[0]["q_nnz"] == 0 and steps[0]["sparse_guard"] == 1
    assert steps[-1]["q_nnz"] > 0 and steps[-1]["d_nnz"] > 0
    assert _mean([e["sparse_loss"] for e in steps[-2:]]) < math.log(8) - 0.1


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
    status = train_run(b, resume=True)
    assert status["state"] == "finished" and status["step"] == 6
    assert [e["step"] for e in _steps(b)] == list(range(1, 7))
    for key in ("loss", "dense_loss", "sparse_loss", "colbert_loss", "q_nnz"):
        assert [e[key] for e in _steps(b)] == pytest.approx([e[key] for e in _steps(a)], rel=1e-4, abs=1e-6)


def test_a_pooling_the_joint_trainer_refuses_is_said_before_the_run_exists(tiny, tmp_path, capsys, monkeypatch):
    """Not a detached run that says it started and then fails: one line, exit 2, no run folder."""
    base, data = tiny
    config = tmp_path / "run.toml"
    config.write_text('pooling = "last"\n')
    code, _out, err = run_wb(capsys, monkeypatch, "train", "joint", "--data", str(data), "--base", str(base),
                             "--out", "j0", "--config", str(config), "--detach", "-w", str(tmp_path / "ws"))
    assert code == 2 and "training option pooling must be auto, mean or cls, not 'last'" in err, err
    assert not (tmp_path / "ws" / "runs" / "j0").exists()


def test_cli_train_index_and_query_a_joint_variant(tiny, tmp_path, capsys, monkeypatch):
    from trainers.config import JointConfig
    from trainers.joint import JointTrainer
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.variants import serving
    from workbench.workspace import Workspace

    monkeypatch.setenv("WB_DTYPE", "float32")
    base, data = tiny
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "time/sleep.md", "heapq/overview.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    code, out, err = run_wb(capsys, monkeypatch, "train", "joint", "--data", str(data), "--base", str(base),
                            "--out", "j1", "--max-steps", "2", "--batch-size", "4", "--passage-max-length", "64",
                            "-w", str(ws.root))
    assert code == 0, err
    assert json.loads((ws.runs_dir / "j1" / "config.json").read_text())["trainer"] == "joint"
    code, _out, err = run_wb(capsys, monkeypatch, "query", "sleep", "--model", "joint=runs/j1", "-w", str(ws.root))
    assert code != 0 and "wb index" in err

    # only the modes whose model changed are encoded: ColBERT and sparse from the joint model, dense copied
    code, out, err = run_wb(capsys, monkeypatch, "index", "--model", "colbert=runs/j1", "--model", "sparse=runs/j1",
                            "-w", str(ws.root), "--json")
    assert code == 0, err
    assert [f["reused_modes"] for f in json.loads(out)["folders"]] == [["dense"]]
    # all three roles from the joint model: nothing to copy
    code, out, err = run_wb(capsys, monkeypatch, "index", "--model", "joint=runs/j1", "-w", str(ws.root), "--json")
    assert code == 0, err
    summary, = json.loads(out)["folders"]
    assert summary["reused_modes"] == [] and summary["chunks_written"] > 0

    for pipeline in ("dense", "sparse", "colbert", "hybrid"):
        code, out, err = run_wb(capsys, monkeypatch, "query", "pause the program for a while", "-p", pipeline,
                                "--model", "joint=runs/j1", "-w", str(ws.root), "--json")
        assert code == 0, (pipeline, err)
        result = json.loads(out)
        assert len(result["results"]) == 3, pipeline
        for role in ("dense", "sparse", "colbert"):
            assert result["models"][role] == "runs/j1 (trained joint)"
        assert "zero-shot" not in json.dumps(result["models"])
        if pipeline == "hybrid":
            fused = {mode for r in result["results"] for mode in r["scores"]}
            assert fused == {"dense", "sparse", "colbert", "bm25"}

    # the served query vectors are the trainer's own encoding of the query, from ONE encoder pass
    serve = serving(ws, {role: "runs/j1" for role in ("dense", "sparse", "colbert")})
    searcher = Searcher(serve.workspace, config=serve.config)
    encoder = searcher.bundle.dense.model
    calls = []
    hook = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        q = searcher.encode_queries(["pause the program for a while"], {"dense", "sparse", "colbert"})[0]
    finally:
        hook.remove()
    assert len(calls) == 1
    assert searcher.snapshot.tokens.bits.shape[1] == 32
    trainer = JointTrainer(JointConfig(data=str(data), base=str(ws.runs_dir / "j1" / "model"), name="x",
                                       passage_max_length=64))
    model = trainer.build().eval()
    with torch.no_grad():
        mine = trainer.encode(model, ["pause the program for a while"], trainer.q_len, torch.device("cpu"))
    assert np.allclose(q.dense, mine.dense[0].numpy(), atol=1e-5)
    expected_ids = torch.nonzero(mine.sparse[0] > 0).flatten()
    assert q.sparse_ids.tolist() == expected_ids.tolist() and len(expected_ids) > 0
    assert np.allclose(q.sparse_weights, mine.sparse[0, expected_ids].numpy(), atol=1e-5)
    assert np.allclose(q.tokens, mine.colbert[0].numpy(), atol=2e-3)
    # `wb query` answers through the numpy backend: the joint model runs there too (one forward, the
    # same three outputs) and the answers are the torch backend's
    numpy_side = Searcher(serve.workspace, config=serve.config, backend="numpy")
    qn = numpy_side.encode_queries(["pause the program for a while"], {"dense", "sparse", "colbert"})[0]
    assert type(numpy_side.bundle.sparse._joint).__name__ == "NumpyJointEncoder"
    assert np.allclose(qn.dense, q.dense, atol=1e-5)
    assert qn.sparse_ids.tolist() == q.sparse_ids.tolist()
    assert np.allclose(qn.sparse_weights, q.sparse_weights, atol=1e-5)
    assert np.allclose(qn.tokens, q.tokens, atol=2e-3)
    for pipeline in ("sparse", "colbert", "hybrid"):
        a = numpy_side.search("pause the program for a while", pipeline=pipeline, k=3)
        b = searcher.search("pause the program for a while", pipeline=pipeline, k=3)
        assert [h.doc_id for h in a.results] == [h.doc_id for h in b.results], pipeline
        # abs 1e-3: hybrid's min-max fusion magnifies the two backends' ~1e-6 differences in summation
        # order (AVX-512 and AVX2 kernels sum differently), a mode alone stays within 1e-4
        assert [h.score for h in a.results] == pytest.approx([h.score for h in b.results],
                                                             abs=1e-4 if pipeline != "hybrid" else 1e-3)
    # the workspace's own index is untouched and still zero-shot
    base_result = Searcher(ws).search("pause the program", pipeline="hybrid", k=3)
    assert base_result.models["colbert"].endswith("(zero-shot)")


def test_colbert_head_starts_at_the_zero_shot_maxsim(tiny):
    """colbert_dim = hidden size with an orthogonal weight and zero bias: the token vectors' dot
    products (hence MaxSim) equal the zero-shot ones over the base's normalised token states."""
    from trainers.joint import JointTrainer

    from accelerate.utils import set_seed

    base, data = tiny
    config = _config(base, data, "z")
    trainer = JointTrainer(config)
    set_seed(config.seed)  # as a run does before building: the heads' init must not hang on earlier tests
    model = trainer.build().eval()
    texts = ["cats question 0", "the answer: cats 0 and more words"]
    with torch.no_grad():
        enc = trainer.encode(model, texts, 64, torch.device("cpu"))
        ids = trainer.tokenizer(texts, padding=True, return_tensors="pt")
        hidden = model.encoder(**ids).last_hidden_state
    zero_shot = torch.nn.functional.normalize(hidden, dim=-1)
    q, d = enc.colbert[0, :5], enc.colbert[1, :10]
    assert enc.colbert.shape[-1] == 32
    assert torch.allclose(q @ d.T, zero_shot[0, :5] @ zero_shot[1, :10].T, atol=1e-5)
    # and the sparse head starts alive (bias 0.5): at least 2 of the query's 3 terms weigh > 0
    assert (enc.sparse[0] > 0).sum() >= 2


def test_a_joint_model_serves_bare_texts_as_it_trained(tiny, tmp_path):
    """The joint trainer reads bare queries and passages: a base with e5-style prompts in its
    sentence-transformers config must not lend them to the saved model (its dense mode was served
    "query: ..." / "passage: ..." it never saw)."""

    from trainers.loop import train_run
    from trainers.runs import new_run
    from workbench.encoders.layout import read_layout
    from workbench.encoders.templates import templates_for

    base, data = tiny
    prompted = _as_sentence_transformers(base, tmp_path / "prompted")
    (prompted / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}}))
    assert templates_for(str(prompted), "encoder", str(prompted)).render_query("q", "") == "query: q"
    run = new_run(tmp_path / "ws", "j", _config(prompted, data, "j", max_steps=1).to_json())
    assert train_run(run)["state"] == "finished"
    served = templates_for("runs/j", read_layout(str(run.model_dir)).kind, str(run.model_dir))
    assert served.render_query("what is x", "") == "what is x"
    assert served.render_document("a passage") == "a passage"


def test_joint_queries_run_in_float32_where_documents_run_in_bf16(tiny, tmp_path, monkeypatch):
    """As every other query encoder: with documents in bf16 (forced here; the default on a CPU with
    native bf16 and on CUDA), a joint model's queries (dense, ColBERT and sparse roles) are encoded in
    float32, what the numpy backend (`wb query`) gives, so `wb query` and `wb eval`/the TUI rank alike.
    Before, joint queries ran in the documents' bf16."""
    from trainers.loop import train_run
    from trainers.runs import new_run
    from workbench.encoders.joint import JointEncoder
    from workbench.encoders.numpy_bert import NumpyJointEncoder

    base, data = tiny
    run = new_run(tmp_path / "ws", "j", _config(base, data, "j", max_steps=1).to_json())
    assert train_run(run)["state"] == "finished"
    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    joint, reference = JointEncoder(str(run.model_dir)), NumpyJointEncoder.load(str(run.model_dir))
    assert reference is not None
    texts = ["cats purr when content", "chess openings and endgames", "a much longer query about the " * 5]
    want = reference.encode(texts)
    views = joint.dense_view(), joint.colbert_view(), joint.sparse_view()
    dense = views[0].encode(texts, queries=True).dense
    np.testing.assert_allclose(dense, want.dense, atol=1e-5, rtol=0)
    for got, expected in zip(views[1].encode_queries(texts), want.colbert):
        np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), atol=2e-3, rtol=0)
    for got, expected in zip(views[2].encode(texts, queries=True), want.sparse):
        assert np.array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.weights, expected.weights, atol=1e-4, rtol=0)
    # documents keep bf16 (and the memo does not hand the query vectors to a document call)
    assert np.abs(views[0].encode(texts).dense - want.dense).max() > 1e-4


@pytest.mark.parametrize("distill_weight", [0.0, 1.0])
def test_a_positive_two_rows_share_is_no_negative_of_either(tiny, distill_weight):
    """Two examples of a batch with one positive text: the duplicate column is masked in every mode's
    InfoNCE and in the self-distillation (neither the ensemble nor a mode puts mass on it). Before,
    each mode's loss was log 2 at best."""
    from tiny_models import shared_positive_loss
    from trainers.joint import JointTrainer

    base, data = tiny
    trainer = JointTrainer(_config(base, data, "n", negatives_per_query=0, distill_weight=distill_weight,
                                   sparse_min_terms=0.0))  # no collapse-guard penalty on a random head
    assert shared_positive_loss(trainer) < math.log(2) / 10


def test_self_distillation_leaves_masked_columns_out_of_teacher_and_student():
    """A false-negative column (``candidate_mask`` False) carries no mass in the ensemble teacher nor in
    the modes: the KL equals the KL over the other columns alone, however high the column scores."""
    from trainers.joint import MODES, self_distillation

    torch.manual_seed(0)
    scores = {m: torch.randn(2, 4, dtype=torch.float64) for m in MODES}
    teacher = torch.randn(2, 4, dtype=torch.float64)
    teacher[:, 1] = scores["dense"][:, 1] = 50.0  # the duplicate of each row's positive
    keep = torch.tensor([[True, False, True, True]] * 2)
    got = self_distillation(scores, teacher, 0.5, keep)
    cols = [0, 2, 3]
    want = self_distillation({m: s[:, cols] for m, s in scores.items()}, teacher[:, cols], 0.5)
    for m in MODES:
        assert float(got[m]) == pytest.approx(float(want[m]), abs=1e-9)


def test_served_lengths_are_the_trained_ones(tiny, tmp_path, monkeypatch):
    """A joint run over a sentence-transformers base (max_seq_length 256) trained at query length 8 and
    passage length 16: the folder serves 16 (its sentence_bert_config), and JointEncoder and
    NumpyJointEncoder give a long query the trainer's vectors of it cut at 8 tokens, a long document
    the trainer's at 16. Before, both were read at the base's 256."""

    from trainers.loop import train_run
    from trainers.runs import new_run
    from trainers.joint import JointTrainer
    from workbench.encoders.joint import JointEncoder
    from workbench.encoders.layout import read_layout
    from workbench.encoders.numpy_bert import NumpyJointEncoder

    base, data = tiny
    st_base = _as_sentence_transformers(base, tmp_path / "st")
    (st_base / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    lengths = dict(query_max_length=8, passage_max_length=16)
    run = new_run(tmp_path / "ws", "j", _config(st_base, data, "j", max_steps=1, **lengths).to_json())
    assert train_run(run)["state"] == "finished"
    folder = str(run.model_dir)
    assert read_layout(folder).max_length == 16

    text = " ".join(TOPICS * 5)  # 30 words: longer than either length
    trainer = JointTrainer(_config(folder, data, "x", **lengths))
    model = trainer.build().eval()
    with torch.no_grad():
        want = {True: trainer.encode(model, [text], 8, "cpu"), False: trainer.encode(model, [text], 16, "cpu")}
    monkeypatch.setenv("WB_DTYPE", "float32")
    for enc in (JointEncoder(folder, device="cpu"), NumpyJointEncoder.load(folder)):
        for queries, expected in want.items():
            got = enc.encode([text], queries=queries)
            name = f"{type(enc).__name__} queries={queries}"
            np.testing.assert_allclose(got.dense[0], expected.dense[0].numpy(), atol=1e-5, rtol=0, err_msg=name)
            assert got.colbert[0].shape[0] == int(expected.mask.sum()), name
            np.testing.assert_allclose(got.colbert[0].astype(np.float32), expected.colbert[0].numpy(),
                                       atol=2e-3, rtol=0, err_msg=name)
            terms = expected.sparse[0].numpy()
            assert np.array_equal(got.sparse[0].ids, np.flatnonzero(terms > 0)), name
            np.testing.assert_allclose(got.sparse[0].weights, terms[got.sparse[0].ids], atol=1e-5, rtol=0,
                                       err_msg=name)


def test_an_example_without_hard_negatives_leaves_the_others_theirs(tiny):
    """As in every other trainer: one example of a micro-batch without hard negatives no longer
    drops the hard negatives of the whole batch."""
    from tiny_models import passages_of_a_mixed_batch
    from trainers.joint import JointTrainer

    base, data = tiny
    trainer = JointTrainer(_config(base, data, "n", negatives_per_query=1))
    assert passages_of_a_mixed_batch(trainer) == ["cats question", "dogs question", "cats purr", "dogs bark",
                                                  "NEG chess"]
