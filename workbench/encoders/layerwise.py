"""Serving a layer-wise cross-encoder with early exit: ``LayerwiseReranker(path, cutoff=L)``.

A layer-wise reranker run (``wb train layerwise``, :mod:`trainers.layerwise`) saves a folder with

* the fine-tuned encoder (Hugging Face layout: config, weights, tokenizer),
* ``layerwise_heads.safetensors``: one head per scored layer ``l``, tensors ``"{l}.weight"``
  ``[1, hidden]`` and ``"{l}.bias"`` ``[1]`` (float32), applied to the ``[CLS]`` state after ``l``
  transformer layers (a full forward's ``hidden_states[l][:, 0]``; ``hidden_states[0]`` is the
  embedding output; :func:`cls_states`);
  a pooled head (trained from a cross-encoder base, whose pooler + classifier it started as) also
  has ``"{l}.pool.weight"`` ``[hidden, hidden]`` and ``"{l}.pool.bias"``, applied first with tanh,
* ``wb_model.json`` ``{"kind": "layerwise-reranker", "layers": [...], "default_cutoff": L,
  "max_length": N, ...}``.

Serving at cutoff ``L`` keeps only the first ``L`` layers of the encoder (the layer list is cut,
so the later layers never run and latency drops with ``L``) and scores each pair with head ``L``:
``score = w_L · h_L[CLS] + b_L`` (pooled: ``w_L · tanh(P_L h_L[CLS] + p_L) + b_L``). The score
therefore equals what a full forward with ``output_hidden_states=True`` gives at layer ``L``
through head ``L`` (tested, for BERT and for ModernBERT, whose final norm follows the last layer
only): the state is read from layer ``L``'s own output, not from the cut encoder's
``last_hidden_state`` (:func:`cls_states`).

Choosing the cutoff: the run's ``default_cutoff`` unless one is given; ``--model
reranker=runs/NAME@L`` (or a folder path ``.../model@L``, also in ``wb.toml``'s
``[models] reranker``) serves at layer ``L``. ``load_reranker`` in
:mod:`workbench.encoders.rerankers` recognises the folder by its ``wb_model.json``.

Same contract as :class:`~workbench.encoders.rerankers.CrossEncoderReranker` (the ``Reranker``
protocol): pairs are tokenized with ``tokenize_pairs`` (as in training), length-sorted and packed
into token-budgeted batches; the encoder runs in ``pick_dtype`` (bf16 on CUDA and bf16 CPUs), the
head in float32.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.encoders.device import load_pretrained, pick_device, pick_dtype, quiet_transformers, require_tokenizer
from workbench.encoders.layout import position_limit
from workbench.encoders.rerankers import default_batch_tokens, score_pair_batches, tokenize_pairs
from workbench.errors import ModelError, first_line

LAYERWISE_KIND = "layerwise-reranker"
HEADS_FILE = "layerwise_heads.safetensors"
META_FILE = "wb_model.json"

# where BERT-like encoders keep their transformer layers (BERT/RoBERTa/ELECTRA, DistilBERT, others)
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "layer")


@dataclass(frozen=True)
class LayerwiseMeta:
    """What ``wb_model.json`` of a layer-wise run says: scored layers, the default cutoff, lengths."""

    path: str
    layers: tuple[int, ...]
    default_cutoff: int
    max_length: int
    num_hidden_layers: int


def split_cutoff(path: str) -> tuple[str, int | None]:
    """``".../model@3"`` -> ``(".../model", 3)`` when the part before ``@`` is a folder; else ``(path, None)``."""
    if Path(path).is_dir():
        return path, None
    match = re.fullmatch(r"(.+)@(\d+)", str(path))
    if match and Path(match.group(1)).is_dir():
        return match.group(1), int(match.group(2))
    return path, None


def is_layerwise(path: str) -> bool:
    """True when ``path`` is a folder whose ``wb_model.json`` says ``kind: layerwise-reranker``."""
    from workbench.encoders.layout import read_json

    return read_json(Path(path) / META_FILE).get("kind") == LAYERWISE_KIND


def read_layerwise_meta(path: str) -> LayerwiseMeta:
    """The folder's ``wb_model.json`` as :class:`LayerwiseMeta` (ModelError when it is not one)."""
    try:
        raw = json.loads((Path(path) / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"'{path}' is not a layer-wise reranker folder (no readable {META_FILE})") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"'{path}' is not a layer-wise reranker folder ({META_FILE} is not a JSON object)")
    if raw.get("kind") != LAYERWISE_KIND or not raw.get("layers"):
        raise ModelError(f"'{path}' is not a layer-wise reranker folder ({META_FILE} kind {raw.get('kind')!r})")
    layers = tuple(sorted(int(x) for x in raw["layers"]))
    return LayerwiseMeta(
        path=str(path),
        layers=layers,
        default_cutoff=int(raw.get("default_cutoff") or layers[-1]),
        max_length=int(raw.get("max_length") or 512),
        num_hidden_layers=int(raw.get("num_hidden_layers") or layers[-1]),
    )


