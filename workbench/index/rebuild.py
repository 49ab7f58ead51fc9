"""A settings rebuild built beside the live index and swapped in when complete.

When ``wb.toml`` changes what the index holds (a model, the chunking), every document is indexed
again. That happens in ``<workspace>/rebuild/``, a workspace of its own, while the live index keeps
answering queries with the settings it was built with; the modes whose encoder did not change are
copied from the live index (``index.reuse``: e.g. a new sparse model re-encodes only sparse).

Contract:
- The staging folder holds the new stores and manifest, plus the list of roots the rebuild covers
  (:func:`staged_roots`, recorded before any of them is indexed). A killed rebuild leaves it there;
  the next ``wb index`` (any PATH, or none) continues it, incrementally. A covered root that is
  missing holds the swap back (the live index keeps its documents searchable) until it is restored
  or removed (:func:`forget_root`, from ``wb index --remove``).
- Until the swap, readers answer from the live index; :func:`state_note` says why it is not what
  ``wb.toml`` asks for (a rebuild due, running, cut off, or waiting for a folder).
- :func:`swap` replaces the live stores (``manifest.sqlite``, ``lance/``, ``tantivy/``, ``snapshot/``)
  by the staged ones under the workspace's write lock. It first writes ``swap.json``; while that file
  exists the swap is rolled forward by whoever comes next (:func:`settle`: the next writer, or a
  reader that can take the write lock), so a kill at any point of the swap ends in the new index,
  never in a mix. Readers that find a swap under way wait for it (it takes milliseconds).
- ``wb.toml``, ``runs/`` and ``variants/`` are never moved.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from workbench.config import WorkspaceConfig
from workbench.errors import WorkspaceError
from workbench.files import write_whole
from workbench.workspace import Workspace

STAGING = "rebuild"
SWAP_MARK = "swap.json"
RETIRED = "rebuild.old"  # where the replaced stores go until they are deleted
STAGED_ROOTS_KEY = "staged_roots"
# what a swap moves; the live manifest leaves with its write-ahead log (so that the staged one, which
# is checkpointed into a single file first, never meets an old log)
STORES = ("lance", "tantivy", "snapshot")  # Workspace.lance_dir, .tantivy_dir, .snapshot_dir
MANIFEST_FILES = ("manifest.sqlite-wal", "manifest.sqlite-shm", "manifest.sqlite")


def staging_workspace(ws: Workspace) -> Workspace:
    return Workspace(ws.root / STAGING)


def in_progress(ws: Workspace) -> bool:
    """Whether a settings rebuild of ``ws`` has begun and is not swapped in yet (running or killed)."""
    return staging_workspace(ws).exists() and not (ws.root / SWAP_MARK).exists()


def _read_staging(ws: Workspace) -> tuple[list[str], int]:
    """(the roots the staged rebuild covers, the documents it holds so far)."""
    from workbench.store.manifest import peek

    roots, docs = peek(staging_workspace(ws).manifest_path, STAGED_ROOTS_KEY)
    return list(roots or []), docs


def staged_roots(ws: Workspace) -> list[str]:
    """The roots the staged rebuild of ``ws`` covers, in the order they are indexed ([] when none)."""
    return _read_staging(ws)[0]


def staged_docs(ws: Workspace) -> int:
    """How many documents the staged rebuild of ``ws`` holds so far."""
    return _read_staging(ws)[1]


# IndexSettings.differences names -> what a user calls them
_SETTING_NAMES = {"dense_name": "dense", "dense_fingerprint": "dense", "colbert_name": "colbert",
                  "colbert_fingerprint": "colbert", "sparse_name": "sparse", "sparse_fingerprint": "sparse",
                  "query_template": "templates", "document_template": "templates", "instruction_format": "templates",
                  "chunk_tokens": "chunk_tokens", "chunk_overlap": "chunk_overlap", "sparse_step": "sparse_step"}
CHUNK_SETTINGS = ("chunk_tokens", "chunk_overlap", "sparse_step")  # the index answers queries as it is


def described(diffs: list[str]) -> str:
    """``["dense_name", "dense_fingerprint", "chunk_tokens"]`` -> ``"dense, chunk_tokens"``."""
    return ", ".join(dict.fromkeys(_SETTING_NAMES.get(d, d) for d in diffs))


def unusable_models_note(error: Exception) -> str:
    """The note when wb.toml names a model that cannot be loaded (a typo, one not installed): the
    index keeps answering with the models that built it. Said by `wb query` and the TUI."""
    return f"{error}: the index answers with the models that built it (fix wb.toml, or `wb index` to rebuild with what it names)"


def state_note(ws: Workspace, diffs: list[str]) -> str:
    """One line on why the index that answers is not what ``wb.toml`` asks for (``diffs``: the
    IndexSettings names that differ; "" when none): a rebuild under way, one that was cut off, or
    none begun yet. Said by `wb query` and the TUI, which keep answering from the old index."""
    if not diffs:
        return ""
    from workbench.index.unfinished import hint_flag, resume_command

    models = [d for d in diffs if d not in CHUNK_SETTINGS]
    answers = "the old index answers meanwhile" + (", with the models that built it" if models else "")
    command = resume_command(ws, None)  # a variant's: `wb index --model ...` with its own models
    if in_progress(ws):
        if ws.being_written():
            return f"this index is being rebuilt with the changed settings ({staged_docs(ws)} documents so far): {answers}"
        missing = [r for r in staged_roots(ws) if not Path(r).exists()]
        if missing:
            return (f"a rebuild of this index with the changed settings waits for {missing[0]}, which is missing "
                    f"(restore it and run {command}, or `wb index --remove {missing[0]}{hint_flag(ws)}`): {answers}")
        return f"a rebuild of this index with the changed settings was cut off ({command} finishes it): {answers}"
    from workbench.variants import is_variant

    changed = ("the workspace's wb.toml changed this model variant's settings" if is_variant(ws)
               else "wb.toml changed this index's settings")  # a variant's settings are its parent's + --model
    return f"{changed} ({described(diffs)}) and no rebuild has begun: {answers}; {command} rebuilds it"


def stage(ws: Workspace, roots: list[str], config: WorkspaceConfig) -> Workspace:
    """Create (or continue) the staging workspace of ``ws`` for ``config`` (its wb.toml, for whoever
    looks) and add ``roots`` to the roots it covers (durably, before any is indexed). Call under
    ``ws``'s write lock. Returns the staging workspace."""
    from workbench.config import render_config
    from workbench.store.manifest import Manifest

    staging = staging_workspace(ws)
    staging.root.mkdir(parents=True, exist_ok=True)
    staging.config_path.write_text(render_config(config, f"the settings rebuild of {ws.root} under way "
                                                         "(written by wb; edit the workspace's own wb.toml)"))
    with Manifest(staging.manifest_path) as manifest:
        known = list(manifest.get_meta(STAGED_ROOTS_KEY) or [])
        manifest.set_meta(STAGED_ROOTS_KEY, list(dict.fromkeys(known + list(roots))))
    return staging


