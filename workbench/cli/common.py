"""Helpers the `wb` commands share: options, workspace and model resolution, console output,
progress, signals."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Callable, Optional

import typer

from workbench.errors import UsageError


WorkspaceOpt = Annotated[
    Optional[str], typer.Option("--workspace", "-w", help="Workspace folder (default $WB_WORKSPACE or ./.wb; the bare `wb` TUI may reopen the last one, see README).")
]
ModelOpt = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Override a role for this command: ROLE=NAME (e.g. dense=runs/ft1; joint=runs/J fills dense, sparse and colbert)."),
]


def _plain(text: str, style: str = ""):
    """``text`` as a rich Text in ``style``: what it holds (paths, model names, ids) is printed as
    written, never read as markup (a folder named ``a[/b]c`` crashed the output)."""
    from rich.text import Text

    return Text(text, style=style)


def _err_console():
    from workbench.cli.output import make_console

    return make_console(stderr=True)


def _parse_model_overrides(values: list[str] | None, flag: str = "--model") -> dict[str, str]:
    from workbench.variants import parse_model_overrides

    return parse_model_overrides(values, flag)


def _workspace(path: str | None):
    from workbench.workspace import Workspace

    if path is not None and not path.strip():  # `-w "$WS"` with WS unset: never ./.wb by accident
        raise UsageError("--workspace is empty (an unset shell variable?): give a folder, or leave the option out")
    return Workspace.resolve(path)


def _serving(ws, overrides: dict[str, str], flags_hint: str = "", asked: str = ""):
    """The workspace + config that serve ``--model`` overrides ({role: name}, parsed) (a variant index
    when they change the indexed models; see workbench/variants.py). Errors in one line when that
    variant is not built (naming ``asked``, the flags as the user wrote them, when given; the
    ``wb index`` to run gets ``flags_hint`` and the indexed roles' ``--model`` flags). What the user
    should know about that index (a rebuild not finished, a variant older than the workspace's
    documents) is printed on stderr and kept in ``serve.notes`` (``wb query --json``'s note)."""
    from workbench.index.unfinished import resume_command
    from workbench.variants import require_variant, roots_to_reindex, serving, staleness

    serve = serving(ws, overrides)
    notes = []
    pending = roots_to_reindex(serve.workspace)
    if pending:  # a variant's is finished by its own `wb index --model ...`
        notes.append(f"a settings change rebuilt this index and {', '.join(pending)} "
                     f"{'is' if len(pending) == 1 else 'are'} not indexed again yet: "
                     f"{resume_command(serve.workspace, None)} finishes it")
    if serve.is_variant:
        # the reranker is no part of an index: `wb index --model reranker=...` would build nothing
        flags = " ".join(f"--model {r}={n}" for r, n in overrides.items() if r != "reranker")
        index_flags = (flags_hint + " " + flags).strip()
        require_variant(ws, serve, asked or index_flags, index_flags)
        lag = staleness(ws, serve)
        if lag == "older":
            notes.append(f"the {serve.label} index is older than the workspace's documents: "
                         f"`wb index {flags}{ws.flag}` brings it up to date")
        elif lag:
            notes.append(f"the {serve.label} index differs from the workspace's documents (indexed at another "
                         f"time than the workspace's own index): `wb index{ws.flag}` and `wb index {flags}{ws.flag}` bring both "
                         "up to date")
    for note in notes:
        _err_console().print(_plain(f"{note}", style="yellow"), highlight=False)
    from dataclasses import replace

    return replace(serve, notes=notes)


def _with_interpolation(cfg, value: float | None):
    """``cfg`` with ``[rerank] interpolation`` replaced (``--rerank-interpolation``)."""
    if value is None:
        return cfg
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--rerank-interpolation must be between 0 and 1, not {value}")
    from dataclasses import replace

    return replace(cfg, rerank=replace(cfg.rerank, interpolation=float(value)))


def _run_model_overrides(ws, overrides: dict[str, str]) -> dict[str, str]:
    from workbench.variants import resolve_model_overrides

    return resolve_model_overrides(ws, overrides)


def _refuse_empty_instruction(value: str | None, flag: str = "-i") -> None:
    """``-i ""`` is refused as ``-i "  "`` is (resolve_instruction takes "" as no instruction, for
    callers that hold one as a string): an empty shell variable is a mistake to say, not to hide.
    ``flag``: the option's name in the message (`wb train embedder --instruction`)."""
    if value is not None and not value.strip():
        raise UsageError(f"the instruction is empty (leave {flag} out, or give {flag} none, for no instruction)")


def _refuse_undecodable(value: str | None, what: str) -> None:
    """UsageError when a text argument is not text in the locale's encoding (Python keeps its bytes
    as lone surrogates, which no tokenizer or JSON writer takes). Paths are not checked: a file
    name may be any bytes."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(value).decode("utf-8", "backslashreplace")
        raise UsageError(f"{what} '{shown}' is not valid UTF-8 text") from None


@contextlib.contextmanager
def _termination_raises():
    """Within the block, SIGTERM and SIGHUP raise SystemExit(128 + signal) after ``wb: terminated``
    on stderr (the exit status a shell gives a process the signal killed), so that ``finally`` and
    ``except BaseException`` clean-ups run; the previous handlers come back after it. In a thread
    other than the main one it does nothing (Python lets only the main thread set handlers)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        print("wb: terminated", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _progress_bar(rate_of: tuple[str, str] | None = None, piped_lines: bool = True):
    """A ``progress(phase, done, total)`` callback for the engine's long loops: a transient bar on a
    terminal's stderr (``rate_of = (phase, unit)`` adds that phase's rate, e.g. encoding chunks/s);
    piped, a line on stderr at each tenth of a phase (so a logged run shows it is alive), or None
    with ``piped_lines=False``. Whatever the loop writes to stdout meanwhile goes to stdout (the bar
    does not capture it), so data written to a file or pipe stays there."""
    if sys.stderr.isatty():
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        # a phase of unknown size (total 0: reading files, loading models) pulses, without counts
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=_err_console(),
                      transient=True, redirect_stdout=False) as bar:
            task = bar.add_task("starting", total=None, rate="", count="")
            started = [time.perf_counter()]

            def update(phase: str, done: int, total: int) -> None:
                rate = ""
                if rate_of and phase == rate_of[0]:
                    if done == 0:
                        started[0] = time.perf_counter()
                    rate = f"{done / max(1e-9, time.perf_counter() - started[0]):.1f} {rate_of[1]}" if done else ""
                count = f"{done:,}/{total:,} {100 * done // total:>3}%" if total else ""
                bar.update(task, description=phase, completed=done, total=total or None, rate=rate, count=count)

            yield update
        return
    if not piped_lines:
        yield None
        return

    due = _each_tenth()

    def line(phase: str, done: int, total: int) -> None:
        if total and due(phase, done, total):
            print(f"{phase} {done}/{total}", file=sys.stderr, flush=True)

    yield line


def _each_tenth() -> Callable[[str, int, int], bool]:
    """A filter for logged progress: ``due(phase, done, total)`` is true at a counted phase's first
    call, at each new tenth of it (whatever steps ``done`` moves by) and at its end; always for a
    phase without a count (total 0)."""
    said: dict[str, int] = {}

    def due(phase: str, done: int, total: int) -> bool:
        if total <= 0:
            return True
        tenth = 10 * done // total
        if said.get(phase) == tenth:
            return False
        said[phase] = tenth
        return True

    return due
