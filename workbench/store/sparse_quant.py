"""Exact learned-sparse scoring inside Tantivy through bit-plane postings.

Tantivy's only scorer is BM25, which saturates term counts and normalises by length: indexing a
weight by repeating a term is badly wrong. Instead each document weight is quantized to an integer
q = round(w / step) in [0, 2^bits) and the document gets one token ``"{term}b{j}"`` for every set bit j
of q. A query term t with weight w_q becomes, for each bit j, a constant-score clause on token
``"{t}b{j}"`` with score ``w_q * step * 2^j``. A boolean OR of those clauses sums to exactly
``sum_t w_q(t) * step * q_d(t)``: the dot product with the quantized document vector.
"""

from __future__ import annotations

import numpy as np

BITS = 8


def quantize(weights: np.ndarray, step: float, bits: int = BITS) -> np.ndarray:
    """Integer levels in [0, 2^bits - 1]; weights above the range saturate."""
    return np.clip(np.rint(weights / step), 0, (1 << bits) - 1).astype(np.int64)


def bitplane_tokens(ids: np.ndarray, weights: np.ndarray, step: float, bits: int = BITS) -> str:
    """The whitespace-separated tokens that encode one document's sparse vector."""
    levels = quantize(weights, step, bits)
    parts: list[str] = []
    for term, level in zip(ids.tolist(), levels.tolist()):
        j = 0
        while level:
            if level & 1:
                parts.append(f"{term}b{j}")
            level >>= 1
            j += 1
    return " ".join(parts)


def bitplane_clauses(ids: np.ndarray, weights: np.ndarray, step: float, bits: int = BITS):
    """(token, score) pairs of the query clauses for a query sparse vector."""
    out: list[tuple[str, float]] = []
    for term, w in zip(ids.tolist(), weights.tolist()):
        if w <= 0:
            continue
        for j in range(bits):
            out.append((f"{term}b{j}", float(w) * step * (1 << j)))
    return out
