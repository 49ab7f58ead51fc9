"""One flat exception tree for the whole workbench.

Library errors (LanceDB, Tantivy, transformers, OS errors) are caught where they
happen and re-raised as one of these, so the CLI and the TUI map every failure to
one clear line. The CLI exit code for each class is its ``exit_code``.

    WbError
    ├── UsageError          bad arguments or options (exit 2)
    ├── InputError          a path, dataset or data file that cannot be used (exit 2)
    ├── WorkspaceError      missing, empty, locked or incompatible workspace (exit 2)
    ├── ModelError          a model that cannot be found, installed or loaded (exit 2)
    ├── IndexingError       a failure while writing the stores (exit 1)
    └── TrainingError       a failure inside a training run (exit 1)
"""

from __future__ import annotations


class WbError(Exception):
    """Base class: every error the workbench raises on purpose.

    ``str(error)`` is a complete one-line message meant for the user.
    """

    exit_code: int = 1


class UsageError(WbError):
    """An option or argument has a value that cannot work (unknown pipeline, bad -k)."""

    exit_code = 2


class InputError(WbError):
    """A path, dataset folder or data file is missing, unreadable or malformed."""

    exit_code = 2


class WorkspaceError(WbError):
    """The workspace is missing, empty, locked by another writer, or was built with other models."""

    exit_code = 2


class ModelError(WbError):
    """A model cannot be resolved, installed or loaded."""

    exit_code = 2


class IndexingError(WbError):
    """Writing to the stores failed; the previous committed state is kept."""

    exit_code = 1


class TrainingError(WbError):
    """A training run failed; the run folder holds the details."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name when it has none): what a loader's
    error becomes inside one ModelError line. A first line that ends in a colon only announces
    the lines below it (transformers' "Couldn't instantiate the backend tokenizer from one of:"):
    then the whole message is given, its lines joined into one."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) if lines[0].endswith(":") else lines[0]


__all__ = [
    "first_line",
    "WbError",
    "UsageError",
    "InputError",
    "WorkspaceError",
    "ModelError",
    "IndexingError",
    "TrainingError",
]
