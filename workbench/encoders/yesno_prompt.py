"""The yes/no LLM reranker's prompt, tokenization and score: one code path for serving and training.

:class:`~workbench.encoders.rerankers.LLMYesNoReranker` (serving) and
:class:`trainers.llm_reranker.LlmRerankerTrainer` (training) both build a :class:`YesNoPrompt`
and score with :func:`last_hidden` + :func:`answer_logits`, so the score a run trains is the
score ``wb query`` serves.

* ``YesNoPrompt(tokenizer, ...)``: the prompt pieces (chat template or plain), ``render(q, p)``,
  ``tokenize(pairs)`` (with truncation of the passage only) and ``answer_tokens`` (ids of the
  positive and negative answer words). Needs only a tokenizer: no torch at import or use.
* ``last_hidden(causal_lm, input_ids, mask, last)``: the final-norm hidden state at each row's
  last real position (right padding, gathered).
* ``answer_logits(hidden, weight, bias, logit_scale, softcap)``: the two answer logits from those
  states, in float32; the score is ``logits[:, 0] - logits[:, 1]``.
* ``read_llm_reranker_meta(path)``: the prompt settings a trained run saved in ``wb_model.json``.

torch is imported inside the two scoring functions only.
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import ModelError, first_line

__all__ = [
    "DEFAULT_ANSWERS",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_QUESTION",
    "LLM_RERANKER_KIND",
    "YesNoPrompt",
    "answer_logits",
    "answer_rows",
    "last_hidden",
    "read_llm_reranker_meta",
]

DEFAULT_INSTRUCTION = (
    "Judge whether the Passage is relevant to the Query and answers it. "
    "Answer only 'Yes' or 'No'."
)
"""The LLM judge's instruction: the system turn of a chat template (first line of a plain prompt)."""

DEFAULT_QUESTION = "Does the Passage answer the Query? Answer only 'Yes' or 'No'."
"""The closing line of the user turn, right before the answer cue (never truncated)."""

DEFAULT_ANSWERS = ("Yes", "No")
"""The positive and negative answer words (see ``LLMYesNoReranker`` for why capitalised)."""

DEFAULT_MAX_LENGTH = 512
"""Prompt tokens (instruction, query, passage, question and answer cue together)."""

LLM_RERANKER_KIND = "llm-reranker"
"""``wb_model.json``'s ``kind`` for a folder written by ``wb train llm-reranker``."""

# Placeholders used to render a chat template once and splice every pair into it.
_Q_SLOT = "\x00wbQUERY\x00"
_P_SLOT = "\x00wbPASSAGE\x00"


