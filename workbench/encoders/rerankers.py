"""Second-stage rerankers: a cross-encoder and a pointwise yes/no LLM judge.

Contract shared by both (the ``Reranker`` protocol):

* ``score(query, passages)`` returns a float32 array with one score per passage, in input
  order; higher means more relevant. Scores are raw log-odds-like values (not probabilities):
  only their order and differences mean something, and only within one model.
* ``score_pairs(pairs)`` scores many ``(query, passage)`` pairs at once (several queries mixed,
  as an evaluation run needs); ``score(q, ps) == score_pairs([(q, p) for p in ps])``.
* Batching never changes a score beyond float noise: inputs are tokenized once, sorted by
  length and packed into token-budgeted batches (``length_sorted_batches``), so padding is
  almost nil, and every pair's score equals the score of that pair run alone.
* Empty input gives an empty array. Loading problems raise ``ModelError`` with one line.

Which model runs is decided by ``load_reranker`` from a ``RoleModel`` (see its docstring).
Nothing heavy is imported at module import: torch and transformers load inside constructors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from workbench.encoders.batching import length_sorted_batches
from workbench.encoders.device import pick_device, pick_dtype, quiet_transformers
from workbench.errors import ModelError

if TYPE_CHECKING:
    from workbench.models.registry import RoleModel

DEFAULT_INSTRUCTION = (
    "Judge whether the Passage is relevant to the Query and answers it. "
    "Answer only 'Yes' or 'No'."
)
"""The LLM judge's instruction: the system turn of a chat template (first line of a plain prompt)."""

DEFAULT_QUESTION = "Does the Passage answer the Query? Answer only 'Yes' or 'No'."
"""The closing line of the user turn, right before the answer cue (never truncated)."""

DEFAULT_ANSWERS = ("Yes", "No")
"""The positive and negative answer words (see ``LLMYesNoReranker`` for why capitalised)."""

