"""The command line's contract with users and scripts: usage mistakes and bad settings are one line on
stderr with exit 2, Ctrl-C is exit 130 with one line, machine-readable output stays machine-readable,
and a run that failed before training does not hold its name hostage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import copy_small_corpus, require_models


def wb(*args: str, workspace=None, **popen) -> subprocess.CompletedProcess:
    env = dict(popen.pop("env", os.environ))
    if workspace is not None:
        env["WB_WORKSPACE"] = str(workspace)
    return subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300, **popen)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wb: error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("args,says", [
    (["query", "x", "--bogus"], "No such option: --bogus"),
    (["query"], "give a query text, or --queries FILE"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["query", "x", "-k", "abc"], "Invalid value for '-k'"),
    (["index", ""], "PATH is empty (an unset shell variable?)"),  # not the current folder
    (["runs", "stop", "r1", "--wait", "-5"], "--wait must be 0 or more seconds, not -5"),
    (["query", os.fsdecode(b"caf\xe9")], "the query 'caf\\xe9' is not valid UTF-8 text"),  # latin-1 bytes
])
def test_usage_mistakes_are_one_line_exit_2(tmp_path, args, says):
    assert says in one_line_error(wb(*args, workspace=tmp_path / "ws"))
    assert not (tmp_path / "ws").exists()


def test_bare_wb_without_a_terminal_says_so_instead_of_drawing_the_tui(tmp_path):
    proc = wb(workspace=tmp_path / "ws", stdin=subprocess.DEVNULL)
    assert "the workbench TUI needs a terminal" in one_line_error(proc) and "\x1b" not in proc.stdout


def test_an_empty_workspace_option_is_refused_not_read_as_the_default(tmp_path):
    proc = wb("index", str(tmp_path), "-w", "", cwd=tmp_path)
    assert "--workspace is empty" in one_line_error(proc) and not (tmp_path / ".wb").exists()


def test_help_has_a_short_flag_and_version_prints_the_package_version():
    short, long = wb("-h"), wb("--help")
    assert short.returncode == 0 and short.stdout == long.stdout and "query" in short.stdout
    from importlib.metadata import version

    proc = wb("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"wb {version('wb')}"


@pytest.mark.parametrize("toml,says", [
    ('[fusion]\ndepth = "lots"\n', "[fusion] depth must be an integer, not 'lots'"),
    ("[fusion.weights]\ncolbert = -3\n", "[fusion.weights] colbert must be a number >= 0"),
    ("[rerank]\ninterpolation = 2\n", "[rerank] interpolation must be between 0.0 and 1.0"),
    ("[index]\nchunk_overlap = 300\n", "chunk_overlap (300) must be less than half of chunk_tokens (256)"),
    ("[index]\nchunk_tokens = 64\n", "chunk_overlap (32) must be less than half of chunk_tokens (64)"),
    ('[models]\ndense_query_template = "query: {instr}{text}"\n',  # was a KeyError at every query
     "[models] dense_query_template names {instr}: it may use {instruction}, {text} only"),
    ('[models]\nsparse = ""\n', "[models] sparse is empty"),  # it named the current folder
    # every fused score was inf (no order) and --json wrote Infinity
    ("[fusion.weights]\ndense = 1e308\n", "[fusion.weights] dense must be at most 1e+06, not 1e+308"),
])
def test_a_wrong_value_in_wb_toml_names_the_key(small_workspace, tmp_path, toml, says):
    ws, _ = small_workspace
    shutil.copytree(ws.root, tmp_path / "ws")
    config = tmp_path / "ws" / "wb.toml"
    header = toml.splitlines()[0]
    kept, skipping = [], False
    for line in config.read_text().splitlines():  # drop that section (its keys take defaults), then add ours
        if line.startswith("["):
            skipping = line.split("#")[0].strip() == header
        if not skipping:
            kept.append(line)
    config.write_text("\n".join(kept) + "\n" + toml)
    assert says in one_line_error(wb("query", "x", workspace=tmp_path / "ws"))


@pytest.mark.parametrize("toml,says", [
    ("[rerank]\ninterpolation = nan\n", "[rerank] interpolation must be a finite number, not nan"),
    ("[fusion.weights]\ncolbert = nan\n", "[fusion.weights] colbert must be a number >= 0, not nan"),
    ("[fusion.weights]\ncolbert = inf\n", "[fusion.weights] colbert must be a number >= 0, not inf"),
    ("[index]\nsparse_step = inf\n", "[index] sparse_step must be a finite number, not inf"),
])
def test_a_value_that_is_not_a_finite_number_is_refused(toml, says):
    """nan passes every comparison, so it passed every range check and came out as "score": NaN
    (not JSON) in `wb query --json`."""
    from workbench.config import parse_config
    from workbench.errors import UsageError

    with pytest.raises(UsageError) as caught:
        parse_config(toml)
    assert says in str(caught.value)


def test_a_wb_toml_that_is_no_utf8_text_or_a_folder_is_one_line(tmp_path):
    for make, says in ((lambda p: p.write_bytes(b'[fusion]\nmethod = "weighted" # caf\xe9\n'), "is not UTF-8 text"),
                       (lambda p: p.mkdir(), "is a folder, not a wb.toml file")):
        ws = tmp_path / f"ws{len(says)}"
        ws.mkdir()
        make(ws / "wb.toml")
        proc = wb("models", workspace=ws)
        assert proc.returncode == 2 and says in one_line_error(proc), proc.stderr


def test_a_mistyped_model_in_wb_toml_leaves_the_index_answering_and_says_so(small_workspace, tmp_path):
    """The README's promise for an edited wb.toml holds for a model name that resolves to nothing:
    the index answers with the models that built it (a note says why); `wb index` refuses in one line."""
    ws, _ = small_workspace
    shutil.copytree(ws.root, tmp_path / "ws")
    config = tmp_path / "ws" / "wb.toml"
    config.write_text(config.read_text().replace('dense = "all-MiniLM-L6-v2"', 'dense = "all-MiniLM-L6-v3"', 1))
    proc = wb("query", "remove a directory", "-p", "dense", "-k", "2", "--json", workspace=tmp_path / "ws")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert len(answer["results"]) == 2 and answer["models"]["dense"] == "all-MiniLM-L6-v2"
    assert "'all-MiniLM-L6-v3'" in answer["note"] and "answers with the models that built it" in answer["note"]
    assert "'all-MiniLM-L6-v3'" in one_line_error(wb("index", workspace=tmp_path / "ws"))


@pytest.mark.parametrize("args,says", [
    (["", "-p", "bm25"], "the query is empty"),
    (["x", "-p", "hybrid+rerank", "--rerank-depth", "0"], "--rerank-depth must be at least 1"),
    (["x", "-p", "dense", "--instruction", "scifcat"], "unknown instruction preset 'scifcat'"),
    (["x", "-p", "dense", "-i", ""], "the instruction is empty"),  # as -i "  " is
    (["x", "--rerank-depth", "0"], "--rerank-depth must be at least 1"),  # not "ignored for hybrid" first
    (["x", "--compare", "foo=bar"], "unknown model role 'foo'"),  # not "hybrid runs no foo model"
    (["x", "-m", "dense= "], "--model takes ROLE=NAME, not 'dense= '"),
])
def test_queries_that_cannot_mean_anything_are_refused(small_workspace, args, says):
    ws, _ = small_workspace
    assert says in one_line_error(wb("query", *args, workspace=ws.root))


def test_piped_results_keep_one_line_each_and_say_result_in_the_singular(small_workspace):
    ws, _ = small_workspace
    proc = wb("query", "remove a directory and everything in it", "-p", "bm25", "-k", "1", "-m", "reranker=maxsim",
              workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "--model reranker=... applies to +rerank pipelines: ignored for bm25"
    lines = proc.stdout.splitlines()
    assert "1 result for remove a directory and everything in it" in lines[0]
    assert len(lines) == 5  # header, hit, its ranks, its snippet, timings: nothing wrapped at 80 columns
    assert "colbert:" not in proc.stdout and "reranker:" not in proc.stdout  # bm25 runs neither model
    # a fusion of two modes lists those two under each hit, never the modes it did not run; an
    # instruction it does not read is said to be unused
    proc = wb("query", "remove a directory and everything in it", "-p", "sparse+bm25", "-k", "3", "-i", "qa",
              workspace=ws.root)
    assert proc.returncode == 0, proc.stderr
    ranks = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith(("sparse ", "bm25 "))]
    assert len(ranks) == 3 and all({w for w in r if not w.startswith("#")} <= {"sparse", "bm25", "-"} for r in ranks)
    assert "(not used: sparse+bm25 reads the bare query)" in proc.stdout and "fused scores: relative" in proc.stdout


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_ctrl_c_while_indexing_is_exit_130_says_what_is_kept_and_the_rerun_completes(tmp_path):
    require_models()
    corpus = copy_small_corpus(tmp_path / "corpus")
    env = dict(os.environ, WB_WORKSPACE=str(tmp_path / "ws"))
    # as from a terminal: SIGINT not ignored (a suite started with `&` from a script hands its
    # children SIGINT ignored, and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "index", str(corpus), "--progress-json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # interrupt once encoding has begun
        if json.loads(line)["phase"] == "encoding":
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "wb: interrupted" and "Traceback" not in err
    assert "indexing cut off: every document written so far is kept" in err and f"wb index {corpus}" in err
    again = wb("index", str(corpus), "--progress-json", workspace=tmp_path / "ws")
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in again.stdout.splitlines()]  # every stdout line is JSON
    assert rows[-1]["phase"] == "done" and rows[-1]["total_docs"] == len(list(corpus.rglob("*.md")))


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_a_run_refused_on_its_data_or_failed_to_start_leaves_its_name_free(tmp_path):
    """Every row of --data is read before the run exists: a malformed one is one line and no run
    folder. A detached run whose launcher cannot start is one line and no run folder too; --resume
    with options says they would be ignored."""
    from tiny_models import tiny_bert

    base = tiny_bert(tmp_path / "base")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n{not json\n')
    args = ["train", "reranker", "--data", str(bad), "--base", str(base), "--out", "ce", "--max-steps", "1"]
    for detach in ([], ["--detach"]):
        refused = wb(*args, *detach, workspace=tmp_path / "ws")
        assert "bad.jsonl:2" in one_line_error(refused) and "fix or delete the row" in refused.stderr
        assert not (tmp_path / "ws" / "runs" / "ce").exists()
    (tmp_path / "good.jsonl").write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n' * 4)
    args[args.index(str(bad))] = str(tmp_path / "good.jsonl")
    retried = wb(*args, workspace=tmp_path / "ws")
    assert retried.returncode == 0, retried.stderr
    assert json.loads((tmp_path / "ws" / "runs" / "ce" / "status.json").read_text())["state"] == "finished"
    # a detached run whose launcher cannot start is refused in one line before its folder exists
    # (it stayed "queued" for ever, its name taken, after an internal FileNotFoundError; then a
    # failed run was left behind)
    args[args.index("ce")] = "ce2"
    env = dict(os.environ, WB_TRAIN_LAUNCHER="no-such-launcher --flag")
    unstarted = wb(*args, "--detach", workspace=tmp_path / "ws", env=env)
    says = one_line_error(unstarted)
    assert "could not start no-such-launcher" in says and "$WB_TRAIN_LAUNCHER" in says
    assert not (tmp_path / "ws" / "runs" / "ce2").exists()
    resumed = wb("train", "reranker", "--resume", "ce", "--data", str(bad), workspace=tmp_path / "ws")
    assert "options given (data) would be ignored" in one_line_error(resumed)
    assert wb(*args, workspace=tmp_path / "ws").returncode == 0


def test_a_new_folder_or_file_with_nothing_to_index_says_why(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "nothing to index in" in one_line_error(wb("index", str(tmp_path / "empty"), workspace=tmp_path / "ws"))
    for name in ("a.docx", "b.docx", "c.odt"):  # a folder of documents in formats wb does not read
        (tmp_path / "empty" / name).write_bytes(b"PK\x03\x04")
    says = one_line_error(wb("index", str(tmp_path / "empty"), workspace=tmp_path / "ws"))
    assert says.endswith("; not read (types wb does not read): 2 .docx, 1 .odt")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    says = one_line_error(wb("index", str(tmp_path / "blob.txt"), workspace=tmp_path / "ws"))
    assert says == f"wb: error: cannot index {tmp_path / 'blob.txt'}: binary"
    bad = tmp_path / "bad.jsonl"  # a single .jsonl corpus none of whose rows can be read: the first bad line
    bad.write_text('not json\n\n{"_id": "a"}\n{"text": "no id"}\n')
    says = one_line_error(wb("index", str(bad), workspace=tmp_path / "ws"))
    assert says == (f"wb: error: cannot index {bad}: no row of it can be indexed (3 rows skipped), the first at "
                    f"{bad}:1: malformed JSON: Expecting value at column 1")
    assert not (tmp_path / "ws").exists()  # nothing was indexed, and the new workspace is not left behind


def test_a_query_during_the_first_index_says_it_is_being_indexed(tmp_path):
    from workbench.store.manifest import Manifest
    from workbench.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Manifest(ws.manifest_path).close()  # what the first `wb index` has written before its first batch
    with ws.write_lock():
        says = one_line_error(wb("query", "x", workspace=ws.root))
    assert "is being indexed and holds no documents yet" in says
    assert "is empty" in one_line_error(wb("query", "x", workspace=ws.root))  # no writer: plainly empty


def _start_tiny_reranker_run(tmp_path, rows: int, *options: str) -> subprocess.Popen:
    """`wb train reranker` as a subprocess (pipes on stdout and stderr): a random tiny BERT on
    ``rows`` topic groups, run "ce" in the workspace ``tmp_path/ws``."""
    from tiny_models import tiny_bert, topic_groups

    base = tiny_bert(tmp_path / "base")
    data = topic_groups(tmp_path / "groups.jsonl", n=rows)
    env = dict(os.environ, WB_WORKSPACE=str(tmp_path / "ws"))
    return subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "train", "reranker", "--data", str(data),
                             "--base", str(base), "--out", "ce", *options],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_ctrl_c_during_foreground_training_checkpoints_and_exits_130(tmp_path):
    import time

    proc = _start_tiny_reranker_run(tmp_path, 48, "--batch-size", "1", "--epochs", "50")
    events = tmp_path / "ws" / "runs" / "ce" / "events.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (events.exists() and '"step"' in events.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-500:]
    assert "stopped at step" in out and err.strip().splitlines()[-1] == "wb: interrupted"
    assert json.loads((tmp_path / "ws" / "runs" / "ce" / "status.json").read_text())["state"] == "stopped"


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_a_foreground_run_whose_console_goes_away_trains_on_into_its_log(tmp_path):
    """`wb train ... | head -1`: the reader leaving ends the echo, not the run (it had failed on a
    BrokenPipeError at its next log line, before any checkpoint)."""
    proc = _start_tiny_reranker_run(tmp_path, 24, "--batch-size", "2", "--max-steps", "6")
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err[-500:]
    run = tmp_path / "ws" / "runs" / "ce"
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert "step 6/6" in (run / "log.txt").read_text() and (run / "model").is_dir()


@pytest.mark.parametrize("kind", ["embedder", "reranker", "colbert"])
def test_train_help_shows_the_defaults_a_run_uses(kind, monkeypatch):
    """The options default to "not given" (a run.toml may fill them); the help still shows the
    trainer config's real defaults, and a flag shows no value type."""
    from dataclasses import fields

    from trainers import config as configs

    cls = next(c for c in vars(configs).values() if isinstance(c, type) and c.__dict__.get("TRAINER") == kind)
    defaults = {f.name: f.default for f in fields(cls)}
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    proc = wb("train", kind, "--help")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("│ --")}
    assert f"[default: {defaults['lr']:g}]" in lines["--lr"]
    assert f"[default: {defaults['batch_size']}]" in lines["--batch-size"]
    assert "[default: " not in lines["--base"]  # the workspace's dense model: no fixed default
    assert "<bool>" not in lines["--detach"] and "<bool>" not in lines["--help"]


