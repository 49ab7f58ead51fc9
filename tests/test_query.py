"""Query pipelines, the --json schema, and exactness of the sparse and ColBERT scorers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

from workbench.search.maxsim import maxsim_numpy

PIPELINES = ["dense", "colbert", "sparse", "bm25", "hybrid", "hybrid+rerank", "bm25+rerank"]
QUERIES = [
    "itertools.groupby",
    "remove a directory and everything in it",
    "get a random element from a list",
    "pause the program for a few seconds",
    "cache the results of a function call",
    "run a function on many inputs in parallel",
]


def wb(*args: str, workspace=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if workspace is not None:
        env["WB_WORKSPACE"] = str(workspace)
    return subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_pipeline_answers_and_ranks(small_searcher, pipeline):
    res = small_searcher.search("remove a directory and everything in it", pipeline=pipeline, k=5)
    assert res.pipeline == pipeline
    assert 1 <= len(res.results) <= 5
    assert [h.rank for h in res.results] == list(range(1, len(res.results) + 1))
    scores = [h.score for h in res.results]
    assert scores == sorted(scores, reverse=True)
    assert len({h.doc_id for h in res.results}) == len(res.results)  # documents, not chunks


def test_meaning_and_keyword_queries_find_their_documents(small_searcher):
    top = lambda q, p: small_searcher.search(q, pipeline=p, k=3).results[0].doc_id  # noqa: E731
    assert top("itertools.groupby", "bm25") == "itertools/groupby.md"
    assert top("pause the program for a few seconds", "dense") == "time/sleep.md"
    top3 = [h.doc_id for h in small_searcher.search("remove a directory and everything in it", k=3).results]
    assert "shutil/rmtree.md" in top3
    assert top("itertools.groupby", "hybrid") == "itertools/groupby.md"


def test_hybrid_hits_carry_every_mode_rank(small_searcher):
    res = small_searcher.search("itertools.groupby", pipeline="hybrid", k=3)
    first = res.results[0]
    assert set(first.ranks) == {"dense", "colbert", "sparse", "bm25"}
    assert set(first.scores) == set(first.ranks)


def test_chunk_unit_returns_chunks(small_searcher):
    res = small_searcher.search("groupby key function", pipeline="bm25", k=5, unit="chunk")
    ids = [h.chunk_id for h in res.results]
    assert len(ids) == len(set(ids))
    assert all("#" in i for i in ids)


def test_search_many_equals_search(small_searcher):
    many = small_searcher.search_many(QUERIES[:3], pipeline="hybrid", k=5)
    for q, res in zip(QUERIES[:3], many):
        single = small_searcher.search(q, pipeline="hybrid", k=5)
        assert [h.doc_id for h in res.results] == [h.doc_id for h in single.results]


def test_instruction_reaches_the_query_only(small_searcher):
    res = small_searcher.search("groupby", pipeline="dense", instruction="python-docs", k=3)
    assert res.instruction.startswith("Given a question about Python")
    rendered = small_searcher.settings.templates.render_query("groupby", res.instruction)
    assert rendered == f"{res.instruction}: groupby"
    plain = small_searcher.search("groupby", pipeline="dense", k=3)
    assert plain.results[0].score != res.results[0].score  # the prefix changed the query vector


def test_sparse_search_matches_brute_force_dot_product(small_searcher):
    """Tantivy bit-plane scoring ranks like the exact float dot product (top-10 overlap >= 0.99)."""
    s = small_searcher
    table = s.lance.read_columns(["chunk_key", "sparse_ids", "sparse_weights"])
    keys = table.column("chunk_key").to_numpy()
    ids = table.column("sparse_ids").to_pylist()
    weights = table.column("sparse_weights").to_pylist()
    overlaps = []
    for q in s.encode_queries(QUERIES, {"sparse"}):
        qv = dict(zip(q.sparse_ids.tolist(), q.sparse_weights.tolist()))
        exact = np.array([sum(qv.get(t, 0.0) * w for t, w in zip(i, ws)) for i, ws in zip(ids, weights)])
        brute = set(keys[np.argsort(-exact)[:10]].tolist())
        got, _ = s.tantivy.sparse_search(q.sparse_ids, q.sparse_weights, 10)
        overlaps.append(len(brute & set(got.tolist())) / 10)
    assert np.mean(overlaps) >= 0.99


@pytest.mark.parametrize("exact", [True, False])
def test_colbert_matches_brute_force_maxsim(small_workspace, exact):
    """Both the exact path and the candidate path rank like brute-force float32 MaxSim."""
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    searcher = Searcher(ws)
    if not exact:
        cfg = searcher.config
        searcher.config = replace(cfg, index=replace(cfg.index, colbert_exact_max_tokens=0))
    assert searcher._exact_colbert() is exact
    matrix, mapping = searcher.tokens
    docs = [np.asarray(matrix.bits[matrix.starts[r]: matrix.starts[r] + matrix.lengths[r]]) for r in mapping]
    import torch

    docs = [torch.from_numpy(d).view(torch.bfloat16).float().numpy() for d in docs]
    overlaps = []
    for q in searcher.encode_queries(QUERIES, {"dense", "colbert", "sparse", "bm25"}):
        brute = np.argsort(-maxsim_numpy(q.tokens, docs))[:10]
        for modes in (("colbert",), ("dense", "colbert", "sparse", "bm25")):  # alone, and inside hybrid
            rows, _ = searcher.run_modes(q, modes, 100)["colbert"]
            overlaps.append(len(set(brute.tolist()) & set(rows[:10].tolist())) / 10)
    assert np.mean(overlaps) >= 0.99



def test_colbert_inside_a_fusion_scores_the_other_lists_heads_exactly(small_workspace):
    """Above the exact threshold, ColBERT inside hybrid scores the union of the other modes' top
    ``hybrid_colbert_depth`` each: every one of them, each exactly (brute-force MaxSim), no other."""
    import torch

    from workbench.encoders.device import pick_dtype
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    searcher = Searcher(ws)
    cfg = searcher.config
    # a CPU with native bf16 scores in bf16 (8 bits of mantissa: ~0.4% a product); else exact float32
    tol = 1e-4 if pick_dtype(torch.device("cpu")) == torch.float32 else 1e-2
    matrix, mapping = searcher.tokens
    docs = [torch.from_numpy(np.asarray(matrix.bits[matrix.starts[r]: matrix.starts[r] + matrix.lengths[r]]))
            .view(torch.bfloat16).float().numpy() for r in mapping]
    modes = ("dense", "colbert", "sparse", "bm25")
    sizes = {}
    for head in (5, 20, 0):
        searcher.config = replace(cfg, index=replace(cfg.index, colbert_exact_max_tokens=0, hybrid_colbert_depth=head,
                                                     hybrid_colbert_extra=0))
        q = searcher.encode_queries([QUERIES[0]], set(modes))[0]
        lists = searcher.run_modes(q, modes, 100)
        heads = [rows[: head or None] for mode, (rows, _) in lists.items() if mode != "colbert"]
        union = set(np.concatenate(heads).tolist())
        rows, scores = lists["colbert"]
        assert set(rows.tolist()) <= union and len(rows) == min(len(union), 100)  # its own list: 100 deep
        brute = maxsim_numpy(q.tokens, [docs[r] for r in rows])
        np.testing.assert_allclose(scores, brute, rtol=tol, atol=1e-4)
        assert list(scores) == sorted(scores, reverse=True)
        sizes[head] = len(union)
    assert sizes[5] < sizes[20] < sizes[0]

def test_fusion_equals_ranx():
    from ranx import Run, fuse

    from workbench.search.fusion import reciprocal_rank, weighted_sum

    runs = {
        "a": {"d1": 3.0, "d2": 2.0, "d3": 0.5},
        "b": {"d2": 10.0, "d4": 4.0, "d1": 1.0},
    }
    ranx_runs = [Run({"q": runs["a"]}), Run({"q": runs["b"]})]
    wsum = fuse(ranx_runs, norm="min-max", method="wsum", params={"weights": [0.7, 0.3]})
    ours = weighted_sum(runs, {"a": 0.7, "b": 0.3})
    for doc, value in wsum.to_dict()["q"].items():
        assert ours[doc] == pytest.approx(value, abs=1e-6)
    rrf = fuse(ranx_runs, norm=None, method="rrf", params={"k": 60})
    ours_rrf = reciprocal_rank(runs, {"a": 1.0, "b": 1.0}, k=60)
    for doc, value in rrf.to_dict()["q"].items():
        assert ours_rrf[doc] == pytest.approx(value, abs=1e-9)
    # tied scores (BM25 ties; duplicate files tie in every mode), listed best first as the searcher
    # lists them, not in id order: RRF ranked ties by id, so the fused scores contradicted the ranks
    tied = {"a": {"z1": 2.0, "d2": 1.0, "c3": 1.0, "b4": 0.5}, "b": {"c3": 4.0, "b4": 4.0, "z1": 3.0, "d2": 1.0}}
    rrf = fuse([Run({"q": tied["a"]}), Run({"q": tied["b"]})], norm=None, method="rrf", params={"k": 60})
    ours_rrf = reciprocal_rank(tied, {"a": 1.0, "b": 1.0}, k=60)
    assert ours_rrf == pytest.approx(rrf.to_dict()["q"], abs=1e-12)
    assert ours_rrf["d2"] == pytest.approx(1 / 62 + 1 / 64) and ours_rrf["c3"] == pytest.approx(1 / 63 + 1 / 61)


def test_rrf_keeps_duplicate_documents_in_index_order_with_the_scores_their_ranks_give(tmp_path):
    """Two identical documents tie in every mode and every list holds them in index order (zdup
    first); RRF ranked ties by id, so adup, second in every list, got the first rank's 1/61s. Now
    each hit's score is sum_m w_m / (60 + the rank it shows in m), and zdup leads."""
    from conftest import require_models

    require_models()
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    text = "heapq.nsmallest(n, iterable) returns the n smallest elements of a dataset, using a heap."
    docs = [("zdup", text), ("adup", text), ("b1", "shutil.rmtree deletes a directory tree."),
            ("c1", "time.sleep suspends the calling thread for a number of seconds."),
            ("d1", "functools.lru_cache memoizes a function's results by its arguments.")]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs))
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    cfg = ws.config()
    searcher = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, method="rrf")))
    for pipeline in ("bm25", "hybrid", "sparse+bm25"):
        hits = searcher.search("heapq nsmallest", pipeline=pipeline, k=5).results
        assert [h.doc_id for h in hits[:2]] == ["zdup", "adup"], pipeline
        if "+" in pipeline or pipeline == "hybrid":
            for hit in hits:
                want = sum(cfg.fusion.weights[m] / (60 + r) for m, r in hit.ranks.items())
                assert hit.score == pytest.approx(want, rel=1e-9), (pipeline, hit.doc_id, hit.ranks)


