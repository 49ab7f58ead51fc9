"""A settings change is rebuilt beside the live index and swapped in whole.

While the rebuild runs (or after it was cut off) the old index answers queries; the modes whose
model did not change are copied from it; a swap cut off at any step is finished by whoever comes
next, and ends in the new index. Real LanceDB + Tantivy + manifest in temporary folders.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import copy_small_corpus, require_models
from test_index_consistency import assert_consistent, store_state
from test_variant_reuse import Spy, rows
from tiny_models import run_wb
from workbench.index import rebuild
from workbench.index.indexer import Indexer
from workbench.search.searcher import Searcher
from workbench.store.manifest import Manifest
from workbench.workspace import Workspace


def _recorded(ws: Workspace) -> dict:
    manifest = Manifest(ws.manifest_path)
    try:
        return manifest.get_meta("settings")
    finally:
        manifest.close()


def _set(ws: Workspace, key: str, value: str) -> None:
    ws.config_path.write_text(re.sub(rf"(?m)^{key} = \S+", f"{key} = {value}", ws.config_path.read_text(), count=1))


def _dense_ids(ws: Workspace, query: str) -> list[str]:
    """The dense top 5 as `wb query` and the TUI see it (the index answers, even with other models)."""
    return [h.chunk_id for h in Searcher(ws, serve_stale=True).search(query, pipeline="dense", k=5).results]


def test_a_model_change_is_built_beside_the_live_index_and_reuses_its_unchanged_modes(parent, monkeypatch, capsys):
    ws, corpus = parent
    before, old_rows, old_hits = store_state(ws), rows(ws), _dense_ids(ws, "remove a directory tree")
    _set(ws, "dense", json.dumps(str(ws.runs_dir / "ft" / "model")))  # the same weights, another model
    spy = Spy(monkeypatch, forbid_sparse=True)
    seen_meanwhile = []

    def progress(phase, done, total):
        if phase == "encoding" and not seen_meanwhile:  # mid-rebuild: the live index is untouched
            seen_meanwhile.append((store_state(ws), _dense_ids(ws, "remove a directory tree")))
            code, out, err = run_wb(capsys, monkeypatch, "query", "rmtree", "-w", str(ws.root), "--pipeline", "dense")
            seen_meanwhile.append((code, re.sub(r"\s+", " ", err)))

    summary = Indexer(ws, progress=progress).run(corpus)
    assert seen_meanwhile and seen_meanwhile[0] == (before, old_hits)
    code, err = seen_meanwhile[1]
    assert code == 0 and re.search(r"this index is being rebuilt with the changed settings \(\d+ documents so far\): "
                                   r"the old index answers meanwhile", err), err
    assert summary.rebuilt.startswith("settings changed (dense") and "beside the old one" in summary.rebuilt
    assert summary.reused_modes == ["sparse"] and summary.reused == summary.chunks_written
    assert "sparse reused from the old index" in summary.line()
    assert spy.sparse_loaded == 0 and spy.dense_texts  # dense (and zero-shot ColBERT) encoded again

    assert _recorded(ws)["dense_name"] == str(ws.runs_dir / "ft" / "model")
    assert not (ws.root / rebuild.STAGING).exists() and not (ws.root / rebuild.SWAP_MARK).exists()
    state = store_state(ws)
    assert_consistent(state) and state["manifest_docs"] == before["manifest_docs"]
    new_rows = rows(ws)
    assert set(new_rows) == set(old_rows)
    for key, row in new_rows.items():
        old = old_rows[key]
        assert np.array_equal(row["sparse_ids"], old["sparse_ids"])  # copied, bit for bit
        assert np.array_equal(row["sparse_weights"], old["sparse_weights"])
        np.testing.assert_allclose(row["vector"], old["vector"], atol=1e-5)  # same weights, encoded anew
    assert _dense_ids(ws, "remove a directory tree") == old_hits


@pytest.fixture()
def staged(tmp_path, monkeypatch):
    """A workspace of two folders whose chunking changed, rebuilt into the staging folder but not
    swapped in yet (the swap patched out)."""
    require_models()
    a = copy_small_corpus(tmp_path / "a", ["itertools/groupby.md", "time/sleep.md"])
    b = copy_small_corpus(tmp_path / "b", ["shutil/rmtree.md", "heapq/overview.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    for root in (a, b):
        Indexer(ws).run(root)
    _set(ws, "chunk_tokens", "128")
    with monkeypatch.context() as patch:
        patch.setattr(rebuild, "swap", lambda ws: None)
        Indexer(ws).run(a)
    assert rebuild.in_progress(ws) and _recorded(ws)["chunk_tokens"] != 128
    return ws, a, b


def test_a_swap_cut_off_at_any_step_ends_in_the_new_index(staged, tmp_path, monkeypatch):
    ws, a, b = staged
    real_replace = rebuild.os.replace
    steps = 0
    for cut in range(1, 30):
        copy = Workspace(tmp_path / f"ws-{cut}")
        shutil.copytree(ws.root, copy.root)
        calls = []

        def replace(src, dst, cut=cut, calls=calls):
            calls.append(src)
            if len(calls) == cut:
                raise KeyboardInterrupt
            return real_replace(src, dst)

        monkeypatch.setattr(rebuild.os, "replace", replace)
        try:
            rebuild.swap(copy)
            finished = True
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(rebuild.os, "replace", real_replace)
        if not finished:
            assert (copy.root / rebuild.SWAP_MARK).exists() or cut == 1
        # the next reader finishes the swap (or, cut before the mark, finds the old index whole)
        hits = [h.doc_id for h in Searcher(copy).search("rmtree", pipeline="bm25", k=5).results]
        assert "shutil/rmtree.md" in hits
        assert not (copy.root / rebuild.SWAP_MARK).exists() and not (copy.root / rebuild.RETIRED).exists()
        state = store_state(copy)
        assert_consistent(state)
        if cut == 1:  # cut before the swap began: still staged, the old index answers
            assert rebuild.in_progress(copy) and _recorded(copy)["chunk_tokens"] != 128
            continue
        assert _recorded(copy)["chunk_tokens"] == 128 and not rebuild.in_progress(copy)
        assert set(state["manifest_docs"]) == {"itertools/groupby.md", "time/sleep.md", "shutil/rmtree.md",
                                               "heapq/overview.md"}
        steps = cut
        if finished:
            break
    assert finished and steps >= 8  # every rename of the swap was cut once


def test_a_store_the_staging_lacks_never_outlasts_the_swap(staged):
    """The read snapshot is derived: were the staging without one, the old index's snapshot must not
    be read against the new manifest (the reader rebuilds it from the new LanceDB table)."""
    ws, a, b = staged
    shutil.rmtree(ws.root / rebuild.STAGING / "snapshot")
    rebuild.swap(ws)
    searcher = Searcher(ws)
    assert searcher.settings.chunk_tokens == 128
    assert len(searcher.catalog.doc_ids) == store_state(ws)["manifest_chunks"]  # the new chunks, not the old
    assert "shutil/rmtree.md" in [h.doc_id for h in searcher.search("rmtree", pipeline="dense", k=5).results]


def test_going_back_to_the_old_settings_discards_the_staged_rebuild(staged):
    ws, a, b = staged
    before = store_state(ws)
    _set(ws, "chunk_tokens", str(_recorded(ws)["chunk_tokens"]))
    summary = Indexer(ws).run(a)
    assert summary.rebuilt == "" and summary.docs_unchanged == 2 and summary.docs_indexed == 0
    assert summary.line().startswith("2 files read; discarded the rebuild that was cut off: wb.toml is back to "
                                     "this index's settings; indexed 0 docs")
    assert not (ws.root / rebuild.STAGING).exists() and store_state(ws) == before


def test_a_cut_off_rebuild_is_finished_by_wb_index_and_follows_a_removal(staged, capsys, monkeypatch):
    ws, a, b = staged
    code, _out, err = run_wb(capsys, monkeypatch, "query", "groupby", "-w", str(ws.root), "--pipeline", "bm25")
    assert code == 0 and "a rebuild of this index with the changed settings was cut off" in err
    code, out, err = run_wb(capsys, monkeypatch, "index", "--remove", str(b), "-w", str(ws.root))
    assert code == 0, err
    assert rebuild.staged_roots(ws) == [str(a)]
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--json")
    assert code == 0, err
    assert "rebuilding the index beside the old one, which answers queries meanwhile" in " ".join(err.split())
    folders = json.loads(out)["folders"]
    assert len(folders) == 1  # one summary: the rebuild covered every folder in its one run
    summary = folders[0]
    assert summary["rebuilt"].endswith("rebuilt the index beside the old one") and summary["total_docs"] == 2
    assert not rebuild.in_progress(ws) and _recorded(ws)["chunk_tokens"] == 128
    state = store_state(ws)
    assert_consistent(state)
    assert set(state["manifest_docs"]) == {"itertools/groupby.md", "time/sleep.md"}


def test_a_folder_of_a_cut_off_rebuild_only_can_be_removed_and_a_missing_one_is_waited_for(
        staged, tmp_path, capsys, monkeypatch):
    ws, a, b = staged
    before = store_state(ws)
    new = copy_small_corpus(tmp_path / "new", ["functools/lru_cache.md"])
    with monkeypatch.context() as patch:  # the new folder joins the rebuild, which is cut off before its swap
        patch.setattr(rebuild, "swap", lambda ws: None)
        Indexer(ws).run(new)
    assert str(new) in rebuild.staged_roots(ws) and store_state(ws) == before
    code, out, err = run_wb(capsys, monkeypatch, "index", "--remove", str(new), "-w", str(ws.root))
    assert code == 0, err
    assert out.strip().startswith(f"removed 1 doc of {new}; workspace holds 4 docs /")  # the index that answers
    assert str(new) not in rebuild.staged_roots(ws) and store_state(ws) == before
    # a folder gone meanwhile: bare `wb index` goes on with the others, and the swap waits for it
    shutil.move(b, tmp_path / "b-away")
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0, err
    assert f"{b} is missing: the rebuild waits for it" in " ".join(out.split())
    assert rebuild.in_progress(ws) and store_state(ws) == before
    # and before any rebuild began: bare `wb index` starts it with the folders there are
    shutil.rmtree(ws.root / rebuild.STAGING)
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0 and f"{b} is missing: the rebuild waits for it" in " ".join(out.split()), err


KILLER = """
import os, signal, sys
from pathlib import Path
from workbench.index.indexer import Indexer
from workbench.store import lance_store
from workbench.workspace import Workspace

