"""What the embedder trainer writes around its texts: the instruction its in-training evaluation
gives the eval queries (the one the training queries had), the base's own query and document
templates (as serving uses them) and row prompts written in FlagEmbedding's convention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import require_models
from tiny_models import TOPICS, tiny_bert

pytest.importorskip("accelerate")
pytest.importorskip("ranx")

PROMPT = "Given a question, retrieve passages that answer it"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with MiniLM's tokenizer."""
    require_models()
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "base")


def _rows(path: Path, prompt: str, n: int = 8, type_: str | None = None) -> Path:
    with open(path, "w") as fh:
        for i in range(n):
            row = {"query": f"question {i} about {TOPICS[i % 6]}", "pos": [f"a passage about {TOPICS[i % 6]} {i}"],
                   "neg": [], "prompt": prompt}
            if type_:
                row["type"] = type_
            fh.write(json.dumps(row) + "\n")
    return path


def _beir(folder: Path) -> Path:
    """A BEIR folder (test split): 20 passages, 10 judged queries."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(
        {"_id": f"d{i}", "title": "", "text": f"a passage about {TOPICS[i % 6]} number {i}"}) + "\n"
        for i in range(20)))
    (folder / "queries.jsonl").write_text("".join(json.dumps(
        {"_id": f"q{i}", "text": f"question {i} about {TOPICS[i % 6]}"}) + "\n" for i in range(10)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "".join(f"q{i}\td{i}\t1\n" for i in range(10)))
    return folder


def _trainer(base, data, **options):
    from trainers.config import EmbedderConfig
    from trainers.embedder import EmbedderTrainer

    cfg = EmbedderConfig.from_dict({"data": data, "base": str(base), "name": "t", **options})
    trainer = EmbedderTrainer(cfg)
    trainer.examples()
    return trainer, trainer.build()


def test_eval_queries_get_the_instruction_the_training_rows_carry(base, tmp_path):
    from trainers.embedder import _evaluate

    beir = _beir(tmp_path / "beir")
    trainer, model = _trainer(base, str(_rows(tmp_path / "train.jsonl", PROMPT)), eval_data=str(beir))
    got = trainer.evaluate(model, "cpu")
    args = (model, trainer.tokenizer, trainer.cfg, trainer.templates, trainer.pooling, trainer.normalize, "cpu")
    with_prompt = _evaluate(*args, instruction=PROMPT)
    without = _evaluate(*args, instruction="")
    assert with_prompt != pytest.approx(without)  # the setup's premise: the instruction moves the figure
    assert got == pytest.approx(with_prompt)


def test_with_several_instructions_eval_takes_the_eval_datas_task_and_says_so(base, tmp_path, capsys):
    beir = _beir(tmp_path / "scifact")
    other = _rows(tmp_path / "web.jsonl", "Given a web search query, retrieve relevant passages", n=12)
    claims = _rows(tmp_path / "claims.jsonl", PROMPT, type_="scifact")
    trainer, _ = _trainer(base, [str(other), str(claims)], eval_data=str(beir))
    assert trainer.eval_instruction == PROMPT
    out = capsys.readouterr().out
    assert f"eval queries use {PROMPT!r}" in out and "task scifact" in out
    # no task named as the eval folder: the most common one, said as such
    trainer, _ = _trainer(base, [str(other), str(claims)], eval_data=str(_beir(tmp_path / "other")))
    assert trainer.eval_instruction == "Given a web search query, retrieve relevant passages"
    assert "the most common, 12 of 20" in capsys.readouterr().out


class NoAutocast:
    """What compute_loss asks of accelerate's Accelerator: an autocast context (none on CPU fp32)."""

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()


def test_a_prompted_base_trains_evaluates_and_records_the_prompts_serving_gives_it(base, tmp_path):
    """A base whose sentence-transformers config has query/document prompts (as nomic's and e5's
    do): the loss is that of the prefixed texts, eval encodes prefixed passages and queries, and the
    saved model is served with the same templates as its base."""
    import math
    import random
    import shutil

    import numpy as np
    import torch

    from trainers.backbone import encode
    from trainers.data import TrainingExample as E
    from trainers.embedder import _evaluate
    from workbench.encoders.templates import PLAIN, templates_for

    prompted = tmp_path / "prompted"
    shutil.copytree(base, prompted)
    (prompted / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "search_query: ", "document": "search_document: "}}))
    served = templates_for(str(prompted), "encoder", str(prompted))
    beir = _beir(tmp_path / "beir")
    trainer, model = _trainer(prompted, str(_rows(tmp_path / "train.jsonl", "")), eval_data=str(beir),
                              negatives_per_query=0, temperature=0.05)
    model.eval()
    exs = [E(query=f"question {i} about {t}", positives=(f"a passage about {t}",)) for i, t in enumerate(TOPICS[:4])]
    got = trainer.compute_loss(model, exs, random.Random(0), "cpu", NoAutocast())[0].item()

    def embed(texts):
        with torch.no_grad():
            return encode(model, trainer.tokenizer, texts, 64, trainer.pooling, trainer.normalize).double().numpy()
    q = embed([f"search_query: {ex.query}" for ex in exs])
    p = embed([f"search_document: {ex.positives[0]}" for ex in exs])
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    logits = unit(q) @ unit(p).T / 0.05
    expected = np.mean([math.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])
    assert got == pytest.approx(expected, rel=1e-5)

    args = (model, trainer.tokenizer, trainer.cfg)
    rest = (trainer.pooling, trainer.normalize, "cpu")
    assert trainer.evaluate(model, "cpu") == pytest.approx(_evaluate(*args, served, *rest, instruction=""))
    plain = _evaluate(*args, PLAIN, *rest, instruction="")
    assert _evaluate(*args, served, *rest, instruction="") != pytest.approx(plain)  # the prefixes matter

    trainer.save_final(model, tmp_path / "out")
    assert templates_for(str(tmp_path / "out"), "encoder", str(tmp_path / "out")) == served
