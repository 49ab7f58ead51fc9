"""``wb index``: index folders into the workspace (or a model variant), remove them, prune variants."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from workbench.cli.common import (ModelOpt, WorkspaceOpt, _err_console, _parse_model_overrides, _plain, _progress_bar,
                                  _workspace)
from workbench.errors import UsageError, WbError


def index_cmd(
    path: Annotated[Optional[str], typer.Argument(help="Folder, file or BEIR corpus.jsonl to index (default: every folder the workspace already indexes).")] = None,
    workspace: WorkspaceOpt = None,
    model: ModelOpt = None,
    progress_json: Annotated[bool, typer.Option("--progress-json", help="Progress as JSON lines on stdout.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object (without PATH: {\"folders\": \\[one summary a folder]}).")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Drop the indexed folder PATH (it need not exist any more) from the index and its model variants.")] = False,
    prune_variants: Annotated[bool, typer.Option("--prune-variants", help="Remove the model variants no --model reaches any more (their models, or the parent's, changed since) and index nothing.")] = False,
) -> None:
    """Index PATH into the workspace (incremental: unchanged documents are not re-encoded).

    With --model ROLE=NAME the documents go into a model variant beside the workspace's own index
    (so base and fine-tuned models stay comparable); without PATH, every indexed folder is refreshed."""
    from workbench.errors import InputError
    from workbench.variants import (adopt_orphan, parent_roots, remove_unbuilt, serving, variant_root,
                                    write_variant_config)

    if path is not None and not path.strip():  # `wb index "$DOCS"` with DOCS unset: not the current folder
        raise UsageError("PATH is empty (an unset shell variable?): give a folder, or no PATH to refresh "
                         "every folder the workspace indexes")
    ws = _workspace(workspace)
    if prune_variants:
        if path is not None or model or remove:
            raise UsageError("--prune-variants takes no PATH, --model or --remove")
        return _prune_variants(ws, json_out)
    if remove:
        if path is None or model:
            raise UsageError("--remove takes the indexed folder as PATH and no --model (variants follow their parent)")
        return _remove_root(ws, Path(path), json_out, progress_json)
    if path is not None:
        roots = [Path(path)]
        if not roots[0].exists():
            raise InputError(f"no such file or folder: {path}")
    else:
        roots = parent_roots(ws)
        if not roots:
            raise UsageError(f"workspace {ws.root} indexes no folder yet: give a PATH (`wb index PATH{ws.flag}`)")
        gone = [r for r in roots if not r.exists()]
        if gone and (model or not _rebuild_due(ws)):  # a settings rebuild says what it waits for
            raise InputError(f"indexed folder no longer exists: {gone[0]} (drop it: `wb index --remove {gone[0]}{ws.flag}`, "
                             "or index the others by name)")
        roots = [r for r in roots if r.exists()]
        if not roots:
            raise InputError(f"none of the indexed folders exists any more: {', '.join(map(str, gone))}")
    fresh = not ws.root.exists()
    first_build = None
    ws.ensure()
    try:
        serve = serving(ws, _parse_model_overrides(model))
        if serve.is_variant and not ws.exists():  # a variant sits beside an index that is not there
            raise UsageError(f"workspace {ws.root} has no index of its own yet: index it first (`wb index PATH -w "
                             f"{shlex.quote(str(ws.root))}`, with the models of its wb.toml), then --model builds "
                             "a variant beside it; or name the models in its wb.toml [models]")
        if serve.is_variant:
            if path is not None:  # the parent's root covering PATH: the variant keeps the parent's document ids
                covering = variant_root(ws, roots[0])
                if covering != roots[0].expanduser().resolve():
                    _err_console().print(_plain(f"{roots[0]} is inside the indexed folder {covering}: "
                                                "re-encoding that folder", style="yellow"), highlight=False)
                roots = [covering]
            adopted = adopt_orphan(ws, serve)
            if adopted is not None:
                _err_console().print(_plain(f"took over the variant folder {adopted.name} (the same models, named "
                                            f"otherwise before): {serve.workspace.root.name}", style="yellow"),
                                     highlight=False)
            write_variant_config(serve)
        target, cfg = serve.workspace, serve.config
        first_build = target if not target.exists() else None  # what a failure of it must not leave
        donor = ws if serve.is_variant else None  # unchanged modes are copied from the parent's index
        # --progress-json ends each folder with its summary line ("phase": "done"): no second object
        collected: list[dict] | None = [] if json_out and path is None and not progress_json else None
        for root_path in roots:
            if _index_one(target, cfg, root_path, progress_json, json_out, donor, collected).rebuilt:
                break  # a settings rebuild indexes every folder of the workspace in its one run
    except BaseException:
        if first_build is not None:  # a failed first build leaves no empty stores that look like an index
            remove_unbuilt(first_build, variant=first_build != ws)
        if fresh:  # a new workspace a refused first run wrote nothing into is not left behind
            _drop_if_untouched(ws)
        raise
    if collected is not None:  # every folder refreshed: one JSON object, as --json promises
        print(json.dumps({"folders": collected}))
    _say_orphaned_variants(ws)


def _say_orphaned_variants(ws) -> None:
    """One stderr line naming the variant folders no ``--model`` reaches any more (disk they hold for nothing)."""
    from workbench.variants import orphaned_variants

    orphans = orphaned_variants(ws)
    if orphans:
        names = ", ".join(v.root.name for v in orphans)
        _err_console().print(_plain(f"{len(orphans)} model variant{'s' if len(orphans) > 1 else ''} no --model reaches "
                                    f"any more (their models or the workspace's changed since): {names}; "
                                    "`wb index --prune-variants` removes them", style="yellow"), highlight=False)


def _prune_variants(ws, json_out: bool) -> None:
    """``wb index --prune-variants``: remove the orphaned variant folders and say which."""
    from workbench.variants import prune_variants

    removed = prune_variants(ws)
    if json_out:
        print(json.dumps({"removed": [str(p) for p in removed]}))
        return
    typer.echo(f"removed {len(removed)} model variant{'' if len(removed) == 1 else 's'}"
               + (f": {', '.join(p.name for p in removed)}" if removed else ""))


def _rebuild_due(ws) -> bool:
    """Whether `wb index` on ``ws`` rebuilds it (settings changed) or continues a staged rebuild."""
    from workbench.index import rebuild
    from workbench.index.indexer import Indexer

    return rebuild.in_progress(ws) or bool(Indexer(ws).rebuild_reason())


def _remove_root(ws, root: Path, json_out: bool, progress_json: bool = False) -> None:
    """``wb index --remove PATH``: the root's documents leave the workspace and every variant of it
    (``--progress-json``: the phases, then the summary as ``{"phase": "done", ...}``, as an index run);
    refused before anything is removed while a variant is being written, and a variant that still
    holds PATH afterwards is named on stderr (see ``variants.remove_root``)."""
    from workbench.variants import removal_left_note, remove_root

    ws.require()

    def progress(phase: str, done: int, total: int) -> None:
        if progress_json:
            print(json.dumps({"phase": phase, "done": done, "total": total}), flush=True)

    summary, variants = remove_root(ws, root, progress)
    left = removal_left_note(summary.root, variants, ws.flag)
    if left:  # a variant another `wb index` began writing meanwhile keeps the folder: never silently
        _err_console().print(_plain(left, style="yellow"), highlight=False)
    if json_out or progress_json:
        print(json.dumps({**({"phase": "done"} if progress_json else {}), **summary.to_json(), "variants": variants}))
        return
    from workbench.text import plural

    typer.echo(f"removed {plural(summary.docs_removed, 'doc')} of {summary.root}; workspace holds "
               f"{plural(summary.total_docs, 'doc')} / {plural(summary.total_chunks, 'chunk')}")
    for v in variants:
        if not v.get("still_holds"):
            typer.echo(f"  and {v['docs_removed']} from the variant {v['variant']}")


def _drop_if_untouched(ws) -> None:
    """Remove the workspace folder ``wb index`` just created when it holds nothing but what
    ``Workspace.ensure`` wrote (wb.toml, the lock file), and no other writer holds it."""
    import shutil

    try:
        with ws.write_lock():  # another `wb index` that has just started on it keeps it
            if {p.name for p in ws.root.iterdir()} <= {"wb.toml", "write.lock"}:
                shutil.rmtree(ws.root)
    except (OSError, WbError):
        pass


def _index_one(ws, cfg, root_path: Path, progress_json: bool, json_out: bool, donor=None,
               collected: list[dict] | None = None):
    """Index one root and print its summary (with --json into ``collected`` when given: the caller
    prints them together); returns the IndexSummary."""
    from workbench.index import rebuild
    from workbench.index.indexer import Indexer

    reason = Indexer(ws, cfg, donor=donor).rebuild_reason() if donor is None else ""
    if reason:  # said first: the run re-encodes every folder, and queries go on meanwhile
        _err_console().print(_plain(f"{reason} beside the old one, which answers queries meanwhile", style="yellow"),
                             highlight=False)
    try:
        if progress_json:
            def progress(phase: str, done: int, total: int) -> None:
                print(json.dumps({"phase": phase, "done": done, "total": total}), flush=True)

            summary = Indexer(ws, cfg, progress=progress, donor=donor).run(root_path)
        else:  # a bar on a terminal (with the encoding rate); nothing when piped, as `wb index` always did
            with _progress_bar(rate_of=("encoding", "chunks/s"), piped_lines=False) as progress:
                summary = Indexer(ws, cfg, progress=progress, donor=donor).run(root_path)
    except KeyboardInterrupt:
        if rebuild.in_progress(ws):
            _err_console().print(_plain("the rebuild is kept, and the old index answers meanwhile: `wb index` "
                                 "continues it", style="yellow"), highlight=False)
        else:
            from workbench.index.unfinished import resume_command

            again = resume_command(ws, str(root_path))  # a variant's run: `wb index --model ...`
            _err_console().print(_plain(f"indexing cut off: every document written so far is kept (queries say the "
                                 f"index is partial); {again} continues it", style="yellow"), highlight=False)
        raise
    if summary.rebuilt:
        _err_console().print(_plain(f"{summary.rebuilt}", style="yellow"))
    if json_out or progress_json:  # --progress-json: stdout stays JSON lines, the summary included
        data = summary.to_json()
        if progress_json:
            data = {"phase": "done", **data}
        if collected is not None and not progress_json:
            collected.append(data)
        else:
            print(json.dumps(data))
    else:
        for s in summary.skipped[:20]:
            _err_console().print(_plain(f"skipped {s.path}: {s.reason}", style="dim"), highlight=False)
        if len(summary.skipped) > 20:
            _err_console().print(_plain(f"… and {len(summary.skipped) - 20} more skipped", style="dim"))
        typer.echo(summary.line())
    return summary
