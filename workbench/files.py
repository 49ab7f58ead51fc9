"""Small files written whole: a reader (another process, a poll of the TUI) sees the old content or
the new, never a half-written file, and a kill leaves at most a hidden temporary beside it."""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder renamed over it
    (``os.replace`` is atomic on one file system). The temporary is named per process and thread, so
    two writers never share one; the last rename wins."""
    import threading

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