def test_the_workspace_given_before_the_command_is_the_commands(small_workspace, tmp_path):
    """`wb -w WS query ...` reads WS, as `wb query ... -w WS` does (it went to ./.wb); the command's
    own -w still wins."""
    ws, _ = small_workspace
    env = {k: v for k, v in os.environ.items() if k != "WB_WORKSPACE"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "workbench.cli.main", *args], env=env, cwd=tmp_path,
                                       capture_output=True, text=True, timeout=300)
    before = run("-w", str(ws.root), "query", "rmtree", "-p", "bm25", "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["results"][0]["doc_id"] == "shutil/rmtree.md"
    other = run("-w", str(ws.root), "query", "rmtree", "-p", "bm25", "-w", str(tmp_path / "nowhere"))
    assert other.returncode == 2 and str(tmp_path / "nowhere") in other.stderr
    unset = run("-w", "", "index", str(tmp_path))  # `wb -w "$WS" index ...` with WS unset: never ./.wb
    assert unset.returncode == 2 and "--workspace is empty" in unset.stderr
    assert not (tmp_path / ".wb").exists()


def test_chunks_longer_than_the_dense_model_reads_are_refused_before_anything_is_written(tmp_path):
    """`chunk_tokens = 100000` would leave most of every chunk out of dense, ColBERT and sparse."""
    require_models()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("a note about aardvarks\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    from workbench.config import DEFAULT_TOML

    (ws / "wb.toml").write_text(DEFAULT_TOML.replace("chunk_tokens = 256", "chunk_tokens = 100000"))
    says = one_line_error(wb("index", str(tmp_path / "docs"), workspace=ws))
    assert "[index] chunk_tokens (100000) is more than the dense model reads (256 tokens)" in says
    assert not (ws / "manifest.sqlite").exists()


@pytest.mark.parametrize("extra,says", [
    (["--mixed-precision", "fp8"], "training option mixed_precision (--mixed-precision) must be auto, no, bf16, fp16"),
    (["--eval-every", "2"], "--eval-every (eval_every) needs --eval-data (eval_data)"),
    (["--negatives", "-1"], "training option negatives_per_query (--negatives) must be at least 0"),
])
def test_a_bad_training_option_is_refused_before_a_detached_run_starts(tmp_path, extra, says):
    """Refused in one line, exit 2, with no run folder left: never 'started' and then failed."""
    from tiny_models import tiny_bert, topic_groups

    base = tiny_bert(tmp_path / "base")
    data = topic_groups(tmp_path / "groups.jsonl", n=8)
    proc = wb("train", "embedder", "--data", str(data), "--base", str(base), "--out", "x", "--detach", *extra,
              workspace=tmp_path / "ws")
    assert proc.returncode == 2 and says in one_line_error(proc), proc.stderr
    assert not (tmp_path / "ws" / "runs" / "x").exists()


def test_resuming_a_run_under_another_trainer_is_refused(tmp_path):
    from tui_fake import fake_run

    fake_run(tmp_path / "ws", "sv0", "stopped", steps=2, trainer="embedder")
    proc = wb("train", "reranker", "--resume", "sv0", workspace=tmp_path / "ws")
    assert proc.returncode == 2
    assert "run 'sv0' is trained by `wb train embedder`, not `wb train reranker`" in one_line_error(proc)


@pytest.mark.parametrize("text,says", [
    ('index = "x"\n', "index must be a [index] section, not 'x'"),
    ("fusion = 3\n", "fusion must be a [fusion] section"),
    ("[fusion]\nweights = 2\n", "[fusion] weights must be a [fusion.weights] section"),
    ('[models]\ndense_pooling = "cls"\n', "dense_pooling was never used"),
    ('[index]\nexclude = "node_modules"\n', "[index] exclude must be a list of strings"),
])
def test_a_wb_toml_of_the_wrong_shape_is_one_line(tmp_path, text, says):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "wb.toml").write_text(text)
    assert says in one_line_error(wb("models", workspace=tmp_path / "ws"))


def test_wb_models_keeps_its_columns_when_a_role_names_a_folder(tmp_path):
    """A folder path as a role's model widens the name column (labels stay aligned) and a label equal
    to the name is not repeated."""
    from workbench.models.cache import resolve_model_path

    require_models()
    (tmp_path / "ws").mkdir()
    folder = resolve_model_path("splade-tiny")
    (tmp_path / "ws" / "wb.toml").write_text(f'[models]\nsparse = "{folder}"\n')
    proc = wb("models", workspace=tmp_path / "ws")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:5]}
    assert rows["sparse"].split() == ["sparse", str(folder)]
    assert rows["colbert"].index("maxsim over") == rows["reranker"].index("maxsim over") > len(str(folder))
    # a configured folder that is gone is said on its row (the listing showed it as if usable)
    (tmp_path / "ws" / "wb.toml").write_text(f'[models]\nsparse = "{tmp_path / "gone"}"\n')
    proc = wb("models", workspace=tmp_path / "ws")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:5]}
    assert "not usable:" in rows["sparse"] and str(tmp_path / "gone") in rows["sparse"]
    assert "not usable" not in rows["dense"]


