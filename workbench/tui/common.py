"""Small pieces shared by the screens: theme-aware colours, number formatting, pipeline names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from workbench.config import MODES

PIPELINES = ["hybrid", "hybrid+rerank", "dense", "colbert", "sparse", "bm25",
             "dense+rerank", "colbert+rerank", "sparse+rerank", "bm25+rerank"]
MODE_SHORT = {"dense": "D", "colbert": "C", "sparse": "S", "bm25": "B"}


def known_pipeline(name: str | None) -> bool:
    """Whether ``name`` is a pipeline wb runs: one of :data:`PIPELINES` (what Search's menus offer)
    or any other fusion ``wb query`` takes (``dense+bm25``, ``sparse+colbert+rerank``), which a
    column adds to its menu when it is asked to show one."""
    if not name:
        return False
    if name in PIPELINES:
        return True
    from workbench.errors import UsageError
    from workbench.search.pipelines import parse_pipeline

    try:
        parse_pipeline(name)
    except UsageError:
        return False
    return True


MODE_OF_ROLE = {"dense": "dense", "colbert": "colbert", "sparse": "sparse"}


def pipeline_uses(pipeline: str, roles: tuple[str, ...], reranker: str = "") -> bool:
    """Whether ``pipeline`` runs a model of one of ``roles`` (``reranker``: a ``+rerank`` pipeline;
    ``colbert`` also a ``+rerank`` one when ``reranker``, the reranker in effect, is the MaxSim
    reranker, which reads the ColBERT model: ``Pipeline.model_roles``)."""
    from workbench.errors import WbError
    from workbench.search.pipelines import parse_pipeline

    try:
        p = parse_pipeline(pipeline)
    except WbError:
        return False
    return bool(set(roles) & p.model_roles(reranker))


@dataclass(frozen=True)
class Palette:
    """Concrete colours for Rich text, taken from the current theme's readable text colours.

    Textual derives ``text-success`` etc. for contrast against the theme's background, so the
    same code reads well on dark and light themes. Rebuild it when the theme changes.
    """

    up: str
    down: str
    new: str
    accent: str
    primary: str
    warning: str
    highlight_bg: str
    chunk_bg: str

    @classmethod
    def of(cls, app) -> "Palette":
        v = app.get_css_variables()

        def c(name: str, fallback: str) -> str:
            value = v.get(name, fallback)
            if not value.startswith("#"):
                return fallback
            return value[:7]

        return cls(
            up=c("text-success", "green"),
            down=c("text-error", "red"),
            new=c("text-accent", "yellow"),
            accent=c("text-accent", "yellow"),
            primary=c("text-primary", "blue"),
            warning=c("text-warning", "yellow"),
            highlight_bg=c("warning", "yellow"),
            chunk_bg=c("panel", "grey23"),
        )


def fmt_score(x: float | None) -> str:
    if x is None:
        return "–"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def mode_line(hit, compact: bool = False, pipeline: str | None = None, width: int | None = None) -> str:
    """``dense #1 0.489 · colbert #1 4.30 · ...`` (``D#1 0.489  C#1 4.30 ...`` when compact: Dense,
    Colbert, Sparse, Bm25): the modes of ``pipeline`` (all four when None), ``–`` for one that did
    not retrieve the hit. With ``width``, lines break between modes, never inside one."""
    from workbench.errors import UsageError
    from workbench.search.pipelines import parse_pipeline

    try:
        modes = parse_pipeline(pipeline).modes if pipeline else MODES
    except UsageError:  # not a pipeline wb runs: every mode
        modes = MODES
    parts = []
    for mode in modes:
        name = MODE_SHORT[mode] if compact else mode + " "
        if mode in hit.ranks:
            parts.append(f"{name}#{hit.ranks[mode]} {fmt_score(hit.scores.get(mode))}")
        else:
            parts.append(f"{name}–")
    sep = "  " if compact else " · "
    if width is None:
        return sep.join(parts)
    lines = [parts[0]] if parts else []
    for part in parts[1:]:
        if len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return "\n".join(lines)


def ago(seconds: float) -> str:
    """A coarse, human age: ``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 1:
        return text[:width]
    return text if len(text) <= width else text[: width - 1] + "…"


def cut_middle(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its middle given up (``Represent this … claims: ``): the
    start says what it is, the end leads into what follows."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def reads_instruction(pipeline: str) -> bool:
    """Whether ``pipeline`` may read the instruction: dense and ColBERT encode it, and so may its
    reranker (the MaxSim one does); BM25 and sparse alone get the bare query."""
    from workbench.errors import WbError
    from workbench.search.pipelines import parse_pipeline

    try:
        pipe = parse_pipeline(pipeline)
    except WbError:
        return True
    return pipe.rerank or bool({"dense", "colbert"} & set(pipe.modes))


def cut_start(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its start given up (``…rtialmethod.md``)."""
    return text if len(text) <= width else "…" + text[len(text) - (width - 1):]


def cut_apart(texts: list[str], widths: list[int], ends: list[str] | None = None) -> list[str]:
    """Each of ``texts`` cut to its width (``short``), then its end (a chunk number) appended. Texts
    the cut makes identical give up their middle instead (``cut_middle``), and those still alike
    their start (``cut_start``), so different rows stay apart: ``multiprocessing — Introduction`` and
    ``— Pool`` are not both ``multiprocessing…``, nor ``functools/partial.md`` and
    ``functools/partialmethod.md`` both ``functools/partial…``."""
    texts = [" ".join(t.split()) for t in texts]
    ends = ends or [""] * len(texts)
    shown = [short(t, w) + e for t, w, e in zip(texts, widths, ends)]
    for cut in (cut_middle, cut_start):
        count = Counter(shown)
        shown = [cut(t, w) + e if count[s] > 1 and len(t) > w else s
                 for t, w, e, s in zip(texts, widths, ends, shown)]
    return shown


def short_path(path: str, width: int) -> str:
    """Keep a path's end (its most telling part), cut at a folder boundary where one fits:
    ``…/corpus/shutil/rmtree.md``, then the bare last name (``python-docs``), then its end."""
    if len(path) <= width:
        return path
    parts = path.rstrip("/").split("/")
    for i in range(1, len(parts)):
        tail = "…/" + "/".join(parts[i:])
        if len(tail) <= width:
            return tail
    if len(parts[-1]) <= width:
        return parts[-1]
    return cut_start(path, width)


def hides_typed_key(node, action: str) -> bool:
    """Whether ``action`` is one of ``node``'s bindings to a key a text box takes as a character
    (a letter, ``+``, ``-``, ``/``) while a text box has the focus: there the key is typed, so the footer
    does not offer it (the box's own keys, Esc and F1, fit an 80-column footer instead)."""
    from textual.widgets import Input

    if not isinstance(node.app.focused, Input):
        return False
    return any(binding.action.split("(")[0] == action and (len(binding.key) == 1 or binding.key in ("plus", "minus", "slash"))
               for binding in node.BINDINGS)
