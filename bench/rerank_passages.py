"""Which passage of a document should a cross-encoder read? nDCG@10 of four choices, at every a.

    python bench/rerank_passages.py runs/ce8 -w WS --data ../shared/eval/scifact --split test \
        [--depth 50] [--keep held_out.jsonl] [--limit N] --out result.json

A document longer than ``[index] chunk_tokens`` is several chunks. The searcher's reranker reads the
chunk the first stage ranked best (``best``); the alternatives are the maximum over all its chunks
(``max``, MaxP: Dai & Callan 2019), the first chunk (``first``, FirstP) and the mean. Every chunk of
the first stage's top ``depth`` documents is scored once; each choice and each interpolation a with
the first stage (``workbench.eval.tune.replay_rerank``, the searcher's own min-max rule) is replayed
from those scores. Not a speed benchmark.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import rerank_eval_parser, rerank_eval_setup  # noqa: E402

INTERPOLATIONS = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75)
CHOICES = ("best", "max", "first", "mean")


def main() -> None:
    ap = rerank_eval_parser(__doc__)
    args = ap.parse_args()

    from ranx import Qrels, Run, evaluate

    from workbench.encoders.rerankers import load_reranker
    from workbench.eval import tune
    from workbench.models.registry import resolve_role
    from workbench.search.searcher import Searcher

    data, ws, cfg = rerank_eval_setup(args)
    searcher = Searcher(ws, config=cfg)
    catalog = searcher.catalog
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, doc in enumerate(catalog.doc_ids):
        rows_of[doc].append(row)
    reranker = load_reranker(resolve_role("reranker", cfg.models), device=searcher.bundle.device)
    qids = data.query_ids
    results = searcher.search_many([data.queries[q] for q in qids], pipeline=args.pipeline, k=100, unit="doc")

    first: dict[str, dict[str, float]] = {}
    chosen: dict[str, dict[str, dict[str, float]]] = {c: {} for c in CHOICES}
    pairs_scored, t0 = 0, time.perf_counter()
    for qid, result in zip(qids, results):
        first[qid] = {h.doc_id: float(h.score) for h in result.results}
        head = result.results[: args.depth]
        passages, owners = [], []
        for hit in head:
            for row in sorted(rows_of[hit.doc_id], key=lambda r: int(catalog.char_start[r])):
                passages.append(f"{catalog.titles[row]} {catalog.texts[row]}".strip())
                owners.append((hit.doc_id, catalog.chunk_ids[row]))
        scores = reranker.score(data.queries[qid], passages)
        per_doc: dict[str, dict[str, float]] = defaultdict(dict)
        for (doc, chunk), score in zip(owners, scores.tolist()):
            per_doc[doc][chunk] = float(score)
        pairs_scored += len(passages)
        chosen["best"][qid] = {h.doc_id: per_doc[h.doc_id][h.chunk_id] for h in head}
        chosen["max"][qid] = {d: max(s.values()) for d, s in per_doc.items()}
        chosen["first"][qid] = {d: next(iter(s.values())) for d, s in per_doc.items()}
        chosen["mean"][qid] = {d: statistics.fmean(s.values()) for d, s in per_doc.items()}
    seconds = time.perf_counter() - t0

    qrels = Qrels({q: dict(d) for q, d in data.qrels.items()})

    def ndcg(run: dict) -> float:
        return float(evaluate(qrels, Run({q: tune.rank_scores(run.get(q, {})) for q in data.qrels}), "ndcg@10"))

    out = {"reranker": args.reranker, "split": args.split, "queries": len(qids), "depth": args.depth,
           "pairs_scored": pairs_scored, "seconds_scoring": round(seconds, 1),
           f"{args.pipeline}_ndcg@10": ndcg(first), "choices": {}}
    for choice in CHOICES:
        out["choices"][choice] = {str(a): ndcg(tune.replay_rerank(first, chosen[choice], args.depth, a))
                                  for a in INTERPOLATIONS}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{args.pipeline} {100 * out[f'{args.pipeline}_ndcg@10']:.2f}; {pairs_scored} pairs in {seconds:.0f} s")
    print("a:     " + " ".join(f"{a:>6}" for a in INTERPOLATIONS))
    for choice, row in out["choices"].items():
        print(f"{choice:6s} " + " ".join(f"{100 * v:6.2f}" for v in row.values()))


if __name__ == "__main__":
    main()
