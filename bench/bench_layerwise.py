"""Layer-wise reranker: nDCG@10 and reranking latency at every cutoff layer, and the cutoff to serve.

For a finished ``wb train layerwise`` run (its folder or its ``model/``), every scored layer ``L``
reranks each test query's first-stage ``hybrid`` top ``--rerank-depth`` documents (``hybrid+rerank``
with ``--model reranker=MODEL@L``, exactly the pipeline ``wb query``/``wb eval`` run; the
interpolation with the first stage is the workspace's ``[rerank] interpolation`` unless
``--interpolation`` is given). Metrics come from :mod:`workbench.eval.runner` (ranx, scored by rank,
paired t-test against the full model = the deepest layer); latency is the searcher's own ``rerank``
timing per query (only the reranking: reading the head's texts, tokenizing, the forward passes).

The chosen cutoff is the smallest layer whose nDCG@10 is at least ``--keep`` (0.98) of the deepest
layer's; ``--write-default`` stores it as the run's ``default_cutoff`` in ``wb_model.json`` (so
``--model reranker=runs/NAME`` serves it).

The workspace: ``-w WS`` (indexed with the dataset's corpus, incrementally, as ``wb eval -w``
does), else ``wb eval``'s cache workspace for the dataset.

    python bench/bench_layerwise.py RUN_OR_MODEL_DIR [-w WS] [--data ../shared/eval/scifact]
        [--split test] [--rerank-depth 50] [--max-queries N] [--write-default] [--out FILE]

Result: ``bench/results/layerwise_scifact.json`` (in ``$WB_BENCH_RESULTS`` when set; ``--out``
overrides): ``{"layers": {L: {"ndcg@10", "ms_per_query", "pairs_per_s", ...}}, "chosen_cutoff": L, ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, SCIFACT, machine  # noqa: E402


def model_folder(path: str) -> Path:
    folder = Path(path).expanduser().resolve()
    if (folder / "model" / "wb_model.json").exists():
        folder = folder / "model"
    return folder


def choose_cutoff(ndcg: dict[int, float], keep: float) -> int:
    """The smallest layer whose nDCG@10 is at least ``keep`` x the deepest layer's."""
    layers = sorted(ndcg)
    full = ndcg[layers[-1]]
    return next(l for l in layers if ndcg[l] >= keep * full)


def run_layers(folder: Path, data: str, split: str, workspace: str | None, rerank_depth: int, depth: int,
               interpolation: float | None, max_queries: int | None, keep: float, progress=print) -> dict:
    from dataclasses import replace

    from workbench.encoders.layerwise import read_layerwise_meta
    from workbench.eval.dataset import first_queries, load_dataset
    from workbench.eval.runner import (METRICS, SystemResult, _warm, index_dataset, resolve_workspace_and_config,
                                       score_systems)
    from workbench.search.searcher import Searcher

    meta = read_layerwise_meta(str(folder))
    dataset = load_dataset(data, split)
    if max_queries:
        dataset = first_queries(dataset, max_queries)
    ws, config = resolve_workspace_and_config(dataset, workspace, {})
    if interpolation is not None:
        config = replace(config, rerank=replace(config.rerank, interpolation=float(interpolation)))
    t0 = time.perf_counter()
    summary = index_dataset(dataset, ws, config)
    progress(f"index ready in {time.perf_counter() - t0:.1f} s: {summary.line()}")
    qids = dataset.query_ids
    texts = [dataset.queries[q] for q in qids]
    order = [meta.layers[-1], *meta.layers[:-1]]  # the full model first: the baseline of the t-tests
    systems: list[SystemResult] = []
    timing: dict[str, dict] = {}
    for layer in [*order, None]:
        pipeline = "hybrid" if layer is None else "hybrid+rerank"
        label = "hybrid" if layer is None else f"layer{layer}"
        cfg = config if layer is None else config.with_models({"reranker": f"{folder}@{layer}"})
        searcher = Searcher(ws, config=cfg)
        _warm(searcher, [pipeline])
        if layer is not None:
            searcher.reranker.score_pairs([(texts[0], "warm-up passage")])
        t0 = time.perf_counter()
        results = searcher.search_many(texts, pipeline=pipeline, k=depth, unit="doc", rerank_depth=rerank_depth)
        seconds = time.perf_counter() - t0
        run = {qid: {h.doc_id: float(h.score) for h in res.results[:depth]} for qid, res in zip(qids, results)}
        systems.append(SystemResult(label, pipeline, run, seconds))
        if layer is not None:
            ms = [res.timings_ms.get("rerank", 0.0) for res in results]
            pairs = sum(min(rerank_depth, len(res.results)) for res in results)
            timing[label] = {"ms_per_query": statistics.fmean(ms), "ms_per_query_median": statistics.median(ms),
                             "pairs_per_s": pairs / max(sum(ms) / 1000, 1e-9), "pairs": pairs,
                             "layers_run": searcher.reranker.layers_run}
        progress(f"{label}: {seconds:.1f} s for {len(qids)} queries"
                 + (f", rerank {timing[label]['ms_per_query']:.1f} ms/query" if layer is not None else ""))
        del searcher
    score_systems(dataset, systems)
    by_label = {s.label: s for s in systems}
    layers_out = {}
    for layer in meta.layers:
        s = by_label[f"layer{layer}"]
        row = {m: s.metrics[m] for m in METRICS}
        row.update(timing[f"layer{layer}"])
        if s.p_value is not None:
            row["p_value_ndcg@10_vs_full"] = s.p_value["ndcg@10"]
            row["wins_losses_ties_vs_full"] = [s.wins, s.losses, s.ties]
        layers_out[str(layer)] = row
    ndcg = {layer: by_label[f"layer{layer}"].metrics["ndcg@10"] for layer in meta.layers}
    chosen = choose_cutoff(ndcg, keep)
    full = layers_out[str(meta.layers[-1])]
    return {
        "model": str(folder),
        "dataset": str(dataset.root),
        "split": split,
        "queries": len(qids),
        "workspace": str(ws.root),
        "first_stage": "hybrid",
        "rerank_depth": rerank_depth,
        "depth": depth,
        "interpolation": config.rerank.interpolation,
        "keep": keep,
        "layers": layers_out,
        "first_stage_only": {m: by_label["hybrid"].metrics[m] for m in METRICS},
        "chosen_cutoff": chosen,
        "chosen_vs_full": {
            "ndcg@10_share": ndcg[chosen] / full["ndcg@10"] if full["ndcg@10"] else None,
            "latency_share": layers_out[str(chosen)]["ms_per_query"] / full["ms_per_query"] if full["ms_per_query"] else None,
        },
        "run_default_cutoff": meta.default_cutoff,
    }


