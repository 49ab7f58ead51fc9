"""Fine-tune a causal LM as a yes/no reranker inside a run folder: ``trainers.loop.train_run(run)``.

Score (trained and served alike): ``s(q, p) = logit(yes) - logit(no)``, the next-token log-odds of
the positive against the negative answer word at the last position of the prompt

    [system: instruction] [user: "Query: {q}\\nPassage: {p}\\n{question}"] [assistant cue]

(the tokenizer's chat template; a plain ``"...\\nAnswer:"`` prompt without one). Prompt,
tokenization, truncation (only the passage is cut to ``max_length``), the answer-token choice and
the score come from :mod:`workbench.encoders.yesno_prompt`, the code
:class:`~workbench.encoders.rerankers.LLMYesNoReranker` serves with: right-padded rows, the final
hidden state gathered at each row's last real position, times the two answer rows of the output
embedding, in float32 (no full-vocabulary projection).

Groups: :func:`trainers.reranker.build_groups` (one positive first, ``group_size - 1`` hard
negatives, topped up in-batch, padding masked); padded slots are not run through the model.
Losses over the group's scores (``trainers.losses``): ``listwise`` (softmax cross entropy,
default), ``pairwise`` (RankNet), ``pointwise`` (binary cross entropy on ``s``, i.e. on
``P(yes) / (P(yes) + P(no))``).

LoRA (default): peft ``LoraConfig(task_type=CAUSAL_LM, target_modules="all-linear")`` (every linear
projection of the decoder; the output layer stays frozen, so the yes/no rows do too). Without
LoRA every weight trains.

The final folder (``run.model_dir``) is a plain ``*ForCausalLM`` folder with the MERGED weights
and the tokenizer, plus ``adapter/`` (the peft adapter, with LoRA) and ``wb_model.json``
``{"kind": "llm-reranker", "instruction", "question", "answers", "max_length", "base", ...}``;
``wb query -p hybrid+rerank --model reranker=runs/NAME`` serves it through ``load_reranker``
-> ``LLMYesNoReranker``, which reads the prompt settings from ``wb_model.json``.

The run protocol (status, events, checkpoints, stop, exact resume) is :mod:`trainers.loop`; the
trained module is :class:`YesNoScorer` (the causal LM, LoRA-wrapped or not), so checkpoints hold
its full state and data-parallel wrapping goes through its ``forward``. Evaluation (``eval_data``:
a FlagEmbedding jsonl of held-out groups) reports the MRR of the best positive (``mrr``), as
:mod:`trainers.reranker` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.encoders.yesno_prompt import LLM_RERANKER_KIND, YesNoPrompt
from workbench.errors import ModelError, UsageError, first_line

from .backbone import enable_checkpointing, padded, with_lora
from .config import LlmRerankerConfig
from .eval_set import inference
from .reranker import RerankerTrainer, build_groups, negative_pool
from .runs import staged_folder

MIN_READ_TOKENS = 16  # max_length must leave at least this many tokens for the query and passage

__all__ = ["LlmRerankerTrainer", "make_scorer"]


def make_scorer(lm, answer_tokens: tuple[int, int]):
    """A ``torch.nn.Module`` around the causal LM ``lm``: ``forward(input_ids, attention_mask, last)``
    -> ``[B]`` float32 scores ``logit(yes) - logit(no)`` at positions ``last`` (right padding).

    ``lm`` may be a peft model (LoRA); ``.lm`` can be replaced by the merged model afterwards.
    """
    import torch

    from workbench.encoders.yesno_prompt import _causal, answer_logits, answer_rows, last_hidden

    class YesNoScorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm
            self.answer_tokens = tuple(int(t) for t in answer_tokens)

        def forward(self, input_ids, attention_mask, last):
            config = _causal(self.lm).config
            hidden = last_hidden(self.lm, input_ids, attention_mask, last)
            weight, bias = answer_rows(self.lm, self.answer_tokens)
            logits = answer_logits(hidden, weight, bias, getattr(config, "logit_scale", None),
                                   getattr(config, "final_logit_softcapping", None))
            return logits[:, 0] - logits[:, 1]

    return YesNoScorer()


class LlmRerankerTrainer(RerankerTrainer):
    """The yes/no LLM reranker's parts of the loop (see the module docstring).

    Shares ``__init__`` (loss, group size check) and ``evaluate`` (MRR) with the cross-encoder
    trainer; everything model-specific is here. After ``build()``, ``self.scorer`` is the trained
    module and ``self.prompt`` the :class:`YesNoPrompt` (tests score with both).
    """

    metric_name = "mrr"

    def __init__(self, cfg: LlmRerankerConfig) -> None:
        super().__init__(cfg)
        self.scorer = None
        self.prompt: YesNoPrompt | None = None

    def examples(self):
        from .data import read_datasets

        # the instruction is the judge's system turn, not a query prefix: readers get none
        examples = read_datasets(self.cfg.data, split=self.cfg.split)
        self.fallback_negatives = negative_pool(examples)
        return examples

    def build(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from workbench.models.cache import resolve_model_path

        cfg = self.cfg
        base = resolve_model_path(str(cfg.base))
        hf_config = cfg.check_base()  # a causal LM
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
            lm = AutoModelForCausalLM.from_pretrained(base, dtype="float32", trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load base model '{cfg.base}': {first_line(exc)}") from exc
        self.prompt = YesNoPrompt(self.tokenizer, instruction=cfg.instruction, question=cfg.question,
                                  answers=tuple(cfg.answers), max_length=cfg.max_length, name=str(cfg.base))
        fixed = self.prompt.fixed_tokens()
        if cfg.max_length < fixed + MIN_READ_TOKENS:  # every prompt would be the same: nothing to learn
            raise UsageError(f"max_length {cfg.max_length} leaves no room for the query and passage: the prompt "
                             f"alone takes {fixed} tokens; give --max-length {fixed + 128} or more")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int((pad if pad is not None else self.tokenizer.eos_token_id) or 0)  # as served
        self.base_architectures = list(getattr(hf_config, "architectures", None) or [])
        if cfg.gradient_checkpointing:
            enable_checkpointing(lm)
            lm.config.use_cache = False
        if cfg.lora:
            from peft import LoraConfig, TaskType

            lm = with_lora(lm, LoraConfig(
                task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout, target_modules="all-linear",
            ))
        self.scorer = make_scorer(lm, self.prompt.answer_tokens)
        return self.scorer

    def describe(self) -> dict:
        trainable = sum(p.numel() for p in self.scorer.parameters() if p.requires_grad) if self.scorer else 0
        return {"kind": LLM_RERANKER_KIND, "loss_name": self.loss_fn.name, "group_size": self.cfg.group_size,
                "lora": bool(self.cfg.lora), "trainable_params": int(trainable)}

    def param_groups(self, model) -> list:
        return [p for p in model.parameters() if p.requires_grad]

    def _batch(self, pairs: list[tuple[str, str]], device):
        """Right-padded prompts of ``pairs`` (``YesNoPrompt.tokenize``) and each row's last position."""
        import torch

        ids = self.prompt.tokenize(pairs)
        input_ids, mask, _ = padded(ids, self.pad_id)
        last = torch.tensor([len(x) - 1 for x in ids], dtype=torch.long)
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "last": last.to(device)}

    def compute_loss(self, model, exs, rng, device, accelerator):
        import torch

        drawn = build_groups(exs, self.cfg.group_size, rng, self.fallback_negatives)
        groups, masks = drawn.passages, drawn.masks
        width = len(groups[0])
        real = [(ex.query, passage) for ex, group, m in zip(exs, groups, masks)
                for passage, keep in zip(group, m) if keep]
        batch = self._batch(real, device)
        with accelerator.autocast():
            values = model(**batch)
        mask = torch.tensor(masks, dtype=torch.bool, device=values.device)
        # padded slots are masked out of the loss: they are not run, their score is a constant 0
        scores = torch.zeros((len(exs), width), dtype=torch.float32, device=values.device)
        scores = scores.masked_scatter(mask, values.float())
        return self.loss_fn(scores, mask), int(batch["attention_mask"].sum())

    def score_pairs(self, model, pairs: list[tuple[str, str]], device, batch_pairs: int = 16) -> list[float]:
        """The trained score of each pair (eval mode, no gradient), in input order."""
        out: list[float] = []
        with inference(model):
            for i in range(0, len(pairs), batch_pairs):
                out.extend(model(**self._batch(pairs[i : i + batch_pairs], device)).float().tolist())
        return out

    def save_final(self, model, out_dir: Path) -> None:
        """Merged ``*ForCausalLM`` folder + ``adapter/`` (LoRA) + ``wb_model.json`` (module docstring)."""
        cfg = self.cfg
        with staged_folder(out_dir) as tmp:
            lm = model.lm
            if hasattr(lm, "merge_and_unload"):  # peft: the adapter first, then the merged weights
                lm.save_pretrained(str(tmp / "adapter"))
                lm = lm.merge_and_unload()
                model.lm = lm  # the scorer keeps scoring, now with the merged model
            lm.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            if self.base_architectures:  # keep the base's *ForCausalLM name (read_layout -> causal-lm)
                cfg_path = tmp / "config.json"
                hf = json.loads(cfg_path.read_text())
                hf["architectures"] = self.base_architectures
                cfg_path.write_text(json.dumps(hf, indent=2))
            (tmp / "wb_model.json").write_text(json.dumps({
                "kind": LLM_RERANKER_KIND, "base": str(cfg.base), "instruction": self.prompt.instruction,
                "question": self.prompt.question, "answers": list(self.prompt.answers),
                "answer_tokens": list(self.prompt.answer_tokens), "max_length": self.prompt.max_length,
                "loss": self.loss_fn.name, "group_size": cfg.group_size, "lora": bool(cfg.lora),
                "lora_r": cfg.lora_r if cfg.lora else None,
            }, indent=2))
