"""Pipeline names: ``dense``, ``colbert``, ``sparse``, ``bm25``, ``hybrid``, each optionally ``+rerank``."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.config import MODES
from workbench.errors import UsageError

BASES = {"dense": ("dense",), "colbert": ("colbert",), "sparse": ("sparse",), "bm25": ("bm25",), "hybrid": MODES}


@dataclass(frozen=True)
class Pipeline:
    name: str
    modes: tuple[str, ...]
    rerank: bool


def parse_pipeline(name: str) -> Pipeline:
    base, _, suffix = name.strip().partition("+")
    if base not in BASES or suffix not in ("", "rerank"):
        raise UsageError(
            f"unknown pipeline '{name}': use one of {', '.join(BASES)}, optionally with +rerank"
        )
    return Pipeline(name.strip(), BASES[base], suffix == "rerank")


def parse_pipelines(spec: str) -> list[Pipeline]:
    names = [p for p in (s.strip() for s in spec.split(",")) if p]
    if not names:
        raise UsageError("no pipeline given")
    return [parse_pipeline(n) for n in names]
