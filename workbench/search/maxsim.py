"""Exact MaxSim (late interaction) scoring.

score(q, d) = sum over query tokens i of max over document tokens j of <q_i, d_j>, both sides
L2-normalised. Which documents get scored is the caller's choice; each one is scored in full (every
query token against every document token: no pruning, no approximation), in bf16 products
accumulated in fp32. LanceDB stores the vectors as fp16; the query snapshot holds them as bf16 (half
the memory of fp32, and the dtype CPUs with native bf16 multiply fastest), so a score differs from an
fp32 MaxSim over LanceDB's fp16 vectors by bf16 rounding: at most ~5e-3 on SciFact's MaxSim scores
(~5), the order of two documents closer than that may swap. Keeping fp16 and multiplying in fp32
instead made the ColBERT stage of the demo's hybrid queries 4x slower (38 -> 158 ms on 1,161
chunks, 2 cores with native bf16), which is why it is not done. On a CPU without native bf16
(``device.pick_dtype`` gives float32) the stored bf16 values are widened to fp32 first: the same
products (a bf16 x bf16 product is exact in fp32), a matmul 2-3x faster there than emulated bf16.

Where the stored bf16 is widened (every CPU without native bf16, and the numpy query backend,
``Searcher(backend="numpy")``, which never imports torch), ``maxsim_chunks`` scores: blocks of whole
chunks widened into a reused buffer. Where the CPU multiplies bf16 natively, torch does it in bf16.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _segment_max_sum(sims: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)


def cpu_matmul_dtype():
    import torch

    from workbench.encoders.device import pick_dtype

    return pick_dtype(torch.device("cpu"))


def bf16_maxsim_error(query_tokens: np.ndarray) -> float:
    """A bound on |MaxSim in bf16 products - exact MaxSim| for ``query_tokens`` [nq, d] against any
    document of unit-norm tokens (every token matrix wb stores is L2-normalised, then rounded to
    bf16/fp16: norm <= 1 + 2^-8). Per query token i, rounding the query to bf16 moves each
    similarity by <= 2^-9 |q_i| |d| and rounding the product's output by <= 2^-9 |q_i| |d|; a max
    over the document's tokens moves by no more than its largest term, the sum adds the tokens'
    bounds: 2^-8 (1 + 2^-8) sum_i |q_i|, widened by 1% for the fp32 accumulations."""
    norms = np.linalg.norm(np.asarray(query_tokens, dtype=np.float32), axis=1)
    return float(norms.sum()) * 2.0 ** -8 * (1 + 2.0 ** -8) * 1.01


def rows_that_can_rank(approx: np.ndarray, depth: int, error: float) -> np.ndarray:
    """The rows (ascending) of ``approx`` scores, each within ``error`` of its exact score, that can
    be among the exact top ``depth``: those at least the approximate depth-th best less 2 x error.
    (If the exact top ``depth`` all score >= t, some ``depth`` rows have approx >= a_k, so exact
    t >= a_k - error, and each of them has approx >= t - error >= a_k - 2 error.)"""
    n = len(approx)
    if n <= depth:
        return np.arange(n, dtype=np.int64)
    kth = float(np.partition(approx, n - depth)[n - depth])
    return np.flatnonzero(approx >= kth - 2 * error).astype(np.int64)


def rescored_contenders(query_tokens: np.ndarray, approx: np.ndarray, depth: int, exact_scores):
    """``(rows, scores)``: the rows of ``approx`` (scores from bf16 products) that can be among the
    exact top ``depth`` (:func:`rows_that_can_rank` by :func:`bf16_maxsim_error`), ascending, with
    their exact scores from ``exact_scores(rows) -> float32 [len(rows)]``: the exact top ``depth`` is
    the best of these."""
    near = rows_that_can_rank(approx, depth, bf16_maxsim_error(query_tokens))
    return near, exact_scores(near)


def _widened(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bf16 bit patterns (int16) as the same values in float32: the 16 bits moved up (exact, ~6x
    faster than torch's ``.float()``); into ``out`` (int32, as large) when given."""
    wide = np.left_shift(bits, 16, out=out, dtype=np.int32)
    return wide.view(np.float32)


def maxsim_tensor(query_tokens, docs, lengths: np.ndarray, block_tokens: int = 262_144, threads: int | None = None) -> np.ndarray:
    """MaxSim of one query ([nq, d] tensor) against documents stacked in ``docs`` ([T, d] tensor).

    ``lengths[j]`` is document j's token count (all > 0). Returns float32 [n_docs]. bf16 ``docs``
    are multiplied in bf16 where the CPU has it, else widened to fp32 by :func:`maxsim_bits` on
    ``threads`` threads (default: torch's).
    """
    import torch

    n_docs = len(lengths)
    if n_docs == 0:
        return np.zeros(0, dtype=np.float32)
    if docs.dtype == torch.bfloat16 and cpu_matmul_dtype() != torch.bfloat16:
        return maxsim_bits(query_tokens.float().numpy(), docs.view(torch.int16).numpy(), lengths,
                           threads=threads or torch.get_num_threads())
    q = query_tokens.to(docs.dtype)
    out = np.zeros(n_docs, dtype=np.float32)
    ends = np.cumsum(lengths)
    doc, lo = 0, 0
    while doc < n_docs:
        last = int(np.searchsorted(ends, lo + block_tokens, side="right"))
        last = max(last, doc + 1)
        hi = int(ends[last - 1])
        with torch.inference_mode():
            sims = torch.matmul(q, docs[lo:hi].T).float().numpy()
        out[doc:last] = _segment_max_sum(sims, lengths[doc:last])
        doc, lo = last, hi
    return out


