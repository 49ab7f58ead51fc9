"""Query pipelines: per-mode retrieval, fusion, reranking, and the Searcher that runs them."""
