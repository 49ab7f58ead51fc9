"""LSEPair: a smooth pairwise loss over every (positive, negative) pair of a query."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import RetrievalLoss, check_scores_and_mask

__all__ = ["LSEPairLoss"]


class LSEPairLoss(RetrievalLoss):
    r"""Log-sum-exp pairwise loss: every negative should score below every positive.

    Inputs:
        scores: ``[B, C]`` each query's scores against C candidates, already divided by the
            temperature (padding candidates may be ``-inf``: they act as negatives with zero weight).
        positive_mask: ``[B, C]`` bool, True at the positives (at least one per row); every other
            candidate is a negative.

    .. math::
        \ell_i = \log\Big(1 + \sum_{p \in P_i}\sum_{n \in N_i} \exp(s_{in} - s_{ip})\Big)
               = \operatorname{softplus}\big(\operatorname{LSE}_{n \in N_i}(s_{in})
                 + \operatorname{LSE}_{p \in P_i}(-s_{ip})\big),
        \qquad \mathcal{L} = \frac{1}{B}\sum_i \ell_i / Z_i

    with :math:`Z_i = |P_i|` when ``normalize=True`` and 1 otherwise (the default, the formula
    above). A row with no negative has loss 0. With one positive and one negative it is
    ``softplus(s_n - s_p)``. Positives are never compared with each other, only with negatives.

    Source: "Training Dense Retrievers with Multiple Positive Passages" (arXiv:2602.12727),
    loss ``lsep`` (multiple positives, all negatives) of the Tevatron fork
    WangLanHuaJiaoFen/Multi-Positive-Passages; the LSEP form is from Li et al. 2017
    ("Improving Pairwise Ranking for Multi-label Image Classification").
    """

    name = "lsepair"

    def __init__(self, normalize: bool = False):
        super().__init__()
        self.normalize = normalize

    def get_config_dict(self) -> dict[str, Any]:
        return {"normalize": self.normalize}

    def forward(self, scores: Tensor, positive_mask: Tensor) -> Tensor:
        mask = check_scores_and_mask(scores, positive_mask, self.name)
        lowest = torch.finfo(scores.dtype).min
        # finite stand-ins keep logsumexp's gradient finite for rows with no negative
        safe = scores.clamp(min=lowest)
        log_neg = torch.logsumexp(safe.masked_fill(mask, lowest), dim=1)
        log_inv_pos = torch.logsumexp((-safe).masked_fill(~mask, lowest), dim=1)
        per_query = F.softplus(log_neg + log_inv_pos)
        if self.normalize:
            per_query = per_query / mask.sum(dim=1).to(scores.dtype)
        return per_query.mean()
