"""KL distillation from a teacher's scores over each query's candidate group."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from workbench.errors import TrainingError, UsageError

from ._base import RetrievalLoss

__all__ = ["KLDistillationLoss"]


class KLDistillationLoss(RetrievalLoss):
    r"""KL(teacher || student) between softmax distributions over each query's candidates.

    Inputs:
        student_scores: ``[B, C]`` the student's similarity scores, before temperature.
        teacher_scores: ``[B, C]`` the teacher's scores for the same candidates (e.g. a
            reranker's ``pos_scores``/``neg_scores``); detached, no gradient flows to them.
        candidate_mask: optional ``[B, C]`` bool, False at padding candidates (groups of
            different sizes); those leave both softmaxes.

    .. math::
        t_i = \operatorname{softmax}(\text{teacher}_i / \tau_t),\quad
        s_i = \operatorname{softmax}(\text{student}_i / \tau),\qquad
        \mathcal{L} = \frac{1}{B}\sum_i \sum_c t_{ic}\,(\log t_{ic} - \log s_{ic})

    ``temperature`` is τ (0.02, the embedder's contrastive temperature, as FlagEmbedding),
    ``teacher_temperature`` is τ_t (1.0: the teacher scores are used as logits). FlagEmbedding's
    ``kl_div`` distillation minimises the cross entropy :math:`-\sum_c t_{ic}\log s_{ic}`, which
    differs from this KL only by the teacher's entropy (a constant): same gradients, but this
    loss is 0 when the student matches the teacher.

    Source: Hinton et al. 2015 (distillation with softened targets); FlagEmbedding's embedder
    fine-tuning with ``pos_scores``/``neg_scores`` (``kd_loss_type="kl_div"``).
    """

    name = "kl"

    def __init__(self, temperature: float = 0.02, teacher_temperature: float = 1.0):
        super().__init__()
        if not temperature > 0 or not teacher_temperature > 0:
            raise UsageError(
                f"temperatures must be > 0, got temperature={temperature}, teacher_temperature={teacher_temperature}"
            )
        self.temperature = float(temperature)
        self.teacher_temperature = float(teacher_temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "teacher_temperature": self.teacher_temperature}

    def forward(
        self, student_scores: Tensor, teacher_scores: Tensor, candidate_mask: Tensor | None = None
    ) -> Tensor:
        if student_scores.dim() != 2 or teacher_scores.shape != student_scores.shape:
            raise TrainingError(
                "kl: student_scores and teacher_scores must both be [batch, candidates], got "
                f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}"
            )
        student = student_scores / self.temperature
        teacher = teacher_scores.detach().to(student.dtype) / self.teacher_temperature
        if candidate_mask is not None:
            if candidate_mask.shape != student_scores.shape:
                raise TrainingError(
                    f"kl: candidate_mask shape {tuple(candidate_mask.shape)} != scores shape "
                    f"{tuple(student_scores.shape)}"
                )
            keep = candidate_mask.bool()
            if not bool(keep.any(dim=1).all()):
                raise TrainingError("kl: every query needs at least one candidate in candidate_mask")
            lowest = torch.finfo(student.dtype).min
            student = student.masked_fill(~keep, lowest)
            teacher = teacher.masked_fill(~keep, lowest)
        log_s = student.log_softmax(dim=1)
        log_t = teacher.log_softmax(dim=1)
        t = log_t.exp()
        return (t * (log_t - log_s)).sum(dim=1).mean()