def test_json_schema_is_pinned(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", "itertools.groupby", "--json", "-k", "3", "--pipeline", "hybrid+rerank", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert set(data) == {"query", "instruction", "pipeline", "models", "unit", "results", "timings_ms"}
    assert data["pipeline"] == "hybrid+rerank" and data["query"] == "itertools.groupby"
    assert set(data["models"]) == {"dense", "colbert", "sparse", "reranker"}
    assert "zero-shot" in data["models"]["colbert"] and "zero-shot" in data["models"]["reranker"]
    hit = data["results"][0]
    assert set(hit) == {"rank", "doc_id", "chunk_id", "path", "title", "score", "scores", "ranks", "snippet"}
    assert isinstance(hit["rank"], int) and isinstance(hit["score"], float)
    assert set(hit["ranks"]) <= {"dense", "colbert", "sparse", "bm25"}
    assert {"total", "encode_dense", "fusion", "rerank"} <= set(data["timings_ms"])


def test_query_on_missing_workspace_is_one_line_exit_2(tmp_path):
    proc = wb("query", "anything", "--json", workspace=tmp_path / "nowhere")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "wb index" in proc.stderr


def test_index_missing_path_is_one_line_exit_2(tmp_path):
    proc = wb("index", str(tmp_path / "missing"), workspace=tmp_path / "ws")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"wb: error: no such file or folder: {tmp_path / 'missing'}"


def test_unknown_pipeline_is_one_line_exit_2(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", "x", "--pipeline", "nope", workspace=ws.root)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_query_with_models_not_indexed_yet_says_how_to_build_them(small_workspace, tmp_path):
    """A model that can fill its role but has no index yet: the `wb index` that builds it. One that
    cannot fill the role at all: why (indexing would not help)."""
    from workbench.models.cache import resolve_model_path

    ws, _ = small_workspace
    splade = shutil.copytree(resolve_model_path("splade-tiny"), tmp_path / "other-splade")
    proc = wb("query", "x", "--model", f"sparse={splade}", workspace=ws.root)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"wb index --model sparse={splade}" in proc.stderr
    proc = wb("query", "x", "--model", "sparse=all-MiniLM-L6-v2", workspace=ws.root)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot fill the sparse role: it is not a masked-LM" in proc.stderr and "wb index" not in proc.stderr


def test_workspace_config_naming_other_models_than_its_index_is_answered_by_the_index_and_said(
        small_workspace, tmp_path):
    """wb.toml edited to name another sparse model, not re-indexed yet: `wb query` answers from the
    index with the models that built it, and says so (labels included); what builds on the index
    (mining, tuning) refuses it."""
    from workbench.errors import WorkspaceError
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws, _ = small_workspace
    other = tmp_path / "ws"
    shutil.copytree(ws.root, other)
    from workbench.models.cache import resolve_model_path

    splade = shutil.copytree(resolve_model_path("splade-tiny"), tmp_path / "my-splade")  # another sparse model
    (other / "wb.toml").write_text((other / "wb.toml").read_text().replace('sparse = "splade-tiny"', f'sparse = "{splade}"'))
    proc = wb("query", "remove a directory", "-p", "sparse", "--json", workspace=other)
    assert proc.returncode == 0, proc.stderr
    note = " ".join(proc.stderr.split())
    assert ("wb.toml changed this index's settings (sparse) and no rebuild has begun: the old index answers "
            "meanwhile, with the models that built it; `wb index` rebuilds it") in note
    answer = json.loads(proc.stdout)
    assert answer["models"]["sparse"] == "splade-tiny"  # the model that answered
    assert "no rebuild has begun" in answer["note"]  # scripts see it too
    with pytest.raises(WorkspaceError, match=r"built with other models \(sparse differ\)"):
        Searcher(Workspace(other))


@pytest.mark.parametrize("pipeline", ["bm25", "dense", "hybrid"])
def test_k_documents_even_when_the_fusion_depth_holds_fewer(small_workspace, pipeline):
    """Depth counts chunks; a user asking for k documents gets k when the corpus has them."""
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    cfg = ws.config()
    shallow = replace(cfg, fusion=replace(cfg.fusion, depth=3))
    searcher = Searcher(ws, config=shallow)
    n_docs = len(set(searcher.catalog.doc_ids))
    assert searcher.catalog.size > n_docs  # some documents have several chunks
    deep = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, depth=searcher.catalog.size)))
    reachable = [h.doc_id for h in deep.search("iterator functions", pipeline=pipeline, k=n_docs).results]
    assert len(reachable) >= n_docs - 1  # bm25 cannot reach a document without a query term
    ids = [h.doc_id for h in searcher.search("iterator functions", pipeline=pipeline, k=n_docs).results]
    assert len(ids) == len(set(ids)) == len(reachable)
    if pipeline != "hybrid":  # single modes are exact: the same documents in the same order
        assert ids == reachable


