"""Indexing throughput: the full `wb index` (read, chunk, encode, write both stores, snapshot) on
SciFact, its encoding stage alone, and plain `SentenceTransformer.encode` of the same model on the
same chunk texts — all in one run. The baseline runs in every sensible dtype
(``common.baseline_dtypes``: float32, plus bf16 on CUDA and on CPUs with native bf16, plus fp16 on
CUDA); ``ratio_dense_plus_colbert_vs_st`` is against the fastest of them, each timed once after an
untimed warm-up, as ours. ``ratio_full_index_vs_st_dense_only`` divides a cold in-process
`wb index` (model loads included) by a warm ST encode: an upper bound on the whole pipeline's cost,
not a like-for-like ratio.

    python bench/bench_index.py [--docs 1000]     (--docs 0 = the whole corpus)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SCIFACT, Timer, baseline_dtypes, param_dtype, sentence_transformer, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    args = ap.parse_args()
    from workbench.index.indexer import Indexer
    from workbench.ingest.chunking import Chunker, ChunkingSettings, chunk_input_text
    from workbench.ingest.readers import iter_sources
    from workbench.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-index-"))
    try:
        corpus = tmp / "corpus.jsonl"
        with open(SCIFACT / "corpus.jsonl") as src, open(corpus, "w") as dst:
            for i, line in enumerate(src):
                if args.docs and i >= args.docs:
                    break
                dst.write(line)
        ws = Workspace(tmp / "ws")
        ws.ensure()
        with Timer() as t_index:
            summary = Indexer(ws).run(corpus)
        chunks_total = summary.chunks_written

        from workbench.encoders.bundle import EncoderBundle
        from workbench.index.settings import settings_from_config

        bundle = EncoderBundle(settings_from_config(ws.config()))
        docs = [d for d in iter_sources(corpus) if hasattr(d, "text")]
        chunker = Chunker(bundle.dense.tokenizer, ChunkingSettings())
        texts = [chunk_input_text(c) for cs in chunker.chunk_many(docs) for c in cs]
        bundle.dense.encode(texts[:32], tokens=True)
        bundle.sparse.encode(texts[:32])
        with Timer() as t_dense:
            mine = bundle.dense.encode(texts, tokens=True).dense
        with Timer() as t_sparse:
            bundle.sparse.encode(texts)

        import numpy as np

        mine = np.asarray(mine, dtype=np.float32)
        st_seconds, st_dtypes, cosines = {}, {}, {}
        for label, dtype in baseline_dtypes(bundle.dense.device).items():
            st = sentence_transformer(bundle.settings.dense_path, dtype, bundle.dense.device)
            st.encode(texts[:32])
            with Timer() as t_st:
                ref = np.asarray(st.encode(texts, batch_size=32), dtype=np.float32)
            cosines[f"st_{label}"] = float((mine * (ref / np.linalg.norm(ref, axis=1, keepdims=True))).sum(1).min())
            st_seconds[f"st_{label}"], st_dtypes[f"st_{label}"] = t_st.seconds, param_dtype(st)
            del st
        best = min(st_seconds, key=st_seconds.get)
        n = len(texts)
        write_result(
            "index",
            {
                "corpus": f"scifact first {args.docs or 'all'} docs",
                "docs": summary.docs_indexed,
                "chunks": chunks_total,
                "texts_encoded": n,
                "dense_model": bundle.settings.dense_path,
                "sparse_model": bundle.settings.sparse_path,
                "ours_dtype": str(bundle.dense.dtype).replace("torch.", ""),
                "wb_index_seconds": t_index.seconds,
                "wb_index_chunks_per_s": chunks_total / t_index.seconds,
                "encode_stage": {
                    "dense_plus_colbert_chunks_per_s": n / t_dense.seconds,
                    "sparse_chunks_per_s": n / t_sparse.seconds,
                    "both_chunks_per_s": n / (t_dense.seconds + t_sparse.seconds),
                },
                "baseline_sentence_transformers_encode_chunks_per_s": {k: n / v for k, v in st_seconds.items()},
                "baseline_dtypes": st_dtypes,
                "best_baseline": best,
                "ratio_dense_plus_colbert_vs_st": st_seconds[best] / t_dense.seconds,
                "ratio_dense_plus_colbert_vs_st_float32": st_seconds["st_float32"] / t_dense.seconds,
                "min_cosine_to_st": cosines,
                "outputs_agree": min(cosines.values()) >= 0.999,
                "ratio_full_index_vs_st_dense_only": (chunks_total / t_index.seconds) / (n / st_seconds[best]),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
