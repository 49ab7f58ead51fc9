"""A deterministic stand-in for ``workbench.tui.engine.Engine`` (same methods, fixed answers).

Used by the snapshot tests (so the SVGs do not depend on model numerics, timings or temp paths)
and by behaviour tests that need control over timing (a slow engine for cancellation).
"""

from __future__ import annotations

import subprocess
import threading
import time
from contextlib import contextmanager

from workbench.errors import WorkspaceError
from workbench.search.explain import (
    ColbertExplanation,
    DocumentView,
    SparseExplanation,
    SparseTerm,
    TokenMatch,
    query_words,
)
from workbench.search.results import QueryResult
from workbench.tui.engine import CorpusInfo, DocumentRow, Preview, SourceInfo
from workbench.types import Hit

DOCS = [
    ("shutil/rmtree.md", "shutil — rmtree", "Delete an entire directory tree; path must point to a directory."),
    ("shutil/copytree.md", "shutil — copytree", "Recursively copy an entire directory tree rooted at src."),
    ("tempfile/temporarydirectory.md", "tempfile — TemporaryDirectory", "Creates a temporary directory; on "
     "completion of the context the directory and everything in it are removed."),
    ("os/remove.md", "os — remove", "Remove (delete) the file path. If path is a directory, an error is raised."),
    ("os/removedirs.md", "os — removedirs", "Remove directories recursively. Works like rmdir() except that..."),
    ("pathlib/rmdir.md", "pathlib — Path.rmdir", "Remove this directory. The directory must be empty."),
    ("os/walk.md", "os — walk", "Generate the file names in a directory tree by walking the tree top-down."),
    ("glob/glob.md", "glob — glob", "Return a possibly empty list of path names that match pathname."),
    ("heapq/overview.md", "heapq — Heap queue algorithm", "This module provides an implementation of the heap queue."),
    ("itertools/islice.md", "itertools — islice", "Make an iterator that returns selected elements from the iterable."),
    ("json/encoders.md", "json — Encoders and Decoders", "Extensible JSON decoder and encoder for Python data."),
    ("time/sleep.md", "time — sleep", "Suspend execution of the calling thread for the given number of seconds."),
]
ORDERS = {
    "hybrid": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    "hybrid+rerank": [0, 3, 2, 5, 1, 4, 10, 6, 8, 11],
    "bm25": [3, 0, 5, 4, 1, 2, 6, 7, 9, 8],
    "dense": [0, 2, 1, 4, 3, 5, 6, 8, 7, 9],
}


def _order(pipeline: str) -> list[int]:
    return ORDERS.get(pipeline, ORDERS["hybrid"])  # ten hits at most, so some drop out


class FakeEngine:
    root = "/demo/ws"

    def __init__(self, *, delay: float = 0.0, indexed: bool = True) -> None:
        self.delay = delay
        self.indexed = indexed
        self.calls: list[tuple[str, str]] = []
        self.overrides: list[tuple[str, dict]] = []  # (pipeline, role overrides) of searches that had some
        self.searches: list[tuple[str, str, str, str | None, dict]] = []  # (root, query, pipeline, instruction, models)
        self.lock = threading.Lock()

    def index_changed(self, info) -> bool:
        return False  # nothing indexes the demo workspace behind the app's back

    def info(self, root):
        info = CorpusInfo(root=str(root), exists=self.indexed)
        info.models = {
            "dense": "all-MiniLM-L6-v2",
            "colbert": "maxsim over all-MiniLM-L6-v2 tokens (zero-shot)",
            "sparse": "splade-tiny",
            "reranker": "maxsim over all-MiniLM-L6-v2 tokens (zero-shot)",
        }
        info.chunk_tokens, info.chunk_overlap = 256, 32
        if self.indexed:
            info.docs, info.chunks = len(DOCS), 31
            t = time.time() - 2 * 3600 - 60
            info.sources = [SourceInfo("/demo/corpus/python-docs", len(DOCS), 31, t)]
            info.last_indexed = t
        return info

    def searcher(self, root):
        if not self.indexed:
            raise WorkspaceError(f"no index in workspace {root}: run `wb index PATH` first")
        return self

    def documents(self, root, limit: int = 5000):
        return [DocumentRow(d, t, 1 + i % 4) for i, (d, t, _) in enumerate(DOCS)]

    def warm(self, root, pipelines) -> float:
        return 0.0

    def invalidate(self, root) -> None:
        pass

    def rendered_query(self, root, text, instruction):
        from workbench.encoders.templates import PLAIN, resolve_instruction

        return PLAIN.render_query(text, resolve_instruction(instruction))

    def search(self, root, text, *, pipeline, k=10, instruction=None, unit="doc", models=None):
        from workbench.encoders.templates import resolve_instruction

        resolve_instruction(instruction)  # an unknown preset is refused, as the Searcher refuses it
        with self.lock:
            self.calls.append((text, pipeline))
            self.searches.append((str(root), text, pipeline, instruction, dict(models or {})))
            if models:
                self.overrides.append((pipeline, dict(models)))
        if self.delay:
            time.sleep(self.delay)
        hits = []
        for rank, i in enumerate(_order(pipeline)[:k], start=1):
            doc_id, title, body = DOCS[i]
            ranks = {m: ((i + j) % 12) + 1 for j, m in enumerate(("dense", "colbert", "sparse", "bm25"))}
            if pipeline.startswith("bm25"):
                ranks = {"bm25": rank}
            scores = {m: round(1.0 / r, 3) for m, r in ranks.items()}
            hits.append(Hit(rank, doc_id, f"{doc_id}#0", f"/demo/corpus/{doc_id}", title,
                            round(4.0 / rank, 3), scores, ranks, body))
        return QueryResult(text, instruction or "", pipeline, {}, hits, {"total": 42.0}, unit)

    def preview(self, root, query, chunk_id, instruction):
        doc_id = chunk_id.split("#")[0]
        title, body = next((t, b) for d, t, b in DOCS if d == doc_id)
        intro = f"# {title}\n\n"
        text = intro + body + "\n\nSee also the other functions of this module for the details.\n"
        doc = DocumentView(doc_id, title, f"/demo/corpus/{doc_id}", text, chunk_id, len(intro),
                           len(intro) + len(body), 0, 2)
        sparse = SparseExplanation([
            SparseTerm("remove", 2.3, True, 1.1), SparseTerm("directory", 2.41, True, 1.9),
            SparseTerm("tree", 2.27, True, 1.2), SparseTerm("delete", 1.61, False, 1.4),
            SparseTerm("folder", 0.9, False, 0.0),
        ], 9.87)
        tokens = ["[CLS]", "remove", "a", "directory", "tree", "[SEP]"]
        matches = [TokenMatch(t, i, "special" if t.startswith("[") else "query", t if t != "remove" else "delete",
                              i, 0.9 - 0.05 * i, None) for i, t in enumerate(tokens)]
        return Preview(doc, query_words(query), sparse, ColbertExplanation(matches, query))

    def index(self, root, folder, progress):
        raise WorkspaceError("the fake engine does not index")

    def rebuild_reason(self, root) -> str:
        return ""