@pytest.mark.parametrize("matmul_dtype", ["bfloat16", "float32"])
def test_candidate_scorer_equals_brute_force_on_ragged_chunks(matmul_dtype, monkeypatch):
    """The padded-buffer MaxSim equals float32 brute force for chunks of different lengths, in any
    order, reused buffers included (a longer call then a shorter one), with 1 and 2 copy threads;
    in bf16 (products rounded to bf16) and in float32 (the bf16 bits widened: exact), as on a CPU
    with or without native bf16. The whole-matrix MaxSim agrees."""
    import torch

    from workbench.search.maxsim import CandidateScorer, maxsim_tensor

    monkeypatch.setenv("WB_DTYPE", matmul_dtype)
    atol = 0.03 if matmul_dtype == "bfloat16" else 1e-5

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, size=300)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    vecs = rng.normal(size=(int(lengths.sum()), 24)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    bf16 = torch.from_numpy(vecs).to(torch.bfloat16)
    bits = bf16.view(torch.int16).numpy()
    exact = bf16.float().numpy()
    scorer = CandidateScorer(bits, starts, lengths)
    q = torch.nn.functional.normalize(torch.randn(7, 24), dim=-1).to(torch.bfloat16).float()
    for rows, threads in ((rng.permutation(300)[:200], 2), (np.array([5, 3]), 1), (rng.permutation(300)[:90], 1)):
        got = scorer.score(q, rows, threads=threads)
        ref = maxsim_numpy(q.numpy(), [exact[starts[r] : starts[r] + lengths[r]] for r in rows])
        assert got.shape == (len(rows),)
        assert np.allclose(got, ref, atol=atol), np.abs(got - ref).max()
    assert scorer.score(q, np.array([], dtype=np.int64)).shape == (0,)
    whole = maxsim_tensor(q, bf16, lengths, block_tokens=1000)  # blocks of whole chunks
    ref = maxsim_numpy(q.numpy(), [exact[starts[r] : starts[r] + lengths[r]] for r in range(300)])
    assert np.allclose(whole, ref, atol=atol), np.abs(whole - ref).max()


def test_fusing_a_chosen_set_of_modes(small_searcher):
    """`dense+bm25` fuses exactly those two modes; the order of the names does not matter; a bad
    combination is one UsageError."""
    from workbench.errors import UsageError

    two = small_searcher.search("itertools.groupby", pipeline="dense+bm25", k=5)
    assert two.results and all(set(h.scores) <= {"dense", "bm25"} for h in two.results)
    assert any(set(h.scores) == {"dense", "bm25"} for h in two.results)
    swapped = small_searcher.search("itertools.groupby", pipeline="bm25+dense", k=5)
    assert [h.doc_id for h in swapped.results] == [h.doc_id for h in two.results]
    three = small_searcher.search("run a function on many inputs in parallel", pipeline="colbert+sparse+rerank", k=3)
    assert all(set(h.scores) <= {"colbert", "sparse"} for h in three.results) and "rerank" in three.timings_ms
    for bad in ("dense+dense", "hybrid+dense", "dense+"):
        with pytest.raises(UsageError, match="unknown pipeline"):
            small_searcher.search("x", pipeline=bad)


def test_a_k_or_depth_beyond_the_index_returns_the_whole_index(small_searcher):
    """`-k 2147483648` aborted the process in Tantivy (it allocates the limit up front) and 2**70 was
    an OverflowError: a list is never longer than the index, so such a -k returns every document."""
    docs = len(set(small_searcher.catalog.doc_ids))
    matching = [h.doc_id for h in small_searcher.search("heap", pipeline="bm25", k=docs).results]
    for k in (2**31, 2**70):
        assert [h.doc_id for h in small_searcher.search("heap", pipeline="bm25", k=k).results] == matching
        assert len(small_searcher.search("heap", pipeline="hybrid+rerank", k=k, rerank_depth=k).results) == docs


def test_the_maxsim_reranker_reads_the_instruction_whatever_the_first_stage(small_searcher):
    """`bm25+rerank -i X`: the MaxSim reranker scores with the instructed query's token vectors,
    exactly as `colbert -i X` does (it encoded the bare query when colbert was not among the modes,
    while --json said the instruction applied); bm25 alone says the instruction is not used."""
    from dataclasses import replace

    searcher = small_searcher
    saved = searcher.config
    searcher.config = replace(saved, rerank=replace(saved.rerank, interpolation=0.0))  # the reranker's own score
    try:
        query, instr = "sort a list by a key", "Given a question about Python, retrieve the section that answers it"
        plain = searcher.search(query, pipeline="bm25+rerank", k=5)
        told = searcher.search(query, pipeline="bm25+rerank", k=5, instruction=instr)
        colbert = searcher.search(query, pipeline="colbert", k=searcher.catalog.size, instruction=instr)
    finally:
        searcher.config = saved
    by_doc = {h.doc_id: h.score for h in colbert.results}
    assert told.results and all(abs(h.score - by_doc[h.doc_id]) < 1e-4 for h in told.results)
    assert [h.score for h in told.results] != [h.score for h in plain.results]
    assert told.instruction_used and told.to_json()["instruction_used"] is True
    bm25 = searcher.search(query, pipeline="bm25", k=3, instruction=instr)
    assert bm25.to_json()["instruction_used"] is False and "instruction_used" not in plain.to_json()
    settings = searcher.settings
    searcher.settings = replace(settings, query_template="query: {text}")  # a template that drops it
    try:
        assert not searcher.search(query, pipeline="dense", k=3, instruction=instr).instruction_used
    finally:
        searcher.settings = settings


def test_snapshot_sparse_dot_equals_brute_force():
    """The snapshot's CSR sparse vectors score any rows as the plain dict dot product does."""
    from workbench.store.snapshot import SparseMatrix, _save_sparse

    rng = np.random.default_rng(0)
    rows = []
    for n in rng.integers(0, 12, size=40):
        ids = rng.choice(60, size=int(n), replace=False).astype(np.int32)
        rows.append((ids, rng.random(int(n)).astype(np.float32)))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sparse.npz"
        _save_sparse(path, [(np.array([len(i) for i, _ in rows]), np.concatenate([i for i, _ in rows]),
                             np.concatenate([w for _, w in rows]))])
        with np.load(path) as a:
            matrix = SparseMatrix(a["indptr"], a["ids"], a["weights"])
    q_ids = rng.choice(60, size=15, replace=False)
    q_w = rng.random(15).astype(np.float32)
    q = dict(zip(q_ids.tolist(), q_w.tolist()))
    pick = np.array([5, 0, 39, 5, 17, 22], dtype=np.int64)  # any order, repeats allowed
    brute = [sum(q.get(int(t), 0.0) * float(w) for t, w in zip(*rows[r])) for r in pick]
    assert matrix.dot(pick, q_ids, q_w).tolist() == pytest.approx(brute, abs=1e-5)
    assert matrix.dot(np.zeros(0, np.int64), q_ids, q_w).shape == (0,)


@pytest.mark.parametrize("method", ["weighted", "rrf"])
def test_asking_for_more_results_than_the_fusion_depth_keeps_the_fused_top(small_workspace, method):
    """-k above [fusion] depth used to fuse deeper lists, so min-max (or the ranks) moved and the
    top of `-k 30` differed from `-k 3`. Now only each list's first `depth` chunks are fused: the
    head and its scores are those of a shallow query, brute-forced here from the shallow lists."""
    from workbench.search.fusion import fuse
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    cfg = ws.config()
    searcher = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, depth=4, method=method)))
    modes = ("dense", "sparse", "bm25")
    for unit in ("chunk", "doc"):
        shallow = searcher.search("iterator functions", pipeline="dense+sparse+bm25", k=3, unit=unit).results
        deep = searcher.search("iterator functions", pipeline="dense+sparse+bm25", k=30, unit=unit).results
        assert len(deep) > 8  # far deeper than 4 chunks a mode
        # and each hit says the same of the modes (chunk, per-mode scores and ranks: only of the lists
        # as fused; they were read from the deeper lists); two encodings of one query differ by float
        # noise (threaded matmuls), hence approx
        for pipeline, a, b in [("dense+sparse+bm25", shallow, deep[:3])] + [
                (p, searcher.search("lazy iterator", pipeline=p, k=3, unit=unit).results,
                 searcher.search("lazy iterator", pipeline=p, k=40, unit=unit).results[:3])
                for p in ("hybrid", "dense+colbert")]:
            assert [(h.chunk_id, h.ranks, set(h.scores)) for h in b] == [(h.chunk_id, h.ranks, set(h.scores)) for h in a]
            for x, y in zip(a, b):
                assert y.scores == pytest.approx(x.scores, rel=1e-4), pipeline
        q = searcher.encode_queries(["iterator functions"], set(modes))[0]
        lists = searcher.run_modes(q, modes, 4)  # exactly what a shallow query fuses
        runs = {m: {k: s for k, (s, _r) in searcher._by_unit(rows, sc, unit).items()} for m, (rows, sc) in lists.items()}
        fused = fuse(runs, cfg.fusion.weights, method, cfg.fusion.rrf_k)
        head = {h.doc_id if unit == "doc" else h.chunk_id: h.score for h in deep if h.score > 0}
        # every document the shallow query fuses above 0, with its shallow score; the rest score 0
        # (the query is encoded again here: min-max over near scores turns its float noise, ~1e-7,
        # into relative differences up to ~1e-6 (6e-7 seen on a loaded machine), hence rel=1e-5)
        assert head == pytest.approx({key: v for key, v in fused.items() if v > 0}, rel=1e-5, abs=1e-6)
        assert all(h.score == 0 for h in deep[len(head):])


