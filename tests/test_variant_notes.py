"""Model variants as `wb index` and `wb query` see them: partial is not stale; every hint that
continues a variant's run names `wb index --model ...`, never the parent's `wb index ROOT`; a
subfolder maps to the parent's root; the folder is keyed on the overridden models only (orphans
are named and pruned); a built-in by its install folder is the built-in; labels stay distinct."""

from __future__ import annotations

import json
import shlex
import shutil

from tiny_models import run_wb as wb


def _cut_off_variant_build(ws, monkeypatch, after_batches: int = 1) -> None:
    """Make the next indexing run stop as Ctrl-C would, after ``after_batches`` written batches of
    two chunks (0: before any document); ``monkeypatch.undo()`` lets runs finish again."""
    from workbench.index.indexer import Indexer

    real = Indexer._write_batch
    calls = {"n": 0}

    def write_then_stop(self, *args, **kwargs):
        if calls["n"] >= after_batches:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Indexer, "_write_batch", write_then_stop)
    monkeypatch.setattr(Indexer, "__init__", _small_batches(Indexer.__init__))


def _small_batches(init):
    """``Indexer.__init__`` with batches of two chunks (a cut-off run leaves documents written)."""

    def wrapped(self, *args, **kwargs):
        kwargs["batch_chunks"] = 2
        init(self, *args, **kwargs)
    return wrapped


def test_a_cut_off_variant_is_partial_not_older_and_its_hints_name_the_model(parent, capsys, monkeypatch):
    ws, corpus = parent
    _cut_off_variant_build(ws, monkeypatch, after_batches=1)
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 130
    assert "wb index --model dense=" in err and f"`wb index {corpus.resolve()}`" not in err, err
    monkeypatch.undo()
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0, err
    assert "older than" not in err and "differs from" not in err, err  # partial, not out of date
    note = json.loads(out)["note"]
    assert "was cut off" in note and "wb index --model dense=" in note and f"`wb index {corpus.resolve()}`" not in note


def test_a_variant_cut_off_before_any_document_says_wb_index_model(parent, capsys, monkeypatch):
    ws, corpus = parent
    _cut_off_variant_build(ws, monkeypatch, after_batches=0)
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code != 0 and "wb index --model dense=" in err, err
    monkeypatch.undo()
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 2 and "older than" not in err
    assert "wb index --model dense=" in err and "`wb index PATH`" not in err and f"`wb index {corpus.resolve()}`" not in err, err


def test_a_variant_being_written_is_not_called_older(parent, capsys, monkeypatch):
    from workbench import variants

    ws, corpus = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    variants.build_variant(ws, serve)
    (corpus / "time" / "sleep.md").write_text("# time — sleep\n\nSleep pauses the thread.\n")
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0, err
    assert variants.staleness(ws, serve) == "older"
    with serve.workspace.write_lock():  # a `wb index --model` under way
        assert variants.staleness(ws, serve) == "" and not variants.is_stale(ws, serve)


def test_a_variant_newer_than_its_parent_differs_not_older(parent, capsys, monkeypatch):
    from workbench import variants

    ws, corpus = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    variants.build_variant(ws, serve)
    (corpus / "time" / "sleep.md").write_text("# time — sleep\n\nSleep pauses the thread.\n")
    variants.build_variant(ws, serve)  # only the variant indexed the edit
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0, err
    assert "older than" not in err and "differs from the workspace's documents" in err, err


