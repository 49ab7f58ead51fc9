"""The workspace folder: config, stores, manifest, runs, and the single-writer lock.

Resolution order: ``--workspace`` option, then ``$WB_WORKSPACE``, then ``./.wb``.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.config import DEFAULT_TOML, WorkspaceConfig, load_config
from workbench.errors import UsageError, WorkspaceError


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` (absolute) can never be a folder: "is a file", or "is inside F, which is a file"
    (the nearest part of it that exists is no folder); None when it is or can be made one."""
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            if folder.is_dir():
                return None
            return "is a file" if folder == path else f"is inside {folder}, which is a file"
    return None


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> "Workspace":
        chosen = path or os.environ.get("WB_WORKSPACE") or ".wb"
        root = Path(chosen).expanduser().absolute()
        where = not_a_folder(root)
        if where:
            raise UsageError(f"the workspace {root} {where}: give a folder")
        return cls(root)

    @property
    def flag(self) -> str:
        """`` -w ROOT`` (shell-quoted) for a command hint naming this workspace, "" when ROOT is the
        one a bare command resolves to (``$WB_WORKSPACE``, else ``./.wb``): a hint copied as printed
        must act on this workspace, not on the default one."""
        import shlex

        try:
            default = Workspace.resolve(None).root
        except UsageError:
            default = None
        return "" if self.root == default else f" -w {shlex.quote(str(self.root))}"

    @property
    def config_path(self) -> Path:
        return self.root / "wb.toml"

    @property
    def lance_dir(self) -> Path:
        return self.root / "lance"

    @property
    def tantivy_dir(self) -> Path:
        return self.root / "tantivy"

    @property
    def snapshot_dir(self) -> Path:
        return self.root / "snapshot"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.sqlite"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def eval_corpus_dir(self) -> Path:
        """Where ``wb eval`` writes a dataset's corpus as BEIR jsonl when its own file is not one
        (documents of the workspace's own making: the one folder inside it that may be indexed)."""
        return self.root / "eval-corpus"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def ensure(self) -> None:
        """Create the folder and a default ``wb.toml`` if absent; a folder that cannot be made or
        written (read-only, a file in the way, no permission) is a one-line WorkspaceError."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not self.config_path.exists():
                self.config_path.write_text(DEFAULT_TOML)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the workspace {self.root}: {exc.strerror or exc}") from None

    def config(self) -> WorkspaceConfig:
        """``wb.toml`` as typed settings; a model role written ``runs/NAME`` (``runs/NAME@L``) is this
        workspace's run, as ``--model ROLE=runs/NAME`` reads it: its model folder, made absolute,
        when the run has one (else the value is left, and loading it says what is wrong). A role
        written as a relative path (``./`` or ``../`` first) is relative to the workspace folder, where
        wb.toml is, whatever the current directory (it was the current directory's: an index built
        from one folder was "built with other models" from another)."""
        config = load_config(self.config_path)
        models = config.models
        found = {}
        for role in ("dense", "colbert", "sparse", "reranker"):
            value = getattr(models, role)
            if value.startswith(("./", "../")):
                found[role] = str((self.root / value).resolve())  # a FOLDER@L keeps its suffix: no folder ends in @L
                continue
            reference = self.run_reference(value)
            if reference is None:
                continue
            name, suffix = reference
            folder = self.runs_dir / name / "model"
            if name and "/" not in name and folder.is_dir():
                found[role] = str(folder.resolve()) + suffix
        return replace(config, models=replace(models, **found)) if found else config

    def run_reference(self, value: str) -> tuple[str, str] | None:
        """``(run name, cutoff suffix)`` of a model value naming one of this workspace's runs:
        ``runs/NAME`` and ``runs/NAME/model`` -> ``(NAME, "")``, ``runs/NAME@L`` (a layer-wise
        reranker served at layer L) -> ``(NAME, "@L")`` unless a run is named ``NAME@L``; None for a
        value that names no run. Whether the run exists is the caller's to check."""
        if not value.startswith("runs/") or len(value) <= len("runs/"):
            return None
        name, suffix = value[len("runs/"):].strip("/"), ""
        cut = re.fullmatch(r"(.+)@(\d+)", name)
        if cut and not (self.runs_dir / name).exists():
            name, suffix = cut.group(1), f"@{cut.group(2)}"
        return name.removesuffix("/model"), suffix

    def require(self) -> None:
        """Raise a one-line WorkspaceError unless the workspace holds an index."""
        if not self.exists():
            raise WorkspaceError(f"no index in workspace {self.root}: run `wb index PATH{self.flag}` first")

    def being_written(self) -> bool:
        """Whether a writer (`wb index`) holds the write lock now: a non-blocking shared lock is tried
        and, when it is granted, released at once (no writer is ever kept waiting)."""
        path = self.root / "write.lock"
        if not path.exists():
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive lock for writers (indexing). A second writer gets a WorkspaceError at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "write.lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise WorkspaceError(f"another `wb index` is writing workspace {self.root}") from exc
            yield
        finally:
            handle.close()
