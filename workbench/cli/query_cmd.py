"""``wb query``: search the workspace, one query or a file of them; compare two pipelines or model sets."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Optional

import typer

from workbench.cli.common import (ModelOpt, WorkspaceOpt, _err_console, _parse_model_overrides, _plain, _progress_bar,
                                  _refuse_empty_instruction, _refuse_undecodable, _serving, _with_interpolation,
                                  _workspace)
from workbench.encoders.templates import INSTRUCTION_PRESETS
from workbench.errors import UsageError


def query_cmd(
    text: Annotated[Optional[str], typer.Argument(help="The query text (or --queries FILE for many).")] = None,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="dense, colbert, sparse, bm25, hybrid, or modes joined by + (dense+bm25); optionally +rerank. Two joined by a comma (hybrid,hybrid+rerank) are compared side by side, the first the baseline.")] = "hybrid",
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    instruction: Annotated[Optional[str], typer.Option("--instruction", "-i", help=f"Preset name ({', '.join(INSTRUCTION_PRESETS)}; any case) or free text, applied to the query only.")] = None,
    fusion: Annotated[Optional[str], typer.Option("--fusion", help="rrf or weighted (default from wb.toml).")] = None,
    rerank_depth: Annotated[Optional[int], typer.Option("--rerank-depth", help="How many first-stage results +rerank pipelines rerank (default from wb.toml).")] = None,
    rerank_interpolation: Annotated[Optional[float], typer.Option("--rerank-interpolation", help="final = (1-a) * reranker + a * first stage, a in [0, 1] (default from wb.toml).")] = None,
    unit: Annotated[str, typer.Option("--unit", help="doc (max over chunks) or chunk.")] = "doc",
    queries: Annotated[Optional[str], typer.Option("--queries", help="Answer every query of a file (one a line, BEIR queries.jsonl, or a .tsv: id<TAB>text or with a query header; - reads stdin), one model load for all.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (with --queries: one a line, with its query_id).")] = False,
    trec: Annotated[bool, typer.Option("--trec", help="TREC run lines on stdout: qid Q0 id rank score tag.")] = False,
    compare: Annotated[Optional[list[str]], typer.Option("--compare", help="ROLE=NAME (repeatable): answer again with these models (e.g. dense=runs/ft1) and show both side by side, rank changes marked; with -p A,B they apply to B. A dense, sparse or colbert model needs its index first: wb index --model ROLE=NAME.")] = None,
    workspace: WorkspaceOpt = None,
    model: ModelOpt = None,
) -> None:
    """Search the workspace: one query, or every query of a file (--queries); or compare two
    pipelines (-p A,B) or two sets of models (--compare ROLE=NAME) on the same queries."""
    if (text is None) == (queries is None):
        raise UsageError("give a query text or --queries FILE (not both)" if text is not None
                         else "give a query text, or --queries FILE for many")
    if json_out and trec:
        raise UsageError("--json and --trec are two output formats: choose one")
    if text is not None and not text.strip():  # before any workspace or model is opened
        raise UsageError("the query is empty")
    _refuse_undecodable(text, "the query")
    _refuse_undecodable(instruction, "the instruction")
    _refuse_empty_instruction(instruction)
    from workbench.search.pipelines import parse_pipelines

    pipes = parse_pipelines(pipeline)
    base_overrides = _parse_model_overrides(model)
    compare_overrides = _parse_model_overrides(compare, "--compare")
    comparing = len(pipes) > 1 or bool(compare_overrides)
    if len(pipes) > 2:
        raise UsageError(f"-p takes one pipeline, or two to compare (baseline,compared), not {len(pipes)}: "
                         "`wb eval -p` scores more")
    if comparing and trec:
        raise UsageError("--trec writes one system's run: compare on the terminal or with --json "
                         "(or write one run per pipeline)")
    pipe, other = pipes[0], pipes[-1]
    if len(pipes) == 2 and pipe == other and not compare_overrides:
        raise UsageError(f"-p {pipeline} names one pipeline twice: nothing to compare")
    batch = None
    if queries is not None:
        from workbench.search.query_file import read_queries

        batch = read_queries(queries)  # before any model loads: a bad file fails at once
        spaced = next((q.query_id for q in batch if trec and len(q.query_id.split()) != 1), None)
        if spaced is not None:
            raise UsageError(f"the query id {spaced!r} holds whitespace, which a TREC run line cannot carry: use --json")
    ws = _workspace(workspace)
    ws.require()
    if compare_overrides:  # before any variant is looked for: an idle model is the first thing to say
        merged = {**base_overrides, **compare_overrides}
        _refuse_idle_overrides(compare_overrides, other, merged.get("reranker", ws.config().models.reranker))
    serve = _serving(ws, base_overrides)
    cfg = _query_config(serve.config, fusion, rerank_interpolation)
    compared_cfg = cfg
    if compare_overrides:
        asked = " ".join(f"--compare {v.strip()}" for v in compare)
        compared_serve = _serving(ws, merged, asked=asked)
        compared_cfg = _query_config(compared_serve.config, fusion, rerank_interpolation)
        if pipe == other and _runs_same_models(other, cfg, compared_cfg):
            raise UsageError(f"--compare {', '.join(v.strip() for v in compare)} names the models {other.name} "
                             "already runs: nothing to compare")
    if rerank_depth is not None and rerank_depth < 1:  # wrong for any pipeline: refused before "ignored" is said
        raise UsageError("--rerank-depth must be at least 1")
    reranks = any(p.rerank for p in pipes)
    unused = [flag for flag, value in (("--rerank-depth", rerank_depth), ("--rerank-interpolation", rerank_interpolation))
              if value is not None and not reranks]
    if not reranks and "reranker" in base_overrides:
        unused.append("--model reranker=...")
    if unused:  # said, not refused: a script may pass them to every pipeline it loops over
        verb = "apply" if len(unused) > 1 else "applies"
        _err_console().print(_plain(f"{' and '.join(unused)} {verb} to +rerank pipelines: ignored for "
                             f"{pipeline}", style="yellow"), highlight=False)
    from workbench.search.searcher import Searcher, one_shot_backend

    # one backend for every searcher of the process (torch when any side's reranker imports it): the
    # two sides share encoders and score alike
    backend = "torch" if any(one_shot_backend(p, c.models.reranker, many=batch is not None) == "torch"
                             for p, c in ((pipe, cfg), (other, compared_cfg))) else "numpy"

    def searcher_for(serve_, cfg_):
        # an edited wb.toml does not stop searching
        searcher_ = Searcher(serve_.workspace, config=cfg_, serve_stale=True, backend=backend)
        if searcher_.serving_note:
            _err_console().print(_plain(f"{searcher_.serving_note}", style="yellow"), highlight=False)
        return searcher_

    searcher = searcher_for(serve, cfg)
    sides = [(searcher, pipe, serve.notes)]
    if compare_overrides:
        compared = searcher_for(compared_serve, compared_cfg)
        if compared_serve.workspace.root == serve.workspace.root:  # one index (a reranker differs): one set of encoders
            compared.bundle = searcher.bundle
        sides.append((compared, other, compared_serve.notes))
    elif comparing:
        sides.append((searcher, other, serve.notes))
    options = dict(k=k, instruction=instruction, unit=unit, rerank_depth=rerank_depth)
    labels = _side_labels(pipe, other, model, compare) if comparing else None

    def answer(texts: list[str]) -> list:
        """Each query's QueryResult, or its Comparison when two systems answer."""
        answers = []
        for side_searcher, side_pipe, notes in sides:
            results = side_searcher.search_many(texts, pipeline=side_pipe.name, **options)
            for r in results:  # each answer carries the notes, as a single query's does
                r.note = "; ".join(n for n in (*notes, r.note) if n)
            answers.append(results)
        if not comparing:
            return answers[0]
        from workbench.search.compare import Comparison

        return [Comparison(left, right, labels) for left, right in zip(*answers)]

    if trec:  # refused before the first line is written, not when a hit happens to carry such an id
        _refuse_untrec_ids(sides, unit)
    try:
        if batch is None:
            _write_answers([("1", answer([text])[0])], json_out, trec, batch=False)
            return
        # a bar on a terminal's stderr while the answers go to a file or pipe (on a terminal they
        # show the progress themselves; a stderr in a log stays quiet)
        bar = _progress_bar(piped_lines=False) if not sys.stdout.isatty() else contextlib.nullcontext()
        with bar as progress:
            for start in range(0, len(batch), QUERY_BATCH):  # answers stream out a slice at a time
                part = batch[start:start + QUERY_BATCH]
                _write_answers(list(zip([q.query_id for q in part], answer([q.text for q in part]))),
                               json_out, trec, batch=True)
                if progress:
                    progress("querying", start + len(part), len(batch))
    except BrokenPipeError:  # `wb query ... | head`: the reader left; stop quietly
        from workbench.cli.output import READER_LEFT, quiet_stream

        quiet_stream(sys.stdout)
        raise typer.Exit(READER_LEFT)


