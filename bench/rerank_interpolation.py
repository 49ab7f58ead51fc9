"""nDCG@10 of a reranker over a first stage at every interpolation a, with a paired t-test per query.

    python bench/rerank_interpolation.py runs/ce4 -w WS --data ../shared/eval/scifact --split test \
        [--depth 50] [--limit N] [--keep held_out.jsonl] --out result.json

The reranker scores the first stage's top ``depth`` once; each a in 0..0.875 is replayed from those
scores (``workbench.eval.tune.replay_rerank``, the searcher's own min-max interpolation), so choosing
a on held-out queries (``--keep``: only the queries of a FlagEmbedding jsonl) and reporting it on
test costs one scoring each. ``residual_grid``: the top reordered by reranker logit + w x the first
stage's min-max score instead (the sum ``wb train reranker --residual w`` trains); ``zscore_grid`` /
``rrf_grid``: the interpolation after z-scores or reciprocal ranks instead of min-max. Not a speed benchmark: ``pairs_per_s`` includes the query encoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import rerank_eval_parser, rerank_eval_setup  # noqa: E402

INTERPOLATIONS = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
RESIDUAL_WEIGHTS = (2.0, 4.0, 8.0, 16.0)  # final = reranker logit + w * min-max(first stage): the residual loss's sum


def _reorder(first: dict, depth: int, final_of) -> dict:
    """Each query's top ``depth`` of ``first`` reordered by ``final_of(qid, head scores)``; the rest
    of ``first`` kept below (the shape of ``workbench.eval.tune.replay_rerank``)."""
    out = {}
    for qid, ranking in first.items():
        items = list(ranking.items())
        head, tail = items[:depth], items[depth:]
        final = final_of(qid, dict(head))
        out[qid] = dict(sorted(final.items(), key=lambda kv: (-kv[1], kv[0])) + tail)
    return out


def replay_residual(first: dict, raw: dict, depth: int, w: float) -> dict:
    """The top ``depth`` reordered by reranker score + ``w`` x the first stage's min-max score (the
    sum a ``--residual`` cross-encoder was trained on)."""
    from workbench.search.fusion import min_max

    return _reorder(first, depth, lambda qid, head: {key: raw[qid][key] + w * prior
                                                     for key, prior in min_max(head).items()})


def replay_normalised(first: dict, raw: dict, depth: int, a: float, how: str) -> dict:
    """The top ``depth`` reordered by a x first stage + (1 - a) x reranker after ``how``: "zscore"
    (each list standardised per query) or "rrf" (1 / (10 + rank) of each list)."""
    import statistics

    def zscore(scores: dict) -> dict:
        mean, sd = statistics.fmean(scores.values()), statistics.pstdev(scores.values()) or 1.0
        return {k: (v - mean) / sd for k, v in scores.items()}

    def reciprocal_rank(scores: dict) -> dict:
        return {k: 1.0 / (10 + i) for i, (k, _) in enumerate(sorted(scores.items(), key=lambda kv: -kv[1]), 1)}

    norm = zscore if how == "zscore" else reciprocal_rank

    def final_of(qid: str, head: dict) -> dict:
        f, s = norm(head), norm({key: raw[qid][key] for key in head})
        return {key: a * f[key] + (1 - a) * s[key] for key in head}

    return _reorder(first, depth, final_of)


def main() -> None:
    ap = rerank_eval_parser(__doc__)
    ap.add_argument("--dump", help="also write the first stage's and the reranker's raw scores to this json")
    args = ap.parse_args()

    from ranx import Qrels, Run, evaluate
    from scipy.stats import ttest_rel

    from workbench.eval import tune

    data, ws, cfg = rerank_eval_setup(args)
    scoring = tune.score_rerank_top(data, ws, cfg, cfg.models.reranker, args.depth, pipeline=args.pipeline)
    first, raw, seconds = scoring.first_stage, scoring.reranker_scores, scoring.seconds
    qrels = Qrels({q: dict(d) for q, d in data.qrels.items()})

    def per_query(run: dict) -> list[float]:
        ranx_run = Run({q: tune.rank_scores(run.get(q, {})) for q in data.qrels})
        return [float(x) for x in evaluate(qrels, ranx_run, "ndcg@10", return_mean=False)]

    base = per_query(first)
    out = {"reranker": args.reranker, "split": args.split, "queries": len(base), "depth": args.depth,
           "seconds_scoring": round(seconds, 1), "pairs_per_s": round(len(base) * args.depth / seconds, 1),
           f"{args.pipeline}_ndcg@10": sum(base) / len(base), "grid": []}
    for a in INTERPOLATIONS:
        values = per_query(tune.replay_rerank(first, raw, args.depth, a))
        out["grid"].append({
            "interpolation": a, "ndcg@10": sum(values) / len(values), "delta": (sum(values) - sum(base)) / len(values),
            "p": float(ttest_rel(values, base).pvalue),
            "won": sum(v > b + 1e-9 for v, b in zip(values, base)), "lost": sum(v < b - 1e-9 for v, b in zip(values, base)),
        })
    out["residual_grid"] = []
    for w in RESIDUAL_WEIGHTS:
        values = per_query(replay_residual(first, raw, args.depth, w))
        out["residual_grid"].append({"w": w, "ndcg@10": sum(values) / len(values),
                                     "delta": (sum(values) - sum(base)) / len(values),
                                     "p": float(ttest_rel(values, base).pvalue)})
    for how in ("zscore", "rrf"):
        out[f"{how}_grid"] = []
        for a in INTERPOLATIONS[1:-1]:
            values = per_query(replay_normalised(first, raw, args.depth, a, how))
            out[f"{how}_grid"].append({"interpolation": a, "ndcg@10": sum(values) / len(values),
                                       "delta": (sum(values) - sum(base)) / len(values)})
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.dump:
        Path(args.dump).write_text(json.dumps({"first_stage": first, "reranker": raw}))
    for row in out["grid"]:
        print(f"a={row['interpolation']:<5} nDCG@10 {100 * row['ndcg@10']:.2f}  {100 * row['delta']:+.2f}  p={row['p']:.3f}")
    for row in out["residual_grid"]:
        print(f"logit + {row['w']:g} x first: nDCG@10 {100 * row['ndcg@10']:.2f}  {100 * row['delta']:+.2f}  p={row['p']:.3f}")
    for how in ("zscore", "rrf"):
        print(f"{how}: " + "  ".join(f"a={r['interpolation']} {100 * r['ndcg@10']:.2f}" for r in out[f"{how}_grid"]))
    print(f"{args.pipeline} {100 * sum(base) / len(base):.2f}; {out['pairs_per_s']} pairs/s")


if __name__ == "__main__":
    main()
