"""Listwise softmax cross entropy over a reranker's candidate group (positive first)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.errors import UsageError

from ._base import RetrievalLoss
from ._groups import check_group_scores

__all__ = ["ListwiseCELoss"]


class ListwiseCELoss(RetrievalLoss):
    r"""Softmax cross entropy over each group, the target being the positive in column 0.

    Inputs:
        scores: ``[B, G]`` the reranker's logits for group i's G candidates; column 0 is the
            positive, columns 1.. the negatives.
        candidate_mask: optional ``[B, G]`` bool, False at padding (groups with fewer negatives).

    With :math:`\tau` the temperature (1: the logits are used as they are),

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_i \log
        \frac{\exp(s_{i0}/\tau)}{\sum_{j \in \text{group}_i} \exp(s_{ij}/\tau)}

    Source: the "localized contrastive estimation" of Gao et al. 2021 (Rethink Training of BERT
    Rerankers); FlagEmbedding's reranker fine-tuning (group_size, positive first).
    """

    name = "listwise"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise UsageError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def forward(self, scores: Tensor, candidate_mask: Tensor | None = None) -> Tensor:
        mask = check_group_scores(scores, candidate_mask, self.name)
        logits = (scores / self.temperature).masked_fill(~mask, torch.finfo(scores.dtype).min)
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(logits, target)
