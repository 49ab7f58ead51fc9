"""``wb index PATH``: read, chunk, encode once, write LanceDB + Tantivy, record in the manifest.

Guarantees (see ``store.manifest`` for the write protocol):
- an unchanged document is never re-encoded; a changed one is replaced; a deleted one disappears
  from every store;
- a run killed at any moment, followed by a re-run, leaves both stores complete, consistent with
  each other and free of duplicates;
- if the configured models differ from the ones that built the index, the index is rebuilt;
- with a ``donor`` (a model variant's parent workspace) the modes whose encoder is unchanged are
  copied from the donor's table for chunks it holds byte-identically, and only the changed modes are
  encoded (``index.reuse``); the write protocol is the same, only where vectors come from differs.

Roots never overlap, so a document is never indexed twice nor silently replaced by another root's:
- a document id is its path relative to the indexed root (BEIR: its ``_id``); when a document of this
  root has the id of another root's document, the run is refused before anything is written
  (``InputError`` naming the id and both roots: index their common parent, or use another
  workspace), a folder's even for an identical file; two BEIR corpora may share a document of the
  same id and content, which stays as it is;
- a path inside an indexed root that the root's walk reads refreshes that root instead;
- a root that contains indexed roots takes them over: their documents move to it (re-encoded only
  where their id or file changed, e.g. ``groupby.md`` of ``corpus/itertools`` → ``itertools/groupby.md``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from workbench.config import IndexConfig, WorkspaceConfig
from workbench.errors import IndexingError, InputError, UsageError, WorkspaceError
from workbench.index.settings import IndexSettings, settings_from_config, settings_from_dict
from workbench.index.unfinished import UNFINISHED_RUN, hint_flag, resume_command
from workbench.ingest.chunking import Chunker, ChunkingSettings, chunk_input_text
from workbench.store.keys import chunk_key
from workbench.store.manifest import DocRecord, Manifest, read_roots_to_reindex
from workbench.text import plural
from workbench.types import Chunk, SkippedFile, SourceDocument
from workbench.workspace import Workspace

# manifest meta: set (committed) before a run or a removal first writes to the stores, cleared once its
# settle (LanceDB compaction, the Tantivy purge of deleted docs, garbage collection) has ended, so the
# next run of any root completes a settle that a kill cut off (it had nothing left to write, so it
# would otherwise settle nothing: BM25 kept counting the deleted chunks, LanceDB stayed uncompacted)
UNSETTLED = "unsettled"
# the IVF partitions the dense ANN index was last trained with (Indexer._ensure_dense_index)
DENSE_INDEX_PARTITIONS = "dense_index_partitions"


@dataclass
class IndexSummary:
    """What one ``wb index`` run did."""

    root: str
    files_seen: int = 0
    docs_indexed: int = 0
    docs_unchanged: int = 0
    docs_removed: int = 0
    chunks_written: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    not_read: dict[str, int] = field(default_factory=dict)  # files of types wb does not read, by extension ("" none)
    seconds: float = 0.0
    total_docs: int = 0
    total_chunks: int = 0
    rebuilt: str = ""
    reused: int = 0  # chunks whose unchanged modes were copied from the donor index
    reused_modes: list[str] = field(default_factory=list)
    reused_from: str = "the parent"  # where reused vectors came from (a rebuild: "the old index")
    note: str = ""  # how the roots changed: a covering root refreshed instead, indexed roots taken over

    def add_written(self, part: "IndexSummary") -> None:
        """Count in what another root's run of the same call read and wrote (its files, documents,
        chunks and skipped files); the workspace's totals become that run's, the later one."""
        self.files_seen += part.files_seen
        self.docs_indexed += part.docs_indexed
        self.chunks_written += part.chunks_written
        self.skipped += part.skipped
        for suffix, n in part.not_read.items():
            self.not_read[suffix] = self.not_read.get(suffix, 0) + n
        self.total_docs, self.total_chunks = part.total_docs, part.total_chunks

    def to_json(self) -> dict:
        """The `wb index --json` summary (README): every field, ``skipped`` as {path, reason};
        ``rebuilt`` (what a settings change rebuilt), ``reused_from`` (no vectors reused) and
        ``note`` null when there is nothing to say; ``total_*`` what the workspace holds after it."""
        from dataclasses import asdict

        data = asdict(self)
        data["skipped"] = [{"path": s.path, "reason": s.reason} for s in self.skipped]
        data["rebuilt"] = self.rebuilt or None
        data["reused_from"] = self.reused_from if self.reused else None
        data["note"] = self.note or None
        return data

    def not_read_text(self, most: int = 4) -> str:
        """``"not read (types wb does not read): 3 .docx, 1 .xlsx"``, the commonest ``most`` types
        (then ``"…"``), or ``""`` when the walk passed over none."""
        if not self.not_read:
            return ""
        ranked = sorted(self.not_read.items(), key=lambda kv: (-kv[1], kv[0]))
        parts = [f"{n} {suffix or '(no extension)'}" for suffix, n in ranked[:most]]
        more = ", …" if len(ranked) > most else ""
        return f"not read (types wb does not read): {', '.join(parts)}{more}"

    def line(self) -> str:
        """The human summary (README, `wb index`): ``"<N> files read; [note; ]indexed <d> docs (<c>
        chunks[; modes reused from ...]), <u> unchanged, <r> removed, skipped: <n> <kind>, ...[; not
        read ...]; workspace holds <D> docs / <C> chunks; <s> s"``. Files, not documents: a BEIR
        ``corpus.jsonl`` is one file of many documents, and a duplicate ``_id`` is one skip."""
        reasons: dict[str, int] = {}
        for s in self.skipped:
            key = reason_kind(s.reason)
            reasons[key] = reasons.get(key, 0) + 1
        skipped = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
        reused = ""
        if self.reused:
            reused = f"; {', '.join(self.reused_modes)} reused from {self.reused_from}"
            if self.reused < self.chunks_written:
                reused += f" for {self.reused}"
        note = f"{self.note}; " if self.note else ""
        not_read = f"; {self.not_read_text()}" if self.not_read else ""
        return (
            f"{plural(self.files_seen, 'file')} read; {note}indexed {plural(self.docs_indexed, 'doc')} ({plural(self.chunks_written, 'chunk')}{reused}), "
            f"{self.docs_unchanged} unchanged, {self.docs_removed} removed, skipped: {skipped}{not_read}; workspace holds "
            f"{plural(self.total_docs, 'doc')} / {plural(self.total_chunks, 'chunk')}; {self.seconds:.1f} s"
        )



ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)

# a skip reason's variable tail: ": <detail>", " (<detail>)", or the id / path after these words
_REASON_DETAIL = re.compile(r"(:| \(|(?<=duplicate _id) |(?<=duplicate id) |(?<=already read) as ).*$")


def reason_kind(reason: str) -> str:
    """The kind of a skip reason, without its detail, so a summary counts kinds, not instances:
    ``"too large (2.5 MB > 1.0 MB limit)"`` -> ``"too large"``, ``"duplicate _id d0"`` ->
    ``"duplicate _id"``, ``"malformed JSON: ..."`` -> ``"malformed JSON"``."""
    return _REASON_DETAIL.sub("", reason).strip() or reason


def _file_of(skipped_path: str) -> str:
    """The file a skipped item belongs to: ``corpus.jsonl:3`` (a BEIR line) -> ``corpus.jsonl``."""
    head, sep, line = skipped_path.rpartition(":")
    return head if sep and line.isdigit() and not Path(skipped_path).exists() else skipped_path


class Indexer:
    """Indexes one root into a workspace (after a settings rebuild, the other indexed roots too).
    Hold no other writer on the workspace meanwhile."""

    def __init__(
        self,
        workspace: Workspace,
        config: WorkspaceConfig | None = None,
        *,
        progress: ProgressFn | None = None,
        batch_chunks: int = 256,
        device: str | None = None,
        donor: Workspace | None = None,
    ) -> None:
        """``donor``: an index of the same documents (a variant's parent) whose vectors of the modes
        with unchanged encoders are reused instead of encoded (``WB_REUSE=0`` turns this off)."""
        self.workspace = workspace
        self.donor = donor
        self._donor = None  # the opened index.reuse.Donor during run(), when it has reusable modes
        self.config = config or workspace.config()
        self.progress = progress or (lambda phase, done, total: None)
        self.batch_chunks = batch_chunks
        self.device = device

    def run(self, root: Path) -> IndexSummary:
        """Index ``root`` (a folder or file; a folder inside an indexed root refreshes that root).

        When the settings changed, the stores are rebuilt and the other indexed roots are indexed
        again in the same call (one that now holds nothing is dropped, one that is missing stays to
        be re-indexed; both are said in the note). Those roots are recorded with the rebuild, so a
        killed run leaves them to the next run, whatever root it is given.

        A rebuild of an index that holds documents is built beside it and swapped in when complete
        (``index.rebuild``): queries keep the old index meanwhile, unchanged modes are copied from it."""
        from workbench.index import rebuild

        window = _window_problem(settings_from_config(self.config))
        if window and self.donor is None:  # the workspace's own chunking: the user can change it
            raise UsageError(f"wb.toml: [index] {window}; use at most the model's length")
        rebuild.settle(self.workspace)
        discarded = ""
        if self.donor is None:  # a variant (which has a donor already) is rebuilt in place
            reason = self.rebuild_reason()
            if reason:
                return self._staged_rebuild(Path(root), reason)
            staging = rebuild.staging_workspace(self.workspace).root
            if staging.exists():  # wb.toml is back to what the live index holds (or it never held a manifest)
                if rebuild.in_progress(self.workspace):
                    discarded = "discarded the rebuild that was cut off: wb.toml is back to this index's settings"
                with self.workspace.write_lock():
                    shutil.rmtree(staging, ignore_errors=True)
        summary = self._run_root(Path(root))
        if discarded:
            summary.note = _join(discarded, summary.note)
        if window:  # a variant's model reads less than the parent's chunks: said, not refused
            summary.note = _join(summary.note, f"this model's {window}")
        for left in self._roots_to_reindex():
            other = Path(left)
            if not other.exists():  # an unmounted drive, a moved folder: kept to re-index, said loudly
                summary.note = _join(summary.note, f"{other} is missing, so its documents are out of the rebuilt "
                                                   f"index: restore it and run {resume_command(self.workspace, None)}, or "
                                                   f"`wb index --remove {other}{hint_flag(self.workspace)}`")
                continue
            try:
                extra = self._run_root(other)
            except InputError as exc:  # nothing to index there any more
                self._drop_reindex(str(other))
                summary.note = _join(summary.note, f"not re-indexed {other}: {exc}")
                continue
            summary.note = _join(summary.note, f"re-indexed {other} ({extra.docs_indexed} docs) with the new settings")
            summary.add_written(extra)
            summary.seconds += extra.seconds
        return summary

    def rebuild_reason(self) -> str:
        """Why the live index (one that holds documents) must be rebuilt for this config ("" if not):
        a run then builds the new index beside it (``index.rebuild``)."""
        if not self.workspace.manifest_path.exists() or not self.workspace.lance_dir.exists():
            return ""
        with Manifest(self.workspace.manifest_path) as manifest:
            recorded = manifest.get_meta("settings")
            holds = manifest.count_docs() > 0
        if recorded is None or not holds:
            return ""
        return _rebuild_reason(recorded, settings_from_config(self.config))

    def _staged_rebuild(self, root: Path, reason: str) -> IndexSummary:
        """Index ``root`` and every other root of the live index into the staging workspace (the live
        index is the donor of unchanged modes), then swap it in. A root that is missing stays to be
        re-indexed; one that yields nothing any more is dropped; both are said in the note."""
        from workbench.index import rebuild

        started = time.perf_counter()
        if not root.exists():
            raise InputError(f"no such file or folder: {root}")
        _refuse_a_workspace(root.resolve(), self.workspace.root)
        indexed = self._indexed_roots()
        asked = str(_covering_root(indexed, root.resolve(), self.config.index.exclude) or root.resolve())
        others = [str(r) for r in indexed] + self._roots_to_reindex()
        if asked not in others:  # a new root is refused before anything is staged if it holds
            not_read: dict[str, int] = {}  # nothing, or would replace another root's documents
            docs, skipped = _read_root(Path(asked), self.config.index, not_read)
            if not docs:
                _refuse_empty(Path(asked), skipped, not_read)
            with Manifest(self.workspace.manifest_path) as manifest:
                _claim(manifest, asked, docs, self.config.index.exclude)
        summary = IndexSummary(root=asked, reused_from="the old index",
                               rebuilt=reason.replace("rebuilding the index", "rebuilt the index beside the old one"))
        with self.workspace.write_lock():
            staging = rebuild.stage(self.workspace, [asked] + others, self.config)
            inner = Indexer(staging, self.config, progress=self.progress, batch_chunks=self.batch_chunks,
                            device=self.device, donor=self.workspace)
            missing = []
            for left in rebuild.staged_roots(self.workspace):
                if not Path(left).exists():
                    missing.append(left)
                    continue
                try:
                    part = inner._run_root(Path(left))
                except InputError as exc:  # nothing to index there (any more)
                    rebuild.forget_root(self.workspace, left)
                    if left == asked:
                        raise
                    summary.note = _join(summary.note, f"not re-indexed {left}: {exc}")
                    continue
                if left == asked:
                    summary.note = _join(part.note, summary.note)
                else:
                    summary.note = _join(summary.note, f"re-indexed {left} ({part.docs_indexed} docs) with the new settings")
                summary.add_written(part)
                summary.docs_unchanged += part.docs_unchanged  # indexed by an earlier, cut-off run of this rebuild
                summary.reused += part.reused
                summary.reused_modes = [m for m in ("dense", "colbert", "sparse")
                                        if m in summary.reused_modes or m in part.reused_modes]
            if missing:  # the old index keeps answering with every folder until they are back or removed
                gone = ", ".join(missing)
                summary.note = _join(summary.note, f"{gone} {'is' if len(missing) == 1 else 'are'} missing: the rebuild "
                                                   "waits for it (the old index answers meanwhile, with every folder); "
                                                   f"restore it and run {resume_command(self.workspace, None)}, or "
                                                   f"`wb index --remove {missing[0]}{hint_flag(self.workspace)}`")
                summary.rebuilt = reason.replace("rebuilding the index", "the rebuild is not finished")
                summary.total_docs, summary.total_chunks = self._live_totals()
            else:
                self.progress("swapping", 0, 0)
                rebuild.swap(self.workspace)
        summary.seconds = time.perf_counter() - started
        return summary

    def _live_totals(self) -> tuple[int, int]:
        with Manifest(self.workspace.manifest_path) as manifest:
            return manifest.count_docs(), manifest.count_chunks()

    def _roots_to_reindex(self) -> list[str]:
        return read_roots_to_reindex(self.workspace.manifest_path)

    def _drop_reindex(self, root: str) -> None:
        with self.workspace.write_lock():
            with Manifest(self.workspace.manifest_path) as manifest:
                manifest.reindexed(root)

    def _run_root(self, root: Path) -> IndexSummary:
        from workbench.encoders.bundle import EncoderBundle
        from workbench.store.lance_store import LanceChunkStore
        from workbench.store.tantivy_store import TantivyChunkStore

        started = time.perf_counter()
        root = Path(root)
        if not root.exists():
            raise InputError(f"no such file or folder: {root}")
        if root.is_file():  # a file reached through a symlink is indexed (and named) as its target, every run
            root = root.resolve()
        asked = root.resolve()
        _refuse_a_workspace(asked, self.workspace.root)
        indexed = self._indexed_roots()
        covering = _covering_root(indexed, asked, self.config.index.exclude)
        note = ""
        if covering is not None:
            note = f"{asked} is inside the indexed folder {covering}: refreshed that folder"
            root = covering
        source = str(root.resolve())
        summary = IndexSummary(root=source, note=note)
        settings = settings_from_config(self.config)

        self.progress("reading files", 0, 0)
        docs, skipped = _read_root(root, self.config.index, summary.not_read)
        summary.skipped += skipped
        # files, not documents: a BEIR corpus.jsonl is one file of many documents (its skipped
        # lines are named FILE:LINE)
        # (a skipped folder, e.g. a symlink loop or a nested workspace, is not a file)
        summary.files_seen = len({d.path for d in docs}
                                 | {_file_of(s.path) for s in summary.skipped if not Path(s.path).is_dir()})
        if not docs and covering is None and Path(source) not in indexed and not self._donor_indexes(source):
            _refuse_empty(root, summary.skipped, summary.not_read)  # a new root that yields nothing: say why, write nothing

        self.workspace.ensure()
        with self.workspace.write_lock():
            with Manifest(self.workspace.manifest_path) as manifest:
                recorded = manifest.get_meta("settings")
                # A rebuild forgets every document, so only an index that is kept can clash.
                kept = recorded is not None and not _rebuild_reason(recorded, settings)
                covered = _claim(manifest, source, docs, self.config.index.exclude) if kept else []
                lance = LanceChunkStore(self.workspace.lance_dir)
                tantivy_store = TantivyChunkStore(self.workspace.tantivy_dir, settings.sparse_step)
                self.progress("loading models", 0, 0)
                bundle = EncoderBundle(settings, device=self.device)
                donor = None
                if self.donor is not None and Path(self.donor.root).resolve() != Path(self.workspace.root).resolve():
                    from workbench.index.reuse import Donor

                    donor = Donor(self.donor, settings)
                self._donor = donor if donor is not None and donor.modes else None
                refilled = self._refill_missing_tantivy(manifest, lance, tantivy_store)
                summary.rebuilt = self._prepare(manifest, lance, tantivy_store, settings, bundle)
                summary.note = _join(summary.note, refilled)
                self._recover(manifest, lance, tantivy_store)
                if covered:
                    manifest.set_meta(UNSETTLED, True)
                    taken = self._take_over(manifest, source, covered, docs, lance, tantivy_store)
                    many = "s" if len(covered) > 1 else ""
                    took = f"took over the indexed folder{many} {', '.join(covered)} ({plural(taken, 'doc')})"
                    summary.note = f"{summary.note}; {took}" if summary.note else took

                unfinished = dict(manifest.get_meta(UNFINISHED_RUN) or {})  # root -> documents it set out to index
                if source in unfinished:
                    summary.note = _join(summary.note, "continued the run that was cut off")
                known = manifest.hashes()
                seen = {d.doc_id for d in docs}
                removed = [d for d in manifest.hashes(source) if d not in seen]
                todo = [d for d in docs if known.get(d.doc_id) != d.content_hash]
                summary.docs_unchanged = len(docs) - len(todo)
                if todo or removed:  # marked until the run ends: a query meanwhile, or after a kill, says it is partial
                    manifest.set_meta(UNFINISHED_RUN, {**unfinished, source: len(todo)})
                    manifest.set_meta(UNSETTLED, True)
                if removed:
                    _delete_docs(removed, source, manifest, lance, tantivy_store)
                    summary.docs_removed = len(removed)
                if todo:
                    self._index_docs(todo, known, source, manifest, lance, tantivy_store, bundle, summary)
                self._settle(manifest, lance, tantivy_store, summary, changed=bool(removed or todo or covered))
                manifest.add_root(source)  # indexed until `wb index --remove`, also while it holds nothing
                manifest.reindexed(source)
                if todo or removed or source in unfinished:
                    unfinished.pop(source, None)
                    manifest.set_meta(UNFINISHED_RUN, unfinished or None)
        summary.seconds = time.perf_counter() - started
        return summary

    def remove(self, root: Path) -> IndexSummary:
        """Drop the indexed root ``root`` (which need not exist any more): its documents leave every
        store under the same write protocol as a run (intent logged, then LanceDB and Tantivy, then
        the manifest), so a killed removal is completed by the next run. InputError when ``root`` is
        not an indexed root of this workspace."""
        from workbench.store.lance_store import LanceChunkStore
        from workbench.store.tantivy_store import TantivyChunkStore

        from workbench.index import rebuild

        started = time.perf_counter()
        source = str(Path(root).expanduser().resolve())
        rebuild.settle(self.workspace)
        if self.donor is None and rebuild.in_progress(self.workspace):  # the staged rebuild drops it too
            staged, from_staging = rebuild.staged_roots(self.workspace), 0
            with self.workspace.write_lock():
                rebuild.forget_root(self.workspace, source)
                staging = rebuild.staging_workspace(self.workspace)
                if source in [str(r) for r in Indexer(staging)._indexed_roots()]:
                    from_staging = Indexer(staging, self.config).remove(Path(source)).docs_removed
            if source in staged and source not in [str(r) for r in self._indexed_roots()]:
                total_docs, total_chunks = self._live_totals()
                return IndexSummary(root=source, docs_removed=from_staging, total_docs=total_docs,
                                    total_chunks=total_chunks, seconds=time.perf_counter() - started,
                                    note=f"removed {source} from the rebuild under way (the index that answers "
                                         "never held it); `wb index` finishes the rebuild")
        roots = [str(r) for r in self._indexed_roots()]
        if source not in roots and source in self._roots_to_reindex():  # forgotten by a rebuild already
            self._drop_reindex(source)
            return IndexSummary(root=source, note=f"removed the indexed folder {source}")
        if source not in roots:
            listed = ", ".join(roots) if roots else "none"
            raise InputError(f"{source} is not an indexed folder of {self.workspace.root} (indexed: {listed})")
        summary = IndexSummary(root=source)
        with self.workspace.write_lock():
            with Manifest(self.workspace.manifest_path) as manifest:
                settings = settings_from_dict(manifest.get_meta("settings"))
                lance = LanceChunkStore(self.workspace.lance_dir)
                tantivy_store = TantivyChunkStore(self.workspace.tantivy_dir, settings.sparse_step)
                summary.note = self._refill_missing_tantivy(manifest, lance, tantivy_store)
                self._recover(manifest, lance, tantivy_store)
                removed = list(manifest.hashes(source))
                manifest.set_meta(UNSETTLED, True)
                _delete_docs(removed, source, manifest, lance, tantivy_store)
                manifest.drop_roots([source])
                summary.docs_removed = len(removed)
                self._settle(manifest, lance, tantivy_store, summary, changed=True)
        summary.note = _join(f"removed the indexed folder {source}", summary.note)
        self._restore_shared(summary)
        summary.seconds = time.perf_counter() - started
        return summary

    def _restore_shared(self, summary: IndexSummary) -> None:
        """After a removal: the other indexed BEIR corpora are refreshed, since a document they
        share with the removed root (same id and content, recorded once, under that root) has just
        left every store. Only documents that went missing are encoded; when the config asks for a
        rebuild the refresh is left to the next `wb index`, which rebuilds anyway."""
        from workbench.ingest.readers import is_beir_corpus

        if summary.docs_removed == 0:
            return
        others = [r for r in self._indexed_roots() if r.exists() and is_beir_corpus(r)]
        if not others or self.rebuild_reason():
            return
        for other in others:
            part = self._run_root(other)
            summary.docs_indexed += part.docs_indexed
            summary.chunks_written += part.chunks_written
            summary.total_docs, summary.total_chunks = part.total_docs, part.total_chunks
            if part.docs_indexed:
                summary.note = _join(summary.note, f"{plural(part.docs_indexed, 'document')} it shared with "
                                                   f"{other} indexed again as that corpus's")

    def _settle(self, manifest, lance, tantivy_store, summary: IndexSummary, *, changed: bool) -> None:
        """The end of every write: compaction, the purge of Tantivy's deleted docs and garbage
        collection when something ``changed`` or an earlier write was cut off before its settle
        ended (``UNSETTLED``), the read snapshot published, the workspace's totals in ``summary``.
        Deleted docs left in Tantivy are purged on every settle (a ``meta.json`` read when none)."""
        compacted = changed or manifest.get_meta(UNSETTLED)
        if compacted:
            self.progress("compacting", 0, 0)
            # the published snapshot's version stays until the next is published: queries meanwhile
            # search its ANN index (Searcher._ann_store), which a cleanup of it would pull from under them
            failed = lance.compact(keep=manifest.get_meta("snapshot_version"))
            summary.note = _join(summary.note, failed or "")
            self._purge_tantivy_deletes(manifest, lance, tantivy_store)
            tantivy_store.garbage_collect()
            manifest.set_meta(UNSETTLED, True if failed else None)  # a failed compaction: the next run tries again
        else:
            self._purge_tantivy_deletes(manifest, lance, tantivy_store)
        self._ensure_dense_index(manifest, lance, summary)
        self._publish_snapshot(manifest, lance)
        if compacted:  # the versions before the one just published (a query still on one scans exactly)
            failed = lance.cleanup()
            if failed:
                summary.note = _join(summary.note, failed)
                manifest.set_meta(UNSETTLED, True)
        summary.total_docs = manifest.count_docs()
        summary.total_chunks = manifest.count_chunks()

    def _ensure_dense_index(self, manifest, lance, summary: IndexSummary) -> None:
        """LanceDB's ANN index on the dense vectors, built once the index holds more than ``[index]
        dense_exact_max_rows`` chunks (dense retrieval then runs through it: ``Searcher._dense_ann``)
        with one partition per ``dense_ann_partition_rows``; compaction folds later rows into its
        partitions, and once the table calls for twice the partitions it was trained with (recorded
        in the manifest, ``DENSE_INDEX_PARTITIONS``) it is trained again on the whole table. Checked
        on every settle, so a build that was cut off (one LanceDB commit: the table is left as it
        was) or a lowered limit is built by the next run. Best effort: a failed build is a note;
        dense retrieval then scans exactly (or goes on through the index it would have replaced)."""
        chunks = manifest.count_chunks()
        if chunks <= self.config.index.dense_exact_max_rows:
            return
        wanted = max(1, chunks // self.config.index.dense_ann_partition_rows)
        start = time.perf_counter()
        built, trained = False, int(manifest.get_meta(DENSE_INDEX_PARTITIONS) or 1)
        try:
            built = lance.dense_index_rows() is not None
            if built and wanted < 2 * trained:
                return
            self.progress("dense index", 0, 0)
            rows = lance.build_dense_index(wanted)
        except (IndexingError, WorkspaceError) as exc:
            summary.note = _join(summary.note, f"{exc}; dense retrieval scans every chunk exactly until a "
                                               f"later `wb index` builds it" if not built else
                                               f"{exc}; dense retrieval goes on through the index trained on "
                                               f"{trained} partition(s) until a later `wb index` retrains it")
            return
        manifest.set_meta(DENSE_INDEX_PARTITIONS, wanted)  # after the build: a cut-off one is redone
        what = (f"retrained the dense ANN index over {rows:,} chunks ({wanted} partitions, was {trained})" if built
                else f"built the dense ANN index over {rows:,} chunks ({plural(wanted, 'partition')})")
        summary.note = _join(summary.note, f"{what} in {time.perf_counter() - start:.0f} s "
                                           f"(past [index] dense_exact_max_rows)")

    def _indexed_roots(self) -> list[Path]:
        """The roots the manifest records, also those that hold no document now (none before the
        first index)."""
        if not self.workspace.manifest_path.exists():
            return []
        with Manifest(self.workspace.manifest_path) as manifest:
            return [Path(s) for s, *_ in manifest.sources()]

    def _donor_indexes(self, source: str) -> bool:
        """Whether the donor (a variant's parent, a staged rebuild's live index) has ``source`` as an
        indexed root: a root of its that holds nothing now is kept, not refused as a new empty one."""
        return self.donor is not None and Path(source) in Indexer(self.donor)._indexed_roots()


    def _take_over(self, manifest: Manifest, source: str, covered: list[str], docs: list[SourceDocument],
                   lance, tantivy_store) -> int:
        """Move the documents of the ``covered`` roots to ``source``: one this root reads under the
        same id from the same file with the same content just changes owner; the others are deleted
        from every store (this run indexes them under their new ids). Returns how many moved."""
        new = {d.doc_id: (d.content_hash, d.path) for d in docs}
        records = {doc_id: rec for root in covered for doc_id, rec in manifest.records(root).items()}
        same = [d for d, rec in records.items() if new.get(d) == rec]
        if same:
            manifest.adopt(source, same)
        stale = [d for d in records if new.get(d) != records[d]]
        if stale:
            _delete_docs(stale, source, manifest, lance, tantivy_store)
        manifest.add_root(source)
        manifest.drop_roots(covered)
        return len(records)

    # -- steps ------------------------------------------------------------------
    def _publish_snapshot(self, manifest, lance) -> None:
        """Build the read snapshot of the current table version and record it (see store.snapshot)."""
        from workbench.store import snapshot

        version = lance.table.version
        folder = self.workspace.snapshot_dir
        if manifest.get_meta("snapshot_version") == version and (folder / f"v{version}").exists():
            return
        self.progress("snapshot", 0, 0)
        snapshot.build(folder, lance.table, version, record=lambda: manifest.set_meta("snapshot_version", version))

    def _prepare(self, manifest, lance, tantivy_store, settings: IndexSettings, bundle) -> str:
        """Create the stores, or rebuild them if the recorded settings differ. Returns why it rebuilt."""
        recorded = manifest.get_meta("settings")
        reason = _rebuild_reason(recorded, settings) if recorded is not None else ""
        if recorded is None or reason or not lance.exists():
            manifest.reset(reindex=[s for s, *_ in manifest.sources()])  # indexed again by run()
            donor = self._donor
            dense_dim = donor.dense_dim if donor and "dense" in donor.modes else bundle.dense.dim
            colbert_dim = donor.colbert_dim if donor and "colbert" in donor.modes else bundle.colbert_dim
            lance.create(dense_dim, colbert_dim)
            shutil.rmtree(self.workspace.tantivy_dir, ignore_errors=True)
            tantivy_store.create_if_missing()
            manifest.set_meta("settings", settings.to_dict())
        else:
            tantivy_store.create_if_missing()
            if recorded != settings.to_dict():  # the query side or a model's path: recorded, nothing re-encoded
                manifest.set_meta("settings", settings.to_dict())
        return reason

    def _refill_missing_tantivy(self, manifest, lance, tantivy_store) -> str:
        """A Tantivy index deleted or emptied by hand while the LanceDB table and the manifest hold
        the documents: rebuilt from the table's stored text and sparse weights, nothing encoded
        (BM25 and sparse would otherwise answer nothing while every document reads "unchanged").
        Built in a folder beside and renamed into place, so a kill leaves it missing, never half
        full, and the next run starts over. Returns what was done ("" when nothing was needed)."""
        if manifest.get_meta("settings") is None or not manifest.count_chunks() or not lance.exists():
            return ""
        if tantivy_store.exists() and tantivy_store.num_docs():
            return ""
        from workbench.store.tantivy_store import TantivyChunkStore

        total = manifest.count_chunks()
        beside = tantivy_store.folder.with_name(tantivy_store.folder.name + ".refill")
        shutil.rmtree(beside, ignore_errors=True)
        fresh = TantivyChunkStore(beside, tantivy_store.sparse_step)
        fresh.create_if_missing()
        done = fresh.rewrite(self._tantivy_rows(lance, total, "rebuilding the Tantivy index"))
        fresh.close()
        shutil.rmtree(tantivy_store.folder, ignore_errors=True)
        os.replace(beside, tantivy_store.folder)
        tantivy_store.close()  # reopened on first use, on the folder now in place
        return f"the Tantivy index was missing or empty: rebuilt it from the LanceDB table ({done} chunks, nothing encoded)"

    def _tantivy_rows(self, lance, total: int, step: str):
        """The table's chunks as ``TantivyChunkStore.add`` arguments, a batch at a time (stored text
        and sparse weights, nothing encoded), progress said as ``step``."""
        from workbench.ingest.chunking import input_text

        self.progress(step, 0, total)
        done = 0
        for batch in lance.iter_columns(["chunk_key", "doc_id", "title", "text", "sparse_ids", "sparse_weights"]):
            cols = batch.to_pydict()
            texts = [input_text(t, x) for t, x in zip(cols["title"], cols["text"])]
            sparse = [(np.asarray(i, np.int32), np.asarray(w, np.float32))
                      for i, w in zip(cols["sparse_ids"], cols["sparse_weights"])]
            yield cols["chunk_key"], cols["doc_id"], texts, sparse
            done += batch.num_rows
            self.progress(step, done, total)

    def _purge_tantivy_deletes(self, manifest, lance, tantivy_store) -> None:
        """Deleted chunks still counted in Tantivy's segments (BM25's document frequencies and
        average length) are dropped by rewriting the index from the table in one commit, so BM25
        scores equal a fresh build's. Tantivy-py exposes no merge call, and its merge policy leaves
        a segment with deletions alone; a kill before the commit leaves the old index whole."""
        if not tantivy_store.exists() or not tantivy_store.deleted_docs():
            return
        tantivy_store.rewrite(self._tantivy_rows(lance, manifest.count_chunks(), "rewriting the BM25 index"))

    def _recover(self, manifest, lance, tantivy_store) -> None:
        """Undo a killed run's partial batch: delete its documents everywhere."""
        pending = manifest.pending()
        if pending:
            manifest.set_meta(UNSETTLED, True)
            lance.delete_docs(pending)
            tantivy_store.delete_docs(pending)
            tantivy_store.commit()
            manifest.abandon(pending)

    def _index_docs(self, todo, known, source, manifest, lance, tantivy_store, bundle, summary) -> None:
        chunker = Chunker(bundle.chunk_tokenizer, chunking_settings(bundle.settings))
        self.progress("chunking", 0, len(todo))
        per_doc = chunker.chunk_many(todo)
        self.progress("chunking", len(todo), len(todo))
        wordless = [d for d, cs in zip(todo, per_doc) if not cs]  # text and title the tokenizer reads nothing in
        if wordless:
            for d in wordless:
                where = d.path if d.path.endswith(d.doc_id) else f"{d.path} (_id {d.doc_id})"
                summary.skipped.append(SkippedFile(where, "no words to index"))
            gone = [d.doc_id for d in wordless if d.doc_id in known]  # an indexed document that lost its words
            if gone:
                _delete_docs(gone, source, manifest, lance, tantivy_store)
                summary.docs_removed += len(gone)
            todo, per_doc = [d for d, cs in zip(todo, per_doc) if cs], [cs for cs in per_doc if cs]
        total = sum(len(c) for c in per_doc)
        done = 0
        self.progress("encoding", 0, total)
        batch_docs: list[SourceDocument] = []
        batch_chunks: list[list[Chunk]] = []
        for doc, chunks in zip(todo, per_doc):
            batch_docs.append(doc)
            batch_chunks.append(chunks)
            if sum(len(c) for c in batch_chunks) >= self.batch_chunks:
                done += self._write_batch(batch_docs, batch_chunks, known, source, manifest, lance, tantivy_store, bundle,
                                          summary, progress_at=(done, total))
                self.progress("encoding", done, total)
                batch_docs, batch_chunks = [], []
        if batch_docs:
            done += self._write_batch(batch_docs, batch_chunks, known, source, manifest, lance, tantivy_store, bundle,
                                      summary, progress_at=(done, total))
            self.progress("encoding", done, total)
        summary.docs_indexed = len(todo)
        summary.chunks_written = done

    def _write_batch(self, docs, per_doc, known, source, manifest, lance, tantivy_store, bundle, summary,
                     progress_at: tuple[int, int] = (0, 0)) -> int:
        """Encode and write ``docs`` (their chunks ``per_doc``) as one unit: every store has all of
        them or, after a kill, none (``_recover``). A batch longer than ``batch_chunks`` (one long
        document) is encoded ``batch_chunks`` at a time, its progress said after each slice
        (``progress_at``: chunks done before this batch, and in all)."""
        chunks = [c for cs in per_doc for c in cs]
        texts = [chunk_input_text(c) for c in chunks]
        keys = [chunk_key(c.chunk_id) for c in chunks]
        step = max(1, self.batch_chunks)
        parts = []
        for start in range(0, len(chunks), step):
            end = start + step
            parts.append(self._vectors(chunks[start:end], texts[start:end], keys[start:end], bundle, summary))
            if len(chunks) > step and end < len(chunks):
                self.progress("encoding", progress_at[0] + end, progress_at[1])
        if parts:
            dense = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            tokens = [t for p in parts for t in p[1]]
            sparse_out = [v for p in parts for v in p[2]]
        else:
            dense, tokens, sparse_out = np.zeros((0, 1), dtype=np.float32), [], []
        table = _arrow_batch(chunks, keys, dense, tokens, sparse_out)

        doc_ids = [d.doc_id for d in docs]
        replaced = [d for d in doc_ids if d in known]
        manifest.begin(doc_ids)
        if replaced:
            lance.delete_docs(replaced)
            tantivy_store.delete_docs(replaced)
        if chunks:
            lance.add(table)
            tantivy_store.add(
                keys, [c.doc_id for c in chunks], texts, [(v.ids, v.weights) for v in sparse_out]
            )
        tantivy_store.commit()
        records = [
            DocRecord(d.doc_id, d.content_hash, d.path, d.title, len(cs)) for d, cs in zip(docs, per_doc)
        ]
        manifest.finish(source, records, [])
        return len(chunks)

    def _vectors(self, chunks, texts, keys, bundle, summary):
        """Dense vectors, ColBERT token matrices and sparse vectors of ``chunks``: the unchanged modes
        of chunks the donor holds byte-identically are copied from it, everything else is encoded
        (an encoder nobody needs is never loaded)."""
        n = len(chunks)
        donor = self._donor
        reused = donor.fetch(chunks, keys) if donor is not None else None
        modes = set(donor.modes) if reused is not None else set()
        hit = set(reused.rows) if reused is not None else set()
        need = {m: [i for i in range(n) if m not in modes or i not in hit] for m in ("dense", "colbert", "sparse")}
        trained = bundle.colbert_is_trained  # else ColBERT vectors come from the dense forward pass
        dense: np.ndarray | None = None
        tokens: list = [None] * n
        sparse: list = [None] * n
        pass_rows = sorted(set(need["dense"]) | (set() if trained else set(need["colbert"])))
        if pass_rows:
            templates = bundle.settings.templates
            out = bundle.dense.encode([templates.render_document(texts[i]) for i in pass_rows],
                                      tokens=not trained and bool(need["colbert"]), prompt=templates.document_prompt())
            dense = np.zeros((n, out.dense.shape[1]), dtype=np.float32)
            dense[pass_rows] = out.dense
            if out.tokens is not None:
                for j, i in enumerate(pass_rows):
                    tokens[i] = out.tokens[j]
        if trained and need["colbert"]:
            encoded = bundle.colbert.encode_documents([texts[i] for i in need["colbert"]])
            for j, i in enumerate(need["colbert"]):
                tokens[i] = encoded[j]
        if need["sparse"]:
            encoded = bundle.sparse.encode([texts[i] for i in need["sparse"]])
            for j, i in enumerate(need["sparse"]):
                sparse[i] = encoded[j]
        if reused is not None:
            if reused.dense is not None:
                if dense is None:
                    dense = np.zeros((n, reused.dense.shape[1]), dtype=np.float32)
                dense[reused.rows] = reused.dense
            for name, target in (("tokens", tokens), ("sparse", sparse)):
                values = getattr(reused, name)
                if values is not None:
                    for j, i in enumerate(reused.rows):
                        target[i] = values[j]
            summary.reused += len(reused.rows)
            summary.reused_modes = [m for m in ("dense", "colbert", "sparse") if m in modes]
        if dense is None:  # a batch of documents without chunks: nothing is written
            dense = np.zeros((0, 1), dtype=np.float32)
        if any(t is None for t in tokens) or any(v is None for v in sparse):
            raise IndexingError("internal error: a chunk got no ColBERT or sparse vector")
        return dense, tokens, sparse


