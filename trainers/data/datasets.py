"""Several training datasets in one run: a multi-task run's ``data``.

A run's ``data`` is one path (a file or BEIR folder) or a list of datasets, each a path or a table
``{path, task, instruction, split}`` (run.toml ``[[data]]``; ``wb train ... --data A --data B``).
Each dataset keeps its own task (default: its rows' ``type``, else its file or folder name; a
default already taken by an earlier dataset gets ``-N``, N the dataset's number) and its
own instruction (default: its rows' ``prompt``, else the run's ``instruction``), so
:class:`~trainers.data.TaskBatchSampler` draws every batch from one dataset's task and in-batch
negatives stay meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from workbench.errors import UsageError

from .readers import ExampleList, ReadReport, read_examples

_TABLE_KEYS = ("path", "task", "instruction", "split")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a run: where it is and, when given, the task and instruction of its examples
    and the BEIR split to read (None: the run's)."""

    path: str
    task: str | None = None
    instruction: str | None = None
    split: str | None = None


def dataset_specs(data: str | list) -> list[DatasetSpec]:
    """The datasets a run's ``data`` names, in order. UsageError for an empty list, a table without
    ``path``, an unknown key or a value that is not text."""
    if isinstance(data, str):
        return [DatasetSpec(path=data)]
    if not isinstance(data, list) or not data:
        raise UsageError(f"training option data must be a path or a non-empty list of datasets, not {data!r}")
    specs = []
    for number, item in enumerate(data, 1):
        if isinstance(item, str):
            specs.append(DatasetSpec(path=item))
            continue
        if not isinstance(item, dict):
            raise UsageError(f"data #{number} must be a path or a table with 'path', not {item!r}")
        unknown = set(item) - set(_TABLE_KEYS)
        if unknown:
            raise UsageError(f"data #{number}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(a dataset has {', '.join(_TABLE_KEYS)})")
        if not item.get("path"):
            raise UsageError(f"data #{number} has no 'path'")
        bad = [k for k, v in item.items() if not isinstance(v, str)]
        if bad:
            raise UsageError(f"data #{number}: {', '.join(bad)} must be text")
        specs.append(DatasetSpec(**item))
    return specs


def with_paths(data: str | list, resolve) -> str | list:
    """``data`` with every dataset's path replaced by ``resolve(path)`` (tables keep their other keys)."""
    if isinstance(data, str):
        return resolve(data)
    return [resolve(item) if isinstance(item, str)
            else {**item, "path": resolve(item["path"])} if isinstance(item, dict) and isinstance(item.get("path"), str)
            else item  # not a dataset: dataset_specs says so
            for item in data]


class DatasetsReport:
    """What reading several datasets did: each dataset's :class:`ReadReport` and the examples per task."""

    def __init__(self, reports: list[ReadReport], tasks: dict[str, int]):
        self.reports = reports
        self.tasks = tasks

    def summary(self) -> str:
        """One line per dataset, then ``tasks: a (120), b (80)``."""
        lines = [f"{Path(r.path).name}: {r.summary()}" for r in self.reports]
        lines.append("tasks: " + ", ".join(f"{task} ({count})" for task, count in self.tasks.items()))
        return "\n".join(lines)


def _apart(part: list, taken: set[str], number: int) -> list:
    """``part``'s examples, those whose default task an earlier dataset already took renamed
    ``TASK-number`` (two files of one name, a/train.jsonl and b/train.jsonl, are kept apart, not
    merged into one task); its other tasks keep their names."""
    if not any(ex.task in taken for ex in part):
        return part
    return [replace(ex, task=f"{ex.task}-{number}") if ex.task in taken else ex for ex in part]


def read_datasets(data: str | list, *, split: str = "train", instruction: str | None = None) -> ExampleList:
    """Every example of every dataset of ``data`` (see :func:`dataset_specs`), in order.

    One dataset: exactly :func:`~trainers.data.read_examples`. Several: their examples concatenated,
    each dataset read with its own task, instruction and split over the run's ``split`` and
    ``instruction``; the list's ``report`` is a :class:`DatasetsReport`. A dataset with no usable
    example is an InputError naming it, as for one dataset."""
    specs = dataset_specs(data)
    if len(specs) == 1 and specs[0] == DatasetSpec(path=specs[0].path):
        return read_examples(specs[0].path, split=split, instruction=instruction)
    examples: list = []
    reports: list[ReadReport] = []
    for number, spec in enumerate(specs, 1):
        if spec.path == "unsupervised":
            raise UsageError("data 'unsupervised' is a run of its own; it cannot be one of several datasets")
        part = read_examples(spec.path, split=spec.split or split, task=spec.task,
                             instruction=spec.instruction or instruction)
        reports.append(part.report)
        if spec.task is None:
            part = _apart(part, {ex.task for ex in examples}, number)
        examples.extend(part)
    tasks: dict[str, int] = {}
    for example in examples:
        tasks[example.task] = tasks.get(example.task, 0) + 1
    result = ExampleList(examples)
    result.report = DatasetsReport(reports, tasks)  # type: ignore[assignment]
    return result
