"""``wb eval``: a tiny BEIR dataset built from real prose, run through the CLI entry point.

The reference metrics below are computed by hand from the TREC run files (trec_eval's formulas
for binary relevance), independently of ranx.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE, require_models
from workbench.errors import UsageError
from tiny_models import run_wb as wb

DOCS = [
    "itertools/groupby.md", "itertools/islice.md", "shutil/rmtree.md", "shutil/copytree.md",
    "random/functions-for-sequences.md", "time/sleep.md", "heapq/overview.md", "json/encoders-and-decoders.md",
    "tempfile/temporarydirectory.md", "functools/lru_cache.md", "multiprocessing/introduction.md",
    "bisect/overview.md", "copy/overview.md", "gzip/overview.md", "hashlib/overview.md", "secrets/overview.md",
    "textwrap/overview.md", "csv/reader-objects.md", "csv/writer-objects.md", "pathlib/path.unlink.md",
    "pathlib/path.rename.md", "sqlite3/tutorial.md", "statistics/median_grouped.md", "subprocess/run.md",
]
QUERIES = {
    "q1": ("itertools.groupby", {"itertools-groupby": 1}),
    "q2": ("remove a directory tree and everything in it", {"shutil-rmtree": 1}),
    "q3": ("pause the program for a few seconds", {"time-sleep": 1}),
    "q4": ("cache the results of an expensive function call", {"functools-lru_cache": 1}),
    "q5": ("compress a file with gzip", {"gzip-overview": 2}),
    "q6": ("generate a secure random token for a password reset", {"secrets-overview": 1, "random-functions-for-sequences": 1}),
    "q7": ("read rows from a CSV file", {"csv-reader-objects": 1, "csv-writer-objects": 0}),
}
TEXT_CHARS = 900
METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")


def doc_id(name: str) -> str:
    return name.removesuffix(".md").replace("/", "-")


def make_dataset(root: Path, *, queries=QUERIES, extra_qrels: list[str] = (), split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as fh:
        for name in DOCS:
            lines = (SAMPLE / name).read_text().splitlines()
            title = lines[0].lstrip("# ").strip()
            text = "\n".join(lines[1:]).strip()[:TEXT_CHARS]  # short documents keep the test fast
            fh.write(json.dumps({"_id": doc_id(name), "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as fh:
        for qid, (text, _rel) in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
        fh.write(json.dumps({"_id": "q-unjudged", "text": "how do I parse a date"}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"]
    rows += [f"{qid}\t{d}\t{s}" for qid, (_t, rel) in queries.items() for d, s in rel.items()]
    rows += list(extra_qrels)
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def read_trec(path: Path) -> dict[str, list[tuple[str, int, float]]]:
    run: dict[str, list[tuple[str, int, float]]] = {}
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and tag
        run.setdefault(qid, []).append((doc, int(rank), float(score)))
    for rows in run.values():
        assert [r for _d, r, _s in rows] == list(range(1, len(rows) + 1))
        scores = [s for _d, _r, s in rows]
        assert scores == sorted(scores, reverse=True)
    return run


def reference_metrics(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    """trec_eval-style binary-relevance metrics of one ranked list."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    rr = next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0.0)
    hits, ap = 0, 0.0
    for i, d in enumerate(ranked[:100]):
        if d in relevant:
            hits += 1
            ap += hits / (i + 1)
    return {"ndcg@10": dcg / idcg, "mrr@10": rr, "recall@100": len(set(ranked[:100]) & relevant) / len(relevant),
            "map@100": ap / len(relevant)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    require_models()
    return make_dataset(tmp_path_factory.mktemp("eval") / "tinydocs")


@pytest.fixture(scope="module")
def first_run(dataset, tmp_path_factory):
    """One full eval through the eval cache (set by $WB_EVAL_CACHE), then a second one."""
    cache = tmp_path_factory.mktemp("cache")
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("WB_EVAL_CACHE", str(cache))
    results = []
    try:  # capsys is function-scoped: capture by hand
        for extra in (["--run-dir", str(runs), "--per-query"], []):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                from workbench.cli.main import main

                mp.setattr(sys, "argv", ["wb", "eval", str(dataset), "--pipeline", "bm25,dense,hybrid", "--json", *extra])
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code
            results.append((code, out.getvalue(), err.getvalue()))
    finally:
        mp.undo()
    return results, cache, runs


def test_json_schema_and_values(first_run, dataset):
    (code, out, err), _second = first_run[0]
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout; progress went to stderr
    report = json.loads(lines[0])
    assert {"dataset", "split", "queries", "depth", "baseline", "wall_seconds", "test", "pipelines", "per_query"} <= set(report)
    assert report["dataset"] == "tinydocs" and report["split"] == "test" and report["depth"] == 100
    assert report["queries"] == len(QUERIES)  # the unjudged query is not evaluated
    assert report["baseline"] == "bm25" and report["test"] == "paired t-test"
    assert [p["name"] for p in report["pipelines"]] == ["bm25", "dense", "hybrid"]
    base, *others = report["pipelines"]
    assert base["delta"] is None and base["p_value"] is None and base["wins"] is None and base["baseline"] is None
    assert [p["baseline"] for p in report["pipelines"][1:]] == ["bm25", "bm25"]
    # which models ran, per pipeline, labelled as `wb query --json` labels them (bm25 runs none)
    assert base["models"] == {} and set(others[0]["models"]) == {"dense"}
    assert set(others[1]["models"]) == {"dense", "colbert", "sparse"}
    assert "zero-shot" in others[1]["models"]["colbert"]
    for p in report["pipelines"]:
        assert set(p["metrics"]) == set(METRICS)
        assert all(0.0 <= v <= 1.0 for v in p["metrics"].values())
        assert p["seconds"] >= 0
    for p in others:
        assert set(p["delta"]) == set(METRICS) and set(p["p_value"]) == set(METRICS)
        for m in METRICS:
            assert p["delta"][m] == pytest.approx(p["metrics"][m] - base["metrics"][m], abs=2e-6)
            assert p["p_value"][m] is None or 0.0 <= p["p_value"][m] <= 1.0
        assert p["wins"] + p["losses"] + p["ties"] == len(QUERIES)
    for row in report["per_query"]:
        assert set(row) == {"pipeline", "vs", "query_id", "query", "baseline", "value", "delta"}
        assert row["pipeline"] in ("dense", "hybrid") and row["vs"] == "bm25" and row["delta"] != 0
        assert row["delta"] == pytest.approx(row["value"] - row["baseline"], abs=2e-6)
    # progress lines on stderr are JSON objects
    assert all("phase" in json.loads(line) for line in err.strip().splitlines() if line.startswith("{"))


def test_metrics_equal_a_hand_computation_from_the_run_files(first_run):
    (_code, out, _err), _ = first_run[0]
    report = json.loads(out)
    runs_dir = first_run[2]
    relevant = {q: {d for d, s in rel.items() if s > 0} for q, (_t, rel) in QUERIES.items()}
    for p in report["pipelines"]:
        path = runs_dir / (p["name"].replace("+", "_") + ".trec")
        run = read_trec(path)
        assert set(run) == set(QUERIES)  # every evaluated query, nothing else
        per_query = {q: reference_metrics([d for d, _r, _s in run[q]], relevant[q]) for q in QUERIES}
        for m in METRICS:
            expected = sum(v[m] for v in per_query.values()) / len(QUERIES)
            assert p["metrics"][m] == pytest.approx(expected, abs=1e-6), (p["name"], m)
    # a query whose only relevant document bm25 ranks first
    bm25 = read_trec(runs_dir / "bm25.trec")
    assert bm25["q1"][0][0] == "itertools-groupby"


def test_second_run_reuses_the_cached_index(first_run, dataset):
    results, cache, _ = first_run
    first, second = (json.loads(out) for _c, out, _e in results)
    assert results[1][0] == 0
    expected = cache / f"tinydocs-{hashlib.sha1(str(dataset / 'corpus.jsonl').encode()).hexdigest()[:8]}"
    assert first["workspace"] == str(expected) == second["workspace"]
    assert first["docs_indexed"] == len(DOCS)
    assert second["docs_indexed"] == 0  # nothing re-encoded
    assert [p["metrics"] for p in first["pipelines"]] == [p["metrics"] for p in second["pipelines"]]
    assert "per_query" not in second


def test_table_output(first_run, dataset, capsys, monkeypatch):
    cache = first_run[1]
    monkeypatch.setenv("WB_EVAL_CACHE", str(cache))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25,hybrid", "--top", "2")
    assert code == 0, err
    assert "nDCG@10" in out and "hybrid" in out and "W/L/T" in out and "paired t-test" in out
    flat = " ".join(out.split())  # the console wraps long lines
    assert "models: dense all-MiniLM-L6-v2 · colbert maxsim over all-MiniLM-L6-v2 tokens (zero-shot) · sparse" in flat
    assert "+rerank:" not in flat and "R@100 and MAP@100 only see" not in flat


def test_rerank_flags_without_a_rerank_pipeline_are_said_to_be_ignored(first_run, dataset, capsys, monkeypatch):
    """As wb query says it: --rerank-depth / --rerank-interpolation on pipelines that rerank nothing
    are named as ignored (a user who forgot +rerank learns why the figures did not move)."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(first_run[1]))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--rerank-depth", "5",
                        "--rerank-interpolation", "0.5")
    assert code == 0, err
    said = "--rerank-depth and --rerank-interpolation apply to +rerank pipelines: ignored (no pipeline reranks)"
    assert said in " ".join(out.split())  # under the table, with the report's other notes
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--rerank-depth", "5",
                        "--rerank-interpolation", "0.5", "--json")
    assert code == 0, err
    assert said in json.loads(out)["notes"]  # and in the JSON's notes, as on stderr
    assert {"phase": "note", "done": 0, "total": 0, "message": said} in [
        json.loads(line) for line in err.splitlines() if line.startswith("{")]
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25,bm25+rerank", "--rerank-depth", "5")
    assert code == 0, err
    assert "ignored" not in err


def test_flagembedding_folder_gives_the_same_figures(first_run, dataset, tmp_path, capsys, monkeypatch):
    flag = tmp_path / "flag"
    flag.mkdir()
    with open(flag / "corpus.jsonl", "w") as fh:
        for line in (dataset / "corpus.jsonl").read_text().splitlines():
            row = json.loads(line)
            fh.write(json.dumps({"id": row["_id"], "title": row["title"], "text": row["text"]}) + "\n")
    with open(flag / "test_queries.jsonl", "w") as fh:
        for qid, (text, _rel) in QUERIES.items():
            fh.write(json.dumps({"id": qid, "text": text}) + "\n")
    with open(flag / "test_qrels.jsonl", "w") as fh:
        for qid, (_t, rel) in QUERIES.items():
            for d, s in rel.items():
                fh.write(json.dumps({"qid": qid, "docid": d, "relevance": s}) + "\n")
    ws = Path(json.loads(first_run[0][0][1])["workspace"])
    code, out, err = wb(capsys, monkeypatch, "eval", str(flag), "-p", "bm25", "--json", "-w", str(ws))
    assert code == 0, err
    report = json.loads(out)
    assert report["format"] == "flagembedding" and report["docs_indexed"] == 0
    beir = json.loads(first_run[0][0][1])["pipelines"][0]["metrics"]
    assert report["pipelines"][0]["metrics"] == beir


@pytest.mark.parametrize(
    "case, message",
    [
        ("no-qrels", "missing qrels/test.tsv"),
        ("wrong-corpus", "holds none of the 2 documents test.tsv judges relevant"),
        ("duplicate-query", "query id 'q2' is given twice"),
        ("bad-row-after-header", "test.tsv:2: score 'x' is not a whole number"),
        ("fractional-grade", "score '0.5' is not a whole number"),
    ("first-line-fraction", "test.tsv:1: score '0.5' is not a whole number"),  # no header to hide it
    ("first-line-word-score", "test.tsv:1: score 'yes' is not a whole number"),  # numeric ids: no header
    ("space-in-trec-id", "test.tsv:1: expected 'query-id<TAB>corpus-id<TAB>score'"),
        ("unknown-query", "not in queries.jsonl"),
        ("empty-split", "is empty"),
        ("no-relevant", "is empty"),
        ("not-a-folder", "no such dataset folder"),
        ("bad-pipeline", "unknown pipeline"),
        ("missing-compare-model", "no such model folder: /nonexistent/model"),  # before the baseline is indexed
    ],
)
def test_bad_datasets_exit_2_with_one_line(case, message, tmp_path, capsys, monkeypatch):
    root = tmp_path / "ds"
    args = ["-p", "bm25"]
    if case == "no-qrels":
        make_dataset(root, split="train")
    elif case == "wrong-corpus":
        make_dataset(root, queries={"q1": ("itertools.groupby", {"no-such-doc": 1}),
                                    "q2": ("sleep", {"also-missing": 2, "time-sleep": 0})})
    elif case == "duplicate-query":
        make_dataset(root)
        with open(root / "queries.jsonl", "a") as fh:
            fh.write(json.dumps({"_id": "q2", "text": "another text for q2"}) + "\n")
    elif case == "bad-row-after-header":
        make_dataset(root)
        lines = (root / "qrels" / "test.tsv").read_text().splitlines()
        lines[1] = "q1\titertools-groupby\tx"  # not a second header
        (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    elif case in ("first-line-fraction", "space-in-trec-id", "first-line-word-score"):
        make_dataset(root)
        first = {"first-line-fraction": "q1\titertools-groupby\t0.5", "space-in-trec-id": "q1 my doc 1",
                 "first-line-word-score": "1\t31715818\tyes"}[case]
        (root / "qrels" / "test.tsv").write_text(first + "\nq2\tshutil-rmtree\t1\n")
    elif case == "fractional-grade":
        make_dataset(root, extra_qrels=["q3\tsecrets-overview\t0.5"])
    elif case == "unknown-query":
        make_dataset(root, extra_qrels=["q-missing\titertools-groupby\t1"])
    elif case == "empty-split":
        make_dataset(root, queries={})
    elif case == "no-relevant":
        make_dataset(root, queries={"q1": ("itertools.groupby", {"itertools-groupby": 0})})
    elif case == "not-a-folder":
        root = tmp_path / "nowhere"
    elif case == "missing-compare-model":
        make_dataset(root)
        args = ["-p", "bm25", "--compare", "dense=/nonexistent/model"]
    else:
        make_dataset(root)
        args = ["-p", "bm25,reranked"]
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), *args, "--json")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wb: error:") and message in lines[0], err
    if case == "no-qrels":
        assert "splits present: train" in lines[0]
    if case == "wrong-corpus":
        assert "'no-such-doc'" in lines[0] and "is it this dataset's corpus?" in lines[0]
    assert not (tmp_path / "cache").exists()  # refused before any index was built


def test_qrels_as_trec_and_beir_tools_read_them(tmp_path):
    """Documents the corpus lacks count as relevant and never retrieved (a note says so); TREC's
    space-separated qrels, a BOM in the qrels and in queries.jsonl, and graded relevance are read."""
    from workbench.eval.dataset import load_dataset

    root = make_dataset(tmp_path / "ds", extra_qrels=["q1\tno-such-doc\t1", "q2\talso-missing\t0"])
    data = load_dataset(root, "test")
    assert data.qrels["q1"] == {"itertools-groupby": 1, "no-such-doc": 1}  # in recall's denominator
    assert "also-missing" not in data.qrels["q2"]
    assert any("judges 2 document(s) not in corpus.jsonl" in n and "1 of them relevant" in n for n in data.notes)

    plain = load_dataset(make_dataset(tmp_path / "plain"), "test")
    trec = make_dataset(tmp_path / "trec")
    rows = [f"{q} 0 {d} {s}" for q, (_t, rel) in QUERIES.items() for d, s in rel.items()]
    (trec / "qrels" / "test.tsv").write_text("\ufeff" + "\n".join(rows) + "\n")
    queries = (trec / "queries.jsonl").read_text()
    (trec / "queries.jsonl").write_text("\ufeff" + queries)
    read = load_dataset(trec, "test")
    assert read.qrels == plain.qrels and read.queries == plain.queries
    tabs = make_dataset(tmp_path / "tabs")  # no header, a stray tab closing each line
    (tabs / "qrels" / "test.tsv").write_text("".join(f"{q}\t{d}\t{s}\t\n" for q, (_t, rel) in QUERIES.items()
                                                     for d, s in rel.items()))
    assert load_dataset(tabs, "test").qrels == plain.qrels
    assert read.qrels["q5"] == {"gzip-overview": 2} and read.notes == plain.notes == []


def test_tuning_scan_and_rerank_replay_match_the_query_path(first_run, dataset):
    """The fusion grid scan and the rerank replay in workbench.eval.tune reproduce the searcher."""
    from dataclasses import replace

    import numpy as np

    from workbench.config import MODES, FusionConfig
    from workbench.eval import tune
    from workbench.eval.dataset import load_dataset
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    data = load_dataset(dataset, "test")
    ws = Workspace(Path(json.loads(first_run[0][0][1])["workspace"]))
    searcher = Searcher(ws)
    qids = data.query_ids
    lists = searcher.mode_runs([data.queries[q] for q in qids], depths=(100,))[100]
    queries = [tune._Query(lst, data.qrels[q]) for q, lst in zip(qids, lists)]
    weights = np.array([[1.0, 1.0, 1.0, 1.0], [0.5, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    for method in ("weighted", "rrf"):
        scanned = tune.scan(queries, method, weights, 20)
        for row, value in zip(weights, scanned):
            fusion = FusionConfig(method=method, rrf_k=20, weights=dict(zip(MODES, row)))
            exact = tune._ranx_ndcg(data, tune._fused_run(qids, lists, fusion))
            assert value == pytest.approx(exact, abs=1e-9), (method, row)
    # graded qrels (TREC-COVID-like: 2 = relevant, 1 = partly): the scan's nDCG is ranx's graded one
    graded_qrels = {}
    for q, lst in zip(qids, lists):
        pool = sorted({d for scores in lst.values() for d in scores} - set(data.qrels[q]))
        graded_qrels[q] = {**{d: 2 for d in data.qrels[q]}, **{d: 1 for d in pool[:2]}}
    graded = replace(data, qrels=graded_qrels)
    queries = [tune._Query(lst, graded.qrels[q]) for q, lst in zip(qids, lists)]
    for row, value in zip(weights, tune.scan(queries, "weighted", weights)):
        fusion = FusionConfig(method="weighted", weights=dict(zip(MODES, row)))
        exact = tune._ranx_ndcg(graded, tune._fused_run(qids, lists, fusion))
        assert value == pytest.approx(exact, abs=1e-9), ("graded", row)
    # the searcher's own hybrid equals the fused lists
    hybrid = tune.searcher_run(searcher, data, "hybrid")
    fused = tune._fused_run(qids, lists, searcher.config.fusion)
    assert {q: list(r) for q, r in hybrid.items()} == {q: list(r) for q, r in fused.items()}
    # rerank replay at depth 5, interpolation 0.5 == the searcher's hybrid+rerank
    searcher.config = replace(searcher.config, rerank=replace(searcher.config.rerank, interpolation=0.0))
    raw = tune.searcher_run(searcher, data, "hybrid+rerank", rerank_depth=20)
    searcher.config = replace(searcher.config, rerank=replace(searcher.config.rerank, interpolation=0.5))
    real = tune.searcher_run(searcher, data, "hybrid+rerank", rerank_depth=5)
    replayed = tune.replay_rerank(hybrid, {q: dict(list(raw[q].items())[:20]) for q in qids}, 5, 0.5)
    for q in qids:
        assert list(real[q])[:10] == list(replayed[q])[:10]
        # fp32 MaxSim over batches of 5 and 20 chunks sums in another order (GEMM blocking, thread
        # count): ~1e-7 relative, which min-max scaling makes up to ~4e-6 on a score near 0
        assert [real[q][d] for d in list(real[q])[:5]] == pytest.approx(
            [replayed[q][d] for d in list(replayed[q])[:5]], rel=1e-5, abs=1e-7)


def test_a_workspace_holding_other_documents_is_refused(dataset, tmp_path, capsys, monkeypatch):
    """-w pointing at a workspace of other documents: exit 2, and nothing is added to it."""
    from conftest import copy_small_corpus

    from workbench.index.indexer import Indexer
    from workbench.store.manifest import Manifest
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(copy_small_corpus(tmp_path / "docs", ["time/sleep.md"]))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "-w", str(ws.root))
    assert code == 2 and "holds 1 document(s) that are not in" in err and "'time/sleep.md'" in err
    # the -w given before the command is eval's too (it evaluated in the eval cache instead)
    code, out, err = wb(capsys, monkeypatch, "-w", str(ws.root), "eval", str(dataset), "-p", "bm25")
    assert code == 2 and "holds 1 document(s) that are not in" in err
    for args in (("-w", "", "eval", str(dataset)), ("eval", str(dataset), "-w", " ")):  # an unset $WS
        code, out, err = wb(capsys, monkeypatch, *args, "-p", "bm25")
        assert code == 2 and "--workspace is empty" in err
    manifest = Manifest(ws.manifest_path)
    try:
        assert manifest.count_docs() == 1
    finally:
        manifest.close()


def test_tune_fuses_only_the_modes_of_the_given_pipeline(first_run, dataset, capsys, monkeypatch):
    """``wb eval --tune -p dense+bm25``: the chosen weights leave the other modes out, the check run
    is that pipeline and matches the scan, and no rerank is tuned; two pipelines are refused."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(first_run[1]))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "--tune", "--split", "test",
                        "-p", "dense+bm25", "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["pipeline"] == "dense+bm25"
    weights = outcome["chosen"]["fusion"]["weights"]
    assert weights["colbert"] == 0 and weights["sparse"] == 0 and weights["dense"] + weights["bm25"] > 0
    # the figures are labelled by the split tuned on, not "train" whatever the split
    assert outcome["split"] == "test" and "train" not in outcome
    assert set(outcome["tuning"]["single_modes_ndcg@10"]) == {"dense", "bm25"}
    assert outcome["tuning"]["hybrid_check_matches_scan"]
    assert outcome["chosen"]["rerank"] == {}
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "--tune", "--split", "test",
                        "-p", "dense,bm25", "--json")
    assert code == 2 and out == "" and "--tune takes one pipeline" in err
    # the human summary ends with the chosen settings as wb.toml lines that parse to them
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "--tune", "--split", "test", "-p", "dense+bm25")
    assert code == 0, err
    from workbench.config import parse_config

    snippet = out[out.index("[fusion]"):]
    assert "nothing was saved" in out and "test nDCG@10" in out
    figures = out[:out.index("#")]  # the lines above the snippet name the pipeline tuned, not hybrid
    assert "reference (dense+bm25)" in figures and "hybrid" not in figures
    parsed = parse_config(snippet)
    assert parsed.fusion.weights == {m: float(w) for m, w in weights.items()}
    assert parsed.fusion.method == outcome["chosen"]["fusion"]["method"]


