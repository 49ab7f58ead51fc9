"""Dense retrieval through LanceDB's ANN index (indexes past ``[index] dense_exact_max_rows``),
against brute force: real LanceDB tables in temporary folders, clustered unit vectors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

DIM = 48


def _rows(x: np.ndarray, start: int) -> pa.Table:
    from workbench.store.lance_store import chunk_schema

    n = len(x)
    keys = np.arange(start, start + n, dtype=np.int64)
    zeros, empty = np.zeros(n, np.int32), [""] * n
    return pa.table({
        "chunk_key": keys, "chunk_id": [f"c{k}" for k in keys], "doc_id": [f"d{k}" for k in keys],
        "ordinal": zeros, "path": empty, "title": empty, "text": empty, "char_start": zeros, "char_end": zeros,
        "n_tokens": zeros, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
        "colbert": pa.array([[]] * n, pa.list_(pa.list_(pa.float16(), 8))),
        "sparse_ids": pa.array([[]] * n, pa.list_(pa.int32())),
        "sparse_weights": pa.array([[]] * n, pa.list_(pa.float32())),
    }, schema=chunk_schema(DIM, 8))


def _clustered(rng, n: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ann_search_finds_the_exact_top_with_exact_scores_and_follows_adds_and_deletes(tmp_path):
    from workbench.store.lance_store import LanceChunkStore

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    x = _clustered(rng, 3000, centres)
    store = LanceChunkStore(tmp_path)
    store.create(DIM, 8)
    store.add(_rows(x[:2500], 0))
    assert store.dense_index_rows() is None
    assert store.build_dense_index(1) == 2500
    assert store.dense_index_rows() == (2500, 0)
    store.add(_rows(x[2500:], 2500))  # rows after the build: searched unindexed until compact
    assert store.dense_index_rows() == (2500, 500)

    def check(live: np.ndarray) -> None:
        recalls = []
        for q in _clustered(rng, 30, centres):
            keys, sims = store.dense_search(q, 20)
            exact = live[np.argsort(-(x[live] @ q), kind="stable")[:20]]
            recalls.append(len(set(keys.tolist()) & set(exact.tolist())) / 20)
            # best first by the index's own distances (not the vectors' cosines: the searcher rescores)
            assert np.all(np.diff(sims) <= 1e-6)
            assert set(keys.tolist()) <= set(live.tolist())
        assert np.mean(recalls) >= 0.95, np.mean(recalls)

    check(np.arange(3000))
    assert store.compact() is None
    assert store.dense_index_rows() == (3000, 0)  # compaction brought the new rows into the index
    store.delete_docs([f"d{k}" for k in range(0, 3000, 3)])
    check(np.array([k for k in range(3000) if k % 3]))
    keys, _ = store.dense_search(x[0], 5)
    assert 0 not in keys.tolist()


def test_without_an_index_the_search_is_a_flat_exact_scan(tmp_path):
    """No index (an index under the limit, or one whose build was cut off): a flat scan, exact."""
    from workbench.store.lance_store import LanceChunkStore

    rng = np.random.default_rng(1)
    x = _clustered(rng, 300, rng.standard_normal((5, DIM)).astype(np.float32))
    store = LanceChunkStore(tmp_path)
    store.create(DIM, 8)
    store.add(_rows(x, 0))
    keys, sims = store.dense_search(x[7], 10)
    exact = np.argsort(-(x @ x[7]), kind="stable")[:10]
    assert keys.tolist() == exact.tolist()
    np.testing.assert_allclose(sims, (x @ x[7])[exact], atol=1e-5)


def test_wb_index_builds_the_ann_index_past_the_limit_and_dense_answers_equal_the_exact_scan(tmp_path):
    """`wb index` of more chunks than ``[index] dense_exact_max_rows`` builds the index (a note says
    so), the next runs keep it up to date, and dense retrieval through it (the candidates rescored
    exactly) answers as the exact scan: ids and scores, before and after an edit and an addition."""
    from dataclasses import replace

    from conftest import copy_small_corpus, require_models

    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.store.lance_store import LanceChunkStore
    from workbench.workspace import Workspace

    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    ws.config_path.write_text(ws.config_path.read_text().replace("[index]\n", "[index]\ndense_exact_max_rows = 3\n", 1))
    summary = Indexer(ws).run(corpus)
    assert "built the dense ANN index over" in summary.note, summary.note
    lance = LanceChunkStore(ws.lance_dir)
    assert lance.dense_index_rows() == (summary.total_chunks, 0)

    def same_as_exact() -> None:
        ann = Searcher(ws)
        cfg = ws.config()
        exact = Searcher(ws, config=replace(cfg, index=replace(cfg.index, dense_exact_max_rows=10**9)))
        assert ann._dense_ann() and not exact._dense_ann()
        for query in ("group consecutive items", "remove a directory tree", "sleep for a while"):
            a = ann.search(query, pipeline="dense", k=5, unit="chunk").results
            b = exact.search(query, pipeline="dense", k=5, unit="chunk").results
            assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)

    same_as_exact()
    edited = next(p for p in sorted(corpus.rglob("*.md")))
    edited.write_text(edited.read_text() + "\n\nTo pause a program, call time.sleep with the seconds to wait.\n")
    (corpus / "extra.md").write_text("# Waiting\n\nSleeping for a while: the program pauses for some seconds.\n")
    summary = Indexer(ws).run(corpus)
    assert "built the dense ANN index" not in summary.note  # kept, and brought up to date by compaction
    assert lance.dense_index_rows() == (summary.total_chunks, 0)
    same_as_exact()

    # the table now calls for twice the partitions the index was trained with: the next run retrains
    # it on the whole table (LanceDB's compaction only folds rows into the trained partitions)
    from workbench.store.manifest import Manifest

    with Manifest(ws.manifest_path) as manifest:
        assert manifest.get_meta("dense_index_partitions") == 1
    ws.config_path.write_text(ws.config_path.read_text().replace(
        "[index]\n", f"[index]\ndense_ann_partition_rows = {summary.total_chunks // 2}\n", 1))
    summary = Indexer(ws).run(corpus)
    assert "retrained the dense ANN index over" in summary.note and "(2 partitions, was 1)" in summary.note, summary.note
    with Manifest(ws.manifest_path) as manifest:
        assert manifest.get_meta("dense_index_partitions") == 2
    assert lance.dense_index_rows() == (summary.total_chunks, 0)
    same_as_exact()
    summary = Indexer(ws).run(corpus)  # 2 of 2 wanted: kept
    assert "dense ANN index" not in summary.note, summary.note


# -- the ANN path reads the published snapshot's table version, whatever an index run does meanwhile --

QUERY = "remove a directory tree"


def _ann_workspace(tmp_path):
    """The small corpus indexed past a limit of 3 chunks: dense retrieval runs through the ANN index."""
    from conftest import copy_small_corpus, require_models

    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    ws.config_path.write_text(ws.config_path.read_text().replace("[index]\n", "[index]\ndense_exact_max_rows = 3\n", 1))
    assert "built the dense ANN index" in Indexer(ws).run(corpus).note
    return ws, corpus


def _searchers(ws):
    """A fresh ANN Searcher (as a new `wb query` opens) and one that scans the same snapshot exactly."""
    from dataclasses import replace

    from workbench.search.searcher import Searcher

    cfg = ws.config()
    return Searcher(ws), Searcher(ws, config=replace(cfg, index=replace(cfg.index, dense_exact_max_rows=10**9)))


def _assert_same(ann, exact, pipelines=("dense", "hybrid"), k=5) -> list[str]:
    for pipeline in pipelines:
        a = ann.search(QUERY, pipeline=pipeline, k=k, unit="chunk").results
        b = exact.search(QUERY, pipeline=pipeline, k=k, unit="chunk").results
        assert len(b) == k
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b], pipeline
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-6)
    return [h.chunk_id for h in exact.search(QUERY, pipeline="dense", k=k, unit="chunk").results]


def _write_rows_nearest_the_query(ws, n: int = 300) -> list[str]:
    """What a `wb index` run writes before it publishes its snapshot, at its worst: ``n`` rows (more
    than the dense_ann_refine x depth candidates a query takes) whose vector is the query's own, so
    the latest table version's ANN index ranks them all first. Returns their documents."""
    from workbench.store.lance_store import LanceChunkStore

    searcher, _ = _searchers(ws)
    [q] = searcher.encode_queries([QUERY], {"dense"})
    lance = LanceChunkStore(ws.lance_dir)
    one = lance.table.to_arrow().slice(0, 1)
    rows = pa.concat_tables([one] * n)
    docs = [f"zz/new{i}.md" for i in range(n)]
    for name, values in (("chunk_key", pa.array(np.arange(n, dtype=np.int64) + 2**60)),
                         ("chunk_id", pa.array([f"{d}#0" for d in docs])), ("doc_id", pa.array(docs)),
                         ("vector", pa.FixedSizeListArray.from_arrays(pa.array(np.tile(q.dense.astype(np.float32), n)),
                                                                      len(q.dense)))):
        rows = rows.set_column(rows.schema.get_field_index(name), name, values)
    lance.add(rows)
    return docs


