"""A model folder whose weights file lacks tensors is refused in one line, by every loader that
serves it (dense, sparse, cross-encoder, and the lean/numpy fast paths that hand such a folder on to
transformers), instead of being served with those tensors initialised at random. Tensors that are
legitimately absent (BERT's pooler, a decoder tied to the word embeddings, buffers) are not missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import require_models
from workbench.errors import ModelError


def _drop(folder: Path, dest: Path, drop) -> Path:
    """A copy of ``folder`` at ``dest`` whose model.safetensors lacks the tensors ``drop(key)`` picks."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, dest)
    state = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in state.items() if not drop(k)}
    assert len(kept) < len(state)
    save_file(kept, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random BERTs (a BertModel, a BertForMaskedLM, a cross-encoder), whole."""
    require_models()
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tiny_models import tiny_bert
    from workbench.models.cache import resolve_model_path

    base = tmp_path_factory.mktemp("tiny-weights")
    dense = tiny_bert(base / "dense", layers=2)
    mlm = tiny_bert(base / "mlm", layers=2, masked_lm=True)
    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(base / "ce")
    tok.save_pretrained(base / "ce")
    return {"base": base, "dense": dense, "mlm": mlm, "ce": base / "ce"}


def test_whole_tiny_models_load(tiny):
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.rerankers import CrossEncoderReranker
    from workbench.encoders.sparse import SparseEncoder

    assert DenseEncoder(str(tiny["dense"]), device="cpu").encode(["a cat"]).dense.shape == (1, 32)
    assert SparseEncoder(str(tiny["mlm"]), device="cpu").encode(["a cat"])[0].ids.size > 0
    assert CrossEncoderReranker(str(tiny["ce"]), device="cpu").score("cat", ["a cat", "a dog"]).shape == (2,)


def test_legitimately_absent_weights_are_not_missing(tiny, monkeypatch):
    """No pooler (wb never runs it), through transformers (WB_LEAN=0) as through lean BERT."""
    from workbench.encoders.dense import DenseEncoder

    folder = _drop(tiny["dense"], tiny["base"] / "nopooler", lambda k: k.startswith("pooler."))
    monkeypatch.setenv("WB_LEAN", "0")
    assert DenseEncoder(str(folder), device="cpu").encode(["a cat"]).dense.shape == (1, 32)


@pytest.mark.parametrize("lean", ["1", "0"])
def test_a_dense_folder_missing_a_layer_is_refused(tiny, tmp_path, monkeypatch, lean):
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder

    folder = _drop(tiny["dense"], tmp_path / "partial", lambda k: k.startswith("encoder.layer.1."))
    monkeypatch.setenv("WB_LEAN", lean)
    assert NumpyDenseEncoder.load(str(folder)) is None  # the numpy query path hands it on ...
    with pytest.raises(ModelError) as err:  # ... to the torch encoder, which refuses it
        DenseEncoder(str(folder), device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot load dense model '{folder}': missing weights: encoder.layer.1.")
    assert "(16 in all)" in msg


def test_a_sparse_folder_without_its_mlm_head_is_refused(tiny, tmp_path):
    from workbench.encoders.numpy_bert import NumpySparseEncoder
    from workbench.encoders.sparse import SparseEncoder

    folder = _drop(tiny["mlm"], tmp_path / "nohead", lambda k: k.startswith("cls."))
    assert NumpySparseEncoder.load(str(folder)) is None
    with pytest.raises(ModelError, match=r"cannot load sparse model '.*nohead': missing weights: cls\.predictions\."):
        SparseEncoder(str(folder), device="cpu")


def test_a_cross_encoder_without_its_head_is_refused(tiny, tmp_path):
    from workbench.encoders.rerankers import CrossEncoderReranker

    folder = _drop(tiny["ce"], tmp_path / "nohead", lambda k: k.startswith("classifier."))
    with pytest.raises(ModelError, match=r"cannot load cross-encoder '.*nohead': missing weights: "
                                         r"classifier\.bias, classifier\.weight; the checkpoint is incomplete"):
        CrossEncoderReranker(str(folder), device="cpu")
