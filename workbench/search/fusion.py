"""Score fusion of ranked lists: min-max weighted sum and reciprocal rank fusion.

These are the same formulas as ranx's ``fuse(method="wsum", norm="min-max")`` and
``fuse(method="rrf")`` (a test checks equality against ranx), except for a list whose scores
are all equal (:func:`min_max`). They are written out here because
the query path must stay free of ranx's import and JIT start-up cost (seconds) for a single query.
"""

from __future__ import annotations

from collections.abc import Mapping


def min_max(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale to [0, 1]; a list whose scores are all equal (a single hit among them) maps to 1.0 each:
    its hits are that mode's best. ranx's min-max maps such a list to 0.0 (the one difference from
    ranx; lists of distinct scores are fused exactly as ranx fuses them, tested)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {k: 1.0 for k in scores}
    span = hi - lo
    return {k: (v - lo) / span for k, v in scores.items()}


def weighted_sum(runs: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """sum_m w_m * minmax_m(score); an id missing from a run contributes 0 for it."""
    fused: dict[str, float] = {}
    for mode, scores in runs.items():
        w = float(weights.get(mode, 1.0))
        if w == 0.0:
            continue
        for key, value in min_max(scores).items():
            fused[key] = fused.get(key, 0.0) + w * value
    return fused


def reciprocal_rank(runs: Mapping[str, Mapping[str, float]], weights: Mapping[str, float], k: int = 60) -> dict[str, float]:
    """sum_m w_m / (k + rank_m), rank 1-based by descending score (ties broken by id order)."""
    fused: dict[str, float] = {}
    for mode, scores in runs.items():
        w = float(weights.get(mode, 1.0))
        if w == 0.0:
            continue
        ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (key, _score) in enumerate(ordered, start=1):
            fused[key] = fused.get(key, 0.0) + w / (k + rank)
    return fused


def interpolate(first: Mapping[str, float], rerank: Mapping[str, float], a: float) -> dict[str, float]:
    """The reranked head's final scores: ``(1 - a) * minmax(rerank) + a * minmax(first)`` over the
    head's keys (``first``'s); with ``a == 0`` the reranker's own scores (their scale kept)."""
    if a <= 0:
        return {key: float(rerank[key]) for key in first}
    f, s = min_max(first), min_max({key: rerank[key] for key in first})
    return {key: (1 - a) * s[key] + a * f[key] for key in first}


def fuse(runs, weights, method: str = "weighted", rrf_k: int = 60) -> dict[str, float]:
    if method == "rrf":
        return reciprocal_rank(runs, weights, rrf_k)
    return weighted_sum(runs, weights)
