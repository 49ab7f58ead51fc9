"""The numpy query backend (workbench/encoders/numpy_bert.py, ``Searcher(backend="numpy")``) answers as
the torch one does, refuses what it does not reproduce, and keeps torch out of a one-shot `wb query`.

The torch encoders are the reference (fp32: WB_DTYPE=float32); the numpy path sums in another order,
so vectors agree within 1e-5 and rankings agree except where two scores are within that of a tie.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from test_lean_bert import UNICODE, _path, _query_in_a_fresh_process, _real_texts
from tiny_models import tiny_bert


@pytest.fixture(autouse=True)
def _fp32(monkeypatch):
    monkeypatch.setenv("WB_DTYPE", "float32")
    monkeypatch.delenv("WB_LEAN", raising=False)


def test_erf_and_gelu_match_the_exact_functions():
    import torch

    from workbench.encoders.numpy_bert import erf, gelu

    x = np.linspace(-9, 9, 40_001, dtype=np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    assert float(np.abs(erf(x) - exact).max()) < 1e-6
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert float(np.abs(gelu(x) - ref).max()) < 5e-6


def test_dense_encoder_equals_torch_on_minilm():
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder

    path = _path("all-MiniLM-L6-v2")
    texts = _real_texts()[:20] + UNICODE
    mine = NumpyDenseEncoder.load(path)
    ref = DenseEncoder(path)
    assert mine is not None and mine.dim == ref.dim == 384 and mine.max_length == ref.max_length
    a, b = mine.encode(texts, tokens=True), ref.encode(texts, tokens=True)
    np.testing.assert_allclose(a.dense, b.dense, atol=1e-5, rtol=0)
    for x, y in zip(a.tokens, b.tokens):
        assert x.dtype == np.float16 and x.shape == y.shape
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=1e-3, rtol=0)
    assert mine.tokenize(texts) == ref.tokenize(texts)
    assert mine.encode(texts[:3]).tokens is None
    # a drop-in for DenseEncoder: the transformers tokenizer (chunking, explanations) on first use
    assert mine._tokenizer is None
    assert mine.tokenizer.convert_ids_to_tokens(mine.tokenize(["hello"])[0]) == ["[CLS]", "hello", "[SEP]"]


def test_sparse_encoder_equals_torch_on_splade():
    from workbench.encoders.numpy_bert import NumpySparseEncoder
    from workbench.encoders.sparse import SparseEncoder

    path = _path("splade-tiny")
    texts = _real_texts()[:20] + UNICODE
    mine, ref = NumpySparseEncoder.load(path), SparseEncoder(path)
    assert mine is not None
    for x, y in zip(mine.encode(texts), ref.encode(texts)):
        a, b = x.as_dict(), y.as_dict()
        # a term on the edge (max logit within rounding of 0) may be in one and not the other
        for term in set(a) ^ set(b):
            assert max(a.get(term, 0.0), b.get(term, 0.0)) < 1e-4
        both = sorted(set(a) & set(b))
        assert len(both) >= 0.99 * max(len(a), len(b))
        np.testing.assert_allclose([a[t] for t in both], [b[t] for t in both], atol=2e-5, rtol=0)
    assert mine.term(2003) == ref.term(2003)
    assert mine.tokenizer.tokenize("Hello world") == ref.tokenizer.tokenize("Hello world")


def test_random_bert_with_cls_pooling_equals_torch(tmp_path):
    """Another shape than MiniLM (2 heads of 16, 128 positions), CLS pooling, unnormalised."""
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder

    folder = tiny_bert(tmp_path / "m", layers=3, seed=4)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                   "pooling_mode_mean_tokens": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    texts = _real_texts()[:8]
    mine, ref = NumpyDenseEncoder.load(str(folder)), DenseEncoder(str(folder))
    assert mine is not None and mine.pooling == ref.pooling == "cls" and mine.normalize == ref.normalize
    np.testing.assert_allclose(mine.encode(texts).dense, ref.encode(texts).dense, atol=1e-5, rtol=1e-5)
    # inputs are cut at the model's 128 positions, whatever the layout's max length says
    long = NumpyDenseEncoder.load(str(folder), max_length=4096)
    assert long.max_length == 128 and len(long.tokenize(["word " * 500])[0]) == 128
    assert long.encode(["word " * 500]).dense.shape == (1, 32)


def test_what_it_does_not_reproduce_goes_to_torch(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from workbench.encoders.numpy_bert import NumpyDenseEncoder, NumpySparseEncoder

    folder = Path(shutil.copytree(_path("splade-tiny"), tmp_path / "m"))
    state = load_file(str(folder / "model.safetensors"))
    assert NumpySparseEncoder.load(str(folder)) is not None
    # a tensor in a dtype numpy has not and we do not widen
    odd = "cls.predictions.transform.dense.bias"
    assert odd in state
    save_file({k: v.to(torch.float8_e4m3fn) if k == odd else v for k, v in state.items()},
              str(folder / "model.safetensors"))
    assert NumpySparseEncoder.load(str(folder)) is None
    # a tensor missing
    save_file({k: v for k, v in state.items() if k != "cls.predictions.transform.dense.weight"},
              str(folder / "model.safetensors"))
    assert NumpySparseEncoder.load(str(folder)) is None
    # only a pickled checkpoint (reading it needs torch)
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert NumpySparseEncoder.load(str(folder)) is None
    # a damaged file
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert NumpySparseEncoder.load(str(folder)) is None
    # a decoder, and the switch that turns every lean path off
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)).save_pretrained(tmp_path / "g")
    assert NumpyDenseEncoder.load(str(tmp_path / "g")) is None
    monkeypatch.setenv("WB_LEAN", "0")
    assert NumpyDenseEncoder.load(_path("all-MiniLM-L6-v2")) is None


def test_bf16_weights_are_widened_exactly(tmp_path):
    """A checkpoint saved in bf16 runs in fp32 here, as the torch dense encoder runs it on a CPU in fp32."""
    import torch
    from safetensors.torch import load_file, save_file

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder, _read_state

    folder = Path(shutil.copytree(_path("all-MiniLM-L6-v2"), tmp_path / "m"))
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()},
              str(folder / "model.safetensors"))
    widened = _read_state(folder)
    for key, value in load_file(str(folder / "model.safetensors")).items():
        if value.is_floating_point():
            assert widened[key].dtype == np.float32
            assert np.array_equal(widened[key], value.float().numpy())
    texts = _real_texts()[:6]
    mine, ref = NumpyDenseEncoder.load(str(folder)), DenseEncoder(str(folder))
    assert mine is not None
    np.testing.assert_allclose(mine.encode(texts).dense, ref.encode(texts).dense, atol=1e-5, rtol=0)


def test_maxsim_bits_and_chunks_equal_brute_force():
    import torch

    from workbench.search.maxsim import CandidateScorer, maxsim_bits, maxsim_chunks, maxsim_numpy

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, size=60)
    tokens = rng.standard_normal((int(lengths.sum()), 24)).astype(np.float32)
    bits = torch.from_numpy(tokens).to(torch.bfloat16).view(torch.int16).numpy()
    stored = torch.from_numpy(bits).view(torch.bfloat16).float().numpy()  # what the matrix holds
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    docs = [stored[a : a + n] for a, n in zip(starts, lengths)]
    q = rng.standard_normal((7, 24)).astype(np.float32)
    brute = maxsim_numpy(q, docs)
    for block_tokens, threads in ((100, 1), (100, 2), (1, 2), (10_000, 2)):  # blocks of one document, one block
        np.testing.assert_allclose(maxsim_bits(q, bits, lengths, block_tokens=block_tokens, threads=threads),
                                   brute, rtol=1e-5, atol=1e-4)
    # chosen chunks, scattered and repeated, some back to back (one slice), blocks of one chunk or all
    rows = np.array([5, 0, 59, 17, 17, 18, 19, 3])
    for block_tokens in (1, 30, 10_000):
        for threads in (1, 2):
            got = maxsim_chunks(q, bits, starts[rows], lengths[rows], block_tokens=block_tokens, threads=threads)
            np.testing.assert_allclose(got, brute[rows], rtol=1e-5, atol=1e-4)
    assert maxsim_chunks(q, bits, starts[:0], lengths[:0]).shape == (0,)
    scorer = CandidateScorer(bits, starts, lengths)  # the bf16 path's scorer agrees too
    np.testing.assert_allclose(scorer.score(torch.from_numpy(q), rows), brute[rows], rtol=1e-5, atol=1e-4)


def _same_ranking(a, b, tol: float = 1e-4) -> None:
    """Equal hits in equal order, except that two hits whose scores are within ``tol`` may swap."""
    assert len(a.results) == len(b.results)
    for x, y in zip(a.results, b.results):
        assert x.score == pytest.approx(y.score, abs=tol)
        if x.doc_id != y.doc_id:
            other = {h.doc_id: h.score for h in b.results}
            assert x.doc_id in other and abs(other[x.doc_id] - x.score) < tol
        else:
            assert x.ranks == y.ranks


@pytest.mark.parametrize("exact_colbert,complete", [(True, False), (False, False), (False, True)])
def test_numpy_backend_answers_as_torch(small_workspace, exact_colbert, complete):
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    config = ws.config()
    if not exact_colbert:  # ColBERT scores candidates, as on a large corpus
        config = replace(config, index=replace(config.index, colbert_exact_max_tokens=0))
    if complete:  # every candidate scored exactly in dense, sparse and ColBERT before fusing
        config = replace(config, fusion=replace(config.fusion, complete=True))
    torch_side = Searcher(ws, config=config)
    numpy_side = Searcher(ws, config=config, backend="numpy")
    assert numpy_side._exact_colbert() is exact_colbert
    queries = ["group consecutive items by key", "itertools.groupby", "run a function on many inputs in parallel",
               "remove a directory tree"]
    for pipeline in ("dense", "colbert", "sparse", "bm25", "hybrid", "dense+bm25", "hybrid+rerank"):
        for text in queries:
            _same_ranking(numpy_side.search(text, pipeline=pipeline), torch_side.search(text, pipeline=pipeline))
    assert type(numpy_side.bundle.dense).__name__ == "NumpyDenseEncoder"
    assert type(numpy_side.bundle.sparse).__name__ == "NumpySparseEncoder"


def test_one_shot_query_never_imports_torch(small_workspace):
    ws, _ = small_workspace
    env = dict(os.environ, PYTHONPATH=str(REPO))
    report = "{'ids': [h.doc_id for h in r.results], 'torch': 'torch' in sys.modules}"
    mine = _query_in_a_fresh_process(ws, "hybrid", "run a function on many inputs in parallel", report, env,
                                     backend="numpy")
    ref = _query_in_a_fresh_process(ws, "hybrid", "run a function on many inputs in parallel", report, env)
    assert mine == {"ids": ref["ids"], "torch": False}
    assert ref["torch"] is True


def test_wb_query_picks_numpy_unless_a_model_reranks(monkeypatch):
    from workbench.search.pipelines import parse_pipeline
    from workbench.search.searcher import one_shot_backend

    monkeypatch.delenv("WB_QUERY_BACKEND", raising=False)
    assert one_shot_backend(parse_pipeline("hybrid"), "cross-encoder") == "numpy"
    assert one_shot_backend(parse_pipeline("hybrid+rerank"), "maxsim") == "numpy"
    assert one_shot_backend(parse_pipeline("hybrid+rerank"), "cross-encoder") == "torch"
    monkeypatch.setenv("WB_QUERY_BACKEND", "torch")
    assert one_shot_backend(parse_pipeline("hybrid"), "cross-encoder") == "torch"


def test_numpy_queries_set_blas_threads_and_leave_torch_alone(monkeypatch):
    import torch
    from threadpoolctl import threadpool_info

    from workbench.encoders import device

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS loaded
    if not blas_threads():
        pytest.skip("no BLAS library threadpoolctl can see")
    monkeypatch.setenv("WB_QUERY_THREADS", "1")
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    with device.query_thread_limit(backend="numpy"):
        assert blas_threads() == {1}
        assert torch.get_num_threads() == torch_before
    assert blas_threads() == blas_before


def test_blas_loaded_after_the_first_query_is_limited_too():
    """A BLAS library loaded after the first query block (scipy brings its own OpenBLAS) kept its
    threads: the library view was taken once. A fresh process, so that scipy is not loaded yet."""
    import subprocess
    import sys

    pytest.importorskip("scipy")
    script = """
