"""Model variants of a workspace: the same documents indexed with other models, side by side.

``--model dense=runs/NAME`` (or any folder / Hugging Face id) must not rebuild the workspace's own
index: the base model stays queryable so base and fine-tune can be compared. A variant is a complete
workspace of its own under ``<workspace>/variants/<label>-<hash>/`` whose config is the parent's
``wb.toml`` with some roles replaced; ``wb index --model ...`` builds it from the parent's source
roots, ``wb query --model ...``, ``wb eval --model/--compare`` and the TUI read it.

Contract:
- :func:`resolve_model_overrides` turns ``runs/NAME`` into that run's final model folder and rejects
  unfinished or unknown runs with a one-line UsageError.
- :func:`serving` returns the workspace that serves a set of overrides and the config to use there:
  the parent itself when the overrides leave the indexed models unchanged (e.g. only ``reranker``).
- :func:`build_variant` indexes the parent's roots (or given ones) into the variant, incrementally,
  with the parent as donor: the modes whose model the overrides leave unchanged are copied from the
  parent's index, not encoded (``index.reuse``).
- :func:`is_stale` says whether the parent's documents differ from the variant's (never while the
  variant is being written or after its run was cut off: it is partial, not out of date);
  :func:`staleness` says which is older.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbench.config import ModelsConfig, WorkspaceConfig, check_role, render_config
from workbench.errors import UsageError, WbError, WorkspaceError
from workbench.workspace import Workspace

INDEX_ROLES = ("dense", "colbert", "sparse")
VARIANT_FILE = "variant.json"  # in a variant's folder: {"overrides": what its folder is keyed on}


def parse_model_overrides(values: list[str] | None, flag: str = "--model") -> dict[str, str]:
    """``ROLE=NAME`` flags -> {role: name}; ``joint=NAME`` (a `wb train joint` model) fills dense,
    sparse and colbert at once (a role also given on its own keeps its own value). A role given twice
    is refused: the flags name one set of models, not several."""
    out: dict[str, str] = {}
    joint = None
    for value in values or []:
        role, sep, name = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} takes ROLE=NAME, not '{value}'")
        role = role.strip()
        check_role(role, joint=True)
        if role in out or (role == "joint" and joint is not None):
            raise UsageError(f"{flag} names the {role} role twice: they describe one set of models "
                             "(compare several fine-tunes with one `wb eval` each, or a soup)")
        if role == "joint":
            joint = name.strip()
            continue
        out[role] = name.strip()
    if joint is not None:
        for role in ("dense", "sparse", "colbert"):
            out.setdefault(role, joint)
    return out


def resolve_model_overrides(ws: Workspace, overrides: dict[str, str]) -> dict[str, str]:
    """``ROLE=runs/NAME`` -> the absolute ``<workspace>/runs/NAME/model`` folder of a finished run;
    ``runs/NAME@L`` (a layer-wise reranker served at layer L) -> ``<...>/model@L``; other values
    unchanged, except that a local folder is made absolute (``wssf/runs/ft1/model`` and ``runs/ft1``
    name the same model, so the same variant index), and a built-in model's install folder is that
    built-in's name (the workspace's own model given by its path is no variant)."""
    out = dict(overrides)
    for role, name in overrides.items():
        reference = ws.run_reference(name)
        if reference is not None:
            run_name, suffix = reference
            if suffix:
                _cutoff_only_for_rerankers(role, name)
            model_dir = ws.runs_dir / run_name / "model"
            if not model_dir.is_dir():
                if (ws.runs_dir / run_name / "config.json").exists():
                    from trainers.runs import RunFolder

                    state = RunFolder(ws.runs_dir / run_name).status().get("state", "unknown")
                    why = {"failed": "it failed", "died": "it died", "stopped": "it was stopped",
                           "running": "it is still training", "queued": "it has not started",
                           "finished": "its model folder is gone"}.get(state, "it is not finished")
                    raise UsageError(f"run '{run_name}' has no model ({why}): see `wb runs`")
                raise UsageError(f"no run named '{run_name}' in {ws.runs_dir}")
            out[role] = str(model_dir.resolve()) + suffix
        elif Path(name).expanduser().is_dir():  # a folder, however it is spelled, is one model (one variant)
            from workbench.models.cache import builtin_name_at

            folder = str(Path(name).expanduser().resolve())
            out[role] = builtin_name_at(folder) or folder  # a built-in's install folder is that built-in
        elif re.fullmatch(r"(.+)@\d+", name) and Path(name.rsplit("@", 1)[0]).expanduser().is_dir():
            _cutoff_only_for_rerankers(role, name)
    return out


def _cutoff_only_for_rerankers(role: str, name: str) -> None:
    """UsageError for ``@L`` (a layer-wise reranker's cutoff layer) in another role than reranker
    (it asked for an index with it, then failed inside the encoder)."""
    if role != "reranker":
        raise UsageError(f"{role}={name}: @{name.rsplit('@', 1)[1]} (a cutoff layer) is for a layer-wise reranker "
                         f"only (--model reranker=NAME@L); give the {role} model without it")


def index_models(models: ModelsConfig) -> ModelsConfig:
    """The part of the models an index depends on (the reranker is not)."""
    return replace(models, reranker=ModelsConfig().reranker)


@dataclass(frozen=True)
class Serving:
    """Where a query with some model overrides is answered."""

    workspace: Workspace
    config: WorkspaceConfig
    is_variant: bool
    label: str  # "" for the workspace itself, else e.g. "dense=minilm-ft"
    notes: list[str] = field(default_factory=list)  # what the user should know about that index (the CLI fills it)


def short_model_name(value: str) -> str:
    """``.../runs/NAME/model`` -> NAME (``.../model@L`` -> NAME@L); a folder -> its name; a hub id -> its last part."""
    path = Path(value)
    cut = re.fullmatch(r"model(@\d+)", path.name)
    if (path.name == "model" or cut) and path.parent.parent.name == "runs":
        return path.parent.name + (cut.group(1) if cut else "")  # runs/NAME/model -> NAME
    return path.name or value


def _distinct_name(value: str, base_value: str) -> str:
    """``short_model_name(value)``, with its parent folder's name before it (``ft/all-MiniLM-L6-v2``)
    when that would read as a built-in model or as the base's model though ``value`` is another."""
    from workbench.models.cache import BUILTIN_MODELS

    name = short_model_name(value)
    if value != name and (name in BUILTIN_MODELS or name == short_model_name(base_value)):
        parent = Path(value).parent.name
        return f"{parent}/{name}" if parent else value
    return name


def variant_label(base: ModelsConfig, models: ModelsConfig) -> str:
    """The roles ``models`` changes against ``base``, as ``dense=NAME,sparse=NAME`` (see ``_distinct_name``)."""
    parts = [f"{role}={_distinct_name(getattr(models, role), getattr(base, role))}" for role in INDEX_ROLES
             if getattr(models, role) != getattr(base, role)]
    for key in ("dense_query_template", "dense_document_template"):
        if getattr(models, key) != getattr(base, key):
            parts.append(f"{key}={getattr(models, key)}")
    return ",".join(parts)


def variant_overrides(base: ModelsConfig, models: ModelsConfig) -> dict[str, str]:
    """What a variant's stored vectors depend on beyond its parent's: the index roles (and the
    document template) ``models`` sets otherwise than ``base``. Query-side settings and the roles it
    leaves to the parent are not in it: changing them in the parent's wb.toml keeps the variant's
    folder (a role it follows is re-encoded there, in place, by its next `wb index --model`)."""
    keys = INDEX_ROLES + ("dense_document_template",)
    return {k: getattr(models, k) for k in keys if getattr(models, k) != getattr(base, k)}


def variant_workspace(ws: Workspace, models: ModelsConfig) -> Workspace:
    """The folder of the variant of ``ws`` serving ``models``: ``variants/<label>-<hash>``, the hash
    of :func:`variant_overrides` only."""
    base = ws.config().models
    key = hashlib.sha1(repr(sorted(variant_overrides(base, models).items())).encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", variant_label(base, models)).strip("-")[:60]
    return Workspace(ws.root / "variants" / f"{slug or 'variant'}-{key}")


def serving(ws: Workspace, overrides: dict[str, str]) -> Serving:
    """The workspace and config that answer queries with ``overrides`` (``runs/NAME`` resolved)."""
    base = ws.config()
    if not overrides:
        return Serving(ws, base, False, "")
    config = base.with_models(resolve_model_overrides(ws, overrides))
    if index_models(config.models) == index_models(base.models):
        return Serving(ws, config, False, "")
    vws = variant_workspace(ws, config.models)
    return Serving(vws, config, True, variant_label(base.models, config.models))


def _recorded_overrides(variant: Workspace, base: ModelsConfig) -> dict[str, str]:
    """The overrides ``variant`` was keyed on: its ``variant.json``, else (a variant ``wb eval``
    wrote) the index roles and document template its wb.toml sets otherwise than ``base``."""
    try:
        return dict(json.loads((variant.root / VARIANT_FILE).read_text())["overrides"])
    except FileNotFoundError:
        return variant_overrides(base, variant.config().models)


def orphaned_variants(ws: Workspace) -> list[Workspace]:
    """The variant folders of ``ws`` that no ``--model`` reaches any more: their overrides (see
    :func:`_recorded_overrides`) now name the parent's own models or lead to another folder (one
    named by a hash of every setting, as folders were before, does). Never one being written."""
    base = ws.config()
    out = []
    for folder in sorted(p for p in (ws.root / "variants").glob("*") if p.is_dir()):
        variant = Workspace(folder)
        try:
            recorded = _recorded_overrides(variant, base.models)
            models = base.with_models({k: v for k, v in recorded.items() if k in INDEX_ROLES}).models
            models = replace(models, dense_document_template=recorded.get("dense_document_template",
                                                                           models.dense_document_template))
            reachable = bool(variant_overrides(base.models, models)) and variant_workspace(ws, models).root == folder
        except (OSError, ValueError, KeyError, TypeError, AttributeError, WbError):
            reachable = False
        if not reachable and not variant.being_written():
            out.append(variant)
    return out


def adopt_orphan(ws: Workspace, serve: Serving) -> Path | None:
    """Before a variant is first built: an orphaned folder of ``ws`` keyed on the same overrides (a
    folder named as before the key left out query-side settings) is renamed to the variant's folder
    (under its write lock), so `wb index --model` updates it instead of encoding everything. Returns
    the folder adopted, None when there was none."""
    import os

    if not serve.is_variant or serve.workspace.root.exists():
        return None
    base = ws.config().models
    wanted = variant_overrides(base, serve.config.models)
    for orphan in orphaned_variants(ws):
        try:
            if _recorded_overrides(orphan, base) != wanted:
                continue
            with orphan.write_lock():
                os.replace(orphan.root, serve.workspace.root)
        except (OSError, ValueError, KeyError, TypeError, WbError):
            continue
        return orphan.root
    return None


def holds_no_documents(ws: Workspace) -> bool:
    """Whether ``ws`` (a workspace or a variant) has no index to show: no manifest, or one that records
    no document (what a first ``wb index`` that failed before its first commit leaves). A manifest
    that cannot be read is not judged here (False): opening it says what is wrong."""
    from workbench.store.manifest import Manifest

    if not ws.manifest_path.is_file():
        return True
    try:
        with Manifest(ws.manifest_path) as manifest:
            return manifest.count_docs() == 0
    except WbError:
        return False


def unbuilt_variants(ws: Workspace) -> list[Workspace]:
    """The variant folders of ``ws`` that hold no document (:func:`holds_no_documents`), never one
    being written: left by a ``wb index --model`` that failed before its first commit."""
    folders = sorted(p for p in (ws.root / "variants").glob("*") if p.is_dir())
    return [v for v in map(Workspace, folders) if holds_no_documents(v) and not v.being_written()]


STORE_NAMES = ("lance", "tantivy", "snapshot", "manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm")


def remove_unbuilt(ws: Workspace, variant: bool) -> None:
    """After a failed first ``wb index`` of ``ws``: when it holds no document, remove what the run
    wrote, so nothing is left that looks like an index (a variant: its whole folder; a workspace:
    its stores and manifest, its wb.toml kept). Under its write lock: one another writer holds now
    is kept. Best effort: a failure here never hides the run's own error."""
    import shutil

    stores = [p for p in (ws.root / n for n in STORE_NAMES) if p.exists() or p.is_symlink()]
    try:
        if not (ws.root.is_dir() and (variant or stores) and holds_no_documents(ws)):
            return
        with ws.write_lock():
            if variant:
                shutil.rmtree(ws.root)
                _remove_if_empty(ws.root.parent)
                return
            for path in stores:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    except (OSError, WbError):
        pass


def prune_variants(ws: Workspace) -> list[Path]:
    """Remove :func:`orphaned_variants` and :func:`unbuilt_variants` (each under its write lock: one a
    `wb index` has just begun writing is kept). Returns the folders removed."""
    import shutil

    removed = []
    candidates = {v.root: v for v in [*orphaned_variants(ws), *unbuilt_variants(ws)]}
    for variant in candidates.values():
        try:
            with variant.write_lock():
                shutil.rmtree(variant.root)
        except (OSError, WbError):
            continue
        removed.append(variant.root)
    if removed:
        _remove_if_empty(ws.root / "variants")
    return removed


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (``<workspace>/variants``) when it holds nothing any more; a folder another
    process has just put a variant into stays (rmdir refuses a non-empty folder)."""
    try:
        folder.rmdir()
    except OSError:
        pass


def require_variant(ws: Workspace, serve: Serving, asked: str, index_flags: str | None = None) -> None:
    """One-line error when the variant has not been indexed yet: ModelError when one of its models
    cannot be had at all (indexing would not help), else WorkspaceError naming ``asked`` (the flags
    as given) and the ``wb index`` (with ``index_flags``, default ``asked``) that builds it."""
    if serve.is_variant and not serve.workspace.exists():
        from workbench.models.registry import resolve_role

        for role in ("dense", "colbert", "sparse"):
            resolve_role(role, serve.config.models)
        flags = index_flags or asked
        raise WorkspaceError(f"no index for {asked} yet: run `wb index {flags}{ws.flag}` first "
                             f"(re-encodes the workspace's documents with that model)")


def model_flags(variant: Workspace) -> str:
    """The ``--model ROLE=NAME`` flags that build ``variant`` (``<parent>/variants/NAME/``): the index
    roles it was keyed on (:func:`_recorded_overrides`: not the roles it leaves to its parent, whose
    wb.toml may have changed them since; ``--model ROLE=NAME`` when none is known)."""
    import shlex

    try:
        recorded = _recorded_overrides(variant, parent_workspace(variant).config().models)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, WbError):
        recorded = {}
    flags = [f"--model {shlex.quote(f'{role}={recorded[role]}')}" for role in INDEX_ROLES if role in recorded]
    return " ".join(flags) or "--model ROLE=NAME"


def is_variant(ws: Workspace) -> bool:
    """Whether ``ws`` is a model variant of another workspace (``<parent>/variants/<label>-<hash>/``)."""
    return ws.root.parent.name == "variants"


def parent_workspace(variant: Workspace) -> Workspace:
    """The workspace a variant (``<parent>/variants/<label>-<hash>/``) belongs to."""
    return Workspace(variant.root.parent.parent)


def remove_root(ws: Workspace, root: Path, progress: Callable[[str, int, int], None] | None = None):
    """``wb index --remove ROOT``: drop the indexed folder ``root`` (which need not exist any more)
    from ``ws`` and from every model variant of it. Returns the IndexSummary and, per variant that
    had indexed it, ``{"variant": name, "docs_removed": n}``, with ``"still_holds": why`` (and 0
    removed) for one that kept it (another `wb index` began writing it meanwhile: the others are
    still done; :func:`removal_left_note` says so).
    Nothing is removed while a variant is being written (WorkspaceError naming it). When ``ws`` no
    longer indexes ``root`` but a variant does (a removal that left it there), only the variants
    lose it; InputError when neither does."""
    from workbench.errors import InputError
    from workbench.index.indexer import Indexer

    _refuse_busy_variants(ws, root)
    try:
        summary, gone = Indexer(ws, progress=progress).remove(root), None
    except InputError as exc:  # the parent dropped it before: a variant may still hold it
        summary, gone = _parent_totals(ws, root), exc
    done = []
    for variant in variant_workspaces(ws):
        held = roots_within(parent_roots(variant), Path(summary.root))
        if not held:  # this variant never indexed that folder
            continue
        removed = 0
        try:
            for held_root in held:
                removed += Indexer(variant, variant.config()).remove(held_root).docs_removed
        except WorkspaceError as exc:  # e.g. another `wb index` took its lock after the check: said, not raised
            done.append({"variant": variant.root.name, "docs_removed": removed, "still_holds": str(exc)})
            continue
        done.append({"variant": variant.root.name, "docs_removed": removed})
    if gone is not None and not done:
        raise gone
    return summary, done


def roots_within(roots: list[Path], root: Path) -> list[Path]:
    """The ``roots`` that are ``root`` or lie inside it: what removing ``root`` removes from an index
    (a variant may still hold a subfolder its parent has since taken over into ``root``)."""
    prefix = str(root).rstrip("/") + "/"
    return [r for r in roots if r == root or str(r).startswith(prefix)]


def _refuse_busy_variants(ws: Workspace, root: Path) -> None:
    """WorkspaceError (one line, nothing removed yet) when another `wb index` writes a variant of ``ws``."""
    busy = [v.root.name for v in variant_workspaces(ws) if v.being_written()]
    if busy:
        raise WorkspaceError(f"another `wb index` is writing the model variant {busy[0]} of {ws.root}: nothing "
                             f"removed; run `wb index --remove {root}{ws.flag}` again when it has finished")


def _parent_totals(ws: Workspace, root: Path):
    """The IndexSummary of a removal of ``root`` from ``ws`` that no longer indexes it: nothing
    removed there, the workspace's totals, a note that only its variants held it."""
    from workbench.index.indexer import IndexSummary
    from workbench.store.manifest import Manifest

    source = str(Path(root).expanduser().resolve())
    with Manifest(ws.manifest_path) as manifest:
        docs, chunks = manifest.count_docs(), manifest.count_chunks()
    return IndexSummary(root=source, total_docs=docs, total_chunks=chunks,
                        note=f"the workspace no longer indexes {source}: removed from its model variants")


def removal_left_note(root: str, variants: list[dict], workspace_flag: str = "") -> str:
    """One line naming the variant a `wb index --remove` left ``root`` in (and why: its lock was
    taken by another `wb index` meanwhile) and the command that removes it (``workspace_flag``:
    the parent's ``Workspace.flag``); "" when none was left."""
    left = [v for v in variants if v.get("still_holds")]
    if not left:
        return ""
    more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
    return (f"the model variant {left[0]['variant']}{more} still holds {root} ({left[0]['still_holds']}): "
            f"`wb index --remove {root}{workspace_flag}` removes it from there")


def variant_workspaces(ws: Workspace) -> list[Workspace]:
    """The variants of ``ws`` that hold an index (``<ws>/variants/<label>-<hash>/``)."""
    return [Workspace(m.parent) for m in sorted((ws.root / "variants").glob("*/manifest.sqlite"))]


def write_variant_config(serve: Serving) -> None:
    """Write the variant's wb.toml (its folder created), after checking every role's model resolves and
    can fill its role (ModelError: no folder is written for a variant that could never be built)."""
    from workbench.models.registry import resolve_role

    for role in ("dense", "colbert", "sparse"):
        resolve_role(role, serve.config.models)
    serve.workspace.root.mkdir(parents=True, exist_ok=True)
    text = render_config(serve.config, f"model variant of {parent_workspace(serve.workspace).root} ({serve.label});\n"
                                       "written by wb; the parent's wb.toml plus the --model overrides")
    from workbench.files import write_whole

    if not serve.workspace.config_path.exists() or serve.workspace.config_path.read_text() != text:
        write_whole(serve.workspace.config_path, text)
    base = parent_workspace(serve.workspace).config().models
    record = json.dumps({"overrides": variant_overrides(base, serve.config.models)}, sort_keys=True)
    marker = serve.workspace.root / VARIANT_FILE
    if not marker.exists() or marker.read_text() != record:
        write_whole(marker, record)


def parent_roots(ws: Workspace) -> list[Path]:
    """The source roots indexed into ``ws`` (from its manifest), with those a settings rebuild left to
    be indexed again (see :func:`roots_to_reindex`) and those a staged rebuild covers."""
    from workbench.store.manifest import Manifest

    from workbench.index.rebuild import staged_roots

    if not ws.exists():
        return []
    with Manifest(ws.manifest_path) as manifest:
        roots = [row[0] for row in manifest.sources()]
        return [Path(r) for r in sorted(set(roots) | set(manifest.roots_to_reindex()) | set(staged_roots(ws)))]


def variant_root(ws: Workspace, path: Path) -> Path:
    """The root of the parent ``ws`` that `wb index PATH --model ...` indexes into a variant: PATH
    when the parent indexes it, else the parent's root whose walk reads PATH (as `wb index PATH`
    refreshes the covering root), so the variant's documents keep the parent's ids. InputError for a
    PATH the parent does not index (the variant could never hold the parent's documents)."""
    from workbench.errors import InputError
    from workbench.index.indexer import _covering_root

    asked = Path(path).expanduser().resolve()
    roots = parent_roots(ws)
    if asked in roots:
        return asked
    covering = _covering_root(roots, asked, ws.config().index.exclude)
    if covering is None:
        raise InputError(f"{path} is not indexed by workspace {ws.root}: a variant re-encodes the workspace's own "
                         f"documents (index it there first: `wb index {path}`, then `wb index --model ...`)")
    return covering


def roots_to_reindex(ws: Workspace) -> list[str]:
    """The roots of ``ws`` whose documents a settings rebuild dropped and that are not indexed again
    yet (an interrupted `wb index`; `wb index` without PATH finishes them)."""
    from workbench.store.manifest import read_roots_to_reindex

    return read_roots_to_reindex(ws.manifest_path)


def build_variant(ws: Workspace, serve: Serving, roots: list[Path] | None = None,
                  progress: Callable[[str, int, int], None] | None = None, device: str | None = None) -> list:
    """Index ``roots`` (default: every root of the parent) into the variant; returns IndexSummary list."""
    from workbench.index.indexer import Indexer

    roots = roots if roots is not None else parent_roots(ws)
    if not roots:
        raise WorkspaceError(f"workspace {ws.root} has no indexed folders to re-encode: give a PATH")
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise WorkspaceError(f"indexed folder no longer exists: {missing[0]}")
    adopt_orphan(ws, serve)
    write_variant_config(serve)
    return [Indexer(serve.workspace, serve.config, progress=progress, device=device, donor=ws).run(r) for r in roots]


def is_stale(ws: Workspace, serve: Serving) -> bool:
    """True when the parent's documents differ from those of the variant's last finished run (see
    :func:`staleness`)."""
    return bool(staleness(ws, serve))


def needs_index(ws: Workspace, serve: Serving) -> bool:
    """Whether `wb index --model ...` has work on the variant now: it is stale (:func:`is_stale`) or
    its last run was cut off (not one being written: that run does it)."""
    from workbench.index.unfinished import UNFINISHED_RUN
    from workbench.store.manifest import Manifest

    if is_stale(ws, serve):
        return True
    if not serve.is_variant or not serve.workspace.exists() or serve.workspace.being_written():
        return False
    with Manifest(serve.workspace.manifest_path) as manifest:
        return bool(manifest.get_meta(UNFINISHED_RUN))


def staleness(ws: Workspace, serve: Serving) -> str:
    """How the variant's documents stand against the parent's: "" when they are the same, or when the
    variant is being written, its last run was cut off (the unfinished note says so; a partial
    variant is not out of date) or it holds no document; "older" when the parent indexed a document after the variant's
    last one; else "differs" (the files changed and only the variant was indexed again, or the
    parent only dropped documents)."""
    from workbench.index.unfinished import UNFINISHED_RUN
    from workbench.store.manifest import Manifest

    if not serve.is_variant or not serve.workspace.exists() or not ws.exists():
        return ""
    if serve.workspace.being_written():
        return ""
    with Manifest(ws.manifest_path) as a, Manifest(serve.workspace.manifest_path) as b:
        if b.get_meta(UNFINISHED_RUN) or not b.count_docs() or a.hashes() == b.hashes():
            return ""  # (a variant with no document is not out of date: opening it says it is empty)
        latest = [max((row[3] for row in m.sources()), default=0.0) for m in (a, b)]
    return "older" if latest[0] > latest[1] else "differs"
