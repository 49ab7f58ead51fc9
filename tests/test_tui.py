"""The workbench TUI: Pilot tests of each screen's main path against a real small index, behaviour
tests with a deterministic fake engine, the engine-side explanations, and a real-terminal check
in tmux (skipped when tmux is missing)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.text import Text

pytest.importorskip("textual")  # the GPU image has no textual: these tests do not apply there

from tui_fake import FakeEngine, run_query, settle, wait_until
from workbench.search import explain
from workbench.tui.app import WbApp
from workbench.tui.engine import DocumentRow, SourceInfo
from workbench.search.compare import movements
from workbench.tui.preview import PreviewScreen
from workbench.tui.state import TuiState

REPO = Path(__file__).resolve().parents[1]
QUERY = "remove a directory and everything in it"


@pytest.fixture(autouse=True)
def tui_state(tmp_path, monkeypatch):
    """Each test gets its own state file (never the user's ~/.config/wb/tui.json)."""
    path = tmp_path / "tui.json"
    monkeypatch.setenv("WB_TUI_STATE", str(path))
    monkeypatch.delenv("WB_WORKSPACE", raising=False)
    return path


@pytest.fixture(scope="session")
def tui_engine():
    """One real engine for the session: models load once, Searchers are cached per workspace."""
    from workbench.tui.engine import Engine

    return Engine()


def record_notifications(app) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    original = app.notify

    def notify(message, *args, **kwargs):
        seen.append((str(message), kwargs.get("severity", "information")))
        return original(message, *args, **kwargs)

    app.notify = notify
    return seen


# ---------------------------------------------------------------------------------------
# Real index: the main path of each screen
# ---------------------------------------------------------------------------------------
async def test_search_two_columns_movement_pipeline_switch_and_preview(small_workspace, tui_engine, tui_state):
    ws, _ = small_workspace
    app = WbApp(str(ws.root), engine=tui_engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert app.workspace_ready and app.models_ready
        app.action_show_tab("search")
        await run_query(pilot, QUERY)
        left, right = app.search.left, app.search.right
        assert left.result.pipeline == "hybrid" and right.result.pipeline == "hybrid+rerank"
        assert "shutil/rmtree.md" in [h.doc_id for h in left.hits[:3]]
        assert left.table.row_count == len(left.hits) > 0 and right.table.row_count == len(right.hits) > 0
        # each row carries every mode's rank; the right column carries movement marks
        assert set(left.hits[0].ranks) == {"dense", "colbert", "sparse", "bm25"}
        assert len(right.marks) == len(right.hits)
        assert all(re.fullmatch(r"=|new|↑\d+|↓\d+", m) for m in right.marks)
        marks, dropped = movements(left.hits, right.hits)
        assert right.marks == marks and right.dropped == dropped

        # switching the left pipeline reruns the left column only
        right_before = right.result
        await pilot.press("escape")  # leave the query box: letter keys are commands now
        await pilot.press("l")
        await settle(pilot)
        assert left.pipeline == "hybrid+rerank" and left.result.pipeline == "hybrid+rerank"
        assert right.result is right_before
        assert right.marks == ["="] * len(right.hits)  # same pipeline both sides: no movement
        assert json.loads(tui_state.read_text())["left_pipeline"] == "hybrid+rerank"

        # a pipeline picked in the right column's Select
        right.set_pipeline("bm25")
        await settle(pilot)
        assert right.result.pipeline == "bm25"
        assert set(right.hits[0].ranks) == {"bm25"}

        # Enter on a result opens its preview with the ColBERT and sparse explanations
        left.table.focus()
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PreviewScreen)
        preview = screen.preview
        assert preview is not None and not preview.errors
        doc = preview.document
        assert doc.doc_id == left.hits[0].doc_id
        assert doc.text[doc.chunk_start:doc.chunk_end].strip()
        assert any(m.part == "query" for m in preview.colbert.matches)
        assert preview.sparse.terms and preview.sparse.shared
        shown = screen.query_one("#preview-colbert").render()
        assert "MaxSim" in str(shown)
        await pilot.press("n")
        await settle(pilot)
        assert screen.index == 1 and screen.preview.document.doc_id == left.hits[1].doc_id
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, PreviewScreen)
        assert left.table.cursor_row == 1  # the hit previewed last is the one selected


async def test_instruction_preset_shows_the_exact_encoder_input(small_workspace, tui_engine):
    ws, _ = small_workspace
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        app.search.set_instruction("python-docs")
        await settle(pilot)
        expected = tui_engine.searcher(ws.root).settings.templates.render_query(
            "remove a directory",
            "Given a question about Python, retrieve the documentation section that answers it")
        assert expected in str(app.query_one("#rendered").render())
        assert app.search.left.result.instruction.startswith("Given a question about Python")
        # free text switches the picker to "custom"
        app.query_one("#instruction-text").value = "Find the function that does it"
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.instruction == "custom"
        assert app.search.left.result.instruction == "Find the function that does it"
        assert "Find the function that does it: remove a directory" in str(app.query_one("#rendered").render())
        # a one-word instruction is refused as a mistyped preset: the hits left are the previous
        # query's, dimmed and said so (they stayed as if current)
        app.query_one("#instruction-text").value = "pythn"
        await pilot.press("enter")
        await settle(pilot)
        assert "query failed: previous hits" in str(app.query_one("#left-status").render())
        assert app.search.left.table.has_class("stale")
        app.search.set_instruction("none")  # the next query that runs clears it
        await settle(pilot)
        assert "query failed" not in str(app.query_one("#left-status").render())


class GatedEngine:
    """The real engine, except that indexing waits for ``gate`` (to observe the UI meanwhile)."""

    def __init__(self, engine) -> None:
        import threading

        self._engine = engine
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def index(self, root, folder, progress):
        progress("chunking", 0, 1)
        assert self.gate.wait(60)
        return self._engine.index(root, folder, progress)


class PausingEngine:
    """The real engine, except that an indexing run pauses at its first encoding step until ``gate``
    is set (``reached`` says it got there); ``ended`` is set when the run ended, ``error`` what ended it."""

    def __init__(self, engine) -> None:
        import threading

        self._engine = engine
        self.reached, self.gate, self.ended = threading.Event(), threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def index(self, root, folder, progress):
        def paused(phase, done, total):
            if phase == "encoding" and not self.reached.is_set():
                self.reached.set()
                assert self.gate.wait(60)
            progress(phase, done, total)

        try:
            return self._engine.index(root, folder, paused)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.ended.set()


def indexed_and_new_folder(tmp_path):
    """A workspace with one folder indexed, and a second folder not indexed yet."""
    from conftest import copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(copy_small_corpus(tmp_path / "a", ["time/sleep.md"]))
    return ws, copy_small_corpus(tmp_path / "b", ["shutil/rmtree.md", "heapq/overview.md"])


