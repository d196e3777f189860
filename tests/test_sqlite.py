"""SQLite specifics: several processes on one file, indexes, locked files, the URL."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from durastate import open_store
from durastate.backends import sqlite as sqlite_module
from durastate.backends.sqlite import SQLiteBackend, _prefix_upper_bound
from durastate.core.records import InstanceQuery, RuntimeStatus
from durastate.core.store import StateStore
from durastate.errors import BackendUnavailable, ConcurrencyError, ConfigurationError


def _increment(url: str, count: int) -> None:
    store = open_store(url)
    for _ in range(count):
        store.update("counter", lambda value: {"n": value["n"] + 1}, retries=500)
    store.close()


def test_processes_sharing_a_file_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = open_store(url)
    store.create_instance("counter", name="wf", custom_status={"n": 0})
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment, args=(url, 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert store.get_custom_status("counter") == {"n": 120}


def test_url_forms(tmp_path: Path) -> None:
    absolute = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(absolute.backend, SQLiteBackend)
    assert absolute.backend.path == str(tmp_path / "a.db")
    with pytest.raises(ConfigurationError, match="file path"):
        open_store("sqlite://")
    with pytest.raises(ConfigurationError, match="unknown sqlite options"):
        open_store(f"sqlite:///{tmp_path / 'b.db'}", colour="blue")


def _plan(backend: SQLiteBackend, query: InstanceQuery) -> str:
    where, params = backend._where(query, None)
    rows = (
        backend._connection()
        .execute(
            "EXPLAIN QUERY PLAN SELECT instance_id FROM instances"
        f"{where} ORDER BY instance_id LIMIT 101",
            params,
        )
        .fetchall()
    )
    return " | ".join(str(row[-1]) for row in rows)


def test_queries_use_indexes_not_scans(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "idx.db")
    by_status = _plan(backend, InstanceQuery(runtime_status=frozenset({RuntimeStatus.RUNNING})))
    assert "instances_by_status" in by_status
    by_prefix = _plan(backend, InstanceQuery(prefix="job-"))
    assert "SEARCH" in by_prefix
    assert "PRIMARY KEY" in by_prefix
    assert "SCAN" not in by_status


def test_query_at_scale(tmp_path: Path) -> None:
    """100,000 instances: filters and pages return the right rows (speed is benchmarked)."""
    backend = SQLiteBackend(tmp_path / "big.db")
    connection = backend._connection()
    statuses = ["running", "completed", "failed"]
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO instances (instance_id, name, runtime_status, created_at, last_updated_at, "
        "etag) VALUES (?, 'wf', ?, ?, ?, 'e')",
        ((f"i{n:06d}", statuses[n % 3], n * 1000, n * 1000) for n in range(100_000)),
    )
    connection.execute("COMMIT")
    store = open_store(f"sqlite:///{tmp_path / 'big.db'}")
    page = store.query(runtime_status="failed", prefix="i0999", page_size=10)
    expected = [f"i{n:06d}" for n in range(99_900, 100_000) if n % 3 == 2]
    assert [item.instance_id for item in page] == expected[:10]
    assert page.continuation is not None
    failed = sum(1 for _ in store.iter_instances(runtime_status="failed", page_size=1000))
    assert failed == 33_333


def test_locked_database_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = open_store(f"sqlite:///{path}", timeout=0.2)
    store.create_instance("job", name="wf", custom_status="before")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BackendUnavailable, match="job"):
            store.set_custom_status("job", "during")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.set_custom_status("job", "after")
    assert store.get_custom_status("job") == "after"


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [("a", "b"), ("ab", "ac"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("\ud7ff", "\ue000")],
)
def test_prefix_upper_bound(prefix: str, upper: str | None) -> None:
    assert _prefix_upper_bound(prefix) == upper


class _WriterBetweenSkipAndCheck(SQLiteBackend):
    """A real backend whose first "why was nothing updated?" read lets another store write."""

    def __init__(self, path: Path, other: StateStore) -> None:
        super().__init__(path)
        self.other = other
        self.interleaved = False

    def _status_of(
        self, connection: sqlite3.Connection, instance_id: str
    ) -> tuple[str, str, bytes | None, str | None] | None:
        if not self.interleaved:
            self.interleaved = True
            self.other.set_custom_status(instance_id, "theirs")
        return super()._status_of(connection, instance_id)


def test_write_without_etag_skipped_as_unchanged_then_overtaken_still_wins(
    tmp_path: Path,
) -> None:
    """An unchanged-bytes skip followed by another writer's change, before the skip is
    explained, must not surface as a conflict: without an etag, the last write wins."""
    path = tmp_path / "race.db"
    other = StateStore(SQLiteBackend(path))
    racing = StateStore(_WriterBetweenSkipAndCheck(path, other))
    racing.create_instance("lww", name="wf", custom_status="mine")
    etag = racing.set_custom_status("lww", "mine")  # skipped, then "theirs" lands
    assert racing.backend.interleaved  # type: ignore[attr-defined]
    got = other.get_instance("lww")
    assert got is not None
    assert got.custom_status == "mine"
    assert got.etag == etag
    with pytest.raises(ConcurrencyError):  # with an etag it is still compare-and-swap
        racing.set_custom_status("lww", "theirs", etag="stale")


def test_a_file_written_before_per_instance_ttl_opens_and_reads_as_before(tmp_path: Path) -> None:
    """Layout compatibility: a file without the ``ttl_micros`` column gets it when opened;
    its records read with no ttl, and new runs store theirs."""
    path = tmp_path / "old.db"
    old_schema = sqlite_module.SCHEMA.replace(",\n    ttl_micros INTEGER", "")
    assert "ttl_micros" not in old_schema
    with sqlite3.connect(path) as connection:
        connection.executescript(old_schema)
        connection.execute(
            "INSERT INTO instances (instance_id, name, runtime_status, created_at, "
            "last_updated_at, etag) VALUES ('old', 'wf', 'completed', 0, 0, 'e1')"
        )
    connection.close()
    backend = SQLiteBackend(path)
    try:
        old = backend.read("old")
        assert old is not None
        assert (old.name, old.ttl) == ("wf", None)
        store = StateStore(backend, expiring=True)
        store.create_instance("new", name="wf", ttl=timedelta(hours=2))
        new = backend.read("new")
        assert new is not None
        assert new.ttl == timedelta(hours=2)
        assert [item.instance_id for item in store.iter_instances()] == ["new", "old"]
    finally:
        backend.close()
    SQLiteBackend(path).close()  # opening it again finds the column in place
