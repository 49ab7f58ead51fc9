"""What a query returns (``--json`` schema) and helpers to build it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from workbench.types import Hit


@dataclass
class QueryResult:
    """One query's answer. ``to_json`` is the documented ``wb query --json`` schema."""

    query: str
    instruction: str
    pipeline: str
    models: dict[str, str]
    results: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    unit: str = "doc"
    instruction_used: bool = False  # whether the instruction reached a model that ranks (Searcher.instruction_reaches)
    note: str = ""  # the index answers with other settings than wb.toml's: why (Searcher.serving_note)

    def to_json(self) -> dict:
        return {
            **({"note": self.note} if self.note else {}),
            "query": self.query,
            "instruction": self.instruction,
            **({"instruction_used": self.instruction_used} if self.instruction else {}),
            "pipeline": self.pipeline,
            "models": self.models,
            "unit": self.unit,
            "results": [asdict(h) for h in self.results],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


_WORD = re.compile(r"[A-Za-z0-9_]{3,}")


def make_snippet(text: str, query: str, width: int = 240) -> str:
    """A window of ``text`` around the first query word it contains (else its start), one line."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    low = flat.lower()
    positions = [low.find(w.lower()) for w in _WORD.findall(query)]
    positions = [p for p in positions if p >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    if start > 0:  # begin at a word: skip the partial word the window cut into
        space = flat.find(" ", start - 1, min(positions) if positions else start + width)
        start = space + 1 if space >= 0 else start
    piece = flat[start : start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(flat) else "")