async def test_s_stops_indexing_and_the_corpus_note_says_the_run_was_cut_off(tmp_path, tui_engine):
    """s stops the run before its next batch, as Ctrl-C stops `wb index`: the index stays consistent
    (the earlier folder answers), the stop is said once, and the Corpus note says what is missing."""
    from workbench.tui.engine import IndexingStopped

    ws, new = indexed_and_new_folder(tmp_path)
    engine = PausingEngine(tui_engine)
    app = WbApp(str(ws.root), engine=engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_corpus_tab(pilot)
        assert not app.corpus.check_action("stop_index", ())  # offered while a run goes only
        app.corpus.start_index([str(new)])
        await wait_until(pilot, engine.reached.is_set, what="the first encoding step")
        app.query_one("#documents").focus()
        await pilot.pause()
        assert "s" in app.screen.active_bindings
        await pilot.press("s")
        engine.gate.set()
        await settle(pilot)
        assert isinstance(engine.error, IndexingStopped)
        assert "stopped" in str(app.query_one("#index-phase").render())
        note = app.query_one("#corpus-note")
        assert note.display and "was cut off before its end" in " ".join(str(note.render()).split())
        assert [m for m, _ in seen if "stopped" in m] and not [m for m, sev in seen if sev == "error"]
        assert len([m for m, sev in seen if sev != "information"]) == 1
        assert app.corpus.info.docs == 1 and not app.corpus.check_action("stop_index", ())
        hits = tui_engine.search(ws.root, "sleep for a while", pipeline="bm25")
        assert hits.results[0].doc_id == "time/sleep.md"


async def test_quitting_while_indexing_stops_the_run(tmp_path, tui_engine):
    """The app closing stops its indexing run at the next step (a stop, not a crash of the run)."""
    from workbench.tui.engine import IndexingStopped

    ws, new = indexed_and_new_folder(tmp_path)
    engine = PausingEngine(tui_engine)
    app = WbApp(str(ws.root), engine=engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_corpus_tab(pilot)
        app.corpus.start_index([str(new)])
        await wait_until(pilot, engine.reached.is_set, what="the first encoding step")
        app.exit()
    engine.gate.set()
    assert engine.ended.wait(60)
    assert isinstance(engine.error, IndexingStopped)
    info = tui_engine.info(ws.root)
    assert info.docs == 1 and "was cut off" in info.unfinished


async def test_f5_refreshes_a_corpus_screen_that_wb_index_changed_elsewhere(tmp_path, tui_engine):
    """`wb index` in another terminal: the Corpus screen offers F5 in its footer, which shows the new
    folder and documents."""
    from textual.widgets._footer import FooterKey

    from workbench.index.indexer import Indexer

    ws, new = indexed_and_new_folder(tmp_path)
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_corpus_tab(pilot)
        app.query_one("#documents").focus()
        await wait_until(pilot, lambda: "f5" in [k.key for k in app.screen.query(FooterKey)], what="F5 in the footer")
        assert app.query_one("#sources").row_count == 1
        Indexer(ws).run(new)  # as `wb index` would
        await pilot.press("f5")
        await settle(pilot)
        assert app.query_one("#sources").row_count == 2 and app.query_one("#documents").row_count == 3


async def test_the_corpus_screen_follows_a_wb_index_run_elsewhere_by_itself(tmp_path, tui_engine, monkeypatch):
    """Without F5: the Corpus screen's timer notices that the index changed (another terminal's
    `wb index`) and reads the workspace again; an unchanged index is not read again."""
    import workbench.tui.corpus as corpus_screen
    from workbench.index.indexer import Indexer

    monkeypatch.setattr(corpus_screen, "AGE_TICK_S", 0.2)
    ws, new = indexed_and_new_folder(tmp_path)
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_corpus_tab(pilot)
        await wait_until(pilot, lambda: app.corpus.info is not None and app.corpus.info.exists, what="the corpus info")
        first = app.corpus.info
        await pilot.pause(0.6)
        assert app.corpus.info is first  # nothing changed: not read again
        Indexer(ws).run(new)  # as `wb index` would
        await wait_until(pilot, lambda: app.query_one("#sources").row_count == 2, what="the new folder")
        await settle(pilot)
        assert app.query_one("#documents").row_count == 3


async def test_a_folder_gone_from_disk_is_marked_missing_and_x_removes_it(tmp_path, tui_engine):
    from textual.widgets._footer import FooterKey

    from workbench.index.indexer import Indexer

    ws, new = indexed_and_new_folder(tmp_path)
    Indexer(ws).run(new)
    shutil.rmtree(tmp_path / "a")  # the first folder is gone (moved, deleted, unmounted)
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_corpus_tab(pilot)
        table = app.query_one("#sources")
        cells = {str(table.get_row_at(i)[0]).split()[0] for i in range(table.row_count)}
        assert "missing" in cells and "missing" in table.border_title
        await wait_until(pilot, lambda: "x" in [k.key for k in app.screen.query(FooterKey)], what="x in the footer")
        gone = next(i for i, s in enumerate(app.corpus.info.sources) if s.missing)
        table.focus()
        table.move_cursor(row=1 - gone)  # the folder still there: x only points at the missing one
        await pilot.press("x")
        await settle(pilot)
        assert table.row_count == 2 and table.cursor_row == gone
        await pilot.press("x")
        await settle(pilot)
        assert [s.root for s in app.corpus.info.sources] == [str(new.resolve())]
        assert app.query_one("#documents").row_count == 2 and app.corpus.info.docs == 2
        assert any("removed" in m and "(1 documents)" in m for m, _ in seen)
        assert "x" not in app.screen.active_bindings or not app.corpus.check_action("remove_missing", ())


async def test_a_cut_documents_list_says_how_many_it_shows_of_all(small_workspace, tui_engine, monkeypatch):
    """The documents list holds the first documents only (5,000): its title says so, and which."""
    ws, _ = small_workspace
    documents = tui_engine.documents
    monkeypatch.setattr(tui_engine, "documents", lambda root, limit=2: documents(root, limit))
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_corpus_tab(pilot)
        table = app.query_one("#documents")
        total = app.corpus.info.docs
        assert total > 2 and table.row_count == 2
        assert table.border_title == f"documents (first 2 of {total:,})"
        every = documents(ws.root, 10_000)
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == [r.doc_id for r in every[:2]]


async def test_a_failed_first_index_is_said_once(tmp_path, tui_engine):
    (tmp_path / "empty").mkdir()
    app = WbApp(str(tmp_path / "ws"), engine=tui_engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        seen = record_notifications(app)
        app.corpus.start_index([str(tmp_path / "empty")])
        await settle(pilot)
        assert [m for m, _ in seen] == [f"nothing to index in {tmp_path / 'empty'}: no readable .txt .md .rst .html "
                                        ".pdf file or BEIR corpus.jsonl"]


async def test_a_run_that_ends_after_a_workspace_switch_names_its_workspace(tmp_path, tui_engine):
    from conftest import copy_small_corpus

    corpus = copy_small_corpus(tmp_path / "corpus", ["time/sleep.md"])
    engine = GatedEngine(tui_engine)
    app = WbApp(str(tmp_path / "ws-a"), engine=engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_corpus_tab(pilot)
        seen = record_notifications(app)
        app.corpus.start_index([str(corpus)])
        await pilot.pause()
        app.set_workspace(str(tmp_path / "ws-b"))
        await pilot.pause()
        engine.gate.set()
        await settle(pilot)
        line = str(app.query_one("#index-rate").render())
        assert line.startswith("in workspace ") and "/ws-a: 1 file read; indexed 1 doc" in line
        assert any(m.startswith("in workspace ") and "/ws-a: indexed 1 documents" in m for m, _ in seen)


def test_the_engine_sees_an_index_changed_by_another_wb_index(tmp_path, tui_engine):
    """`wb index` in another terminal (a new document, then a settings rebuild swapped in): the
    TUI's next search answers from the new index, with the encoders it had loaded."""
    import re

    from conftest import copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", ["time/sleep.md", "heapq/overview.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    hits = tui_engine.search(ws.root, "remove a directory tree", pipeline="bm25")
    assert "shutil/rmtree.md" not in [h.doc_id for h in hits.results]
    bundle = tui_engine.searcher(ws.root).bundle
    copy_small_corpus(corpus, ["shutil/rmtree.md"])
    Indexer(ws).run(corpus)  # as another process would
    hits = tui_engine.search(ws.root, "remove a directory tree", pipeline="bm25")
    assert hits.results[0].doc_id == "shutil/rmtree.md"
    assert tui_engine.searcher(ws.root).bundle is bundle  # same models: nothing loaded again
    ws.config_path.write_text(re.sub(r"chunk_tokens = \d+", "chunk_tokens = 96", ws.config_path.read_text()))
    Indexer(ws).run(corpus)
    assert tui_engine.searcher(ws.root).settings.chunk_tokens == 96
    assert tui_engine.search(ws.root, "remove a directory tree", pipeline="bm25").results[0].doc_id == "shutil/rmtree.md"


def test_the_engine_answers_as_wb_query_while_a_run_goes_and_after_it_was_cut_off(tmp_path, tui_engine, monkeypatch):
    """A `wb index` elsewhere that has written documents but not published its snapshot (still
    running, or cut off): the next search answers from what it wrote and says what is missing, as
    `wb query` does. The cached Searcher answered without them and said nothing."""
    from conftest import SAMPLE, copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    query = "pause the program for a few seconds"
    first = tui_engine.search(ws.root, query, pipeline="bm25")
    assert first.note == "" and "time/sleep.md" not in [h.doc_id for h in first.results]
    (corpus / "time").mkdir()
    shutil.copy(SAMPLE / "time" / "sleep.md", corpus / "time" / "sleep.md")

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # cut off (a kill) after writing, before publishing
        patched.setattr(Indexer, "_publish_snapshot", killed)
        with pytest.raises(KeyboardInterrupt):
            Indexer(ws).run(corpus)
    for pipeline in ("bm25", "dense"):
        hits = tui_engine.search(ws.root, query, pipeline=pipeline)
        fresh = Searcher(ws, serve_stale=True).search(query, pipeline=pipeline)  # as `wb query` opens it
        assert [h.doc_id for h in hits.results] == [h.doc_id for h in fresh.results]
        assert "time/sleep.md" in [h.doc_id for h in hits.results]
        assert "was cut off before its end" in hits.note and hits.note == fresh.note
    with ws.write_lock():  # a `wb index` running now
        assert "is running" in tui_engine.search(ws.root, query, pipeline="bm25").note
    assert "was cut off" in tui_engine.search(ws.root, query, pipeline="bm25").note
    Indexer(ws).run(corpus)  # the next run ends it
    assert tui_engine.search(ws.root, query, pipeline="bm25").note == ""


def test_the_index_stamp_costs_well_under_a_millisecond(small_workspace):
    """The stamp is read before every query."""
    from workbench.tui.engine import _index_stamp

    ws, _ = small_workspace
    assert _index_stamp(ws) is not None
    t0 = time.perf_counter()
    for _ in range(200):
        _index_stamp(ws)
    assert (time.perf_counter() - t0) / 200 < 0.005  # ~0.4 ms here; generous for a loaded machine


async def open_corpus_tab(pilot) -> None:
    """The app opened (its workspace read), then the Corpus tab shown."""
    await settle(pilot)
    pilot.app.action_show_tab("corpus")
    await settle(pilot)


async def test_an_edited_wb_toml_is_said_and_the_index_keeps_answering(tmp_path, tui_engine):
    """wb.toml names another sparse model and other chunking, no `wb index` yet: the Corpus screen
    shows what the index holds (its chunking and models) and says a rebuild is due; Search answers
    from the index and says so once."""
    import shutil as sh

    from conftest import copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.models.cache import resolve_model_path
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", ["time/sleep.md", "shutil/rmtree.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    splade = sh.copytree(resolve_model_path("splade-tiny"), tmp_path / "my-splade")
    text = ws.config_path.read_text().replace('sparse = "splade-tiny"', f'sparse = "{splade}"')
    ws.config_path.write_text(text.replace("chunk_tokens = 256", "chunk_tokens = 128"))
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_corpus_tab(pilot)
        stats = " ".join(str(app.query_one("#corpus-stats").render()).split())
        assert "chunks: 256 tokens" in stats  # what the index holds, not wb.toml's 128
        note = app.query_one("#corpus-note")
        assert note.display and "wb.toml changed this index's settings (sparse, chunk_tokens) and no rebuild has " \
                                "begun" in " ".join(str(note.render()).split())
        assert "splade-tiny" in str(app.query_one("#corpus-models").render())  # the model that answers
        app.action_show_tab("search")
        await run_query(pilot, "remove a directory tree")
        await run_query(pilot, "remove a directory")
        assert "shutil/rmtree.md" in [h.doc_id for h in app.search.left.hits]
        notes = [m for m, sev in seen if "no rebuild has begun" in m]
        assert len(notes) == 1 and (f"`wb index{ws.flag}` rebuilds it" in notes[0])


@pytest.mark.slow
async def test_reindex_after_a_settings_change_rebuilds_once_and_says_so_first(tmp_path, tui_engine):
    from conftest import copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    for name, docs in (("a", ["time/sleep.md"]), ("b", ["shutil/rmtree.md"])):
        Indexer(ws).run(copy_small_corpus(tmp_path / name, docs))
    ws.config_path.write_text(ws.config_path.read_text().replace("chunk_tokens = 256", "chunk_tokens = 128"))
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_corpus_tab(pilot)
        await pilot.press("e")
        await settle(pilot)
        said = [m for m, _ in seen]
        first = next(i for i, m in enumerate(said) if "rebuilding the index beside the old one" in m)
        done = next(i for i, m in enumerate(said) if "rebuilt the index beside the old one" in m)
        assert first < done
        assert len(str(app.query_one("#index-rate").render()).strip().splitlines()) == 1  # one run, one summary
        assert tui_engine.info(ws.root).chunk_tokens == 128 and not tui_engine.info(ws.root).note


async def test_corpus_screen_indexes_a_folder_in_the_background(tmp_path, tui_engine):
    from conftest import copy_small_corpus

    corpus = copy_small_corpus(tmp_path / "corpus", ["time/sleep.md", "heapq/overview.md", "shutil/rmtree.md"])
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary")  # skipped: binary
    ws = tmp_path / "ws"
    engine = GatedEngine(tui_engine)
    app = WbApp(str(ws), engine=engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        # no index yet: a notification, and the Corpus screen is shown
        assert app.query_one("#tabs").active == "corpus"
        assert any("no index" in m for m, _ in seen)
        app.query_one("#folder").value = str(corpus)
        app.query_one("#folder").focus()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        # indexing runs in a worker: the progress shows and the rest of the UI keeps answering
        assert app.corpus.indexing
        assert app.query_one("#index-progress").display
        await pilot.press("escape", "2")
        await pilot.pause()
        assert app.query_one("#tabs").active == "search"
        engine.gate.set()
        await settle(pilot)
        info = app.corpus.info
        assert info.exists and info.docs == 3
        assert app.query_one("#documents").row_count == 3
        assert app.query_one("#sources").row_count == 1
        skipped = app.query_one("#skipped")
        assert skipped.display and skipped.row_count == 1  # the binary file, with its reason
        path, reason = skipped.get_row_at(0)
        assert "blob.txt" in str(path) and str(reason) == "binary"
        assert any("indexed 3 documents" in m for m, _ in seen)
        await run_query(pilot, "sleep for a few seconds")
        assert app.search.left.hits[0].doc_id == "time/sleep.md"



async def test_corpus_ages_follow_the_clock_and_keep_the_cursor(small_workspace, tui_engine, monkeypatch):
    """"indexed just now" is not frozen: the ages are redrawn as time passes, without rebuilding
    the folders' table (its cursor stays where the user left it)."""
    from workbench.tui import corpus as corpus_mod

    ws, _ = small_workspace
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        pane = app.corpus
        src = pane.info.sources[0]
        table = app.query_one("#sources")
        age = lambda: str(table.get_cell(src.root, "indexed"))  # noqa: E731
        stats = lambda: str(app.query_one("#corpus-stats").render())  # noqa: E731
        now = src.indexed_at + 5 * 60
        monkeypatch.setattr(corpus_mod.time, "time", lambda: now)
        pane._tick_ages()
        await pilot.pause()
        assert age() == "5 min ago" and "indexed 5 min ago" in stats()
        table.move_cursor(row=0)
        now = src.indexed_at + 3 * 3600
        pane._tick_ages()
        await pilot.pause()
        assert age() == "3 h ago" and "indexed 3 h ago" in stats()
        assert table.cursor_row == 0 and table.row_count == len(pane.info.sources)
        assert corpus_mod.AGE_TICK_S <= 60  # the timer redraws them at least once a minute

async def test_errors_are_notifications_never_crashes(tmp_path, tui_engine):
    app = WbApp(str(tmp_path / "missing-ws"), engine=tui_engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        assert any("no index in workspace" in m for m, _ in seen)
        # a query without an index explains itself in the columns
        await run_query(pilot, "anything")
        assert "no index" in str(app.query_one("#left-detail").render())
        # a folder that does not exist
        app.action_show_tab("corpus")
        app.query_one("#folder").value = str(tmp_path / "nope")
        app.query_one("#folder").focus()
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert ("no such file or folder: " + str(tmp_path / "nope"), "error") in seen
        # wb eval on a folder that is no BEIR dataset: the command fails, a notification says why
        app.action_show_tab("evaluate")
        data = tmp_path / "not-beir"
        data.mkdir()
        app.query_one("#dataset").value = str(data)
        app.evaluate.action_run()
        await settle(pilot)
        assert any(sev == "error" for m, sev in seen if m not in ("no such file or folder: " + str(tmp_path / "nope"),))
        assert "failed" in str(app.query_one("#eval-status").render())
        assert app.is_running


async def test_a_query_retries_a_workspace_that_failed_to_open(tmp_path, tui_engine):
    """The workspace had no index when the app opened it; once `wb index` has run elsewhere, Enter
    on a query opens it again and answers (it stayed 'no index' until a restart)."""
    from conftest import copy_small_corpus
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    app = WbApp(str(ws.root), engine=tui_engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("search")
        await run_query(pilot, "sleep for a while")
        assert "no index" in str(app.query_one("#left-detail").render())
        ws.ensure()
        Indexer(ws).run(copy_small_corpus(tmp_path / "corpus", ["time/sleep.md"]))  # as `wb index` would
        await run_query(pilot, "sleep for a while")
        assert app.workspace_ready and app.search.left.hits[0].doc_id == "time/sleep.md"


async def test_a_missing_model_in_wb_toml_is_said_and_the_index_keeps_answering(small_workspace, tmp_path, tui_engine):
    """wb.toml names a model that is not there (a typo): the Corpus screen says so and that the
    index answers with the models that built it; Search answers (as `wb query` does)."""
    ws, _ = small_workspace
    copy = tmp_path / "ws-copy"
    shutil.copytree(ws.root, copy)
    toml = (copy / "wb.toml").read_text().replace('dense = "all-MiniLM-L6-v2"', 'dense = "no-such-model"')
    (copy / "wb.toml").write_text(toml)
    app = WbApp(str(copy), engine=tui_engine, warm=False)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        await open_corpus_tab(pilot)
        note = " ".join(str(app.query_one("#corpus-note").render()).split())
        assert "'no-such-model'" in note and "the index answers with the models that built it" in note
        assert "all-MiniLM-L6-v2" in str(app.query_one("#corpus-models").render())  # the model that answers
        app.action_show_tab("search")
        await run_query(pilot, "remove a directory")
        assert app.search.left.result is not None and app.search.left.result.results
        assert not [m for m, sev in seen if sev == "error"] and app.is_running


# ---------------------------------------------------------------------------------------
# Deterministic behaviour with the fake engine
# ---------------------------------------------------------------------------------------
async def test_superseded_query_is_cancelled():
    engine = FakeEngine(delay=0.3)
    app = WbApp(FakeEngine.root, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        search = app.search
        search.set_query("first query")
        await pilot.pause(0.05)
        search.set_query("second query")
        await settle(pilot)
        assert search.left.result.query == "second query"
        assert search.right.result.query == "second query"
        # the first worker was cancelled after its current call: it never ran its second column
        assert ("first query", "hybrid+rerank") not in engine.calls
        assert engine.calls[-2:] == [("second query", "hybrid"), ("second query", "hybrid+rerank")]


@pytest.mark.parametrize("answered_first", [True, False])
async def test_returning_to_the_shown_query_mid_search_leaves_no_column_stale(answered_first):
    """Back to the shown query while the other query runs: the running worker is cancelled, so a
    column it still owed was left "searching…" forever (left answered first), or the old worker
    delivered the abandoned query's hits under the box's query (neither answered)."""
    import time as _time

    class Slow(FakeEngine):
        def search(self, root, text, *, pipeline, **kw):
            if text != "remove":
                _time.sleep(1.0 if pipeline == "hybrid+rerank" else 0.3)
            return super().search(root, text, pipeline=pipeline, **kw)

    app = WbApp(FakeEngine.root, engine=Slow())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        search = app.search
        search.set_query("remove")
        await settle(pilot)
        search.set_query("remove dir")
        if answered_first:
            await wait_until(pilot, lambda: search.left.result.query == "remove dir", what="the left column")
        search.set_query("remove")
        await settle(pilot)
        await pilot.pause(1.5)  # any abandoned worker has finished by now
        for column in search.columns:
            assert column.result.query == "remove" and not column.busy, column.side
        assert "searching" not in str(app.query_one("#right-status").render())
        assert search.right.marks  # both sides show one query: movement is marked


@pytest.mark.parametrize("failing", ["hybrid", "hybrid+rerank"])
async def test_one_columns_failure_leaves_the_other_column_searched_and_current(failing):
    from workbench.errors import ModelError

    class OneSideFails(FakeEngine):
        def search(self, root, text, *, pipeline, **kw):
            if pipeline == failing and text == "second":
                raise ModelError("the reranker cannot be loaded")
            return super().search(root, text, pipeline=pipeline, **kw)

    app = WbApp(FakeEngine.root, engine=OneSideFails())
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        search = app.search
        search.set_query("first")
        await settle(pilot)
        search.set_query("second")
        await settle(pilot)
        bad, good = (search.left, search.right) if failing == "hybrid" else (search.right, search.left)
        assert good.result.query == "second" and not good.table.has_class("stale")
        assert bad.result.query == "first" and bad.table.has_class("stale")
        assert "query failed" in str(app.query_one(f"#{bad.side}-status").render())
        assert "query failed" not in str(app.query_one(f"#{good.side}-status").render())
        assert ("the reranker cannot be loaded", "error") in seen


async def test_a_query_running_when_the_workspace_changes_to_one_without_an_index_is_dropped(tmp_path):
    import time as _time

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()

    class Engine(FakeEngine):
        def info(self, root):
            info = super().info(root)
            if Path(root) == second:
                info.exists = False
            return info

        def search(self, root, text, **kw):
            _time.sleep(0.6)
            return super().search(root, text, **kw)

    app = WbApp(str(first), engine=Engine())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.search.set_query("remove a directory")
        await pilot.pause(0.2)  # the first workspace's query is running
        app.set_workspace(second)
        await settle(pilot)
        await pilot.pause(1.5)
        assert not app.workspace_ready
        assert all(not c.hits for c in app.search.columns)  # not the other workspace's hits


async def test_typing_is_debounced_and_stays_responsive():
    engine = FakeEngine(delay=0.2)
    app = WbApp(FakeEngine.root, engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.query_one("#query").focus()
        t0 = time.monotonic()
        await pilot.press(*"directory")
        assert time.monotonic() - t0 < 5
        await settle(pilot)
        assert app.query_one("#query").value == "directory"
        queried = {text for text, _ in engine.calls}
        assert queried == {"directory"}  # one search after the pause, not one per key


async def test_state_persists_between_launches(tui_state, tmp_path, monkeypatch):
    ws = tmp_path / "ws"  # the remembered workspace is reopened only while its folder exists
    ws.mkdir()
    elsewhere = tmp_path / "elsewhere"  # a current folder without ./.wb
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        app.set_pipelines(left="bm25", right="dense")
        app.set_instruction("qa")
        await settle(pilot)
    saved = TuiState.load(tui_state)
    assert (saved.left_pipeline, saved.right_pipeline, saved.instruction) == ("bm25", "dense", "qa")
    assert saved.workspace == str(ws) and saved.query == "remove a directory"
    app = WbApp(None, engine=FakeEngine())  # no workspace given: the last one
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.workspace_root == ws
        assert app.search.left.pipeline == "bm25" and app.search.right.pipeline == "dense"
        assert app.query_one("#instruction").value == "qa"
        assert app.search.left.result.query == "remove a directory"  # the last query reruns


async def test_search_shows_any_fusion_and_adds_it_to_the_column_menu(tui_state, tmp_path):
    """A fusion the menus do not list (an eval's `-p dense+bm25` row, a remembered one) is run and
    offered in that column's menu; a name wb cannot run is ignored."""
    from workbench.tui.evaluate import search_target

    ws = tmp_path / "ws"
    ws.mkdir()
    engine = FakeEngine()
    app = WbApp(str(ws), engine=engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        right_before = app.search.right.pipeline
        app.set_pipelines(left="dense+bm25", right="nonsense+bm25")
        await settle(pilot)
        left = app.search.left
        assert left.pipeline == "dense+bm25" and app.search.right.pipeline == right_before
        assert ("remove a directory", "dense+bm25") in engine.calls
        assert left.result.pipeline == "dense+bm25"
        assert select_options(left.query_one("#left-pipeline"))[-1] == "dense+bm25"
        assert select_options(app.search.right.query_one("#right-pipeline"))[-1] == "bm25+rerank"
    assert TuiState.load(tui_state).left_pipeline == "dense+bm25"
    report = {"baseline": "dense+bm25", "workspace": str(ws),
              "pipelines": [{"name": "dense+bm25"}, {"name": "dense+bm25+rerank", "baseline": "dense+bm25"}]}
    target = search_target(report, "dense+bm25+rerank")
    assert (target.left, target.right, target.problem) == ("dense+bm25", "dense+bm25+rerank", "")


def fake_app(tmp_path) -> WbApp:
    """The app over the fake engine, in a fresh (empty) workspace folder."""
    (tmp_path / "ws").mkdir()
    return WbApp(str(tmp_path / "ws"), engine=FakeEngine())


async def with_results_table(pilot) -> None:
    """A query answered, and the query box left: letter keys are commands now."""
    await settle(pilot)
    await run_query(pilot, "remove a directory")
    await pilot.press("escape")


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
async def test_plus_and_minus_change_the_results_per_column_and_say_so(tui_state, tmp_path):
    app = fake_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await with_results_table(pilot)
        seen = record_notifications(app)
        k = app.search.effective_k()  # as many as the table shows (its line lent to the dropped list counted in),
        rows = app.search.left.table.size.height - 1 + app.search.right.dropped_rows  # until + or - is pressed
        assert app.state.k is None and k == max(10, min(50, rows))
        await pilot.press("minus")
        await settle(pilot)
        fewer = (k - 1) // 10 * 10 or 5  # the step below: 5, 10, 20, 30, ...
        assert app.state.k == fewer and (f"top {fewer} results per column", "information") in seen
        assert len(app.search.left.hits) == fewer  # what is said is what is shown
        while app.state.k > 5:
            await pilot.press("minus")
            await settle(pilot)
        await pilot.press("plus", "plus")  # 5 -> 10 -> 20: back to where - came from
        await settle(pilot)
        assert app.state.k == 20 and ("top 10 results per column", "information") in seen
        for _ in range(12):
            await pilot.press("plus")
        await settle(pilot)
        assert app.state.k == 100 and seen[-1][0] == "100 results per column is the most"
        for _ in range(12):
            await pilot.press("minus")
        await settle(pilot)
        assert app.state.k == 5 and seen[-1][0] == "5 results per column is the fewest"
    assert TuiState.load(tui_state).k == 5


async def test_q_quits_only_when_pressed_twice(tui_state, tmp_path):
    """A query typed where the results table has focus must not end the session at its first q."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await with_results_table(pilot)
        seen = record_notifications(app)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and seen[-1][0] == "press q again to quit"
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


def shown_toasts(app) -> list[str]:
    """The text of the notifications on screen (as rendered: a markup error would raise here)."""
    from textual.widgets._toast import Toast

    return [str(toast.render()) for toast in app.screen.query(Toast)]


async def test_notifications_show_paths_as_typed(tui_state, tmp_path):
    """A path in a notification is literal text, never markup: ``[/x]`` crashed the app as the
    toast was drawn, and ``[draft]`` vanished from it."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        app.corpus.start_index([str(tmp_path / "nope" / "[/x]y")])
        app.corpus.start_index([str(tmp_path / "[draft] notes")])
        await pilot.pause()
        await pilot.pause()
        assert app.is_running
        shown = " ".join(shown_toasts(app))
        assert f"no such file or folder: {tmp_path / 'nope' / '[/x]y'}" in shown
        assert f"no such file or folder: {tmp_path / '[draft] notes'}" in shown
        await pilot.press("ctrl+c")  # Textual's own hint keeps its markup
        await pilot.pause()
        assert any("Press ctrl+q to quit the app" in t for t in shown_toasts(app))


class NamedDocsEngine(FakeEngine):
    """The fake engine over documents and a folder whose names read as markup, and ids that a
    narrow column cuts alike."""

    IDS = ["a[/b]c.md", "[draft] notes.md", "functools/partial-objects.md", "functools/partial.md",
           "functools/partialmethod.md", "functools/singledispatch.md", "functools/singledispatchmethod.md",
           "itertools/combinations-with-replacement.md", "itertools/combinations.md"]
    FOLDER = "/demo/My Docs [work]"

    def info(self, root):
        info = super().info(root)
        info.sources = [SourceInfo(self.FOLDER, len(self.IDS), 9, info.last_indexed)]
        return info

    def documents(self, root, limit: int = 5000):
        return [DocumentRow(doc_id, doc_id, 1) for doc_id in sorted(self.IDS)]


def column_texts(table, column: int = 0) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def test_corpus_tables_show_ids_and_paths_as_typed(tmp_path):
    """Document ids, folders and skipped files are literal text in the Corpus tables: ``a[/b]c.md``
    crashed the app (a markup closing tag), ``[draft]`` vanished from ``[draft] notes.md``."""
    from workbench.index.indexer import IndexSummary
    from workbench.types import SkippedFile

    app = WbApp(FakeEngine.root, engine=NamedDocsEngine())
    async with app.run_test(size=(160, 40)) as pilot:
        await open_corpus_tab(pilot)
        assert app.is_running
        documents = app.query_one("#documents")
        assert set(column_texts(documents)) == set(NamedDocsEngine.IDS)
        assert column_texts(app.query_one("#sources")) == [NamedDocsEngine.FOLDER]
        summary = IndexSummary(root="/demo", skipped=[SkippedFile("/demo/[/x]y.bin", "binary [/b]")])
        app.corpus._finished([summary], str(app.workspace_root))
        await settle(pilot)
        assert app.is_running
        assert app.query_one("#skipped").get_row_at(0) == [Text("/demo/[/x]y.bin"), Text("binary [/b]")]
        assert "[/x]" in app.query_one("#skipped").render_line(1).text  # as drawn


async def test_a_narrow_documents_list_keeps_different_ids_apart(tmp_path):
    """At 80 columns the ids that a cut at their end would show alike (``functools/partial…``)
    give up their middle instead: every row reads differently."""
    app = WbApp(FakeEngine.root, engine=NamedDocsEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_corpus_tab(pilot)
        shown = column_texts(app.query_one("#documents"))
        width = app.query_one("#documents").columns["doc"].width
        assert width < len("functools/partial-objects.md")  # the ids are cut
        assert len(set(shown)) == len(shown) == len(NamedDocsEngine.IDS)
        assert all(len(s) <= width for s in shown)
        alike = [s for s, doc_id in zip(shown, sorted(NamedDocsEngine.IDS)) if doc_id.startswith("functools/")]
        assert all(s.endswith(".md") for s in alike)  # their end, which tells them apart, is kept


def remember_workspace(state_file: Path, workspace: Path) -> None:
    TuiState(workspace=str(workspace)).save(state_file)


async def test_a_deleted_remembered_workspace_is_never_opened(tui_state, tmp_path, monkeypatch):
    """The user's report: the state file remembered a temporary directory that no longer exists."""
    gone = tmp_path / "tmp68vyelm7" / "ws"
    remember_workspace(tui_state, gone)
    here = tmp_path / "project"
    here.mkdir()
    monkeypatch.chdir(here)
    app = WbApp(None, engine=FakeEngine(indexed=False))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.workspace_root == here / ".wb"  # the default, not the deleted folder
        assert "tmp68vyelm7" not in app.sub_title and "project/.wb" in app.sub_title
    assert not gone.exists()
    assert TuiState.load(tui_state).workspace == str(here / ".wb")  # the stale path is forgotten


def remembered_and_local_wb(tui_state, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A remembered workspace that exists, and a current folder ``project`` holding ``.wb``."""
    remembered = tmp_path / "remembered-ws"
    remembered.mkdir()
    remember_workspace(tui_state, remembered)
    here = tmp_path / "project"
    (here / ".wb").mkdir(parents=True)
    monkeypatch.chdir(here)
    return remembered, here


async def test_local_wb_folder_wins_over_the_remembered_workspace(tui_state, tmp_path, monkeypatch):
    remembered, here = remembered_and_local_wb(tui_state, tmp_path, monkeypatch)
    app = WbApp(None, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.workspace_root == here / ".wb" and "project/.wb" in app.sub_title
    # without ./.wb in the current folder, the remembered one (it still exists) opens
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    remember_workspace(tui_state, remembered)
    app = WbApp(None, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.workspace_root == remembered


async def test_explicit_workspace_wins(tui_state, tmp_path, monkeypatch):
    remembered, here = remembered_and_local_wb(tui_state, tmp_path, monkeypatch)
    monkeypatch.setenv("WB_WORKSPACE", str(tmp_path / "from-env"))
    chosen = tmp_path / "chosen"  # need not exist yet: the user asked for it
    app = WbApp(str(chosen), engine=FakeEngine(indexed=False))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.workspace_root == chosen and "chosen" in app.sub_title


def test_initial_workspace_precedence(tmp_path, monkeypatch):
    """--workspace > $WB_WORKSPACE > ./.wb if it exists > the remembered folder if it exists > ./.wb."""
    from workbench.tui.state import initial_workspace

    here, remembered = tmp_path / "here", tmp_path / "remembered"
    here.mkdir()
    gone = str(tmp_path / "gone")
    assert initial_workspace(None, gone, cwd=here) == here / ".wb"
    assert initial_workspace(None, str(remembered), cwd=here) == here / ".wb"  # not created yet
    remembered.mkdir()
    assert initial_workspace(None, str(remembered), cwd=here) == remembered
    assert initial_workspace("", str(remembered), cwd=here) == remembered  # empty counts as not given
    (here / ".wb").mkdir()
    assert initial_workspace(None, str(remembered), cwd=here) == here / ".wb"
    monkeypatch.setenv("WB_WORKSPACE", "env-ws")  # relative: to the current folder, as the CLI does
    assert initial_workspace(None, str(remembered), cwd=here) == here / "env-ws"
    assert initial_workspace("explicit", str(remembered), cwd=here) == here / "explicit"
    assert initial_workspace(str(tmp_path / "x"), None, cwd=here) == tmp_path / "x"
    monkeypatch.setenv("WB_WORKSPACE", "")
    assert initial_workspace(None, None, cwd=here) == here / ".wb"


def test_state_file_damage_gives_defaults(tui_state):
    tui_state.write_text("{not json")
    assert TuiState.load(tui_state) == TuiState()
    tui_state.write_text(json.dumps({"left_pipeline": 3, "k": -1, "unknown": True, "unit": "x"}))
    s = TuiState.load(tui_state)
    assert (s.left_pipeline, s.k, s.unit) == ("hybrid", None, "doc")


@pytest.mark.parametrize("damage", [{"query": None}, {"workspace": 5}, {"eval_dataset": None},
                                    {"instruction": "custom", "custom_instruction": None}, {"k": True},
                                    {"theme": ["dark"]}])
def test_a_state_file_value_of_the_wrong_type_is_its_default(tui_state, damage):
    """A null or a number where text belongs crashed the app at start (`.strip()` of None)."""
    tui_state.write_text(json.dumps(damage))
    loaded, default = TuiState.load(tui_state), TuiState()
    for key in damage:
        if key != "instruction":  # (a good value, kept)
            assert getattr(loaded, key) == getattr(default, key), key
    assert loaded.instruction_value is None  # what crashed: None.strip()
    tui_state.write_text(json.dumps({"workspace": None, "k": 20, "theme": "textual-light"}))
    assert (TuiState.load(tui_state).k, TuiState.load(tui_state).theme) == (20, "textual-light")


def test_movements_marks_and_dropped():
    from workbench.types import Hit

    def hits(ids):
        return [Hit(r, d, d + "#0", d, d, 1.0 / r) for r, d in enumerate(ids, start=1)]

    marks, dropped = movements(hits(["a", "b", "c", "d"]), hits(["c", "a", "e", "d"]))
    assert marks == ["↑2", "↓1", "new", "="]
    assert [h.doc_id for h in dropped] == ["b"]


async def test_help_lists_every_key():
    from workbench.tui.corpus import CorpusPane
    from workbench.tui.evaluate import EvalPane
    from workbench.tui.help import HelpScreen, key_sections
    from workbench.tui.runs import LaunchScreen, RunsPane
    from workbench.tui.search import SearchPane

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.search.left.table.focus()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        listed = " ".join(keys for _, rows in key_sections(app) for keys, _ in rows)
        for cls in (WbApp, SearchPane, CorpusPane, EvalPane, PreviewScreen, RunsPane, LaunchScreen):
            for b in cls.BINDINGS:
                assert app.get_key_display(b) in listed, (cls.__name__, b.key)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_help_says_what_the_table_keys_do(tmp_path):
    """Each key the help lists for tables does what its line says on a row table (Runs): the help
    said Home/End move the cursor, but Textual's DataTable scrolls sideways with them (ctrl+home and
    ctrl+end go to the first and last row), so Home then c acted on the run selected before."""
    from tui_fake import fake_run

    from workbench.tui.help import WIDGET_KEYS

    rows = dict(dict(WIDGET_KEYS)["Tables and lists"])
    names = {"↑": "up", "↓": "down", "PgUp": "pageup", "PgDn": "pagedown", "Home": "home", "End": "end"}
    ws = tmp_path / "ws"
    for name in ("a", "b", "c", "d", "e"):
        fake_run(ws, name, "finished", steps=3, total=3, t0=1_700_000_000.0)
        time.sleep(0.02)  # listed newest first: e d c b a
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await open_runs(pilot)
        table = app.query_one("#runs-table")

        async def press_from(row: int, key: str) -> int:
            table.move_cursor(row=row, animate=False)
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert app.runs.selected == app.runs.rows[table.cursor_row].name  # what c, e, s act on
            return table.cursor_row

        checked = set()
        for keys, what in rows.items():
            if keys == "enter":
                continue
            for key in (names.get(k, k) for k in keys.replace(" / ", " ").split()):
                moved = await press_from(2, key)
                if "cursor stays" in what:
                    assert moved == 2, (key, what)
                elif "first / last row" in what:
                    assert moved == (0 if "home" in key else 4), (key, what)
                else:  # "move the cursor"
                    assert moved != 2, (key, what)
                checked.add(key)
        assert {"ctrl+home", "ctrl+end", "home", "end"} <= checked


async def run_palette(pilot, text: str) -> None:
    """Open the command palette, type ``text`` and run the first command offered."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause(0.5)
    await pilot.press("enter")
    await settle(pilot)


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
async def test_command_palette_switches_pipeline():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        await run_palette(pilot, "Right pipeline: bm25")
        assert app.search.right.pipeline == "bm25"
        assert app.search.right.result.pipeline == "bm25"
        # a fusion the menus do not list, typed: the palette offers it for each column
        await run_palette(pilot, "left bm25+dense")
        assert app.search.left.pipeline == "dense+bm25"
        assert app.search.left.result.pipeline == "dense+bm25"
        await run_palette(pilot, "right colbert+sparse+rerank")
        assert app.search.right.pipeline == "colbert+sparse+rerank" and app.search.left.pipeline == "dense+bm25"


async def test_the_palette_offers_wb_keys_not_textuals_docked_keys_panel():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Keys" not in titles and "Quit" in titles  # Textual's other commands stay


async def test_keys_typed_right_after_slash_go_into_the_query_box():
    """/ then a word in one burst (fast typing, tmux send-keys): the App reads every key before the
    results table handles the first; the word must be typed into the box, not run as keys there
    ('r' cycled the right pipeline)."""
    from textual import events

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        await pilot.press("escape")
        await settle(pilot)
        right = app.search.right.pipeline
        assert app.focused is app.search.left.table
        app.post_message(events.Key("slash", "/"))
        for ch in "zebra":
            app.post_message(events.Key(ch, ch))
        await settle(pilot)
        assert app.query_one("#query").value == "zebra" and app.search.right.pipeline == right
        await pilot.press("slash")  # inside the box "/" is a character
        assert app.query_one("#query").value == "zebra/"


async def test_slash_over_the_preview_or_help_leaves_the_hidden_query_box_alone():
    """/ on the preview or the help screen does nothing: it focused the query box hidden under it,
    the next keys rewrote the query, and Esc no longer closed the screen."""
    from workbench.tui.help import HelpScreen

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        app.search.left.table.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)
        await pilot.press("slash", "h", "e", "a", "p")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen) and app.query_one("#query").value == "directory"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, PreviewScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("slash", "z")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen) and app.query_one("#query").value == "directory"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("slash")  # on the Search screen itself / still focuses the box
        assert app.focused is app.query_one("#query")


async def test_the_right_columns_dropped_line_leaves_the_number_of_hits_as_it_is():
    """k follows the table's height, but not the right column's "dropped" line: it went from 18 to
    17 hits when a pipeline switch or a swap brought that line in."""
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        await pilot.press("escape")
        left, right = app.search.left, app.search.right
        ks, dropped = set(), set()
        for key in ("l", "r", "x", "x", "l"):  # the dropped line comes and goes
            await pilot.press(key)
            await settle(pilot)
            await pilot.pause()
            ks |= {app.search.effective_k(), left.shown_key[4], right.shown_key[4]}
            dropped.add(right.dropped_rows)
        assert dropped == {0, 1}
        assert len(ks) == 1 and ks.pop() > 10


async def test_an_unusable_instruction_fails_only_the_columns_that_read_it_and_is_said_once(tmp_path):
    """An unknown preset (a single word, here one that reads as a markup tag) fails the dense
    column, said in one notification; the bm25 column, which gets the bare query, is searched. It
    failed both columns, with one identical error each, and its toast crashed the app."""
    engine = FakeEngine()
    app = WbApp(FakeEngine.root, engine=engine)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        app.search.set_pipelines("dense", "bm25")
        await run_query(pilot, "directory")
        engine.searches.clear()
        app.search.set_instruction("[/INST]")
        await settle(pilot)
        left, right = app.search.left, app.search.right
        assert "query failed" in str(app.query_one("#left-status").render())
        assert right.shown_key[2] == "[/INST]" and right.result.pipeline == "bm25" and not right.busy
        assert [(p, i) for _r, _q, p, i, _m in engine.searches] == [("bm25", None)]
        errors = [m for m, sev in seen if sev == "error"]
        assert len(errors) == 1 and errors[0].startswith("unknown instruction preset '[/INST]'")
        app.search.request_search(immediate=True)  # the same instruction again: not said again
        await settle(pilot)
        assert len([m for m, sev in seen if sev == "error"]) == 1
        await pilot.pause()
        assert app.is_running and any("'[/INST]'" in t for t in shown_toasts(app))
        app.search.set_instruction("find the function that does it")  # usable: both columns answer
        await settle(pilot)
        assert left.shown_key[2] == right.shown_key[2] == "find the function that does it"


async def test_keys_switch_screens_and_swap():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        await pilot.press("escape", "x")
        await settle(pilot)
        assert (app.search.left.pipeline, app.search.right.pipeline) == ("hybrid+rerank", "hybrid")
        for key, tab in (("1", "corpus"), ("3", "evaluate"), ("4", "runs"), ("2", "search")):
            app.set_focus(None)
            await pilot.press(key)
            await pilot.pause()
            assert app.query_one("#tabs").active == tab


EVAL_REPORT = {
    "dataset": "scifact-mini", "split": "test", "queries": 3, "depth": 100, "baseline": "hybrid",
    "wall_seconds": 12.5, "test": "paired t-test", "workspaces": ["/demo/eval-ws"],
    "pipelines": [
        {"name": "hybrid", "metrics": {"ndcg@10": 0.61, "mrr@10": 0.58, "recall@100": 0.9, "map@100": 0.55},
         "seconds": 3.2, "delta": None, "p_value": None, "wins": 0, "losses": 0, "ties": 0},
        {"name": "hybrid+rerank", "metrics": {"ndcg@10": 0.66, "mrr@10": 0.6, "recall@100": 0.9, "map@100": 0.59},
         "seconds": 4.1, "delta": {"ndcg@10": 0.05, "mrr@10": 0.02, "recall@100": 0.0, "map@100": 0.04},
         "p_value": {"ndcg@10": 0.004, "mrr@10": 0.2, "recall@100": 1.0, "map@100": 0.03},
         "wins": 2, "losses": 1, "ties": 0},
    ],
    "per_query": [
        {"pipeline": "hybrid+rerank", "query_id": "q1", "query": "remove a directory", "baseline": 0.5,
         "value": 0.9, "delta": 0.4},
        {"pipeline": "hybrid+rerank", "query_id": "q2", "query": "sleep a while", "baseline": 0.8,
         "value": 0.6, "delta": -0.2},
        {"pipeline": "hybrid+rerank", "query_id": "q3", "query": "copy a tree", "baseline": 0.7,
         "value": 0.75, "delta": 0.05},
    ],
}


async def test_eval_table_and_jump_to_search():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("evaluate")
        app.evaluate.show_report(EVAL_REPORT)
        await pilot.pause()
        table = app.query_one("#eval-table")
        assert table.row_count == 2
        cell = str(table.get_cell("hybrid+rerank", "ndcg@10"))
        assert "0.6600" in cell and "+0.0500" in cell and "**" in cell and "p=0.004" in cell
        assert str(table.get_cell("hybrid+rerank", "wlt")).strip() == "2/1/0"
        per_query = app.query_one("#per-query")
        assert per_query.row_count == 3
        assert "remove a directory" in str(per_query.get_row_at(0)[2])  # largest |Δ| first
        per_query.focus()
        per_query.move_cursor(row=1)
        await pilot.press("enter")
        await settle(pilot)
        assert app.query_one("#tabs").active == "search"
        # both columns answer from the index wb eval built; the app stays on (and remembers) its own
        assert [c.root for c in app.search.columns] == ["/demo/eval-ws", "/demo/eval-ws"]
        assert str(app.workspace_root) == FakeEngine.root and app.state.workspace == FakeEngine.root
        assert "b" in app.screen.active_bindings  # back to the workspace's own index
        assert app.query_one("#query").value == "sleep a while"
        assert (app.search.left.pipeline, app.search.right.pipeline) == ("hybrid", "hybrid+rerank")
        assert app.search.right.result.query == "sleep a while"


async def test_run_leaves_the_form_so_the_screen_keys_act_while_it_runs(tmp_path):
    """Run (its button or e) disables itself: focus goes to the per-query table, not to the next
    box, where `s` or `o` would have replaced the pipelines."""
    (tmp_path / "not-beir").mkdir()  # exists, so the run starts (wb eval then refuses it)
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("evaluate")
        await pilot.pause()
        app.query_one("#dataset").value = str(tmp_path / "not-beir")
        app.query_one("#eval-pipelines").value = "bm25,dense"
        app.query_one("#eval-run").focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is app.query_one("#per-query")
        await pilot.press("o")
        await pilot.pause()
        assert app.query_one("#eval-pipelines").value == "bm25,dense"
        app.evaluate.action_stop()
        await pilot.pause()


async def test_a_failed_runs_one_line_error_is_said_once(tmp_path):
    from tui_fake import fake_run

    app = fake_app(tmp_path)
    reason = "/data/beir: qrels/train.tsv not found (splits present: test; choose one with --split)"
    fake_run(tmp_path / "ws", "bad-data", "failed", error=reason)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs(pilot)
        shown = str(app.query_one("#run-error").render())
        assert shown.count("qrels/train.tsv not found") == 1 and "choose one with --split" in shown


async def test_an_80_column_launch_form_shows_every_schedule_box(tmp_path, monkeypatch):
    from workbench.tui import launch

    monkeypatch.setattr(launch, "auto_device", lambda: "cpu")
    app = fake_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_launch_form(pilot)
        area = form.query_one("#launch").content_region
        for box in ("#launch-epochs", "#launch-batch-size", "#launch-lr", "#launch-max-steps"):
            region = form.query_one(box).region
            assert region.width >= 5 and area.x <= region.x and region.right <= area.right, box


async def test_a_height_only_resize_redraws_no_table():
    """A terminal made taller or shorter: the tables whose columns follow the width are not drawn
    again (the results do not flicker, the documents' and per-query cursors stay put)."""
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        app.search.set_k(10)  # else a taller table asks for more hits, and shows them
        await settle(pilot)
        redraws = []
        for column in app.search.columns:
            column.redraw = lambda c=column, draw=column.redraw: (redraws.append(c.side), draw())
        await pilot.resize_terminal(100, 34)
        await settle(pilot)
        assert not redraws
        await pilot.resize_terminal(110, 34)  # a new width: the results fit it
        await settle(pilot)
        assert sorted(redraws) == ["left", "right"]
        for tab, table, row in (("corpus", "#documents", 3), ("evaluate", "#per-query", 2)):
            app.action_show_tab(tab)
            if tab == "evaluate":
                app.evaluate.show_report(EVAL_REPORT)
            await settle(pilot)
            app.query_one(table).focus()
            app.query_one(table).move_cursor(row=row)
            await pilot.resize_terminal(110, 30 if tab == "corpus" else 36)
            await settle(pilot)
            assert app.query_one(table).cursor_row == row, tab


async def test_an_80x24_search_shows_most_of_the_results(tmp_path):
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        app.search.left.table.focus()
        await pilot.pause()
        table = app.search.left.table
        assert table.region.height - 1 >= 8  # the header, then at least 8 of the 10 hits
        await pilot.press("right")  # the arrows move between the columns' hits
        assert app.focused is app.search.right.table
        await pilot.press("left")
        assert app.focused is app.search.left.table


async def test_an_80x24_terminal_shows_both_pipelines_and_per_query_rows():
    """The smallest usual terminal: the form packs tighter (wb.tcss -short) so that the pipelines
    table shows a baseline and one other pipeline and the per-query table still lists rows."""
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.action_show_tab("evaluate")
        await pilot.pause()
        app.evaluate.show_report(EVAL_REPORT)
        await pilot.pause()
        pipelines, per_query = app.query_one("#eval-table"), app.query_one("#per-query")
        # border, header, the baseline's line, the other's two (value; Δ and stars: p-values on taller screens)
        assert pipelines.region.height >= 2 + 1 + 1 + 2
        assert per_query.region.height >= 2 + 1 + 3  # border, header, the report's three queries
        assert per_query.region.bottom <= app.query_one("#eval-pane").region.bottom
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 40)) as pilot:  # a tall terminal: the form keeps its spacing
        await settle(pilot)
        app.action_show_tab("evaluate")
        await pilot.pause()
        assert app.query_one("#eval-pipelines").region.y - app.query_one("#dataset").region.y == 2


async def test_an_80_column_search_header_keeps_the_query_time_whole():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        for column in app.search.columns:
            status = app.query_one(f"#{column.side}-status")
            shown = str(status.render()).strip()
            assert shown.endswith(" ms") and "hits" not in shown
            assert len(shown) <= status.content_size.width  # nothing cut
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 30)) as pilot:  # wide enough for the word
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        assert "10 hits · " in str(app.query_one("#left-status").render())



@pytest.mark.slow
async def test_an_80_column_footer_shows_every_key_of_each_tab():
    """The footer's last key is the help key (the way to every other key): at 80 columns it goes
    compact and drops the palette key so that nothing is cut; inside a text box, where `?` is
    typed, it offers F1; a wide terminal keeps the palette key."""
    from textual.widgets._footer import FooterKey

    def footer_keys(app) -> list:
        return list(app.screen.query(FooterKey))

    def help_shown(app) -> bool:
        return any(key.key in ("question_mark", "f1") for key in footer_keys(app))

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for tab in ("corpus", "search", "evaluate", "runs"):
            app.action_show_tab(tab)
            app.query_one({"corpus": "#documents", "search": "#left-table", "evaluate": "#per-query",
                           "runs": "#runs-table"}[tab]).focus()
            await settle(pilot)
            await wait_until(pilot, lambda: help_shown(app), what=f"the help key on {tab}")
            assert "question_mark" in [key.key for key in footer_keys(app)], tab
            # a footer just recomposed is laid out (and goes compact) on a later refresh, which a
            # loaded machine delays: what must hold is where it settles, every key whole in 80 columns
            await wait_until(pilot, lambda: all(key.region.width and key.region.right <= 80
                                                for key in footer_keys(app)),
                             timeout=10, what=f"every footer key within 80 columns on {tab}")
        app.query_one("#query").focus()
        await wait_until(pilot, lambda: "f1" in [key.key for key in footer_keys(app)], what="F1 in the query box")
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: help_shown(app), what="the footer")
        assert "ctrl+p" in [key.key for key in footer_keys(app)]


@pytest.mark.slow
async def test_evaluate_runs_the_real_wb_eval(tmp_path, monkeypatch, tui_engine):
    """End to end: the Evaluate screen runs `wb eval` (a subprocess) on a tiny BEIR folder."""
    from conftest import SAMPLE

    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "eval-cache"))
    data = tmp_path / "tiny-beir"
    (data / "qrels").mkdir(parents=True)
    docs = ["shutil/rmtree.md", "time/sleep.md", "itertools/groupby.md", "heapq/overview.md"]
    (data / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": "", "text": (SAMPLE / d).read_text()}) + "\n" for d in docs))
    queries = {"q1": ("remove a directory and everything in it", docs[0]),
               "q2": ("pause the program for a few seconds", docs[1])}
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in queries.items()))
    (data / "qrels" / "test.tsv").write_text(  # one judged document the corpus lacks: a note of the report
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in queries.items())
        + "q1\tnot-in-the-corpus\t1\n")
    app = WbApp(str(tmp_path / "ws"), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        app.action_show_tab("evaluate")
        app.query_one("#dataset").value = str(data)
        app.query_one("#eval-pipelines").value = "bm25,hybrid"
        app.evaluate.action_run()
        await settle(pilot, timeout=500)
        assert not [m for m, sev in seen if sev == "error" and "no index" not in m]
        report = app.evaluate.report
        assert report and [p["name"] for p in report["pipelines"]] == ["bm25", "hybrid"]
        assert app.query_one("#eval-table").row_count == 2
        assert "done" in str(app.query_one("#eval-status").render())
        # the report's notes are shown under the table, as `wb eval` prints them
        assert any("not in corpus.jsonl ('not-in-the-corpus')" in n for n in report["notes"])
        notes = app.query_one("#eval-notes")
        assert notes.display and notes.region.height >= 1
        assert all(f"note {n}" in str(notes.render()) for n in report["notes"])
        app.evaluate.show_report(None)  # cleared with the report
        await settle(pilot)
        assert not app.query_one("#eval-notes").display


@pytest.mark.parametrize("size", [(100, 30), (200, 60)])
async def test_layout_fits(size):
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await run_query(pilot, "remove a directory")
        for column in (app.search.left, app.search.right):
            table = column.table
            assert column.region.width >= size[0] // 2 - 4
            assert table.virtual_size.width <= table.size.width  # no sideways scrolling
            assert table.row_count == 10  # all the fake engine has
        assert app.search.right.query_one(".dropped").display  # left hits missing on the right
        assert "dropped" in str(app.search.right.query_one(".dropped").render())


# ---------------------------------------------------------------------------------------
# Engine-side explanations (workbench/search/explain.py)
# ---------------------------------------------------------------------------------------
def test_explain_document_view_and_terms(small_searcher):
    hit = small_searcher.search(QUERY, k=3).results[0]
    cat = small_searcher.catalog
    view = explain.document_view(cat, hit.chunk_id)
    row = explain.catalog_row(cat, hit.chunk_id)
    assert view.text[view.chunk_start:view.chunk_end] == cat.texts[row]
    for other in [i for i, d in enumerate(cat.doc_ids) if d == view.doc_id]:  # every chunk fits its offsets
        assert view.text[int(cat.char_start[other]):int(cat.char_end[other])] == cat.texts[other]
    assert explain.query_words("How do I remove a directory tree?") == ["remove", "directory", "tree"]
    spans = explain.find_terms("Remove the tree: rmtree() removes trees", ["remove", "tree", "rmtree"])
    assert [t for _, _, t in spans] == ["remove", "tree", "rmtree", "remove", "tree"]


def test_explain_colbert_and_sparse_match_the_scores(small_searcher):
    res = small_searcher.search("itertools.groupby", pipeline="hybrid", k=2, unit="chunk")
    hit = res.results[0]  # chunk hits: every mode's score is this chunk's
    cb = explain.colbert_matches(small_searcher, "itertools.groupby", hit.chunk_id)
    assert cb.score == pytest.approx(hit.scores["colbert"], rel=0.02)  # MaxSim = Σ best cosine
    parts = {m.part for m in cb.matches}
    assert "query" in parts and "special" in parts
    text = small_searcher.catalog.texts[explain.catalog_row(small_searcher.catalog, hit.chunk_id)]
    spans = [m for m in cb.matches if m.doc_span]
    assert spans and all(0 <= m.doc_span[0] < m.doc_span[1] <= len(text) for m in spans)
    sp = explain.sparse_explanation(small_searcher, "itertools.groupby", hit.chunk_id)
    assert sp.score == pytest.approx(hit.scores["sparse"], rel=0.05)
    assert any(t.literal for t in sp.terms) and sp.expansions
    with_instr = explain.colbert_matches(small_searcher, "itertools.groupby", hit.chunk_id, "python-docs")
    assert any(m.part == "instruction" for m in with_instr.matches)
    assert with_instr.rendered_query.endswith("itertools.groupby")


# ---------------------------------------------------------------------------------------
# A real terminal: tmux
# ---------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.slow
def test_real_terminal_in_tmux(small_workspace, tmp_path):
    ws, _ = small_workspace
    script = REPO / "bench" / "tui_tmux_check.sh"
    env = dict(os.environ, WB_TUI_STATE=str(tmp_path / "state.json"), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(script), str(ws.root)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "both columns found" in proc.stdout


# ---------------------------------------------------------------------------------------
# The Runs screen: run folders written as the trainer writes them (no training)
# ---------------------------------------------------------------------------------------
async def open_runs(pilot) -> None:
    await settle(pilot)
    pilot.app.action_show_tab("runs")
    await pilot.pause(0.2)
    pilot.app.query_one("#runs-table").focus()
    await pilot.pause()


async def open_launch_form(pilot):
    """The Runs screen, then `n`: the launch form (asserted to be one)."""
    from workbench.tui.launch import LaunchScreen

    await open_runs(pilot)
    await pilot.press("n")
    await settle(pilot)
    form = pilot.app.screen
    assert isinstance(form, LaunchScreen)
    return form


async def test_runs_are_listed_followed_live_and_stopped(tmp_path):
    from tui_fake import fake_run, training_process

    ws = tmp_path / "ws"
    fake_run(ws, "ft-1", "finished", steps=30, total=30, eval_every=10)
    time.sleep(0.02)
    with training_process() as sleeper:  # stands in for the training process (pid in status.json)
        running = fake_run(ws, "ft-2", "running", steps=20, total=100, pid=sleeper.pid)
        app = WbApp(str(ws), engine=FakeEngine())
        async with app.run_test(size=(120, 36)) as pilot:
            seen = record_notifications(app)
            await open_runs(pilot)
            pane = app.runs
            table = app.query_one("#runs-table")
            assert [str(k.value) for k in table.rows] == ["ft-2", "ft-1"]  # newest first
            assert str(table.get_cell("ft-2", "state")) == "running"
            assert str(table.get_cell("ft-1", "state")) == "finished"
            assert str(table.get_cell("ft-2", "step")).strip() == "20/100"
            assert str(table.get_cell("ft-2", "loss")).strip() == f"{running.status()['loss']:.4f}"
            assert str(table.get_cell("ft-1", "best")).strip() == "0.5300"
            assert pane.selected == "ft-2"
            assert len(app.query_one("#loss-spark").data) == 20
            assert "step 20/100" in str(app.query_one("#run-log").render())

            # a step appended on disk shows after the refresh interval (read incrementally)
            offset = pane._tails["ft-2"].offset
            running.append_event({"event": "step", "step": 21, "loss": 0.123, "lr": 1e-5, "examples_per_s": 50.0,
                                  "gpu_mem_gb": 0.0, "time": 1_700_000_100.0})
            running.write_status(step=21, loss=0.123)
            with open(running.log_path, "a") as f:
                f.write("step 21/100 loss 0.1230\n")
            await wait_until(pilot, lambda: str(table.get_cell("ft-2", "step")).strip() == "21/100"
                             and "step 21/100 loss 0.1230" in str(app.query_one("#run-log").render()),
                             what="the appended step in the table and the log")
            assert str(table.get_cell("ft-2", "loss")).strip() == "0.1230"
            spark = app.query_one("#loss-spark").data
            assert len(spark) == 21 and spark[-1] == 0.123
            assert pane._tails["ft-2"].offset > offset
            assert "0.1230" in str(app.query_one("#loss-label").render())
            assert "step 21/100 loss 0.1230" in str(app.query_one("#run-log").render())

            # the finished run: its evaluations
            await pilot.press("down")
            await pilot.pause()
            assert pane.selected == "ft-1"
            evals = str(app.query_one("#run-evals").render())
            assert "0.5300" in evals and "best" in evals
            assert "base model   ndcg@10 0.4800" in evals  # what the steps are compared with, kept in view

            # s: the stop file and SIGTERM, as `wb runs stop` does; a worker waits for the end
            await pilot.press("up", "s")
            await settle(pilot)
            assert running.stop_path.exists()
            assert sleeper.wait(timeout=10) == -15  # SIGTERM
            await wait_until(pilot, lambda: any("ft-2 died" in m for m, _ in seen),  # it never wrote a final status
                             what="the 'died' notification")
            await wait_until(pilot, lambda: str(table.get_cell("ft-2", "state")) == "died", what="state 'died' in the table")


async def test_a_run_that_ends_on_its_own_is_said_from_any_tab(tmp_path):
    """A run followed as running that finishes, or whose process dies, is notified on the Search tab
    too (the end of a background fine-tune was silent unless the Runs tab was looked at)."""
    from tui_fake import fake_run, training_process

    ws = tmp_path / "ws"
    with training_process() as a, training_process() as b:
        done = fake_run(ws, "ft-a", "running", steps=5, total=10, pid=a.pid)
        fake_run(ws, "ft-b", "running", steps=3, total=10, pid=b.pid)
        app = WbApp(str(ws), engine=FakeEngine())
        async with app.run_test(size=(120, 36)) as pilot:
            seen = record_notifications(app)
            await open_runs(pilot)
            app.action_show_tab("search")
            await pilot.pause(0.2)
            done.write_status(state="finished", step=10)
            b.kill()
            b.wait()
            await wait_until(pilot, lambda: any("run ft-a finished" in m for m, _ in seen)
                             and any("run ft-b died at step 3" in m for m, _ in seen), what="both ends notified")
            assert app.state.tab == "search"
            await pilot.pause(1.5)
            assert sum("run ft-a finished" in m for m, _ in seen) == 1  # said once


async def test_runs_f_asks_the_selected_run_to_finish_now(tmp_path):
    """`f` is `wb runs stop --finish`: the stop file reads `finish` and the run's process gets SIGTERM."""
    from tui_fake import fake_run, training_process

    from trainers.runs import FINISH

    ws = tmp_path / "ws"
    with training_process() as sleeper:  # stands in for the training process (pid in status.json)
        running = fake_run(ws, "ft-3", "running", steps=5, total=50, pid=sleeper.pid)
        app = WbApp(str(ws), engine=FakeEngine())
        async with app.run_test(size=(120, 36)) as pilot:
            seen = record_notifications(app)
            await open_runs(pilot)
            assert app.runs.selected == "ft-3"
            await pilot.press("f")
            await settle(pilot)
            assert running.stop_path.read_text().strip() == FINISH
            assert sleeper.wait(timeout=10) == -15
            assert any("finishing ft-3" in m for m, _ in seen)


class FakeSpawner:
    """Stands in for `wb train ... --detach`: records the argv, creates the run folder as the CLI would."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.calls: list[list[str]] = []

    async def __call__(self, argv):
        from tui_fake import fake_run

        self.calls.append(list(argv))
        if argv[3:5] == ["train", "embedder"]:
            name = argv[argv.index("--out") + 1]
            fake_run(self.ws, name, "running", steps=0, pid=os.getpid())
            return 0, name + "\n", f"run {name} started in the background\n"
        return 0, "", ""


@pytest.mark.slow
async def test_launch_form_errors_and_spawns_wb_train(tmp_path):
    from workbench.tui.runs import LaunchScreen

    ws = tmp_path / "ws"
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n")
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        await open_runs(pilot)
        assert "No training runs" in str(app.query_one("#run-summary").render())
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, LaunchScreen)
        assert form.query_one("#launch-name").value == "ft-1"  # a suggested name

        # a data path that does not exist: the real `wb train embedder` refuses it in one line
        form.query_one("#launch-data").value = str(tmp_path / "missing.jsonl")
        await pilot.click("#launch-go")
        await settle(pilot, timeout=180)
        assert app.screen is form
        assert form.error.startswith("--data: no such file or folder:") and "\n" not in form.error
        assert not (ws / "runs" / "ft-1" / "config.json").exists()

        # a bad number is caught in the form, before anything runs
        spawner = FakeSpawner(ws)
        form.spawner = spawner
        form.query_one("#launch-data").value = str(data)
        form.query_one("#launch-epochs").value = "two"
        await pilot.click("#launch-go")
        await settle(pilot)
        assert form.error == "epochs: 'two' is not a number" and not spawner.calls

        # valid values: `wb train embedder ... --detach -w WORKSPACE`, and the new run is listed
        form.query_one("#launch-epochs").value = "2"
        form.query_one("#launch-lr").value = "1e-5"
        form.query_one("#launch-negatives").value = "3"
        form.query_one("#launch-loss").value = "jointlh"
        form.query_one("#launch-lora").value = True
        form.query_one("#launch-name").value = "mine"
        await pilot.pause()  # let the form lay out the new values before clicking where the button is
        await pilot.click("#launch-go")
        await settle(pilot)
        assert spawner.calls == [[sys.executable, "-m", "workbench.cli.main", "train", "embedder",
                                  "--data", str(data), "--base", "dense", "--lora", "--loss", "jointlh",
                                  "--negatives", "3", "--epochs", "2", "--batch-size", "32", "--lr", "1e-5",
                                  "--eval-every", "0", "--no-keep-best", "--out", "mine", "--detach", "-w", str(ws)]]
        assert not isinstance(app.screen, LaunchScreen)
        assert app.runs.selected == "mine"
        assert str(app.query_one("#runs-table").get_cell("mine", "state")) == "running"


def test_launch_form_several_data_paths_make_a_multi_task_run(tmp_path):
    """Comma-separated paths in the data box: one --data each (a multi-task run), listed joined by '+'."""
    from workbench.tui.launch import check_values, shown_fields, train_command, trainer_spec
    from workbench.tui.runs import config_line, data_label

    spec = trainer_spec("embedder")
    raw = {f.key: "" for row in shown_fields(spec) for f in row}
    values = check_values(spec, {**raw, "data": "claims.jsonl, qa.jsonl,", "base": "dense"})
    argv = train_command(spec, values, "mt", str(tmp_path))
    assert argv[argv.index("--data"):argv.index("--data") + 4] == ["--data", "claims.jsonl", "--data", "qa.jsonl"]
    assert argv.count("--data") == 2
    data = ["/d/claims.jsonl", {"path": "/d/qa.jsonl", "instruction": "Find: "}]
    assert data_label(data) == "claims.jsonl + qa.jsonl"
    assert "data claims.jsonl + qa.jsonl" in config_line("embedder", {"base": "/m/minilm", "data": data}, None)


def test_an_eval_compare_row_opens_its_own_pipeline_on_the_base_models_on_the_left():
    from workbench.tui.evaluate import search_target

    report = {"baseline": "bm25", "workspace": "/ws", "pipelines": [
        {"name": "bm25", "baseline": None}, {"name": "hybrid", "baseline": "bm25"},
        {"name": "bm25@ft", "baseline": "bm25"}, {"name": "hybrid@ft", "baseline": "hybrid"}]}
    target = search_target(report, "hybrid@ft", {"reranker": "/runs/ft/model"})
    assert (target.left, target.right, target.problem) == ("hybrid", "hybrid", "")
    assert target.right_models == (None, "reranker · ft", {"reranker": "/runs/ft/model"}, ("reranker",))
    assert (search_target(report, "hybrid").left, search_target(report, "hybrid").right) == ("bm25", "hybrid")
    old = {"baseline": "bm25", "workspace": "/ws", "pipelines": [{"name": "bm25"}, {"name": "dense@ft"}]}
    assert search_target(old, "dense@ft").left == "bm25"  # a report from before per-row baselines


def tiny_bert(folder: Path, *, head: bool = False) -> Path:
    """A random 2-layer, 32-wide BERT with the real MiniLM tokenizer (``head``: a one-logit
    BertForSequenceClassification, i.e. a cross-encoder reranker)."""
    from conftest import require_models

    require_models()
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from workbench.models.cache import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    (BertForSequenceClassification if head else BertModel)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def select_options(select) -> list[str]:
    """The values a Select offers (the form's Selects have no blank entry)."""
    return [str(value) for _label, value in select._options]


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
async def test_a_closed_launch_form_reopens_as_it_was_left(tmp_path):
    """Escape (which leaves a text box elsewhere) closes the form: `n` brings back its trainer, its
    fields and its run name; after a run starts, the next form starts afresh."""
    from workbench.tui.launch import LaunchScreen

    ws = tmp_path / "ws"
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n")
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_launch_form(pilot)
        form.query_one("#launch-trainer").value = "reranker"
        await settle(pilot)
        form.query_one("#launch-data").value = str(data)
        form.query_one("#launch-loss").value = "pairwise"
        form.query_one("#launch-lr").value = "3e-5"
        form.query_one("#launch-name").value = "rr-try"
        form.query_one("#launch-lr").focus()
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, LaunchScreen)

        form = await open_launch_form(pilot)
        assert form.spec.kind == "reranker" and form.query_one("#launch-trainer").value == "reranker"
        assert form.query_one("#launch-data").value == str(data)
        assert (form.query_one("#launch-loss").value, form.query_one("#launch-lr").value) == ("pairwise", "3e-5")
        assert form.query_one("#launch-group-size").value == "8"  # untouched fields keep their defaults
        assert form.query_one("#launch-name").value == "rr-try"

        form.query_one("#launch-trainer").value = "embedder"  # an embedder run is what the spawner fakes
        await settle(pilot)
        form.spawner = FakeSpawner(ws)
        await pilot.click("#launch-go")
        await settle(pilot)
        assert app.runs.selected == "rr-try"
        form = await open_launch_form(pilot)
        assert form.spec.kind == "embedder" and form.query_one("#launch-data").value == ""
        assert form.query_one("#launch-name").value != "rr-try"


@pytest.mark.slow
async def test_a_launch_form_left_through_the_palette_also_reopens_as_it_was(tmp_path):
    """ctrl+p → "Go to Corpus" popped the form without saving its draft: `n` opened an empty one."""
    app = WbApp(str(tmp_path / "ws"), engine=FakeEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_launch_form(pilot)
        form.query_one("#launch-data").value = "/data/my-train.jsonl"
        form.query_one("#launch-lr").value = "5e-5"
        app.action_show_tab("corpus")  # what the palette's "Go to Corpus" runs
        await settle(pilot)
        assert app.state.tab == "corpus" and len(app.screen_stack) == 1
        form = await open_launch_form(pilot)
        assert (form.query_one("#launch-data").value, form.query_one("#launch-lr").value) == \
            ("/data/my-train.jsonl", "5e-5")


async def test_a_joint_runs_evaluations_show_its_metric_and_its_best(tmp_path):
    """A joint run logs each mode's figure beside its ndcg@10: the panel crowded the headline out
    (step 10 missing) and marked no best (the highest value was a dense one, not shown)."""
    from tui_fake import fake_run

    ws = tmp_path / "ws"
    run = fake_run(ws, "joint-1", "finished", steps=20, trainer="joint",
                   config={"eval_data": "/data/beir", "eval_every": 10})
    for step, fused, dense in ((0, 0.40, 0.45), (10, 0.50, 0.62), (20, 0.55, 0.58)):
        run.append_event({"event": "eval", "step": step, "ndcg@10": fused, "ndcg@10_dense": dense,
                          "ndcg@10_sparse": fused - 0.1, "ndcg@10_fused": fused, "time": 1.0,
                          **({"base": True} if step == 0 else {})})
    run.write_status(best_metric=0.55, metric="ndcg@10")
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(140, 40)) as pilot:
        await open_runs(pilot)
        await wait_until(pilot, lambda: "step     20" in str(app.query_one("#run-evals").render()), what="the evals")
        lines = [ln.split() for ln in str(app.query_one("#run-evals").render()).splitlines()]
        assert ["base", "model", "ndcg@10", "0.4000"] in lines
        assert ["step", "10", "ndcg@10", "0.5000"] in lines
        assert ["step", "20", "ndcg@10", "0.5500", "best"] in lines
        assert not any(any(w.startswith("ndcg@10_") for w in ln) for ln in lines)


async def test_launch_form_offers_each_cli_trainer_with_its_fields(tmp_path, monkeypatch):
    """The trainer comes first; only trainers `wb train` has are offered; the fields (and their
    defaults, the trainer config's) follow the trainer; values the user changed carry over."""
    import typer

    from trainers.config import RerankerConfig
    from workbench.cli.main import app as cli_app
    from workbench.tui import launch
    from workbench.tui.launch import TRAINERS, Field, TrainerSpec

    cli = set(typer.main.get_command(cli_app).commands["train"].commands)
    # an entry for a trainer the CLI does not have (yet) is not offered
    monkeypatch.setitem(TRAINERS, "future", TrainerSpec("future", "no-such-trainer", ("dense",), "not in the CLI",
                                                         "NoConfig", ((Field("data", "--data", "data"),),), "dense"))
    ws = tmp_path / "ws"
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 44)) as pilot:
        form = await open_launch_form(pilot)
        offered = select_options(form.query_one("#launch-trainer"))
        assert offered[0] == "embedder" and {"embedder", "reranker", "colbert", "splade"} <= set(offered)
        assert "future" not in offered
        assert {TRAINERS[k].command for k in offered} <= cli
        assert [k for k in TRAINERS if TRAINERS[k].command in cli and k != "future"] == offered
        device = str(form.query_one("#launch-device").render())
        assert device.split()[0] in ("cpu", "cuda", "mps") and "automatically" in device

        # embedder: its losses, negatives and LoRA; no reranker fields
        assert select_options(form.query_one("#launch-loss"))[:2] == ["infonce", "jointlh"]
        assert form.query_one("#launch-negatives").value == "1"
        assert form.query_one("#launch-lora").value is False
        assert not form.query("#launch-group-size")
        form.query_one("#launch-data").value = str(tmp_path / "train.jsonl")
        form.query_one("#launch-epochs").value = "3"  # changed: kept across trainers

        async def pick(kind: str) -> None:
            form.query_one("#launch-trainer").value = kind
            await settle(pilot)
            assert form.spec.kind == kind

        await pick("reranker")
        assert select_options(form.query_one("#launch-loss")) == ["listwise", "pairwise", "pointwise"]
        assert form.query_one("#launch-loss").value == "listwise"
        assert form.query_one("#launch-group-size").value == str(RerankerConfig.group_size) == "8"
        assert form.query_one("#launch-batch-size").value == "8"  # the reranker's default, not the embedder's 32
        assert form.query_one("#launch-epochs").value == "3"
        assert form.query_one("#launch-data").value == str(tmp_path / "train.jsonl")
        assert not form.query("#launch-lora") and not form.query("#launch-negatives")
        assert "reranker" in str(form.query_one("#launch-about").render())
        # a bad group size is caught in the form, in one line
        form.query_one("#launch-group-size").value = "1"
        await pilot.click("#launch-go")
        await settle(pilot)
        assert form.error == "group size: 1 is too small"

        await pick("colbert")
        assert form.query_one("#launch-dim").value == "128" and form.query_one("#launch-negatives").value == "1"
        assert not form.query("#launch-group-size") and not form.query("#launch-loss")
        assert form.error == ""

        await pick("splade")
        assert form.query_one("#launch-base").value == "sparse"
        assert (form.query_one("#launch-lambda-q").value, form.query_one("#launch-lambda-d").value) == ("3e-4", "1e-4")
        assert form.query_one("#launch-lr").value == "5e-5"
        form.query_one("#launch-lambda-d").value = "0"  # FLOPS weights may be 0 (off)
        spec = form.spec
        argv = form.command()
        assert argv[3:5] == ["train", "splade"] and argv[argv.index("--lambda-d") + 1] == "0"
        assert argv[argv.index("--epochs") + 1] == "3"
        assert launch.trainer_spec("splade").roles == ("sparse",) and spec.eval_pipelines == "sparse,hybrid"

        # two quick picks: the form ends on the last one's fields
        form.query_one("#launch-trainer").value = "reranker"
        form.query_one("#launch-trainer").value = "colbert"
        await settle(pilot)
        assert form.spec.kind == "colbert" and form.query("#launch-dim") and not form.query("#launch-lambda-q")
        assert not form.query("#launch-group-size")


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
async def test_launch_reranker_form_starts_wb_train_reranker(tmp_path):
    """Submitting the reranker form runs the real `wb train reranker ... --detach`: the run's
    config.json says trainer "reranker" with the typed values; the run is listed, and `e` on it
    when it has finished fills Evaluate with hybrid,hybrid+rerank and --compare reranker=runs/NAME."""
    from trainers.runs import TERMINAL, RunFolder
    from workbench.tui.launch import LaunchScreen

    base = tiny_bert(tmp_path / "tiny")
    data = tmp_path / "groups.jsonl"
    with open(data, "w") as fh:
        for i, topic in enumerate(["cats", "rivers", "engines", "bread"]):
            fh.write(json.dumps({"query": f"{topic} question {i}", "pos": [f"the answer: {topic} {i}"],
                                 "neg": [f"unrelated notes {j}" for j in range(3)]}) + "\n")
    ws = tmp_path / "ws"
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 44)) as pilot:
        form = await open_launch_form(pilot)
        form.query_one("#launch-trainer").value = "reranker"
        await settle(pilot)
        form.query_one("#launch-data").value = str(data)
        form.query_one("#launch-base").value = str(base)
        form.query_one("#launch-loss").value = "pairwise"
        form.query_one("#launch-group-size").value = "3"
        form.query_one("#launch-max-length").value = "64"
        form.query_one("#launch-batch-size").value = "2"
        form.query_one("#launch-lr").value = "1e-4"
        form.query_one("#launch-name").value = "rr"
        await pilot.click("#launch-go")
        await settle(pilot, timeout=180)
        assert not isinstance(app.screen, LaunchScreen), form.error
        run = RunFolder(ws / "runs" / "rr")
        config = run.read_config()
        assert config["trainer"] == "reranker"
        assert (config["loss"], config["group_size"], config["max_length"], config["batch_size"], config["lr"]) == \
            ("pairwise", 3, 64, 2, 1e-4)
        assert config["data"] == str(data) and config["base"] == str(base) and config["epochs"] == 1.0
        assert app.runs.selected == "rr"
        deadline = time.monotonic() + 240  # 2 steps of a tiny model; mostly the imports
        while run.status().get("state") not in TERMINAL and time.monotonic() < deadline:
            await pilot.pause(0.5)
        assert run.status().get("state") == "finished", run.status()
        table = app.query_one("#runs-table")
        await wait_until(pilot, lambda: str(table.get_cell("rr", "state")) == "finished", what="the run shown finished")
        await pilot.press("e")
        await pilot.pause()
        assert app.query_one("#tabs").active == "evaluate"
        assert app.query_one("#eval-pipelines").value == "hybrid,hybrid+rerank"
        assert app.query_one("#eval-compare").value == "reranker=runs/rr"
        assert app.evaluate._compare_models() == [f"reranker={ws / 'runs' / 'rr' / 'model'}"]