def write_default(folder: Path, result: dict) -> None:
    """Store the chosen cutoff (and the measured nDCG@10 per layer) in the run's wb_model.json."""
    from workbench.encoders.layerwise import META_FILE

    path = folder / META_FILE
    meta = json.loads(path.read_text())
    meta["default_cutoff"] = int(result["chosen_cutoff"])
    meta["bench_ndcg@10_by_layer"] = {k: v["ndcg@10"] for k, v in result["layers"].items()}
    meta["bench_dataset"] = f"{result['dataset']} ({result['split']}, {result['queries']} queries)"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a layer-wise run folder (runs/NAME) or its model/ folder")
    ap.add_argument("-w", "--workspace", default=None, help="workspace indexed with the dataset's corpus")
    ap.add_argument("--data", default=str(SCIFACT), help="BEIR folder (default: shared SciFact)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--rerank-depth", type=int, default=50, help="first-stage documents reranked per query")
    ap.add_argument("--depth", type=int, default=100, help="documents per query scored by the metrics")
    ap.add_argument("--interpolation", type=float, default=None, help="[rerank] interpolation (default: the workspace's)")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--keep", type=float, default=0.98, help="share of the full model's nDCG@10 the cutoff keeps")
    ap.add_argument("--write-default", action="store_true", help="store the chosen cutoff in the run's wb_model.json")
    ap.add_argument("--out", default=str(RESULTS / "layerwise_scifact.json"),
                    help="result file (default: $WB_BENCH_RESULTS or bench/results, layerwise_scifact.json)")
    args = ap.parse_args(argv)

    from workbench.errors import WbError

    folder = model_folder(args.run)
    try:
        result = run_layers(folder, args.data, args.split, args.workspace, args.rerank_depth, args.depth,
                            args.interpolation, args.max_queries, args.keep,
                            progress=lambda m: print(m, file=sys.stderr, flush=True))
    except WbError as exc:
        print(f"bench_layerwise: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    result = {"benchmark": "layerwise", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine(), **result}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_default:
        write_default(folder, result)
    print(f"{'layer':>5} {'nDCG@10':>8} {'ms/query':>9} {'pairs/s':>8}")
    for layer, row in result["layers"].items():
        mark = "  <- chosen" if int(layer) == result["chosen_cutoff"] else ""
        print(f"{layer:>5} {100 * row['ndcg@10']:8.2f} {row['ms_per_query']:9.1f} {row['pairs_per_s']:8.1f}{mark}")
    print(f"hybrid (no rerank) nDCG@10 {100 * result['first_stage_only']['ndcg@10']:.2f}; result in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
