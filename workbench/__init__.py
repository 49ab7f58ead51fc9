"""wb: the retrieval workbench.

Importing this package is cheap: it pulls in no torch, lancedb or tantivy. Heavy
modules are imported by the functions that need them.
"""

__version__ = "0.1.0"
