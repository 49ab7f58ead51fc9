"""``wb`` with no arguments: the workbench TUI (Corpus, Search, Evaluate, Runs).

Nothing blocks the event loop: opening the index, loading models (warmed with a throw-away query),
indexing, queries and evaluation all run in workers; errors become notifications. What the user
picked (workspace, pipelines, instruction, query, dataset) persists in ``TuiState``.

The workspace opened at launch: ``--workspace``/``-w``, else ``$WB_WORKSPACE``, else ``./.wb`` when it
exists here, else the remembered one if its folder still exists, else ``./.wb``
(``workbench.tui.state.initial_workspace``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.widgets import Button, DataTable, Header, Input, Select, TabbedContent, TabPane

from workbench.errors import WbError
from workbench.tui.commands import WbCommands
from workbench.tui.corpus import CorpusPane
from workbench.tui.evaluate import EvalPane
from workbench.tui.footer import NARROW_TERMINAL, WbFooter
from workbench.tui.runs import RunsPane
from workbench.tui.search import SearchPane
from workbench.tui.state import TuiState, initial_workspace

TABS = ("corpus", "search", "evaluate", "runs")


class WbApp(App):
    CSS_PATH = "wb.tcss"
    TITLE = "wb"
    # a terminal under 30 lines tags the screen -short, one under 100 columns -narrow: wb.tcss
    # packs the forms tighter there (80x24 is the smallest usual terminal)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_TERMINAL, "-wide")]
    COMMANDS = App.COMMANDS | {WbCommands}
    BINDINGS = [
        Binding("1", "show_tab('corpus')", "Corpus", show=False, tooltip="Corpus: workspace, models, indexing"),
        Binding("2", "show_tab('search')", "Search", show=False, tooltip="Search: two pipelines side by side"),
        Binding("3", "show_tab('evaluate')", "Evaluate", show=False, tooltip="Evaluate: wb eval on a BEIR dataset"),
        Binding("4", "show_tab('runs')", "Runs", show=False, tooltip="Runs: training runs"),
        Binding("escape", "leave_input", "Leave box",  # shown in a text box only (check_action)
                tooltip="Leave a text box for the screen's table (then single-letter keys work)"),
        Binding("question_mark", "help", "Keys", tooltip="Show every key"),
        # shown: inside a text box `?` is typed, so the footer offers F1 there (outside, the two keys share one entry)
        Binding("f1", "help", "Keys", tooltip="Show every key (works inside text boxes too)"),
        Binding("q", "quit_twice", "Quit", show=False,
                tooltip="Quit: q twice (a q typed where a query was meant does not end the session); ctrl+q at once"),
        # priority: run as the App reads the key, so the keys typed right after it (fast typing, a
        # burst) are forwarded to the query box; a plain binding ran only once the results table got
        # to the key, and the table had been handed the next keys already ('r' cycled a pipeline)
        Binding("slash", "type_query", "Query", priority=True, tooltip="Focus the query box"),
    ]

    def __init__(self, workspace: str | None = None, *, engine=None, state_path: Path | None = None,
                 warm: bool = True) -> None:
        super().__init__()
        if engine is None:
            from workbench.tui.engine import Engine

            engine = Engine()
        self.engine = engine
        self.state_path = state_path
        self.state = TuiState.load(state_path)
        self.workspace_root: Path = initial_workspace(workspace, self.state.workspace)
        self.state.workspace = str(self.workspace_root)
        self.warm = warm
        self._q_pressed_at = float("-inf")  # see action_quit_twice
        self.searcher_ready = False
        self.workspace_ready = False
        self.workspace_problem = ""
        self.models_ready = False
        self._first_open = True
        # your own free-text instruction while an evaluated query's takes its place in Search
        # (SearchPane.set_instruction with keep_own): custom… brings it back, the state file keeps it
        self.own_instruction: str | None = None

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool | None = None) -> None:
        """Show a notification whose ``message`` is literal text unless ``markup=True`` is passed: wb's
        notifications quote paths, instructions and errors as typed (Textual parsed them as markup,
        where ``[/x]`` in a path crashed the toast and ``[draft]`` vanished from it). Textual's own
        notifications (its ctrl+c hint, a saved screenshot) are written in markup and keep it.
        (``Widget.notify`` passes ``markup=True``: wb's widgets call ``self.app.notify``.)"""
        if markup is None:
            markup = sys._getframe(1).f_globals.get("__name__", "").startswith("textual.")
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        tab = self.state.tab if self.state.tab in TABS else "search"
        with TabbedContent(initial=tab, id="tabs"):
            with TabPane("1 Corpus", id="corpus"):
                yield CorpusPane()
            with TabPane("2 Search", id="search"):
                yield SearchPane()
            with TabPane("3 Evaluate", id="evaluate"):
                yield EvalPane()
            with TabPane("4 Runs", id="runs"):
                yield RunsPane()
        yield WbFooter()

    def on_mount(self) -> None:
        if self.state.theme and self.state.theme in self.available_themes:
            self.theme = self.state.theme
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._update_subtitle()
        self._focus_tab(self.state.tab)
        self.open_workspace()

    @property
    def search(self) -> SearchPane:
        return self.query_one(SearchPane)

    @property
    def corpus(self) -> CorpusPane:
        return self.query_one(CorpusPane)

    @property
    def evaluate(self) -> EvalPane:
        return self.query_one(EvalPane)

    @property
    def runs(self) -> RunsPane:
        return self.query_one(RunsPane)

    def _update_subtitle(self) -> None:
        if self.workspace_ready:
            status = "models ready" if self.models_ready else "loading models…"
        else:  # "no index" only once opening it has said so (a problem), never while it opens
            status = ("no index" if self.workspace_problem else "opening the index…") if not self.searcher_ready else ""
        home = str(Path.home())
        root = str(self.workspace_root)
        shown = "~" + root[len(home):] if root.startswith(home + os.sep) else root
        self.sub_title = f"{shown} · {status}" if status else shown

    def save_state(self) -> None:
        """Write the state file; your own free-text instruction is saved even while an evaluated
        query's shows in its place (``own_instruction``)."""
        own = self.own_instruction
        if own is None:
            self.state.save(self.state_path)
            return
        shown = self.state.custom_instruction
        self.state.custom_instruction = own
        try:
            self.state.save(self.state_path)
        finally:
            self.state.custom_instruction = shown

    # -- workspace ---------------------------------------------------------------------
    def set_workspace(self, path: str) -> None:
        """Open the workspace at ``path``; one that cannot be (a file, inside a file) is said, and the
        current one stays open."""
        from workbench.workspace import Workspace

        try:
            root = Workspace.resolve(path).root
        except WbError as exc:
            self.notify(str(exc), title="workspace", severity="error", timeout=8)
            self.corpus.show_workspace_root(typed_over=True)  # the box shows the workspace that stays open, not the refused path
            return
        if root == self.workspace_root:
            self.open_workspace()
            return
        self.workspace_root = root
        self.state.workspace = str(root)
        self.save_state()
        for column in self.search.columns:  # a fine-tune's index belongs to the previous workspace
            column.set_models(None, "")
        self.search.refresh_bindings()
        self.corpus.workspace_changed()
        self.query_one(RunsPane).refresh_runs()
        self.open_workspace()

    def index_changed(self, quiet: bool = False) -> None:
        """The index of the current workspace changed: reopen it and rerun the query (a column on a
        fine-tune's variant index first brings that index up to date). ``quiet``: the indexing run
        failed or was stopped and has said so: a workspace that cannot open yet is not said again."""
        self.search.refresh_variants()
        self.open_workspace(rerun=True, quiet=quiet)

    def open_workspace(self, rerun: bool = False, quiet: bool = False) -> None:
        """Open the current workspace in the background (``quiet``: a problem shows in the subtitle
        and the Search columns, with no notification)."""
        self.searcher_ready = self.workspace_ready = self.models_ready = False
        self.workspace_problem = ""
        self._update_subtitle()
        self._open_worker(str(self.workspace_root), rerun, quiet)

    @work(thread=True, exclusive=True, group="open", name="open workspace")
    def _open_worker(self, root: str, rerun: bool, quiet: bool = False) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        engine = self.engine
        try:
            info = engine.info(root)
        except WbError as exc:
            self.call_from_thread(self._open_failed, root, str(exc), quiet=quiet)
            return
        if worker.is_cancelled:
            return
        self.call_from_thread(self.corpus.show_info, info)
        if not info.exists:
            self.call_from_thread(self._open_failed, root,
                                  f"no index in workspace {root}: add a folder on the Corpus screen (1)", True, quiet)
            return
        try:
            engine.searcher(root)
        except WbError as exc:
            self.call_from_thread(self._open_failed, root, str(exc), quiet=quiet)
            return
        if worker.is_cancelled:
            return
        self.call_from_thread(self._opened, root, rerun)
        try:
            docs = engine.documents(root)
            if not worker.is_cancelled:
                self.call_from_thread(self.corpus.show_documents, docs)
        except WbError as exc:
            self.call_from_thread(self.notify, str(exc), severity="warning")
        if not self.warm or worker.is_cancelled:
            self.call_from_thread(self._models_ready, root, None)
            return
        try:
            seconds = engine.warm(root, [self.state.left_pipeline, self.state.right_pipeline])
        except WbError as exc:
            self.call_from_thread(self._open_failed, root, str(exc))
            return
        if not worker.is_cancelled:
            self.call_from_thread(self._models_ready, root, seconds)

    def _open_failed(self, root: str, message: str, missing: bool = False, quiet: bool = False) -> None:
        if root != str(self.workspace_root):
            return
        self.workspace_ready = False
        self.workspace_problem = message
        self._update_subtitle()
        if not quiet:
            self.notify(message, title="no index" if missing else "workspace",
                        severity="warning" if missing else "error", timeout=10)
        if missing and self._first_open and self.state.tab == "search":
            self.action_show_tab("corpus")
        self._first_open = False
        if self.search.is_mounted:
            self.search.run_search()

    def _opened(self, root: str, rerun: bool) -> None:
        if root != str(self.workspace_root):
            return
        self.searcher_ready = self.workspace_ready = True
        self._first_open = False
        self._update_subtitle()
        search = self.search
        search.update_rendered()
        if rerun:
            for c in search.columns:
                c.shown_key = None
        search.run_search()

    def _models_ready(self, root: str, seconds: float | None) -> None:
        if root != str(self.workspace_root):
            return
        self.models_ready = True
        self._update_subtitle()

    # -- screens -----------------------------------------------------------------------
    def action_quit_twice(self) -> None:
        """``q`` quits when pressed again within two seconds (ctrl+q quits at once)."""
        now = time.monotonic()
        if now - self._q_pressed_at < 2.0:
            self.exit()
            return
        self._q_pressed_at = now
        self.notify("press q again to quit", timeout=2)

    def action_show_tab(self, tab: str) -> None:
        if tab not in TABS:
            return
        while len(self.screen_stack) > 1:
            draft = getattr(self.screen, "current_draft", None)
            if draft is not None:  # the launch form left by the palette keeps what was typed, as Escape does
                self.runs.form_draft = draft()
            self.pop_screen()
        focused = self.focused
        if focused is not None and self.query_one(f"#{tab}", TabPane) not in focused.ancestors:
            # Let go of the old screen's widget first: hidden, it would hand focus to a sibling there,
            # and TabbedContent shows the tab of whatever has focus (the old screen again).
            self.set_focus(None)
        self.query_one(TabbedContent).active = tab
        self.state.tab = tab
        self.refresh_bindings()  # the footer's "/" depends on the tab (check_action)
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if not self.screen_stack:  # a tab switch still queued as the app closes: nothing to update
            return
        tab = event.pane.id or "search"
        if tab != self.state.tab:
            self.state.tab = tab
            self.save_state()
            self.refresh_bindings()
        if tab == "runs":
            self.runs.refresh_runs()

    def _focus_tab(self, tab: str) -> None:
        """Focus the shown screen's table (or button), never a text box with text in it: a text box
        selects its text when focused, and the next key (``2``, ``w``) would replace it. Only an empty
        Search query box gets focus (typing there is what the user came for)."""
        before = self.focused

        def focus() -> None:
            now = self.focused
            if now is not None and now is not before and self.query_one(f"#{tab}", TabPane) in now.ancestors:
                return  # something in the screen was focused meanwhile (a key such as `a` after `1`)
            if tab == "search":
                search = self.search
                query = self.query_one("#query", Input)
                if (search.left.result is not None and search.left.hits) or query.value:
                    search.left.table.focus()
                else:
                    query.focus()
            elif tab == "corpus":
                self.query_one("#documents", DataTable).focus()
            elif tab == "evaluate":
                run = self.query_one("#eval-run", Button)
                if self.evaluate.report or run.disabled:
                    self.query_one("#per-query", DataTable).focus()
                else:
                    run.focus()
            elif tab == "runs":
                self.query_one("#runs-table", DataTable).focus()

        self.call_after_refresh(focus)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "type_query":  # "/" typed inside a text box is a character, and only Search has the box;
            # over a screen on top (preview, help) the box is hidden: it would take the keys meant for that screen
            return (self.state.tab == "search" and len(self.screen_stack) == 1
                    and not isinstance(self.focused, (Input, Select)))
        if action == "leave_input":
            return isinstance(self.focused, Input)
        return True

    def action_type_query(self) -> None:
        self.screen.set_focus(self.query_one("#query", Input))  # now: the next keys are forwarded to it

    def action_leave_input(self) -> None:
        if isinstance(self.focused, Input):
            tab = self.state.tab
            target = {"search": "#left-table", "corpus": "#documents", "evaluate": "#per-query",
                      "runs": "#runs-table"}.get(tab)
            if target:
                self.query_one(target).focus()
            else:
                self.set_focus(None)

    def action_help(self) -> None:
        from workbench.tui.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- helpers used by the command palette and the Evaluate screen -------------------
    def search_call(self, method: str, *args) -> None:
        self.action_show_tab("search")
        getattr(self.search, method)(*args)

    def set_pipelines(self, left: str | None = None, right: str | None = None) -> None:
        self.action_show_tab("search")
        self.search.set_pipelines(left, right)

    def set_instruction(self, value: str) -> None:
        self.action_show_tab("search")
        self.search.set_instruction(value)

    def action_add_folder(self) -> None:
        self.action_show_tab("corpus")
        self.call_after_refresh(self.corpus.action_add_folder)

    def action_edit_workspace(self) -> None:
        self.action_show_tab("corpus")
        self.call_after_refresh(self.corpus.action_edit_workspace)

    def action_run_eval(self) -> None:
        self.action_show_tab("evaluate")
        self.evaluate.action_run()

    def jump_to_search(self, query: str, left: str | None = None, right: str | None = None,
                       workspace: str | None = None, right_models: tuple | None = None,
                       instruction: str | None = None, relevant: dict[str, int] | None = None) -> None:
        """Open ``query`` in Search, with the given pipelines when they are known ones (and in
        ``workspace``, the one an evaluation indexed its dataset into, when given), the instruction
        ``instruction`` (None: none, as ``wb eval`` searches), and the right column on ``right_models``
        (``(root or None, label[, {role: model}[, claimed roles]])``: a ``--compare`` system's models; None: both
        columns on the workspace's own models). ``relevant`` ({doc id: grade}, the query's qrels):
        the hits Search marks as relevant while this query is shown.

        An evaluation's own index is opened in the Search columns only: the app stays on (and
        remembers) the user's workspace, so Corpus, Runs and Evaluate go on working on it, and
        ``b`` in Search returns both columns to it."""
        visiting = None
        if workspace:
            from workbench.workspace import Workspace

            if Workspace.resolve(workspace).root != self.workspace_root:
                visiting = str(Workspace.resolve(workspace).root)
        self.action_show_tab("search")
        search = self.search
        search.set_pipelines(left, right)
        claims = tuple(right_models[3]) if right_models is not None and len(right_models) > 3 else ()

        def base_side(root: str | None, idle: str) -> tuple:
            """The left column: the base of the compared roles (named while its pipeline runs one)."""
            return (root, f"{'+'.join(claims)} · base", None, claims, idle) if claims else (root, idle)

        if visiting:
            base = base_side(visiting, "evaluation's index")
            if right_models is None:
                right_models = (visiting, "evaluation's index")
            elif right_models[0] is None:  # other role models over the same (evaluation's) index
                right_models = (visiting, *right_models[1:])
            search.set_models(left=base, right=right_models, run=False)
            self.notify("Search shows the evaluation's index (b: back to this workspace's)", timeout=6)
        elif right_models is not None:
            search.set_models(left=base_side(None, "base models"), right=right_models, run=False)
        elif any(c.root or c.model_label or c.models for c in search.columns):
            search.set_models(run=False)
        search.set_instruction(instruction, run=False, keep_own=True)  # yours is kept, not replaced
        search.set_relevant(query, relevant or {})
        search.set_query(query)
        self.call_after_refresh(search.left.table.focus)

    # -- theme and exit ----------------------------------------------------------------
    def _theme_changed(self, theme) -> None:
        self.state.theme = theme.name
        self.save_state()
        if self.search.is_mounted:
            self.search.refresh_theme()
        if self.evaluate.is_mounted and self.evaluate.report:
            self.evaluate.show_report(self.evaluate.report, self.evaluate.compare)

    def on_unmount(self) -> None:
        self.save_state()

    def get_system_commands(self, screen):
        """Textual's palette commands without its own "Keys" panel (wb's "Show keys", ``?``, is the one
        that lists wb's keys; Textual's docked beside the results and Esc did not close it)."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command


def native_log_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wb" / "tui-stderr.log"


class _NativeStderrToLog:
    """Keep native libraries' writes to fd 2 (Rust/C++ loggers) off the screen while the app runs.

    Textual draws on ``sys.__stderr__``: it gets a duplicate of the terminal's fd, and fd 2 itself
    is pointed at a log file; both are restored on exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.active = False

    def __enter__(self):
        try:
            if not os.isatty(2):
                return self
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.path, "a", buffering=1)
            self._saved_fd = os.dup(2)
            self._screen = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.__stderr__, "encoding", None)
                                     or "utf-8", errors="replace")
            self._saved_stderr = sys.__stderr__
            os.dup2(self._log.fileno(), 2)
            sys.__stderr__ = self._screen
            self.active = True
        except OSError:
            self.active = False
        return self

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        try:
            self._screen.flush()
        except OSError:
            pass
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        sys.__stderr__ = self._saved_stderr
        self._screen.close()
        self._log.close()


def run_app(workspace: str | None = None) -> None:
    """Open the workbench on ``workspace`` (else $WB_WORKSPACE, else ./.wb when it exists here, else the
    last one if its folder still exists, else ./.wb: see ``initial_workspace``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("LANCEDB_LOG", "error")  # lancedb's Rust logger (LANCE_LOG does not reach it)
    app = WbApp(workspace)
    with _NativeStderrToLog(native_log_path()):
        app.run()
    if app.return_code:
        print(f"wb: the workbench stopped with an error (native log: {native_log_path()})", file=sys.stderr)
