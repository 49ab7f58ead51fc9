"""Exact MaxSim (late interaction) scoring.

score(q, d) = sum over query tokens i of max over document tokens j of <q_i, d_j>, both sides
L2-normalised. Which documents get scored is the caller's choice; each one is scored exactly
(bf16 products accumulated in fp32, as the stored vectors are bf16).
"""

from __future__ import annotations

import numpy as np


def _segment_max_sum(sims: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)


def maxsim_tensor(query_tokens, docs, lengths: np.ndarray, block_tokens: int = 262_144) -> np.ndarray:
    """MaxSim of one query ([nq, d] tensor) against documents stacked in ``docs`` ([T, d] tensor).

    ``lengths[j]`` is document j's token count (all > 0). Returns float32 [n_docs].
    """
    import torch

    n_docs = len(lengths)
    if n_docs == 0:
        return np.zeros(0, dtype=np.float32)
    q = query_tokens.to(docs.dtype)
    out = np.zeros(n_docs, dtype=np.float32)
    ends = np.cumsum(lengths)
    doc, lo = 0, 0
    while doc < n_docs:
        last = int(np.searchsorted(ends, lo + block_tokens, side="right"))
        last = max(last, doc + 1)
        hi = int(ends[last - 1])
        with torch.inference_mode():
            sims = torch.matmul(q, docs[lo:hi].T).float().numpy()
        out[doc:last] = _segment_max_sum(sims, lengths[doc:last])
        doc, lo = last, hi
    return out


def maxsim_numpy(query_tokens: np.ndarray, doc_tokens: list[np.ndarray]) -> np.ndarray:
    """Reference MaxSim in float32 numpy (brute force, for tests and exactness checks)."""
    if not doc_tokens:
        return np.zeros(0, dtype=np.float32)
    q = query_tokens.astype(np.float32)
    return np.array([(q @ d.astype(np.float32).T).max(axis=1).sum() for d in doc_tokens], dtype=np.float32)
