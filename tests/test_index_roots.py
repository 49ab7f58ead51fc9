"""Indexed roots never overlap: no document silently replaces another root's, none is indexed twice.

Real LanceDB + Tantivy + manifest in temporary folders, the built-in models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLE, copy_small_corpus, require_models
from test_index_consistency import assert_consistent, store_state
from tiny_models import run_wb
from workbench.errors import InputError
from workbench.index.indexer import Indexer
from workbench.store.manifest import Manifest
from workbench.workspace import Workspace


def _sources(ws: Workspace) -> dict[str, set[str]]:
    """Indexed root -> its document ids, from the manifest."""
    manifest = Manifest(ws.manifest_path)
    try:
        return {src: set(manifest.hashes(src)) for src, *_ in manifest.sources()}
    finally:
        manifest.close()


def _bm25(ws: Workspace, query: str) -> list[str]:
    from workbench.search.searcher import Searcher

    return [h.doc_id for h in Searcher(ws).search(query, pipeline="bm25", k=10).results]


@pytest.fixture()
def siblings(tmp_path):
    """The reported layout: two folders, each with an ``overview.md``."""
    require_models()
    (tmp_path / "c" / "a").mkdir(parents=True)
    (tmp_path / "c" / "b").mkdir()
    (tmp_path / "c" / "a" / "overview.md").write_text("aardvark notes\n")
    (tmp_path / "c" / "b" / "overview.md").write_text("zebra notes\n")
    (tmp_path / "c" / "b" / "other.md").write_text("okapi notes\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    return ws, tmp_path / "c"


def test_same_id_from_another_folder_is_refused_before_anything_is_written(siblings, capsys, monkeypatch):
    ws, c = siblings
    Indexer(ws).run(c / "a")
    before = store_state(ws)

    with pytest.raises(InputError) as info:
        Indexer(ws).run(c / "b")
    message = str(info.value)
    assert "'overview.md'" in message and str(c / "a") in message and str(c / "b") in message
    assert f"wb index {c}" in message and "another workspace" in message and "\n" not in message

    assert store_state(ws) == before  # nothing written, not even b's other.md
    assert _sources(ws) == {str(c / "a"): {"overview.md"}}
    assert _bm25(ws, "aardvark") == ["overview.md"]

    # The command line: one `wb: error:` line, exit code 2, no traceback.
    code, out, err = run_wb(capsys, monkeypatch, "index", str(c / "b"), "-w", str(ws.root))
    assert code == 2
    assert err.strip().startswith("wb: error: document id 'overview.md'") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_identical_file_in_another_folder_is_refused_too(siblings):
    """Two doc folders with the same LICENSE.md: refused up front as well (it was accepted as one
    document, and an edit of either copy, or removing the first folder, then broke the other)."""
    ws, c = siblings
    (c / "b" / "overview.md").write_text("aardvark notes\n")  # the very same file as a's
    Indexer(ws).run(c / "a")
    before = store_state(ws)
    with pytest.raises(InputError, match="'overview.md' of .* is already taken"):
        Indexer(ws).run(c / "b")
    assert store_state(ws) == before and _sources(ws) == {str(c / "a"): {"overview.md"}}


def test_the_common_parent_takes_over_both_folders_under_unique_ids(siblings):
    ws, c = siblings
    Indexer(ws).run(c / "a")
    summary = Indexer(ws).run(c)
    assert str(c / "a") in summary.note and summary.docs_indexed == 3
    assert _sources(ws) == {str(c): {"a/overview.md", "b/overview.md", "b/other.md"}}
    assert_consistent(store_state(ws))
    assert _bm25(ws, "aardvark") == ["a/overview.md"]
    assert _bm25(ws, "zebra") == ["b/overview.md"]

    again = Indexer(ws).run(c)
    assert again.docs_indexed == 0 and again.docs_unchanged == 3 and again.note == ""


def test_a_subfolder_of_an_indexed_folder_refreshes_that_folder(tmp_path):
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    ids = {"itertools/groupby.md", "shutil/rmtree.md", "time/sleep.md"}

    summary = Indexer(ws).run(corpus / "itertools")
    assert summary.root == str(corpus) and "refreshed" in summary.note and str(corpus / "itertools") in summary.line()
    assert summary.docs_indexed == 0 and summary.docs_unchanged == 3
    assert _sources(ws) == {str(corpus): ids}  # no second `groupby.md`

    (corpus / "itertools" / "groupby.md").write_text("# itertools — groupby\n\nThe quokka groups items.\n")
    summary = Indexer(ws).run(corpus / "itertools" / "groupby.md")  # a single file inside: the same
    assert summary.docs_indexed == 1 and summary.docs_unchanged == 2
    assert _sources(ws) == {str(corpus): ids}
    assert_consistent(store_state(ws))
    assert _bm25(ws, "quokka") == ["itertools/groupby.md"]


def test_a_parent_of_indexed_roots_takes_them_over_without_duplicates(tmp_path):
    """A file and a subfolder indexed on their own, then their folder: each document once, under
    the folder's ids; a document whose id and file do not change is not re-encoded."""
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "itertools/islice.md", "time/sleep.md"])
    shutil.copy(SAMPLE / "heapq" / "overview.md", corpus / "heapq.md")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus / "itertools")
    Indexer(ws).run(corpus / "heapq.md")
    assert _sources(ws) == {str(corpus / "itertools"): {"groupby.md", "islice.md"},
                            str(corpus / "heapq.md"): {"heapq.md"}}

    summary = Indexer(ws).run(corpus)
    ids = {"itertools/groupby.md", "itertools/islice.md", "time/sleep.md", "heapq.md"}
    assert _sources(ws) == {str(corpus): ids}
    assert summary.docs_indexed == 3 and summary.docs_unchanged == 1  # heapq.md: same id, same file
    assert "took over" in summary.note
    state = store_state(ws)
    assert_consistent(state)
    assert state["lance_docs"] == ids


