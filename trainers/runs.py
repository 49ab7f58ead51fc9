"""A training run is a folder: resolved config, status, event log, text log, checkpoints, model.

    <workspace>/runs/<name>/
      config.json        the resolved configuration (all a resume or a detached child needs)
      status.json        state, pid, step/total, last loss, best metric, error (atomic writes)
      events.jsonl       one JSON object per logged step / evaluation / lifecycle event
      log.txt            the child's stdout and stderr
      stop               present when a stop was requested
      checkpoints/step-N/  accelerate state (model, optimizer, scheduler, RNG) + sampler.json
      best-weights.pt    keep_best only, until the run finishes: the best-evaluated step's weights
      model/             the final model (keep_best: the best step's), sentence-transformers / HF layout

States: ``queued`` → ``running`` → ``finished`` | ``stopped`` | ``failed``; a run whose pid is gone
while it says ``running`` is reported as ``died``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from workbench.errors import InputError, UsageError, WorkspaceError
from workbench.files import write_whole

TERMINAL = ("finished", "stopped", "failed", "died")
FINISH = "finish"  # the stop file's text that asks for an early finish instead of a stop


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @property
    def stop_path(self) -> Path:
        return self.path / "stop"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def best_weights_path(self) -> Path:
        return self.path / "best-weights.pt"

    def exists(self) -> bool:
        return self.config_path.exists()

    def read_config(self) -> dict:
        """The run's config.json; InputError, one line naming the file, when it cannot be read or
        is not a JSON object (a damaged run, refused as bad input, not a crash)."""
        try:
            config = json.loads(self.config_path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {self.config_path}: {getattr(exc, 'strerror', None) or exc}") from None
        except ValueError as exc:
            raise InputError(f"{self.config_path} is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise InputError(f"{self.config_path} is not a JSON object (found {type(config).__name__})")
        return config

    def status(self) -> dict:
        data = self._raw_status()
        if not data:
            return {"state": "unknown"}
        # queued: its creator (the foreground run, or the launcher until its child took over) was
        # killed before training began
        if data.get("state") in ("running", "queued") and not _alive(data.get("pid"), data.get("pid_start")):
            data["state"] = "died"
        return data

    def write_status(self, *, unless_changed_since: int | None = None, **fields) -> bool:
        """Merge ``fields`` into status.json (written whole, renamed in). The read-modify-write holds
        an exclusive lock on ``.status.lock``, so two processes (the launcher and its run) never lose
        each other's fields; each write counts up ``seq``. With ``unless_changed_since`` (a ``seq``
        read earlier, :meth:`status_seq`), nothing is written when another write came since (the run
        has said something itself). Returns whether it wrote."""
        import fcntl

        with open(self.path / ".status.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._raw_status()
            seq = current.get("seq") if isinstance(current.get("seq"), int) else 0
            if unless_changed_since is not None and seq != unless_changed_since:
                return False
            if "pid" in fields:  # with its start time: a later process given the same pid is not the run's
                fields["pid_start"] = process_start(fields["pid"]) if fields["pid"] else None
            current.update(fields, updated=time.time(), seq=seq + 1)
            write_whole(self.status_path, json.dumps(current))
            return True

    def _raw_status(self) -> dict:
        try:
            data = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def resume_snapshot(self) -> dict:
        """What a resume that fails before training puts back: the ``resume_of`` its launcher saved,
        else the state, error and message status.json holds (its state as written: a died run's is
        ``running``, read as died again once no pid is recorded)."""
        raw = self._raw_status()
        if isinstance(raw.get("resume_of"), dict):
            return raw["resume_of"]
        return {key: raw.get(key) for key in ("state", "error", "message")}

    def status_seq(self) -> int:
        """How many times status.json has been written (its ``seq``; 0 when there is none)."""
        seq = self._raw_status().get("seq")
        return seq if isinstance(seq, int) else 0

    def append_event(self, event: dict) -> None:
        """Append ``event`` as one JSON line; after a line a kill cut short (no newline at the end)
        it starts a new line, so the cut line alone is lost, never the event written after it."""
        with open(self.events_path, "a+b") as f:
            cut = f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and f.read(1) != b"\n"
            f.write((("\n" if cut else "") + json.dumps(event) + "\n").encode())
            f.flush()

    def events(self) -> list[dict]:
        """The run's events in order, as the run went: a run killed after logging some steps and
        before their checkpoint resumes from an earlier one and logs those steps (and evaluations)
        again; the first logging of every step from there on (a branch the weights no longer hold)
        is left out, as the TUI's curve leaves it out."""
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if isinstance(event, dict):
                out.append(event)
        return drop_replayed(out)

    def step_seconds(self, last: int = 5) -> float | None:
        """The median wall time of the run's last ``last`` steps (from its ``step`` events), or None
        before it has two timed steps. A stop lands at the end of a step, so this sizes a stop's wait."""
        times = [float(e["time"]) for e in self.events() if e.get("event") == "step" and "time" in e]
        gaps = sorted(b - a for a, b in zip(times[-last - 1 : -1], times[-last:]) if b >= a)
        return gaps[len(gaps) // 2] if gaps else None

    def stop_wait_seconds(self, floor: float = 60.0) -> float:
        """How long ``wb runs stop`` waits by default: ``floor`` or, when a step takes longer, two
        steps and a checkpoint's margin (``2 * step_seconds + 30``)."""
        step = self.step_seconds()
        return max(floor, 2 * step + 30) if step else floor

    def wait_terminal(self, timeout: float, poll: float = 0.5, cancelled=lambda: False) -> dict | None:
        """Poll ``status()`` until the run is in a terminal state (returns that status), ``timeout``
        seconds pass or ``cancelled()`` says so (returns None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cancelled():
            status = self.status()
            if status.get("state") in TERMINAL:
                return status
            time.sleep(poll)
        return None

    def request_stop(self, finish: bool = False) -> None:
        """Ask the run to stop: the stop file (read at the end of each step) and SIGTERM to its
        process when it has one. Returns at once; the run checkpoints and ends ``stopped`` in its
        own time or, with ``finish``, saves its model as it is and ends ``finished`` (early stop)."""
        import signal

        write_whole(self.stop_path, FINISH + "\n" if finish else "")  # never read half-written
        status = self.status()  # a pid that is not the run's process any more (died) is never signalled
        pid = status.get("pid") if status.get("state") in ("running", "queued") else None
        if pid:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError, ValueError):
                pass

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.exists():
            return None
        done = [p for p in self.checkpoints.iterdir() if p.name.startswith("step-") and (p / "sampler.json").exists()]
        return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _proc_stat(pid) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (which may hold spaces): state first, start
    time at index 19; None where /proc cannot say."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except (OSError, ValueError):
        return None


def process_start(pid) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None where
    /proc cannot say: with the pid it names one process, even after the pid is reused."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _alive(pid, started: int | None = None) -> bool:
    """Whether the run's process ``pid`` runs: it exists, is no zombie and, when its start time was
    recorded (``started``), started then (else the pid was reused by another process)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if not fields:
        return True
    if fields[0] == "Z":  # a zombie is not alive
        return False
    return started is None or len(fields) < 20 or fields[19] == str(started)


@contextmanager
def training_lock(run: "RunFolder") -> Iterator[None]:
    """Held by the process that trains ``run`` (rank 0 under data parallel) while it does: a second
    `wb train resume` (or --finish) of the same run is refused (UsageError) instead of training it
    twice at once. The lock goes with the process, whatever ends it."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    fh = open(run.path / ".train.lock", "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"run {run.name} is being trained by another process right now: "
                             f"`wb runs` shows it, `wb runs stop {shlex.quote(run.name)}` stops it") from None
        yield
    finally:
        fh.close()


def runs_dir(workspace_root: Path) -> Path:
    return workspace_root / "runs"


def list_runs(workspace_root: Path) -> list[RunFolder]:
    """The runs of a workspace, oldest first (a hidden folder, e.g. one being removed, is none)."""
    folder = runs_dir(workspace_root)
    if not folder.exists():
        return []
    runs = [RunFolder(p) for p in folder.iterdir() if not p.name.startswith(".") and (p / "config.json").exists()]
    return sorted(runs, key=lambda r: r.config_path.stat().st_mtime)


def get_run(workspace_root: Path, name: str) -> RunFolder:
    """The run ``runs/NAME``; UsageError when there is none (a name no folder can have included)."""
    run = RunFolder(runs_dir(workspace_root) / name)
    try:
        found = bool(name) and "/" not in name and run.exists()
    except OSError:  # a name too long for a file name
        found = False
    if not found:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise UsageError(f"no run named {shown!r} in {runs_dir(workspace_root)}")
    return run


NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def check_run_name(name: str) -> str:
    """``name`` when it can be a run's folder under ``runs/`` (no path separator or control character,
    not hidden, at most :data:`NAME_MAX` bytes), else :class:`UsageError` (one line: a newline in the
    name is shown escaped)."""
    if not name or "/" in name or "\\" in name or name.startswith((".", "-")) or name != name.strip():
        # (a leading "-" reads as an option: `wb runs stop --help` could never name it)
        raise UsageError(f"bad run name {name!r}: use a plain folder name (not starting with '.' or '-')")
    if not name.isprintable():  # a newline or other control character would cut `wb runs` lines and logs
        raise UsageError(f"bad run name {name!r}: control characters (newline, tab, ...) are not allowed")
    if len(os.fsencode(name)) > NAME_MAX:
        raise UsageError(f"bad run name '{name[:40]}...': {len(os.fsencode(name))} bytes, at most {NAME_MAX} "
                         "make a folder name")
    return name


def drop_replayed(events: list[dict]) -> list[dict]:
    """``events`` without the steps and evaluations a resume ran again: when a ``step`` event's step
    is not past the last one kept, every kept step/eval event from that step on is dropped first."""
    kept: list[dict] = []
    last_step = None
    for e in events:
        if e.get("event") == "step" and isinstance(e.get("step"), int):
            step = e["step"]
            if last_step is not None and step <= last_step:
                kept = [k for k in kept if not (k.get("event") in ("step", "eval")
                                                and isinstance(k.get("step"), int) and k["step"] >= step)]
            last_step = step
        kept.append(e)
    return kept


def failed_before_training(run: RunFolder) -> bool:
    """True for a run that failed before its first step and saved nothing (bad data, a base that
    would not load): its folder holds no work to lose, so its name may be taken again."""
    status = run.status()
    return (status.get("state") in ("failed", "died") and not status.get("step") and run.latest_checkpoint() is None
            and not run.model_dir.exists())


@contextmanager
def _runs_lock(folder: Path) -> Iterator[None]:
    """The runs folder's lock (``.new-run.lock``): held to create, start or remove a run, so that two
    commands never both take one name or both start one run."""
    with open(folder / ".new-run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def discard_unstarted(run: RunFolder) -> bool:
    """Remove ``run``'s folder when the run failed before training (:func:`failed_before_training`):
    a refusal found only once the folder existed (the launcher, the base's weights) leaves no run
    behind, as one found before does. A run that trained a step or saved anything is kept. Under the
    lock of :func:`new_run`; True when the folder went."""
    try:
        with _runs_lock(run.path.parent):
            if not (run.exists() and failed_before_training(run)):
                return False
            hidden = run.path.parent / f"{REMOVED_PREFIX}{os.getpid()}-{time.time_ns()}"
            os.rename(run.path, hidden)  # gone from `wb runs` at once, as remove_run does
        shutil.rmtree(hidden, ignore_errors=True)
    except OSError:  # a read-only workspace: the failed run stays, its name free all the same
        return False
    return True


def new_run(workspace_root: Path, name: str, config_json: str,
            taken: str = "pick another --out, or --resume {name}") -> RunFolder:
    """A new run folder ``runs/NAME`` in state ``queued``, created atomically (the name is reserved
    before any work starts). A name already taken is refused (UsageError ending in ``taken``), except
    by a run that failed before training (:func:`failed_before_training`), which is replaced."""
    run = RunFolder(runs_dir(workspace_root) / check_run_name(name))
    try:
        run.path.parent.mkdir(parents=True, exist_ok=True)
        # one creator at a time: two `wb train --out NAME` started together must not both take the name
        with _runs_lock(run.path.parent):
            if run.exists() and failed_before_training(run):
                shutil.rmtree(run.path)
            if run.exists():
                raise UsageError(f"a run named '{name}' exists already: {taken.format(name=shlex.quote(name))}")
            run.path.mkdir(parents=True, exist_ok=True)
            write_whole(run.config_path, config_json)  # the run's existence marker: whole or absent
            # the creating process's pid: killed before training begins, the run reads as died (its name free)
            run.write_status(state="queued", step=0, total_steps=None, pid=os.getpid())
    except OSError as exc:  # a read-only workspace, no room, runs/ that is a file
        raise WorkspaceError(f"cannot create the run folder {run.path}: {exc.strerror or exc}") from None
    return run


@contextmanager
def launch_claim(run: RunFolder) -> Iterator[None]:
    """Held while a launcher checks that ``run`` is not training and starts it (``wb train resume
    --detach``): the runs folder's creation lock, so a second launcher of the same run waits, then
    finds it running and is refused (UsageError) instead of starting a second child that the
    training lock refuses after its launcher said "resumed"."""
    with _runs_lock(run.path.parent):
        state = run.status().get("state")
        if state in ("running", "queued"):
            raise UsageError(f"run {run.name} is {state} already: `wb runs` shows it, "
                             f"`wb runs stop {shlex.quote(run.name)}` stops it")
        yield


REMOVED_PREFIX = ".removed-"  # a run being deleted is renamed to this first: gone from `wb runs` at once


def remove_run(workspace_root: Path, name: str) -> RunFolder:
    """Delete the run ``runs/NAME`` (config, logs, checkpoints, model) and free its name.

    Refused (UsageError) while a process trains it or it is queued with its creator alive: stop it
    first. Under the lock of :func:`new_run`, so no run of the same name is created meanwhile. The
    folder is first renamed to a hidden ``.removed-PID-TIME`` (one atomic step: a kill leaves the
    run either whole or gone from ``wb runs``), then deleted; a hidden folder a killed removal left
    is deleted by the next one. Returns the run as it was (its path no longer exists)."""
    run = get_run(workspace_root, name)
    parent = run.path.parent
    try:
        with _runs_lock(parent):
            state = run.status().get("state")
            with open(run.path / ".train.lock", "a") as train:
                try:
                    fcntl.flock(train, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    busy = state in ("running", "queued")  # a launcher between creating and training it
                except BlockingIOError:
                    busy = True
                if busy:
                    raise UsageError(f"run {name} is {state if state in ('running', 'queued') else 'being trained'}: "
                                     f"`wb runs stop {shlex.quote(name)}` stops it, then remove it")
                hidden = parent / f"{REMOVED_PREFIX}{os.getpid()}-{time.time_ns()}"
                os.rename(run.path, hidden)
        for left in [hidden, *parent.glob(f"{REMOVED_PREFIX}*")]:
            shutil.rmtree(left, ignore_errors=True)
    except OSError as exc:  # a read-only workspace
        raise WorkspaceError(f"cannot remove the run folder {run.path}: {exc.strerror or exc}") from None
    return run


@contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """Write a folder whole or not at all: yields an empty ``<out>.partial`` folder (a stale one from a
    killed run is removed first); when the block ends without an exception it replaces ``out``. A
    reader of ``out`` never sees a half-written model."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
