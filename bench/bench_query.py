"""Query latency per pipeline (warm, in-process, one query at a time) and cold `wb query` time;
plus top-10 exactness of the sparse and ColBERT scorers against brute force.

    python bench/bench_query.py -w WORKSPACE_WITH_SCIFACT [--queries 300] [--exact-queries 50]
                                [--dtype float32] [--tag avx2]

The latency rows and cold times are absolute figures against goals (hybrid p50 <= 50 ms, cold <= 3 s),
not ratios; the ratios are the backend, candidate-stage and ablation comparisons in the same process.
The torch backend runs in ``pick_dtype``'s dtype (bf16 on CPUs with native bf16) unless ``--dtype``
sets ``WB_DTYPE``; the numpy backend is always float32, so ``warm_backends.same_top10_fraction`` is
1.0 only when the torch side runs float32 too (its ``torch_dtype`` is recorded). ``--tag T`` writes
``query_T.json`` (e.g. ``--tag avx2`` regenerates ``query_avx2.json``) instead of ``query.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SCIFACT, write_result  # noqa: E402

PIPELINES = ["bm25", "sparse", "dense", "colbert", "hybrid", "hybrid+rerank"]


def test_queries(limit: int) -> list[str]:
    ids = set()
    with open(SCIFACT / "qrels" / "test.tsv") as f:
        next(f)
        for line in f:
            ids.add(line.split("\t")[0])
    out = []
    with open(SCIFACT / "queries.jsonl") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in ids:
                out.append(q["text"])
    return out[:limit]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def exactness(searcher, queries: list[str]) -> dict:
    import torch

    from workbench.search.maxsim import maxsim_tensor

    matrix, mapping = searcher.tokens
    table = searcher.lance.read_columns(["chunk_key", "sparse_ids", "sparse_weights"])
    keys = table.column("chunk_key").to_numpy()
    sp_ids = table.column("sparse_ids").to_pylist()
    sp_w = table.column("sparse_weights").to_pylist()
    col_overlap, col_hybrid, sp_overlap = [], [], []
    full = matrix.full_tensor()
    for q in searcher.encode_queries(queries, {"dense", "colbert", "sparse", "bm25"}):
        brute_scores = maxsim_tensor(torch.from_numpy(q.tokens), full, matrix.lengths)[mapping]
        brute = set(np.argsort(-brute_scores)[:10].tolist())
        rows, _ = searcher.run_modes(q, ("colbert",), 100)["colbert"]
        col_overlap.append(len(brute & set(rows[:10].tolist())) / 10)
        rows, _ = searcher.run_modes(q, ("dense", "colbert", "sparse", "bm25"), 100)["colbert"]
        col_hybrid.append(len(brute & set(rows[:10].tolist())) / 10)
        qv = dict(zip(q.sparse_ids.tolist(), q.sparse_weights.tolist()))
        exact = np.array([sum(qv.get(t, 0.0) * w for t, w in zip(i, ws)) for i, ws in zip(sp_ids, sp_w)])
        brute_sp = set(keys[np.argsort(-exact)[:10]].tolist())
        got, _ = searcher.tantivy.sparse_search(q.sparse_ids, q.sparse_weights, 10)
        sp_overlap.append(len(brute_sp & set(got.tolist())) / 10)
    return {
        "queries": len(queries),
        "colbert_top10_overlap": float(np.mean(col_overlap)),
        "colbert_top10_overlap_hybrid_candidates": float(np.mean(col_hybrid)),
        "note": "colbert alone scores the dense top-300 + BM25 top-100 exactly; inside hybrid it scores the "
                "other modes' top-50 each (index.hybrid_colbert_depth), so its own list is not the global top",
        "sparse_top10_overlap": float(np.mean(sp_overlap)),
    }


def scorer_ratio(searcher, queries: list[str]) -> dict:
    """The ColBERT candidate stage against what it replaced, in the same process, alternating per
    query: ``Searcher.maxsim_rows`` (``maxsim_chunks`` on every CPU: blocks of whole chunks widened
    to fp32 into a reused buffer, exact) vs the
    padded ``CandidateScorer`` and vs the ragged gather into a new tensor + ``maxsim_tensor``, on each
    query's hybrid candidates (and on those widened by the dense top-300)."""
    import torch

    from workbench.search.maxsim import CandidateScorer, maxsim_tensor

    matrix, mapping = searcher.tokens
    padded_scorer = CandidateScorer(matrix.bits, matrix.starts, matrix.lengths)

    def padded(tokens, rows):
        return padded_scorer.score(torch.from_numpy(tokens), mapping[rows], threads=torch.get_num_threads())

    def ragged(tokens, rows):
        docs, lengths = matrix.tensor(mapping[rows])
        return maxsim_tensor(torch.from_numpy(tokens), docs, lengths)

    out = {}
    for label, extra in (("hybrid_candidates", 0), ("widened_dense_top300", 300)):
        times: dict[str, list[float]] = {"ours": [], "padded_scorer": [], "ragged_gather": []}
        sizes = []
        for i, q in enumerate(searcher.encode_queries(queries, {"dense", "colbert", "sparse"})):
            lists = searcher.run_modes(q, ("dense", "sparse", "bm25"), 100)
            rows = searcher.fusion_colbert_candidates(q, lists)
            if extra:
                rows = np.unique(np.concatenate([rows, searcher._mode_dense(q, extra)[0]]))
            sizes.append(len(rows))
            variants = [("ours", searcher.maxsim_rows), ("padded_scorer", padded), ("ragged_gather", ragged)]
            for name, fn in variants if i % 2 == 0 else variants[::-1]:
                t0 = time.perf_counter()
                fn(q.tokens, rows)
                times[name].append((time.perf_counter() - t0) * 1000)
        p50 = {name: pct(v, 50) for name, v in times.items()}
        out[label] = {"chunks_mean": float(np.mean(sizes)), "p50_ms": p50,
                      "ratio_time_vs_padded_scorer": p50["ours"] / p50["padded_scorer"],
                      "ratio_time_vs_ragged_gather": p50["ours"] / p50["ragged_gather"]}
    return out