class VariantFakeEngine(FakeEngine):
    """The fake engine plus the variant calls `c` makes (records the overrides; builds nothing)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.variant_root = root
        self.variant_calls: list[tuple[str, dict]] = []

    def variant(self, root, overrides):
        from workbench.tui.engine import VariantInfo

        self.variant_calls.append(("variant", dict(overrides)))
        return VariantInfo(str(self.variant_root), "x", True, False, False)

    def build_variant(self, root, overrides, progress):
        self.variant_calls.append(("build", dict(overrides)))
        return str(self.variant_root)


# colbert, splade, joint: the same flow as the embedder's, another role (slow: CI runs them)
@pytest.mark.parametrize("trainer, role, left, right, pipelines", [
    ("embedder", "dense", "hybrid", "hybrid", "dense,hybrid"),
    pytest.param("colbert", "colbert", "hybrid", "hybrid", "colbert,hybrid", marks=pytest.mark.slow),
    pytest.param("splade", "sparse", "hybrid", "hybrid", "sparse,hybrid", marks=pytest.mark.slow),
    ("reranker", "reranker", "hybrid", "hybrid+rerank", "hybrid,hybrid+rerank"),
    pytest.param("joint", "dense+colbert+sparse", "hybrid", "hybrid", "dense,colbert,sparse,hybrid", marks=pytest.mark.slow),
    ("soup", "reranker", "hybrid", "hybrid+rerank", "hybrid,hybrid+rerank"),  # `wb runs soup` of rerankers
])
async def test_compare_and_evaluate_use_the_role_the_trainer_fills(tmp_path, trainer, role, left, right, pipelines):
    """c: Search with the base models left and the run's model in its role right (a variant index
    for dense/colbert/sparse; for a reranker the same index, hybrid vs hybrid+rerank with
    reranker=runs/NAME); e: Evaluate with that role's --compare and the trainer's pipelines. A soup
    fills the role of its ingredients' trainer."""
    from tui_fake import fake_run

    ws = tmp_path / "ws"
    soup = {"ingredients": ["/ws/runs/a/model", "/ws/runs/b/model"], "weights": [0.5, 0.5],
            "ingredient_trainer": "reranker"} if trainer == "soup" else None
    fake_run(ws, "ft", "finished", steps=10, total=10, trainer=trainer, config=soup)
    (ws / "runs" / "ft" / "model").mkdir()
    engine = VariantFakeEngine(tmp_path / "variant")
    app = WbApp(str(ws), engine=engine)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        app.search.set_query(QUERY, run=False)
        await open_runs(pilot)
        assert trainer in str(app.query_one("#run-summary").render())
        await pilot.press("c")
        await settle(pilot)
        assert not [m for m, sev in seen if sev in ("error", "warning")], seen
        assert app.query_one("#tabs").active == "search"
        search = app.search
        assert (search.left.pipeline, search.right.pipeline) == (left, right)
        assert search.left.root is None and not search.left.models
        assert f"{role} · ft:ft" in str(app.search.right.border_title or "")
        if role == "reranker":  # no index to build: the workspace's own, reranked by the run's model
            assert engine.variant_calls == []
            assert search.right.root is None and search.right.models == {"reranker": "runs/ft"}
            assert ("hybrid+rerank", {"reranker": "runs/ft"}) in engine.overrides
            assert "base models" in str(app.search.left.border_title or "")
        else:
            overrides = {r: "runs/ft" for r in role.split("+")}  # a joint model fills three roles
            assert engine.variant_calls == [("variant", overrides), ("build", overrides)]
            assert search.right.root == str(tmp_path / "variant") and not search.right.models
            assert engine.overrides == []
        assert search.left.hits and search.right.hits

        app.evaluate.show_report(EVAL_REPORT)  # an earlier evaluation's report, of another form
        app.action_show_tab("runs")
        await pilot.pause(0.2)
        app.query_one("#runs-table").focus()
        await pilot.press("e")
        await pilot.pause()
        assert app.query_one("#tabs").active == "evaluate"
        assert app.evaluate.report is None and app.query_one("#per-query").row_count == 0
        assert app.query_one("#eval-pipelines").value == pipelines
        assert app.query_one("#eval-compare").value == ", ".join(f"{r}=runs/ft" for r in role.split("+"))