def chunking_settings(settings: IndexSettings) -> ChunkingSettings:
    """How an index with ``settings`` cuts chunks: ``chunk_tokens`` windows counting all that the dense
    encoder is fed for a chunk (``_vectors``): the document template rendered around it, the special
    tokens, and the EOS a decoder dense model appends (``DenseEncoder.tokenize``)."""
    from workbench.encoders.layout import read_layout

    try:
        decoder = read_layout(settings.dense_path).kind == "causal-lm"  # DenseEncoder.is_decoder, nothing loaded
    except Exception:  # a hub id or an odd folder: loading the encoder says what is wrong
        decoder = False
    return ChunkingSettings(settings.chunk_tokens, settings.chunk_overlap,
                            document_template=settings.templates.document, appends_eos=decoder)


def _window_problem(settings: IndexSettings) -> str:
    """What is wrong when a chunk is longer than the dense model reads ("" when nothing): the rest of
    every chunk would be left out of dense, ColBERT and sparse (bm25 alone would see it)."""
    from workbench.encoders.layout import read_layout

    try:
        limit = read_layout(settings.dense_path).max_length
    except Exception:  # a hub id or an odd folder: the encoder says what it can
        return ""
    if limit and settings.chunk_tokens > limit:
        return (f"chunk_tokens ({settings.chunk_tokens}) is more than the dense model reads ({limit} tokens): "
                "the rest of each chunk is left out of every mode but bm25")
    return ""


