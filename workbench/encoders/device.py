"""Device and dtype choice: CUDA with bf16; CPU with bf16 where it has native bf16 dot products.

On CPUs with AVX512-BF16 or AMX, bf16 matmuls run 2-3x faster than fp32 and the pooled
embeddings keep a cosine of >= 0.9999 to fp32 ones. Elsewhere bf16 GEMMs are emulated and far
slower than fp32 (an AVX2-only AMD EPYC here: a 2048² bf16 matmul at 0.3 GFLOPS against 105 in
fp32; SPLADE's projection tile 43x slower, a MaxSim candidate block 2.3x), so every bf16 matmul
on the CPU goes through ``pick_dtype``. ``WB_DTYPE=float32`` forces full precision.
"""

from __future__ import annotations

import contextlib
import functools
import os


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


def pick_dtype(device):
    """The dtype for matmuls on ``device``: bf16 on CUDA and on CPUs with native bf16, else float32
    (``WB_DTYPE`` overrides)."""
    import torch

    forced = os.environ.get("WB_DTYPE")
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


def query_threads() -> int | None:
    """Intra-op CPU threads for query-time work, or None to keep torch's default.

    A query is a few small ops; with more threads than idle cores every op waits at its barrier for
    a thread the scheduler gave to another process. On the 2-core machine with a training job running
    that made one MiniLM query forward ~480 ms instead of ~8 ms on one thread. So queries use the
    cores that are idle (1-minute load average), at least one. ``WB_QUERY_THREADS=N`` forces N;
    ``WB_QUERY_THREADS=0`` keeps torch's default.
    """
    forced = os.environ.get("WB_QUERY_THREADS", "").strip()
    if forced.isdigit():
        return int(forced) or None
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None
    return max(1, int(cpus - load + 0.5))


@contextlib.contextmanager
def query_thread_limit(active: bool = True):
    """Run the block with at most ``query_threads()`` torch threads (restored afterwards)."""
    if not active:
        yield
        return
    import torch

    wanted, before = query_threads(), torch.get_num_threads()
    forced = bool(os.environ.get("WB_QUERY_THREADS", "").strip())
    if wanted is None or wanted == before or (wanted > before and not forced):
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quiet_transformers() -> None:
    """No weight-loading progress bars or advisory warnings on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
