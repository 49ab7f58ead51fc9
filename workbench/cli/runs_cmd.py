"""``wb runs``: list training runs; stop, remove and average (soup) them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.cli.common import WorkspaceOpt, _run_model_overrides, _workspace
from workbench.cli.run_launch import _run_flag, _run_training
from workbench.errors import UsageError, WorkspaceError


runs_app = typer.Typer(help="List training runs; `wb runs stop NAME` stops one, `wb runs soup NAME A B` averages finished ones, `wb runs remove NAME` deletes one.", invoke_without_command=True)



# status.json keys that only the run folder's own writers read (lock counter, pid identity, what a
# failed resume puts back): not part of `wb runs --json`
_STATUS_BOOKKEEPING = ("seq", "pid_start", "resume_of")


def _fmt_metric(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per run on stdout.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """List the training runs: name, state, step/total, loss (the mean of the last 20 steps), best
    metric and the base model's."""
    if ctx.invoked_subcommand is not None:
        return
    from trainers.runs import list_runs

    ws = _workspace(workspace)
    if not ws.root.is_dir():  # a mistyped -w lists nothing silently otherwise
        raise WorkspaceError(f"no workspace at {ws.root}")
    runs = list_runs(ws.root)
    if json_out:
        for run in runs:  # a key the run does not have (yet) is left out, never null; bookkeeping too
            print(json.dumps({"name": run.name, **{k: v for k, v in run.status().items()
                                                    if v is not None and k not in _STATUS_BOOKKEEPING}}))
        return
    if not runs:
        typer.echo(f"no training runs in {ws.root / 'runs'}")
        return
    typer.echo(f"{'name':<24} {'state':<9} {'step':>11} {'loss':>8}  best (metric, at step)")
    for run in runs:
        s = run.status()
        step = f"{s.get('step') or 0}/{s.get('total_steps') or '?'}"
        if s.get("state") == "finished" and not s.get("step") and not s.get("total_steps"):
            step = "-"  # made without training steps (a soup)
        best = _fmt_metric(s.get("best_metric"))
        if s.get("metric") and best != "-":  # the runs' metrics differ (nDCG@10, a reranker's MRR)
            best += f" ({s['metric']}" + (f", step {s['best_step']})" if s.get("best_step") else ")")
        if s.get("base_metric") is not None:  # the base model's, measured before the first step
            best += f"; base {_fmt_metric(s['base_metric'])}"
        loss = s.get("loss_recent", s.get("loss"))  # the mean of its last 20 steps (one batch's jumps about)
        typer.echo(f"{run.name:<24} {s.get('state', '?'):<9} {step:>11} {_fmt_metric(loss):>8}  {best}")
        if s.get("state") == "finished" and s.get("early"):
            typer.echo(f"  finished early (asked to): the model of step {s.get('model_step', s.get('step'))}")
        if s.get("resume_error") and s.get("state") != "running":
            reason = " ".join(str(s["resume_error"]).split())
            typer.echo(f"  its last resume failed: {reason[:140]}{'…' if len(reason) > 140 else ''}")
        if s.get("state") == "failed" and s.get("message"):
            reason = " ".join(str(s["message"]).split())
            typer.echo(f"  {reason[:160]}{'…' if len(reason) > 160 else ''}")
        if s.get("state") in ("died", "failed"):  # its step counts past its last checkpoint: say where resume starts
            checkpoint = run.latest_checkpoint()
            at = int(checkpoint.name.split("-")[1]) if checkpoint else 0
            if at != (s.get("step") or 0):
                typer.echo(f"  `wb train resume {shlex.quote(run.name)}{_run_flag(run)}` continues from step {at} "
                           f"({'its last checkpoint' if checkpoint else 'no checkpoint yet'})")