def test_a_hand_edited_eval_cache_wb_toml_is_replaced_and_said(first_run, dataset, capsys, monkeypatch):
    """The eval cache evaluates the built-in defaults: its wb.toml, edited by hand, is rewritten by the
    next `wb eval` without -w, and a note says so (and where settings stick); a wb.toml wb eval
    wrote itself is rewritten silently."""
    from workbench.config import DEFAULT_TOML

    (_code, out, _err), _ = first_run[0]
    monkeypatch.setenv("WB_EVAL_CACHE", str(first_run[1]))
    config_path = Path(json.loads(out)["workspace"]) / "wb.toml"
    assert config_path.read_text() == DEFAULT_TOML
    config_path.write_text(DEFAULT_TOML.replace("[fusion]", "[fusion]\n# tuned by hand", 1))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--json")
    assert code == 0, err
    said = [n for n in json.loads(out)["notes"] if str(config_path) in n]
    assert len(said) == 1 and "replaced" in said[0] and "pass -w" in said[0]
    assert config_path.read_text() == DEFAULT_TOML
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--json")
    assert code == 0, err
    assert not [n for n in json.loads(out)["notes"] if str(config_path) in n]


def test_tune_says_where_its_settings_stick():
    """Tuned in the eval cache, the snippet points at a workspace of one's own and -w (the cache's
    wb.toml is rewritten on every run); tuned with -w, at that workspace's wb.toml."""
    from workbench.eval.tune import toml_snippet

    outcome = {"chosen": {"fusion": {"method": "weighted", "depth": 100, "rrf_k": 60,
                                     "weights": {"dense": 1.0, "colbert": 2.0, "sparse": 1.0, "bm25": 1.0}}},
               "tuning": {"single_modes_ndcg@10": {}, "rerank": {}}}
    cache = toml_snippet(outcome).splitlines()
    assert "evaluate with -w WS" in cache[0] and "rewrites it" in cache[1] and cache[2] == "[fusion]"
    own = toml_snippet(outcome, Path("/data/ws/wb.toml")).splitlines()
    assert own[0] == "# nothing was saved; to use these settings, put them in /data/ws/wb.toml:"


