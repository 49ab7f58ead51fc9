"""One typed training example: a query, its positives, optional hard negatives and teacher scores.

Every reader in :mod:`trainers.data.readers` and every generator in
:mod:`trainers.data.unsupervised` returns :class:`TrainingExample` objects, so the
rest of training (samplers, collators, losses) sees one shape whatever the file
format was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import InputError

__all__ = ["TrainingExample"]


def _texts(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InputError(f"{name} must be a sequence of strings, got {type(value).__name__}")
    out = tuple(value)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise InputError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError(f"{name}[{i}] is an empty string")
    return out


def _scores(name: str, value: Any, expected: int, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InputError(f"{name} must be a sequence of numbers, got {type(value).__name__}")
    out: list[float] = []
    for i, score in enumerate(value):
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InputError(f"{name}[{i}] must be a number, got {type(score).__name__}")
        if not math.isfinite(score):
            raise InputError(f"{name}[{i}] is not finite ({score})")
        out.append(float(score))
    if len(out) != expected:
        raise InputError(f"{name} has {len(out)} values for {expected} {what}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """A query with one or more positive passages, optional hard negatives and teacher scores.

    Fields:
        query: the query text (non-empty).
        positives: the relevant passages (at least one, each non-empty).
        negatives: hard negatives for this query (may be empty: in-batch negatives still apply).
        positive_scores / negative_scores: teacher scores (for distillation), one per
            positive / negative when given.
        instruction: a task instruction prepended to the query by the collator ("" = none).
        task: the task (dataset) the example belongs to; batches are drawn from one task at a time.
        query_id: the source's query id when it has one (BEIR, Tevatron).

    Lists are accepted and stored as tuples, ints as floats. Invalid values raise
    :class:`workbench.errors.InputError`.
    """

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    positive_scores: tuple[float, ...] | None = None
    negative_scores: tuple[float, ...] | None = None
    instruction: str = ""
    task: str = "default"
    query_id: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.query, str):
            raise InputError(f"query must be a string, got {type(self.query).__name__}")
        if not self.query.strip():
            raise InputError("query is an empty string")
        positives = _texts("positives", self.positives)
        if not positives:
            raise InputError("an example needs at least one positive passage")
        negatives = _texts("negatives", self.negatives)
        object.__setattr__(self, "positives", positives)
        object.__setattr__(self, "negatives", negatives)
        object.__setattr__(
            self,
            "positive_scores",
            _scores("positive_scores", self.positive_scores, len(positives), "positives"),
        )
        object.__setattr__(
            self,
            "negative_scores",
            _scores("negative_scores", self.negative_scores, len(negatives), "negatives"),
        )
        if not isinstance(self.instruction, str):
            raise InputError(f"instruction must be a string, got {type(self.instruction).__name__}")
        if not isinstance(self.task, str) or not self.task:
            raise InputError("task must be a non-empty string")
        if self.query_id is not None and not isinstance(self.query_id, str):
            object.__setattr__(self, "query_id", str(self.query_id))

    @property
    def has_scores(self) -> bool:
        """True when every candidate (positives and negatives) has a teacher score."""
        if self.positive_scores is None:
            return False
        return not self.negatives or self.negative_scores is not None