def _query_config(cfg, fusion: str | None, interpolation: float | None):
    """``cfg`` with `wb query`'s --fusion and --rerank-interpolation applied."""
    if fusion is not None:
        if fusion not in ("rrf", "weighted"):
            raise UsageError(f"--fusion must be 'rrf' or 'weighted', not '{fusion}'")
        from dataclasses import replace

        cfg = replace(cfg, fusion=replace(cfg.fusion, method=fusion))
    return _with_interpolation(cfg, interpolation)


def _refuse_idle_overrides(overrides: dict[str, str], pipe, reranker: str) -> None:
    """UsageError when none of ``--compare``'s roles takes part in ``pipe`` (the two answers would be
    the same). The MaxSim reranker (``reranker``, the one the compared side runs) reads the ColBERT
    role's token vectors."""
    used = pipe.model_roles(reranker)
    if not set(overrides) & used:
        roles = ", ".join(sorted(overrides))
        hint = f"{pipe.name}+rerank" if "reranker" in overrides and not pipe.rerank else "hybrid"
        raise UsageError(f"--compare {roles}=... changes nothing for {pipe.name}, which runs no {roles} model: "
                         f"compare a pipeline that does (-p {hint})")


def _runs_same_models(pipe, cfg, other_cfg) -> bool:
    """Whether ``pipe`` runs the same model in every role under both configs: the two answers would
    be one."""
    from workbench.models.registry import ROLES

    roles = (pipe.model_roles(cfg.models.reranker) | pipe.model_roles(other_cfg.models.reranker)) & set(ROLES)
    return all(getattr(cfg.models, r) == getattr(other_cfg.models, r) for r in roles)