def test_no_help_text_is_cut_at_80_columns():
    """Every command's --help on an 80-column terminal: rich cuts a word longer than its column
    with "…" (`dense|colbert|sparse|bm25|hybr…` was the -p help), so help words must wrap."""
    script = """
import typer
from workbench.cli.main import app
from workbench.cli.help_text import polish_help, _walk
root = typer.main.get_command(app)
polish_help(root)
def paths(command, prefix):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, prefix + [name])
for path in paths(root, []):
    print("=== wb " + " ".join(path), flush=True)
    try:
        root(path + ["--help"], prog_name="wb", standalone_mode=False)
    except SystemExit:
        pass
"""
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sections = proc.stdout.split("=== ")[1:]
    assert len(sections) > 15  # every command and subcommand was shown
    cut = {s.splitlines()[0]: [line for line in s.splitlines() if "…" in line] for s in sections}
    assert {name: lines for name, lines in cut.items() if lines} == {}


def test_a_manifest_that_is_not_a_database_is_one_line(tmp_path):
    """A workspace whose manifest.sqlite is damaged (a copy cut short): each command says so in one
    line (it was an internal sqlite3.DatabaseError)."""
    from workbench.config import DEFAULT_TOML

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "wb.toml").write_text(DEFAULT_TOML)
    (ws / "manifest.sqlite").write_bytes(b"this is no SQLite file, only some text left by a bad copy\n" * 4)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\nan aardvark\n")
    for args in (("query", "aardvark"), ("index", str(tmp_path / "docs"))):
        says = one_line_error(wb(*args, workspace=ws))
        assert "manifest.sqlite cannot be read as the workspace's manifest (file is not a database)" in says


