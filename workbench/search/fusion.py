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


def weighted_sum(runs: Mapping[str, Mapping[str, float]], weights: Mapping[str, float],
                 head: Mapping[str, int] | None = None) -> dict[str, float]:
    """sum_m w_m * minmax_m(score); an id missing from a run contributes 0 for it.

    ``head`` (mode -> n; each run ordered best first): only a run's first n entries are fused as
    above, min-max over them; its deeper entries contribute 0, as if missing. A ranking asked for
    deeper than the fusion depth (``-k 500``) thus keeps the fused top of a shallower one, its
    extra documents below."""
    fused: dict[str, float] = {}
    for mode, scores in runs.items():
        w = float(weights.get(mode, 1.0))
        if w == 0.0:  # its documents are candidates still, scored 0 by it (as ranx fuses them)
            for key in scores:
                fused.setdefault(key, 0.0)
            continue
        n = head.get(mode) if head else None
        top = dict(list(scores.items())[:n]) if n is not None and n < len(scores) else scores
        normalised = min_max(top)
        for key in scores:
            fused[key] = fused.get(key, 0.0) + w * normalised.get(key, 0.0)
    return fused


def reciprocal_rank(runs: Mapping[str, Mapping[str, float]], weights: Mapping[str, float], k: int = 60,
                    head: Mapping[str, int] | None = None) -> dict[str, float]:
    """sum_m w_m / (k + rank_m), rank 1-based by descending score, equal scores in the run's own
    order (the searcher's best-first lists: the ranks its hits show; ranx ranks ties so too); with
    ``head`` (mode -> n) ranks past a run's n-th contribute 0 (see ``weighted_sum``)."""
    fused: dict[str, float] = {}
    for mode, scores in runs.items():
        w = float(weights.get(mode, 1.0))
        if w == 0.0:
            for key in scores:
                fused.setdefault(key, 0.0)
            continue
        n = head.get(mode) if head else None
        ordered = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: ties keep the run's order
        for rank, (key, _score) in enumerate(ordered, start=1):
            fused[key] = fused.get(key, 0.0) + (w / (k + rank) if n is None or rank <= n else 0.0)
    return fused


def interpolate(first: Mapping[str, float], rerank: Mapping[str, float], a: float) -> dict[str, float]:
    """The reranked head's final scores: ``(1 - a) * minmax(rerank) + a * minmax(first)`` over the
    head's keys (``first``'s); with ``a == 0`` the reranker's own scores (their scale kept)."""
    if a <= 0:
        return {key: float(rerank[key]) for key in first}
    f, s = min_max(first), min_max({key: rerank[key] for key in first})
    return {key: (1 - a) * s[key] + a * f[key] for key in first}


def fuse(runs, weights, method: str = "weighted", rrf_k: int = 60,
         head: Mapping[str, int] | None = None) -> dict[str, float]:
    if method == "rrf":
        return reciprocal_rank(runs, weights, rrf_k, head)
    return weighted_sum(runs, weights, head)
