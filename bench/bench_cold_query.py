"""Cold `wb query --json` wall time: the numpy backend (default) against the torch paths before it.

Variants (environment of the `wb query` process):
- before: WB_LEAN=0 WB_QUERY_THREADS=0 WB_QUERY_BACKEND=torch, the first version (transformers,
  torch's threads);
- transformers: WB_LEAN=0 WB_QUERY_BACKEND=torch (query work on the idle cores only, see
  encoders/device.query_threads);
- lean: WB_QUERY_BACKEND=torch (lean BERT in torch: the default until the numpy backend);
- numpy: the default now (encoders/numpy_bert.py, products in numpy, torch never imported).
Each run is a fresh process, as a user's first query is; the variants take turns in rotating order
so that load on the machine falls on all alike. The floor is a process that only imports torch.
Results must be identical between the variants (same documents, same scores to 1e-4): every variant
runs with ``WB_DTYPE=--dtype`` (default float32, the numpy backend's precision: like with like; on
a CPU with native bf16 the torch paths would otherwise run bf16 and score ~3e-3 apart). When the
results differ the ratios are marked invalid (``identical_results: false``) and the run exits 1.

    flock /work/heavy.lock python bench/bench_cold_query.py -w WORKSPACE_WITH_SCIFACT [--runs 6]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

QUERY = "Vitamin D deficiency is associated with an increased risk of bone fractures."
VARIANTS = {
    "before": {"WB_LEAN": "0", "WB_QUERY_THREADS": "0", "WB_QUERY_BACKEND": "torch"},
    "transformers": {"WB_LEAN": "0", "WB_QUERY_THREADS": "", "WB_QUERY_BACKEND": "torch"},
    "lean": {"WB_LEAN": "1", "WB_QUERY_THREADS": "", "WB_QUERY_BACKEND": "torch"},
    "numpy": {"WB_LEAN": "1", "WB_QUERY_THREADS": "", "WB_QUERY_BACKEND": ""},
}


def run_once(ws: str, query: str, pipeline: str, extra_env: dict) -> dict:
    env = dict(os.environ, **extra_env)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli.main", "query", query, "-w", ws, "-p", pipeline, "--json"],
        env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wb query failed: {proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    return {"wall_s": wall, "timings_ms": out["timings_ms"],
            "hits": [(h["doc_id"], h["score"]) for h in out["results"]], "load1": os.getloadavg()[0]}


def floor_once() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t0


def summarise(runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    stages = sorted({k for r in runs for k in r["timings_ms"]})
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "runs_s": [round(w, 3) for w in walls],
        "stage_median_ms": {k: round(statistics.median(r["timings_ms"].get(k, 0.0) for r in runs), 1) for k in stages},
    }


def same_hits(a: list, b: list) -> bool:
    """The same scores position by position (to 1e-4) and the same documents: two documents whose
    scores are within 1e-4 may swap places (the numpy backend sums in another order than torch)."""
    if len(a) != len(b) or any(abs(x - y) > 1e-4 for (_, x), (_, y) in zip(a, b)):
        return False
    return {d for d, _ in a} == {d for d, _ in b}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--runs", type=int, default=6, help="runs per variant")
    ap.add_argument("--query", default=QUERY)
    ap.add_argument("--pipeline", default="hybrid")
    ap.add_argument("--dtype", default="float32",
                    help="WB_DTYPE of every variant (default float32, as the numpy backend; '' = each picks its own)")
    args = ap.parse_args()
    ws = str(Path(args.workspace).resolve())
    os.environ["WB_DTYPE"] = args.dtype
    if not args.dtype:
        del os.environ["WB_DTYPE"]

    for extra in VARIANTS.values():  # page cache warm for every variant
        run_once(ws, args.query, args.pipeline, extra)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    floor = []
    load_before = os.getloadavg()
    for i in range(args.runs):
        names = list(VARIANTS)
        order = names[i % len(names):] + names[: i % len(names)]
        order = order if i % 2 == 0 else order[::-1]
        for name in order:
            runs[name].append(run_once(ws, args.query, args.pipeline, VARIANTS[name]))
            print(name, round(runs[name][-1]["wall_s"], 2), runs[name][-1]["timings_ms"], file=sys.stderr)
        floor.append(floor_once())
    load_after = os.getloadavg()

    summary = {name: summarise(r) for name, r in runs.items()}
    old, new = summary["before"], summary["numpy"]
    result = {
        "workspace": ws,
        "query": args.query,
        "pipeline": args.pipeline,
        "runs_per_variant": args.runs,
        "command": f"wb query QUERY -w WS -p {args.pipeline} --json (each variant's environment), fresh process each",
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after],
                         "per_run_1min": [round(r["load1"], 2) for name in VARIANTS for r in runs[name]]},
        "variants": {name: dict(VARIANTS[name]) for name in VARIANTS},
        "wb_dtype": args.dtype or "each variant's own (pick_dtype)",
        **summary,
        "ratio_new_over_old": new["median_s"] / old["median_s"],
        "ratio_numpy_over_lean_torch": new["median_s"] / summary["lean"]["median_s"],
        "ratio_lean_over_transformers": summary["lean"]["median_s"] / summary["transformers"]["median_s"],
        "python_import_torch_floor_s": {"median": statistics.median(floor), "min": min(floor)},
        "identical_results": all(same_hits(runs["before"][0]["hits"], r["hits"]) for rs in runs.values() for r in rs),
        "goal_cold_seconds": 3,
    }
    result["ratios_valid"] = result["identical_results"]
    write_result("cold_query", result)
    if not result["identical_results"]:
        raise SystemExit("bench_cold_query: the variants' results differ (identical_results false): ratios invalid")


if __name__ == "__main__":
    main()
