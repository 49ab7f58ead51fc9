"""Shared builders for the trainer tests: a tiny random BERT (or ModernBERT) with a real tokenizer, a
tiny FlagEmbedding jsonl of topic groups, and ``run_wb`` (the ``wb`` console entry point in-process).

Imported by the tests as ``conftest`` is (``from tiny_models import tiny_bert``); the builders are plain
functions so each test module keeps its own module-scoped fixture and its own sizes and seeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOPICS = ["cats", "rivers", "engines", "bread", "stars", "chess"]


def run_wb(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Run ``wb ARGS`` in-process through the console entry point; returns (exit code, stdout, stderr)."""
    from workbench.cli.main import main

    monkeypatch.setattr(sys, "argv", ["wb", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def tiny_bert(dest: Path, *, layers: int = 2, tokenizer: str = "all-MiniLM-L6-v2", masked_lm: bool = False,
              seed: int = 0) -> Path:
    """Save a random ``layers``-layer, 32-wide BERT (2 heads, 64 intermediate, 128 positions) with the
    installed model ``tokenizer``'s tokenizer into ``dest``; a BertForMaskedLM when ``masked_lm``, else a
    BertModel. The weights are drawn right after ``torch.manual_seed(seed)``, so they are reproducible."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    from workbench.models.cache import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    (BertForMaskedLM if masked_lm else BertModel)(config).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def tiny_modernbert(dest: Path, *, layers: int = 2, tokenizer: str = "all-MiniLM-L6-v2", seed: int = 0) -> Path:
    """Save a random ``layers``-layer, 32-wide ModernBertModel (2 heads, 64 intermediate, 128 positions,
    global attention in every layer, weights drawn with std 0.2 so that its ``final_norm`` visibly
    changes the states) with the installed model ``tokenizer``'s tokenizer, set to give no token
    type ids as ModernBERT's own does, into ``dest``. Reproducible as :func:`tiny_bert`."""
    import torch
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    from workbench.models.cache import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer),
                                        model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    config = ModernBertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                              pad_token_id=tok.pad_token_id, global_attn_every_n_layers=1, initializer_range=0.2)
    ModernBertModel(config).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def topic_groups(path: Path, n: int = 24, negatives: int = 3, *, phrasing: str = "answer") -> Path:
    """Write ``n`` FlagEmbedding rows ({"query", "pos", "neg", "prompt"}), row i about TOPICS[i % 6].

    ``phrasing="answer"``: query "{t} question {i}", positive "the answer: {t} {i}", negatives
    "unrelated notes, {other topic} {i}" for the next ``negatives`` topics.
    ``phrasing="passage"``: query "question {i} about {t}", positive "a passage about {t} number {i}",
    negatives "a text about {next topic} {i}", then "notes on {topic after}" (at most 2).
    """
    with open(path, "w") as fh:
        for i in range(n):
            t = TOPICS[i % 6]
            if phrasing == "answer":
                query, pos = f"{t} question {i}", f"the answer: {t} {i}"
                neg = [f"unrelated notes, {TOPICS[(i + k) % 6]} {i}" for k in range(1, negatives + 1)]
            elif phrasing == "passage":
                query, pos = f"question {i} about {t}", f"a passage about {t} number {i}"
                neg = [f"a text about {TOPICS[(i + 1) % 6]} {i}", f"notes on {TOPICS[(i + 2) % 6]}"][:negatives]
            else:
                raise ValueError(f"unknown phrasing {phrasing!r}")
            fh.write(json.dumps({"query": query, "pos": [pos], "neg": neg, "prompt": ""}) + "\n")
    return path


def loss_once(trainer, exs, *, seed: int = 0) -> float:
    """``trainer.compute_loss`` on the micro-batch ``exs`` with a model built now (after
    ``torch.manual_seed(seed)``: the same fresh heads each call), in eval mode, float32, one process,
    no gradient."""
    import contextlib
    import random
    from types import SimpleNamespace

    import torch

    torch.manual_seed(seed)
    model = trainer.build().eval()
    trainer.current_step, trainer.total_steps = 0, 10
    # one process, no autocast (an Accelerator could not be made after a run of the module made one)
    accelerator = SimpleNamespace(autocast=contextlib.nullcontext, num_processes=1, unwrap_model=lambda m: m)
    with torch.no_grad():
        loss, _ = trainer.compute_loss(model, exs, random.Random(0), "cpu", accelerator)
    return float(loss)


def shared_positive_loss(trainer) -> float:
    """:func:`loss_once` on a micro-batch of two examples that share their one positive and bring no
    hard negatives: each row's only other candidate is its own positive again, so a trainer that
    masks in-batch false negatives gives (about) 0, one that counts the duplicate as a negative at
    least log 2."""
    from trainers.data.example import TrainingExample

    shared = "the answer: cats and dogs"
    return loss_once(trainer, [TrainingExample(query="cats question", positives=(shared,), negatives=()),
                               TrainingExample(query="dogs question", positives=(shared,), negatives=())])


def passages_of_a_mixed_batch(trainer) -> list[str]:
    """The texts ``trainer.encode`` is given (queries, then passages) by :func:`loss_once` on a
    micro-batch whose first example brings a hard negative and whose second brings none."""
    from trainers.data.example import TrainingExample

    seen: list[str] = []
    encode = trainer.encode

    def recording(model, texts, *args, **kwargs):
        seen.extend(texts)
        return encode(model, texts, *args, **kwargs)

    trainer.encode = recording
    loss_once(trainer, [TrainingExample(query="cats question", positives=("cats purr",), negatives=("NEG chess",)),
                        TrainingExample(query="dogs question", positives=("dogs bark",), negatives=())])
    return seen


def topic_beir(folder: Path) -> Path:
    """A BEIR folder (test split) of topic_groups' passages: query i about topic t -> its passage."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(
        {"_id": f"d{i}", "title": "", "text": f"a passage about {TOPICS[i % 6]} number {i}"}) + "\n" for i in range(12)))
    (folder / "queries.jsonl").write_text("".join(json.dumps(
        {"_id": f"q{i}", "text": f"question {i} about {TOPICS[i % 6]}"}) + "\n" for i in range(12)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(12)))
    return folder
