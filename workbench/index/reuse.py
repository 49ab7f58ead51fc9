"""Vectors of unchanged modes taken from a donor index instead of being encoded again.

A model variant (``wb index --model dense=runs/NAME``) indexes the same documents as its parent
workspace with some models replaced. The modes whose encoder did not change would produce the very
vectors the parent already holds, so the indexer copies them from the parent's LanceDB table and
encodes only the changed modes.

Contract:
- :func:`reusable_modes` compares the donor's recorded ``IndexSettings`` with the target's. A mode is
  reusable when the chunking settings are equal (``chunk_tokens``, ``chunk_overlap``) and the mode's
  encoder is identical: same model (name and fingerprint, or equal fingerprints and byte-identical
  folders) and, for the modes fed by the dense forward pass (dense, zero-shot ColBERT, a projection
  head), the same document template. A trained ColBERT folder (or a joint model filling the colbert
  role) sees raw chunk text: only its own model counts. Sparse sees raw chunk text: only the sparse
  model counts (``sparse_step`` quantizes at write time, from the stored float weights). BM25 is text and is always rebuilt.
- :meth:`Donor.fetch` returns a chunk's vectors only when the donor holds a row with the same chunk key
  whose title and text are byte-identical (the encoders see exactly ``title + text``); any other chunk
  (a document edited since the parent was indexed, windows cut by another tokenizer) is encoded.
- The donor table is read at the version current when the indexer starts (settings read before and
  after pinning it must agree); a read error turns reuse off for the rest of the run (the chunks are
  encoded instead), so a donor re-indexed or compacted meanwhile never yields wrong vectors.
- ``WB_REUSE=0`` turns reuse off (A/B timings).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.index.settings import IndexSettings, settings_from_dict
from workbench.workspace import Workspace

MODES = ("dense", "colbert", "sparse")
MODE_COLUMNS = {"dense": ["vector"], "colbert": ["colbert"], "sparse": ["sparse_ids", "sparse_weights"]}


def reuse_enabled() -> bool:
    return os.environ.get("WB_REUSE", "1").strip().lower() not in ("0", "false", "no", "off")


def _content_digest(path: str | None) -> str | None:
    """sha256 over the relative names and bytes of a folder's files (None if not a folder)."""
    if path is None or not Path(path).is_dir():
        return None
    folder = Path(path)
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            h.update(str(f.relative_to(folder)).encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _same_model(name_a: str, path_a: str | None, fp_a: str, name_b: str, path_b: str | None, fp_b: str) -> bool:
    """Same name and fingerprint (what the index settings call the same model), or equal
    fingerprints and byte-identical folders (a copy that kept the file times)."""
    if fp_a != fp_b:
        return False
    if name_a == name_b:
        return True
    a, b = _content_digest(path_a), _content_digest(path_b)
    return a is not None and a == b


def _colbert_path(name: str) -> str | None:
    if name == "zero-shot":
        return None
    try:
        from workbench.models.cache import resolve_model_path

        return resolve_model_path(name)
    except Exception:  # not installed / moved: cannot tell, treat as changed
        return None


def reusable_modes(donor: IndexSettings, target: IndexSettings) -> list[str]:
    """The modes whose vectors the donor's index holds exactly as ``target`` would encode them."""
    if (donor.chunk_tokens, donor.chunk_overlap) != (target.chunk_tokens, target.chunk_overlap):
        return []
    from workbench.encoders.colbert import is_colbert_folder

    dense_model = _same_model(donor.dense_name, donor.dense_path, donor.dense_fingerprint,
                              target.dense_name, target.dense_path, target.dense_fingerprint)
    dense = dense_model and donor.document_template == target.document_template
    if donor.colbert_name == target.colbert_name == "zero-shot":
        colbert_model = True
    else:
        colbert_model = _same_model(donor.colbert_name, _colbert_path(donor.colbert_name), donor.colbert_fingerprint,
                                    target.colbert_name, _colbert_path(target.colbert_name),
                                    target.colbert_fingerprint)
    from workbench.encoders.joint import is_joint_folder

    target_colbert = _colbert_path(target.colbert_name)
    trained = is_colbert_folder(target_colbert) or is_joint_folder(target_colbert)  # own encoder, raw text
    colbert = colbert_model and (trained or dense)  # zero-shot / projection head: over the dense tokens
    sparse = _same_model(donor.sparse_name, donor.sparse_path, donor.sparse_fingerprint,
                         target.sparse_name, target.sparse_path, target.sparse_fingerprint)
    return [m for m, same in zip(MODES, (dense, colbert, sparse)) if same]


@dataclass
class Reused:
    """Vectors of some chunks of a batch: ``rows[j]`` is the batch index whose vectors are entry j."""

    rows: list[int]
    dense: np.ndarray | None  # [len(rows), dim] float32
    tokens: list[np.ndarray] | None  # [n_tokens, d] float16 each
    sparse: list | None  # SparseVector each


class Donor:
    """A donor index (the parent workspace) read at one table version. ``modes`` empty: no reuse."""

    def __init__(self, workspace: Workspace, settings: IndexSettings) -> None:
        self.workspace = workspace
        self.modes: list[str] = []
        self.reason = ""
        self.table = None
        if not reuse_enabled():
            self.reason = "WB_REUSE=0"
            return
        try:
            self._open(settings)
        except Exception as exc:  # an unreadable donor is no donor
            self.modes, self.table = [], None
            self.reason = f"donor unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    def _open(self, settings: IndexSettings) -> None:
        from workbench.store.lance_store import LanceChunkStore
        from workbench.store.manifest import Manifest

        if not self.workspace.exists() or not self.workspace.lance_dir.exists():
            self.reason = "the donor has no index"
            return

        def recorded():
            with Manifest(self.workspace.manifest_path) as manifest:
                return manifest.get_meta("settings")

        before = recorded()
        store = LanceChunkStore(self.workspace.lance_dir)
        if before is None or not store.exists():
            self.reason = "the donor has no index"
            return
        table = store.table
        table.checkout(table.version)  # pinned: a writer on the donor does not move what we read
        if recorded() != before:
            self.reason = "the donor was re-indexed meanwhile"
            return
        self.modes = reusable_modes(settings_from_dict(before), settings)
        if not self.modes:
            self.reason = "no mode has the same model and chunking"
            return
        self.table = table
        index = table.search().select(["chunk_key"]).with_row_id(True).limit(None).to_arrow()
        keys = index.column("chunk_key").to_numpy()
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]  # sorted chunk keys of the pinned version and their row ids
        self._row_ids = index.column("_rowid").to_numpy()[order]
        fields = {f.name: f.type for f in table.schema}
        self.dense_dim = fields["vector"].list_size
        self.colbert_dim = fields["colbert"].value_type.list_size

    def fetch(self, chunks, keys: list[int]) -> Reused | None:
        """The reusable modes' vectors of the chunks the donor holds byte-identically (None: none)."""
        if not self.modes or not chunks:
            return None
        try:
            return self._fetch(chunks, keys)
        except Exception as exc:  # e.g. the donor compacted its old versions away: encode instead
            self.modes, self.table = [], None
            self.reason = f"donor read failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            return None

    def _fetch(self, chunks, keys: list[int]) -> Reused | None:
        from workbench.encoders.sparse import SparseVector
        from workbench.store.lance_store import split_multivectors

        columns = ["chunk_key", "title", "text"] + [c for m in self.modes for c in MODE_COLUMNS[m]]
        wanted = np.asarray(keys, dtype=np.int64)
        lo = np.searchsorted(self._keys, wanted, side="left")
        hi = np.searchsorted(self._keys, wanted, side="right")
        row_ids = sorted({int(self._row_ids[j]) for a, b in zip(lo, hi) for j in range(a, b)})
        if not row_ids:
            return None
        # rows of the pinned version by row id: only the batch's rows are read (the key and text
        # comparison below decides, so a row id that points elsewhere can only cost an encoding)
        found = self.table.take_row_ids(row_ids).select(columns).to_arrow()
        if found.num_rows == 0:
            return None
        where = {int(k): i for i, k in enumerate(keys)}
        donor_keys = found.column("chunk_key").to_pylist()
        titles, texts = found.column("title").to_pylist(), found.column("text").to_pylist()
        rows: list[int] = []  # batch index per picked donor row
        picked: list[int] = []  # donor row
        taken: set[int] = set()
        for r, (key, title, text) in enumerate(zip(donor_keys, titles, texts)):
            i = where.get(key)
            if i is None or i in taken:
                continue
            chunk = chunks[i]
            if title == chunk.title and text == chunk.text:
                rows.append(i)
                picked.append(r)
                taken.add(i)
        if not rows:
            return None
        found = found.take(picked)
        dense = tokens = sparse = None
        if "dense" in self.modes:
            vec = found.column("vector").combine_chunks().flatten()
            dense = vec.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(rows), -1)
        if "colbert" in self.modes:
            tokens = split_multivectors(found.column("colbert"))
        if "sparse" in self.modes:
            ids_col = found.column("sparse_ids").combine_chunks()
            w_col = found.column("sparse_weights").combine_chunks()
            ids_flat = ids_col.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            w_flat = w_col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            ids_off, w_off = ids_col.offsets.to_numpy(), w_col.offsets.to_numpy()
            sparse = [SparseVector(ids_flat[ids_off[j]:ids_off[j + 1]], w_flat[w_off[j]:w_off[j + 1]])
                      for j in range(len(rows))]
        return Reused(rows, dense, tokens, sparse)
