"""The Corpus screen: the workspace, its models per role, its indexed folders and documents, and
adding a folder with a live progress bar (phase, rate, ETA, skipped files with reasons).

Indexing runs in a thread worker and holds only the workspace's write lock, so searching the
previous index keeps working meanwhile; when it finishes the app reopens the index.
"""

from __future__ import annotations

import threading
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, ProgressBar, Static
from textual.widgets.data_table import CellDoesNotExist

from workbench.errors import WbError
from workbench.tui.common import Palette, ago, cut_apart, hides_typed_key, short, short_path
from workbench.tui.engine import STOPPABLE_PHASES, IndexingStopped

AGE_TICK_S = 30.0  # how often the "indexed 3 min ago" ages are redrawn (and an index changed elsewhere read again)
ROLE_NAMES = {"dense": "dense", "colbert": "colbert", "sparse": "sparse", "reranker": "reranker"}


class CorpusPane(Vertical):
    BINDINGS = [
        Binding("a", "add_folder", "Add folder", tooltip="Type a folder to index"),
        Binding("w", "edit_workspace", "Workspace", tooltip="Open another workspace"),
        Binding("e", "reindex", "Re-index", tooltip="Re-index every folder of the workspace (incremental)"),
        Binding("s", "stop_index", "Stop", tooltip="Stop the indexing run (the documents it wrote are kept)"),
        Binding("x", "remove_missing", "Remove missing",
                tooltip="Remove the indexed folder selected, gone from disk, from the index (wb index --remove)"),
        Binding("f5", "reload", "Refresh", tooltip="Read the workspace again (after `wb index` ran elsewhere)"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_index" and not any(w.name == "index" and not w.is_finished for w in self.workers):
            return False  # offered while an indexing run goes only (a removal is not stopped)
        if action == "remove_missing" and not (self.info and any(s.missing for s in self.info.sources)):
            return False  # offered while an indexed folder is gone from disk
        return not hides_typed_key(self, action)  # in a text box the key is typed: not offered

    def __init__(self) -> None:
        super().__init__(id="corpus-pane")
        self.info = None
        self._documents: list = []
        self._enc_t0: float | None = None
        self._enc_done0 = 0
        self._width = 0  # the width the tables were last fitted to (on_resize)
        self._stop = threading.Event()  # set by s (or the app closing): the indexing run stops before its next batch

    def compose(self) -> ComposeResult:
        with Horizontal(id="ws-row", classes="form-row"):
            yield Static("workspace", classes="row-label")
            yield Input(id="workspace-path", compact=True, placeholder="workspace folder (holds wb.toml and the index)")
            yield Button("Open", id="open-ws", compact=True)
        with Horizontal(id="corpus-top"):
            yield Static("", id="corpus-models")
            yield Static("", id="corpus-stats")
        yield Static("", id="corpus-note")  # a rebuild due, under way or cut off; folders still to index
        with Horizontal(id="add-row", classes="form-row"):
            yield Static("add folder", classes="row-label")
            yield Input(id="folder", compact=True, placeholder="folder, file or BEIR corpus.jsonl to index, then Enter")
            yield Button("Index", id="index-btn", compact=True)
        with Vertical(id="index-progress"):
            with Horizontal(id="index-line"):
                yield Static("", id="index-phase")
                yield ProgressBar(id="index-bar", show_eta=False)
            yield Static("", id="index-rate")
        with Horizontal(id="corpus-body"):
            with Vertical(id="corpus-left"):
                yield DataTable(id="sources", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="skipped", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="documents", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#skipped", DataTable).add_columns("skipped file", "reason")
        self.query_one("#index-progress").display = False
        self.query_one("#skipped").display = False
        self.query_one("#sources").border_title = "indexed folders"
        self.query_one("#documents").border_title = "documents"
        self.query_one("#skipped").border_title = "skipped files"
        self.query_one("#workspace-path", Input).value = str(self.app.workspace_root)
        self.set_interval(AGE_TICK_S, self._tick_ages)

    # -- showing the workspace ---------------------------------------------------------
    def show_info(self, info) -> None:
        self.info = info
        pal = Palette.of(self.app)
        box = self.query_one("#workspace-path", Input)
        if not box.has_focus:
            box.value = info.root
        models = Text()
        for i, role in enumerate(("dense", "colbert", "sparse", "reranker")):
            label = info.models.get(role, "?")
            if i:
                models.append("\n")
            models.append(f"{ROLE_NAMES[role]:<9}", style="dim")
            if "zero-shot" in label:  # said first: a narrow box cuts the label's end, never this
                models.append("zero-shot ", style=f"bold {pal.accent}")
                models.append(short(label.replace(" (zero-shot)", ""), 40))
            else:
                models.append(short(label, 50))
        self.query_one("#corpus-models", Static).update(models)
        self.query_one("#corpus-models").border_title = "models"
        self._render_stats()
        note = Text()
        for folder in info.pending:
            note.append(f"not indexed again yet: {folder} (`wb index` finishes it)\n", style=f"bold {pal.down}")
        if info.unfinished:
            note.append(info.unfinished + ("\n" if info.note else ""), style=f"bold {pal.down}")
        if info.note:
            note.append(info.note, style=f"bold {pal.accent}")
        self.query_one("#corpus-note", Static).update(note)
        self.query_one("#corpus-note").display = bool(info.note or info.pending or info.unfinished)
        self._render_sources()
        if not info.exists:
            self.show_documents([])

    def _render_stats(self) -> None:
        info, pal = self.info, Palette.of(self.app)
        stats = Text()
        if info.error:
            stats.append(info.error + "\n", style=f"bold {pal.down}")
        if not info.exists:
            stats.append("nothing indexed yet\n", style="bold")
            stats.append("add a folder below (a)\n", style="dim")
        else:
            stats.append(f"{info.docs:,}", style="bold")
            stats.append(" docs · ", style="dim")
            stats.append(f"{info.chunks:,}", style="bold")
            stats.append(" chunks\n", style="dim")
            stats.append(f"{len(info.sources)}", style="bold")
            stats.append(" folder" + ("s" if len(info.sources) != 1 else "") + "\n", style="dim")
            if info.last_indexed:
                stats.append("indexed ", style="dim")
                stats.append(self._when(info.last_indexed))
                stats.append("\n")
        if info.chunk_tokens:
            stats.append(f"chunks: {info.chunk_tokens} tokens, {info.chunk_overlap} overlap", style="dim")
        self.query_one("#corpus-stats", Static).update(stats)
        self.query_one("#corpus-stats").border_title = "index"

    def _tick_ages(self) -> None:
        """Ages ("3 min ago") follow the clock while the app runs; the folders' cursor stays put. An
        index that `wb index` changed elsewhere meanwhile is read again (as F5 does)."""
        info = self.info
        if info is not None and not self.indexing and self.app.engine.index_changed(info):
            self.app.open_workspace(quiet=True)
            return
        if info is None or not info.exists:
            return
        self._render_stats()
        table = self.query_one("#sources", DataTable)
        for src in info.sources:
            try:
                table.update_cell(src.root, "indexed", self._when(src.indexed_at))
            except (KeyError, CellDoesNotExist):  # the table is being rebuilt
                pass

    def _render_sources(self) -> None:
        table = self.query_one("#sources", DataTable)
        table.clear(columns=True)
        width = max(30, table.size.width - 3 if table.size.width else 46)
        folder_w = max(10, width - 6 - 7 - 10 - 8)
        table.add_column("folder", key="folder", width=folder_w)
        table.add_column(f"{'docs':>6}", key="docs", width=6)
        table.add_column(f"{'chunks':>7}", key="chunks", width=7)
        table.add_column("indexed", key="indexed", width=10)
        pal = Palette.of(self.app)
        for s in self.info.sources if self.info else []:
            if s.missing:  # said first: a narrow column cuts the path's start, never the mark
                folder = Text("missing ", style=f"bold {pal.down}")
                folder.append(short_path(s.root, folder_w - 8), style=pal.down)
            else:
                folder = Text(short_path(s.root, folder_w))  # a Text: a str cell is read as markup
            table.add_row(folder, f"{s.docs:>6,}", f"{s.chunks:>7,}", self._when(s.indexed_at), key=s.root)
        gone = sum(s.missing for s in self.info.sources) if self.info else 0
        table.border_title = f"indexed folders ({gone} missing: x removes one)" if gone else "indexed folders"
        self.refresh_bindings()  # x is offered while a folder is missing

    @staticmethod
    def _when(t: float) -> str:
        return ago(time.time() - t)

    def show_documents(self, rows) -> None:
        self._documents = list(rows)
        self._render_documents()

    def _render_documents(self) -> None:
        rows = self._documents
        table = self.query_one("#documents", DataTable)
        table.clear(columns=True)
        width = max(20, table.size.width - 3 if table.size.width else 40)
        wide = width >= 60
        id_w = min(max([len(r.doc_id) for r in rows] + [8]), width - 8 if not wide else width // 2)
        table.add_column("document", key="doc", width=id_w)
        if wide:
            table.add_column("title", key="title", width=max(10, width - id_w - 10))
        table.add_column("chunks", key="chunks", width=6)
        ids = cut_apart([r.doc_id for r in rows], [id_w] * len(rows))  # ids cut alike keep their ends apart
        for r, shown in zip(rows, ids):
            cells = [Text(shown)]  # a Text: a str cell is read as markup (``[draft] notes.md``)
            if wide:
                cells.append(Text(short(r.title, width - id_w - 10), style="dim"))
            cells.append(f"{r.chunks:>6}")
            table.add_row(*cells)
        table.border_title = documents_title(len(rows), self.info.docs if self.info else 0)

    def on_resize(self, event) -> None:
        """The tables' columns follow the width: drawn again when it changed (a height-only resize
        would reset the cursors for nothing)."""
        if event.size.width == self._width:
            return
        self._width = event.size.width
        if self._documents:
            self._render_documents()
        if self.info is not None:
            self._render_sources()

    # -- actions -----------------------------------------------------------------------
    def action_add_folder(self) -> None:
        self.query_one("#folder", Input).focus()

    def action_edit_workspace(self) -> None:
        self.query_one("#workspace-path", Input).focus()

    def action_reload(self) -> None:
        """Read the workspace again: folders, documents and notes (`wb index` may have run elsewhere)."""
        self.app.open_workspace()

    def action_remove_missing(self) -> None:
        """Remove the selected indexed folder from the index when it is gone from disk (as `wb index
        --remove` does); with another folder selected, the cursor goes to the first missing one."""
        if self.info is None or self.indexing:
            return
        table = self.query_one("#sources", DataTable)
        sources = self.info.sources
        row = table.cursor_row
        if not (0 <= row < len(sources)) or not sources[row].missing:
            first = next((i for i, s in enumerate(sources) if s.missing), None)
            if first is not None:
                table.move_cursor(row=first)
                table.focus()
                self.app.notify("x again removes this missing folder from the index", timeout=4)
            return
        folder = sources[row].root
        self.query_one("#index-progress").display = True
        self.query_one("#index-bar").display = False
        self.query_one("#index-phase", Static).update(Text(f"removing {short_path(folder, 50)}", style="bold"))
        self.query_one("#index-rate", Static).update("")
        self._remove_worker(str(self.app.workspace_root), folder)

    @work(thread=True, exclusive=True, group="index", name="remove folder")
    def _remove_worker(self, root: str, folder: str) -> None:
        try:
            summary = self.app.engine.remove(root, folder)
        except WbError as exc:
            self.app.call_from_thread(self._failed, str(exc), root)
            return
        self.app.call_from_thread(self._removed, root, summary)

    def _removed(self, root: str, summary) -> None:
        """A missing folder left the index: said, and the workspace read again."""
        message = f"{self._elsewhere(root)}removed {summary.root} from the index ({summary.docs_removed} documents)"
        self.query_one("#index-phase", Static).update(Text("removed", style="bold"))
        self.query_one("#index-rate", Static).update(Text(message, style="dim"))
        self.app.notify(message, title="index updated", timeout=6)
        self.app.index_changed()

    def action_reindex(self) -> None:
        if self.info is None or not self.info.sources:
            self.app.notify("nothing indexed yet: add a folder first", severity="warning")
            return
        self.start_index([s.root for s in self.info.sources])

    @on(Input.Submitted, "#workspace-path")
    @on(Button.Pressed, "#open-ws")
    def _open_workspace(self) -> None:
        path = self.query_one("#workspace-path", Input).value.strip()
        if path:
            self.leave_boxes()  # a one-shot box: the screen keys (1-4, a, w) work again
            self.app.set_workspace(path)

    @on(Input.Submitted, "#folder")
    @on(Button.Pressed, "#index-btn")
    def _index_clicked(self) -> None:
        folder = self.query_one("#folder", Input).value.strip()
        if not folder:
            self.app.notify("type a folder to index first", severity="warning")
            self.query_one("#folder", Input).focus()
            return
        self.leave_boxes()
        self.start_index([folder])

    def leave_boxes(self) -> None:
        """Focus the documents table (after Enter in the workspace or add-folder box)."""
        self.query_one("#documents", DataTable).focus()

    def show_workspace_root(self, typed_over: bool = False) -> None:
        """The workspace box shows the open workspace unless the user is typing in it
        (``typed_over``: also then, e.g. when the path typed there was refused)."""
        box = self.query_one("#workspace-path", Input)
        if typed_over or not box.has_focus:
            box.value = str(self.app.workspace_root)

    def workspace_changed(self) -> None:
        """Another workspace was opened: drop what belonged to the previous one (the last indexing
        run's summary and skipped files; a run still going keeps its progress shown)."""
        self.show_workspace_root()
        if self.indexing:
            return
        self.query_one("#index-progress").display = False
        self.query_one("#index-phase", Static).update("")
        self.query_one("#index-rate", Static).update("")
        skipped = self.query_one("#skipped", DataTable)
        skipped.clear()
        skipped.display = False

    # -- indexing ----------------------------------------------------------------------
    @property
    def indexing(self) -> bool:
        return any(w.group == "index" and not w.is_finished for w in self.workers)

    def start_index(self, folders: list[str]) -> None:
        """Index each folder in turn, in the background."""
        from pathlib import Path

        if self.indexing:
            self.app.notify("an indexing run is already going", severity="warning")
            return
        paths = [Path(f).expanduser() for f in folders]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            self.app.notify(f"no such file or folder: {missing[0]}", title="cannot index", severity="error")
            return
        self.query_one("#index-progress").display = True
        self.query_one("#index-bar").display = True
        self.query_one("#skipped").display = False
        self.query_one("#index-rate", Static).update("")
        self.query_one("#index-bar", ProgressBar).update(total=None, progress=0)
        self._stop.clear()
        self._index_worker(str(self.app.workspace_root), [str(p) for p in paths])
        self.refresh_bindings()  # s (stop) is offered now

    def action_stop_index(self) -> None:
        """Stop the indexing run before its next batch (as Ctrl-C stops `wb index`)."""
        if not self.check_action("stop_index", ()) or self._stop.is_set():
            return
        self._stop.set()
        self.query_one("#index-phase", Static).update(Text("stopping after the current batch…", style="bold"))

    def on_unmount(self) -> None:
        self._stop.set()  # the app is closing: a run stops at its next batch instead of holding the exit

    @work(thread=True, exclusive=True, group="index", name="index")
    def _index_worker(self, root: str, folders: list[str]) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        engine = self.app.engine
        try:
            reason = engine.rebuild_reason(root)
        except WbError as exc:
            self.app.call_from_thread(self._failed, str(exc), root)
            return
        if reason:  # said first: every folder is encoded again, and the old index answers meanwhile
            self.app.call_from_thread(self.app.notify, f"{reason} beside the old one, which answers queries "
                                      "meanwhile", title="rebuilding", severity="warning", timeout=10)
        shown = False

        def progress(phase: str, done: int, total: int) -> None:
            nonlocal shown
            if self._stop.is_set() or worker.is_cancelled:  # s, or the app closing
                if phase in STOPPABLE_PHASES:
                    raise IndexingStopped
                return  # writing: it ends the step it is in first
            if reason and phase == "encoding" and not shown:  # the Corpus note: "being rebuilt"
                shown = True
                try:
                    info = engine.info(root)
                except WbError:
                    info = None
                if info is not None and root == str(self.app.workspace_root):
                    self.app.call_from_thread(self.show_info, info)
            self.app.call_from_thread(self._progress, phase, done, total)

        summaries = []
        for folder in folders:
            self.app.call_from_thread(self._starting, folder)
            try:
                summaries.append(engine.index(root, folder, progress))
            except IndexingStopped:
                if self.app.is_running:  # else the app has closed: nothing left to show it on
                    self.app.call_from_thread(self._stopped, root, folder)
                return
            except WbError as exc:
                self.app.call_from_thread(self._failed, str(exc), root)
                return
            if summaries[-1].rebuilt:
                break  # a settings rebuild indexes every folder of the workspace in its one run
        self.app.call_from_thread(self._finished, summaries, root)

    def _starting(self, folder: str) -> None:
        self._enc_t0 = None
        self.query_one("#index-phase", Static).update(Text(f"indexing {short_path(folder, 50)}", style="bold"))

    def _progress(self, phase: str, done: int, total: int) -> None:
        bar = self.query_one("#index-bar", ProgressBar)
        now = time.monotonic()
        rate_line = ""
        if phase == "encoding":
            if self._enc_t0 is None:
                self._enc_t0, self._enc_done0 = now, done
            bar.update(total=max(total, 1), progress=done)
            elapsed = now - self._enc_t0
            rate = (done - self._enc_done0) / elapsed if elapsed > 0 and done > self._enc_done0 else 0.0
            if rate > 0:
                eta = (total - done) / rate
                rate_line = f"{done:,} / {total:,} chunks · {rate:.1f} chunks/s · ETA {int(eta) // 60}:{int(eta) % 60:02d}"
            else:
                rate_line = f"{done:,} / {total:,} chunks"
        elif phase == "chunking":
            bar.update(total=None)
            rate_line = f"{total:,} documents to encode"
        else:
            bar.update(total=None)
        self.query_one("#index-phase", Static).update(Text(phase, style="bold"))
        if rate_line:
            self.query_one("#index-rate", Static).update(Text(rate_line, style="dim"))

    def on_worker_state_changed(self, event) -> None:
        if event.worker.group == "index" and event.worker.is_finished:
            self.refresh_bindings()  # s (stop) is no longer offered

    def _elsewhere(self, root: str) -> str:
        """``"in workspace ROOT: "`` when the run indexed into another workspace than the one open
        now (the user switched while it ran), else ""."""
        return "" if root == str(self.app.workspace_root) else f"in workspace {short_path(root, 50)}: "

    def _stop_bar(self, full: bool) -> None:
        """A determinate bar, full or empty (an indeterminate one would keep animating)."""
        bar = self.query_one("#index-bar", ProgressBar)
        bar.update(total=1, progress=1 if full else 0)
        if not full:
            bar.display = False

    def _failed(self, message: str, root: str) -> None:
        """The run failed: said here and in one notification (reopening the index says nothing more)."""
        self._ended("indexing failed", self._elsewhere(root) + message, "error", 10)

    def _stopped(self, root: str, folder: str) -> None:
        """The run was stopped (s): what it wrote is kept; the corpus note says what is missing."""
        self._ended("stopped", f"{self._elsewhere(root)}indexing of {short_path(folder, 50)} stopped: the documents "
                    "written so far are kept; indexing the folder again continues it", "warning", 8)

    def _ended(self, phase: str, message: str, severity: str, timeout: float) -> None:
        """A run that did not finish: its phase and message under the bar, one notification, and
        the workspace read again quietly."""
        self._stop_bar(full=False)
        self.query_one("#index-phase", Static).update(Text(phase, style="bold"))
        self.query_one("#index-rate", Static).update(Text(message))
        title = phase if phase.startswith("indexing") else f"indexing {phase}"
        self.app.notify(message, title=title, severity=severity, timeout=timeout)
        self.app.index_changed(quiet=True)

    def _finished(self, summaries: list, root: str) -> None:
        self._stop_bar(full=True)
        self.query_one("#index-phase", Static).update(Text("done", style="bold"))
        skipped_files = [f for s in summaries for f in s.skipped]
        self.query_one("#index-rate", Static).update(Text(self._elsewhere(root) + summary_line(summaries), style="dim"))
        skipped = self.query_one("#skipped", DataTable)
        skipped.clear()
        for f in skipped_files[:2000]:
            skipped.add_row(Text(short_path(f.path, 48)), Text(f.reason))
        skipped.display = bool(skipped_files)
        skipped.border_title = f"skipped files ({len(skipped_files)})"
        for s in summaries:
            if s.rebuilt:
                self.app.notify(s.rebuilt, severity="warning", timeout=8)
        docs = sum(s.docs_indexed for s in summaries)
        chunks = sum(s.chunks_written for s in summaries)
        unchanged = sum(s.docs_unchanged for s in summaries)
        self.app.notify(f"{self._elsewhere(root)}indexed {docs} documents ({chunks} chunks), {unchanged} unchanged, "
                        f"{len(skipped_files)} skipped", title="index updated", timeout=6)
        self.app.index_changed()


def documents_title(shown: int, total: int) -> str:
    """The documents list's title: how many it lists, and of how many when it lists the first only."""
    if not shown:
        return "documents"
    if total > shown:
        return f"documents (first {shown:,} of {total:,})"
    return f"documents ({shown:,})"


def summary_line(summaries: list) -> str:
    """One line for the indexing run's summaries: a folder's own line, or the sum over several in
    the same words (the line has room for one; the workspace's totals are the last folder's)."""
    from workbench.index.indexer import IndexSummary

    if len(summaries) <= 1:
        return summaries[0].line() if summaries else ""
    merged = IndexSummary(root="")
    for part in summaries:
        merged.add_written(part)  # documents, chunks, skipped files; the totals of the last
        merged.docs_unchanged += part.docs_unchanged
        merged.docs_removed += part.docs_removed
        merged.seconds += part.seconds
    return f"{len(summaries)} folders: {merged.line()}"
