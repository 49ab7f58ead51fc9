"""The reranker losses (listwise CE, RankNet, pointwise BCE): hand-computed values, padding, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from trainers.losses import RERANK_LOSSES, ListwiseCELoss, PointwiseBCELoss, RankNetLoss, build_rerank_loss
from workbench.errors import TrainingError, UsageError

# two groups: positive first, then three negatives
S = [[2.0, 1.0, 0.5, -1.0], [0.3, 1.2, -0.4, 0.3]]


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_listwise_matches_hand_computation():
    expected = 0.0
    for row in S:
        expected += -(row[0] - math.log(sum(math.exp(x) for x in row)))
    assert ListwiseCELoss()(t(S)).item() == pytest.approx(expected / 2, rel=1e-12)
    # temperature divides the logits
    tau = 0.5
    expected_tau = sum(-(row[0] / tau - math.log(sum(math.exp(x / tau) for x in row))) for row in S) / 2
    assert ListwiseCELoss(temperature=tau)(t(S)).item() == pytest.approx(expected_tau, rel=1e-12)


def test_ranknet_matches_hand_computation():
    terms = [math.log(1 + math.exp(-(row[0] - row[j]))) for row in S for j in (1, 2, 3)]
    assert RankNetLoss()(t(S)).item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    terms2 = [math.log(1 + math.exp(-2.0 * (row[0] - row[j]))) for row in S for j in (1, 2, 3)]
    assert RankNetLoss(sigma=2.0)(t(S)).item() == pytest.approx(sum(terms2) / len(terms2), rel=1e-12)
    # equal scores: log 2
    assert RankNetLoss()(t([[1.0, 1.0]])).item() == pytest.approx(math.log(2), rel=1e-12)


def test_pointwise_matches_hand_computation():
    terms = []
    for row in S:
        terms.append(-math.log(sigmoid(row[0])))
        terms += [-math.log(1 - sigmoid(x)) for x in row[1:]]
    assert PointwiseBCELoss()(t(S)).item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)


@pytest.mark.parametrize("name", sorted(RERANK_LOSSES))
def test_padding_is_ignored(name):
    loss = build_rerank_loss(name)
    short = t([[2.0, 1.0], [0.3, 1.2]])
    padded = t([[2.0, 1.0, 9.0], [0.3, 1.2, -7.0]])
    mask = t([[True, True, False], [True, True, False]], torch.bool)
    assert loss(padded, mask).item() == pytest.approx(loss(short).item(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(RERANK_LOSSES))
def test_bad_inputs_and_gradient_direction(name):
    loss = build_rerank_loss(name)
    with pytest.raises(TrainingError):
        loss(t([[1.0], [2.0]]))  # no negative
    with pytest.raises(TrainingError):
        loss(t([[1.0, 2.0]]), t([[False, True]], torch.bool))  # positive masked out
    with pytest.raises(TrainingError):
        loss(t([[1.0, 2.0]]), t([[True, False]], torch.bool))  # no real negative
    scores = t(S).requires_grad_(True)
    loss(scores).backward()
    assert (scores.grad[:, 0] < 0).all()  # raising the positive lowers the loss
    assert (scores.grad[:, 1:] > 0).all()


def test_registry_names_and_aliases():
    assert set(RERANK_LOSSES) == {"listwise", "pairwise", "pointwise"}
    assert build_rerank_loss("RankNet").name == "pairwise"
    assert build_rerank_loss("bce").name == "pointwise"
    with pytest.raises(UsageError):
        build_rerank_loss("lambdarank")