def test_a_mode_at_weight_0_keeps_its_documents_as_candidates_and_all_at_0_is_refused(small_workspace):
    """A fused mode of weight 0 scores its documents 0 (as ranx fuses them), so they still fill -k;
    a fused pipeline whose modes all weigh 0 is refused in one line (it answered nothing, exit 0)."""
    from workbench.errors import UsageError
    from workbench.search.searcher import Searcher

    from workbench.search.fusion import fuse

    runs = {"dense": {"a": 0.9, "b": 0.5, "c": 0.1}, "bm25": {"d": 7.0, "a": 3.0}}
    for method in ("weighted", "rrf"):
        fused = fuse(runs, {"dense": 1.0, "bm25": 0.0}, method)
        assert set(fused) == {"a", "b", "c", "d"} and fused["d"] == 0
        assert fused == fuse({"dense": runs["dense"]}, {"dense": 1.0}, method) | {"d": 0.0}
    ws, _ = small_workspace
    cfg = ws.config()
    weights = {**cfg.fusion.weights, "bm25": 0.0}
    searcher = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, weights=weights)))
    searcher.config = replace(cfg, fusion=replace(cfg.fusion, weights={**weights, "dense": 0.0}))
    with pytest.raises(UsageError, match="every mode of pipeline dense\\+bm25 has weight 0"):
        searcher.search("shutil rmtree", pipeline="dense+bm25", k=5)
    assert searcher.search("shutil rmtree", pipeline="dense", k=5).results  # a mode alone is not fused


