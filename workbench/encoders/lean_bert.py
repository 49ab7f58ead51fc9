"""A lean BERT: the encoder forward and the MLM head in torch without importing ``transformers``.

Importing transformers and its modeling modules costs about 3 s of a cold ``wb query`` (issue #2);
our defaults (all-MiniLM-L6-v2, SPLADE-tiny) are plain BERT checkpoints whose inference forward is
a few dozen lines. ``load_lean_bert`` reads ``config.json`` and the weights (``model.safetensors``,
else ``pytorch_model.bin``) straight into the modules below; ``bert_files.load_lean_tokenizer``
rebuilds the tokenizer ``AutoTokenizer`` would give (transformers 5 ``BertTokenizer``) from
``tokenizer.json`` with the ``tokenizers`` library.

Contract: both return None whenever the folder is not something they reproduce exactly (another
``model_type``, relative position embeddings, another activation, a decoder, sharded or missing
weights, missing keys, added tokens or tokenizer options we do not replicate); callers then load
through transformers as before (``device.load_pretrained``, which refuses a checkpoint missing
weights in one line rather than initialising them at random). Outputs equal transformers' (fp32: within 1e-5, tested in
tests/test_lean_bert.py). Inference only: no dropout, no gradients. ``WB_LEAN=0`` disables it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from workbench.encoders.bert_files import normalise_keys, servable_config


# -- modules ---------------------------------------------------------------------------------------------
# Built straight from the checkpoint's tensors (no random init, no meta device: both cost time and the
# latter imports torch._dynamo). Attribute names follow transformers' BertModel, so ``state_dict()``
# keys are the checkpoint's.


class _Output:
    """What the call sites read: ``.last_hidden_state`` (and ``.logits`` for the MLM head)."""

    __slots__ = ("last_hidden_state", "logits")

    def __init__(self, last_hidden_state, logits=None) -> None:
        self.last_hidden_state = last_hidden_state
        self.logits = logits


class _Missing(KeyError):
    """A tensor the module needs is absent or has the wrong shape."""


class _Tensors:
    """Checkpoint tensors by name, cast to one dtype on the way out; shapes are checked."""

    def __init__(self, tensors: dict, dtype) -> None:
        self.tensors = tensors
        self.dtype = dtype

    def param(self, key: str, shape: tuple[int, ...], cast: bool = True) -> nn.Parameter:
        t = self.tensors.get(key)
        if t is None or tuple(t.shape) != tuple(shape) or not t.is_floating_point():
            raise _Missing(key)
        if cast and self.dtype is not None:
            t = t.to(self.dtype)
        return nn.Parameter(t, requires_grad=False)


class _Linear(nn.Module):
    def __init__(self, w: _Tensors, prefix: str, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = w.param(prefix + "weight", (d_out, d_in))
        self.bias = w.param(prefix + "bias", (d_out,))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class _LayerNorm(nn.Module):
    def __init__(self, w: _Tensors, prefix: str, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = w.param(prefix + "weight", (dim,))
        self.bias = w.param(prefix + "bias", (dim,))
        self.eps = float(eps)

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class _Embedding(nn.Module):
    def __init__(self, w: _Tensors, prefix: str, n: int, dim: int, cast: bool = True) -> None:
        super().__init__()
        self.weight = w.param(prefix + "weight", (n, dim), cast)


class _Embeddings(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str, cast_words: bool = True) -> None:
        super().__init__()
        h = cfg.hidden_size
        # Without an MLM head the word matrix is only looked up: it stays in the checkpoint's dtype (and
        # memory-mapped, untouched but for the rows used) and the rows are cast, which gives the same bits
        # as casting the matrix and costs nothing at load.
        self.word_embeddings = _Embedding(w, p + "word_embeddings.", cfg.vocab_size, h, cast_words)
        self.dtype = w.dtype
        self.position_embeddings = _Embedding(w, p + "position_embeddings.", cfg.max_position_embeddings, h)
        self.token_type_embeddings = _Embedding(w, p + "token_type_embeddings.", cfg.type_vocab_size, h)
        self.LayerNorm = _LayerNorm(w, p + "LayerNorm.", h, cfg.layer_norm_eps)

    def forward(self, input_ids):
        length = input_ids.shape[1]
        # same order of additions as transformers: word + token type (all 0), then + position
        words = F.embedding(input_ids, self.word_embeddings.weight)
        if self.dtype is not None:
            words = words.to(self.dtype)
        x = words + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings.weight[:length]
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.query = _Linear(w, p + "query.", h, h)
        self.key = _Linear(w, p + "key.", h, h)
        self.value = _Linear(w, p + "value.", h, h)


class _DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BertSelfOutput and BertOutput."""

    def __init__(self, cfg, w: _Tensors, p: str, d_in: int) -> None:
        super().__init__()
        self.dense = _Linear(w, p + "dense.", d_in, cfg.hidden_size)
        self.LayerNorm = _LayerNorm(w, p + "LayerNorm.", cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg, w, p + "self.")
        self.output = _DenseNorm(cfg, w, p + "output.", cfg.hidden_size)


