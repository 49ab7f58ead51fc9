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
