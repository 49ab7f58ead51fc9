"""One result column of the Search screen: a pipeline picker, the ranked hits, the selected hit's
per-mode detail, and (in the right column) movement against the left column and what dropped out."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Select, Static

from workbench.config import MODES
from workbench.tui.common import (MODE_SHORT, PIPELINES, Palette, cut_apart, fmt_score, known_pipeline, mode_line,
                                  pipeline_uses, short)

DETAIL_ROWS = 4  # the selected hit's detail: its frame line, the per-mode ranks, the snippet
DROPPED_ROWS = 1  # the right column's "dropped:" line, when there is one
NARROW_COLUMN = 44  # a column narrower than this (an 80-column terminal) says "10 · 42 ms", not "10 hits · 42 ms"


class ResultsTable(DataTable):
    """One column's hits. ← and → move to the left and the right column (a row cursor has nothing
    to move sideways, and the hits never need a sideways scroll)."""

    BINDINGS = [
        Binding("left", "column('left')", "Left column", show=False, tooltip="Move to the left column's hits"),
        Binding("right", "column('right')", "Right column", show=False, tooltip="Move to the right column's hits"),
    ]

    def action_column(self, side: str) -> None:
        self.screen.query_one(f"#{side}-table", DataTable).focus()


class ResultColumn(Vertical):
    """Results of one pipeline. ``compare=True`` adds the movement column and the dropped list."""

    class PipelineChanged(Message):
        def __init__(self, column: "ResultColumn", pipeline: str) -> None:
            super().__init__()
            self.column = column
            self.pipeline = pipeline

    class Open(Message):
        """Enter on a hit: open its preview."""

        def __init__(self, column: "ResultColumn", index: int) -> None:
            super().__init__()
            self.column = column
            self.index = index

    def __init__(self, side: str, pipeline: str, *, compare: bool = False) -> None:
        super().__init__(id=f"{side}-column", classes="result-column")
        self.side = side
        self.pipeline = pipeline if known_pipeline(pipeline) else "hybrid"
        self.compare = compare
        self._width = 0  # the width the table was last fitted to (on_resize)
        self.root: str | None = None  # a workspace of its own (a fine-tune's variant index); None: the app's
        self.models: dict[str, str] = {}  # role overrides the engine applies (e.g. reranker=runs/NAME)
        self.model_label = ""  # shown in the header when set, e.g. "dense · ft:NAME"
        self.claims: tuple[str, ...] = ()  # the roles model_label names (shown only while the pipeline runs one)
        self.idle_label: str | None = None  # the label while the pipeline runs none of them (None: "… unused")
        self.variant: tuple[str, dict[str, str]] | None = None  # (workspace, overrides) ``root`` is the variant of
        self.result = None  # QueryResult shown
        self.shown_key: tuple | None = None  # (workspace, query, instruction, pipeline, k, unit, models) shown
        self.marks: list[str] = []
        self.dropped: list = []
        self.relevant: dict[str, int] = {}  # doc id -> grade: the shown query's judgements (from Evaluate)
        self.message = "type a query"
        self._busy = False
        self._loading = False
        self._failed = False  # the last query failed: the hits shown are the previous one's

    def compose(self) -> ComposeResult:
        with Horizontal(classes="column-head"):
            yield Select(self._menu(self.pipeline), value=self.pipeline, allow_blank=False, compact=True,
                         id=f"{self.side}-pipeline", classes="pipeline-select",
                         tooltip=f"{self.side} pipeline")
            yield Static("", id=f"{self.side}-status", classes="column-status")
        table = ResultsTable(id=f"{self.side}-table", cursor_type="row", zebra_stripes=True, classes="results",
                             cell_padding=0)
        yield table
        yield Static("", id=f"{self.side}-detail", classes="detail")
        if self.compare:
            yield Static("", id=f"{self.side}-dropped", classes="dropped")

    def on_mount(self) -> None:
        self._render_model()
        self.redraw()

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    # -- state -------------------------------------------------------------------------
    @staticmethod
    def _menu(pipeline: str) -> list[tuple[str, str]]:
        """The pipeline menu: :data:`PIPELINES`, and ``pipeline`` after them when it is another fusion."""
        return [(p, p) for p in PIPELINES + ([] if pipeline in PIPELINES else [pipeline])]

    def set_pipeline(self, pipeline: str, quiet: bool = False) -> None:
        """Change the pipeline (as if picked); posts PipelineChanged. A fusion the menu does not offer
        (``dense+bm25``) is added to it. ``quiet``: at once and without PipelineChanged (the caller
        saves the state and searches)."""
        select = self.query_one(Select)
        if pipeline not in PIPELINES and pipeline not in [value for _label, value in select._options]:
            select.set_options(self._menu(pipeline))
        if quiet:
            with select.prevent(Select.Changed):
                select.value = pipeline
            self.pipeline = pipeline
            self._render_model()
            return
        select.value = pipeline

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        event.stop()
        value = str(event.value)
        if value != self.pipeline:
            self.pipeline = value
            self._render_model()  # the label's claim depends on the pipeline
            self.post_message(self.PipelineChanged(self, value))

    def set_models(self, root: str | None, label: str = "", models: dict[str, str] | None = None,
                   claims: tuple[str, ...] = (), idle: str | None = None) -> None:
        """Answer from workspace ``root`` (None: the app's workspace) with the role overrides ``models``
        (models no index depends on, e.g. ``{"reranker": "runs/NAME"}``), labelled ``label``. Forgets
        ``variant`` (set it after this call when ``root`` is a fine-tune's variant index).

        ``claims``: the model roles ``label`` speaks of (``("reranker",)`` for ``reranker · ft:NAME``);
        while the column's pipeline runs none of them the frame says ``idle`` instead (None: the
        label marked unused), as ``wb query --compare`` refuses models a pipeline does not run."""
        self.variant = None
        self.root = root
        self.models = dict(models or {})
        self.model_label = label
        self.claims = tuple(claims)
        self.idle_label = idle
        self._render_model()

    def model_state(self) -> tuple:
        """Everything that says which models the column runs and how it is labelled (``swap``
        exchanges it between the columns; ``restore_models`` puts it back)."""
        return (self.root, self.models, self.model_label, self.claims, self.idle_label, self.variant)

    def restore_models(self, state: tuple) -> None:
        root, models, label, claims, idle, variant = state
        self.set_models(root, label, models, claims, idle)
        self.variant = variant

    @property
    def idle_claim(self) -> bool:
        """The label names models (``claims``) the column's pipeline does not run."""
        return bool(self.claims) and not pipeline_uses(self.pipeline, self.claims, self._reranker_in_effect())

    def _reranker_in_effect(self) -> str:
        """The reranker this column's ``+rerank`` runs: its override, else its workspace's (``""``
        when that cannot be read: then only the roles the pipeline names count)."""
        if self.models.get("reranker"):
            return self.models["reranker"]
        root = self.root or getattr(self.app, "workspace_root", None)
        if not root:
            return ""
        from workbench.errors import WbError
        from workbench.workspace import Workspace

        try:
            return Workspace(Path(root)).config().models.reranker
        except (WbError, OSError):
            return ""

    @property
    def overridden(self) -> bool:
        """The column runs other models than the workspace's own (a variant index or role overrides)."""
        return bool(self.root or self.models)

    @property
    def shown_label(self) -> str:
        """The frame's label: ``model_label``, unless it names models the pipeline does not run."""
        if not self.idle_claim:
            return self.model_label
        if self.idle_label is not None:
            return self.idle_label
        return f"{self.model_label} unused: {self.pipeline} runs no {'/'.join(self.claims)}"

    def _render_model(self) -> None:
        """The models label goes in the column's frame: the header row keeps the pipeline menu and
        the hit count whole, and an 80-column terminal still shows the label (the frame's width)."""
        label = self.shown_label
        self.border_title = Text(f" {label} ", style="bold") if label else None

    def set_busy(self, busy: bool, loading: bool = False) -> None:
        """While busy the hits shown are the previous query's: dimmed, and no movement is marked."""
        self._busy = busy
        self._loading = loading
        self._failed = False
        if self.is_mounted:
            self.table.set_class(busy and self.result is not None, "stale")
        self._render_status()

    def set_failed(self) -> None:
        """The last query failed: the hits still shown are the previous query's, dimmed and said so."""
        self._busy = self._loading = False
        self._failed = True
        if self.is_mounted:
            self.table.set_class(self.result is not None, "stale")
        self._render_status()

    @property
    def busy(self) -> bool:
        return self._busy

    def show(self, result, key: tuple, marks: list[str] | None = None, dropped: list | None = None) -> None:
        self.result = result
        self.shown_key = key
        self.marks = marks or []
        self.dropped = dropped or []
        self.set_busy(False)
        self.redraw()

    def set_relevant(self, relevant: dict[str, int]) -> None:
        """Mark these documents' hits relevant (✓ after the rank; the count in the header)."""
        if relevant != self.relevant:
            self.relevant = dict(relevant)
            self.redraw()

    def set_movement(self, marks: list[str], dropped: list) -> None:
        self.marks, self.dropped = marks, dropped
        self.redraw()

    def clear(self, message: str = "type a query") -> None:
        self.result, self.shown_key, self.marks, self.dropped = None, None, [], []
        self.message = message
        self.set_busy(False)
        self.redraw()

    @property
    def hits(self) -> list:
        return list(self.result.results) if self.result is not None else []

    def selected_index(self) -> int | None:
        if not self.hits:
            return None
        row = self.table.cursor_row
        return row if 0 <= row < len(self.hits) else None

    # -- rendering ---------------------------------------------------------------------
    def _palette(self) -> Palette:
        return Palette.of(self.app)

    def _render_status(self) -> None:
        status = self.query_one(f"#{self.side}-status", Static)
        if self._failed:
            status.update(Text("query failed" + (": previous hits" if self.result is not None else ""),
                               style="italic"))
        elif self._busy:
            status.update(Text("loading models…" if self._loading else "searching…", style="italic"))
        elif self.result is None:
            status.update(Text(""))
        else:
            ms = self.result.timings_ms.get("total")
            n = len(self.result.results)
            # a narrow column (80-column terminal) drops the word so that the time stays whole
            count = f"{n}" if (self.size.width or 48) < NARROW_COLUMN else f"{n} hit{'' if n == 1 else 's'}"
            line = Text(count + (f" · {ms:.0f} ms" if ms is not None else ""), style="dim")
            if self.relevant:  # how many of the query's relevant documents this column found
                found = len({h.doc_id for h in self.result.results if self.relevant.get(h.doc_id, 0) > 0})
                line = Text.assemble((f"{found}/{len(self.relevant)}✓ ", f"bold {self._palette().up}"), line)
            status.update(line)

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        pal = self._palette()
        table = self.table
        cursor = table.cursor_row
        table.clear(columns=True)
        width = max(30, self.size.width or 48)
        wide = width >= 70
        # a narrow column (80 columns split in two) keeps the titles readable: the per-mode ranks
        # move to the detail line below the table, which shows them for the selected hit
        mode_cols = list(MODES) if width >= 44 else []
        fixed = 3 + (5 if self.compare else 0) + 7 + 3 * len(mode_cols) + 2  # + scrollbar and slack
        title_w = max(12, width - fixed)
        table.add_column(" # ", key="rank", width=3)
        if self.compare:
            table.add_column("move ", key="move", width=5)
        unit = self.result.unit if self.result is not None else getattr(self.app.state, "unit", "doc")
        table.add_column(" chunk" if unit == "chunk" else " document", key="doc", width=title_w)
        table.add_column(" score ", key="score", width=7)
        for m in mode_cols:
            table.add_column(f"{MODE_SHORT[m]:>3}", key=m, width=3)
        titles = self._cell_titles(title_w)
        for i, hit in enumerate(self.hits):
            doc = Text(" " + titles[i])
            if wide and title_w - len(doc.plain) > 6:
                doc.append("  " + short(hit.doc_id, title_w - len(doc.plain) - 2), style="dim")
            cells = [Text(f"{hit.rank:>2}", style="bold")]
            # ✓: a relevant document of the evaluated query (its qrels), when Search came from Evaluate
            cells[0].append("✓" if self.relevant.get(hit.doc_id, 0) > 0 else " ", style=f"bold {pal.up}")
            if self.compare:
                mark = self.marks[i] if i < len(self.marks) else ""
                style = {"↑": f"bold {pal.up}", "↓": f"bold {pal.down}", "n": f"bold {pal.new}"}.get(mark[:1], "dim")
                cells.append(Text(f"{mark:^5}", style=style))
            cells.append(doc)
            cells.append(Text(f"{fmt_score(hit.score):>6} ", style=pal.primary))
            for m in mode_cols:
                r = hit.ranks.get(m)
                cells.append(Text(f"{r:>3}", style="bold" if r == 1 else "") if r is not None
                             else Text(f"{'·':>3}", style="dim"))
            table.add_row(*cells, key=str(i))
        if self.hits:
            table.move_cursor(row=min(max(cursor, 0), len(self.hits) - 1), animate=False)
        self._render_status()
        self._render_detail()
        if self.compare:
            self._render_dropped(pal)

    def _cell_titles(self, title_w: int) -> list[str]:
        """Each hit's title cut to the column (with its chunk number when ranking chunks: it survives,
        the title is cut). Titles that the cut makes identical (``multiprocessing — Introduction``
        and ``— Pool`` both ``multiprocessing…``) give up their middle instead, so rows stay apart."""
        chunks = self.result is not None and self.result.unit == "chunk"
        numbers = [f" {_chunk_number(h)}" if chunks else "" for h in self.hits]
        widths = [max(4, title_w - 1 - len(n)) for n in numbers]
        return cut_apart([h.title or h.doc_id for h in self.hits], widths, numbers)

    def _render_detail(self) -> None:
        detail = self.query_one(f"#{self.side}-detail", Static)
        if self.result is None:
            detail.update(Text(self.message, style="dim italic"))
            return
        if not self.hits:
            detail.update(Text("no results", style="dim italic"))
            return
        i = self.selected_index()
        hit = self.hits[i if i is not None else 0]
        text = Text()
        width = max(10, self.size.width - 4)  # the frame and the padding
        text.append(mode_line(hit, compact=self.size.width < 72, pipeline=self.pipeline, width=width), style="dim")
        text.append("\n")
        text.append(hit.snippet)
        detail.update(text)

    def _render_dropped(self, pal: Palette) -> None:
        box = self.query_one(f"#{self.side}-dropped", Static)
        if self.result is None or not self.dropped:
            box.update(Text(""))
            box.display = False
            return
        box.display = True
        text = Text("dropped ", style=f"bold {pal.down}")
        for j, hit in enumerate(self.dropped):
            if j:
                text.append(" · ", style="dim")
            name = short(hit.title or hit.doc_id, 28 if self.result.unit != "chunk" else 22)
            if self.result.unit == "chunk":
                name += f" {_chunk_number(hit)}"
            text.append(name)
            text.append(f" (was {hit.rank})", style="dim")  # its rank in the left column
        box.update(text)

    def on_resize(self, event) -> None:
        """The table's columns follow the width: drawn again when it changed (a height-only resize
        would only make the rows flicker)."""
        if event.size.width != self._width:
            self._width = event.size.width
            self.redraw()

    def reserve_rows(self, rows: int) -> None:
        """Give the detail ``rows`` more lines (the other column's dropped list takes as many: the two
        tables keep the same height, row beside row)."""
        if self.is_mounted:
            self.query_one(f"#{self.side}-detail", Static).styles.height = DETAIL_ROWS + rows

    @property
    def hit_rows(self) -> int:
        """The rows the table has for hits, the lines lent to the detail for the other column's
        dropped list (``reserve_rows``) counted in: the same whether that list shows or not."""
        if not self.is_mounted:
            return 0
        lent = self.query_one(f"#{self.side}-detail", Static).outer_size.height - DETAIL_ROWS
        return self.table.size.height - 1 + max(0, lent)

    @property
    def dropped_rows(self) -> int:
        """Lines the dropped list takes (0 when hidden)."""
        return DROPPED_ROWS if self.compare and self.result is not None and self.dropped else 0

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._render_detail()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.hits:
            self.post_message(self.Open(self, event.cursor_row))


def _chunk_number(hit) -> str:
    """``#N`` of a chunk hit (its chunk id is ``<doc id>#N``)."""
    return "#" + hit.chunk_id.rsplit("#", 1)[-1]