def test_tune_summary_names_the_split_and_pipeline_tuned():
    """A rerank tuned over ``dense+bm25`` on test is compared with ``dense+bm25`` alone, on test
    (it said "hybrid alone" whatever the pipeline)."""
    from workbench.eval.tune import summary

    rerank = {"best": {"depth": 20, "interpolation": 0.5, "ndcg@10": 0.9324}, "first_stage_ndcg@10": 0.9124}
    outcome = {"dataset": "d", "split": "test", "queries": 10, "pipeline": "dense+bm25",
               "chosen": {"fusion": {"method": "weighted", "depth": 100, "rrf_k": 60,
                                     "weights": {"dense": 1.0, "colbert": 0.0, "sparse": 0.0, "bm25": 0.25}}},
               "tuning": {"hybrid_checked": {"ndcg@10": 0.9124}, "fusion_reference_ndcg@10": {"configured": 0.9},
                          "single_modes_ndcg@10": {"dense": 0.85, "bm25": 0.79}, "rerank": {"maxsim": rerank}}}
    text = summary(outcome)
    assert "rerank (maxsim): depth=20 interpolation=0.5 test nDCG@10 93.24 (dense+bm25 alone 91.24)\n" in text
    assert "reference (dense+bm25) configured: 90.00" in text and "train" not in text
    assert "no better" not in text
    # a reranker whose best setting only ties the first stage is said to be no help, not recommended bare
    rerank["best"]["ndcg@10"] = rerank["first_stage_ndcg@10"]
    text = summary(outcome)
    assert "(dense+bm25 alone 91.24): no better than dense+bm25 alone, leave +rerank out" in text
    assert "[rerank]  # for reranker = 'maxsim' (it ranks no better than the first stage alone" in text


