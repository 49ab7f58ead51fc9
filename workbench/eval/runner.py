"""Run retrieval systems over an evaluation dataset and score them with ranx.

A *system* is ``(label, pipeline, config)``: a pipeline name as ``wb query`` takes it, run with a
workspace configuration (models, fusion, rerank). Systems with the same models share one index;
each system is compared with its ``baseline`` system: the first system's plain pipelines with the
first, a ``--compare`` system (``PIPELINE@MODEL``) with the same pipeline on the base models.

Metrics (ranx 0.3, ``depth`` documents retrieved per query; nDCG takes the qrels grade as the gain,
the others count a grade > 0 as relevant):
``ndcg@10``, ``mrr@10``, ``recall@100`` and ``map@100`` (average precision over the top 100,
divided by all relevant documents, as trec_eval's ``map_cut_100`` and BEIR's ``MAP@100``). With
``depth`` below 100 the @100 metrics only see ``depth`` documents.

Depth is in documents: every pipeline is run with ``k = depth`` exactly as ``wb query -k depth``
runs it (each mode's candidate depth is ``max(fusion.depth, k)`` chunks, widened when those hold
fewer than ``depth`` documents), so what is measured is what ``wb query`` answers, also where a
mode's candidates depend on k (ColBERT's BM25 + dense candidates over a large index, approximate
dense search).

External runs (``wb eval --run NAME=FILE``, ``eval/external_runs.py``) are scored the same way
after the systems, each compared with the first system.

Runs are scored by rank, not by the searcher's scores (``rank_scores``): ties and the two score
scales of a reranked list (reranked head, first-stage tail) would otherwise reorder documents.

Comparison: a paired two-sided Student's t-test on per-query values (``ranx.compare``,
``stat_test="student"``; deterministic, so no seed is involved) for every metric, and per-query
nDCG@10 wins/losses/ties against each system's baseline.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workbench.config import ModelsConfig, WorkspaceConfig
from workbench.errors import UsageError
from workbench.eval.dataset import EvalDataset, beir_corpus_for_index
from workbench.eval.external_runs import RunSource, judged_ids, read_run
from workbench.text import plural
from workbench.variants import index_models, short_model_name, variant_label, variant_workspace
from workbench.workspace import Workspace

METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
WIN_METRIC = "ndcg@10"
STAT_TEST = "paired t-test"  # ranx stat_test="student": two-sided paired Student's t-test

Progress = Callable[[dict], None]  # {"phase": str, "done": int, "total": int, ...}


@dataclass(frozen=True)
class System:
    label: str  # unique name in the report (the pipeline name unless two systems share it)
    pipeline: str
    config: WorkspaceConfig
    rerank_depth: int | None = None  # None: the config's [rerank] depth
    baseline: str | None = None  # the label of the system this one is compared with (None: the first system)


@dataclass
class SystemResult:
    label: str
    pipeline: str
    run: dict[str, dict[str, float]]  # query id -> {doc id: score}, best first
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> query id -> value
    delta: dict[str, float] | None = None
    p_value: dict[str, float | None] | None = None
    wins: int | None = None
    losses: int | None = None
    ties: int | None = None
    models: dict[str, str] = field(default_factory=dict)  # role -> label, for the roles the pipeline runs
    baseline: str | None = None  # the label of the system the delta, p-values and W/L/T are against
    source: str | None = None  # an external run (`--run`): the file it was read from; None: searched
    rerank: dict[str, float] | None = None  # a +rerank pipeline's {"depth": N, "interpolation": a}


@dataclass
class EvalResult:
    dataset: EvalDataset
    depth: int
    systems: list[SystemResult]
    wall_seconds: float = 0.0
    index_seconds: float = 0.0
    load_seconds: float = 0.0
    docs_indexed: int = 0
    workspaces: list[str] = field(default_factory=list)
    test: str = STAT_TEST
    notes: list[str] = field(default_factory=list)  # learnt while evaluating (a run file's gaps, ...)

    @property
    def baseline(self) -> SystemResult:
        return self.systems[0]


# -- workspaces and indexing ------------------------------------------------------------
def cache_root() -> Path:
    """The eval cache: ``$WB_EVAL_CACHE``, else ``$XDG_CACHE_HOME/wb/eval`` (``~/.cache/wb/eval``); one
    that is a file, or lies inside one, is a UsageError naming the variable."""
    from workbench.workspace import not_a_folder

    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = Path(os.environ.get("WB_EVAL_CACHE") or Path(cache) / "wb" / "eval").expanduser()
    where = not_a_folder(root.absolute())
    if where:
        var = "WB_EVAL_CACHE" if os.environ.get("WB_EVAL_CACHE") else "XDG_CACHE_HOME"
        raise UsageError(f"the eval cache {root} {where}: set {var} to a folder")
    return root


def default_workspace(dataset: EvalDataset, models: ModelsConfig) -> Workspace:
    """``<cache>/<folder>-<sha1(corpus path)[:8]>``, plus ``-<sha1(models)[:8]>`` when the models
    are not the defaults (so base and fine-tuned models keep an index each)."""
    name = f"{dataset.name}-{hashlib.sha1(str(dataset.corpus_path).encode()).hexdigest()[:8]}"
    models = index_models(models)
    if models != ModelsConfig():
        name += "-" + hashlib.sha1(repr(models).encode()).hexdigest()[:8]
    return Workspace(cache_root() / name)


def workspace_for(workspace: Workspace, config: WorkspaceConfig) -> tuple[Workspace, Workspace | None]:
    """Where ``config``'s index lives beside a given workspace: ``(workspace, None)`` when the
    indexed models are the workspace's own, else ``(its variant, workspace)`` (as ``wb query
    --model`` reads it; created with a wb.toml stating ``config``), the second being the donor whose
    vectors of unchanged modes are copied. A workspace's own index is never re-encoded with other
    models."""
    if index_models(config.models) == index_models(workspace.config().models):
        return workspace, None
    ws = variant_workspace(workspace, config.models)
    ws.root.mkdir(parents=True, exist_ok=True)
    if not ws.config_path.exists():
        from workbench.config import render_config

        from workbench.files import write_whole

        write_whole(ws.config_path, render_config(config, "model variant written by wb eval"))
    return ws, workspace


def index_dataset(dataset: EvalDataset, ws: Workspace, config: WorkspaceConfig, progress: Progress | None = None,
                  donor: Workspace | None = None):
    """Bring the workspace's index up to date with the dataset's corpus (incremental: an unchanged
    corpus encodes nothing). ``donor``: a variant's parent, whose vectors of unchanged modes are
    copied instead of encoded. Returns the IndexSummary."""
    from workbench.index.indexer import Indexer

    copy_folder = ws.eval_corpus_dir
    check_foreign_documents(dataset, ws, [dataset.corpus_path, copy_folder / "corpus.jsonl"])
    corpus = beir_corpus_for_index(dataset, copy_folder)
    ws.ensure()

    def on_progress(phase: str, done: int, total: int) -> None:
        if progress:
            progress({"phase": f"indexing: {phase}", "done": done, "total": total})

    return Indexer(ws, config, progress=on_progress, donor=donor).run(corpus)


def check_foreign_documents(dataset: EvalDataset, ws: Workspace, corpora: list[Path]) -> None:
    """Refuse a workspace that holds documents of another corpus: they would be searched too (and
    indexing the dataset there would add its documents to that workspace)."""
    if not ws.exists():
        return
    from workbench.store.manifest import Manifest

    with Manifest(ws.manifest_path) as manifest:
        ours = {d for c in corpora for d in manifest.hashes(str(Path(c).resolve()))}
        foreign = sorted(d for d in manifest.hashes() if d not in dataset.corpus_ids and d not in ours)
    if foreign:
        from workbench.errors import WorkspaceError

        shown = ", ".join(repr(d) for d in foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise WorkspaceError(
            f"workspace {ws.root} holds {len(foreign)} document(s) that are not in {dataset.corpus_path} "
            f"({shown}); evaluate in a workspace of its own (leave out -w)"
        )


# -- running ------------------------------------------------------------------------------
def _warm(searcher, pipelines: list[str]) -> None:
    """Load what the pipelines need before timing them (encoders, catalog, snapshot, reranker)."""
    from workbench.search.pipelines import parse_pipeline

    modes: set[str] = set()
    rerank = False
    for name in pipelines:
        pipe = parse_pipeline(name)
        modes |= pipe.encoded_modes(searcher.config.models.reranker)
        rerank |= pipe.rerank
    _ = searcher.catalog, searcher.snapshot
    if modes & {"dense", "colbert"}:
        _ = searcher.bundle.dense
    if "sparse" in modes:
        _ = searcher.bundle.sparse
    if rerank and searcher.config.models.reranker != "maxsim":
        _ = searcher.reranker


def run_system(searcher, system: System, dataset: EvalDataset, depth: int, progress: Progress | None = None) -> SystemResult:
    qids = dataset.query_ids
    texts = [dataset.queries[q] for q in qids]

    def on_progress(done: int, total: int) -> None:
        if progress and (done == total or done % 25 == 0):
            progress({"phase": f"querying: {system.label}", "pipeline": system.label, "done": done, "total": total})

    t0 = time.perf_counter()  # run as `wb query -k depth` runs it (see the module docstring)
    results = searcher.search_many(texts, pipeline=system.pipeline, k=depth, unit="doc", progress=on_progress,
                                   rerank_depth=system.rerank_depth)
    seconds = time.perf_counter() - t0
    run: dict[str, dict[str, float]] = {}
    for qid, res in zip(qids, results):
        run[qid] = {h.doc_id: float(h.score) for h in res.results[:depth]}  # insertion order = rank order
    from workbench.search.pipelines import parse_pipeline

    rerank = None
    if parse_pipeline(system.pipeline).rerank:
        rerank = {"depth": system.rerank_depth or system.config.rerank.depth,
                  "interpolation": system.config.rerank.interpolation}
    return SystemResult(system.label, system.pipeline, run, seconds, models=_labels(system), baseline=system.baseline,
                        rerank=rerank)


def _labels(system: System) -> dict[str, str]:
    """The model labels ("zero-shot" where it applies) of the roles ``system``'s pipeline runs."""
    from workbench.models.registry import model_labels
    from workbench.search.pipelines import parse_pipeline

    used = parse_pipeline(system.pipeline).roles
    return {role: label for role, label in model_labels(system.config.models).items() if role in used}


