"""Model variants: ``--model ROLE=NAME`` indexes beside the workspace's own index, never over it.

The "fine-tune" here is a run folder whose model is a byte copy of the base model: a variant built
with it must rank exactly as the base does, while living in its own stores, and ``wb eval
--compare`` must put both in one table.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import copy_small_corpus, require_models
from tiny_models import run_wb as wb
from test_eval import make_dataset

DOCS = ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md", "functools/lru_cache.md",
        "heapq/overview.md", "json/encoders-and-decoders.md"]


@pytest.fixture()
def ws_with_run(tmp_path):
    """A workspace indexing six documents, plus a finished run whose model is a copy of the base."""
    require_models()
    from workbench.index.indexer import Indexer
    from workbench.models.cache import resolve_model_path
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", DOCS)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    run = ws.runs_dir / "ft"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), run / "model")
    (run / "config.json").write_text("{}")
    return ws, corpus


def test_variant_is_built_beside_the_base_and_ranks_like_it(ws_with_run, tmp_path, capsys, monkeypatch):
    ws, corpus = ws_with_run
    from workbench.store.manifest import Manifest

    def snapshot_version():
        m = Manifest(ws.manifest_path)
        try:
            return m.get_meta("snapshot_version"), m.count_docs()
        finally:
            m.close()

    base_version = snapshot_version()
    q = "remove a directory tree"
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 2 and "wb index --model dense=runs/ft" in err
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--compare", "dense=runs/ft")
    assert code == 2 and "wb index --model dense=runs/ft" in err and out == ""

    code, out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    variants = list((ws.root / "variants").iterdir())
    assert len(variants) == 1 and variants[0].name.startswith("dense-ft-")

    for pipeline in ("dense", "colbert", "hybrid"):
        code, base_out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "-p", pipeline, "--json")
        assert code == 0, err
        code, ft_out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "-p", pipeline, "--json",
                               "--model", "dense=runs/ft")
        assert code == 0, err
        base, ft = json.loads(base_out), json.loads(ft_out)
        assert ft["models"]["dense"] == "runs/ft" and base["models"]["dense"] == "all-MiniLM-L6-v2"
        assert [r["doc_id"] for r in ft["results"]] == [r["doc_id"] for r in base["results"]]
        assert [r["score"] for r in ft["results"]] == pytest.approx([r["score"] for r in base["results"]], abs=1e-3)
    # base and fine-tune side by side on one query (`wb query --compare`): each its own index's answer
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "-p", "dense", "--json",
                        "--compare", "dense=runs/ft")
    assert code == 0, err
    both = json.loads(out)
    assert both["baseline"]["models"]["dense"] == "all-MiniLM-L6-v2" and both["compared"]["models"]["dense"] == "runs/ft"
    assert [r["doc_id"] for r in both["compared"]["results"]] == [r["doc_id"] for r in both["baseline"]["results"]]
    assert [c["mark"] for c in both["changes"]] == ["="] * len(both["changes"]) and both["dropped"] == []
    # the run's model folder given as a relative path is the same model, so the same variant index
    monkeypatch.chdir(ws.root.parent)
    code, by_path, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "-p", "dense", "--json",
                            "--model", f"dense={ws.root.name}/runs/ft/model")
    assert code == 0, err
    code, by_run, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "-p", "dense", "--json",
                           "--model", "dense=runs/ft")
    assert [r["doc_id"] for r in json.loads(by_path)["results"]] == [r["doc_id"] for r in json.loads(by_run)["results"]]
    assert len(list((ws.root / "variants").iterdir())) == 1
    # the base index was not touched: same snapshot, same documents, same configured models
    assert snapshot_version() == base_version and base_version[1] == len(DOCS)
    assert 'dense = "all-MiniLM-L6-v2"' in ws.config_path.read_text()

    # a document changed in the parent: the variant says it is stale until re-indexed
    (corpus / DOCS[0]).write_text((corpus / DOCS[0]).read_text() + "\nAn added line.\n")
    code, _, _ = wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and "older than the workspace" in err
    assert "older than the workspace" in json.loads(out)["note"]  # a script sees it too
    (tmp_path / "qs.txt").write_text(f"{q}\nsleep for a while\n")  # --queries: each answer carries it, said once
    code, out, err = wb(capsys, monkeypatch, "query", "--queries", str(tmp_path / "qs.txt"), "-w", str(ws.root),
                        "--model", "dense=runs/ft", "--json")
    assert code == 0 and err.count("older than the workspace") == 1
    assert all("older than the workspace" in json.loads(line)["note"] for line in out.splitlines())
    code, out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and "older than the workspace" not in err and "note" not in json.loads(out)

    # the run is trained again under the same name: its index no longer matches its model, and is
    # refused (not answered with the new weights against the old vectors) until indexed again
    (ws.root / "runs" / "ft" / "model" / "retrained.txt").write_text("new weights\n")
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 2 and out == "" and "changed on disk" in err and "wb index --model dense=runs/ft" in err
    code, out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    code, out, err = wb(capsys, monkeypatch, "query", q, "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and "note" not in json.loads(out), err


def test_unknown_or_unfinished_runs_are_one_line_errors(ws_with_run, capsys, monkeypatch):
    ws, _ = ws_with_run
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/nope")
    assert code == 2 and "no run named 'nope'" in err and len(err.strip().splitlines()) == 1
    (ws.runs_dir / "half").mkdir()
    (ws.runs_dir / "half" / "config.json").write_text("{}")
    code, _, err = wb(capsys, monkeypatch, "query", "x", "-w", str(ws.root), "--model", "dense=runs/half")
    assert code == 2 and "not finished" in err and len(err.strip().splitlines()) == 1
    # @L is a layer-wise reranker's cutoff layer: in another role it is refused before anything is
    # built (it asked for a variant index, then failed inside the encoder)
    for value in ("dense=runs/ft@3", f"colbert={ws.runs_dir / 'ft' / 'model'}@2"):
        code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", value)
        assert code == 2 and "is for a layer-wise reranker only" in err and len(err.strip().splitlines()) == 1, err
    assert not (ws.root / "variants").exists()


def test_eval_compare_puts_base_and_fine_tune_in_one_table(ws_with_run, tmp_path, capsys, monkeypatch):
    ws, _ = ws_with_run
    data = make_dataset(tmp_path / "tiny")
    eval_ws = tmp_path / "evalws"
    run = eval_ws / "runs" / "ft"
    run.mkdir(parents=True)
    shutil.copytree(ws.runs_dir / "ft" / "model", run / "model")
    code, out, err = wb(capsys, monkeypatch, "eval", str(data), "-w", str(eval_ws), "-p", "bm25,dense",
                        "--compare", "dense=runs/ft", "--json", "--per-query")
    assert code == 0, err
    report = json.loads(out)
    labels = [p["name"] for p in report["pipelines"]]
    assert labels == ["bm25", "dense", "dense@ft"]  # bm25 runs no dense model: not run twice
    by = {lab: p for lab, p in zip(labels, report["pipelines"])}
    # same weights: identical figures; the fine-tune's index is a variant of the -w workspace
    assert by["dense@ft"]["metrics"]["ndcg@10"] == pytest.approx(by["dense"]["metrics"]["ndcg@10"], abs=1e-6)
    # each fine-tuned pipeline is compared with the same pipeline on the base models, not with the first
    assert [by[lab]["baseline"] for lab in labels] == [None, "bm25", "dense"]
    gap = by["dense"]["metrics"]["ndcg@10"] - by["bm25"]["metrics"]["ndcg@10"]
    assert by["dense"]["delta"]["ndcg@10"] == pytest.approx(gap, abs=1e-6)
    assert by["dense@ft"]["delta"]["ndcg@10"] == pytest.approx(0.0, abs=1e-6)
    assert by["dense@ft"]["wins"] == by["dense@ft"]["losses"] == 0
    assert {(row["pipeline"], row["vs"]) for row in report["per_query"]} <= {
        ("dense", "bm25"), ("dense@ft", "dense")}
    assert len(list((eval_ws / "variants").iterdir())) == 1
    assert by["dense@ft"]["models"] == {"dense": "runs/ft"}  # named as its run, not by its folder
    code, _out, err = wb(capsys, monkeypatch, "eval", str(data), "-w", str(eval_ws), "-p", "bm25,dense",
                         "--compare", "reranker=runs/ft")
    assert code == 2 and "--compare changes no model that bm25, dense runs" in err


def test_tune_with_other_models_tunes_their_variant_and_leaves_the_base_index_alone(
        ws_with_run, tmp_path, capsys, monkeypatch):
    """``wb eval -w WS --tune -m dense=runs/ft``: the fine-tune's fusion is tuned on a variant of WS;
    WS's own index (its models, snapshot and vectors) is not re-encoded with the other model."""
    from workbench.store.manifest import Manifest

    ws, _ = ws_with_run
    data = make_dataset(tmp_path / "tiny")
    eval_ws = tmp_path / "evalws"
    code, out, err = wb(capsys, monkeypatch, "eval", str(data), "-w", str(eval_ws), "-p", "dense", "--json")
    assert code == 0, err

    def state():
        m = Manifest(eval_ws / "manifest.sqlite")
        try:
            return m.get_meta("snapshot_version"), m.count_docs()
        finally:
            m.close()

    before = state()
    run = eval_ws / "runs" / "ft"
    run.mkdir(parents=True)
    shutil.copytree(ws.runs_dir / "ft" / "model", run / "model")
    code, out, err = wb(capsys, monkeypatch, "eval", str(data), "-w", str(eval_ws), "--tune", "--split", "test",
                        "-p", "dense+bm25", "-m", "dense=runs/ft", "--json")
    assert code == 0, err
    outcome = json.loads(out)
    variants = list((eval_ws / "variants").iterdir())
    assert len(variants) == 1 and outcome["workspace"] == str(variants[0])
    assert state() == before
    assert outcome["tuning"]["hybrid_check_matches_scan"]


