"""Faults: servers that stop, freeze or restart mid-run; a locked or killed SQLite writer.

- While a server is down or frozen, every call raises ``BackendUnavailable`` within the
  configured timeout plus one second: nothing hangs.
- After a freeze, a record reads as the old or the new state, never a mix.
- After a restart (the emulators keep data in memory, so the restarted server is empty) the
  same store either recreates its table/bucket or raises a clear ``ConfigurationError``;
  a store opened again works, and then so does the old one.
- SQLite: a writer process killed with SIGKILL mid-write leaves every record decodable and at
  the last acknowledged generation or the next one (old or new, never a mix).
- The status reporter keeps a value it could not write, retries, and on exit writes it or
  raises; it never drops it silently.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from durastate import open_store
from durastate.core.reporter import StatusReporter
from durastate.core.store import StateStore
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    DurastateError,
    InstanceNotFound,
)
from tests.reliability.backends import (
    AWS_FAST,
    AZURE_FAST,
    BackendSpec,
    generation_value,
    network_options,
    spec_for,
    sqlite_spec,
    sqlite_writer,
    unique,
)
from tests.reliability.conftest import PrivateEmulator

Operation = Callable[[StateStore], object]


def _operations(include_destructive: bool = True) -> dict[str, Operation]:
    ops: dict[str, Operation] = {
        "get_instance": lambda s: s.get_instance("job"),
        "get_custom_status": lambda s: s.get_custom_status("job"),
        "set_custom_status": lambda s: s.set_custom_status("job", {"stage": "during"}),
        "update": lambda s: s.update("job", lambda v: {"stage": "updated-during"}),
        "query": lambda s: s.query(page_size=5),
    }
    if include_destructive:
        ops.update(
            {
                "create_instance": lambda s: s.create_instance(
                    unique("new-"), name="wf", custom_status=1
                ),
                "set_runtime_status": lambda s: s.set_runtime_status("job", "running"),
                "purge": lambda s: s.purge("other"),
                "purge_by": lambda s: s.purge_by(prefix="zz-none-"),
            }
        )
    return ops


#: Big enough that Azure offloads it to a blob (the table keeps 60 KiB at most inline).
_BIG = 100_000


def _offloaded_operations() -> dict[str, Operation]:
    """Writes that upload a payload first (Azure's blobs): the upload counts to the bound."""
    return {
        "set_custom_status (100 KB)": lambda s: s.set_custom_status("big", {"b": "x" * _BIG}),
        "create_instance (100 KB input)": lambda s: s.create_instance(
            unique("new-big-"), name="wf", input={"b": "y" * _BIG}
        ),
        "get_instance (offloaded)": lambda s: s.get_instance("big", fetch_payloads=True),
    }


def _assert_unavailable_in_time(
    store: StateStore, ops: dict[str, Operation], budget: float
) -> None:
    """Each operation raises BackendUnavailable, each within ``budget`` + 1 s."""
    problems: list[str] = []
    for name, op in ops.items():
        started = time.monotonic()
        try:
            op(store)
        except BackendUnavailable:
            pass
        except Exception as exc:  # anything else is a finding
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            problems.append(f"{name}: succeeded during the outage")
        elapsed = time.monotonic() - started
        if elapsed > budget + 1.0:
            problems.append(f"{name}: took {elapsed:.2f} s, over {budget} + 1 s")
    assert not problems, "\n".join(problems)


def _wait_until_answering(store: StateStore, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            store.get_instance("job")
            return
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- network servers --------------------------------------------------------------------------


def test_server_outage_freeze_and_restart(
    network_kind: str, private_emulator: PrivateEmulator, face: str
) -> None:
    fast = network_options(network_kind, AZURE_FAST, AWS_FAST)
    spec = spec_for(network_kind, private_emulator.emulator, **fast).with_face(face)
    budget = spec.timeout_budget()
    store = spec.open(max_custom_status_bytes=4 * _BIG)
    try:
        store.create_instance("job", name="wf", input={"big": "input"}, custom_status="before")
        store.create_instance("other", name="wf")
        store.create_instance("big", name="wf", custom_status={"b": "z" * _BIG})
        assert store.get_custom_status("job") == "before"

        # 1. Frozen server (SIGSTOP): connections open, no answer -> read timeouts.
        private_emulator.freeze()
        try:
            frozen_ops = {**_operations(include_destructive=False), **_offloaded_operations()}
            _assert_unavailable_in_time(store, frozen_ops, budget)
        finally:
            private_emulator.thaw()
        _wait_until_answering(store)
        got = store.get_instance("job", fetch_payloads=True)
        assert got is not None
        # Requests that timed out may still have been applied late: old or new, never a mix.
        assert got.custom_status in ("before", {"stage": "during"}, {"stage": "updated-during"})
        assert got.input == {"big": "input"}
        assert got.name == "wf"

        # 2. Stopped server: connection refused.
        private_emulator.stop()
        _assert_unavailable_in_time(store, _operations(), budget)

        # 3. Restarted, empty server: the same store recreates what it needs, or says why not.
        private_emulator.restart()
        try:
            store.create_instance("after", name="wf", custom_status="fresh")
        except ConfigurationError as exc:
            message = str(exc).lower()
            assert any(word in message for word in ("table", "bucket")), message
        else:
            assert store.get_custom_status("after") == "fresh"

        # A store opened again works, and after that the old store works again too.
        again = spec.open()
        try:
            again.create_instance("after-2", name="wf", custom_status="fresh")
            assert again.get_custom_status("after-2") == "fresh"
        finally:
            again.close()
        assert store.get_instance("job") is None  # the emulator kept it in memory: gone
        store.set_custom_status("after-2", "from the old store")
        assert store.get_custom_status("after-2") == "from the old store"
        store.update("after-2", lambda v: v + "!")
        assert store.get_custom_status("after-2") == "from the old store!"
    finally:
        store.close()


# -- SQLite: a locked database file ---------------------------------------------------------


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Another connection holds an EXCLUSIVE lock: no other connection can even read."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    blocker.execute("UPDATE instances SET name = name")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_sqlite_locked_file_every_call_unavailable_in_time(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    spec = sqlite_spec(path, timeout=0.3)
    store = spec.open()
    store.create_instance("job", name="wf", input="in", custom_status="before")
    store.create_instance("other", name="wf")
    store.backend.close()  # drop pooled connections: the next call connects afresh
    with _exclusive_lock(path):
        _assert_unavailable_in_time(store, _operations(), spec.timeout_budget())
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            spec.open()
        assert time.monotonic() - started < spec.timeout_budget() + 1.0
    # After the lock: nothing was half-written, and every call works again.
    got = store.get_instance("job", fetch_payloads=True)
    assert got is not None
    assert (got.custom_status, got.input, got.runtime_status.value) == ("before", "in", "pending")
    for name, op in _operations().items():
        op(store)  # raises if anything is still broken
        assert name
    assert store.get_custom_status("job") == {"stage": "updated-during"}


def test_sqlite_lock_held_by_a_busy_writer_is_waited_for_then_unavailable(
    tmp_path: Path,
) -> None:
    """Pooled connections too: a write waits up to ``timeout`` and then fails cleanly."""
    path = tmp_path / "busy.db"
    spec = sqlite_spec(path, timeout=0.3)
    store = spec.open()
    store.create_instance("job", name="wf", custom_status="before")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        for name in ("set_custom_status", "update", "set_runtime_status", "create_instance"):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                _operations()[name](store)
            assert time.monotonic() - started < spec.timeout_budget() + 1.0
        assert store.get_custom_status("job") == "before"  # readers are not blocked (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.set_custom_status("job", "after")
    assert store.get_custom_status("job") == "after"


# -- SQLite: a writer killed mid-write --------------------------------------------------------


@pytest.mark.parametrize("size", [200, 40_000])
def test_sqlite_writer_killed_mid_write_leaves_old_or_new(tmp_path: Path, size: int) -> None:
    path = tmp_path / "killed.db"
    url = f"sqlite:///{path}"
    ids = [f"rec-{n}" for n in range(6)]
    limit = 4 * size + 1024
    with open_store(url, max_custom_status_bytes=limit) as store:
        for instance_id in ids:
            store.create_instance(
                instance_id, name="wf", custom_status=generation_value(instance_id, 0, size)
            )
            store.set_runtime_status(
                instance_id, "running", output=generation_value(instance_id, 0, size)
            )
    context = multiprocessing.get_context("spawn")
    for round_no in range(3):
        acked = context.Array("q", len(ids), lock=False)
        before = _generations(url, ids, size, limit)
        for index, instance_id in enumerate(ids):
            acked[index] = before[instance_id][0]
        writer = context.Process(target=sqlite_writer, args=(url, ids, acked, size))
        writer.start()
        # Let it run until it has written a few generations, then kill it mid-flight.
        deadline = time.monotonic() + 30
        while min(acked) < before[ids[-1]][0] + 2 + round_no and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.0007 * (round_no + 1))
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=10)
        assert writer.exitcode == -signal.SIGKILL
        after = _generations(url, ids, size, limit)
        for index, instance_id in enumerate(ids):
            status_gen, output_gen = after[instance_id]
            last = acked[index]
            assert status_gen in (last, last + 1), (instance_id, status_gen, last)
            assert output_gen in (last, last + 1), (instance_id, output_gen, last)
            assert output_gen <= status_gen  # the status is written first
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()