def frame(column) -> str:
    """The column frame's models label, as shown."""
    title = column._border_title  # (border_title is console markup)
    return title.plain.strip() if title is not None else ""


@pytest.mark.parametrize("trainer", ["reranker", "embedder"])
async def test_swap_after_a_compare_moves_whole_columns(tmp_path, trainer):
    """x after Runs c swaps whole columns: each pipeline goes with its models (the variant index or
    the reranker override) and its label. It swapped only the pipelines, so the "reranker · ft:NAME"
    column ran plain hybrid (no reranker), and for an embedder (hybrid on both sides) x did nothing."""
    from tui_fake import fake_run

    ws = tmp_path / "ws"
    fake_run(ws, "ft", "finished", steps=10, total=10, trainer=trainer)
    (ws / "runs" / "ft" / "model").mkdir()
    engine = VariantFakeEngine(tmp_path / "variant")
    app = WbApp(str(ws), engine=engine)
    async with app.run_test(size=(120, 36)) as pilot:
        app.search.set_query(QUERY, run=False)
        await open_runs(pilot)
        await pilot.press("c")
        await settle(pilot)
        search = app.search
        left, right = search.left, search.right
        before = [(c.pipeline, c.root, c.models, frame(c)) for c in (left, right)]
        role = "reranker" if trainer == "reranker" else "dense"
        assert f"{role} · ft:ft" in before[1][3]
        left.table.focus()
        await pilot.press("x")
        await settle(pilot)
        after = [(c.pipeline, c.root, c.models, frame(c)) for c in (left, right)]
        assert after == before[::-1]
        assert (app.state.left_pipeline, app.state.right_pipeline) == (before[1][0], before[0][0])
        if trainer == "reranker":
            assert (left.pipeline, left.models) == ("hybrid+rerank", {"reranker": "runs/ft"})
            assert (right.pipeline, right.models) == ("hybrid", {})
            assert frame(right) == "base models"
        else:  # the fine-tune's variant index moved left (and is still refreshed on a re-index)
            assert left.root == str(tmp_path / "variant") and right.root is None
            assert left.variant is not None and right.variant is None
            assert frame(left) == "dense · ft:ft" and frame(right) == "dense · base"
        # each column was searched on its new models: the shown results say so
        assert left.shown_key[0] == (left.root or str(ws)) and left.shown_key[3] == left.pipeline
        assert dict(left.shown_key[6]) == left.models and dict(right.shown_key[6]) == right.models
        for column in (left, right):
            assert (column.root or str(ws), QUERY, column.pipeline, None, column.models) in engine.searches
        await pilot.press("x")  # and back
        await settle(pilot)
        assert [(c.pipeline, c.root, c.models, frame(c)) for c in (left, right)] == before


