"""Render an EvalResult: the terminal table (metrics x100), the JSON object, TREC run files.

The JSON object is the contract with the TUI (see ``workbench/eval/__init__.py``); metric
values there are fractions in [0, 1].
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.errors import UsageError
from workbench.eval.runner import METRICS, WIN_METRIC, EvalResult

LABELS = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100", "map@100": "MAP@100"}


def _f(x) -> float | None:
    return None if x is None else round(float(x), 6)


def to_json(result: EvalResult, per_query: list[dict] | None = None) -> dict:
    ds = result.dataset
    out = {
        "dataset": ds.name,
        "split": ds.split,
        "queries": len(ds.qrels),
        "depth": result.depth,
        "baseline": result.baseline.label,
        "wall_seconds": round(result.wall_seconds, 3),
        "test": result.test,
        "pipelines": [
            {
                "name": r.label,
                "metrics": {m: _f(r.metrics[m]) for m in METRICS},
                "seconds": round(r.seconds, 3),
                "delta": None if r.delta is None else {m: _f(v) for m, v in r.delta.items()},
                "p_value": None if r.p_value is None else {m: _f(v) for m, v in r.p_value.items()},
                "wins": r.wins,
                "losses": r.losses,
                "ties": r.ties,
                "models": r.models,
                "baseline": r.baseline,  # what delta/p_value/W-L-T are against (None: this is the baseline)
                **({"run_file": r.source} if r.source else {}),  # an external run (--run): read, not searched
                **({"rerank": r.rerank} if r.rerank else {}),  # +rerank: its depth and interpolation a
            }
            for r in result.systems
        ],
        "dataset_path": str(ds.root),
        "format": ds.format,
        # one workspace: its path; a --compare run's base and variant: both; run files alone: null
        "workspace": (result.workspaces[0] if len(result.workspaces) == 1 else result.workspaces) or None,
        "index_seconds": round(result.index_seconds, 3),
        "load_seconds": round(result.load_seconds, 3),
        "docs_indexed": result.docs_indexed,
        "notes": notes(result),
    }
    if per_query is not None:
        out["per_query"] = [
            {**row, "baseline": _f(row["baseline"]), "value": _f(row["value"]), "delta": _f(row["delta"])}
            for row in per_query
        ]
    return out


def notes(result: EvalResult) -> list[str]:
    """What the reader of the figures should know: the dataset's notes, what evaluating learnt (a
    run file's missing queries or foreign documents), and the @100 metrics cut short by a ``depth``
    under 100."""
    out = list(result.dataset.notes) + list(result.notes)
    if result.depth < 100:
        out.append(f"depth {result.depth}: R@100 and MAP@100 only see the top {result.depth} documents")
    return out


def models_line(result: EvalResult) -> str:
    """``models: dense A · colbert B (zero-shot) · reranker C (trained cross-encoder)``: each role the
    pipelines ran, with every model that filled it (a --compare row adds its own), and the
    +rerank settings."""
    roles: dict[str, list[str]] = {}
    for r in result.systems:
        for role, label in r.models.items():
            if label not in roles.setdefault(role, []):
                roles[role].append(label)
    from workbench.models.registry import ROLES

    parts = [f"{role} {' / '.join(roles[role])}" for role in ROLES if role in roles]
    reranks = sorted({(r.rerank["depth"], r.rerank["interpolation"]) for r in result.systems if r.rerank})
    line = "models: " + " · ".join(parts) if parts else ""
    if reranks:
        shown = ", ".join(f"top {int(d)} with a = {a:g}" for d, a in reranks)
        line += ("\n" if line else "") + f"+rerank: {shown} (final = (1-a) × reranker + a × first stage)"
    return line


def _stars(p: float | None) -> str:
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def render_table(result: EvalResult, console, per_query: list[dict] | None = None) -> None:
    """A rich table on ``console``: one row per pipeline, metrics x100 with deltas and stars."""
    from rich.table import Table
    from rich.text import Text

    ds = result.dataset
    title = f"{ds.name} · {ds.split} · {len(ds.qrels)} queries · depth {result.depth} · baseline {result.baseline.label}"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("pipeline", no_wrap=True)
    for m in METRICS:
        table.add_column(LABELS[m], justify="right", no_wrap=True)
    table.add_column("W/L/T", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    own_baselines = any(r.baseline not in (None, result.baseline.label) for r in result.systems)
    against = "the pipeline named under each row's name" if own_baselines else result.baseline.label
    for r in result.systems:
        cells = [Text(r.label, style="bold" if r.delta is None else "")]
        if own_baselines and r.baseline:
            cells[0].append(f"\nvs {r.baseline}", style="dim")
        for m in METRICS:
            cell = Text(f"{100 * r.metrics[m]:.2f}")
            if r.delta is not None:
                d = 100 * r.delta[m]
                colour = "green" if d > 0 else "red" if d < 0 else "dim"
                cell.append(f"\n{d:+.2f}{_stars(r.p_value.get(m)):<2}", style=colour)
            cells.append(cell)
        cells.append(Text("" if r.wins is None else f"{r.wins}/{r.losses}/{r.ties}"))
        cells.append(Text("run file" if r.source else f"{r.seconds:.1f} s", style="dim"))
        table.add_row(*cells)
    console.print(table)
    console.print(
        Text(
            f"Δ vs {against} ×100; {result.test} (ranx, two-sided): * p<0.05 ** p<0.01; "
            f"W/L/T = queries won/lost/tied on {LABELS[WIN_METRIC]}. MAP@100 = trec_eval map_cut_100.\n"
            + (f"wall {result.wall_seconds:.1f} s (index check {result.index_seconds:.1f} s, "
             f"{result.docs_indexed} docs encoded; model/index load {result.load_seconds:.1f} s) · "
             f"workspace {', '.join(result.workspaces)}" if result.workspaces
             else f"wall {result.wall_seconds:.1f} s · run files only: nothing searched"),
            style="dim",
        )
    )
    line = models_line(result)
    if line:
        console.print(Text(line, style="dim"))
    for note in notes(result):
        console.print(Text(note, style="dim"))
    if per_query:
        pq = Table(title=f"largest per-query {LABELS[WIN_METRIC]} changes "
                         + ("(pipeline vs its baseline)" if own_baselines else f"vs {against}"),
                   title_justify="left", header_style="bold")
        for col, just in (("pipeline", "left"), ("query id", "left"), ("query", "left"),
                          ("base", "right"), ("value", "right"), ("Δ", "right")):
            pq.add_column(col, justify=just, overflow="fold" if col == "query" else "ellipsis")
        for row in per_query:
            d = row["delta"]
            name = f"{row['pipeline']} vs {row['vs']}" if own_baselines else row["pipeline"]
            pq.add_row(name, row["query_id"], _short(row["query"], 70), f"{100 * row['baseline']:.1f}",
                       f"{100 * row['value']:.1f}", Text(f"{100 * d:+.1f}", style="green" if d > 0 else "red"))
        console.print(pq)


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def run_file_name(label: str) -> str:
    """``hybrid+rerank`` -> ``hybrid_rerank.trec`` (anything but [A-Za-z0-9._-] becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label) + ".trec"


