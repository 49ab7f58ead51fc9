"""Other systems' rankings for `wb eval --run NAME=FILE`: TREC run files scored beside the pipelines.

A run file holds ``qid Q0 docid rank score tag`` lines (trec_eval's format, whitespace-separated;
what `wb query --queries --trec`, `wb eval --run-dir`, Pyserini and most toolkits write). Contract:

- a query's documents are ranked by score, highest first; equal scores keep the order of the
  file's rank column (trec_eval would break them by docno instead); the first ``depth`` documents
  count, as for a pipeline;
- only the evaluated queries count (the split's, or the first N with ``--limit``): other queries
  of the file are ignored, and an evaluated query the file does not answer scores 0; documents
  that are not in the corpus count as not relevant (each case is said in a note);
- a file that is unreadable, not UTF-8 (a leading BOM is dropped), has a line without six fields,
  with a rank or score that is not a number, or a document listed twice for one query, or answers
  none of the evaluated queries is an ``InputError`` naming the file (and line); a NAME that is
  empty, holds ``,`` ``@`` ``=`` or spaces, or is a pipeline name is a ``UsageError`` (a row of the
  report must say whether it was searched or read). ``--run FILE`` alone is named after the file
  (its name without the suffix; with it when that is a pipeline's name or taken, e.g. the
  ``bm25.trec`` `wb eval --run-dir` wrote; then with its folder's name).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import InputError, UsageError
from workbench.text import file_lines

_NAME = re.compile(r"^[^\s,@=]+$")
OUTSIDE_CORPUS = "\x00wb:outside:"  # prefixed to a run's document that is not in the corpus (no judgement names it)


def judged_ids(ranking: dict[str, float], corpus_ids: frozenset[str]) -> dict[str, float]:
    """``ranking`` as it is scored: a document outside ``corpus_ids`` (when known) keeps its rank
    and score under an id no judgement names (not relevant). Only for scoring: a run keeps the
    file's own ids (what ``--run-dir`` writes and the report shows)."""
    if not corpus_ids:
        return ranking
    return {(doc if doc in corpus_ids else OUTSIDE_CORPUS + doc): score for doc, score in ranking.items()}


@dataclass(frozen=True)
class RunSource:
    """One ``--run`` option: the report's label for it and the file."""

    label: str
    path: Path


@dataclass
class ExternalRun:
    """A read run file: ``run`` maps each evaluated query it answers to {doc id: score}, best first."""

    label: str
    path: Path
    run: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)


def parse_run_options(values: list[str] | None) -> list[RunSource]:
    """``["bm25-prod=runs/prod.trec", "other.trec"]`` -> RunSources (a bare path is labelled with its
    file name without the suffix)."""
    from workbench.search.pipelines import parse_pipeline

    sources: list[RunSource] = []
    for value in values or []:
        label, sep, path = value.partition("=")
        if not sep:
            label, path = _file_label(Path(value), {s.label for s in sources}), value
        if not path:
            raise UsageError(f"--run {value}: give NAME=FILE (a TREC run file)")
        if not _NAME.match(label):
            raise UsageError(f"--run {value}: the name '{label}' must be one word without , @ or =")
        try:
            parse_pipeline(label)
        except UsageError:  # not a pipeline name: a good label
            pass
        else:
            raise UsageError(f"--run {value}: '{label}' is a pipeline's name; call the run something else")
        if any(s.label == label for s in sources):
            raise UsageError(f"--run: the name '{label}' is given twice")
        sources.append(RunSource(label, Path(path).expanduser().absolute()))
    return sources


def _file_label(path: Path, taken: set[str]) -> str:
    """The label of a bare ``--run FILE``: its stem (``prod`` for runs/prod.trec); its file name when
    the stem is a pipeline's name or taken (``bm25.trec``: the files `wb eval --run-dir` writes are
    named after pipelines), then its folder and file name (``runs1/bm25.trec``)."""
    from workbench.search.pipelines import parse_pipeline

    for label in (path.stem, path.name, f"{path.parent.name}/{path.name}"):
        if label in taken or not _NAME.match(label):
            continue
        try:
            parse_pipeline(label)
        except UsageError:
            return label
    return path.stem  # said by the checks that follow (a name given twice, or a pipeline's)


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: the {what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: the {what} '{text}' is not a finite number")
    return value


def read_run(source: RunSource, evaluated: list[str], depth: int, corpus_ids: frozenset[str] = frozenset()) -> ExternalRun:
    """Read ``source`` for the queries ``evaluated`` (contract: module docstring); ``corpus_ids``
    (when known) for the note on documents outside the corpus."""
    try:
        text = source.path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source.path}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {source.path}: {exc.strerror or exc}") from exc
    wanted = set(evaluated)
    rows: dict[str, list[tuple[float, float, str]]] = {}
    first_line: dict[tuple[str, str], int] = {}
    others: set[str] = set()
    for number, line in enumerate(file_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source.path}:{number}"
        if len(fields) != 6:
            raise InputError(f"{where}: a run line has six fields (qid Q0 docid rank score tag), "
                             f"this one has {len(fields)}")
        qid, _q0, doc, rank, score, _tag = fields
        rank_value, score_value = _number(rank, "rank", where), _number(score, "score", where)
        if (qid, doc) in first_line:
            raise InputError(f"{where}: document {doc!r} is listed twice for query {qid!r} "
                             f"(first on line {first_line[qid, doc]})")
        first_line[qid, doc] = number
        if qid not in wanted:
            others.add(qid)
            continue
        rows.setdefault(qid, []).append((-score_value, rank_value, doc))
    if not rows:
        examples = ", ".join(repr(q) for q in sorted(others)[:3])
        raise InputError(f"{source.path}: answers none of the {len(wanted)} evaluated queries "
                         f"(it names {len(others)} other{'s' if len(others) != 1 else ''}"
                         f"{': ' + examples if examples else ''})")
    run: dict[str, dict[str, float]] = {}
    for qid in evaluated:
        if qid in rows:
            ranked = sorted(rows[qid], key=lambda r: (r[0], r[1]))[:depth]
            run[qid] = {doc: -neg_score for neg_score, _rank, doc in ranked}
    listed = {doc for ranked in run.values() for doc in ranked}  # the file's own ids (scored: ``judged_ids``)
    notes = []
    missing = len(wanted) - len(run)
    if missing:
        notes.append(f"run {source.label}: {missing} of the {len(wanted)} evaluated queries are not in "
                     f"{source.path.name} and score 0")
    deepest = max(len(ranked) for ranked in run.values())
    if deepest < min(depth, 100, len(corpus_ids) or 100):  # the @100 metrics see only what the run lists
        notes.append(f"run {source.label} lists at most {deepest} documents a query: R@100 and MAP@100 "
                     f"only see those")
    if others:
        notes.append(f"run {source.label}: {len(others)} quer{'y' if len(others) == 1 else 'ies'} of "
                     f"{source.path.name} {'is' if len(others) == 1 else 'are'} not among the evaluated ones (ignored)")
    if corpus_ids:
        outside = len(listed - corpus_ids)
        if outside == len(listed):
            notes.append(f"run {source.label}: none of its {len(listed)} documents is in the corpus (another id "
                         "scheme? chunk ids?), so it scores 0")
        elif outside:
            notes.append(f"run {source.label}: {outside} of its {len(listed)} documents {'is' if outside == 1 else 'are'} "
                         "not in the corpus "
                         "(they count as not relevant)")
    return ExternalRun(source.label, source.path, run, notes)