@contextlib.asynccontextmanager
async def comparing_a_fine_tune(tmp_path, name: str, trainer: str):
    """The app (a fake variant engine) showing the Search comparison Runs `c` opens for a finished
    ``trainer`` run ``name``: yields ``(app, pilot, workspace)``."""
    from tui_fake import fake_run

    ws = tmp_path / "ws"
    fake_run(ws, name, "finished", steps=10, total=10, trainer=trainer)
    (ws / "runs" / name / "model").mkdir()
    app = WbApp(str(ws), engine=VariantFakeEngine(tmp_path / "variant"))
    async with app.run_test(size=(120, 36)) as pilot:
        app.search.set_query(QUERY, run=False)
        await open_runs(pilot)
        await pilot.press("c")
        await settle(pilot)
        yield app, pilot, ws


async def test_a_pipeline_that_runs_no_fine_tune_does_not_claim_it(tmp_path):
    """r (or l, or the picker) putting the fine-tune's column on a pipeline that runs none of its
    models: the frame says it is unused (it claimed "reranker · ft:NAME" over plain hybrid) and a
    warning says so as `wb query --compare` refuses it; the base column's frame drops its role."""
    async with comparing_a_fine_tune(tmp_path, "ft", "reranker") as (app, pilot, _ws):
        seen = record_notifications(app)
        left, right = app.search.left, app.search.right
        assert frame(right) == "reranker · ft:ft" and frame(left) == "base models"
        left.table.focus()
        await pilot.press("r")  # hybrid+rerank -> dense: no reranker
        await settle(pilot)
        assert right.pipeline == "dense"
        assert "unused" in frame(right) and "dense runs no reranker" in frame(right), frame(right)
        warnings = [m for m, sev in seen if sev == "warning"]
        assert len(warnings) == 1 and "changes nothing for dense, which runs no reranker model" in warnings[0]
        assert "dense+rerank" in warnings[0]  # the pipeline that would run it
        right.set_pipeline("dense+rerank")
        await settle(pilot)
        assert frame(right) == "reranker · ft:ft"
        await pilot.press("l")  # the base column onto hybrid+rerank: now it runs the base reranker
        await settle(pilot)
        assert left.pipeline == "hybrid+rerank" and frame(left) == "reranker · base"
        assert len([m for m, sev in seen if sev == "warning"]) == 1  # the base column is never warned about


