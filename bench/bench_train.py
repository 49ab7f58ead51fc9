"""Training throughput: our embedder trainer against the sentence-transformers trainer, same run.

Both train the same model on the same (query, positive) pairs with the same batch size for one
epoch with in-batch negatives (ours: InfoNCE, temperature 0.05; theirs: MultipleNegativesRankingLoss,
scale 20 = 1/0.05), each timed as a whole ``train`` call (model loading excluded, data loading and
every step included). bf16 on a GPU for both, fp32 on CPU for both. examples/s = pairs / seconds;
tokens/s = the non-padding tokens of all queries and passages (truncated as both truncate them) /
seconds: the same numerator for both, so the ratio is the same for either.

    python bench/bench_train.py [--n 5183] [--batch 128] [--model PATH]        # MiniLM (default)
    python bench/bench_train.py --decoder --lora --batch 64                       # SmolLM2-135M shape,
                                                  # random weights, LoRA r 16 on all projections

Data: SciFact's 5,183 title -> abstract pairs ($WB_SCIFACT or ../shared/eval/scifact). Imports
nothing from lancedb/tantivy/textual; the ST side needs ``datasets`` (``pip install '.[train]'``, or
carry its wheel with dill and multiprocess to a GPU machine). Writes bench/results/train[-decoder].json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SCIFACT, write_result  # noqa: E402

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu")


def scifact_pairs(n: int) -> list[tuple[str, str]]:
    pairs = []
    with open(SCIFACT / "corpus.jsonl") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("title") and d.get("text"):
                pairs.append((d["title"], d["text"]))
            if len(pairs) >= n:
                break
    return pairs


def decoder_model(folder: Path) -> str:
    """A SmolLM2-135M-shaped Llama with random weights and the real SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.models.cache import resolve_model_path

    tok_source = os.environ.get("WB_SMOLLM2_TOKENIZER") or resolve_model_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(tok_source)
    cfg = LlamaConfig(**SMOLLM2_135M, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def count_tokens(model: str, pairs, q_len: int, p_len: int, decoder: bool) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    q = tok([a for a, _ in pairs], truncation=True, max_length=q_len)["input_ids"]
    p = tok([b for _, b in pairs], truncation=True, max_length=p_len)["input_ids"]
    return sum(map(len, q)) + sum(map(len, p)) + (len(q) + len(p) if decoder else 0)  # + EOS


def run_ours(model: str, pairs, args, work: Path) -> dict:
    from trainers.config import EmbedderConfig
    from trainers.embedder import train_embedder
    from trainers.runs import new_run

    data = work / "pairs.jsonl"
    with open(data, "w") as fh:
        for a, b in pairs:
            fh.write(json.dumps({"anchor": a, "positive": b}) + "\n")
    cfg = EmbedderConfig(data=str(data), base=model, name="bench", epochs=1.0, batch_size=args.batch,
                         negatives_per_query=0, query_max_length=args.query_len, passage_max_length=args.passage_len,
                         lora=args.lora, lora_r=16, lora_alpha=32, pooling="last" if args.decoder else "auto",
                         save_every=10**9, lr=2e-5, seed=0, log_every=10**9)
    run = new_run(work, "bench", cfg.to_json())
    t0 = time.perf_counter()
    status = train_embedder(run)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "state": status.get("state"), "final_loss": status.get("loss")}


def run_st(model: str, pairs, args, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.models import Pooling, Transformer

    gpu = torch.cuda.is_available()
    if args.decoder:
        body = Transformer(model, max_seq_length=args.passage_len)
        if body.tokenizer.pad_token is None:
            body.tokenizer.pad_token = body.tokenizer.eos_token
        st = SentenceTransformer(modules=[body, Pooling(body.get_word_embedding_dimension(), "lasttoken")])
    else:
        st = SentenceTransformer(model)
        st.max_seq_length = args.passage_len
    if args.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
        try:
            st.add_adapter(lora)
        except ValueError:  # transformers' integration wants a newer peft than the registry has: same LoRA, by hand
            st[0].auto_model = get_peft_model(st[0].auto_model, lora)
    data = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), num_train_epochs=1, per_device_train_batch_size=args.batch,
        learning_rate=2e-5, warmup_ratio=0.1, bf16=gpu, report_to="none", save_strategy="no",
        logging_steps=10**9, seed=0, dataloader_drop_last=False, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=st, args=targs, train_dataset=data,
                                         loss=MultipleNegativesRankingLoss(st, scale=20.0))
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "final_loss": float(out.training_loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5183, help="pairs (SciFact has 5,183 titled abstracts)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default=None, help="encoder folder or HF id (default: all-MiniLM-L6-v2)")
    ap.add_argument("--decoder", action="store_true", help="SmolLM2-135M shape, random weights, last-token")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--query-len", type=int, default=64)
    ap.add_argument("--passage-len", type=int, default=256)
    ap.add_argument("--order", default="st,ours", help="which runs first (warm-up effects)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")
    pairs = scifact_pairs(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.decoder:
            model = decoder_model(work / "smollm2-135m-random")
        else:
            from workbench.models.cache import resolve_model_path

            model = resolve_model_path(args.model or "all-MiniLM-L6-v2")
        tokens = count_tokens(model, pairs, args.query_len, args.passage_len, args.decoder)
        results: dict[str, dict] = {}
        for which in args.order.split(","):
            fn = run_ours if which == "ours" else run_st
            sub = work / which
            sub.mkdir()
            results[which] = fn(model, pairs, args, sub)
            results[which]["examples_per_s"] = len(pairs) / results[which]["seconds"]
            results[which]["tokens_per_s"] = tokens / results[which]["seconds"]
            print(which, json.dumps(results[which]), flush=True)
    name = "train-decoder" if args.decoder else "train"
    write_result(name, {
        "model": "SmolLM2-135M shape (random weights)" if args.decoder else Path(model).name,
        "pairs": len(pairs), "batch": args.batch, "lora": args.lora, "query_len": args.query_len,
        "passage_len": args.passage_len, "tokens": tokens, "ours": results["ours"],
        "sentence_transformers": results["st"],
        "ratio_examples_per_s": results["ours"]["examples_per_s"] / results["st"]["examples_per_s"],
        "goal": ">= 3x the sentence-transformers trainer on an H100 (bf16)",
    })


if __name__ == "__main__":
    main()
