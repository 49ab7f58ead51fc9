"""What the retriever trainers' in-training evaluations share: the held-out BEIR set, eval mode
without gradients, and nDCG@10 of a query x document score matrix's top 100 (ranx, as `wb eval`).

Each trainer's ``evaluate`` encodes and scores in its own way (cosine, MaxSim, sparse dot products,
their fusion) and hands the score matrix to :func:`ndcg_at_10`.
"""

from __future__ import annotations

from contextlib import contextmanager

from .loop import log

__all__ = ["EvalSet", "inference", "load_beir_eval", "load_eval_set", "ndcg_at_10"]


def load_beir_eval(folder: str, split: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(corpus id -> title + text, query id -> text, qrels) of a BEIR folder, its evaluated queries
    only: read and checked exactly as `wb eval` reads it (``workbench.eval.dataset``: TREC qrels, BOMs,
    graded relevance, documents the corpus lacks), so an in-training figure uses the same judgements."""
    from workbench.eval.dataset import load_dataset
    from workbench.ingest.readers import corpus_passages

    from .data.eval_data import beir_files

    beir_files(folder, split)  # the missing files named as a run's eval data
    data = load_dataset(folder, split)
    corpus = corpus_passages(data.corpus_path)
    return corpus, dict(data.queries), {q: dict(r) for q, r in data.qrels.items()}


class EvalSet:
    """A held-out BEIR split: ``doc_ids`` and ``qids`` fix the score matrix's columns and rows."""

    def __init__(self, corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]]):
        self.corpus, self.queries, self.qrels = corpus, queries, qrels
        self.doc_ids, self.qids = list(corpus), list(queries)

    def documents(self) -> list[str]:
        return [self.corpus[i] for i in self.doc_ids]

    def query_texts(self) -> list[str]:
        return [self.queries[i] for i in self.qids]


def load_eval_set(folder: str, split: str) -> EvalSet | None:
    """The split to evaluate on, or None (said in the run's log) when ranx is not installed or the
    split judges no query."""
    from importlib.util import find_spec

    if find_spec("ranx") is None:
        log("eval skipped: ranx is not installed")
        return None
    corpus, queries, qrels = load_beir_eval(folder, split)
    if not queries:
        log(f"eval skipped: no judged queries in {folder} ({split})")
        return None
    return EvalSet(corpus, queries, qrels)


@contextmanager
def inference(model):
    """Eval mode and no gradients inside the block; the model's own training mode after it."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def ndcg_at_10(scores, data: EvalSet) -> float:
    """nDCG@10 (ranx) of each query's top 100 documents by ``scores`` ([queries, documents] in
    ``data.qids`` x ``data.doc_ids`` order, a torch tensor)."""
    import torch
    from ranx import Qrels, Run, evaluate

    top = torch.topk(scores, k=min(100, len(data.doc_ids)), dim=1)
    run = {qid: {data.doc_ids[j]: float(v) for v, j in zip(vals.tolist(), idx.tolist())}
           for qid, vals, idx in zip(data.qids, top.values, top.indices)}
    return float(evaluate(Qrels(data.qrels), Run(run), "ndcg@10"))
