"""Read-only access to the published warehouse, and the one small file the API writes.

**Reading.** The pipeline replaces the published file atomically (`os.replace`) after every
successful run, and DuckDB keeps reading the file it opened. So the API keeps one *snapshot* per
version of the files: an in-memory DuckDB instance that `ATTACH`es the published warehouse and
the annotation store, both `READ_ONLY`. Each request takes a cursor on the current snapshot (a
fresh connection to that instance, well under a millisecond) and closes it when done. Before each
request the files are `stat`ed (microseconds); when either was replaced, the next request builds a
new snapshot, and the old one is closed as soon as its last request finishes. The API never holds
a writable connection to the warehouse, so it never blocks the pipeline, and it never sees a
half-built warehouse.

A snapshot also carries a small response cache: everything the GET endpoints return is a pure
function of the two files and the request, so a response computed once is served again until a
file changes, and a new snapshot starts with an empty cache.

**Writing release annotations.** The published warehouse is read-only and replaced by every run, so
annotations live in their own DuckDB file beside it (`annotations.duckdb`), written only by the API
and copy-on-write like publication: a writer takes a file lock, copies the current rows into a new
temporary file, applies the change, and `os.replace`s it into place; readers attached to the old
file keep their snapshot, and the next request attaches the new one. Writing a new file is what
keeps readers and the writer apart: DuckDB refuses a read-write open of a file that any other
instance (in this process or another) has attached, so writing in place would wait on every reader,
whereas a replace waits on no one. SQL users read it with
`ATTACH '<dir>/annotations.duckdb' AS annotations (READ_ONLY)`.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

WAREHOUSE_ALIAS = "wh"
ANNOTATIONS_ALIAS = "annotations"
ANNOTATIONS_TABLE = "release_annotations"
ANNOTATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {ANNOTATIONS_TABLE} (
    version VARCHAR PRIMARY KEY,
    released_on DATE NOT NULL,
    features VARCHAR[] NOT NULL,
    notes VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
)
"""
ANNOTATION_COLUMNS = ("version", "released_on", "features", "notes", "created_at", "updated_at")
CACHE_ENTRIES = 2048  # responses kept per snapshot (LRU): tens of MB at most, whatever ids clients send


class WarehouseUnavailable(RuntimeError):
    """No published warehouse to read (the pipeline has not run, or the path is wrong)."""


FileKey = tuple[int, int, int] | None


def file_key(path: Path) -> FileKey:
    """Identity of one version of a file: a replaced file has a new inode and mtime."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Snapshot:
    """One version of the published warehouse and the annotation store, attached read-only."""

    def __init__(
        self, published: Path, annotations: Path, key: tuple[FileKey, FileKey], cache_entries: int = CACHE_ENTRIES
    ) -> None:
        self.key = key
        self.cache_entries = cache_entries
        self.published = published
        assert key[0] is not None, "a snapshot needs a published warehouse"
        self.published_at = datetime.fromtimestamp(key[0][1] / 1e9, UTC)  # the mtime of the version attached
        self._con = duckdb.connect(":memory:")
        try:
            self._attach(published, annotations, key[1] is not None)
        except Exception:
            self._con.close()
            raise
        self._lock = threading.Lock()
        self._users = 0
        self._retired = False
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self.tables = {
            f"{schema}.{name}"
            for schema, name in self._con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [WAREHOUSE_ALIAS]
            ).fetchall()
        }

    def _attach(self, published: Path, annotations: Path, has_store: bool) -> None:
        self._con.execute(f"ATTACH {_literal(str(published))} AS {WAREHOUSE_ALIAS} (READ_ONLY)")
        if has_store:
            self._con.execute(f"ATTACH {_literal(str(annotations))} AS {ANNOTATIONS_ALIAS} (READ_ONLY)")
            return
        # No store yet (a read-only folder, or before the first write): an empty stand-in keeps the SQL uniform.
        self._con.execute(f"ATTACH ':memory:' AS {ANNOTATIONS_ALIAS}")
        self._con.execute(f"USE {ANNOTATIONS_ALIAS}")
        self._con.execute(ANNOTATIONS_DDL)

    # --- lifetime: closed when retired and no request uses it any more --------------------------

    @property
    def retired(self) -> bool:
        return self._retired

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            close = self._retired and self._users == 0
        if close:
            self._con.close()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            close = self._users == 0
        if close:
            self._con.close()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request, reading the warehouse (unqualified names) in UTC."""
        with self._lock:  # the parent connection tracks its cursors: create them one at a time
            cur = self._con.cursor()
        try:
            cur.execute(f"USE {WAREHOUSE_ALIAS}")
            cur.execute("SET TimeZone = 'UTC'")  # `_at` columns come back as UTC whatever the machine's zone
            yield cur
        finally:
            cur.close()

    # --- the response cache ---------------------------------------------------------------------

    def cached(self, key: Any) -> Any | None:
        with self._lock:
            value = self._cache.get(key)
            if value is not None:
                self._cache.move_to_end(key)
            return value

    def remember(self, key: Any, value: Any) -> None:
        if self.cache_entries <= 0:
            return
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)


