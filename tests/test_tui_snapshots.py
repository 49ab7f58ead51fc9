"""SVG snapshots of the workbench's main screens (pytest-textual-snapshot), so that visual changes
show in review. The engine is the deterministic fake (fixed hits, scores, timings and paths), the
terminal size is fixed, and no clock is shown.

Update after an intended change:  pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

pytest.importorskip("textual")  # the GPU image has no textual: these tests do not apply there
pytest.importorskip("pytest_textual_snapshot")

from tui_fake import FakeEngine, run_query, settle
from workbench.tui.app import WbApp

QUERY = "remove a directory and everything in it"


@pytest.fixture(autouse=True)
def tui_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WB_TUI_STATE", str(tmp_path / "tui.json"))
    monkeypatch.delenv("WB_WORKSPACE", raising=False)


def make_app(theme: str | None = None) -> WbApp:
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    if theme:
        app.state.theme = theme
    return app


async def searched(pilot) -> None:
    await settle(pilot)
    await run_query(pilot, QUERY)
    pilot.app.search.left.table.focus()
    await pilot.pause()


def test_search_100x30(snap_compare):
    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=searched)


def test_search_200x60(snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=searched)


def test_search_light_theme(snap_compare):
    assert snap_compare(make_app("textual-light"), terminal_size=(100, 30), run_before=searched)


def test_search_with_instruction(snap_compare):
    async def run(pilot):
        await searched(pilot)
        pilot.app.search.set_instruction("python-docs")
        await settle(pilot)
        pilot.app.search.left.table.focus()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(120, 34), run_before=run)


def test_preview(snap_compare):
    async def run(pilot):
        await searched(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)


def test_corpus(snap_compare):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("1")
        await pilot.pause()
        pilot.app.query_one("#documents").focus()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)


def test_evaluate(snap_compare):
    from test_tui import EVAL_REPORT

    async def run(pilot):
        await settle(pilot)
        await pilot.press("3")
        pilot.app.evaluate.show_report(EVAL_REPORT)
        await pilot.pause()
        pilot.app.query_one("#per-query").focus()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)


def test_help(snap_compare):
    async def run(pilot):
        await settle(pilot)
        pilot.app.search.left.table.focus()
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)


def test_runs(snap_compare, tmp_path, monkeypatch):
    """The Runs screen on three fake run folders (running, failed, finished with evaluations); the
    runs live in a temporary folder but the header keeps showing the fake workspace."""
    import os
    import time

    from tui_fake import fake_run
    from workbench.tui.runs import RunsPane

    fake_run(tmp_path, "ft-1", "finished", steps=80, total=80, eval_every=20)
    time.sleep(0.02)
    fake_run(tmp_path, "ft-2", "failed", steps=12, error='Traceback (most recent call last):\n  File "embedder.py", '
             'line 3, in _train\nRuntimeError: CUDA out of memory')
    time.sleep(0.02)
    fake_run(tmp_path, "ft-3", "running", steps=40, total=200, pid=os.getpid())
    monkeypatch.setattr(RunsPane, "root", property(lambda self: tmp_path))

    async def run(pilot):
        await settle(pilot)
        pilot.app.action_show_tab("runs")
        await pilot.pause(0.3)
        pilot.app.query_one("#runs-table").focus()
        await pilot.press("down", "down")
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)


def test_launch_form(snap_compare, tmp_path, monkeypatch):
    """The launch form with the reranker trainer picked (its fields and defaults); the device line
    is pinned to the CPU so the picture does not depend on the machine."""
    from workbench.tui import launch
    from workbench.tui.runs import RunsPane

    monkeypatch.setattr(launch, "auto_device", lambda: "cpu")
    monkeypatch.setattr(RunsPane, "root", property(lambda self: tmp_path))

    async def run(pilot):
        await settle(pilot)
        pilot.app.action_show_tab("runs")
        await pilot.pause(0.3)
        pilot.app.query_one("#runs-table").focus()
        await pilot.press("n")
        await settle(pilot)
        pilot.app.screen.query_one("#launch-trainer").value = "reranker"
        await settle(pilot)
        pilot.app.screen.query_one("#launch-data").focus()
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run)