class SlowVariantEngine(VariantFakeEngine):
    """A variant index that is missing, and whose build waits until the test lets it end."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        import threading

        self.release = threading.Event()

    def variant(self, root, overrides):
        from workbench.tui.engine import VariantInfo

        self.variant_calls.append(("variant", dict(overrides)))
        built = self.release.is_set()
        return VariantInfo(str(self.variant_root), "x", True, built, False)

    def build_variant(self, root, overrides, progress):
        self.variant_calls.append(("build", dict(overrides)))
        self.release.wait(60)
        return str(self.variant_root)


@pytest.mark.parametrize("meanwhile", ["form", "tab"])
async def test_a_variant_built_in_the_background_never_takes_the_screen(tmp_path, meanwhile):
    """The end of c's background variant build switched to Search, popping the launch form the
    user had opened meanwhile (their typing went on into the query box), or leaving the tab they
    had gone to. It now says the index is ready (c shows it) and leaves the screen alone; c then
    shows the comparison at once."""
    from tui_fake import fake_run

    from workbench.tui.launch import LaunchScreen

    ws = tmp_path / "ws"
    fake_run(ws, "ft", "finished", steps=10, total=10)
    (ws / "runs" / "ft" / "model").mkdir()
    engine = SlowVariantEngine(tmp_path / "variant")
    app = WbApp(str(ws), engine=engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_runs(pilot)
        seen = record_notifications(app)
        await pilot.press("c")
        await wait_until(pilot, lambda: any(w.name == "variant index" and not w.is_finished for w in app.workers),
                         what="the variant build")
        if meanwhile == "form":
            await pilot.press("n")
            await wait_until(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the form")
            await pilot.press(*"/data/a")
        else:
            app.set_focus(None)
            await pilot.press("1")
            await pilot.pause()
            assert app.state.tab == "corpus"
        engine.release.set()
        await settle(pilot)  # the build's worker has ended
        await pilot.press(*"xyz")
        await pilot.pause()
        assert app.search.left.model_label == "" and app.search.right.model_label == ""
        assert app.query_one("#query").value == ""
        if meanwhile == "form":
            assert isinstance(app.screen, LaunchScreen) and app.state.tab == "runs"
            assert app.screen.query_one("#launch-data").value == "/data/axyz"
            await pilot.press("escape")
            await pilot.pause()
        else:
            assert len(app.screen_stack) == 1 and app.state.tab == "corpus"
            app.set_focus(None)
            await pilot.press("4")
            await pilot.pause()
        message = next(m for m, _ in seen if "index of ft is ready" in m)
        assert "c on ft in Runs" in message
        app.query_one("#runs-table").focus()
        await pilot.press("c")  # built now: straight to the comparison
        await settle(pilot)
        assert app.state.tab == "search" and frame(app.search.right) == "dense · ft:ft"
        assert [call for call, _ in engine.variant_calls].count("build") == 1


async def test_compare_a_trained_reranker_in_search(small_workspace, tmp_path, tui_engine):
    """c on a finished reranker run (a random one-logit cross-encoder): no variant index is built;
    the right column is hybrid+rerank reranked by that model, exactly as the Searcher serves
    --model reranker=runs/NAME; the left column stays the workspace's own hybrid."""
    from tui_fake import fake_run
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws, _ = small_workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws.root, copy, ignore=shutil.ignore_patterns("runs", "variants"))
    fake_run(copy, "rr", "finished", steps=10, total=10, trainer="reranker")
    tiny_bert(copy / "runs" / "rr" / "model", head=True)
    app = WbApp(str(copy), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        app.search.set_query(QUERY, run=False)
        await open_runs(pilot)
        await pilot.press("c")
        await settle(pilot, timeout=300)
        assert not [m for m, sev in seen if sev == "error"], seen
        assert not (copy / "variants").exists()
        left, right = app.search.left, app.search.right
        assert (left.pipeline, right.pipeline) == ("hybrid", "hybrid+rerank")
        assert right.result.models["reranker"] == "runs/rr (trained cross-encoder)" and left.result.models["reranker"].startswith("maxsim")
        cws = Workspace(copy)
        expected = Searcher(cws, config=cws.config().with_models({"reranker": str(copy / "runs" / "rr" / "model")}))
        want = expected.search(QUERY, pipeline="hybrid+rerank", k=len(right.hits))
        assert [h.doc_id for h in right.hits] == [h.doc_id for h in want.results]
        plain = tui_engine.search(copy, QUERY, pipeline="hybrid", k=len(left.hits))
        assert [h.doc_id for h in left.hits] == [h.doc_id for h in plain.results]
        assert right.marks  # base hybrid vs reranked: movement shown across the columns


async def test_resume_and_evaluate_keys(tmp_path):
    from tui_fake import fake_run
    from workbench.tui.evaluate import eval_command

    ws = tmp_path / "ws"
    fake_run(ws, "done", "finished", steps=10, total=10, eval_every=5)
    (ws / "runs" / "done" / "model").mkdir()
    time.sleep(0.02)
    fake_run(ws, "half", "stopped", steps=5, total=10)
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_runs(pilot)
        spawner = FakeSpawner(ws)
        app.runs.spawner = spawner
        assert app.runs.selected == "half"
        await pilot.press("c")  # not finished: no model to compare
        await pilot.pause()
        assert any("has no model until it finishes" in m for m, _ in seen)
        await pilot.press("R")
        await settle(pilot)
        assert spawner.calls == [[sys.executable, "-m", "workbench.cli.main", "train", "resume", "half",
                                  "--detach", "-w", str(ws)]]
        # e on the finished run: the Evaluate form compares base and fine-tune
        await pilot.press("down", "e")
        await pilot.pause()
        assert app.query_one("#tabs").active == "evaluate"
        assert app.query_one("#dataset").value == "/data/beir"  # the run's eval data
        assert app.query_one("#eval-compare").value == "dense=runs/done"
        compare = app.evaluate._compare_models()
        assert compare == [f"dense={ws / 'runs' / 'done' / 'model'}"]
        cmd = eval_command("/data/beir", "dense,hybrid", None, compare)
        assert cmd[cmd.index("--compare") + 1] == compare[0] and "-w" not in cmd


async def run_evaluate_form(pilot, app, dataset, pipelines: str, compare: str) -> None:
    """Fill the Evaluate form as a user types it and press Run."""
    await settle(pilot)
    app.action_show_tab("evaluate")
    app.query_one("#dataset").value = str(dataset)
    app.query_one("#eval-pipelines").value = pipelines
    app.query_one("#eval-compare").value = compare
    app.evaluate.action_run()
    await settle(pilot)


async def test_evaluate_runs_with_the_workspace_s_models_as_its_base(tmp_path, monkeypatch):
    """The Evaluate screen evaluates the models this workspace serves: each role its wb.toml sets
    to another model than the default goes to wb eval as --model (a run made its model folder);
    default roles are left to wb eval, and the compare box stays --compare."""
    from tui_fake import fake_run
    from workbench.tui import evaluate

    ws = tmp_path / "ws"
    fake_run(ws, "done", "finished", steps=10, total=10)
    (ws / "runs" / "done" / "model").mkdir()
    (ws / "wb.toml").write_text('[models]\ndense = "runs/done"\nsparse = "splade-tiny"\n')
    commands, real = [], evaluate.eval_command

    def capture(dataset, pipelines, workspace, compare=None, models=None):  # the command, not run
        commands.append(real(dataset, pipelines, workspace, compare, models=models))
        return [sys.executable, "-c", "raise SystemExit(1)"]

    monkeypatch.setattr(evaluate, "eval_command", capture)
    (tmp_path / "beir").mkdir()
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await run_evaluate_form(pilot, app, tmp_path / "beir", "dense,hybrid", "reranker=maxsim")
    [cmd] = commands
    models = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--model"]
    assert models == [f"dense={(ws / 'runs' / 'done' / 'model').resolve()}"]  # sparse is the default
    assert cmd[cmd.index("--compare") + 1] == "reranker=maxsim"


async def test_d_twice_deletes_the_selected_run_through_wb_runs_remove(tmp_path):
    """d once only asks (nothing deleted); d again on the same run runs `wb runs remove` (the real
    command): the run folder goes and the list follows; a running run is refused before asking."""
    import os

    from tui_fake import fake_run

    ws = tmp_path / "ws"
    fake_run(ws, "live", "running", steps=3, total=10, pid=os.getpid())
    time.sleep(0.02)
    fake_run(ws, "old", "stopped", steps=5, total=10)
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await open_runs(pilot)
        assert app.runs.selected == "old"
        await pilot.press("d")
        await pilot.pause()
        assert any("d again deletes run old" in m for m, _ in seen)
        assert (ws / "runs" / "old").exists()
        await pilot.press("d")
        await wait_until(pilot, lambda: not (ws / "runs" / "old").exists(), what="the run deleted", timeout=60)
        await wait_until(pilot, lambda: [r.name for r in app.runs.rows] == ["live"], what="the list without it")
        await wait_until(pilot, lambda: any("run old deleted" in m for m, _ in seen), what="the command's end")
        app.runs.selected = "live"
        await pilot.press("d", "d")
        await pilot.pause()
        assert any("run live is running: s stops it first" in m for m, _ in seen)
        assert (ws / "runs" / "live").exists()


@pytest.mark.slow
async def test_compare_builds_the_variant_and_searches_both_columns(small_workspace, tmp_path, tui_engine):
    """c on a finished run whose model is a copy of the base: its index is built beside the
    workspace's, and Search shows the base on the left and the fine-tune on the right (same ranking)."""
    from tui_fake import fake_run
    from workbench.models.cache import resolve_model_path

    ws, _ = small_workspace
    copy = tmp_path / "ws"
    shutil.copytree(ws.root, copy, ignore=shutil.ignore_patterns("runs", "variants"))
    fake_run(copy, "ft", "finished", steps=10, total=10)
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), copy / "runs" / "ft" / "model")
    app = WbApp(str(copy), engine=tui_engine, warm=False)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        app.search.set_query(QUERY, run=False)
        await open_runs(pilot)
        shown: list[str] = []
        from workbench.tui.runs import RunsPane

        pane = app.query_one(RunsPane)
        original = pane._show_progress
        pane._show_progress = lambda line, total, done: (shown.append(line), original(line, total, done))
        await pilot.press("c")
        await settle(pilot, timeout=600)
        # the build ran in a worker and reported progress (with every mode reused from the parent,
        # since the copy is byte-identical, it may finish before the first frame is drawn)
        assert any("indexing the workspace with ft" in line for line in shown), shown
        assert not [m for m, sev in seen if sev == "error"], seen
        variants = list((copy / "variants").iterdir())
        assert len(variants) == 1 and variants[0].name.startswith("dense-ft-")
        assert app.query_one("#tabs").active == "search"
        left, right = app.search.left, app.search.right
        assert left.root is None and right.root == str(variants[0])
        assert right.shown_key[0] == str(variants[0]) and left.shown_key[0] == str(copy)
        assert left.pipeline == right.pipeline
        assert "ft:ft" in str(app.search.right.border_title or "")
        assert left.hits and [h.doc_id for h in right.hits] == [h.doc_id for h in left.hits]
        assert right.marks == ["="] * len(right.hits)  # movement is shown across the two indexes

        # the workspace gets a new folder (as the Corpus screen indexes it): the fine-tune's index is
        # brought up to date before the right column is searched again, never left stale
        from workbench import variants
        from workbench.index.indexer import Indexer
        from workbench.workspace import Workspace

        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "wombat.md").write_text("# Wombatizer\n\nThe wombatizer digs burrows under the garden.\n")
        Indexer(Workspace(copy)).run(extra)
        serve = variants.serving(Workspace(copy), {"dense": "runs/ft"})
        assert variants.is_stale(Workspace(copy), serve)
        app.index_changed()
        await settle(pilot, timeout=600)
        assert not variants.is_stale(Workspace(copy), serve)
        app.search.set_query("wombatizer burrows")
        await settle(pilot)
        assert left.hits[0].doc_id == right.hits[0].doc_id == "wombat.md"
        assert right.root == str(serve.workspace.root)
        # b: both columns back on the workspace's own models
        left.table.focus()
        await pilot.press("b")
        await settle(pilot)
        assert right.root is None and right.shown_key[0] == str(copy)
        assert str(app.search.right.border_title or "").strip() == ""  # no model label left