def _read_root(root: Path, index: IndexConfig,
               not_read: dict[str, int] | None = None) -> tuple[list[SourceDocument], list[SkippedFile]]:
    """The documents of ``root`` (each id once: a later one with an id seen already is skipped, e.g.
    a nested corpus.jsonl ``_id`` equal to a file's path) and the files skipped, with reasons;
    ``index``'s ``exclude`` globs and ``max_file_mb`` apply. Files of types wb does not read are
    counted in ``not_read`` by extension when it is given."""
    from workbench.ingest.readers import iter_sources

    docs: list[SourceDocument] = []
    skipped: list[SkippedFile] = []
    first_path: dict[str, str] = {}
    for item in iter_sources(root, max_file_bytes=max(1, int(index.max_file_mb * 1_000_000)), exclude=index.exclude,
                             not_read=not_read):
        if isinstance(item, SkippedFile):
            skipped.append(item)
        elif item.doc_id in first_path:
            skipped.append(SkippedFile(item.path, f"duplicate id {item.doc_id} (also {first_path[item.doc_id]})"))
        else:
            first_path[item.doc_id] = item.path
            docs.append(item)
    return docs, skipped


def _covering_root(indexed: list[Path], path: Path, exclude: tuple[str, ...] = ()) -> Path | None:
    """The outermost of the ``indexed`` roots whose walk reads ``path`` (indexing ``path`` refreshes
    it); a path ``exclude`` leaves out of a root's walk is not covered by it."""
    from workbench.ingest.readers import reads

    covering = [r for r in indexed if reads(r, path, exclude)]
    return min(covering, key=lambda r: len(r.parts)) if covering else None


