"""Indexing is incremental and keeps LanceDB, Tantivy and the manifest consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_small_corpus, require_models
from workbench.index.indexer import Indexer
from workbench.store.lance_store import LanceChunkStore
from workbench.store.manifest import Manifest
from workbench.store.tantivy_store import TantivyChunkStore
from workbench.workspace import Workspace


def store_state(ws: Workspace) -> dict:
    """What each store holds: chunk keys per store and manifest chunk counts."""
    lance = LanceChunkStore(ws.lance_dir)
    table = lance.read_columns(["chunk_key", "doc_id", "chunk_id"])
    manifest = Manifest(ws.manifest_path)
    try:
        docs = manifest.hashes()
        n_chunks = manifest.count_chunks()
        pending = manifest.pending()
    finally:
        manifest.close()
    settings_step = 0.02
    tv = TantivyChunkStore(ws.tantivy_dir, settings_step)
    import tantivy

    searcher = tv.index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), limit=100_000).hits
    tv_keys = searcher.fast_field_values("chunk_key", [a for _, a in hits])
    return {
        "lance_keys": table.column("chunk_key").to_pylist(),
        "lance_docs": set(table.column("doc_id").to_pylist()),
        "tantivy_keys": list(tv_keys),
        "manifest_docs": set(docs),
        "manifest_chunks": n_chunks,
        "pending": pending,
    }


def assert_consistent(state: dict) -> None:
    assert len(state["lance_keys"]) == len(set(state["lance_keys"])), "duplicate rows in LanceDB"
    assert len(state["tantivy_keys"]) == len(set(state["tantivy_keys"])), "duplicate docs in Tantivy"
    assert set(state["lance_keys"]) == set(state["tantivy_keys"])
    assert state["lance_docs"] == state["manifest_docs"]
    assert len(state["lance_keys"]) == state["manifest_chunks"]
    assert state["pending"] == []


@pytest.fixture()
def fresh(tmp_path):
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    return ws, corpus


def test_rerun_on_unchanged_folder_encodes_nothing(fresh):
    ws, corpus = fresh
    first = Indexer(ws).run(corpus)
    assert first.docs_indexed == 3 and first.chunks_written > 3
    second = Indexer(ws).run(corpus)
    assert second.docs_indexed == 0 and second.chunks_written == 0 and second.docs_unchanged == 3
    assert_consistent(store_state(ws))


def test_a_tantivy_index_deleted_or_emptied_by_hand_is_rebuilt_from_lance_without_encoding(fresh):
    """BM25 and sparse answered nothing forever: the next run saw every document "unchanged" and
    recreated an empty Tantivy index. Now it is rebuilt from LanceDB's stored text and sparse
    weights, and ranks as before (scores to float32 rounding); a half-built leftover of a killed refill is discarded."""
    import shutil

    from workbench.search.searcher import Searcher

    ws, corpus = fresh
    Indexer(ws).run(corpus)

    def ranked(pipeline):
        result = Searcher(ws).search("groupby consecutive keys", pipeline=pipeline, k=10)
        return [(h.chunk_id, h.score) for h in result.results]

    before = {p: ranked(p) for p in ("bm25", "sparse")}
    assert before["bm25"] and before["sparse"]
    for damage in ("deleted", "emptied"):
        shutil.rmtree(ws.tantivy_dir)
        if damage == "emptied":
            TantivyChunkStore(ws.tantivy_dir, 0.02).create_if_missing()
            (ws.tantivy_dir.with_name("tantivy.refill") / "junk").mkdir(parents=True)  # a killed refill's leftover
        summary = Indexer(ws).run(corpus)
        assert summary.docs_indexed == 0 and summary.docs_unchanged == 3  # nothing encoded
        assert "the Tantivy index was missing or empty: rebuilt it from the LanceDB table" in summary.note
        assert_consistent(store_state(ws))
        for p in ("bm25", "sparse"):  # the same chunks in the same order; scores to float32 summation order
            again = ranked(p)
            assert [c for c, _ in again] == [c for c, _ in before[p]]
            np.testing.assert_allclose([s for _, s in again], [s for _, s in before[p]], rtol=1e-5)
        assert not ws.tantivy_dir.with_name("tantivy.refill").exists()
    assert "Tantivy" not in Indexer(ws).run(corpus).note  # an intact index is left alone


def _bm25_scores(ws: Workspace, queries: list[str]) -> list[dict[int, float]]:
    """Every chunk's BM25 score for each query, by chunk key (tie order is the index's, not compared)."""
    tv = TantivyChunkStore(ws.tantivy_dir, 0.02)
    out = []
    for q in queries:
        keys, scores = tv.bm25_search(q, 100_000)
        out.append(dict(zip(keys.tolist(), scores.tolist())))
    return out


def test_bm25_after_edits_and_deletes_equals_a_fresh_build(tmp_path):
    """Deleted chunks stayed in Tantivy's old segment (never merged), counted in BM25's document
    frequencies and average length: an updated index ranked otherwise than a fresh build of the same
    folder, for good. Now a run that deleted anything rewrites the index, over several cycles."""
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md",
                                                     "heapq/overview.md", "functools/lru_cache.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    queries = ["groupby consecutive keys", "remove a directory tree", "sleep seconds", "heap queue push pop",
               "cache decorator"]
    edits = [
        lambda: (corpus / "time" / "sleep.md").write_text("# time — sleep\n\nSleep pauses the thread for seconds.\n"),
        lambda: (corpus / "shutil" / "rmtree.md").unlink(),
        lambda: (corpus / "heapq" / "overview.md").write_text("# heapq\n\nA heap queue: push and pop the smallest.\n"),
    ]
    for cycle, edit in enumerate(edits):
        edit()
        Indexer(ws).run(corpus)
        fresh = Workspace(tmp_path / f"fresh{cycle}")
        fresh.ensure()
        Indexer(fresh).run(corpus)
        got, want = _bm25_scores(ws, queries), _bm25_scores(fresh, queries)
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            np.testing.assert_allclose([g[k] for k in w], list(w.values()), rtol=1e-6)
        assert TantivyChunkStore(ws.tantivy_dir, 0.02).deleted_docs() == 0
        assert_consistent(store_state(ws))


def test_a_rewrite_cut_off_before_its_commit_leaves_the_old_index_whole(fresh):
    """The rewrite deletes everything and adds the table's rows in one commit: failing half way,
    nothing of it is committed (no empty or half-full index), and the next run completes it."""
    ws, corpus = fresh
    Indexer(ws).run(corpus)
    tv = TantivyChunkStore(ws.tantivy_dir, 0.02)
    before = tv.num_docs()

    def failing():
        yield [1], ["x"], ["some text"], [(np.zeros(0, np.int32), np.zeros(0, np.float32))]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        tv.rewrite(failing())
    tv.commit()  # a later commit by the same store commits nothing of the rewrite
    again = TantivyChunkStore(ws.tantivy_dir, 0.02)
    assert again.num_docs() == before
    assert_consistent(store_state(ws))


def test_changed_file_is_reencoded_and_deleted_file_disappears(fresh):
    from workbench.search.searcher import Searcher

    ws, corpus = fresh
    Indexer(ws).run(corpus)
    (corpus / "time" / "sleep.md").write_text("# time — sleep\n\nThe zyzzogeton pause waits quietly.\n")
    (corpus / "shutil" / "rmtree.md").unlink()
    summary = Indexer(ws).run(corpus)
    assert summary.docs_indexed == 1 and summary.docs_removed == 1 and summary.docs_unchanged == 1
    state = store_state(ws)
    assert_consistent(state)
    assert state["manifest_docs"] == {"itertools/groupby.md", "time/sleep.md"}
    searcher = Searcher(ws)
    hits = searcher.search("zyzzogeton", pipeline="bm25").results
    assert [h.doc_id for h in hits] == ["time/sleep.md"]
    assert not searcher.search("rmtree onerror", pipeline="bm25").results or all(
        h.doc_id != "shutil/rmtree.md" for h in searcher.search("rmtree onerror", pipeline="hybrid").results
    )


def test_a_document_longer_than_a_batch_reports_progress_inside_it_and_stores_the_same_vectors(fresh, tmp_path,
                                                                                                monkeypatch):
    """One long document (many chunks) is encoded a batch at a time: the bar moves inside it, and
    what is stored equals one pass over all of its chunks. In float32: on a CPU with native bf16
    (where wb encodes in bf16) two batchings round differently, by ~1e-3."""
    monkeypatch.setenv("WB_DTYPE", "float32")
    ws, corpus = fresh
    events = []
    sliced = Indexer(ws, batch_chunks=2, progress=lambda phase, done, total: events.append((phase, done, total)))
    summary = sliced.run(corpus)
    encoding = [(done, total) for phase, done, total in events if phase == "encoding"]
    total = summary.chunks_written
    assert total > 4 and encoding[0] == (0, total) and encoding[-1] == (total, total)
    assert len({done for done, _ in encoding}) >= total // 2 + 1  # every 2 chunks, not every document
    assert [done for done, _ in encoding] == sorted(done for done, _ in encoding)
    whole_ws = Workspace(tmp_path / "whole")
    whole_ws.ensure()
    Indexer(whole_ws, batch_chunks=10_000).run(corpus)
    columns = ["chunk_key", "vector", "colbert", "sparse_ids", "sparse_weights"]
    a = LanceChunkStore(ws.lance_dir).read_columns(columns).sort_by("chunk_key").to_pydict()
    b = LanceChunkStore(whole_ws.lance_dir).read_columns(columns).sort_by("chunk_key").to_pydict()
    assert a["chunk_key"] == b["chunk_key"]
    np.testing.assert_allclose(np.array(a["vector"]), np.array(b["vector"]), atol=1e-5)
    assert a["sparse_ids"] == b["sparse_ids"]
    for x, y in zip(a["colbert"], b["colbert"]):
        np.testing.assert_allclose(np.array(x, dtype=np.float32), np.array(y, dtype=np.float32), atol=2e-2)
    assert_consistent(store_state(ws))


def test_excluded_names_and_files_over_the_size_limit_are_not_indexed_and_leave_when_excluded(fresh):
    """[index] exclude globs match a name (a folder is not walked) or a relative path; max_file_mb
    skips larger files with a reason. Excluding an indexed file later removes it; nothing rebuilds."""
    from dataclasses import replace

    ws, corpus = fresh
    (corpus / "node_modules" / "pkg").mkdir(parents=True)
    (corpus / "node_modules" / "pkg" / "README.md").write_text("# pkg\n\nvendored readme\n")
    (corpus / "big.txt").write_text("word " * 3000)  # 15 kB
    (corpus / "node_modules" / "pkg" / "index.js").write_text("module.exports = {}")
    for name in ("minutes.docx", "plan.docx", "budget.xlsx"):
        (corpus / name).write_bytes(b"PK\x03\x04")
    config = ws.config()
    limited = replace(config, index=replace(config.index, exclude=("node_modules",), max_file_mb=0.01))
    summary = Indexer(ws, limited).run(corpus)
    assert summary.docs_indexed == 3
    assert [(Path(s.path).name, s.reason.split(" (")[0]) for s in summary.skipped] == [("big.txt", "too large")]
    # files of types wb does not read are named in the summary (an excluded folder's are not counted)
    assert summary.not_read == {".docx": 2, ".xlsx": 1}
    assert "not read (types wb does not read): 2 .docx, 1 .xlsx;" in summary.line()
    summary = Indexer(ws, replace(limited, index=replace(limited.index, exclude=("node_modules", "time/*")))).run(corpus)
    assert summary.docs_removed == 1 and not summary.rebuilt
    assert store_state(ws)["manifest_docs"] == {"itertools/groupby.md", "shutil/rmtree.md"}
    summary = Indexer(ws, config).run(corpus)  # no exclusions, the default limit
    assert summary.docs_indexed == 3 and summary.docs_unchanged == 2 and not summary.rebuilt
    assert "node_modules/pkg/README.md" in store_state(ws)["manifest_docs"]
    assert_consistent(store_state(ws))
    # a gitignore-style "name/" matches that name at any depth; an excluded folder can be indexed as
    # a folder of its own, and the parent's next run neither claims nor deletes its documents
    (corpus / "time" / "node_modules").mkdir()
    (corpus / "time" / "node_modules" / "x.md").write_text("# x\n\nnested vendored file\n")
    (corpus / "drafts").mkdir()
    (corpus / "drafts" / "plan.md").write_text("# Plan\n\na draft about caching\n")
    ignoring = replace(config, index=replace(config.index, exclude=("node_modules/", "./drafts")))
    summary = Indexer(ws, ignoring).run(corpus)
    assert summary.docs_removed == 1 and summary.docs_indexed == 0  # node_modules/pkg/README.md left
    assert not any("node_modules" in d or "drafts" in d for d in store_state(ws)["manifest_docs"])
    drafts = Indexer(ws, ignoring).run(corpus / "drafts")
    assert drafts.docs_indexed == 1 and drafts.root == str((corpus / "drafts").resolve())
    again = Indexer(ws, ignoring).run(corpus)
    assert again.docs_removed == 0 and "plan.md" in store_state(ws)["manifest_docs"]
    assert_consistent(store_state(ws))


def _run_index_cli(ws: Workspace, corpus: Path) -> subprocess.Popen:
    env = dict(os.environ, WB_WORKSPACE=str(ws.root))
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli.main", "index", str(corpus)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_kill_9_at_any_moment_then_rerun_leaves_consistent_stores(tmp_path):
    """SIGKILL the indexer at several moments (during model load, encoding, writes); re-run; check."""
    require_models()
    from conftest import SMALL_DOCS

    corpus = copy_small_corpus(tmp_path / "corpus", SMALL_DOCS)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    (ws.config_path).write_text(ws.config_path.read_text() + "\n")
    # small batches so that kills land between and inside store writes
    import re

    text = ws.config_path.read_text()
    ws.config_path.write_text(re.sub(r"chunk_tokens = \d+", "chunk_tokens = 128", text))
    killed_after_writes = 0
    for delay in (2.5, 5.0, 7.0, 9.0):
        proc = _run_index_cli(ws, corpus)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_after_writes += 1
        proc.wait()
        if ws.manifest_path.exists():
            # the stores may hold a partial batch here; a re-run must repair it
            pass
    final = _run_index_cli(ws, corpus)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-500:]
    state = store_state(ws)
    assert_consistent(state)
    assert state["manifest_docs"] == set(SMALL_DOCS)
    assert killed_after_writes >= 1
    again = Indexer(ws).run(corpus)
    assert again.docs_indexed == 0


def test_kill_between_store_writes_is_repaired(fresh):
    """Simulate the worst moment: batch in LanceDB and Tantivy, manifest not yet updated."""
    ws, corpus = fresh
    Indexer(ws).run(corpus)
    before = store_state(ws)
    # a killed run that had begun re-writing a document: intent logged, rows duplicated in both stores
    lance = LanceChunkStore(ws.lance_dir)
    dup = lance.table.search().where("doc_id = 'time/sleep.md'").limit(None).to_arrow()
    manifest = Manifest(ws.manifest_path)
    manifest.begin(["time/sleep.md"])
    manifest.close()
    lance.add(dup)
    tv = TantivyChunkStore(ws.tantivy_dir, 0.02)
    tv.add(dup.column("chunk_key").to_pylist(), dup.column("doc_id").to_pylist(), dup.column("text").to_pylist(),
           [(np.array([1], np.int32), np.array([1.0], np.float32))] * dup.num_rows)
    tv.commit()
    broken = store_state(ws)
    assert len(broken["lance_keys"]) > len(before["lance_keys"])
    summary = Indexer(ws).run(corpus)
    assert summary.docs_indexed == 1  # the interrupted document is re-encoded
    after = store_state(ws)
    assert_consistent(after)
    assert sorted(after["lance_keys"]) == sorted(before["lance_keys"])


def test_a_run_killed_right_after_a_rebuild_forgot_the_documents_recreates_the_stores(fresh):
    """A rebuild in place (a variant's model change, an empty workspace) forgets every document, then
    recreates the stores: a kill in between, then a run with the old settings again, must not take
    the old stores' rows for an empty index (it added every chunk a second time)."""
    ws, corpus = fresh
    Indexer(ws).run(corpus)
    before = store_state(ws)
    with Manifest(ws.manifest_path) as manifest:  # the rebuild's first write; killed right after
        manifest.reset(reindex=[s for s, *_ in manifest.sources()])
    Indexer(ws).run(corpus)
    after = store_state(ws)
    assert_consistent(after)
    assert sorted(after["lance_keys"]) == sorted(before["lance_keys"])


def test_a_query_after_a_kill_leaves_out_the_cut_off_batch_in_every_mode(fresh):
    """Killed after LanceDB took a batch and before Tantivy did: a query then rebuilds its snapshot
    from LanceDB and must leave that unfinished batch out (dense and ColBERT found the documents
    BM25 and sparse could not); the next `wb index` indexes them and they are found."""
    from workbench.search.searcher import Searcher

    ws, corpus = fresh
    Indexer(ws).run(corpus)
    new = copy_small_corpus(corpus, ["functools/lru_cache.md", "heapq/overview.md"])
    assert new == corpus
    killer = (
        "import os, sys\n"
        "from workbench.store.tantivy_store import TantivyChunkStore\n"
        "TantivyChunkStore.add = lambda *a, **k: os._exit(9)\n"
        "from workbench.index.indexer import Indexer\n"
        "from workbench.workspace import Workspace\n"
        "from pathlib import Path\n"
        "Indexer(Workspace(Path(sys.argv[1]))).run(Path(sys.argv[2]))\n"
    )
    killed = subprocess.run([sys.executable, "-c", killer, str(ws.root), str(corpus)], capture_output=True)
    assert killed.returncode == 9, killed.stderr.decode()[-500:]
    with Manifest(ws.manifest_path) as manifest:
        unfinished = set(manifest.pending())
    assert unfinished == {"functools/lru_cache.md", "heapq/overview.md"}
    searcher = Searcher(ws)
    for pipeline in ("dense", "colbert", "hybrid"):
        found = {h.doc_id for h in searcher.search("cache results of a function call", pipeline=pipeline, k=10).results}
        assert found and not found & unfinished, (pipeline, found)
    Indexer(ws).run(corpus)
    found = [h.doc_id for h in Searcher(ws).search("least recently used cache decorator", pipeline="hybrid", k=3).results]
    assert "functools/lru_cache.md" in found


def test_second_writer_is_refused(fresh):
    from workbench.errors import WorkspaceError

    ws, corpus = fresh
    with ws.write_lock():
        with pytest.raises(WorkspaceError, match="another `wb index`"):
            Indexer(ws).run(corpus)


def test_title_only_rows_are_findable_and_wordless_ones_are_skipped_by_kind(tmp_path):
    """A BEIR row with a title and no text is one title chunk every mode can find; a document the
    tokenizer reads no word in is skipped ("no words to index"), not counted as indexed with 0
    chunks; the summary counts skip reasons by kind, however many ids they name. An _id given
    again keeps its last row (as BEIR's loader does); an _id no store can encode (a lone surrogate:
    it crashed the whole run) or holding a tab skips its row, the rest is indexed."""
    import json

    from workbench.search.searcher import Searcher

    require_models()
    corpus = tmp_path / "beir"
    corpus.mkdir()
    rows = [{"_id": "d1", "title": "Aardvark", "text": "The aardvark eats termites at night."},
            {"_id": "d2", "title": "Tuning a xylophone", "text": ""},
            {"_id": "d3", "title": "", "text": "\x01\x02\u200b"}]
    rows += [{"_id": "d1", "text": f"duplicate {i}"} for i in range(5)]
    rows += [{"_id": "t\tab", "text": "a tab in the id"}]
    lines = [json.dumps(r) for r in rows] + ['{"_id": "bad\\ud800", "text": "surrogate id"}']
    (corpus / "corpus.jsonl").write_text("".join(line + "\n" for line in lines))
    ws = Workspace(tmp_path / "ws")
    summary = Indexer(ws).run(corpus)
    assert summary.docs_indexed == 2 and summary.files_seen == 1
    assert summary.line().startswith("1 file read; indexed 2 docs (2 chunks), ")
    assert ("skipped: 1 _id holds a control character, 1 _id is not valid Unicode, 5 duplicate _id, "
            "1 no words to index;") in summary.line()
    searcher = Searcher(ws)
    for pipeline in ("bm25", "dense", "sparse"):
        top = searcher.search("xylophone", pipeline=pipeline).results
        assert top and top[0].doc_id == "d2", pipeline
    assert_consistent(store_state(ws))
    assert store_state(ws)["manifest_docs"] == {"d1", "d2"}
    top = searcher.search("duplicate", pipeline="bm25").results
    assert top and top[0].doc_id == "d1" and "duplicate 4" in top[0].snippet  # d1's last row is the one indexed


def test_a_file_reached_through_a_symlink_keeps_one_id_across_runs(tmp_path):
    require_models()
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "real.txt").write_text("A solo file about axolotls.\n")
    (folder / "alias.txt").symlink_to("real.txt")
    ws = Workspace(tmp_path / "ws")
    first = Indexer(ws).run(folder / "alias.txt")
    refresh = Indexer(ws).run(Path(first.root))  # what `wb index` with no path does for this root
    again = Indexer(ws).run(folder / "alias.txt")
    assert first.docs_indexed == 1 and refresh.docs_unchanged == 1 and again.docs_unchanged == 1
    assert refresh.docs_removed == again.docs_removed == 0
    assert store_state(ws)["manifest_docs"] == {"real.txt"}