# Placeholders used to render a chat template once and splice every pair into it.
_Q_SLOT = "\x00wbQUERY\x00"
_P_SLOT = "\x00wbPASSAGE\x00"


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pad_batch(ids: list[list[int]], rows: list[int], pad_id: int, extra: list[list[int]] | None = None):
    """Right-padded int64 arrays for ``rows`` of ``ids`` (and of ``extra``, padded with 0)."""
    width = max(len(ids[i]) for i in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    other = np.zeros((len(rows), width), dtype=np.int64) if extra is not None else None
    for r, i in enumerate(rows):
        n = len(ids[i])
        input_ids[r, :n] = ids[i]
        mask[r, :n] = 1
        if other is not None:
            other[r, :n] = extra[i]  # type: ignore[index]
    return input_ids, mask, other


def _batches(lengths: list[int], *, max_tokens: int, max_batch: int, device) -> list[list[int]]:
    """``length_sorted_batches``, with each batch split further on CPU where padding would grow.

    On a GPU one large batch is what keeps the device busy, so batches are used as they come.
    On CPU a GEMM over ~1k tokens already runs at full speed, so a batch is cut wherever the
    next row would be shorter than ``0.9 x`` the batch width, once the part before the cut holds
    at least ``_CPU_MIN_TOKENS`` padded tokens: padding stays under ~10% without tiny batches.
    """
    out: list[list[int]] = []
    for batch in length_sorted_batches(lengths, max_tokens=max_tokens, max_batch=max_batch):
        if device.type != "cpu":
            out.append(batch)
            continue
        part: list[int] = []
        width = 0
        for i in batch:
            if part and lengths[i] < 0.9 * width and width * len(part) >= _CPU_MIN_TOKENS:
                out.append(part)
                part = []
            if not part:
                width = lengths[i]
            part.append(i)
        out.append(part)
    return out


_CPU_MIN_TOKENS = 1024


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
    ``max_length`` tokens (capped by the model's position embeddings). A query longer than half
    of ``max_length`` tokens is first cut to half, so the passage always keeps some room and the
    tokenizer never fails on "only_second". Score: the single logit when ``num_labels == 1``;
    ``logit[1] - logit[0]`` (the log-odds of the positive class, equal to the log-softmax
    difference) when ``num_labels == 2``; other heads are refused with ``ModelError``.

    The transformer runs in ``pick_dtype`` (bf16 on CUDA and on CPUs with native bf16,
    ``WB_DTYPE`` overrides); the classification head (``classifier``/``score`` module) runs in
    float32 so scores do not collapse onto the coarse bf16 grid and tie.
    ``batch_tokens`` bounds the padded size (rows x width) of one forward pass.
    """

    def __init__(
        self,
        path: str,
        device: str | None = None,
        max_length: int = 512,
        batch_tokens: int = 16384,
        max_batch: int = 256,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        self.name = str(path)
        self.path = str(path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line
            raise ModelError(f"cannot load cross-encoder '{path}': {_one_line(exc)}") from exc
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
        max_pos = getattr(model.config, "max_position_embeddings", None) or max_length
        # RoBERTa-style position ids start at pad_id + 1: leave that offset unused.
        if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            max_pos -= 2
        self.max_length = int(min(max_length, max_pos))
        self.batch_tokens = int(batch_tokens)
        self.max_batch = int(max_batch)
        self.uses_token_types = "token_type_ids" in self.tokenizer.model_input_names

    # -- tokenization -------------------------------------------------------------------
    def _cap_queries(self, queries: list[str]) -> dict[str, str]:
        """query -> query cut to at most ``max_length // 2`` tokens (only the long ones change)."""
        return cap_queries(self.tokenizer, queries, self.max_length)

    def tokenize(self, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids (and token type ids when the model uses them) per pair, truncated."""
        return tokenize_pairs(self.tokenizer, pairs, self.max_length, self.uses_token_types)

    # -- scoring ------------------------------------------------------------------------
    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """float32 [len(passages)], input order; see the class docstring for the score."""
        return self.score_pairs([(query, p) for p in passages])

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """float32 [len(pairs)], input order."""
        import torch

        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        ids, types = self.tokenize(pairs)
        lengths = [len(x) for x in ids]
        with torch.inference_mode():
            batches = _batches(lengths, max_tokens=self.batch_tokens, max_batch=self.max_batch, device=self.device)
            for rows in batches:
                input_ids, mask, token_types = _pad_batch(ids, rows, self.pad_id, types)
                inputs = {
                    "input_ids": torch.from_numpy(input_ids).to(self.device),
                    "attention_mask": torch.from_numpy(mask).to(self.device),
                }
                if token_types is not None:
                    inputs["token_type_ids"] = torch.from_numpy(token_types).to(self.device)
                logits = self.model(**inputs).logits.float()
                if self.num_labels == 1:
                    values = logits[:, 0]
                else:
                    values = logits[:, 1] - logits[:, 0]
                out[rows] = values.cpu().numpy()
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
    ``cutoff_layer`` is reserved for layer-wise early exit and must be None for now.
    """

    def __init__(
        self,
        path: str,
        device: str | None = None,
        max_length: int = 512,
        instruction: str = DEFAULT_INSTRUCTION,
        question: str = DEFAULT_QUESTION,
        answers: tuple[str, str] = DEFAULT_ANSWERS,
        batch_tokens: int = 8192,
        max_batch: int = 64,
        cutoff_layer: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if cutoff_layer is not None:
            raise ModelError("layer-wise early exit (cutoff_layer) is not supported yet")
        quiet_transformers()
        self.name = str(path)
        self.path = str(path)
        self.cutoff_layer = cutoff_layer
        self.instruction = instruction
        self.question = question
        self.answers = answers
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line
            raise ModelError(f"cannot load LLM reranker '{path}': {_one_line(exc)}") from exc
        self.model = model.to(self.device).eval()
        self.max_length = int(max_length)
        self.batch_tokens = int(batch_tokens)
        self.max_batch = int(max_batch)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.pad_id = int(pad or 0)

        self._chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._pieces = self._template_pieces()
        self.answer_tokens = self._pick_answer_tokens()
        out_emb = self.model.get_output_embeddings()
        if out_emb is None or not hasattr(out_emb, "weight"):
            raise ModelError(f"cannot use '{path}' as an LLM reranker: it has no output embedding")
        ids = torch.tensor(self.answer_tokens, device=out_emb.weight.device)
        self._answer_weight = out_emb.weight.detach().index_select(0, ids).float()
        bias = getattr(out_emb, "bias", None)
        self._answer_bias = bias.detach().index_select(0, ids).float() if bias is not None else None
        config = self.model.config
        self._softcap = getattr(config, "final_logit_softcapping", None)
        self._logit_scale = getattr(config, "logit_scale", None)

    # -- prompt -------------------------------------------------------------------------
    def _template_pieces(self) -> tuple[str, str, str]:
        """(before query, between query and passage, after passage) of the rendered prompt."""
        if not self._chat:
            return f"{self.instruction}\nQuery: ", "\nPassage: ", f"\n{self.question}\nAnswer:"
        user = f"Query: {_Q_SLOT}\nPassage: {_P_SLOT}\n{self.question}"
        attempts = [
            [{"role": "system", "content": self.instruction}, {"role": "user", "content": user}],
            [{"role": "user", "content": f"{self.instruction}\n{user}"}],
        ]
        last_error: Exception | None = None
        for messages in attempts:
            try:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:  # noqa: BLE001 - e.g. "system role not supported"
                last_error = exc
                continue
            if isinstance(text, str) and text.count(_Q_SLOT) == 1 and text.count(_P_SLOT) == 1:
                head, rest = text.split(_Q_SLOT)
                mid, tail = rest.split(_P_SLOT)
                return head, mid, tail
        reason = _one_line(last_error) if last_error else "it does not keep the message text verbatim"
        raise ModelError(f"cannot use the chat template of '{self.path}': {reason}")

    def render(self, query: str, passage: str) -> str:
        """The prompt text for one pair (before truncation)."""
        head, mid, tail = self._pieces
        return f"{head}{query.strip()}{mid}{passage.strip()}{tail}"

    def _pick_answer_tokens(self) -> tuple[int, int]:
        tail = self._pieces[2]
        yes_word, no_word = (w.strip() for w in self.answers)
        variants = [(yes_word, no_word), (f" {yes_word}", f" {no_word}")]
        if not tail[-1:].isspace():
            variants.reverse()
        for yes, no in variants:
            y = self.tokenizer.encode(yes, add_special_tokens=False)
            n = self.tokenizer.encode(no, add_special_tokens=False)
            if len(y) == 1 and len(n) == 1:
                return int(y[0]), int(n[0])
        raise ModelError(
            f"cannot use '{self.path}' as an LLM reranker: '{yes_word}'/'{no_word}' are not single tokens"
        )

    def _encode(self, texts: list[str], offsets: bool):
        return self.tokenizer(
            texts,
            add_special_tokens=not self._chat,
            return_attention_mask=False,
            return_offsets_mapping=offsets,
        )

    def tokenize(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        """Token ids of each pair's prompt, cut to ``max_length`` as the class docstring says."""
        pairs = [(q.strip(), p.strip()) for q, p in pairs]
        ids = list(self._encode([self.render(q, p) for q, p in pairs], False)["input_ids"])
        for i, n in enumerate(len(x) for x in ids):
            if n > self.max_length:
                ids[i] = self._fit(*pairs[i])
        return ids

    def _fit(self, query: str, passage: str) -> list[int]:
        """Shorten the passage (then the query) until the prompt fits ``max_length`` tokens."""
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        head, mid, _ = self._pieces
        while True:
            enc = self._encode([self.render(query, passage)], fast)
            ids = enc["input_ids"][0]
            excess = len(ids) - self.max_length
            if excess <= 0 or (not passage and not query):
                return list(ids)
            q_start = len(head)
            p_start = q_start + len(query) + len(mid)
            if passage:
                passage = _drop_tail_tokens(passage, p_start, excess, enc, fast)
            else:
                query = _drop_tail_tokens(query, q_start, excess, enc, fast)

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
                input_ids, mask, _ = _pad_batch(ids, rows, self.pad_id)
                last = torch.as_tensor([lengths[i] - 1 for i in rows], device=self.device)
                hidden = self._last_hidden(
                    torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device), last
                )
                logits = self._answer_logits(hidden)
                out[rows] = (logits[:, 0] - logits[:, 1]).cpu().numpy()
        return out

    def _last_hidden(self, input_ids, mask, last):
        """[B, H] final-norm hidden state at each row's last real position.

        This is the hook for layer-wise early exit: with a ``cutoff_layer`` it would stop the
        decoder after that layer and apply the final norm to that layer's state.
        """
        import torch

        decoder = self.model.base_model
        hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _answer_logits(self, hidden):
        """[B, 2] float32 next-token logits of (yes, no) from [B, H] final hidden states."""
        import torch

        logits = torch.nn.functional.linear(hidden.float(), self._answer_weight, self._answer_bias)
        if self._logit_scale:
            logits = logits * float(self._logit_scale)
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits


def _drop_tail_tokens(text: str, start: int, excess: int, enc, fast: bool) -> str:
    """``text`` (found at char ``start`` of the encoded prompt) without its last ``excess`` tokens."""
    if not fast:
        # No offsets: shrink by a character share, at least one character per excess token.
        return text[: max(0, len(text) - max(excess, len(text) * excess // max(1, len(enc["input_ids"][0]))))]
    end = start + len(text)
    spans = [s for s, e in enc["offset_mapping"][0] if e > s and start <= s < end]
    if len(spans) <= excess:
        return ""
    return text[: spans[len(spans) - excess] - start].rstrip()


def load_reranker(role: RoleModel, device: str | None = None) -> Reranker:
    """The reranker for a resolved ``reranker`` role.

    * ``role.name == "llm"`` -> ``LLMYesNoReranker(role.path)`` (SmolLM2-135M-Instruct);
    * a folder whose config lists a ``*ForSequenceClassification`` architecture ->
      ``CrossEncoderReranker``;
    * a causal-LM folder (``*ForCausalLM``) -> ``LLMYesNoReranker``;
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
        config = AutoConfig.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load reranker '{name}': {_one_line(exc)}") from exc
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
