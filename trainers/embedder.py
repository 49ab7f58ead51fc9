"""Fine-tune a bi-encoder inside a run folder: ``train_embedder(run, resume=False)``.

One *step* is one optimizer step (``grad_accum`` micro-batches of ``batch_size`` examples each,
from :class:`~trainers.data.TaskBatchSampler`). Per micro-batch: the queries (instruction rendered
with the query template), one positive per example (drawn at random) and, when every example of the
batch has hard negatives, ``negatives_per_query`` of them each (drawn without replacement, with
replacement when an example has fewer). If any example of a batch has no hard negative, the whole
batch trains on in-batch negatives only, so the ``[B, N, d]`` shape stays consistent. The random
draws come from ``Random(f"{seed}|{step}|{micro}")``: a resumed run makes the same draws.

Lifecycle (see :mod:`trainers.runs`): status ``running`` with pid/step/total/loss, one ``step``
event per ``log_every`` steps, a checkpoint every ``save_every`` steps
(``accelerator.save_state`` then ``sampler.json`` written last), a stop (the run's ``stop`` file,
SIGTERM, or a first Ctrl-C) checkpoints and ends ``stopped``; the end writes the final model
(:func:`trainers.backbone.save_final`) into ``run.model_dir`` and ends ``finished``. Any exception
ends ``failed`` with the last 20 traceback lines in ``error`` and is re-raised.

Resume restores the model, optimizer, scheduler and RNG states (accelerate) and the sampler
position and step (``sampler.json``), so the loss curve continues as if never interrupted.

Supported losses: ``infonce`` (q, p, negatives) and the multi-positive family (``jointlh``,
``summarglh``, ``lsepair``, ``rand1lh``: scores over every positive and hard negative of the batch,
mask = the example's own positives). ``kl`` needs teacher scores and is not wired in yet.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from workbench.errors import InputError, UsageError

from .config import EmbedderConfig
from .runs import RunFolder

__all__ = ["train_embedder", "load_beir_eval", "KEEP_CHECKPOINTS"]

KEEP_CHECKPOINTS = 2


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.why = ""
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
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
        self.why = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if signum == signal.SIGINT:
            print("stopping after this step (Ctrl-C again to abort without a checkpoint)", file=sys.stderr, flush=True)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------ data


def _read_passages(corpus: str | None) -> list[str]:
    if not corpus:
        raise UsageError("data = 'unsupervised' needs `corpus` (a BEIR corpus.jsonl or its folder)")
    path = Path(corpus)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise InputError(f"no corpus for unsupervised training: {path}")
    from workbench.ingest.readers import corpus_passages

    return [text for text in corpus_passages(path).values() if text]


def _examples(cfg: EmbedderConfig):
    from .data import independent_cropping, inverse_cloze, read_examples

    if cfg.data == "unsupervised":
        passages = _read_passages(cfg.corpus)
        if cfg.unsupervised == "ict":
            return inverse_cloze(passages, seed=cfg.seed, instruction=cfg.instruction)
        if cfg.unsupervised != "cropping":
            raise UsageError(f"unsupervised must be 'cropping' or 'ict', not {cfg.unsupervised!r}")
        return independent_cropping(passages, seed=cfg.seed, instruction=cfg.instruction)
    return read_examples(cfg.data, split=cfg.split, instruction=cfg.instruction or None)


def _templates(cfg: EmbedderConfig, kind: str):
    from workbench.encoders.templates import LLM_EMBEDDER, PLAIN, PromptTemplates

    if cfg.query_template == "auto":
        return LLM_EMBEDDER if kind == "decoder" else PLAIN
    return PromptTemplates(query=cfg.query_template)


def load_beir_eval(folder: str, split: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(corpus id -> title + text, query id -> text, qrels) of a BEIR folder, judged queries only."""
    root = Path(folder)
    paths = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"eval data {folder} is missing {', '.join(missing)}")
    corpus: dict[str, str] = {}
    for line in paths[0].read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            corpus[str(obj["_id"])] = (str(obj.get("title") or "") + " " + str(obj.get("text") or "")).strip()
    qrels: dict[str, dict[str, int]] = {}
    for i, line in enumerate(paths[2].read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if len(parts) < 3 or (i == 0 and parts[0] == "query-id"):
            continue
        try:
            score = int(float(parts[2]))
        except ValueError:
            continue
        if score > 0 and parts[1] in corpus:
            qrels.setdefault(parts[0], {})[parts[1]] = score
    queries: dict[str, str] = {}
    for line in paths[1].read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            if str(obj["_id"]) in qrels:
                queries[str(obj["_id"])] = str(obj["text"])
    return corpus, queries, {q: r for q, r in qrels.items() if q in queries}


# ------------------------------------------------------------------------------ training


def _mixed_precision(value: str) -> str:
    import torch

    if value == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    if value not in ("no", "bf16", "fp16"):
        raise UsageError(f"mixed_precision must be auto, no, bf16 or fp16, not {value!r}")
    return value


def _pick_negatives(ex, n: int, rng: random.Random) -> list[str]:
    if len(ex.negatives) >= n:
        return rng.sample(list(ex.negatives), n)
    return rng.choices(list(ex.negatives), k=n)


def train_embedder(
    run: RunFolder,
    resume: bool = False,
    *,
    on_step: Callable[[int, RunFolder], None] | None = None,
) -> dict:
    """Train (or resume) the run; return its final status dict. See the module docstring."""
    stop = _StopFlag()
    stop.install()
    flushed = False
    try:
        import torch

        if not torch.cuda.is_available():
            # denormal floats (LoRA updates near zero) make CPU matmuls 3-5x slower
            flushed = torch.set_flush_denormal(True)
        return _train(run, resume, stop, on_step)
    except KeyboardInterrupt:
        run.write_status(state="stopped", error="aborted by a second Ctrl-C (no checkpoint)")
        run.append_event({"event": "stopped", "time": time.time(), "checkpoint": None})
        raise
    except BaseException as exc:
        lines = traceback.format_exc().splitlines()[-20:]
        run.write_status(state="failed", error="\n".join(lines), message=f"{type(exc).__name__}: {exc}")
        run.append_event({"event": "failed", "time": time.time(), "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        stop.restore()
        if flushed:
            import torch

            torch.set_flush_denormal(False)


def _train(run: RunFolder, resume: bool, stop: _StopFlag, on_step) -> dict:
    run.write_status(state="running", pid=os.getpid(), error=None)
    if run.stop_path.exists():
        run.stop_path.unlink()
    cfg = EmbedderConfig.from_dict(run.read_config())
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from .backbone import encode, load_backbone, save_final
    from .data import TaskBatchSampler
    from .losses import MULTI_POSITIVE, build_loss

    set_seed(cfg.seed)
    examples = _examples(cfg)
    report = getattr(examples, "report", None)
    if report is not None:
        _log(report.summary())
    sampler = TaskBatchSampler(examples, cfg.batch_size, sampling=cfg.task_sampling, seed=cfg.seed)
    per_epoch = len(sampler)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / cfg.grad_accum))
    loss_key = cfg.loss.strip().lower().replace("-", "").replace("_", "")
    if loss_key == "kl":
        raise UsageError("loss 'kl' needs teacher scores and is not wired into the embedder trainer yet")
    multi = loss_key in MULTI_POSITIVE
    loss_fn = build_loss(cfg.loss) if multi else build_loss(cfg.loss, temperature=cfg.temperature)

    model, tokenizer, pooling, normalize, kind = load_backbone(
        cfg.base, cfg.pooling, cfg.lora, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.gradient_checkpointing
    )
    templates = _templates(cfg, kind)
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision),
                              gradient_accumulation_steps=cfg.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    device = accelerator.device

    step, last_loss = 0, None
    status = run.status()
    best = status.get("best_metric") if resume else None
    checkpoint = run.latest_checkpoint() if resume else None
    if resume and checkpoint is None:
        _log("no complete checkpoint to resume from: starting from step 0")
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "sampler.json").read_text())
        sampler.load_state_dict(state["sampler"])
        step, last_loss = int(state["step"]), state.get("loss")
        run.append_event({"event": "resumed", "step": step, "checkpoint": checkpoint.name, "time": time.time()})
        _log(f"resumed from {checkpoint.name}")
    run.write_status(state="running", pid=os.getpid(), step=step, total_steps=total, loss=last_loss,
                     kind=kind, pooling=pooling, best_metric=best)
    if step == 0:
        run.append_event({"event": "started", "total_steps": total, "examples": len(examples),
                          "batches_per_epoch": per_epoch, "kind": kind, "pooling": pooling,
                          "device": str(device), "time": time.time()})
    _log(f"training {cfg.name}: {len(examples)} examples, {per_epoch} batches/epoch, {total} steps, "
         f"{kind} ({pooling} pooling) on {device}")

    def batches():
        while True:
            yield from sampler

    stream = batches()

    def compute_loss(exs, rng):
        queries = [templates.render_query(ex.query, ex.instruction) for ex in exs]
        n_neg = cfg.negatives_per_query
        use_neg = n_neg > 0 and all(ex.negatives for ex in exs)
        if multi:
            passages, owner = [], []
            for i, ex in enumerate(exs):
                passages.extend(ex.positives)
                owner.extend([i] * len(ex.positives))
            if use_neg:
                for ex in exs:
                    passages.extend(_pick_negatives(ex, n_neg, rng))
        else:
            passages = [rng.choice(list(ex.positives)) for ex in exs]
            if use_neg:
                for ex in exs:
                    passages.extend(_pick_negatives(ex, n_neg, rng))
        with accelerator.autocast():
            q, q_tok = encode(model, tokenizer, queries, cfg.query_max_length, pooling, normalize,
                              device=device, return_tokens=True)
            d, d_tok = encode(model, tokenizer, passages, cfg.passage_max_length, pooling, normalize,
                              device=device, return_tokens=True)
        q, d = q.float(), d.float()
        if multi:
            qn = torch.nn.functional.normalize(q, dim=-1)
            dn = torch.nn.functional.normalize(d, dim=-1)
            scores = qn @ dn.T / cfg.temperature
            mask = torch.zeros_like(scores, dtype=torch.bool)
            for j, i in enumerate(owner):
                mask[i, j] = True
            loss = loss_fn(scores, mask)
        else:
            b = len(exs)
            negatives = d[b:].reshape(b, n_neg, -1) if use_neg else None
            loss = loss_fn(q, d[:b], negatives)
        return loss, q_tok + d_tok

    def save_checkpoint(at_step: int, loss_value) -> Path:
        folder = run.checkpoints / f"step-{at_step}"
        if folder.exists():
            shutil.rmtree(folder)
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            (folder / "sampler.json").write_text(json.dumps(
                {"sampler": sampler.state_dict(), "step": at_step, "loss": loss_value, "seed": cfg.seed}
            ))  # written last: RunFolder.latest_checkpoint only takes folders that have it
            done = sorted((p for p in run.checkpoints.iterdir() if p.name.startswith("step-")),
                          key=lambda p: int(p.name.split("-")[1]))
            for old in done[:-KEEP_CHECKPOINTS]:
                shutil.rmtree(old, ignore_errors=True)
            run.append_event({"event": "checkpoint", "step": at_step, "path": str(folder), "time": time.time()})
        return folder

    def stop_requested() -> bool:
        if run.stop_path.exists() and not stop.requested:
            stop.requested, stop.why = True, "stop file"
        return stop.requested

    while step < total:
        if stop_requested():
            break
        t0 = time.perf_counter()
        micro_losses, n_examples, n_tokens = [], 0, 0
        for micro in range(cfg.grad_accum):
            idx = next(stream)
            exs = [examples[i] for i in idx]
            rng = random.Random(f"{cfg.seed}|{step}|{micro}")
            with accelerator.accumulate(model):
                loss, tokens = compute_loss(exs, rng)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            micro_losses.append(float(loss.detach()))
            n_examples += len(exs)
            n_tokens += tokens
        step += 1
        last_loss = sum(micro_losses) / len(micro_losses)
        if not math.isfinite(last_loss):
            raise FloatingPointError(f"loss is {last_loss} at step {step}: lower the learning rate")
        elapsed = max(time.perf_counter() - t0, 1e-9)
        if step % max(1, cfg.log_every) == 0 or step == total:
            event = {
                "event": "step",
                "step": step,
                "epoch": round(sampler.epoch + sampler.position / max(1, per_epoch), 4),
                "loss": last_loss,
                "lr": scheduler.get_last_lr()[0],
                "examples_per_s": n_examples / elapsed,
                "tokens_per_s": n_tokens / elapsed,
                "gpu_mem_gb": (torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else 0.0,
                "time": time.time(),
            }
            run.append_event(event)
            run.write_status(state="running", step=step, total_steps=total, loss=last_loss)
            _log(f"step {step}/{total} loss {last_loss:.4f} lr {event['lr']:.2e} "
                 f"{event['examples_per_s']:.1f} ex/s")
        if on_step is not None:
            on_step(step, run)
        if cfg.eval_data and cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == total):
            metric = _evaluate(accelerator.unwrap_model(model), tokenizer, cfg, templates, pooling, normalize, device)
            if metric is not None:
                run.append_event({"event": "eval", "step": step, "ndcg@10": metric, "time": time.time()})
                if best is None or metric > best:
                    best = metric
                run.write_status(best_metric=best, last_metric=metric)
        if step < total and cfg.save_every > 0 and step % cfg.save_every == 0:
            save_checkpoint(step, last_loss)
        if stop_requested() and step < total:
            break

    if step < total:  # stopped
        folder = save_checkpoint(step, last_loss)
        run.write_status(state="stopped", step=step, total_steps=total, loss=last_loss, pid=None)
        run.append_event({"event": "stopped", "step": step, "why": stop.why, "checkpoint": folder.name,
                          "time": time.time()})
        _log(f"stopped at step {step} ({stop.why}); resume with `wb train resume {run.name}`")
        return run.status()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final(accelerator.unwrap_model(model), tokenizer, cfg.base, run.model_dir, pooling=pooling,
                   normalize=normalize, kind=kind, max_length=cfg.passage_max_length)
        run.append_event({"event": "finished", "step": step, "model": str(run.model_dir), "time": time.time()})
        run.write_status(state="finished", step=step, total_steps=total, loss=last_loss, pid=None,
                         model=str(run.model_dir))
        _log(f"finished: model in {run.model_dir}")
    return run.status()


