"""InfoNCE with in-batch and hard negatives (DPR / FlagEmbedding / sentence-transformers MNRL)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.errors import TrainingError, UsageError

from ._base import RetrievalLoss, false_negatives

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

    Ranks may hold different numbers of rows (a short last batch, a batch with fewer hard
    negatives, none at all): rows are padded to the largest count for the collective and the
    padding is cut off again; when every rank holds 0 rows only the counts are exchanged. ``with_grad=True``
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
    if largest == 0:  # every rank knows it: all skip the gather alike
        return tensor, 0
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

    ``negative_mask`` ``[B, N]`` (True = real) lets each query bring its own number of hard
    negatives: padded slots are no candidates. ``positive_ids [B]``, ``negative_ids [B, N]``
    (stable ids of the passage texts, e.g. :func:`~trainers.losses._base.text_id`) and
    ``own_ids [B, K]`` (the ids of each query's positives, padded with -1) mask false negatives:
    a candidate other than query i's target whose id is in ``own_ids[i]`` (the same passage as
    its positive, brought by another example) is set to ``-inf``, so it is no negative.

    ``gather_across_devices=True`` with ``torch.distributed`` initialised gathers the
    positives and the real negatives of every rank, and their ids (see :func:`gather_rows`;
    ``gather_with_grad`` picks whether gradients flow to the other ranks' rows), uses them as
    extra candidates and offsets the targets by this rank's row offset (rank·B when batches
    are equal). The loss is then the mean over this rank's queries. Without distributed it is a
    no-op. The negatives are gathered whether or not this rank has any (0 rows when
    ``negatives`` is None), so ranks whose batches differ in hard negatives run the same
    collectives; every rank must pass ids alike (all or none).

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
        negative_mask: Tensor | None = None,
        positive_ids: Tensor | None = None,
        negative_ids: Tensor | None = None,
        own_ids: Tensor | None = None,
        gather_across_devices: bool = False,
    ) -> Tensor:
        _check_shapes(q, p, negatives, negative_mask)
        if self.similarity == "cosine":
            q = F.normalize(q, dim=-1)
            p = F.normalize(p, dim=-1)
            if negatives is not None:
                negatives = F.normalize(negatives, dim=-1)
        with_ids = own_ids is not None
        flat_negatives, flat_ids = _real_negatives(p, negatives, negative_mask, negative_ids if with_ids else None)
        offset = 0
        if gather_across_devices and _distributed():
            p, offset = gather_rows(p, with_grad=self.gather_with_grad)
            flat_negatives, _ = gather_rows(flat_negatives, with_grad=self.gather_with_grad)
            if with_ids:
                positive_ids, _ = gather_rows(positive_ids.to(q.device), with_grad=False)
                flat_ids, _ = gather_rows(flat_ids, with_grad=False)
        candidates = torch.cat([p, flat_negatives], dim=0)
        logits = q @ candidates.T / self.temperature
        target = torch.arange(q.shape[0], device=q.device) + offset
        if with_ids:
            clash = false_negatives(torch.cat([positive_ids.to(q.device), flat_ids]), own_ids)
            clash[torch.arange(q.shape[0], device=q.device), target] = False
            logits = logits.masked_fill(clash, float("-inf"))
        return F.cross_entropy(logits, target)


def _check_shapes(q: Tensor, p: Tensor, negatives: Tensor | None, negative_mask: Tensor | None) -> None:
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
    if negative_mask is not None and (negatives is None or negative_mask.shape != negatives.shape[:2]):
        raise TrainingError(f"infonce: negative_mask must be [batch, n] like the negatives, got "
                            f"{tuple(negative_mask.shape)}")


def _real_negatives(p: Tensor, negatives: Tensor | None, negative_mask: Tensor | None,
                    negative_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    """``([M, d], [M])``: the real hard negatives (padded slots dropped), flattened, and their ids
    (-1 where none were given). ``M = 0`` without negatives: then an empty slice of ``p``, which
    stays in the autograd graph, so this rank runs the gather's backward collective as the ranks
    with negatives do."""
    dim = p.shape[1]
    if negatives is None:
        return p[:0], torch.zeros(0, dtype=torch.long, device=p.device)
    flat = negatives.reshape(-1, dim)
    ids = (negative_ids.reshape(-1).to(p.device) if negative_ids is not None
           else torch.full((flat.shape[0],), -1, dtype=torch.long, device=p.device))
    if negative_mask is not None:
        keep = negative_mask.reshape(-1).to(p.device).bool()
        flat, ids = flat[keep], ids[keep]
    return flat, ids
