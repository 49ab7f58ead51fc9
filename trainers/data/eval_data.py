"""What a run's ``eval_data`` must be, checked before any training step (a run must not train for an
hour and then fail on a mistyped path).

Two formats: ``"beir"`` (the bi-encoder trainers: a BEIR folder with ``corpus.jsonl``,
``queries.jsonl`` and ``qrels/{split}.tsv``) and ``"groups"`` (the rerankers: a FlagEmbedding jsonl
of held-out groups, query + positives + negatives, as ``wb mine`` writes).
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import InputError


def beir_files(folder: str | Path, split: str) -> tuple[Path, Path, Path]:
    """``(corpus.jsonl, queries.jsonl, qrels/{split}.tsv)`` of a BEIR folder; InputError naming the
    missing ones."""
    root = Path(folder)
    paths = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"eval data {folder} is not a BEIR folder with a {split} split: missing {', '.join(missing)}")
    return paths


def check_eval_data(path: str | None, fmt: str, split: str = "test") -> None:
    """InputError, one line, when ``path`` (None: no evaluation) is not eval data of format ``fmt``."""
    if not path:
        return
    if not Path(path).exists():
        raise InputError(f"--eval-data: no such file or folder: {path}")
    if fmt == "beir":
        beir_files(path, split)
        return
    if Path(path).is_dir():
        raise InputError(f"eval data {path} is a folder; this trainer evaluates on a FlagEmbedding jsonl of "
                         "held-out groups (query, pos, neg), as `wb mine` writes")
    from .readers import read_examples

    examples = read_examples(path)
    if not any(ex.negatives for ex in examples):
        raise InputError(f"eval data {path} has no example with negatives: nothing to rank")


def eval_queries(path: str, fmt: str, split: str = "test") -> set[str]:
    """The query texts ``path`` evaluates on (checked eval data): a BEIR folder's evaluated queries
    of ``split``, read as `wb eval` reads them (``workbench.eval.dataset``: tab, space or TREC qrels,
    a UTF-8 BOM), or a groups file's queries."""
    if fmt == "beir":
        from workbench.eval.dataset import load_dataset

        beir_files(path, split)  # the missing files named as a run's eval data
        return set(load_dataset(path, split).queries.values())
    from .readers import read_examples

    return {ex.query for ex in read_examples(path)}
