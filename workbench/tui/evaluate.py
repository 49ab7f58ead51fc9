"""The Evaluate screen: run ``wb eval DATASET --pipeline a,b --json`` in the background, show the
metrics table with deltas against the baseline and significance, and the per-query differences;
Enter on a query opens it in Search with the baseline on the left and that pipeline on the right.

``wb eval --json`` prints one object on stdout (see ``show_report``); its stderr carries progress
lines (JSON ``{"phase", "done", "total"}`` or plain text), shown as they arrive. A failing command
becomes a notification with its last stderr line. No ``-w`` is passed: ``wb eval`` indexes the
dataset into its own cached workspace (never the user's), which the report names; jumping to a
query opens that workspace in Search, with no instruction (``wb eval`` uses none). A ``--compare``
system's row (``PIPELINE@MODEL``) opens the baseline on the left and PIPELINE with the compared
models on the right (their own index, the report's second workspace, or for a reranker the role
override on the same index: ``search_target``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from workbench.errors import WbError
from workbench.tui.common import Palette, hides_typed_key, short

METRIC_LABELS = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100", "map@100": "MAP@100"}
SORTS = ["|Δ|", "Δ ascending", "Δ descending"]
PER_QUERY_TOP = 25  # largest gains and losses per pipeline that wb eval reports


def significance(p: float | None) -> str:
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def p_label(p: float) -> str:
    """A p-value as the table shows it: ``p=0.004``; one under .001 reads ``p<.001`` (never ``p=0.000``)."""
    return "p<.001" if p < 0.001 else f"p={p:.3f}"


def wlt_label(p: dict) -> str:
    """A pipeline's wins/losses/ties against the baseline, e.g. ``123/45/32``."""
    return f"{p.get('wins', 0)}/{p.get('losses', 0)}/{p.get('ties', 0)}"


def eval_command(dataset: str, pipelines: str, workspace: str | None, compare: list[str] | None = None,
                 models: list[str] | None = None) -> list[str]:
    """``compare``: ``ROLE=NAME`` items (``wb eval --compare``): every pipeline again with those models;
    ``models``: ``ROLE=NAME`` items (``wb eval --model``): the base models, where not the defaults."""
    cmd = [sys.executable, "-m", "workbench.cli.main", "eval", dataset, "--pipeline", pipelines, "--json",
           "--per-query", "--top", str(PER_QUERY_TOP)]
    for item in models or []:
        cmd += ["--model", item]
    for item in compare or []:
        cmd += ["--compare", item]
    if workspace:
        cmd += ["-w", workspace]
    return cmd


def parse_compare(text: str) -> dict[str, str]:
    """``dense=runs/ft1, reranker=X`` -> {role: name}, read as `wb eval --compare` reads its values
    (``variants.parse_model_overrides``: ``joint=`` fills three roles; UsageError for a bad item)."""
    from workbench.variants import parse_model_overrides

    return parse_model_overrides(text.replace(",", " ").split(), "compare")