def test_a_workspace_that_is_a_file_is_one_line(tmp_path):
    """`-w notes.txt`: an internal FileExistsError before; the same for a path inside a file."""
    (tmp_path / "afile").write_text("hi\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n")
    for ws, says in ((tmp_path / "afile", "is a file: give a folder"),
                     (tmp_path / "afile" / "sub", f"is inside {tmp_path / 'afile'}, which is a file")):
        for args in (("index", str(tmp_path / "docs")), ("query", "x")):
            assert says in one_line_error(wb(*args, "-w", str(ws)))
    # a folder that cannot be made (here under /proc, where nothing can be created; read-only or no
    # permission alike): an "internal error: FileNotFoundError" before
    assert "cannot create the workspace /proc/nonexistent/ws" in one_line_error(
        wb("index", str(tmp_path / "docs"), "-w", "/proc/nonexistent/ws"))


def test_paths_and_model_names_with_brackets_are_printed_as_written(tmp_path):
    """Rich read them as markup: a model folder `.../a[/b]c` crashed `wb query` ("closing tag
    '[/b]'"), and `[bold]` vanished from a skipped file's name."""
    import io

    from rich.console import Console

    from workbench.cli import common as cli
    from workbench.cli.output import render_result
    from workbench.search.results import QueryResult
    from workbench.types import Hit

    label = "maxsim over /models/a[/b]c [bold]x tokens (zero-shot)"
    result = QueryResult(query="q", instruction="", pipeline="colbert", models={"colbert": label},
                         results=[Hit(1, "d", "d#0", "/p/d", "T", 1.0, {"colbert": 1.0}, {"colbert": 1})])
    out = io.StringIO()
    render_result(result, Console(file=out, width=200))
    assert f"colbert: {label}" in out.getvalue()
    printed = io.StringIO()
    Console(file=printed, width=200).print(cli._plain("skipped /c/a[/b]c/[bold]y.txt: empty", style="dim"))
    assert "skipped /c/a[/b]c/[bold]y.txt: empty" in printed.getvalue()