_block_buffers = threading.local()  # each thread's int32 buffer of widened rows, reused across calls
_block_pools: dict[int, ThreadPoolExecutor] = {}
_block_pools_lock = threading.Lock()


def _block_pool(threads: int) -> ThreadPoolExecutor:
    with _block_pools_lock:
        if threads not in _block_pools:
            _block_pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wb-maxsim-all")
        return _block_pools[threads]


def maxsim_bits(query_tokens: np.ndarray, bits: np.ndarray, lengths: np.ndarray, block_tokens: int = 4_096,
                threads: int = 1) -> np.ndarray:
    """Exact MaxSim of one query ([nq, d] float32) against every document of a token matrix stored
    as bf16 bits (``bits`` [T, d] int16, documents consecutive, ``lengths`` > 0): float32 [n_docs],
    equal to ``maxsim_tensor`` (the same fp32 products, summed in another order). The blocks spread
    over ``threads`` threads (numpy releases the GIL while it widens a block's rows and multiplies),
    numpy's BLAS held to one thread meanwhile (272k tokens, AVX2 EPYC: 50 ms on 2 threads, 90 on one).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return maxsim_chunks(query_tokens, bits, starts, lengths, block_tokens=block_tokens, threads=threads)


def maxsim_chunks(query_tokens, bits: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *,
                  block_tokens: int = 4_096, threads: int = 1) -> np.ndarray:
    """Exact MaxSim of one query ([nq, d]) against chunks of a token matrix stored as bf16 bits:
    chunk ``j`` is ``bits[starts[j] : starts[j] + lengths[j]]`` (``bits`` [T, d] int16, lengths > 0).
    Returns float32 ``[len(starts)]``: bf16 x bf16 products, exact in fp32, summed in fp32.

    How: the chunks go a block of ~``block_tokens`` tokens at a time (whole chunks, no padding)
    through an fp32 buffer that each thread reuses: every chunk's rows are widened from bf16 as they
    are copied in (one slice where the block's chunks lie back to back), one product gives the
    block's [nq, rows] similarities, and a segment max then a sum give each chunk's score. 6 MB at
    d = 384: the product reads it from cache, and no call page-faults fresh memory (widening a
    272k-token matrix at once: 1.9 s; blocks into new arrays: 155 ms; the reused buffer: 112 ms).
    Against CandidateScorer's padded buffer on SciFact's hybrid candidates (110 chunks, AVX2 EPYC):
    about 0.5-0.9x the time, less where chunk lengths differ more (no padding rows to multiply).

    ``threads`` > 1 spreads blocks over a pool with numpy's BLAS on one thread; on one thread the
    products use numpy's BLAS at its current thread count (a numpy-backend query block gives it the
    query's threads; the torch backend holds it to one and passes torch's count here instead).
    """
    from workbench.encoders.device import blas_threads

    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    q = np.ascontiguousarray(query_tokens, dtype=np.float32)
    bits = np.asarray(bits)  # a plain view: slicing a np.memmap subclass costs ~3 us a slice
    dim = int(bits.shape[1])
    ends = np.cumsum(lengths)
    capacity = max(block_tokens, int(lengths.max())) * dim
    back_to_back = np.concatenate([starts[1:] == starts[:-1] + lengths[:-1], [False]])
    starts_list, lengths_list = starts.tolist(), lengths.tolist()
    blocks, first, done = [], 0, 0
    while first < n:
        last = max(int(np.searchsorted(ends, done + block_tokens, side="right")), first + 1)
        blocks.append((first, last))
        first, done = last, int(ends[last - 1])

    def score_block(block: tuple[int, int]) -> None:
        first, last = block
        total = int(ends[last - 1] - (ends[first - 1] if first else 0))
        buffer = getattr(_block_buffers, "rows", None)
        if buffer is None or buffer.size < capacity:
            buffer = _block_buffers.rows = np.empty(capacity, dtype=np.int32)
        view = buffer[: total * dim].reshape(total, dim)
        if last - first == 1 or back_to_back[first : last - 1].all():
            a = starts_list[first]
            rows = _widened(bits[a : a + total], view)
        else:
            offset = 0
            for j in range(first, last):
                a, m = starts_list[j], lengths_list[j]
                _widened(bits[a : a + m], view[offset : offset + m])
                offset += m
            rows = view.view(np.float32)
        out[first:last] = _segment_max_sum(q @ rows.T, lengths[first:last])

    if threads > 1 and len(blocks) > 1:
        with blas_threads(1):
            list(_block_pool(threads).map(score_block, blocks))
    else:
        for block in blocks:
            score_block(block)
    return out


class CandidateScorer:
    """Exact MaxSim of a query against chosen chunks of a token matrix stored as raw bf16 bits.

    ``bits`` is ``[T, d]`` int16 (bf16 bit patterns, e.g. the snapshot's memory map); chunk ``r``
    owns rows ``starts[r] : starts[r] + lengths[r]``. ``score(q, rows)`` returns float32
    ``[len(rows)]`` equal (bf16 products, fp32 sums) to ``maxsim_tensor`` over the same chunks.

    How: the chunks' rows are copied into a reused ``[n, L, d]`` buffer (L = the longest chunk's
    length; a shorter chunk's padding rows repeat its first row, so the max over L needs no mask;
    copies split over ``threads`` threads, numpy releases the GIL), one 2-D bf16 matmul (fp32 on a
    CPU without native bf16: each row's bits widened as it is copied into an int32 buffer) gives the
    ``[n, L, nq]`` similarities, and a float32 max over L then a sum over the query tokens give the
    scores. Against gathering into one ragged ``[T, d]`` tensor and reducing segments with numpy's
    reduceat, the reduction is a plain strided max; the reused buffer skips page faults on tens of
    MB per query. Calls on one instance are serialised by a lock (the buffer is shared). Where the
    rows are widened to fp32 (no native bf16), :func:`maxsim_chunks` is faster (no padding). Queries
    no longer use this class: ``Searcher.maxsim_rows`` scores exactly in fp32 everywhere (a bf16
    product rounds the query and each similarity, for 0.8-1.0x of the fp32 time on an avx512_bf16
    CPU); it stays as the benchmarks' baseline for that choice.
    """

    def __init__(self, bits: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        self.bits = np.asarray(bits)  # a plain view: slicing a np.memmap subclass costs ~3 us a slice
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._buffer = np.zeros((0,), dtype=np.int16)
        self._wide = np.zeros((0,), dtype=np.int32)  # fp32 bit patterns, where bf16 is emulated
        self._widen = str(cpu_matmul_dtype()) != "torch.bfloat16"
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _copy(self, view: np.ndarray, rows: list[int], starts: list[int], lengths: list[int], lo: int, hi: int) -> None:
        bits = self.bits
        widen = view.dtype == np.int32  # fp32 bit patterns: each bf16 row widened as it is copied
        for i in range(lo, hi):
            a, n = starts[i], lengths[i]
            if widen:
                _widened(bits[a : a + n], view[i, :n])
            else:
                view[i, :n] = bits[a : a + n]
            if n < view.shape[1]:  # padding repeats a real row: the max over the chunk is unchanged
                view[i, n:] = view[i, 0]

    def score(self, query_tokens, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        lengths = self.lengths[rows]
        n, width, dim = len(rows), int(lengths.max()), int(self.bits.shape[1])
        q = torch.as_tensor(query_tokens).to(torch.float32 if self._widen else torch.bfloat16)
        with self._lock:
            need = n * width * dim
            if self._widen:  # int32 buffer of fp32 bit patterns
                if self._wide.size < need:
                    self._wide = np.empty(need, dtype=np.int32)
                view = self._wide[:need].reshape(n, width, dim)
            else:
                if self._buffer.size < need:
                    self._buffer = np.empty(need, dtype=np.int16)
                view = self._buffer[:need].reshape(n, width, dim)
            args = (view, rows.tolist(), self.starts[rows].tolist(), lengths.tolist())
            if threads > 1 and n >= 64:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wb-maxsim")
                bounds = np.linspace(0, n, threads + 1).astype(int)
                list(self._pool.map(lambda b: self._copy(*args, int(b[0]), int(b[1])), zip(bounds[:-1], bounds[1:])))
            else:
                self._copy(*args, 0, n)
            flat = view.reshape(n * width, dim)
            docs = torch.from_numpy(flat.view(np.float32)) if self._widen else torch.from_numpy(flat).view(torch.bfloat16)
            with torch.inference_mode():
                # one 2-D matmul, then the max in float32 (bf16 reductions are ~10x slower on CPU)
                sims = torch.mm(docs, q.T).float().view(n, width, -1)  # [n, L, nq]
                return sims.amax(dim=1).sum(dim=1).numpy()


def maxsim_numpy(query_tokens: np.ndarray, doc_tokens: list[np.ndarray]) -> np.ndarray:
    """Reference MaxSim in float32 numpy (brute force, for tests and exactness checks)."""
    if not doc_tokens:
        return np.zeros(0, dtype=np.float32)
    q = query_tokens.astype(np.float32)
    return np.array([(q @ d.astype(np.float32).T).max(axis=1).sum() for d in doc_tokens], dtype=np.float32)