def _evaluate(model, tokenizer, cfg: EmbedderConfig, templates, pooling, normalize, device) -> float | None:
    """nDCG@10 of exact cosine top-100 on ``cfg.eval_data`` (None when ranx is not installed)."""
    try:
        from ranx import Qrels, Run, evaluate
    except ImportError:
        _log("eval skipped: ranx is not installed")
        return None
    import torch

    from .backbone import encode

    corpus, queries, qrels = load_beir_eval(cfg.eval_data, cfg.eval_split)
    if not queries:
        _log(f"eval skipped: no judged queries in {cfg.eval_data} ({cfg.eval_split})")
        return None
    doc_ids = list(corpus)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            def enc(texts, max_length):
                out = [encode(model, tokenizer, texts[i : i + 64], max_length, pooling, normalize, device=device).float()
                       for i in range(0, len(texts), 64)]
                return torch.nn.functional.normalize(torch.cat(out), dim=-1)

            d = enc([corpus[i] for i in doc_ids], cfg.passage_max_length)
            qids = list(queries)
            q = enc([templates.render_query(queries[i], cfg.instruction) for i in qids], cfg.query_max_length)
            scores = q @ d.T
            top = torch.topk(scores, k=min(100, len(doc_ids)), dim=1)
    finally:
        model.train(was_training)
    run = {qid: {doc_ids[j]: float(s) for s, j in zip(vals.tolist(), idx.tolist())}
           for qid, vals, idx in zip(qids, top.values, top.indices)}
    value = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
    _log(f"eval ndcg@10 {value:.4f}")
    return value
