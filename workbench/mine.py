"""``wb mine``: hard negatives for a BEIR training split, from the workspace's own index.

For every judged query of the split, the workspace is searched (``Searcher.search_many``, which
uses the embeddings stored in the index: the corpus is never re-encoded) for the top
``range_end`` documents. Then:

1. the query's positives (qrels score > 0) are dropped;
2. of the candidates ranked ``range_start``..``range_end``, when a positive was retrieved, those
   scoring >= ``margin`` x the lowest retrieved positive's score (less ``(1 - margin) x |score|``
   when scores are negative) are dropped as likely false negatives (unlabelled relevant
   documents), and counted. A positive scoring exactly 0 sets no threshold (``margin_threshold``):
   under min-max fusion (``hybrid``, weighted) that is the bottom of every list, not a score to
   take a fraction of, and ``margin`` x 0 would drop every candidate, those ranked below it too;
3. ``negatives`` documents are drawn at random (seeded per query) from the candidates left and
   listed in rank order.

Queries none of whose positives is in the corpus are skipped, and counted in the summary.

The output is FlagEmbedding JSON Lines, ``{"query", "pos": [text], "neg": [text], "prompt"}``,
with document text = title + " " + text from the dataset's ``corpus.jsonl``; ``prompt`` is the
instruction the candidates were retrieved with (``instruction``: a preset name or free text, as
``wb query --instruction`` takes it; ``""`` without one), which training then uses for that row.
Optional scores per candidate (``pos_scores``/``neg_scores``): a reranker's (``teacher``: the
signal of KL distillation) or the first stage's own (``first_stage_scores``: min-max normalised
over the query's retrieved top ``range_end``, as a reranker's interpolation sees them; a positive
not retrieved scores 0), the prior of a residual reranker (``wb train reranker --residual``). The
workspace must index that corpus (``wb index DATASET/corpus.jsonl``) so that hit ids are corpus ids.

With ``pseudo`` (``titles`` or ``conclusions``, see ``workbench.pseudo_queries``) the queries are
made from the corpus itself (no queries or qrels are read: ``DATA`` may be a BEIR folder, its
``corpus.jsonl``, or a folder of documents the workspace indexes, read as `wb index` reads it); each
query's one positive is its source document minus the query itself, and negatives are written as
that kind says. A file whose title is only its file name gives no ``titles`` query; how many
documents gave none, and why, is said in the summary. ``split`` is refused with ``pseudo`` (it
would be ignored).

Output (``out``): ``"-"`` is stdout; a file is written as ``OUT.partial`` beside it and renamed
over it when every row is written (a symlink is followed: the link stays, its target is
replaced). A target that exists but is not a regular file (a FIFO, a terminal, a pipe), or that
exists under ``/dev/fd``, ``/dev/std*`` or ``/proc`` (another name for an open file: ``/dev/stdout``,
a shell's ``>(...)``), is appended to directly, in one go at the end, as stdout is written. The
target is opened (or its ``.partial`` created) before any search, so an unwritable ``--out`` is
one UsageError at once; an interrupted or failed run removes its ``.partial`` and leaves ``OUT``
as it was.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import InputError, ModelError, UsageError

__all__ = ["MineSource", "MineSummary", "MineTarget", "margin_threshold", "mine_negatives", "parse_range"]


@dataclass
class MineSummary:
    queries: int = 0
    written: int = 0
    without_negatives: int = 0
    false_negatives_dropped: int = 0
    unknown_hits: int = 0
    without_positive: int = 0  # queries skipped: none of their positives is in the corpus
    out: str = ""
    notes: list[str] = field(default_factory=list)
    rows_on_stdout: bool = False  # the rows went to stdout (`-`, /dev/stdout): the summary belongs on stderr

    def line(self) -> str:
        skipped = (f"{self.without_positive} skipped: no positive in the corpus; " if self.without_positive else "")
        notes = "".join(f"; {note}" for note in self.notes)
        return (f"wrote {self.written} examples to {self.out} ({self.queries} queries; {skipped}"
                f"{self.without_negatives} without negatives; {self.false_negatives_dropped} likely false "
                f"negatives dropped{notes})")


def parse_range(value: str) -> tuple[int, int]:
    """``"10-100"`` -> (10, 100): 1-based ranks, inclusive."""
    try:
        lo, hi = (int(x) for x in value.split("-", 1))
    except ValueError:
        raise UsageError(f"--range takes START-END ranks (e.g. 10-100), not '{value}'") from None
    if not 1 <= lo <= hi:
        raise UsageError(f"--range needs 1 <= START <= END, got {value}")
    return lo, hi


def margin_threshold(positive_scores: list[float], margin: float) -> float | None:
    """The score at or above which a candidate is dropped as a likely false negative: ``margin`` x
    the lowest retrieved positive's score, taken as ``lowest - (1 - margin) x |lowest|`` so that it
    lies below the positive for negative scores too. Positives scoring exactly 0 are left out (the
    bottom of a min-max fused list, where ``margin`` x 0 would drop every candidate); None when no
    positive is left: nothing is dropped."""
    scores = [s for s in positive_scores if s != 0]
    if not scores:
        return None
    lowest = min(scores)
    return lowest - (1 - margin) * abs(lowest)


def _same_file(a, b) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # a captured stdout has no fd
        return False


class _Output:
    """Where the rows go (module docstring, "Output"): opened at once, so that a path that cannot
    be written fails before the mining; ``commit`` publishes the rows, ``discard`` leaves no trace."""

    def __init__(self, out: str | Path) -> None:
        self.to_stdout = self.on_stdout = str(out) == "-"  # on_stdout: `-`, or a name for stdout
        self.tmp: Path | None = None
        self.target: Path | None = None
        self.direct = None  # a non-regular target, opened for writing
        self.fh = io.StringIO()  # rows held until commit (stdout and direct targets)
        if self.to_stdout:
            return
        path = Path(out)
        try:
            st = os.stat(path)  # follows symlinks
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
        # /dev/stdout, /dev/fd/N, /proc/self/fd/N: another name for an open file, maybe a regular one
        alias = os.path.abspath(path).startswith(("/dev/fd/", "/dev/std", "/proc/"))
        try:
            if st is not None and (alias or not stat.S_ISREG(st.st_mode)):
                # appended: a shell's `>> log` behind /dev/stdout keeps what it holds; a FIFO or
                # terminal has nothing to truncate
                self.direct = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by commit/discard
                self.on_stdout = _same_file(self.direct, sys.stdout)
                return
            # a symlink's target is replaced, the link kept (a dangling one: the file it names)
            target = Path(os.path.realpath(path)) if path.is_symlink() else path
            if st is not None and not os.access(target, os.W_OK):
                raise PermissionError(13, os.strerror(13))
            target.parent.mkdir(parents=True, exist_ok=True)
            self.target, self.tmp = target, target.with_name(target.name + ".partial")
            self.fh = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed by commit/discard
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write ({exc.strerror or exc})") from None

    def commit(self) -> None:
        if self.tmp is not None:
            self.fh.close()
            os.replace(self.tmp, self.target)
            self.tmp = None
            return
        text = self.fh.getvalue()
        if self.to_stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with self.direct:
                self.direct.write(text)

    def discard(self) -> None:
        self.fh.close()
        if self.direct is not None:
            self.direct.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def mine_negatives(
    workspace,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
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
    instruction: str | None = None,
) -> MineSummary:
    """Mine hard negatives (see the module docstring); return the counts.

    ``split`` (None: ``"train"``) names the qrels split; with ``pseudo`` it must be None.
    ``instruction`` (a preset name or free text, None: none) is given to the retrieval and written as
    every row's ``prompt``. ``teacher`` (a reranker model: "reranker" = the configured one, or a name/folder) adds
    ``pos_scores``/``neg_scores``: its score for each written positive and negative, the teacher
    signal of KL distillation (``wb train embedder --distill``). ``progress(phase, done, total)``
    is called as the queries are retrieved ("retrieving") and, with a teacher, scored ("scoring")."""
    from workbench.encoders.templates import resolve_instruction

    if negatives < 1:
        raise UsageError("--negatives must be at least 1")
    if teacher and first_stage_scores:
        raise UsageError("--teacher and --first-stage-scores both write pos_scores/neg_scores: choose one")
    if not 0 < margin <= 1.5:
        raise UsageError(f"--margin must be in (0, 1.5], got {margin}")
    if pseudo is not None and split is not None:
        raise UsageError(f"--split {split} names the qrels split whose queries are mined, and --pseudo makes "
                         "the queries from the corpus (it reads no split): give one of them")
    prompt = resolve_instruction(instruction)
    to_stdout = str(out) == "-"
    out_path = Path(out)
    if not to_stdout and out_path.is_dir():  # found before mining, not at the rename that ends it
        raise UsageError(f"--out {out} is a folder: give the jsonl file to write (e.g. {out_path / 'hn.jsonl'})")
    lo, hi = rank_range
    source = _mine_source(data, split or "train", pseudo)  # the data is checked before any file is made
    if not to_stdout:
        _refuse_an_out_that_is_read(out, data, source, workspace)
    output = _Output(out)  # before any search: an --out that cannot be written fails at once
    try:
        summary = _mine(workspace, source, output, pipeline=pipeline, lo=lo, hi=hi, negatives=negatives,
                        margin=margin, seed=seed, config=config, progress=progress, teacher=teacher,
                        first_stage_scores=first_stage_scores, prompt=prompt)
        output.commit()
    except BaseException:  # Ctrl-C, SIGTERM (the CLI makes it an exception), a model or disk error
        output.discard()
        raise
    summary.out = "stdout" if to_stdout else str(out)
    summary.rows_on_stdout = output.on_stdout
    return summary


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse_an_out_that_is_read(out: str | Path, data: str | Path, source: MineSource, workspace) -> None:
    """UsageError, before any file is made, for an ``out`` the run would destroy: one of the files
    it reads (the dataset's corpus, queries or qrels; a file inside a folder of documents it reads),
    or a file inside a wb workspace (``workspace``'s folder, or any folder above ``out`` holding
    ``wb.toml``: its manifest, stores, runs). Paths are compared with symlinks resolved."""
    from workbench.ingest.readers import WORKSPACE_MARKER

    target = Path(os.path.realpath(out))
    for read in source.inputs:
        if _inside(target, Path(os.path.realpath(read))):
            raise UsageError(f"--out {out} is read by this run ({read}, of --data {data}): writing it would destroy "
                             "the data; give another file")
    roots = [Path(os.path.realpath(workspace.root))]
    roots += [folder for folder in target.parents if (folder / WORKSPACE_MARKER).is_file()]
    for root in roots:
        if _inside(target, root):
            raise UsageError(f"--out {out} is inside the workspace {root}: it would write over the workspace's "
                             "index, runs or settings; give a file outside it")


def _mine(workspace, source: MineSource, output: _Output, *, pipeline, lo, hi, negatives, margin, seed, config,
          progress, teacher, first_stage_scores, prompt) -> MineSummary:
    """The mining itself (module docstring), rows written to ``output.fh``."""
    from workbench.search.fusion import min_max
    from workbench.search.searcher import Searcher

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
                                   instruction=prompt or None,
                                   progress=lambda done, total: report("retrieving", done, total))
    summary = MineSummary(queries=len(targets), notes=list(source.notes))
    if prompt and results and not results[0].instruction_used:
        summary.notes.append(f"the instruction is each row's prompt but not used by -p {pipeline}, which "
                             "reads the bare query")
    total_hits = 0
    fh = output.fh  # stdout and direct targets get the rows only once all are mined and checked
    for i, (target, result) in enumerate(zip(targets, results), 1):
        if scorer is not None:
            report("scoring with the teacher", i, len(targets))
        positives = target.positive_ids
        pos_pairs = sorted(target.positive_texts, key=lambda pair: pair[1])
        if not pos_pairs:
            summary.without_positive += 1
            continue
        hits = result.results
        total_hits += len(hits)
        summary.unknown_hits += sum(1 for h in hits if neg_text(h.doc_id) is None)
        threshold = margin_threshold([h.score for h in hits if h.doc_id in positives], margin)
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
        row = {"query": target.query, "pos": [text for _, text in pos_pairs], "neg": neg, "prompt": prompt}
        if scorer is not None:
            scores = [float(x) for x in scorer.score(target.query, row["pos"] + neg)]
            if not all(math.isfinite(x) for x in scores):  # JSON has no NaN: the file would not read back
                raise ModelError(f"the teacher reranker scored a candidate of query {target.query_id} as "
                                 f"{next(x for x in scores if not math.isfinite(x))}: it cannot teach (nothing "
                                 f"was written)")
            row["pos_scores"] = [round(float(x), 5) for x in scores[: len(row["pos"])]]
            row["neg_scores"] = [round(float(x), 5) for x in scores[len(row["pos"]):]]
        elif first_stage_scores:
            prior = min_max({h.doc_id: h.score for h in hits})
            row["pos_scores"] = [round(prior.get(d, 0.0), 5) for d, _ in pos_pairs]
            row["neg_scores"] = [round(prior[d], 5) for d in neg_ids]
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary.written += 1
    if total_hits and summary.unknown_hits == total_hits:
        raise InputError(
            f"no search hit is a document of {corpus_path}: index it into the workspace first "
            f"(wb index {corpus_path} -w {workspace.root})"
        )
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
    """What a mining run reads: its queries, the corpus file, doc id -> the text written for it as a
    negative (None: not in the corpus), notes for the summary (documents that gave no query), and
    the files and folders it reads (``inputs``: never an ``--out``)."""

    targets: list[MineTarget]
    corpus_path: Path
    negative_text: Callable[[str], str | None]
    notes: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()


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
        return MineSource(targets, corpus_path, passages.get, inputs=dataset.input_files)
    from collections import Counter

    from workbench.pseudo_queries import check_kind, make_pseudo_queries, negative_text

    check_kind(pseudo)  # before reading the corpus
    root = Path(data)
    # a BEIR folder's corpus.jsonl, or any folder wb indexes (its documents' ids are the index's)
    corpus_path = root / "corpus.jsonl" if (root / "corpus.jsonl").is_file() else root
    # a title that is only the file's name is no title: two notes.txt would be one query twice
    docs = corpus_documents(corpus_path, file_name_titles=pseudo != "titles")
    skipped: Counter = Counter()
    made = make_pseudo_queries(pseudo, ((d, t, x) for d, (t, x) in docs.items()), skipped)
    why = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    if not made:
        raise InputError(f"{corpus_path}: no document gives a '{pseudo}' pseudo-query: {why or 'no documents'} "
                         "(see wb mine --help)")
    negs = {d: negative_text(pseudo, t, x) for d, (t, x) in docs.items()}
    targets = [MineTarget(q.query_id, q.text, frozenset({q.doc_id}), ((q.doc_id, q.positive),)) for q in made]
    notes = (f"{sum(skipped.values())} of {len(docs)} documents gave no query: {why}",) if skipped else ()
    return MineSource(targets, corpus_path, negs.get, notes, inputs=(corpus_path,))
