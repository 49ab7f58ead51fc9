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

    def encoded_modes(self, reranker: str) -> set[str]:
        """The modes a query is encoded for: its own, and ColBERT's token vectors when the MaxSim
        reranker (``reranker`` is ``maxsim``) reranks it (they come from the same forward pass)."""
        from workbench.models.registry import MAXSIM_RERANKER

        return set(self.modes) | ({"colbert"} if self.rerank and reranker == MAXSIM_RERANKER else set())

    def model_roles(self, reranker: str) -> set[str]:
        """:attr:`roles`, and the ColBERT role the MaxSim reranker reads."""
        return self.roles | self.encoded_modes(reranker)


def parse_pipeline(name: str) -> Pipeline:
    """``Pipeline`` for a name (UsageError, one line, for anything else). Modes keep the canonical
    order of ``MODES`` whatever order the name gives them in, and so does the ``name`` (spaces
    dropped: ``bm25 + dense`` is ``dense+bm25``), so one pipeline has one name in every output."""
    text = name.strip()
    parts = [p.strip() for p in text.split("+")]
    rerank = len(parts) > 1 and parts[-1] == "rerank"
    if rerank:
        parts = parts[:-1]
    suffix = "+rerank" if rerank else ""
    if len(parts) == 1 and parts[0] in BASES:
        return Pipeline(parts[0] + suffix, BASES[parts[0]], rerank)
    if len(parts) > 1 and all(p in MODES for p in parts) and len(set(parts)) == len(parts):
        modes = tuple(m for m in MODES if m in parts)
        return Pipeline("+".join(modes) + suffix, modes, rerank)
    raise UsageError(
        f"unknown pipeline '{name}': use one of {', '.join(BASES)}, or modes joined by + "
        "(e.g. dense+bm25), optionally with +rerank"
    )


def parse_pipelines(spec: str) -> list[Pipeline]:
    """The pipelines of a comma-separated list (``hybrid,hybrid+rerank``); an empty name between or
    around the commas is refused (a mistyped list, not one pipeline fewer)."""
    names = [s.strip() for s in spec.split(",")]
    if not any(names):
        raise UsageError("no pipeline given")
    if not all(names):
        raise UsageError(f"'{spec}' has an empty pipeline name: write the pipelines joined by commas, "
                         "with none left out (hybrid,hybrid+rerank)")
    return [parse_pipeline(n) for n in names]
