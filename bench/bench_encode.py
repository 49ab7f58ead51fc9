"""Encoding throughput: our dense(+ColBERT tokens) and SPLADE encoders against the plain baselines.

Baselines run in the same process on the same texts:
- dense: ``SentenceTransformer.encode`` of the same model (it produces no token vectors; we do);
- sparse: the plain SPLADE recipe (padded batch → MLM logits over every position → masked max).
Imports nothing from lancedb/tantivy, so it runs on a GPU machine whose image lacks them.

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
    args = ap.parse_args()
    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.sparse import SparseEncoder

    if args.dense is None or args.sparse is None:
        from workbench.models.cache import resolve_model_path

        args.dense = args.dense or resolve_model_path("all-MiniLM-L6-v2")
        args.sparse = args.sparse or resolve_model_path("splade-tiny")
    texts = scifact_texts(args.n)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(args.dense)
    st.encode(texts[:32])
    with Timer() as t_st:
        ref = st.encode(texts, batch_size=32)
    ours = DenseEncoder(args.dense)
    ours.encode(texts[:32], tokens=True)
    with Timer() as t_ours:
        out = ours.encode(texts, tokens=True)
    import numpy as np

    cos = float((out.dense * (ref / np.linalg.norm(ref, axis=1, keepdims=True))).sum(1).min())

    sparse = None
    if args.sparse != "none":
        sp = SparseEncoder(args.sparse)
        sp.encode(texts[:32])
        with Timer() as t_sp:
            vecs = sp.encode(texts)
        plain_splade(args.sparse, texts[:32])
        with Timer() as t_plain:
            plain = plain_splade(args.sparse, texts)
        dense_plain = np.zeros(plain.shape, dtype=np.float32)
        for i, v in enumerate(vecs):
            dense_plain[i, v.ids] = v.weights
        sparse = {
            "ours_passages_per_s": len(texts) / t_sp.seconds,
            "plain_splade_passages_per_s": len(texts) / t_plain.seconds,
            "ratio": t_plain.seconds / t_sp.seconds,
            "max_abs_weight_difference": float(np.abs(dense_plain - plain.float().numpy()).max()),
        }

    n = len(texts)
    write_result(
        "encode",
        {
            "texts": n,
            "dense_model": args.dense,
            "dense": {
                "ours_passages_per_s": n / t_ours.seconds,
                "ours_dtype": str(ours.dtype),
                "ours_also_produces_colbert_tokens": True,
                "sentence_transformers_passages_per_s": n / t_st.seconds,
                "ratio": t_st.seconds / t_ours.seconds,
                "min_cosine_to_st": cos,
            },
            "sparse": sparse,
        },
    )


if __name__ == "__main__":
    main()
