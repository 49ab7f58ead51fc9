"""A model variant copies the vectors of the modes whose model did not change from its parent.

``dense=runs/ft`` (a copy of MiniLM with other file times, hence another fingerprint) changes the
dense mode and the zero-shot ColBERT mode (the dense model's token states) but not SPLADE: the
variant's sparse vectors must be the parent's, bit for bit, without the sparse encoder ever being
loaded, while a document edited since the parent was indexed is encoded in full.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import PARENT_DOCS

def rows(ws) -> dict:
    """chunk_key -> row (text, dense vector, ColBERT matrix, sparse ids/weights)."""
    from workbench.store.lance_store import LanceChunkStore, split_multivectors

    t = LanceChunkStore(ws.lance_dir).read_columns(
        ["chunk_key", "doc_id", "text", "vector", "colbert", "n_tokens", "sparse_ids", "sparse_weights"])
    colbert = split_multivectors(t.column("colbert"))
    out = {}
    for i, key in enumerate(t.column("chunk_key").to_pylist()):
        out[key] = {
            "doc_id": t.column("doc_id")[i].as_py(),
            "text": t.column("text")[i].as_py(),
            "vector": np.array(t.column("vector")[i].as_py(), np.float32),
            "colbert": colbert[i],
            "n_tokens": t.column("n_tokens")[i].as_py(),
            "sparse_ids": np.array(t.column("sparse_ids")[i].as_py(), np.int32),
            "sparse_weights": np.array(t.column("sparse_weights")[i].as_py(), np.float32),
        }
    return out


class Spy:
    """Counts what the encoders are asked to encode; optionally forbids loading the sparse encoder."""

    def __init__(self, monkeypatch, forbid_sparse: bool) -> None:
        from workbench.encoders import dense, sparse

        self.dense_texts: list[str] = []
        self.sparse_texts: list[str] = []
        self.sparse_loaded = 0
        spy = self
        dense_encode, sparse_encode, sparse_init = dense.DenseEncoder.encode, sparse.SparseEncoder.encode, \
            sparse.SparseEncoder.__init__

        def d_encode(self_, texts, **kw):
            spy.dense_texts.extend(texts)
            return dense_encode(self_, texts, **kw)

        def s_encode(self_, texts, *a, **kw):
            spy.sparse_texts.extend(texts)
            return sparse_encode(self_, texts, *a, **kw)

        def s_init(self_, *a, **kw):
            spy.sparse_loaded += 1
            if forbid_sparse:
                raise AssertionError("the sparse encoder must not be loaded: its vectors are the parent's")
            return sparse_init(self_, *a, **kw)

        monkeypatch.setattr(dense.DenseEncoder, "encode", d_encode)
        monkeypatch.setattr(sparse.SparseEncoder, "encode", s_encode)
        monkeypatch.setattr(sparse.SparseEncoder, "__init__", s_init)


def test_reusable_modes_follow_the_settings(tmp_path):
    from workbench.index.reuse import reusable_modes
    from workbench.index.settings import IndexSettings

    trained = tmp_path / "colbert-run"
    trained.mkdir()
    (trained / "wb_colbert.json").write_text("{}")
    base = IndexSettings("minilm", "/m/minilm", "fp-d", "zero-shot", "none", "splade", "/m/splade", "fp-s",
                         "{text}", "{text}", "", 256, 32, 0.02)

    def modes(**changes):
        from dataclasses import replace

        return reusable_modes(base, replace(base, **changes))

    assert modes() == ["dense", "colbert", "sparse"]
    assert modes(dense_path="/elsewhere/minilm") == ["dense", "colbert", "sparse"]  # a moved cache
    assert modes(dense_name="ft", dense_fingerprint="fp-ft") == ["sparse"]  # zero-shot ColBERT follows dense
    assert modes(document_template="passage: {text}") == ["sparse"]
    assert modes(query_template="query: {text}") == ["dense", "colbert", "sparse"]  # queries only
    assert modes(sparse_name="splade-ft", sparse_fingerprint="fp-s2") == ["dense", "colbert"]
    assert modes(sparse_step=0.05) == ["dense", "colbert", "sparse"]  # quantized at write time
    assert modes(chunk_tokens=128) == [] and modes(chunk_overlap=16) == []
    # a trained ColBERT folder has its own encoder over the raw text: dense and sparse stay
    assert modes(colbert_name=str(trained), colbert_fingerprint="fp-c") == ["dense", "sparse"]
    from dataclasses import replace

    with_trained = replace(base, colbert_name=str(trained), colbert_fingerprint="fp-c")
    assert reusable_modes(with_trained, replace(with_trained, dense_name="ft", dense_fingerprint="fp-ft")) == [
        "colbert", "sparse"]
    # a projection head over the dense tokens (no wb_colbert.json) changes with the dense model
    head = tmp_path / "head-run"
    head.mkdir()
    with_head = replace(base, colbert_name=str(head), colbert_fingerprint="fp-h")
    assert reusable_modes(with_head, replace(with_head, dense_name="ft", dense_fingerprint="fp-ft")) == ["sparse"]


def test_same_fingerprint_other_name_needs_identical_bytes(tmp_path):
    from workbench.index.reuse import _same_model

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, payload in ((a, b"weights"), (b, b"weights"), (c, b"WEIGHTS")):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(payload)
    assert _same_model("a", str(a), "fp", "b", str(b), "fp")
    assert not _same_model("a", str(a), "fp", "c", str(c), "fp")  # a fingerprint collision
    assert not _same_model("a", str(a), "fp", "a", str(a), "fp2")


def test_dense_variant_copies_sparse_from_the_parent(parent, monkeypatch):
    from workbench import variants
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws, corpus = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    assert serve.is_variant
    spy = Spy(monkeypatch, forbid_sparse=True)
    [summary] = variants.build_variant(ws, serve)
    assert spy.sparse_loaded == 0 and spy.sparse_texts == []
    assert summary.reused == summary.chunks_written > 0 and summary.reused_modes == ["sparse"]
    assert "sparse reused from the parent" in summary.line()
    assert len(spy.dense_texts) == summary.chunks_written  # dense (+ zero-shot ColBERT) encoded

    base, var = rows(ws), rows(serve.workspace)
    assert set(base) == set(var)
    for key, row in var.items():
        assert np.array_equal(row["sparse_ids"], base[key]["sparse_ids"])
        assert np.array_equal(row["sparse_weights"], base[key]["sparse_weights"])
        # the copy has the base's weights: dense and ColBERT agree up to float noise
        assert np.allclose(row["vector"], base[key]["vector"], atol=1e-4)
        assert row["colbert"].shape == base[key]["colbert"].shape and row["n_tokens"] == base[key]["n_tokens"]

    # the same variant built without reuse answers queries identically
    monkeypatch.undo()
    plain = Workspace(ws.root / "plain")
    plain.ensure()
    plain.config_path.write_text(serve.workspace.config_path.read_text())
    monkeypatch.setenv("WB_REUSE", "0")
    [again] = [Indexer(plain, serve.config, donor=ws).run(r) for r in variants.parent_roots(ws)]
    assert again.reused == 0 and again.chunks_written == summary.chunks_written
    reused_s, plain_s = Searcher(serve.workspace, config=serve.config), Searcher(plain, config=serve.config)
    for q in ("remove a directory tree", "cache function results", "sleep for a while"):
        for pipeline in ("sparse", "dense", "colbert", "hybrid"):
            a = reused_s.search(q, pipeline=pipeline).results
            b = plain_s.search(q, pipeline=pipeline).results
            assert [h.doc_id for h in a] == [h.doc_id for h in b], (q, pipeline)
            # documents are encoded in bf16 where the CPU has native bf16 (device.pick_dtype), and two
            # builds need not give bit-identical bf16 outputs: a ColBERT MaxSim sum over a few query
            # tokens moved by 7.5e-4 relative on CI. Ranks must not move at all.
            assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=3e-3, abs=1e-3)


def test_document_edited_after_the_parent_is_encoded_not_reused(parent, monkeypatch):
    from workbench import variants
    from workbench.encoders.sparse import SparseEncoder
    from workbench.models.cache import resolve_model_path

    ws, corpus = parent
    edited = corpus / "time" / "sleep.md"
    edited.write_text("# time — sleep\n\nThe zyzzogeton pause waits quietly. " + edited.read_text())
    serve = variants.serving(ws, {"dense": "runs/ft"})
    spy = Spy(monkeypatch, forbid_sparse=False)
    [summary] = variants.build_variant(ws, serve)
    base, var = rows(ws), rows(serve.workspace)
    base_texts = {(r["doc_id"], r["text"]) for r in base.values()}
    fresh = [r for r in var.values() if (r["doc_id"], r["text"]) not in base_texts]
    assert fresh and {r["doc_id"] for r in fresh} == {"time/sleep.md"}
    assert summary.reused == summary.chunks_written - len(fresh)
    assert spy.sparse_loaded == 1 and len(spy.sparse_texts) == len(fresh)
    assert any("zyzzogeton" in t for t in spy.sparse_texts)

    encoder = SparseEncoder(resolve_model_path("splade-tiny"))
    from workbench.store.lance_store import LanceChunkStore

    table = LanceChunkStore(serve.workspace.lance_dir).read_columns(["chunk_key", "doc_id", "title", "text"])
    from workbench.ingest.chunking import chunk_input_text
    from workbench.types import Chunk

    for i, key in enumerate(table.column("chunk_key").to_pylist()):
        if table.column("doc_id")[i].as_py() != "time/sleep.md":
            continue
        chunk = Chunk("", "", 0, "", table.column("title")[i].as_py(), table.column("text")[i].as_py(), 0, 0)
        [expected] = encoder.encode([chunk_input_text(chunk)])
        assert np.array_equal(var[key]["sparse_ids"], expected.ids)
        assert np.allclose(var[key]["sparse_weights"], expected.weights, atol=1e-5)
    # unchanged documents: the parent's vectors, bit for bit
    for key, row in var.items():
        if row["doc_id"] != "time/sleep.md":
            assert np.array_equal(row["sparse_weights"], base[key]["sparse_weights"])

    from workbench.search.searcher import Searcher

    hits = Searcher(serve.workspace, config=serve.config).search("zyzzogeton", pipeline="bm25").results
    assert [h.doc_id for h in hits] == ["time/sleep.md"]


def test_trained_colbert_variant_encodes_only_colbert(parent, monkeypatch):
    """colbert=<trained ColBERT folder>: its own encoder over the raw text; dense and sparse are the
    parent's, and neither the dense model nor SPLADE is loaded."""
    import json

    import torch

    from workbench import variants
    from workbench.encoders import dense as dense_mod
    from workbench.models.cache import resolve_model_path

    ws, corpus = parent
    folder = ws.runs_dir / "cb" / "model"
    shutil.copytree(ws.runs_dir / "ft" / "model", folder)
    torch.save({"weight": torch.randn(16, 384, generator=torch.Generator().manual_seed(0))}, folder / "colbert_head.pt")
    (folder / "wb_colbert.json").write_text(json.dumps({
        "dim": 16, "query_marker_id": 1, "document_marker_id": 2, "query_max_length": 32,
        "document_max_length": 300, "query_augmentation": False}))
    (ws.runs_dir / "cb" / "config.json").write_text("{}")
    spy = Spy(monkeypatch, forbid_sparse=True)
    loaded: list[str] = []
    init = dense_mod.DenseEncoder.__init__

    def recording(self_, path, *a, **kw):
        loaded.append(str(path))
        return init(self_, path, *a, **kw)

    monkeypatch.setattr(dense_mod.DenseEncoder, "__init__", recording)
    serve = variants.serving(ws, {"colbert": "runs/cb"})
    [summary] = variants.build_variant(ws, serve)
    assert summary.reused == summary.chunks_written > 0 and summary.reused_modes == ["dense", "sparse"]
    assert "dense, sparse reused from the parent" in summary.line()
    assert loaded == [str(folder.resolve())]  # the ColBERT folder's encoder only, not the dense model
    assert str(resolve_model_path("all-MiniLM-L6-v2")) not in loaded and spy.sparse_loaded == 0
    base, var = rows(ws), rows(serve.workspace)
    assert set(base) == set(var)
    for key, row in var.items():
        assert np.array_equal(row["vector"], base[key]["vector"])
        assert np.array_equal(row["sparse_weights"], base[key]["sparse_weights"])
        assert row["colbert"].shape[1] == 16 and base[key]["colbert"].shape[1] == 384


