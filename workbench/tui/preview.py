"""The preview of one hit: the chunk in its document with the query's words and the learned-sparse
expansion terms highlighted, the SPLADE terms that scored, and which chunk token each query token
matched under ColBERT's MaxSim. The explanation is computed in a thread worker."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import get_current_worker

from workbench.errors import WbError
from workbench.tui.common import Palette, fmt_score, mode_line, short
from workbench.tui.footer import WbFooter

CONTEXT_CHARS = 500


def _piece(term: str) -> str:
    return term[2:] if term.startswith("##") else term


class PreviewScreen(ModalScreen):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", tooltip="Close the preview"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("n", "move(1)", "Next hit", tooltip="Preview the next hit of this column"),
        Binding("p", "move(-1)", "Previous hit", tooltip="Preview the previous hit of this column"),
    ]

    def __init__(self, hits: list, index: int, *, query: str, instruction: str | None, pipeline: str, root: str) -> None:
        super().__init__(id="preview-screen")
        self.hits = hits
        self.index = index
        self.query_text = query
        self.instruction = instruction
        self.pipeline = pipeline
        self.root = root
        self.preview = None

    @property
    def hit(self):
        return self.hits[self.index]

    def compose(self) -> ComposeResult:
        with Vertical(id="preview"):
            yield Static("", id="preview-title")
            yield Static("", id="preview-meta")
            with Horizontal(id="preview-body"):
                with VerticalScroll(id="preview-doc"):
                    yield Static("", id="preview-text")
                with VerticalScroll(id="preview-side"):
                    yield Static("", id="preview-sparse")
                    yield Static("", id="preview-colbert")
            yield Static(Text("tab switches pane · ↑ ↓ PgUp PgDn scroll", style="dim"), id="preview-keys")
        yield WbFooter()

    def on_mount(self) -> None:
        self._show_header()
        self.load()
        self.query_one("#preview-doc").focus()

    async def action_dismiss(self, result=None) -> None:
        """Close, handing back the index of the hit shown last (n/p moved it): the column's cursor
        goes there."""
        self.dismiss(self.index)

    def action_move(self, step: int) -> None:
        new = self.index + step
        if 0 <= new < len(self.hits):
            self.index = new
            self.preview = None
            self._show_header()
            self.load()

    def _show_header(self) -> None:
        pal = Palette.of(self.app)
        hit = self.hit
        title = Text()
        title.append(f"#{hit.rank} ", style=f"bold {pal.accent}")
        title.append(hit.title or hit.doc_id, style="bold")
        title.append(f"   {self.pipeline} score {fmt_score(hit.score)}", style=pal.primary)
        self.query_one("#preview-title", Static).update(title)
        meta = Text()
        # the mode scores are the document's (each mode's best chunk); the chunk explained below is
        # the one the results show and the reranker reads, which need not be every mode's best
        meta.append(f"{hit.doc_id} · explained below: {hit.chunk_id}", style="dim")
        # #n is the document's rank in each mode (its best chunk's score there), not a chunk number
        meta.append("\nrank and score per mode: " + mode_line(hit, pipeline=self.pipeline), style="dim")
        self.query_one("#preview-meta", Static).update(meta)
        self.query_one("#preview-text", Static).update(Text("computing the explanation…", style="italic dim"))
        self.query_one("#preview-sparse", Static).update("")
        self.query_one("#preview-colbert", Static).update("")

    @work(thread=True, exclusive=True, group="preview")
    def load(self) -> None:
        worker = get_current_worker()
        hit = self.hit
        try:
            preview = self.app.engine.preview(self.root, self.query_text, hit.chunk_id, self.instruction)
        except WbError as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._failed, str(exc))
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, hit.chunk_id, preview)

    def _failed(self, message: str) -> None:
        self.query_one("#preview-text", Static).update(Text(message, style="italic"))
        self.app.notify(message, title="preview failed", severity="error", timeout=8)

    def _show(self, chunk_id: str, preview) -> None:
        if chunk_id != self.hit.chunk_id:
            return
        self.preview = preview
        pal = Palette.of(self.app)
        self.query_one("#preview-text", Static).update(self._document_text(preview, pal))
        self.query_one("#preview-sparse", Static).update(self._sparse_text(preview, pal))
        self.query_one("#preview-colbert", Static).update(self._colbert_text(preview, pal))
        for err in preview.errors:
            self.app.notify(err, severity="warning", timeout=6)

    # -- rendering ---------------------------------------------------------------------
    def _document_text(self, preview, pal: Palette) -> Text:
        from workbench.search.explain import find_terms

        doc = preview.document
        text = doc.text
        a, b = doc.chunk_start, doc.chunk_end
        start = max(0, a - CONTEXT_CHARS)
        if start > 0:
            nl = text.find("\n", start, a)
            start = nl + 1 if nl >= 0 else start
        end = min(len(text), b + CONTEXT_CHARS)
        if end < len(text):
            nl = text.rfind("\n", b, end)
            end = nl if nl > b else end
        out = Text()
        out.append(f"chunk #{doc.chunk_ordinal} ({doc.chunk_ordinal + 1} of {doc.n_chunks}) · characters {a}–{b} of {len(text)}\n\n",
                   style="dim italic")
        if start > 0:
            out.append("…", style="dim")
        out.append(text[start:a], style="dim")
        chunk = Text(text[a:b], style=f"on {pal.chunk_bg}")
        expansions = []
        if preview.sparse is not None:
            expansions = [_piece(t.term) for t in preview.sparse.expansions if t.doc_weight > 0 and len(_piece(t.term)) >= 3]
        for s, e, term in find_terms(chunk.plain, expansions):
            chunk.stylize(f"bold italic {pal.primary}", s, e)
        for s, e, term in find_terms(chunk.plain, preview.words):
            chunk.stylize(f"bold underline {pal.warning}", s, e)
        if preview.colbert is not None:
            for m in preview.colbert.matches:
                if m.part == "query" and m.doc_span is not None:
                    chunk.stylize("underline", *m.doc_span)
        out.append_text(chunk)
        out.append(text[b:end], style="dim")
        if end < len(text):
            out.append("…", style="dim")
        out.append("\n\n")
        out.append("query word", style=f"bold underline {pal.warning}")
        out.append("  ")
        out.append("sparse expansion", style=f"bold italic {pal.primary}")
        out.append("  ")
        out.append("ColBERT match", style="underline")
        out.append("  ")
        out.append(" chunk ", style=f"on {pal.chunk_bg}")
        return out

    def _sparse_text(self, preview, pal: Palette) -> Text:
        out = Text()
        out.append("Learned sparse (SPLADE)\n", style="bold")
        sp = preview.sparse
        if sp is None:
            out.append("unavailable\n", style="dim")
            return out
        out.append(f"dot product with this chunk {fmt_score(sp.score)}\n", style="dim")
        out.append("query terms, ", style="dim")
        out.append("expansions\n", style=f"italic {pal.primary}")
        for t in sp.terms[:16]:
            style = "" if t.literal else f"italic {pal.primary}"
            out.append(f"  {short(t.term, 16):<16}", style=style)
            out.append(f" {t.weight:5.2f}\n", style="dim")
        shared = sp.shared
        out.append("\nterms that score here ", style="dim")
        out.append("q × d\n", style="dim")
        if not shared:
            out.append("  none\n", style="dim")
        for t in shared[:12]:
            style = "" if t.literal else f"italic {pal.primary}"
            out.append(f"  {short(t.term, 16):<16}", style=style)
            out.append(f" {t.weight:4.2f}×{t.doc_weight:4.2f}={t.contribution:5.2f}\n", style="dim")
        return out

    def _colbert_text(self, preview, pal: Palette) -> Text:
        out = Text()
        out.append("\nColBERT MaxSim\n", style="bold")
        cb = preview.colbert
        if cb is None:
            out.append("unavailable\n", style="dim")
            return out
        out.append(f"score {cb.score:.2f} = Σ best cosine per query token\n", style="dim")
        order = {"query": 0, "instruction": 1, "special": 2}
        for m in sorted(cb.matches, key=lambda m: (order.get(m.part, 3), m.query_index)):
            dim = m.part != "query"
            out.append(f"  {short(m.query_token, 12):<12}", style="dim" if dim else "bold")
            out.append(" → ", style="dim")
            out.append(f"{short(m.doc_token, 12):<12}", style="dim" if dim else pal.up)
            out.append(f" {m.score:4.2f}", style="dim")
            if m.part != "query":
                out.append(f" {m.part[:5]}", style="dim italic")
            out.append("\n")
        return out
