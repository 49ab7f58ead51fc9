"""Encoding throughput: our dense(+ColBERT tokens) and SPLADE encoders against the plain baselines.

Baselines run in the same process on the same texts, each in every sensible dtype
(``common.baseline_dtypes``: float32, plus bf16 on CUDA and on CPUs with native bf16, plus fp16 on
CUDA), loaded once before timing as ours is:
- dense: ``SentenceTransformer.encode`` of the same model (it produces no token vectors; we do);
- sparse: the plain SPLADE recipe (padded batch → MLM logits over every position → masked max).
Every system runs ``--rounds`` times after an untimed warm-up, the order rotating and flipping
round by round; a ratio is the median over rounds of (baseline time / our time) in the same round.
The headline ``ratio`` is against the fastest baseline setting; ``ratio_vs_float32`` against its
float32 default. Outputs are checked: our pooled vectors against every ST setting's (cosine), our
SPLADE weights against the plain recipe's (max |Δw|, cosine); the run exits 1 (after writing the
result, ``outputs_agree: false``) when they disagree. Imports nothing from lancedb/tantivy, so it
runs on a GPU machine whose image lacks them.

    python bench/bench_encode.py [--n 512] [--rounds 3] [--dense PATH] [--sparse PATH|none]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (baseline_dtypes, fastest, paired_ratio, param_dtype, scifact_texts,  # noqa: E402
                    sentence_transformer, timed_rounds, write_result)

MIN_DENSE_COSINE = 0.999  # bf16 against fp32 keeps >= 0.9999 (encoders/device.py)
MIN_SPARSE_COSINE = 0.99


class PlainSplade:
    """The plain SPLADE recipe, model and tokenizer loaded once (outside the timed rounds, as ours)."""

    def __init__(self, path: str, device, dtype, batch: int = 32):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForMaskedLM.from_pretrained(path, dtype=dtype).eval().to(device)
        self.device, self.batch = device, batch

    def encode(self, texts: list[str]):
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch):
                b = self.tok(texts[i : i + self.batch], padding=True, truncation=True, max_length=256,
                             return_tensors="pt").to(self.device)
                logits = self.model(**b).logits
                rep = (torch.log1p(torch.relu(logits)) * b["attention_mask"].unsqueeze(-1)).amax(dim=1)
                out.append(rep.float().cpu())
        return torch.cat(out)


def _rows(times: dict[str, list[float]], n: int) -> dict:
    return {name: {"passages_per_s": n / statistics.median(secs), "seconds": [round(s, 3) for s in secs]}
            for name, secs in times.items()}


def _ratios(times: dict[str, list[float]], baselines: list[str]) -> dict:
    best = fastest(times, baselines)
    return {
        "best_baseline": best,
        "ratio": paired_ratio(times[best], times["ours"]),
        "ratio_per_round": [round(a / b, 3) for a, b in zip(times[best], times["ours"])],
        "ratio_vs_float32": paired_ratio(times[baselines[0]], times["ours"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--dense", default=None)
    ap.add_argument("--sparse", default=None, help="SPLADE folder; 'none' skips the sparse comparison")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds, their order rotating")
    args = ap.parse_args()
    import numpy as np
    import torch

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.sparse import SparseEncoder

    if args.dense is None or args.sparse is None:
        from workbench.models.cache import resolve_model_path

        args.dense = args.dense or resolve_model_path("all-MiniLM-L6-v2")
        args.sparse = args.sparse or resolve_model_path("splade-tiny")
    texts = scifact_texts(args.n)
    n = len(texts)
    ours = DenseEncoder(args.dense)
    device = ours.device
    dtypes = baseline_dtypes(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    sts = {f"st_{label}": sentence_transformer(args.dense, dtype, device) for label, dtype in dtypes.items()}
    out: dict[str, object] = {}
    systems = {"ours": lambda: out.__setitem__("ours", ours.encode(texts, tokens=True))}
    for name, st in sts.items():
        systems[name] = (lambda name, st: lambda: out.__setitem__(name, st.encode(texts, batch_size=32)))(name, st)
    ours.encode(texts[:32], tokens=True)  # warm-up, untimed
    for st in sts.values():
        st.encode(texts[:32])
    times = timed_rounds(systems, args.rounds, sync)
    mine = np.asarray(out["ours"].dense, dtype=np.float32)
    cosines = {}
    for name in sts:
        ref = np.asarray(out[name], dtype=np.float32)
        cosines[name] = float((mine * (ref / np.linalg.norm(ref, axis=1, keepdims=True))).sum(1).min())
    dense = {
        "ours_dtype": str(ours.dtype).replace("torch.", ""),
        "ours_also_produces_colbert_tokens": True,
        "baseline_dtypes": {name: param_dtype(st) for name, st in sts.items()},
        "systems": _rows(times, n),
        **_ratios(times, list(sts)),
        "min_cosine_to_st": cosines,
        "outputs_agree": min(cosines.values()) >= MIN_DENSE_COSINE,
    }
    dense["ours_passages_per_s"] = dense["systems"]["ours"]["passages_per_s"]
    dense["sentence_transformers_passages_per_s"] = dense["systems"][dense["best_baseline"]]["passages_per_s"]

    sparse = None
    if args.sparse != "none":
        sp = SparseEncoder(args.sparse)
        plains = {f"plain_{label}": PlainSplade(args.sparse, device, dtype) for label, dtype in dtypes.items()}
        sout: dict[str, object] = {}
        ssys = {"ours": lambda: sout.__setitem__("ours", sp.encode(texts))}
        for name, plain in plains.items():
            ssys[name] = (lambda name, plain: lambda: sout.__setitem__(name, plain.encode(texts)))(name, plain)
        sp.encode(texts[:32])  # warm-up, untimed
        for plain in plains.values():
            plain.encode(texts[:32])
        stimes = timed_rounds(ssys, args.rounds, sync)
        reference = sout["plain_float32"].numpy()
        dense_ours = np.zeros(reference.shape, dtype=np.float32)
        for i, v in enumerate(sout["ours"]):
            dense_ours[i, v.ids] = v.weights

        def cos(a, b):
            return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).min())

        sparse = {
            "model": args.sparse,
            "ours_dtype": f"{str(sp._fast_dtype).replace('torch.', '')} candidates, float32 scores",
            "baseline_dtypes": {name: param_dtype(p.model) for name, p in plains.items()},
            "systems": _rows(stimes, n),
            **_ratios(stimes, list(plains)),
            "max_abs_weight_difference": float(np.abs(dense_ours - reference).max()),
            "min_cosine_to_plain_float32": cos(dense_ours, reference),
        }
        sparse["outputs_agree"] = sparse["min_cosine_to_plain_float32"] >= MIN_SPARSE_COSINE
        sparse["ours_passages_per_s"] = sparse["systems"]["ours"]["passages_per_s"]
        sparse["plain_splade_passages_per_s"] = sparse["systems"][sparse["best_baseline"]]["passages_per_s"]

    agree = dense["outputs_agree"] and (sparse is None or sparse["outputs_agree"])
    write_result("encode", {
        "texts": n,
        "device": str(device),
        "dense_model": args.dense,
        "rounds": args.rounds,
        "dense": dense,
        "sparse": sparse,
        "outputs_agree": agree,
    })
    if not agree:
        raise SystemExit("bench_encode: our outputs disagree with the baseline's (see outputs_agree)")


if __name__ == "__main__":
    main()
