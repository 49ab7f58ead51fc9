"""The model-independent training loop: ``run_training(run, trainer, resume=False)``.

Every trainer (:mod:`trainers.embedder`, :mod:`trainers.reranker`, :mod:`trainers.colbert`)
supplies a :class:`Trainer`: its examples, the model it trains, ``compute_loss`` for one
micro-batch, an optional evaluation and ``save_final``. This module does the rest, the same way
for all of them:

* status ``running`` with pid/step/total/loss, one ``step`` event per ``log_every`` steps
  (epoch, loss, lr, examples/s, tokens/s, GPU memory), ``on_step`` callback (tests);
* one *step* is one optimizer step: ``grad_accum`` micro-batches of ``batch_size`` examples
  from :class:`~trainers.data.TaskBatchSampler`; the random draws of micro-batch ``m`` of step
  ``s`` come from ``Random(f"{seed}|{s}|{m}")``, so a resumed run makes the same draws;
* AdamW over the trainable parameters (no weight decay on biases and norms: ``decay_groups``),
  linear schedule with warmup, accelerate (mixed precision);
* a checkpoint every ``save_every`` steps (``accelerator.save_state`` then ``sampler.json`` written
  last; the newest ``KEEP_CHECKPOINTS`` are kept);
* a stop (the run's ``stop`` file, SIGTERM, or a first Ctrl-C) checkpoints and ends ``stopped``;
  a second Ctrl-C aborts without a checkpoint; a stop file that reads ``finish`` (``wb runs stop
  --finish``) ends the run early as ``finished`` instead: the model as it is at that step is saved
  (evaluated first when ``eval_data`` is set), the ``finished`` event says ``"early": true``;
* evaluation every ``eval_every`` steps and at the end (only at the end when ``eval_every`` is 0) when
  ``eval_data`` is set: ``eval`` events
  with the trainer's metric, ``best_metric`` / ``last_metric`` in the status;
* the end calls ``trainer.save_final`` into ``run.model_dir`` and ends ``finished``; any exception
  ends ``failed`` with the last 20 traceback lines in ``error`` and is re-raised.

Resume restores the model, optimizer, scheduler and RNG states (accelerate) and the sampler
position and step (``sampler.json``), so the loss curve continues as if never interrupted.

The config object only needs the shared fields: ``name seed batch_size grad_accum epochs
max_steps lr weight_decay warmup_ratio mixed_precision save_every log_every eval_data eval_every
task_sampling``.
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.errors import TrainingError, UsageError, WbError

from .runs import FINISH, RunFolder

__all__ = ["KEEP_CHECKPOINTS", "StopFlag", "Trainer", "log", "mixed_precision", "run_training"]

KEEP_CHECKPOINTS = 2
RECENT_STEPS = 20  # status.json's loss_recent: the mean loss of this many last steps (`wb runs`)


class Trainer:
    """What one kind of training supplies to :func:`run_training` (subclass it).

    Call order: ``examples()``, ``build()`` (after the seed is set), then per micro-batch
    ``compute_loss(model, examples, rng, device, accelerator)`` with the prepared (wrapped) model;
    ``evaluate(model, device)`` and ``save_final(model, out_dir)`` get the unwrapped model.
    """

    #: the name of the metric ``evaluate`` returns (``eval`` events and the status)
    metric_name = "ndcg@10"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.current_step = 0  # set by the loop before each compute_loss (0-based optimizer step)
        self.total_steps = 0
        self.model_step = 0  # set by the loop before save_final: the step (1-based) whose weights it saves
        self._micro_metrics: list[dict] = []  # this step's micro-batches' extra metrics (record_metrics)
        self._micro_step = -1

    def examples(self) -> Sequence:
        """The training examples (``TrainingExample`` s; a ``report`` attribute is logged)."""
        raise NotImplementedError

    def build(self):
        """Build and return the trainable ``nn.Module`` (its trainable parameters are optimized)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Extra fields for the status and the ``started`` event (e.g. kind, pooling)."""
        return {}

    def param_groups(self, model) -> list:
        """What the optimizer trains: the trainable parameters, or AdamW parameter groups (dicts
        with their own ``lr``) when parts of the model need another learning rate."""
        return [p for p in model.parameters() if p.requires_grad]

    def compute_loss(self, model, examples: list, rng: random.Random, device, accelerator) -> tuple[Any, int]:
        """``(scalar loss tensor, tokens processed)`` for one micro-batch of examples."""
        raise NotImplementedError

    def evaluate(self, model, device) -> float | None:
        """The metric on ``cfg.eval_data`` (None: skipped)."""
        return None

    def record_metrics(self, metrics: dict) -> None:
        """Note one micro-batch's extra metrics (called from ``compute_loss``). The ``step`` event gets
        each one's mean over the step's micro-batches (the default ``step_metrics``), as ``loss`` is,
        so under ``grad_accum`` > 1 the fields describe the whole step and add up like its loss."""
        if self._micro_step != self.current_step:
            self._micro_step, self._micro_metrics = self.current_step, []
        self._micro_metrics.append(dict(metrics))

    def step_metrics(self) -> dict:
        """Extra fields of the ``step`` event (e.g. SPLADE's average non-zero terms): by default the
        means of what ``record_metrics`` noted during the current step."""
        if self._micro_step != self.current_step or not self._micro_metrics:
            return {}
        keys = dict.fromkeys(k for row in self._micro_metrics for k in row)
        return {k: sum(row[k] for row in self._micro_metrics if k in row)
                / sum(1 for row in self._micro_metrics if k in row) for k in keys}

    def eval_details(self) -> dict:
        """Extra fields of the ``eval`` event, read right after ``evaluate`` (e.g. per-mode metrics)."""
        return {}

    def save_final(self, model, out_dir: Path) -> None:
        """Write the final model folder (called on the main process only)."""
        raise NotImplementedError


class StopFlag:
    """Turns SIGTERM (`wb runs stop`), SIGHUP (the terminal closed) and a first SIGINT (Ctrl-C) into a
    stop request: the run checkpoints at the end of its step and ends ``stopped``. A second SIGINT
    raises KeyboardInterrupt (abort without a checkpoint)."""

    SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP (terminal closed)", signal.SIGINT: "Ctrl-C"}

    def __init__(self) -> None:
        self.requested = False
        self.why = ""
        self.began = False  # set once the model, optimizer and checkpoint are loaded: the run trains
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)  # type: ignore[arg-type]
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt  # a second Ctrl-C: give up at once
        self.requested = True
        self.why = self.SIGNALS.get(signum, f"signal {signum}")
        if signum == signal.SIGINT:
            print("stopping after this step (Ctrl-C again to abort without a checkpoint)", file=sys.stderr, flush=True)


def decay_groups(groups: list, lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with weight decay on weight matrices only: each of ``groups`` (a
    trainer's ``param_groups``: parameters, or dicts with ``params`` and their own ``lr``) is split
    into its parameters of two or more dimensions (decayed by ``weight_decay``) and its biases and
    norm scales (one dimension: not decayed, as BERT's and most fine-tuning recipes leave them, since
    pulling a LayerNorm gain towards 0 shrinks the activations rather than regularising). Every
    group's ``lr`` is kept (``lr`` where it has none); empty groups are left out. The split depends
    only on the groups given, so a resumed run rebuilds the same groups in the same order."""
    if groups and not isinstance(groups[0], dict):  # a flat list of parameters is one group
        groups = [{"params": groups}]
    out: list[dict] = []
    for group in groups:
        params = list(group["params"])
        rate = group.get("lr", lr)
        matrices = [p for p in params if p.ndim >= 2]
        vectors = [p for p in params if p.ndim < 2]
        out += [{"params": ps, "lr": rate, "weight_decay": wd}
                for ps, wd in ((matrices, weight_decay), (vectors, 0.0)) if ps]
    return out


def failure_line(exc: BaseException) -> str:
    """A failed run's one-line reason: a WbError's own message, else ``Type: message``."""
    return str(exc) if isinstance(exc, WbError) else f"{type(exc).__name__}: {exc}"


def _cap_negatives(cfg, examples) -> None:
    """``negatives_per_query`` above what any example holds is lowered to that most, and said:
    drawing 50 from rows of 7 repeated each negative ~7 times (a distorted loss, memory for 50)."""
    wanted = getattr(cfg, "negatives_per_query", 0)
    if not wanted or wanted <= 1:
        return
    most = max((len(getattr(ex, "negatives", None) or ()) for ex in examples), default=0)
    if 0 < most < wanted:
        log(f"negatives_per_query {wanted} is more than any example has ({most}): using {most}")
        cfg.negatives_per_query = most


def _warn_without_negatives(cfg, examples) -> None:
    """Said, not refused: a contrastive run whose batches can hold one example and no example has
    a hard negative compares each positive with nothing (a constant loss, no gradient). Checked per
    task, as batches are single-task: a one-example task among large ones gives such steps too."""
    batch_size = getattr(cfg, "batch_size", 2)
    by_task: dict[str, list] = {}
    for ex in examples:
        by_task.setdefault(getattr(ex, "task", "default"), []).append(ex)
    alone = {task: exs for task, exs in by_task.items()
             if min(len(exs), batch_size) <= 1 and not any(getattr(ex, "negatives", None) for ex in exs)}
    if not alone:
        return
    if len(by_task) == 1:
        n = len(examples)
        log(f"{n} example{'s' if n != 1 else ''} at batch size {batch_size} and no hard "
            "negatives: a positive has nothing to be ranked above, so the loss stays constant (give more "
            "examples, a larger --batch-size or mined negatives: wb mine)")
        return
    names = ", ".join(sorted(alone))
    log(f"task{'s' if len(alone) != 1 else ''} {names}: one example a batch and no hard negatives, so "
        "its steps have a constant loss and no gradient (give it more examples or mined negatives: wb mine)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mixed_precision(value: str) -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with native bf16 dot products (AVX512-BF16/AMX:
    a MiniLM cross-encoder step runs 1.85x faster than fp32 there), else ``no``."""
    import torch

    from workbench.encoders.device import cpu_has_bf16

    if value == "auto":
        return "bf16" if torch.cuda.is_available() or cpu_has_bf16() else "no"
    from .config import PRECISIONS

    if value not in PRECISIONS:
        raise UsageError(f"mixed_precision must be {', '.join(PRECISIONS)}, not {value!r}")
    return value


def _forget_other_precision(precision: str) -> None:
    """accelerate keeps one process-wide state and refuses a second ``Accelerator`` with another
    mixed precision. A ``wb train`` process runs one run, but a process that runs several in turn
    (tests, notebooks) may change precision between them: drop the old state then. Never under a
    launcher (``WORLD_SIZE`` > 1), where the state holds the process group."""
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or not AcceleratorState._shared_state:
        return
    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and str(current) != precision:
        AcceleratorState._reset_state()


def run_training(
    run: RunFolder,
    trainer: Trainer,
    resume: bool = False,
    *,
    on_step: Callable[[int, RunFolder], None] | None = None,
    finish_now: bool = False,
    stop: StopFlag | None = None,
) -> dict:
    """Train (or resume) the run with ``trainer``; return its final status dict. ``finish_now`` (with
    ``resume``): train no further, save the checkpoint's model and end the run finished early.
    ``stop``: a flag installed earlier (restored here at the end), else one installed now."""
    if stop is None:
        stop = StopFlag()
        stop.install()
    flushed = False
    try:
        import torch

        if not torch.cuda.is_available():
            # denormal floats (LoRA updates near zero) make CPU matmuls 3-5x slower
            flushed = torch.set_flush_denormal(True)
        return _train(run, trainer, resume, stop, on_step, finish_now)
    except KeyboardInterrupt:
        run.write_status(state="stopped", error="aborted by a second Ctrl-C (no checkpoint)", pid=None)
        run.append_event({"event": "stopped", "time": time.time(), "checkpoint": None})
        raise
    except BaseException as exc:
        message = failure_line(exc)
        if resume and not stop.began:  # a resume that never got going: the run is as it was
            restore_before_resume(run, message)
            raise
        # the user's data or options (WbError): the one line says it all; else the traceback's end
        error = message if isinstance(exc, WbError) else "\n".join(traceback.format_exc().splitlines()[-20:])
        run.write_status(state="failed", error=error, message=message, pid=None)
        run.append_event({"event": "failed", "time": time.time(), "error": message})
        raise
    finally:
        stop.restore()
        if flushed:
            import torch

            torch.set_flush_denormal(False)


def restore_before_resume(run: RunFolder, why: str) -> None:
    """A resume of ``run`` failed before it trained (a base model gone, a bad config, a launcher that
    would not start): put back the state, error and message the run had before
    (:meth:`RunFolder.resume_snapshot`, saved when the resume began), with ``resume_error`` saying why, and log a
    ``resume_failed`` event. The run stays what it was (stopped, died, failed), resumable again."""
    before = run.resume_snapshot()
    # no pid: a run that said running (a died one) reads as died again, never as a live process
    run.write_status(state=before.get("state", "stopped"), error=before.get("error"), message=before.get("message"),
                     pid=None, resume_of=None, resume_error=why)
    run.append_event({"event": "resume_failed", "time": time.time(), "error": why})


def _train(run: RunFolder, trainer: Trainer, resume: bool, stop: StopFlag, on_step, finish_now: bool = False) -> dict:
    if int(os.environ.get("RANK", "0")) != 0:  # data-parallel ranks > 0 write no run files
        run = _SilentRun(run)
    run.write_status(state="running", pid=os.getpid(), error=None, message=None)  # an earlier failure is over
    run.stop_path.unlink(missing_ok=True)
    cfg = trainer.cfg
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from .data import TaskBatchSampler

    set_seed(cfg.seed)
    examples = trainer.examples()
    _cap_negatives(cfg, examples)
    _warn_without_negatives(cfg, examples)
    cfg.check_eval_data()  # before the first step: a wrong eval_data must not end a finished training
    report = getattr(examples, "report", None)
    if report is not None:
        for line in report.summary().splitlines():  # several datasets: one line each, then the tasks
            log(line)
    sampler = TaskBatchSampler(examples, cfg.batch_size, sampling=cfg.task_sampling, seed=cfg.seed)
    per_epoch = len(sampler)
    # several CPU processes (torchrun / accelerate launch without GPUs) need cpu=True to form a
    # gloo process group; with GPUs accelerate picks NCCL by itself
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    precision = mixed_precision(cfg.mixed_precision)
    _forget_other_precision(precision)
    accelerator = Accelerator(mixed_precision=precision,
                              gradient_accumulation_steps=cfg.grad_accum, cpu=multi_cpu)
    # Data parallel (accelerate launch / torchrun): every rank walks the same seeded sampler and
    # takes every world-th batch, so ranks see different single-task batches, the sampler state in
    # a checkpoint is the same on every rank, and one optimizer step covers `world` batches.
    world, rank = accelerator.num_processes, accelerator.process_index
    main = accelerator.is_main_process
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / world / cfg.grad_accum))

    model = trainer.build()
    described = trainer.describe()
    optimizer = torch.optim.AdamW(decay_groups(trainer.param_groups(model), cfg.lr, cfg.weight_decay))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    # the scheduler is not prepared (a prepared one steps once per process per step); it is only
    # registered so that checkpoints hold it
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    model.train()
    device = accelerator.device

    step, last_loss = 0, None
    recent_losses: collections.deque = collections.deque(maxlen=RECENT_STEPS)
    status = run.status()
    best = status.get("best_metric") if resume else None
    checkpoint = run.latest_checkpoint() if resume else None
    if resume and checkpoint is None:
        log("no complete checkpoint to resume from: starting from step 0")
    if checkpoint is not None:
        try:
            accelerator.load_state(str(checkpoint))
        except ValueError as exc:  # torch: "loaded state dict has a different number of parameter groups"
            raise TrainingError(f"cannot resume from {checkpoint}: its optimizer state does not fit this "
                                f"version's parameter groups ({exc}); start a new run") from None
        state = json.loads((checkpoint / "sampler.json").read_text())
        sampler.load_state_dict(state["sampler"])
        step, last_loss = int(state["step"]), state.get("loss")
        recent_losses.extend(state.get("recent_losses") or ())  # loss_recent continues as if never stopped
        run.append_event({"event": "resumed", "step": step, "checkpoint": checkpoint.name, "time": time.time()})
        log(f"resumed from {checkpoint.name}")
    run.write_status(state="running", pid=os.getpid(), step=step, total_steps=total, loss=last_loss,
                     best_metric=best, resume_of=None, resume_error=None, **described)
    stop.began = True
    if step == 0:
        run.append_event({"event": "started", "total_steps": total, "examples": len(examples),
                          "batches_per_epoch": per_epoch, **described,
                          "device": str(device), "time": time.time()})
    what = ", ".join(f"{k} {v}" for k, v in described.items())
    log(f"training {cfg.name}: {len(examples)} examples, {per_epoch} batches/epoch, {total} steps"
        f"{', ' + what if what else ''} on {device}, {'fp32' if precision == 'no' else precision}"
        + (f", task sampling {cfg.task_sampling}" if len(sampler.tasks) > 1 else ""))

    def batches():
        while True:
            yield from sampler

    stream = batches()

    # step -> its complete checkpoint (a stop right after a save reuses it); the one resumed from is
    # the state at its step, so a stop before the first step never deletes and rewrites it (a kill
    # during that rewrite lost the run's only checkpoint)
    saved: dict[int, Path] = {step: checkpoint} if checkpoint is not None else {}

    def save_checkpoint(at_step: int, loss_value) -> Path:
        if at_step in saved:
            return saved[at_step]
        folder = run.checkpoints / f"step-{at_step}"
        if folder.exists():
            shutil.rmtree(folder)
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            marker = folder / "sampler.json"  # written last, whole (renamed into place): RunFolder.
            partial = marker.with_name("sampler.json.partial")  # latest_checkpoint only takes folders that have it
            partial.write_text(json.dumps(
                {"sampler": sampler.state_dict(), "step": at_step, "loss": loss_value, "seed": cfg.seed,
                 "recent_losses": list(recent_losses)}
            ))
            os.replace(partial, marker)
            folders = [p for p in run.checkpoints.iterdir() if re.fullmatch(r"step-\d+", p.name)]
            done = sorted((p for p in folders if (p / "sampler.json").is_file()), key=lambda p: int(p.name.split("-")[1]))
            for old in done[:-KEEP_CHECKPOINTS] + [p for p in folders if not (p / "sampler.json").is_file()]:
                shutil.rmtree(old, ignore_errors=True)  # older complete ones, and any a crash left half-written
            run.append_event({"event": "checkpoint", "step": at_step, "path": str(folder), "time": time.time()})
        saved[at_step] = folder
        return folder

    def stop_requested() -> bool:
        if run.stop_path.exists() and not stop.requested:
            stop.requested, stop.why = True, "stop file"
        if world > 1:  # every rank must stop at the same step (or the others hang in a collective)
            flag = accelerator.reduce(torch.tensor([1.0 if stop.requested else 0.0], device=accelerator.device), "max")
            if float(flag.item()) > 0 and not stop.requested:
                stop.requested, stop.why = True, "another rank stopped"
        return stop.requested

    def finish_requested() -> bool:
        try:
            return run.stop_path.read_text().strip() == FINISH
        except OSError:
            return False

    def evaluate_now(best):
        """Evaluate the model at ``step``: an ``eval`` event, the status's best/last metric; the new best.
        An evaluation that fails is logged (``eval_failed``) and training goes on: it never costs the run."""
        try:
            metric = trainer.evaluate(accelerator.unwrap_model(model), device)
        except Exception as exc:  # noqa: BLE001 - the run and its model matter more than one evaluation
            message = failure_line(exc)
            log(f"eval failed at step {step}: {message}")
            run.append_event({"event": "eval_failed", "step": step, "error": message, "time": time.time()})
            run.write_status(eval_error=message)
            model.train()
            return best
        if metric is None:
            return best
        run.append_event({"event": "eval", "step": step, trainer.metric_name: metric,
                          **trainer.eval_details(), "time": time.time()})
        improved = best is None or metric > best
        best = metric if improved else best
        if improved and cfg.keep_best:
            _save_weights(accelerator.unwrap_model(model), run.best_weights_path)
        run.write_status(best_metric=best, last_metric=metric, metric=trainer.metric_name,
                         **({"best_step": step} if improved else {}))
        return best

    if main and cfg.eval_data and step == 0 and not finish_now:
        # the base model's figure first: the yardstick of "did fine-tuning help" (an `eval` event at
        # step 0 marked base, and the status's base_metric; keep_best chooses among trained steps)
        try:
            base_metric = trainer.evaluate(accelerator.unwrap_model(model), device)
        except Exception as exc:  # noqa: BLE001 - as evaluate_now: an evaluation never costs the run
            log(f"eval of the base model failed: {failure_line(exc)}")
            base_metric = None
        model.train()
        if base_metric is not None:
            run.append_event({"event": "eval", "step": 0, "base": True, trainer.metric_name: base_metric,
                              **trainer.eval_details(), "time": time.time()})
            run.write_status(base_metric=base_metric, metric=trainer.metric_name)
            log(f"base model: {trainer.metric_name} {base_metric:.4f}")

    while step < total and not finish_now:
        if stop_requested():
            break
        t0 = time.perf_counter()
        step_lr = scheduler.get_last_lr()[0]  # the rate this step's update uses (the scheduler moves after it)
        micro_losses, n_examples, n_tokens, step_tasks = [], 0, 0, set()
        for micro in range(cfg.grad_accum):
            for r in range(world):
                batch_idx = next(stream)
                if r == rank:
                    idx = batch_idx
            exs = [examples[i] for i in idx]
            step_tasks.add(exs[0].task)  # a batch is one task's (TaskBatchSampler)
            rng = random.Random(f"{cfg.seed}|{step}|{micro}")
            trainer.current_step, trainer.total_steps = step, total
            with accelerator.accumulate(model):
                loss, tokens = trainer.compute_loss(model, exs, rng, device, accelerator)
                accelerator.backward(loss)
                optimizer.step()
                if accelerator.sync_gradients:  # once per optimizer step, also under accumulation
                    scheduler.step()
                optimizer.zero_grad()
            micro_losses.append(float(loss.detach()))
            n_examples += len(exs)
            n_tokens += tokens
        step += 1
        last_loss = sum(micro_losses) / len(micro_losses)
        recent_losses.append(last_loss)
        if not math.isfinite(last_loss):
            raise FloatingPointError(f"loss is {last_loss} at step {step}: lower the learning rate")
        elapsed = max(time.perf_counter() - t0, 1e-9)
        if step % max(1, cfg.log_every) == 0 or step == total:
            event = {
                "event": "step",
                "step": step,
                "epoch": round(sampler.epoch + sampler.position / max(1, per_epoch), 4),
                "loss": last_loss,
                "lr": step_lr,
                "examples_per_s": n_examples / elapsed,
                "tokens_per_s": n_tokens / elapsed,
                "gpu_mem_gb": (torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else 0.0,
                "time": time.time(),
                **trainer.step_metrics(),
            }
            if len(sampler.tasks) > 1:  # multi-task: which task(s) this step's batches came from
                event["task"] = "+".join(sorted(step_tasks))
            if world > 1:
                event["processes"] = world
                event["examples_per_s"] *= world  # every rank trains as many examples a step
                event["tokens_per_s"] *= world
            if main:
                run.append_event(event)
                # one batch's loss jumps about: the mean of the recent steps is the figure to read
                run.write_status(state="running", step=step, total_steps=total, loss=last_loss,
                                 loss_recent=sum(recent_losses) / len(recent_losses))
                log(f"step {step}/{total} loss {last_loss:.4f} lr {event['lr']:.2e} "
                    f"{event['examples_per_s']:.1f} ex/s" + (f" ({event['task']})" if "task" in event else ""))
        if on_step is not None:
            on_step(step, run)
        # eval_every 0 with eval data: once, at the end
        if main and cfg.eval_data and ((cfg.eval_every > 0 and step % cfg.eval_every == 0) or step == total):
            best = evaluate_now(best)
        if step < total and cfg.save_every > 0 and step % cfg.save_every == 0:
            save_checkpoint(step, last_loss)
        if stop_requested() and step < total:
            break

    early = 0 < step < total and (finish_now or finish_requested())  # at step 0 there is no trained model: stopped
    if early and main and cfg.eval_data and (cfg.eval_every == 0 or step % cfg.eval_every != 0):
        best = evaluate_now(best)
    if step < total and not early:  # stopped
        folder = save_checkpoint(step, last_loss)
        if not main:
            return run.status()
        run.write_status(state="stopped", step=step, total_steps=total, loss=last_loss, pid=None)
        run.append_event({"event": "stopped", "step": step, "why": stop.why, "checkpoint": folder.name,
                          "time": time.time()})
        log(f"stopped at step {step} ({stop.why}); resume with `wb train resume {shlex.quote(run.name)}`")
        return run.status()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final, kept = accelerator.unwrap_model(model), step
        if cfg.keep_best and run.best_weights_path.exists():  # the best-evaluated step's weights, not the last
            final.load_state_dict(torch.load(run.best_weights_path, map_location="cpu", weights_only=True))
            kept = int(run.status().get("best_step") or step)
        trainer.model_step = kept
        trainer.save_final(final, run.model_dir)
        run.append_event({"event": "finished", "step": step, "model": str(run.model_dir), "time": time.time(),
                          "model_step": kept, **({"early": True} if early else {})})
        run.write_status(state="finished", step=step, total_steps=total, loss=last_loss, pid=None,
                         model=str(run.model_dir), model_step=kept, early=early)
        run.stop_path.unlink(missing_ok=True)
        run.best_weights_path.unlink(missing_ok=True)
        # a finished run is never resumed: its checkpoints (weights + optimizer state, ~3x the model
        # each) would only fill the disk
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        log(f"finished early at step {step} of {total} (asked to): model in {run.model_dir}" if early
            else f"finished: model in {run.model_dir}")
        if kept != step:
            log(f"the model is step {kept}'s, the best {trainer.metric_name} ({run.status().get('best_metric'):.4f})")
    return run.status()


def _save_weights(model, path: Path) -> None:
    """``model``'s state dict on CPU into ``path``, whole or not at all (written beside it, then renamed)."""
    import torch

    tmp = path.with_name(path.name + ".partial")
    torch.save({k: v.detach().to("cpu") for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


class _SilentRun:
    """A rank > 0's view of the run folder: reads pass through, status and event writes are dropped
    (rank 0 writes them; checkpoints are written through accelerate by every rank)."""

    def __init__(self, run: RunFolder) -> None:
        self._run = run

    def __getattr__(self, name):
        return getattr(self._run, name)

    def write_status(self, **fields) -> None:
        pass

    def append_event(self, event: dict) -> None:
        pass


#: config.json's ``trainer`` key -> (module, Trainer class, config class), imported on use
TRAINERS: dict[str, tuple[str, str, str]] = {
    "embedder": ("trainers.embedder", "EmbedderTrainer", "EmbedderConfig"),
    "reranker": ("trainers.reranker", "RerankerTrainer", "RerankerConfig"),
    "colbert": ("trainers.colbert", "ColbertTrainer", "ColbertConfig"),
    "splade": ("trainers.splade", "SpladeTrainer", "SpladeConfig"),
    "llm-reranker": ("trainers.llm_reranker", "LlmRerankerTrainer", "LlmRerankerConfig"),
    "layerwise": ("trainers.layerwise", "LayerwiseTrainer", "LayerwiseConfig"),
    "joint": ("trainers.joint", "JointTrainer", "JointConfig"),
}


def trainer_for(run: RunFolder) -> Trainer:
    """The :class:`Trainer` that ``run``'s ``config.json`` names (its ``trainer`` key; default embedder)."""
    import importlib

    from . import config as configs

    config = run.read_config()
    kind = config.get("trainer", "embedder")
    if kind not in TRAINERS:
        raise UsageError(f"run {run.name}: unknown trainer {kind!r} in its config.json ({', '.join(TRAINERS)})")
    module, trainer_cls, config_cls = TRAINERS[kind]
    return getattr(importlib.import_module(module), trainer_cls)(getattr(configs, config_cls).from_dict(config))


def train_run(run: RunFolder, resume: bool = False, *, on_step=None, finish_now: bool = False) -> dict:
    """Train ``run`` with the trainer its config names (a bad config marks the run failed);
    ``finish_now``: see :func:`run_training`; UsageError when the run has no checkpoint to finish from."""
    checkpoint = run.latest_checkpoint() if finish_now else None
    # a stop at step 0 checkpoints the untrained base: finishing would make it the run's model
    if finish_now and (not resume or checkpoint is None or checkpoint.name == "step-0"):
        raise UsageError(f"run {run.name} has no checkpoint to take its model from (no step trained): resume it "
                         f"with `wb train resume {shlex.quote(run.name)}` instead")
    from .runs import training_lock

    with training_lock(run):
        if resume:  # what the run was, put back if this resume fails before it trains
            run.write_status(resume_of=run.resume_snapshot())
        stop = StopFlag()  # before the trainer's imports (seconds): a `wb runs stop` meanwhile is a stop, not a kill
        stop.install()
        try:
            trainer = trainer_for(run)
        except BaseException as exc:
            stop.restore()
            if resume:
                restore_before_resume(run, failure_line(exc))
            else:
                run.write_status(state="failed", error=failure_line(exc), message=failure_line(exc), pid=None)
            raise
        return run_training(run, trainer, resume, on_step=on_step, finish_now=finish_now, stop=stop)
