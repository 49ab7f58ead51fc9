"""The Searcher: one open workspace, its encoders, and every query pipeline.

Contract:
- opening checks that the workspace holds an index built with the configured models
  (WorkspaceError otherwise) and loads nothing heavy; encoders load on first need;
- ``search`` answers one query; ``search_many`` answers many with one encoder pass per model;
- results are documents (max over their chunks) by default, or chunks with ``unit="chunk"``;
- every hit carries each mode's score and rank that contributed (within that mode's top ``depth``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.config import WorkspaceConfig
from workbench.encoders.device import numpy_query_threads, query_thread_limit
from workbench.encoders.templates import resolve_instruction
from workbench.errors import ModelError, UsageError, WorkspaceError
from workbench.index.unfinished import UNFINISHED_RUN, cut_off_note, resume_command, unfinished_note
from workbench.index.settings import settings_from_config, settings_from_dict
from workbench.models.registry import fingerprint, model_labels
from workbench.search.fusion import fuse, interpolate
from workbench.search.maxsim import (cpu_matmul_dtype, maxsim_bits, maxsim_chunks, maxsim_tensor,
                                      rescored_contenders)
from workbench.search.pipelines import Pipeline, parse_pipeline
from workbench.search.results import QueryResult, make_snippet
from workbench.types import Hit
from workbench.workspace import Workspace


def best_first(scores: np.ndarray, depth: int) -> np.ndarray:
    """The positions of the ``depth`` best ``scores``, best first, equal scores in position order.

    Contract: the answer at one depth is a prefix of the answer at any greater depth, even when
    scores tie (duplicate documents do): ties at the cut keep the lowest positions, so ``-k 500``
    begins with ``-k 10``'s rows in the same order, and fusion's tie-break by rank sees one order."""
    n = len(scores)
    depth = min(depth, n)
    if depth <= 0:
        return np.empty(0, dtype=np.int64)
    if depth < n:
        cut = -np.partition(-scores, depth - 1)[depth - 1]
        pool = np.flatnonzero(scores >= cut)  # every row tied with the cut, in position order
    else:
        pool = np.arange(n)
    order = np.lexsort((pool, -scores[pool]))[:depth]
    return pool[order].astype(np.int64)


@dataclass
class EncodedQuery:
    text: str
    dense: np.ndarray | None = None
    tokens: np.ndarray | None = None
    sparse_ids: np.ndarray | None = None
    sparse_weights: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _require_building_models(workspace: Workspace, settings) -> None:
    """WorkspaceError when a model an index was built with has changed on disk since (a run trained
    again under the same name, an overwritten folder): its queries would be encoded by other weights
    than its documents, so the index cannot answer until it is indexed again with it. A built-in
    model whose install is damaged (a file gone or resized) is a ModelError that says to reinstall
    it instead (the reinstalled files are the indexed ones); one whose files were written in place
    since it was installed (the sizes alike) says to reinstall it with ``--force``."""
    for role, path, recorded in (("dense", settings.dense_path, settings.dense_fingerprint),
                                 ("colbert", settings.colbert_name, settings.colbert_fingerprint),
                                 ("sparse", settings.sparse_path, settings.sparse_fingerprint)):
        path = str(Path(path).expanduser()) if path else path  # wb.toml keeps `colbert = "~/cb"` as written
        if not path or not Path(path).is_dir() and role == "colbert":
            continue  # the zero-shot ColBERT stand-in is the dense model's
        if fingerprint(path) == recorded:
            continue
        from workbench.models.cache import builtin_changed_in_place, builtin_install_problem

        damaged = builtin_install_problem(path)
        if damaged:  # reinstalling gives back the same files (and fingerprint): no re-indexing
            name, problem = damaged
            raise ModelError(f"the {role} model this index was built with, the built-in {name}, is {problem}: "
                             f"run `wb models install {name}`")
        name = builtin_changed_in_place(path)
        if name:  # the same names and sizes, other bytes: only a forced reinstall rewrites them
            raise ModelError(f"the {role} model this index was built with, the built-in {name}, has files changed "
                             f"since it was installed: `wb models install --force {name}` restores them "
                             f"(no re-indexing needed)")
        from workbench.variants import is_variant, short_model_name

        run = Path(path)
        flag = f"runs/{short_model_name(path)}" if run.parent.parent.name == "runs" else path
        again = f"`wb index --model {role}={flag}`" if is_variant(workspace) else "`wb index`"
        raise WorkspaceError(f"the {role} model this index was built with has changed on disk since ({path}): "
                             f"its documents would not match the queries; {again} indexes them again with it")


def one_shot_backend(pipe: Pipeline, reranker: str, many: bool = False) -> str:
    """The backend for a process that answers one query and exits (`wb query`): numpy, which skips
    importing torch (1.4-1.8 s of 2.5 on the 2-core machine), unless a model reranker will import it
    anyway (then torch serves the whole query: its thread pool and numpy's BLAS must not both spin).
    ``many`` (a file of queries, `wb query --queries`): torch, the backend `wb eval` answers with, so
    that a run written there reads back as eval's own (both encode queries in fp32; on a CPU with
    native bf16 torch's MaxSim multiplies in bf16: near-ties can order differently).
    ``WB_QUERY_BACKEND=torch|numpy`` decides instead."""
    from workbench.encoders.device import forced_query_backend

    return forced_query_backend() or ("torch" if many or (pipe.rerank and reranker != "maxsim") else "numpy")


class Searcher:
    def __init__(
        self,
        workspace: Workspace,
        *,
        config: WorkspaceConfig | None = None,
        device: str | None = None,
        check_models: bool = True,
        serve_stale: bool = False,
        backend: str = "torch",
    ) -> None:
        """``check_models``: refuse (WorkspaceError) an index built with other models than ``config``
        names, unless ``serve_stale``: then the index answers with the models that built it and
        ``serving_note`` says so (`wb query`, the TUI: an edited wb.toml must not stop searching).

        ``backend``: ``"torch"`` (default: batched encoding, bf16 where the hardware has it) or
        ``"numpy"`` for a one-shot query: encoders (where ``numpy_bert`` reproduces the models), dense
        products and MaxSim run in numpy, so a query of the default models never imports torch
        (importing it is most of a cold ``wb query``). Same results up to fp32 summation order (queries
        are encoded in fp32 by both; where the CPU multiplies bf16 natively, torch's MaxSim does so in
        bf16: ``search/maxsim.py``). A cross-encoder reranker still runs in torch."""
        if backend not in ("torch", "numpy"):
            raise UsageError(f"unknown query backend '{backend}' (torch or numpy)")
        self.backend = backend
        from workbench.encoders.bundle import EncoderBundle
        from workbench.index import rebuild
        from workbench.store.manifest import Manifest
        from workbench.store.tantivy_store import TantivyChunkStore

        rebuild.settle(workspace)
        workspace.require()
        self.workspace = workspace
        self.config = config or workspace.config()
        with Manifest(workspace.manifest_path) as manifest:
            recorded = self._recorded_settings = manifest.get_meta("settings")
            n_docs = manifest.count_docs()
            self._snapshot_version = manifest.get_meta("snapshot_version")
            pending = manifest.roots_to_reindex()
            unfinished = manifest.get_meta(UNFINISHED_RUN)
        if recorded is None or n_docs == 0:
            if unfinished and not pending and not workspace.being_written():
                raise WorkspaceError(f"workspace {workspace.root} holds no documents yet: "
                                     f"{cut_off_note(unfinished, workspace)}")
            if pending and not workspace.being_written():
                raise WorkspaceError(f"workspace {workspace.root} holds no documents: a rebuild after a settings "
                                     "change was interrupted; `wb index` finishes it")
            if workspace.being_written():
                raise WorkspaceError(f"workspace {workspace.root} is being indexed and holds no documents yet: "
                                     "query again when `wb index` has finished")
            again = resume_command(workspace, "PATH")
            raise WorkspaceError(f"workspace {workspace.root} is empty: run {again} first")
        self.settings = settings_from_dict(recorded).with_builtins_located()  # a moved model cache
        self.serving_note = ""  # why the index answers with other settings than wb.toml's ("": it does not)
        served = self.config.models
        if check_models:
            try:
                configured = settings_from_config(self.config)
                diffs = self.settings.differences(configured)
                if self.settings.same_dense_model(configured):  # wb.toml's query template, at once (no re-index)
                    self.settings = self.settings.with_query_side(configured)
            except ModelError as exc:  # wb.toml names a model that is not there (a typo, an uninstalled one)
                if not serve_stale:
                    raise
                _require_building_models(workspace, self.settings)
                diffs = ["models"]
                self.serving_note = rebuild.unusable_models_note(exc)
            models = [d for d in diffs if d not in rebuild.CHUNK_SETTINGS]
            if models and not serve_stale:  # a variant's hints name its own `wb index --model ...`
                again = resume_command(workspace, None)
                under_way = f" (a rebuild with them is staged: {again} finishes it)" if rebuild.in_progress(workspace) else ""
                raise WorkspaceError(f"workspace {workspace.root} was built with other models "
                                     f"({rebuild.described(models)} differ){under_way}: re-run "
                                     f"{resume_command(workspace, 'PATH')}")
            if models:  # the old index can answer only while the models that built it are still there
                _require_building_models(workspace, self.settings)
            self.serving_note = self.serving_note or rebuild.state_note(workspace, diffs)
            if models:  # the labels name the models that answer: the index's own
                served = self.settings.models_of(served)
        partial = unfinished_note(workspace, unfinished)  # an indexing run that has not ended
        self.serving_note = "; ".join(n for n in (self.serving_note, partial) if n)
        # a run cut off after writing, before it published its read snapshot: the snapshot is read
        # again from the stores (see ``snapshot``), so the dense and ColBERT answers and the
        # snippets agree with Tantivy's (a run still writing publishes its own when it ends)
        self._cut_off = bool(unfinished) and not workspace.being_written()
        self.bundle = EncoderBundle(self.settings, device=device, numpy_queries=backend == "numpy")
        self._lance = None
        self._ann_for = None  # (snapshot, whether dense retrieval uses the ANN index): _dense_ann
        self.tantivy = TantivyChunkStore(workspace.tantivy_dir, self.settings.sparse_step)
        self._catalog = None
        self._all_tokens = None
        self._reranker = None
        self._snapshot = None
        self._dense_view = None  # (the snapshot it views, its dense matrix as a torch tensor)
        self.models = model_labels(served)

    # -- lazily loaded state ------------------------------------------------------
    @property
    def lance(self):
        """The LanceDB store (opened only when needed: the query path reads the snapshot)."""
        if self._lance is None:
            from workbench.store.lance_store import LanceChunkStore

            self._lance = LanceChunkStore(self.workspace.lance_dir)
        return self._lance

    @property
    def snapshot(self):
        """The read snapshot of the indexed version (rebuilt from LanceDB if it is missing)."""
        if self._snapshot is None:
            from workbench.store import snapshot

            folder = self.workspace.snapshot_dir
            snap = self._load_published(snapshot, folder)
            if snap is not None and self._cut_off and self.lance.table.version != self._snapshot_version:
                snap = None  # the cut-off run wrote past the published snapshot
            if snap is None:  # an index written before snapshots, or a run killed before publishing
                from workbench.store.manifest import Manifest

                version = self.lance.table.version
                # a cut-off run's unfinished batch is left out, as Tantivy answers may lack it (the
                # next `wb index` deletes it first)
                with Manifest(self.workspace.manifest_path) as manifest:
                    unfinished_docs = manifest.pending() if self._cut_off else []
                held = version

                def record() -> None:  # a `wb index` that published a newer version meanwhile keeps its pointer
                    nonlocal held
                    with Manifest(self.workspace.manifest_path) as manifest:
                        held = manifest.raise_meta("snapshot_version", version)

                snapshot.build(folder, self.lance.table, version, unfinished_docs, record=record)
                snap = snapshot.load(folder, held) if held != version else None
                snap = snap or snapshot.load(folder, version)
                if snap is None:
                    from workbench.errors import WorkspaceError

                    raise WorkspaceError(f"the index of {self.workspace.root} changed while it was read: "
                                         "run the query again")
            self._snapshot = snap
        return self._snapshot

    def _load_published(self, snapshot, folder: Path):
        """The published snapshot, memory-mapped; None if there is none (``snapshot`` builds it). A
        `wb index` that published a newer one since this Searcher opened removes the one it recorded,
        also while it is being read: the manifest's newer one is read instead, if built with the same
        settings (else WorkspaceError: run the query again)."""
        from workbench.store.manifest import Manifest

        for _ in range(5):  # a new publication each time round: runs finishing as fast as this reads
            if self._snapshot_version is None:
                return None
            snap = snapshot.load(folder, self._snapshot_version)
            if snap is not None:
                return snap
            with Manifest(self.workspace.manifest_path) as manifest:
                newer, settings = manifest.get_meta("snapshot_version"), manifest.get_meta("settings")
            if newer is None or newer == self._snapshot_version:
                return None  # missing (an index written before snapshots, a run killed before publishing)
            if settings != self._recorded_settings:  # a settings rebuild swapped in: other models
                break
            self._snapshot_version = newer
        raise WorkspaceError(f"the index of {self.workspace.root} changed while it was read: run the query again")

    def _dense_tensor(self):
        """The snapshot's dense matrix as a torch view (no copy): query-time products go through
        torch's thread pool, never numpy's BLAS, whose spinning workers would take a core from it."""
        snap = self.snapshot
        if self._dense_view is None or self._dense_view[0] is not snap:
            import warnings

            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch warns that the memmap is read-only
                self._dense_view = (snap, torch.from_numpy(np.asarray(snap.dense, dtype=np.float32)))
        return self._dense_view[1]

    def _dense_scores(self, q: EncodedQuery, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine of the query's pooled vector with every chunk (``rows``: with those), float32."""
        if self.backend == "numpy":
            matrix = np.asarray(self.snapshot.dense)
            if rows is not None:
                matrix = matrix[np.asarray(rows, dtype=np.int64)]
            return matrix @ np.ascontiguousarray(q.dense, dtype=np.float32)
        import torch

        matrix = self._dense_tensor()
        if rows is not None:
            matrix = matrix[torch.from_numpy(np.asarray(rows, dtype=np.int64))]
        with torch.inference_mode():
            return torch.mv(matrix, torch.from_numpy(np.ascontiguousarray(q.dense, dtype=np.float32))).numpy()

    @property
    def catalog(self):
        if self._catalog is None:
            from workbench.search.catalog import Catalog

            self._catalog = Catalog.from_arrow(self.snapshot.catalog_table)
        return self._catalog

    @property
    def tokens(self):
        """The memory-mapped ColBERT token matrix, and catalog row -> token-matrix row."""
        if self._all_tokens is None:
            matrix = self.snapshot.tokens
            self._all_tokens = (matrix, np.arange(len(matrix.keys), dtype=np.int64))
        return self._all_tokens

    def _exact_colbert(self) -> bool:
        return int(self.catalog.token_counts.sum()) <= self.config.index.colbert_exact_max_tokens

    def maxsim_rows(self, query_tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact MaxSim of a float32 query against the given catalog rows (``maxsim_chunks``: the
        stored bf16 widened to fp32, products and sums in fp32), on every backend and CPU, so the
        torch backend (TUI, `wb eval`, `wb query --queries`) scores as `wb query` does. (A bf16
        product, ``CandidateScorer``, rounds the query and each similarity: scores off by up to
        ~5e-3, 2 of 16 queries ordered their ColBERT top 10 otherwise. The price on an avx512_bf16
        CPU, 2 threads, chunks of 50-255 tokens: 0.98x / 1.29x / 1.09x the bf16 time at 150 / 400 /
        1,500 chunks (13.1 / 30.8 / 100 ms; ``bench/bench_maxsim_candidates.py``).)"""
        matrix, mapping = self.tokens
        chunk_rows = mapping[np.asarray(rows, dtype=np.int64)]
        chunks = (matrix.bits, matrix.starts[chunk_rows], matrix.lengths[chunk_rows])
        if self.backend == "numpy":
            return maxsim_chunks(query_tokens, *chunks)
        import torch

        # numpy's BLAS is on one thread here: a pool of torch's count
        return maxsim_chunks(query_tokens, *chunks, threads=torch.get_num_threads())

    # -- encoding ---------------------------------------------------------------------
    def encode_queries(self, texts: list[str], modes: set[str], instruction: str = "") -> list[EncodedQuery]:
        out = [EncodedQuery(t) for t in texts]
        if modes & {"dense", "colbert"}:
            self._timed_load("load_dense", lambda: self.bundle.dense, out)
            t0 = time.perf_counter()
            rendered = [self.settings.templates.render_query(t, instruction) for t in texts]
            trained = self.bundle.colbert if "colbert" in modes else None  # a trained ColBERT: own encoder
            enc = self.bundle.dense.encode(rendered, tokens="colbert" in modes and trained is None, queries=True,
                                           prompt=self.settings.templates.query_prompt(instruction))
            ms = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
            for i, q in enumerate(out):
                q.dense = enc.dense[i]
                q.tokens = enc.tokens[i].astype(np.float32) if enc.tokens is not None else None
                q.timings["encode_dense"] = ms
            if trained is not None:  # raw query text: ColBERT models take no prompt template
                t0 = time.perf_counter()
                vecs = trained.encode_queries(list(texts))
                ms = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
                for q, v in zip(out, vecs):
                    q.tokens = v.astype(np.float32)
                    q.timings["encode_colbert"] = ms
        if "sparse" in modes:
            self._timed_load("load_sparse", lambda: self.bundle.sparse, out)
            t0 = time.perf_counter()
            vecs = self.bundle.sparse.encode(texts, queries=True)
            ms = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
            for q, v in zip(out, vecs):
                q.sparse_ids, q.sparse_weights = v.ids, v.weights
                q.timings["encode_sparse"] = ms
        return out

    def _timed_load(self, name: str, load, queries: list[EncodedQuery]) -> None:
        """Run a lazy load outside the per-stage timings; record it (once) if it took time."""
        t0 = time.perf_counter()
        load()
        ms = (time.perf_counter() - t0) * 1000
        if ms > 1.0 and queries:
            queries[0].timings[name] = ms

    # -- retrieval per mode (chunk rows, best first) ----------------------------------
    def _rows(self, keys: np.ndarray) -> np.ndarray:
        row_of = self.catalog.row_of
        return np.array([row_of.get(int(k), -1) for k in keys], dtype=np.int64)

    def _ann_store(self):
        """LanceDB's table at the snapshot's version when dense retrieval goes through its ANN index,
        else None (the exact scan): the index holds more than ``[index] dense_exact_max_rows`` chunks
        and `wb index` had built the index by that version (until it has, an index that grew past the
        limit is scanned exactly). The table is read as it was when the snapshot was published, so the
        candidates are the snapshot's rows whatever a `wb index` run writes meanwhile. Opened once per
        snapshot version; a version LanceDB cannot open or list the indexes of (cleaned up since, its
        files damaged) is scanned exactly."""
        snap = self.snapshot
        if self._ann_for is None or self._ann_for[0] is not snap:
            store = None
            if self.catalog.size > self.config.index.dense_exact_max_rows:
                pinned = self.lance.at_version(snap.version)
                try:
                    store = pinned if pinned.dense_index_rows() is not None else None
                except WorkspaceError:
                    store = None
            self._ann_for = (snap, store)
        return self._ann_for[1]

    def _dense_ann(self) -> bool:
        """True when dense retrieval goes through LanceDB's ANN index (``_ann_store``)."""
        return self._ann_store() is not None

    def _mode_dense(self, q: EncodedQuery, depth: int):
        """Exact cosine over the snapshot's vectors; LanceDB's ANN index where ``_dense_ann``."""
        store = self._ann_store()
        if store is not None:  # the index's best dense_ann_refine x depth, rescored exactly
            try:
                keys, _approximate = store.dense_search(q.dense, depth * self.config.index.dense_ann_refine)
            except WorkspaceError:  # its files removed meanwhile (a newer snapshot was published)
                self._ann_for = (self._ann_for[0], None)  # this snapshot is scanned exactly from now on
                keys = None
            if keys is not None:
                rows = self._rows(keys)
                # sorted (equal scores in row order, as the exact scan ranks them); a row the snapshot
                # lacks (a cut-off run's unfinished batch, left out of its snapshot) is dropped
                rows = np.unique(rows[rows >= 0])
                # fewer than depth left: rows the snapshot lacks took candidates, and one of its own
                # rows may be missing; the exact scan answers (the same list, at the exact scan's cost)
                if len(rows) >= min(depth, self.catalog.size):
                    sims = self._dense_scores(q, rows)
                    top = best_first(sims, depth)
                    return rows[top], sims[top]
        sims = self._dense_scores(q)
        top = best_first(sims, depth)
        return top, sims[top]

    def _mode_bm25(self, q: EncodedQuery, depth: int):
        keys, scores = self.tantivy.bm25_search(q.text, depth)
        return self._rows(keys), scores

    def _mode_sparse(self, q: EncodedQuery, depth: int):
        keys, scores = self.tantivy.sparse_search(q.sparse_ids, q.sparse_weights, depth)
        return self._rows(keys), scores

    def _mode_colbert(self, q: EncodedQuery, depth: int, candidates: np.ndarray | None):
        if self._exact_colbert():
            matrix, mapping = self.tokens
            if self.backend == "numpy":
                scores_tm = maxsim_bits(q.tokens, matrix.bits, matrix.lengths, threads=numpy_query_threads())
                scores = scores_tm[mapping]
            else:
                import torch

                scores_tm = maxsim_tensor(torch.from_numpy(q.tokens), matrix.full_tensor(), matrix.lengths)
                scores = scores_tm[mapping]
                if cpu_matmul_dtype() == torch.bfloat16:  # bf16 products: rescore what can reach the top exactly
                    near, exact = rescored_contenders(q.tokens, scores, depth,
                                                      lambda rows: self.maxsim_rows(q.tokens, rows))
                    top = best_first(exact, depth)  # near is ascending: equal scores keep row order
                    return near[top], exact[top]
            top = best_first(scores, depth)
            return top, scores[top]
        if candidates is None or len(candidates) == 0:
            dense_rows, _ = self._mode_dense(q, self.config.index.colbert_candidates)
            bm25_rows, _ = self._mode_bm25(q, depth)
            candidates = np.concatenate([dense_rows, bm25_rows[bm25_rows >= 0]])
        candidates = np.unique(candidates[candidates >= 0])
        scores = self.maxsim_rows(q.tokens, candidates)
        order = best_first(scores, depth)  # candidates are sorted: equal scores keep row order
        return candidates[order], scores[order]

    def run_modes(self, q: EncodedQuery, modes: tuple[str, ...], depth: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for mode in ("dense", "sparse", "bm25"):
            if mode in modes:
                t0 = time.perf_counter()
                rows, scores = getattr(self, f"_mode_{mode}")(q, depth)
                keep = rows >= 0
                lists[mode] = (rows[keep], scores[keep])
                q.timings[mode] = (time.perf_counter() - t0) * 1000
        if "colbert" in modes:
            t0 = time.perf_counter()
            cand = None
            if len(lists) and not self._exact_colbert():
                cand = self.fusion_colbert_candidates(q, lists)
            lists["colbert"] = self._mode_colbert(q, depth, cand)
            q.timings["colbert"] = (time.perf_counter() - t0) * 1000
        if self.config.fusion.complete and len(lists) > 1:
            t0 = time.perf_counter()
            lists = self.complete_lists(q, lists)
            q.timings["complete"] = (time.perf_counter() - t0) * 1000
        return lists

    def fusion_colbert_candidates(self, q: EncodedQuery, lists: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The chunk rows ColBERT scores exactly inside a fused pipeline: the other modes' top
        ``hybrid_colbert_depth`` each (0: whole lists), widened by the dense top
        ``hybrid_colbert_extra`` (without dense among them, e.g. colbert+bm25, by the dense top
        ``colbert_candidates`` as for colbert alone). Unique, ascending."""
        index = self.config.index
        extra_n = index.hybrid_colbert_extra if "dense" in lists else index.colbert_candidates
        extra = [self._mode_dense(q, extra_n)[0]] if extra_n > 0 else []
        head = index.hybrid_colbert_depth or None
        cand = np.concatenate([rows[:head] for rows, _ in lists.values()] + extra)
        return np.unique(cand[cand >= 0])

    @property
    def sparse_vectors(self):
        """The snapshot's learned-sparse vectors (added to a snapshot written before it had them)."""
        snap = self.snapshot
        if snap.sparse is None:
            from workbench.store import snapshot

            snapshot.add_sparse(self.workspace.snapshot_dir, snap.version, self.lance.table)
            self._snapshot = snap = snapshot.load(self.workspace.snapshot_dir, snap.version)
        return snap.sparse

    def complete_lists(self, q: EncodedQuery, lists: dict[str, tuple[np.ndarray, np.ndarray]]):
        """``[fusion] complete``: every candidate of any list, scored exactly in dense, sparse and
        ColBERT (whichever of them the pipeline runs), so fusion never has to stand a missing score
        in for one; BM25 keeps its own list. Each completed list is best first."""
        union = np.unique(np.concatenate([rows for rows, _ in lists.values()]))
        out = dict(lists)
        for mode, (rows, scores) in lists.items():
            if mode == "dense":
                full = self._dense_scores(q, union)
            elif mode == "sparse":
                full = self.sparse_vectors.dot(union, q.sparse_ids, q.sparse_weights)
            elif mode == "colbert":
                known = dict(zip(rows.tolist(), scores.tolist()))
                missing = np.array([r for r in union.tolist() if r not in known], dtype=np.int64)
                if len(missing):
                    known.update(zip(missing.tolist(), self.maxsim_rows(q.tokens, missing).tolist()))
                full = np.array([known[r] for r in union.tolist()], dtype=np.float32)
            else:
                continue
            order = np.argsort(-np.asarray(full, dtype=np.float64), kind="stable")
            out[mode] = (union[order], np.asarray(full, dtype=np.float32)[order])
        return out

    def mode_runs(
        self,
        texts: list[str],
        *,
        modes: tuple[str, ...] = ("dense", "colbert", "sparse", "bm25"),
        depths: tuple[int, ...] = (100,),
        instruction: str | None = None,
        unit: str = "doc",
        progress=None,
    ) -> dict[int, list[dict[str, dict[str, float]]]]:
        """Read-only, for tuning fusion (workbench/eval/tune.py): each mode's own ranked list, as
        ``_answer`` would fuse it with the first-stage depth ``d``, for every ``d`` in ``depths``.

        Returns ``{d: [per query: {mode: {id: score} best first}]}``; the queries are encoded once.
        """
        instr = resolve_instruction(instruction)
        encoded = self.encode_queries(list(texts), set(modes), instr)
        out: dict[int, list[dict[str, dict[str, float]]]] = {d: [] for d in depths}
        for i, q in enumerate(encoded):
            for d in depths:
                lists = self.run_modes(q, modes, d)
                out[d].append({m: {key: s for key, (s, _r) in self._by_unit(rows, scores, unit).items()}
                               for m, (rows, scores) in lists.items()})
            if progress:
                progress(i + 1, len(encoded))
        return out

    # -- assembling -------------------------------------------------------------------
    def _by_unit(self, rows: np.ndarray, scores: np.ndarray, unit: str) -> dict[str, tuple[float, int]]:
        """id -> (score, best chunk row); documents take their best chunk."""
        cat = self.catalog
        out: dict[str, tuple[float, int]] = {}
        for row, score in zip(rows.tolist(), scores.tolist()):
            key = cat.doc_ids[row] if unit == "doc" else cat.chunk_ids[row]
            if key not in out:  # lists are best-first
                out[key] = (float(score), row)
        return out

    def search(
        self,
        text: str,
        *,
        pipeline: str = "hybrid",
        k: int = 10,
        instruction: str | None = None,
        unit: str = "doc",
        rerank_depth: int | None = None,
    ) -> QueryResult:
        """One query's answer; an empty or blank ``text`` is refused (UsageError), not answered with
        whatever the modes return for nothing."""
        if not text.strip():
            raise UsageError("the query is empty")
        return self.search_many([text], pipeline=pipeline, k=k, instruction=instruction, unit=unit,
                                rerank_depth=rerank_depth)[0]

    def search_many(
        self,
        texts: list[str],
        *,
        pipeline: str = "hybrid",
        k: int = 10,
        instruction: str | None = None,
        unit: str = "doc",
        rerank_depth: int | None = None,
        progress=None,
    ) -> list[QueryResult]:
        if k < 1:
            raise UsageError("-k must be at least 1")
        if rerank_depth is not None and rerank_depth < 1:
            raise UsageError("--rerank-depth must be at least 1")
        if unit not in ("doc", "chunk"):
            raise UsageError("unit must be 'doc' or 'chunk'")
        pipe = parse_pipeline(pipeline)
        weights = self.config.fusion.weights
        if len(pipe.modes) > 1 and all(float(weights.get(m, 1.0)) == 0.0 for m in pipe.modes):
            raise UsageError(f"every mode of pipeline {pipe.name} has weight 0 in wb.toml's [fusion.weights]: "
                             "give one of them a positive weight, or query one mode alone")
        instr = resolve_instruction(instruction)
        # model work at query time runs on the idle cores only (see device.query_threads); bm25 alone
        # imports no torch
        with query_thread_limit(bool(set(pipe.modes) - {"bm25"}) or pipe.rerank, backend=self.backend):
            encoded = self.encode_queries(texts, self._encoded_modes(pipe), instr)
            if encoded:
                self._timed_load("load_index", lambda: (self.catalog, self.snapshot.dense), encoded)
            results = []
            for i, q in enumerate(encoded):
                # the encoding and loads done before this query's answer (a load inside it, the
                # reranker's, is in the answer's own wall time already)
                before = sum(v for key, v in q.timings.items() if key.startswith(("encode", "load")))
                t0 = time.perf_counter()
                results.append(self._answer(q, pipe, k, instr, unit, rerank_depth))
                results[-1].timings_ms["total"] = (time.perf_counter() - t0) * 1000 + before
                if progress:
                    progress(i + 1, len(encoded))
        return results

    def _encoded_modes(self, pipe: Pipeline) -> set[str]:
        """The modes a query of ``pipe`` is encoded for: its own, and ColBERT's token vectors when the
        MaxSim reranker reranks it (encoded with the instruction, in the same forward pass)."""
        return pipe.encoded_modes(self.config.models.reranker)

    def instruction_reaches(self, pipe: Pipeline) -> bool:
        """Whether an instruction changes ``pipe``'s ranking: the dense model reads it (dense, and
        ColBERT's or the MaxSim reranker's token vectors from the dense model's forward pass) when its
        query template has ``{instruction}``; BM25, sparse, a trained ColBERT and a cross-encoder read
        the bare query."""
        from workbench.encoders.templates import template_fields

        if "instruction" not in template_fields(self.settings.templates.query):
            return False  # a query template without {instruction} drops it
        modes = self._encoded_modes(pipe)
        return "dense" in modes or ("colbert" in modes and not self.bundle.colbert_is_trained)

    def _answer(self, q: EncodedQuery, pipe: Pipeline, k: int, instr: str, unit: str, rerank_depth) -> QueryResult:
        fusion = self.config.fusion
        size = max(1, self.catalog.size)  # no list is longer than the index: a huge -k or depth is the whole index
        k = min(k, size)
        depth = min(max(fusion.depth, k), size)
        depth_for_rerank = min(rerank_depth or self.config.rerank.depth, size)
        if pipe.rerank:
            depth = max(depth, depth_for_rerank)
        fused_depth = min(max(fusion.depth, depth_for_rerank if pipe.rerank else 0), size)  # for any k
        lists = self.run_modes(q, pipe.modes, depth)
        per_mode = {m: self._by_unit(rows, scores, unit) for m, (rows, scores) in lists.items()}
        # depth counts chunks: documents of many chunks can leave fewer than k documents in all
        # the lists together; only then widen (until k, or until no mode has more to give), so a
        # ranking that already holds k documents is fused from exactly the configured depth
        while (depth < self.catalog.size and len(set().union(*per_mode.values())) < k
               and any(len(rows) >= depth for rows, _ in lists.values())):
            depth = min(self.catalog.size, depth * 2)
            q.timings = {key: v for key, v in q.timings.items() if key.startswith(("encode", "load"))}
            lists = self.run_modes(q, pipe.modes, depth)
            per_mode = {m: self._by_unit(rows, scores, unit) for m, (rows, scores) in lists.items()}
        t0 = time.perf_counter()
        head = None
        if len(per_mode) == 1:
            (mode, entries), = per_mode.items()
            fused = {key: s for key, (s, _row) in entries.items()}
        else:
            runs = {m: {key: s for key, (s, _r) in e.items()} for m, e in per_mode.items()}
            # lists deeper than the fusion depth (a large -k, or widened for documents): only each
            # list's first fused_depth chunks are fused, so the top never depends on -k
            head = ({m: len(self._by_unit(rows[:fused_depth], scores[:fused_depth], unit))
                     for m, (rows, scores) in lists.items()} if depth > fused_depth and not fusion.complete else None)
            fused = fuse(runs, fusion.weights, fusion.method, fusion.rrf_k, head)
        q.timings["fusion"] = (time.perf_counter() - t0) * 1000
        ranks = {m: {key: r for r, key in enumerate(e, start=1)} for m, e in per_mode.items()}
        # what a hit says of each mode (its score, rank and chunk) comes from the lists as fused: the
        # head of each when the lists run deeper, so `-k 40` shows `-k 3`'s top as `-k 3` does; a
        # document in no head falls back to the deeper lists
        fused_part = ({m: dict.fromkeys(list(e)[: head[m]]) for m, e in per_mode.items()} if head is not None
                      else per_mode)

        def shown_modes(key: str) -> list[str]:
            return ([m for m in per_mode if key in fused_part[m]]
                    or [m for m in per_mode if key in per_mode[m]])

        # equal fused scores keep the modes' own order (a bm25-only tie stays in bm25's order), then ids
        best_rank = {key: min(r[key] for r in ranks.values() if key in r) for key in fused}
        ranking = sorted(fused.items(), key=lambda kv: (-kv[1], best_rank[kv[0]], kv[0]))
        modes_of = {key: shown_modes(key) for key in fused}
        best_row = {key: per_mode[modes[0]][key][1] for key, modes in modes_of.items()}
        if pipe.rerank:
            ranking = self._rerank(q, ranking, best_row, depth_for_rerank, unit)
        hits = []
        cat = self.catalog
        for rank, (key, score) in enumerate(ranking[:k], start=1):
            row = best_row[key]
            hits.append(
                Hit(
                    rank=rank,
                    doc_id=cat.doc_ids[row],
                    chunk_id=cat.chunk_ids[row],
                    path=cat.paths[row],
                    title=cat.titles[row],
                    score=float(score),
                    scores={m: per_mode[m][key][0] for m in modes_of.get(key) or per_mode if key in per_mode[m]},
                    ranks={m: ranks[m][key] for m in modes_of.get(key) or per_mode if key in ranks[m]},
                    snippet=make_snippet(cat.texts[row], q.text),
                )
            )
        return QueryResult(
            query=q.text,
            instruction=instr,
            instruction_used=bool(instr) and self.instruction_reaches(pipe),
            pipeline=pipe.name,
            models=self.models,
            results=hits,
            timings_ms=dict(q.timings),
            unit=unit,
            note=self.serving_note,
        )

    # -- reranking --------------------------------------------------------------------
    def _rerank(self, q, ranking, best_row, depth, unit):
        t0 = time.perf_counter()
        head = ranking[:depth]
        tail = ranking[depth:]
        if not head:
            return ranking
        kind = self.config.models.reranker
        if kind == "maxsim":
            if q.tokens is None:
                raise AssertionError("a MaxSim rerank needs the query's token vectors: encode for _encoded_modes(pipe)")
            cat = self.catalog
            # a document is its best chunk: score every chunk of each head document (not only those
            # the first stage retrieved, which would make the score depend on the pipeline); a
            # cross-encoder below reads only the first stage's best chunk (README: `chunk_id`)
            rows_by_key = ({key: cat.rows_of_doc[cat.doc_ids[best_row[key]]] for key, _ in head} if unit == "doc"
                           else {key: [best_row[key]] for key, _ in head})
            flat_rows = np.array(sorted({r for rs in rows_by_key.values() for r in rs}), dtype=np.int64)
            scores = dict(zip(flat_rows.tolist(), self.maxsim_rows(q.tokens, flat_rows).tolist()))
            rerank_scores = {key: max(scores[r] for r in rows) for key, rows in rows_by_key.items()}
        else:
            self._timed_load("load_reranker", lambda: self.reranker, [q])  # a first query's load is no rerank time
            t0 = time.perf_counter()
            reranker = self.reranker
            cat = self.catalog
            passages = [cat.texts[best_row[key]] for key, _ in head]
            titles = [cat.titles[best_row[key]] for key, _ in head]
            values = reranker.score(q.text, [f"{t} {p}".strip() for t, p in zip(titles, passages)])
            rerank_scores = {key: float(v) for (key, _), v in zip(head, values)}
        final = interpolate(dict(head), rerank_scores, self.config.rerank.interpolation)
        q.timings["rerank"] = (time.perf_counter() - t0) * 1000
        reranked = sorted(final.items(), key=lambda kv: -kv[1])  # stable: ties keep the first stage's order
        # keep the tail below the reranked head on the same (descending) scale
        floor = min(final.values()) if final else 0.0
        tail = [(key, floor - (i + 1) * 1e-6) for i, (key, _) in enumerate(tail)]
        return reranked + tail

    @property
    def reranker(self):
        if self._reranker is None:
            from workbench.encoders.rerankers import load_reranker
            from workbench.models.registry import resolve_role

            self._reranker = load_reranker(resolve_role("reranker", self.config.models), device=self.bundle.device)
        return self._reranker