def _generations(url: str, ids: list[str], size: int, limit: int) -> dict[str, tuple[int, int]]:
    """Each record's (status generation, output generation), checking both decode whole."""
    found: dict[str, tuple[int, int]] = {}
    with open_store(url, max_custom_status_bytes=limit) as store:
        for instance_id in ids:
            got = store.get_instance(instance_id, fetch_payloads=True)
            assert got is not None
            status, output = got.custom_status, got.output
            for value in (status, output):
                assert value == generation_value(instance_id, value["gen"], size)
            found[instance_id] = (status["gen"], output["gen"])
    return found


# -- the status reporter ----------------------------------------------------------------------


def test_reporter_keeps_value_through_sqlite_lock_and_writes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "reporter.db"
    store = sqlite_spec(path, timeout=0.05).open()
    store.create_instance("job", name="wf", custom_status="old")
    store.backend.close()
    caplog.set_level(logging.WARNING, logger="durastate")
    with store.status_reporter("job", min_interval=0.02) as reporter, _exclusive_lock(path):
        reporter.report({"percent": 50})
        reporter.report({"percent": 99})
        deadline = time.monotonic() + 5
        while reporter.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reporter.failures >= 2  # it retried
        assert reporter.pending  # and kept the value
        assert isinstance(reporter.last_error, BackendUnavailable)
        # the lock is gone: the next background attempt, or the exit, writes it
    assert store.get_custom_status("job") == {"percent": 99}
    assert not reporter.pending
    assert any("will retry" in record.getMessage() for record in caplog.records)


