"""Pairwise RankNet loss: the positive of each group against each of its negatives."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from workbench.errors import UsageError

from ._base import RetrievalLoss
from ._groups import check_group_scores

__all__ = ["RankNetLoss"]


class RankNetLoss(RetrievalLoss):
    r"""Logistic loss on the score difference of every (positive, negative) pair of a group.

    Inputs:
        scores: ``[B, G]`` logits, column 0 the positive, columns 1.. the negatives.
        candidate_mask: optional ``[B, G]`` bool, False at padding.

    With :math:`\sigma` the steepness (1) and :math:`P` the set of real (i, j), j >= 1,

    .. math::
        \mathcal{L} = \frac{1}{|P|}\sum_{(i,j) \in P} \log\bigl(1 + \exp(-\sigma (s_{i0} - s_{ij}))\bigr)

    i.e. binary cross entropy on :math:`\sigma(s_{i0} - s_{ij})` with target 1 ("the positive
    ranks above"); it is 0 only in the limit of infinite margins and log 2 for equal scores.

    Source: Burges et al. 2005 (Learning to Rank using Gradient Descent).
    """

    name = "pairwise"

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        if not sigma > 0:
            raise UsageError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def get_config_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def forward(self, scores: Tensor, candidate_mask: Tensor | None = None) -> Tensor:
        mask = check_group_scores(scores, candidate_mask, self.name)
        diff = scores[:, :1] - scores[:, 1:]
        per_pair = F.softplus(-self.sigma * diff)
        keep = mask[:, 1:].to(per_pair.dtype)
        return (per_pair * keep).sum() / keep.sum()
