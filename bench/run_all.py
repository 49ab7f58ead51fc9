"""Run every CPU benchmark in turn (results in bench/results/*.json, or $WB_BENCH_RESULTS).

    python bench/run_all.py [-w SCIFACT_WORKSPACE] [--demo-ws .wb-demo] [--small] [--only encode,rerank]

Without a workspace: bench_encode, bench_index, bench_rerank, bench_rebuild, bench_maxsim_candidates,
bench_dense_ann and bench_train (only when ``datasets`` imports: the sentence-transformers trainer needs it). With ``-w`` (a workspace
indexed with SciFact): also bench_query, bench_cold_query and bench_query_batch. bench_maxsim_exact
runs on ``--demo-ws`` (the `make demo` index its figures come from; default ``.wb-demo`` when it
exists), else on ``-w``. ``--small``: the smallest sizes of each (a smoke pass: minutes, not an
hour; write it elsewhere with WB_BENCH_RESULTS=/tmp/x so the measured files stay). Each bench runs
in its own process; a failing one is reported and the others still run; the exit status is 1 when
any failed. Not here: bench_layerwise, rerank_interpolation and rerank_passages (they need a
trained run), bench_variant_reuse (about 10 minutes of indexing) and the GPU checks
(device_check.sh).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (needs a workspace, full arguments, --small arguments)
BENCHES = {
    "encode": (None, [], ["--n", "32", "--rounds", "2"]),
    "index": (None, [], ["--docs", "10"]),
    "rerank": (None, [], ["--n", "32", "--rounds", "2"]),
    "rebuild": (None, [], ["--docs", "5", "--rounds", "2"]),
    "train": (None, [], ["--n", "32", "--batch", "16", "--query-len", "32", "--passage-len", "64",
                         "--st-precision", "same"]),
    "query": ("ws", [], ["--queries", "4", "--exact-queries", "2"]),
    "cold_query": ("ws", [], ["--runs", "1"]),
    "query_batch": ("ws", [], ["--singles", "2"]),
    "maxsim_exact": ("demo", [], ["--queries", "2"]),
    "maxsim_candidates": (None, [], ["--chunks", "300", "--rounds", "2"]),
    "dense_ann": (None, [], ["--rows", "5000", "--queries", "5"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--workspace", default=None, help="a workspace indexed with SciFact")
    ap.add_argument("--demo-ws", default=None, help="the demo index for bench_maxsim_exact (default .wb-demo if present)")
    ap.add_argument("--small", action="store_true", help="smallest sizes (a smoke pass)")
    ap.add_argument("--only", default="", help="comma list of benches to run (default: all that apply)")
    args = ap.parse_args()
    demo = args.demo_ws or (".wb-demo" if Path(".wb-demo").is_dir() else None) or args.workspace
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(BENCHES)
    if unknown:
        raise SystemExit(f"unknown bench: {', '.join(sorted(unknown))} (known: {', '.join(BENCHES)})")
    failed, skipped = [], []
    for name, (needs, full, small) in BENCHES.items():
        if only and name not in only:
            continue
        extra = []
        if needs == "ws":
            if not args.workspace:
                skipped.append(f"{name} (needs -w WS: a workspace indexed with SciFact)")
                continue
            extra = ["-w", args.workspace]
        elif needs == "demo":
            if not demo:
                skipped.append(f"{name} (needs --demo-ws or -w)")
                continue
            extra = ["-w", demo]
        if name == "train" and importlib.util.find_spec("datasets") is None:
            skipped.append("train (the sentence-transformers trainer needs `datasets`: pip install '.[train]')")
            continue
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *extra, *(small if args.small else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"== {name}: rc {rc} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if rc:
            failed.append(name)
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
