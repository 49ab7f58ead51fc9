"""The encoders an index was built with, loaded lazily and shared by indexing and querying."""

from __future__ import annotations

from workbench.index.settings import IndexSettings


class EncoderBundle:
    """Dense(+ColBERT) and sparse encoders for one ``IndexSettings``; each loads on first use."""

    def __init__(self, settings: IndexSettings, device: str | None = None) -> None:
        self.settings = settings
        self.device = device
        self._dense = None
        self._sparse = None

    @property
    def dense(self):
        if self._dense is None:
            from workbench.encoders.dense import DenseEncoder

            s = self.settings
            head = None
            if s.colbert_name != "zero-shot":
                from workbench.models.cache import resolve_model_path
                from pathlib import Path

                head = str(Path(resolve_model_path(s.colbert_name)) / "colbert_head.pt")
            self._dense = DenseEncoder(s.dense_path, device=self.device, colbert_head=head)
        return self._dense

    @property
    def sparse(self):
        if self._sparse is None:
            from workbench.encoders.sparse import SparseEncoder

            self._sparse = SparseEncoder(self.settings.sparse_path, device=self.device)
        return self._sparse