class EvalPane(Vertical):
    BINDINGS = [
        Binding("e", "run", "Run eval", tooltip="Run wb eval on the dataset and pipelines"),
        Binding("s", "stop", "Stop", tooltip="Stop the running evaluation"),
        Binding("d", "focus_dataset", "Dataset", tooltip="Type the BEIR dataset folder"),
        Binding("c", "focus_compare", "Compare", show=False,
                tooltip="Type --compare models: every pipeline again with them (e.g. dense=runs/ft1)"),
        Binding("o", "sort", "Sort queries", tooltip="Order per-query rows by |Δ|, Δ ascending, Δ descending"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not hides_typed_key(self, action)  # in a text box the key is typed: not offered

    def __init__(self) -> None:
        super().__init__(id="eval-pane")
        self.report: dict | None = None
        self.compare: dict[str, str] = {}  # the --compare models of the report shown
        self._per_query: list[dict] = []
        self._sort = 0
        self._proc = None
        self._rows: list[dict] = []
        self._width = 0  # the width the tables were last fitted to (on_resize)

    def compose(self) -> ComposeResult:
        state = self.app.state
        with Horizontal(classes="form-row"):
            yield Static("dataset", classes="row-label")
            yield Input(value=state.eval_dataset, compact=True, id="dataset",
                        placeholder="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
        with Horizontal(classes="form-row"):
            yield Static("pipelines", classes="row-label")
            yield Input(value=state.eval_pipelines, compact=True, id="eval-pipelines",
                        placeholder="comma-separated, the first is the baseline")
        with Horizontal(classes="form-row"):
            yield Static("compare", classes="row-label")
            yield Input(value="", compact=True, id="eval-compare",
                        placeholder="optional ROLE=NAME, e.g. dense=runs/ft1")
            # the buttons come last in Tab order: letters typed on after the last box are not keys
            yield Button("Run", id="eval-run", compact=True, variant="primary")
            yield Button("Stop", id="eval-stop", compact=True, disabled=True)
        with Horizontal(id="eval-progress"):  # one line: what runs, and its bar
            yield Static("", id="eval-status")
            yield ProgressBar(id="eval-bar", show_eta=False)
        yield DataTable(id="eval-table", cursor_type="none", cell_padding=0)  # cells space themselves: 80 columns fit
        yield Static("", id="eval-note")
        yield Static("", id="eval-notes")  # the report's notes, shown only when it has some
        yield DataTable(id="per-query", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#eval-progress").display = False
        self.query_one("#eval-table").border_title = "pipelines"
        self.query_one("#eval-status", Static).update(
            Text("pick a BEIR dataset folder and pipelines, then Run (e)", style="dim"))
        self.show_report(None)

    # -- actions -----------------------------------------------------------------------
    def action_focus_dataset(self) -> None:
        self.query_one("#dataset", Input).focus()

    def action_focus_compare(self) -> None:
        self.query_one("#eval-compare", Input).focus()

    # What is remembered is a usable value only (a half-typed or mistyped one is not saved).
    @on(Input.Changed, "#dataset")
    def _dataset_changed(self, event: Input.Changed) -> None:
        value = event.value.strip()
        if not value or Path(value).expanduser().is_dir():
            self.app.state.eval_dataset = event.value

    @on(Input.Changed, "#eval-pipelines")
    def _pipelines_changed(self, event: Input.Changed) -> None:
        from workbench.search.pipelines import parse_pipelines

        try:
            parse_pipelines(event.value.strip())
        except WbError:
            return
        self.app.state.eval_pipelines = event.value

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.action_run():
            self.query_one("#per-query", DataTable).focus()  # leave the box: the screen keys work again

    @on(Button.Pressed, "#eval-run")
    def action_run(self) -> bool:
        """Start ``wb eval`` with the form's values; False when it could not start."""
        from workbench.search.pipelines import parse_pipelines

        dataset = self.query_one("#dataset", Input).value.strip()
        pipelines = self.query_one("#eval-pipelines", Input).value.strip()
        if not dataset:
            self.app.notify("type a BEIR dataset folder first", severity="warning")
            self.action_focus_dataset()
            return False
        if not Path(dataset).expanduser().exists():
            self.app.notify(f"no such dataset folder: {dataset}", title="cannot evaluate", severity="error")
            return False
        try:
            names = [p.name for p in parse_pipelines(pipelines)]
        except WbError as exc:
            self.app.notify(str(exc), title="cannot evaluate", severity="error")
            return False
        try:
            compare = self._compare_models()
        except WbError as exc:
            self.app.notify(str(exc), title="cannot evaluate", severity="error")
            return False
        if any(w.group == "eval" and not w.is_finished for w in self.workers):
            self.app.notify("an evaluation is already running", severity="warning")
            return False
        self.app.state.eval_dataset = dataset
        self.app.state.eval_pipelines = pipelines
        self.app.save_state()
        cmd = eval_command(str(Path(dataset).expanduser()), ",".join(names), None, compare,
                           models=self._workspace_models())
        self.query_one("#eval-progress").display = True
        self.query_one("#eval-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-status", Static).update(Text("starting wb eval…", style="italic"))
        self.query_one("#eval-stop", Button).disabled = False
        # the screen's keys (s stops, o sorts) must work while it runs: focus leaves the form first,
        # else a disabled Run hands it to the next box, which would take them as text
        self.query_one("#per-query", DataTable).focus()
        self.query_one("#eval-run", Button).disabled = True
        self._eval_worker(cmd, dict(item.split("=", 1) for item in compare))
        return True

    def _workspace_models(self) -> list[str]:
        """The roles this workspace's ``wb.toml`` sets to other models than the defaults, as
        ``--model`` values (run folders made absolute), so the evaluation's base is the models the
        Search screen serves, not wb eval's defaults; none when the settings cannot be read (the
        Search screen says why)."""
        from workbench.config import ModelsConfig
        from workbench.workspace import Workspace

        try:
            models = Workspace(Path(self.app.workspace_root)).config().models
        except WbError:
            return []
        defaults = ModelsConfig()
        return [f"{role}={getattr(models, role)}" for role in ("dense", "colbert", "sparse", "reranker")
                if getattr(models, role) != getattr(defaults, role)]

    def _compare_models(self) -> list[str]:
        """The compare box as ``--compare`` values; ``runs/NAME`` becomes that run's model folder in the
        current workspace (no ``-w`` is passed: the dataset is indexed into wb eval's own cache)."""
        from workbench.variants import resolve_model_overrides
        from workbench.workspace import Workspace

        overrides = parse_compare(self.query_one("#eval-compare", Input).value)
        resolved = resolve_model_overrides(Workspace(Path(self.app.workspace_root)), overrides)
        return [f"{role}={name}" for role, name in resolved.items()]

    def prefill(self, dataset: str | None = None, pipelines: str | None = None, compare: str | None = None) -> None:
        """Fill the form (e.g. from the Runs screen: base vs fine-tune); Run (e) starts it. A report
        on screen is cleared: it answered another form."""
        if self.report is not None:
            self.show_report(None)
        if dataset is not None:
            self.query_one("#dataset", Input).value = dataset
        if pipelines is not None:
            self.query_one("#eval-pipelines", Input).value = pipelines
        if compare is not None:
            self.query_one("#eval-compare", Input).value = compare
        self.query_one("#eval-status", Static).update(Text(
            "compare " + compare + ": Run (e) evaluates every pipeline with the base and with that model"
            if compare else "pick a BEIR dataset folder and pipelines, then Run (e)", style="dim"))

    @on(Button.Pressed, "#eval-stop")
    def action_stop(self) -> None:
        stopped = self.workers.cancel_group(self, "eval")
        if stopped:
            self.app.notify("evaluation stopped", timeout=3)

    def action_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self._render_per_query()
        self.app.notify(f"queries ordered by {SORTS[self._sort]}", timeout=2)

    # -- running -----------------------------------------------------------------------
    @work(exclusive=True, group="eval", name="eval")
    async def _eval_worker(self, cmd: list[str], compare: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        last_err: list[str] = []
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL, env=env)
            self._proc = proc

            async def read_err() -> None:
                assert proc.stderr is not None
                async for raw in proc.stderr:
                    line = raw.decode(errors="replace").strip()
                    if line:
                        last_err.append(line)
                        del last_err[:-20]
                        self._progress_line(line)

            err_task = asyncio.create_task(read_err())
            out = await proc.stdout.read()  # type: ignore[union-attr]
            await err_task
            rc = await proc.wait()
        except asyncio.CancelledError:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            self._done(Text("stopped", style="italic"))
            raise
        except OSError as exc:
            self._done(Text(f"cannot start wb eval: {exc}"))
            self.app.notify(f"cannot start wb eval: {exc}", title="evaluation failed", severity="error")
            return
        finally:
            self._proc = None
        if rc != 0:
            reason = last_err[-1] if last_err else f"exit code {rc}"
            self._done(Text(f"wb eval failed: {reason}"))
            self.app.notify(reason, title=f"wb eval failed (exit {rc})", severity="error", timeout=10)
            return
        try:
            report = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
            if not isinstance(report, dict):
                raise ValueError("not an object")
        except (ValueError, IndexError) as exc:
            self._done(Text("wb eval printed no JSON report"))
            self.app.notify(f"wb eval printed no JSON report ({exc})", title="evaluation failed", severity="error")
            return
        self._done(Text(f"done in {report.get('wall_seconds', 0):.1f} s", style="dim"), finished=True)
        self.show_report(report, compare)

    def _progress_line(self, line: str) -> None:
        status = self.query_one("#eval-status", Static)
        bar = self.query_one("#eval-bar", ProgressBar)
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "done" in obj and "total" in obj:
            bar.update(total=max(int(obj["total"] or 0), 1), progress=int(obj["done"] or 0))
            label = obj.get("phase") or obj.get("pipeline") or "running"
            line = f"{label} {obj['done']}/{obj['total']}" if obj["total"] else str(label)  # no "0/0" for a phase of unknown size
            if obj.get("message"):
                line += f" · {obj['message']}"
            status.update(Text(short(line, 200)))
        else:
            status.update(Text(short(line, 200)))

    def _done(self, message: Text, finished: bool = False) -> None:
        """The run ended: a full bar only when it ``finished`` (stopped or failed: empty); the last
        report stays shown until a new one replaces it."""
        self.query_one("#eval-bar", ProgressBar).update(total=1, progress=1 if finished else 0)
        self.query_one("#eval-status", Static).update(message)
        self.query_one("#eval-stop", Button).disabled = True
        self.query_one("#eval-run", Button).disabled = False

    # -- the report --------------------------------------------------------------------
    def show_report(self, report: dict | None, compare: dict[str, str] | None = None) -> None:
        """Render a ``wb eval --json`` object (or clear the tables for None); ``compare``: the
        ``--compare`` models it ran with ({role: model}), which Enter on a ``PIPELINE@MODEL`` row
        applies to Search's right column."""
        self.report = report
        self.compare = dict(compare or {})
        pal = Palette.of(self.app)
        table = self.query_one("#eval-table", DataTable)
        table.clear(columns=True)
        note = self.query_one("#eval-note", Static)
        if not report:
            note.update("")
            self._show_notes(None)
            self._per_query = []
            self._render_per_query()
            return
        pipelines = report.get("pipelines") or []
        metrics: list[str] = []
        for p in pipelines:
            for m in (p.get("metrics") or {}):
                if m not in metrics:
                    metrics.append(m)
        # under 30 lines each pipeline takes two lines (value; Δ and stars), the p-values and the
        # "baseline" line left to the note below and the stars; otherwise three (value; Δ; p)
        short_screen = self.screen.has_class("-short")
        # the whole system name where the screen has room (`hybrid@minilm-ft` is the row that matters)
        # W/L/T as wide as its widest value (hundreds of queries: "123/145/32" is 10 characters)
        wlt_width = 1 + max([7] + [len(wlt_label(p)) for p in pipelines if str(p.get("name")) != report.get("baseline")])
        spare = (self.size.width or 100) - 12 * len(metrics) - wlt_width - 6 - 4  # 4: the table's border and padding
        longest = max((len(str(p.get("name", "?"))) for p in pipelines), default=14)
        name_width = max(10, min(max(14, longest + 1), spare))  # W/L/T and time before a name's end
        table.add_column(" pipeline", key="pipeline", width=name_width)
        for m in metrics:
            table.add_column(f"{METRIC_LABELS.get(m, m):>9}   ", key=m, width=12)
        table.add_column("W/L/T".rjust(wlt_width), key="wlt", width=wlt_width)
        table.add_column(f"{'time':>6}", key="time", width=6)
        baseline = report.get("baseline")
        for p in pipelines:
            name = str(p.get("name", "?"))
            is_base = name == baseline
            own = p.get("baseline")  # a --compare row is compared with its own pipeline on the base models
            under = "" if short_screen else (
                "\n baseline" if is_base else
                (f"\n vs {short(str(own), name_width - 4)}" if own and own != baseline else ""))
            cells = [Text(" " + short(name, name_width - 1) + under, style="bold" if is_base else "")]
            deltas = p.get("delta") or {}
            pvalues = p.get("p_value") or {}
            lines = 1 if is_base and short_screen else 2
            for m in metrics:
                value = (p.get("metrics") or {}).get(m)
                cell = Text()
                cell.append(f"{'–' if value is None else f'{value:.4f}':>9}   ", style="bold")
                d, pv = deltas.get(m), pvalues.get(m)
                if d is not None:
                    colour = pal.up if d > 0 else pal.down if d < 0 else "dim"
                    stars = significance(pv)
                    cell.append(f"\n{d:>+9.4f}", style=colour)
                    cell.append(f"{stars:<2} ", style=f"bold {colour}")
                    if pv is not None and not short_screen:
                        cell.append(f"\n{p_label(pv):>9}   ", style="dim")
                        lines = 3
                cells.append(cell)
            if is_base:
                cells.append(Text(""))
            else:
                cells.append(Text(wlt_label(p).rjust(wlt_width)))
            secs = p.get("seconds")
            cells.append(Text("" if secs is None else f"{secs:.1f}s".rjust(6), style="dim"))
            table.add_row(*cells, height=lines, key=name)
        # what reads the table first (an 80-column line cuts the end): the baseline and the stars
        parts = [f"baseline {baseline}"] if baseline else []
        parts.append(f"{report.get('test') or 'paired test'}: * p<.05 ** p<.01")
        parts.append(" ".join(str(x) for x in (report.get("dataset", "?"), report.get("split")) if x))
        if report.get("queries") is not None:
            parts.append(f"{report['queries']} queries")
        if report.get("depth") is not None:
            parts.append(f"depth {report['depth']}")
        workspace = report_workspace(report)
        if workspace:
            parts.append(f"workspace {workspace}")
        note.update(Text(" · ".join(parts), style="dim"))
        self._show_notes(report.get("notes"))
        self._per_query = [q for q in (report.get("per_query") or []) if isinstance(q, dict)]
        self._render_per_query()

    def _show_notes(self, notes) -> None:
        """The report's ``notes`` under the note line, one a line, as `wb eval` prints them under its
        table (documents the corpus lacks, judged queries not evaluated, a depth under 100, a run
        file's gaps: what changes how the figures read); hidden when there are none."""
        box = self.query_one("#eval-notes", Static)
        lines = [str(n) for n in notes or []]
        text = Text()
        for i, line in enumerate(lines):
            text.append("\n" if i else "")
            text.append("note ", style="bold")
            text.append(line)
        box.update(text)
        box.display = bool(lines)
        self.query_one("#eval-note", Static).set_class(bool(lines), "-with-notes")

    def _render_per_query(self) -> None:
        pal = Palette.of(self.app)
        table = self.query_one("#per-query", DataTable)
        table.clear(columns=True)
        metric = "nDCG@10 " if self._per_query else ""
        table.border_title = f"per query, {metric}by {SORTS[self._sort]} (o: order · Enter: open in Search)"
        if self.report and len(self.report.get("pipelines") or []) > 1 and not self._per_query:
            # a report compared pipelines and no query's nDCG@10 moved: said, not an empty table
            table.border_title = "per query: no query's nDCG@10 differs from the baseline's (ties are not listed)"
        longest = max((len(str(q.get("pipeline", ""))) for q in self._per_query), default=14)
        name_width = max(14, min(longest, (self.size.width or 100) - 82))  # the query keeps 20 columns
        width = max(20, (self.size.width or 100) - 48 - name_width)
        table.add_column("pipeline", key="pipeline", width=name_width)
        table.add_column("id", key="id", width=8)
        table.add_column("query", key="query", width=width)
        table.add_column(f"{'base':>6}", key="base", width=6)
        table.add_column(f"{'value':>6}", key="value", width=6)
        table.add_column(f"{'Δ':>7}", key="delta", width=7)
        rows = list(self._per_query)
        d = lambda q: float(q.get("delta") or 0.0)  # noqa: E731
        if self._sort == 0:
            rows.sort(key=lambda q: -abs(d(q)))
        elif self._sort == 1:
            rows.sort(key=d)
        else:
            rows.sort(key=lambda q: -d(q))
        self._rows = rows[:1000]
        for i, q in enumerate(self._rows):
            delta = d(q)
            colour = pal.up if delta > 0 else pal.down if delta < 0 else "dim"
            table.add_row(  # Text: a query's own brackets ("[/INST]") are no markup
                Text(short(str(q.get("pipeline", "")), name_width)),
                Text(short(str(q.get("query_id", "")), 8)),
                Text(short(str(q.get("query", "")), width)),
                Text(_num(q.get("baseline")).rjust(6), style="dim"),
                Text(_num(q.get("value")).rjust(6)),
                Text(f"{delta:+.3f}".rjust(7), style=colour),
                key=str(i),
            )

    @on(DataTable.RowSelected, "#per-query")
    def _query_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        i = event.cursor_row
        if not (0 <= i < len(self._rows)):
            return
        row = self._rows[i]
        target = search_target(self.report or {}, str(row.get("pipeline", "")), self.compare)
        if target.problem:
            self.app.notify(target.problem, title="cannot show this row in Search", severity="warning", timeout=10)
            return
        self.app.jump_to_search(str(row.get("query", "")), left=target.left, right=target.right,
                                workspace=target.workspace, right_models=target.right_models,
                                instruction=target.instruction, relevant=self._judgements(row))

    def _judgements(self, row: dict) -> dict[str, int]:
        """The evaluated query's relevant documents ({doc id: grade}, from the dataset's qrels), which
        Search marks; none when the dataset cannot be read now (it is said)."""
        report = self.report or {}
        if not report.get("dataset_path") or row.get("query_id") is None:
            return {}
        from workbench.eval.dataset import judgements

        try:
            return judgements(report["dataset_path"], str(report.get("split") or "test"), str(row["query_id"]))
        except WbError as exc:
            self.app.notify(f"relevant documents not marked: {exc}", severity="warning", timeout=6)
            return {}

    def on_resize(self, event) -> None:
        """Fit both tables to the new width (the names' column gives or takes the room); a resize
        that keeps the width changes nothing here, so nothing is drawn again."""
        if event.size.width == self._width:
            return
        self._width = event.size.width
        if self.report:
            self.show_report(self.report, self.compare)  # renders the per-query rows too
        elif self._per_query:
            self._render_per_query()


def report_workspace(report: dict) -> str | None:
    """The workspace the evaluation searched (``workspace``, or the first of ``workspaces``)."""
    ws = report.get("workspace") or report.get("workspaces")
    if isinstance(ws, list):
        ws = ws[0] if len(ws) == 1 else None  # several indexes (several model sets): no single one
    return str(ws) if ws else None


def report_workspaces(report: dict) -> list[str]:
    """Every workspace the evaluation searched, in wb eval's order: the baseline models' first, then
    the ``--compare`` models' (a second index only when those models change what is indexed)."""
    ws = report.get("workspace") or report.get("workspaces")
    if isinstance(ws, list):
        return [str(w) for w in ws if w]
    return [str(ws)] if ws else []


@dataclass
class SearchTarget:
    """How Search shows one per-query row: the pipelines, the workspace, the right column's models
    (``(root or None, label, {role: model})``, None: the workspace's own) and the instruction; or
    ``problem``, why it cannot."""

    left: str | None = None
    right: str | None = None
    workspace: str | None = None
    right_models: tuple | None = None
    instruction: str | None = None
    problem: str = ""


def search_target(report: dict, system: str, compare: dict[str, str] | None = None) -> SearchTarget:
    """Where Enter on a per-query row of ``system`` (a pipeline, or ``PIPELINE@MODEL`` for a
    ``--compare`` system) takes Search: the row's baseline (for ``PIPELINE@MODEL``, PIPELINE on the
    base models; else the report's first pipeline) on the left in the base workspace, that
    pipeline on the right with the compared models (their own index, the report's second workspace,
    when they change what is indexed; else ``compare``'s role overrides on the same index), and the
    instruction the evaluation used (``wb eval`` uses none unless the report names one). The right
    models' label claims the compared roles (``ResultsColumn.set_models``), so a pipeline that runs
    none of them is marked unused, as after Runs ``c``."""
    from workbench.tui.common import known_pipeline
    from workbench.variants import INDEX_ROLES

    workspaces = report_workspaces(report)
    row = next((p for p in report.get("pipelines") or [] if isinstance(p, dict) and p.get("name") == system), {})
    baseline = str(row.get("baseline") or report.get("baseline") or "")  # the row's own baseline
    pipeline, at, label = system.partition("@")
    target = SearchTarget(left=baseline or None, right=pipeline or None,
                          workspace=workspaces[0] if workspaces else None,
                          instruction=report.get("instruction") or None)
    for name in (baseline, pipeline):
        if name and not known_pipeline(name):
            target.problem = f"Search cannot run the pipeline '{name}'"
            return target
    if not at:
        return target
    compare = dict(compare or {})
    others = {role: model for role, model in compare.items() if role not in INDEX_ROLES}
    shown = f"{'+'.join(compare)} · {label}" if compare else label  # e.g. "dense · ft-1"
    claims = tuple(compare)  # the label speaks of these roles: "unused" on a pipeline that runs none
    if len(workspaces) >= 2:  # the compared models have an index of their own (its wb.toml names them)
        target.right_models = (workspaces[1], shown, others, claims)
    elif len(workspaces) == 1 and compare and not any(role in INDEX_ROLES for role in compare):
        target.right_models = (None, shown, compare, claims)  # e.g. a reranker: the same index, other role models
    else:
        target.problem = (f"{system}: this report does not say which models '{label}' stands for (run the "
                          "evaluation again from this screen to open its rows in Search)")
    return target


def _num(x) -> str:
    return "–" if x is None else f"{float(x):.3f}"
