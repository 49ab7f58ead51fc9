"""SumMargLH: the summed marginal likelihood of the positive set."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import RetrievalLoss, check_scores_and_mask

__all__ = ["SumMargLHLoss"]


class SumMargLHLoss(RetrievalLoss):
    r"""Maximise the total probability mass on the positive set.

    Inputs:
        scores: ``[B, C]`` each query's scores against C candidates, already divided by the
            temperature (padding candidates may be ``-inf``).
        positive_mask: ``[B, C]`` bool, True at the positives (at least one per row).

    .. math::
        \ell_i = -\log \frac{\sum_{p \in P_i} \exp(s_{ip})}{\sum_{c \in C} \exp(s_{ic})}
               = \operatorname{LSE}_{c \in C}(s_{ic}) - \operatorname{LSE}_{p \in P_i}(s_{ip}),
        \qquad \mathcal{L} = \frac{1}{B}\sum_i \ell_i

    Positives do not compete: any split of the mass among them is optimal, so the model may
    rank one positive high and neglect the others. With one positive it is the usual
    softmax cross entropy.

    Source: "Training Dense Retrievers with Multiple Positive Passages" (arXiv:2602.12727) and
    "Utility-Focused LLM Annotation for Retrieval and RAG" (EMNLP 2025), loss ``sum_mar`` of
    the Tevatron fork WangLanHuaJiaoFen/Multi-Positive-Passages.
    """

    name = "summarglh"

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def forward(self, scores: Tensor, positive_mask: Tensor) -> Tensor:
        mask = check_scores_and_mask(scores, positive_mask, self.name)
        log_all = torch.logsumexp(scores, dim=1)
        log_pos = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=1)
        return (log_all - log_pos).mean()
