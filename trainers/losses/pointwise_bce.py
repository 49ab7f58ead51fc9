"""Pointwise binary cross entropy: every (query, passage) pair labelled relevant or not."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import RetrievalLoss
from ._groups import check_group_scores

__all__ = ["PointwiseBCELoss"]


class PointwiseBCELoss(RetrievalLoss):
    r"""Sigmoid cross entropy on each candidate alone: label 1 for column 0, 0 for the others.

    Inputs:
        scores: ``[B, G]`` logits, column 0 the positive, columns 1.. the negatives.
        candidate_mask: optional ``[B, G]`` bool, False at padding.

    With :math:`y_{i0} = 1`, :math:`y_{ij} = 0` for j >= 1 and :math:`C` the real candidates,

    .. math::
        \mathcal{L} = -\frac{1}{|C|}\sum_{(i,j) \in C}
        \bigl[y_{ij} \log \sigma(s_{ij}) + (1 - y_{ij}) \log(1 - \sigma(s_{ij}))\bigr]

    (``BCEWithLogits``, mean over real candidates). ``pos_weight`` multiplies the positives'
    terms (1: the groups' own 1:(G-1) balance).

    Source: Nogueira & Cho 2019 (Passage Re-ranking with BERT, monoBERT).
    """

    name = "pointwise"

    def __init__(self, pos_weight: float = 1.0):
        super().__init__()
        self.pos_weight = float(pos_weight)

    def get_config_dict(self) -> dict[str, Any]:
        return {"pos_weight": self.pos_weight}

    def forward(self, scores: Tensor, candidate_mask: Tensor | None = None) -> Tensor:
        mask = check_group_scores(scores, candidate_mask, self.name)
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        weight = torch.ones_like(scores)
        weight[:, 0] = self.pos_weight
        per = F.binary_cross_entropy_with_logits(scores, labels, weight=weight, reduction="none")
        keep = mask.to(per.dtype)
        return (per * keep).sum() / keep.sum()
