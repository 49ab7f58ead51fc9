"""Shared fixtures: a small real workspace built with the real built-in models.

The built-in weights must be installed (``make test`` runs ``wb models install`` first).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as `wb` runs (workbench.cli.main.main)
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_corpora" / "python-docs"
SMALL_DOCS = [
    "itertools/groupby.md",
    "itertools/islice.md",
    "shutil/rmtree.md",
    "shutil/copytree.md",
    "random/functions-for-sequences.md",
    "time/sleep.md",
    "heapq/overview.md",
    "json/encoders-and-decoders.md",
    "tempfile/temporarydirectory.md",
    "difflib/differ-example.md",
    "multiprocessing/introduction.md",
    "functools/lru_cache.md",
]


@pytest.fixture(autouse=True)
def _own_tui_state(tmp_path_factory, monkeypatch):
    """Every test's TUI remembers its state in a file of its own, never the user's
    ~/.config/wb/tui.json (a test that saved a tab or a query there changed what a later snapshot
    test drew); a test that wants another file sets WB_TUI_STATE itself."""
    monkeypatch.setenv("WB_TUI_STATE", str(tmp_path_factory.mktemp("tui-state") / "tui.json"))


def copy_small_corpus(dest: Path, names: list[str] = SMALL_DOCS) -> Path:
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, target)
    return dest


def require_models() -> None:
    from workbench.models.cache import is_installed

    missing = [m for m in ("all-MiniLM-L6-v2", "splade-tiny") if not is_installed(m)]
    if missing:
        pytest.fail(f"built-in models not installed ({', '.join(missing)}): run `wb models install`")


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory):
    """A workspace holding SMALL_DOCS, indexed once per test session (read-only for tests)."""
    require_models()
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    base = tmp_path_factory.mktemp("small")
    corpus = copy_small_corpus(base / "corpus")
    ws = Workspace(base / "ws")
    ws.ensure()
    summary = Indexer(ws).run(corpus)
    assert summary.docs_indexed == len(SMALL_DOCS)
    return ws, corpus


@pytest.fixture(scope="session")
def small_searcher(small_workspace):
    from workbench.search.searcher import Searcher

    ws, _ = small_workspace
    return Searcher(ws)


PARENT_DOCS = ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md", "functools/lru_cache.md",
               "heapq/overview.md", "json/encoders-and-decoders.md"]


@pytest.fixture()
def parent(tmp_path):
    """A workspace indexing six documents, and a finished run whose model is MiniLM copied with new
    file times (other fingerprint, identical weights)."""
    require_models()
    from workbench.index.indexer import Indexer
    from workbench.models.cache import resolve_model_path
    from workbench.workspace import Workspace

    corpus = copy_small_corpus(tmp_path / "corpus", PARENT_DOCS)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    model = ws.runs_dir / "ft" / "model"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), model, copy_function=shutil.copyfile)
    stamp = time.time() - 3600
    for f in model.rglob("*"):
        os.utime(f, (stamp, stamp))
    (ws.runs_dir / "ft" / "config.json").write_text("{}")
    return ws, corpus
