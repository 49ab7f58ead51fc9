"""The read snapshot: a derived, memory-mapped copy of the chunk table for the query path.

LanceDB is the store of record, but a query must not pay for opening it: importing lancedb costs
about a second, a Lance flat scan of 10k vectors ~25 ms, and fetching a few hundred multivectors
over 100 ms. After each indexing run the table is written once into
``<workspace>/snapshot/v<version>/``:

- ``catalog.arrow``: chunk metadata (Arrow IPC, memory-mapped);
- ``dense.npy``: the dense vectors, float32 [N, D];
- ``tokens.bin`` + ``tokens.npz``: the ColBERT token vectors (LanceDB's fp16, rounded to bf16: see
  :mod:`workbench.search.maxsim`) as one bf16 matrix (raw int16 bits),
  with each chunk's key, first row and length;
- ``sparse.npz``: the learned-sparse vectors (CSR), for scoring any candidate exactly in that mode
  (``[fusion] complete``; Tantivy only ranks its own top-N).

A snapshot is built in a temporary folder and renamed into place, then its version is recorded in
the manifest; readers open exactly the recorded version, so they never see half a snapshot. A
missing snapshot is rebuilt from LanceDB.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkspaceError


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
class SparseMatrix:
    """Every chunk's learned-sparse vector, CSR: row ``r``'s term ids are
    ``ids[indptr[r]:indptr[r + 1]]`` (ascending) with ``weights`` alongside (float32)."""

    indptr: np.ndarray  # int64 [N + 1]
    ids: np.ndarray  # int32 [nnz]
    weights: np.ndarray  # float32 [nnz]

    def dot(self, rows: np.ndarray, query_ids: np.ndarray, query_weights: np.ndarray) -> np.ndarray:
        """float32 ``[len(rows)]``: each row's vector dotted with the query's (exact, float weights)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        if len(rows) == 0 or len(query_ids) == 0:
            return out
        order = np.argsort(query_ids, kind="stable")
        q_ids = np.asarray(query_ids, dtype=np.int64)[order]
        q_w = np.asarray(query_weights, dtype=np.float32)[order]
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        if int(lengths.sum()) == 0:
            return out
        # every entry of the selected rows, flattened, and the row each came from
        flat = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
        owner = np.repeat(np.arange(len(rows)), lengths)
        doc_ids = self.ids[flat].astype(np.int64)
        at = np.minimum(np.searchsorted(q_ids, doc_ids), len(q_ids) - 1)
        hit = q_ids[at] == doc_ids
        np.add.at(out, owner[hit], self.weights[flat][hit] * q_w[at[hit]])
        return out


@dataclass
class Snapshot:
    version: int
    catalog_table: object  # pyarrow.Table
    dense: np.ndarray  # [N, D] float32, same row order as catalog_table
    tokens: TokenMatrix  # rows in the same order as catalog_table
    sparse: SparseMatrix | None = None  # rows in the same order; None in a snapshot written before it had one


