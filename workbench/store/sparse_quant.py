"""Exact learned-sparse scoring inside Tantivy through bit-plane postings.

Tantivy's only scorer is BM25, which saturates term counts and normalises by length: indexing a
weight by repeating a term is badly wrong. Instead each document weight is quantized to an integer
level q = round(w / step) >= 0 and the document gets one token ``"{term}b{j}"`` for every set bit j
of q. A query term t with weight w_q becomes, for each bit plane j, a constant-score clause on token
``"{t}b{j}"`` with score ``w_q * step * 2^j``. A boolean OR of those clauses sums to exactly
``sum_t w_q(t) * step * q_d(t)``: the dot product with the quantized document vector, whose error
against the float dot product is at most ``0.5 * step * sum of the positive query weights``.

Contract:
- levels are never clipped: a weight of any finite (float32) size gets as many bit planes as its
  level needs (``planes_needed``); the query must build clauses for every plane any stored document
  may use (``bitplane_clauses(..., planes)``), which is why ``TantivyChunkStore`` records the largest
  count its documents need. At least ``BITS`` (8) planes are always queried, the count of every index
  written before the count was recorded (those clipped levels to 255);
- a non-finite (NaN, ±inf) or negative document weight counts as 0: never an error, never a hang
  (the float dot product would count a negative weight; no current model emits one);
- a query weight <= 0 or non-finite gives no clause.
"""

from __future__ import annotations

import numpy as np

BITS = 8  # planes always queried; the only count of an index written before counts were recorded


def quantize(weights: np.ndarray, step: float) -> list[int]:
    """Integer levels ``round(w / step)`` as Python ints (no upper bound); a non-finite, negative or
    beyond-float32 weight gives 0. Computed in float64 from the float32 value LanceDB stores."""
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.asarray(weights, np.float32).astype(np.float64)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    return [int(q) for q in np.rint(w / float(step)).tolist()]


def planes_needed(levels: list[int]) -> int:
    """How many bit planes the largest of ``levels`` uses (0 for none or all zero)."""
    return max(levels, default=0).bit_length()


def bitplane_tokens(ids: np.ndarray, weights: np.ndarray, step: float) -> tuple[str, int]:
    """The whitespace-separated tokens that encode one document's sparse vector, and the number of
    bit planes they use (the highest set bit + 1; 0 for an empty vector)."""
    levels = quantize(weights, step)
    parts: list[str] = []
    for term, level in zip(ids.tolist(), levels):
        j = 0
        while level:
            if level & 1:
                parts.append(f"{term}b{j}")
            level >>= 1
            j += 1
    return " ".join(parts), planes_needed(levels)


def bitplane_clauses(ids: np.ndarray, weights: np.ndarray, step: float, planes: int = BITS):
    """(token, score) pairs of the query clauses for a query sparse vector: one per bit plane below
    ``max(planes, BITS)`` for every query term of positive finite weight."""
    planes = max(int(planes), BITS)
    out: list[tuple[str, float]] = []
    for term, w in zip(ids.tolist(), np.asarray(weights, np.float64).tolist()):
        if not (w > 0 and np.isfinite(w)):
            continue
        for j in range(planes):
            out.append((f"{term}b{j}", float(w) * step * float(2**j)))
    return out
