"""Training data: typed examples, format readers, unsupervised pairs and task batching.

Pure Python (no torch needed)::

    from trainers.data import read_examples, TaskBatchSampler

    examples = read_examples("train.jsonl", skip_malformed=True)
    print(examples.report.summary())
    sampler = TaskBatchSampler(examples, batch_size=32, sampling="temperature", seed=0)
"""

from __future__ import annotations

from .batching import SAMPLING, TaskBatchSampler
from .datasets import DatasetSpec, dataset_specs, read_datasets
from .example import TrainingExample
from .readers import FORMATS, ExampleList, ReadReport, detect_format, iter_examples, read_examples
from .unsupervised import independent_cropping, inverse_cloze, split_sentences

__all__ = [
    "FORMATS",
    "SAMPLING",
    "DatasetSpec",
    "ExampleList",
    "ReadReport",
    "TaskBatchSampler",
    "TrainingExample",
    "dataset_specs",
    "detect_format",
    "independent_cropping",
    "inverse_cloze",
    "iter_examples",
    "read_datasets",
    "read_examples",
    "split_sentences",
]