def test_reporter_raises_on_exit_when_lock_outlives_it(tmp_path: Path) -> None:
    path = tmp_path / "reporter.db"
    store = sqlite_spec(path, timeout=0.05).open()
    store.create_instance("job", name="wf", custom_status="old")
    store.backend.close()
    with _exclusive_lock(path):
        reporter = StatusReporter(store, "job", min_interval=60, exit_retries=1)
        with pytest.raises(BackendUnavailable), reporter:
            reporter.report("never stored")
        assert reporter.pending  # still held, not dropped
    assert store.get_custom_status("job") == "old"


def test_reporter_on_frozen_server(network_kind: str, private_emulator: PrivateEmulator) -> None:
    """Keeps the value across a freeze and writes it on exit; raises if the freeze lasts."""
    spec = spec_for(
        network_kind,
        private_emulator.emulator,
        **network_options(network_kind, AZURE_FAST, AWS_FAST),
    )
    store = spec.open()
    try:
        store.create_instance("job", name="wf", custom_status="old")
        interval = 0.05
        with StatusReporter(store, "job", min_interval=interval, exit_retries=1) as reporter:
            private_emulator.freeze()
            try:
                reporter.report({"percent": 42})
                deadline = time.monotonic() + spec.timeout_budget() + 5
                while reporter.failures < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert reporter.failures >= 1
                assert reporter.pending
            finally:
                private_emulator.thaw()
        assert store.get_custom_status("job") == {"percent": 42}

        last: BaseException | None = None
        private_emulator.freeze()
        try:
            reporter = StatusReporter(store, "job", min_interval=60, exit_retries=1)
            try:
                with reporter:
                    reporter.report({"percent": 43})
            except DurastateError as exc:
                last = exc
        finally:
            private_emulator.thaw()
        assert isinstance(last, BackendUnavailable), last
        assert reporter.pending
        _wait_until_answering(store)
        # A timed-out write may land late: the old value or the new one, nothing else.
        assert store.get_custom_status("job") in ({"percent": 42}, {"percent": 43})
    finally:
        store.close()


def test_unavailable_errors_name_the_instance(tmp_path: Path) -> None:
    path = tmp_path / "named.db"
    spec: BackendSpec = sqlite_spec(path, timeout=0.05)
    store = spec.open()
    store.create_instance("job-with-a-name", name="wf")
    store.backend.close()
    with _exclusive_lock(path):
        for op in (
            lambda: store.get_instance("job-with-a-name"),
            lambda: store.set_custom_status("job-with-a-name", 1),
        ):
            with pytest.raises(BackendUnavailable, match="job-with-a-name"):
                op()
    with pytest.raises(InstanceNotFound):
        store.set_custom_status("missing", 1)
