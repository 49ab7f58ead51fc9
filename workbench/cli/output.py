"""Human-readable rendering of query results and summaries (rich), kept out of the engine."""

from __future__ import annotations

from workbench.search.results import QueryResult

MODE_ABBREV = {"dense": "D", "colbert": "C", "sparse": "S", "bm25": "B"}


def render_result(result: QueryResult, console) -> None:
    from rich.text import Text

    header = Text()
    header.append(f"{result.pipeline}", style="bold cyan")
    header.append(f"  {len(result.results)} results for ", style="dim")
    header.append(result.query, style="bold")
    if result.instruction:
        header.append(f"\n  instruction: {result.instruction}", style="dim")
    console.print(header)
    zero = [f"{role}: {label}" for role, label in result.models.items() if "zero-shot" in label]
    for line in zero:
        console.print(f"  [dim]{line}[/dim]")
    for hit in result.results:
        line = Text()
        line.append(f"{hit.rank:>3}. ", style="bold")
        line.append(hit.title or hit.doc_id, style="bold green")
        line.append(f"  [{hit.doc_id}]", style="dim")
        line.append(f"  {hit.score:.4f}", style="yellow")
        console.print(line)
        ranks = "  ".join(
            f"{mode} #{hit.ranks[mode]}" if mode in hit.ranks else f"{mode} -" for mode in MODE_ABBREV
            if mode in hit.ranks or len(hit.ranks) > 1
        )
        if ranks:
            console.print(f"      [magenta]{ranks}[/magenta]")
        console.print(f"      {hit.snippet}", highlight=False, soft_wrap=False, overflow="ellipsis")
    timings = ", ".join(f"{k} {v:.0f}ms" for k, v in result.timings_ms.items())
    console.print(f"[dim]{timings}[/dim]")