def _delete_docs(doc_ids: list[str], source: str, manifest: Manifest, lance, tantivy_store) -> None:
    """Delete ``doc_ids`` from every store by the write protocol: intent logged, LanceDB and Tantivy
    deletes (committed), then the manifest forgets them and clears the intent in one transaction."""
    manifest.begin(doc_ids)
    lance.delete_docs(doc_ids)
    tantivy_store.delete_docs(doc_ids)
    tantivy_store.commit()
    manifest.finish(source, [], doc_ids)


def _refuse_a_workspace(root: Path, workspace_root: Path) -> None:
    """InputError for a root that is the workspace indexed into, lies inside it, or is a wb workspace
    itself (a folder holding ``wb.toml``): its index, runs and logs are not documents (a subfolder
    that is a workspace is skipped by the walk; the root itself was read). The workspace's own
    eval corpus (``wb eval`` converts a dataset into it) is documents and is let through."""
    from workbench.ingest.readers import WORKSPACE_MARKER
    from workbench.workspace import Workspace

    ws = Path(workspace_root).resolve()
    own_corpus = Workspace(ws).eval_corpus_dir
    if root == own_corpus or own_corpus in root.parents:
        return
    if root == ws or ws in root.parents:
        raise InputError(f"{root} is {'inside ' if root != ws else ''}the workspace {ws}: its index, runs and "
                         "logs are not documents; give the folder of your documents")
    if root.is_dir() and (root / WORKSPACE_MARKER).is_file():
        raise InputError(f"{root} is a wb workspace (it holds {WORKSPACE_MARKER}): its index, runs and logs are "
                         "not documents; give the folder of your documents")


