"""Dagster's SQLite event log, with its database connections kept open.

Dagster's `SqliteEventLogStorage` creates a SQLAlchemy engine, opens the file, commits and
disposes of the engine for every event it stores, and an asset event is stored twice (the run's
file and the cross-run index). An `opsmap run` stores ≈ 1,100 events at ≈ 5–9 ms each: about a
tenth of a scale-1 run. This storage keeps one open connection per database file (serialised by
the storage's own lock, as before) and commits in WAL mode with `synchronous = NORMAL`, which
survives a killed process (only an operating-system crash can lose the last commits); the files,
tables and queries are Dagster's own, so the UI and every Dagster tool read them as before.

`DAGSTER_HOME/dagster.yaml` (written by `pipelines.settings.ensure_dagster_home`) selects it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

# The index file, the current run's file and a few recent ones (the UI reads several runs).
OPEN_FILES = 8


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that keeps a connection open per database file (see the module doc)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(config_value["base_dir"], inst_data=inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            if shard not in self._initialized_dbs:
                # Creating and migrating a file runs inspections that want connections of their own.
                fresh = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=NullPool,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                try:
                    self._initdb(fresh)
                finally:
                    fresh.dispose()
                self._initialized_dbs.add(shard)
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,  # one connection, used under `_db_lock` only
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _tune_connection)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_FILES:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
        self._engines.move_to_end(shard)
        return engine

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_all()  # the run files are deleted: no connection may keep writing to them
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


def _tune_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Dagster switches its files to WAL on creation; in WAL, NORMAL loses nothing on a process crash.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
