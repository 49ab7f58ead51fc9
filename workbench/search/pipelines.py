"""Pipeline names: ``dense``, ``colbert``, ``sparse``, ``bm25``, ``hybrid`` (all four fused), or
modes joined by ``+`` to fuse just those (``dense+bm25``, ``dense+sparse+colbert``); each optionally
followed by ``+rerank``."""

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

    @property
    def roles(self) -> set[str]:
        """The roles this pipeline runs: its modes and, with +rerank, the reranker (bm25 is a mode
        without a model, so no model role matches it)."""
        return set(self.modes) | ({"reranker"} if self.rerank else set())


def parse_pipeline(name: str) -> Pipeline:
    """``Pipeline`` for a name (UsageError, one line, for anything else). Modes keep the canonical
    order of ``MODES`` whatever order the name gives them in."""
    text = name.strip()
    parts = [p.strip() for p in text.split("+")]
    rerank = len(parts) > 1 and parts[-1] == "rerank"
    if rerank:
        parts = parts[:-1]
    if len(parts) == 1 and parts[0] in BASES:
        return Pipeline(text, BASES[parts[0]], rerank)
    if len(parts) > 1 and all(p in MODES for p in parts) and len(set(parts)) == len(parts):
        return Pipeline(text, tuple(m for m in MODES if m in parts), rerank)
    raise UsageError(
        f"unknown pipeline '{name}': use one of {', '.join(BASES)}, or modes joined by + "
        "(e.g. dense+bm25), optionally with +rerank"
    )


def parse_pipelines(spec: str) -> list[Pipeline]:
    names = [p for p in (s.strip() for s in spec.split(",")) if p]
    if not names:
        raise UsageError("no pipeline given")
    return [parse_pipeline(n) for n in names]
