"""Human-readable rendering of query results and summaries (rich), kept out of the engine."""

from __future__ import annotations

import os
import sys

from workbench.search.results import QueryResult
from workbench.text import plural

MODE_ABBREV = {"dense": "D", "colbert": "C", "sparse": "S", "bm25": "B"}
READER_LEFT = 141  # 128 + SIGPIPE: the status a shell reports for a command a closed pipe ended
PIPED_WIDTH = 200  # columns when stdout/stderr is not a terminal (rich's default, 80, breaks lines for grep)


def json_line(obj) -> str:
    """``obj`` as one line of strict JSON (RFC 8259: no NaN or Infinity, which strict parsers refuse),
    newline included; a number that is not finite is a WbError instead of invalid output."""
    import json

    from workbench.errors import WbError

    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:
        raise WbError("a score is not a finite number (NaN or infinity), which JSON cannot carry: check the "
                      "[fusion.weights] and models of wb.toml") from None


def quiet_stream(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null: a reader that left (`wb ... | head`) gets
    nothing more, and the interpreter's last flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def make_console(stderr: bool = False):
    """A rich Console for the CLI. On a terminal: its width; piped: no hard wrapping of printed lines
    and tables laid out at ``PIPED_WIDTH`` columns (``$COLUMNS`` wins), so each result stays one line."""
    from rich.console import Console

    class CliConsole(Console):
        def on_broken_pipe(self) -> None:
            """A reader that left (`wb ... | head`): stop quietly with the status a shell gives a
            command a pipe ended (141 = 128 + SIGPIPE), as the JSON and TREC outputs do (rich: 1)."""
            self.quiet = True
            quiet_stream(stream)
            raise SystemExit(READER_LEFT)

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return CliConsole(stderr=stderr)
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPED_WIDTH
    return CliConsole(stderr=stderr, width=width, soft_wrap=True)


def render_result(result: QueryResult, console) -> None:
    from rich.text import Text

    from workbench.search.pipelines import parse_pipeline

    pipe = parse_pipeline(result.pipeline)
    header = Text()
    header.append(f"{result.pipeline}", style="bold cyan")
    header.append(f"  {plural(len(result.results), 'result')} for ", style="dim")
    header.append(result.query, style="bold")
    if len(pipe.modes) > 1 or pipe.rerank:  # a fused score ranks this query's hits; it is no absolute match quality
        header.append("  (fused scores: relative to this query)", style="dim")
    if result.instruction:
        ignored = "" if result.instruction_used else f" (not used: {result.pipeline} reads the bare query)"
        header.append(f"\n  instruction: {result.instruction}{ignored}", style="dim")
    console.print(header)
    used = pipe.roles
    # the roles that ran with a stand-in or with a model trained here (--model ROLE=runs/NAME): said,
    # so a glance tells which model answered
    told = [f"{role}: {label}" for role, label in result.models.items()
            if role in used and ("zero-shot" in label or "trained" in label)]
    for line in told:
        console.print(Text(f"  {line}", style="dim"))  # a model path may hold brackets: not markup
    for hit in result.results:
        line = Text()
        line.append(f"{hit.rank:>3}. ", style="bold")
        line.append(hit.title or hit.doc_id, style="bold green")
        line.append(f"  [{hit.chunk_id if result.unit == 'chunk' else hit.doc_id}]", style="dim")
        line.append(f"  {hit.score:.4f}", style="yellow")
        console.print(line)
        ranks = "  ".join(  # the pipeline's modes only: "-" = that mode ran and did not retrieve it
            f"{mode} #{hit.ranks[mode]}" if mode in hit.ranks else f"{mode} -" for mode in MODE_ABBREV
            if mode in pipe.modes and (mode in hit.ranks or len(hit.ranks) > 1)
        )
        if ranks:
            console.print(f"      [magenta]{ranks}[/magenta]")
        console.print(Text(f"      {hit.snippet}"), highlight=False)  # Text: brackets in a snippet are not markup
    timings = ", ".join(f"{k} {v:.0f}ms" for k, v in result.timings_ms.items())
    console.print(f"[dim]{timings}[/dim]")


def render_comparison(comparison, console) -> None:
    """Two answers to one query as one table: rank, the baseline's hit, the compared hit and its
    move against the baseline (↑n, ↓n, =, new); then the baseline hits that left the list."""
    from rich.table import Table
    from rich.text import Text

    base, other = comparison.baseline, comparison.compared
    left_label, right_label = comparison.labels
    header = Text()
    header.append(left_label, style="bold cyan")
    header.append("  vs  ", style="dim")
    header.append(right_label, style="bold cyan")
    header.append("  for ", style="dim")
    header.append(base.query, style="bold")
    if base.instruction:
        ignored = [label for label, r in ((left_label, base), (right_label, other)) if not r.instruction_used]
        header.append(f"\n  instruction: {base.instruction}", style="dim")
        if ignored:
            reads = "they read" if len(ignored) > 1 else "it reads"
            header.append(f" (not used by {' and '.join(ignored)}: {reads} the bare query)", style="dim")
    console.print(header)
    told = {}
    for label, result in ((left_label, base), (right_label, other)):
        used = _pipeline_roles(result.pipeline)
        told[label] = "; ".join(f"{role}: {name}" for role, name in result.models.items()
                                if role in used and ("zero-shot" in name or "trained" in name))
    if len(set(told.values())) == 1:  # both sides run the same labelled models: said once
        told = {"": next(iter(told.values()))}
    for label, line in told.items():
        if line:
            console.print(Text(f"  {label + ' — ' if label else ''}{line}", style="dim"), highlight=False)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold",
                  expand=True)  # the width shared by the two lists (not expanded, rich drops the narrow columns first)
    width = len(str(max(len(base.results), len(other.results), 1)))
    table.add_column("#", justify="right", style="bold", width=width, no_wrap=True)
    table.add_column(left_label, overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column(right_label, overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("move", justify="right", width=4, no_wrap=True)
    styles = {"new": "yellow", "=": "dim"}
    changes = comparison.changes
    for i in range(max(len(base.results), len(other.results))):
        left = _hit_cell(base.results[i], base.unit) if i < len(base.results) else Text("")
        right, move = Text(""), Text("")
        if i < len(other.results):
            right = _hit_cell(other.results[i], other.unit)
            mark = changes[i].mark
            move = Text(mark, style=styles.get(mark, "green" if mark.startswith("↑") else "red"))
        table.add_row(str(i + 1), left, right, move)
    console.print(table)
    dropped = comparison.dropped
    if dropped:
        if base.unit == "chunk":
            names = ", ".join(f"{h.chunk_id} (#{h.rank})" for h in dropped)
        else:
            names = ", ".join(f"{_clipped(h.title or h.doc_id, 48)} (#{h.rank})" for h in dropped)
        console.print(Text(f"  left the list: {names}", style="red"), highlight=False)
    # the time each side took to answer; model and index loads (a first query's) aside, as the
    # two sides share what one of them loaded
    totals = "; ".join(f"{label} {_answer_ms(r):.0f}ms" for label, r in ((left_label, base), (right_label, other)))
    console.print(f"[dim]answer time (loads aside): {totals}[/dim]", highlight=False)


def _answer_ms(result) -> float:
    timings = result.timings_ms
    return timings.get("total", 0.0) - sum(v for key, v in timings.items() if key.startswith("load"))


def _pipeline_roles(name: str) -> set[str]:
    from workbench.search.pipelines import parse_pipeline

    return parse_pipeline(name).roles


def _clipped(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _hit_cell(hit, unit: str):
    """A hit as a table cell: its title and [doc id]; for chunks the [chunk id] first (two chunks of
    one document share the title, and a narrow column cuts the end)."""
    from rich.text import Text

    cell = Text()
    if unit == "chunk":
        cell.append(f"[{hit.chunk_id}] ", style="dim")
        cell.append(hit.title or hit.doc_id, style="green")
        return cell
    cell.append(hit.title or hit.doc_id, style="green")
    cell.append(f" [{hit.doc_id}]", style="dim")
    return cell