def test_complete_fusion_scores_every_candidate_in_every_mode(small_workspace):
    """[fusion] complete = true: each fused candidate gets its exact dense, sparse and ColBERT score
    (not only where it made that mode's top depth), and the ranking is the min-max weighted sum of
    those exact scores, recomputed here by brute force from LanceDB's stored vectors."""
    import torch

    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    cfg = ws.config()
    shallow = replace(cfg, fusion=replace(cfg.fusion, depth=4, complete=True))
    searcher = Searcher(ws, config=shallow)
    table = searcher.lance.read_columns(["chunk_key", "vector", "sparse_ids", "sparse_weights"])
    row_of = searcher.catalog.row_of
    rows = [row_of[int(k)] for k in table.column("chunk_key").to_numpy()]
    vectors = dict(zip(rows, np.asarray(table.column("vector").to_pylist(), dtype=np.float32)))
    sparse = dict(zip(rows, zip(table.column("sparse_ids").to_pylist(), table.column("sparse_weights").to_pylist())))
    matrix, mapping = searcher.tokens
    modes = ("dense", "sparse", "colbert")
    q = searcher.encode_queries(["iterator functions"], set(modes))[0]
    plain = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, depth=4))).run_modes(q, modes, 4)
    lists = searcher.run_modes(q, modes, 4)
    union = set().union(*(set(r.tolist()) for r, _ in plain.values()))
    assert max(len(r) for r, _ in plain.values()) == 4 < len(union)  # the plain lists miss candidates
    qv = dict(zip(q.sparse_ids.tolist(), q.sparse_weights.tolist()))
    for mode, (got_rows, got_scores) in lists.items():
        assert set(got_rows.tolist()) == union, mode
        assert list(got_scores) == sorted(got_scores, reverse=True)
        for row, score in zip(got_rows.tolist(), got_scores.tolist()):
            if mode == "dense":
                expected = float(vectors[row] @ q.dense)
            elif mode == "sparse":
                expected = sum(qv.get(t, 0.0) * w for t, w in zip(*sparse[row]))
            else:
                r = mapping[row]
                doc = torch.from_numpy(np.asarray(matrix.bits[matrix.starts[r]: matrix.starts[r] + matrix.lengths[r]]))
                expected = float(maxsim_numpy(q.tokens, [doc.view(torch.bfloat16).float().numpy()])[0])
            assert score == pytest.approx(expected, rel=2e-2, abs=2e-3), (mode, row)
    # the answer: documents fused from those complete lists, every hit scored in every mode
    result = searcher.search("iterator functions", pipeline="dense+sparse+colbert", k=3)  # depth stays 4
    assert all(set(h.scores) == set(modes) for h in result.results)
    cat = searcher.catalog
    per_doc = {m: {} for m in modes}
    for m, (r, sc) in lists.items():
        for row, score in zip(r.tolist(), sc.tolist()):
            per_doc[m].setdefault(cat.doc_ids[row], score)
    from workbench.search.fusion import weighted_sum

    fused = weighted_sum(per_doc, shallow.fusion.weights)
    expected = sorted(fused, key=lambda d: (-fused[d], d))[:3]
    assert [h.doc_id for h in result.results] == expected


