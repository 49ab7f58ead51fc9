"""`wb query --queries FILE` (one process, one model load) against one `wb query` process a query.

On SciFact's judged test queries: the batch process answers all of them (TREC run on stdout) with
WB_QUERY_BACKEND=numpy and with WB_QUERY_BACKEND=torch (the batch's own default); the baseline is a fresh `wb query TEXT`
process for each of the first --singles queries, as a shell loop over a file would run it. After an
untimed run (the index into the page cache), each backend runs twice, A B B A. Reported:
wall seconds a query of each (ratio batch / singles), that the batch's top 10 equal the single
queries' for those queries, and the batch run's nDCG@10 over all of them (ranx, the qrels of
the test split), which should be `wb eval`'s hybrid figure on the same workspace.

    flock /work/heavy.lock python bench/bench_query_batch.py -w WORKSPACE_WITH_SCIFACT [--singles 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SCIFACT, write_result  # noqa: E402


def judged_queries(split: str = "test") -> tuple[list[dict], dict[str, dict[str, int]]]:
    from workbench.eval.dataset import load_dataset

    data = load_dataset(SCIFACT, split)
    qrels = {qid: {doc: int(rel) for doc, rel in docs.items()} for qid, docs in data.qrels.items()}
    return [{"_id": qid, "text": data.queries[qid]} for qid in data.query_ids], qrels


def wb(args: list[str], env: dict | None = None, stdin: str | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], env=dict(os.environ, **(env or {})),
                          input=stdin, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wb {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return wall, proc.stdout


def parse_trec(text: str) -> dict[str, list[str]]:
    run: dict[str, list[str]] = {}
    for line in text.splitlines():
        qid, _, doc, _rank, _score, _tag = line.split()
        run.setdefault(qid, []).append(doc)
    return run


def ndcg10(trec: str, qrels: dict[str, dict[str, int]]) -> float:
    from ranx import Qrels, Run, evaluate

    scores: dict[str, dict[str, float]] = {}
    for line in trec.splitlines():
        qid, _, doc, _rank, score, _tag = line.split()
        scores.setdefault(qid, {})[doc] = float(score)
    return float(evaluate(Qrels(qrels), Run(scores), "ndcg@10"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-w", "--workspace", required=True)
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--pipeline", default="hybrid")
    args = parser.parse_args()
    queries, qrels = judged_queries()
    common = ["-w", args.workspace, "-p", args.pipeline, "-k", "10"]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "queries.jsonl"
        source.write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
        # both named: `wb query --queries` picks torch by itself now (a batch of queries), numpy by default no more
        backends = {"numpy": {"WB_QUERY_BACKEND": "numpy"}, "torch": {"WB_QUERY_BACKEND": "torch"}}
        wb(["query", "--queries", str(source), "--trec", *common])  # untimed: the index into the page cache
        walls: dict[str, list[float]] = {name: [] for name in backends}
        batch: dict[str, dict] = {}
        for name in ("numpy", "torch", "torch", "numpy"):  # A B B A: drift on the machine falls on both
            wall, out = wb(["query", "--queries", str(source), "--trec", *common], backends[name])
            walls[name].append(wall)
            batch[name] = {"ndcg@10": round(100 * ndcg10(out, qrels), 2), "run": parse_trec(out)}
        for name, row in batch.items():
            wall = statistics.mean(walls[name])
            row.update(wall_s=round(wall, 2), walls_s=[round(w, 2) for w in walls[name]],
                       per_query_s=round(wall / len(queries), 4))
    singles, same = [], 0
    for q in queries[: args.singles]:
        wall, out = wb(["query", q["text"], "--json", *common])
        singles.append(wall)
        same += [h["doc_id"] for h in json.loads(out)["results"]] == batch["numpy"]["run"].get(q["_id"])
    single_s = statistics.median(singles)
    for row in batch.values():
        row.pop("run")
        row["ratio_vs_singles"] = round(row["per_query_s"] / single_s, 4)
    write_result("query_batch", {
        "workspace": args.workspace, "pipeline": args.pipeline, "queries": len(queries),
        "single_process_s_median": round(single_s, 3), "singles_timed": len(singles),
        "singles_with_the_batch_top10": f"{same}/{len(singles)}", "batch": batch,
        "baseline": "a fresh `wb query TEXT --json` process a query (median)",
    })


if __name__ == "__main__":
    main()