def run_file_names(labels: list[str]) -> dict[str, str]:
    """{label: its run file's name}; UsageError when two labels would share one file (``a:b`` and
    ``a_b``: the second would write over the first)."""
    names: dict[str, str] = {}
    for label in labels:
        name = run_file_name(label)
        clash = next((other for other, taken in names.items() if taken == name), None)
        if clash is not None:
            raise UsageError(f"--run-dir: '{clash}' and '{label}' would both be written to {name}: "
                             "rename one (--run NAME=FILE)")
        names[label] = name
    return names


def _cannot_write(folder: Path, exc: OSError) -> UsageError:
    return UsageError(f"--run-dir {folder}: cannot write {exc.filename or folder} ({exc.strerror or exc})")


def check_run_dir(folder: Path, names) -> None:
    """UsageError, before the evaluation whose results it would lose at the end, for a ``--run-dir``
    whose run files ``names`` cannot be written: a folder that cannot be made (under /proc, under a
    file, no permission), that cannot be written, or a run file's name taken by a folder. The
    folders it makes to find out are removed again: a refusal leaves nothing behind."""
    import os

    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, os.strerror(13), str(folder))
        taken = next((folder / n for n in names if (folder / n).is_dir()), None)
        if taken is not None:
            raise IsADirectoryError(21, "a folder has the run file's name", str(taken))
    except OSError as exc:
        raise _cannot_write(folder, exc) from None
    finally:
        for path in made:
            try:
                path.rmdir()
            except OSError:
                pass


def write_run_files(result: EvalResult, folder: Path) -> list[Path]:
    """One TREC run per system: ``qid Q0 docid rank score tag`` lines, ranks from 1, best first.

    The score column is rank-derived (``n + 1 - rank`` for a list of n documents), as the metrics
    are: trec_eval and ranx sort by score, and the searcher's raw scores can tie or, after
    ``+rerank``, change scale below the reranked head. Raw scores: ``wb query --json``."""
    from workbench.eval.runner import rank_scores

    folder = Path(folder)
    names = run_file_names([r.label for r in result.systems])  # checked before any file is written
    paths = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for r in result.systems:
            tag = re.sub(r"\s+", "_", r.label)
            path = folder / names[r.label]
            with open(path, "w", encoding="utf-8") as fh:
                for qid in result.dataset.qrels:
                    for rank, (doc, score) in enumerate(rank_scores(r.run.get(qid, {})).items(), start=1):
                        fh.write(f"{qid} Q0 {doc} {rank} {score:g} {tag}\n")
            paths.append(path)
    except OSError as exc:  # (check_run_dir said what it could before the evaluation)
        raise _cannot_write(folder, exc) from None
    return paths