def test_two_documents_of_one_folder_with_one_id_index_once(tmp_path):
    """A nested BEIR corpus whose ``_id`` equals a file's path: the second is skipped, not written twice."""
    require_models()
    folder = copy_small_corpus(tmp_path / "docs", ["time/sleep.md"])
    (folder / "time" / "corpus.jsonl").write_text(json.dumps({"_id": "sleep.md", "text": "A nap."}) + "\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    summary = Indexer(ws).run(folder)
    assert summary.docs_indexed == 1
    also = folder / "time" / "corpus.jsonl"
    assert [s.reason for s in summary.skipped] == [f"duplicate id time/sleep.md (also {also})"]
    assert_consistent(store_state(ws))


def test_reads_follows_the_walk(tmp_path):
    from workbench.ingest.readers import reads

    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "sub" / "a.md").write_text("x")
    (root / "data.jsonl").write_text("{}\n")
    assert reads(root, root / "sub") and reads(root, root / "sub" / "a.md")
    assert not reads(root, root) and not reads(root / "sub", root)
    assert not reads(root, root / ".hidden") and not reads(root, root / "data.jsonl")  # the walk skips them
    assert reads(root, root / "gone")  # a root deleted since: its documents are gone either way
    (root / "corpus.jsonl").write_text("{}\n")  # now a BEIR folder: only its corpus.jsonl is read
    assert reads(root, root / "corpus.jsonl") and not reads(root, root / "sub")


