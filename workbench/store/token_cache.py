"""A derived, memory-mapped copy of the ColBERT column for fast exact MaxSim.

LanceDB is the store of record for the multivectors, but fetching a few hundred rows from it costs
over 100 ms per query. After each indexing run (or on first query) the column is written once
into ``<workspace>/token_cache/`` as one bf16 matrix (raw int16 bits) plus the chunk keys and row
offsets, named by the table version. Readers memory-map it; a stale or missing cache is rebuilt
from LanceDB; files are written to a temp name and renamed, so a reader never sees half a cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TokenMatrix:
    keys: np.ndarray  # int64 chunk keys, one per chunk
    starts: np.ndarray  # int64 first token row of each chunk
    lengths: np.ndarray  # int64 tokens per chunk
    bits: np.ndarray  # [T, d] int16 memmap holding bf16 values

    def rows_of(self) -> dict[int, int]:
        return {int(k): i for i, k in enumerate(self.keys.tolist())}

    def tensor(self, chunk_rows: np.ndarray):
        """bf16 torch tensor of the given chunks' tokens stacked, and each chunk's token count."""
        import torch

        parts = [self.bits[self.starts[r] : self.starts[r] + self.lengths[r]] for r in chunk_rows.tolist()]
        if not parts:
            return torch.zeros((0, self.bits.shape[1]), dtype=torch.bfloat16), np.zeros(0, np.int64)
        stacked = np.concatenate(parts)
        return torch.from_numpy(stacked).view(torch.bfloat16), self.lengths[chunk_rows]

    def full_tensor(self):
        """All tokens as one bf16 tensor (a read-only view of the memory map: never write to it)."""
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns that the memmap is read-only
            return torch.from_numpy(np.asarray(self.bits)).view(torch.bfloat16)


def _names(folder: Path, version: int) -> tuple[Path, Path]:
    return folder / f"tokens-v{version}.bin", folder / f"index-v{version}.npz"


def build(folder: Path, table, version: int) -> None:
    """Write the cache for ``table`` at ``version`` (streaming, bounded memory) and drop old ones."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    bin_path, idx_path = _names(folder, version)
    tmp_bin = bin_path.with_suffix(f".tmp{os.getpid()}")
    keys: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    dim = None
    with open(tmp_bin, "wb") as out:
        reader = table.search().select(["chunk_key", "colbert"]).limit(None).to_batches(1024)
        for batch in reader:
            col = batch.column("colbert")
            inner = col.values
            dim = inner.type.list_size
            flat = inner.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
            offs = col.offsets.to_numpy()
            flat = flat[offs[0] : offs[-1]]
            bf = torch.from_numpy(np.array(flat, dtype=np.float16)).to(torch.bfloat16)
            out.write(bf.view(torch.int16).numpy().tobytes())
            keys.append(batch.column("chunk_key").to_numpy())
            lengths.append(np.diff(offs).astype(np.int64))
        out.flush()
        os.fsync(out.fileno())
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(all_lengths)[:-1]]).astype(np.int64)
    tmp_idx = idx_path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(
        tmp_idx,
        keys=np.concatenate(keys) if keys else np.zeros(0, np.int64),
        starts=starts,
        lengths=all_lengths,
        dim=np.array([dim or 0]),
    )
    os.replace(tmp_bin, bin_path)
    os.replace(tmp_idx, idx_path)
    for old in folder.iterdir():
        if old.name not in (bin_path.name, idx_path.name):
            old.unlink(missing_ok=True)


def load(folder: Path, table, version: int) -> TokenMatrix:
    """Memory-map the cache for ``version``, building it first if needed."""
    bin_path, idx_path = _names(folder, version)
    if not (bin_path.exists() and idx_path.exists()):
        build(folder, table, version)
    idx = np.load(idx_path)
    dim = int(idx["dim"][0])
    total = int(idx["lengths"].sum())
    if total == 0 or dim == 0:
        bits = np.zeros((0, max(dim, 1)), np.int16)
    else:
        bits = np.memmap(bin_path, dtype=np.int16, mode="r", shape=(total, dim))
    return TokenMatrix(idx["keys"], idx["starts"], idx["lengths"], bits)
