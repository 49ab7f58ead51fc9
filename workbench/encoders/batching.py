"""Length-sorted, token-budgeted batching shared by every encoder.

Sorting inputs by length and packing batches up to a token budget removes almost all padding,
which is where plain ``encode`` loops lose most of their time on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


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