class WarehouseReader:
    """Hands out the current snapshot, building a new one when either file was replaced."""

    def __init__(self, published: Path, annotations: Path, cache_entries: int = CACHE_ENTRIES) -> None:
        self.published = published
        self.annotations = annotations
        self.cache_entries = cache_entries
        self._current: Snapshot | None = None
        self._lock = threading.Lock()

    def _fresh(self) -> Snapshot:
        key = (file_key(self.published), file_key(self.annotations))
        current = self._current
        if current is not None and current.key == key:
            return current
        with self._lock:  # one request builds the new snapshot; the others wait for it (~20 ms)
            current = self._current
            key = (file_key(self.published), file_key(self.annotations))
            if current is not None and current.key == key:
                return current
            if key[0] is None:
                raise WarehouseUnavailable(
                    f"no published warehouse at {self.published.name}: run `opsmap run` (or `make demo`) first"
                )
            fresh = Snapshot(self.published, self.annotations, key, self.cache_entries)
            self._current = fresh
        if current is not None:
            current.retire()
        return fresh

    def current(self) -> Snapshot | None:
        """The current snapshot when both files are unchanged (two `stat`s), else None; not held open."""
        current = self._current
        if current is None or current.key != (file_key(self.published), file_key(self.annotations)):
            return None
        return current

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """The current snapshot, kept open for the duration of the `with` block."""
        while True:
            snap = self._fresh()
            snap.acquire()
            if not snap.retired:
                break
            snap.release()  # replaced between lookup and acquire: take the newer one
        try:
            yield snap
        finally:
            snap.release()

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.retire()
                self._current = None


# --- the annotation store -------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    version: str
    released_on: date
    features: tuple[str, ...]
    notes: str | None
    created_at: datetime
    updated_at: datetime

    def same_content(self, released_on: date, features: tuple[str, ...], notes: str | None) -> bool:
        return (self.released_on, self.features, self.notes) == (released_on, features, notes)


class AnnotationStore:
    """Release annotations in their own DuckDB file, written copy-on-write under a file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # The thread lock orders writers in this process; flock orders API processes sharing the file.
        with self._thread_lock, open(self.path.with_suffix(".lock"), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure(self) -> bool:
        """Create an empty store if there is none; False when the folder is not writable."""
        if self.path.exists():
            return True
        try:
            with self._locked():
                if not self.path.exists():
                    self._write(lambda con: None)
        except OSError:
            return False
        return True

    def upsert(
        self, version: str, released_on: date, features: tuple[str, ...], notes: str | None
    ) -> tuple[Annotation, str]:
        """Store the annotation; return it and `created`, `updated` or `unchanged` (idempotent)."""
        with self._locked():
            existing = self._read_one(version)
            if existing is not None and existing.same_content(released_on, features, notes):
                return existing, "unchanged"
            now = datetime.now(UTC)
            created_at = existing.created_at if existing else now

            def change(con: duckdb.DuckDBPyConnection) -> None:
                con.execute(
                    f"INSERT OR REPLACE INTO {ANNOTATIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                    [version, released_on, list(features), notes, created_at, now],
                )

            self._write(change)
        stored = Annotation(version, released_on, features, notes, created_at, now)
        return stored, "updated" if existing else "created"

    def _read_one(self, version: str) -> Annotation | None:
        if not self.path.exists():
            return None
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH {_literal(str(self.path))} AS a (READ_ONLY)")
            con.execute("SET TimeZone = 'UTC'")
            rows = con.execute(
                f"SELECT {', '.join(ANNOTATION_COLUMNS)} FROM a.{ANNOTATIONS_TABLE} WHERE version = ?", [version]
            ).fetchall()
        finally:
            con.close()
        return annotation_from_row(rows[0]) if rows else None

    def _write(self, change: Any) -> None:
        """Copy the current rows into a new file, apply `change`, and swap the file in atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}-", suffix=".duckdb")
        os.close(fd)
        tmp = Path(tmp_name)
        tmp.unlink()  # DuckDB creates the file itself; an empty file is not a database
        try:
            con = duckdb.connect(str(tmp))
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.execute(ANNOTATIONS_DDL)
                if self.path.exists():
                    con.execute(f"ATTACH {_literal(str(self.path))} AS previous (READ_ONLY)")
                    con.execute(f"INSERT INTO {ANNOTATIONS_TABLE} SELECT * FROM previous.{ANNOTATIONS_TABLE}")
                    con.execute("DETACH previous")
                change(con)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)


def annotation_from_row(row: tuple[Any, ...]) -> Annotation:
    version, released_on, features, notes, created_at, updated_at = row
    return Annotation(version, released_on, tuple(features), notes, created_at, updated_at)


def _literal(text: str) -> str:
    """A SQL string literal for a path the API itself chose (never request text)."""
    return "'" + text.replace("'", "''") + "'"
