"""JointLH: the joint likelihood of every positive (multi-positive softmax cross entropy)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._base import RetrievalLoss, check_scores_and_mask

__all__ = ["JointLHLoss"]


class JointLHLoss(RetrievalLoss):
    r"""Joint likelihood of all positives: each positive is a softmax target over all candidates.

    Inputs:
        scores: ``[B, C]`` each query's scores against C candidates, already divided by the
            temperature (padding candidates may be ``-inf``).
        positive_mask: ``[B, C]`` bool, True at the positives (at least one per row); every
            other candidate is a negative.

    For query i with positive set :math:`P_i` and candidates :math:`C`,

    .. math::
        \ell_i = -\frac{1}{Z_i}\sum_{p \in P_i} \log \frac{\exp(s_{ip})}{\sum_{c \in C} \exp(s_{ic})},
        \qquad \mathcal{L} = \frac{1}{B}\sum_i \ell_i

    with :math:`Z_i = |P_i|` when ``normalize=True`` (the default: the mean over the query's
    positives, so queries with many positives do not dominate) and :math:`Z_i = 1` otherwise
    (the plain sum). Note the other positives stay in each positive's denominator, so the
    positives compete with each other; the optimum splits the mass evenly among them.

    Source: "Training Dense Retrievers with Multiple Positive Passages" (Wang, Tang, Zhang, Guo,
    Bi, 2026, arXiv:2602.12727), loss ``joint_lh`` of its Tevatron fork
    (WangLanHuaJiaoFen/Multi-Positive-Passages): ``|P|·logsumexp(s) - Σ_p s_p``, optionally
    divided by ``|P|`` (``normalize_loss_by_positive``).
    """

    name = "jointlh"

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.normalize = normalize

    def get_config_dict(self) -> dict[str, Any]:
        return {"normalize": self.normalize}

    def forward(self, scores: Tensor, positive_mask: Tensor) -> Tensor:
        mask = check_scores_and_mask(scores, positive_mask, self.name)
        log_probs = scores.log_softmax(dim=1)
        per_query = -log_probs.where(mask, 0.0).sum(dim=1)
        if self.normalize:
            per_query = per_query / mask.sum(dim=1).to(scores.dtype)
        return per_query.mean()