def test_tune_snippet_marks_the_modes_it_did_not_tune():
    """`wb eval --tune -p dense+bm25` prints colbert/sparse at 0 (hybrid then is the tuned pipeline)
    and says so on those lines, so pasting it never switches modes off unknowingly."""
    from workbench.eval.tune import toml_snippet

    outcome = {"chosen": {"fusion": {"method": "weighted", "depth": 100, "rrf_k": 60,
                                     "weights": {"dense": 0.6, "colbert": 0.0, "sparse": 0.0, "bm25": 0.4}}},
               "tuning": {"single_modes_ndcg@10": {"dense": 0.6, "bm25": 0.66}, "rerank": {}}}
    lines = dict(line.split(" = ", 1) for line in toml_snippet(outcome).splitlines() if " = " in line)
    assert lines["dense"] == "0.6" and lines["bm25"] == "0.4"
    assert lines["colbert"].startswith("0  # not tuned") and lines["sparse"].startswith("0  # not tuned")


def test_a_run_file_is_scored_as_the_pipeline_that_wrote_it(first_run, dataset, tmp_path, capsys, monkeypatch):
    """`--run NAME=FILE`: a pipeline's own run file, read back, gets that pipeline's figures; a run
    is ranked by its scores (not its line order), and a query it lacks scores 0."""
    (_code, out, _err), _ = first_run[0]
    searched = {p["name"]: p for p in json.loads(out)["pipelines"]}
    _, cache, runs_dir = first_run
    monkeypatch.setenv("WB_EVAL_CACHE", str(cache))
    hybrid = read_trec(runs_dir / "hybrid.trec")
    lines = (runs_dir / "hybrid.trec").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("q7 ")][::-1]  # q7 left out, best lines last
    kept.append("q1 Q0 not-a-document 99 -1e9 prod")  # ranked last: outside the corpus, said in a note
    (tmp_path / "prod.trec").write_text("\ufeff" + "\n".join(kept + ["q-other Q0 gzip-overview 1 3.5 prod"]) + "\n")
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--json",
                        "--run", f"dense-file={runs_dir / 'dense.trec'}", "--run", str(tmp_path / "prod.trec"))
    assert code == 0, err
    report = json.loads(out)
    rows = {p["name"]: p for p in report["pipelines"]}
    assert list(rows) == ["bm25", "dense-file", "prod"]
    assert rows["dense-file"]["run_file"] == str(runs_dir / "dense.trec") and "run_file" not in rows["bm25"]
    for key in ("metrics", "delta", "p_value"):
        for m in METRICS:
            want, got = searched["dense"][key][m], rows["dense-file"][key][m]
            assert got == (None if want is None else pytest.approx(want, abs=1e-6)), (key, m)
    assert [rows["dense-file"][k] for k in ("wins", "losses", "ties")] == [searched["dense"][k] for k in ("wins", "losses", "ties")]
    relevant = {q: {d for d, s in rel.items() if s > 0} for q, (_t, rel) in QUERIES.items()}
    per_query = [reference_metrics([d for d, _r, _s in hybrid[q]], relevant[q]) if q != "q7" else dict.fromkeys(METRICS, 0.0)
                 for q in QUERIES]
    for m in METRICS:
        assert rows["prod"]["metrics"][m] == pytest.approx(sum(v[m] for v in per_query) / len(QUERIES), abs=1e-6)
    notes = [json.loads(line).get("message", "") for line in err.splitlines() if line.startswith("{")]
    assert any("1 of the 7 evaluated queries are not in prod.trec and score 0" in n for n in notes)
    assert any("1 query of prod.trec is not among the evaluated ones (ignored)" in n for n in notes)
    assert any("1 of its" in n and "documents is not in the corpus" in n for n in notes)  # q-other's gzip is, 'x' not
    # the run files' notes are the report's too: a script reading the JSON sees them
    assert any("1 of the 7 evaluated queries are not in prod.trec and score 0" in n for n in report["notes"])