def test_remove_drops_a_deleted_folder_from_the_index_and_its_variants(ws_with_run, tmp_path, capsys, monkeypatch):
    ws, corpus = ws_with_run
    extra = copy_small_corpus(tmp_path / "extra", ["random/functions-for-sequences.md", "tempfile/temporarydirectory.md"])
    code, _out, err = wb(capsys, monkeypatch, "index", str(extra), "-w", str(ws.root))
    assert code == 0, err
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err  # the variant indexes both folders
    shutil.rmtree(extra)
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 2 and f"wb index --remove {extra.resolve()}" in err

    code, out, err = wb(capsys, monkeypatch, "index", "--remove", str(extra), "-w", str(ws.root), "--progress-json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]  # JSON lines only (it printed a sentence)
    assert lines and all("phase" in line for line in lines) and lines[-1]["phase"] == "done"
    report = lines[-1]
    assert report["docs_removed"] == 2 and report["total_docs"] == len(DOCS)
    assert [v["docs_removed"] for v in report["variants"]] == [2]
    for model in ([], ["--model", "dense=runs/ft"]):  # neither index finds the removed documents
        code, out, err = wb(capsys, monkeypatch, "query", "temporary directory", "-p", "bm25", "-k", "20",
                            "-w", str(ws.root), *model, "--json")
        assert code == 0, err
        found = {hit["doc_id"] for hit in json.loads(out)["results"]}
        assert found and not found & {"random/functions-for-sequences.md", "tempfile/temporarydirectory.md"}
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root))  # the refresh works again
    assert code == 0, err
    code, _out, err = wb(capsys, monkeypatch, "index", "--remove", str(extra), "-w", str(ws.root))
    assert code == 2 and "is not an indexed folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("role,says", [("sparse", "not a masked-LM (SPLADE) model (BertModel)"),
                                       ("colbert", "not a trained ColBERT folder")])
