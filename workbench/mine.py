"""``wb mine``: hard negatives for a BEIR training split, from the workspace's own index.

For every judged query of the split, the workspace is searched (``Searcher.search_many``, which
uses the embeddings stored in the index: the corpus is never re-encoded) for the top
``range_end`` documents. Then:

1. the query's positives (qrels score > 0) are dropped;
2. of the candidates ranked ``range_start``..``range_end``, when a positive was retrieved, those
   scoring >= ``margin`` x the lowest retrieved positive's score (less ``(1 - margin) x |score|``
   when scores are negative) are dropped as likely false negatives (unlabelled relevant
   documents), and counted;
3. ``negatives`` documents are drawn at random (seeded per query) from the candidates left and
   listed in rank order.

The output is FlagEmbedding JSON Lines, ``{"query", "pos": [text], "neg": [text], "prompt": ""}``,
with document text = title + " " + text from the dataset's ``corpus.jsonl``. Optional scores per
candidate (``pos_scores``/``neg_scores``): a reranker's (``teacher``: the signal of KL distillation)
or the first stage's own (``first_stage_scores``: min-max normalised over the query's retrieved top
``range_end``, as a reranker's interpolation sees them; a positive not retrieved scores 0), the
prior of a residual reranker (``wb train reranker --residual``). The workspace must
index that corpus (``wb index DATASET/corpus.jsonl``) so that hit ids are corpus ids.

With ``pseudo`` (``titles`` or ``conclusions``, see ``workbench.pseudo_queries``) the queries are
made from the corpus itself (no queries or qrels are read: ``DATA`` may be a BEIR folder, its
``corpus.jsonl``, or a folder of documents the workspace indexes, read as `wb index` reads it); each
query's one positive is its source document minus the query itself, and negatives are written as
that kind says.
"""

from __future__ import annotations

import io
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import InputError, UsageError

__all__ = ["MineSource", "MineSummary", "MineTarget", "mine_negatives", "parse_range"]


@dataclass
class MineSummary:
    queries: int = 0
    written: int = 0
    without_negatives: int = 0
    false_negatives_dropped: int = 0
    unknown_hits: int = 0
    out: str = ""
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"wrote {self.written} examples to {self.out} ({self.queries} queries; "
                f"{self.without_negatives} without negatives; {self.false_negatives_dropped} likely false "
                f"negatives dropped)")


def parse_range(value: str) -> tuple[int, int]:
    """``"10-100"`` -> (10, 100): 1-based ranks, inclusive."""
    try:
        lo, hi = (int(x) for x in value.split("-", 1))
    except ValueError:
        raise UsageError(f"--range takes START-END ranks (e.g. 10-100), not '{value}'") from None
    if not 1 <= lo <= hi:
        raise UsageError(f"--range needs 1 <= START <= END, got {value}")
    return lo, hi