def test_a_query_while_wb_index_runs_says_answers_may_mix_old_and_new(fresh):
    """While a run writes, dense and ColBERT answer from the last published snapshot (a removed file
    still comes back there, not in BM25): the note said only that unreached documents are missing."""
    from workbench.index.unfinished import UNFINISHED_RUN
    from workbench.search.searcher import Searcher

    ws, corpus = fresh
    Indexer(ws).run(corpus)
    with Manifest(ws.manifest_path) as manifest:
        manifest.set_meta(UNFINISHED_RUN, {str(corpus.resolve()): 1})
    with ws.write_lock():  # the run under way
        note = Searcher(ws).serving_note
    assert "is running" in note and "mix the old and the new state" in note


def test_the_snapshot_is_the_same_whatever_its_read_batches(small_workspace, tmp_path, monkeypatch):
    """The snapshot streams the table in batches (bounded memory): batch boundaries (3 rows here,
    inside documents and token runs) change no byte of the token matrix, the dense or sparse
    vectors, nor the catalog's rows."""
    import filecmp

    import pyarrow.feather as feather

    from workbench.store import snapshot

    ws, _ = small_workspace
    table = LanceChunkStore(ws.lance_dir).table
    whole = snapshot.build(tmp_path / "whole", table, table.version)
    monkeypatch.setattr(snapshot, "SNAPSHOT_BATCH_ROWS", 3)
    small = snapshot.build(tmp_path / "small", table, table.version)
    assert table.count_rows() > 3 * 4
    for name in ("tokens.bin", "tokens.npz", "dense.npy", "sparse.npz"):
        assert filecmp.cmp(whole / name, small / name, shallow=False), name
    assert feather.read_table(whole / "catalog.arrow").equals(feather.read_table(small / "catalog.arrow"))


