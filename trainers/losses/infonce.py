"""InfoNCE with in-batch and hard negatives (DPR / FlagEmbedding / sentence-transformers MNRL)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.errors import TrainingError, UsageError

from ._base import RetrievalLoss

__all__ = ["InfoNCELoss", "gather_rows"]

SIMILARITIES = ("cosine", "dot")


def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def gather_rows(tensor: Tensor, *, with_grad: bool = True) -> tuple[Tensor, int]:
    """All-gather ``tensor`` along dim 0 from every rank; return (gathered, offset of this rank).

    Ranks may hold different numbers of rows (a short last batch): rows are padded to the
    largest count for the collective and the padding is cut off again. ``with_grad=True``
    backpropagates into every rank's rows (``torch.distributed.nn.functional.all_gather``,
    as sentence-transformers' ``all_gather_with_grad``), so the summed gradient is that of
    the global loss; ``with_grad=False`` keeps the gradient of the local rows only (the
    others are constants), as FlagEmbedding's ``_dist_gather_tensor``. Without an
    initialised process group (or with one rank) it returns ``(tensor, 0)``. Every rank must
    call it, in the same order.
    """
    if not _distributed():
        return tensor, 0
    dist = torch.distributed
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes_t = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes_t, size)
    sizes = [int(s.item()) for s in sizes_t]
    largest = max(sizes)
    padded = tensor
    if tensor.shape[0] < largest:
        pad = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad], dim=0)
    padded = padded.contiguous()
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        parts = list(all_gather(padded))
    else:
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.detach())
        parts[rank] = padded
    gathered = torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)
    return gathered, sum(sizes[:rank])


class InfoNCELoss(RetrievalLoss):
    r"""InfoNCE over in-batch positives and every hard negative of the batch.

    Inputs:
        q: ``[B, d]`` query embeddings.
        p: ``[B, d]`` embeddings of each query's positive (row i is query i's positive).
        negatives: optional ``[B, N, d]`` hard negatives (N per query; N may be 0).

    With ``similarity="cosine"`` the vectors are L2-normalised first (``"dot"``: raw dot
    products). For query i, the candidates are every positive of the batch and every hard
    negative of the batch (B + B·N of them); with :math:`\tau` the temperature,

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_i \log
        \frac{\exp(q_i \cdot p_i / \tau)}
             {\sum_j \exp(q_i \cdot p_j / \tau) + \sum_{k, n} \exp(q_i \cdot h_{k,n} / \tau)}

    i.e. a cross entropy whose target is the query's own positive.

    ``gather_across_devices=True`` with ``torch.distributed`` initialised gathers the
    positives and negatives of every rank (see :func:`gather_rows`; ``gather_with_grad``
    picks whether gradients flow to the other ranks' rows), uses them as extra candidates
    and offsets the targets by this rank's row offset (rank·B when batches are equal). The
    loss is then the mean over this rank's queries. Without distributed it is a no-op.
    Every rank must pass ``negatives`` consistently (all or none) when gathering.

    Source: van den Oord et al. 2018 (InfoNCE); DPR (Karpukhin et al. 2020) for in-batch
    negatives; FlagEmbedding's default temperature 0.02.
    """

    name = "infonce"

    def __init__(self, temperature: float = 0.02, similarity: str = "cosine", gather_with_grad: bool = True):
        super().__init__()
        if not temperature > 0:
            raise UsageError(f"temperature must be > 0, got {temperature}")
        if similarity not in SIMILARITIES:
            raise UsageError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
        self.temperature = float(temperature)
        self.similarity = similarity
        self.gather_with_grad = gather_with_grad

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "similarity": self.similarity,
            "gather_with_grad": self.gather_with_grad,
        }

    def forward(
        self,
        q: Tensor,
        p: Tensor,
        negatives: Tensor | None = None,
        *,
        gather_across_devices: bool = False,
    ) -> Tensor:
        if q.dim() != 2 or p.shape != q.shape:
            raise TrainingError(
                f"infonce: q and p must both be [batch, dim], got {tuple(q.shape)} and {tuple(p.shape)}"
            )
        dim = q.shape[1]
        if negatives is not None and (
            negatives.dim() != 3 or negatives.shape[0] != q.shape[0] or negatives.shape[2] != dim
        ):
            raise TrainingError(
                f"infonce: negatives must be [batch, n, dim] = [{q.shape[0]}, n, {dim}], "
                f"got {tuple(negatives.shape)}"
            )
        if self.similarity == "cosine":
            q = F.normalize(q, dim=-1)
            p = F.normalize(p, dim=-1)
            if negatives is not None:
                negatives = F.normalize(negatives, dim=-1)
        flat_negatives = negatives.reshape(-1, dim) if negatives is not None else None
        offset = 0
        if gather_across_devices and _distributed():
            p, offset = gather_rows(p, with_grad=self.gather_with_grad)
            if flat_negatives is not None:
                flat_negatives, _ = gather_rows(flat_negatives, with_grad=self.gather_with_grad)
        candidates = p if flat_negatives is None else torch.cat([p, flat_negatives], dim=0)
        logits = q @ candidates.T / self.temperature
        target = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, target)
