"""`wb query -p A,B` and `wb query --compare ROLE=NAME`: two systems on the same query, side by side,
each answer the one its system gives alone, the rank changes those two lists imply."""

from __future__ import annotations

import json

import pytest

from test_query import wb

QUERY = "remove a directory and everything in it"


def _ids(answer: dict) -> list[str]:
    return [h["doc_id"] for h in answer["results"]]


def _alone(ws, *args: str) -> dict:
    proc = wb("query", QUERY, "--json", "-k", "5", *args, workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _expected_changes(base: list[str], other: list[str]) -> tuple[list[dict], list[dict]]:
    """The rank changes, worked out by hand from the two lists."""
    changes = []
    for rank, doc in enumerate(other, 1):
        was = base.index(doc) + 1 if doc in base else None
        mark = "new" if was is None else "=" if was == rank else f"↑{was - rank}" if was > rank else f"↓{rank - was}"
        changes.append({"doc_id": doc, "rank": rank, "baseline_rank": was, "mark": mark})
    dropped = [{"doc_id": doc, "baseline_rank": i} for i, doc in enumerate(base, 1) if doc not in other]
    return changes, dropped


def test_two_pipelines_side_by_side_are_each_pipelines_own_answer(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", QUERY, "-p", "bm25,dense", "--json", "-k", "5", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    both = json.loads(proc.stdout)
    bm25, dense = _alone(ws, "-p", "bm25"), _alone(ws, "-p", "dense")
    assert both["labels"] == {"baseline": "bm25", "compared": "dense"}
    assert _ids(both["baseline"]) == _ids(bm25) and _ids(both["compared"]) == _ids(dense)
    assert [h["score"] for h in both["compared"]["results"]] == pytest.approx([h["score"] for h in dense["results"]], abs=1e-4)
    changes, dropped = _expected_changes(_ids(bm25), _ids(dense))
    assert both["changes"] == changes and both["dropped"] == dropped
    assert any(c["mark"] != "=" for c in changes)  # the two lists differ: the marks are tested, not all "="


def test_the_terminal_shows_one_table_with_the_moves(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", QUERY, "-p", "bm25,dense", "-k", "5", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    both = json.loads(wb("query", QUERY, "-p", "bm25,dense", "-k", "5", "--json", workspace=ws.root).stdout)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"bm25  vs  dense  for {QUERY}")
    rows = [line for line in lines if line.strip()[:2].rstrip().isdigit()]
    assert len(rows) == 5
    for row, left, right, change in zip(rows, both["baseline"]["results"], both["compared"]["results"], both["changes"]):
        assert f"[{left['doc_id']}]" in row and f"[{right['doc_id']}]" in row and row.rstrip().endswith(change["mark"])
    if both["dropped"]:
        assert any(line.strip().startswith("left the list:") for line in lines)


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_a_reranker_is_compared_on_the_same_index(small_workspace, tmp_path):
    """--compare reranker=CE: the same first stage reranked by another model; the compared side
    is what `--model reranker=CE` gives alone (the two sides share one set of encoders)."""
    from test_rerankers import _tiny_bert

    ws, _ = small_workspace
    ce = _tiny_bert(tmp_path / "ce", num_labels=1)
    proc = wb("query", QUERY, "-p", "hybrid+rerank", "--compare", f"reranker={ce}", "--json", "-k", "5",
              workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    both = json.loads(proc.stdout)
    maxsim = _alone(ws, "-p", "hybrid+rerank")
    cross = _alone(ws, "-p", "hybrid+rerank", "--model", f"reranker={ce}")
    assert _ids(both["baseline"]) == _ids(maxsim) and _ids(both["compared"]) == _ids(cross)
    assert [h["score"] for h in both["compared"]["results"]] == pytest.approx([h["score"] for h in cross["results"]], abs=1e-4)
    assert both["compared"]["models"]["reranker"] != both["baseline"]["models"]["reranker"]
    assert both["labels"]["compared"] == f"hybrid+rerank (reranker={ce})"


@pytest.mark.slow
def test_a_file_of_queries_compares_each(small_workspace, tmp_path):
    ws, _ = small_workspace
    queries = tmp_path / "q.txt"
    queries.write_text(f"{QUERY}\npause the program for a few seconds\n", encoding="utf-8")
    proc = wb("query", "--queries", str(queries), "-p", "bm25,hybrid", "--json", "-k", "3", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["query_id"] for r in rows] == ["1", "2"]
    second = wb("query", "pause the program for a few seconds", "-p", "hybrid", "--json", "-k", "3", workspace=ws.root)
    assert _ids(rows[1]["compared"]) == _ids(json.loads(second.stdout))
    assert rows[1]["changes"] == _expected_changes(_ids(rows[1]["baseline"]), _ids(rows[1]["compared"]))[0]


@pytest.mark.parametrize("args,says", [
    (["-p", "hybrid,hybrid"], "names one pipeline twice"),
    (["-p", "bm25,dense,hybrid"], "two to compare"),
    (["-p", "bm25,dense", "--trec"], "--trec writes one system's run"),
    (["--compare", "dense"], "--compare takes ROLE=NAME"),
    (["-p", "bm25+dense,dense+bm25"], "names one pipeline twice"),  # one pipeline, however it is spelled
    (["-p", "dense,"], "has an empty pipeline name"),
    (["-p", "hybrid,,dense"], "has an empty pipeline name"),
])
def test_comparison_mistakes_are_one_line_before_any_model_loads(tmp_path, args, says):
    proc = wb("query", "x", *args, workspace=tmp_path / "nowhere")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


def test_models_the_pipeline_does_not_run_are_refused(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", "x", "-p", "bm25", "--compare", "dense=all-MiniLM-L6-v2", workspace=ws.root)
    assert proc.returncode == 2 and "changes nothing for bm25" in proc.stderr
    proc = wb("query", "x", "-p", "hybrid", "--compare", "reranker=maxsim", workspace=ws.root)
    assert proc.returncode == 2 and "-p hybrid+rerank" in proc.stderr


def test_an_empty_query_is_refused_before_the_workspace_is_looked_for(tmp_path):
    proc = wb("query", "  ", "-p", "bm25,dense", workspace=tmp_path / "nowhere")
    assert proc.returncode == 2 and "the query is empty" in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [
    ["-p", "hybrid+rerank", "--compare", "reranker=maxsim"],  # the workspace's own reranker
    ["-p", "dense", "--model", "reranker=maxsim", "--compare", "reranker=maxsim"],
    ["-p", "dense", "--model", "dense=all-MiniLM-L6-v2", "--compare", "dense=all-MiniLM-L6-v2"],
])
def test_comparing_a_system_with_itself_is_refused(small_workspace, args):
    ws, _ = small_workspace
    proc = wb("query", "x", *args, workspace=ws.root)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "nothing to compare" in proc.stderr or "changes nothing" in proc.stderr, proc.stderr


def test_a_model_without_its_index_names_the_flag_given_and_the_index_to_build(small_workspace, tmp_path):
    from tiny_models import tiny_bert

    ws, _ = small_workspace
    dense = tiny_bert(tmp_path / "other-dense")
    proc = wb("query", "x", "-p", "hybrid+rerank", "--compare", f"dense={dense}", "--compare", "reranker=maxsim",
              workspace=ws.root)
    assert proc.returncode != 0 and proc.stdout == ""
    assert f"no index for --compare dense={dense} --compare reranker=maxsim yet" in proc.stderr, proc.stderr
    assert f"run `wb index --model dense={dense}` first" in proc.stderr  # no reranker: no index holds one
    proc = wb("query", "x", "--compare", "dense=no-such-model", workspace=ws.root)
    assert proc.returncode != 0 and "no built-in model, local folder or cached Hugging Face model named " \
        "'no-such-model'" in proc.stderr, proc.stderr


def test_chunks_are_compared_by_chunk_id(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", QUERY, "-p", "bm25,dense", "--unit", "chunk", "--json", "-k", "5", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    both = json.loads(proc.stdout)
    chunk_ids = [h["chunk_id"] for h in both["compared"]["results"]]
    assert [c["chunk_id"] for c in both["changes"]] == chunk_ids
    base = [h["chunk_id"] for h in both["baseline"]["results"]]
    assert [d["chunk_id"] for d in both["dropped"]] == [c for c in base if c not in chunk_ids]
    table = wb("query", QUERY, "-p", "bm25,dense", "--unit", "chunk", "-k", "5", workspace=ws.root).stdout
    rows = [line for line in table.splitlines() if line.strip()[:2].rstrip().isdigit()]
    for row, left, right in zip(rows, base, chunk_ids):
        assert f"[{left}]" in row and f"[{right}]" in row
