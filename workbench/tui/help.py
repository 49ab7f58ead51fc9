"""The ``?`` screen: every key of every screen, read from the bindings themselves (never stale)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from workbench.tui.footer import WbFooter

# Keys that belong to Textual's own widgets, listed so that `?` really shows every key.
WIDGET_KEYS = [
    ("Everywhere", [
        ("tab / shift+tab", "move focus between boxes, tables and buttons"),
        ("ctrl+p", "command palette: switch screen, pipeline, instruction, theme…"),
        ("ctrl+q", "quit"),
    ]),
    # Textual's DataTable: ctrl+home/ctrl+end go to the first/last row, home/end scroll sideways
    # (tests/test_tui.py drives each key listed here on the Runs table)
    ("Tables and lists", [
        ("↑ ↓ PgUp PgDn", "move the cursor"),
        ("ctrl+home / ctrl+end", "first / last row of a table (in a picker's list: home / end)"),
        ("home / end", "a table: scroll to its left / right edge (the cursor stays)"),
        ("enter", "open: a result's preview; an evaluated query in Search"),
    ]),
    ("Pickers", [
        ("enter / space", "open a pipeline or instruction picker, enter chooses"),
    ]),
]

# What the Search columns' marks mean (not keys, but read beside them).
SEARCH_MARKS = ("Search marks", [
    ("D C S B", "dense, ColBERT, sparse, BM25: the hit's rank (#n) and score in each mode; – or · it did not "
                "retrieve it"),
    ("↑n ↓n = new", "right column: the hit's move against the left column (new: not in the left list)"),
    ("dropped", "right column: the left column's hits that are not in the right list (was n: their left rank)"),
    ("✓  n/m✓", "opened from Evaluate: a relevant document of that query (its qrels); the header counts the "
                "relevant documents a column found of all the query's"),
    ("#n (chunks)", "u ranks chunks: #n is the chunk's id in its document, counted from 0 (as in the chunk id doc#n)"),
])


def _section(app, bindings) -> list[tuple[str, str]]:
    """(keys, what) rows; bindings that run the same action share a row."""
    rows: dict[str, tuple[list[str], str]] = {}
    for b in bindings:
        if isinstance(b, tuple):
            b = Binding(*b)
        keys = [app.get_key_display(Binding(k.strip(), b.action)) for k in b.key.split(",")]
        if b.action in rows:
            rows[b.action][0].extend(keys)
        else:
            rows[b.action] = (keys, b.tooltip or b.description or b.action)
    return [(" / ".join(keys), what) for keys, what in rows.values()]


def key_sections(app) -> list[tuple[str, list[tuple[str, str]]]]:
    from workbench.tui.corpus import CorpusPane
    from workbench.tui.evaluate import EvalPane
    from workbench.tui.preview import PreviewScreen
    from workbench.tui.results import ResultsTable
    from workbench.tui.runs import LaunchScreen, RunsPane
    from workbench.tui.search import SearchPane

    # the App's "/" only makes the Search pane's "/" run at once (see WbApp.BINDINGS): listed there
    sections = [("Global", _section(app, [b for b in type(app).BINDINGS if b.action != "type_query"]))]
    sections.append(("Search (2)", _section(app, [*SearchPane.BINDINGS, *ResultsTable.BINDINGS])))
    sections.append(("Preview", _section(app, PreviewScreen.BINDINGS)))
    sections.append(("Corpus (1)", _section(app, CorpusPane.BINDINGS)))
    sections.append(("Evaluate (3)", _section(app, EvalPane.BINDINGS)))
    sections.append(("Runs (4)", _section(app, RunsPane.BINDINGS)))
    sections.append(("New run form", _section(app, LaunchScreen.BINDINGS)))
    sections.extend(WIDGET_KEYS)
    sections.append(SEARCH_MARKS)
    return sections


class HelpScreen(ModalScreen):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(id="help-body")
        yield WbFooter()

    def on_mount(self) -> None:
        table = Table.grid(padding=(0, 2), expand=False)
        table.add_column(style="bold", no_wrap=True, min_width=14, max_width=26)
        table.add_column()
        for title, rows in key_sections(self.app):
            table.add_row("", "")
            table.add_row(Text(title, style="bold underline"), "")
            for keys, what in rows:
                table.add_row(keys, what)
        table.add_row("", "")
        table.add_row("", Text("esc closes this screen", style="dim"))
        self.query_one("#help-body", Static).update(table)
        self.query_one("#help").border_title = "Keys"