def _make_folder(folder: Path) -> None:
    """Make the snapshot folder; a file in its place, or one that cannot be made, is a WorkspaceError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkspaceError(f"the workspace's snapshot {folder} is a file, not a folder: remove it (the next "
                             "query rebuilds the snapshot from the index)") from None
    except OSError as exc:
        raise WorkspaceError(f"cannot write the workspace's snapshot {folder}: {exc.strerror or exc}") from None


SNAPSHOT_BATCH_ROWS = 128


def build(folder: Path, table, version: int, exclude_docs: list[str] = (), record=None) -> Path:
    """Write the snapshot of ``table`` at ``version`` (bounded memory); returns its folder.

    ``record``: called once the snapshot is in place, before the older ones are removed (the
    publisher records the version in the manifest there, so a reader that finds its snapshot gone
    finds the newer one named).

    ``exclude_docs``: documents whose rows are left out: a cut-off run's unfinished batch (the
    manifest's pending documents), which the next ``wb index`` deletes before anything else. Such
    rows exist at ``version`` only if that run wrote them, so that run's recovery makes a newer
    version, and a snapshot without them is never taken for the complete one."""
    import shutil

    import pyarrow as pa
    import pyarrow.feather as feather
    import torch

    _make_folder(folder)
    final = folder / f"v{version}"
    if (final / "tokens.npz").exists():
        if record is not None:
            record()
        return final
    tmp = folder / f"tmp-v{version}-{os.getpid()}-{threading.get_ident()}"  # one per builder, threads too
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    keys: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    metas = []
    dense_parts = []
    sparse_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    dim = None
    with open(tmp / "tokens.bin", "wb") as out:
        query = table.search().select(CATALOG_COLUMNS + ["vector", "colbert", "sparse_ids", "sparse_weights"])
        if exclude_docs:
            from workbench.store.lance_store import _sql_list

            ids = sorted(exclude_docs)
            query = query.where(" AND ".join(f"doc_id NOT IN ({_sql_list(ids[i : i + 500])})"
                                             for i in range(0, len(ids), 500)))
        # batches of SNAPSHOT_BATCH_ROWS: a chunk's token vectors are ~100-200 KB, each batch held
        # a few times over (LanceDB's fp16, a copy, the bf16 written): the demo index's 1,161 chunks
        # peaked at +999 MB in 1,024-row batches, +651 MB in 128-row ones (the rest is LanceDB's
        # read-ahead: reading the token column alone, in any batch size, takes ~290 MB there)
        reader = query.limit(None).to_batches(SNAPSHOT_BATCH_ROWS)
        for batch in reader:
            batch = pa.Table.from_batches([batch])
            col = batch.column("colbert").combine_chunks()
            inner = col.values
            dim = inner.type.list_size
            flat = inner.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
            offs = col.offsets.to_numpy()
            flat = np.array(flat[offs[0] : offs[-1]], dtype=np.float16)  # a writable copy for torch
            out.write(torch.from_numpy(flat).to(torch.bfloat16).view(torch.int16).numpy().data)
            keys.append(batch.column("chunk_key").to_numpy())
            lengths.append(np.diff(offs).astype(np.int64))
            vec = batch.column("vector").combine_chunks()
            dense_parts.append(vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), -1))
            metas.append(batch.select(CATALOG_COLUMNS))
            sparse_parts.append(_sparse_arrays(batch))
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
    _save_sparse(tmp / "sparse.npz", sparse_parts)
    dense = np.concatenate(dense_parts).astype(np.float32) if dense_parts else np.zeros((0, 1), np.float32)
    np.save(tmp / "dense.npy", dense)
    catalog = pa.concat_tables(metas) if metas else table.schema.empty_table().select(CATALOG_COLUMNS)
    feather.write_feather(catalog, tmp / "catalog.arrow", compression="uncompressed")
    for f in tmp.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if record is not None:
        record()
    for old in folder.iterdir():
        newer = re.fullmatch(r"v(\d+)", old.name) is not None and int(old.name[1:]) > version  # published meanwhile
        if old.name != final.name and not newer and not _building_elsewhere(old.name):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return final


def _building_elsewhere(name: str) -> bool:
    """Whether ``name`` is another live builder's ``tmp-vN-PID-THREAD`` folder (a query rebuilding a
    missing snapshot while ``wb index`` publishes one, or another thread of this process, e.g. the
    TUI's): never removed under it."""
    match = re.fullmatch(r"tmp-v\d+-(\d+)(?:-(\d+))?", name)
    if not match:
        return False
    if int(match.group(1)) == os.getpid():
        thread = int(match.group(2)) if match.group(2) else None
        return thread is not None and thread != threading.get_ident() and thread in {
            t.ident for t in threading.enumerate()}
    try:
        os.kill(int(match.group(1)), 0)
    except (ProcessLookupError, OverflowError):  # gone (or never a pid)
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _sparse_arrays(batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row lengths, ids, weights) of a batch's ``sparse_ids`` / ``sparse_weights`` list columns."""
    ids = batch.column("sparse_ids").combine_chunks()
    weights = batch.column("sparse_weights").combine_chunks()
    offs = ids.offsets.to_numpy()
    flat_ids = ids.values.to_numpy(zero_copy_only=False)[offs[0] : offs[-1]].astype(np.int32)
    w_offs = weights.offsets.to_numpy()
    flat_w = weights.values.to_numpy(zero_copy_only=False)[w_offs[0] : w_offs[-1]].astype(np.float32)
    return np.diff(offs).astype(np.int64), flat_ids, flat_w


def _save_sparse(path: Path, parts) -> None:
    """Write ``sparse.npz`` (CSR, each row's ids sorted) from ``_sparse_arrays`` parts."""
    lengths = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    ids = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
    weights = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    order = np.lexsort((ids, owner))  # rows stay in order; ids ascend within each row
    with open(path, "wb") as handle:
        np.savez(handle, indptr=indptr, ids=ids[order], weights=weights[order])


def add_sparse(folder: Path, version: int, table) -> None:
    """Give a snapshot written before ``sparse.npz`` existed its sparse vectors, from ``table``
    (the LanceDB chunk table at ``version``, same row order), written aside and renamed in."""
    path = folder / f"v{version}"
    if (path / "sparse.npz").exists():
        return
    import pyarrow as pa

    parts = []
    reader = table.search().select(["chunk_key", "sparse_ids", "sparse_weights"]).limit(None).to_batches(1024)
    keys = []
    for batch in reader:
        batch = pa.Table.from_batches([batch])
        keys.append(batch.column("chunk_key").to_numpy())
        parts.append(_sparse_arrays(batch))
    expected = np.load(path / "tokens.npz")["keys"]
    got = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    if not np.array_equal(got, expected):
        raise WorkspaceError("the read snapshot no longer matches the chunk table: run `wb index` again to rebuild it")
    tmp = path / f"sparse.tmp{os.getpid()}.npz"
    _save_sparse(tmp, parts)
    os.replace(tmp, path / "sparse.npz")


def load(folder: Path, version: int) -> Snapshot | None:
    """Memory-map the snapshot of ``version``; None if it does not exist, also when its folder goes
    while it is read (a `wb index` that published a newer one removes it: the manifest then names
    the newer one). Once mapped, the files stay readable after their removal."""
    try:
        return _load(folder / f"v{version}", version)
    except FileNotFoundError:
        return None


def _load(path: Path, version: int) -> Snapshot | None:
    import pyarrow.feather as feather

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
    sparse = None
    if (path / "sparse.npz").exists():
        with np.load(path / "sparse.npz") as arrays:
            sparse = SparseMatrix(arrays["indptr"], arrays["ids"], arrays["weights"])
    return Snapshot(version, catalog, dense, tokens, sparse)
