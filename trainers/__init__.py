"""Training for the workbench: typed examples, data readers, batch samplers and losses.

The package is importable on a bare GPU machine: it needs torch (for the losses) and
``workbench.errors``, never lancedb, tantivy, textual, pydantic or datasets. Importing
``trainers`` itself imports nothing heavy; import the subpackages you need::

    from trainers.data import read_examples, TaskBatchSampler
    from trainers.losses import LOSSES, InfoNCELoss

``trainers.data`` is pure Python (no torch); ``trainers.losses`` needs torch.
"""

from __future__ import annotations

__all__: list[str] = []