def test_a_query_while_a_run_adds_and_deletes_answers_from_the_published_snapshot_through_the_ann_index(tmp_path):
    """A run adds rows nearer the query than any published one, and deletes the published top
    documents, before it publishes: the ANN search read LanceDB's newest version, whose candidates
    were all new rows (then dropped as not in the snapshot: dense answered nothing) and lacked the
    deleted ones (still in the snapshot, BM25 and ColBERT). It now reads the snapshot's version."""
    from workbench.store.lance_store import LanceChunkStore

    ws, _ = _ann_workspace(tmp_path)
    before = _assert_same(*_searchers(ws))
    _write_rows_nearest_the_query(ws)
    LanceChunkStore(ws.lance_dir).delete_docs(sorted({c.split("#")[0] for c in before[:2]}))
    ann, exact = _searchers(ws)
    assert ann._dense_ann()
    assert _assert_same(ann, exact) == before


def test_rows_the_snapshot_lacks_taking_the_candidates_fall_back_to_the_exact_scan(tmp_path):
    """A run cut off after LanceDB took a batch: the query's snapshot leaves that batch out, but the
    table version it was built from (the one the ANN index is searched at) holds it. When those rows
    take so many candidates that fewer than depth of the snapshot's own are left, the exact scan
    answers (it had answered with the survivors: here none)."""
    from workbench.index.unfinished import UNFINISHED_RUN
    from workbench.store.manifest import Manifest

    ws, corpus = _ann_workspace(tmp_path)
    before = _assert_same(*_searchers(ws))
    docs = _write_rows_nearest_the_query(ws)
    with Manifest(ws.manifest_path) as manifest:  # the cut-off run's unfinished batch
        manifest.begin(docs)
        manifest.set_meta(UNFINISHED_RUN, {str(corpus.resolve()): 1})
    ann, exact = _searchers(ws)
    assert ann._dense_ann()
    assert _assert_same(ann, exact) == before


