"""Length-sorted, token-budgeted batching shared by every encoder.

Sorting inputs by length and packing batches up to a token budget removes almost all padding,
which is where plain ``encode`` loops lose most of their time on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def length_sorted_batches(
    lengths: Sequence[int], *, max_tokens: int, max_batch: int
) -> Iterator[list[int]]:
    """Yield lists of input indices, longest first, each batch padded size <= ``max_tokens``.

    Every index appears exactly once. A single input longer than the budget gets a batch alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    width = 0
    for idx in order:
        new_width = max(width, lengths[idx])
        if batch and (new_width * (len(batch) + 1) > max_tokens or len(batch) >= max_batch):
            yield batch
            batch, new_width = [], lengths[idx]
        batch.append(idx)
        width = new_width
    if batch:
        yield batch


def pad_batch(ids: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int,
              extra: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Right-padded int64 ``(input_ids, attention_mask, extra)`` for ``rows`` of ``ids`` (``extra``,
    e.g. token type ids, padded with 0; None when not given). Width: the longest of the rows."""
    width = max(len(ids[i]) for i in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    other = np.zeros((len(rows), width), dtype=np.int64) if extra is not None else None
    for r, i in enumerate(rows):
        n = len(ids[i])
        input_ids[r, :n] = ids[i]
        mask[r, :n] = 1
        if other is not None:
            other[r, :n] = extra[i]  # type: ignore[index]
    return input_ids, mask, other