@pytest.mark.parametrize("content,args,says", [
    ("q1 Q0 a 1 2.0 t\nq2 Q0 b 1 t\n", [], "prod.trec:2: a run line has six fields"),
    ("q1 Q0 a 1 high t\n", [], "prod.trec:1: the score 'high' is not a number"),
    ("x9 Q0 a 1 2.0 t\n", [], "answers none of the 7 evaluated queries (it names 1 other: 'x9')"),
    ("q1 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n", [], "prod.trec:2: document 'a' is listed twice for query 'q1'"),
    ("q1 Q0 a 1 2.0 t\n", ["--run", "hybrid=FILE"], "'hybrid' is a pipeline's name"),
    ("q1 Q0 a 1 2.0 t\n", ["--run", "p=FILE"], "the name 'p' is given twice"),
    ("q1 Q0 a 1 2.0 t\n", ["--tune"], "--run and --tune do not go together"),
    ("q1 Q0 a 1 2.0 t\n", ["--run-dir", "DIR"], "would write over the run file"),  # DIR/p.trec is the run read
])
def test_a_bad_run_file_or_name_is_one_line_exit_2(dataset, tmp_path, capsys, monkeypatch, content, args, says):
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "prod.trec"
    path.write_text(content)
    extra = [a.replace("FILE", str(path)).replace("DIR", str(tmp_path)) for a in args]
    if "--run-dir" in extra:
        path = path.rename(tmp_path / "p.trec")
    if "--run" not in extra:
        extra = ["--run", f"p={path}", *extra]
    elif "p=" in extra[1]:
        extra = ["--run", f"p={path}", *extra]
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not list((tmp_path / "cache").rglob("manifest.sqlite"))  # refused before anything was indexed


