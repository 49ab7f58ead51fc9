"""Ingestion: turn a folder, a file or a BEIR dataset into ``SourceDocument`` records.

``workbench.ingest.readers.iter_sources`` is the single entry point: it walks the
input deterministically and yields one ``SourceDocument`` per readable document and
one ``SkippedFile`` (with a short human reason) per file it refused. It never raises
for a bad file; only a missing root raises ``InputError``.

Importing this package is cheap: BeautifulSoup and pypdf are imported only when the
first HTML or PDF file is read.
"""