class YesNoPrompt:
    """Prompt rendering and tokenization of a yes/no LLM judge (see ``LLMYesNoReranker``).

    Prompt: with the tokenizer's chat template, a system turn holding ``instruction`` (folded
    into the user turn when the template refuses a system role) and the user turn
    ``"Query: {q}\\nPassage: {p}\\n{question}"``, rendered with ``add_generation_prompt=True``;
    without a chat template ``"{instruction}\\nQuery: {q}\\nPassage: {p}\\n{question}\\nAnswer:"``.
    Query and passage are stripped. Chat prompts are tokenized without added special tokens
    (the template holds them), plain prompts with them.

    Answer tokens: when the prompt ends in whitespace the bare words are tried first, else the
    space-prefixed ones; the first variant that is one token for both words is used.

    Truncation (``tokenize``): a prompt over ``max_length`` tokens loses the passage's last tokens
    (cut at a token boundary, re-rendered, re-tokenized, so the ids are those of a rendered
    prompt); the query is cut only once the passage is gone; the fixed part is never cut.
    """

    def __init__(
        self,
        tokenizer,
        *,
        instruction: str = DEFAULT_INSTRUCTION,
        question: str = DEFAULT_QUESTION,
        answers: tuple[str, str] = DEFAULT_ANSWERS,
        max_length: int = DEFAULT_MAX_LENGTH,
        name: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.question = question
        self.answers = (str(answers[0]), str(answers[1]))
        self.max_length = int(max_length)
        self.name = name
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.pieces = self._template_pieces()
        self.answer_tokens = self._pick_answer_tokens()

    def _template_pieces(self) -> tuple[str, str, str]:
        """(before query, between query and passage, after passage) of the rendered prompt."""
        if not self.chat:
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
        reason = first_line(last_error) if last_error else "it does not keep the message text verbatim"
        raise ModelError(f"cannot use the chat template of '{self.name}': {reason}")

    def render(self, query: str, passage: str) -> str:
        """The prompt text for one pair (before truncation)."""
        head, mid, tail = self.pieces
        return f"{head}{query.strip()}{mid}{passage.strip()}{tail}"

    def fixed_tokens(self) -> int:
        """Tokens of the prompt with an empty query and passage: what ``max_length`` must exceed
        for any of them to be read."""
        return len(self._encode([self.render("", "")], False)["input_ids"][0])

    def _pick_answer_tokens(self) -> tuple[int, int]:
        tail = self.pieces[2]
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
            f"cannot use '{self.name}' as an LLM reranker: '{yes_word}'/'{no_word}' are not single tokens"
        )

    def _encode(self, texts: list[str], offsets: bool):
        return self.tokenizer(
            texts,
            add_special_tokens=not self.chat,
            return_attention_mask=False,
            return_offsets_mapping=offsets,
        )

    def tokenize(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        """Token ids of each pair's prompt, cut to ``max_length`` as the class docstring says."""
        pairs = [(q.strip(), p.strip()) for q, p in pairs]
        if not pairs:
            return []
        ids = [list(x) for x in self._encode([self.render(q, p) for q, p in pairs], False)["input_ids"]]
        for i, n in enumerate(len(x) for x in ids):
            if n > self.max_length:
                ids[i] = self._fit(*pairs[i])
        return ids

    def _fit(self, query: str, passage: str) -> list[int]:
        """Shorten the passage (then the query) until the prompt fits ``max_length`` tokens."""
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        head, mid, _ = self.pieces
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


# -- scoring (torch inside) ---------------------------------------------------------------
def _causal(model):
    """The ``*ForCausalLM`` inside ``model`` (a peft wrapper is looked through; LoRA layers stay)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def last_hidden(causal_lm, input_ids, mask, last):
    """[B, H] final-norm hidden states at positions ``last`` (one per row) of right-padded rows.

    Runs the decoder only (``base_model`` of the causal LM: no full-vocabulary projection).
    Padding sits after ``last`` and causal attention cannot see it; positions are unchanged.
    """
    import torch

    decoder = _causal(causal_lm).base_model
    hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def answer_rows(causal_lm, answer_tokens: tuple[int, int]):
    """``(weight [2, H], bias [2] | None)``: the output-embedding rows of (yes, no), with gradient."""
    import torch

    out_emb = _causal(causal_lm).get_output_embeddings()
    if out_emb is None or not hasattr(out_emb, "weight"):
        raise ModelError("the model has no output embedding: it cannot be a yes/no LLM reranker")
    ids = torch.tensor(answer_tokens, device=out_emb.weight.device)
    bias = getattr(out_emb, "bias", None)
    return out_emb.weight.index_select(0, ids), (bias.index_select(0, ids) if bias is not None else None)


def answer_logits(hidden, weight, bias=None, logit_scale=None, softcap=None):
    """[B, 2] float32 next-token logits of (yes, no) from [B, H] hidden states.

    ``logits = hidden @ weight.T + bias`` in float32, times ``logit_scale`` when the config has one,
    then ``tanh(logits / softcap) * softcap`` when it has ``final_logit_softcapping``.
    """
    import torch

    logits = torch.nn.functional.linear(
        hidden.float(), weight.float(), bias.float() if bias is not None else None
    )
    if logit_scale:
        logits = logits * float(logit_scale)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def read_llm_reranker_meta(path: str | Path) -> dict:
    """``wb_model.json`` of a ``wb train llm-reranker`` folder (``kind == "llm-reranker"``), else ``{}``."""
    from workbench.encoders.layout import read_json

    meta = read_json(Path(path) / "wb_model.json")
    return meta if meta.get("kind") == LLM_RERANKER_KIND else {}