def test_a_model_that_cannot_fill_its_role_is_refused_before_any_folder_is_written(ws_with_run, role, says,
                                                                                   capsys, monkeypatch):
    ws, _corpus = ws_with_run  # runs/ft is a bi-encoder: no MLM head, no ColBERT head
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", f"{role}=runs/ft")
    assert code == 2 and f"runs/ft cannot fill the {role} role: it is {says}" in err, err
    assert len(err.strip().splitlines()) == 1 and not (ws.root / "variants").exists()


def test_a_fine_tuned_dense_model_is_named_as_its_run_in_every_label(tmp_path):
    """The zero-shot ColBERT and MaxSim reranker over a fine-tuned dense model name the run, as the
    dense label does, not the model's absolute folder."""
    from workbench.config import WorkspaceConfig
    from workbench.models.registry import model_labels

    folder = str(tmp_path / "ws" / "runs" / "ft" / "model")
    labels = model_labels(WorkspaceConfig().with_models({"dense": folder}).models)
    assert labels["dense"] == "runs/ft"
    assert labels["colbert"] == labels["reranker"] == "maxsim over runs/ft tokens (zero-shot)"


def test_wb_toml_names_a_run_as_the_model_option_does(ws_with_run, capsys, monkeypatch):
    """`dense = "runs/ft"` in wb.toml is the workspace's run ft (its model folder), as --model
    dense=runs/ft is, wherever wb runs from; a run without a model is left for the loader to refuse;
    `wb runs remove` refuses the run wb.toml serves; `./` and `../` paths are the workspace's."""
    ws, _corpus = ws_with_run
    text = ws.config_path.read_text()
    ws.config_path.write_text(text.replace('dense = "all-MiniLM-L6-v2"', 'dense = "runs/ft"')
                              .replace('reranker = "maxsim"', 'reranker = "runs/nope@2"'))
    monkeypatch.chdir("/")
    models = ws.config().models
    assert models.dense == str((ws.runs_dir / "ft" / "model").resolve())
    assert models.reranker == "runs/nope@2"
    code, _out, err = wb(capsys, monkeypatch, "runs", "remove", "ft", "-w", str(ws.root))
    assert code == 2 and "is the dense model of" in err
    # a relative path in wb.toml is the workspace folder's, from any current directory
    ws.config_path.write_text(text.replace('dense = "all-MiniLM-L6-v2"', 'dense = "./runs/ft/model"')
                              .replace('reranker = "maxsim"', 'reranker = "../ws/runs/ft/model@2"'))
    models = ws.config().models
    assert models.dense == str((ws.runs_dir / "ft" / "model").resolve())
    assert models.reranker == str((ws.runs_dir / "ft" / "model").resolve()) + "@2"


