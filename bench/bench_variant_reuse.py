"""A/B (issue #6): `wb index --model dense=runs/ft` (a variant index beside the parent) with reuse of
the unchanged modes (WB_REUSE=1) and without (WB_REUSE=0), on sample_corpora/python-docs.

``runs/ft`` is all-MiniLM-L6-v2 copied with new file times (another fingerprint, the same weights):
dense and zero-shot ColBERT are encoded, sparse is reused from the parent. Each arm is a fresh
`wb index` process (model loading included for both); the arms alternate per round (no reuse first,
then reuse first); the speedup is the min no-reuse time / the min reuse time. The parent index is
built first (untimed for the ratio). Result: bench/results/variant_reuse.json.

    flock /work/heavy.lock python bench/bench_variant_reuse.py [--docs 0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "sample_corpora" / "python-docs"


def wb_index(args: list[str], reuse: str | None = None) -> tuple[float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if reuse is not None:
        env["WB_REUSE"] = reuse
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "index", *args], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wb index {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return seconds, lines[-1] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=0, help="the first N documents of python-docs (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from workbench.models.cache import resolve_model_path

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-variant-"))
    try:
        corpus = CORPUS
        if args.docs:
            corpus = tmp / "corpus"
            files = sorted(p for p in CORPUS.rglob("*.md") if p.name != "LICENSE.md")[: args.docs]
            for f in files:
                (corpus / f.relative_to(CORPUS)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, corpus / f.relative_to(CORPUS))
        ws = tmp / "ws"
        parent_s, parent_line = wb_index([str(corpus), "-w", str(ws)])
        model = ws / "runs" / "ft" / "model"
        shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), model, copy_function=shutil.copyfile)  # new file times
        (ws / "runs" / "ft" / "config.json").write_text("{}")
        walls: dict[str, list[float]] = {"WB_REUSE=0": [], "WB_REUSE=1": []}
        lines = {}
        for r in range(args.rounds):
            for reuse in ("0", "1") if r % 2 == 0 else ("1", "0"):
                shutil.rmtree(ws / "variants", ignore_errors=True)
                seconds, line = wb_index(["-w", str(ws), "--model", "dense=runs/ft"], reuse)
                walls[f"WB_REUSE={reuse}"].append(round(seconds, 1))
                lines[reuse] = line
                print(f"round {r + 1} WB_REUSE={reuse}: {seconds:.1f} s", file=sys.stderr, flush=True)
        write_result("variant_reuse", {
            "issue": 6,
            "command": f"python bench/bench_variant_reuse.py --docs {args.docs} --rounds {args.rounds}",
            "corpus": f"sample_corpora/python-docs{f' (first {args.docs} documents)' if args.docs else ''}",
            "parent_summary": parent_line,
            "variant": "dense=runs/ft: a copy of all-MiniLM-L6-v2 with new file times (another fingerprint): "
                       "dense and zero-shot ColBERT encoded, sparse reused",
            "order": "arms alternate per round; each a fresh `wb index` process (model loading included)",
            "parent_index_s": round(parent_s, 1),
            "variant_wall_s": walls,
            "speedup_with_reuse": round(min(walls["WB_REUSE=0"]) / min(walls["WB_REUSE=1"]), 2),
            "summary_line_with_reuse": lines.get("1"),
            "summary_line_without_reuse": lines.get("0"),
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
