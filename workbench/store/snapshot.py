"""The read snapshot: a derived, memory-mapped copy of the chunk table for the query path.

LanceDB is the store of record, but a query must not pay for opening it: importing lancedb costs
about a second, a Lance flat scan of 10k vectors ~25 ms, and fetching a few hundred multivectors
over 100 ms. After each indexing run the table is written once into
``<workspace>/snapshot/v<version>/``:

- ``catalog.arrow``: chunk metadata (Arrow IPC, memory-mapped);
- ``dense.npy``: the dense vectors, float32 [N, D];
- ``tokens.bin`` + ``tokens.npz``: the ColBERT token vectors as one bf16 matrix (raw int16 bits),
  with each chunk's key, first row and length.

A snapshot is built in a temporary folder and renamed into place, then its version is recorded in
the manifest; readers open exactly the recorded version, so they never see half a snapshot. A
missing snapshot is rebuilt from LanceDB.
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


CATALOG_COLUMNS = [
    "chunk_key", "chunk_id", "doc_id", "path", "title", "text", "char_start", "char_end", "n_tokens",
]


@dataclass
class Snapshot:
    version: int
    catalog_table: object  # pyarrow.Table
    dense: np.ndarray  # [N, D] float32, same row order as catalog_table
    tokens: TokenMatrix  # rows in the same order as catalog_table


def build(folder: Path, table, version: int) -> Path:
    """Write the snapshot of ``table`` at ``version`` (bounded memory); returns its folder."""
    import shutil

    import pyarrow as pa
    import pyarrow.feather as feather
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"v{version}"
    if (final / "tokens.npz").exists():
        return final
    tmp = folder / f"tmp-v{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    keys: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    metas = []
    dense_parts = []
    dim = None
    with open(tmp / "tokens.bin", "wb") as out:
        reader = (
            table.search().select(CATALOG_COLUMNS + ["vector", "colbert"]).limit(None).to_batches(1024)
        )
        for batch in reader:
            batch = pa.Table.from_batches([batch])
            col = batch.column("colbert").combine_chunks()
            inner = col.values
            dim = inner.type.list_size
            flat = inner.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
            offs = col.offsets.to_numpy()
            flat = flat[offs[0] : offs[-1]]
            bf = torch.from_numpy(np.array(flat, dtype=np.float16)).to(torch.bfloat16)
            out.write(bf.view(torch.int16).numpy().tobytes())
            keys.append(batch.column("chunk_key").to_numpy())
            lengths.append(np.diff(offs).astype(np.int64))
            vec = batch.column("vector").combine_chunks()
            dense_parts.append(vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), -1))
            metas.append(batch.select(CATALOG_COLUMNS))
        out.flush()
        os.fsync(out.fileno())
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(all_lengths)[:-1]]).astype(np.int64)
    np.savez(
        tmp / "tokens.npz",
        keys=np.concatenate(keys) if keys else np.zeros(0, np.int64),
        starts=starts,
        lengths=all_lengths,
        dim=np.array([dim or 0]),
    )
    dense = np.concatenate(dense_parts).astype(np.float32) if dense_parts else np.zeros((0, 1), np.float32)
    np.save(tmp / "dense.npy", dense)
    catalog = pa.concat_tables(metas) if metas else table.schema.empty_table().select(CATALOG_COLUMNS)
    feather.write_feather(catalog, tmp / "catalog.arrow", compression="uncompressed")
    for f in tmp.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in folder.iterdir():
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return final


def load(folder: Path, version: int) -> Snapshot | None:
    """Memory-map the snapshot of ``version``; None if it does not exist."""
    import pyarrow.feather as feather

    path = folder / f"v{version}"
    if not (path / "tokens.npz").exists():
        return None
    idx = np.load(path / "tokens.npz")
    dim = int(idx["dim"][0])
    total = int(idx["lengths"].sum())
    if total == 0 or dim == 0:
        bits = np.zeros((0, max(dim, 1)), np.int16)
    else:
        bits = np.memmap(path / "tokens.bin", dtype=np.int16, mode="r", shape=(total, dim))
    tokens = TokenMatrix(idx["keys"], idx["starts"], idx["lengths"], bits)
    catalog = feather.read_table(path / "catalog.arrow", memory_map=True)
    dense = np.load(path / "dense.npy", mmap_mode="r")
    return Snapshot(version, catalog, dense, tokens)
