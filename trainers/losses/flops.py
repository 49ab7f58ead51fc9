"""FLOPS regulariser: pushes a batch of SPLADE vectors towards few, rarely shared terms."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from workbench.errors import TrainingError

from ._base import RetrievalLoss

__all__ = ["FlopsRegularizer"]


class FlopsRegularizer(RetrievalLoss):
    r"""The FLOPS regulariser of a batch of non-negative sparse vectors.

    Input:
        weights: ``[B, V]`` the batch's term weights (``log1p(relu(.))``, so >= 0).

    With :math:`\bar a_v = \frac{1}{B}\sum_i w_{iv}` the mean weight of term v over the batch,

    .. math::
        \mathcal{L}_{\text{FLOPS}} = \sum_{v} \bar a_v^{\,2}

    a smooth proxy of the expected number of floating-point operations of a sparse dot product
    (terms used by many documents cost the most). SPLADE applies it to queries and documents
    separately, each with its own weight :math:`\lambda_q`, :math:`\lambda_d`.

    Source: Paria et al. 2020 (Minimizing FLOPs to Learn Efficient Sparse Representations);
    Formal et al. 2021 (SPLADE).
    """

    name = "flops"

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def forward(self, weights: Tensor) -> Tensor:
        if weights.dim() != 2:
            raise TrainingError(f"flops: weights must be [batch, vocabulary], got {tuple(weights.shape)}")
        return (weights.mean(dim=0) ** 2).sum()
