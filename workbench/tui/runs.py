"""The Runs screen: the workspace's training runs (``<workspace>/runs/*``), followed live.

The list shows each run's state, step/total, last loss and best evaluation metric from its
``status.json``; the selected run shows its loss, learning rate and throughput over the steps
(Sparklines fed from ``events.jsonl``, read incrementally: only the bytes appended since the last
refresh), its evaluation events, GPU memory (the events' peak, plus ``nvidia-smi`` when the run is
on a GPU and the tool is on PATH), the tail of ``log.txt``, and the error of a failed run. A one
second timer refreshes it while the tab is shown; nothing here imports torch.

Keys: ``n`` opens the launch form (``workbench/tui/launch.py``: the trainer first, then its
fields, all from one table; it runs ``wb train TRAINER ... --detach -w WORKSPACE`` and shows the
command's one-line error when it fails), ``s`` stops a run as ``wb runs stop`` does (the stop
file plus SIGTERM; a worker waits for it), ``R`` runs ``wb train resume NAME --detach``, ``c``
opens Search with the base models on the left and the fine-tune in the role its trainer fills on
the right (``dense=``, ``colbert=``, ``sparse=runs/NAME``: the fine-tune's variant index, built
first in a worker when it is missing or older than the workspace; ``reranker=runs/NAME``: no new
index, ``hybrid`` on the left and ``hybrid+rerank`` with the run's reranker on the right), and
``e`` fills the Evaluate form to compare base and fine-tune (``wb eval --compare ROLE=runs/NAME``
with the trainer's pipelines, e.g. ``hybrid,hybrid+rerank`` for a reranker), and ``d`` pressed
twice on one run deletes it (``wb runs remove NAME``).

Commands run through ``RunsPane.spawner`` (``argv -> (exit code, stdout, stderr)``), which tests
replace to check the argv without training.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, ProgressBar, Sparkline, Static

from trainers.runs import TERMINAL, RunFolder, list_runs, runs_dir
from workbench.errors import WbError
from workbench.tui.common import Palette, hides_typed_key, short
from workbench.tui.launch import (  # noqa: F401  (spawn, error_line, suggest_name: re-exported for callers)
    FormDraft,
    LaunchScreen,
    Spawner,
    TrainerSpec,
    compare_overrides,
    compare_pipelines,
    error_line,
    spawn,
    suggest_name,
    trainer_spec,
    wb_command,
)
from workbench.variants import INDEX_ROLES

REFRESH_S = 1.0
LOG_LINES = 15
GPU_EVERY_S = 5.0
COLUMNS = [("name", "name", 16), ("state", "state", 8), (Text("step", justify="right"), "step", 9),
           (Text("loss", justify="right"), "loss", 7), (Text("best", justify="right"), "best", 7),
           ("base model", "base", 18), ("data", "data", 14)]  # fits 100 columns

# ---------------------------------------------------------------------------------------------
# Reading a run folder without blocking: status, appended events, the log's tail
# ---------------------------------------------------------------------------------------------
class EventTail:
    """``events.jsonl`` read incrementally: each ``poll`` parses only what was appended since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reset()

    def reset(self) -> None:
        self.offset = 0
        self.partial = b""
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.eps: list[float] = []
        self.times: list[float] = []
        self.gpu_gb = 0.0
        self.epoch: float | None = None
        self.evals: list[tuple[int, str, float]] = []  # (step, metric name, value)
        self.started: dict = {}
        self.last: dict = {}  # the last lifecycle event (started, resumed, stopped, failed, finished)

    def poll(self) -> bool:
        """Read what was appended; True when something new was parsed."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        size, identity = st.st_size, (st.st_dev, st.st_ino)
        # rewritten from scratch, or another file (a run folder replaced under the same name)
        if size < self.offset or (self.identity is not None and identity != self.identity):
            self.reset()
        self.identity = identity
        if size == self.offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # an unfinished last line waits for its end
        changed = False
        for raw in lines:
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # a line cut by a kill
            if isinstance(event, dict):
                self._add(event)
                changed = True
        return changed

    def _add(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "step":
            try:
                step, loss = int(e["step"]), float(e["loss"])
            except (KeyError, TypeError, ValueError):
                return
            if self.steps and step <= self.steps[-1]:  # resumed from an earlier checkpoint: drop the
                # steps (and evaluations) it runs again, as trainers.runs.drop_replayed does
                keep = next((i for i, s in enumerate(self.steps) if s >= step), len(self.steps))
                for series in (self.steps, self.loss, self.lr, self.eps, self.times):
                    del series[keep:]
                self.evals = [ev for ev in self.evals if ev[0] < step]
            self.steps.append(step)
            self.loss.append(loss)
            self.lr.append(float(e.get("lr") or 0.0))
            self.eps.append(float(e.get("examples_per_s") or 0.0))
            self.times.append(float(e.get("time") or 0.0))
            self.gpu_gb = max(self.gpu_gb, float(e.get("gpu_mem_gb") or 0.0))
            if e.get("epoch") is not None:
                self.epoch = float(e["epoch"])
        elif kind == "eval":
            for key, value in e.items():
                if key not in ("event", "step", "time", "base") and isinstance(value, (int, float)):
                    self.evals.append((int(e.get("step") or 0), key, float(value)))
        else:
            if kind == "started":
                self.started = e
            self.last = e

    def seconds_per_step(self) -> float | None:
        """Mean wall time of the recent steps (for the ETA)."""
        n = min(len(self.times), 20)
        if n < 2 or self.steps[-1] == self.steps[-n]:
            return None
        return max(0.0, (self.times[-1] - self.times[-n]) / (self.steps[-1] - self.steps[-n]))


def tail_lines(path: Path, n: int = LOG_LINES, max_bytes: int = 32768) -> list[str]:
    """The last ``n`` lines of a text file (a progress bar's carriage returns keep its last state)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is cut
    out = [ln.rsplit("\r", 1)[-1].rstrip() for ln in lines]
    return [ln for ln in out if ln][-n:]


def gpu_now() -> str | None:
    """``nvidia-smi``'s utilisation and memory of each GPU, one line (None without the tool)."""
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,utilization.gpu,memory.used,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    parts = []
    for line in out.stdout.strip().splitlines():
        try:
            i, util, used, total = [x.strip() for x in line.split(",")]
            parts.append(f"GPU{i} {util}% · {float(used) / 1024:.1f}/{float(total) / 1024:.1f} GB")
        except ValueError:
            continue
    return "  ".join(parts) or None


class LogBox(Static):
    """The selected run's log.txt: as many of its newest lines as fit, fitted again whenever the box
    changes height (the boxes beside it grow and shrink), so its newest line is never the one cut."""

    def on_resize(self) -> None:
        pane = next((a for a in self.ancestors if isinstance(a, RunsPane)), None)
        if pane is not None:
            pane.call_after_refresh(pane._render_detail)


@dataclass
class RunRow:
    name: str
    status: dict
    config: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        return str(self.status.get("state") or "unknown")

    @property
    def has_model(self) -> bool:
        return self.state == "finished"

    @property
    def trainer(self) -> str:
        """The trainer whose role this run's model fills (a soup: its ingredients')."""
        trainer = str(self.config.get("trainer") or "embedder")
        if trainer == "soup":
            return str(self.config.get("ingredient_trainer") or trainer)
        return trainer

    @property
    def spec(self) -> TrainerSpec | None:
        """The launch table's entry for this run's trainer (None: a trainer the table does not know)."""
        return trainer_spec(self.trainer)


def _num(value, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "–"


def data_label(data) -> str:
    """A run's ``data`` for a narrow column: the file or folder name; several datasets joined by ``+``."""
    from trainers.data.datasets import dataset_specs

    try:
        return " + ".join(Path(spec.path).name for spec in dataset_specs(data))
    except WbError:  # a hand-edited config.json: shown as it is, never a crash of the list
        return str(data)


def config_line(trainer: str, c: dict, device: str | None) -> str:
    """``reranker · base ce-t · data hn.jsonl · listwise · batch 4 · lr 4e-05 · group 8 · device cpu``:
    what a (non-soup) run trains, from its config.json."""
    parts = [trainer, f"base {_model_name(str(c.get('base') or ''))}"]
    data = c.get("data") or "?"
    parts.append("data " + (f"unsupervised ({Path(str(c.get('corpus') or '?')).name})"
                            if data == "unsupervised" else data_label(data)))
    if c.get("loss"):
        parts.append(str(c["loss"]))
    if c.get("residual"):
        parts.append(f"residual {c['residual']:g}")
    if c.get("lora"):
        parts.append("LoRA")
    parts.append(f"batch {c.get('batch_size', '?')} · lr {c.get('lr', '?')}")
    for key, label in (("negatives_per_query", "negatives"), ("group_size", "group")):
        if c.get(key) is not None:
            parts.append(f"{label} {c[key]}")
    if device:
        parts.append(f"device {device}")
    return " · ".join(parts)


def soup_line(config: dict) -> str:
    """``soup of ce4 ×0.5 + ce5 ×0.5 (reranker)`` for a `wb runs soup` run's config."""
    from trainers.soup import describe

    made_by = config.get("ingredient_trainer")
    return describe(config.get("ingredients") or [], config.get("weights") or []) + (f" ({made_by})" if made_by else "")


def _model_name(value: str) -> str:
    from workbench.variants import short_model_name

    return short_model_name(value) if value else "?"


REMOVE_CONFIRM_S = 5.0  # a second d within this deletes the run the first one named


# ---------------------------------------------------------------------------------------------
# The pane
# ---------------------------------------------------------------------------------------------
class RunsPane(Vertical):
    BINDINGS = [
        Binding("n", "new_run", "New run", tooltip="Open the form that starts a training run (wb train … --detach)"),
        Binding("s", "stop", "Stop", tooltip="Stop the selected run: it checkpoints, R resumes it (wb runs stop)"),
        Binding("f", "finish", "Finish now",
                tooltip="Early stop: the selected run saves its model at the end of this step and ends finished "
                        "(wb runs stop --finish)"),
        Binding("R", "resume", "Resume", tooltip="Resume the selected stopped run (wb train resume NAME --detach)"),
        Binding("c", "compare", "Compare in Search",
                tooltip="Search with the base models (left) and the finished run's model in its role (right; "
                        "a reranker: hybrid vs hybrid+rerank); indexes the workspace with it first when needed"),
        Binding("e", "evaluate", "Evaluate",
                tooltip="Fill the Evaluate form: base vs the finished run's model (wb eval --compare)"),
        Binding("d", "remove", "Delete", show=False,  # listed by ?, not in the footer: it must fit 80 columns
                tooltip="Delete the selected run, pressed twice: its folder, checkpoints and model (wb runs remove)"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not hides_typed_key(self, action)  # in a text box the key is typed: not offered

    def __init__(self) -> None:
        super().__init__(id="runs-pane")
        self.spawner: Spawner = spawn
        self.rows: list[RunRow] = []
        self.selected: str | None = None
        self._configs: dict[str, tuple[float, dict]] = {}
        self._tails: dict[str, EventTail] = {}
        self._log_key: tuple | None = None
        self._gpu_line: str | None = None
        self._gpu_at = 0.0
        self._shown: dict[str, object] = {}
        self._charted: tuple | None = None
        self._root_seen: Path | None = None
        self._watched: dict[str, str] = {}  # runs seen queued or running: name -> that state
        self.form_draft: FormDraft | None = None  # what the last form held when it closed without a run
        self._remove_armed: tuple[str, float] | None = None  # (run, when d was pressed once): a second d deletes it

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-head"):
            yield Static("", id="runs-title")
            yield Button("New run", id="runs-new", compact=True, variant="primary")
        with Vertical(id="runs-progress"):
            yield Static("", id="runs-progress-line")
            yield ProgressBar(id="runs-bar", show_eta=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="run-detail"):
            with Vertical(id="run-charts"):
                yield Static("", id="run-summary")
                with Horizontal(id="loss-row", classes="chart-row"):
                    yield Static("", id="loss-label", classes="chart-label")
                    yield Sparkline([], id="loss-spark", summary_function=mean)
                with Horizontal(classes="chart-row thin"):
                    yield Static("", id="lr-label", classes="chart-label")
                    yield Sparkline([], id="lr-spark", summary_function=mean)
                with Horizontal(classes="chart-row thin"):
                    yield Static("", id="eps-label", classes="chart-label")
                    yield Sparkline([], id="eps-spark", summary_function=mean)
                yield Static("", id="run-gpu")
            with Vertical(id="run-side"):
                yield Static("", id="run-error")
                yield Static("", id="run-evals")
                yield LogBox("", id="run-log")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        table.border_title = "training runs"
        self.query_one("#runs-progress").display = False
        self.query_one("#run-error").display = False
        self.query_one("#run-evals").border_title = "evaluations"
        self.query_one("#run-log").border_title = "log.txt"
        self.query_one("#run-error").border_title = "failed"
        self.call_after_refresh(self.refresh_runs)
        self.set_interval(REFRESH_S, self._tick)

    # -- reading -----------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.app.workspace_root)

    def _config(self, run: RunFolder) -> dict:
        try:
            mtime = run.config_path.stat().st_mtime
        except OSError:
            return {}
        cached = self._configs.get(run.name)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            config = run.read_config()
        except WbError:  # a damaged config.json: the run is listed without it
            config = {}
        self._configs[run.name] = (mtime, config)
        return self._configs[run.name][1]

    def run_folder(self, name: str) -> RunFolder:
        return RunFolder(runs_dir(self.root) / name)

    def _tick(self) -> None:
        if self.app.state.tab == "runs" or isinstance(self.app.screen, LaunchScreen):
            self.refresh_runs()
        elif self._watched:  # elsewhere, only the runs that may end are read (their status.json)
            self._announce_ends({name: self.run_folder(name).status() for name in self._watched})

    def _announce_ends(self, statuses: dict[str, dict]) -> None:
        """Notify, from any tab, the runs seen queued or running that have ended since (finished,
        failed, died; a stop is said by the action that asked for it), and watch the new ones."""
        for name, status in statuses.items():
            state = status.get("state")
            if state in ("queued", "running"):
                self._watched[name] = state
                continue
            if self._watched.pop(name, None) is None:
                continue
            if state == "finished":
                self.app.notify(f"run {name} finished: its model is in runs/{name}/model (c compares it)",
                                title="training", timeout=8)
            elif state == "failed":
                why = status.get("message") or status.get("error") or "see its log"
                self.app.notify(f"run {name} failed: {why}", title="training", severity="error", timeout=10)
            elif state == "died":
                self.app.notify(f"run {name} died at step {status.get('step') or 0} (its process is gone): "
                                "R resumes it from its last checkpoint", title="training", severity="error", timeout=10)

    def refresh_runs(self) -> None:
        """Re-read every run's status and the selected run's new events and log lines."""
        if not self.is_mounted:
            return
        if self.root != self._root_seen:  # another workspace: its runs may reuse these names
            self._root_seen = self.root
            self._configs.clear()
            self._tails.clear()
            self._watched.clear()
            self._log_key = self._charted = None
        try:
            runs = list(reversed(list_runs(self.root)))  # newest first
        except OSError:  # a run folder removed while listing: the next tick lists again
            return
        self.rows = [RunRow(r.name, r.status(), self._config(r)) for r in runs]
        self._announce_ends({r.name: r.status for r in self.rows if r.name in self._watched
                             or r.state in ("queued", "running")})
        self._fill_table()
        title = Text()
        n = len(self.rows)
        running = sum(r.state == "running" for r in self.rows)
        title.append(f"{n} training run{'s' if n != 1 else ''}" if n else "no training runs yet", style="bold")
        if running:
            title.append(f" · {running} running", style="bold")
        title.append("  (followed live; n starts one)", style="dim")
        self._update("#runs-title", title)
        self._render_detail()

    def _fill_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        pal = Palette.of(self.app)
        names = [r.name for r in self.rows]
        current = [str(k.value) for k in table.rows]
        cells = {r.name: self._cells(r, pal) for r in self.rows}
        if names != current:
            keep = self.selected
            table.clear()
            for r in self.rows:
                table.add_row(*cells[r.name].values(), key=r.name)
            if keep in names:
                table.move_cursor(row=names.index(keep), animate=False)
            elif names:
                table.move_cursor(row=0, animate=False)
            self.selected = names[table.cursor_row] if names and 0 <= table.cursor_row < len(names) else None
            return
        for name, row in cells.items():
            for col, value in row.items():
                shown = table.get_cell(name, col)
                if not isinstance(shown, Text) or (shown.plain, shown.style) != (value.plain, value.style):
                    table.update_cell(name, col, value)

    def _cells(self, r: RunRow, pal: Palette) -> dict[str, Text]:
        s = r.status
        colour = {"running": f"bold {pal.primary}", "finished": f"bold {pal.up}", "stopped": pal.warning,
                  "failed": f"bold {pal.down}", "died": f"bold {pal.down}"}.get(r.state, "dim")
        w = {key: width for _, key, width in COLUMNS}
        step = step_cell(s.get("step") or 0, s.get("total_steps"), w["step"])
        return {
            "name": Text(short(r.name, w["name"])),
            "state": Text(r.state, style=colour),
            "step": Text(step, justify="right"),
            # the mean of its last 20 steps, as `wb runs` (one batch's loss jumps about)
            "loss": Text(_num(s.get("loss_recent", s.get("loss"))), justify="right"),
            "best": Text(_num(s.get("best_metric")), justify="right"),
            "base": Text(short(_model_name(str(r.config.get("base") or "")), w["base"]), style="dim"),
            "data": Text(short(data_label(r.config.get("data") or "?"), w["data"]), style="dim"),
        }

    def _update(self, selector: str, content) -> None:
        """Update a Static only when what it shows changed (the timer calls this every second)."""
        key = str(content) if not isinstance(content, Text) else (content.plain, repr(content.spans))
        if self._shown.get(selector) != key:
            self._shown[selector] = key
            self.query_one(selector, Static).update(content)

    def selected_row(self) -> RunRow | None:
        return next((r for r in self.rows if r.name == self.selected), None)

    # -- the selected run --------------------------------------------------------------
    def _render_detail(self) -> None:
        row = self.selected_row()
        charts = self.query_one("#run-charts")
        side = self.query_one("#run-side")
        if row is None:
            charts.border_title = ""
            self._update("#run-summary", Text(
                f"No training runs in {runs_dir(self.root)}.\n\nn opens the form that starts one "
                "(wb train TRAINER … --detach); it appears here and is followed live." if not self.rows
                else "select a run", style="dim"))
            for wid in ("#loss-label", "#lr-label", "#eps-label", "#run-gpu", "#run-evals", "#run-log"):
                self._update(wid, "")
            for wid in ("#loss-spark", "#lr-spark", "#eps-spark"):
                spark = self.query_one(wid, Sparkline)
                spark.data = []
                spark.display = False  # an empty chart draws a floor of ▁: nothing to chart
            self._charted = None
            self.query_one("#run-error").display = False
            side.display = False
            return
        side.display = True
        for wid in ("#loss-spark", "#lr-spark", "#eps-spark"):
            self.query_one(wid, Sparkline).display = True
        run = self.run_folder(row.name)
        tail = self._tails.get(row.name)
        if tail is None:
            tail = self._tails[row.name] = EventTail(run.events_path)
        changed = tail.poll()
        pal = Palette.of(self.app)
        charts.border_title = f"{row.name} · {row.state}"
        self._render_summary(row, tail, pal)
        if changed or self._charted != (row.name, tail.offset):
            self._charted = (row.name, tail.offset)
            self._render_charts(tail)
        self._render_gpu(row, tail)
        self._render_evals(tail, row, pal)
        self._render_error(row, pal)
        self._render_log(run)

    def _render_summary(self, row: RunRow, tail: EventTail, pal: Palette) -> None:
        s, c = row.status, row.config
        step, total = int(s.get("step") or 0), s.get("total_steps")
        text = Text()
        text.append(f"step {step}/{total or '?'}", style="bold")
        if total:
            text.append(f" ({100 * step / max(int(total), 1):.0f}%)")
        if tail.epoch is not None:
            text.append(f" · epoch {tail.epoch:.2f}")
        per_step = tail.seconds_per_step()
        if row.state == "running" and per_step and total:
            left = per_step * max(int(total) - step, 0)
            text.append(f" · ~{_duration(left)} left", style=pal.accent)
        elif row.state == "stopped":
            text.append(" · stopped: R resumes from its checkpoint", style=pal.warning)
        elif row.state == "died":
            text.append(" · the process is gone without a final status: R resumes from its last checkpoint",
                        style=pal.down)
        elif row.state == "finished":
            text.append(" · c: compare in Search · e: evaluate", style=pal.up)
        text.append("\n")
        line = soup_line(c) if c.get("trainer") == "soup" else config_line(row.trainer, c, tail.started.get("device"))
        text.append(line, style="dim")
        self._update("#run-summary", text)

    def _render_charts(self, tail: EventTail) -> None:
        if tail.steps:
            first, last = tail.steps[0], tail.steps[-1]
            loss = Text()
            loss.append("loss ", style="bold")
            loss.append(f"{tail.loss[-1]:.4f}\n")
            loss.append(f"min {min(tail.loss):.4f}\nsteps {first}–{last}", style="dim")
            self._update("#loss-label", loss)
            self._update("#lr-label", Text.assemble(("lr ", "bold"), f"{tail.lr[-1]:.2e}"))
            self._update("#eps-label", Text.assemble(("examples/s ", "bold"), f"{tail.eps[-1]:.1f}"))
        else:
            self._update("#loss-label", Text("loss\nno steps logged yet", style="dim"))
            self._update("#lr-label", Text("lr", style="dim"))
            self._update("#eps-label", Text("examples/s", style="dim"))
        self.query_one("#loss-spark", Sparkline).data = list(tail.loss)
        self.query_one("#lr-spark", Sparkline).data = list(tail.lr)
        self.query_one("#eps-spark", Sparkline).data = list(tail.eps)

    def _render_gpu(self, row: RunRow, tail: EventTail) -> None:
        device = str(tail.started.get("device") or "")
        on_gpu = device.startswith("cuda") or tail.gpu_gb > 0
        if row.state == "running" and on_gpu and time.monotonic() - self._gpu_at >= GPU_EVERY_S \
                and shutil.which("nvidia-smi"):
            self._gpu_at = time.monotonic()
            self._gpu_worker()
        text = Text()
        if not on_gpu:
            text.append(f"no GPU ({device} run)" if device else "no GPU", style="dim")
        else:
            text.append("GPU ", style="bold")
            if tail.gpu_gb > 0:
                text.append(f"peak {tail.gpu_gb:.1f} GB allocated by the run")
            if row.state == "running" and self._gpu_line:
                text.append(f"  now: {self._gpu_line}", style="dim")
        self._update("#run-gpu", text)

    @work(thread=True, exclusive=True, group="gpu", name="nvidia-smi")
    def _gpu_worker(self) -> None:
        line = gpu_now()
        self.app.call_from_thread(self._gpu_done, line)

    def _gpu_done(self, line: str | None) -> None:
        self._gpu_line = line
        row = self.selected_row()
        if row is not None and row.name in self._tails:
            self._render_gpu(row, self._tails[row.name])

    def _render_evals(self, tail: EventTail, row: RunRow, pal: Palette) -> None:
        box = self.query_one("#run-evals", Static)
        if not tail.evals:
            has_eval = row.config.get("eval_data") and int(row.config.get("eval_every") or 0) > 0
            box.display = bool(has_eval)
            self._update("#run-evals", Text("no evaluation yet", style="dim"))
            return
        box.display = True
        # the run's own metric only: a joint run's evaluations also log each mode's (ndcg@10_dense, ...),
        # which would crowd the headline out and be taken for its best
        metric_name = row.status.get("metric")
        evals = [ev for ev in tail.evals if ev[1] == metric_name] or tail.evals if metric_name else tail.evals
        best = max((v for s, _, v in evals if s > 0), default=None)  # among trained steps
        text = Text()
        base = [ev for ev in evals if ev[0] == 0][:2]  # kept in view: what the steps are compared with
        trained = [ev for ev in evals if ev[0] > 0]
        for i, (step, metric, value) in enumerate(base + trained[max(0, len(trained) - (5 - len(base))):]):
            if i:
                text.append("\n")
            # step 0 is the base model's figure, measured before training (the yardstick)
            text.append(f"{'base model ' if step == 0 else f'step {step:>6}'}  {metric} ")
            text.append(f"{value:.4f}", style=f"bold {pal.up}" if value == best else "")
            if value == best:
                text.append("  best", style=pal.up)
        # these figures are the trainer's (each document whole, cut at the run's length, one model):
        # not wb eval's (the index's chunks, pipelines), which `e` runs on this model
        length = row.config.get("passage_max_length") or row.config.get("max_length")
        cut = f" cut at {length} tokens" if length else ""
        text.append(f"\nin training, documents whole{cut} (e: wb eval)", style="dim")
        self._update("#run-evals", text)

    def _render_error(self, row: RunRow, pal: Palette) -> None:
        box = self.query_one("#run-error", Static)
        error = row.status.get("error") if row.state in ("failed", "stopped", "died") else None
        if not error and row.state != "failed":
            box.display = False
            return
        box.display = True
        text = Text()
        message = row.status.get("message")
        if message:
            text.append(str(message) + "\n", style=f"bold {pal.down}")
        lines = str(error or "").splitlines()[-8:]
        if message and [ln.strip() for ln in lines] == [str(message).strip()]:  # a one-line error (bad data): said once
            lines = []
        elif not lines:
            lines = ["no error recorded: see the log"]
        text.append("\n".join(lines), style="dim")
        box.border_title = "failed" if row.state == "failed" else row.state
        self._update("#run-error", text)

    def _render_log(self, run: RunFolder) -> None:
        try:
            st = run.log_path.stat()
            key = (run.name, st.st_size, st.st_mtime)
        except OSError:
            key = (run.name, None, None)
        box = self.query_one("#run-log", Static)
        n = min(LOG_LINES, box.content_size.height) if box.content_size.height > 0 else LOG_LINES
        width = box.content_size.width
        key = (*key, n, width)
        if key == self._log_key:
            return
        self._log_key = key
        lines = tail_lines(run.log_path, n) if key[1] is not None else []
        lines = _newest_that_fit(lines, n, width)  # long lines wrap (a model's path is read whole)
        self._update("#run-log", Text("\n".join(lines)) if lines else Text("nothing logged yet", style="dim"))

    # -- events ------------------------------------------------------------------------
    def on_resize(self) -> None:
        self.call_after_refresh(self._render_detail)  # the log shows as many lines as fit

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        name = str(event.row_key.value) if event.row_key is not None else None
        if name != self.selected:
            self.selected = name
            self._render_detail()

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()

    def select(self, name: str) -> None:
        """Put the cursor on run ``name`` (after a refresh, so a new run is listed)."""
        self.selected = name
        self.refresh_runs()
        names = [r.name for r in self.rows]
        if name in names:
            self.query_one("#runs-table", DataTable).move_cursor(row=names.index(name), animate=False)

    def _need(self, finished: bool = False) -> RunRow | None:
        row = self.selected_row()
        if row is None:
            self.app.notify("no run selected" if self.rows else "no training runs yet: n starts one",
                            severity="warning")
            return None
        if finished and not row.has_model:
            verb = "has" if row.state in ("died", "failed") else "is"
            self.app.notify(f"run {row.name} {verb} {row.state}: it has no model until it finishes",
                            severity="warning")
            return None
        return row

    # -- actions: launch, stop, resume -------------------------------------------------
    @on(Button.Pressed, "#runs-new")
    def action_new_run(self) -> None:
        def launched(name: str | None) -> None:
            self.form_draft = form.draft  # None after a launch: the next form starts afresh
            if name:
                self._watched[name] = "queued"  # its end is said even if it comes before a refresh
                self.select(name)
                self.app.notify(f"run {name} started in the background", timeout=5)
            elif form.draft is not None:
                self.app.notify("form closed: n reopens it as you left it", timeout=4)
            self.query_one("#runs-table").focus()

        try:
            form = LaunchScreen(self.root, self.spawner, draft=self.form_draft)
        except Exception as exc:  # the CLI's train commands could not be read (a broken install)
            self.app.notify(f"{type(exc).__name__}: {exc}" if not isinstance(exc, WbError) else str(exc),
                            title="cannot open the launch form", severity="error", timeout=10)
            return
        self.app.push_screen(form, launched)

    def action_stop(self) -> None:
        self._ask_to_stop(finish=False)

    def action_finish(self) -> None:
        self._ask_to_stop(finish=True)

    def _ask_to_stop(self, finish: bool) -> None:
        """``s`` (checkpoint and stop) or ``f`` (save the model now and end finished) on the selected run."""
        row = self._need()
        if row is None:
            return
        if row.state in TERMINAL:
            self.app.notify(f"run {row.name} is already {row.state}", timeout=4)
            return
        what = "saves its model" if finish else "checkpoints"
        verb = "finishing" if finish else "stopping"
        self.app.notify(f"{verb} {row.name}: it {what} at the end of its current step", timeout=4)
        self._watched.pop(row.name, None)  # the stop's own worker says how it ended
        self._stop_worker(row.name, finish=finish)

    @work(thread=True, group="stop", name="stop run")
    def _stop_worker(self, name: str, finish: bool = False) -> None:
        """What ``wb runs stop NAME [--finish]`` does: the stop file, SIGTERM, then wait for a final
        state (as long as the CLI's default: ``RunFolder.stop_wait_seconds``)."""
        from textual.worker import get_current_worker

        worker = get_current_worker()
        run = self.run_folder(name)
        run.request_stop(finish=finish)
        wait = run.stop_wait_seconds()
        status = run.wait_terminal(wait, poll=0.25, cancelled=lambda: worker.is_cancelled)
        if status is not None:
            self.app.call_from_thread(self.app.notify, f"run {name} {status.get('state')} at step "
                                                       f"{status.get('step')}", timeout=5)
            self.app.call_from_thread(self.refresh_runs)
        elif not worker.is_cancelled:
            self.app.call_from_thread(self.app.notify, f"run {name} did not stop within {wait:.0f} s (it stops at "
                                                       "the end of its current step)", severity="warning")

    def _idle_row(self) -> RunRow | None:
        """The selected run when it is not queued or training (else said, and None)."""
        row = self._need()
        if row is not None and row.state in ("running", "queued"):
            self.app.notify(f"run {row.name} is {row.state}: s stops it first", severity="warning")
            return None
        return row

    def action_resume(self) -> None:
        row = self._idle_row()
        if row is None:
            return
        if row.state == "finished":
            self.app.notify(f"run {row.name} has finished: its model is in runs/{row.name}/model", timeout=5)
            return
        self._command_worker(wb_command("train", "resume", row.name, "--detach", "-w", str(self.root)), row.name,
                             "resume", f"run {row.name} resumed in the background")

    def action_remove(self) -> None:
        """``d`` twice within ``REMOVE_CONFIRM_S`` on one run: ``wb runs remove NAME`` (which refuses a
        run that trains or that wb.toml serves, in its one-line error)."""
        row = self._idle_row()
        if row is None:
            return
        armed, self._remove_armed = self._remove_armed, None
        if armed is None or armed[0] != row.name or time.monotonic() - armed[1] > REMOVE_CONFIRM_S:
            self._remove_armed = (row.name, time.monotonic())
            self.app.notify(f"d again deletes run {row.name}: its checkpoints and model too", severity="warning",
                            timeout=REMOVE_CONFIRM_S)
            return
        self._command_worker(wb_command("runs", "remove", row.name, "-w", str(self.root)), row.name,
                             "delete", f"run {row.name} deleted")

    @work(group="run-command", name="run command")
    async def _command_worker(self, argv: list[str], name: str, verb: str, done: str) -> None:
        """Run a `wb` command on run ``name``: its one-line error (titled ``cannot VERB NAME``) or
        ``done``; a resumed run is followed from queued on."""
        rc, _out, err = await self.spawner(argv)
        if rc != 0:
            self.app.notify(error_line(rc, err), title=f"cannot {verb} {name}", severity="error", timeout=10)
            return
        if verb == "resume":
            self._watched[name] = "queued"
        self.app.notify(done, timeout=5)
        self.refresh_runs()

    # -- actions: compare with the base ------------------------------------------------
    def _spec_of(self, row: RunRow) -> TrainerSpec | None:
        spec = row.spec
        if spec is None:
            self.app.notify(f"run {row.name} was made by trainer '{row.trainer}', which this screen does not "
                            "know: compare it with wb eval --compare ROLE=runs/NAME", severity="warning", timeout=8)
        return spec

    def action_compare(self) -> None:
        row = self._need(finished=True)
        if row is None:
            return
        spec = self._spec_of(row)
        if spec is None:
            return
        overrides = compare_overrides(spec, row.name)
        if not any(role in INDEX_ROLES for role in overrides):  # a reranker: the same index, reranked
            self._show_compare(str(self.root), row.name, spec, None)
            return
        if not hasattr(self.app.engine, "variant"):
            self.app.notify("this engine cannot build model variants", severity="error")
            return
        if any(w.group == "variant" and not w.is_finished for w in self.workers):
            self.app.notify("a fine-tune's index is being built already", severity="warning")
            return
        self._show_progress(f"checking the index of {row.name}…", None, 0)
        self._variant_worker(str(self.root), row.name, spec, overrides)

    @work(thread=True, exclusive=True, group="variant", name="variant index")
    def _variant_worker(self, root: str, name: str, spec: TrainerSpec, overrides: dict[str, str]) -> None:
        engine = self.app.engine

        def progress(phase: str, done: int, total: int) -> None:
            self.app.call_from_thread(self._show_progress, f"indexing the workspace with {name}: {phase}",
                                      total, done)

        try:
            info = engine.variant(root, overrides)
            if not info.built or info.stale:
                self.app.call_from_thread(self._show_progress, f"indexing the workspace with {name}…", None, 0)
                engine.build_variant(root, overrides, progress)
        except WbError as exc:
            self.app.call_from_thread(self._variant_failed, name, str(exc))
            return
        self.app.call_from_thread(self._variant_ready, root, name, spec, info.root)

    def _show_progress(self, line: str, total: int | None, done: int) -> None:
        self.query_one("#runs-progress").display = True
        self._update("#runs-progress-line", Text(short(line, 200), style="italic"))
        self.query_one("#runs-bar", ProgressBar).update(total=None if total is None else max(total, 1), progress=done)

    def _hide_progress(self) -> None:
        self.query_one("#runs-progress").display = False

    def _variant_failed(self, name: str, message: str) -> None:
        self._hide_progress()
        self.app.notify(message, title=f"cannot index with {name}", severity="error", timeout=10)

    def _variant_ready(self, root: str, name: str, spec: TrainerSpec, variant_root: str) -> None:
        self._hide_progress()
        if root != str(self.root):
            return  # the workspace changed meanwhile
        app = self.app
        if len(app.screen_stack) > 1 or app.state.tab != "runs":
            # the user went on meanwhile (a form, the help, another tab): the screen is not taken
            # from them; the index is built, so c on the run shows the comparison at once
            app.notify(f"the index of {name} is ready: c on {name} in Runs (4) compares it with the base models",
                       title="fine-tune indexed", timeout=10)
            return
        self._show_compare(root, name, spec, variant_root)

    def _show_compare(self, root: str, name: str, spec: TrainerSpec, variant_root: str | None) -> None:
        """Search: the workspace's models on the left; on the right the run's model in its roles (a
        variant index, or for a reranker the same index with ``--model reranker=runs/NAME``)."""
        app = self.app
        app.action_show_tab("search")
        search = app.search
        left, right = compare_pipelines(spec, search.left.pipeline)
        search.set_pipelines(left, right)
        roles = "+".join(spec.roles)
        # each label names the roles only while its column's pipeline runs one of them (l, r, x
        # change the pipelines): "base models" then, and the fine-tune's label says it is unused
        base_side = (None, f"{roles} · base", None, spec.roles, "base models")
        right_side = (variant_root, f"{roles} · ft:{name}",
                      None if variant_root is not None else compare_overrides(spec, name), spec.roles)
        search.set_models(left=base_side, right=right_side, run=False)
        if variant_root is not None:  # kept up to date when the workspace is re-indexed (SearchScreen.refresh_variants)
            search.right.variant = (root, compare_overrides(spec, name))
        search.request_search(immediate=True)
        app.notify(f"left: {left} with the workspace's models · right: {right} with {name}; "
                   "l/r change pipelines, b goes back", timeout=6)

    def action_evaluate(self) -> None:
        row = self._need(finished=True)
        if row is None:
            return
        spec = self._spec_of(row)
        if spec is None:
            return
        app = self.app
        dataset = str(row.config.get("eval_data") or "") or None  # a BEIR folder for retrievers
        if dataset and not spec.eval_is_beir and not Path(dataset).is_dir():
            dataset = None
        app.action_show_tab("evaluate")
        app.evaluate.prefill(dataset=dataset, pipelines=spec.eval_pipelines,
                             compare=", ".join(f"{role}={value}" for role, value in
                                               compare_overrides(spec, row.name).items()))
        app.call_after_refresh(lambda: app.query_one("#eval-run" if dataset or app.state.eval_dataset
                                                     else "#dataset").focus())


def compact_count(n: int) -> str:
    """``n`` in at most 4 characters with an explicit magnitude, never a cut number: ``9999``,
    ``12k``, ``1.2M``, ``3G``, then ``1e23``."""
    if n < 10_000:
        return str(n)
    for scale, suffix in ((10**3, "k"), (10**6, "M"), (10**9, "G")):
        value = n / scale
        text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 9.95 else f"{value:.0f}"
        if float(text) < 1000:
            return text + suffix
    mantissa, exponent = f"{n:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def step_cell(step, total, width: int) -> str:
    """``step/total`` for the Runs table's step column; numbers too long for ``width`` are written
    compactly (``12/1e23``, ``123k/1.2M``), never cut: a cut total looks like another total."""
    def number(value) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            return None

    done, whole = number(step) or 0, number(total) if total else None
    full = f"{done}/{whole if whole is not None else '?'}"
    if len(full) <= width:
        return full
    shown_total = compact_count(whole) if whole is not None else "?"
    text = f"{done}/{shown_total}"
    return text if len(text) <= width else f"{compact_count(done)}/{shown_total}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _newest_that_fit(lines: list[str], rows: int, width: int) -> list[str]:
    """The newest of ``lines`` that fit ``rows`` rows of ``width`` columns when each wraps at words
    (oldest first); the newest line always, even when it alone is taller."""
    if width <= 0:
        return lines[-rows:]
    kept: list[str] = []
    left = rows
    for line in reversed(lines):
        need = max(1, -(-len(line) // max(1, width - 8)))  # slack: wrapping breaks at words
        if kept and need > left:
            break
        kept.append(line)
        left -= need
    return kept[::-1]
