"""Device and dtype choice: CUDA with bf16; CPU with bf16 where it has native bf16 dot products.

On CPUs with AVX512-BF16 or AMX, bf16 matmuls run 2-3x faster than fp32 and the pooled
embeddings keep a cosine of >= 0.9998 to fp32 ones (measured: MiniLM min 0.99988 over odd texts,
the empty one lowest, 0.99992 over 300 SciFact queries; SmolLM2-135M as a last-token embedder
0.9994); queries of BERT models are encoded in fp32 all the same (``DenseEncoder.query_model``).
Elsewhere bf16 GEMMs are emulated and far slower than fp32 (an AVX2-only AMD EPYC here: a 2048²
bf16 matmul at 0.3 GFLOPS against 105 in fp32; SPLADE's projection tile 43x slower, a MaxSim
candidate block 2.3x), so every bf16 matmul on the CPU goes through ``pick_dtype``.
``WB_DTYPE=float32`` (or ``bfloat16``, ``float16``; ``fp32``, ``bf16``, ``fp16``) forces a dtype.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time


@functools.cache
def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def pick_device(requested: str | None = None):
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}  # what WB_DTYPE accepts -> torch's name


def forced_dtype_name() -> str | None:
    """torch's name of the dtype ``WB_DTYPE`` forces (``float32``, ``bfloat16``, ``float16``; the
    aliases ``fp32``, ``bf16``, ``fp16`` too, any case), None when unset or blank; any other value is
    one UsageError line naming the accepted ones."""
    value = os.environ.get("WB_DTYPE", "").strip()
    if not value:
        return None
    name = DTYPE_NAMES.get(value.lower())
    if name is None:
        from workbench.errors import UsageError

        raise UsageError(f"WB_DTYPE={value!r} is not a dtype wb runs in; use one of {', '.join(DTYPE_NAMES)}")
    return name


def pick_dtype(device):
    """The dtype for matmuls on ``device``: bf16 on CUDA and on CPUs with native bf16, else float32
    (``WB_DTYPE`` overrides: :func:`forced_dtype_name`)."""
    import torch

    forced = forced_dtype_name()
    if forced:
        return getattr(torch, forced)
    if device.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def batch_token_budget(device) -> int:
    """Tokens per encoding batch (length-sorted, padded) when the caller names none.

    bf16 (CUDA, bf16 CPUs): 16,384. fp32 on a CPU: 4,096, where activations that stay in cache
    pay more than bigger GEMMs; on the AVX2-only 2-core machine, 240 SciFact passages, two rounds:
    MiniLM dense+tokens 21.6 passages/s at 4,096 vs 19.7 at 16,384, SPLADE-tiny 51.3 vs 45.8.
    """
    import torch

    return 16_384 if pick_dtype(device) != torch.float32 or device.type == "cuda" else 4_096


def forced_query_threads() -> int | None:
    """The thread count ``WB_QUERY_THREADS`` forces (0: torch's default), None when unset or blank;
    any other value (``abc``, ``-1``) is one UsageError line, as a bad ``WB_DTYPE`` is."""
    value = os.environ.get("WB_QUERY_THREADS", "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        from workbench.errors import UsageError

        raise UsageError(f"WB_QUERY_THREADS={value!r} is not a thread count: give a whole number, or 0 for "
                         "torch's default")
    return int(value)


QUERY_BACKENDS = ("torch", "numpy")  # what WB_QUERY_BACKEND accepts


def forced_query_backend() -> str | None:
    """The query backend ``WB_QUERY_BACKEND`` forces (``torch`` or ``numpy``, any case), None when
    unset or blank; any other value is one UsageError line naming the accepted ones."""
    value = os.environ.get("WB_QUERY_BACKEND", "").strip()
    if not value:
        return None
    if value.lower() not in QUERY_BACKENDS:
        from workbench.errors import UsageError

        raise UsageError(f"WB_QUERY_BACKEND={value!r} is not a query backend; use one of {', '.join(QUERY_BACKENDS)}")
    return value.lower()


def check_environment() -> None:
    """Refuse a bad ``WB_DTYPE``, ``WB_QUERY_THREADS`` or ``WB_QUERY_BACKEND`` in one UsageError line,
    before anything runs (not a traceback mid-load, nor a value silently ignored)."""
    forced_dtype_name()
    forced_query_threads()
    forced_query_backend()


def query_threads() -> int | None:
    """Intra-op CPU threads for query-time work, or None to keep torch's default.

    A query is a few small ops; with more threads than idle cores every op waits at its barrier for
    a thread the scheduler gave to another process. On the 2-core machine with a training job running
    that made one MiniLM query forward ~480 ms instead of ~8 ms on one thread. So queries use the
    cores that are idle (1-minute load average, less the load this process's own queries put there:
    :func:`own_query_load`), at least one. ``WB_QUERY_THREADS=N`` forces N; ``WB_QUERY_THREADS=0``
    keeps torch's default.
    """
    forced = forced_query_threads()
    if forced is not None:
        return forced or None
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None
    others = max(0.0, load - own_query_load())
    now = runnable_elsewhere()
    if now is not None:  # the average lags a minute behind a process that just ended
        others = min(others, float(now))
    return max(1, int(cpus - others + 0.5))


def runnable_elsewhere() -> int | None:
    """Threads runnable at this instant outside this process (``/proc/loadavg``'s running count less
    this process's threads in state R), or None where ``/proc`` does not say. ~0.2 ms."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat", "rb") as f:
                    stat = f.read()
            except OSError:  # the thread ended meanwhile
                continue
            end = stat.rindex(b")")
            own += stat[end + 2 : end + 3] == b"R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


_LOAD_WINDOW_S = 60.0  # the kernel's 1-minute load average is an exponential average of this constant
_own_load = {"ema": 0.0, "at": 0.0}
_own_load_lock = threading.Lock()


def own_query_load(now: float | None = None) -> float:
    """The part of the 1-minute load average that this process's own query blocks made.

    A loop of queries (``wb eval``, a benchmark) keeps its threads busy, so the load average soon
    reads ~2 on 2 cores and, counted as other processes' work, would cut every later query to one
    thread (measured: SciFact hybrid p50 89 ms instead of 61). Each :func:`query_thread_limit` block
    adds ``threads x its duration`` to an exponential average of the same 60 s constant; work this
    process does outside query blocks (an in-process indexing thread) still counts as busy cores.
    """
    now = time.monotonic() if now is None else now
    with _own_load_lock:
        if not _own_load["at"]:
            return 0.0
        return _own_load["ema"] * math.exp(-max(0.0, now - _own_load["at"]) / _LOAD_WINDOW_S)


def _count_own_load(start: float, end: float, threads: int) -> None:
    before = own_query_load(start)
    keep = math.exp(-max(0.0, end - start) / _LOAD_WINDOW_S)
    with _own_load_lock:
        _own_load["ema"] = before * keep + threads * (1.0 - keep)
        _own_load["at"] = end


_blas_seen: dict = {"modules": -1, "controller": None}


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS / OpenMP libraries, scanned again whenever modules
    were imported since the last scan (a library is only loaded by an import: scipy brings its own
    OpenBLAS, which a view taken before it left at its threads). None without threadpoolctl."""
    import sys

    if _blas_seen["modules"] != len(sys.modules):
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its threads
            return None
        _blas_seen["controller"] = ThreadpoolController()
        _blas_seen["modules"] = len(sys.modules)
    return _blas_seen["controller"]


def blas_threads(n: int | None):
    """numpy's BLAS (OpenBLAS) on ``n`` threads for the block (None: unchanged)."""
    controller = _blas_controller() if n is not None else None
    if controller is None or not controller.select(user_api="blas").lib_controllers:
        return contextlib.nullcontext()
    return controller.limit(limits=n, user_api="blas")


def _one_blas_thread():
    """numpy's BLAS (OpenBLAS) on one thread for the block.

    Its worker threads spin-wait after each call, and torch's OpenMP workers spin too: with both
    pools at 2 threads on 2 cores, each waits for cores the other holds. Measured on SciFact (AVX2
    EPYC, 2 cores): hybrid p50 133 ms with both at 2 threads, 61 ms with BLAS at 1 (the MiniLM query
    forward 36 -> 12 ms, the ColBERT stage 67 -> 34 ms). The query path's own products now run in
    torch (``Searcher._dense_scores``); this keeps any numpy product inside a query block from
    waking BLAS's workers.
    """
    return blas_threads(1)


_numpy_block = threading.local()


def numpy_query_threads() -> int:
    """The threads a numpy-backend query block on this thread may use (1 outside such a block)."""
    return getattr(_numpy_block, "threads", None) or 1


@contextlib.contextmanager
def query_thread_limit(active: bool = True, backend: str = "torch"):
    """Run the block with at most ``query_threads()`` torch threads and numpy's BLAS on one thread
    (both restored afterwards); the block's threads x duration count as this process's own load.

    ``backend="numpy"`` (a query that runs in numpy and never imports torch): numpy's BLAS gets the
    ``query_threads()`` instead, and torch is not touched.
    """
    if not active:
        yield
        return
    if backend == "numpy":
        wanted = query_threads()
        threads = wanted or os.cpu_count() or 1
        start, outer = time.monotonic(), getattr(_numpy_block, "threads", None)
        _numpy_block.threads = threads
        try:
            with blas_threads(wanted):
                yield
        finally:
            _numpy_block.threads = outer
            _count_own_load(start, time.monotonic(), threads)
        return
    import torch

    with _torch_blocks_lock:  # blocks may overlap (TUI workers): the first one in records torch's
        if _torch_blocks["depth"] == 0:  # count, the last one out restores it
            _torch_blocks["baseline"] = torch.get_num_threads()
        _torch_blocks["depth"] += 1
        before = _torch_blocks["baseline"]
    wanted = query_threads()
    forced = forced_query_threads() is not None
    change = not (wanted is None or wanted == before or (wanted > before and not forced))
    if change:
        torch.set_num_threads(wanted)
    start = time.monotonic()
    try:
        with _one_blas_thread():
            yield
    finally:
        with _torch_blocks_lock:
            _torch_blocks["depth"] -= 1
            if _torch_blocks["depth"] == 0 and torch.get_num_threads() != before:
                torch.set_num_threads(before)
        _count_own_load(start, time.monotonic(), wanted if change else before)


_torch_blocks: dict = {"depth": 0, "baseline": None}  # torch query blocks running now, torch's count before them
_torch_blocks_lock = threading.Lock()


def auto_tokenizer(path, what: str):
    """``AutoTokenizer.from_pretrained(path)`` (no remote code) without progress bars; a folder it cannot read is
    one ModelError line, ``cannot load {what} '{path}': ...`` (``what``: "dense model", ...)."""
    from transformers import AutoTokenizer

    from workbench.errors import ModelError

    require_tokenizer(path, what)
    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        from workbench.models.cache import repair_hint

        raise ModelError(f"cannot load {what} '{path}': {str(exc).splitlines()[0]}{repair_hint(path)}") from exc


def load_pretrained(auto_class, path, what: str, **kwargs):
    """``auto_class.from_pretrained(path, **kwargs)`` (no remote code) that refuses a checkpoint
    lacking weights the model needs, instead of serving them randomly initialised (transformers only
    warns). Every failure is one ModelError line, ``cannot load {what} '{path}': ...``: the loader's
    own error, or ``missing weights: KEY, KEY, ... (N in all)`` (:func:`missing_weights`), with the
    hint to reinstall when ``path`` is a built-in model's folder in the model cache."""
    from workbench.errors import ModelError, first_line
    from workbench.models.cache import repair_hint

    quiet_transformers()
    try:
        model, info = auto_class.from_pretrained(path, output_loading_info=True, trust_remote_code=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, safetensors' own error: one line
        raise ModelError(f"cannot load {what} '{path}': {first_line(exc)}{repair_hint(path)}") from exc
    missing = missing_weights(model, info)
    if missing:
        shown = ", ".join(missing[:3]) + (f", ... ({len(missing)} in all)" if len(missing) > 3 else "")
        raise ModelError(f"cannot load {what} '{path}': missing weights: {shown}; the checkpoint is "
                         f"incomplete{repair_hint(path)}")
    return model


MISSING_OK = ("pooler.",)  # modules wb never runs: a checkpoint may leave them out (BERT's pooler)


def missing_weights(model, loading_info: dict) -> list[str]:
    """The parameters of ``model`` that its checkpoint did not hold (``loading_info``, what
    ``from_pretrained(..., output_loading_info=True)`` returns), sorted, less those legitimately
    absent: buffers (``position_ids``, rotary frequencies: computed, not loaded), a module in
    ``MISSING_OK`` at any depth (``bert.pooler.dense.weight``), and a weight tied to another that
    the checkpoint did hold (an MLM decoder tied to the word embeddings)."""
    missing = set(loading_info.get("missing_keys") or ())
    if not missing:
        return []
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    if not isinstance(tied, dict):  # older transformers: a list of tied names, sources unknown
        tied = {name: None for name in tied}
    out = []
    for key in sorted(missing):
        if key not in params:
            continue
        if any(key.startswith(ok) or f".{ok}" in key for ok in MISSING_OK):
            continue
        if key in tied and tied[key] not in missing:
            continue
        out.append(key)
    return out


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def require_tokenizer(path, what: str) -> None:
    """ModelError when the local folder ``path`` holds no tokenizer file: transformers would build
    an empty tokenizer that reads every word as [UNK] (every text encoded alike), not fail."""
    from pathlib import Path

    from workbench.errors import ModelError

    folder = Path(path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"cannot load {what} '{path}': the folder has no tokenizer "
                         f"(none of {', '.join(TOKENIZER_FILES)})")


def quiet_transformers() -> None:
    """No weight-loading progress bars or advisory warnings on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
