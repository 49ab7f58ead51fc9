"""The Runs screen: training runs of the workspace. A placeholder until the training issue lands.

The training issue fills this pane: list ``<workspace>/runs/*`` with their state (from each run's
``events.jsonl``), a live loss curve for the running one, and "use this model" to query with it.
Keep the class name and id: the app mounts ``RunsPane`` in the ``runs`` tab and binds key 4 to it.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


class RunsPane(Vertical):
    BINDINGS: list = []

    def __init__(self) -> None:
        super().__init__(id="runs-pane")

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-body")

    def on_mount(self) -> None:
        self.refresh_runs()

    def refresh_runs(self) -> None:
        root = Path(self.app.workspace_root) / "runs"
        text = Text()
        text.append("Training runs\n\n", style="bold")
        text.append("Fine-tuning retrievers and rerankers arrives with the training issue: this screen will list\n"
                    "the workspace's runs, follow the running one live, and let you query with a trained model.\n\n",
                    style="dim")
        runs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if runs:
            text.append(f"{len(runs)} run folder(s) in {root}:\n", style="dim")
            for name in runs[:50]:
                text.append(f"  {name}\n")
        else:
            text.append(f"no runs in {root}\n", style="dim")
        self.query_one("#runs-body", Static).update(text)