def test_a_snapshot_without_sparse_vectors_gets_them_from_lancedb(small_workspace, tmp_path):
    """Snapshots written before sparse.npz existed: complete fusion adds the file (from LanceDB,
    written aside and renamed in) instead of failing or scoring the sparse mode as zero."""
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws, _ = small_workspace
    shutil.copytree(ws.root, tmp_path / "ws")
    old = Workspace(tmp_path / "ws")
    (sparse_file,) = (old.root / "snapshot").glob("v*/sparse.npz")
    sparse_file.unlink()
    cfg = old.config()
    searcher = Searcher(old, config=replace(cfg, fusion=replace(cfg.fusion, complete=True)))
    assert searcher.snapshot.sparse is None
    hits = searcher.search("iterator functions", pipeline="dense+sparse", k=3).results
    assert sparse_file.exists() and not list(sparse_file.parent.glob("sparse.tmp*"))
    assert all(set(h.scores) == {"dense", "sparse"} for h in hits)
    fresh = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, complete=True)))
    assert [h.doc_id for h in fresh.search("iterator functions", pipeline="dense+sparse", k=3).results] == \
        [h.doc_id for h in hits]


def test_a_query_rebuilding_a_missing_snapshot_leaves_another_process_build_alone(small_workspace, tmp_path):
    """The snapshot is gone (a killed run): the next query rebuilds it from LanceDB and clears old
    snapshot folders, but never the build a live process (a `wb index` publishing) is writing."""
    import subprocess
    import sys

    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    ws, _ = small_workspace
    shutil.copytree(ws.root, tmp_path / "ws")
    copy = Workspace(tmp_path / "ws")
    snap = copy.root / "snapshot"
    shutil.rmtree(snap)
    snap.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a build its process left behind when killed
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    release = threading.Event()
    builder = threading.Thread(target=release.wait)  # another thread of this process building (the TUI)
    builder.start()
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    try:
        live, dead = snap / f"tmp-v99-{writer.pid}", snap / f"tmp-v98-{gone.pid}"
        live_thread = snap / f"tmp-v97-{os.getpid()}-{builder.ident}"
        dead_thread = snap / f"tmp-v96-{os.getpid()}-{ended.ident}"
        for folder in (live, dead, live_thread, dead_thread, snap / "v1", snap / "v99999"):
            folder.mkdir()
            (folder / "part").write_bytes(b"x")
        hits = Searcher(copy).search("iterator functions", pipeline="dense", k=3).results
        assert [h.doc_id for h in hits] == [h.doc_id for h in Searcher(ws).search("iterator functions", pipeline="dense", k=3).results]
        assert (live / "part").exists() and not dead.exists() and not (snap / "v1").exists()
        assert (live_thread / "part").exists() and not dead_thread.exists()
        assert (snap / "v99999" / "part").exists()  # a newer version a `wb index` published meanwhile stays
    finally:
        writer.kill()
        writer.wait()
        release.set()
        builder.join()


