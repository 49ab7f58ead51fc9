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
        {"_id": f"d{i}", "title": "", "text": f"a passage about {TOPICS[i % 6]} number {i}"}) + "\n" for i in range(20)))
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
