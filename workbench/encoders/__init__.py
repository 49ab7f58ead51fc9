"""Text encoders: dense + ColBERT token vectors in one pass, learned-sparse weights, rerankers.

Nothing here imports lancedb, tantivy or textual, so encoding and training code runs on a GPU
machine whose image lacks the index packages.
"""