def _change_chunking(ws: Workspace, tokens: int) -> None:
    import re

    ws.config_path.write_text(re.sub(r"chunk_tokens = \d+", f"chunk_tokens = {tokens}", ws.config_path.read_text()))


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_a_settings_rebuild_indexes_the_other_folders_again(tmp_path, monkeypatch, capsys):
    """A settings change rebuilds the stores from scratch (beside the live index, swapped in when
    complete); the other indexed folders are indexed again in the same run. One that is gone holds
    the swap back (the old index keeps answering with every folder) until it is back or removed.
    When that run is cut off, the old index stays whole and the next run, whatever folder it is
    given, finishes the rebuild."""
    require_models()
    a = copy_small_corpus(tmp_path / "a", ["itertools/groupby.md", "time/sleep.md"])
    b = copy_small_corpus(tmp_path / "b", ["shutil/rmtree.md", "heapq/overview.md"])
    c = copy_small_corpus(tmp_path / "c", ["json/encoders-and-decoders.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    for root in (a, b, c):
        Indexer(ws).run(root)
    before = store_state(ws)
    shutil.move(c, tmp_path / "c-away")
    _change_chunking(ws, 128)
    summary = Indexer(ws).run(a)
    assert summary.rebuilt == "settings changed (chunk_tokens): the rebuild is not finished"
    assert f"re-indexed {b} (2 docs)" in summary.note
    assert f"{c} is missing: the rebuild waits for it (the old index answers meanwhile, with every folder)" in summary.note
    assert summary.docs_indexed == 4 and summary.total_docs == 5  # the index that answers: all three folders
    assert store_state(ws) == before and "json/encoders-and-decoders.md" in _bm25(ws, "JSONEncoder")
    code, _out, err = run_wb(capsys, monkeypatch, "query", "rmtree", "-w", str(ws.root), "--pipeline", "bm25")
    assert code == 0 and (f"a rebuild of this index with the changed settings waits for {c}, which is missing "
                          f"(restore it and run `wb index{ws.flag}`, or `wb index --remove {c}{ws.flag}`)") in \
        " ".join(err.split())
    # back: the next run finishes the rebuild with it (the other folders are not encoded again)
    shutil.move(tmp_path / "c-away", c)
    summary = Indexer(ws).run(a)
    assert summary.docs_indexed == 1 and summary.docs_unchanged == 4 and summary.total_docs == 5
    assert set(_sources(ws)) == {str(a), str(b), str(c)}
    assert_consistent(store_state(ws))
    # gone for good: `--remove` drops it from the index and from the rebuild, which then finishes
    shutil.move(c, tmp_path / "c-away")
    _change_chunking(ws, 112)
    assert Indexer(ws).run(b).rebuilt.endswith("the rebuild is not finished")
    Indexer(ws).remove(c)
    summary = Indexer(ws).run(b)
    assert summary.rebuilt.endswith("rebuilt the index beside the old one") and summary.total_docs == 4
    assert set(_sources(ws)) == {str(a), str(b)}
    from workbench.variants import parent_roots

    assert c not in parent_roots(ws)

    # cut off after the rebuilt folder, before the other one: the old index stays whole and answers
    # queries (with the models that built it); the next run (of any folder, or none) finishes it
    _change_chunking(ws, 96)
    before = store_state(ws)
    real = Indexer._run_root

    def interrupted(self, root):
        if Path(root) == b:
            raise KeyboardInterrupt
        return real(self, root)

    monkeypatch.setattr(Indexer, "_run_root", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Indexer(ws).run(a)
    assert store_state(ws) == before and set(_sources(ws)) == {str(a), str(b)}
    monkeypatch.setattr(Indexer, "_run_root", real)
    code, out, err = run_wb(capsys, monkeypatch, "query", "rmtree", "-w", str(ws.root), "--pipeline", "bm25", "--json")
    assert code == 0 and f"cut off (`wb index{ws.flag}` finishes it): the old index answers meanwhile" in err
    assert "shutil/rmtree.md" in [h["doc_id"] for h in json.loads(out)["results"]]
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root))
    assert code == 0, err
    assert set(_sources(ws)) == {str(a), str(b)} and not (ws.root / "rebuild").exists()
    assert_consistent(store_state(ws))
    manifest = Manifest(ws.manifest_path)
    try:
        assert manifest.get_meta("settings")["chunk_tokens"] == 96
    finally:
        manifest.close()
    assert Indexer(ws).run(a).note == ""  # nothing left to re-index


def test_bare_index_json_is_one_object_for_all_folders(tmp_path, capsys, monkeypatch):
    """`wb index --json` without PATH refreshes every folder and prints one JSON object (it printed
    one object a folder, which no JSON parser reads as one document)."""
    require_models()
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.md").write_text(f"# {name}\n\nnotes about {name}\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "x")
    Indexer(ws).run(tmp_path / "y")
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [f["root"] for f in report["folders"]] == [str(tmp_path / "x"), str(tmp_path / "y")]
    assert all(f["docs_unchanged"] == 1 and f["docs_indexed"] == 0 for f in report["folders"])


def test_a_folder_emptied_for_a_while_stays_indexed_until_removed(tmp_path, capsys, monkeypatch):
    """A folder whose files are all moved away for one `wb index` is still an indexed folder: the
    next bare `wb index` reads it again (it was forgotten for good: its roots came from its
    documents), a model variant indexes it as its parent does, and `--remove` drops it."""
    require_models()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "a.txt").write_text("alpha apples\n")
    (tmp_path / "b" / "b.txt").write_text("beta bananas\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "a")
    Indexer(ws).run(tmp_path / "b")
    (tmp_path / "b" / "b.txt").rename(tmp_path / "b.away")
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--json")
    assert code == 0, err
    assert [(f["root"], f["docs_removed"]) for f in json.loads(out)["folders"]] == [
        (str(tmp_path / "a"), 0), (str(tmp_path / "b"), 1)]
    assert _sources(ws) == {str(tmp_path / "a"): {"a.txt"}, str(tmp_path / "b"): set()}
    from workbench.models.cache import resolve_model_path

    sparse = tmp_path / "splade-copy"  # another folder: a variant beside the workspace's index
    shutil.copytree(resolve_model_path("splade-tiny"), sparse, copy_function=shutil.copyfile)
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--model", f"sparse={sparse}", "--json")
    assert code == 0, err  # the variant indexes the empty folder as its parent does (a new empty one is refused)
    assert [f["root"] for f in json.loads(out)["folders"]] == [str(tmp_path / "a"), str(tmp_path / "b")]

    (tmp_path / "b.away").rename(tmp_path / "b" / "b.txt")
    (tmp_path / "b" / "c.txt").write_text("gamma grapes\n")
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws.root), "--json")
    assert code == 0, err
    assert _sources(ws)[str(tmp_path / "b")] == {"b.txt", "c.txt"}
    assert set(_bm25(ws, "bananas grapes")) == {"b.txt", "c.txt"}
    assert_consistent(store_state(ws))

    (tmp_path / "b" / "b.txt").unlink()
    (tmp_path / "b" / "c.txt").unlink()
    Indexer(ws).run(tmp_path / "b")
    code, out, err = run_wb(capsys, monkeypatch, "index", "--remove", str(tmp_path / "b"), "-w", str(ws.root))
    assert code == 0, err
    assert _sources(ws) == {str(tmp_path / "a"): {"a.txt"}}


def _cut_run_at(monkeypatch, step: str, ws, corpus) -> None:
    """`wb index` of ``corpus`` cut off (Ctrl-C, a kill) as it enters ``Indexer.<step>``; the step is
    put back afterwards."""
    def cut(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(Indexer, step, cut)
        with pytest.raises(KeyboardInterrupt):
            Indexer(ws).run(corpus)


def test_a_cut_off_run_is_said_by_queries_until_the_next_run_finishes_it(tmp_path, capsys, monkeypatch):
    """Ctrl-C or a kill in the middle of `wb index`: what was written stays (complete documents),
    and every query says the index lacks documents until `wb index` of that folder has ended."""
    require_models()
    from workbench.search.searcher import Searcher

    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    assert Searcher(ws).serving_note == ""
    (corpus / "time").mkdir()
    shutil.copy(SAMPLE / "time" / "sleep.md", corpus / "time" / "sleep.md")

    _cut_run_at(monkeypatch, "_index_docs", ws, corpus)
    note = Searcher(ws).serving_note
    assert f"the indexing run of {corpus} was cut off" in note and f"`wb index {corpus}{ws.flag}` continues it" in note
    code, out, err = run_wb(capsys, monkeypatch, "query", "sleep", "-w", str(ws.root), "-p", "bm25", "--json")
    assert code == 0 and "was cut off" in json.loads(out)["note"]

    summary = Indexer(ws).run(corpus)
    assert "continued the run that was cut off" in summary.note and summary.docs_indexed == 1
    assert Searcher(ws).serving_note == ""


def test_a_run_cut_off_before_its_snapshot_answers_from_what_it_wrote(tmp_path, monkeypatch):
    """Killed after writing the stores, before publishing the read snapshot (compacting): every
    mode answers from what was written (a new document found by dense as by BM25, a deleted one
    gone from both), and the note says the run was cut off."""
    require_models()
    from workbench.search.searcher import Searcher

    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    (corpus / "time").mkdir()
    shutil.copy(SAMPLE / "time" / "sleep.md", corpus / "time" / "sleep.md")
    (corpus / "shutil" / "rmtree.md").unlink()

    _cut_run_at(monkeypatch, "_publish_snapshot", ws, corpus)
    searcher = Searcher(ws)
    assert "was cut off" in searcher.serving_note
    for pipeline in ("bm25", "dense", "colbert", "hybrid"):
        found = [h.doc_id for h in searcher.search("pause the program for a few seconds", pipeline=pipeline, k=5).results]
        assert "time/sleep.md" in found and "shutil/rmtree.md" not in found, (pipeline, found)
    hit = searcher.search("pause the program for a few seconds", pipeline="bm25", k=1).results[0]
    assert "sleep" in hit.snippet.lower()  # the snippet is the matched chunk's own text


def test_a_first_run_cut_off_before_any_document_says_so(tmp_path, monkeypatch):
    require_models()
    from workbench.errors import WorkspaceError
    from workbench.search.searcher import Searcher

    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()

    _cut_run_at(monkeypatch, "_index_docs", ws, corpus)
    with pytest.raises(WorkspaceError, match=f"the first indexing run of {corpus} was cut off before it wrote a "
                                            f"document: `wb index {corpus}{ws.flag}` continues it"):
        Searcher(ws)


def test_a_beir_corpus_is_one_file_seen(tmp_path):
    require_models()
    corpus = tmp_path / "beir" / "corpus.jsonl"
    corpus.parent.mkdir()
    corpus.write_text('{"_id": "a", "title": "A", "text": "alpha beta gamma"}\n'
                      '{"_id": "b", "title": "B", "text": "delta epsilon"}\nnot json\n')
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    summary = Indexer(ws).run(corpus)
    assert summary.files_seen == 1 and summary.docs_indexed == 2 and len(summary.skipped) == 1


def test_removing_a_beir_corpus_keeps_the_documents_another_corpus_shares(tmp_path):
    """Two BEIR corpora may share a document (same id and content, recorded once): removing the
    corpus it was recorded under leaves it findable, as the other corpus's."""
    require_models()
    for name, own in (("bA", "only A about gibbons"), ("bB", "only B about siamangs")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "corpus.jsonl").write_text(
            json.dumps({"_id": "X", "text": "shared doc about tarsiers"}) + "\n"
            + json.dumps({"_id": f"{name}-1", "text": own}) + "\n")
    ws = Workspace(tmp_path / "ws")
    Indexer(ws).run(tmp_path / "bA")
    assert Indexer(ws).run(tmp_path / "bB").docs_unchanged == 1  # X is A's, kept as it is
    summary = Indexer(ws).remove(tmp_path / "bA")
    assert _bm25(ws, "tarsiers") == ["X"] and _bm25(ws, "gibbons") == []
    assert _sources(ws) == {str((tmp_path / "bB").resolve()): {"X", "bB-1"}}
    assert summary.docs_removed == 2 and summary.docs_indexed == 1 and "shared with" in summary.note
    assert_consistent(store_state(ws))


def test_the_workspace_itself_or_another_workspace_is_not_a_folder_of_documents(tmp_path, capsys, monkeypatch):
    """`wb index WS -w WS` read the workspace's own run logs as documents (a wb.toml below the root
    was skipped, the root's own was not); now one line, exit 2, nothing written."""
    require_models()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# a\n\nnotes\n")
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(tmp_path / "docs")
    (ws.runs_dir / "x").mkdir(parents=True)
    (ws.runs_dir / "x" / "log.txt").write_text("training log loss 0.5\n")
    other = Workspace(tmp_path / "other")
    other.ensure()
    (other.root / "notes.txt").write_text("a note beside another workspace's wb.toml\n")
    before = store_state(ws)
    for root, says in [(ws.root, "is the workspace"), (ws.runs_dir / "x", "is inside the workspace"),
                       (other.root, "is a wb workspace (it holds wb.toml)")]:
        code, out, err = run_wb(capsys, monkeypatch, "index", str(root), "-w", str(ws.root))
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (root, err)
    assert store_state(ws) == before
    assert _sources(ws) == {str(tmp_path / "docs"): {"a.md"}}