def test_a_variant_of_a_workspace_without_its_own_index_is_refused_before_anything_is_written(
        ws_with_run, tmp_path, capsys, monkeypatch):
    """`wb index DIR -w NEW --model dense=...` on a workspace with no index: only the variant was
    built, and every query then said "no index: run wb index PATH first"; now one line says what to
    do and nothing is left behind."""
    ws, corpus = ws_with_run
    fresh = tmp_path / "fresh"
    code, out, err = wb(capsys, monkeypatch, "index", str(corpus), "-w", str(fresh), "--model",
                        f"dense={ws.runs_dir / 'ft' / 'model'}")
    assert code == 2 and "has no index of its own yet" in err and len(err.strip().splitlines()) == 1, err
    assert not fresh.exists()


def test_remove_refuses_while_a_variant_is_written_and_removes_what_a_variant_kept(ws_with_run, tmp_path, capsys,
                                                                                   monkeypatch):
    """`wb index --remove` removed PATH from the parent, then raised at a variant another `wb index`
    was writing: the parent without PATH, the variant with it, and no command left that removes it."""
    from workbench import variants
    from workbench.index.indexer import Indexer
    from workbench.store.manifest import Manifest

    ws, _ = ws_with_run
    extra = copy_small_corpus(tmp_path / "extra", ["random/functions-for-sequences.md", "tempfile/temporarydirectory.md"])
    code, _out, err = wb(capsys, monkeypatch, "index", str(extra), "-w", str(ws.root))
    assert code == 0, err
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    [variant] = variants.variant_workspaces(ws)

    def roots(w):
        with Manifest(w.manifest_path) as manifest:
            return {row[0] for row in manifest.sources()}

    with variant.write_lock():  # as a `wb index --model dense=runs/ft` under way holds it
        code, _out, err = wb(capsys, monkeypatch, "index", "--remove", str(extra), "-w", str(ws.root))
    assert code == 2 and variant.root.name in err and "nothing removed" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert str(extra.resolve()) in roots(ws) and str(extra.resolve()) in roots(variant)  # neither touched

    Indexer(ws).remove(extra)  # a removal that left the variant holding it (its lock taken meanwhile)
    code, out, err = wb(capsys, monkeypatch, "index", "--remove", str(extra), "-w", str(ws.root), "--json")
    assert code == 0, err  # the command a left-over variant is named with removes it from there
    report = json.loads(out)
    assert report["docs_removed"] == 0 and [v["docs_removed"] for v in report["variants"]] == [2]
    assert str(extra.resolve()) not in roots(variant)
    code, _out, err = wb(capsys, monkeypatch, "index", "--remove", str(extra), "-w", str(ws.root))
    assert code == 2 and "is not an indexed folder" in err and len(err.strip().splitlines()) == 1, err