def forget_root(ws: Workspace, root: str) -> None:
    """Drop ``root`` (and the roots inside it) from the staged rebuild's roots (``wb index --remove``)."""
    from workbench.store.manifest import Manifest

    staging = staging_workspace(ws)
    if not staging.exists():
        return
    prefix = root.rstrip("/") + "/"
    with Manifest(staging.manifest_path) as manifest:
        roots = manifest.get_meta(STAGED_ROOTS_KEY) or []
        manifest.set_meta(STAGED_ROOTS_KEY, [r for r in roots if r != root and not r.startswith(prefix)])


def swap(ws: Workspace) -> None:
    """Put the staged stores in place of the live ones (call under ``ws``'s write lock, with every
    manifest connection of both closed). Crash-safe: see the module docstring."""
    _checkpoint(staging_workspace(ws).manifest_path)
    mark = ws.root / SWAP_MARK
    write_whole(mark, json.dumps({"started": time.time()}))
    _roll_forward(ws)


def settle(ws: Workspace, wait_s: float = 30.0) -> None:
    """Make sure no swap is half done before ``ws`` is read: finish a killed one (when the write lock
    can be had) or wait for a running one. WorkspaceError if it is still under way after ``wait_s``."""
    mark = ws.root / SWAP_MARK
    if not mark.exists():
        return
    deadline = time.monotonic() + wait_s
    while mark.exists():
        try:
            with ws.write_lock():
                if mark.exists():
                    _roll_forward(ws)
            return
        except WorkspaceError:  # the writer is swapping now: it takes milliseconds
            if time.monotonic() > deadline:
                raise WorkspaceError(f"workspace {ws.root} is swapping in a rebuilt index: try again") from None
            time.sleep(0.02)


def _roll_forward(ws: Workspace) -> None:
    """Idempotent: each store still in the staging folder replaces the live one (which is moved to
    ``rebuild.old/`` first); then the leftovers are deleted and the mark removed, last."""
    staging, retired = ws.root / STAGING, ws.root / RETIRED
    retired.mkdir(exist_ok=True)
    if (staging / "manifest.sqlite").exists():  # not swapped yet: no live store may outlast it (a
        for name in STORES:                       # snapshot the staging lacks is rebuilt by readers)
            _replace(ws.root / name, staging / name, retired / name)
        for name in MANIFEST_FILES:  # the live manifest and its side files out, all of them first
            if (ws.root / name).exists():
                _move(ws.root / name, retired / name)
        os.replace(staging / "manifest.sqlite", ws.root / "manifest.sqlite")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    (ws.root / SWAP_MARK).unlink(missing_ok=True)


def _checkpoint(manifest_path: Path) -> None:
    """Fold the manifest's write-ahead log into the database file, which then stands alone."""
    db = sqlite3.connect(str(manifest_path), timeout=30)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def _replace(live: Path, staged: Path, retired: Path) -> None:
    """``staged`` in place of ``live`` (retired); once ``staged`` is moved, a repeat does nothing,
    and a store the staging never had leaves the live one retired all the same."""
    if staged.exists():
        if live.exists():
            _move(live, retired)
        os.replace(staged, live)
    elif live.exists() and not retired.exists():  # (once retired, ``live`` is the staged one)
        _move(live, retired)


def _move(src: Path, dest: Path) -> None:
    if dest.is_dir():
        shutil.rmtree(dest)
    elif dest.exists():
        dest.unlink()
    os.replace(src, dest)