def test_equal_scores_keep_the_modes_own_order(tmp_path):
    """Two documents with the same text score the same under BM25: the result list keeps BM25's
    own order (each hit's bm25 rank is its rank), as for every single-mode pipeline."""
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    text = "# Apples\n\nApples and pears grow in the orchard behind the mill.\n"
    for folder, name in (("first", "z.md"), ("second", "a.md")):  # z.md is indexed before a.md
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(text)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "first")
    Indexer(ws).run(tmp_path / "second")
    searcher = Searcher(ws)
    for pipeline in ("bm25", "dense", "sparse", "colbert"):
        hits = searcher.search("apples orchard", pipeline=pipeline, k=2).results
        assert hits[0].score == pytest.approx(hits[1].score, abs=1e-6), pipeline
        assert [h.ranks[pipeline] for h in hits] == [1, 2], (pipeline, [(h.doc_id, h.ranks) for h in hits])


def test_best_first_equals_a_full_sort_by_score_then_position():
    """Brute force: every depth's answer is the full (-score, position) sort cut at that depth, so a
    deeper answer begins with a shallower one, ties included."""
    from workbench.search.searcher import best_first

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 4, size=n).astype(np.float32)  # many ties
        full = sorted(range(n), key=lambda i: (-scores[i], i))
        for depth in (1, 2, 5, n - 1, n, n + 3):
            assert best_first(scores, depth).tolist() == full[:max(depth, 0)]


