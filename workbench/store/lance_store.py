"""LanceDB table of chunks: metadata, dense vector, ColBERT multivector and sparse vector per row.

Contract:
- one row per chunk, keyed by ``chunk_key`` (see ``keys.chunk_key``) and grouped by ``doc_id``;
- ``add`` appends a batch atomically (a killed ``add`` leaves the previous version);
- ``delete_docs`` removes every row of the given documents;
- ``compact`` merges small fragments and removes old versions and orphan temp files (and brings
  rows added since into the ANN index, when the table has one: ``build_dense_index``), keeping the
  version the published read snapshot was built from (queries search that version's ANN index:
  ``at_version``) until ``cleanup`` after the next snapshot is published.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from workbench.errors import IndexingError, WorkspaceError

TABLE = "chunks"
META_COLUMNS = [
    "chunk_key", "chunk_id", "doc_id", "ordinal", "path", "title", "text", "char_start", "char_end",
]


def chunk_schema(dense_dim: int, colbert_dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_key", pa.int64()),
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("ordinal", pa.int32()),
            ("path", pa.string()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("char_start", pa.int32()),
            ("char_end", pa.int32()),
            ("n_tokens", pa.int32()),
            ("vector", pa.list_(pa.float32(), dense_dim)),
            ("colbert", pa.list_(pa.list_(pa.float16(), colbert_dim))),
            ("sparse_ids", pa.list_(pa.int32())),
            ("sparse_weights", pa.list_(pa.float32())),
        ]
    )


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class LanceChunkStore:
    """The ``chunks`` table in a LanceDB folder."""

    def __init__(self, folder: Path, *, version: int | None = None, db=None) -> None:
        """``version``: a read-only view of the table as it was at that version (``at_version``);
        None: the table's newest version, re-read at every call (another process writes it)."""
        self.folder = folder
        if db is None:
            import lancedb

            db = lancedb.connect(str(folder), read_consistency_interval=timedelta(0))
        self.db = db
        self.version = version
        self._table = None

    def at_version(self, version: int) -> "LanceChunkStore":
        """The table as it was at ``version`` (a published read snapshot's): its rows and ANN index
        then, whatever a run writes meanwhile. Opened on first use (well under a millisecond);
        WorkspaceError there if that version is gone (cleaned up after a newer snapshot was published)."""
        return LanceChunkStore(self.folder, version=version, db=self.db)

    @property
    def table(self):
        if self._table is None:
            if self.version is not None:
                try:
                    self._table = self.db.open_table(TABLE, version=self.version)
                except Exception as exc:  # noqa: BLE001 - ValueError (cleaned up), OSError/RuntimeError
                    raise WorkspaceError(f"LanceDB no longer holds version {self.version} of its table: "
                                         f"{str(exc).strip()[:200]}") from exc
                return self._table
            try:
                self._table = self.db.open_table(TABLE)
            except (FileNotFoundError, ValueError) as exc:
                raise WorkspaceError("the workspace has no LanceDB table yet: run `wb index PATH` first") from exc
        return self._table

    def exists(self) -> bool:
        listing = self.db.list_tables()
        names = getattr(listing, "tables", listing)
        return TABLE in names

    def create(self, dense_dim: int, colbert_dim: int) -> None:
        """Create the empty table (replacing any previous one)."""
        try:
            self._table = self.db.create_table(TABLE, schema=chunk_schema(dense_dim, colbert_dim), mode="overwrite")
        except Exception as exc:  # lance raises OSError/RuntimeError/ValueError (a full disk, permissions)
            raise IndexingError(f"LanceDB could not create its table: {exc}") from exc

    def add(self, batch: pa.Table) -> None:
        try:
            self.table.add(batch)
        except Exception as exc:  # lance raises OSError/RuntimeError/ValueError
            raise IndexingError(f"LanceDB add failed: {exc}") from exc

    def delete_docs(self, doc_ids: list[str]) -> None:
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start : start + 500]
            try:
                self.table.delete(f"doc_id IN ({_sql_list(part)})")
            except WorkspaceError:
                raise
            except Exception as exc:
                raise IndexingError(f"LanceDB delete failed: {exc}") from exc

    def iter_columns(self, columns: list[str], batch_rows: int = 2048):
        """All rows, only ``columns``, as record batches of at most ``batch_rows`` (constant memory)."""
        return self.table.search().select(columns).limit(None).to_batches(batch_rows)

    def read_columns(self, columns: list[str]) -> pa.Table:
        """All rows, only ``columns``."""
        return self.table.search().select(columns).limit(None).to_arrow()

    def dense_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by cosine similarity: (chunk_keys, similarities), best first.

        Through the table's ANN index (:meth:`build_dense_index`) when it has one: then the rows
        approximate the exact top k (recall: ``bench/bench_dense_ann.py``) and the similarities are
        the index's own (from quantized residuals: an order, not the cosines); the searcher rescores
        the rows from its snapshot. Rows added
        since the index was built or updated are scanned exactly. Without an index, a flat scan of
        every row, exact. WorkspaceError when LanceDB fails (files of the version it reads removed by
        a cleanup meanwhile): the searcher then scans its snapshot exactly."""
        try:
            res = (
                self.table.search(query.astype(np.float32), vector_column_name="vector")
                .distance_type("cosine")
                .select(["chunk_key", "_distance"])
                .limit(k)
                .to_arrow()
            )
        except WorkspaceError:
            raise
        except Exception as exc:  # noqa: BLE001 - lance raises OSError/RuntimeError/ValueError
            raise WorkspaceError(f"LanceDB could not search its vector index: {str(exc).strip()[:200]}") from exc
        keys = res.column("chunk_key").to_numpy()
        sims = 1.0 - res.column("_distance").to_numpy()
        return keys, sims

    def dense_index_rows(self) -> tuple[int, int] | None:
        """``(indexed rows, unindexed rows)`` of the ANN index on ``vector``; None without one."""
        try:
            for index in self.table.list_indices():
                if list(index.columns) == ["vector"]:
                    stats = self.table.index_stats(index.name)
                    return int(stats.num_indexed_rows), int(stats.num_unindexed_rows)
        except WorkspaceError:
            raise
        except Exception as exc:  # noqa: BLE001 - lance raises OSError/RuntimeError/ValueError
            raise WorkspaceError(f"LanceDB could not list its indexes: {exc}") from exc
        return None

    def build_dense_index(self, partitions: int) -> int:
        """Build (or rebuild) the ANN index on ``vector``: IVF of ``partitions`` partitions with an
        HNSW graph of scalar-quantized (8-bit) vectors in each, cosine. One LanceDB commit: a killed
        build leaves the table as it was (without the index, or with the one it replaces). Rows added
        later are folded into these partitions by :meth:`compact` (LanceDB's optimize; it does not
        retrain them). Returns the rows."""
        from lancedb.index import IvfHnswSq

        rows = int(self.table.count_rows())
        try:
            self.table.create_index("vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions),
                                    replace=True)
        except Exception as exc:  # noqa: BLE001 - lance raises OSError/RuntimeError/ValueError
            raise IndexingError(f"LanceDB could not build its vector index: {exc}") from exc
        return rows

    def compact(self, keep: int | None = None) -> str | None:
        """Merge fragments, drop old versions and remove orphan temp files from killed writes.

        ``keep``: a version whose files stay (with every newer one): the published read snapshot's,
        whose ANN index queries search until the next snapshot is published (``cleanup`` then drops
        it). Best effort (the data stays correct without it): a failure (a full disk, say) is
        returned as one line for the caller to report, since the old versions it would drop stay on disk."""
        if not self.exists():
            return None
        failure = self._optimize(self._age_of(keep), "LanceDB compaction failed")
        for tmp in (self.folder / f"{TABLE}.lance" / "data").glob(".tmp*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        return failure

    def cleanup(self) -> str | None:
        """Drop every version but the newest (after ``compact(keep=...)`` and the new read snapshot's
        publication: the kept version's files go). Compacts nothing that ``compact`` left, so the
        version stays the published one. Best effort, as ``compact``."""
        if not self.exists():
            return None
        return self._optimize(timedelta(0), "LanceDB cleanup failed")

    def _age_of(self, version: int | None) -> timedelta:
        """How old a cleanup may let versions get and still keep ``version`` (0: keep only the
        newest; also for a version that is gone), with a minute to spare for the time it takes."""
        if version is None:
            return timedelta(0)
        try:
            stamps = [v["timestamp"] for v in self.table.list_versions() if v["version"] == version]
        except Exception:  # noqa: BLE001 - then the cleanup keeps the newest version only
            return timedelta(0)
        if not stamps:
            return timedelta(0)
        return timedelta(seconds=max(0.0, time.time() - stamps[0].timestamp()) + 60)

    def _optimize(self, older_than: timedelta, what: str) -> str | None:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.table.optimize(cleanup_older_than=older_than)
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"{what}, old versions stay on disk until the next index run: {first[:200]}"
        return None


def split_multivectors(column) -> list[np.ndarray]:
    """A (chunked) list<fixed_size_list<float16, d>> column as one [n_i, d] array per row."""
    lists = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    inner = lists.values
    dim = inner.type.list_size
    flat = inner.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    bounds = lists.offsets.to_numpy()
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(lists))]
