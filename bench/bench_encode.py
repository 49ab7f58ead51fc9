"""Encoding throughput: our dense(+ColBERT tokens) and SPLADE encoders against the plain baselines.

Baselines run in the same process on the same texts:
- dense: ``SentenceTransformer.encode`` of the same model (it produces no token vectors; we do);
- sparse: the plain SPLADE recipe (padded batch → MLM logits over every position → masked max).
Each side runs ``--rounds`` times, the order alternating (A B, B A, ...), after an untimed warm-up;
a ratio is the median over rounds of (baseline time / our time) in the same round. Imports nothing
from lancedb/tantivy, so it runs on a GPU machine whose image lacks them.

    python bench/bench_encode.py [--n 512] [--dense PATH] [--sparse PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Timer, scifact_texts, write_result  # noqa: E402


def plain_splade(path: str, texts: list[str], batch: int = 32):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            b = tok(texts[i : i + batch], padding=True, truncation=True, max_length=256, return_tensors="pt").to(device)
            logits = model(**b).logits
            rep = (torch.log1p(torch.relu(logits)) * b["attention_mask"].unsqueeze(-1)).amax(dim=1)
            out.append(rep.cpu())
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--dense", default=None)
    ap.add_argument("--sparse", default=None, help="SPLADE folder; 'none' skips the sparse comparison")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds, their order alternating")
    args = ap.parse_args()
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.sparse import SparseEncoder

    if args.dense is None or args.sparse is None:
        from workbench.models.cache import resolve_model_path

        args.dense = args.dense or resolve_model_path("all-MiniLM-L6-v2")
        args.sparse = args.sparse or resolve_model_path("splade-tiny")
    texts = scifact_texts(args.n)
    import statistics

    import numpy as np
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(args.dense)
    ours = DenseEncoder(args.dense)
    st.encode(texts[:32])  # warm-up, untimed
    ours.encode(texts[:32], tokens=True)
    # rounds alternate the order (A B, B A, ...): a load change on a shared machine falls on both
    t_st, t_ours = [], []
    for r in range(args.rounds):
        for side in (("st", "ours") if r % 2 == 0 else ("ours", "st")):
            with Timer() as t:
                if side == "st":
                    ref = st.encode(texts, batch_size=32)
                else:
                    out = ours.encode(texts, tokens=True)
            (t_st if side == "st" else t_ours).append(t.seconds)
    cos = float((out.dense * (ref / np.linalg.norm(ref, axis=1, keepdims=True))).sum(1).min())

    sparse = None
    if args.sparse != "none":
        sp = SparseEncoder(args.sparse)
        sp.encode(texts[:32])
        plain_splade(args.sparse, texts[:32])
        t_sp, t_plain = [], []
        for r in range(args.rounds):
            for side in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
                with Timer() as t:
                    if side == "plain":
                        plain = plain_splade(args.sparse, texts)
                    else:
                        vecs = sp.encode(texts)
                (t_plain if side == "plain" else t_sp).append(t.seconds)
        dense_plain = np.zeros(plain.shape, dtype=np.float32)
        for i, v in enumerate(vecs):
            dense_plain[i, v.ids] = v.weights
        sparse = {
            "ours_passages_per_s": len(texts) / statistics.median(t_sp),
            "plain_splade_passages_per_s": len(texts) / statistics.median(t_plain),
            "ratio": statistics.median(a / b for a, b in zip(t_plain, t_sp)),
            "ratio_per_round": [round(a / b, 3) for a, b in zip(t_plain, t_sp)],
            "max_abs_weight_difference": float(np.abs(dense_plain - plain.float().numpy()).max()),
        }

    n = len(texts)
    write_result(
        "encode",
        {
            "texts": n,
            "dense_model": args.dense,
            "rounds": args.rounds,
            "dense": {
                "ours_passages_per_s": n / statistics.median(t_ours),
                "ours_dtype": str(ours.dtype),
                "ours_also_produces_colbert_tokens": True,
                "sentence_transformers_passages_per_s": n / statistics.median(t_st),
                # the median over rounds of (their time / our time) in the same round
                "ratio": statistics.median(a / b for a, b in zip(t_st, t_ours)),
                "ratio_per_round": [round(a / b, 3) for a, b in zip(t_st, t_ours)],
                "min_cosine_to_st": cos,
            },
            "sparse": sparse,
        },
    )


if __name__ == "__main__":
    main()
