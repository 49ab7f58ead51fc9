"""Data-parallel training through torchrun on CPU (gloo): two ranks, one run folder.

What a multi-GPU user relies on, checked with two CPU processes (accelerate forms the process
group; GPUs would use NCCL the same way): the run finishes with one model; rank 0 alone writes
status and events; one optimizer step covers both ranks' batches (an epoch takes half the steps);
rank 0 trains exactly the batch a single process would; and InfoNCE's cross-device negatives add
the other rank's passages to every query's candidates (a strictly larger first loss).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_trainer_runs import _losses, _new, tiny  # noqa: F401  (module fixture: random 2-layer BERT + 24 rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _torchrun(run_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "trainers.cli", "run", str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        workers = _descendants(proc.pid)  # torchrun starts its workers in sessions of their own
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too: nothing may outlive the test
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_two_ranks_train_one_run(tiny, tmp_path):  # noqa: F811
    from trainers.embedder import train_embedder

    base, data = tiny
    options = dict(max_steps=0, epochs=1.0, batch_size=4, negatives_per_query=1)
    single = _new(tmp_path / "a", "single", base, data, **options)
    train_embedder(single)

    ddp = _new(tmp_path / "b", "ddp", base, data, **options)
    proc = _torchrun(ddp.path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ddp.status()["state"] == "finished" and (ddp.model_dir / "config.json").exists()
    events = ddp.events()
    steps = [e for e in events if e["event"] == "step"]
    # 24 examples in batches of 4 = 6 batches an epoch; two ranks -> 3 optimizer steps, logged once each
    assert [e["step"] for e in steps] == [1, 2, 3] and all(e["processes"] == 2 for e in steps)
    assert [e["event"] for e in events].count("started") == 1 and [e["event"] for e in events].count("finished") == 1
    assert len(_losses(single)) == 6
    # more candidates (the other rank's 8 passages) -> a larger loss for the same batch and weights
    assert steps[0]["loss"] > _losses(single)[0] + 0.05

    local = _new(tmp_path / "c", "local", base, data, cross_device_negatives=False, **options)
    proc = _torchrun(local.path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # without gathering, rank 0's first step is exactly the single process's first step
    assert _losses(local)[0] == pytest.approx(_losses(single)[0], abs=1e-5)


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_ranks_whose_batches_differ_in_hard_negatives_train_together(tiny, tmp_path):  # noqa: F811
    """One row of 24 without hard negatives (as `wb mine` writes some): in the step where one rank's
    batch holds it and the other's does not, both still gather the same tensors, so the run
    finishes (it used to hang: one rank gathered negatives, the other did not)."""
    import json

    base, data = tiny
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["neg"] = []
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = _new(tmp_path / "m", "mixed", base, mixed, max_steps=0, epochs=1.0, batch_size=4, negatives_per_query=1)
    proc = _torchrun(run.path, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run.status()["state"] == "finished"
    assert [e["step"] for e in run.events() if e["event"] == "step"] == [1, 2, 3]


@pytest.mark.slow  # heavy (12-42 s on a 2-core AVX2 machine): `make test-all` and .ci/run run it
def test_a_detached_run_goes_data_parallel_through_the_launcher_variable(tiny, tmp_path, monkeypatch):  # noqa: F811
    """`WB_TRAIN_LAUNCHER="torchrun --nproc_per_node 2" wb train embedder ... --detach` is how a user
    starts a multi-GPU run; here with two CPU ranks."""
    import time


    from trainers.runs import get_run

    base, data = tiny
    launcher = (f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_addr 127.0.0.1 "
                f"--master_port {_free_port()}")
    monkeypatch.setenv("WB_TRAIN_LAUNCHER", launcher)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ws = tmp_path / "ws"

    proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "train", "embedder", "-w", str(ws), "--data",
                           str(data), "--base", str(base), "--out", "par", "--batch-size", "4", "--max-steps", "2",
                           "--detach"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    run = get_run(ws, "par")
    deadline = time.time() + 240
    while run.status().get("state") not in ("finished", "failed") and time.time() < deadline:
        time.sleep(1)
    assert run.status().get("state") == "finished", run.log_path.read_text()[-2000:]
    steps = [e for e in run.events() if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2] and all(e["processes"] == 2 for e in steps)
