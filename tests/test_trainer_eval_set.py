"""The nDCG@10 a ColBERT or SPLADE run logs while it trains (``trainers/eval_set.py``) is the one its
saved model gives when served: the served encoder's vectors, scored by brute force over the eval
corpus, ranked and judged by ranx."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_models
from tiny_models import tiny_bert, topic_beir, topic_groups

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    require_models()
    root = tmp_path_factory.mktemp("tiny_evalset")
    base = tiny_bert(root / "base", masked_lm=True)
    return base, topic_groups(root / "train.jsonl", 24, 3), topic_beir(root / "beir")


def _served_ndcg(beir, score) -> float:
    """nDCG@10 of ``score(query texts, document texts) -> [Q, D]`` on the folder's test split."""
    import json

    from ranx import Qrels, Run, evaluate

    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (beir / "queries.jsonl").read_text().splitlines()]
    qrels: dict[str, dict[str, int]] = {}
    for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    scores = score([q["text"] for q in queries], [d["text"] for d in docs])
    run = {q["_id"]: {docs[j]["_id"]: float(scores[i, j]) for j in np.argsort(-scores[i])[:100]}
           for i, q in enumerate(queries)}
    return float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))


def _trained(run_cls, tmp_path, **fields):
    from trainers.loop import train_run
    from trainers.runs import new_run

    run = new_run(tmp_path, fields["name"], run_cls(**fields).to_json())
    assert train_run(run)["state"] == "finished"
    evals = [e for e in run.events() if e["event"] == "eval" and not e.get("base")]
    assert [e["step"] for e in evals] == [3, 6]
    return run, evals[-1]["ndcg@10"]


def test_a_colbert_runs_logged_ndcg_is_its_served_models(tiny, tmp_path, monkeypatch):
    from trainers.config import ColbertConfig
    from workbench.encoders.colbert import ColbertEncoder

    base, data, beir = tiny
    run, logged = _trained(ColbertConfig, tmp_path, data=str(data), base=str(base), name="cb", batch_size=4,
                           max_steps=6, lr=1e-2, head_lr=1e-2, warmup_ratio=0.0, save_every=100, dim=16,
                           passage_max_length=64, eval_data=str(beir), eval_every=3)
    monkeypatch.setenv("WB_DTYPE", "float32")
    enc = ColbertEncoder(str(run.model_dir), device="cpu")

    def maxsim(queries, documents):
        qs = [q.astype(np.float32) for q in enc.encode_queries(queries)]
        ds = [d.astype(np.float32) for d in enc.encode_documents(documents)]
        return np.array([[float((q @ d.T).max(axis=1).sum()) for d in ds] for q in qs])

    assert logged == pytest.approx(_served_ndcg(beir, maxsim), abs=1e-6)


def test_a_splade_runs_logged_ndcg_is_its_served_models(tiny, tmp_path, monkeypatch):
    from trainers.config import SpladeConfig
    from workbench.encoders.sparse import SparseEncoder

    base, data, beir = tiny
    run, logged = _trained(SpladeConfig, tmp_path, data=str(data), base=str(base), name="sp", batch_size=4,
                           max_steps=6, lr=5e-3, warmup_ratio=0.0, save_every=100, passage_max_length=64,
                           lambda_q=1e-3, lambda_d=1e-3, eval_data=str(beir), eval_every=3)
    monkeypatch.setenv("WB_DTYPE", "float32")
    enc = SparseEncoder(str(run.model_dir), device="cpu")

    def dot(queries, documents):
        qs = [v.as_dict() for v in enc.encode(queries, queries=True)]
        ds = [v.as_dict() for v in enc.encode(documents)]
        return np.array([[sum(w * d.get(t, 0.0) for t, w in q.items()) for d in ds] for q in qs])

    assert logged == pytest.approx(_served_ndcg(beir, dot), abs=1e-6)
