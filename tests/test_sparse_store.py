"""Tantivy's bit-plane sparse scoring against the exact float dot product (real Tantivy, temp folders)."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from workbench.store.sparse_quant import BITS, bitplane_clauses, bitplane_tokens, quantize
from workbench.store.tantivy_store import PLANES_FILE, TantivyChunkStore

STEP = 0.02


def synthetic_docs(rng, n=120, vocab=3000):
    docs = []
    for i in range(n):
        m = int(rng.integers(10, 80))
        ids = rng.choice(vocab, m, replace=False).astype(np.int32)
        w = rng.gamma(1.0, 0.6, m).astype(np.float32)
        if i % 5 == 0:  # far above the 8-bit range (255 * 0.02 = 5.1)
            w[:3] = [6.0, 9.0, 40.0 + i]
        if i % 17 == 0:
            w[3] = 1000.0
        docs.append((ids, w))
    return docs


def exact_dot(docs, qi, qw):
    qm = dict(zip(qi.tolist(), np.asarray(qw, np.float64).tolist()))
    return np.array([sum(qm.get(t, 0.0) * float(w) for t, w in zip(ids.tolist(), ws.tolist())) for ids, ws in docs])


def build(folder, docs, batches=1):
    store = TantivyChunkStore(folder, STEP)
    store.create_if_missing()
    for part in np.array_split(np.arange(len(docs)), batches):
        store.add([int(i) for i in part], [f"d{i}" for i in part], ["x"] * len(part), [docs[i] for i in part])
        store.commit()
    return store


def check_exact(store, docs, rng, trials=8):
    for _ in range(trials):
        src = docs[int(rng.integers(0, len(docs)))][0]
        qi = np.unique(np.concatenate([rng.choice(src, min(20, len(src)), replace=False),
                                       rng.choice(3000, 10)])).astype(np.int32)
        qw = rng.gamma(1.0, 0.8, len(qi)).astype(np.float32)
        keys, scores = store.sparse_search(qi, qw, len(docs))
        ex = exact_dot(docs, qi, qw)
        bound = 0.5 * STEP * float(qw.sum())
        # the documents not returned score 0 quantized: their exact dot is within the bound too
        missing = np.setdiff1d(np.arange(len(docs)), keys)
        assert np.all(np.abs(ex[missing]) <= bound)
        err = np.abs(scores - ex[keys])
        assert err.max() <= bound + 1e-5 * max(1.0, float(ex.max())), (err.max(), bound)
        top = np.argsort(-ex, kind="stable")[:5]
        assert ex[keys[0]] >= ex[top[0]] - 2 * bound


def test_weights_above_the_8_bit_range_score_within_the_bound(tmp_path):
    """Weights of 6, 9, 40+ and 1000 with step 0.02 were clipped to 5.1: errors of 10+ and wrong ranks."""
    rng = np.random.default_rng(0)
    docs = synthetic_docs(rng)
    store = build(tmp_path / "t", docs, batches=3)
    assert store.sparse_planes() == max(int(round(1000.0 / STEP)).bit_length(), BITS)
    check_exact(store, docs, rng)
    store.garbage_collect()  # Tantivy's GC leaves the count alone
    assert (tmp_path / "t" / PLANES_FILE).exists()


def test_ordinary_weights_record_nothing_and_query_8_planes(tmp_path):
    """An index of ordinary weights keeps the 8-plane query (no extra clauses), like one written
    before the count was recorded."""
    rng = np.random.default_rng(1)
    docs = [(ids, np.minimum(w, 5.0).astype(np.float32)) for ids, w in synthetic_docs(rng, n=40)]
    store = build(tmp_path / "t", docs)
    assert not (tmp_path / "t" / PLANES_FILE).exists()
    assert store.sparse_planes() == BITS
    assert len(bitplane_clauses(np.array([1, 2]), np.array([0.5, 1.0]), STEP, store.sparse_planes())) == 2 * BITS
    check_exact(store, docs, rng, trials=4)


def test_count_is_recorded_before_commit_and_a_larger_count_is_harmless(tmp_path):
    rng = np.random.default_rng(2)
    docs = synthetic_docs(rng, n=30)
    store = TantivyChunkStore(tmp_path / "t", STEP)
    store.create_if_missing()
    store.add(list(range(30)), [f"d{i}" for i in range(30)], ["x"] * 30, docs)
    # queued, not committed: the count is already durable (a crash now leaves it, at worst, too large)
    assert json.loads((tmp_path / "t" / PLANES_FILE).read_text())["planes"] == 16
    store.commit()
    (tmp_path / "t" / PLANES_FILE).write_text(json.dumps({"planes": 40}))  # what a crash could leave
    check_exact(TantivyChunkStore(tmp_path / "t", STEP), docs, rng, trials=3)


def test_non_finite_and_negative_weights_count_as_zero_and_never_hang():
    def boom(*_):
        raise TimeoutError("bitplane_tokens hung")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    try:
        ids = np.arange(6, dtype=np.int32)
        w = np.array([np.nan, np.inf, -np.inf, -1.0, 0.004, 0.5], np.float32)
        assert quantize(w, STEP) == [0, 0, 0, 0, 0, 25]
        tokens, planes = bitplane_tokens(ids, w, STEP)
        assert tokens == "5b0 5b3 5b4" and planes == 5
        assert bitplane_tokens(ids, np.array([1e300] * 6), STEP)[0] == ""  # beyond float32: non-finite
        clauses = bitplane_clauses(ids, w, STEP)  # NaN, inf and negative query weights: no clause
        assert [t for t, _ in clauses] == [f"{t}b{j}" for t in (4, 5) for j in range(BITS)]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("weight", [5.1, 5.11, 6.0, 1e6])
def test_levels_are_never_clipped(weight):
    (level,) = quantize(np.array([weight], np.float32), STEP)
    assert abs(level * STEP - float(np.float32(weight))) <= STEP / 2 + 1e-9 * weight
