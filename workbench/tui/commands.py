"""The command palette's wb commands (ctrl+p): screens, pipelines, instructions, corpus, evaluation."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from workbench.encoders.templates import INSTRUCTION_PRESETS
from workbench.tui.common import PIPELINES


class WbCommands(Provider):
    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        out: list[tuple[str, object, str]] = [
            ("Go to Corpus", partial(app.action_show_tab, "corpus"), "workspace, models, folders, documents (1)"),
            ("Go to Search", partial(app.action_show_tab, "search"), "two pipelines side by side (2)"),
            ("Go to Evaluate", partial(app.action_show_tab, "evaluate"), "run wb eval on a BEIR dataset (3)"),
            ("Go to Runs", partial(app.action_show_tab, "runs"), "training runs (4)"),
            ("Show keys", app.action_help, "every key of every screen (?)"),
            ("Swap pipelines", partial(app.search_call, "action_swap"), "exchange the left and right pipelines"),
            ("Rank documents / chunks", partial(app.search_call, "action_toggle_unit"), "toggle the result unit"),
            ("Index a folder…", app.action_add_folder, "add a folder to the workspace and index it"),
            ("Open another workspace…", app.action_edit_workspace, "switch the workspace"),
            ("Run evaluation", app.action_run_eval, "wb eval on the Evaluate screen's dataset"),
        ]
        for side in ("left", "right"):
            for p in PIPELINES:
                kwargs = {side: p}
                out.append((f"{side.capitalize()} pipeline: {p}", partial(app.set_pipelines, **kwargs),
                            f"show {p} in the {side} column (or type a fusion: dense+bm25)"))
        for name, text in INSTRUCTION_PRESETS.items():
            out.append((f"Instruction: {name}", partial(app.set_instruction, name), text or "no instruction"))
        for k in (5, 10, 20, 50):
            out.append((f"Results per column: {k}", partial(app.search_call, "set_k", k), f"top {k}"))
        return out

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
        for title, callback, help_text in self._fusion_commands(query):  # typed, so ranked first
            yield Hit(1.0, title, callback, text=title, help=help_text)

    def _fusion_commands(self, query: str) -> list[tuple[str, object, str]]:
        """A fusion the pipeline menus do not list (``dense+bm25``, ``colbert+sparse+rerank``), typed
        as the query's last word: a command for each column."""
        from workbench.errors import UsageError
        from workbench.search.pipelines import parse_pipeline

        words = query.replace(":", " ").split()
        if not words or "+" not in words[-1]:
            return []
        try:
            pipe = parse_pipeline(words[-1])
        except UsageError:
            return []
        if pipe.name in PIPELINES:
            return []
        return [(f"{side.capitalize()} pipeline: {pipe.name}", partial(self.app.set_pipelines, **{side: pipe.name}),
                 f"fuse {' + '.join(pipe.modes)}{' then rerank' if pipe.rerank else ''} in the {side} column")
                for side in sorted(("left", "right"), key=lambda side: side not in query.lower())]  # a named side first
