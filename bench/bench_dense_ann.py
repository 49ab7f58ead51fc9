"""Dense retrieval past ``[index] dense_exact_max_rows``: LanceDB's ANN index (what `wb index` builds
there, ``LanceChunkStore.build_dense_index``: IVF-HNSW over 8-bit vectors) whose best
``dense_ann_refine`` x depth candidates are rescored exactly from the snapshot's matrix (as
``Searcher._mode_dense`` does), against the exact scan the searcher runs below the limit (numpy:
the matrix times the query, then ``best_first``), and against LanceDB's flat scan (what dense
retrieval ran above the limit before the index existed), in one process on one table.

    python bench/bench_dense_ann.py [--rows 300000] [--dim 384] [--queries 50] [--depth 100]
    python bench/bench_dense_ann.py -w WS_WITH_SCIFACT [--queries 300]

The vectors are synthetic: unit vectors drawn around 1,000 random centres (clustered, as text
embeddings are; uniformly random vectors are the hardest case for any ANN index), the queries drawn
the same way. With ``-w``: the workspace's own dense vectors (its read snapshot) and SciFact's test
queries encoded by its dense model (recall on real embeddings; result ``dense_ann_real``). Latency is the median per query; ``*_ratio`` is that mode's time / the exact scan's
(< 1: faster). Recall is against the exact scan's top ``depth`` (and top 10): the share of its ids
the mode returns.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402


def _table(x: np.ndarray, start: int):
    import pyarrow as pa

    from workbench.store.lance_store import chunk_schema

    n, dim = x.shape
    keys = np.arange(start, start + n, dtype=np.int64)
    empty = [""] * n
    zeros = np.zeros(n, np.int32)
    return pa.table({
        "chunk_key": keys, "chunk_id": [f"c{k}" for k in keys], "doc_id": [f"d{k}" for k in keys],
        "ordinal": zeros, "path": empty, "title": empty, "text": empty, "char_start": zeros, "char_end": zeros,
        "n_tokens": zeros, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        "colbert": pa.array([[]] * n, pa.list_(pa.list_(pa.float16(), 8))),
        "sparse_ids": pa.array([[]] * n, pa.list_(pa.int32())), "sparse_weights": pa.array([[]] * n, pa.list_(pa.float32())),
    }, schema=chunk_schema(dim, 8))


def _real(workspace: str, limit: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The workspace's dense matrix (its read snapshot) and SciFact's first ``limit`` test queries
    as its dense model encodes them (unit vectors)."""
    from bench_query import test_queries

    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    searcher = Searcher(Workspace(Path(workspace)))
    x = np.ascontiguousarray(searcher.snapshot.dense, dtype=np.float32)
    encoded = searcher.encode_queries(test_queries(limit), {"dense"})
    return x, [np.asarray(q.dense, dtype=np.float32) for q in encoded]


def _clustered(rng, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _timed(fn, queries) -> tuple[float, list]:
    fn(queries[0])  # untimed: caches warm
    times, out = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def _recall(got: list, truth: list, k: int) -> float:
    return float(np.mean([len(set(g[:k].tolist()) & set(t[:k].tolist())) / k for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--depth", type=int, default=100, help="results per query ([fusion] depth)")
    ap.add_argument("-w", "--workspace", default=None, help="a workspace indexed with SciFact: its real vectors")
    args = ap.parse_args()

    from workbench.search.searcher import best_first
    from workbench.store.lance_store import LanceChunkStore

    if args.workspace:
        x, queries = _real(args.workspace, args.queries)
        args.rows, args.dim = x.shape
    else:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
        x = _clustered(rng, args.rows, args.dim, centres)
        queries = list(_clustered(rng, args.queries, args.dim, centres))

    def exact(q):
        return best_first(x @ q, args.depth)

    exact_ms, truth = _timed(exact, queries)
    with tempfile.TemporaryDirectory() as tmp:
        store = LanceChunkStore(Path(tmp))
        store.create(args.dim, 8)
        for start in range(0, args.rows, 50_000):
            store.add(_table(x[start:start + 50_000], start))
        flat_ms, flat = _timed(lambda q: store.dense_search(q, args.depth)[0], queries[: max(5, len(queries) // 5)])
        t0 = time.perf_counter()
        store.build_dense_index(max(1, args.rows // 100_000))  # wb index's [index] dense_ann_partition_rows
        build_s = time.perf_counter() - t0
        def ann(q, refine):
            keys = np.unique(store.dense_search(q, args.depth * refine)[0])  # key i is row i here
            return keys[best_first(x[keys] @ q, args.depth)]

        modes = {}
        for refine in (1, 2, 4):
            ms, got = _timed(lambda q, r=refine: ann(q, r), queries)
            modes[f"ann_refine{refine}"] = {
                "p50_ms": round(ms, 2), "ratio_vs_exact": round(ms / exact_ms, 3),
                f"recall@{args.depth}": round(_recall(got, truth, args.depth), 4),
                "recall@10": round(_recall(got, truth, 10), 4)}
    write_result("dense_ann_real" if args.workspace else "dense_ann", {
        "vectors": f"{args.workspace}'s snapshot, SciFact test queries" if args.workspace else "synthetic, clustered",
        "rows": args.rows, "dim": args.dim, "queries": args.queries, "depth": args.depth,
        "exact_scan_p50_ms": round(exact_ms, 2),
        "lancedb_flat": {"p50_ms": round(flat_ms, 2), "ratio_vs_exact": round(flat_ms / exact_ms, 3),
                         f"recall@{args.depth}": round(_recall(flat, truth, args.depth), 4)},
        "index_build_s": round(build_s, 1),
        **modes,
        "default": "ann_refine2 ([index] dense_ann_refine = 2)",
    })


if __name__ == "__main__":
    main()