def test_a_deeper_k_begins_with_the_shallower_answer_when_documents_tie(tmp_path, monkeypatch):
    """Duplicate files score exactly the same in every mode; `-k 20` still begins with `-k 3`'s
    documents, scores and per-mode ranks, for every pipeline and unit. (Queries on one thread: an
    fp32 query forward sums in an order that depends on the thread count ``query_threads`` picks
    from the load, ~1e-7 apart, and the scores are compared exactly here.)"""
    monkeypatch.setenv("WB_QUERY_THREADS", "1")
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    corpus = tmp_path / "corpus"
    text = "# Orchards\n\nApples and pears grow in the orchard behind the mill.\n"
    corpus.mkdir()
    for i, crop in enumerate(("wheat", "barley", "rye", "oats", "maize", "millet")):  # copies between others
        (corpus / f"{i}-apples.md").write_text(text)
        (corpus / f"{i}-mill.md").write_text(f"# Mills\n\nThe mill grinds {crop} into flour for the bakery.\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    cfg = ws.config()  # shallow lists (depth 2) cut through the ties; -k 20 reads the whole index
    searcher = Searcher(ws, config=replace(cfg, fusion=replace(cfg.fusion, depth=2),
                                           rerank=replace(cfg.rerank, depth=2)))
    for pipeline in ("bm25", "dense", "sparse", "colbert", "hybrid", "hybrid+rerank"):
        for unit in ("doc", "chunk"):
            shallow = searcher.search("apples orchard mill", pipeline=pipeline, k=3, unit=unit).results
            deep = searcher.search("apples orchard mill", pipeline=pipeline, k=20, unit=unit).results
            assert [(h.doc_id, h.score, h.ranks) for h in deep[:3]] == \
                [(h.doc_id, h.score, h.ranks) for h in shallow], (pipeline, unit)


def test_a_rerank_keeps_the_first_stage_order_of_documents_it_scores_the_same(tmp_path):
    """Two copies of one text tie in every mode and under the MaxSim reranker: P+rerank lists them
    in P's order (dense: z.md, indexed first, before a.md), so a comparison of the two pipelines
    marks no rank change between them; they were ordered by id."""
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    text = "# Apples\n\nApples and pears grow in the orchard behind the mill.\n"
    for folder, name in (("first", "z.md"), ("second", "a.md")):  # z.md is indexed before a.md
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(text)
    (tmp_path / "second" / "mill.md").write_text("# Mills\n\nThe mill grinds wheat into flour.\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "first")
    Indexer(ws).run(tmp_path / "second")
    searcher = Searcher(ws)
    for pipeline in ("dense", "hybrid"):
        first = [h.doc_id for h in searcher.search("apples orchard", pipeline=pipeline, k=2).results]
        reranked = searcher.search("apples orchard", pipeline=pipeline + "+rerank", k=2).results
        assert reranked[0].score == pytest.approx(reranked[1].score, abs=1e-6)
        assert [h.doc_id for h in reranked] == first, pipeline
    assert first == ["a.md", "z.md"]  # hybrid's ties: best rank in any mode, then id
    assert [h.doc_id for h in searcher.search("apples orchard", pipeline="dense", k=2).results] == ["z.md", "a.md"]