KILLER = """
import os, signal, sys
from pathlib import Path
from workbench import variants
from workbench.index.indexer import Indexer
from workbench.store import lance_store, manifest, tantivy_store
from workbench.workspace import Workspace

ws, where = Workspace(Path(sys.argv[1])), sys.argv[2]
calls = {"n": 0}

def killing(cls, name):
    original = getattr(cls, name)
    def wrapper(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch: the first one is complete
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *a, **kw)
    setattr(cls, name, wrapper)

killing(*{"lance_add": (lance_store.LanceChunkStore, "add"),
          "tantivy_commit": (tantivy_store.TantivyChunkStore, "commit"),
          "manifest_finish": (manifest.Manifest, "finish")}[where])
serve = variants.serving(ws, {"dense": "runs/ft"})
variants.write_variant_config(serve)
for root in variants.parent_roots(ws):
    Indexer(serve.workspace, serve.config, donor=ws, batch_chunks=8).run(root)
"""


# heavy (22 s a kill point on a 2-core AVX2 machine): `make test-all` and .ci/run run all three
@pytest.mark.parametrize("where", [pytest.param("lance_add", marks=pytest.mark.slow),
                                   pytest.param("tantivy_commit", marks=pytest.mark.slow),
                                   pytest.param("manifest_finish", marks=pytest.mark.slow)])