def test_run_files_alone_are_compared_without_indexing(first_run, dataset, tmp_path, capsys, monkeypatch):
    """`-p '' --run A --run B`: the first run is the baseline and nothing is indexed or searched."""
    (_code, out, _err), _ = first_run[0]
    searched = {p["name"]: p["metrics"] for p in json.loads(out)["pipelines"]}
    runs_dir = first_run[2]
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "", "--json",
                        "--run", f"a={runs_dir / 'bm25.trec'}", "--run", f"b={runs_dir / 'hybrid.trec'}")
    assert code == 0, err
    report = json.loads(out)
    assert report["baseline"] == "a" and [p["name"] for p in report["pipelines"]] == ["a", "b"]
    assert report["pipelines"][0]["metrics"] == searched["bm25"] and report["pipelines"][1]["metrics"] == searched["hybrid"]
    assert report["pipelines"][1]["delta"]["ndcg@10"] == pytest.approx(searched["hybrid"]["ndcg@10"] - searched["bm25"]["ndcg@10"], abs=2e-6)
    assert not (tmp_path / "cache").exists()
    assert report["notes"] == [] and "rerank" not in report["pipelines"][0] and report["workspace"] is None
    # at a depth under 100 the @100 metrics are cut short: said in the JSON and on stderr
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "", "--json", "--depth", "20",
                        "--run", f"a={runs_dir / 'bm25.trec'}")
    said = "depth 20: R@100 and MAP@100 only see the top 20 documents"
    assert code == 0 and json.loads(out)["notes"] == [said]
    assert {"phase": "note", "done": 0, "total": 0, "message": said} in [json.loads(line) for line in err.splitlines()]
    # models for pipelines that -p '' does not run: refused, not dropped without a word
    for extra, says in ((["--compare", "dense=all-MiniLM-L6-v2"], "--compare name models"),
                        (["-m", "sparse=splade-tiny"], "--model name models")):
        code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "", "--run", f"a={runs_dir / 'bm25.trec'}",
                            *extra)
        assert code == 2 and says in err and "-p '' runs none" in err, err


@pytest.mark.parametrize("flag", [["--run-dir", "DIR"], ["--depth", "20"], ["--per-query"], ["--top", "3"],
                                  ["--rerank-interpolation", "0.3"]])