class _Intermediate(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        self.dense = _Linear(w, p + "dense.", cfg.hidden_size, cfg.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.attention = _Attention(cfg, w, p + "attention.")
        self.intermediate = _Intermediate(cfg, w, p + "intermediate.")
        self.output = _DenseNorm(cfg, w, p + "output.", cfg.intermediate_size)

    def forward(self, x, mask):
        b, n, _ = x.shape
        att = self.attention.self
        shape = (b, n, self.heads, self.head_dim)
        q = att.query(x).view(shape).transpose(1, 2)
        k = att.key(x).view(shape).transpose(1, 2)
        v = att.value(x).view(shape).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.head_dim**-0.5)
        a = a.transpose(1, 2).reshape(b, n, -1)
        x = self.attention.output(a, x)
        h = F.gelu(self.intermediate.dense(x))  # BERT's "gelu" is the exact (erf) GELU
        return self.output(h, x)


class _Encoder(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg, w, f"{p}layer.{i}.") for i in range(cfg.num_hidden_layers))


class LeanBertModel(nn.Module):
    """BERT's encoder: ``model(input_ids=..., attention_mask=...).last_hidden_state`` (no pooler)."""

    def __init__(self, cfg, w: _Tensors, prefix: str = "", cast_words: bool = False) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = _Embeddings(cfg, w, prefix + "embeddings.", cast_words)
        self.encoder = _Encoder(cfg, w, prefix + "encoder.")

    def forward(self, input_ids, attention_mask=None, **_ignored) -> _Output:
        x = self.embeddings(input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            n = input_ids.shape[1]
            # [B, 1, Q, K] boolean, True = attend (what transformers hands SDPA)
            mask = attention_mask.bool()[:, None, None, :].expand(-1, 1, n, -1)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return _Output(x)


class _Transform(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str) -> None:
        super().__init__()
        self.dense = _Linear(w, p + "dense.", cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = _LayerNorm(w, p + "LayerNorm.", cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class _Decoder(nn.Module):
    """The vocabulary projection; its weight is the word-embedding matrix (tied) and its bias the head's."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class _Predictions(nn.Module):
    def __init__(self, cfg, w: _Tensors, p: str, word_embeddings: nn.Parameter) -> None:
        super().__init__()
        self.transform = _Transform(cfg, w, p + "transform.")
        bias_key = p + "bias" if p + "bias" in w.tensors else p + "decoder.bias"
        self.bias = w.param(bias_key, (cfg.vocab_size,))
        self.decoder = _Decoder(word_embeddings, self.bias)


class _MLMHead(nn.Module):
    def __init__(self, cfg, w: _Tensors, word_embeddings: nn.Parameter) -> None:
        super().__init__()
        self.predictions = _Predictions(cfg, w, "cls.predictions.", word_embeddings)


class LeanBertForMaskedLM(nn.Module):
    """``bert`` + ``cls.predictions`` (decoder tied to the word embeddings), as BertForMaskedLM."""

    def __init__(self, cfg, w: _Tensors) -> None:
        super().__init__()
        self.config = cfg
        self.bert = LeanBertModel(cfg, w, "bert.", cast_words=True)  # the matrix is also the decoder
        self.cls = _MLMHead(cfg, w, self.bert.embeddings.word_embeddings.weight)

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def forward(self, input_ids, attention_mask=None, **_ignored) -> _Output:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        p = self.cls.predictions
        return _Output(hidden, p.decoder(p.transform(hidden)))


# -- loading -------------------------------------------------------------------------------------------


def _read_weights(folder: Path) -> dict | None:
    """Every tensor of a single-file checkpoint (safetensors preferred, as transformers does)."""
    try:
        if (folder / "model.safetensors").is_file():
            from safetensors.torch import load_file

            return load_file(str(folder / "model.safetensors"))
        if (folder / "pytorch_model.bin").is_file():
            state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
            return state if isinstance(state, dict) else None
    except Exception:  # unreadable or unsafe: transformers gives the proper error
        return None
    return None


def load_lean_bert(path: str | os.PathLike, *, mlm: bool = False, dtype=None, device=None):
    """A ``LeanBertModel`` (or ``LeanBertForMaskedLM`` with ``mlm``) in eval mode, or None.

    ``dtype`` None keeps the checkpoint's dtype (transformers 5.x without ``dtype`` may not: it loaded
    a bf16 checkpoint in float32), so the encoders pass theirs.
    """
    folder = Path(path)
    cfg = servable_config(folder, mlm)
    if cfg is None:
        return None
    state = _read_weights(folder)
    if state is None:
        return None
    tensors = _Tensors(normalise_keys(state, mlm), dtype)
    try:
        model = LeanBertForMaskedLM(cfg, tensors) if mlm else LeanBertModel(cfg, tensors)
    except _Missing:
        return None
    model.eval()
    if device is not None and torch.device(device).type != "cpu":
        model.to(device)
    return model