def test_a_lancedb_failure_in_the_ann_search_falls_back_to_the_exact_scan(tmp_path):
    """Files the ANN search reads gone (a cleanup of the version it reads, damaged files): the
    query scans the snapshot exactly instead of failing with LanceDB's RuntimeError, and this
    Searcher keeps scanning exactly for that snapshot."""
    import shutil

    ws, _ = _ann_workspace(tmp_path)
    ann, exact = _searchers(ws)
    assert ann._dense_ann()
    indices = list((ws.lance_dir / "chunks.lance" / "_indices").iterdir())
    assert indices
    for folder in indices:
        shutil.rmtree(folder)
    _assert_same(ann, exact)
    assert not ann._dense_ann()


def test_a_snapshot_version_lancedb_no_longer_holds_is_scanned_exactly(tmp_path):
    """The published snapshot's table version cleaned up (a settle after a newer snapshot was
    published, while this Searcher still reads the older one): opening it, or listing its indexes,
    fails; the snapshot is scanned exactly (it was a WorkspaceError, or the newest version's rows)."""
    from workbench.store.lance_store import LanceChunkStore

    ws, _ = _ann_workspace(tmp_path)
    before = _assert_same(*_searchers(ws))
    _write_rows_nearest_the_query(ws)
    lance = LanceChunkStore(ws.lance_dir)
    assert lance.compact() is None  # every version but the newest removed
    assert len(lance.table.list_versions()) <= 2
    ann, exact = _searchers(ws)
    assert not ann._dense_ann()
    assert _assert_same(ann, exact) == before


def test_a_settle_keeps_the_published_version_until_the_next_is_published(tmp_path):
    """A run's settle compacts LanceDB while queries still read the published snapshot: its table
    version (and ANN index) stays until the new snapshot is published (queries at the moment
    `wb index` builds its snapshot still search the index), then every older version goes: one
    version, the published one, is left."""
    from workbench.index.indexer import Indexer
    from workbench.store.lance_store import LanceChunkStore
    from workbench.store.manifest import Manifest

    ws, corpus = _ann_workspace(tmp_path)
    before = _assert_same(*_searchers(ws))
    (corpus / "extra.md").write_text("# Trees\n\nTo delete a folder with everything in it, walk it bottom up.\n")
    seen = []

    def progress(stage, done, total):
        if stage == "snapshot":  # compacted, the new snapshot not yet published
            ann, exact = _searchers(ws)
            seen.append(ann._dense_ann())
            assert _assert_same(ann, exact, pipelines=("dense",)) == before

    Indexer(ws, progress=progress).run(corpus)
    assert seen == [True]
    table = LanceChunkStore(ws.lance_dir).table
    with Manifest(ws.manifest_path) as manifest:
        published = manifest.get_meta("snapshot_version")
    assert [v["version"] for v in table.list_versions()] == [published] and table.version == published
    _assert_same(*_searchers(ws))
