"""A settings rebuild with the unchanged modes copied from the live index, against the same rebuild
encoding every mode (``WB_REUSE=0``, what a rebuild cost before it was built beside the live index),
in one run on the same corpus and workspace copies.

Two model changes: the sparse model (dense and zero-shot ColBERT reused) and the dense model (sparse
reused). Each "new" model is the built-in one copied with new file times: another fingerprint, the
same weights, so both arms do exactly the same work apart from the reuse.

    python bench/bench_rebuild.py [--docs 120]     (--docs 0 = all of sample_corpora/python-docs)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Timer, write_result  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "sample_corpora" / "python-docs"


def _copy_model(name: str, dest: Path) -> Path:
    from workbench.models.cache import resolve_model_path

    shutil.copytree(resolve_model_path(name), dest, copy_function=shutil.copyfile)
    stamp = time.time() - 3600
    for f in dest.rglob("*"):
        os.utime(f, (stamp, stamp))
    return dest


def _set_model(ws, role: str, value: str) -> None:
    text = ws.config_path.read_text()
    ws.config_path.write_text(re.sub(rf"(?m)^{role} = \S+", f"{role} = {json.dumps(value)}", text, count=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-rebuild-"))
    corpus = tmp / "corpus"
    files = sorted(p for p in CORPUS.rglob("*.md") if p.name != "LICENSE.md")
    files = files[: args.docs] if args.docs else files
    for f in files:
        (corpus / f.relative_to(CORPUS)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, corpus / f.relative_to(CORPUS))
    base = Workspace(tmp / "base")
    base.ensure()
    with Timer() as first:
        built = Indexer(base).run(corpus)
    models = {"sparse": str(_copy_model("splade-tiny", tmp / "models" / "sparse")),
              "dense": str(_copy_model("all-MiniLM-L6-v2", tmp / "models" / "dense"))}
    arms: dict[str, dict] = {}
    for _ in range(args.rounds):
        for role, model in models.items():
            for reuse in ("0", "1"):
                ws = Workspace(tmp / f"ws-{role}-{reuse}")
                shutil.rmtree(ws.root, ignore_errors=True)
                shutil.copytree(base.root, ws.root)
                _set_model(ws, role, model)
                os.environ["WB_REUSE"] = reuse
                with Timer() as t:
                    summary = Indexer(ws).run(corpus)
                arm = arms.setdefault(f"{role} changed, WB_REUSE={reuse}", {"seconds": [], "reused_modes": []})
                arm["seconds"].append(round(t.seconds, 2))
                arm["reused_modes"] = summary.reused_modes
                arm["summary"] = summary.line()
    os.environ.pop("WB_REUSE", None)
    ratios = {role: round(min(arms[f"{role} changed, WB_REUSE=0"]["seconds"])
                          / min(arms[f"{role} changed, WB_REUSE=1"]["seconds"]), 2) for role in models}
    write_result("rebuild_reuse", {
        "issue": 2,
        "command": f"python bench/bench_rebuild.py --docs {args.docs} --rounds {args.rounds}",
        "corpus": f"sample_corpora/python-docs, {built.total_docs} docs / {built.total_chunks} chunks",
        "first_index_s": round(first.seconds, 2),
        "arms": arms,
        "speedup_with_reuse": ratios,
    })
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
