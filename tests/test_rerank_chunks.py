"""The MaxSim reranker scores a document by its best chunk over ALL its chunks, whatever the first
stage retrieved (it scored only the chunks some first-stage list held, so a document's rerank score
depended on the pipeline)."""

from __future__ import annotations

from dataclasses import replace

from conftest import copy_small_corpus, require_models

FILLER = " ".join(f"qwv{i} plorb" for i in range(40))  # nonsense: low MaxSim
RELEVANT = ("To remove a whole directory tree recursively, with every file and subdirectory "
            "beneath it, call shutil.rmtree on the path. Errors raised while removing entries "
            "can be handled by an onexc callback. ") * 3


def test_maxsim_rerank_scores_every_chunk_of_a_document(tmp_path):
    require_models()
    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "time/sleep.md", "heapq/overview.md"])
    (corpus / "notes.md").write_text(f"# Notes\n\nzyxquux {FILLER}\n\n{RELEVANT}\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    searcher = Searcher(ws)
    cat = searcher.catalog
    rows = cat.rows_of_doc[next(d for d in cat.doc_ids if d.endswith("notes.md"))]
    assert len(rows) >= 2
    query = "zyxquux erase folder contents"
    q = searcher.encode_queries([query], {"dense", "colbert"})[0]
    maxsim = searcher.maxsim_rows(q.tokens, rows)
    bm25_rows, _ = searcher.run_modes(q, ("bm25",), 10)["bm25"]
    # the setting: BM25 retrieves only the first chunk, a later one has the higher MaxSim
    assert set(bm25_rows.tolist()) & set(rows) == {rows[0]}
    assert maxsim.max() > maxsim[0] + 0.05
    saved = searcher.config
    searcher.config = replace(saved, rerank=replace(saved.rerank, interpolation=0.0))  # the reranker's own score
    try:
        got = {h.doc_id: h.score for h in searcher.search(query, pipeline="bm25+rerank", k=5).results}
        colbert = {h.doc_id: h.score for h in searcher.search(query, pipeline="colbert", k=cat.size).results}
    finally:
        searcher.config = saved
    doc = cat.doc_ids[rows[0]]
    assert abs(got[doc] - float(maxsim.max())) < 1e-4
    assert abs(got[doc] - colbert[doc]) < 1e-4  # the same document score as the colbert pipeline's
