"""A settings rebuild with the unchanged modes copied from the live index, against the same rebuild
encoding every mode (``WB_REUSE=0``, what a rebuild cost before it was built beside the live index),
in one run on the same corpus and workspace copies.

Two model changes: the sparse model (dense and zero-shot ColBERT reused) and the dense model (sparse
reused). Each "new" model is the built-in one copied with new file times: another fingerprint, the
same weights, so both arms do exactly the same work apart from the reuse. Each round runs the
arms in alternating order (no reuse first, then reuse first, ...; the first index, untimed, warms
both), a speedup is min over rounds of the no-reuse time / the reuse time, and the two arms' indexes
are checked to hold the same chunks with the same dense vectors and sparse weights
(``indexes_agree``; exit 1 when they do not).

    python bench/bench_rebuild.py [--docs 120] [--rounds 2]   (--docs 0 = all of sample_corpora/python-docs)
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


def _index_difference(a, b) -> dict:
    """The largest differences between two workspaces' indexes, chunk by chunk (matched by chunk_id)."""
    import numpy as np

    from workbench.store.lance_store import LanceChunkStore

    cols = ["chunk_id", "vector", "sparse_ids", "sparse_weights"]
    ta, tb = (LanceChunkStore(ws.lance_dir).read_columns(cols).to_pylist() for ws in (a, b))
    rows_b = {r["chunk_id"]: r for r in tb}
    dense, sparse, missing = 0.0, 0.0, 0
    for r in ta:
        other = rows_b.get(r["chunk_id"])
        if other is None:
            missing += 1
            continue
        dense = max(dense, float(np.abs(np.asarray(r["vector"]) - np.asarray(other["vector"])).max()))
        wa = dict(zip(r["sparse_ids"], r["sparse_weights"]))
        wb = dict(zip(other["sparse_ids"], other["sparse_weights"]))
        sparse = max(sparse, max((abs(wa.get(t, 0.0) - wb.get(t, 0.0)) for t in set(wa) | set(wb)), default=0.0))
    return {"chunks": len(ta), "chunks_other": len(tb), "missing": missing,
            "max_abs_dense_diff": dense, "max_abs_sparse_diff": sparse}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2, help="rounds, the arms' order alternating")
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
    for r in range(args.rounds):
        for role, model in models.items():
            for reuse in ("0", "1") if r % 2 == 0 else ("1", "0"):
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
    agreement = {role: _index_difference(Workspace(tmp / f"ws-{role}-0"), Workspace(tmp / f"ws-{role}-1"))
                 for role in models}
    agree = all(d["missing"] == 0 and d["chunks"] == d["chunks_other"] and d["max_abs_dense_diff"] <= 1e-3
                and d["max_abs_sparse_diff"] <= 1e-3 for d in agreement.values())
    ratios = {role: round(min(arms[f"{role} changed, WB_REUSE=0"]["seconds"])
                          / min(arms[f"{role} changed, WB_REUSE=1"]["seconds"]), 2) for role in models}
    write_result("rebuild_reuse", {
        "issue": 2,
        "command": f"python bench/bench_rebuild.py --docs {args.docs} --rounds {args.rounds}",
        "corpus": f"sample_corpora/python-docs, {built.total_docs} docs / {built.total_chunks} chunks",
        "first_index_s": round(first.seconds, 2),
        "arms": arms,
        "order": "arms alternate per round (no reuse first, then reuse first, ...)",
        "speedup_with_reuse": ratios,
        "reused_vs_reencoded": agreement,
        "indexes_agree": agree,
    })
    shutil.rmtree(tmp, ignore_errors=True)
    if not agree:
        raise SystemExit("bench_rebuild: the reused index differs from the re-encoded one (indexes_agree false)")


if __name__ == "__main__":
    main()
