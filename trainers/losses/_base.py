"""What every loss shares: the ``config`` dict and the checks on (scores, positive_mask) inputs."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import hashlib

import torch
from torch import Tensor, nn

from workbench.errors import TrainingError

__all__ = ["RetrievalLoss", "check_scores_and_mask", "false_negative_mask", "false_negatives", "mask_false_negatives",
           "one_positive_targets", "own_ids", "text_id", "text_ids"]


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


def text_id(text: str) -> int:
    """A stable 63-bit id of a passage text (blake2b, the same in every process and run), for
    telling equal passages apart from different ones across ranks; always >= 0 (-1 pads)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def text_ids(texts: Sequence[str], device=None) -> Tensor:
    """``[P]`` long: the :func:`text_id` of each text (the candidate passages of a micro-batch)."""
    return torch.tensor([text_id(t) for t in texts], dtype=torch.long, device=device)


def own_ids(positives: Sequence[Sequence[str]], queries: Sequence[str]) -> Tensor:
    """``[B, K]`` long: the :func:`text_id` s of each row's positives (``positives[i]``), pooled over
    the rows that ask the same query (``queries[i]``: rows of one query with different positives),
    padded with -1. A candidate with one of these ids is one of the row's own positives: never its
    negative."""
    pooled: dict[str, set[int]] = {}
    for texts, query in zip(positives, queries):
        pooled.setdefault(query, set()).update(text_id(t) for t in texts)
    rows = [sorted(pooled[query]) for query in queries]
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), width)


def false_negatives(candidate_ids: Tensor, own_ids: Tensor) -> Tensor:
    """``[B, C]`` bool: True where candidate ``c`` (``candidate_ids [C]``, :func:`text_id` s) is one
    of query ``i``'s own positives (``own_ids [B, K]``, padded with -1, which no candidate id
    equals). The caller unmarks the columns that are the query's targets."""
    own = own_ids.to(candidate_ids.device)
    hits = candidate_ids.unsqueeze(0).unsqueeze(2) == own.unsqueeze(1)  # [B, C, K]
    return hits.any(dim=2) & (candidate_ids >= 0).unsqueeze(0)


def false_negative_mask(positive_mask: Tensor, candidate_ids: Tensor, own_ids: Tensor) -> Tensor:
    """``[B, C]`` bool: the false negatives of each row, candidates that are not one of its positive
    columns (``positive_mask``) but whose passage is one of its positives (the same text as another
    example's positive or hard negative, :func:`false_negatives`)."""
    return false_negatives(candidate_ids, own_ids) & ~positive_mask.bool()


def mask_false_negatives(scores: Tensor, positive_mask: Tensor, candidate_ids: Tensor, own_ids: Tensor) -> Tensor:
    """``scores`` with every false negative (:func:`false_negative_mask`) at ``-inf``. Such a column
    then counts neither as a negative nor as a positive in any multi-positive loss (they all accept
    ``-inf`` candidates)."""
    return scores.masked_fill(false_negative_mask(positive_mask, candidate_ids, own_ids), float("-inf"))


def one_positive_targets(passages: Sequence[str], positives: Sequence[Sequence[str]], queries: Sequence[str],
                         device=None) -> tuple[Tensor, Tensor]:
    """``(target, clash)``, both ``[B, C]`` bool, of a micro-batch of B rows scored against the
    candidate texts ``passages`` (C of them: row i's drawn positive at column i, then the hard
    negatives): ``target`` is the one-hot of column i; ``clash`` marks row i's false negatives
    (:func:`false_negative_mask`: another column whose text is one of ``positives[i]``, pooled over
    the rows of the same query). A loss leaves the clash columns out (``-inf`` scores, or a
    ``candidate_mask`` of ``~clash``)."""
    b = len(queries)
    target = torch.zeros((b, len(passages)), dtype=torch.bool, device=device)
    target[torch.arange(b), torch.arange(b)] = True
    return target, false_negative_mask(target, text_ids(passages, device), own_ids(positives, queries).to(device))
