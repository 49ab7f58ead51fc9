"""What a BERT checkpoint folder holds, read without torch or transformers: its config, its weight
names, its tokenizer.

Shared by the two inference paths that skip transformers: ``lean_bert`` (a torch forward) and
``numpy_bert`` (a numpy forward for one-shot queries, which also skips importing torch). Contract:
``lean_config`` and ``load_lean_tokenizer`` return None whenever the folder is not something these
paths reproduce exactly; callers then load through transformers. ``WB_LEAN=0`` disables both paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from workbench.encoders.layout import read_json

_INT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings", "type_vocab_size")


def lean_enabled() -> bool:
    """False when ``WB_LEAN`` is 0/false/no/off (load through transformers, for A/B comparisons)."""
    return os.environ.get("WB_LEAN", "1").strip().lower() not in ("0", "false", "no", "off")


def lean_config(path: str | os.PathLike) -> SimpleNamespace | None:
    """The config of a BERT checkpoint this module runs exactly, else None."""
    raw = read_json(Path(path) / "config.json")
    if raw.get("model_type") != "bert":
        return None
    if (raw.get("position_embedding_type") or "absolute") != "absolute":
        return None
    if raw.get("hidden_act", "gelu") != "gelu":
        return None
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        return None
    cfg = {"type_vocab_size": 2, "layer_norm_eps": 1e-12, "tie_word_embeddings": True, **raw}
    if not all(isinstance(cfg.get(k), int) and cfg[k] > 0 for k in _INT_FIELDS):
        return None
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        return None
    return SimpleNamespace(**cfg)


def servable_config(path: str | os.PathLike, mlm: bool) -> SimpleNamespace | None:
    """The config of a folder the lean paths run (``mlm``: as a masked LM, whose decoder must be
    tied to the word embeddings), or None (also when ``WB_LEAN`` turns them off)."""
    if not lean_enabled():
        return None
    cfg = lean_config(path)
    if cfg is None or (mlm and not cfg.tie_word_embeddings):
        return None
    return cfg


def _fix_key(key: str) -> str:
    # old TF-era checkpoints name LayerNorm parameters gamma/beta (transformers renames them too)
    if key.endswith("LayerNorm.gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[: -len("beta")] + "bias"
    return key


def normalise_keys(state: dict, mlm: bool) -> dict:
    """Keys as the lean module names them: encoder under ``bert.`` for the MLM model, bare otherwise."""
    state = {_fix_key(k): v for k, v in state.items()}
    prefixed = any(k.startswith("bert.") for k in state)
    out = {}
    for k, v in state.items():
        if k.startswith("cls."):
            out[k] = v
        elif prefixed:
            if k.startswith("bert."):
                out[k if mlm else k[len("bert."):]] = v
        else:
            out["bert." + k if mlm else k] = v
    return out


# -- tokenizer -------------------------------------------------------------------------------------------

_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}
# tokenizer_config.json keys that change encoding in ways not replicated here
_UNSUPPORTED_TRUE = ("split_special_tokens", "add_prefix_space", "add_bos_token", "add_eos_token")


def _token_text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


class LeanTokenizer:
    """``ids(texts)`` equals ``AutoTokenizer(path)(texts, truncation=True, max_length=...)["input_ids"]``;
    ``ids(texts, n)`` the same at ``max_length=n`` (a copy truncating there, made once)."""

    def __init__(self, tokenizer, specials: dict[str, str], max_length: int) -> None:
        self._tok = tokenizer
        self.max_length = max_length
        self.pad_token = specials["pad_token"]
        self.pad_token_id = tokenizer.token_to_id(self.pad_token)
        # the ids of the named special tokens ([CLS], [SEP], [PAD], ...), as transformers' all_special_ids
        self.special_ids = {i for i in (tokenizer.token_to_id(t) for t in specials.values()) if i is not None}
        self._at_length = {int(max_length): tokenizer}

    def ids(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        return [e.ids for e in self._truncating(max_length).encode_batch(list(texts), add_special_tokens=True)]

    def _truncating(self, max_length: int | None):
        """The tokenizer that truncates at ``max_length`` (default: the one it was loaded with)."""
        n = int(max_length or self.max_length)
        if n not in self._at_length:
            import copy

            tok = copy.deepcopy(self._tok)
            tok.enable_truncation(n, stride=0, strategy="longest_first", direction=self._tok.truncation["direction"])
            self._at_length[n] = tok
        return self._at_length[n]

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)


def load_lean_tokenizer(path: str | os.PathLike, max_length: int) -> LeanTokenizer | None:
    """The BERT WordPiece tokenizer transformers 5 builds for ``path``, or None if not sure."""
    if not lean_enabled():
        return None
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        return None
    tcfg = read_json(folder / "tokenizer_config.json")
    cls_name = tcfg.get("tokenizer_class")
    if cls_name not in (None, "BertTokenizer", "BertTokenizerFast"):
        return None
    if cls_name is None and read_json(folder / "config.json").get("model_type") != "bert":
        return None
    if any(tcfg.get(k) for k in _UNSUPPORTED_TRUE) or tcfg.get("never_split"):
        return None
    if tcfg.get("do_basic_tokenize") is False:
        return None
    if tcfg.get("additional_special_tokens") or tcfg.get("extra_special_tokens"):
        return None
    side = tcfg.get("truncation_side", "right")
    if side not in ("right", "left"):
        return None
    smap = read_json(folder / "special_tokens_map.json")
    if smap.get("additional_special_tokens"):
        return None
    specials = {}
    for key, default in _SPECIALS.items():
        a, b = _token_text(tcfg.get(key)), _token_text(smap.get(key))
        if (key in tcfg and a is None) or (key in smap and b is None) or (a and b and a != b):
            return None
        specials[key] = a or b or default
    try:
        raw = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = raw.get("model") or {}
    if (model.get("type") != "WordPiece" or model.get("unk_token") != specials["unk_token"]
            or model.get("continuing_subword_prefix", "##") != "##"
            or model.get("max_input_chars_per_word", 100) != 100):
        return None
    named = set(specials.values())
    declared = list(raw.get("added_tokens") or [])
    declared += [dict(v, id=int(k)) for k, v in (tcfg.get("added_tokens_decoder") or {}).items() if isinstance(v, dict)]
    vocab = model.get("vocab") or {}
    for tok in declared:
        if (tok.get("content") not in named or not tok.get("special", False) or tok.get("normalized", False)
                or tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word")
                or vocab.get(tok.get("content")) != tok.get("id")):
            return None
    if any(vocab.get(t) is None for t in named):
        return None

    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors

    try:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:
        return None
    # what transformers 5's BertTokenizer builds around the tokenizer.json vocabulary
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(tcfg.get("tokenize_chinese_chars", True)),
        strip_accents=tcfg.get("strip_accents"),
        lowercase=bool(tcfg.get("do_lower_case", True)),
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = specials["cls_token"], specials["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    for t in named:  # the named special tokens are matched in raw text, as transformers adds them
        if tok.token_to_id(t) is None:
            return None
    missing = [t for t in named if t not in {d.get("content") for d in raw.get("added_tokens") or []}]
    if missing:
        from tokenizers import AddedToken

        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(missing)])
    tok.no_padding()
    tok.enable_truncation(int(max_length), stride=0, strategy="longest_first", direction=side)
    tok.encode_special_tokens = False
    return LeanTokenizer(tok, specials, int(max_length))
