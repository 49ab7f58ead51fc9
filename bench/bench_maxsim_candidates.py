"""The ColBERT candidate stage's MaxSim in fp32 (what ``Searcher.maxsim_rows`` runs on every CPU:
``maxsim_chunks``, bf16 token rows widened into a reused buffer) against bf16 products (the padded
``CandidateScorer`` it replaced on CPUs with native bf16), and the whole-corpus MaxSim in bf16 +
the fp32 rescoring of the rows that can reach the top (``rows_that_can_rank``) against fp32 for
every chunk (``maxsim_bits``), in one process on a synthetic token matrix (unit rows of 50-255
tokens, a 20-token query); with ``-w WS`` the whole-corpus rows are also measured on that index's
own token matrix with real queries (``sample_corpora/python-docs.queries.tsv``: what `make demo`
indexes), where scores spread as on real text.

    python bench/bench_maxsim_candidates.py [--chunks 5000] [--rounds 10] [-w .wb-demo]

Ratios are ours / baseline time (< 1: ours faster); ``max_abs_diff`` is the bf16 side's distance to
fp32 scores. The bf16 side is meaningful on a CPU with native bf16 only (``cpu_bf16`` records it);
elsewhere torch emulates bf16 and it is far slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402


def _timed(fn, rounds: int) -> tuple[float, object]:
    fn()  # untimed: buffers and thread pools warm
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("-w", "--workspace", default=None, help="an index whose own tokens to measure too")
    args = parser.parse_args()

    import torch

    from workbench.encoders.device import cpu_has_bf16
    from workbench.search.maxsim import CandidateScorer, maxsim_bits, maxsim_chunks

    rng = np.random.default_rng(0)
    dim, threads = 384, torch.get_num_threads()
    lengths = rng.integers(50, 256, args.chunks)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    tokens = rng.standard_normal((int(lengths.sum()), dim)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    bits = torch.from_numpy(tokens).bfloat16().view(torch.int16).numpy()
    query = rng.standard_normal((20, dim)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    scorer = CandidateScorer(bits, starts, lengths)

    candidates = {}
    for n in sorted({min(n, args.chunks) for n in (150, 400, 1500)}):
        rows = np.sort(rng.choice(args.chunks, n, replace=False))
        ours_ms, ours = _timed(lambda: maxsim_chunks(query, bits, starts[rows], lengths[rows], threads=threads),
                               args.rounds)
        base_ms, base = _timed(lambda: scorer.score(torch.from_numpy(query), rows, threads=threads), args.rounds)
        candidates[str(n)] = {"fp32_chunks_ms": ours_ms, "bf16_padded_ms": base_ms, "ratio_time": ours_ms / base_ms,
                              "max_abs_diff": float(np.abs(np.asarray(ours) - np.asarray(base)).max())}

    full = torch.from_numpy(bits).view(torch.bfloat16)
    depth = 100

    ours_ms, (near, _) = _timed(lambda: _bf16_then_rescore(query, full, bits, starts, lengths, depth),
                                max(2, args.rounds // 3))
    base_ms, _ = _timed(lambda: maxsim_bits(query, bits, lengths, threads=threads), max(2, args.rounds // 3))
    whole = {"bf16_then_rescore_ms": ours_ms, "fp32_all_ms": base_ms, "ratio_time": ours_ms / base_ms,
             "rescored_rows": int(len(near)), "depth": depth,
             "note": "random tokens: near-equal scores, so far more rows are rescored than on real text"}
    result = {"cpu_bf16": cpu_has_bf16(), "threads": threads, "chunks": args.chunks, "tokens": int(lengths.sum()),
              "candidates": candidates, "whole_corpus_top100": whole}
    if args.workspace:
        result["workspace_whole_corpus_top100"] = _on_workspace(args.workspace, depth, args.rounds)
    write_result("maxsim_candidates", result)


def _bf16_then_rescore(query, full, bits, starts, lengths, depth: int):
    """What the searcher's whole-corpus MaxSim runs where the CPU multiplies bf16: every chunk in
    bf16 (``maxsim_tensor`` over ``full``), then the contenders in fp32 (``rescored_contenders``)."""
    import torch

    from workbench.search.maxsim import maxsim_chunks, maxsim_tensor, rescored_contenders

    approx = maxsim_tensor(torch.from_numpy(query), full, lengths)
    threads = torch.get_num_threads()
    return rescored_contenders(query, approx, depth,
                               lambda rows: maxsim_chunks(query, bits, starts[rows], lengths[rows], threads=threads))


def _on_workspace(root: str, depth: int, rounds: int) -> dict:
    """bf16 whole-corpus MaxSim + fp32 rescoring vs fp32 for every chunk, on ``root``'s token matrix
    with the python-docs queries (encoded as the colbert mode encodes them)."""
    import torch

    from workbench.search.maxsim import maxsim_bits
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    searcher = Searcher(Workspace(Path(root)))
    matrix, _ = searcher.tokens
    full = torch.from_numpy(np.asarray(matrix.bits)).view(torch.bfloat16)
    bits, starts, lengths = np.asarray(matrix.bits), matrix.starts, matrix.lengths
    queries_file = Path(__file__).resolve().parents[1] / "sample_corpora" / "python-docs.queries.tsv"
    texts = [line.split("\t")[0] for line in queries_file.read_text().splitlines()[1:] if line.strip()]
    threads = torch.get_num_threads()
    ours, base, rescored, same = [], [], [], 0
    for q in searcher.encode_queries(texts, {"colbert"}):
        ms, (near, exact) = _timed(lambda: _bf16_then_rescore(q.tokens, full, bits, starts, lengths, depth), rounds)
        ms_all, every = _timed(lambda: maxsim_bits(q.tokens, bits, lengths, threads=threads), rounds)
        ours.append(ms)
        base.append(ms_all)
        rescored.append(len(near))
        top = near[np.argsort(-exact, kind="stable")[:depth]]
        same += set(top.tolist()) == set(np.argsort(-every, kind="stable")[:depth].tolist())
    return {"chunks": int(len(lengths)), "tokens": int(lengths.sum()), "queries": len(texts),
            "bf16_then_rescore_p50_ms": statistics.median(ours), "fp32_all_p50_ms": statistics.median(base),
            "ratio_time": statistics.median(ours) / statistics.median(base),
            "rescored_rows_median": statistics.median(rescored), "same_top_set_fraction": same / len(texts)}


if __name__ == "__main__":
    main()