def rank_scores(ranking: dict[str, float]) -> dict[str, float]:
    """``{doc: n - i}`` in the given (rank) order: strictly decreasing, so every tool that sorts by
    score (ranx, trec_eval) sees exactly our ranking. The searcher's own scores can tie, and after
    ``+rerank`` the reranked head and the first-stage tail are on different scales."""
    n = len(ranking)
    return {doc: float(n - i) for i, doc in enumerate(ranking)}


NO_RESULT = "\x00wb:no-result"  # stands in for an empty ranking in ranx runs (never a document id)


def ranx_run_dict(dataset: EvalDataset, run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``run`` as ranx takes it: every evaluated query present, scored by rank (``rank_scores``); a
    query with no result holds one id no judgement names (every metric 0, as for an empty list:
    ranx cannot build a run whose queries all retrieved nothing); a document outside the corpus
    (a ``--run`` file's) counts as not relevant (``judged_ids``)."""
    return {q: judged_ids(rank_scores(run.get(q, {})), dataset.corpus_ids) or {NO_RESULT: 0.0} for q in dataset.qrels}


def score_systems(dataset: EvalDataset, results: list[SystemResult]) -> None:
    """Fill metrics, per-query values, deltas, p-values and wins/losses/ties (ranx)."""
    from ranx import Qrels, Run, compare

    qrels = Qrels({q: dict(d) for q, d in dataset.qrels.items()})
    runs = []
    for r in results:
        runs.append(Run(ranx_run_dict(dataset, r.run), name=r.label))
    import warnings

    with warnings.catch_warnings():  # identical per-query values give scipy a 0/0: p is nan, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        report = compare(qrels, runs, list(METRICS), stat_test="student", make_comparable=False)
    for r, run in zip(results, runs):
        r.metrics = {m: float(report.results[r.label][m]) for m in METRICS}
        r.per_query = {m: {q: float(v) for q, v in run.scores[m].items()} for m in METRICS}
    for r in results[1:]:
        base = baseline_of(r, results)
        r.baseline = base.label
        r.delta = {m: r.metrics[m] - base.metrics[m] for m in METRICS}
        pair = report.comparisons[base.label, r.label]
        r.p_value = {}
        for m in METRICS:
            p = float(pair[m]["p_value"])
            if math.isnan(p):  # no per-query difference at all (t undefined): no evidence of a change
                same = all(base.per_query[m][q] == r.per_query[m][q] for q in dataset.qrels)
                p = 1.0 if same else None
            r.p_value[m] = p
        wtl = report.win_tie_loss[(r.label, base.label)][WIN_METRIC]
        r.wins, r.ties, r.losses = int(wtl["W"]), int(wtl["T"]), int(wtl["L"])


def baseline_of(result: SystemResult, results: list[SystemResult]) -> SystemResult:
    """The system ``result`` is compared with: the one labelled ``result.baseline``, else the first."""
    return next((r for r in results if r.label == result.baseline), results[0])


def per_query_changes(dataset: EvalDataset, results: list[SystemResult], n: int = 10) -> list[dict]:
    """The ``n`` largest nDCG@10 gains and ``n`` largest losses of each system against its baseline
    (``vs``: that baseline's label; ``baseline``: its value)."""
    out: list[dict] = []
    for r in results[1:]:
        base_result = baseline_of(r, results)
        base = base_result.per_query[WIN_METRIC]
        values = r.per_query[WIN_METRIC]
        rows = [
            {"pipeline": r.label, "vs": base_result.label, "query_id": q, "query": dataset.queries[q],
             "baseline": base[q], "value": values[q], "delta": values[q] - base[q]}
            for q in dataset.qrels
        ]
        gains = sorted((x for x in rows if x["delta"] > 0), key=lambda x: (-x["delta"], x["query_id"]))[:n]
        losses = sorted((x for x in rows if x["delta"] < 0), key=lambda x: (x["delta"], x["query_id"]))[:n]
        out.extend(gains + losses)
    return out


def make_systems(pipelines: list[str], config: WorkspaceConfig, rerank_depth: int | None = None,
                 compare: WorkspaceConfig | None = None) -> list[System]:
    """One system per pipeline with ``config`` (compared with the first); with ``compare`` (other
    models, e.g. a fine-tune) each pipeline that runs one of the changed models once more with those
    models, labelled ``PIPELINE@MODEL`` and compared with the same pipeline on ``config``'s models."""
    from workbench.search.pipelines import parse_pipeline

    systems: list[System] = []
    seen: set[str] = set()
    for name in pipelines:
        pipe = parse_pipeline(name)
        if pipe.name in seen:
            raise UsageError(f"pipeline '{pipe.name}' is given twice")
        seen.add(pipe.name)
        systems.append(System(pipe.name, pipe.name, config, rerank_depth))
    if not systems:
        raise UsageError("no pipeline given")
    if compare is not None:
        label = compare_label(config.models, compare.models)
        if not label:
            raise UsageError("--compare names the same models the baseline uses")
        compared = [System(f"{s.pipeline}@{label}", s.pipeline, compare, rerank_depth, baseline=s.label)
                    for s in systems]
        # a pipeline that runs none of the changed models (bm25 beside a dense fine-tune) would only
        # repeat its own row: it is run once
        compared = [c for c, s in zip(compared, systems) if _labels(c) != _labels(s)]
        if not compared:
            raise UsageError(f"--compare changes no model that {', '.join(s.pipeline for s in systems)} "
                             "runs: add a pipeline that uses it (a reranker needs a +rerank pipeline)")
        systems += compared
    return systems


def compare_label(base: ModelsConfig, other: ModelsConfig) -> str:
    """A short name for the models that differ: the run name or folder name of each."""
    parts = variant_label(base, other).split(",") if variant_label(base, other) else []
    if other.reranker != base.reranker:
        parts.append(f"reranker={short_model_name(other.reranker)}")
    names = [p.split("=", 1)[1] for p in parts]
    return "+".join(dict.fromkeys(names))  # one model filling several roles (a joint run) is named once


def unindexed_relevant_note(dataset: EvalDataset, ws: Workspace) -> str:
    """What to say when relevant documents of the corpus are not in the index (the indexer skipped
    them: empty, a duplicate id): their queries cannot reach them, whatever the pipeline. "" when none."""
    from workbench.store.manifest import Manifest

    relevant = {doc for judged in dataset.qrels.values() for doc, grade in judged.items() if grade > 0}
    with Manifest(ws.manifest_path) as manifest:
        indexed = set(manifest.hashes())
    missing = sorted((relevant & dataset.corpus_ids) - indexed)
    if not missing:
        return ""
    queries = sum(1 for judged in dataset.qrels.values() if any(d in judged and judged[d] > 0 for d in missing))
    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    return (f"{plural(len(missing), 'relevant document')} of the corpus {'is' if len(missing) == 1 else 'are'} not in "
            f"the index (skipped when indexing, e.g. empty): {shown}; {plural(queries, 'query', 'queries')} "
            f"cannot reach {'it' if len(missing) == 1 else 'them'}")


def evaluate(
    dataset: EvalDataset,
    systems: list[System],
    *,
    depth: int = 100,
    workspace: Workspace | None = None,
    progress: Progress | None = None,
    runs: Sequence[RunSource] = (),
) -> EvalResult:
    """Index (incrementally), run every system, score them and the external ``runs`` (TREC files:
    read first, so a bad one fails before indexing; listed after the systems and compared with the
    first). ``workspace`` None = the eval cache."""
    from workbench.search.searcher import Searcher

    if depth < 10:
        raise UsageError("--depth must be at least 10 (nDCG@10 and MRR@10 need 10 results)")
    external = [read_run(r, dataset.query_ids, depth, dataset.corpus_ids) for r in runs]  # a bad file fails before indexing
    labels = [s.label for s in systems] + [r.label for r in external]
    if len(set(labels)) != len(labels):
        raise UsageError("two systems share a label")
    started = time.perf_counter()
    result = EvalResult(dataset=dataset, depth=depth, systems=[])
    # one index per distinct model set
    groups: dict[ModelsConfig, list[System]] = {}
    for s in systems:
        groups.setdefault(index_models(s.config.models), []).append(s)
    by_label: dict[str, SystemResult] = {}
    for models, members in groups.items():
        if workspace is None:
            ws, donor = default_workspace(dataset, models), None
            rewritten = _write_cache_config(ws, members[0].config)
            if rewritten:
                result.notes.append(rewritten)
        else:
            ws, donor = workspace_for(workspace, members[0].config)
        result.workspaces.append(str(ws.root))
        t0 = time.perf_counter()
        summary = index_dataset(dataset, ws, members[0].config, progress, donor=donor)
        result.index_seconds += time.perf_counter() - t0
        note = unindexed_relevant_note(dataset, ws)
        if note and note not in result.notes:
            result.notes.append(note)
        result.docs_indexed += summary.docs_indexed
        if progress:
            line = f"{summary.rebuilt}: {summary.line()}" if summary.rebuilt else summary.line()
            progress({"phase": "index ready", "done": 1, "total": 1, "message": line})
        searchers: dict[int, Searcher] = {}
        for s in members:
            t0 = time.perf_counter()
            key = id(s.config)
            if key not in searchers:
                searchers[key] = Searcher(ws, config=s.config)
            searcher = searchers[key]
            _warm(searcher, [s.pipeline])
            result.load_seconds += time.perf_counter() - t0
            by_label[s.label] = run_system(searcher, s, dataset, depth, progress)
    result.systems = [by_label[s.label] for s in systems]
    for ext in external:
        result.systems.append(SystemResult(ext.label, "run", ext.run, 0.0, source=str(ext.path)))
        result.notes.extend(ext.notes)  # with the report's other notes (JSON and under the table)
    if progress:
        progress({"phase": "scoring", "done": 0, "total": 1})
    score_systems(dataset, result.systems)
    if progress:
        progress({"phase": "scoring", "done": 1, "total": 1})
    result.wall_seconds = time.perf_counter() - started
    return result


def resolve_run_names(workspace: str | None, overrides: dict[str, str]) -> dict[str, str]:
    """``ROLE=runs/NAME`` -> that run's model folder, runs looked up in ``-w`` or else the current
    workspace (``$WB_WORKSPACE`` or ``./.wb``): where ``wb train`` put them."""
    if not any(v.startswith("runs/") for v in overrides.values()):
        return dict(overrides)
    from workbench.variants import resolve_model_overrides

    return resolve_model_overrides(Workspace.resolve(workspace), overrides)


def with_overrides(config: WorkspaceConfig, overrides: dict[str, str]) -> WorkspaceConfig:
    return config.with_models(overrides) if overrides else config


def resolve_workspace_and_config(dataset: EvalDataset, workspace: str | None, overrides: dict[str, str],
                                 notes: list[str] | None = None):
    """``-w`` given: that workspace and its wb.toml. Otherwise the eval cache with the current
    built-in defaults (its wb.toml is rewritten from them, so ``wb query -w`` there agrees; a
    wb.toml edited by hand there is replaced, and said in ``notes`` when given).
    ``runs/NAME`` in ``overrides`` must already be resolved (:func:`resolve_run_names`)."""
    if workspace:
        ws = Workspace.resolve(workspace)
        return ws, with_overrides(ws.config(), overrides)
    config = with_overrides(WorkspaceConfig(), overrides)
    ws = default_workspace(dataset, config.models)
    note = _write_cache_config(ws, config)
    if note and notes is not None:
        notes.append(note)
    return ws, config


CACHE_HEADER = "eval cache workspace, written by wb eval"


def _write_cache_config(ws: Workspace, config: WorkspaceConfig) -> str | None:
    """An eval-cache workspace's wb.toml states the config it is evaluated with (the built-in
    defaults text when the models are the defaults), so ``wb query -w`` there agrees. Returns a
    note when it replaced a wb.toml that wb eval did not write (edited by hand: settings there
    never count), else None."""
    from workbench.config import DEFAULT_TOML, render_config

    text = DEFAULT_TOML if config == WorkspaceConfig() else render_config(config, CACHE_HEADER)
    ws.root.mkdir(parents=True, exist_ok=True)
    old = ws.config_path.read_text(encoding="utf-8", errors="replace") if ws.config_path.exists() else None
    if old == text:
        return None
    from workbench.files import write_whole

    write_whole(ws.config_path, text)
    if old is None or _written_by_eval(old):
        return None
    return (f"{ws.config_path} held settings wb eval did not write: replaced, as on every wb eval without -w "
            "(the eval cache evaluates the built-in defaults and --model); put settings of your own in a "
            "workspace's wb.toml and pass -w")


def _written_by_eval(text: str) -> bool:
    """Whether ``text`` is a wb.toml as :func:`_write_cache_config` writes one (for some config)."""
    from workbench.config import DEFAULT_TOML, parse_config, render_config
    from workbench.errors import WbError

    if text == DEFAULT_TOML:
        return True
    try:
        return text == render_config(parse_config(text), CACHE_HEADER)
    except WbError:
        return False