import os, numpy as np
from threadpoolctl import threadpool_info
from workbench.encoders import device
os.environ["WB_QUERY_THREADS"] = "1"
np.ones((4, 4)) @ np.ones((4, 4))
with device.query_thread_limit(backend="numpy"):
    pass
before = len([p for p in threadpool_info() if p["user_api"] == "blas"])
import scipy.linalg
after = len([p for p in threadpool_info() if p["user_api"] == "blas"])
with device.query_thread_limit(backend="numpy"):
    print(before, after, sorted(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after, threads = proc.stdout.split(" ", 2)
    if int(after) <= int(before):
        pytest.skip("scipy shares numpy's BLAS here")
    assert threads.strip() == str([1] * int(after))


def test_explanations_agree_between_backends(small_workspace):
    """The numpy encoders are drop-ins for the torch ones wherever the engine reads an encoder:
    the TUI's explanations (SPLADE terms, MaxSim token matches) come out the same."""
    from workbench.search.explain import colbert_matches, sparse_explanation
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    torch_side, numpy_side = Searcher(ws), Searcher(ws, backend="numpy")
    query = "group consecutive items by key"
    chunk_id = torch_side.search(query, pipeline="hybrid", unit="chunk").results[0].chunk_id
    a, b = sparse_explanation(numpy_side, query, chunk_id), sparse_explanation(torch_side, query, chunk_id)
    def clear(e):  # terms away from the zero edge (one may keep a ~1e-7 weight the other drops)
        return {(t.term, t.literal) for t in e.terms if t.weight > 1e-3}

    assert clear(a) == clear(b) and len(clear(a)) > 3
    assert a.score == pytest.approx(b.score, abs=1e-4) and a.score > 0
    x, y = colbert_matches(numpy_side, query, chunk_id), colbert_matches(torch_side, query, chunk_id)
    assert [(m.query_token, m.doc_token, m.doc_span) for m in x.matches] == \
        [(m.query_token, m.doc_token, m.doc_span) for m in y.matches]


# -- projection heads and trained ColBERT folders (torch.save'd heads read without torch) ----------------


def test_torch_state_reader_equals_torch_load(tmp_path):
    import collections

    import torch

    from workbench.encoders.tensor_files import read_torch_state

    state = {"weight": torch.randn(5, 7), "bias": torch.randn(5), "transposed": torch.randn(7, 5).t(),
             "half": torch.randn(3, 2).half(), "bf16": torch.randn(4, 4).bfloat16(), "ids": torch.arange(6).reshape(2, 3),
             "scalar": torch.tensor(3.0), "slice": torch.randn(10, 4)[2:5], "empty": torch.zeros(0, 3)}
    torch.save(state, tmp_path / "h.pt")
    got = read_torch_state(tmp_path / "h.pt")
    assert set(got) == set(state)
    for key, value in state.items():
        ref = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
        assert got[key].shape == ref.shape and got[key].dtype == ref.dtype and np.array_equal(got[key], ref), key
    # anything but tensors in a dict is refused (torch.load gives the answer then), as is a non-zip file
    torch.save({"w": torch.randn(2), "x": collections.Counter()}, tmp_path / "other.pt")
    assert read_torch_state(tmp_path / "other.pt") is None
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    assert read_torch_state(tmp_path / "junk.pt") is None
    assert read_torch_state(tmp_path / "missing.pt") is None


def _head(path: Path, dim: int, hidden: int, bias: bool, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    layer = torch.nn.Linear(hidden, dim, bias=bias)
    torch.save({k: v.detach().contiguous() for k, v in layer.state_dict().items()}, path)


@pytest.mark.parametrize("bias", [False, True])
def test_dense_encoder_with_a_projection_head_equals_torch(tmp_path, bias):
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder

    path = _path("all-MiniLM-L6-v2")
    _head(tmp_path / "colbert_head.pt", 48, 384, bias, seed=2)
    texts = _real_texts()[:8]
    mine = NumpyDenseEncoder.load(path, colbert_head=str(tmp_path / "colbert_head.pt"))
    ref = DenseEncoder(path, colbert_head=str(tmp_path / "colbert_head.pt"))
    assert mine is not None and mine.colbert_dim == ref.colbert_dim == 48
    a, b = mine.encode(texts, tokens=True), ref.encode(texts, tokens=True)
    np.testing.assert_allclose(a.dense, b.dense, atol=1e-5, rtol=0)
    for x, y in zip(a.tokens, b.tokens):
        assert x.shape == y.shape and x.shape[1] == 48
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=1e-3, rtol=0)
    _head(tmp_path / "wide.pt", 48, 100, bias, seed=2)  # a head for another width: the torch path decides
    assert NumpyDenseEncoder.load(path, colbert_head=str(tmp_path / "wide.pt")) is None


@pytest.mark.parametrize("augment", [False, True])
def test_trained_colbert_folder_equals_torch(tmp_path, augment):
    from workbench.encoders.colbert import COLBERT_HEAD, COLBERT_META, ColbertEncoder
    from workbench.encoders.numpy_bert import NumpyColbertEncoder

    folder = tiny_bert(tmp_path / "colbert", layers=2, seed=5)
    _head(folder / COLBERT_HEAD, 16, 32, False, seed=6)
    meta = {"dim": 16, "query_marker_id": 1, "document_marker_id": 2, "query_max_length": 12,
            "document_max_length": 40, "query_augmentation": augment, "mask_token_id": 103}
    (folder / COLBERT_META).write_text(json.dumps(meta))
    mine, ref = NumpyColbertEncoder.load(str(folder)), ColbertEncoder(str(folder))
    assert mine is not None and mine.dim == ref.dim == 16
    queries = ["group consecutive items by key", "a query long enough to be cut at twelve tokens by the marker rule"]
    assert mine.query_ids(queries) == ref.query_ids(queries)
    docs = _real_texts()[:4]
    assert mine.document_ids(docs) == ref.document_ids(docs)
    for x, y in zip(mine.encode_queries(queries) + mine.encode_documents(docs),
                    ref.encode_queries(queries) + ref.encode_documents(docs)):
        assert x.dtype == np.float16 and x.shape == y.shape
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=2e-3, rtol=0)
    meta["dim"] = 8  # the head disagrees with the folder's word: the torch encoder raises the error
    (folder / COLBERT_META).write_text(json.dumps(meta))
    assert NumpyColbertEncoder.load(str(folder)) is None


def test_queries_run_in_float32_where_documents_run_in_bf16(small_workspace, monkeypatch):
    """With documents in bf16 (forced here; the default on a CPU with native bf16 and on CUDA), the
    torch path (`wb eval`, `wb query --queries`, the TUI) encodes queries in float32, as the numpy
    backend (`wb query`) does: the same vectors within 1e-5 and the same answers, while documents
    keep bf16. (Before, 13 of 60 SciFact queries ordered their top 10 otherwise.)"""
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder
    from workbench.search.searcher import Searcher

    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    path = _path("all-MiniLM-L6-v2")
    texts = _real_texts()[:8] + UNICODE
    torch_side, numpy_side = DenseEncoder(path), NumpyDenseEncoder.load(path)
    a, b = torch_side.encode(texts, tokens=True, queries=True), numpy_side.encode(texts, tokens=True)
    np.testing.assert_allclose(a.dense, b.dense, atol=1e-5, rtol=0)
    for x, y in zip(a.tokens, b.tokens):
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=1e-3, rtol=0)
    assert np.abs(torch_side.encode(texts).dense - b.dense).max() > 1e-4  # documents: bf16
    ws, _ = small_workspace
    eval_side, query_side = Searcher(ws), Searcher(ws, backend="numpy")
    for text in ["group consecutive items by key", "remove a directory tree", "itertools.groupby"]:
        for pipeline in ("dense", "sparse", "dense+bm25"):  # (MaxSim itself multiplies in bf16 there: maxsim.py)
            x, y = eval_side.search(text, pipeline=pipeline), query_side.search(text, pipeline=pipeline)
            assert [h.doc_id for h in x.results] == [h.doc_id for h in y.results]
            for p, q in zip(x.results, y.results):
                assert p.score == pytest.approx(q.score, rel=1e-5, abs=1e-5)


