"""Starting a training run: detached (its own process, under $WB_TRAIN_LAUNCHER) or in the
foreground (its output teed into the run's log); shared by `wb train` and `wb runs stop --finish`."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

import typer

from workbench.cli.common import _err_console, _plain
from workbench.errors import UsageError, WbError


def _spawn_run(run, resume: bool) -> int:
    """Start ``python -m trainers.cli run RUN_DIR`` in its own session; its output goes to the run log.
    A resume is started under ``launch_claim``: of two started at once, the second is refused."""
    if resume:
        from trainers.runs import launch_claim

        with launch_claim(run):
            return _spawn_child(run, resume)
    return _spawn_child(run, resume)


def _launcher_command() -> list[str]:
    """What starts a detached run's module: ``$WB_TRAIN_LAUNCHER`` (e.g. "accelerate launch
    --num_processes 8" or "torchrun --nproc_per_node 8": the same module data-parallel) with its
    program found now (the run starts in its own folder, where a relative path would name nothing),
    else this Python (one process). UsageError, one line, for a value that is no command line
    (an unbalanced quote) or whose program is not there: `wb train --detach` asks before the run
    folder exists."""
    import shutil

    value = os.environ.get("WB_TRAIN_LAUNCHER", "")
    try:
        launcher = shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"$WB_TRAIN_LAUNCHER is not a valid command line ({exc}): {value!r}") from None
    if not launcher:
        return [sys.executable]
    program = shutil.which(launcher[0])
    if program is None:
        raise UsageError(f"could not start {launcher[0]}: no such program (check $WB_TRAIN_LAUNCHER)")
    return [os.path.abspath(program), *launcher[1:]]


def _spawn_child(run, resume: bool) -> int:
    """Start the run's child process (see :func:`_spawn_run`). When it cannot start, a resumed run
    stays what it was (the reason recorded) and a new one, which never started, is removed: the
    error (TrainingError; UsageError for the launcher) says why."""
    import subprocess

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the checkout holding workbench/ and trainers/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        env.setdefault(key, value)
    from workbench.errors import TrainingError

    def failed(why: str, error: type[WbError] = TrainingError) -> WbError:
        if resume:  # the run stays what it was (stopped, died, ...)
            from trainers.loop import restore_before_resume

            restore_before_resume(run, why)
        else:  # it never started: its folder goes, the name is free again
            from trainers.runs import discard_unstarted

            run.write_status(state="failed", error=why, message=why, pid=None)
            discard_unstarted(run)
        return error(f"run {run.name}: {why}")

    try:
        launcher = _launcher_command()
    except UsageError as exc:
        raise failed(str(exc), UsageError) from None
    cmd = launcher + ["-m", "trainers.cli", "run", str(run.path)] + (["--resume"] if resume else [])
    resume_of = run.resume_snapshot() if resume else None
    before = run.status_seq()
    try:
        log = open(run.log_path, "a")
    except OSError as exc:
        raise failed(f"cannot write its log {run.log_path}: {exc.strerror or exc}") from None
    try:
        with log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=str(run.path))
    except OSError as exc:  # a launcher that cannot be run (not executable, gone since it was found)
        launched = os.environ.get("WB_TRAIN_LAUNCHER", "").strip()
        hint = " (check $WB_TRAIN_LAUNCHER)" if launched else ""
        raise failed(f"could not start {launcher[0]}: {exc.strerror or exc}{hint}",
                     UsageError if launched else TrainingError) from None
    # the run writes its own state as it starts: a failure it wrote already is never overwritten
    # (a resume keeps what the run was in resume_of: a child that fails before training puts it back)
    run.write_status(unless_changed_since=before, state="running", pid=proc.pid,
                     **({"resume_of": resume_of} if resume else {}))
    return proc.pid


class _Tee:
    """stdout written to ``path`` too (``echo=False``: to ``path`` only). A console that goes away
    (`wb train ... | head`: EPIPE; a closed terminal: EIO) ends the echo, never the run: the log file
    keeps every line."""

    def __init__(self, stream, path: Path, echo: bool = True) -> None:
        self.stream, self.file, self.echo = stream, open(path, "a", encoding="utf-8"), echo

    def write(self, text: str) -> int:
        self.file.write(text)
        if self.echo:
            try:
                self.stream.write(text)
            except OSError as exc:
                self._reader_left(exc)
        return len(text)

    def flush(self) -> None:
        self.file.flush()
        if self.echo:
            try:
                self.stream.flush()
            except OSError as exc:
                self._reader_left(exc)

    def _reader_left(self, exc: OSError) -> None:
        """Stop echoing when the console is gone (EPIPE, EIO); any other OSError is raised."""
        import errno

        from workbench.cli.output import quiet_stream

        if exc.errno not in (errno.EPIPE, errno.EIO):
            raise exc
        self.echo = False
        try:
            quiet_stream(self.stream)  # later writes (the summary) too
        except (OSError, ValueError):  # no file descriptor to point elsewhere
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _tee_stdout(path: Path, echo: bool = True):
    tee = _Tee(sys.stdout, path, echo)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.stream
        tee.file.close()


def _run_flag(run) -> str:
    """``Workspace.flag`` of the workspace holding ``run`` (``<ws>/runs/NAME``), for command hints."""
    from workbench.workspace import Workspace

    return Workspace(run.path.parent.parent).flag


def _run_training(run, resume: bool, detach: bool, finish_now: bool = False) -> None:
    """Train ``run`` in the foreground (its log teed into log.txt) or detached; ``finish_now``: see
    ``trainers.loop.run_training`` (foreground only). A new run refused before its first step (bad
    input the checks before its folder could not see: exit 2) leaves no folder behind."""
    if detach:
        pid = _spawn_run(run, resume)
        typer.echo(run.name)
        _err_console().print(_plain(f"run {run.name} {'resumed' if resume else 'started'} in the background "
                             f"(pid {pid}); log {run.log_path}; "
                             f"`wb runs{_run_flag(run)}` to watch, `wb runs stop {shlex.quote(run.name)}{_run_flag(run)}` to stop", style="dim"), highlight=False)
        return
    from workbench.errors import TrainingError
    from trainers.loop import train_run

    try:
        # a foreground run's log also lands in log.txt (wb runs, the TUI); --finish of a stopped run
        # says only its outcome here (its resume reads the data again: those lines go to the log)
        with _tee_stdout(run.log_path, echo=not finish_now):
            status = train_run(run, resume=resume, finish_now=finish_now)
    except WbError as exc:
        if not resume and exc.exit_code == 2:
            from trainers.runs import discard_unstarted

            discard_unstarted(run)  # only a run that trained no step and saved nothing
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise TrainingError(f"run {run.name} failed: {type(exc).__name__}: {exc} (details in {run.status_path})") from exc
    state = status.get("state")
    if state == "stopped":
        typer.echo(f"run {run.name} stopped at step {status.get('step')}: `wb train resume {shlex.quote(run.name)}{_run_flag(run)}` continues it")
        stops = [e for e in run.events() if e.get("event") == "stopped"]
        if stops and stops[-1].get("why") == "Ctrl-C":
            raise typer.Exit(130)  # interrupted here (a `wb runs stop` from elsewhere ends 0)
    elif finish_now:
        typer.echo(f"run {run.name} {state} with the model of its last complete checkpoint, step "
                   f"{status.get('step')} of {status.get('total_steps')}: model in {run.model_dir}")
    else:
        typer.echo(f"run {run.name} {state}: model in {run.model_dir}")
