"""Two answers to one query side by side: where each hit of the compared answer ranked in the
baseline, and which baseline hits left the list (``wb query -p A,B`` / ``--compare``, the TUI's
Search columns).

Contract: hits are matched by document id (``unit="doc"``) or chunk id (``unit="chunk"``); a
``RankChange``'s ``baseline_rank`` is None when the hit is not among the baseline's results (it is
new in the compared list's top k, though it may rank lower in the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workbench.search.results import QueryResult
from workbench.types import Hit


def hit_key(hit: Hit, unit: str = "doc") -> str:
    return hit.chunk_id if unit == "chunk" else hit.doc_id


@dataclass(frozen=True)
class RankChange:
    """One compared hit against the baseline."""

    key: str  # document (or chunk) id
    rank: int  # in the compared list
    baseline_rank: int | None  # in the baseline list; None = not in it

    @property
    def mark(self) -> str:
        """``↑n`` (moved up n places), ``↓n``, ``=`` (same rank) or ``new`` (absent from the baseline)."""
        if self.baseline_rank is None:
            return "new"
        if self.baseline_rank > self.rank:
            return f"↑{self.baseline_rank - self.rank}"
        if self.baseline_rank < self.rank:
            return f"↓{self.rank - self.baseline_rank}"
        return "="


def movements(left: list[Hit], right: list[Hit], unit: str = "doc") -> tuple[list[str], list[Hit]]:
    """Marks (:attr:`RankChange.mark`) for each right-list hit against the left list, and the left
    hits that dropped out of the right one (in their left order)."""
    changes, dropped = rank_changes(left, right, unit)
    return [c.mark for c in changes], dropped


def rank_changes(left: list[Hit], right: list[Hit], unit: str = "doc") -> tuple[list[RankChange], list[Hit]]:
    left_rank = {hit_key(h, unit): h.rank for h in left}
    changes = [RankChange(hit_key(h, unit), h.rank, left_rank.get(hit_key(h, unit))) for h in right]
    right_keys = {c.key for c in changes}
    return changes, [h for h in left if hit_key(h, unit) not in right_keys]


@dataclass
class Comparison:
    """One query answered by a baseline and a compared system. ``to_json`` is the documented
    ``wb query --json`` schema when two systems are compared: each change and dropped hit names its
    document as ``doc_id`` (and its chunk as ``chunk_id`` when ``unit`` is chunk), as hits do."""

    baseline: QueryResult
    compared: QueryResult
    labels: tuple[str, str] = ("baseline", "compared")  # what each side is, for people (column names)

    @cached_property
    def _diff(self) -> tuple[list[RankChange], list[Hit]]:
        return rank_changes(self.baseline.results, self.compared.results, self.compared.unit)

    @property
    def changes(self) -> list[RankChange]:
        """Each compared hit, in its order, against the baseline."""
        return self._diff[0]

    @property
    def dropped(self) -> list[Hit]:
        """The baseline hits absent from the compared list, in their baseline order."""
        return self._diff[1]

    def to_json(self) -> dict:
        chunks = self.compared.unit == "chunk"

        def ident(hit: Hit) -> dict:
            return {"doc_id": hit.doc_id, **({"chunk_id": hit.chunk_id} if chunks else {})}

        return {
            "query": self.baseline.query,
            "labels": {"baseline": self.labels[0], "compared": self.labels[1]},
            "baseline": self.baseline.to_json(),
            "compared": self.compared.to_json(),
            "changes": [{**ident(h), "rank": c.rank, "baseline_rank": c.baseline_rank, "mark": c.mark}
                        for h, c in zip(self.compared.results, self.changes)],
            "dropped": [{**ident(h), "baseline_rank": h.rank} for h in self.dropped],
        }