def _refuse_empty(root: Path, skipped: list[SkippedFile], not_read: dict[str, int] | None = None) -> None:
    """InputError for a new root with no document: the file's skip reason (for a ``.jsonl`` corpus
    whose every row is skipped: how many, and the first one's ``path:line`` and reason), or what a
    folder lacks (and what it holds instead: skipped files, files of other types)."""
    from workbench.ingest.readers import printable_path

    if root.is_file():
        if skipped and skipped[0].path != str(root):  # rows of a .jsonl corpus: name the first bad line
            raise InputError(f"cannot index {printable_path(str(root))}: no row of it can be indexed "
                             f"({plural(len(skipped), 'row')} skipped), the first at "
                             f"{printable_path(skipped[0].path)}: {skipped[0].reason}")
        reason = skipped[0].reason if skipped else "not a supported file"
        raise InputError(f"cannot index {printable_path(str(root))}: {reason}")
    why = ""
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        why = f"; skipped {Path(skipped[0].path).name}: {skipped[0].reason}{more}"
    if not_read:
        why += "; " + IndexSummary(root=str(root), not_read=not_read).not_read_text()
    raise InputError(f"nothing to index in {printable_path(str(root))}: no readable .txt .md .rst .html .pdf file or BEIR "
                     f"corpus.jsonl{why}")


