"""Rand1LH: one randomly drawn positive per query, softmax cross entropy against the negatives."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import RetrievalLoss, check_scores_and_mask

__all__ = ["Rand1LHLoss"]


class Rand1LHLoss(RetrievalLoss):
    r"""Sample one positive per query; the query's other positives leave the softmax.

    Inputs:
        scores: ``[B, C]`` each query's scores against C candidates, already divided by the
            temperature (padding candidates may be ``-inf``).
        positive_mask: ``[B, C]`` bool, True at the positives (at least one per row).

    For each query a positive :math:`p^*_i` is drawn uniformly from :math:`P_i` with a seeded
    CPU ``torch.Generator`` (its state is saved in ``state_dict()`` for an exact resume), then

    .. math::
        \ell_i = -\log \frac{\exp(s_{ip^*_i})}{\exp(s_{ip^*_i}) + \sum_{n \in N_i} \exp(s_{in})},
        \qquad \mathcal{L} = \frac{1}{B}\sum_i \ell_i

    where :math:`N_i` is every candidate that is not a positive (the unsampled positives are
    neither targets nor negatives). Pass ``generator=`` to ``forward`` to use another one.

    Source: "Training Dense Retrievers with Multiple Positive Passages" (arXiv:2602.12727),
    ``random_one_lh`` in the Tevatron fork WangLanHuaJiaoFen/Multi-Positive-Passages, where the
    data loader keeps one random positive per query and drops the rest.
    """

    name = "rand1lh"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def get_config_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state and "generator" in state:
            self.generator.set_state(state["generator"])

    def sample_positives(self, positive_mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[B]`` column index of one positive per row, drawn uniformly among the row's positives."""
        weights = positive_mask.detach().to("cpu", torch.float32)
        generator = self.generator if generator is None else generator
        picks = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        return picks.to(positive_mask.device)

    def forward(self, scores: Tensor, positive_mask: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        mask = check_scores_and_mask(scores, positive_mask, self.name)
        target = self.sample_positives(mask, generator)
        chosen = F.one_hot(target, num_classes=scores.shape[1]).bool()
        logits = scores.masked_fill(mask & ~chosen, float("-inf"))
        return F.cross_entropy(logits, target)
