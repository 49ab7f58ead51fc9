"""An in-memory snapshot of the chunk table's small columns, for one Lance version.

Rows are addressed by position ("catalog rows"); ``row_of`` maps chunk keys to them.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def from_arrow(cls, table) -> "Catalog":
        """From a table with the snapshot's catalog columns (row i = catalog row i)."""
        token_counts = table.column("n_tokens").to_numpy()
        keys = table.column("chunk_key").to_numpy()
        return cls(
            keys=keys,
            chunk_ids=table.column("chunk_id").to_pylist(),
            doc_ids=table.column("doc_id").to_pylist(),
            paths=table.column("path").to_pylist(),
            titles=table.column("title").to_pylist(),
            texts=table.column("text").to_pylist(),
            char_start=table.column("char_start").to_numpy(),
            char_end=table.column("char_end").to_numpy(),
            token_counts=np.asarray(token_counts, dtype=np.int64),
            row_of={int(k): i for i, k in enumerate(keys.tolist())},
        )
