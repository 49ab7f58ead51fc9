"""Helpers shared by the benchmarks: results as JSON, SciFact texts, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCIFACT = Path(os.environ.get("WB_SCIFACT", Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact"))


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__}


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
