"""``wb mine`` (workbench/mine.py): hard negatives (and teacher scores) for training data."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from workbench.cli.common import (ModelOpt, WorkspaceOpt, _err_console, _parse_model_overrides, _plain, _progress_bar,
                                  _refuse_empty_instruction, _refuse_undecodable, _run_model_overrides, _serving,
                                  _termination_raises, _workspace)


def mine_cmd(
    data: Annotated[str, typer.Option("--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); with --pseudo also a folder of documents the workspace indexes.")],
    out: Annotated[str, typer.Option("--out", help="FlagEmbedding jsonl to write ('-': stdout, the summary on stderr).")],
    split: Annotated[Optional[str], typer.Option("--split", help="Qrels split whose queries are mined (default: train); not with --pseudo, which reads none.")] = None,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline that retrieves the candidates.")] = "dense",
    rank_range: Annotated[str, typer.Option("--range", help="Ranks START-END the negatives are drawn from.")] = "10-100",
    negatives: Annotated[int, typer.Option("--negatives", help="Negatives per query.")] = 7,
    margin: Annotated[float, typer.Option("--margin", help="Drop candidates scoring >= MARGIN x the lowest retrieved positive (one scoring exactly 0, the bottom of a min-max fused list, sets no threshold).")] = 0.95,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Also write teacher scores (pos_scores/neg_scores) from a reranker: 'reranker' (the configured one), runs/NAME, a folder or name.")] = None,
    first_stage_scores: Annotated[bool, typer.Option("--first-stage-scores", help="Also write the pipeline's own scores (pos_scores/neg_scores, min-max over the top END), the prior of `wb train reranker --residual`.")] = False,
    pseudo: Annotated[Optional[str], typer.Option("--pseudo", help="Make the queries from the corpus instead of reading a split: 'titles' (title -> its text, without the title's heading line; a file's name is no title, and a title two documents share is dropped) or 'conclusions' (last sentence -> the rest); the positive never contains the query itself (its words may recur in the text).")] = None,
    instruction: Annotated[Optional[str], typer.Option("--instruction", "-i", help="Preset name or free text (as wb query -i): the candidates are retrieved with it, and it is written as each row's prompt.")] = None,
    workspace: WorkspaceOpt = None,
    model: ModelOpt = None,
) -> None:
    """Mine hard negatives for a BEIR split (or for pseudo-queries made from the corpus) from the
    workspace's index (no corpus re-encoding)."""
    from workbench.mine import mine_negatives, parse_range

    _refuse_undecodable(instruction, "the instruction")
    _refuse_empty_instruction(instruction)
    lo_hi = parse_range(rank_range)
    ws = _workspace(workspace)
    ws.require()
    serve = _serving(ws, _parse_model_overrides(model))
    ws, cfg = serve.workspace, serve.config
    if teacher and teacher != "reranker":
        teacher = _run_model_overrides(_workspace(workspace), {"reranker": teacher})["reranker"]
    if split == "test" and not pseudo:
        _err_console().print(_plain("mining the test split: a model trained on these examples has seen the "
                             "queries it would be measured on (train on train, report on test)", style="yellow"),
                             highlight=False)
    # SIGTERM / SIGHUP become an exception, so that mine_negatives removes its OUT.partial
    with _progress_bar() as progress, _termination_raises():
        summary = mine_negatives(ws, data, out, split=split, pipeline=pipeline, rank_range=lo_hi,
                                 negatives=negatives, margin=margin, seed=seed, config=cfg, teacher=teacher,
                                 pseudo=pseudo, first_stage_scores=first_stage_scores, progress=progress,
                                 instruction=instruction)
    typer.echo(summary.line(), err=summary.rows_on_stdout)
