"""Human-readable rendering of query results and summaries (rich), kept out of the engine."""

from __future__ import annotations

import os
import sys

from workbench.search.results import QueryResult
from workbench.text import plural

MODE_ABBREV = {"dense": "D", "colbert": "C", "sparse": "S", "bm25": "B"}
READER_LEFT = 141  # 128 + SIGPIPE: the status a shell reports for a command a closed pipe ended
PIPED_WIDTH = 200  # columns when stdout/stderr is not a terminal (rich's default, 80, breaks lines for grep)


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
        console.print(f"  [dim]{line}[/dim]")
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
