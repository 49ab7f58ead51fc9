"""Choose the fusion and rerank defaults on a training split: ``wb eval DATASET --tune``.

Never run this on the split you report (the CLI uses ``--split train`` by default with ``--tune``).

Fusion
    Every mode's own doc-level list is computed once per first-stage depth (``Searcher.mode_runs``,
    the same lists ``hybrid`` fuses). The grid: method ``weighted`` (min-max, the only
    normalisation the searcher implements) or ``rrf`` with k in ``RRF_KS``; each mode's weight in
    ``WEIGHTS`` (weight vectors equal up to scale rank identically and are searched once); depth in
    ``DEPTHS``. Depths stay >= 100: the searcher fuses ``max(fusion.depth, k)`` candidates, so with
    ``wb eval``'s k = 100 a smaller fusion depth would not be what is measured.
    The grid is scanned with a vectorised nDCG@10 (numpy), then the best ``RESCORE`` settings are
    fused again with ``workbench.search.fusion.fuse`` (the query path's own code) and scored with
    ranx; the best ranx nDCG@10 wins. Finally the winner is run through ``Searcher.search_many``
    ("hybrid", k = 100) and scored with ranx, as a check that the emulation matched.

Rerank
    With the chosen fusion, one ``hybrid`` run gives first-stage scores and one ``hybrid+rerank`` run
    at depth 100 without interpolation gives the reranker's score for each of the top 100
    documents (a document's reranker score does not depend on the rerank depth). Every (depth,
    interpolation) in ``RERANK_DEPTHS`` x ``INTERPOLATIONS`` is then replayed exactly as
    ``Searcher._rerank`` combines them and scored with ranx.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from workbench.config import MODES, FusionConfig, WorkspaceConfig
from workbench.eval.dataset import EvalDataset
from workbench.eval.runner import ranx_run_dict
from workbench.workspace import Workspace

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
RRF_KS = (10, 20, 40, 60, 100)
DEPTHS = (100, 200)
RERANK_DEPTHS = (20, 50, 100)
INTERPOLATIONS = (0.0, 0.25, 0.5, 0.75)
RESCORE = 15


def weight_grid() -> np.ndarray:
    """Distinct weight vectors (up to scale) over MODES, as rows; of equivalent vectors the one
    nearest to all-ones is kept (``0.25, 0.25, 0.25, 0.25`` is written ``1, 1, 1, 1``)."""
    best: dict[tuple[float, ...], tuple[float, ...]] = {}
    for combo in itertools.product(WEIGHTS, repeat=len(MODES)):
        top = max(combo)
        if top == 0:
            continue
        key = tuple(round(w / top, 6) for w in combo)
        cost = sum(abs(w - 1.0) for w in combo if w > 0)
        if key not in best or cost < sum(abs(w - 1.0) for w in best[key] if w > 0):
            best[key] = combo
    return np.array(sorted(best.values()), dtype=np.float64)


# -- vectorised scan ---------------------------------------------------------------------------
class _Query:
    """One query's fused-candidate matrix: ids in key order, per-mode min-max values and ranks."""

    def __init__(self, lists: dict[str, dict[str, float]], relevant: dict[str, int]) -> None:
        ids = sorted({k for scores in lists.values() for k in scores})
        pos = {k: i for i, k in enumerate(ids)}
        n = len(ids)
        self.norm = np.zeros((n, len(MODES)))
        self.rank = np.full((n, len(MODES)), np.inf)
        for j, mode in enumerate(MODES):
            scores = lists.get(mode, {})
            if not scores:
                continue
            lo, hi = min(scores.values()), max(scores.values())
            for k, v in scores.items():
                self.norm[pos[k], j] = 1.0 if hi == lo else (v - lo) / (hi - lo)
            ordered = sorted(scores.items(), key=lambda kv: -kv[1])  # ties in the list's order, as fuse ranks them
            for r, (k, _v) in enumerate(ordered, start=1):
                self.rank[pos[k], j] = r
        # graded gains as ranx's ndcg takes them (gain = the qrels grade, 0 for a grade <= 0), so
        # that the scan ranks the grid by the metric the exact rescoring decides on
        self.rel = np.array([float(max(relevant.get(k, 0), 0)) for k in ids])
        ideal = sorted((float(v) for v in relevant.values() if v > 0), reverse=True)[:10]
        self.idcg = float(np.sum(np.array(ideal) / np.log2(np.arange(2, len(ideal) + 2)))) if ideal else 0.0

    def ndcg10(self, fused: np.ndarray) -> np.ndarray:
        """nDCG@10 of each column of ``fused`` (n x C), ties broken by id as ``fuse`` sorts them.
        Every candidate is in every column's ranking: one that only zero-weighted modes of a column
        retrieved is scored 0 there, as ``fuse`` scores it."""
        if self.idcg == 0 or fused.shape[0] == 0:
            return np.zeros(fused.shape[1])
        order = np.argsort(-fused, axis=0, kind="stable")[:10]
        gains = self.rel[order]
        discounts = 1.0 / np.log2(np.arange(2, order.shape[0] + 2))
        return (gains * discounts[:, None]).sum(axis=0) / self.idcg


