"""`wb query --queries FILE`: many queries, one model load, answers equal to one query at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.test_query import wb

QUERIES = [
    "remove a directory and everything in it",
    "pause the program for a few seconds",
    "cache the results of a function call",
]


def test_a_file_of_queries_answers_each_as_a_single_query_would(small_workspace, tmp_path, monkeypatch):
    """In float32: a file is answered through torch (as `wb eval`), a single query through numpy;
    on a CPU with native bf16 torch would encode in bf16."""
    monkeypatch.setenv("WB_DTYPE", "float32")
    ws, _ = small_workspace
    source = tmp_path / "queries.txt"
    source.write_text(f"{QUERIES[0]}\n\n  {QUERIES[1]}  \n{QUERIES[2]}\n", encoding="utf-8")
    proc = wb("query", "--queries", str(source), "--json", "-k", "4", workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    # one object a line, in file order, each with the number of its line (the blank line 2 skipped)
    assert [r["query_id"] for r in rows] == ["1", "3", "4"]
    assert [r["query"] for r in rows] == QUERIES
    for row in rows[:2]:
        single = wb("query", row["query"], "--json", "-k", "4", workspace=ws.root)
        assert single.returncode == 0, single.stderr
        alone = json.loads(single.stdout)
        assert [h["doc_id"] for h in row["results"]] == [h["doc_id"] for h in alone["results"]]
        assert [h["score"] for h in row["results"]] == pytest.approx([h["score"] for h in alone["results"]], abs=1e-4)
        assert set(row) == {"query_id", *alone}


def test_beir_queries_on_stdin_give_a_trec_run(small_workspace):
    ws, _ = small_workspace
    lines = "".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(QUERIES))
    trec = subprocess.run([sys.executable, "-m", "workbench.cli.main", "query", "--queries", "-", "--trec",
                           "-k", "3", "-p", "bm25"], input=lines, capture_output=True, text=True,
                          env=_env(ws.root), timeout=300)
    assert trec.returncode == 0, trec.stderr
    run = [line.split() for line in trec.stdout.splitlines()]
    assert all(len(fields) == 6 and fields[1] == "Q0" and fields[5] == "wb-bm25" for fields in run)
    for i, text in enumerate(QUERIES):
        mine = [fields for fields in run if fields[0] == f"q{i}"]
        assert [int(f[3]) for f in mine] == [1, 2, 3]
        scores = [float(f[4]) for f in mine]
        assert scores == sorted(scores, reverse=True)
        alone = json.loads(wb("query", text, "--json", "-k", "3", "-p", "bm25", workspace=ws.root).stdout)
        assert [f[2] for f in mine] == [h["doc_id"] for h in alone["results"]]
        # the score column is the score itself, not rounded: trec_eval and ranx sort by it, and
        # a rounding that made two scores equal would let them reorder the run by document id
        assert scores == [h["score"] for h in alone["results"]]


def _env(root) -> dict:
    return {**os.environ, "WB_WORKSPACE": str(root)}


def test_a_reader_that_leaves_early_ends_the_batch_quietly(small_workspace, tmp_path):
    ws, _ = small_workspace
    source = tmp_path / "many.txt"
    source.write_text("\n".join(QUERIES * 30) + "\n", encoding="utf-8")  # 90 queries: three slices
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "query", "--queries", str(source),
                             "--trec", "-k", "10", "-p", "bm25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(ws.root), text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141
    assert first.startswith("1 Q0 ")
    assert err == ""


@pytest.mark.parametrize("content,says", [
    ("\n  \n", "no queries"),
    ('{"_id": "a", "text": "x"}\n{"_id": "b"\n', ":2: malformed JSON"),
    ('{"_id": "a", "title": "x"}\n', "query 'a' has no \"text\""),
    ('{"_id": "a", "text": "x"}\n\n{"_id": "a", "text": "y"}\n', ":3: the query id 'a' is given twice (first on line 1)"),
    ('{"_id": "a", "text": "  "}\n', ":1: query 'a' has a blank \"text\""),
    ("query\tkind\nitertools.groupby\tkeyword\n", ":1: a tab in a query line"),
])
def test_a_bad_queries_file_is_one_line_exit_2(tmp_path, content, says):
    source = tmp_path / ("q.jsonl" if content.startswith("{") else "q.txt")
    source.write_text(content, encoding="utf-8")
    proc = wb("query", "--queries", str(source), workspace=tmp_path / "ws")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


@pytest.mark.parametrize("args,says", [
    (["x", "--queries", "q.txt"], "not both"),
    (["--queries", "missing.txt"], "cannot read"),
    (["x", "--json", "--trec"], "choose one"),
])
def test_query_argument_mistakes_are_one_line_exit_2(tmp_path, args, says):
    proc = wb("query", *args, workspace=tmp_path / "ws")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


def test_query_files_as_people_write_them(tmp_path):
    """A BOM is dropped; a text file whose first query starts with a brace is still text; JSON
    lines keep their ids and order."""
    from workbench.search.query_file import read_queries

    jsonl = tmp_path / "q.jsonl"
    jsonl.write_bytes("\ufeff".encode() + b'{"_id": "a", "text": "heapq"}\r\n{"id": 7, "text": "bisect"}\n')
    assert [(q.query_id, q.text) for q in read_queries(str(jsonl))] == [("a", "heapq"), ("7", "bisect")]
    text = tmp_path / "q.txt"
    text.write_bytes("\ufeff{x for x in y} set comprehension\n\nitertools.groupby\n".encode())
    assert [(q.query_id, q.text) for q in read_queries(str(text))] == [
        ("1", "{x for x in y} set comprehension"), ("3", "itertools.groupby")]
    # JSON strings may hold a raw U+2028 or U+0085 (json.dumps(ensure_ascii=False) writes them so) and
    # a line of text a form feed: none of them ends a line, so rows and line-number ids stay whole
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"_id": "a", "text": "groupby\u2028iterator\x85"}, ensure_ascii=False)
                   + "\n" + json.dumps({"_id": "b", "text": "csv"}) + "\n", encoding="utf-8")
    assert [(q.query_id, q.text) for q in read_queries(str(raw))] == [("a", "groupby\u2028iterator\x85"), ("b", "csv")]
    feed = tmp_path / "feed.txt"
    feed.write_text("groupby\x0cmore\r\nsecond\n", encoding="utf-8")
    assert [q.query_id for q in read_queries(str(feed))] == ["1", "2"]
    assert read_queries(str(feed))[1].text == "second"


def test_an_id_a_trec_line_cannot_carry_is_refused_before_any_model_loads(tmp_path):
    source = tmp_path / "q.jsonl"
    source.write_text('{"_id": "a b", "text": "heapq"}\n', encoding="utf-8")
    proc = wb("query", "--queries", str(source), "--trec", workspace=tmp_path / "nowhere")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "the query id 'a b' holds whitespace" in proc.stderr


def test_a_document_id_a_trec_line_cannot_carry_is_refused_before_any_line(tmp_path, capsys, monkeypatch):
    """A BEIR `_id` with a space: --trec is refused before the first run line (it failed at the
    query whose hits held it, leaving a cut-off run file behind), whichever queries are asked."""
    from tiny_models import run_wb

    from conftest import require_models

    require_models()
    corpus = tmp_path / "beir" / "corpus.jsonl"
    corpus.parent.mkdir()
    corpus.write_text('{"_id": "d1", "title": "", "text": "whales are large mammals"}\n'
                      '{"_id": "d8 with space", "title": "", "text": "eels are long fish"}\n')
    ws = tmp_path / "ws"
    code, _out, err = run_wb(capsys, monkeypatch, "index", str(corpus.parent), "-w", str(ws))
    assert code == 0, err
    queries = tmp_path / "q.txt"
    queries.write_text("whales\neels\n")
    code, out, err = run_wb(capsys, monkeypatch, "query", "--queries", str(queries), "-p", "bm25", "--trec",
                            "-k", "1", "-w", str(ws))
    assert code == 2 and out == "" and "'d8 with space'" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_wb(capsys, monkeypatch, "query", "--queries", str(queries), "-p", "bm25", "--json",
                            "-k", "1", "-w", str(ws))
    assert code == 0 and "d8 with space" in out


def test_human_output_to_a_reader_that_leaves_ends_quietly_too(small_workspace):
    ws, _ = small_workspace
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "query", "remove a directory", "-k", "30",
                             "-p", "bm25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(ws.root), text=True)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141 and err == ""


def test_rerank_options_on_a_pipeline_without_rerank_are_said_and_ignored(small_workspace):
    ws, _ = small_workspace
    plain = wb("query", "remove a directory", "-p", "bm25", "--json", workspace=ws.root)
    proc = wb("query", "remove a directory", "-p", "bm25", "--json", "--rerank-depth", "3", workspace=ws.root)
    assert proc.returncode == 0 and "--rerank-depth applies to +rerank pipelines: ignored for bm25" in proc.stderr
    strip = lambda out: [(h["doc_id"], h["score"]) for h in json.loads(out)["results"]]  # noqa: E731
    assert strip(proc.stdout) == strip(plain.stdout)


def test_tsv_query_files_with_a_header_or_in_ms_marco_layout(tmp_path):
    from conftest import SAMPLE
    from workbench.errors import InputError
    from workbench.search.query_file import read_queries

    sample = read_queries(str(SAMPLE.parent / "python-docs.queries.tsv"))  # query, kind, expected_doc_id
    assert len(sample) == 12 and sample[0].text == "itertools.groupby" and sample[0].query_id == "2"
    marco = tmp_path / "queries.tsv"
    marco.write_text("1048585\twhat is paula deen's brother\n\n2\tAndrogen receptor define\n", encoding="utf-8")
    assert [(q.query_id, q.text) for q in read_queries(str(marco))] == [
        ("1048585", "what is paula deen's brother"), ("2", "Androgen receptor define")]
    headed = tmp_path / "headed.tsv"
    headed.write_text("text\tqid\nheapq\tq9\nbisect\tq9\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"headed.tsv:3: the query id 'q9' is given twice"):
        read_queries(str(headed))
    headed.write_text("qid\tquery\nq1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"headed.tsv:2: no query text in column 2"):
        read_queries(str(headed))
    marco.write_text("q1\tvitamin D\n\tfolic acid\n", encoding="utf-8")  # a row whose id is blank
    with pytest.raises(InputError, match=r"queries.tsv:2: no query id in column 1 \(id<TAB>text\)"):
        read_queries(str(marco))
    # other header names are headers (not searched as a query), a query whose text is a column
    # name is data (was taken for the header: its line lost, the next ids line numbers), and a
    # third field in id<TAB>text is said, not dropped
    for header in ("id\tquestion", "qid\tquery_text", "query_id\tq"):
        headed.write_text(f"{header}\n1\tfoo bar\n2\tbaz\n", encoding="utf-8")
        assert [(q.query_id, q.text) for q in read_queries(str(headed))] == [("1", "foo bar"), ("2", "baz")]
    marco.write_text("q1\tText\nq2\tother\n", encoding="utf-8")
    assert [(q.query_id, q.text) for q in read_queries(str(marco))] == [("q1", "Text"), ("q2", "other")]
    broken = tmp_path / "queries.jsonl"  # a .jsonl whose first line is broken was searched as text
    broken.write_text('{"_id": "a", "text": "x"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"queries.jsonl:1"):
        read_queries(str(broken))
    marco.write_text("1\tfoo\tbar extra\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"queries.tsv:1: 3 tab-separated fields where id<TAB>text has 2"):
        read_queries(str(marco))


@pytest.mark.parametrize("args", [["models"], ["--help"], ["runs"]])
def test_every_command_meets_a_reader_that_left_with_exit_141(tmp_path, args):
    """`wb models | head -1`, `wb --help | head`: a closed pipe ends any command quietly with 141, as
    `wb query` (click and rich ended them with a bare 1, a failure's status)."""
    (tmp_path / "ws").mkdir()  # `wb runs` lists a workspace's runs: there is one (without runs)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], stdout=write_end,
                              stderr=subprocess.PIPE, env=_env(tmp_path / "ws"), text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


def test_a_lone_surrogate_in_a_query_file_is_replaced_or_named_by_line(tmp_path, capsys, monkeypatch):
    """`{"text": "\\ud800 whales"}` was an internal UnicodeEncodeError in the bm25 search: its text is
    replaced as the corpus reader replaces it (U+FFFD), and an id no run file could carry is refused
    naming file:line."""
    from tiny_models import run_wb

    corpus = tmp_path / "beir" / "corpus.jsonl"
    corpus.parent.mkdir()
    corpus.write_text('{"_id": "d1", "title": "", "text": "whales are large mammals"}\n')
    ws = tmp_path / "ws"
    assert run_wb(capsys, monkeypatch, "index", str(corpus.parent), "-w", str(ws))[0] == 0
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "a", "text": "\\ud800 whales"}\n')
    code, out, err = run_wb(capsys, monkeypatch, "query", "--queries", str(queries), "-p", "bm25", "--json",
                            "-w", str(ws))
    assert code == 0 and '"d1"' in out and "\ufffd whales" in out, err
    queries.write_text('{"_id": "a", "text": "whales"}\n{"_id": "\\ud800", "text": "whales"}\n')
    code, out, err = run_wb(capsys, monkeypatch, "query", "--queries", str(queries), "-p", "bm25", "-w", str(ws))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"wb: error: {queries}:2: query id '\\ud800' is not valid Unicode (a lone surrogate)" in err, err
