"""The stores: LanceDB (chunk rows, dense vectors, ColBERT multivectors, sparse vectors),
Tantivy (BM25 text and quantized learned-sparse postings), and the SQLite manifest that says
which documents are completely written to both."""
