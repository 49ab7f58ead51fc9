"""The Search screen: a query box, an instruction picker that shows the exact encoder input, and two
result columns (each with its own pipeline) where the right one shows movement against the left.

Queries run in one exclusive thread worker: a newer query cancels the older one, whose results
are then never shown. Only the columns whose (query, instruction, pipeline, k, unit) changed are
recomputed, so switching one column's pipeline leaves the other alone.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import get_current_worker

from workbench.encoders.templates import INSTRUCTION_PRESETS, PLAIN, resolve_instruction
from workbench.errors import WbError
from workbench.search.compare import movements
from workbench.tui.common import PIPELINES, cut_middle, hides_typed_key, known_pipeline, reads_instruction
from workbench.tui.results import ResultColumn

DEBOUNCE_S = 0.45


class SearchPane(Vertical):
    BINDINGS = [
        Binding("slash", "focus_query", "Query", tooltip="Focus the query box"),
        Binding("escape", "focus_results", "Leave box", tooltip="Leave the query box for the results"),
        Binding("down", "focus_results", "Results", show=False),
        Binding("l", "cycle('left')", "Left pipe", tooltip="Next pipeline in the left column"),
        Binding("r", "cycle('right')", "Right pipe", tooltip="Next pipeline in the right column"),
        Binding("x", "swap", "Swap", tooltip="Swap the columns, each with its models (base, fine-tune)"),
        Binding("i", "focus_instruction", "Instruction", tooltip="Open the instruction picker (presets, custom…)"),
        Binding("u", "toggle_unit", "Doc/chunk", tooltip="Rank documents or chunks"),
        Binding("plus", "more", "More hits", show=False, tooltip="More results per column (5, 10, 20, ... 100)"),
        Binding("minus", "fewer", "Fewer hits", show=False, tooltip="Fewer results per column (down to 5)"),
        Binding("b", "base_models", "Base",
                tooltip="Both columns back on the workspace's own models (after comparing a fine-tune)"),
    ]

    def __init__(self) -> None:
        super().__init__(id="search-pane")
        self._timer: Timer | None = None
        self._said_note = ""  # the last index note notified (see _deliver)
        self._said_instruction = ""  # the last instruction error notified (see _instruction_refused)
        self._refreshing: set[str] = set()  # sides whose variant index is being brought up to date

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        state = self.app.state
        yield Input(value=state.query, placeholder="Search the workspace…  (Enter searches, Esc leaves the box)",
                    id="query")
        with Horizontal(id="instruction-row"):
            yield Static("instruction", classes="row-label")
            options = [(name, name) for name in INSTRUCTION_PRESETS] + [("custom…", "custom")]
            value = state.instruction if state.instruction in dict(options).values() else "none"
            yield Select(options, value=value, allow_blank=False, compact=True, id="instruction")
            yield Input(value=state.custom_instruction if state.instruction == "custom" else "", compact=True,
                        id="instruction-text",
                        placeholder="your own instruction (dense & ColBERT read it)")
        yield Static("", id="rendered")
        with Horizontal(id="columns"):
            yield ResultColumn("left", state.left_pipeline)
            yield ResultColumn("right", state.right_pipeline, compare=True)

    def on_mount(self) -> None:
        self._update_instruction_placeholder()
        self.update_rendered()

    @property
    def left(self) -> ResultColumn:
        return self.query_one("#left-column", ResultColumn)

    @property
    def right(self) -> ResultColumn:
        return self.query_one("#right-column", ResultColumn)

    @property
    def columns(self) -> list[ResultColumn]:
        return [self.left, self.right]

    # -- the exact encoder input ---------------------------------------------------------
    def update_rendered(self) -> None:
        state = self.app.state
        label = self.query_one("#rendered", Static)
        text = self.query_one("#query", Input).value
        try:
            instr = resolve_instruction(state.instruction_value)
        except WbError as exc:
            label.update(Text(str(exc), style="italic"))
            return
        rendered = None
        if self.app.searcher_ready:
            try:
                rendered = self.app.engine.rendered_query(self.app.workspace_root, text, state.instruction_value)
            except WbError:
                rendered = None
        note = ""
        if rendered is None:
            rendered = PLAIN.render_query(text, instr)
            note = "  (default template until the index opens)"
        out = Text()
        out.append("encoder input: ", style="bold")
        out.append('"', style="dim")
        if instr and rendered.find(text) > 0:
            cut = rendered.rfind(text) if text else len(rendered)
            prefix, query = rendered[:cut], rendered[cut:]
            if self.screen.has_class("-short"):  # one line: the instruction gives way, never the query
                room = (label.content_size.width or self.size.width or 80) - len("encoder input: ") - 3 - len(query)
                prefix = cut_middle(prefix, max(9, room))
            out.append(prefix, style="italic")
            out.append(query)
        else:
            out.append(rendered)
        out.append('"', style="dim")
        out.append("  dense+colbert; sparse & bm25 get the bare query" + note, style="dim")
        label.update(out)

    def _update_instruction_placeholder(self) -> None:
        state = self.app.state
        box = self.query_one("#instruction-text", Input)
        if state.instruction not in ("custom", "none"):
            box.placeholder = INSTRUCTION_PRESETS.get(state.instruction, "")
        else:
            box.placeholder = "your own instruction (dense & ColBERT read it)"

    # -- events ------------------------------------------------------------------------
    @on(Input.Changed, "#query")
    def _query_changed(self, event: Input.Changed) -> None:
        self.app.state.query = event.value
        self._apply_relevant()  # another query: the evaluated one's judgements no longer apply
        self.update_rendered()
        self.request_search()

    @on(Input.Submitted, "#query")
    def _query_submitted(self, event: Input.Submitted) -> None:
        """Enter runs the query and leaves the box for the results (the screen keys work again; / returns).
        A workspace that could not be opened is tried again first (it may have been fixed meanwhile:
        `wb index` run elsewhere, wb.toml mended); the query runs once it is open."""
        if self.app.workspace_problem and not self.app.workspace_ready:
            if self._timer is not None:  # the typing's pending search: the reopening runs it
                self._timer.stop()
                self._timer = None
            self.app.open_workspace(rerun=True)
        else:
            self.request_search(immediate=True)
        self.app.save_state()
        self.left.table.focus()

    @on(Select.Changed, "#instruction")
    def _instruction_picked(self, event: Select.Changed) -> None:
        state = self.app.state
        value = str(event.value)
        if value == state.instruction:
            return
        state.instruction = value
        self._restore_own_instruction()
        box = self.query_one("#instruction-text", Input)
        with box.prevent(Input.Changed):  # custom…: the free text typed before, kept meanwhile
            box.value = state.custom_instruction if value == "custom" else ""
        self._update_instruction_placeholder()
        self.update_rendered()
        self.app.save_state()
        self.request_search(immediate=True)

    @on(Input.Changed, "#instruction-text")
    def _instruction_typed(self, event: Input.Changed) -> None:
        state = self.app.state
        state.custom_instruction = event.value
        self.app.own_instruction = None  # edited: the text in the box is yours now
        typed = bool(event.value.strip())
        # typing makes it a custom instruction; clearing the box leaves none (and the picker says so)
        wanted = "custom" if typed else "none" if state.instruction == "custom" else state.instruction
        if wanted != state.instruction:
            state.instruction = wanted
            sel = self.query_one("#instruction", Select)
            with sel.prevent(Select.Changed):
                sel.value = state.instruction
            self._update_instruction_placeholder()
        self.update_rendered()
        self.request_search()

    @on(Input.Submitted, "#instruction-text")
    def _instruction_submitted(self, event: Input.Submitted) -> None:
        self.app.save_state()
        self.request_search(immediate=True)

    @on(ResultColumn.PipelineChanged)
    def _pipeline_changed(self, event: ResultColumn.PipelineChanged) -> None:
        state = self.app.state
        if event.column.side == "left":
            state.left_pipeline = event.pipeline
        else:
            state.right_pipeline = event.pipeline
        self.app.save_state()
        self._say_idle_models(event.column)
        self.request_search(immediate=True)

    def _say_idle_models(self, column: ResultColumn) -> None:
        """A column on other models (a fine-tune) whose new pipeline runs none of them: said, as
        ``wb query --compare`` refuses it (its frame says so too, while the pipeline stays)."""
        if not (column.overridden and column.idle_claim):
            return
        roles = "/".join(column.claims)
        pipeline = column.pipeline
        hint = f"{pipeline}+rerank" if "reranker" in column.claims and not pipeline.endswith("+rerank") else "hybrid"
        key = "l" if column.side == "left" else "r"
        self.app.notify(f"{column.model_label} changes nothing for {pipeline}, which runs no {roles} model: "
                        f"{key} picks another pipeline (one that does: {hint})", title="models unused",
                        severity="warning", timeout=8)

    @on(ResultColumn.Open)
    def _open(self, event: ResultColumn.Open) -> None:
        self.open_preview(event.column, event.index)

    # -- actions -----------------------------------------------------------------------
    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()

    def action_focus_results(self) -> None:
        self.left.table.focus()

    def action_focus_instruction(self) -> None:
        """``i``: the instruction picker, open (↑↓ and Enter choose; Esc closes it)."""
        picker = self.query_one("#instruction", Select)
        picker.focus()
        picker.expanded = True

    def action_cycle(self, side: str) -> None:
        column = self.left if side == "left" else self.right
        i = PIPELINES.index(column.pipeline) if column.pipeline in PIPELINES else -1
        column.set_pipeline(PIPELINES[(i + 1) % len(PIPELINES)])

    def set_pipelines(self, left: str | None = None, right: str | None = None) -> None:
        if known_pipeline(left):
            self.left.set_pipeline(left)
        if known_pipeline(right):
            self.right.set_pipeline(right)

    def set_models(self, left: tuple = (None, ""), right: tuple = (None, ""), run: bool = True) -> None:
        """Per-column workspace roots and header labels: ``(root or None, label)`` or ``(root or None,
        label, {role: model})`` for each side (a fine-tune's variant index, or a fine-tuned reranker,
        on one side, the workspace's own models on the other)."""
        self.left.set_models(*left)
        self.right.set_models(*right)
        self.refresh_bindings()  # b (back to the base models) is shown only while comparing
        if run:
            self.request_search(immediate=True)

    @property
    def comparing(self) -> bool:
        """A column answers with other models than the workspace's own."""
        return any(c.root or c.model_label or c.models for c in self.columns)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "focus_results":  # Esc (and ↓) leave the query box or the instruction menu
            return isinstance(self.app.focused, (Input, Select))
        if hides_typed_key(self, action):
            return False
        if action == "base_models":
            return self.comparing
        return True

    def action_base_models(self) -> None:
        if self.comparing:
            self.set_models()
            self.app.notify("both columns use the workspace's own models", timeout=3)

    def action_swap(self) -> None:
        """``x``: the two columns change places whole: each one's pipeline goes with its models (the
        workspace or a fine-tune's variant index, role overrides) and its label, so a fine-tune's
        column still runs the fine-tune after the swap (the right column's marks then compare the
        base against it)."""
        if self._refreshing:  # the variant's worker is bound to its side until it ends
            self.app.notify("the fine-tune's index is being brought up to date: x swaps once it is", timeout=4)
            return
        left, right = self.left, self.right
        a, b = left.model_state(), right.model_state()
        pipelines = (right.pipeline, left.pipeline)
        for column, models, pipeline in ((left, b, pipelines[0]), (right, a, pipelines[1])):
            column.set_pipeline(pipeline, quiet=True)  # set with the models: no search of a half-swapped column
            column.restore_models(models)
        state = self.app.state
        state.left_pipeline, state.right_pipeline = pipelines
        self.app.save_state()
        self.request_search(immediate=True)

    def action_toggle_unit(self) -> None:
        state = self.app.state
        state.unit = "chunk" if state.unit == "doc" else "doc"
        self.app.notify(f"ranking {'chunks' if state.unit == 'chunk' else 'documents'}", timeout=2)
        self.app.save_state()
        self.request_search(immediate=True)

    def set_k(self, k: int) -> None:
        """Results per column, 5 to 100 (from now on exactly that many, whatever the table's height);
        said in a notification."""
        state = self.app.state
        new = max(5, min(100, k))
        if new == self.effective_k():
            self.app.notify(f"{new} results per column is the {'most' if k > new else 'fewest'}", timeout=2)
            return
        state.k = new
        self.app.notify(f"top {new} results per column", timeout=2)
        self.app.save_state()
        self.request_search(immediate=True)

    # + and - step through 5, 10, 20, 30, ... 100: from any count to the next step up or down
    def action_more(self) -> None:
        self.set_k((self.effective_k() // 10 + 1) * 10)

    def action_fewer(self) -> None:
        self.set_k((self.effective_k() - 1) // 10 * 10 or 5)

    def set_relevant(self, query: str, relevant: dict[str, int]) -> None:
        """Mark ``relevant`` documents ({doc id: grade}: an evaluated query's qrels) in both columns
        while ``query`` is the query shown; typing another query drops the marks."""
        self._relevant = (query.strip(), dict(relevant))
        self._apply_relevant()

    def _apply_relevant(self) -> None:
        query, relevant = getattr(self, "_relevant", ("", {}))
        shown = relevant if relevant and self.app.state.query.strip() == query else {}
        for column in self.columns:
            column.set_relevant(shown)

    def set_query(self, text: str, *, run: bool = True) -> None:
        box = self.query_one("#query", Input)
        with box.prevent(Input.Changed):
            box.value = text
        self.app.state.query = text
        self._apply_relevant()
        self.update_rendered()
        if run:
            self.request_search(immediate=True)

    def _restore_own_instruction(self) -> None:
        """Your own free text back in the custom slot (an evaluated query's had taken it)."""
        if self.app.own_instruction is not None:
            self.app.state.custom_instruction, self.app.own_instruction = self.app.own_instruction, None

    def set_instruction(self, value: str | None, *, run: bool = True, keep_own: bool = False) -> None:
        """A preset name, free text, or None / "" / "none" for no instruction (applied at once: the
        next query uses it). A preset or none keeps the free text typed before (``custom…`` in the
        picker brings it back). ``keep_own``: free text that is not yours (an evaluated query's) keeps
        yours too, in the app's ``own_instruction``, until another instruction is picked."""
        state = self.app.state
        value = (value or "").strip()
        if value not in ("", "none") and value not in INSTRUCTION_PRESETS and keep_own:
            if self.app.own_instruction is None and state.custom_instruction.strip() and state.custom_instruction != value:
                self.app.own_instruction = state.custom_instruction
        elif not keep_own or value in ("", "none") or value in INSTRUCTION_PRESETS:
            self._restore_own_instruction()
        if value in ("", "none"):
            name, custom = "none", state.custom_instruction
        elif value in INSTRUCTION_PRESETS:
            name, custom = value, state.custom_instruction
        else:
            name, custom = "custom", value
        if (state.instruction, state.custom_instruction) == (name, custom):
            return
        if state.instruction == "custom" and name != "custom" and custom.strip():
            self.app.notify(f"instruction: {name} (your own is kept: custom… in the picker brings it back)", timeout=6)
        state.instruction, state.custom_instruction = name, custom
        sel = self.query_one("#instruction", Select)
        with sel.prevent(Select.Changed):
            sel.value = name
        box = self.query_one("#instruction-text", Input)
        with box.prevent(Input.Changed):
            box.value = custom if name == "custom" else ""
        self._update_instruction_placeholder()
        self.update_rendered()
        self.app.save_state()
        if run:
            self.request_search(immediate=True)

    def refresh_variants(self) -> None:
        """The workspace was re-indexed: a column on a fine-tune's variant index (Runs ``c``) brings
        that index up to date (incrementally: only what changed is encoded) before it is searched
        again, so the two columns never rank different versions of the documents."""
        root = str(self.app.workspace_root)
        jobs = [(c.side, c.variant[1]) for c in self.columns if c.variant and c.variant[0] == root]
        if not jobs or not hasattr(self.app.engine, "build_variant"):
            return
        for side, _overrides in jobs:
            self._refreshing.add(side)
            column = self.left if side == "left" else self.right
            column.clear(f"bringing the {column.model_label or 'fine-tune'} index up to date…")
        self._variant_refresh_worker(root, jobs)

    @work(thread=True, exclusive=True, group="variant-refresh", name="variant refresh")
    def _variant_refresh_worker(self, root: str, jobs: list[tuple[str, dict[str, str]]]) -> None:
        engine = self.app.engine
        problem = ""
        for _side, overrides in jobs:
            try:
                info = engine.variant(root, overrides)
                if not info.built or info.stale:
                    engine.build_variant(root, overrides, lambda *_: None)
            except WbError as exc:
                problem = str(exc)
                break
        self.app.call_from_thread(self._variants_refreshed, [side for side, _ in jobs], problem)

    def _variants_refreshed(self, sides: list[str], problem: str) -> None:
        self._refreshing.difference_update(sides)
        if problem:
            self.app.notify(problem, title="cannot update the fine-tune's index", severity="error", timeout=10)
        self.run_search(force=True)

    # -- running queries ---------------------------------------------------------------
    def effective_k(self) -> int:
        """The k chosen with +/-, else as many as the result table shows (10 to 50) without the right
        column's dropped line: k stays as it is when that line comes or goes (a swap)."""
        if self.app.state.k is not None:
            return self.app.state.k
        return max(10, min(50, self.left.hit_rows))

    def wanted_key(self, column: ResultColumn) -> tuple:
        s = self.app.state
        return (column.root or str(self.app.workspace_root), s.query.strip(), s.instruction_value or "", column.pipeline,
                self.effective_k(), s.unit, tuple(sorted(column.models.items())))

    def on_resize(self) -> None:
        self.update_rendered()  # the encoder input fits the new width
        if self.app.state.query.strip() and any(c.shown_key is not None for c in self.columns):
            self.request_search()

    def request_search(self, immediate: bool = False) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if immediate:
            self.run_search()
        else:
            self._timer = self.set_timer(DEBOUNCE_S, self.run_search)

    def run_search(self, force: bool = False) -> None:
        """Start a query for every column whose shown results are stale (cancels a running one)."""
        self._timer = None
        text = self.app.state.query.strip()
        if not text:
            self.workers.cancel_group(self, "query")
            for c in self.columns:
                c.clear()
            return
        if not self.app.workspace_ready:  # (another workspace's answer on its way is not shown here)
            self.workers.cancel_group(self, "query")
            for c in self.columns:
                c.clear(self.app.workspace_problem or "opening the index… (the query runs when it is open)")
            return
        # a busy column waits for the running worker, which the new one cancels: it is asked again
        jobs = [(c.side, self.wanted_key(c)) for c in self.columns
                if c.side not in self._refreshing and (force or c.busy or c.shown_key != self.wanted_key(c))]
        if not jobs:
            return
        self.app.save_state()
        problem = self._instruction_problem()
        if problem:
            jobs = self._instruction_refused(jobs, problem)
        else:
            self._said_instruction = ""  # a usable one: an unusable one after it is said again
        for side, _ in jobs:
            (self.left if side == "left" else self.right).set_busy(True, loading=not self.app.models_ready)
        if jobs:
            self._query_worker(jobs, instructed=not problem)

    def _instruction_problem(self) -> str:
        """Why the instruction cannot be used ("" when it can: none, a preset, free text of two or
        more words); the encoder-input line says it as it is typed."""
        try:
            resolve_instruction(self.app.state.instruction_value)
        except WbError as exc:
            return str(exc)
        return ""

    def _instruction_refused(self, jobs: list[tuple[str, tuple]], problem: str) -> list[tuple[str, tuple]]:
        """The instruction cannot be used (``problem``): the columns whose pipeline reads it fail,
        said in one notification (not one per column, nor again for the same instruction); the jobs
        of the others (bm25, sparse), which search without it, are returned."""
        readers = [side for side, key in jobs if reads_instruction(key[3])]
        if not readers:
            return jobs
        self.workers.cancel_group(self, "query")  # an answer to the previous instruction on its way
        for side in readers:
            (self.left if side == "left" else self.right).set_failed()
        self._update_movement()
        if problem != self._said_instruction:
            self._said_instruction = problem
            self.app.notify(problem, title="instruction", severity="error", timeout=8)
        return [(side, key) for side, key in jobs if side not in readers]

    @work(thread=True, exclusive=True, group="query", name="query")
    def _query_worker(self, jobs: list[tuple[str, tuple]], instructed: bool = True) -> None:
        """Search each job's column; ``instructed=False``: without the instruction (it cannot be
        used, and these columns' pipelines do not read it)."""
        worker = get_current_worker()
        engine = self.app.engine
        for side, key in jobs:
            if worker.is_cancelled:
                return
            root, text, instruction, pipeline, k, unit, models = key
            extra = {"models": dict(models)} if models else {}  # role overrides (engines without them: none)
            try:
                result = engine.search(root, text, pipeline=pipeline, k=k, unit=unit,
                                       instruction=(instruction or None) if instructed else None, **extra)
            except WbError as exc:  # this side only: the other column is still searched
                if not worker.is_cancelled:
                    self.app.call_from_thread(self._failed, side, str(exc), worker)
                continue
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._deliver, side, key, result, worker)

    def _deliver(self, side: str, key: tuple, result, worker) -> None:
        if worker.is_cancelled:
            return
        column = self.left if side == "left" else self.right
        column.show(result, key)
        self._update_movement()
        note = getattr(result, "note", "")
        if note and note != self._said_note:  # once, not at every keystroke's search
            self._said_note = note
            self.app.notify(note, title="index", severity="warning", timeout=10)

    def _failed(self, side: str, message: str, worker=None) -> None:
        if worker is not None and worker.is_cancelled:
            return
        (self.left if side == "left" else self.right).set_failed()  # its hits, if any, are the previous query's
        self._update_movement()
        self.app.notify(message, title="query failed", severity="error", timeout=8)

    def _update_movement(self) -> None:
        left, right = self.left, self.right
        if (left.result is None or right.result is None or left.shown_key is None or right.shown_key is None
                or left.busy or right.busy):  # one side still shows the previous query's hits
            right.set_movement([], [])
            left.reserve_rows(0)
            return
        # same query, instruction, k and unit (the workspace may differ: base vs fine-tune)
        same = left.shown_key[1:3] == right.shown_key[1:3] and left.shown_key[4:6] == right.shown_key[4:6]
        if not same:
            right.set_movement([], [])
            left.reserve_rows(0)
            return
        marks, dropped = movements(left.hits, right.hits, self.app.state.unit)
        right.set_movement(marks, dropped)
        left.reserve_rows(right.dropped_rows)

    # -- preview -----------------------------------------------------------------------
    def open_preview(self, column: ResultColumn, index: int) -> None:
        from workbench.tui.preview import PreviewScreen

        if column.result is None or not (0 <= index < len(column.hits)):
            return
        key = column.shown_key
        def back(last: int | None) -> None:  # the hit previewed last (n/p) is the one selected
            if last is not None and column.result is not None and 0 <= last < len(column.hits):
                column.table.move_cursor(row=last, animate=False)

        self.app.push_screen(
            PreviewScreen(column.hits, index, query=column.result.query, instruction=key[2] or None,
                          pipeline=key[3], root=key[0]),  # the shown hits' pipeline (a new one may be searching)
            back,
        )

    def refresh_theme(self) -> None:
        for c in self.columns:
            c.redraw()

    def focused_column(self) -> ResultColumn:
        focused = self.app.focused
        if isinstance(focused, DataTable) and focused.id == "right-table":
            return self.right
        return self.left