def _side_labels(pipe, other, model: list[str] | None, compare: list[str] | None) -> tuple[str, str]:
    """Column names of a comparison: each pipeline with the models it runs that differ from the
    workspace's (``-m`` for both; the compared side's ``--compare`` replaces a ``-m`` of its role)."""
    from workbench.variants import parse_model_overrides

    compared_roles = set(parse_model_overrides(compare, "--compare"))
    base = [v.strip() for v in model or []]
    kept = [v for v in base if not set(parse_model_overrides([v])) <= compared_roles]
    given = kept + [v.strip() for v in compare or []]
    return (pipe.name + (f" ({', '.join(base)})" if base else ""),
            other.name + (f" ({', '.join(given)})" if given else ""))


QUERY_BATCH = 32  # queries encoded together by `wb query --queries`, and answers written at once


def _refuse_untrec_ids(sides, unit: str) -> None:
    """UsageError when an index answering ``--trec`` holds a document (``unit`` chunk: chunk) id with
    whitespace, which a TREC run line cannot carry (BEIR ``_id``s may hold spaces)."""
    for side_searcher, _pipe, _notes in sides:
        catalog = side_searcher.catalog
        ids = catalog.chunk_ids if unit == "chunk" else catalog.doc_ids
        bad = next((ident for ident in dict.fromkeys(ids) if len(str(ident).split()) != 1), None)
        if bad is not None:
            raise UsageError(f"the index holds a document id with whitespace ({bad!r}), which a TREC run line "
                             "cannot carry: use --json")


def _write_answers(answers, json_out: bool, trec: bool, batch: bool) -> None:
    """Write (query id, QueryResult or Comparison) pairs to stdout: JSON (``batch``: a line each with
    its ``query_id``), TREC run lines (results only), or the console rendering."""
    from workbench.cli.output import json_line

    if json_out:
        for qid, result in answers:
            row = {"query_id": qid, **result.to_json()} if batch else result.to_json()
            sys.stdout.write(json_line(row))
    elif trec:
        for qid, result in answers:
            tag = "wb-" + result.pipeline.replace(" ", "")
            for hit in result.results:
                ident = hit.chunk_id if result.unit == "chunk" else hit.doc_id
                if len(ident.split()) != 1:
                    raise UsageError(f"the document id {ident!r} holds whitespace, which a TREC run line "
                                     "cannot carry: use --json")
                sys.stdout.write(f"{qid} Q0 {ident} {hit.rank} {float(hit.score)!r} {tag}\n")
    else:
        from workbench.cli.output import make_console, render_comparison, render_result
        from workbench.search.compare import Comparison

        console = make_console()
        for qid, result in answers:
            if batch:
                console.print(_plain(f"query {qid}", style="dim"))
            if isinstance(result, Comparison):
                render_comparison(result, console)
            else:
                render_result(result, console)
    sys.stdout.flush()