def test_a_run_name_no_folder_can_have_or_a_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    """A run name of 300 bytes (ENAMETOOLONG) or with a newline, and a workspace whose runs/ cannot
    be made (here a file in the way; read-only is the same OSError), are one line, exit 2: they were
    `wb: internal error: OSError` (and the newline made a run whose `wb runs` line broke in two)."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n' * 4)
    ws = tmp_path / "ws"
    train = ["train", "reranker", "--data", str(data), "--base", "dense", "--max-steps", "1", "--out"]
    assert "300 bytes, at most 255" in one_line_error(wb(*train, "a" * 300, workspace=ws))
    assert "control characters" in one_line_error(wb(*train, "two\nlines", workspace=ws))
    for command in (["runs", "stop"], ["train", "resume"]):
        assert "no run named 'aaaa" in one_line_error(wb(*command, "a" * 300, workspace=ws))
    ws.mkdir()
    (ws / "runs").write_text("")  # not a folder: runs/NAME cannot be made
    require_models()
    says = one_line_error(wb(*train, "ok", workspace=ws))
    assert f"cannot create the run folder {ws / 'runs' / 'ok'}" in says


def test_a_damaged_workspace_says_what_is_wrong_in_one_line(small_workspace, tmp_path, capsys, monkeypatch):
    """A folder where manifest.sqlite should be, or a file where the snapshot folder should be, was an
    internal OperationalError / FileExistsError: one line naming the part that is wrong, exit 2."""
    from tiny_models import run_wb

    (tmp_path / "ws_m" / "manifest.sqlite").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("whales are large mammals\n")
    for args in (["query", "x"], ["index", str(tmp_path / "docs")]):
        code, out, err = run_wb(capsys, monkeypatch, *args, "-w", str(tmp_path / "ws_m"))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"wb: error: the workspace's manifest {tmp_path / 'ws_m' / 'manifest.sqlite'} is a folder"), err
    ws, _ = small_workspace
    shutil.copytree(ws.root, tmp_path / "ws_s")
    shutil.rmtree(tmp_path / "ws_s" / "snapshot")
    (tmp_path / "ws_s" / "snapshot").write_text("junk")
    code, out, err = run_wb(capsys, monkeypatch, "query", "list", "-p", "hybrid", "-w", str(tmp_path / "ws_s"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"wb: error: the workspace's snapshot {tmp_path / 'ws_s' / 'snapshot'} is a file"), err


def test_json_output_never_carries_nan_or_infinity():
    """`--json` wrote `"score": Infinity` (no RFC 8259 JSON): a number that is not finite is one error."""
    from workbench.cli.output import json_line
    from workbench.errors import WbError

    assert json_line({"score": 1.5, "q": "caf\u00e9"}) == '{"score": 1.5, "q": "caf\u00e9"}\n'
    for bad in (float("inf"), float("nan")):
        with pytest.raises(WbError, match="not a finite number"):
            json_line({"results": [{"score": bad}]})


@pytest.mark.parametrize("var,value,says", [
    ("WB_QUERY_THREADS", "abc", "WB_QUERY_THREADS='abc' is not a thread count"),
    ("WB_QUERY_THREADS", "-1", "WB_QUERY_THREADS='-1' is not a thread count"),
    ("WB_QUERY_BACKEND", "junk", "WB_QUERY_BACKEND='junk' is not a query backend; use one of torch, numpy"),
    ("WB_DTYPE", "junk", "WB_DTYPE='junk' is not a dtype wb runs in"),
])
def test_a_bad_query_setting_in_the_environment_is_one_line_not_ignored(tmp_path, capsys, monkeypatch, var, value,
                                                                         says):
    """WB_QUERY_THREADS=abc and WB_QUERY_BACKEND=junk were silently ignored (auto was used), while a bad
    WB_DTYPE was refused: all three are one line before anything runs."""
    from tiny_models import run_wb

    monkeypatch.setenv(var, value)
    code, out, err = run_wb(capsys, monkeypatch, "query", "x", "-p", "bm25", "-w", str(tmp_path / "ws"))
    assert code == 2 and out == "" and err.startswith(f"wb: error: {says}"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ws").exists()


def test_a_failed_first_index_leaves_nothing_that_looks_like_an_index(tmp_path, capsys, monkeypatch):
    """A first `wb index` (or `wb index --model`) whose model cannot load left empty stores (a variant:
    a folder `--prune-variants` kept, and queries described with contradictory lines): a failed first
    build leaves none, and `--prune-variants` removes an unbuilt variant one left before."""
    from tiny_models import run_wb, tiny_bert

    import workbench.variants

    require_models()
    bad = tiny_bert(tmp_path / "bad")
    (bad / "model.safetensors").write_text("junk")  # found only once the stores are made
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("whales are large mammals that live in the sea\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "wb.toml").write_text(f'[models]\ndense = "{bad}"\n')
    code, _out, err = run_wb(capsys, monkeypatch, "index", str(tmp_path / "docs"), "-w", str(ws))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not {"lance", "tantivy", "snapshot", "manifest.sqlite"} & {p.name for p in ws.iterdir()}
    (ws / "wb.toml").unlink()
    assert run_wb(capsys, monkeypatch, "index", str(tmp_path / "docs"), "-w", str(ws))[0] == 0
    code, _out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws), "-m", f"dense={bad}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (ws / "variants").exists()  # nor an empty variants/ folder
    monkeypatch.setattr(workbench.variants, "remove_unbuilt", lambda *a, **k: None)  # as wb did before
    assert run_wb(capsys, monkeypatch, "index", "-w", str(ws), "-m", f"dense={bad}")[0] == 2
    assert len(list((ws / "variants").glob("*"))) == 1
    code, out, err = run_wb(capsys, monkeypatch, "query", "whales", "-w", str(ws), "-m", f"dense={bad}", "-p", "dense")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is empty" in err, err  # not "older" first
    code, out, err = run_wb(capsys, monkeypatch, "index", "-w", str(ws), "--prune-variants")
    assert code == 0 and out.startswith("removed 1 model variant") and not (ws / "variants").exists(), out + err
