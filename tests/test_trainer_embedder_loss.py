"""The embedder's micro-batch loss on a tiny random BERT, against a brute-force computation over the
same model's embeddings: every example keeps its own hard negatives whatever the others have, and a
passage equal to one of a query's own positives is never one of its negatives."""

from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import pytest

from conftest import require_models
from tiny_models import tiny_bert

pytest.importorskip("accelerate")

TAU = 0.05


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with MiniLM's tokenizer."""
    require_models()
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "base")


class NoAutocast:
    """What compute_loss asks of accelerate's Accelerator: an autocast context (none on CPU fp32)."""

    def autocast(self):
        return contextlib.nullcontext()


def _trainer(base, **options):
    from trainers.config import EmbedderConfig
    from trainers.embedder import EmbedderTrainer

    settings = dict(data="x", base=str(base), name="t", temperature=TAU, negatives_per_query=1)
    settings.update(options)
    trainer = EmbedderTrainer(EmbedderConfig(**settings))
    model = trainer.build()
    model.eval()  # no dropout: the loss and the reference see the same embeddings
    return trainer, model


def _embed(trainer, model, texts, max_length):
    import torch

    from trainers.backbone import encode

    with torch.no_grad():
        return encode(model, trainer.tokenizer, texts, max_length, trainer.pooling, trainer.normalize).double().numpy()


def _loss(trainer, model, exs, seed=0):
    return trainer.compute_loss(model, exs, random.Random(seed), "cpu", NoAutocast())[0].item()


def _log_softmax_at(row, target, kept):
    return row[target] - math.log(sum(math.exp(row[c]) for c in kept))


def _brute_infonce(trainer, model, queries, candidates, excluded):
    """Mean over queries of -log softmax(cos / tau) at query i's target column i, the columns in
    ``excluded[i]`` left out."""
    q = _embed(trainer, model, queries, trainer.cfg.query_max_length)
    c = _embed(trainer, model, candidates, trainer.cfg.passage_max_length)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    logits = unit(q) @ unit(c).T / TAU
    return float(np.mean([-_log_softmax_at(row, i, [k for k in range(len(row)) if k not in excluded[i]])
                          for i, row in enumerate(logits)]))


def test_a_row_without_hard_negatives_leaves_the_others_theirs(base):
    from trainers.data import TrainingExample as E

    trainer, model = _trainer(base)
    exs = [E(query=f"question {i} about cats", positives=(f"passage {i} on cats",),
             negatives=(f"notes {i} on engines",)) for i in range(3)]
    exs.append(E(query="question 3 about rivers", positives=("passage 3 on rivers",)))
    got = _loss(trainer, model, exs)
    candidates = [ex.positives[0] for ex in exs] + [ex.negatives[0] for ex in exs[:3]]
    expected = _brute_infonce(trainer, model, [ex.query for ex in exs], candidates, [set()] * 4)
    assert got == pytest.approx(expected, rel=1e-5)
    positives_only = _brute_infonce(trainer, model, [ex.query for ex in exs], candidates[:4], [set()] * 4)
    assert abs(got - positives_only) > 1e-4  # the three hard negatives are in the loss


def test_a_passage_equal_to_a_querys_positive_is_not_its_negative(base):
    """Rows 0 and 1 share their positive; row 2's hard negative is that text too; rows 3 and 4 are
    two rows of one query (each other's positive is that query's positive)."""
    from trainers.data import TrainingExample as E

    trainer, model = _trainer(base)
    exs = [E(query="what is a cat", positives=("a cat is a small feline",), negatives=("engines burn fuel",)),
           E(query="tell me about cats", positives=("a cat is a small feline",), negatives=("bread has yeast",)),
           E(query="rivers", positives=("rivers flow to the sea",), negatives=("a cat is a small feline",)),
           E(query="chess openings", positives=("the sicilian defence",), negatives=("stars are far away",)),
           E(query="chess openings", positives=("the french defence",), negatives=("bread has yeast",))]
    got = _loss(trainer, model, exs)
    # columns: positives 0-4, then negatives 5-9 (5: engines, 6: bread, 7: cat, 8: stars, 9: bread)
    candidates = [ex.positives[0] for ex in exs] + [ex.negatives[0] for ex in exs]
    excluded = [{1, 7}, {0, 7}, set(), {4}, {3}]
    expected = _brute_infonce(trainer, model, [ex.query for ex in exs], candidates, excluded)
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["jointlh", "summarglh", "lsepair"])
def test_multi_positive_losses_keep_each_rows_negatives_and_mask_its_own_passages(base, name):
    import torch

    from trainers.data import TrainingExample as E
    from trainers.losses import build_loss

    trainer, model = _trainer(base, loss=name)
    exs = [E(query="what is a cat", positives=("a cat is a small feline", "cats purr"),
             negatives=("engines burn fuel",)),
           E(query="tell me about cats", positives=("a cat is a small feline",)),
           E(query="rivers", positives=("rivers flow to the sea",), negatives=("cats purr",))]
    got = _loss(trainer, model, exs)
    # columns: 0-1 row 0's positives, 2 row 1's, 3 row 2's; 4 row 0's negative, 5 row 2's
    texts = ["a cat is a small feline", "cats purr", "a cat is a small feline", "rivers flow to the sea",
             "engines burn fuel", "cats purr"]
    q = torch.from_numpy(_embed(trainer, model, [ex.query for ex in exs], trainer.cfg.query_max_length))
    c = torch.from_numpy(_embed(trainer, model, texts, trainer.cfg.passage_max_length))
    scores = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(c, dim=-1).T / TAU
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    for row, col in [(0, 2), (0, 5), (1, 0)]:  # its own positive's text elsewhere: no negative
        scores[row, col] = float("-inf")
    assert got == pytest.approx(build_loss(name)(scores, mask).item(), rel=1e-5)
