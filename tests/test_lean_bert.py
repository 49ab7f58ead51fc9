"""The lean BERT path (workbench/encoders/lean_bert.py) equals transformers, and falls back when unsure.

fp32 throughout (WB_DTYPE=float32): hidden states, pooled dense vectors, SPLADE weights within 1e-5;
token ids equal AutoTokenizer's. The query path of a BERT workspace never imports transformers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SAMPLE, require_models

MODELS = ("all-MiniLM-L6-v2", "splade-tiny")


def _real_texts() -> list[str]:
    """Documentation paragraphs of varied lengths (a few words to beyond 256 tokens)."""
    files = sorted(SAMPLE.rglob("*.md"))[:40]
    out = []
    for i, f in enumerate(files):
        text = f.read_text(encoding="utf-8")
        out.append(text[: (40, 200, 900, 3000)[i % 4]])
    return out


UNICODE = [
    "",
    " ",
    "\t\n  leading and trailing whitespace  \n",
    "Crème brûlée, naïve café — déjà vu à São Paulo",
    "ÅNGSTRÖM Straße İstanbul ΣΊΣΥΦΟΣ",
    "東京は日本の首都です。北京和上海",
    "한국어 문장도 있습니다",
    "Привет, мир! Ёлка",
    "مرحبا بالعالم",
    "emoji 😀🚀 and ZWJ 👩‍👩‍👧 family",
    "zero\u200bwidth\u00a0nbsp\u2009thin\ufeffbom",
    "control\x00chars\x07and\x1b[31m escapes",
    "[CLS] literal [SEP] tokens [MASK] and [PAD] [UNK] inside",
    "[cls] lowercase lookalikes [mask]",
    "e = mc² ≈ 3×10⁸ m/s; ½ ¼ ﬁ ligature",
    "supercalifragilisticexpialidocious" * 8,
    "x" * 300,
    "C++ / C# / F# / .NET / node.js / vitamin-D3 (25-OH-D) 1,25(OH)2D",
    "https://example.com/path?q=1&r=two#frag user@example.org",
    "Represent this sentence for searching relevant passages: vitamin D deficiency",
]


@pytest.fixture(autouse=True)
def _fp32_lean(monkeypatch):
    monkeypatch.setenv("WB_DTYPE", "float32")
    monkeypatch.delenv("WB_LEAN", raising=False)


def _path(name: str) -> str:
    require_models()
    from workbench.models.cache import resolve_model_path

    return str(resolve_model_path(name))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("max_length", [256, 16])
def test_token_ids_equal_autotokenizer(name, max_length):
    from transformers import AutoTokenizer

    from workbench.encoders.bert_files import load_lean_tokenizer

    path = _path(name)
    texts = UNICODE + _real_texts()
    assert len(texts) >= 50
    lean = load_lean_tokenizer(path, max_length)
    assert lean is not None
    ref = AutoTokenizer.from_pretrained(path)(texts, truncation=True, max_length=max_length)["input_ids"]
    assert lean.ids(texts) == list(ref)
    assert max(len(x) for x in ref) == max_length  # truncation was exercised
    assert lean.pad_token_id == AutoTokenizer.from_pretrained(path).pad_token_id


def _hf_batch(path: str, texts: list[str], max_length: int = 256):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )


def test_minilm_hidden_states_match_transformers():
    import torch
    from transformers import AutoModel

    from workbench.encoders.lean_bert import LeanBertModel, load_lean_bert

    path = _path("all-MiniLM-L6-v2")
    texts = _real_texts()[:12] + UNICODE[3:8]
    batch = _hf_batch(path, texts)
    assert not bool(batch["attention_mask"].all())  # padding present
    lean = load_lean_bert(path, dtype=torch.float32)
    assert isinstance(lean, LeanBertModel)
    ref = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    with torch.inference_mode():
        a = lean(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        b = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    valid = batch["attention_mask"].bool()
    assert float((a - b)[valid].abs().max()) < 1e-5
    assert float((a - b).abs().max()) < 1e-5


def test_splade_hidden_states_and_logits_match_transformers():
    import torch
    from transformers import AutoModelForMaskedLM

    from workbench.encoders.lean_bert import LeanBertForMaskedLM, load_lean_bert

    path = _path("splade-tiny")
    texts = _real_texts()[:12] + UNICODE[3:8]
    batch = _hf_batch(path, texts)
    lean = load_lean_bert(path, mlm=True)
    assert isinstance(lean, LeanBertForMaskedLM)
    # the decoder is tied to the word embeddings, as in transformers
    assert lean.get_output_embeddings().weight is lean.bert.embeddings.word_embeddings.weight
    ref = AutoModelForMaskedLM.from_pretrained(path).eval()
    with torch.inference_mode():
        a = lean(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        b = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    assert float((a.last_hidden_state - b.hidden_states[-1]).abs().max()) < 1e-5
    assert float((a.logits - b.logits).abs().max()) < 1e-5


def test_dense_encoder_lean_equals_transformers(monkeypatch):
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.lean_bert import LeanBertModel

    path = _path("all-MiniLM-L6-v2")
    texts = _real_texts() + UNICODE
    lean = DenseEncoder(path)
    assert isinstance(lean.model, LeanBertModel) and lean._tokenizer is None
    monkeypatch.setenv("WB_LEAN", "0")
    ref = DenseEncoder(path)
    assert not isinstance(ref.model, LeanBertModel)
    a, b = lean.encode(texts, tokens=True), ref.encode(texts, tokens=True)
    np.testing.assert_allclose(a.dense, b.dense, atol=1e-5, rtol=0)
    for x, y in zip(a.tokens, b.tokens):
        assert x.shape == y.shape
        np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=1e-3, rtol=0)  # float16 output
    assert lean.tokenize(texts) == ref.tokenize(texts)
    assert lean.dim == ref.dim == 384
    # the transformers tokenizer stays available (chunking, explanations) and loads on first use
    assert lean.tokenizer.convert_ids_to_tokens(lean.tokenize(["hello"])[0]) == ["[CLS]", "hello", "[SEP]"]


@pytest.mark.slow
def test_dense_encoder_lean_bf16_matches_transformers_bf16(monkeypatch):
    """Queries encoded by the lean path match an index built through transformers in bf16 too."""
    from workbench.encoders.dense import DenseEncoder

    path = _path("all-MiniLM-L6-v2")
    texts = _real_texts()[:6] + UNICODE[:4]  # bf16 is emulated (slow) on CPUs without it: a few texts
    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    lean = DenseEncoder(path)
    assert lean.model.embeddings.word_embeddings.weight.dtype.is_floating_point  # rows cast on lookup
    monkeypatch.setenv("WB_LEAN", "0")
    ref = DenseEncoder(path)
    a, b = lean.encode(texts).dense, ref.encode(texts).dense
    assert float((a * b).sum(1).min()) > 0.99999


def test_sparse_encoder_lean_equals_transformers(monkeypatch):
    from workbench.encoders.lean_bert import LeanBertForMaskedLM
    from workbench.encoders.sparse import SparseEncoder

    path = _path("splade-tiny")
    texts = _real_texts() + UNICODE
    lean = SparseEncoder(path)
    assert isinstance(lean.model, LeanBertForMaskedLM)
    monkeypatch.setenv("WB_LEAN", "0")
    ref = SparseEncoder(path)
    assert not isinstance(ref.model, LeanBertForMaskedLM)
    for x, y in zip(lean.encode(texts), ref.encode(texts)):
        assert x.ids.tolist() == y.ids.tolist()
        np.testing.assert_allclose(x.weights, y.weights, atol=1e-5, rtol=0)
    assert lean.term(2003) == ref.term(2003)


# -- fallbacks -----------------------------------------------------------------------------------------


def _copy_model(name: str, dest: Path) -> Path:
    shutil.copytree(_path(name), dest)
    return dest


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_gpt2_is_not_lean(tmp_path):
    from transformers import GPT2Config, GPT2Model

    from workbench.encoders.bert_files import load_lean_tokenizer
    from workbench.encoders.lean_bert import load_lean_bert

    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    GPT2Model(cfg).save_pretrained(tmp_path)
    assert load_lean_bert(tmp_path) is None
    assert load_lean_tokenizer(tmp_path, 32) is None


@pytest.mark.parametrize(
    "change",
    [
        {"position_embedding_type": "relative_key_query"},
        {"hidden_act": "gelu_new"},
        {"model_type": "roberta"},
        {"is_decoder": True},
    ],
)
def test_unsupported_bert_config_falls_back(tmp_path, change):
    from workbench.encoders.lean_bert import load_lean_bert
    from workbench.encoders.sparse import SparseEncoder

    folder = _copy_model("splade-tiny", tmp_path / "m")
    _edit_json(folder / "config.json", **change)
    assert load_lean_bert(folder, mlm=True) is None
    assert load_lean_bert(folder) is None
    if change.get("position_embedding_type"):
        enc = SparseEncoder(str(folder))  # transformers loads it as it always did
        assert type(enc.model).__module__.startswith("transformers")
        assert enc._tokenizer is not None


def test_missing_weights_fall_back(tmp_path):
    from safetensors.torch import load_file, save_file

    from workbench.encoders.lean_bert import load_lean_bert

    folder = _copy_model("splade-tiny", tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    del state["cls.predictions.transform.dense.weight"]
    save_file(state, str(folder / "model.safetensors"))
    assert load_lean_bert(folder, mlm=True) is None
    assert load_lean_bert(folder) is not None  # the encoder alone is complete
    (folder / "model.safetensors").unlink()
    assert load_lean_bert(folder) is None


def test_pytorch_bin_checkpoint_loads(tmp_path):
    import torch
    from safetensors.torch import load_file

    from workbench.encoders.lean_bert import load_lean_bert

    folder = _copy_model("splade-tiny", tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    model = load_lean_bert(folder, mlm=True)
    ref = load_lean_bert(_path("splade-tiny"), mlm=True)
    assert model is not None
    ids = torch.tensor([[101, 7592, 2088, 102]])
    assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)


def test_tokenizer_options_not_replicated_fall_back(tmp_path, monkeypatch):
    from workbench.encoders.bert_files import load_lean_tokenizer

    folder = _copy_model("all-MiniLM-L6-v2", tmp_path / "m")
    assert load_lean_tokenizer(folder, 64) is not None
    tok_json = json.loads((folder / "tokenizer.json").read_text())
    tok_json["added_tokens"].append({"id": 1, "content": "[unused0]", "special": False, "single_word": False,
                                     "lstrip": False, "rstrip": False, "normalized": True})
    (folder / "tokenizer.json").write_text(json.dumps(tok_json))
    assert load_lean_tokenizer(folder, 64) is None
    shutil.copy(_path("all-MiniLM-L6-v2") + "/tokenizer.json", folder / "tokenizer.json")
    _edit_json(folder / "tokenizer_config.json", tokenizer_class="RobertaTokenizer")
    assert load_lean_tokenizer(folder, 64) is None
    (folder / "tokenizer.json").unlink()
    assert load_lean_tokenizer(folder, 64) is None
    monkeypatch.setenv("WB_LEAN", "0")
    assert load_lean_tokenizer(_path("all-MiniLM-L6-v2"), 64) is None


def test_lowercase_setting_comes_from_tokenizer_config(tmp_path):
    """transformers 5 builds the normalizer from tokenizer_config.json, whatever tokenizer.json says."""
    from transformers import AutoTokenizer

    from workbench.encoders.bert_files import load_lean_tokenizer

    folder = _copy_model("all-MiniLM-L6-v2", tmp_path / "m")
    _edit_json(folder / "tokenizer_config.json", do_lower_case=False, strip_accents=False)
    texts = ["Crème Brûlée in PARIS", "ÅNGSTRÖM Straße", "Hello World"]
    ref = AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=32)["input_ids"]
    assert load_lean_tokenizer(folder, 32).ids(texts) == list(ref)


# -- the query path ------------------------------------------------------------------------------------


def _query_in_a_fresh_process(ws, pipeline: str, query: str, report: str, env: dict | None = None,
                              backend: str = "torch") -> dict:
    """Open ``ws`` in a new interpreter (a Searcher with ``backend``), answer one query, and return the
    JSON that the Python expression ``report`` (over ``s``, the searcher, ``r``, the result, and
    ``sys``) prints."""
    code = (
        "import sys, json\n"
        "from workbench.search.searcher import Searcher\n"
        "from pathlib import Path\nfrom workbench.workspace import Workspace\n"
        f"s = Searcher(Workspace(Path({str(ws.root)!r})), backend={backend!r})\n"
        f"r = s.search({query!r}, pipeline={pipeline!r}, k=3)\n"
        f"print(json.dumps({report}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env or dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_query_path_never_imports_transformers(small_workspace):
    ws, _ = small_workspace
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("WB_LEAN", None)
    out = _query_in_a_fresh_process(
        ws, "hybrid+rerank", "group consecutive items by key",
        "{'hits': len(r.results), 'heavy': sorted(m for m in ('transformers', 'lancedb', 'pandas') if m in sys.modules),"
        " 'lean': [type(s.bundle.dense.model).__name__, type(s.bundle.sparse.model).__name__]}", env)
    assert out["hits"] > 0
    assert out["lean"] == ["LeanBertModel", "LeanBertForMaskedLM"]
    assert out["heavy"] == []


def test_query_threads_follow_idle_cores(monkeypatch):
    import torch

    from workbench.encoders import device

    monkeypatch.setenv("WB_QUERY_THREADS", "1")
    assert device.query_threads() == 1
    before = torch.get_num_threads()
    with device.query_thread_limit():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    # blocks that overlap and end out of order (two TUI workers) leave torch's count as it was
    torch.set_num_threads(4)
    try:
        monkeypatch.setenv("WB_QUERY_THREADS", "2")
        first = device.query_thread_limit()
        first.__enter__()
        monkeypatch.setenv("WB_QUERY_THREADS", "1")
        second = device.query_thread_limit()
        second.__enter__()
        assert torch.get_num_threads() == 1
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        assert torch.get_num_threads() == 4  # it was left at 2, the second block's "before"
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("WB_QUERY_THREADS", "0")
    assert device.query_threads() is None
    monkeypatch.delenv("WB_QUERY_THREADS")
    monkeypatch.setattr(device, "runnable_elsewhere", lambda: None)  # the load average alone
    monkeypatch.setattr(device.os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert device.query_threads() == 1  # every core busy: one thread
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert device.query_threads() == len(os.sched_getaffinity(0))
    # the average still counts a process that has just ended; nothing runnable elsewhere now wins
    monkeypatch.setattr(device.os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    monkeypatch.setattr(device, "runnable_elsewhere", lambda: 0)
    assert device.query_threads() == len(os.sched_getaffinity(0))


def test_own_queries_do_not_count_as_busy_cores(monkeypatch):
    """A loop of queries (wb eval) raises the load average itself; that load is not another
    process's, so it must not cut the next queries to one thread."""
    import time

    from workbench.encoders import device

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("WB_QUERY_THREADS", raising=False)
    monkeypatch.setattr(device, "runnable_elsewhere", lambda: None)
    monkeypatch.setattr(device, "_own_load", {"ema": 0.0, "at": 0.0})
    assert device.own_query_load() == 0.0
    now = time.monotonic()
    device._count_own_load(now - 120.0, now, cpus)  # two minutes of queries on every core
    own = device.own_query_load(now)
    assert cpus * 0.85 < own <= cpus  # 1 - e^-2 of the way to the threads used
    assert device.own_query_load(now + 60.0) == pytest.approx(own / math.e)  # then it decays
    monkeypatch.setattr(device.os, "getloadavg", lambda: (own, 0.0, 0.0))  # all of it ours
    monkeypatch.setattr(device.time, "monotonic", lambda: now)
    assert device.query_threads() == cpus
    monkeypatch.setattr(device.os, "getloadavg", lambda: (own + cpus, 0.0, 0.0))  # and as much from others
    assert device.query_threads() == 1
    # a block adds its threads x duration
    monkeypatch.undo()
    monkeypatch.setenv("WB_QUERY_THREADS", "1")
    monkeypatch.setattr(device, "_own_load", {"ema": 0.0, "at": 0.0})
    with device.query_thread_limit():
        time.sleep(0.3)
    assert device.own_query_load() == pytest.approx(1 - math.exp(-0.3 / 60), rel=0.2)


def test_numpy_blas_runs_on_one_thread_inside_query_blocks():
    """numpy's OpenBLAS and torch's OpenMP pools both spin on 2 cores: query blocks keep BLAS on one
    thread and give it back its threads afterwards."""
    from threadpoolctl import threadpool_info

    from workbench.encoders import device

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy has no BLAS threadpoolctl can see"
    with device.query_thread_limit():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
    assert isinstance(device.runnable_elsewhere(), int) and device.runnable_elsewhere() >= 0


def test_bm25_query_never_imports_torch(small_workspace):
    """`wb query -p bm25` answers in a fraction of a second because it loads no model: torch's import
    alone takes ~2 s on the 2-core machine."""
    ws, _ = small_workspace
    out = _query_in_a_fresh_process(ws, "bm25", "itertools.groupby",
                                    "{'hits': len(r.results), 'torch': 'torch' in sys.modules}")
    assert out == {"hits": 3, "torch": False}