def test_a_trained_colbert_folder_encodes_queries_in_float32_where_documents_run_in_bf16(tmp_path, monkeypatch):
    from workbench.encoders.colbert import COLBERT_HEAD, COLBERT_META, ColbertEncoder
    from workbench.encoders.numpy_bert import NumpyColbertEncoder

    folder = tiny_bert(tmp_path / "colbert", layers=2, seed=5)
    _head(folder / COLBERT_HEAD, 16, 32, False, seed=6)
    (folder / COLBERT_META).write_text(json.dumps(
        {"dim": 16, "query_marker_id": 1, "document_marker_id": 2, "query_max_length": 32,
         "document_max_length": 40, "query_augmentation": True, "mask_token_id": 103}))
    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    mine, ref = NumpyColbertEncoder.load(str(folder)), ColbertEncoder(str(folder))
    queries = _real_texts()[:6]
    for x, y in zip(mine.encode_queries(queries), ref.encode_queries(queries)):
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=1e-3, rtol=0)


@pytest.mark.parametrize("exact_colbert", [True, False])
def test_colbert_scores_of_the_torch_backend_equal_numpys_where_products_run_in_bf16(small_workspace, monkeypatch,
                                                                                    exact_colbert):
    """With bf16 matmuls (forced here; the default on a CPU with native bf16) the torch backend (the
    TUI, `wb eval`, `wb query --queries`) gives `wb query`'s ColBERT answers: the same documents in
    the same order with the same scores (1e-5). Candidates are scored in fp32; the whole-corpus
    bf16 MaxSim only picks the rows that can reach the top (``bf16_maxsim_error``), which are then
    scored in fp32. Before, bf16 products moved scores by up to ~5e-3 and reordered near-ties."""
    from workbench.search.searcher import Searcher

    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    ws, _ = small_workspace
    config = ws.config()
    if not exact_colbert:
        config = replace(config, index=replace(config.index, colbert_exact_max_tokens=0))
    torch_side, numpy_side = Searcher(ws, config=config), Searcher(ws, config=config, backend="numpy")
    assert torch_side._exact_colbert() is exact_colbert
    for text in ["group consecutive items by key", "itertools.groupby", "remove a directory tree",
                 "sleep for a while", "cache function results"]:
        for pipeline in ("colbert", "hybrid", "hybrid+rerank"):
            for k in (3, 10):
                a = torch_side.search(text, pipeline=pipeline, k=k).results
                b = numpy_side.search(text, pipeline=pipeline, k=k).results
                assert [h.doc_id for h in a] == [h.doc_id for h in b], (text, pipeline, k)
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5, rel=1e-5)


