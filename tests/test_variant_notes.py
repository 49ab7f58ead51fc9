"""What queries and `wb index` say of a model variant: partial is not stale, and every hint that
continues a variant's run names `wb index --model ...`, never the parent's `wb index ROOT`."""

from __future__ import annotations

import json

import pytest

from conftest import parent  # noqa: F401  (fixture)
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