def _join(note: str, more: str) -> str:
    """Two notes in one ("; " between them only when both say something)."""
    return f"{note}; {more}" if note and more else note or more


def _rebuild_reason(recorded: dict, settings: IndexSettings) -> str:
    """Why an index built with the ``recorded`` settings is rebuilt for ``settings`` ("" when it is kept)."""
    from workbench.index.rebuild import described

    diffs = settings_from_dict(recorded).differences(settings)
    return f"settings changed ({described(diffs)}): rebuilding the index" if diffs else ""


def _claim(manifest: Manifest, source: str, docs: list[SourceDocument], exclude: tuple[str, ...] = ()) -> list[str]:
    """The indexed roots that root ``source`` takes over (its walk reads them), after checking that
    none of ``docs`` has the id of another root's document: InputError naming the first such id, both
    roots and what to do instead (read-only: nothing is written before this passes)."""
    from workbench.ingest.readers import is_beir_corpus, reads

    here = Path(source)
    covered = [s for s, *_ in manifest.sources() if s != source and reads(here, Path(s), exclude)]
    owners, known = manifest.owners(source), manifest.hashes()
    # Two BEIR corpora name documents by dataset ids: the same id with the same content is the same
    # document (one corpus in two formats, as `wb eval` of a FlagEmbedding folder writes it) and is
    # kept as it is. Folder ids are relative paths, alike by chance: one belongs to one root only,
    # even for an identical file (two doc folders with one LICENSE.md), or an edit of either copy,
    # or removing the other root, would break it.
    shared = is_beir_corpus(Path(source))
    clashes = [(d.doc_id, owner) for d in docs
               if (owner := owners.get(d.doc_id)) is not None and owner not in covered
               and not (shared and is_beir_corpus(Path(owner)) and known.get(d.doc_id) == d.content_hash)]
    if not clashes:
        return covered
    doc_id, other = clashes[0]
    more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
    parent = Path(os.path.commonpath([source, other]))
    fix = "index it into another workspace (-w)"
    sensible = parent not in (here, Path(other), Path(parent.anchor), Path.home())  # never suggest `/` or ~
    if sensible and reads(parent, here) and reads(parent, Path(other)):
        fix = f"index their common folder instead (`wb index {parent}`, ids then start with the subfolder), or {fix}"
    raise InputError(f"document id {doc_id!r}{more} of {source} is already taken by a document of {other}: "
                     f"one id names one document; {fix}")


