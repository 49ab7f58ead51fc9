"""Small files written whole: a reader (another process, a poll of the TUI) sees the old content or
the new, never a half-written file, and a kill leaves at most a hidden temporary beside it."""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path | str, text: str, *, durable: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder renamed over it
    (``os.replace`` is atomic on one file system). The temporary is named per process and thread, so
    two writers never share one; the last rename wins. ``durable``: the file is fsynced before the
    rename and the folder after it, so the new content survives a power loss, not only a kill."""
    import threading

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
