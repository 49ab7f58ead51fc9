"""An in-memory snapshot of the chunk table's small columns, for one Lance version.

Rows are addressed by position ("catalog rows"); ``row_of`` maps chunk keys to them and
``rows_of_doc`` a document id to all its rows (built on first use, once per catalog).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass
class Catalog:
    keys: np.ndarray  # int64 chunk keys, row order
    chunk_ids: list[str]
    doc_ids: list[str]
    paths: list[str]
    titles: list[str]
    texts: list[str]
    char_start: np.ndarray
    char_end: np.ndarray
    token_counts: np.ndarray
    row_of: dict[int, int]

    @property
    def size(self) -> int:
        return len(self.chunk_ids)

    @cached_property
    def rows_of_doc(self) -> dict[str, list[int]]:
        """Every catalog row of each document, in row order (one pass over ``doc_ids``, on first use)."""
        out: dict[str, list[int]] = {}
        for row, doc_id in enumerate(self.doc_ids):
            out.setdefault(doc_id, []).append(row)
        return out

    @classmethod
    def from_arrow(cls, table) -> "Catalog":
        """From a table with the snapshot's catalog columns (row i = catalog row i)."""
        token_counts = _numbers(table.column("n_tokens"))
        keys = _numbers(table.column("chunk_key"))
        return cls(
            keys=keys,
            chunk_ids=table.column("chunk_id").to_pylist(),
            doc_ids=table.column("doc_id").to_pylist(),
            paths=table.column("path").to_pylist(),
            titles=table.column("title").to_pylist(),
            texts=table.column("text").to_pylist(),
            char_start=_numbers(table.column("char_start")),
            char_end=_numbers(table.column("char_end")),
            token_counts=np.asarray(token_counts, dtype=np.int64),
            row_of={int(k): i for i, k in enumerate(keys.tolist())},
        )


def _numbers(column) -> np.ndarray:
    """A fixed-width integer/float column as a numpy array, read from its buffers.

    ``to_numpy()`` would import pandas (about 0.2 s of a cold ``wb query``) for the same result.
    """
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count or not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        return arr.to_numpy(zero_copy_only=False)
    dtype = np.dtype(arr.type.to_pandas_dtype())
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
