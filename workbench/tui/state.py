"""What the workbench remembers between launches, as JSON in ``~/.config/wb/tui.json``.

``$WB_TUI_STATE`` names another file (tests use it); ``$XDG_CONFIG_HOME`` moves the default.
A missing, unreadable or malformed file gives the defaults; unknown keys are ignored, so an older
or newer state file never stops the app from starting. Saving never raises.

Which workspace the TUI opens (``initial_workspace``), first match wins:

1. ``wb --workspace DIR`` / ``wb -w DIR``;
2. ``$WB_WORKSPACE``;
3. ``./.wb`` when that folder exists in the current folder;
4. the remembered workspace (``workspace`` in the state file), only if that folder still exists: a
   deleted one (a temporary directory, say) is never opened;
5. ``./.wb`` (shown as "no index" until a folder is indexed).

The CLI commands use 1, 2 and 5 only (``Workspace.resolve``); the TUI adds 3 and 4.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from workbench.files import write_whole


def state_path() -> Path:
    override = os.environ.get("WB_TUI_STATE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wb" / "tui.json"


def _absolute(path: str | Path, cwd: Path | None) -> Path:
    """``path`` as ``Workspace.resolve`` makes it (``~`` expanded, relative to ``cwd``, not normalised)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(cwd) / path if cwd is not None else path.absolute()


def initial_workspace(explicit: str | Path | None = None, remembered: str | None = None,
                      cwd: Path | None = None) -> Path:
    """The workspace folder the TUI opens at launch (the order is in this module's docstring).

    ``explicit`` is ``--workspace``/``-w``; ``remembered`` the state file's ``workspace``; ``cwd`` the
    current folder (default: the process's). Empty strings count as not given, as ``Workspace.resolve``
    treats them."""
    if explicit:
        return _absolute(explicit, cwd)
    env = os.environ.get("WB_WORKSPACE")
    if env:
        return _absolute(env, cwd)
    local = _absolute(".wb", cwd)
    if local.is_dir():
        return local
    if remembered:
        previous = _absolute(remembered, cwd)
        if previous.is_dir():
            return previous
    return local


_MAY_BE_UNSET = {"workspace": str, "k": int, "theme": str}  # the fields whose default is None, and their type


@dataclass
class TuiState:
    workspace: str | None = None
    left_pipeline: str = "hybrid"
    right_pipeline: str = "hybrid+rerank"
    instruction: str = "none"  # a preset name, or "custom" (then ``custom_instruction`` is used)
    custom_instruction: str = ""
    query: str = ""
    k: int | None = None  # results per column; None: as many as the table shows (10 to 50)
    unit: str = "doc"
    tab: str = "search"
    eval_dataset: str = ""
    eval_pipelines: str = "hybrid,hybrid+rerank"
    theme: str | None = None

    @property
    def instruction_value(self) -> str | None:
        """What the engine's ``instruction=`` takes: a preset name, free text, or None."""
        if self.instruction == "custom":
            return self.custom_instruction.strip() or None
        return None if self.instruction in ("", "none") else self.instruction

    @classmethod
    def load(cls, path: Path | None = None) -> "TuiState":
        path = path or state_path()
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        state = cls()
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            # each field keeps its own type (a null or a number where text belongs would crash the
            # app at start); only the fields that may be unset take null
            wanted = _MAY_BE_UNSET.get(f.name) or type(getattr(state, f.name))
            if value is None:
                ok = f.name in _MAY_BE_UNSET
            else:
                ok = isinstance(value, wanted) and (wanted is bool or not isinstance(value, bool))
            if ok:
                setattr(state, f.name, value)
        if state.unit not in ("doc", "chunk"):
            state.unit = "doc"
        if state.k is not None and (not isinstance(state.k, int) or not 1 <= state.k <= 200):
            state.k = None
        return state

    def save(self, path: Path | None = None) -> None:
        path = path or state_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_whole(path, json.dumps(asdict(self), indent=2, sort_keys=True))
        except OSError:
            pass
