"""Stable 63-bit integer keys for chunks, shared by LanceDB rows and Tantivy documents."""

from __future__ import annotations

import hashlib


def chunk_key(chunk_id: str) -> int:
    """A non-negative int64 derived from ``chunk_id`` (blake2b); equal ids give equal keys."""
    digest = hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF
