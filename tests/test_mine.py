"""`wb mine` and its pseudo-queries: the parts the end-to-end tests in test_trainer_runs.py do not
reach (titles without their heading line, file names that are no title, the conclusions label,
queries without a positive, --out targets that are not plain files, clean-up after an interrupted
or failed run, --instruction, the margin at a score of 0, --split with --pseudo)."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter

import pytest

from conftest import require_models
from tiny_models import run_wb


# --------------------------------------------------------------------------- no models needed

def test_titles_drop_the_heading_line_that_is_the_query(tmp_path):
    """A Markdown file's title is its `# heading` (or setext heading, or front matter `title:`), which
    the text keeps: neither the positive nor the document written as a negative may hold it."""
    from workbench.ingest.readers import corpus_documents
    from workbench.pseudo_queries import make_pseudo_queries, negative_text

    (tmp_path / "atx.md").write_text("# bisect — Array bisection algorithm\n\nThis module keeps a list sorted.\n")
    (tmp_path / "setext.md").write_text("Gzip support\n============\n\nRead and write gzip files.\n")
    (tmp_path / "front.md").write_text("---\ntitle: Path joining\n---\n\n# Path joining\n\nJoin path parts.\n")
    (tmp_path / "late.md").write_text("Some intro words.\n\n# Copying trees\n\nCopy a folder tree.\n")
    (tmp_path / "guide.rst").write_text("=========\nRST guide\n=========\n\nHow to write it.\n")
    docs = corpus_documents(tmp_path, file_name_titles=False)
    made = {q.text: q for q in make_pseudo_queries("titles", [(d, t, x) for d, (t, x) in docs.items()])}
    assert made["bisect — Array bisection algorithm"].positive == "This module keeps a list sorted."
    assert made["Gzip support"].positive == "Read and write gzip files."
    assert made["Path joining"].positive == "Join path parts."
    assert made["Copying trees"].positive == "Some intro words.\n\nCopy a folder tree."
    assert made["RST guide"].positive == "How to write it."
    assert len(made) == 5
    for doc_id, (title, text) in docs.items():
        assert title not in negative_text("titles", title, text)  # (each title is said once in its file)
    # a document that is only its heading gives no query (its positive would be empty)
    assert make_pseudo_queries("titles", [("d", "Only", "# Only\n")]) == []


def test_titles_skip_file_names_and_titles_two_documents_share(tmp_path):
    """A .txt file's "title" is its file name: two notes.txt would give the query "notes" twice, each
    one's positive the other's likely negative. File-name titles give no query, a title two documents
    share gives none, and the summary says how many documents gave none and why."""
    from workbench.ingest.readers import corpus_documents
    from workbench.mine import _mine_source
    from workbench.pseudo_queries import SKIP_SHARED_TITLE, SKIP_UNTITLED, make_pseudo_queries

    for sub in ("a", "b"):
        (tmp_path / "txt" / sub).mkdir(parents=True)
        (tmp_path / "txt" / sub / "notes.txt").write_text(f"Notes of folder {sub}.\n")
    docs = corpus_documents(tmp_path / "txt", file_name_titles=False)
    assert {t for t, _x in docs.values()} == {""}
    assert set(corpus_documents(tmp_path / "txt").values()) == {("notes", "Notes of folder a.\n"),
                                                                ("notes", "Notes of folder b.\n")}
    from workbench.errors import InputError

    with pytest.raises(InputError, match=r"no document gives a 'titles' pseudo-query: 2 without a title"):
        _mine_source(tmp_path / "txt", "train", "titles")

    skipped: Counter = Counter()
    made = make_pseudo_queries("titles", [("1", "Intro", "a"), ("2", " intro ", "b"), ("3", "Other", "c"),
                                          ("4", "", "d")], skipped)
    assert [q.doc_id for q in made] == ["3"]
    assert skipped == {SKIP_SHARED_TITLE: 2, SKIP_UNTITLED: 1}

    mixed = tmp_path / "mixed"
    (mixed / "x").mkdir(parents=True)
    (mixed / "x" / "notes.txt").write_text("Plain notes.\n")
    (mixed / "gzip.md").write_text("# Gzip support\n\nRead and write gzip files.\n")
    source = _mine_source(mixed, "train", "titles")
    assert [t.query for t in source.targets] == ["Gzip support"]
    assert source.notes == ("1 of 2 documents gave no query: 1 without a title of their own (a file name is none) "
                            "or any text besides it",)
    # conclusions keep the file name as the title: it is written with the text, never a query
    assert corpus_documents(mixed)["x/notes.txt"][0] == "notes"


@pytest.mark.parametrize("closing, query", [
    ("Significance of these findings remains unclear for patients with type 2 diabetes.",
     "Significance of these findings remains unclear for patients with type 2 diabetes."),
    ("Conclusions drawn from this trial apply to adults only and not to children.",
     "Conclusions drawn from this trial apply to adults only and not to children."),
    ("Interpretation of the scans was blinded to the treatment the patients had received.",
     "Interpretation of the scans was blinded to the treatment the patients had received."),
    ("Conclusions: Inhibiting the kinase reduces tumour growth in mice with the mutation.",
     "Inhibiting the kinase reduces tumour growth in mice with the mutation."),
    ("CONCLUSIONS Inhibiting the kinase reduces tumour growth in mice with the mutation.",
     "Inhibiting the kinase reduces tumour growth in mice with the mutation."),
    ("Conclusions/Significance: Inhibiting the kinase reduces tumour growth in mice with the mutation.",
     "Inhibiting the kinase reduces tumour growth in mice with the mutation."),
    ("SIGNIFICANCE: Inhibiting the kinase reduces tumour growth in mice with the mutation.",
     "Inhibiting the kinase reduces tumour growth in mice with the mutation."),
])
def test_the_conclusion_label_is_cut_only_when_it_is_a_label(closing, query):
    """The label needs its ":" or "." (or capitals): a sentence that begins with the word keeps it."""
    from workbench.pseudo_queries import make_pseudo_queries

    text = f"We studied mice. We measured things carefully. Results were clear. {closing}"
    (made,) = make_pseudo_queries("conclusions", [("d", "T", text)])
    assert made.text == query


def test_the_margin_threshold_ignores_a_positive_scoring_zero():
    """Under min-max fusion a positive at the bottom of every list scores 0: margin x 0 would drop
    every candidate, those ranked below it too. Such a positive sets no threshold."""
    from workbench.mine import margin_threshold

    assert margin_threshold([], 0.95) is None
    assert margin_threshold([0.0], 0.95) is None
    assert margin_threshold([0.0, 0.8], 0.95) == pytest.approx(0.76)
    assert margin_threshold([2.0, 1.0], 0.95) == pytest.approx(0.95)
    assert margin_threshold([-2.0], 0.95) == pytest.approx(-2.1)  # below the positive for negative scores too


def test_split_with_pseudo_is_refused_in_one_line(tmp_path):
    from workbench.errors import UsageError
    from workbench.mine import mine_negatives

    with pytest.raises(UsageError, match="--split dev names the qrels split.*--pseudo"):
        mine_negatives(None, tmp_path, tmp_path / "x.jsonl", split="dev", pseudo="titles")
    assert not list(tmp_path.iterdir())


def test_termination_raises_runs_clean_ups_and_restores_the_handler(capsys):
    from workbench.cli.common import _termination_raises

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(SystemExit) as exc:
        with _termination_raises():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs between bytecodes
                    pass
            finally:
                cleaned.append(True)
    assert exc.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert "wb: terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


# --------------------------------------------------------------------------- an indexed tiny BEIR folder

@pytest.fixture(scope="module")
def mined_data(tmp_path_factory):
    """test_eval's tiny BEIR folder (train split) plus a query whose one positive is not in the
    corpus, and a workspace indexing the corpus."""
    require_models()
    from test_eval import QUERIES, make_dataset

    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    root = tmp_path_factory.mktemp("mine")
    queries = {**QUERIES, "q-gone": ("sort a list of records by a key", {"not-in-corpus": 1})}
    dataset = make_dataset(root / "tinydocs", queries=queries, split="train")
    ws = Workspace(root / "ws")
    ws.ensure()
    Indexer(ws).run(dataset / "corpus.jsonl")
    return dataset, ws


def _mine(capsys, monkeypatch, mined_data, out, *args):
    dataset, ws = mined_data
    return run_wb(capsys, monkeypatch, "mine", "--data", str(dataset), "-w", str(ws.root), "-p", "bm25",
                  "--range", "2-10", "--negatives", "2", "--out", str(out), *args)


def test_queries_without_a_positive_in_the_corpus_are_counted(mined_data, tmp_path, capsys, monkeypatch):
    code, out, err = _mine(capsys, monkeypatch, mined_data, tmp_path / "hn.jsonl")
    assert code == 0, err
    rows = (tmp_path / "hn.jsonl").read_text().splitlines()
    assert len(rows) == 7
    assert "wrote 7 examples" in out and "(8 queries; 1 skipped: no positive in the corpus; " in out


def test_an_out_that_cannot_be_written_fails_before_the_search(mined_data, tmp_path, capsys, monkeypatch):
    from workbench.search.searcher import Searcher

    def no_search(*args, **kwargs):
        raise AssertionError("searched before --out was checked")

    monkeypatch.setattr(Searcher, "search_many", no_search)
    (tmp_path / "afile").write_text("x")
    for out in ("/proc/x.jsonl", tmp_path / "afile" / "x.jsonl"):
        code, _out, err = _mine(capsys, monkeypatch, mined_data, out)
        assert code == 2 and err.startswith(f"wb: error: --out {out}: cannot write (") and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_out_that_is_no_plain_file_is_written_directly(mined_data, tmp_path, capsys, monkeypatch):
    """A FIFO stays a FIFO (its reader gets the rows), a pipe named /dev/fd/N (a shell's `>(...)`) is
    written, and a symlink stays a link whose target gets the rows; no OUT.partial is left."""
    code, _out, err = _mine(capsys, monkeypatch, mined_data, tmp_path / "plain.jsonl")
    assert code == 0, err
    expected = (tmp_path / "plain.jsonl").read_text()
    assert expected.count("\n") == 7

    def read_all(path_or_fd, into):
        with open(path_or_fd, encoding="utf-8") as fh:
            into.append(fh.read())

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=read_all, args=(fifo, got), daemon=True)
    reader.start()
    code, _out, err = _mine(capsys, monkeypatch, mined_data, fifo)
    reader.join(30)
    assert code == 0, err
    assert got == [expected] and fifo.is_fifo()

    r, w = os.pipe()
    got = []
    reader = threading.Thread(target=read_all, args=(r, got), daemon=True)
    reader.start()
    try:
        code, _out, err = _mine(capsys, monkeypatch, mined_data, f"/dev/fd/{w}")
    finally:
        os.close(w)
    reader.join(30)
    assert code == 0, err
    assert got == [expected]

    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to("target.jsonl")
    code, _out, err = _mine(capsys, monkeypatch, mined_data, link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == "target.jsonl"
    assert target.read_text() == expected
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("stop, code, said", [
    ("interrupt", 130, "wb: interrupted"),
    ("sigterm", 128 + signal.SIGTERM, "wb: terminated"),
    ("error", 1, "wb: internal error: RuntimeError: disk gone"),
])
def test_an_interrupted_or_failed_run_leaves_no_partial_file(mined_data, tmp_path, capsys, monkeypatch, stop, code,
                                                            said):
    """Ctrl-C, SIGTERM or an error while the rows are written: OUT.partial is removed, OUT is kept as
    it was."""
    import workbench.search.fusion as fusion

    real, calls = fusion.min_max, []

    def min_max(scores):
        calls.append(1)
        if len(calls) == 3:  # two rows written
            if stop == "interrupt":
                raise KeyboardInterrupt
            if stop == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
            raise RuntimeError("disk gone")
        return real(scores)

    def not_wbs(signum, frame):  # a SIGTERM wb does not take must fail the test, not end pytest
        raise RuntimeError("SIGTERM reached the test's own handler")

    monkeypatch.setattr(fusion, "min_max", min_max)
    out = tmp_path / "hn.jsonl"
    out.write_text("kept\n")
    previous = signal.signal(signal.SIGTERM, not_wbs)
    try:
        got, _out, err = _mine(capsys, monkeypatch, mined_data, out, "--first-stage-scores")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == code and said in err
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hn.jsonl"] and out.read_text() == "kept\n"


def test_the_instruction_retrieves_and_is_written_as_the_prompt(mined_data, tmp_path, capsys, monkeypatch):
    from workbench.encoders.templates import INSTRUCTION_PRESETS
    from workbench.search.searcher import Searcher

    seen = []
    real = Searcher.search_many

    def spy(self, texts, **kwargs):
        seen.append(kwargs.get("instruction"))
        return real(self, texts, **kwargs)

    monkeypatch.setattr(Searcher, "search_many", spy)
    out = tmp_path / "hn.jsonl"
    code, stdout, err = _mine(capsys, monkeypatch, mined_data, out, "--instruction", "python-docs")
    assert code == 0, err
    preset = INSTRUCTION_PRESETS["python-docs"]
    assert seen == [preset]
    assert {json.loads(line)["prompt"] for line in out.read_text().splitlines()} == {preset}
    # bm25 reads the bare query: said, and the prompt still written
    assert "the instruction is each row's prompt but not used by -p bm25" in " ".join(stdout.split())
    seen.clear()
    code, _stdout, err = _mine(capsys, monkeypatch, mined_data, tmp_path / "plain.jsonl")
    assert code == 0 and seen == [None]
    assert {json.loads(line)["prompt"] for line in (tmp_path / "plain.jsonl").read_text().splitlines()} == {""}
    code, _stdout, err = _mine(capsys, monkeypatch, mined_data, tmp_path / "x.jsonl", "-i", "pythondocs")
    assert code == 2 and "unknown instruction preset 'pythondocs'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_split_with_pseudo_is_refused_by_the_cli(mined_data, tmp_path, capsys, monkeypatch):
    code, _out, err = _mine(capsys, monkeypatch, mined_data, tmp_path / "x.jsonl", "--pseudo", "titles",
                            "--split", "train")
    assert code == 2 and "--pseudo" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_an_out_that_is_an_input_or_inside_a_workspace_is_refused_before_anything_is_written(
        mined_data, tmp_path, capsys, monkeypatch):
    """`--out beir/corpus.jsonl` replaced the dataset it mined, `--out WS/manifest.sqlite` the
    workspace: every file the run reads (a symlink to one too) and every file inside a workspace is
    refused before the search, and nothing is written."""
    from workbench.search.searcher import Searcher

    dataset, ws = mined_data
    monkeypatch.setattr(Searcher, "search_many", lambda *a, **k: pytest.fail("searched before --out was checked"))
    (tmp_path / "link.jsonl").symlink_to(dataset / "queries.jsonl")
    before = {p: p.read_bytes() for p in [*dataset.rglob("*"), ws.manifest_path, ws.config_path] if p.is_file()}
    for out, says in ((dataset / "corpus.jsonl", "is read by this run"), (tmp_path / "link.jsonl", "is read by this run"),
                      (dataset / "qrels" / "train.tsv", "is read by this run"),
                      (ws.manifest_path, "is inside the workspace"), (ws.root / "runs" / "hn.jsonl", "is inside the workspace")):
        code, _out, err = _mine(capsys, monkeypatch, mined_data, out)
        assert code == 2 and err.startswith(f"wb: error: --out {out} {says}") and len(err.splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before
    assert not list(dataset.rglob("*.partial")) and not (ws.root / "runs" / "hn.jsonl").exists()
