"""Second-stage rerankers: a cross-encoder and a pointwise yes/no LLM judge.

Contract shared by both (the ``Reranker`` protocol):

* ``score(query, passages)`` returns a float32 array with one score per passage, in input
  order; higher means more relevant. Scores are raw log-odds-like values (not probabilities):
  only their order and differences mean something, and only within one model.
* ``score_pairs(pairs)`` scores many ``(query, passage)`` pairs at once (several queries mixed,
  as an evaluation run needs); ``score(q, ps) == score_pairs([(q, p) for p in ps])``.
* Batching never changes a score beyond float noise: inputs are tokenized once, sorted by
  length and packed into token-budgeted batches (``length_sorted_batches``), so padding is
  almost nil, and in float32 every pair's score equals that pair's score run alone; in bf16 (the
  default on CPUs with native bf16, and on GPUs) batch-mates move a score by rounding, measured up
  to ~1e-2 for a MiniLM cross-encoder and ~0.04 for the SmolLM2 yes/no reranker.
* Empty input gives an empty array. Loading problems raise ``ModelError`` with one line.

Which model runs is decided by ``load_reranker`` from a ``RoleModel`` (see its docstring).
Nothing heavy is imported at module import: torch and transformers load inside constructors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from workbench.encoders.batching import length_sorted_batches, pad_batch
from workbench.encoders.device import load_pretrained, pick_device, pick_dtype, quiet_transformers, require_tokenizer
from workbench.encoders.layout import position_limit
from workbench.encoders.yesno_prompt import (  # shared with trainers/llm_reranker.py
    DEFAULT_ANSWERS,
    DEFAULT_INSTRUCTION,
    DEFAULT_MAX_LENGTH,
    DEFAULT_QUESTION,
    YesNoPrompt,
    answer_logits,
    answer_rows,
    last_hidden,
    read_llm_reranker_meta,
)
from workbench.errors import ModelError, first_line

if TYPE_CHECKING:
    from workbench.models.registry import RoleModel

@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant. See the module docstring."""

    name: str

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """float32 [len(passages)]: one score per passage, in input order."""
        ...

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)]: one score per pair, in input order (queries may differ)."""
        ...


# padded tokens a pair-scoring forward pass holds by default: large batches keep a GPU busy; on CPU
# smaller ones run faster (cache-resident activations): MiniLM cross-encoder, bf16, 400 SciFact
# pairs of ~250 tokens on 2 cores: 78 pairs/s at 16384, 101 at 8192, 107 at 4096 (ST bf16: 95)
GPU_BATCH_TOKENS = 16384
CPU_BATCH_TOKENS = 4096


def default_batch_tokens(device) -> int:
    """``GPU_BATCH_TOKENS`` on an accelerator, ``CPU_BATCH_TOKENS`` on CPU."""
    return CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS


def _batches(lengths: list[int], *, max_tokens: int, max_batch: int, device) -> list[list[int]]:
    """``length_sorted_batches``, with each batch split further on CPU where padding costs more
    than another forward pass.

    On a GPU one large batch is what keeps the device busy, so batches are used as they come.
    On CPU a forward pass costs its padded tokens plus a fixed overhead per pass (every op's
    thread barrier and kernel setup; on a loaded 2-core machine one op can wait a whole time
    slice): measured with MiniLM in bf16, a 1-row batch of 126 tokens took 0.55 s next to 2.6 s for
    26 rows of 256. So each length-sorted batch is cut into the contiguous parts that minimise
    ``sum(width x rows + _CPU_BATCH_OVERHEAD)`` (exact dynamic programme): a part is split off
    only when the padding it saves exceeds one pass's overhead, and no tiny trailing batch is
    made. Which rows share a pass never changes a float32 score (bf16: rounding, see the module docstring).
    """
    out: list[list[int]] = []
    for batch in length_sorted_batches(lengths, max_tokens=max_tokens, max_batch=max_batch):
        if device.type != "cpu" or len(batch) < 2:
            out.append(batch)
            continue
        n = len(batch)
        widths = [lengths[i] for i in batch]  # descending: a part's width is its first row's
        best = [0.0] + [float("inf")] * n  # best[j]: the cheapest split of batch[:j]
        start = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j):
                cost = best[i] + widths[i] * (j - i) + _CPU_BATCH_OVERHEAD
                if cost < best[j]:
                    best[j], start[j] = cost, i
        parts: list[list[int]] = []
        j = n
        while j > 0:
            parts.append(batch[start[j]:j])
            j = start[j]
        out.extend(reversed(parts))
    return out


_CPU_BATCH_OVERHEAD = 1024  # padded tokens one extra forward pass is worth on CPU (see _batches)


def cap_queries(tokenizer, queries: list[str], max_length: int) -> dict[str, str]:
    """query -> query cut to at most ``max_length // 2`` tokens (only the long ones change)."""
    unique = list(dict.fromkeys(queries))
    cap = max(1, max_length // 2)
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(unique, add_special_tokens=False, return_offsets_mapping=fast)
    out = {}
    for k, q in enumerate(unique):
        ids = enc["input_ids"][k]
        if len(ids) <= cap:
            out[q] = q
        elif fast:
            out[q] = q[: enc["offset_mapping"][k][cap - 1][1]]
        else:
            out[q] = q[: max(1, len(q) * cap // len(ids))]
    return out


def tokenize_pairs(tokenizer, pairs: list[tuple[str, str]], max_length: int,
                   uses_token_types: bool) -> tuple[list[list[int]], list[list[int]] | None]:
    """A cross-encoder's token ids (and token type ids) per ``(query, passage)`` pair: the query cut
    to half of ``max_length`` tokens, then the passage truncated (``only_second``). The trainer
    (``trainers.reranker``) tokenizes with this too, so training and serving see the same inputs."""
    capped = cap_queries(tokenizer, [q for q, _ in pairs], max_length)
    enc = tokenizer(
        [capped[q] for q, _ in pairs],
        [p for _, p in pairs],
        truncation="only_second",
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=uses_token_types,
    )
    types = enc["token_type_ids"] if uses_token_types else None
    return enc["input_ids"], types


class CrossEncoderReranker:
    """A ``*ForSequenceClassification`` cross-encoder (BERT, RoBERTa, ModernBERT, Qwen... heads).

    Each pair is tokenized as ``(query, passage)`` with ``truncation="only_second"`` to
    ``max_length`` tokens (capped by the model's position embeddings). ``max_length`` is 512
    whatever length a ``wb train reranker`` run trained at (256 by default): a reranker sees whole
    abstracts, and every cross-encoder figure in the README was measured served this way (a model
    trained at 512 was no better there). The layer-wise and LLM rerankers, whose latency is the
    point of their cutoff tables, serve at their trained ``max_length``. A query longer than half
    of ``max_length`` tokens is first cut to half, so the passage always keeps some room and the
    tokenizer never fails on "only_second". Score: the single logit when ``num_labels == 1``;
    ``logit[1] - logit[0]`` (the log-odds of the positive class, equal to the log-softmax
    difference) when ``num_labels == 2``; other heads are refused with ``ModelError``.

    The transformer runs in ``pick_dtype`` (bf16 on CUDA and on CPUs with native bf16,
    ``WB_DTYPE`` overrides); the classification head (``classifier``/``score`` module) runs in
    float32 so scores do not collapse onto the coarse bf16 grid and tie.
    ``batch_tokens`` bounds the padded size (rows x width) of one forward pass (None:
    :func:`default_batch_tokens` for the device).
    """

    def __init__(
        self,
        path: str,
        device: str | None = None,
        max_length: int = 512,
        batch_tokens: int | None = None,
        max_batch: int = 256,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        self.name = str(path)
        self.path = str(path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        require_tokenizer(path, "cross-encoder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line
            raise ModelError(f"cannot load cross-encoder '{path}': {first_line(exc)}") from exc
        model = load_pretrained(AutoModelForSequenceClassification, path, "cross-encoder", dtype=self.dtype)
        num_labels = int(model.config.num_labels)
        if num_labels not in (1, 2):
            raise ModelError(
                f"cannot use '{path}' as a reranker: its head has {num_labels} labels (need 1 or 2)"
            )
        self.num_labels = num_labels
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        if self.dtype != torch.float32:
            _float32_head(model)
        self.model = model.to(self.device).eval()
        self.max_length = int(min(max_length, position_limit(model.config, max_length)))
        self.batch_tokens = int(batch_tokens) if batch_tokens else default_batch_tokens(self.device)
        self.max_batch = int(max_batch)
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names

    # -- tokenization -------------------------------------------------------------------
    def tokenize(self, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids (and token type ids when the model uses them) per pair, truncated."""
        return tokenize_pairs(self.tokenizer, pairs, self.max_length, self.uses_token_types)

    # -- scoring ------------------------------------------------------------------------
    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """float32 [len(passages)], input order; see the class docstring for the score."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)], input order."""

        def forward(inputs):
            logits = self.model(**inputs).logits.float()
            return logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]

        return score_pair_batches(self, pairs, forward)


def score_pair_batches(reranker, pairs: list[tuple[str, str]], forward) -> np.ndarray:
    """float32 [len(pairs)] in input order: ``reranker.tokenize(pairs)`` -> ``(ids, token types)``,
    length-sorted padded batches (``reranker.batch_tokens / max_batch / pad_id / device``), and
    ``forward(inputs) -> [rows]`` tensor of scores for each batch (under ``inference_mode``)."""
    import torch

    out = np.zeros(len(pairs), dtype=np.float32)
    if not pairs:
        return out
    ids, types = reranker.tokenize(pairs)
    lengths = [len(x) for x in ids]
    device = reranker.device
    with torch.inference_mode():
        for rows in _batches(lengths, max_tokens=reranker.batch_tokens, max_batch=reranker.max_batch, device=device):
            input_ids, mask, token_types = pad_batch(ids, rows, reranker.pad_id, types)
            inputs = {"input_ids": torch.from_numpy(input_ids).to(device),
                      "attention_mask": torch.from_numpy(mask).to(device)}
            if token_types is not None:
                inputs["token_type_ids"] = torch.from_numpy(token_types).to(device)
            out[rows] = forward(inputs).float().cpu().numpy()
    return out


def _float32_head(model) -> None:
    """Run the classification head in float32 (inputs cast up by a pre-hook)."""
    import torch

    head = None
    for name in ("classifier", "score"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            head = module
            break
    if head is None:
        return
    head.float()

    def _upcast(_module, args, kwargs):
        args = tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
        kwargs = {
            k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()
        }
        return args, kwargs

    head.register_forward_pre_hook(_upcast, with_kwargs=True)


class LLMYesNoReranker:
    """A causal LM asked, for each pair, whether the passage answers the query (pointwise).

    Prompt: with the tokenizer's chat template, a system turn holding ``instruction`` (folded
    into the user turn when the template refuses a system role) and the user turn
    ``"Query: {q}\\nPassage: {p}\\n{question}"``, rendered with ``add_generation_prompt=True``
    so the prompt ends where the assistant's answer starts. Without a chat template:
    ``"{instruction}\\nQuery: {q}\\nPassage: {p}\\n{question}\\nAnswer:"``. Query and passage
    are stripped of surrounding whitespace. ``render(q, p)`` returns the exact prompt text that
    is tokenized (before truncation).

    Score: ``logit(yes) - logit(no)`` at the prompt's last position, i.e. the next-token
    log-odds of the positive against the negative answer word (``answers``). Token choice:
    when the prompt ends in whitespace (chat templates end in ``"...assistant\\n"``) the bare
    words are tried first, else the space-prefixed ones (what follows ``"Answer:"``); the first
    variant that is a single token for both words is used (``answer_tokens`` holds the ids).
    The default words are ``"Yes"``/``"No"`` (as FlagEmbedding's LLM rerankers use): SmolLM2's
    own next-token choice after this prompt is "No"/"Yes", capitalised, and on easy pairs the
    lowercase "yes"/"no" logits ordered relevant/irrelevant passages worse. For SmolLM2 the ids
    are "Yes"=10539, "No"=5230.

    Truncation: prompts are cut to ``max_length`` tokens by shortening the passage only (at a
    token boundary, then re-rendered and re-tokenized, so the ids are exactly those of the
    rendered prompt). The query is shortened only if the passage is gone and it is still too
    long; the instruction, question and answer cue are never cut (a prompt whose fixed part
    alone exceeds ``max_length`` is kept whole).

    Batching: length-sorted, right-padded; the last real position of each row is gathered, so
    padding cannot reach it (causal attention, positions unchanged). Only the two answer rows
    of the output embedding are applied, in float32, to that one hidden state per pair (no
    full-vocabulary projection); ``final_logit_softcapping``/``logit_scale`` configs are honoured.
    (Layer-wise early exit is the cross-encoder's: ``encoders/layerwise.py``.)

    The prompt and the score are :mod:`workbench.encoders.yesno_prompt` (``YesNoPrompt``,
    ``last_hidden``, ``answer_logits``), the code the trainer (``wb train llm-reranker``) uses.
    ``instruction``/``question``/``answers``/``max_length`` left as None come from the folder's
    ``wb_model.json`` when a trained run wrote one (so serving prompts equal training prompts),
    else from the ``DEFAULT_*`` values; values given here win.
    """

    def __init__(
        self,
        path: str,
        device: str | None = None,
        max_length: int | None = None,
        instruction: str | None = None,
        question: str | None = None,
        answers: tuple[str, str] | None = None,
        batch_tokens: int = 8192,
        max_batch: int = 64,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        self.name = str(path)
        self.path = str(path)
        saved = read_llm_reranker_meta(path)  # {} unless a `wb train llm-reranker` folder
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        require_tokenizer(path, "LLM reranker")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line
            raise ModelError(f"cannot load LLM reranker '{path}': {first_line(exc)}") from exc
        model = load_pretrained(AutoModelForCausalLM, path, "LLM reranker", dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.batch_tokens = int(batch_tokens)
        self.max_batch = int(max_batch)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.pad_id = int(pad or 0)

        self.prompt = YesNoPrompt(
            self.tokenizer,
            instruction=instruction if instruction is not None else saved.get("instruction", DEFAULT_INSTRUCTION),
            question=question if question is not None else saved.get("question", DEFAULT_QUESTION),
            answers=tuple(answers if answers is not None else saved.get("answers", DEFAULT_ANSWERS)),
            max_length=int(max_length if max_length is not None else saved.get("max_length", DEFAULT_MAX_LENGTH)),
            name=self.path,
        )
        self.instruction, self.question, self.answers = (
            self.prompt.instruction, self.prompt.question, self.prompt.answers
        )
        self._chat = self.prompt.chat
        self._pieces = self.prompt.pieces
        self.answer_tokens = self.prompt.answer_tokens
        try:
            weight, bias = answer_rows(self.model, self.answer_tokens)  # the trainer's rows, without gradient here
        except ModelError:
            raise ModelError(f"cannot use '{path}' as an LLM reranker: it has no output embedding") from None
        self._answer_weight = weight.detach().float()
        self._answer_bias = bias.detach().float() if bias is not None else None
        config = self.model.config
        self._softcap = getattr(config, "final_logit_softcapping", None)
        self._logit_scale = getattr(config, "logit_scale", None)

    # -- prompt (workbench.encoders.yesno_prompt.YesNoPrompt) ----------------------------
    @property
    def max_length(self) -> int:
        return self.prompt.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.prompt.max_length = int(value)

    def render(self, query: str, passage: str) -> str:
        """The prompt text for one pair (before truncation)."""
        return self.prompt.render(query, passage)

    def tokenize(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        """Token ids of each pair's prompt, cut to ``max_length`` as the class docstring says."""
        return self.prompt.tokenize(pairs)

    # -- scoring ------------------------------------------------------------------------
    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """float32 [len(passages)], input order: logit(yes) - logit(no) per passage."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)], input order."""
        import torch

        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        ids = self.tokenize(pairs)
        lengths = [len(x) for x in ids]
        with torch.inference_mode():
            batches = _batches(lengths, max_tokens=self.batch_tokens, max_batch=self.max_batch, device=self.device)
            for rows in batches:
                input_ids, mask, _ = pad_batch(ids, rows, self.pad_id)
                last = torch.as_tensor([lengths[i] - 1 for i in rows], device=self.device)
                hidden = self._last_hidden(
                    torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device), last
                )
                logits = self._answer_logits(hidden)
                out[rows] = (logits[:, 0] - logits[:, 1]).cpu().numpy()
        return out

    def _last_hidden(self, input_ids, mask, last):
        """[B, H] final-norm hidden state at each row's last real position."""
        return last_hidden(self.model, input_ids, mask, last)

    def _answer_logits(self, hidden):
        """[B, 2] float32 next-token logits of (yes, no) from [B, H] final hidden states."""
        return answer_logits(hidden, self._answer_weight, self._answer_bias, self._logit_scale, self._softcap)


def load_reranker(role: RoleModel, device: str | None = None) -> Reranker:
    """The reranker for a resolved ``reranker`` role.

    * ``role.name == "llm"`` -> ``LLMYesNoReranker(role.path)`` (SmolLM2-135M-Instruct);
    * a folder whose config lists a ``*ForSequenceClassification`` architecture ->
      ``CrossEncoderReranker``;
    * a causal-LM folder (``*ForCausalLM``) -> ``LLMYesNoReranker``;
    * a folder whose ``wb_model.json`` kind is ``layerwise-reranker`` (``wb train layerwise``) ->
      ``LayerwiseReranker`` at its default cutoff, or at layer L for ``FOLDER@L``;
    * a Hugging Face id is judged by its config (from the local HF cache or the hub);
    * anything else (no path, e.g. ``maxsim``, which the searcher handles itself; an unknown
      architecture) -> ``ModelError``.
    """
    from pathlib import Path

    from workbench.encoders.layout import read_layout
    from workbench.models.registry import LLM_RERANKER

    if role.path is None:
        raise ModelError(f"reranker '{role.name}' has no model to load here")
    path = str(role.path)
    if role.name == LLM_RERANKER:
        return LLMYesNoReranker(path, device=device)
    from workbench.encoders.layerwise import LayerwiseReranker, is_layerwise, split_cutoff

    folder, cutoff = split_cutoff(path)  # ".../model@L": a layer-wise run served at layer L
    if is_layerwise(folder):
        return LayerwiseReranker(folder, device=device, cutoff=cutoff)
    if cutoff is not None:
        raise ModelError(f"'{role.name}': @{cutoff} (a cutoff layer) needs a layer-wise reranker (`wb train layerwise`)")
    if Path(path).is_dir():
        layout = read_layout(path)
        archs = layout.architectures
        kind = layout.kind
    else:
        archs = _hub_architectures(path)
        kind = ""
    arch_text = " ".join(archs)
    if "ForSequenceClassification" in arch_text:
        return CrossEncoderReranker(path, device=device)
    if kind == "causal-lm" or "ForCausalLM" in arch_text:
        return LLMYesNoReranker(path, device=device)
    shown = ", ".join(archs) if archs else "no architecture in config.json"
    raise ModelError(
        f"cannot use '{role.name}' as a reranker ({shown}): need a *ForSequenceClassification "
        "cross-encoder or a *ForCausalLM model"
    )


def _hub_architectures(name: str) -> tuple[str, ...]:
    try:
        from transformers import AutoConfig

        quiet_transformers()
        config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load reranker '{name}': {first_line(exc)}") from exc
    return tuple(getattr(config, "architectures", None) or ())


__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_QUESTION",
    "DEFAULT_ANSWERS",
    "Reranker",
    "CrossEncoderReranker",
    "LLMYesNoReranker",
    "load_reranker",
]
