"""Cells that depend on how many instances a store holds: queries, iteration, footprint.

Each table size gets a fresh store (memory:// without a name, or a new SQLite file next to
the benchmarked one) filled with that many instances, 50 of them ``running``:

- ``query_<size>``: ``query(runtime_status="running")``, one page holding the 50 matches;
  its cost should follow the matches, not the table.
- ``iter_<size>``: ``iter_instances()`` over everything, per item; linear means the same
  per-item cost at every size. On SQLite it runs paired with raw sqlite3 keyset paging
  over the same file (the ``raw_iter_<size>`` anchor).
- ``footprint``: bytes per small instance (memory: allocated, by tracemalloc; SQLite: the
  file after a checkpoint).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from durastate.bench.cells import make_store
from durastate.bench.matrix import SCALE_SCHEMES, SCALE_SIZES, BackendSpec, Effort
from durastate.bench.payloads import payload_pair
from durastate.bench.results import Measurement
from durastate.bench.timing import Op, measure
from durastate.core.backend import Backend
from durastate.core.store import StateStore
from durastate.opening import open_backend
from durastate.serializers.json import JsonSerializer

MATCHES = 50
PAGE_SIZE = 100
_RAW_PAGE = (
    "SELECT instance_id, name, runtime_status, created_at, last_updated_at, "
    "custom_status_updated_at, etag, custom_status, custom_status_encoding "
    "FROM instances WHERE instance_id > ? ORDER BY instance_id LIMIT ?"
)


def _measurement(spec: BackendSpec, operation: str, subject: str = "durastate",
                 name: str = "durastate", compares_to: str | None = None) -> Measurement:
    return Measurement(subject, name, spec.name, "json", "150B", "dict", operation,
                       compares_to=compares_to)


def sqlite_path(spec: BackendSpec) -> Path:
    path = spec.url.partition("://")[2]
    return Path(path[1:] if path.startswith("/") else path)


def fresh_backend(spec: BackendSpec, label: str) -> Backend:
    """An empty backend of the same kind: memory:// unnamed, SQLite in a sibling file."""
    if spec.scheme == "memory":
        return open_backend("memory://")
    path = sqlite_path(spec)
    target = path.with_name(f"{path.stem}-{label}.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    return open_backend(f"sqlite:///{target}", **spec.options)


def _sqlite_file(spec: BackendSpec, backend: Backend) -> Path | None:
    return Path(getattr(backend, "path", "")) if spec.scheme == "sqlite" else None


def fill(store: StateStore, count: int, sqlite_file: Path | None = None) -> None:
    """``count`` instances with a 150 B status; every ``count // 50``-th is running.

    With ``sqlite_file`` (the store's own file), the first running and the first pending
    instance are made through the store and the rest copied from them in one transaction:
    the same rows (bytes, encodings, etags) under their own ids and creation times, in a
    second where 100k separate commits took half a minute.
    """
    status = payload_pair("150B", "dict").values[0]
    step = count // MATCHES
    made = count if sqlite_file is None else min(count, 2)
    for n in range(made):
        instance_id = _scale_id(n)
        store.create_instance(instance_id, name="bench", custom_status=status)
        if n % step == 0:
            store.set_runtime_status(instance_id, "running")
    if sqlite_file is not None and count > made:
        _copy_rows(sqlite_file, range(made, count), step)


def _scale_id(n: int) -> str:
    return f"scale-{n:07d}"


def _copy_rows(path: Path, numbers: range, step: int) -> None:
    """Rows ``numbers`` as copies of instance 0 (running) or 1 (pending), created 1 µs apart
    after them, written in one transaction."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            columns = [row[1] for row in connection.execute("PRAGMA table_info(instances)")]
            select = f"SELECT {', '.join(columns)} FROM instances WHERE instance_id = ?"  # noqa: S608
            running, pending = (dict(zip(columns, connection.execute(select, (_scale_id(n),))
                                         .fetchone(), strict=True)) for n in (0, 1))
            times = [c for c in ("created_at", "last_updated_at", "custom_status_updated_at")
                     if c in columns]
            insert = (f"INSERT INTO instances ({', '.join(columns)}) "  # noqa: S608
                      f"VALUES ({', '.join('?' * len(columns))})")

            def rows() -> Iterator[list[Any]]:
                for n in numbers:
                    row = dict(running if n % step == 0 else pending, instance_id=_scale_id(n))
                    for column in times:
                        row[column] = pending[column] + n
                    yield [row[column] for column in columns]

            connection.executemany(insert, rows())
    finally:
        connection.close()


def _status_query(store: StateStore) -> Callable[[int], object]:
    def query(i: int) -> int:
        return len(store.query(runtime_status="running", page_size=PAGE_SIZE))

    return query


def _iterate_all(store: StateStore) -> Callable[[int], object]:
    def iterate(i: int) -> int:
        return sum(1 for _ in store.iter_instances(page_size=PAGE_SIZE))

    return iterate


def _raw_keyset(path: Path) -> tuple[sqlite3.Connection, Callable[[int], object]]:
    connection = sqlite3.connect(path)

    def page_through(i: int) -> int:
        after, count = "", 0
        while True:
            rows = connection.execute(_RAW_PAGE, (after, PAGE_SIZE)).fetchall()
            if not rows:
                return count
            count += len(rows)
            after = rows[-1][0]

    return connection, page_through


def _time_passes(ops: list[Callable[[int], object]], passes: int) -> list[tuple[float, float]]:
    """Median (wall, CPU) ns of whole passes, the operations alternating pass by pass."""
    perf, cpu = time.perf_counter_ns, time.thread_time_ns
    for op in ops:  # warm: a first pass fills caches (memory:// keeps each row's record)
        op(0)
    walls: list[list[float]] = [[] for _ in ops]
    cpus: list[list[float]] = [[] for _ in ops]
    for _ in range(passes):
        for side, op in enumerate(ops):
            w0, c0 = perf(), cpu()
            op(0)
            walls[side].append(perf() - w0)
            cpus[side].append(cpu() - c0)
    return [(statistics.median(walls[side]), statistics.median(cpus[side]))
            for side in range(len(ops))]


def run_scale(spec: BackendSpec, effort: Effort, limit: int,
              counts: dict[str, int] | None = None) -> list[Measurement]:
    """Every scale cell of one backend (memory or SQLite), with the SQLite raw anchors."""
    if spec.scheme not in SCALE_SCHEMES:
        return []
    out: list[Measurement] = []
    passes = 2 if effort.seconds < 0.5 else 5
    for label, count in (counts or SCALE_SIZES).items():
        backend = fresh_backend(spec, f"scale-{label}")
        try:
            store = make_store(backend, JsonSerializer(), limit)
            fill(store, count, _sqlite_file(spec, backend))
            query = _measurement(spec, f"query_{label}")
            timing = measure(_status_query(store), seconds=effort.seconds, min_ops=20,
                             max_ops=effort.max_ops)
            query.ops, query.batch = timing.ops, timing.batch
            query.median_us, query.p99_us = timing.median_ns / 1e3, timing.p99_ns / 1e3
            query.cpu_us, query.ops_per_s = timing.cpu_ns / 1e3, timing.ops_per_s
            query.extra = {"instances": count, "matches": MATCHES}
            out.append(query)
            out += _iteration(spec, store, backend, label, count, passes)
        finally:
            backend.close()
    out.append(footprint(spec, limit))
    return out


def _iteration(spec: BackendSpec, store: StateStore, backend: Backend, label: str,
               count: int, passes: int) -> list[Measurement]:
    ours = _measurement(spec, f"iter_{label}")
    ours.extra = {"instances": count, "page_size": PAGE_SIZE, "per": "item"}
    sides: list[Callable[[int], object]] = [_iterate_all(store)]
    connection = None
    if spec.scheme == "sqlite":
        connection, raw = _raw_keyset(Path(getattr(backend, "path", "")))
        sides.append(raw)
    try:
        timings = _time_passes(sides, passes)
    finally:
        if connection is not None:
            connection.close()
    (wall, cpu) = timings[0]
    ours.ops, ours.batch = count * passes, count
    ours.median_us, ours.cpu_us = wall / count / 1e3, cpu / count / 1e3
    ours.ops_per_s = count / (wall / 1e9)
    out = [ours]
    if len(timings) > 1:
        raw_wall, raw_cpu = timings[1]
        ref = _measurement(spec, f"raw_iter_{label}", "anchor",
                           "sqlite3 keyset paging (same file, 100 rows a page)", ours.operation)
        ref.ops, ref.batch = count * passes, count
        ref.median_us, ref.cpu_us = raw_wall / count / 1e3, raw_cpu / count / 1e3
        ref.ops_per_s = count / (raw_wall / 1e9)
        ref.extra = {"instances": count, "paired_durastate_median_us": ours.median_us,
                     "paired_durastate_cpu_us": ours.cpu_us}
        out.append(ref)
    return out


def scale_op(spec: BackendSpec, operation: str, limit: int) -> tuple[Backend, Op]:
    """A freshly filled store and the operation of a scale cell (to profile a missed target);
    the caller closes the backend."""
    label = operation.partition("_")[2]
    backend = fresh_backend(spec, f"profile-{label}")
    store = make_store(backend, JsonSerializer(), limit)
    fill(store, SCALE_SIZES[label], _sqlite_file(spec, backend))
    if operation.startswith("query_"):
        return backend, _status_query(store)
    return backend, _iterate_all(store)


def footprint(spec: BackendSpec, limit: int, count: int = 2000) -> Measurement:
    """Bytes per small instance (150 B status, a small input)."""
    m = _measurement(spec, "footprint")
    backend = fresh_backend(spec, "footprint")
    try:
        store = make_store(backend, JsonSerializer(), limit)
        status = payload_pair("150B", "dict").values
        if spec.scheme == "memory":
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                _footprint_fill(store, count, status)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            m.extra = {"method": "tracemalloc: bytes allocated per instance"}
        else:
            _footprint_fill(store, count, status)
            path = Path(getattr(backend, "path", ""))
            with sqlite3.connect(path) as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                pages = connection.execute("PRAGMA page_count").fetchone()[0]
                size = connection.execute("PRAGMA page_size").fetchone()[0]
            grown = pages * size
            m.extra = {"method": "database file after a checkpoint, per instance"}
        m.stored_bytes = round(grown / count)
        m.ops = count
        m.extra["instances"] = count
        m.extra["bytes_per_instance"] = m.stored_bytes
    finally:
        backend.close()
    return m


def _footprint_fill(store: StateStore, count: int, status: tuple[Any, Any]) -> None:
    for n in range(count):
        instance_id = f"size-{n:06d}"
        store.create_instance(instance_id, name="bench", input={"file": f"{n}.png"})
        store.set_custom_status(instance_id, status[n & 1])


__all__ = ["footprint", "run_scale", "scale_op"]
