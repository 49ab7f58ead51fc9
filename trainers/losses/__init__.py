"""Retrieval losses, one per module, all ``nn.Module`` s returning a scalar tensor.

Two input conventions:

* embeddings: :class:`InfoNCELoss` ``(q [B,d], p [B,d], negatives [B,N,d] | None)``;
* scores: the multi-positive family (:class:`JointLHLoss`, :class:`SumMargLHLoss`,
  :class:`LSEPairLoss`, :class:`Rand1LHLoss`) takes ``(scores [B,C], positive_mask [B,C])``
  with scores already divided by the temperature; :class:`KLDistillationLoss` takes
  ``(student_scores [B,C], teacher_scores [B,C])`` before temperature.

``LOSSES`` maps the registry name to the class; ``build_loss(name, **kwargs)`` builds one and
raises UsageError for an unknown name. Every loss has a ``config`` dict (name + settings).

Reranker losses (cross-encoder groups): ``(scores [B, G], candidate_mask [B, G] | None)`` with each
group's positive in column 0: :class:`ListwiseCELoss`, :class:`RankNetLoss` (pairwise),
:class:`PointwiseBCELoss`; ``RERANK_LOSSES`` / ``build_rerank_loss(name)``.

:class:`FlopsRegularizer` (SPLADE's sparsity term) takes ``weights [B, V]``.
"""

from __future__ import annotations

from typing import Any

from trainers.config import loss_key
from workbench.errors import UsageError

from ._base import (RetrievalLoss, check_scores_and_mask, false_negative_mask, mask_false_negatives,
                    one_positive_targets, own_ids, text_id, text_ids)
from .infonce import InfoNCELoss, gather_rows
from .flops import FlopsRegularizer
from .joint_lh import JointLHLoss
from .kl_distill import KLDistillationLoss
from .listwise_ce import ListwiseCELoss
from .lse_pair import LSEPairLoss
from .pointwise_bce import PointwiseBCELoss
from .ranknet import RankNetLoss
from .rand1_lh import Rand1LHLoss
from .sum_marg_lh import SumMargLHLoss

LOSSES: dict[str, type[RetrievalLoss]] = {
    "infonce": InfoNCELoss,
    "jointlh": JointLHLoss,
    "summarglh": SumMargLHLoss,
    "lsepair": LSEPairLoss,
    "rand1lh": Rand1LHLoss,
    "kl": KLDistillationLoss,
}

#: losses that take ``(scores, positive_mask)``
MULTI_POSITIVE = ("jointlh", "summarglh", "lsepair", "rand1lh")


def build_loss(name: str, **kwargs: Any) -> RetrievalLoss:
    """``LOSSES[name](**kwargs)``; UsageError naming the known losses when ``name`` is unknown."""
    key = loss_key(name)
    cls = LOSSES.get(key)
    if cls is None:
        raise UsageError(f"unknown loss {name!r}: expected one of {', '.join(LOSSES)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"bad settings for loss {name!r}: {exc}") from exc

RERANK_LOSSES: dict[str, type[RetrievalLoss]] = {
    "listwise": ListwiseCELoss,
    "pairwise": RankNetLoss,
    "pointwise": PointwiseBCELoss,
}
_RERANK_ALIASES = {"ranknet": "pairwise", "bce": "pointwise", "softmax": "listwise", "ce": "listwise"}


def build_rerank_loss(name: str, **kwargs: Any) -> RetrievalLoss:
    """``RERANK_LOSSES[name](**kwargs)`` (aliases: ranknet, bce, softmax); UsageError when unknown."""
    key = loss_key(name)
    key = _RERANK_ALIASES.get(key, key)
    cls = RERANK_LOSSES.get(key)
    if cls is None:
        raise UsageError(f"unknown reranker loss {name!r}: expected one of {', '.join(RERANK_LOSSES)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"bad settings for loss {name!r}: {exc}") from exc


__all__ = [
    "LOSSES",
    "MULTI_POSITIVE",
    "RERANK_LOSSES",
    "FlopsRegularizer",
    "ListwiseCELoss",
    "PointwiseBCELoss",
    "RankNetLoss",
    "build_rerank_loss",
    "InfoNCELoss",
    "JointLHLoss",
    "KLDistillationLoss",
    "LSEPairLoss",
    "Rand1LHLoss",
    "RetrievalLoss",
    "SumMargLHLoss",
    "build_loss",
    "check_scores_and_mask",
    "false_negative_mask",
    "gather_rows",
    "mask_false_negatives",
    "one_positive_targets",
    "own_ids",
    "text_id",
    "text_ids",
]
