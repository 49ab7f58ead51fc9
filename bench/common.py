"""Helpers shared by the benchmarks: results as JSON, SciFact texts, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

# $WB_BENCH_RESULTS: write results elsewhere (a smoke run must not replace the measured files)
RESULTS = Path(os.environ.get("WB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
SCIFACT = Path(os.environ.get("WB_SCIFACT", Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact"))


def machine() -> dict:
    import torch

    from workbench.encoders.device import cpu_has_bf16

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": cpu_has_bf16(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__}


def scifact_texts(limit: int | None = None) -> list[str]:
    rows = []
    with open(SCIFACT / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append(f"{d.get('title', '')} {d['text']}".strip())
            if limit and len(rows) >= limit:
                break
    return rows


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **data}
    suffix = "-gpu" if data["machine"]["gpu"] else ""
    path = RESULTS / f"{name}{suffix}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return path


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def rerank_eval_parser(doc: str):
    """The arguments of the reranker-quality benches: RERANKER -w WS --data DIR [--split test]
    [--pipeline hybrid] [--depth 50] [--limit N] [--keep held_out.jsonl] --out F.json."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("reranker")
    ap.add_argument("-w", "--workspace", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--pipeline", default="hybrid")
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--keep", help="evaluate only the queries of this FlagEmbedding jsonl")
    ap.add_argument("--out", required=True)
    return ap


def rerank_eval_setup(args):
    """``(dataset, workspace, config)``: the split's queries (the first ``--limit``; only those of
    ``--keep``'s rows), and the workspace and config that serve ``args.reranker`` (runs/NAME resolved)."""
    import dataclasses

    from workbench.eval import runner
    from workbench.eval.dataset import first_queries, load_dataset

    data = load_dataset(args.data, args.split)
    if args.limit:
        data = first_queries(data, args.limit)
    if args.keep:
        keep = {json.loads(line)["query"] for line in open(args.keep, encoding="utf-8")}
        ids = [q for q, text in data.queries.items() if text in keep]
        data = dataclasses.replace(data, queries={q: data.queries[q] for q in ids}, qrels={q: data.qrels[q] for q in ids})
    overrides = runner.resolve_run_names(args.workspace, {"reranker": args.reranker})
    ws, cfg = runner.resolve_workspace_and_config(data, args.workspace, overrides)
    return data, ws, cfg
