"""Incremental, crash-safe indexing of sources into the workspace stores."""