def test_a_variant_left_holding_a_removed_folder_is_named_with_the_command():
    from workbench.variants import removal_left_note

    assert removal_left_note("/d/extra", [{"variant": "dense-ft-1", "docs_removed": 2}]) == ""
    line = removal_left_note("/d/extra", [{"variant": "dense-ft-1", "docs_removed": 0,
                                           "still_holds": "another `wb index` is writing workspace /w"}])
    assert "dense-ft-1 still holds /d/extra" in line and "`wb index --remove /d/extra`" in line
    assert "\n" not in line


def test_remove_drops_a_folder_from_a_variant_that_indexed_it_before_its_parent_took_it_over(
        ws_with_run, tmp_path, capsys, monkeypatch):
    """A variant built while the parent indexed ``corpus/sub``; the parent then indexed ``corpus``
    (taking ``sub`` over). `wb index --remove corpus` must empty the variant too: it dropped
    nothing from it and reported ``"variants": []`` (the variant still answered with every document)."""
    ws, corpus = ws_with_run
    outer = tmp_path / "outer"
    sub = copy_small_corpus(outer / "sub", ["random/functions-for-sequences.md", "tempfile/temporarydirectory.md"])
    code, _out, err = wb(capsys, monkeypatch, "index", str(sub), "-w", str(ws.root))
    assert code == 0, err
    code, _out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    code, out, err = wb(capsys, monkeypatch, "index", str(outer), "-w", str(ws.root))
    assert code == 0 and "took over" in out + err, (out, err)
    code, out, err = wb(capsys, monkeypatch, "index", "--remove", str(outer), "-w", str(ws.root), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["docs_removed"] == 2 and [v["docs_removed"] for v in report["variants"]] == [2]
    code, out, err = wb(capsys, monkeypatch, "query", "temporary directory", "-p", "bm25", "-k", "20",
                        "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0, err
    found = {hit["doc_id"] for hit in json.loads(out)["results"]}
    assert found and not found & {"functions-for-sequences.md", "temporarydirectory.md",
                                  "sub/functions-for-sequences.md", "sub/temporarydirectory.md"}
