"""What every loss shares: the ``config`` dict and the checks on (scores, positive_mask) inputs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from workbench.errors import TrainingError

__all__ = ["RetrievalLoss", "check_scores_and_mask"]


class RetrievalLoss(nn.Module):
    """Base class: a loss is an ``nn.Module`` whose ``forward`` returns a scalar tensor.

    ``config`` is a JSON-serialisable dict (the registry ``name`` plus every
    hyper-parameter), written next to a run so it can be reproduced.
    """

    name: ClassVar[str] = ""

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    @property
    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_config_dict()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


def check_scores_and_mask(scores: Tensor, positive_mask: Tensor, loss: str) -> Tensor:
    """Validate ``scores [B, C]`` and ``positive_mask [B, C]``; return the mask as bool.

    Raises TrainingError on a shape mismatch or a row with no positive.
    """
    if scores.dim() != 2:
        raise TrainingError(f"{loss}: scores must be [batch, candidates], got shape {tuple(scores.shape)}")
    if positive_mask.shape != scores.shape:
        raise TrainingError(
            f"{loss}: positive_mask shape {tuple(positive_mask.shape)} != scores shape {tuple(scores.shape)}"
        )
    mask = positive_mask if positive_mask.dtype == torch.bool else positive_mask.bool()
    has_positive = mask.any(dim=1)
    if not bool(has_positive.all()):
        rows = torch.nonzero(~has_positive).flatten().tolist()[:5]
        raise TrainingError(f"{loss}: every query needs at least one positive; rows without one: {rows}")
    return mask