def scan(queries: list[_Query], method: str, weights: np.ndarray, rrf_k: int = 60) -> np.ndarray:
    """Mean nDCG@10 of every weight row (vectorised over the grid)."""
    total = np.zeros(len(weights))
    for q in queries:
        basis = q.norm if method == "weighted" else np.where(np.isinf(q.rank), 0.0, 1.0 / (rrf_k + q.rank))
        total += q.ndcg10(basis @ weights.T)
    return total / max(1, len(queries))


# -- exact scoring with the query path's code and ranx -------------------------------------------
def _ranx_ndcg(dataset: EvalDataset, run: dict[str, dict[str, float]]) -> float:
    from ranx import Qrels, Run, evaluate

    qrels = Qrels({q: dict(d) for q, d in dataset.qrels.items()})
    return float(evaluate(qrels, Run(ranx_run_dict(dataset, run)), "ndcg@10"))


def _ranx_metrics(dataset: EvalDataset, run: dict[str, dict[str, float]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    from workbench.eval.runner import METRICS

    qrels = Qrels({q: dict(d) for q, d in dataset.qrels.items()})
    out = evaluate(qrels, Run(ranx_run_dict(dataset, run)), list(METRICS))
    return {m: round(float(v), 6) for m, v in out.items()}


def _fused_run(qids, per_query_lists, fusion: FusionConfig, k: int = 100) -> dict[str, dict[str, float]]:
    from workbench.search.fusion import fuse

    run = {}
    for qid, lists in zip(qids, per_query_lists):
        fused = fuse(lists, fusion.weights, fusion.method, fusion.rrf_k)
        ranking = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        run[qid] = dict(ranking)
    return run


def searcher_run(searcher, dataset: EvalDataset, pipeline: str, k: int = 100, rerank_depth=None):
    """``{query id: {doc id: score}}`` of ``searcher`` answering every query of ``dataset`` with
    ``pipeline`` at ``k`` documents, best first (the query path's own code, doc-level)."""
    qids = dataset.query_ids
    res = searcher.search_many([dataset.queries[q] for q in qids], pipeline=pipeline, k=k, unit="doc",
                               rerank_depth=rerank_depth)
    return {q: {h.doc_id: float(h.score) for h in r.results} for q, r in zip(qids, res)}


def replay_rerank(first: dict[str, dict[str, float]], rerank_scores: dict[str, dict[str, float]],
                  depth: int, a: float) -> dict[str, dict[str, float]]:
    """``Searcher._rerank`` replayed: rerank the top ``depth`` of ``first`` with the given scores."""
    from workbench.search.fusion import interpolate

    out = {}
    for qid, ranking in first.items():
        items = list(ranking.items())
        head, tail = items[:depth], items[depth:]
        final = interpolate(dict(head), rerank_scores[qid], a)
        out[qid] = dict(sorted(final.items(), key=lambda kv: -kv[1]) + tail)  # ties: first-stage order
    return out


def tune(dataset: EvalDataset, ws: Workspace, config: WorkspaceConfig, *, progress=None,
         rerankers: tuple[str, ...] = ("maxsim",), rerank_depths: tuple[int, ...] = RERANK_DEPTHS,
         limit: int | None = None, modes: tuple[str, ...] | None = None) -> dict:
    """Tune fusion (and rerank for each reranker in ``rerankers``) on ``dataset``'s split.

    ``modes``: the modes the fusion may use (``wb eval --tune -p dense+sparse+colbert``; None: all);
    the others get weight 0 and their lists are not computed. The check run is the pipeline of
    those modes."""
    modes = tuple(m for m in MODES if modes is None or m in modes)
    if not modes:
        raise ValueError("tune needs at least one mode")
    pipeline = "hybrid" if modes == MODES else "+".join(modes)
    from workbench.eval.runner import index_dataset, workspace_for
    from workbench.search.searcher import Searcher

    started = time.perf_counter()
    emit = progress or (lambda event: None)
    ws, donor = workspace_for(ws, config)  # other models than ws's own: tune on its variant
    summary = index_dataset(dataset, ws, config, progress, donor=donor)
    emit({"phase": "index ready", "done": 1, "total": 1, "message": summary.line()})
    if limit:
        from workbench.eval.dataset import first_queries

        dataset = first_queries(dataset, limit)
    qids = dataset.query_ids
    texts = [dataset.queries[q] for q in qids]
    searcher = Searcher(ws, config=config)

    t0 = time.perf_counter()
    per_depth = searcher.mode_runs(
        texts, modes=modes, depths=DEPTHS,
        progress=lambda d, n: emit({"phase": "mode lists", "done": d, "total": n}) if d % 50 == 0 or d == n else None)
    lists_seconds = time.perf_counter() - t0

    # single modes as fused (their own lists; ColBERT here re-scores the other modes' candidates)
    singles = {
        m: _ranx_ndcg(dataset, {q: dict(sorted(lists.get(m, {}).items(), key=lambda kv: -kv[1]))
                                for q, lists in zip(qids, per_depth[DEPTHS[0]])})
        for m in modes
    }

    grid = weight_grid()
    off = [j for j, m in enumerate(MODES) if m not in modes]
    if off:
        grid = grid[(grid[:, off] == 0).all(axis=1)]
    candidates = []  # (numpy ndcg, method, rrf_k, depth, weights)
    for depth in DEPTHS:
        queries = [_Query(lists, dataset.qrels[q]) for q, lists in zip(qids, per_depth[depth])]
        for method, ks in (("weighted", (60,)), ("rrf", RRF_KS)):
            for k in ks:
                emit({"phase": f"fusion grid {method} k={k} depth={depth}", "done": 0, "total": 0})
                values = scan(queries, method, grid, k)
                for i in np.argsort(-values)[:RESCORE]:
                    candidates.append((float(values[i]), method, k, depth, tuple(float(w) for w in grid[i])))
    candidates.sort(key=lambda c: -c[0])
    rescored = []
    for ndcg_np, method, k, depth, weights in candidates[:RESCORE]:
        fusion = replace(config.fusion, method=method, depth=depth, rrf_k=k, weights=dict(zip(MODES, weights)),
                         normalization="min-max")
        value = _ranx_ndcg(dataset, _fused_run(qids, per_depth[depth], fusion))
        rescored.append({"ndcg@10": round(value, 6), "scan_ndcg@10": round(ndcg_np, 6), "method": method,
                         "rrf_k": k, "depth": depth, "weights": dict(zip(MODES, weights))})
    # best ranx value; on a tie prefer the smaller depth, then fewer modes switched off
    rescored.sort(key=lambda r: (-r["ndcg@10"], r["depth"], -sum(1 for w in r["weights"].values() if w > 0)))
    best = rescored[0]
    rrf_k = best["rrf_k"] if best["method"] == "rrf" else config.fusion.rrf_k
    # the lists were scored as config.fusion.complete says: the choice keeps that setting
    chosen = replace(config.fusion, method=best["method"], normalization="min-max", depth=best["depth"], rrf_k=rrf_k,
                     weights=dict(best["weights"]))

    # reference points on the split: the current config's fusion (of these modes) and untuned settings
    reference = {}
    for name, fusion in (
        ("configured", config.fusion),
        ("weighted, all weights 1", replace(config.fusion, method="weighted", depth=100, weights=dict.fromkeys(modes, 1.0))),
        ("rrf k=60, all weights 1", replace(config.fusion, method="rrf", depth=100, rrf_k=60, weights=dict.fromkeys(modes, 1.0))),
    ):
        d = fusion.depth if fusion.depth in per_depth else None
        if d is not None:
            reference[name] = round(_ranx_ndcg(dataset, _fused_run(qids, per_depth[d], fusion)), 6)

    tuned_config = replace(config, fusion=chosen)
    searcher.config = tuned_config
    emit({"phase": f"checking {pipeline} with the chosen fusion", "done": 0, "total": 0})
    t0 = time.perf_counter()
    hybrid_run = searcher_run(searcher, dataset, pipeline)
    hybrid_seconds = time.perf_counter() - t0
    hybrid_metrics = _ranx_metrics(dataset, hybrid_run)

    reranks = {}
    for reranker in rerankers:
        searcher.config = tuned_config
        reranks[reranker] = tune_rerank(dataset, ws, tuned_config, reranker, depths=rerank_depths,
                                        searcher=searcher, first_stage=hybrid_run, progress=progress,
                                        pipeline=pipeline)

    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "workspace": str(ws.root),
        "queries": len(qids),
        "pipeline": pipeline,
        "chosen": {
            "fusion": {"method": chosen.method, "normalization": chosen.normalization, "depth": chosen.depth,
                       "rrf_k": chosen.rrf_k, "complete": chosen.complete, "weights": chosen.weights},
            "rerank": {r: {"depth": v["best"]["depth"], "interpolation": v["best"]["interpolation"]}
                       for r, v in reranks.items()},
        },
        "tuning": {  # figures on the split tuned on ("split"; train unless --split says otherwise)
            "single_modes_ndcg@10": {m: round(v, 6) for m, v in singles.items()},
            "fusion_reference_ndcg@10": reference,
            "fusion_top": rescored,
            "hybrid_checked": hybrid_metrics,
            "hybrid_check_matches_scan": abs(hybrid_metrics["ndcg@10"] - best["ndcg@10"]) < 1e-6,
            "rerank": reranks,
        },
        "grid": {"weights": list(WEIGHTS), "rrf_k": list(RRF_KS), "depths": list(DEPTHS),
                 "rerank_depths": list(rerank_depths), "interpolations": list(INTERPOLATIONS),
                 "weight_vectors": int(len(grid))},
        "seconds": {"mode_lists": round(lists_seconds, 1), "hybrid_check": round(hybrid_seconds, 1),
                    "total": round(time.perf_counter() - started, 1)},
    }


@dataclass(frozen=True)
class RerankScoring:
    """One scoring of a first stage's top documents by a reranker, to replay at any depth <= ``top``
    and any interpolation (:func:`replay_rerank`)."""

    first_stage: dict[str, dict[str, float]]  # query id -> {doc id: first-stage score}, best first
    reranker_scores: dict[str, dict[str, float]]  # query id -> {doc id: reranker score} for its top ``top``
    top: int
    seconds: float  # wall time of the scoring (query encoding included)


def score_rerank_top(dataset: EvalDataset, ws: Workspace, config: WorkspaceConfig, reranker: str, top: int, *,
                     searcher=None, first_stage=None, progress=None, pipeline: str = "hybrid") -> RerankScoring:
    """``reranker``'s score for each of the top ``top`` documents of ``config``'s ``pipeline`` on
    every query of ``dataset`` (a document's reranker score does not depend on the rerank depth).
    ``first_stage`` (a :func:`searcher_run` of ``pipeline``) is computed when not given."""
    from workbench.eval.runner import workspace_for
    from workbench.search.searcher import Searcher

    emit = progress or (lambda event: None)
    ws, _donor = workspace_for(ws, config)  # other index models than ws's own: their variant
    rcfg = replace(config, models=replace(config.models, reranker=reranker),
                   rerank=replace(config.rerank, interpolation=0.0))
    if searcher is None or (reranker != "maxsim" and reranker != searcher.config.models.reranker):
        searcher = Searcher(ws, config=rcfg)
    previous = searcher.config
    if first_stage is None:
        searcher.config = config
        emit({"phase": f"first stage ({pipeline})", "done": 0, "total": 0})
        first_stage = searcher_run(searcher, dataset, pipeline)
    searcher.config = rcfg
    emit({"phase": f"rerank grid ({reranker}, scoring the top {top})", "done": 0, "total": 0})
    t0 = time.perf_counter()
    try:
        reranked = searcher_run(searcher, dataset, f"{pipeline}+rerank", rerank_depth=top)
    finally:
        searcher.config = previous
    seconds = time.perf_counter() - t0
    raw = {q: dict(list(reranked[q].items())[:top]) for q in dataset.query_ids}
    return RerankScoring(first_stage=first_stage, reranker_scores=raw, top=top, seconds=seconds)


def tune_rerank(dataset: EvalDataset, ws: Workspace, config: WorkspaceConfig, reranker: str, *,
                depths: tuple[int, ...] = RERANK_DEPTHS, interpolations: tuple[float, ...] = INTERPOLATIONS,
                searcher=None, first_stage=None, progress=None, pipeline: str = "hybrid") -> dict:
    """Rerank depth x interpolation grid for ``reranker`` over ``config``'s fusion of ``pipeline``'s
    modes (see module doc).

    The reranker scores the top ``max(depths)`` once; every setting is replayed from those scores.
    """
    scoring = score_rerank_top(dataset, ws, config, reranker, max(depths), searcher=searcher,
                               first_stage=first_stage, progress=progress, pipeline=pipeline)
    rows = []
    for depth, a in itertools.product(depths, interpolations):
        value = _ranx_ndcg(dataset, replay_rerank(scoring.first_stage, scoring.reranker_scores, depth, a))
        rows.append({"depth": depth, "interpolation": a, "ndcg@10": round(value, 6)})
    rows.sort(key=lambda r: (-r["ndcg@10"], r["depth"]))
    return {"grid": rows, "best": rows[0], "first_stage_ndcg@10": round(_ranx_ndcg(dataset, scoring.first_stage), 6),
            "queries": len(dataset.query_ids), "seconds_scoring_top": round(scoring.seconds, 1), "top": scoring.top}


def summary(outcome: dict, config_path: Path | None = None) -> str:
    """The human summary: figures labelled by the split and the pipeline actually tuned, then the
    settings as wb.toml lines (``toml_snippet``; ``config_path``: the ``-w`` workspace's wb.toml)."""
    t = outcome["tuning"]
    f = outcome["chosen"]["fusion"]
    split, pipeline = outcome["split"], outcome["pipeline"]
    lines = [
        f"tuned on {outcome['dataset']} {split} ({outcome['queries']} queries)",
        f"fusion: method={f['method']} depth={f['depth']} rrf_k={f['rrf_k']} weights={f['weights']}",
        f"  {split} nDCG@10 {100 * t['hybrid_checked']['ndcg@10']:.2f} ({pipeline}, "
        "checked through the searcher); "
        f"reference ({pipeline}) {', '.join(f'{k}: {100 * v:.2f}' for k, v in t['fusion_reference_ndcg@10'].items())}",
        f"  single modes: {', '.join(f'{k} {100 * v:.2f}' for k, v in t['single_modes_ndcg@10'].items())}",
    ]
    for r, v in t["rerank"].items():
        b = v["best"]
        lines.append(f"rerank ({r}): depth={b['depth']} interpolation={b['interpolation']} "
                     f"{split} nDCG@10 {100 * b['ndcg@10']:.2f} ({pipeline} alone {100 * v['first_stage_ndcg@10']:.2f})"
                     + ("" if _rerank_helps(v) else f": no better than {pipeline} alone, leave +rerank out"))
    return "\n".join(lines) + "\n" + toml_snippet(outcome, config_path)


def toml_snippet(outcome: dict, config_path: Path | None = None) -> str:
    """The chosen settings as wb.toml lines to paste (``--tune`` writes nothing itself) and where:
    ``config_path`` (the ``-w`` workspace's wb.toml), or, tuned in the eval cache (None), a
    workspace's own wb.toml evaluated with ``-w`` (the cache's wb.toml is rewritten on every run).
    A mode the tuning left out (``-p`` with fewer modes) has weight 0, as in the tuned pipeline."""
    f = outcome["chosen"]["fusion"]
    where = (f"put them in {config_path}:" if config_path else
             "put them in a workspace's wb.toml and evaluate with -w WS\n"
             "# (not in the eval cache's wb.toml: wb eval without -w rewrites it to the defaults):")
    lines = [f"# nothing was saved; to use these settings, {where}",
             "[fusion]", f'method = "{f["method"]}"', f"depth = {f['depth']}", f"rrf_k = {f['rrf_k']}",
             "[fusion.weights]"]
    tuned = set(outcome.get("tuning", {}).get("single_modes_ndcg@10", {})) or set(f["weights"])
    for mode, w in f["weights"].items():
        left_out = "  # not tuned: 0 makes hybrid the pipeline tuned; drop the line to keep it in hybrid"
        lines.append(f"{mode} = {float(w):g}" + (left_out if mode not in tuned else ""))
    for r, v in outcome["tuning"]["rerank"].items():
        b = v["best"]
        helps = "" if _rerank_helps(v) else " (it ranks no better than the first stage alone on this split)"
        lines += [f"[rerank]  # for reranker = {r!r}{helps}", f"depth = {b['depth']}",
                  f"interpolation = {b['interpolation']:g}"]
        break  # one [rerank] table: the first reranker tuned
    return "\n".join(lines)


def _rerank_helps(tuned: dict) -> bool:
    """Whether a reranker's best setting (``tune_rerank``'s answer) beats its first stage alone."""
    return tuned["best"]["ndcg@10"] > tuned["first_stage_ndcg@10"]
