"""Exact all-token MaxSim (what a small corpus's ColBERT mode runs: every chunk scored, under
``[index] colbert_exact_max_tokens``) against the way it was done before, in one process.

- ours: ``maxsim.maxsim_bits`` on the query's threads: blocks of ~4,096 tokens widened from bf16
  into a per-thread reused buffer, numpy's BLAS on one thread;
- fresh_blocks: the earlier loop, blocks of 32,768 tokens widened into new arrays each time (as
  ``maxsim_tensor`` did on CPUs without native bf16), one thread, numpy's BLAS at its own count.

Each query is scored by both in turn (A B, then B A for the next), after one untimed call each.
Scores must agree to 1e-4. Only meaningful on a CPU without native bf16 (the widening path).

    python bench/bench_maxsim_exact.py -w WORKSPACE [--queries 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

QUERIES = [
    "run a function on many inputs in parallel", "itertools.groupby", "remove a directory tree",
    "read a file line by line", "sort a list of dictionaries by a key", "parse command line arguments",
    "wait for a subprocess to finish with a timeout", "cache the results of an expensive function",
    "format a date as a string", "merge two sorted lists", "compare floating point numbers",
    "serialize an object to JSON", "random sample without replacement", "temporary directory cleanup",
    "regular expression named groups", "count words in a text", "thread safe queue",
    "decode bytes as utf-8", "measure elapsed time", "heap of the smallest items",
]


def fresh_blocks(q: np.ndarray, bits: np.ndarray, lengths: np.ndarray, block_tokens: int = 32_768) -> np.ndarray:
    """The replaced loop: each block widened into a new array."""
    from workbench.search.maxsim import _segment_max_sum, _widened

    out = np.zeros(len(lengths), dtype=np.float32)
    ends = np.cumsum(lengths)
    doc, lo = 0, 0
    while doc < len(lengths):
        last = max(int(np.searchsorted(ends, lo + block_tokens, side="right")), doc + 1)
        hi = int(ends[last - 1])
        out[doc:last] = _segment_max_sum(q @ _widened(bits[lo:hi]).T, lengths[doc:last])
        doc, lo = last, hi
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--queries", type=int, default=40)
    args = ap.parse_args()
    from workbench.encoders.device import query_threads
    from workbench.search.maxsim import maxsim_bits
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    searcher = Searcher(Workspace.resolve(args.workspace), backend="numpy")
    matrix, _ = searcher.tokens
    bits, lengths = np.asarray(matrix.bits), matrix.lengths
    texts = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    encoded = [q.tokens for q in searcher.encode_queries(texts, {"colbert"})]
    threads = query_threads() or os.cpu_count() or 1
    variants = {"ours": lambda q: maxsim_bits(q, bits, lengths, threads=threads),
                "fresh_blocks": lambda q: fresh_blocks(q, bits, lengths)}
    for fn in variants.values():
        fn(encoded[0])
    times: dict[str, list[float]] = {name: [] for name in variants}
    worst = 0.0
    for i, q in enumerate(encoded):
        names = list(variants) if i % 2 == 0 else list(reversed(variants))
        scores = {}
        for name in names:
            t0 = time.perf_counter()
            scores[name] = variants[name](q)
            times[name].append((time.perf_counter() - t0) * 1000)
        worst = max(worst, float(np.abs(scores["ours"] - scores["fresh_blocks"]).max()))
    p50 = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "workspace": str(searcher.workspace.root),
        "chunks": len(lengths),
        "tokens": int(lengths.sum()),
        "dim": int(bits.shape[1]),
        "queries": len(encoded),
        "threads": threads,
        "p50_ms": p50,
        "ratio_time": p50["ours"] / p50["fresh_blocks"],
        "max_abs_score_difference": worst,
        "order": "A B / B A alternating per query",
    }
    assert worst < 1e-4, worst
    print(result, file=sys.stderr)
    write_result("maxsim_exact", result)


if __name__ == "__main__":
    main()