def mine_negatives(
    workspace,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    pipeline: str = "dense",
    rank_range: tuple[int, int] = (10, 100),
    negatives: int = 7,
    margin: float = 0.95,
    seed: int = 0,
    config=None,
    progress=None,
    teacher: str | None = None,
    pseudo: str | None = None,
    first_stage_scores: bool = False,
) -> MineSummary:
    """Mine hard negatives (see the module docstring); return the counts.

    ``teacher`` (a reranker model: "reranker" = the configured one, or a name/folder) adds
    ``pos_scores``/``neg_scores``: its score for each written positive and negative, the teacher
    signal of KL distillation (``wb train embedder --distill``). ``progress(phase, done, total)``
    is called as the queries are retrieved ("retrieving") and, with a teacher, scored ("scoring")."""
    from workbench.search.fusion import min_max
    from workbench.search.searcher import Searcher

    if negatives < 1:
        raise UsageError("--negatives must be at least 1")
    if teacher and first_stage_scores:
        raise UsageError("--teacher and --first-stage-scores both write pos_scores/neg_scores: choose one")
    if not 0 < margin <= 1.5:
        raise UsageError(f"--margin must be in (0, 1.5], got {margin}")
    to_stdout = str(out) == "-"
    out_path = Path(out)
    if not to_stdout and out_path.is_dir():  # found before mining, not at the rename that ends it
        raise UsageError(f"--out {out} is a folder: give the jsonl file to write (e.g. {out_path / 'hn.jsonl'})")
    lo, hi = rank_range
    source = _mine_source(data, split, pseudo)  # the data is checked before any folder is made
    if not to_stdout:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot create its folder ({exc.strerror or exc})") from None
    targets, corpus_path, neg_text = source.targets, source.corpus_path, source.negative_text
    searcher = Searcher(workspace, config=config)
    scorer = None
    if teacher:
        from dataclasses import replace as _replace

        from workbench.encoders.rerankers import load_reranker
        from workbench.models.registry import resolve_role

        models = searcher.config.models if teacher == "reranker" else _replace(searcher.config.models, reranker=teacher)
        if models.reranker == "maxsim":
            raise UsageError("--teacher needs a reranker model (a cross-encoder, 'llm' or runs/NAME of a trained "
                             "reranker): 'maxsim' is the zero-shot stand-in")
        scorer = load_reranker(resolve_role("reranker", models), device=searcher.bundle.device)
    report = progress or (lambda phase, done, total: None)
    results = searcher.search_many([t.query for t in targets], pipeline=pipeline, k=hi, unit="doc",
                                   progress=lambda done, total: report("retrieving", done, total))
    summary = MineSummary(queries=len(targets), out="stdout" if to_stdout else str(out))
    total_hits = 0
    tmp = out_path.with_name(out_path.name + ".partial")
    # stdout gets the rows only once they all are mined and checked (like the file's rename)
    with (io.StringIO() if to_stdout else open(tmp, "w", encoding="utf-8")) as fh:
        for i, (target, result) in enumerate(zip(targets, results), 1):
            if scorer is not None:
                report("scoring with the teacher", i, len(targets))
            positives = target.positive_ids
            pos_pairs = sorted(target.positive_texts, key=lambda pair: pair[1])
            if not pos_pairs:
                continue
            hits = result.results
            total_hits += len(hits)
            summary.unknown_hits += sum(1 for h in hits if neg_text(h.doc_id) is None)
            pos_scores = [h.score for h in hits if h.doc_id in positives]
            # within (1 - margin) of the lowest-scored positive, below it in absolute terms (margin x
            # the score, also for scores below 0, where that product would lie above the positive)
            lowest = min(pos_scores) if pos_scores else None
            threshold = lowest - (1 - margin) * abs(lowest) if lowest is not None else None
            candidates = []
            for rank, hit in enumerate(hits, 1):
                if not lo <= rank <= hi or hit.doc_id in positives or not neg_text(hit.doc_id):
                    continue  # (only a document that could be picked counts as a false negative dropped)
                if threshold is not None and hit.score >= threshold:
                    summary.false_negatives_dropped += 1
                    continue
                candidates.append(hit.doc_id)
            rng = random.Random(f"{seed}|{target.query_id}")
            picked = set(rng.sample(candidates, min(negatives, len(candidates))))
            neg_ids = [d for d in candidates if d in picked]  # in rank order
            neg = [neg_text(d) for d in neg_ids]
            if not neg:
                summary.without_negatives += 1
            row = {"query": target.query, "pos": [text for _, text in pos_pairs], "neg": neg, "prompt": ""}
            if scorer is not None:
                scores = scorer.score(target.query, row["pos"] + neg)
                row["pos_scores"] = [round(float(x), 5) for x in scores[: len(row["pos"])]]
                row["neg_scores"] = [round(float(x), 5) for x in scores[len(row["pos"]):]]
            elif first_stage_scores:
                prior = min_max({h.doc_id: h.score for h in hits})
                row["pos_scores"] = [round(prior.get(d, 0.0), 5) for d, _ in pos_pairs]
                row["neg_scores"] = [round(prior[d], 5) for d in neg_ids]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            summary.written += 1
        mined = fh.getvalue() if to_stdout else ""
    if total_hits and summary.unknown_hits == total_hits:
        if not to_stdout:
            tmp.unlink(missing_ok=True)
        raise InputError(
            f"no search hit is a document of {corpus_path}: index it into the workspace first "
            f"(wb index {corpus_path} -w {workspace.root})"
        )
    if to_stdout:
        sys.stdout.write(mined)
        sys.stdout.flush()
    else:
        tmp.replace(out_path)
    return summary


@dataclass(frozen=True)
class MineTarget:
    """One query to mine for: its id (seeds the draw), text, positive doc ids and the (doc id, text)
    of each positive that has a text."""

    query_id: str
    query: str
    positive_ids: frozenset[str]
    positive_texts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MineSource:
    """What a mining run reads: its queries, the corpus file, and doc id -> the text written for it
    as a negative (None: not in the corpus)."""

    targets: list[MineTarget]
    corpus_path: Path
    negative_text: Callable[[str], str | None]


def _mine_source(data: str | Path, split: str, pseudo: str | None) -> MineSource:
    """The queries to mine (a split's, or pseudo-queries made from the corpus) and their corpus."""
    from workbench.ingest.readers import corpus_documents, corpus_passages

    if pseudo is None:
        from workbench.eval.dataset import load_dataset

        dataset = load_dataset(data, split)
        corpus_path = dataset.corpus_path
        passages = corpus_passages(corpus_path)
        targets = []
        for qid, text in dataset.queries.items():
            positives = frozenset(d for d, s in dataset.qrels[qid].items() if s > 0)
            targets.append(MineTarget(qid, text, positives, tuple((d, passages[d]) for d in positives if passages.get(d))))
        return MineSource(targets, corpus_path, passages.get)
    from workbench.pseudo_queries import check_kind, make_pseudo_queries, negative_text

    check_kind(pseudo)  # before reading the corpus
    root = Path(data)
    # a BEIR folder's corpus.jsonl, or any folder wb indexes (its documents' ids are the index's)
    corpus_path = root / "corpus.jsonl" if (root / "corpus.jsonl").is_file() else root
    docs = corpus_documents(corpus_path)
    made = make_pseudo_queries(pseudo, ((d, t, x) for d, (t, x) in docs.items()))
    if not made:
        raise InputError(f"{corpus_path}: no document gives a '{pseudo}' pseudo-query (see wb mine --help)")
    negs = {d: negative_text(pseudo, t, x) for d, (t, x) in docs.items()}
    targets = [MineTarget(q.query_id, q.text, frozenset({q.doc_id}), ((q.doc_id, q.positive),)) for q in made]
    return MineSource(targets, corpus_path, negs.get)
