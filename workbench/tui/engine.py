"""The TUI's only door into the engine: thread-safe calls that workers make, plain data back.

``Engine`` caches one ``Searcher`` per (workspace, configuration) and serialises the calls that
use its models (lazy model loading is not thread-safe). Indexing runs without that lock, so
queries keep answering from the previous index while a folder is indexed; ``invalidate`` drops the
cached Searcher once the index has changed (its encoders are handed to the new one when the
models are the same, so nothing is loaded twice). A change made elsewhere (`wb index` in another
terminal, each batch it commits, its end or its being cut off, a rebuild swapped in) is noticed at
the next call: the cached Searcher is reopened when the index's stamp (``_index_stamp``) differs
from the one it opened, so a query answers, and says what is missing, as `wb query` would.

Every method raises only ``WbError`` (other exceptions are wrapped), so the UI shows ``str(exc)``.
Tests substitute an object with the same methods (see ``tests/test_tui.py``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WbError


def _index_stamp(ws) -> tuple | None:
    """What changes whenever what a query of ``ws`` answers, or its note, does: the manifest file (a
    rebuild swaps in another), the snapshot version it records (every indexing run publishes one),
    its size and time and its write-ahead log's (every batch a run commits, before it publishes),
    the unfinished-run mark, and whether a writer holds the workspace (the note: running, or cut
    off). A few stats and one small SQLite read (well under a millisecond): it runs before every
    query. None when unreadable."""
    import sqlite3

    from workbench.index.unfinished import UNFINISHED_RUN
    from workbench.store.manifest import peek_meta

    try:
        meta = peek_meta(ws.manifest_path, "snapshot_version", UNFINISHED_RUN)  # read first: its close may
        main = os.stat(ws.manifest_path)                                       # checkpoint the log
        log = _file_stamp(Path(f"{ws.manifest_path}-wal"))
        return (main.st_ino, main.st_size, main.st_mtime_ns, log, meta.get("snapshot_version"),
                meta.get(UNFINISHED_RUN), ws.being_written())
    except (OSError, sqlite3.Error):
        return None


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, time) of a file holding something; None when it is missing or empty (SQLite's log of a
    manifest that every connection has left, or that a reader has just opened)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns) if st.st_size else None


class EngineError(WbError):
    """An unexpected library failure, reported as one line."""


class IndexingStopped(KeyboardInterrupt):
    """Raised from an indexing run's progress callback to stop it, as Ctrl-C stops `wb index`: the
    Indexer lets it through (it is no ``Exception``), every batch written so far is kept, and the
    run stays marked as cut off in the manifest, so the next run of the folder continues it."""


STOPPABLE_PHASES = ("reading files", "loading models", "chunking", "encoding")  # said before a batch is written


@dataclass
class SourceInfo:
    root: str
    docs: int
    chunks: int
    indexed_at: float
    missing: bool = False  # the folder is gone from disk (moved, deleted, an unmounted drive)


@dataclass
class CorpusInfo:
    """What the Corpus screen shows about a workspace."""

    root: str
    exists: bool  # the workspace holds a manifest (something was indexed once)
    docs: int = 0
    chunks: int = 0
    sources: list[SourceInfo] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # role -> label ("zero-shot" where it applies)
    configured: dict[str, str] = field(default_factory=dict)  # role -> name in wb.toml
    chunk_tokens: int = 0
    chunk_overlap: int = 0
    last_indexed: float | None = None
    error: str = ""  # e.g. a wb.toml that does not parse
    note: str = ""  # the index answers with other settings than wb.toml's: why (rebuild.state_note)
    pending: list[str] = field(default_factory=list)  # folders a settings rebuild has still to index
    unfinished: str = ""  # an indexing run running now or cut off (stopped, killed): what is missing
    stamp: tuple | None = None  # the index's stamp when read (_index_stamp): Engine.index_changed compares it


@dataclass
class DocumentRow:
    doc_id: str
    title: str
    chunks: int


@dataclass
class Preview:
    """Everything the preview shows for one (query, hit)."""

    document: object  # explain.DocumentView
    words: list[str]
    sparse: object | None  # explain.SparseExplanation
    colbert: object | None  # explain.ColbertExplanation
    errors: list[str] = field(default_factory=list)


def _wrap(exc: Exception) -> WbError:
    if isinstance(exc, WbError):
        return exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    return EngineError(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


class Engine:
    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self._lock = threading.Lock()  # guards the cache
        self._searchers: dict[tuple[str, str], object] = {}
        self._use: dict[str, threading.RLock] = {}  # one per index root
        self._retired: dict[str, object] = {}  # root -> a dropped Searcher whose encoders can be reused
        self._stamps: dict[tuple[str, str], tuple | None] = {}  # the index each cached Searcher opened

    # -- workspace -------------------------------------------------------------------
    @staticmethod
    def workspace(root: str | Path):
        from workbench.workspace import Workspace

        return Workspace.resolve(root)

    def info(self, root: str | Path) -> CorpusInfo:
        from workbench.models.registry import ROLES, model_labels

        ws = self.workspace(root)
        info = CorpusInfo(root=str(ws.root), exists=ws.exists())
        try:
            cfg = ws.config()
            info.models = model_labels(cfg.models)
            info.configured = {role: getattr(cfg.models, role) for role in ROLES}
            info.chunk_tokens, info.chunk_overlap = cfg.index.chunk_tokens, cfg.index.chunk_overlap
        except WbError as exc:
            info.error = str(exc)
        if not info.exists:
            return info
        info.stamp = _index_stamp(ws)
        try:
            from workbench.index.unfinished import UNFINISHED_RUN, unfinished_note
            from workbench.store.manifest import Manifest

            with Manifest(ws.manifest_path) as manifest:
                info.docs = manifest.count_docs()
                info.chunks = manifest.count_chunks()
                info.sources = [SourceInfo(s, int(d), int(c or 0), float(t or 0), not Path(s).exists())
                                for s, d, c, t in manifest.sources()]
                info.pending = manifest.roots_to_reindex()
                recorded = manifest.get_meta("settings")
                unfinished = manifest.get_meta(UNFINISHED_RUN)
            info.unfinished = unfinished_note(ws, unfinished)
            if recorded is not None and not info.error:  # what the index that answers was built with
                self._describe_index(ws, cfg, recorded, info)
        except Exception as exc:  # a locked or damaged manifest: show it, do not crash
            info.error = str(_wrap(exc))
        if info.sources:
            info.last_indexed = max(s.indexed_at for s in info.sources)
        return info

    def index_changed(self, info: CorpusInfo) -> bool:
        """Whether ``info``'s workspace was indexed (or its index rebuilt, removed) since ``info``
        was read: `wb index` ran elsewhere. A stat and one SQLite read: cheap on a timer."""
        ws = self.workspace(info.root)
        return (_index_stamp(ws) if ws.exists() else None) != info.stamp

    @staticmethod
    def _describe_index(ws, cfg, recorded: dict, info: CorpusInfo) -> None:
        """``info``'s chunking and model labels from the index's recorded settings, and a note when
        wb.toml asks for others (the index answers as it is until `wb index` rebuilds it)."""
        from workbench.index import rebuild
        from workbench.index.settings import settings_from_config, settings_from_dict
        from workbench.models.registry import model_labels

        from workbench.errors import ModelError

        built = settings_from_dict(recorded)
        info.chunk_tokens, info.chunk_overlap = built.chunk_tokens, built.chunk_overlap
        try:
            diffs = built.differences(settings_from_config(cfg))
            info.note = rebuild.state_note(ws, diffs)
        except ModelError as exc:  # wb.toml names a model that is not there: the index answers as built
            diffs, info.note = ["models"], rebuild.unusable_models_note(exc)
        if any(d not in rebuild.CHUNK_SETTINGS for d in diffs):
            info.models = model_labels(built.models_of(cfg.models))

    # -- searchers -------------------------------------------------------------------
    def _key(self, root: str | Path, models: dict[str, str] | None = None):
        ws = self.workspace(root)
        cfg = ws.config()
        if models:  # role overrides that leave the index as it is (e.g. reranker=runs/NAME)
            from workbench.variants import resolve_model_overrides

            cfg = cfg.with_models(resolve_model_overrides(ws, models))
        return (str(ws.root), repr(cfg)), ws, cfg

    def searcher(self, root: str | Path, models: dict[str, str] | None = None):
        """The cached Searcher of ``root`` (opened now if needed; loads no model); ``models``: role
        overrides served from the same index (``runs/NAME`` resolved), cached apart."""
        try:
            key, ws, cfg = self._key(root, models)
            stamp = _index_stamp(ws)
            with self._lock:
                found = self._searchers.get(key)
                if found is not None and self._stamps.get(key) == stamp:
                    return found
                if found is not None:  # another `wb index` changed the index (or swapped in a rebuild)
                    for other in [k for k in self._searchers if k[0] == key[0]]:
                        self._retired[key[0]] = self._searchers.pop(other)
            from workbench.search.searcher import Searcher

            searcher = Searcher(ws, config=cfg, device=self.device, serve_stale=True)  # notes say why
            with self._lock:
                self._stamps[key] = stamp
                old = self._retired.pop(key[0], None)
                if old is None:  # another Searcher of this index (other reranker): share its encoders
                    old = next((s for k, s in self._searchers.items() if k[0] == key[0]), None)
                if old is not None and getattr(old, "settings", None) == searcher.settings:
                    searcher.bundle = old.bundle  # same models: keep the loaded encoders
                self._searchers.setdefault(key, searcher)
                self._use.setdefault(key[0], threading.RLock())
                return self._searchers[key]
        except Exception as exc:
            raise _wrap(exc) from exc

    def _using(self, root, models: dict[str, str] | None = None):
        searcher = self.searcher(root, models)
        key, _ws, _cfg = self._key(root, models)
        with self._lock:  # one lock per index: its Searchers may share encoders
            lock = self._use.setdefault(key[0], threading.RLock())
        return searcher, lock

    def invalidate(self, root: str | Path) -> None:
        """Forget the Searchers of ``root`` (its index changed)."""
        name = str(self.workspace(root).root)
        with self._lock:
            for key in [k for k in self._searchers if k[0] == name]:
                self._retired[name] = self._searchers.pop(key)

    def warm(self, root: str | Path, pipelines: list[str]) -> float:
        """Load every model the pipelines need with a throw-away query; returns seconds."""
        t0 = time.perf_counter()
        searcher, lock = self._using(root)
        try:
            with lock:
                for pipeline in pipelines:
                    searcher.search("warm up", pipeline=pipeline, k=1)
        except Exception as exc:
            raise _wrap(exc) from exc
        return time.perf_counter() - t0

    def search(self, root, text: str, *, pipeline: str, k: int = 10, instruction: str | None = None,
               unit: str = "doc", models: dict[str, str] | None = None):
        searcher, lock = self._using(root, models)
        try:
            with lock:
                return searcher.search(text, pipeline=pipeline, k=k, instruction=instruction, unit=unit)
        except Exception as exc:
            raise _wrap(exc) from exc

    def rendered_query(self, root, text: str, instruction: str | None) -> str:
        """The exact string the dense/ColBERT encoder receives."""
        from workbench.search.explain import rendered_query

        try:
            return rendered_query(self.searcher(root), text, instruction)
        except Exception as exc:
            raise _wrap(exc) from exc

    def documents(self, root, limit: int = 5000) -> list[DocumentRow]:
        """The index's documents by id (each with its chunk count): the first ``limit`` of them."""
        searcher, lock = self._using(root)
        try:
            with lock:  # the catalog loads lazily: never twice at once with a search of this index
                cat = searcher.catalog
        except Exception as exc:
            raise _wrap(exc) from exc
        rows: dict[str, DocumentRow] = {}
        for doc_id, title in zip(cat.doc_ids, cat.titles):
            row = rows.get(doc_id)
            if row is None:
                rows[doc_id] = DocumentRow(doc_id, title, 1)
            else:
                row.chunks += 1
        return sorted(rows.values(), key=lambda r: r.doc_id)[:limit]  # the first by id, as the list reads

    def preview(self, root, query: str, chunk_id: str, instruction: str | None) -> Preview:
        from workbench.search import explain

        searcher, lock = self._using(root)
        try:
            with lock:
                doc = explain.document_view(searcher.catalog, chunk_id)
        except KeyError as exc:
            raise EngineError(f"chunk {chunk_id} is no longer in the index") from exc
        except Exception as exc:
            raise _wrap(exc) from exc
        out = Preview(document=doc, words=explain.query_words(query), sparse=None, colbert=None)
        with lock:
            try:
                out.sparse = explain.sparse_explanation(searcher, query, chunk_id)
            except Exception as exc:
                out.errors.append(f"sparse: {_wrap(exc)}")
            try:
                out.colbert = explain.colbert_matches(searcher, query, chunk_id, instruction)
            except Exception as exc:
                out.errors.append(f"colbert: {_wrap(exc)}")
        return out

    # -- indexing --------------------------------------------------------------------
    def index(self, root, folder: str | Path, progress: Callable[[str, int, int], None]):
        """Index ``folder`` into ``root`` (creating the workspace); returns the IndexSummary.
        ``progress`` may raise :class:`IndexingStopped` (in a :data:`STOPPABLE_PHASES` phase) to stop
        the run: it propagates, the index left consistent as after Ctrl-C in `wb index`."""
        from workbench.errors import InputError
        from workbench.index.indexer import Indexer

        path = Path(folder).expanduser()
        if not path.exists():
            raise InputError(f"no such file or folder: {folder}")
        ws = self.workspace(root)
        try:
            ws.ensure()
            summary = Indexer(ws, ws.config(), progress=progress, device=self.device).run(path)
        except Exception as exc:
            raise _wrap(exc) from exc
        finally:
            self.invalidate(root)
        return summary

    def remove(self, root, folder: str):
        """Drop the indexed folder ``folder`` (gone from disk, say) from ``root`` and its model
        variants, as `wb index --remove` does; returns the IndexSummary."""
        from workbench.variants import remove_root

        ws = self.workspace(root)
        try:
            summary, _variants = remove_root(ws, Path(folder))
        except Exception as exc:
            raise _wrap(exc) from exc
        finally:
            self.invalidate(root)
        return summary

    def rebuild_reason(self, root) -> str:
        """Why indexing into ``root`` now rebuilds its index ("" when it does not): wb.toml changed
        what the index holds. The rebuild happens beside the index, which answers meanwhile."""
        from workbench.index.indexer import Indexer

        ws = self.workspace(root)
        try:
            return Indexer(ws, ws.config()).rebuild_reason() if ws.exists() else ""
        except Exception as exc:
            raise _wrap(exc) from exc

    # -- model variants (a fine-tuned model's index beside the workspace's own) -------
    def variant(self, root, overrides: dict[str, str]) -> "VariantInfo":
        """Where ``root`` is served with ``overrides`` (e.g. ``{"dense": "runs/NAME"}``), and whether
        that index is built and up to date. UsageError for an unknown or unfinished run."""
        from workbench import variants
        from workbench.index.indexer import Indexer

        ws = self.workspace(root)
        try:
            serve = variants.serving(ws, overrides)
            built = serve.workspace.exists()
            # stale: the parent's documents changed, its run was cut off, or the model was trained again under its name
            stale = built and (variants.needs_index(ws, serve) or bool(Indexer(serve.workspace, serve.config).rebuild_reason()))
        except Exception as exc:
            raise _wrap(exc) from exc
        return VariantInfo(str(serve.workspace.root), serve.label, serve.is_variant, built, stale)

    def build_variant(self, root, overrides: dict[str, str], progress: Callable[[str, int, int], None]) -> str:
        """Index the parent's documents with ``overrides`` into the variant (incrementally); returns
        the variant's root."""
        from workbench import variants

        ws = self.workspace(root)
        try:
            serve = variants.serving(ws, overrides)
        except Exception as exc:
            raise _wrap(exc) from exc
        try:
            variants.build_variant(ws, serve, progress=progress, device=self.device)
        except Exception as exc:
            raise _wrap(exc) from exc
        finally:
            self.invalidate(serve.workspace.root)  # a Searcher opened on it before is out of date
        return str(serve.workspace.root)


@dataclass
class VariantInfo:
    root: str  # the workspace that answers queries with the overrides
    label: str  # e.g. "dense=ft1" ("" when the overrides change nothing that is indexed)
    is_variant: bool
    built: bool
    stale: bool
