"""The encoders an index was built with, loaded lazily and shared by indexing and querying."""

from __future__ import annotations

from workbench.index.settings import IndexSettings


class EncoderBundle:
    """Dense(+ColBERT) and sparse encoders for one ``IndexSettings``; each loads on first use (an
    encoder whose vectors the indexer reuses from a donor index is never loaded).

    ``numpy_queries``: the dense, ColBERT and sparse roles are served by the numpy encoders
    (``numpy_bert``: no torch import) where they reproduce the model, else by the torch ones; for a
    one-shot query, never for indexing (they run one text at a time)."""

    def __init__(self, settings: IndexSettings, device: str | None = None, numpy_queries: bool = False) -> None:
        self.settings = settings
        self.device = device
        self.numpy_queries = numpy_queries
        self._dense = None
        self._colbert = None
        self._sparse = None
        self._chunk_tokenizer = None
        self._trained_colbert: bool | None = None
        self._joints: dict = {}  # folder -> JointEncoder: the roles a joint model fills share one

    def _colbert_path(self) -> str | None:
        """The colbert role's folder (None for zero-shot MaxSim over the dense model's tokens)."""
        s = self.settings
        if s.colbert_name == "zero-shot":
            return None
        from workbench.models.cache import resolve_model_path

        return resolve_model_path(s.colbert_name)

    def _joint(self, path: str | None):
        """The joint (dense + sparse + ColBERT) model in ``path``, shared by every role it fills (one
        forward pass for all of them), or None when ``path`` is not a joint folder."""
        from workbench.encoders.joint import JointEncoder, is_joint_folder

        if not is_joint_folder(path):
            return None
        from pathlib import Path

        key = str(Path(path).resolve())
        if key not in self._joints:
            joint = None
            if self.numpy_queries:
                from workbench.encoders.numpy_bert import NumpyJointEncoder

                joint = NumpyJointEncoder.load(str(path))
            self._joints[key] = joint or JointEncoder(str(path), device=self.device)
        return self._joints[key]

    @property
    def dense(self):
        if self._dense is None:
            from workbench.encoders.colbert import is_colbert_folder
            from workbench.encoders.dense import DenseEncoder
            from workbench.encoders.joint import is_joint_folder

            s = self.settings
            joint = self._joint(s.dense_path)
            if joint is not None:
                self._dense = joint.dense_view()
                return self._dense
            head = None
            path = self._colbert_path()
            if path is not None and not is_colbert_folder(path) and not is_joint_folder(path):
                # a projection over the dense tokens
                from pathlib import Path

                head = str(Path(path) / "colbert_head.pt")
            if self.numpy_queries:
                from workbench.encoders.numpy_bert import NumpyDenseEncoder

                self._dense = NumpyDenseEncoder.load(s.dense_path, colbert_head=head)
                if self._dense is not None:
                    return self._dense
            self._dense = DenseEncoder(s.dense_path, device=self.device, colbert_head=head)
        return self._dense

    @property
    def colbert(self):
        """A trained ColBERT model (its own encoder, ``ColbertEncoder``), or None when the ColBERT
        vectors come from the dense model's forward pass (zero-shot, or a projection head)."""
        if self._colbert is None:
            from workbench.encoders.colbert import ColbertEncoder, is_colbert_folder

            path = self._colbert_path()
            joint = self._joint(path)
            if joint is not None:
                self._colbert = joint.colbert_view()
            elif not is_colbert_folder(path):
                self._colbert = False
            else:
                if self.numpy_queries:
                    from workbench.encoders.numpy_bert import NumpyColbertEncoder

                    self._colbert = NumpyColbertEncoder.load(path)
                if not self._colbert:
                    self._colbert = ColbertEncoder(path, device=self.device)
        return self._colbert or None

    @property
    def colbert_is_trained(self) -> bool:
        """Whether ColBERT vectors come from a trained ColBERT folder (own encoder), without loading it."""
        if self._trained_colbert is None:
            from workbench.encoders.colbert import is_colbert_folder
            from workbench.encoders.joint import is_joint_folder

            path = self._colbert_path()
            self._trained_colbert = is_colbert_folder(path) or is_joint_folder(path)
        return self._trained_colbert

    @property
    def chunk_tokenizer(self):
        """The dense model's tokenizer, which cuts chunks; loads only the tokenizer when the dense
        encoder itself is not needed (its vectors reused from a donor index)."""
        if self._dense is not None:
            return self._dense.tokenizer
        if self._chunk_tokenizer is None:
            from workbench.encoders.device import auto_tokenizer

            self._chunk_tokenizer = auto_tokenizer(self.settings.dense_path, "dense model")
        return self._chunk_tokenizer

    @property
    def colbert_dim(self) -> int:
        """Width of the stored ColBERT vectors."""
        trained = self.colbert
        return trained.dim if trained is not None else self.dense.colbert_dim

    @property
    def sparse(self):
        if self._sparse is None:
            from workbench.encoders.sparse import SparseEncoder

            joint = self._joint(self.settings.sparse_path)
            # it reads a whole chunk (as many tokens as the dense model: chunk_tokens), at least 256;
            # queries at the length a SPLADE run trained them at (workbench.encoders.sparse)
            length = max(256, self.settings.chunk_tokens)
            if joint is None and self.numpy_queries:
                from workbench.encoders.numpy_bert import NumpySparseEncoder

                self._sparse = NumpySparseEncoder.load(self.settings.sparse_path, max_length=length)
                if self._sparse is not None:
                    return self._sparse
            self._sparse = (joint.sparse_view() if joint is not None
                            else SparseEncoder(self.settings.sparse_path, device=self.device, max_length=length))
        return self._sparse