# ---------------------------------------------------------------------------------------
# Review fixes: focus and screen keys, eval rows in Search, small labels and forms
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
async def test_screen_keys_never_type_into_a_text_box(tmp_path, tui_state):
    """1-4 never land in a text box with its text selected (the next key would replace it); Enter in
    the one-shot boxes (workspace, add folder) and Escape in any box leave it; a mistyped
    pipelines value is not remembered."""
    from textual.widgets import Input

    dataset = tmp_path / "beir"
    dataset.mkdir()
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.query_one("#dataset").value = str(dataset)
        app.query_one("#folder").value = str(tmp_path / "docs")
        await run_query(pilot, "directory 2")
        await pilot.press("escape")
        for key, tab in (("1", "corpus"), ("3", "evaluate"), ("2", "search"), ("3", "evaluate"),
                         ("1", "corpus"), ("4", "runs"), ("2", "search")):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.query_one("#tabs").active == tab, key
            assert not isinstance(app.focused, Input), (key, app.focused)
        assert app.query_one("#dataset").value == str(dataset)
        assert app.query_one("#folder").value == str(tmp_path / "docs")
        assert app.query_one("#query").value == "directory 2"  # digits in the query box are typing

        # Enter in the workspace box opens it and leaves the box: the next key is a screen key
        await pilot.press("1", "w")
        await pilot.pause()
        assert app.focused is app.query_one("#workspace-path")
        other = tmp_path / "ws2"
        app.query_one("#workspace-path").value = str(other)
        await pilot.press("enter")
        await settle(pilot)
        assert str(app.workspace_root) == str(other)
        assert not isinstance(app.focused, Input)
        await pilot.press("3")
        await pilot.pause(0.1)
        assert app.query_one("#tabs").active == "evaluate"
        assert app.query_one("#workspace-path").value == str(other)

        # Enter in the add-folder box (here a missing folder: an error) leaves the box too
        await pilot.press("1", "a")
        await pilot.pause()
        assert app.focused is app.query_one("#folder")
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.focused, Input)
        await pilot.press("2")
        await pilot.pause(0.1)
        assert app.query_one("#tabs").active == "search"

        # Escape leaves every box of the screens
        for tab, box in (("corpus", "#folder"), ("corpus", "#workspace-path"), ("evaluate", "#dataset"),
                         ("evaluate", "#eval-pipelines"), ("evaluate", "#eval-compare"), ("search", "#query"),
                         ("search", "#instruction-text")):
            app.action_show_tab(tab)
            await pilot.pause(0.1)
            app.query_one(box).focus()
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.focused, Input), box

        # a half-typed pipelines value is not what the app remembers
        app.query_one("#eval-pipelines").value = "d"
        await pilot.pause()
        assert app.state.eval_pipelines == "hybrid,hybrid+rerank"
        app.query_one("#eval-pipelines").value = "bm25,dense"
        await pilot.pause()
        assert app.state.eval_pipelines == "bm25,dense"
    assert json.loads(tui_state.read_text())["eval_pipelines"] == "bm25,dense"


COMPARE_REPORT = {
    "dataset": "scifact-mini", "split": "test", "queries": 2, "depth": 100, "baseline": "hybrid",
    "wall_seconds": 9.0, "test": "paired t-test", "workspace": ["/demo/eval-base", "/demo/eval-ft"],
    "pipelines": [
        {"name": "hybrid", "metrics": {"ndcg@10": 0.6}, "seconds": 1.0, "delta": None, "p_value": None},
        {"name": "hybrid@ft-1", "metrics": {"ndcg@10": 0.7}, "seconds": 1.0, "delta": {"ndcg@10": 0.1},
         "p_value": {"ndcg@10": 0.04}, "wins": 1, "losses": 0, "ties": 1},
    ],
    "per_query": [
        {"pipeline": "hybrid@ft-1", "query_id": "q5", "query": "remove a directory", "baseline": 0.5,
         "value": 0.9, "delta": 0.4},
    ],
}


async def _open_row(pilot, report, compare=None, row=0):
    app = pilot.app
    app.action_show_tab("evaluate")
    app.evaluate.show_report(report, compare)
    await pilot.pause()
    table = app.query_one("#per-query")
    table.focus()
    table.move_cursor(row=row)
    await pilot.press("enter")
    await settle(pilot)


@pytest.mark.slow
async def test_a_compare_eval_row_opens_both_model_sets_in_search():
    """Enter on a `PIPELINE@MODEL` row of a --compare eval: Search on the baseline's index (the app
    stays on its own workspace), the baseline left with the base models, that pipeline right with the compared models (their own
    index, the report's second workspace), and no instruction (wb eval uses none)."""
    engine = FakeEngine()
    app = WbApp(FakeEngine.root, engine=engine)
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await settle(pilot)
        app.search.set_instruction("python-docs")
        await settle(pilot)
        assert app.state.instruction_value == "python-docs"
        await _open_row(pilot, COMPARE_REPORT, {"dense": "/ws/runs/ft-1/model"})
        assert not [m for m, sev in seen if sev in ("error", "warning")], seen
        search = app.search
        assert app.query_one("#tabs").active == "search"
        assert str(app.workspace_root) == FakeEngine.root
        assert (search.left.pipeline, search.right.pipeline) == ("hybrid", "hybrid")
        assert search.left.root == "/demo/eval-base" and not search.left.models
        assert search.right.root == "/demo/eval-ft" and not search.right.models
        assert "ft-1" in str(app.search.right.border_title or "")
        # the instruction is the eval's (none), in the state and the picker
        assert app.state.instruction_value is None and app.query_one("#instruction").value == "none"
        assert search.left.shown_key[:3] == ("/demo/eval-base", "remove a directory", "")
        assert search.right.shown_key[:3] == ("/demo/eval-ft", "remove a directory", "")
        last = {root: (pipeline, instruction) for root, _q, pipeline, instruction, _m in engine.searches}
        assert last["/demo/eval-ft"] == ("hybrid", None) and last["/demo/eval-base"] == ("hybrid", None)
        assert app.focused is search.left.table
        assert "b" in app.screen.active_bindings  # back to the base models is offered in the footer

        # a plain row of another eval: both columns on that evaluation's index, its own models
        await _open_row(pilot, EVAL_REPORT)
        assert str(app.workspace_root) == FakeEngine.root
        assert all(c.root == "/demo/eval-ws" and not c.models for c in search.columns)
        # b: both columns back on the workspace's own index and models
        await pilot.press("b")
        await settle(pilot)
        assert all(c.root is None and not c.models and not c.model_label for c in search.columns)
        assert search.left.shown_key[0] == FakeEngine.root


async def test_a_reranker_compare_eval_row_reranks_with_the_compared_model(tmp_path, monkeypatch):
    """A reranker --compare keeps one index: the right column gets the reranker the evaluation ran
    with (the compare box when Run was pressed) as a role override; a report whose compared models
    are unknown says so instead of showing the wrong models."""
    from workbench.tui import evaluate

    engine = FakeEngine()
    app = WbApp(FakeEngine.root, engine=engine)
    report = {**COMPARE_REPORT, "workspace": "/demo/eval-base", "baseline": "hybrid",
              "per_query": [{"pipeline": "hybrid+rerank@ft-2", "query_id": "q1", "query": "copy a tree",
                             "baseline": 0.2, "value": 0.8, "delta": 0.6}]}
    commands = []

    def fake_eval_command(dataset, pipelines, workspace, compare=None, models=None):  # prints the report, as wb eval --json
        commands.append(compare)
        return [sys.executable, "-c", f"print({json.dumps(json.dumps(report))})"]

    monkeypatch.setattr(evaluate, "eval_command", fake_eval_command)
    (tmp_path / "beir").mkdir()
    async with app.run_test(size=(120, 36)) as pilot:
        seen = record_notifications(app)
        await run_evaluate_form(pilot, app, tmp_path / "beir", "hybrid,hybrid+rerank", "reranker=/ws/runs/ft-2/model")
        app.query_one("#eval-compare").value = ""  # edited after the run: the report keeps its models
        assert commands == [["reranker=/ws/runs/ft-2/model"]] and app.evaluate.report == report
        table = app.query_one("#per-query")
        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        search = app.search
        assert app.query_one("#tabs").active == "search"
        assert (search.left.pipeline, search.right.pipeline) == ("hybrid", "hybrid+rerank")
        assert search.right.root == "/demo/eval-base" and search.right.models == {"reranker": "/ws/runs/ft-2/model"}
        assert ("hybrid+rerank", {"reranker": "/ws/runs/ft-2/model"}) in engine.overrides
        # the columns claim the compared role, as after Runs c: on a pipeline without a reranker the
        # compared model's column says it is unused, the base column drops the role from its name
        assert frame(search.right) == "reranker · ft-2" and frame(search.left) == "evaluation's index"
        search.left.set_pipeline("hybrid+rerank")
        await settle(pilot)
        assert frame(search.left) == "reranker · base"
        search.right.set_pipeline("dense")
        await settle(pilot)
        assert "unused" in frame(search.right) and "dense runs no reranker" in frame(search.right), frame(search.right)
        assert any("changes nothing for dense" in m and sev == "warning" for m, sev in seen), seen

        # the same report without the --compare models (not run from this screen): a clear warning
        app.search.set_models(run=False)
        await _open_row(pilot, report, None)
        assert app.query_one("#tabs").active == "evaluate"
        assert any("ft-2" in m and sev == "warning" for m, sev in seen), seen


async def test_small_labels_hit_count_chunk_header_and_cleared_instruction():
    from textual.widgets._data_table import ColumnKey

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await run_query(pilot, "directory")
        left = app.search.left
        one = left.result
        one.results[:] = one.results[:1]
        left.show(one, left.shown_key)
        assert str(app.query_one("#left-status").render()).startswith("1 hit ·")
        assert str(left.table.columns[ColumnKey("doc")].label).strip() == "document"
        await pilot.press("escape", "u")
        await settle(pilot)
        assert left.result.unit == "chunk"
        assert str(left.table.columns[ColumnKey("doc")].label).strip() == "chunk"

        # clearing the free-text instruction: the picker says none again
        box = app.query_one("#instruction-text")
        box.value = "find the function"
        await pilot.pause()
        assert app.query_one("#instruction").value == "custom"
        box.value = ""
        await settle(pilot)
        assert app.state.instruction_value is None
        assert app.query_one("#instruction").value == "none"
        assert app.state.instruction == "none"


async def test_launch_form_max_steps_and_an_error_that_goes_once_fixed(tmp_path):
    """max steps is offered for every trainer whose `wb train` subcommand has --max-steps; a field's
    error goes away once the field is filled."""
    from workbench.tui.launch import available_trainers, cli_train_options

    ws = tmp_path / "ws"
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 44)) as pilot:
        form = await open_launch_form(pilot)
        await pilot.click("#launch-go")
        await settle(pilot)
        assert form.error == "data: give a value"
        form.query_one("#launch-data").value = str(tmp_path / "train.jsonl")
        await pilot.pause()
        assert form.error == ""
        assert str(form.query_one("#launch-error").render()) == ""
        form.query_one("#launch-epochs").value = "x"
        await pilot.click("#launch-go")
        await settle(pilot)
        assert form.error == "epochs: 'x' is not a number"
        form.query_one("#launch-epochs").value = "-1"
        await pilot.pause()
        assert form.error == "epochs: -1 is too small"  # the next problem replaces it
        form.query_one("#launch-epochs").value = "1"
        for value in ("nan", "inf"):  # they passed every comparison, and the CLI refused them after a spawn
            form.query_one("#launch-lr").value = value
            await pilot.pause()
            assert form.error == f"learning rate: '{value}' is not a finite number" or \
                form.error.endswith(f"'{value}' is not a finite number"), form.error
        form.query_one("#launch-lr").value = "3e-5"
        form.query_one("#launch-name").value = "--help"  # `wb runs stop --help` could never name it
        await pilot.pause()
        assert form.error.startswith("run name: '--help' is not a plain folder name"), form.error
        form.query_one("#launch-name").value = "ft-ok"
        form.query_one("#launch-epochs").value = "1"
        await pilot.pause()
        assert form.error == ""

        with_option = [s.kind for s in available_trainers() if "--max-steps" in cli_train_options()[s.command]]
        assert "embedder" in with_option
        for kind in with_option:
            form.query_one("#launch-trainer").value = kind
            await settle(pilot)
            assert form.spec.kind == kind and form.query("#launch-max-steps"), kind
        form.query_one("#launch-max-steps").value = "50"
        argv = form.command()
        assert argv[argv.index("--max-steps") + 1] == "50"
        form.query_one("#launch-max-steps").value = ""
        assert "--max-steps" not in form.command()  # empty: from the epochs (the trainer's default)


async def test_launch_form_and_wb_train_refuse_absurd_step_counts(tmp_path, capsys, monkeypatch):
    """max steps 99999999999999999999999 (a typo) was accepted by the form and by `wb train`: the run
    warmed its lr up over those steps (lr 6e-27) and learnt nothing. Both refuse it now, in one line,
    at the same bound (trainers.config's)."""
    from tiny_models import run_wb

    MOST_STEPS = 10**9  # trainers.config.MOST_STEPS
    huge = "99999999999999999999999"
    ws = tmp_path / "ws"
    (tmp_path / "train.jsonl").write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    app = WbApp(str(ws), engine=FakeEngine())
    spawned = []

    async def spawner(argv):
        spawned.append(argv)
        return 1, "", "wb: error: not run by this test"

    async with app.run_test(size=(120, 44)) as pilot:
        app.runs.spawner = spawner
        form = await open_launch_form(pilot)
        form.query_one("#launch-trainer").value = "reranker"
        await settle(pilot)
        form.query_one("#launch-data").value = str(tmp_path / "train.jsonl")
        form.query_one("#launch-max-steps").value = huge
        await pilot.click("#launch-go")
        await settle(pilot)
        assert spawned == []  # refused by the form, not by the command's error line
        assert form.error == f"max steps: {huge} is too large (at most {MOST_STEPS})", form.error
        form.query_one("#launch-max-steps").value = str(MOST_STEPS)
        await pilot.pause()
        assert form.error == ""
        form.query_one("#launch-epochs").value = "1e30"
        await pilot.click("#launch-go")
        await settle(pilot)
        assert spawned == []
        assert form.error.startswith("epochs: 1e30 is too large"), form.error
    code, _out, err = run_wb(capsys, monkeypatch, "train", "reranker", "--data", str(tmp_path / "train.jsonl"),
                             "--base", "dense", "--out", "x", "--max-steps", huge, "-w", str(ws))
    assert code == 2 and f"max_steps (--max-steps) must be at most {MOST_STEPS}" in err, err
    assert len(err.strip().splitlines()) == 1 and not (ws / "runs" / "x").exists()


def test_the_step_column_never_shows_a_cut_number():
    """The Runs table's step column (9 wide) cut 12/99999999999999999999999 to a plausible 12/999999:
    numbers that do not fit are written with their magnitude (12/1e23), never cut."""
    from workbench.tui.runs import COLUMNS, step_cell

    width = next(w for _, key, w in COLUMNS if key == "step")
    cases = {(12, 99999999999999999999999): "12/1e23", (12, 100): "12/100", (0, None): "0/?",
             (123456, 1234567): "123k/1.2M", (999, 1_000_000_000): "999/1G", (15000, 20000): "15000/20k"}
    for (step, total), shown in cases.items():
        assert step_cell(step, total, width) == shown and len(shown) <= width