def _arrow_batch(chunks: list[Chunk], keys, dense: np.ndarray, tokens, sparse) -> pa.Table:
    dim = dense.shape[1]
    vector = pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1), pa.float32()), dim)
    cdim = tokens[0].shape[1] if tokens else dim
    lengths = np.array([t.shape[0] for t in tokens], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(tokens).reshape(-1) if tokens else np.zeros(0, np.float16)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), cdim)
    colbert = pa.ListArray.from_arrays(pa.array(offsets), inner)
    sp_lengths = np.array([len(v.ids) for v in sparse], dtype=np.int32)
    sp_offsets = pa.array(np.concatenate([[0], np.cumsum(sp_lengths)]).astype(np.int32))
    sp_ids = np.concatenate([v.ids for v in sparse]) if sparse else np.zeros(0, np.int32)
    sp_w = np.concatenate([v.weights for v in sparse]) if sparse else np.zeros(0, np.float32)
    return pa.table(
        {
            "chunk_key": pa.array(keys, pa.int64()),
            "chunk_id": [c.chunk_id for c in chunks],
            "doc_id": [c.doc_id for c in chunks],
            "ordinal": pa.array([c.ordinal for c in chunks], pa.int32()),
            "path": [c.path for c in chunks],
            "title": [c.title for c in chunks],
            "text": [c.text for c in chunks],
            "char_start": pa.array([c.char_start for c in chunks], pa.int32()),
            "char_end": pa.array([c.char_end for c in chunks], pa.int32()),
            "n_tokens": pa.array(lengths, pa.int32()),
            "vector": vector,
            "colbert": colbert,
            "sparse_ids": pa.ListArray.from_arrays(sp_offsets, pa.array(sp_ids, pa.int32())),
            "sparse_weights": pa.ListArray.from_arrays(sp_offsets, pa.array(sp_w, pa.float32())),
        }
    )
