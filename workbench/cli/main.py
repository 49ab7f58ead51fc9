"""``wb``: index, query, evaluate and train from the terminal; bare ``wb`` opens the workbench TUI.

Every WbError becomes one line on stderr and its exit code; nothing prints a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from workbench.cli.common import WorkspaceOpt, _workspace
from workbench.cli.eval_cmd import eval_cmd
from workbench.cli.index_cmd import index_cmd
from workbench.cli.mine_cmd import mine_cmd
from workbench.cli.models_cmd import models_app
from workbench.cli.query_cmd import query_cmd
from workbench.cli.runs_cmd import runs_app
from workbench.cli.train_cmd import train_app
from workbench.errors import UsageError, WbError

app = typer.Typer(
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="wb: the retrieval workbench. Index a corpus three ways, query it, compare pipelines, train models.",
)


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context, workspace: WorkspaceOpt = None,
         version: Annotated[bool, typer.Option("--version", help="Print wb's version and exit.")] = False) -> None:
    """Without a command, open the workbench TUI."""
    if version:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            typer.echo(f"wb {package_version('wb')}")
        except PackageNotFoundError:
            typer.echo("wb (not installed as a package)")
        raise typer.Exit(0)
    if workspace is not None:
        _workspace(workspace)  # an empty -w is refused as by every command (never ./.wb by accident)
    if ctx.invoked_subcommand is not None and workspace is not None:
        # `wb -w WS index ...`: the command's own -w (if given) still wins; WB_WORKSPACE is its default
        # (wb eval, which never reads WB_WORKSPACE, takes it from ctx.obj)
        os.environ["WB_WORKSPACE"] = workspace
        ctx.obj = {"workspace": workspace}
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script, a pipe, cron: no screen to draw on
            raise UsageError("the workbench TUI needs a terminal; in scripts use a command (wb index, wb query, "
                             "wb eval, ...; wb --help lists them)")
        try:
            from workbench.tui.app import run_app
        except ImportError:
            typer.echo(ctx.get_help())
            return
        run_app(workspace)


# `wb --help` lists the commands in this order, then the groups in theirs
app.command("index")(index_cmd)
app.command("query")(query_cmd)
app.command("eval")(eval_cmd)
app.command("mine", short_help="Mine hard negatives for a BEIR split (or pseudo-queries) from the workspace's index.")(mine_cmd)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.add_typer(runs_app, name="runs")


def _stdout_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(1), os.stat(os.devnull))
    except OSError:
        return False


def main() -> None:
    """Console entry point: run the app, map WbError to one line and its exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" / "Writing model shards" bars
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("LANCEDB_LOG", "error")
    import warnings

    # ranx's numba kernels warn on their own uint64 -> int64 casts (a line on stderr at each `wb eval`)
    warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")
    try:
        # standalone_mode=False: typer raises usage errors instead of printing its own box, and
        # returns the exit code of typer.Exit (130 for Ctrl-C) instead of calling sys.exit.
        from workbench.encoders.device import check_environment

        check_environment()  # a bad WB_DTYPE, WB_QUERY_THREADS, WB_QUERY_BACKEND: one line before anything runs
        command = typer.main.get_command(app)
        if {"--help", "-h"} & set(sys.argv[1:]):
            from workbench.cli.help_text import polish_help

            polish_help(command, train="train" in sys.argv[1:])
        was_devnull = _stdout_is_devnull()
        try:
            code = command(standalone_mode=False)
        except SystemExit as exc:
            # click (`wb models | head -1`) and rich (`wb --help | head -1`) meet a reader that left
            # with a quiet exit 1 (click wraps stdout, rich points it at /dev/null): say 141, as
            # `wb query` does (a shell's SIGPIPE status), so a script tells it from a failure
            if exc.code == 1 and (type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper"
                                  or (not was_devnull and _stdout_is_devnull())):
                from workbench.cli.output import READER_LEFT

                exc.code = READER_LEFT
            raise
    except WbError as exc:
        print(f"wb: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        code = 130
    except typer.Abort:  # Ctrl-D at a prompt
        code = 130
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # usage errors: typer >= 0.29 carries its own click
        print(f"wb: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # anything unexpected: one line, no traceback
        if os.environ.get("WB_DEBUG"):
            raise
        print(f"wb: internal error: {type(exc).__name__}: {exc} (set WB_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
    if code == 130:
        print("wb: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