def test_flags_tune_does_not_use_are_refused_with_it(dataset, tmp_path, capsys, monkeypatch, flag):
    """--tune chooses settings: these were accepted and silently did nothing (no run files written)."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    extra = [a.replace("DIR", str(tmp_path / "tunedir")) for a in flag]
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "--tune", "-p", "bm25", *extra)
    assert code == 2 and f"{flag[0]} and --tune do not go together" in err, err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "tunedir").exists()


def test_run_dir_refuses_ids_a_trec_line_cannot_carry_before_indexing(tmp_path, capsys, monkeypatch):
    """A corpus id with a space: --run-dir would write lines that split into 7 columns; it is
    refused in one line before anything is indexed (as `wb query --trec` refuses such a query id)."""
    root = make_dataset(tmp_path / "spaced")
    rows = (root / "corpus.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    first["_id"] = "doc one"
    (root / "corpus.jsonl").write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n")
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), "-p", "bm25", "--run-dir", str(tmp_path / "runs"),
                        "-w", str(tmp_path / "ws"))
    assert code == 2 and "--run-dir: the id 'doc one' holds whitespace" in err
    assert not (tmp_path / "ws").exists() and not (tmp_path / "runs").exists()


def test_run_dir_refuses_two_systems_written_to_one_file(dataset, tmp_path, capsys, monkeypatch):
    """`hybrid+rerank` and a run named `hybrid_rerank` map to one file name: refused before any work,
    not one written over the other."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "prod.trec"
    path.write_text("q1 Q0 itertools-groupby 1 2.0 t\n")
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "hybrid+rerank",
                        "--run", f"hybrid_rerank={path}", "--run-dir", str(tmp_path / "runs"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "'hybrid+rerank' and 'hybrid_rerank' would both be written to hybrid_rerank.trec" in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
    code, _out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--split", "")
    assert code == 2 and "--split is empty" in err, err


def test_a_relevant_document_the_indexer_skipped_is_said(tmp_path, capsys, monkeypatch):
    """A relevant document of corpus.jsonl with no text is skipped by the indexer: no pipeline can
    find it, and the report says which and for how many queries."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    root = make_dataset(tmp_path / "emptied")
    lines = (root / "corpus.jsonl").read_text().splitlines()
    emptied = [json.dumps({"_id": "time-sleep", "title": "", "text": ""}) if json.loads(line)["_id"] == "time-sleep"
               else line for line in lines]
    (root / "corpus.jsonl").write_text("\n".join(emptied) + "\n")
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), "-p", "bm25", "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert any("1 relevant document of the corpus is not in the index" in n and "time-sleep" in n
               and "1 query cannot reach it" in n for n in notes), notes


def test_a_run_shallower_than_the_depth_is_said(first_run, dataset, tmp_path, capsys, monkeypatch):
    """A run file with 3 documents a query on a corpus of more: R@100 and MAP@100 see only those."""
    runs_dir = first_run[2]
    shallow = tmp_path / "top3.trec"
    shallow.write_text("".join(line + "\n" for line in (runs_dir / "bm25.trec").read_text().splitlines()
                               if int(line.split()[3]) <= 3))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "", "--json", "--run", f"top3={shallow}")
    assert code == 0, err
    assert "run top3 lists at most 3 documents a query: R@100 and MAP@100 only see those" in json.loads(out)["notes"]


def test_queries_a_system_retrieved_nothing_for_score_zero_even_when_all_are_empty(tmp_path):
    """A pipeline that finds nothing (BM25 and words no document holds) scores 0 on those queries,
    and a system that found nothing at all is scored too (ranx builds no run of empty rankings)."""
    from workbench.eval.dataset import EvalDataset
    from workbench.eval.runner import SystemResult, score_systems

    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}
    data = EvalDataset(name="t", root=tmp_path, split="test", format="beir", corpus_path=tmp_path / "corpus.jsonl",
                       queries={"q1": "a", "q2": "b"}, qrels=qrels, qrels_path=tmp_path / "qrels.tsv")
    found = SystemResult("found", "dense", {"q1": {"d9": 2.0, "d1": 1.0}, "q2": {}}, 0.0)
    nothing = SystemResult("nothing", "bm25", {"q1": {}, "q2": {}}, 0.0)
    score_systems(data, [found, nothing])
    expected = {q: reference_metrics(list(found.run[q]), set(qrels[q])) for q in qrels}
    for metric in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
        assert found.per_query[metric] == pytest.approx({q: expected[q][metric] for q in qrels})
        assert nothing.per_query[metric] == {"q1": 0.0, "q2": 0.0} and nothing.metrics[metric] == 0.0
    assert (nothing.wins, nothing.losses, nothing.ties) == (0, 1, 1)


def test_bare_run_files_written_by_run_dir_get_labels_not_refused(tmp_path):
    """`wb eval --run-dir runs1` writes bm25.trec, hybrid.trec, ...: reading them back as bare
    `--run runs1/bm25.trec` labels them by file name, and two folders' files by folder too."""
    from workbench.eval.external_runs import parse_run_options

    sources = parse_run_options(["runs1/bm25.trec", "runs2/bm25.trec", "runs1/prod.trec", "runs1/hybrid"])
    assert [s.label for s in sources] == ["bm25.trec", "runs2/bm25.trec", "prod", "runs1/hybrid"]
    assert sources[1].path == (Path("runs2/bm25.trec")).absolute()
    with pytest.raises(UsageError, match="'bm25' is a pipeline's name"):  # a NAME given by hand stays strict
        parse_run_options(["bm25=runs1/bm25.trec"])


def _tiny_beir(root: Path, docs: dict[str, str], queries: dict[str, str], qrels: str, split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def test_a_pair_judged_twice_takes_its_last_grade_and_only_a_header_like_first_line_is_skipped(tmp_path):
    """qrels as BEIR's loader and pytrec_eval read them: `q1 d1 2` then `q1 d1 0` is not relevant (the
    highest grade was kept), in `wb eval` and in the TUI's judgement marks alike; a first line that
    is a row with a bad grade is an error, not a header that silently drops q1's judgement."""
    from workbench.errors import InputError
    from workbench.eval.dataset import judgements, load_dataset

    docs = {"d1": "alpha text", "d2": "beta text", "d3": "gamma text"}
    queries = {"q1": "alpha", "q2": "beta"}
    root = _tiny_beir(tmp_path / "dup", docs, queries, "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\n"
                      "q2\td2\t1\nq1\td1\t0\nq2\td3\t0\nq2\td3\t2\n")
    data = load_dataset(root, "test")
    assert data.qrels == {"q1": {"d3": 1}, "q2": {"d2": 1, "d3": 2}}
    assert judgements(root, "test", "q1") == {"d3": 1} and judgements(root, "test", "q2") == {"d2": 1, "d3": 2}
    bad = _tiny_beir(tmp_path / "bad", docs, queries, "q1\td1\trelevant\nq2\td2\t1\n")
    with pytest.raises(InputError, match=r"test.tsv:1: score 'relevant' is not a whole number"):
        load_dataset(bad, "test")
    plain = _tiny_beir(tmp_path / "plain", docs, queries, "qid\tdocid\trel\nq1\td1\t1\nq2\td2\t1\n")
    assert load_dataset(plain, "test").qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_a_run_files_document_outside_the_corpus_counts_as_not_relevant(tmp_path, capsys, monkeypatch):
    """As documented (and said in the notes): a run that lists a judged document the corpus lacks gets
    no credit for it, since no pipeline could retrieve it; it keeps its rank."""
    docs = {"d1": "alpha text", "d2": "beta text", "d3": "gamma text"}
    root = _tiny_beir(tmp_path / "out", docs, {"q1": "alpha", "q2": "beta"},
                      "q1\tdX\t1\nq1\td1\t1\nq2\td2\t1\n")
    run = tmp_path / "a.trec"
    run.write_text("q1 Q0 dX 1 2 x\nq1 Q0 d1 2 1 x\nq2 Q0 d2 1 1 x\n")
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), "-p", "", "--run", f"a={run}", "--json",
                        "--run-dir", str(tmp_path / "written"))
    assert code == 0, err
    got = json.loads(out)["pipelines"][0]["metrics"]
    q1 = reference_metrics(["\x00outside", "d1"], {"dX", "d1"})  # dX retrieved but not relevant, still owed
    q2 = reference_metrics(["d2"], {"d2"})
    for m in METRICS:
        assert got[m] == pytest.approx((q1[m] + q2[m]) / 2, abs=1e-6), m
    assert got["ndcg@10"] < 1.0
    # --run-dir writes the run with the file's own ids (the marking is for scoring only)
    written = (tmp_path / "written" / "a.trec").read_text()
    assert written == "q1 Q0 dX 1 2 a\nq1 Q0 d1 2 1 a\nq2 Q0 d2 1 1 a\n"