SETTLE_KILLER = """
import os, signal, sys
from pathlib import Path
from workbench.index.indexer import Indexer
from workbench.workspace import Workspace

def progress(phase, done, total):  # the moment `wb index --progress-json` prints {"phase": "compacting"}
    if phase == "compacting":
        os.kill(os.getpid(), signal.SIGKILL)

ws, action, root = Workspace(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
indexer = Indexer(ws, progress=progress)
indexer.remove(root) if action == "remove" else indexer.run(root)
"""


def _kill_at_settle(ws: Workspace, action: str, root: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", SETTLE_KILLER, str(ws.root), action, str(root)],
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-500:]


def _lance_layout(ws: Workspace) -> tuple[int, int]:
    """(fragments, versions) of the LanceDB table: (1, 1) once compacted and cleaned up."""
    table = LanceChunkStore(ws.lance_dir).table
    return table.stats()["fragment_stats"]["num_fragments"], len(table.list_versions())


def test_a_run_or_removal_killed_in_its_settle_is_settled_by_the_next_run(tmp_path):
    """SIGKILL as a run (an edit) or a `--remove` starts its settle (LanceDB compaction, the purge of
    Tantivy's deleted docs, garbage collection): the next run had nothing left to write, so it settled
    nothing and cleared the unfinished mark: BM25 kept counting the deleted chunks (scores ~12% off
    a fresh build's, for good) and LanceDB stayed uncompacted. Now the next run of any root settles."""
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md",
                                                     "heapq/overview.md"])
    other = copy_small_corpus(tmp_path / "other", ["functools/lru_cache.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    Indexer(ws).run(other)
    queries = ["groupby consecutive keys", "remove a directory tree", "sleep seconds", "heap queue push pop"]

    def settled_like(fresh: Workspace) -> None:
        assert TantivyChunkStore(ws.tantivy_dir, 0.02).deleted_docs() == 0
        got, want = _bm25_scores(ws, queries), _bm25_scores(fresh, queries)
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            np.testing.assert_allclose([g[k] for k in w], list(w.values()), rtol=1e-6)
        assert _lance_layout(ws) == (1, 1)
        assert_consistent(store_state(ws))

    (corpus / "time" / "sleep.md").write_text("# time — sleep\n\nSleep pauses the thread for seconds.\n")
    _kill_at_settle(ws, "run", corpus)
    assert TantivyChunkStore(ws.tantivy_dir, 0.02).deleted_docs() > 0  # the purge was cut off
    summary = Indexer(ws).run(corpus)
    assert summary.docs_indexed == 0 and "continued the run that was cut off" in summary.note
    fresh = Workspace(tmp_path / "fresh")
    fresh.ensure()
    Indexer(fresh).run(corpus)
    Indexer(fresh).run(other)
    settled_like(fresh)

    _kill_at_settle(ws, "remove", other)  # the removal is complete in the manifest, its settle is not
    assert TantivyChunkStore(ws.tantivy_dir, 0.02).deleted_docs() > 0
    summary = Indexer(ws).run(corpus)  # another root's run, with nothing to write
    assert summary.docs_indexed == summary.docs_removed == 0
    Indexer(fresh).remove(other)  # not cut off: its settle rewrites BM25 as a fresh build of corpus would be
    settled_like(fresh)


def test_a_snapshot_removed_while_a_query_loads_it_gives_way_to_the_newer_one(fresh, tmp_path):
    """A `wb index` publishes a newer snapshot and removes the one a Searcher opened on while that
    Searcher memory-maps it (its tokens.npz still there, tokens.bin already gone): the query failed
    with FileNotFoundError; it now reads the snapshot the manifest names, as a fresh Searcher does."""
    import shutil

    from workbench.search.searcher import Searcher

    ws, corpus = fresh
    Indexer(ws).run(corpus)
    searcher = Searcher(ws)  # the snapshot is loaded at its first query
    with Manifest(ws.manifest_path) as manifest:
        old = ws.snapshot_dir / f"v{manifest.get_meta('snapshot_version')}"
    shutil.copy(old / "tokens.npz", tmp_path / "tokens.npz")
    (corpus / "extra.md").write_text("# Trees\n\nTo delete a folder with everything in it, walk it bottom up.\n")
    Indexer(ws).run(corpus)
    assert not old.exists()
    old.mkdir()  # the older folder half removed, as the publisher's rmtree leaves it for a moment
    shutil.copy(tmp_path / "tokens.npz", old / "tokens.npz")
    for pipeline in ("dense", "colbert", "hybrid"):
        got = searcher.search("remove a directory tree", pipeline=pipeline, k=5).results
        want = Searcher(ws).search("remove a directory tree", pipeline=pipeline, k=5).results
        assert [(h.doc_id, round(h.score, 5)) for h in got] == [(h.doc_id, round(h.score, 5)) for h in want]
    assert "extra.md" in {h.doc_id for h in searcher.search("delete a folder walk bottom up", pipeline="dense", k=5).results}
