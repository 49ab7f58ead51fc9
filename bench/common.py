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
            "torch": torch.__version__, "transformers": _version("transformers"),
            "sentence_transformers": _version("sentence-transformers")}


def _version(dist: str) -> str | None:
    """The installed version of ``dist`` (the baselines' implementation), None when absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def baseline_dtypes(device) -> dict:
    """The dtypes a sentence-transformers baseline is measured in on ``device``: float32 (its default,
    the checkpoint's dtype when that is float32) first, then bf16 on CUDA and on CPUs with native
    bf16, and fp16 on CUDA. A headline ratio is against the fastest of them (like with like whatever
    dtype our side picked)."""
    import torch

    from workbench.encoders.device import cpu_has_bf16

    dtypes = {"float32": torch.float32}
    if device.type == "cuda":
        dtypes.update(float16=torch.float16, bfloat16=torch.bfloat16)
    elif cpu_has_bf16():
        dtypes["bfloat16"] = torch.bfloat16
    return dtypes


def sentence_transformer(path: str, dtype, device=None, **kwargs):
    """``SentenceTransformer(path)`` with its weights in ``dtype`` whatever the checkpoint stores
    (transformers 5 loads a checkpoint's own dtype: the GPU check carries MiniLM as fp16)."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device=None if device is None else str(device),
                             model_kwargs={"dtype": dtype}, **kwargs)
    if next(st.parameters()).dtype != dtype:
        st.to(dtype)
    return st


def param_dtype(model) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


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


def timed_rounds(systems: dict, rounds: int, sync=None) -> dict[str, list[float]]:
    """Time every ``systems[name]()`` once a round for ``rounds`` rounds; the order rotates and
    flips round by round (A B C, C B A rotated, ...) so that neither a slow start nor a load change
    on a shared machine falls on one side. Returns ``{name: [seconds per round]}``; warm-up is the
    caller's (untimed, before)."""
    names = list(systems)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = (r // 2) % len(names)
        order = names[k:] + names[:k]
        for name in order if r % 2 == 0 else order[::-1]:
            if sync:
                sync()
            start = time.perf_counter()
            systems[name]()
            if sync:
                sync()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(theirs: list[float], ours: list[float]) -> float:
    """Median over rounds of their time / our time in the same round (> 1: ours is faster)."""
    import statistics

    return statistics.median(a / b for a, b in zip(theirs, ours))


def fastest(times: dict[str, list[float]], names) -> str:
    """The name among ``names`` with the lowest median time."""
    import statistics

    return min(names, key=lambda n: statistics.median(times[n]))
