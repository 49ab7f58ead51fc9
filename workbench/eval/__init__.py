"""``wb eval DATASET``: measure pipelines on a BEIR (or FlagEmbedding-style) dataset.

Modules: ``dataset`` (loading and validation), ``runner`` (indexing, running, ranx metrics and
tests), ``report`` (terminal table, JSON, TREC run files), ``tune`` (fusion/rerank defaults chosen
on the train split: ``wb eval DATASET --tune``).

Command line::

    wb eval DATASET [--split test] [--pipeline bm25,dense,hybrid] [--depth 100] [-w WS]
                    [--model ROLE=NAME ...] [--per-query] [--top N] [--json] [--run-dir DIR]

The dataset's corpus is indexed into its own workspace (``-w``, else
``$WB_EVAL_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/wb/eval``, folder ``<dataset>-<sha1(corpus path)[:8]>``); the
index is incremental, so a second run encodes nothing and an interrupted run is simply rerun.
Bad datasets (missing files, qrels naming unknown queries, a corpus holding none of the relevant
documents, a query id given twice, empty split) exit 2 with one line on stderr.

``--json`` prints exactly one JSON object on stdout (progress goes to stderr as JSON lines
``{"phase", "done", "total", ...}``). Metric values are fractions in [0, 1]::

    {
      "dataset": str,            # folder name
      "split": str,
      "queries": int,            # evaluated queries (those with a relevant document in the split)
      "depth": int,              # documents retrieved per query
      "baseline": str,           # the first pipeline
      "wall_seconds": float,     # the whole command: index check, model loads, queries, scoring
      "test": "paired t-test",   # two-sided paired Student's t-test (ranx, stat_test="student")
      "pipelines": [
        {"name": str,
         "metrics": {"ndcg@10": float, "mrr@10": float, "recall@100": float, "map@100": float},
         "seconds": float,       # querying time of this pipeline (models already loaded)
         "delta":   {metric: float} | null,         # null for the baseline
         "p_value": {metric: float | null} | null,  # null for the baseline
         "wins": int | null, "losses": int | null, "ties": int | null,   # per-query nDCG@10
         "models": {role: label},                    # the models the pipeline ran ("zero-shot" where it applies)
         "baseline": str | null,                     # what delta/p_value/W-L-T are against
         "rerank": {"depth": int, "interpolation": float},   # only for +rerank pipelines
         "run_file": str}                            # only for --run files (read, not searched)
      ],
      "notes": [str],            # what the figures' reader should know (also on stderr as
                                 # {"phase": "note", "message"} lines): documents the corpus lacks,
                                 # judged queries without a relevant document, a depth under 100
      "per_query": [             # only with --per-query: N largest gains then N largest losses
        {"pipeline": str, "vs": str,   # the pipeline, and the one its delta is against
         "query_id": str, "query": str,
         "baseline": float, "value": float, "delta": float}   # nDCG@10 per query
      ],
      # extra, informative: "dataset_path", "format" ("beir" | "flagembedding"), "workspace" (a path;
      # [base, variant] with --compare; null when only --run files were scored),
      # "index_seconds", "load_seconds", "docs_indexed" (0 when the index was reused)
    }

``map@100`` is average precision over the top 100 divided by all relevant documents (trec_eval
``map_cut_100``, BEIR ``MAP@100``).
"""
