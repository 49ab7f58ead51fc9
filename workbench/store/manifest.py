"""The SQLite manifest: which documents are completely indexed, and the intent log of writes.

Protocol that keeps LanceDB and Tantivy consistent across crashes (``kill -9`` at any point):

1. Before a batch touches the stores, its doc ids are written to ``pending`` (committed).
2. The batch is deleted-then-added in LanceDB and in Tantivy (Tantivy committed).
3. In one SQLite transaction the ``docs`` rows are upserted/removed and ``pending`` is cleared.

On the next start, any ``pending`` doc ids are deleted from both stores and from ``docs``: the
stores then hold exactly the documents listed in ``docs``, each once. Re-running the indexer
re-encodes those documents because they are no longer in ``docs``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkspaceError

REINDEX_KEY = "reindex_roots"  # meta: the roots a settings rebuild forgot, still to be indexed again


def peek(manifest_path: Path, key: str):
    """(meta ``key``'s value or None, the number of documents) of the manifest at ``manifest_path``,
    read with a plain connection: unlike :class:`Manifest` it never switches the journal mode, so a
    reader leaves the file as it found it (a staged rebuild's manifest, checkpointed for its swap).
    (None, 0) when the file or its tables do not exist yet."""
    values, docs = _peek(manifest_path, (key,), count_docs=True)
    return values.get(key), docs


def peek_meta(manifest_path: Path, *keys: str) -> dict:
    """The values of meta ``keys`` that are set, read as :func:`peek` reads (no document count: a
    few hundred microseconds whatever the index's size); {} when the file or its tables do not
    exist yet."""
    return _peek(manifest_path, keys, count_docs=False)[0]


def _peek(manifest_path: Path, keys: tuple[str, ...], count_docs: bool) -> tuple[dict, int]:
    if not Path(manifest_path).exists():
        return {}, 0
    db = sqlite3.connect(str(manifest_path), timeout=30)
    try:
        rows = db.execute(f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(keys))})",
                          keys).fetchall()
        docs = db.execute("SELECT COUNT(*) FROM docs").fetchone()[0] if count_docs else 0
    except sqlite3.OperationalError:  # created a moment ago, tables not there yet
        return {}, 0
    finally:
        db.close()
    return {key: json.loads(value) for key, value in rows}, docs


def read_roots_to_reindex(manifest_path: Path) -> list[str]:
    """:meth:`Manifest.roots_to_reindex` of the manifest at ``manifest_path`` (none when it does not exist)."""
    if not Path(manifest_path).exists():
        return []
    with Manifest(manifest_path) as manifest:
        return manifest.roots_to_reindex()


@dataclass(frozen=True)
class DocRecord:
    doc_id: str
    content_hash: str
    path: str
    title: str
    n_chunks: int


class Manifest:
    """A small SQLite database in the workspace (``manifest.sqlite``)."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the manifest; one that cannot be opened (a folder in its place, locked,
        no permission, not a database) is a one-line WorkspaceError naming it."""
        self.path = path
        if Path(path).is_dir():  # sqlite3 says only "unable to open database file"
            raise WorkspaceError(f"the workspace's manifest {path} is a folder, not a SQLite file: the workspace is "
                                 "damaged; index into a new workspace")
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise WorkspaceError(f"cannot open the workspace's manifest {path}: {exc}") from exc
        try:
            self._open()
        except sqlite3.OperationalError as exc:  # locked, a disk error, no permission: the file may be fine
            self.db.close()
            raise WorkspaceError(f"cannot open the workspace's manifest {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # not a database (a copy cut short, another file): one line
            self.db.close()
            raise WorkspaceError(f"{path} cannot be read as the workspace's manifest ({exc}); if it is damaged, "
                                 f"index into a new workspace") from exc

    def _open(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        had_roots = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'roots'").fetchone() is not None
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS docs (
                doc_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, path TEXT NOT NULL,
                title TEXT NOT NULL, n_chunks INTEGER NOT NULL, source TEXT NOT NULL,
                indexed_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS docs_source ON docs(source);
            CREATE TABLE IF NOT EXISTS pending (doc_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS roots (source TEXT PRIMARY KEY);
            """
        )
        if not had_roots:  # a manifest written before roots had their own table: its roots are its docs'
            self.db.execute("INSERT OR IGNORE INTO roots SELECT DISTINCT source FROM docs")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # documents ----------------------------------------------------------------
    def hashes(self, source: str | None = None) -> dict[str, str]:
        """doc_id -> content_hash of the complete documents (of one source root, if given)."""
        if source is None:
            rows = self.db.execute("SELECT doc_id, content_hash FROM docs")
        else:
            rows = self.db.execute("SELECT doc_id, content_hash FROM docs WHERE source = ?", (source,))
        return dict(rows.fetchall())

    def records(self, source: str) -> dict[str, tuple[str, str]]:
        """doc_id -> (content_hash, path) of the complete documents of one source root."""
        rows = self.db.execute("SELECT doc_id, content_hash, path FROM docs WHERE source = ?", (source,))
        return {doc_id: (h, path) for doc_id, h, path in rows.fetchall()}

    def owners(self, exclude: str) -> dict[str, str]:
        """doc_id -> source root of the documents of every root but ``exclude``."""
        rows = self.db.execute("SELECT doc_id, source FROM docs WHERE source != ?", (exclude,))
        return dict(rows.fetchall())

    def adopt(self, source: str, doc_ids: list[str]) -> None:
        """Move ``doc_ids`` to ``source`` (another root now reads the same documents; stores unchanged)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE docs SET source = ? WHERE doc_id = ?", [(source, d) for d in doc_ids])

    def count_docs(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def count_chunks(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(n_chunks), 0) FROM docs").fetchone()[0]

    def sources(self) -> list[tuple[str, int, int, float]]:
        """(source root, documents, chunks, last indexed time) per indexed root. A root is indexed
        from its first run until :meth:`drop_roots` (``wb index --remove``, a parent taking it over, a
        rebuild's :meth:`reset`), also while it holds no document (a folder emptied for a while)."""
        return self.db.execute(
            """SELECT r.source, COUNT(d.doc_id), COALESCE(SUM(d.n_chunks), 0), COALESCE(MAX(d.indexed_at), 0)
               FROM (SELECT source FROM roots UNION SELECT DISTINCT source FROM docs) AS r
               LEFT JOIN docs AS d ON d.source = r.source GROUP BY r.source ORDER BY r.source"""
        ).fetchall()

    def add_root(self, source: str) -> None:
        """Record ``source`` as an indexed root (kept while it holds no document)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR IGNORE INTO roots(source) VALUES (?)", (source,))

    def drop_roots(self, sources: list[str]) -> None:
        """``sources`` are no longer indexed roots (their documents are gone or moved to another root)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM roots WHERE source = ?", [(s,) for s in sources])

    # intent log -----------------------------------------------------------------
    def pending(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT doc_id FROM pending").fetchall()]

    def begin(self, doc_ids: list[str]) -> None:
        """Record that the stores are about to change for ``doc_ids`` (durable before any write)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO pending(doc_id) VALUES (?)", [(d,) for d in doc_ids])

    def finish(self, source: str, written: list[DocRecord], removed: list[str]) -> None:
        """Atomically mark ``written`` complete, forget ``removed`` and clear the intent log."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM docs WHERE doc_id = ?", [(d,) for d in removed])
            self.db.executemany(
                "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.doc_id, r.content_hash, r.path, r.title, r.n_chunks, source, now) for r in written],
            )
            if written:
                self.db.execute("INSERT OR IGNORE INTO roots(source) VALUES (?)", (source,))
            self.db.execute("DELETE FROM pending")

    def abandon(self, doc_ids: list[str]) -> None:
        """Forget ``doc_ids`` as documents and clear the intent log (after a recovery deleted them)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM docs WHERE doc_id = ?", [(d,) for d in doc_ids])
            self.db.execute("DELETE FROM pending")

    def reset(self, reindex: list[str] = ()) -> None:
        """Forget every document (the stores are being rebuilt from scratch). ``reindex``: the roots
        that were indexed, recorded in the same transaction as :meth:`roots_to_reindex`. The
        recorded settings and read snapshot are forgotten with them, and recorded again once the
        stores are recreated: a run killed in between finds no settings and recreates the stores
        (with the old settings kept it took the old stores' rows for an empty index and added every
        chunk a second time)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM meta WHERE key IN ('settings', 'snapshot_version')")
            self.db.execute("DELETE FROM docs")
            self.db.execute("DELETE FROM pending")
            self.db.execute("DELETE FROM roots")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (REINDEX_KEY, json.dumps(sorted(reindex))))

    def roots_to_reindex(self) -> list[str]:
        """The roots a rebuild forgot that have not been indexed again yet."""
        return list(self.get_meta(REINDEX_KEY) or [])

    def reindexed(self, root: str) -> None:
        """``root`` and every root inside it are indexed again (or dropped): no longer to re-index."""
        prefix = root.rstrip("/") + "/"
        left = [r for r in self.roots_to_reindex() if r != root and not r.startswith(prefix)]
        self.set_meta(REINDEX_KEY, left)

    # settings -----------------------------------------------------------------
    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def raise_meta(self, key: str, value: int) -> int:
        """Set the integer ``key`` to ``value`` unless it holds a larger one already, in one
        transaction (no writer can come between the read and the write); returns the value it holds."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            held = json.loads(row[0]) if row else None
            if isinstance(held, int) and held > value:
                return held
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
            return value

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))