def find_layer_list(encoder):
    """``(parent module, attribute name, ModuleList)`` holding the encoder's transformer layers.

    The list is the ``nn.ModuleList`` at one of the usual places whose length is the config's
    ``num_hidden_layers``; ModelError when there is none (the architecture cannot exit early here).
    """
    import torch

    want = int(getattr(encoder.config, "num_hidden_layers", 0) or 0)
    for dotted in _LAYER_PATHS:
        parent = encoder
        *head, last = dotted.split(".")
        try:
            for part in head:
                parent = getattr(parent, part)
            layers = getattr(parent, last)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == want:
            return parent, last, layers
    raise ModelError(f"cannot find the {want} transformer layers of {type(encoder).__name__} "
                     "to cut them for early exit")


def cls_states(encoder, layer_list, inputs: dict, layers, n_layers: int) -> list:
    """The [CLS] state ``[N, hidden]`` after each of ``layers`` (1-based) transformer layers, in
    ``layers`` order, from one forward of ``encoder`` on ``inputs``: what its full forward gives as
    ``hidden_states[l][:, 0]``, whether or not the layers after ``l`` were cut away.

    For ``l < n_layers`` (the uncut encoder's layer count) that is the output of ``layer_list[l - 1]``
    itself, read by a forward hook: a cut encoder's own ``hidden_states[l]`` would be its
    ``last_hidden_state``, which some encoders pass through a final norm (ModernBERT's
    ``final_norm``) that the full forward applies only after its last layer. For ``l == n_layers``
    it is ``last_hidden_state`` (after that norm, as the full forward gives it). Both the trainer
    (:func:`trainers.layerwise.LayerwiseModel`) and :class:`LayerwiseReranker` score through this,
    so the served score at a cutoff is the trained head's. ModelError when a hooked layer's output
    is not ``[N, tokens, hidden]`` (an encoder that unpads its batch cannot be read this way).
    """
    captured: dict[int, object] = {}
    batch = int(inputs["input_ids"].shape[0])

    def capture(layer: int):
        def hook(module, _args, output):
            states = output[0] if isinstance(output, tuple) else output
            if getattr(states, "ndim", 0) != 3 or int(states.shape[0]) != batch:
                raise ModelError(f"layer {layer} of {type(encoder).__name__} ({type(module).__name__}) returns "
                                 f"states of shape {tuple(getattr(states, 'shape', ()))}, not [batch, tokens, hidden]: "
                                 "it cannot be read for early exit")
            captured[layer] = states[:, 0]
        return hook

    handles = [layer_list[l - 1].register_forward_hook(capture(l)) for l in layers if l < n_layers]
    try:
        output = encoder(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    if n_layers in layers:
        captured[n_layers] = output.last_hidden_state[:, 0]
    return [captured[l] for l in layers]


def truncate_layers(encoder, keep: int):
    """Keep only the first ``keep`` transformer layers of ``encoder`` (in place); return the new list."""
    import torch

    parent, name, layers = find_layer_list(encoder)
    if not 1 <= keep <= len(layers):
        raise ModelError(f"cannot keep {keep} of {len(layers)} layers")
    kept = torch.nn.ModuleList(list(layers)[:keep])
    setattr(parent, name, kept)
    return kept


@dataclass(frozen=True)
class LayerHead:
    """One layer's score head (float32 tensors): ``out_weight · x + out_bias`` on the [CLS] state
    ``x``, or on ``tanh(pool_weight · x + pool_bias)`` when the head is pooled (heads started from a
    cross-encoder's pooler + classifier)."""

    out_weight: object  # torch.Tensor [1, hidden]
    out_bias: object  # torch.Tensor [1]
    pool_weight: object | None = None  # torch.Tensor [hidden, hidden]
    pool_bias: object | None = None  # torch.Tensor [hidden]

    def to(self, device) -> "LayerHead":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return LayerHead(move(self.out_weight), move(self.out_bias), move(self.pool_weight), move(self.pool_bias))

    def __call__(self, states):
        """float32 ``[N]`` scores for ``states [N, hidden]``."""
        import torch

        x = states.float()
        if self.pool_weight is not None:
            x = torch.tanh(torch.nn.functional.linear(x, self.pool_weight, self.pool_bias))
        return torch.nn.functional.linear(x, self.out_weight, self.out_bias)[:, 0]


def load_heads(path: str, layers) -> dict[int, LayerHead]:
    """``{layer: LayerHead}`` from ``layerwise_heads.safetensors``: ``"{l}.weight"`` / ``"{l}.bias"``,
    plus ``"{l}.pool.weight"`` / ``"{l}.pool.bias"`` for a pooled head."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(Path(path) / HEADS_FILE))
    except Exception as exc:  # noqa: BLE001 - a missing or broken file is one line
        raise ModelError(f"cannot read {HEADS_FILE} in '{path}': {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    out = {}
    for layer in layers:
        try:
            pool = (tensors[f"{layer}.pool.weight"].float(), tensors[f"{layer}.pool.bias"].float()) \
                if f"{layer}.pool.weight" in tensors else (None, None)
            out[int(layer)] = LayerHead(tensors[f"{layer}.weight"].float(), tensors[f"{layer}.bias"].float(), *pool)
        except KeyError as exc:
            raise ModelError(f"{HEADS_FILE} in '{path}' has no head for layer {layer}") from exc
    return out


class LayerwiseReranker:
    """A layer-wise cross-encoder served at one cutoff layer (see the module docstring).

    ``cutoff`` None: the run's ``default_cutoff``. It must be one of the scored layers
    (ModelError otherwise). ``layers_run`` is the number of transformer layers each forward runs
    (= ``cutoff``). ``name`` is ``"{path}@{cutoff}"``. ``batch_tokens`` None: the device's default
    (:func:`~workbench.encoders.rerankers.default_batch_tokens`).
    """

    def __init__(
        self,
        path: str,
        device: str | None = None,
        cutoff: int | None = None,
        max_length: int | None = None,
        batch_tokens: int | None = None,
        max_batch: int = 256,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        meta = read_layerwise_meta(path)
        cutoff = meta.default_cutoff if cutoff is None else int(cutoff)
        if cutoff not in meta.layers:
            shown = ", ".join(str(x) for x in meta.layers)
            raise ModelError(f"layer-wise reranker '{path}' has heads at layers {shown}; cutoff {cutoff} is not one of them")
        self.meta = meta
        self.path = str(path)
        self.cutoff = cutoff
        self.name = f"{path}@{cutoff}"
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        require_tokenizer(path, "layer-wise reranker")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line
            raise ModelError(f"cannot load layer-wise reranker '{path}': {first_line(exc)}") from exc
        encoder = load_pretrained(AutoModel, path, "layer-wise reranker", dtype=self.dtype)
        self._n_layers = int(encoder.config.num_hidden_layers)  # the uncut encoder's
        self._layer_list = truncate_layers(encoder, cutoff)
        self.layers_run = len(self._layer_list)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: the head reads the [CLS] state
        self.model = encoder.to(self.device).eval()
        self._head = load_heads(path, [cutoff])[cutoff].to(self.device)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.max_length = int(min(max_length or meta.max_length, position_limit(encoder.config, meta.max_length)))
        self.batch_tokens = int(batch_tokens) if batch_tokens else default_batch_tokens(self.device)
        self.max_batch = int(max_batch)
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names

    def tokenize(self, pairs: list[tuple[str, str]]):
        """Token ids (and token type ids) per pair, exactly as the trainer tokenizes them."""
        return tokenize_pairs(self.tokenizer, pairs, self.max_length, self.uses_token_types)

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """float32 [len(passages)], input order: head ``cutoff`` on the [CLS] state after ``cutoff`` layers."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)], input order."""

        def forward(inputs):
            (states,) = cls_states(self.model, self._layer_list, inputs, [self.cutoff], self._n_layers)
            return self._head(states)

        return score_pair_batches(self, pairs, forward)


__all__ = [
    "HEADS_FILE",
    "LAYERWISE_KIND",
    "LayerHead",
    "LayerwiseMeta",
    "LayerwiseReranker",
    "cls_states",
    "find_layer_list",
    "is_layerwise",
    "load_heads",
    "read_layerwise_meta",
    "split_cutoff",
    "truncate_layers",
]
