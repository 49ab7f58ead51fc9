"""The key footer every screen docks (one class, so that every screen fits an 80-column terminal)."""

from __future__ import annotations

from textual.events import Resize
from textual.widgets import Footer

NARROW_TERMINAL = 100
"""Columns: a terminal narrower than this gets the compact footer (and app.py tags it ``-narrow``)."""


class WbFooter(Footer):
    """Textual's footer, compact and without the command-palette key under :data:`NARROW_TERMINAL`
    columns: at 80 columns the last keys (``? Keys`` among them) would otherwise be cut off.
    ctrl+p still opens the palette there, and the help screen lists it."""

    def on_resize(self, event: Resize) -> None:
        narrow = event.size.width < NARROW_TERMINAL
        if narrow != self.compact or narrow == self.show_command_palette:
            self.compact = narrow
            self.show_command_palette = not narrow
            self.refresh(recompose=True)