def test_tune_survives_a_mode_that_retrieves_nothing_for_every_query(tmp_path, capsys, monkeypatch):
    """--tune where BM25 finds no word of any query: it scores 0 there and tuning goes on (ranx cannot
    build a run whose queries are all empty: it was an internal error)."""
    docs = {f"d{i}": f"apple banana cherry orchard number {i}" for i in range(6)}
    root = _tiny_beir(tmp_path / "oov", docs, {"q1": "zebra xylophone", "q2": "quokka"},
                      "q1\td1\t1\nq2\td2\t1\n", split="train")
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), "--tune", "-p", "dense+bm25", "--json")
    assert code == 0, err
    assert "internal error" not in err


@pytest.mark.parametrize("where,says", [
    ("/proc/nope", "cannot write /proc/nope"),
    ("FILE/sub", "cannot write FILE/sub (Not a directory)"),
    ("DIR", "cannot write DIR/bm25.trec (a folder has the run file's name)"),
])
def test_a_run_dir_that_cannot_be_written_is_refused_before_the_evaluation(dataset, tmp_path, capsys, monkeypatch,
                                                                           where, says):
    """`--run-dir /proc/nope` (or under a file, or with bm25.trec a folder) failed only when the run
    files were written, after the whole evaluation, with an internal error and no results: now one
    line before anything is indexed, and no folder is left."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR" / "bm25.trec").mkdir(parents=True)
    where, says = (x.replace("FILE", str(tmp_path / "FILE")).replace("DIR", str(tmp_path / "DIR")) for x in (where, says))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25", "--run-dir", where)
    assert code == 2 and out == "" and err.startswith(f"wb: error: --run-dir {where}: {says}"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "cache").exists()


def test_an_eval_cache_that_is_a_file_is_one_line(dataset, tmp_path, capsys, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "file.txt"))
    code, out, err = wb(capsys, monkeypatch, "eval", str(dataset), "-p", "bm25")
    assert code == 2 and err.strip() == (f"wb: error: the eval cache {tmp_path / 'file.txt'} is a file: "
                                         "set WB_EVAL_CACHE to a folder"), err


def test_a_lone_surrogate_in_beir_queries_is_replaced_in_eval_and_mine(tmp_path, capsys, monkeypatch):
    """queries.jsonl with `"\\ud800"` in a text was an internal UnicodeEncodeError in `wb eval` and
    `wb mine` (bm25): the text is read as the corpus reader reads one (U+FFFD)."""
    monkeypatch.setenv("WB_EVAL_CACHE", str(tmp_path / "cache"))
    root = make_dataset(tmp_path / "surr", split="train")
    lines = (root / "queries.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (root / "queries.jsonl").write_text("\n".join([json.dumps(first).replace(first["text"], "\\ud800 " + first["text"]),
                                                   *lines[1:]]) + "\n")
    code, out, err = wb(capsys, monkeypatch, "eval", str(root), "-p", "bm25", "--split", "train", "--json")
    assert code == 0 and json.loads(out)["queries"] == len(QUERIES), err
    ws = tmp_path / "ws"
    assert wb(capsys, monkeypatch, "index", str(root / "corpus.jsonl"), "-w", str(ws))[0] == 0
    code, out, err = wb(capsys, monkeypatch, "mine", "--data", str(root), "-w", str(ws), "-p", "bm25",
                        "--range", "2-10", "--out", str(tmp_path / "hn.jsonl"))
    assert code == 0 and "\ufffd itertools.groupby" in (tmp_path / "hn.jsonl").read_text(encoding="utf-8"), err
