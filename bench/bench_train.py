"""Training throughput: our embedder trainer against the sentence-transformers trainer, same run.

Both train the same model on the same (query, positive) pairs with the same batch size, learning
rate, warm-up (10%), weight decay (0.01) and attention dropout (ours turns dropout on attention
probabilities off, ``trainers.backbone.fast_attention``; ST gets the same through
``config_kwargs``) for one epoch with in-batch negatives (ours: InfoNCE, temperature 0.05; theirs:
MultipleNegativesRankingLoss, scale 20 = 1/0.05), both with float32 master weights (ST's model is
loaded in float32 whatever dtype the checkpoint stores). Precision: ours as ``--precision``
(default auto: bf16 on CUDA and on CPUs with native bf16, else fp32, ``trainers.loop.mixed_precision``);
ST in every setting of ``--st-precision`` (default auto: ours' precision, plus fp16 on CUDA and
fp32 on a bf16 CPU), the headline ratio against the fastest. Each side first trains
``--warmup-steps`` untimed steps on a fresh copy (CUDA context, kernels, allocator, thread pools),
then is timed from its first training step to the end of its last (ours: the run's ``started`` event
to the last step; ST: ``on_train_begin`` to ``on_train_end``): model loading, optimizer set-up and
the final save are excluded for both, data collation and every step included. The whole call is
recorded too. examples/s = pairs / seconds; tokens/s = the non-padding tokens of all queries and
passages (truncated as ours truncates them; ST truncates both at ``--passage-len``, so the result
counts the anchors longer than ``--query-len``) / seconds: the same numerator for both. The mean
training loss of both is recorded and checked to agree (``losses_agree``; exit 1 when not).

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
import math
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
    long_anchors = sum(len(x) > q_len for x in tok([a for a, _ in pairs], truncation=True, max_length=p_len)["input_ids"])
    return sum(map(len, q)) + sum(map(len, p)) + (len(q) + len(p) if decoder else 0), long_anchors  # + EOS


def run_ours(model: str, pairs, args, work: Path, max_steps: int = 0) -> dict:
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
                         save_every=10**9, lr=2e-5, warmup_ratio=0.1, weight_decay=0.01, seed=0, log_every=1,
                         mixed_precision=args.precision, max_steps=max_steps)
    run = new_run(work, "bench", cfg.to_json())
    step_times: list[float] = []
    t0 = time.perf_counter()
    status = train_embedder(run, on_step=lambda step, _run: step_times.append(time.time()))
    whole = time.perf_counter() - t0
    events = [json.loads(line) for line in run.events_path.read_text().splitlines() if line.strip()]
    started = next(e["time"] for e in events if e.get("event") == "started")
    losses = [e["loss"] for e in events if e.get("event") == "step"]
    return {"seconds": step_times[-1] - started, "seconds_whole_call": whole, "steps": len(losses),
            "state": status.get("state"), "final_loss": status.get("loss"),
            "mean_loss": sum(losses) / max(1, len(losses))}


def _st_model(model: str, args):
    """The ST model in float32 (whatever the checkpoint stores), attention dropout as ours has it."""
    import inspect

    import torch
    from sentence_transformers import SentenceTransformer

    from trainers.backbone import fast_attention

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # before sentence-transformers 6.x moved them
        from sentence_transformers.models import Pooling, Transformer

    config = fast_attention(model)  # {} for decoders (0 already)
    if args.decoder:
        params = inspect.signature(Transformer.__init__).parameters
        kw = {"max_seq_length": args.passage_len}
        if config:
            kw["config_kwargs" if "config_kwargs" in params else "config_args"] = config
        kw["model_kwargs" if "model_kwargs" in params else "model_args"] = {"dtype": torch.float32}
        body = Transformer(model, **kw)
        if body.tokenizer.pad_token is None:
            body.tokenizer.pad_token = body.tokenizer.eos_token
        st = SentenceTransformer(modules=[body, Pooling(body.get_word_embedding_dimension(), "lasttoken")])
    else:
        kw = {"model_kwargs": {"dtype": torch.float32}}
        if config and "config_kwargs" in inspect.signature(SentenceTransformer.__init__).parameters:
            kw["config_kwargs"] = config  # else attention dropout stays the base's (recorded in the result)
        st = SentenceTransformer(model, **kw)
        st.max_seq_length = args.passage_len
    if next(st.parameters()).dtype != torch.float32:
        st.to(torch.float32)
    if args.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
        try:
            st.add_adapter(lora)
        except ValueError:  # transformers' integration wants a newer peft than the registry has: same LoRA, by hand
            st[0].auto_model = get_peft_model(st[0].auto_model, lora)
    return st


def attention_dropout(model) -> dict:
    cfg = model.config if hasattr(model, "config") else model[0].auto_model.config
    return {k: getattr(cfg, k) for k in ("attention_probs_dropout_prob", "attention_dropout") if hasattr(cfg, k)}


def run_st(model: str, pairs, args, work: Path, precision: str = "no", max_steps: int = 0) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # before sentence-transformers 6.x moved it
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    st = _st_model(model, args)
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["begin"] = time.time()

        def on_train_end(self, *a, **k):
            marks["end"] = time.time()

    data = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"), num_train_epochs=1, max_steps=max_steps or -1,
        per_device_train_batch_size=args.batch, learning_rate=2e-5, warmup_ratio=0.1, weight_decay=0.01,
        bf16=precision == "bf16", fp16=precision == "fp16", report_to="none", save_strategy="no",
        logging_steps=10**9, seed=0, dataloader_drop_last=False, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = SentenceTransformerTrainer(model=st, args=targs, train_dataset=data, callbacks=[Clock()],
                                         loss=MultipleNegativesRankingLoss(st, scale=20.0))
    t0 = time.perf_counter()
    out = trainer.train()
    whole = time.perf_counter() - t0
    return {"seconds": marks["end"] - marks["begin"], "seconds_whole_call": whole, "precision": label(precision),
            "param_dtype": str(next(st.parameters()).dtype).replace("torch.", ""),
            "attention_dropout": attention_dropout(st), "steps": int(out.global_step),
            "mean_loss": float(out.training_loss)}


def label(precision: str) -> str:
    return "fp32" if precision == "no" else precision


def st_precisions(requested: str, ours: str) -> list[str]:
    """``--st-precision``: a comma list of fp32|bf16|fp16 (``no`` = fp32); ``same``: ours'; ``auto``:
    ours', plus fp16 on CUDA and fp32 on a CPU where ours runs bf16."""
    import torch

    if requested == "same":
        return [ours]
    if requested != "auto":
        return ["no" if p.strip() in ("fp32", "no") else p.strip() for p in requested.split(",") if p.strip()]
    out = [ours]
    if torch.cuda.is_available():
        out += [p for p in ("bf16", "fp16") if p not in out]
    elif ours != "no":
        out.append("no")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5183, help="pairs (SciFact has 5,183 titled abstracts)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default=None, help="encoder folder or HF id (default: all-MiniLM-L6-v2)")
    ap.add_argument("--decoder", action="store_true", help="SmolLM2-135M shape, random weights, last-token")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--query-len", type=int, default=64)
    ap.add_argument("--passage-len", type=int, default=256)
    ap.add_argument("--precision", default="auto", help="ours: auto|bf16|fp16|no (trainers' mixed_precision)")
    ap.add_argument("--st-precision", default="auto",
                    help="ST's settings: auto (ours', + fp16 on CUDA, + fp32 on a bf16 CPU), same, or a list of no,bf16,fp16")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed steps of each side first (0: none)")
    ap.add_argument("--order", default="ours,st", help="which side is timed first (after both warm-ups)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")
    from trainers.loop import mixed_precision

    ours_precision = mixed_precision(args.precision)
    theirs = st_precisions(args.st_precision, ours_precision)
    pairs = scifact_pairs(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.decoder:
            model = decoder_model(work / "smollm2-135m-random")
        else:
            from workbench.models.cache import resolve_model_path

            model = resolve_model_path(args.model or "all-MiniLM-L6-v2")
        tokens, long_anchors = count_tokens(model, pairs, args.query_len, args.passage_len, args.decoder)
        from trainers.backbone import fast_attention

        precision_of = {f"st_{label(p)}": p for p in theirs}
        if args.warmup_steps:
            warm = pairs[: args.batch * args.warmup_steps]
            for which in ("ours", *[f"st_{label(p)}" for p in theirs]):
                sub = work / f"warmup-{which}"
                sub.mkdir()
                if which == "ours":
                    run_ours(model, warm, args, sub, max_steps=args.warmup_steps)
                else:
                    run_st(model, warm, args, sub, precision_of[which], max_steps=args.warmup_steps)
                print("warm-up done:", which, flush=True)
        results: dict[str, dict] = {}
        sides = ["ours", *precision_of]
        if args.order.split(",")[0] == "st":
            sides = sides[1:] + sides[:1]
        for which in sides:
            sub = work / which
            sub.mkdir()
            results[which] = (run_ours(model, pairs, args, sub) if which == "ours"
                              else run_st(model, pairs, args, sub, precision_of[which]))
            results[which]["examples_per_s"] = len(pairs) / results[which]["seconds"]
            results[which]["tokens_per_s"] = tokens / results[which]["seconds"]
            print(which, json.dumps(results[which]), flush=True)
        results["ours"].update(precision=label(ours_precision), param_dtype="float32",
                               attention_dropout=fast_attention(model) or "as the base (none above 0)")
    st_names = [k for k in results if k != "ours"]
    # the fastest ST setting that trained (fp16 autocast can overflow to a NaN loss: no baseline then)
    finite = [k for k in st_names if math.isfinite(results[k]["mean_loss"])] or st_names
    best = max(finite, key=lambda k: results[k]["examples_per_s"])
    ours_loss, st_loss = results["ours"]["mean_loss"], results[best]["mean_loss"]
    agree = abs(ours_loss - st_loss) <= max(0.05, 0.3 * abs(st_loss))
    name = "train-decoder" if args.decoder else "train"
    write_result(name, {
        "model": "SmolLM2-135M shape (random weights)" if args.decoder else Path(model).name,
        "pairs": len(pairs), "batch": args.batch, "lora": args.lora, "query_len": args.query_len,
        "passage_len": args.passage_len, "tokens": tokens,
        "anchors_longer_than_query_len": long_anchors,
        "warmup_steps": args.warmup_steps, "order": sides,
        "timed": "first training step to the end of the last (model loading, optimizer set-up, final save excluded)",
        "ours": results["ours"],
        "sentence_transformers": {k[3:]: results[k] for k in st_names},
        "best_sentence_transformers": best[3:],
        "ratio_examples_per_s": results["ours"]["examples_per_s"] / results[best]["examples_per_s"],
        "ratio_examples_per_s_vs_st_same_precision": (
            results["ours"]["examples_per_s"] / results[f"st_{label(ours_precision)}"]["examples_per_s"]
            if f"st_{label(ours_precision)}" in results else None),
        "losses_agree": agree,
        "goal": ">= 3x the sentence-transformers trainer on an H100 (bf16)",
    })
    if not agree:
        raise SystemExit(f"bench_train: mean losses disagree (ours {ours_loss:.4f}, ST {st_loss:.4f})")


if __name__ == "__main__":
    main()
