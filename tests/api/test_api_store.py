"""The annotation store on its own: idempotent upserts, no lost update across processes, readers undisturbed."""

from __future__ import annotations

import multiprocessing
from datetime import date
from pathlib import Path

import duckdb

from pipelines.api.db import ANNOTATIONS_TABLE, AnnotationStore


def write_versions(path: str, prefix: str, count: int) -> None:
    store = AnnotationStore(Path(path))
    for i in range(count):
        store.upsert(f"{prefix}.{i}", date(2026, 1, 1 + i), (f"PAY-{i + 1}",), None)


def rows(path: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT version, features FROM {ANNOTATIONS_TABLE} ORDER BY version").fetchall()
    finally:
        con.close()


def test_upsert_reports_what_it_did(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path / "annotations.duckdb")
    first, status = store.upsert("1.0.0", date(2026, 1, 1), ("PAY-3",), "n")
    assert status == "created"
    again, status = store.upsert("1.0.0", date(2026, 1, 1), ("PAY-3",), "n")
    assert status == "unchanged"
    assert again == first
    changed, status = store.upsert("1.0.0", date(2026, 1, 2), ("PAY-3",), "n")
    assert status == "updated"
    assert changed.created_at == first.created_at < changed.updated_at
    assert rows(tmp_path / "annotations.duckdb") == [("1.0.0", ["PAY-3"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.duckdb", "annotations.lock"]  # no temp left


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "annotations.duckdb"
    AnnotationStore(path).ensure()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, like two API processes
    workers = [context.Process(target=write_versions, args=(str(path), p, 6)) for p in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert [r[0] for r in rows(path)] == [f"{p}.{i}" for p in ("a", "b") for i in range(6)]


def test_a_reader_holding_the_store_does_not_block_a_write(tmp_path: Path) -> None:
    path = tmp_path / "annotations.duckdb"
    store = AnnotationStore(path)
    store.upsert("1.0.0", date(2026, 1, 1), (), None)
    reader = duckdb.connect(":memory:")
    reader.execute(f"ATTACH '{path}' AS a (READ_ONLY)")
    try:
        store.upsert("2.0.0", date(2026, 2, 1), (), None)  # would fail with a lock conflict if written in place
        assert reader.execute(f"SELECT count(*) FROM a.{ANNOTATIONS_TABLE}").fetchall() == [(1,)]  # its snapshot
    finally:
        reader.close()
    assert [r[0] for r in rows(path)] == ["1.0.0", "2.0.0"]