def ablations(searcher, queries: list[str]) -> dict:
    """Hybrid p50 with this version's query-time choices against what they replaced, in this
    process: ColBERT scoring the other lists' top ``hybrid_colbert_depth`` each (vs their whole
    lists + the dense top-150, the earlier default), and numpy's BLAS on one thread inside query
    blocks (vs left at its own thread count beside torch's; the dense product runs in torch now, so
    this only guards). Each variant answers every query in turn, in the order A B C C B A (a
    variant's spinning threads outlive its query, so alternating per query would mix them)."""
    import contextlib
    from dataclasses import replace

    from workbench.encoders import device

    ours_cfg = searcher.config
    wide_cfg = replace(ours_cfg, index=replace(ours_cfg.index, hybrid_colbert_depth=0, hybrid_colbert_extra=150))
    one_blas = device._one_blas_thread
    variants = {"ours": (ours_cfg, one_blas), "whole_lists_plus_dense150": (wide_cfg, one_blas),
                "blas_unlimited": (ours_cfg, contextlib.nullcontext)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name in list(variants) + list(reversed(variants)):
            searcher.config, device._one_blas_thread = variants[name]
            for q in queries:
                t0 = time.perf_counter()
                searcher.search(q, pipeline="hybrid", k=10)
                times[name].append((time.perf_counter() - t0) * 1000)
    finally:
        searcher.config, device._one_blas_thread = ours_cfg, one_blas
    p50 = {k: pct(v, 50) for k, v in times.items()}
    return {"hybrid_p50_ms": p50, "queries": len(queries), "order": "A B C C B A, every query each time",
            "ratio_time_vs_whole_lists": p50["ours"] / p50["whole_lists_plus_dense150"],
            "ratio_time_vs_blas_unlimited": p50["ours"] / p50["blas_unlimited"]}


def warm_backends(searcher, queries: list[str]) -> dict:
    """Warm hybrid p50 of the numpy backend (what a one-shot `wb query` runs) against the torch one
    (the TUI, `wb eval`), two Searchers over the same index in this process, order A B B A; and
    whether they rank alike (top-10 document ids equal)."""
    from workbench.search.searcher import Searcher

    other = Searcher(searcher.workspace, config=searcher.config, backend="numpy")
    other.search(queries[0], pipeline="hybrid")
    sides = {"torch": searcher, "numpy": other}
    times: dict[str, list[float]] = {name: [] for name in sides}
    answers: dict[str, list[list[str]]] = {name: [] for name in sides}
    for name in ("torch", "numpy", "numpy", "torch"):
        for q in queries:
            t0 = time.perf_counter()
            r = sides[name].search(q, pipeline="hybrid", k=10)
            times[name].append((time.perf_counter() - t0) * 1000)
            answers[name].append([h.doc_id for h in r.results])
    same = np.mean([a == b for a, b in zip(answers["numpy"], answers["torch"])])
    p50 = {k: pct(v, 50) for k, v in times.items()}
    from workbench.encoders.device import pick_device, pick_dtype

    return {"hybrid_p50_ms": p50, "queries": len(queries), "order": "A B B A",
            "torch_dtype": str(pick_dtype(pick_device())).replace("torch.", ""), "numpy_dtype": "float32",
            "ratio_time_numpy_vs_torch": p50["numpy"] / p50["torch"], "same_top10_fraction": float(same)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--exact-queries", type=int, default=50)
    ap.add_argument("--pipelines", default=",".join(PIPELINES))
    ap.add_argument("--dtype", default="", help="WB_DTYPE for the torch backend (default: pick_dtype's)")
    ap.add_argument("--tag", default="", help="write query_TAG.json (e.g. avx2) instead of query.json")
    args = ap.parse_args()
    if args.dtype:
        os.environ["WB_DTYPE"] = args.dtype
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    searcher = Searcher(ws)
    queries = test_queries(args.queries)
    if not queries:
        raise SystemExit("bench_query: no test queries (--queries must be at least 1)")
    cold_query = queries[1] if len(queries) > 1 else queries[0]  # not the warm-up's query
    searcher.search(queries[0], pipeline="hybrid+rerank")  # load models, catalog, token cache
    latency = {}
    for pipeline in args.pipelines.split(","):
        times = []
        for q in queries:
            t0 = time.perf_counter()
            searcher.search(q, pipeline=pipeline, k=10)
            times.append((time.perf_counter() - t0) * 1000)
        latency[pipeline] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95), "mean_ms": statistics.mean(times)}
        print(pipeline, latency[pipeline], file=sys.stderr)

    # cold: `wb query` as shipped (the numpy backend) and forced to torch, alternating
    cold: dict[str, list[float]] = {"numpy": [], "torch": []}
    for _ in range(4):
        for backend in cold:
            env = dict(os.environ, WB_WORKSPACE=str(ws.root), WB_QUERY_BACKEND=backend)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "query", cold_query, "--json"],
                                  env=env, capture_output=True, text=True)
            cold[backend].append(time.perf_counter() - t0)
            assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, WB_WORKSPACE=str(ws.root))
    cold_bm25 = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "query", cold_query, "--json", "-p", "bm25"],
                              env=env, capture_output=True, text=True)
        cold_bm25.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr
    result = {
        "workspace": str(ws.root),
        "chunks": searcher.catalog.size,
        "queries": len(queries),
        "latency_warm_in_process": latency,
        "cold_wb_query_json_seconds": {
            "hybrid_median": statistics.median(cold["numpy"]), "bm25_median": statistics.median(cold_bm25),
            "hybrid_median_torch_backend": statistics.median(cold["torch"]),
            "ratio_time_numpy_vs_torch_backend": statistics.median(cold["numpy"]) / statistics.median(cold["torch"]),
            "note": "wb query uses the numpy backend (no torch import); WB_QUERY_BACKEND=torch forces the torch one"},
        "warm_backends": warm_backends(searcher, queries[: args.exact_queries * 2]),
        "goals": {"hybrid_p50_ms": 50, "cold_seconds": 3},
        "exactness": exactness(searcher, queries[: args.exact_queries]),
        "colbert_candidate_stage": scorer_ratio(searcher, queries[: args.exact_queries]),
        "hybrid_ablations": ablations(searcher, queries[: args.exact_queries * 2]),
    }
    write_result(f"query_{args.tag}" if args.tag else "query", result)


if __name__ == "__main__":
    main()