def test_kill_9_inside_a_reusing_variant_build_then_rerun_is_consistent(parent, where):
    """SIGKILL before LanceDB's add, before Tantivy's commit, or before the manifest records the second
    batch; then ``wb index --model`` again: stores consistent, sparse still the parent's."""
    from test_index_consistency import assert_consistent, store_state
    from workbench import variants

    ws, corpus = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    killed = subprocess.run([sys.executable, "-c", KILLER, str(ws.root), where], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-500:]
    from workbench.store.manifest import Manifest

    m = Manifest(serve.workspace.manifest_path)
    try:  # killed inside the second batch: the first is complete, the second logged as intent
        assert m.count_docs() >= 1 and m.pending()
    finally:
        m.close()
    cmd = [sys.executable, "-m", "workbench.cli.main", "index", "-w", str(ws.root), "--model", "dense=runs/ft"]
    final = subprocess.run(cmd, capture_output=True, timeout=300, text=True)
    assert final.returncode == 0, final.stderr[-500:]
    assert "sparse reused from the parent" in final.stdout
    state = store_state(serve.workspace)
    assert_consistent(state)
    assert state["manifest_docs"] == set(PARENT_DOCS)
    base, var = rows(ws), rows(serve.workspace)
    assert set(base) == set(var)
    for key, row in var.items():
        assert np.array_equal(row["sparse_weights"], base[key]["sparse_weights"])
        assert np.allclose(row["vector"], base[key]["vector"], atol=1e-4)