@runs_app.command("stop", short_help="Ask a run to stop at the end of its step (it checkpoints), or with --finish save its model and end.")
def runs_stop(
    name: Annotated[str, typer.Argument(help="The run to stop.")],
    wait: Annotated[Optional[float], typer.Option(
        "--wait", help="Seconds to wait for it to checkpoint and stop (default: 60, or two of its steps when they are longer; 0: ask and return at once).")] = None,
    finish: Annotated[bool, typer.Option(
        "--finish", help="Early stop: save the model as it is at the end of this step and end the run finished (no resume); on a stopped run, the model of its last checkpoint.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ask a run to stop: it checkpoints at the end of its current step (resume later), or with
    --finish saves its model there and ends finished. --finish on a stopped run (or one that died or
    failed) saves the model of its last complete checkpoint, here and now."""
    from trainers.runs import TERMINAL, get_run

    if wait is not None and not wait >= 0:  # 0: ask and return at once
        raise UsageError(f"--wait must be 0 or more seconds, not {wait:g}")
    ws = _workspace(workspace)
    run = get_run(ws.root, name)
    status = run.status()
    if finish and status.get("state") in ("stopped", "died", "failed"):
        _run_training(run, resume=True, detach=False, finish_now=True)
        return
    if status.get("state") in TERMINAL:
        state = status.get("state")
        typer.echo(f"run {name} has {state} already" if state in ("finished", "failed", "died")
                   else f"run {name} is {state} already")
        return
    run.request_stop(finish=finish)
    if status.get("state") == "unknown":  # no status.json: no process to wait on (the stop file stays)
        typer.echo(f"run {name} is in an unknown state (no readable {run.status_path.name}): stop asked in case "
                   f"it still trains; `wb runs` shows its state")
        return
    if wait == 0:
        typer.echo(f"run {name}: stop asked (it {'finishes' if finish else 'checkpoints and stops'} at the end of "
                   f"its current step); `wb runs` shows when it has")
        return
    if wait is None:
        wait = run.stop_wait_seconds()
    final = run.wait_terminal(wait)
    if final is not None:
        where = f": model in {final['model']}" if final.get("state") == "finished" and final.get("model") else ""
        typer.echo(f"run {name} {final.get('state')} at step {final.get('step')}{where}")
        return
    from workbench.errors import TrainingError

    raise TrainingError(f"run {name} did not stop within {wait:.0f} s (asked to: it stops at the end of its current step; "
                        f"`wb runs stop {shlex.quote(name)}{ws.flag} --wait SECONDS` waits longer)")


def _roles_served_by(ws, run_path: Path) -> list[str]:
    """The roles of the workspace's wb.toml whose model folder (``FOLDER@L`` for a layer-wise
    reranker's cutoff) lies in ``run_path``."""
    import re

    models = ws.config().models
    roles = []
    for role in ("dense", "colbert", "sparse", "reranker"):
        target = Path(re.sub(r"@\d+$", "", str(getattr(models, role)))).expanduser()
        if target.is_dir():
            target = target.resolve()
            if target == run_path or run_path in target.parents:
                roles.append(role)
    return roles


@runs_app.command("remove", short_help="Delete a run that is not training: its folder, checkpoints and model; its name is free again.")
def runs_remove(
    names: Annotated[list[str], typer.Argument(help="The runs to delete.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Delete runs (their config, logs, checkpoints and model) and free their names. A run that is
    training (stop it first) or whose model the workspace's wb.toml serves is refused, before any
    run named is deleted. Variant indexes built with a run's model are left as they are."""
    from trainers.runs import get_run, remove_run

    ws = _workspace(workspace)
    for name in names:
        run = get_run(ws.root, name)
        state = run.status().get("state")
        if state in ("running", "queued"):  # said for every run before any is deleted (remove_run checks again)
            raise UsageError(f"run {name} is {state}: `wb runs stop {shlex.quote(name)}{ws.flag}` stops it, then remove it")
        roles = _roles_served_by(ws, run.path.resolve())
        if roles:
            raise UsageError(f"run {name} is the {' and '.join(roles)} model of {ws.config_path}: "
                             "point that role at another model first")
    for name in dict.fromkeys(names):
        remove_run(ws.root, name)
        typer.echo(f"removed run {name}")


@runs_app.command("soup", short_help="Average several fine-tuned models into one finished run (a model soup).")
def runs_soup(
    name: Annotated[str, typer.Argument(help="Name of the new run that holds the averaged model.")],
    models: Annotated[list[str], typer.Argument(help="Two or more finished runs or model folders, fine-tuned from one starting point: runs/NAME (or runs/NAME/model) is always the run; a bare NAME is the folder of that name when one exists, else the run NAME.")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="Comma-separated weight per model (normalised; default uniform).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Average the weights of several fine-tuned models into one (a model soup): a finished run
    usable as --model ROLE=runs/NAME."""
    from pathlib import Path

    from trainers.runs import runs_dir
    from trainers.soup import soup_run

    ws = _workspace(workspace)
    folders = []
    for item in models:
        if item.startswith("runs/") or (not Path(item).exists() and (runs_dir(ws.root) / item).exists()):
            ref = item if item.startswith("runs/") else f"runs/{item}"
            folders.append(Path(_run_model_overrides(ws, {"m": ref})["m"]))
        elif Path(item).is_dir():
            folders.append(Path(item))
        else:
            raise UsageError(f"'{item}' is neither a run in {runs_dir(ws.root)} nor a model folder")
    mix = None
    if weights:
        try:
            mix = [float(w) for w in weights.split(",")]
        except ValueError:
            raise UsageError(f"--weights takes numbers separated by commas, not '{weights}'") from None
    typer.echo(soup_run(ws.root, name, folders, mix).line())
