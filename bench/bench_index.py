"""Indexing throughput: the full `wb index` (read, chunk, encode, write both stores, snapshot) on
SciFact, its encoding stage alone, and plain `SentenceTransformer.encode` of the same model on the
same chunk texts — all in one run.

    python bench/bench_index.py [--docs 1000]     (--docs 0 = the whole corpus)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import SCIFACT, Timer, write_result  # noqa: E402


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
            bundle.dense.encode(texts, tokens=True)
        with Timer() as t_sparse:
            bundle.sparse.encode(texts)

        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(bundle.settings.dense_path)
        st.encode(texts[:32])
        with Timer() as t_st:
            st.encode(texts, batch_size=32)
        n = len(texts)
        write_result(
            "index",
            {
                "corpus": f"scifact first {args.docs or 'all'} docs",
                "docs": summary.docs_indexed,
                "chunks": chunks_total,
                "wb_index_seconds": t_index.seconds,
                "wb_index_chunks_per_s": chunks_total / t_index.seconds,
                "encode_stage": {
                    "dense_plus_colbert_chunks_per_s": n / t_dense.seconds,
                    "sparse_chunks_per_s": n / t_sparse.seconds,
                    "both_chunks_per_s": n / (t_dense.seconds + t_sparse.seconds),
                },
                "baseline_sentence_transformers_encode_chunks_per_s": n / t_st.seconds,
                "ratio_dense_plus_colbert_vs_st": t_st.seconds / t_dense.seconds,
                "ratio_full_index_vs_st_dense_only": (chunks_total / t_index.seconds) / (n / t_st.seconds),
            },
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