ws, corpus = Workspace(Path(sys.argv[1])), Path(sys.argv[2])
original, calls = lance_store.LanceChunkStore.add, {"n": 0}

def add(self, *a, **kw):
    calls["n"] += 1
    if calls["n"] == 2:  # inside the staged rebuild's second batch: the first one is complete
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *a, **kw)

lance_store.LanceChunkStore.add = add
Indexer(ws, batch_chunks=8).run(corpus)
"""


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_kill_9_inside_a_rebuild_leaves_the_old_index_whole_and_wb_index_finishes_it(parent):
    import subprocess
    import signal
    import sys

    ws, corpus = parent
    before, old_rows = store_state(ws), rows(ws)
    _set(ws, "dense", json.dumps(str(ws.runs_dir / "ft" / "model")))
    killed = subprocess.run([sys.executable, "-c", KILLER, str(ws.root), str(corpus)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-500:]
    assert rebuild.in_progress(ws) and 0 < rebuild.staged_docs(ws) < len(before["manifest_docs"])  # cut off
    assert store_state(ws) == before  # the live index is untouched and answers
    answer = Searcher(ws, serve_stale=True).search("rmtree", pipeline="bm25", k=5)
    assert "shutil/rmtree.md" in [h.doc_id for h in answer.results]
    cmd = [sys.executable, "-m", "workbench.cli.main", "index", "-w", str(ws.root)]
    final = subprocess.run(cmd, capture_output=True, timeout=300, text=True)
    assert final.returncode == 0, final.stderr[-500:]
    assert "sparse reused from the old index" in final.stdout
    assert not rebuild.in_progress(ws) and _recorded(ws)["dense_name"] == str(ws.runs_dir / "ft" / "model")
    state = store_state(ws)
    assert_consistent(state) and state["manifest_docs"] == before["manifest_docs"]
    for key, row in rows(ws).items():
        assert np.array_equal(row["sparse_weights"], old_rows[key]["sparse_weights"])


def test_a_new_folder_that_would_replace_another_folders_documents_is_refused_before_a_rebuild(tmp_path):
    """With the settings changed, a new folder whose ids another folder holds with other content (or
    one with nothing to index) is refused as always, before anything is staged: the other folder's
    documents are never dropped."""
    from workbench.errors import InputError

    require_models()
    for name, text in (("a", "aardvark notes\n"), ("b", "zebra notes\n")):
        (tmp_path / "c" / name).mkdir(parents=True)
        (tmp_path / "c" / name / "overview.md").write_text(text)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "c" / "a")
    before = store_state(ws)
    _set(ws, "chunk_tokens", "128")
    with pytest.raises(InputError, match="'overview.md'"):
        Indexer(ws).run(tmp_path / "c" / "b")
    assert store_state(ws) == before and not (ws.root / rebuild.STAGING).exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="nothing to index"):
        Indexer(ws).run(tmp_path / "empty")
    assert not (ws.root / rebuild.STAGING).exists()
    summary = Indexer(ws).run(tmp_path / "c" / "a")  # the rebuild itself goes ahead
    assert summary.rebuilt and store_state(ws)["manifest_docs"] == {"overview.md"}


def test_the_note_of_a_variant_whose_settings_changed_names_the_command_that_rebuilds_it(tmp_path):
    """A variant is rebuilt by `wb index --model ...` (a bare `wb index` rebuilds the parent only)."""
    from workbench.index.rebuild import state_note
    from workbench.workspace import Workspace

    parent, variant = Workspace(tmp_path / "ws"), Workspace(tmp_path / "ws" / "variants" / "dense-ft-1a2b")
    assert state_note(parent, ["chunk_tokens"]).endswith(f"`wb index{parent.flag}` rebuilds it")
    note = state_note(variant, ["chunk_tokens"])
    assert f"`wb index --model ROLE=NAME{parent.flag}` rebuilds it" in note  # no models recorded: the flags' form
    assert note.startswith("the workspace's wb.toml changed this model variant's settings (")
    assert state_note(parent, ["chunk_tokens"]).startswith("wb.toml changed this index's settings (")
    variant.root.mkdir(parents=True)
    (variant.root / "variant.json").write_text('{"overrides": {"dense": "/m/ft"}}')  # what it was built for
    assert state_note(variant, ["sparse_name"]).endswith(f"`wb index --model dense=/m/ft{parent.flag}` rebuilds it")
    assert state_note(variant, []) == ""


def test_a_query_template_change_encodes_queries_anew_and_never_the_documents(tmp_path):
    """The query template (and the instruction format) shape queries only: changing it in wb.toml
    re-encoded every document (a settings rebuild). Now queries use it at once and `wb index`
    records it, encoding nothing."""
    require_models()
    corpus = copy_small_corpus(tmp_path / "c", ["itertools/groupby.md", "time/sleep.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    before = _dense_ids(ws, "remove a directory tree")
    text = ws.config_path.read_text().replace("[models]\n", '[models]\ndense_query_template = "query: {instruction}{text}"\n', 1)
    ws.config_path.write_text(text)
    searcher = Searcher(ws)  # not refused as "built with other settings", no note
    assert searcher.serving_note == ""
    assert searcher.settings.templates.render_query("sleep", None) == "query: sleep"
    summary = Indexer(ws).run(corpus)
    assert summary.rebuilt == "" and summary.docs_indexed == 0 and summary.chunks_written == 0
    assert _recorded(ws)["query_template"] == "query: {instruction}{text}"
    assert not (ws.root / rebuild.STAGING).exists()
    assert len(_dense_ids(ws, "remove a directory tree")) == len(before)


def test_command_hints_name_the_workspace_unless_it_is_the_default_one(tmp_path, monkeypatch):
    """A hint copied as printed must act on the workspace it is about: `-w ROOT` (quoted) unless ROOT
    is what a bare command resolves to ($WB_WORKSPACE, else ./.wb); a variant's hints name its parent."""
    from workbench.index.rebuild import state_note
    from workbench.workspace import Workspace

    parent = Workspace(tmp_path / "my ws")
    variant = Workspace(parent.root / "variants" / "dense-ft-1a2b")
    monkeypatch.delenv("WB_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    quoted = f" -w '{parent.root}'"
    assert parent.flag == quoted and Workspace(tmp_path / ".wb").flag == ""
    assert state_note(parent, ["chunk_tokens"]).endswith(f"`wb index{quoted}` rebuilds it")
    assert state_note(variant, ["chunk_tokens"]).endswith(f"`wb index --model ROLE=NAME{quoted}` rebuilds it")
    monkeypatch.setenv("WB_WORKSPACE", str(parent.root))
    assert state_note(parent, ["chunk_tokens"]).endswith("`wb index` rebuilds it")
    assert state_note(variant, ["chunk_tokens"]).endswith("`wb index --model ROLE=NAME` rebuilds it")
