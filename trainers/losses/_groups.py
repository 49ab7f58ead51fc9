"""Shared checks for the reranker losses: ``scores [B, G]`` with each group's positive in column 0."""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.errors import TrainingError

__all__ = ["check_group_scores"]


def check_group_scores(scores: Tensor, candidate_mask: Tensor | None, loss: str) -> Tensor:
    """Validate ``scores [B, G]`` (G >= 2) and the optional ``candidate_mask [B, G]``; return the
    mask as bool (all True when none is given). Column 0 (the positive) must be a real candidate,
    and every group needs at least one real negative."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise TrainingError(f"{loss}: scores must be [groups, 1 + negatives] with at least one negative, "
                            f"got shape {tuple(scores.shape)}")
    if candidate_mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    if candidate_mask.shape != scores.shape:
        raise TrainingError(f"{loss}: candidate_mask shape {tuple(candidate_mask.shape)} != scores shape "
                            f"{tuple(scores.shape)}")
    mask = candidate_mask.bool()
    if not bool(mask[:, 0].all()):
        raise TrainingError(f"{loss}: column 0 (the positive) is masked out in some group")
    if not bool(mask[:, 1:].any(dim=1).all()):
        raise TrainingError(f"{loss}: every group needs at least one negative")
    return mask