# -- Pilot helpers shared by the TUI tests -------------------------------------------------
async def settle(pilot, timeout: float = 120.0) -> None:
    """Wait until no worker runs and no debounce timer is pending (cancelled workers included)."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        await pilot.pause(0.02)
        busy = any(not w.is_finished for w in app.workers)
        timer = app.search._timer if app.search.is_mounted else None
        quiet = 0 if busy or timer is not None else quiet + 1
        if quiet >= 3:
            return
    raise AssertionError("workers did not finish: " + ", ".join(w.name for w in app.workers if not w.is_finished))


async def wait_until(pilot, predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` is true (polled every 50 ms); AssertionError after ``timeout`` s.

    For what a timer or a file watcher brings in: a fixed pause is a race on a loaded machine."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


async def run_query(pilot, text: str) -> None:
    box = pilot.app.query_one("#query")
    box.focus()
    box.value = text
    await pilot.pause()
    await pilot.press("enter")
    await settle(pilot)


# -- Training runs on disk, written the way the trainer writes them (no training) -----------
@contextmanager
def training_process():
    """A live process standing in for a run's trainer (its pid goes in status.json); killed on exit."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def fake_run(workspace_root, name: str, state: str, *, steps: int = 0, total: int = 100, pid=None,
             eval_every: int = 0, error: str | None = None, base: str = "/models/all-MiniLM-L6-v2",
             data: str = "/data/train.jsonl", t0: float = 1_700_000_000.0, trainer: str = "embedder",
             config: dict | None = None):
    """A run folder of ``trainer`` with ``steps`` step events (a falling loss), evaluations every
    ``eval_every`` steps, a log, and ``status.json`` saying ``state``; ``config`` adds to config.json."""
    import json
    from pathlib import Path

    from trainers.runs import RunFolder

    run = RunFolder(Path(workspace_root) / "runs" / name)
    run.path.mkdir(parents=True, exist_ok=True)
    run.config_path.write_text(json.dumps({
        "trainer": trainer, "data": data, "base": base, "name": name, "loss": "infonce", "lr": 3e-5,
        "batch_size": 32, "negatives_per_query": 1, "lora": False, "eval_data": "/data/beir" if eval_every else None,
        "eval_every": eval_every, **(config or {})}))
    run.append_event({"event": "started", "total_steps": total, "examples": 3200, "device": "cpu", "time": t0})
    log = [f"training {name}: 3200 examples, 100 batches/epoch, {total} steps, encoder (mean pooling) on cpu"]
    best = None
    if eval_every:  # the base model is measured before the first step, as the trainer does
        run.append_event({"event": "eval", "step": 0, "base": True, "ndcg@10": 0.48, "time": t0})
    for step in range(1, steps + 1):
        loss = 2.0 / (1 + 0.05 * step) + 0.05 * ((step * 7) % 5) / 5
        run.append_event({"event": "step", "step": step, "epoch": step / 100, "loss": loss,
                          "lr": 3e-5 * min(1.0, step / 10), "examples_per_s": 100 + (step * 13) % 40,
                          "gpu_mem_gb": 0.0, "time": t0 + 2.0 * step})
        log.append(f"step {step}/{total} loss {loss:.4f}")
        if eval_every and step % eval_every == 0:
            metric = 0.5 + 0.01 * step / eval_every
            best = metric if best is None else max(best, metric)
            run.append_event({"event": "eval", "step": step, "ndcg@10": metric, "time": t0 + 2.0 * step})
    run.log_path.write_text("\n".join(log) + "\n")
    fields = {"state": state, "step": steps, "total_steps": total, "pid": pid,
              "loss": (2.0 / (1 + 0.05 * steps) + 0.05 * ((steps * 7) % 5) / 5) if steps else None}
    if best is not None:
        fields["best_metric"] = best
    if eval_every:
        fields["base_metric"] = 0.48
    if error:
        fields.update(error=error, message=error.splitlines()[-1])
        run.append_event({"event": "failed", "error": error.splitlines()[-1], "time": t0 + 2.0 * steps + 1})
    if state == "finished":
        run.append_event({"event": "finished", "step": steps, "time": t0 + 2.0 * steps + 1})
    run.write_status(**fields)
    return run
