"""``wb eval`` (workbench/eval): BEIR evaluation, comparison, TREC runs, fusion/rerank tuning."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.cli.common import (ModelOpt, _each_tenth, _err_console, _parse_model_overrides, _plain,
                                  _with_interpolation, _workspace)
from workbench.errors import UsageError


DEFAULT_EVAL_PIPELINES = "bm25,dense,colbert,sparse,hybrid"


def eval_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or FlagEmbedding eval folder.")],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Comma-separated pipelines; the first is the baseline (a --compare row's is its own pipeline on the base models). With --tune: one pipeline, the modes to fuse (and +rerank to tune reranking). Default: bm25, dense, colbert, sparse, hybrid.", show_default=False)] = DEFAULT_EVAL_PIPELINES,
    split: Annotated[Optional[str], typer.Option("--split", help="Qrels split (default test; train with --tune).")] = None,
    depth: Annotated[int, typer.Option("--depth", help="Documents retrieved per query.")] = 100,
    rerank_depth: Annotated[Optional[int], typer.Option("--rerank-depth", help="How many first-stage results +rerank pipelines rerank (default from wb.toml).")] = None,
    rerank_interpolation: Annotated[Optional[float], typer.Option("--rerank-interpolation", help="Interpolation a of +rerank pipelines, final = (1-a) * reranker + a * first stage (default from wb.toml).")] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="List the queries with the largest nDCG@10 gains and losses.")] = False,
    top: Annotated[Optional[int], typer.Option("--top", help="How many gains and losses --per-query lists per pipeline (default 10; implies --per-query).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (progress as JSON lines on stderr).")] = False,
    run_dir: Annotated[Optional[str], typer.Option("--run-dir", help="Write a TREC run file per pipeline into this folder.")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Choose fusion and rerank settings on the split (default train) instead of evaluating.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N evaluated queries (quick checks).")] = None,
    workspace: Annotated[Optional[str], typer.Option("--workspace", "-w", help="Workspace for the dataset's index (default: its own, under $WB_EVAL_CACHE or $XDG_CACHE_HOME/wb/eval (~/.cache/wb/eval); $WB_WORKSPACE is not used).")] = None,
    model: ModelOpt = None,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="ROLE=NAME (repeatable): run every pipeline again with these models (e.g. dense=runs/NAME) and compare in one table.")] = None,
    run: Annotated[Optional[list[str]], typer.Option("--run", help="NAME=FILE or FILE (repeatable): score another system's TREC run file (qid Q0 docid rank score tag) beside the pipelines, compared with the first; -p '' scores the runs alone.")] = None,
) -> None:
    """Evaluate pipelines on a dataset: nDCG@10, MRR@10, R@100, MAP@100, deltas and paired t-tests."""
    import time as _time

    from workbench.eval.dataset import load_dataset

    from workbench.search.pipelines import parse_pipelines

    started = _time.perf_counter()
    if run_dir and Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise UsageError(f"--run-dir {run_dir} is a file: give a folder for the run files")
    for name, value, least in (("--top", top, 1), ("--rerank-depth", rerank_depth, 1), ("--depth", depth, 10)):
        if value is not None and value < least:
            raise UsageError(f"{name} must be at least {least}")
    from workbench.eval import runner

    if workspace is None and isinstance(ctx.obj, dict):  # `wb -w WS eval ...`: the -w before the command
        workspace = ctx.obj.get("workspace")
    if workspace is not None:
        _workspace(workspace)  # `-w ""` is refused, not read as "the eval cache"
    overrides = runner.resolve_run_names(workspace, _parse_model_overrides(model))
    compare_overrides = runner.resolve_run_names(workspace, _parse_model_overrides(compare, "--compare"))
    if compare_overrides and tune:
        raise UsageError("--compare and --tune do not go together: tune one model set at a time")
    if tune:  # said, not dropped: --tune chooses settings and writes no evaluation
        # (by name: typer carries its own click, whose ParameterSource is not click's)
        given = [flag for flag, name in (("--run-dir", "run_dir"), ("--depth", "depth"), ("--per-query", "per_query"),
                                          ("--top", "top"), ("--rerank-interpolation", "rerank_interpolation"))
                 if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        if given:
            raise UsageError(f"{', '.join(given)} and --tune do not go together: --tune chooses the fusion and "
                             "rerank settings (it writes no run files or per-query table)")
    if compare_overrides:  # a compared model that is not there fails now, not after the baseline is indexed and run
        from workbench.config import WorkspaceConfig
        from workbench.models.registry import resolve_role

        compared = WorkspaceConfig().with_models({**overrides, **compare_overrides}).models
        for role in compare_overrides:  # (joint=NAME came as dense, sparse and colbert)
            resolve_role(role, compared)
    from workbench.eval.external_runs import parse_run_options

    run_sources = parse_run_options(run)
    if run_sources and tune:
        raise UsageError("--run and --tune do not go together: --run scores a run file, --tune chooses settings")
    # -p '' with --run: the run files alone, the first is the baseline, nothing is indexed
    pipes = parse_pipelines(pipeline) if pipeline.strip() or not run_sources else []
    if not pipes and (overrides or compare_overrides):
        flags = " and ".join(f for f, v in (("--model", overrides), ("--compare", compare_overrides)) if v)
        raise UsageError(f"{flags} name models for pipelines, and -p '' runs none (it scores the run files alone)")
    if run_dir:  # one file a system, none written over a run file being evaluated: said before any work
        from workbench.eval.report import run_file_names

        names = run_file_names([p.name for p in pipes] + [s.label for s in run_sources])
        written = {(Path(run_dir) / name).resolve() for name in names.values()}
        for source in run_sources:
            if source.path.resolve() in written:
                raise UsageError(f"--run-dir {run_dir} would write over the run file {source.path} that --run "
                                 "evaluates: write the run files into another folder")
    tune_modes, tune_rerank = None, True
    if tune and pipeline != DEFAULT_EVAL_PIPELINES:  # --tune -p dense+sparse+colbert: fuse only those
        if len(pipes) != 1:
            raise UsageError("--tune takes one pipeline (the modes to fuse, e.g. -p dense+sparse+colbert)")
        tune_modes, tune_rerank = pipes[0].modes, pipes[0].rerank
    if split is not None and not split.strip():  # `--split "$SPLIT"` with SPLIT unset: not test by accident
        raise UsageError("--split is empty (an unset shell variable?): give a split name, or leave the option out")
    data = load_dataset(dataset, split or ("train" if tune else "test"))
    if limit is not None:
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        from workbench.eval.dataset import first_queries

        data = first_queries(data, limit)
    if run_dir:  # a TREC line splits on whitespace: refused before anything is indexed, as wb query --trec does
        spaced = next((i for i in (*data.queries, *sorted(data.corpus_ids)) if len(i.split()) != 1), None)
        if spaced is not None:
            raise UsageError(f"--run-dir: the id {spaced!r} holds whitespace, which a TREC run line cannot carry")
        from workbench.eval.report import check_run_dir, run_file_names

        # a folder that cannot be written is said now, not after the evaluation (its results lost)
        check_run_dir(Path(run_dir), run_file_names([p.name for p in pipes] + [s.label for s in run_sources]).values())
    err = _err_console()
    due = _each_tenth()  # a line at each tenth of a counted phase (a long encoding shows it moves)

    def progress(event: dict) -> None:
        if json_out:
            print(json.dumps(event), file=sys.stderr, flush=True)
            return
        if event.get("message"):
            err.print(_plain(f"{event['message']}", style="dim"), highlight=False)
            return
        done, total, phase = event.get("done", 0), event.get("total", 0), event["phase"]
        if not due(phase, done, total):
            return
        err.print(_plain(f"{phase}{f' {done}/{total}' if total > 0 else ''}", style="dim"), highlight=False)

    said: list[str] = []  # the report's notes too (--json's "notes", under the table)
    if "reranker" in overrides and pipes and not any(p.rerank for p in pipes):
        from workbench.variants import short_model_name

        said.append(f"--model reranker={short_model_name(overrides['reranker'])} is not used: no pipeline reranks "
                    "(add one with +rerank, e.g. -p hybrid,hybrid+rerank)")
    unused = [flag for flag, value in (("--rerank-depth", rerank_depth), ("--rerank-interpolation", rerank_interpolation))
              if value is not None]
    if unused and not tune and not any(p.rerank for p in pipes):  # said, as wb query says it
        said.append(f"{' and '.join(unused)} {'apply' if len(unused) > 1 else 'applies'} to +rerank pipelines: "
                    "ignored (no pipeline reranks)")
    if tune:
        for note in said:
            progress({"phase": "note", "done": 0, "total": 0, "message": note})
    if not pipes:
        result = runner.evaluate(data, [], depth=depth, progress=progress, runs=run_sources)
        result.notes[:0] = said
        result.wall_seconds = _time.perf_counter() - started
        _eval_output(result, data, per_query, top, run_dir, json_out, progress)
        return
    rewritten: list[str] = []  # an eval-cache wb.toml edited by hand, replaced
    ws, cfg = runner.resolve_workspace_and_config(data, workspace, overrides, notes=rewritten)
    said += rewritten
    cfg = _with_interpolation(cfg, rerank_interpolation)
    if tune:
        from workbench.eval import tune as tuning

        for note in rewritten:
            progress({"phase": "note", "done": 0, "total": 0, "message": note})

        depths = tuning.RERANK_DEPTHS
        if rerank_depth is not None:  # --tune --rerank-depth N: only rerank depths up to N (slow rerankers)
            depths = tuple(d for d in depths if d <= rerank_depth) or (rerank_depth,)
        if data.split == "test":  # (a note line among --json's progress lines)
            progress({"phase": "note", "done": 0, "total": 0, "message": "tuning on the test split: figures you "
                      "then report on it will be optimistic (tune on train, report on test)"})
        outcome = tuning.tune(data, ws, cfg, progress=progress,
                              rerankers=(cfg.models.reranker,) if tune_rerank else (),
                              rerank_depths=depths, modes=tune_modes)
        from workbench.cli.output import json_line

        if json_out:
            sys.stdout.write(json_line(outcome))
        else:
            typer.echo(tuning.summary(outcome, ws.config_path if workspace else None))
        return
    other = cfg.with_models(compare_overrides) if compare_overrides else None
    systems = runner.make_systems([p.name for p in pipes], cfg, rerank_depth, compare=other)
    # without -w every model set gets its own eval-cache workspace; with -w the base models use it
    # and other model sets its variants (as `wb query --model` does)
    result = runner.evaluate(data, systems, depth=depth, workspace=ws if workspace else None, progress=progress,
                             runs=run_sources)
    result.notes[:0] = said
    result.wall_seconds = _time.perf_counter() - started
    _eval_output(result, data, per_query, top, run_dir, json_out, progress)


def _eval_output(result, data, per_query: bool, top: int | None, run_dir: str | None, json_out: bool, progress) -> None:
    """`wb eval`'s output: the run files (``--run-dir``), then the JSON object or the table."""
    from workbench.eval import runner

    changes = runner.per_query_changes(data, result.systems, top or 10) if (per_query or top) else None
    if run_dir:
        from workbench.eval.report import write_run_files

        for path in write_run_files(result, Path(run_dir)):
            progress({"phase": f"wrote {path}", "done": 1, "total": 1, "message": f"wrote {path}"})
    from workbench.cli.output import json_line
    from workbench.eval import report

    if json_out:
        for note in report.notes(result):  # the table prints them under itself
            progress({"phase": "note", "done": 0, "total": 0, "message": note})
        sys.stdout.write(json_line(report.to_json(result, changes)))
    else:
        from workbench.cli.output import make_console

        report.render_table(result, make_console(), changes)