def test_the_bf16_maxsim_bound_holds_and_keeps_the_exact_top():
    """``bf16_maxsim_error`` bounds the bf16-product MaxSim's distance to the exact one on random unit
    tokens (query norms of 1 and of 3), and ``rows_that_can_rank`` always holds the exact top k."""
    import torch

    from workbench.search.maxsim import bf16_maxsim_error, maxsim_numpy, rows_that_can_rank

    rng = np.random.default_rng(3)
    for scale in (1.0, 3.0):
        for trial in range(20):
            q = rng.standard_normal((int(rng.integers(3, 32)), 48)).astype(np.float32)
            q = scale * q / np.linalg.norm(q, axis=1, keepdims=True)
            base = rng.standard_normal(48).astype(np.float32)  # near-ties: documents around one direction
            docs = []
            for _ in range(60):
                d = base + 0.3 * rng.standard_normal((int(rng.integers(1, 20)), 48)).astype(np.float32)
                d /= np.linalg.norm(d, axis=1, keepdims=True)
                docs.append(torch.from_numpy(d).bfloat16().float().numpy())  # stored as bf16
            exact = maxsim_numpy(q, docs)
            approx = np.array([(torch.from_numpy(q).bfloat16() @ torch.from_numpy(d).bfloat16().T).float()
                               .amax(dim=1).sum().item() for d in docs], dtype=np.float32)
            bound = bf16_maxsim_error(q)
            assert np.abs(approx - exact).max() <= bound, (scale, trial)
            for k in (1, 5, 20):
                near = rows_that_can_rank(approx, k, bound)
                assert set(np.argsort(-exact, kind="stable")[:k]) <= set(near.tolist())
