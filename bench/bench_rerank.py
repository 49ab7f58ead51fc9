"""Reranking speed: our ``CrossEncoderReranker`` against sentence-transformers' ``CrossEncoder.predict``.

Same model, same (query, passage) pairs, same ``max_length``, one process, every system once a
round, the order rotating and flipping round by round (``common.timed_rounds``), each in its best
settings:

* ours: length-sorted, token-budgeted batches; bf16 on CUDA and on CPUs with native bf16
  (``pick_dtype``; ``WB_DTYPE`` overrides), float32 head;
* sentence-transformers: ``predict`` with its default ``batch_size=32`` (it sorts by length too);
  in float32 (its default: the checkpoint's dtype, no autocast in ``predict``) and, on CUDA or a
  CPU with native bf16, also in bf16 (and fp16 on CUDA). ``ratio_ours_vs_best_st`` is against the
  fastest of its settings, ``ratio_ours_vs_st_default`` against its float32 default; each ratio is
  the median over rounds of (their time / our time) in the same round, so a load change on a
  shared machine hits both sides of a ratio alike.

Pairs: SciFact test queries, each with its judged documents and then random corpus documents
(title + abstract), ``--n`` pairs in all. Default model: a cross-encoder made from the cached
all-MiniLM-L6-v2 (``AutoModelForSequenceClassification``, ``num_labels=1``, random head: speed
only), saved to a temporary folder; ``--model`` takes any ``*ForSequenceClassification`` folder.
``--layerwise FOLDER`` (a ``wb train layerwise`` run's ``model/``) adds our layer-wise reranker at
``--cutoff`` (default: its default cutoff) and at its last layer.

The scores are checked against each other (max |difference| and Spearman correlation with the
float32 baseline). Imports nothing from lancedb/tantivy (runs on a GPU machine without them).
Result: ``bench/results/rerank_speed.json`` (``-gpu`` suffix on a GPU machine).

    python bench/bench_rerank.py [--n 200] [--rounds 3] [--max-length 256] [--model DIR]
                                 [--layerwise DIR] [--cutoff L]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SCIFACT, baseline_dtypes, fastest, paired_ratio, param_dtype, timed_rounds, write_result  # noqa: E402


MIN_SPEARMAN = 0.99


def scifact_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (query, passage) pairs: SciFact test queries, judged documents first, then random ones."""
    queries = {}
    with open(SCIFACT / "queries.jsonl") as f:
        for line in f:
            d = json.loads(line)
            queries[d["_id"]] = d["text"]
    corpus = {}
    with open(SCIFACT / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = f"{d.get('title', '')} {d['text']}".strip()
    judged: dict[str, list[str]] = {}
    with open(SCIFACT / "qrels" / "test.tsv") as f:
        next(f)
        for line in f:
            qid, did, _score = line.rstrip("\n").split("\t")
            judged.setdefault(qid, []).append(did)
    rng = random.Random(seed)
    doc_ids = list(corpus)
    pairs: list[tuple[str, str]] = []
    per_query = 10
    for qid in sorted(judged, key=int):
        docs = [d for d in judged[qid] if d in corpus][:per_query]
        docs += rng.sample(doc_ids, per_query - len(docs))
        pairs.extend((queries[qid], corpus[d]) for d in docs)
        if len(pairs) >= n:
            break
    return pairs[:n]


def minilm_cross_encoder(dest: Path) -> str:
    """A one-logit cross-encoder from the cached MiniLM (random head): same shape as ms-marco-MiniLM-L6."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workbench.models.cache import resolve_model_path

    src = resolve_model_path("all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=torch.float32)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(src).save_pretrained(dest)
    return str(dest)


def spearman(a, b) -> float:
    import numpy as np

    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="pairs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--model", default=None, help="a *ForSequenceClassification folder (default: MiniLM + random head)")
    ap.add_argument("--layerwise", default=None, help="a layer-wise reranker folder (wb train layerwise ... model/)")
    ap.add_argument("--cutoff", type=int, default=None, help="its cutoff layer (default: the run's default cutoff)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    from workbench.encoders.device import pick_device
    from workbench.encoders.rerankers import CrossEncoderReranker

    device = pick_device(args.device)
    pairs = scifact_pairs(args.n)
    tmp = tempfile.TemporaryDirectory()
    model_path = args.model or minilm_cross_encoder(Path(tmp.name) / "minilm-ce")

    systems: dict[str, object] = {}
    ours = CrossEncoderReranker(model_path, device=str(device), max_length=args.max_length)
    systems["ours"] = ours.score_pairs
    st_dtypes = baseline_dtypes(device)  # first: float32, sentence-transformers' default
    st_param_dtypes = {}
    for label, dtype in st_dtypes.items():
        st = CrossEncoder(model_path, device=str(device), max_length=args.max_length,
                          activation_fn=torch.nn.Identity(), model_kwargs={"dtype": dtype})
        if next(st.parameters()).dtype != dtype:  # a version that ignores model_kwargs' dtype
            st.to(dtype)
        st_param_dtypes[f"st_{label}"] = param_dtype(st)
        systems[f"st_{label}"] = (lambda model: lambda p: model.predict(p, batch_size=32, show_progress_bar=False))(st)
    layerwise_info = None
    if args.layerwise:
        from workbench.encoders.layerwise import LayerwiseReranker, read_layerwise_meta

        meta = read_layerwise_meta(args.layerwise)
        cut = LayerwiseReranker(args.layerwise, device=str(device), cutoff=args.cutoff, max_length=args.max_length)
        full = LayerwiseReranker(args.layerwise, device=str(device), cutoff=meta.layers[-1], max_length=args.max_length)
        systems[f"layerwise@{cut.cutoff}"] = cut.score_pairs
        if full.cutoff != cut.cutoff:
            systems[f"layerwise@{full.cutoff}"] = full.score_pairs
        layerwise_info = {"folder": args.layerwise, "layers": list(meta.layers), "cutoff": cut.cutoff,
                          "num_hidden_layers": meta.num_hidden_layers}

    scores: dict[str, np.ndarray] = {}
    for name, fn in systems.items():  # warm-up (kernels, allocator), not timed
        fn(pairs[:32])
    timed = {name: (lambda name, fn: lambda: scores.__setitem__(
        name, np.asarray(fn(pairs), dtype=np.float32).reshape(-1)))(name, fn) for name, fn in systems.items()}
    times = timed_rounds(timed, args.rounds, torch.cuda.synchronize if device.type == "cuda" else None)

    rows = {}
    for name, secs in times.items():
        best = min(secs)
        rows[name] = {"pairs_per_s": len(pairs) / statistics.median(secs), "best_pairs_per_s": len(pairs) / best,
                      "seconds": [round(s, 4) for s in secs]}
    st_names = [n for n in rows if n.startswith("st_")]
    best_st = fastest(times, st_names)
    reference = scores["st_float32"] if "st_float32" in scores else scores[best_st]
    agreement = {name: {"max_abs_diff_vs_reference": float(np.max(np.abs(scores[name] - reference))),
                        "spearman_vs_reference": spearman(scores[name], reference)}
                 for name in rows if not name.startswith("layerwise")}
    result = {
        "model": args.model or "all-MiniLM-L6-v2 + random one-logit head (AutoModelForSequenceClassification)",
        "device": str(device),
        "ours_dtype": str(ours.dtype).replace("torch.", ""),
        "pairs": len(pairs),
        "rounds": args.rounds,
        "max_length": args.max_length,
        "torch_threads": torch.get_num_threads(),
        "mean_pair_tokens": float(np.mean([len(x) for x in ours.tokenize(pairs)[0]])),
        "systems": rows,
        "st_dtypes": st_param_dtypes,
        "order": "every system once a round, the order rotating and flipping round by round",
        "best_sentence_transformers": best_st,
        # per round (adjacent runs share the machine's load): time of sentence-transformers / ours
        "ratio_ours_vs_best_st": paired_ratio(times[best_st], times["ours"]),
        "ratio_ours_vs_st_default": paired_ratio(times[st_names[0]], times["ours"]),
        "ratio_per_round_vs_best_st": [round(a / b, 3) for a, b in zip(times[best_st], times["ours"])],
        "agreement": agreement,
        # ours against the float32 reference: the same ranking (speed is not bought with other scores)
        "outputs_agree": agreement["ours"]["spearman_vs_reference"] >= MIN_SPEARMAN,
        "reference": "st_float32" if "st_float32" in scores else best_st,
    }
    if layerwise_info:
        layerwise_info["pairs_per_s"] = {n: rows[n]["pairs_per_s"] for n in rows if n.startswith("layerwise")}
        result["layerwise"] = layerwise_info
    write_result("rerank_speed", result)
    tmp.cleanup()
    if not result["outputs_agree"]:
        raise SystemExit(f"bench_rerank: our scores rank unlike the reference's (Spearman < {MIN_SPEARMAN})")


if __name__ == "__main__":
    main()