def test_a_subfolder_indexes_the_parents_covering_root_into_the_variant(parent, tmp_path, capsys, monkeypatch):
    """`wb index SUBFOLDER --model` made the subfolder a root of the variant: other document ids
    than the parent's (one document shown as new and dropped by --compare, stale for ever)."""
    from workbench import variants
    from workbench.store.manifest import Manifest

    ws, corpus = parent
    code, _, err = wb(capsys, monkeypatch, "index", str(corpus / "time"), "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    assert "is inside the indexed folder" in err
    serve = variants.serving(ws, {"dense": "runs/ft"})
    with Manifest(ws.manifest_path) as a, Manifest(serve.workspace.manifest_path) as b:
        assert b.hashes() == a.hashes() and [s[0] for s in b.sources()] == [s[0] for s in a.sources()]
    assert not variants.is_stale(ws, serve)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.md").write_text("# a\n\nSome words.\n")
    code, _, err = wb(capsys, monkeypatch, "index", str(elsewhere), "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 2 and "is not indexed by workspace" in err and len(err.strip().splitlines()) == 1, err


def test_a_query_side_setting_keeps_the_variant_and_superseded_folders_are_named_and_pruned(parent, capsys,
                                                                                             monkeypatch):
    """The folder key hashed `dense_query_template` and the roles the variant leaves to the parent:
    editing them made every built variant unreachable, and the old folders stayed for ever."""
    from workbench import variants

    ws, corpus = parent
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 0, err
    assert "no --model reaches" not in err
    text = ws.config_path.read_text()
    ws.config_path.write_text(text.replace("[models]\n", '[models]\ndense_query_template = "query: {text}"\n', 1))
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and json.loads(out)["results"], err  # answers at once, nothing re-encoded
    # a folder of before the key changed (no recorded overrides): named after any `wb index`, pruned on demand
    [live] = variants.variant_workspaces(ws)
    legacy = live.root.with_name("dense-ft-0badc0de")
    shutil.copytree(live.root, legacy)
    (legacy / variants.VARIANT_FILE).unlink()
    (live.root / variants.VARIANT_FILE).unlink()  # as `wb eval --compare` writes a variant: its wb.toml tells
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0 and "1 model variant no --model reaches any more" in err and legacy.name in err, err
    code, out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--prune-variants", "--json")
    assert code == 0 and json.loads(out) == {"removed": [str(legacy)]}, err
    assert not legacy.exists() and live.root.exists()
    # the parent's wb.toml now names the variant's model: no --model reaches the variant any more
    ws.config_path.write_text(ws.config_path.read_text().replace('dense = "all-MiniLM-L6-v2"',
                                                                 f'dense = "{ws.runs_dir / "ft" / "model"}"', 1))
    assert [v.root for v in variants.orphaned_variants(ws)] == [live.root]


def test_the_builtin_model_by_its_install_folder_is_the_workspace_itself(parent, capsys, monkeypatch):
    from workbench import variants
    from workbench.models.cache import resolve_model_path

    ws, _ = parent
    folder = resolve_model_path("all-MiniLM-L6-v2")
    serve = variants.serving(ws, {"dense": folder})
    assert not serve.is_variant and serve.workspace.root == ws.root
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "-p", "dense", "--json",
                        "--model", f"dense={folder}")
    assert code == 0 and json.loads(out)["results"], err


def test_a_local_folder_named_like_a_builtin_gets_a_distinct_label(parent, tmp_path):
    """A fine-tune at .../ft/all-MiniLM-L6-v2 was labelled `dense=all-MiniLM-L6-v2`, the built-in's name."""
    from workbench import variants

    ws, _ = parent
    model = tmp_path / "ft" / "all-MiniLM-L6-v2"
    shutil.copytree(ws.runs_dir / "ft" / "model", model)
    serve = variants.serving(ws, {"dense": str(model)})
    assert serve.is_variant and serve.label == "dense=ft/all-MiniLM-L6-v2"
    assert variants.serving(ws, {"dense": "runs/ft"}).label == "dense=ft"  # a run keeps its name


def test_a_cut_off_variant_still_needs_an_index_run_one_being_written_does_not(parent, capsys, monkeypatch):
    """The TUI builds a variant that needs it: a cut-off one (continued), never one being written."""
    from workbench import variants

    ws, _ = parent
    _cut_off_variant_build(ws, monkeypatch, after_batches=1)
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft")
    assert code == 130, err
    monkeypatch.undo()
    serve = variants.serving(ws, {"dense": "runs/ft"})
    assert not variants.is_stale(ws, serve) and variants.needs_index(ws, serve)
    with serve.workspace.write_lock():
        assert not variants.needs_index(ws, serve)
    variants.build_variant(ws, serve)
    assert not variants.needs_index(ws, serve)


def test_a_variant_folder_named_the_old_way_is_taken_over_not_encoded_again(parent, capsys, monkeypatch):
    """Folders were keyed on every setting: after the key changed, `wb index --model` would encode
    the whole variant again beside the old folder. It renames the old folder and updates it."""
    from workbench import variants

    ws, _ = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    variants.build_variant(ws, serve)
    legacy = serve.workspace.root.with_name("dense-ft-0badc0de")
    serve.workspace.root.rename(legacy)
    (legacy / variants.VARIANT_FILE).unlink()
    code, out, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and "took over the variant folder dense-ft-0badc0de" in err, err
    assert [f["docs_indexed"] for f in json.loads(out)["folders"]] == [0]  # nothing encoded again
    assert not legacy.exists() and serve.workspace.exists() and variants.orphaned_variants(ws) == []


def test_a_role_the_parent_changed_under_a_variant_is_rebuilt_by_the_variants_own_command(parent, tmp_path, capsys,
                                                                                          monkeypatch):
    """The parent's wb.toml changed a role the variant leaves to it (sparse): the hints said
    `wb index PATH` (`wb mine/tune --model` refused with it) or `--model ROLE=NAME`, not the variant's flags."""
    import os
    import time

    from workbench import variants
    from workbench.errors import WorkspaceError
    from workbench.models.cache import resolve_model_path
    from workbench.search.searcher import Searcher

    ws, _ = parent
    serve = variants.serving(ws, {"dense": "runs/ft"})
    variants.build_variant(ws, serve)
    sparse = tmp_path / "sparse-copy"  # the same weights under another fingerprint: another sparse model
    shutil.copytree(resolve_model_path("splade-tiny"), sparse, copy_function=shutil.copyfile)
    stamp = time.time() - 7200
    for f in sparse.rglob("*"):
        os.utime(f, (stamp, stamp))
    ws.config_path.write_text(ws.config_path.read_text().replace('sparse = "splade-tiny"', f'sparse = "{sparse}"', 1))
    flags = variants.model_flags(serve.workspace)
    assert flags.startswith("--model dense=") and "sparse" not in flags, flags  # the variant's own role only
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0, err  # answers with the models that built it, and says how to catch up
    note = json.loads(out)["note"]
    assert f"`wb index {flags}{ws.flag}` rebuilds it" in note and "ROLE=NAME" not in note, note
    serve = variants.serving(ws, {"dense": "runs/ft"})
    try:  # what `wb mine --model` and `wb tune` open: they refuse, naming the same command
        Searcher(serve.workspace, config=serve.config)
        raise AssertionError("an index built with another sparse model was opened without a word")
    except WorkspaceError as exc:
        assert f"re-run `wb index {flags}{ws.flag}`" in str(exc) and "PATH" not in str(exc), exc
    code, _, err = wb(capsys, monkeypatch, "index", "-w", str(ws.root), *shlex.split(flags))
    assert code == 0 and "rebuilding" in err, err  # the command named rebuilds the variant in place
    code, out, err = wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "--model", "dense=runs/ft", "--json")
    assert code == 0 and "note" not in json.loads(out) and variants.variant_workspaces(ws) == [serve.workspace], err