async def test_runs_table_step_cell_keeps_the_magnitude(tmp_path):
    from tui_fake import fake_run

    ws = tmp_path / "ws"
    fake_run(ws, "typo", "running", steps=12, total=99999999999999999999999)
    app = WbApp(str(ws), engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await open_runs(pilot)
        assert app.query_one("#runs-table").get_cell("typo", "step").plain == "12/1e23"


async def test_switching_workspace_clears_the_corpus_screens_last_indexing(tmp_path):
    """A failed indexing run stops its bar; another workspace shows nothing of the previous
    workspace's last indexing run (summary line, skipped files)."""
    from types import SimpleNamespace

    from textual.widgets import ProgressBar

    (tmp_path / "docs").mkdir()
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.action_show_tab("corpus")
        corpus = app.corpus
        corpus.start_index([str(tmp_path / "docs")])  # the fake engine's index fails
        await settle(pilot)
        assert "indexing failed" in str(app.query_one("#index-phase").render())
        bar = app.query_one("#index-bar", ProgressBar)
        assert bar.total is not None or not bar.display  # no indeterminate animation left running
        assert not bar.display

        skipped = SimpleNamespace(path="/demo/corpus/big.bin", reason="binary")
        summary = SimpleNamespace(line=lambda: "indexed 3 docs", skipped=[skipped], rebuilt="", docs_indexed=3,
                                  chunks_written=5, docs_unchanged=0)
        corpus._finished([summary], str(app.workspace_root))
        await settle(pilot)
        assert app.query_one("#index-progress").display and app.query_one("#skipped").display
        app.set_workspace(str(tmp_path / "other"))
        await settle(pilot)
        assert not app.query_one("#index-progress").display
        assert not app.query_one("#skipped").display and app.query_one("#skipped").row_count == 0
        assert "indexed 3 docs" not in str(app.query_one("#index-rate").render())
        # a workspace path that is a file: said, and the open workspace stays (it crashed the app)
        (tmp_path / "notes.txt").write_text("x")
        seen = []
        app.notify = lambda message, **kw: seen.append(message)
        before = app.workspace_root
        app.set_workspace(str(tmp_path / "notes.txt"))
        await settle(pilot)
        assert app.workspace_root == before and any("is a file: give a folder" in m for m in seen)
        # typed in the box: refused, and the box shows the workspace that stays open again
        box = app.query_one("#workspace-path")
        box.focus()
        box.value = str(tmp_path / "notes.txt")
        await pilot.press("enter")
        await settle(pilot)
        assert app.workspace_root == before and box.value == str(before)


def test_the_run_log_keeps_the_newest_lines_that_fit_when_long_ones_wrap():
    from workbench.tui.runs import _newest_that_fit

    lines = ["step 1", "step 2", "finished: model in " + "/very/long/path" * 8, "done"]
    assert _newest_that_fit(lines, 10, 200) == lines  # everything fits on one row each
    kept = _newest_that_fit(lines, 6, 40)  # the path needs 5 rows of 40 (words wrap): with "done" the box is full
    assert kept == lines[2:]
    assert _newest_that_fit(lines, 1, 40) == ["done"] and _newest_that_fit(["x" * 500], 2, 40) == ["x" * 500]


def test_a_hits_mode_line_lists_the_modes_its_pipeline_ran():
    from workbench.tui.common import mode_line
    from workbench.types import Hit

    hit = Hit(rank=1, doc_id="d", chunk_id="d#0", path="/d", title="d", score=2.5, scores={"bm25": 2.5},
              ranks={"bm25": 1}, snippet="")
    assert mode_line(hit, compact=True, pipeline="bm25") == "B#1 2.50"
    assert mode_line(hit, compact=True, pipeline="dense+bm25") == "D–  B#1 2.50"
    assert mode_line(hit, compact=True, pipeline="hybrid") == mode_line(hit, compact=True) == "D–  C–  S–  B#1 2.50"


# --- an 80x24 terminal while comparing --------------------------------------------------

async def test_compared_columns_keep_their_rows_side_by_side_and_the_models_label_whole():
    """The right column's dropped list does not shorten its table (the left detail grows by as
    much); the models a column answers with are named in its frame, whole at 80 columns, and the
    footer still ends with the help key."""
    from textual.widgets._footer import FooterKey

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        label = "reranker · ft:ce-scifact"
        app.search.set_models(right=(None, label, {"reranker": "runs/ce"}), run=False)
        await run_query(pilot, QUERY)
        app.search.left.table.focus()
        await settle(pilot)
        left, right = app.search.left, app.search.right
        assert right.dropped and app.query_one("#right-dropped").display
        assert left.table.region.height == right.table.region.height
        assert left.table.region.y == right.table.region.y
        assert label in str(right.border_title)
        keys = list(app.screen.query(FooterKey))
        assert "question_mark" in [k.key for k in keys] and all(k.region.right <= 80 for k in keys)


async def test_a_text_box_footer_offers_its_own_keys_not_the_letters_it_types():
    from textual.widgets._footer import FooterKey

    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for tab, box in (("search", "#query"), ("evaluate", "#eval-compare"), ("corpus", "#folder")):
            app.action_show_tab(tab)
            app.query_one(box).focus()
            await wait_until(pilot, lambda: "escape" in [k.key for k in app.screen.query(FooterKey)],
                             what=f"esc in {box}")
            keys = [k.key for k in app.screen.query(FooterKey)]
            assert "f1" in keys and not [k for k in keys if len(k) == 1 or k == "slash"], (tab, keys)
        app.query_one("#per-query").focus()  # out of the box: the letters are keys again
        await wait_until(pilot, lambda: "e" in [k.key for k in app.screen.query(FooterKey)], what="e")
        assert "escape" not in [k.key for k in app.screen.query(FooterKey)]


async def show_evaluate_report(pilot, app, report: dict) -> None:
    """Open Evaluate and show ``report`` as a finished `wb eval` would."""
    await settle(pilot)
    app.action_show_tab("evaluate")
    app.evaluate.show_report(report)
    await settle(pilot)


async def test_the_evaluate_table_fits_80x24_and_leaves_the_per_query_rows():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await show_evaluate_report(pilot, app, EVAL_REPORT)
        table = app.query_one("#eval-table")
        assert table.virtual_size.width <= table.scrollable_content_region.width  # W/L/T and time shown
        assert table.virtual_size.height <= table.scrollable_content_region.height  # every pipeline
        per_query = app.query_one("#per-query")
        assert per_query.scrollable_content_region.height - 1 >= len(EVAL_REPORT["per_query"])
        note = str(app.query_one("#eval-note").render())
        assert note.startswith("baseline hybrid · paired t-test: * p<.05 ** p<.01")
        # the Tab order: the compare box, then the buttons (letters typed on are not keys yet)
        app.query_one("#eval-pipelines").focus()
        await pilot.press("tab")
        assert app.focused.id == "eval-compare"
        await pilot.press("tab")
        assert app.focused.id == "eval-run"


async def test_the_evaluate_notes_show_under_the_table_and_keep_three_per_query_rows_at_80x24():
    """The report's notes (what `wb eval` prints under its table) are shown under the note line; on
    an 80x24 screen they take at most two lines and the per-query table keeps three rows."""
    report = dict(EVAL_REPORT, notes=["test.tsv judges 1 document(s) not in corpus.jsonl ('dX'); 1 of them "
                                      "relevant, counted as relevant documents never retrieved",
                                      "2 judged queries have no relevant document and are not evaluated"])
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await show_evaluate_report(pilot, app, report)
        notes = app.query_one("#eval-notes")
        assert notes.display and 1 <= notes.region.height <= 2
        assert str(notes.render()).startswith("note test.tsv judges 1 document(s) not in corpus.jsonl")
        assert app.query_one("#per-query").scrollable_content_region.height - 1 >= 3


async def test_the_evaluate_table_keeps_a_wide_w_l_t_whole_and_refits_on_resize():
    """Hundreds of queries make W/L/T wider than its old fixed 8 columns; p under .001 reads p<.001;
    shrinking the terminal after the report came fits the table again (W/L/T and time stay shown)."""
    import copy

    report = copy.deepcopy(EVAL_REPORT)
    report["pipelines"][1].update(name="hybrid+rerank@minilm-ft", wins=123, losses=145, ties=32)
    report["pipelines"][1]["p_value"]["ndcg@10"] = 0.0002
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("evaluate")
        app.evaluate.show_report(report)
        await settle(pilot)
        table = app.query_one("#eval-table")
        assert str(table.get_cell("hybrid+rerank@minilm-ft", "wlt")).strip() == "123/145/32"
        cell = str(table.get_cell("hybrid+rerank@minilm-ft", "ndcg@10"))
        assert "p<.001" in cell and "p=0.000" not in cell
        assert "p=0.200" in str(table.get_cell("hybrid+rerank@minilm-ft", "mrr@10"))
        await pilot.resize_terminal(80, 30)
        await settle(pilot)
        assert table.virtual_size.width <= table.scrollable_content_region.width  # nothing cut at the right
        assert str(table.get_cell("hybrid+rerank@minilm-ft", "wlt")).strip() == "123/145/32"


async def test_an_instruction_gives_way_to_the_query_on_a_one_line_encoder_input():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.search.set_instruction("python-docs")
        await run_query(pilot, QUERY)
        await settle(pilot)
        line = str(app.query_one("#rendered").render())
        assert f'{QUERY}"' in line and "…" in line.split(QUERY)[0]


def test_mode_lines_break_between_modes_and_paths_keep_their_end():
    from workbench.tui.common import cut_middle, mode_line, short_path
    from workbench.types import Hit

    hit = Hit(rank=1, doc_id="d", chunk_id="d#0", path="p", title="t", score=1.0,
              scores={"dense": 1.0, "colbert": 0.5, "sparse": 0.333, "bm25": 0.25},
              ranks={"dense": 1, "colbert": 2, "sparse": 3, "bm25": 4}, snippet="")
    whole = mode_line(hit, compact=True)
    for width in (12, 20, 30, 200):
        lines = mode_line(hit, compact=True, width=width).split("\n")
        assert "  ".join(lines) == whole and all(len(line) <= max(width, 9) for line in lines)
        assert all(part.startswith(("D#", "C#", "S#", "B#")) for line in lines for part in line.split("  "))
    assert short_path("/demo/corpus/python-docs", 16) == "…/python-docs"
    assert short_path("/demo/corpus/python-docs", 12) == "python-docs"
    assert short_path("/a/b", 10) == "/a/b"
    cut = cut_middle("Represent this query for retrieving scientific claims: ", 20)
    assert len(cut) == 20 and cut.startswith("Represent") and cut.endswith("claims: ")


def test_several_folders_indexed_read_as_one_line():
    from workbench.index.indexer import IndexSummary
    from workbench.tui.corpus import summary_line

    a = IndexSummary(root="/a", files_seen=4, docs_indexed=3, chunks_written=7, docs_unchanged=1, seconds=1.0,
                     total_docs=4, total_chunks=9)
    b = IndexSummary(root="/b", files_seen=3, docs_indexed=2, chunks_written=5, docs_removed=1, seconds=2.0,
                     total_docs=6, total_chunks=14)
    assert summary_line([a]) == a.line()
    line = summary_line([a, b])
    assert "\n" not in line and line.startswith("2 folders: 7 files read; indexed 5 docs (12 chunks), 1 unchanged, "
                                                 "1 removed")
    assert "workspace holds 6 docs / 14 chunks" in line


def test_titles_a_narrow_column_would_cut_alike_give_up_their_middle():
    from types import SimpleNamespace

    from workbench.tui.results import ResultColumn
    from workbench.types import Hit

    def hit(doc, title):
        return Hit(rank=1, doc_id=doc, chunk_id=f"{doc}#0", path=doc, title=title, score=1.0)

    hits = [hit("a", "multiprocessing — Introduction"), hit("b", "multiprocessing — Process Pools"),
            hit("c", "shutil — rmtree")]
    column = SimpleNamespace(hits=hits, result=SimpleNamespace(unit="doc"))
    titles = ResultColumn._cell_titles(column, 18)
    assert titles[2] == "shutil — rmtree"  # it fits: whole
    assert len(set(titles[:2])) == 2 and titles[0].endswith("uction") and titles[1].endswith("Pools")
    assert all(len(t) <= 17 for t in titles)
    column.result.unit = "chunk"  # the chunk number stays whole after the cut title
    assert all(t.endswith(" #0") and len(t) <= 17 for t in ResultColumn._cell_titles(column, 18))


async def test_an_instruction_set_from_elsewhere_keeps_your_own_and_i_opens_the_picker():
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        search = app.search
        search.set_instruction("find the passage that answers this question")
        await settle(pilot)
        search.set_instruction(None)  # as opening an evaluated query does (wb eval ran without one)
        await settle(pilot)
        assert app.state.instruction_value is None and app.query_one("#instruction-text").value == ""
        assert app.state.custom_instruction == "find the passage that answers this question"
        from textual.widgets import Select

        picker = app.query_one("#instruction", Select)
        app.search.left.table.focus()
        await pilot.press("i")
        await settle(pilot)
        assert picker.expanded and picker in app.focused.ancestors_with_self  # open: ↑↓ and Enter choose
        await pilot.press("escape")
        picker.value = "custom"  # custom… brings the kept text back
        await settle(pilot)
        assert app.query_one("#instruction-text").value == "find the passage that answers this question"
        assert app.state.instruction_value == "find the passage that answers this question"


async def test_an_evaluated_querys_own_instruction_keeps_yours(tui_state):
    """An evaluation run with a free-text instruction: opening one of its queries searches with that
    instruction, and the instruction you had typed is kept (custom… brings it back; the state file
    keeps it) instead of being replaced for good."""
    from textual.widgets import Select

    report = {**EVAL_REPORT, "instruction": "Given a claim, find the evidence"}
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.search.set_instruction("my own instruction")
        await settle(pilot)
        await _open_row(pilot, report, row=1)
        assert [c.result.instruction for c in app.search.columns] == ["Given a claim, find the evidence"] * 2
        picker = app.query_one("#instruction", Select)
        picker.value = "none"
        await settle(pilot)
        picker.value = "custom"  # custom… brings your own text back
        await settle(pilot)
        assert app.query_one("#instruction-text").value == "my own instruction"
        await _open_row(pilot, report, row=0)
        assert app.search.left.result.instruction == "Given a claim, find the evidence"
    assert json.loads(tui_state.read_text())["custom_instruction"] == "my own instruction"


async def test_a_query_opened_from_evaluate_marks_its_relevant_documents(tmp_path):
    """Enter on a per-query row: Search marks the hits the dataset's qrels judge relevant (✓) and
    counts them per column; another query typed drops the marks."""
    dataset = tmp_path / "mini"
    (dataset / "qrels").mkdir(parents=True)
    (dataset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\ttime/sleep.md\t1\n"
                                                "q2\tos/walk.md\t0\nq1\tshutil/rmtree.md\t1\n")
    (dataset / "queries.jsonl").write_text("")
    report = {**EVAL_REPORT, "dataset_path": str(dataset), "split": "test"}
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await _open_row(pilot, report, row=1)  # rows by |Δ|: q1, q2, q3
        assert app.query_one("#query").value == "sleep a while"  # q2's
        await wait_until(pilot, lambda: all(c.result is not None for c in app.search.columns), what="both answers")
        for column in app.search.columns:
            assert column.relevant == {"time/sleep.md": 1}  # grade 0 is no relevance
            marked = [str(column.table.get_row_at(i)[0]) for i, h in enumerate(column.hits) if h.doc_id == "time/sleep.md"]
            unmarked = [str(column.table.get_row_at(i)[0]) for i, h in enumerate(column.hits) if h.doc_id != "time/sleep.md"]
            assert all(cell.endswith("✓") for cell in marked) and not any(cell.endswith("✓") for cell in unmarked)
            found = int(any(h.doc_id == "time/sleep.md" for h in column.hits))
            assert str(app.query_one(f"#{column.side}-status").render()).startswith(f"{found}/1✓")
        await run_query(pilot, "another query")
        assert all(c.relevant == {} for c in app.search.columns)


async def test_the_runs_table_shows_the_recent_mean_loss_as_wb_runs_does(tmp_path, monkeypatch):
    from tui_fake import fake_run
    from workbench.tui.runs import RunsPane

    run = fake_run(tmp_path, "ft-1", "finished", steps=30, total=30)
    run.write_status(loss_recent=0.2222)  # the trainer's mean of the last 20 steps
    monkeypatch.setattr(RunsPane, "root", property(lambda self: tmp_path))
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("runs")
        table = app.query_one("#runs-table")
        await wait_until(pilot, lambda: table.row_count == 1, what="the run listed")
        assert str(table.get_cell("ft-1", "loss")).strip() == "0.2222"


def test_an_event_tail_rereads_a_run_folder_replaced_under_its_name(tmp_path):
    """A run that failed before training is replaced by a new one of the same name: its events
    file is another file, longer than the old offset; it was read from that offset (steps lost)."""
    from workbench.tui.runs import EventTail

    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"event": "step", "step": s, "loss": 1.0}) + "\n" for s in (1, 2)))
    tail = EventTail(path)
    assert tail.poll() and tail.steps == [1, 2]
    replaced = tmp_path / "new.jsonl"
    replaced.write_text("".join(json.dumps({"event": "step", "step": s, "loss": 0.5}) + "\n" for s in (1, 2, 3, 4)))
    replaced.replace(path)
    assert tail.poll() and tail.steps == [1, 2, 3, 4] and tail.loss == [0.5] * 4


async def test_per_query_rows_show_a_querys_brackets_as_typed():
    """A query's own brackets are text, not markup: `[/INST]` crashed the Evaluate screen's
    per-query table (DataTable reads a plain str cell as markup) and `[draft]` vanished."""
    import copy

    report = copy.deepcopy(EVAL_REPORT)
    report["per_query"][0]["query"] = "[/INST] remove a directory"
    report["per_query"][1]["query"] = "[draft] sleep a while"
    app = WbApp(FakeEngine.root, engine=FakeEngine())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.action_show_tab("evaluate")
        app.evaluate.show_report(report)
        await pilot.pause()
        await pilot.pause()
        per_query = app.query_one("#per-query")
        shown = [str(per_query.get_row_at(i)[2]) for i in range(per_query.row_count)]
        assert "[/INST] remove a directory" in shown and "[draft] sleep a while" in shown
        app.save_screenshot("/dev/null")  # rendering the table must not raise


async def test_a_colbert_fine_tune_on_a_maxsim_rerank_pipeline_is_in_use(tmp_path):
    """The MaxSim reranker reads the ColBERT model: a ColBERT fine-tune's column on bm25+rerank
    runs it (as `wb query --compare` counts it), so its frame keeps its label and no warning says
    it is unused; with a model reranker in wb.toml the same column runs no ColBERT model."""
    async with comparing_a_fine_tune(tmp_path, "cb", "colbert") as (app, pilot, ws):
        seen = record_notifications(app)
        right = app.search.right
        label = frame(right)
        assert "cb" in label and "unused" not in label, label
        right.set_pipeline("bm25+rerank")
        await settle(pilot)
        assert frame(right) == label and not [m for m, sev in seen if sev == "warning"]
        right.set_pipeline("bm25")
        await settle(pilot)
        assert "unused" in frame(right)
        from workbench.workspace import Workspace

        config = Workspace(Path(right.root or ws)).config_path  # the fine-tune's variant index's
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('[models]\nreranker = "llm"\n')
        right.set_pipeline("bm25+rerank")
        await settle(pilot)
        assert "unused" in frame(right), frame(right)
