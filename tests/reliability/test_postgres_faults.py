"""PostgreSQL faults: a server stopped, frozen and restarted mid-run; requests dropped on the
way in; answers lost on the way back, with a second writer acting before the client retries.

The network emulators' versions of these tests (test_faults.py, test_transient.py) speak
HTTP; these use the same operations and bounds through `PostgresFaultProxy`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from durastate.errors import BackendUnavailable, InstanceExists, OutcomeUnknown
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import POSTGRES_FAST, BackendSpec, opened, postgres_spec
from tests.reliability.conftest import PrivateEmulator
from tests.reliability.faultproxy import Fault
from tests.reliability.pgproxy import PostgresFaultProxy, proxy_for, with_port
from tests.reliability.test_faults import (
    _assert_unavailable_in_time,
    _operations,
    _wait_until_answering,
)


@pytest.fixture
def private_postgres() -> Iterator[PrivateEmulator]:
    private = PrivateEmulator("postgres")
    try:
        yield private
    finally:
        private.close()


def test_server_outage_freeze_and_restart(private_postgres: PrivateEmulator) -> None:
    spec = postgres_spec(private_postgres.emulator, **POSTGRES_FAST)
    budget = spec.timeout_budget()
    store = spec.open()
    try:
        store.create_instance("job", name="wf", input={"big": "input"}, custom_status="before")
        store.create_instance("other", name="wf")

        # 1. Frozen server (SIGSTOP): TCP stays up, nothing answers; libpq alone would wait
        # forever.
        private_postgres.freeze()
        try:
            _assert_unavailable_in_time(store, _operations(include_destructive=False), budget)
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                spec.open()  # opening a store hangs on nothing either
            assert time.monotonic() - started < budget + 1.0
        finally:
            private_postgres.thaw()
        _wait_until_answering(store)
        got = store.get_instance("job", fetch_payloads=True)
        assert got is not None
        assert got.custom_status in ("before", {"stage": "during"}, {"stage": "updated-during"})
        assert got.input == {"big": "input"}

        # 2. Stopped server: connection refused, every call (destructive ones too).
        private_postgres.stop()
        _assert_unavailable_in_time(store, _operations(), budget)

        # 3. Restarted on the same port and data: the same store works again, data kept.
        private_postgres.restart()
        _wait_until_answering(store)
        assert store.get_instance("other") is not None
        store.set_custom_status("job", "after")
        assert store.get_custom_status("job") == "after"
        store.create_instance("new-after-restart", name="wf")
    finally:
        store.close()


@pytest.fixture
def direct(postgres_server: RunningEmulator) -> BackendSpec:
    return postgres_spec(postgres_server)


@pytest.fixture
def proxy(postgres_server: RunningEmulator) -> Iterator[PostgresFaultProxy]:
    with proxy_for(postgres_server, seed=20240601) as running:
        yield running


def _through(spec: BackendSpec, proxy: PostgresFaultProxy) -> BackendSpec:
    return BackendSpec(spec.kind, with_port(spec.url, proxy.port), dict(spec.options))


def _increments(spec: BackendSpec, count: int) -> tuple[int, list[BaseException]]:
    done = 0
    errors: list[BaseException] = []
    with opened(spec) as store:
        for _ in range(count):
            try:
                store.update("counter", lambda v: {"n": v["n"] + 1}, retries=500)
            except BackendUnavailable as exc:
                errors.append(exc)
            else:
                done += 1
    return done, errors


def _faulty(
    direct: BackendSpec, proxy: PostgresFaultProxy, faults: dict[Fault, float], count: int
) -> tuple[int, list[BaseException], int]:
    with opened(direct) as store:
        store.create_instance("counter", name="wf", input={"keep": "me"}, custom_status={"n": 0})
    proxy.configure(rate=0.25, faults=faults)
    done, errors = _increments(_through(direct, proxy), count)
    proxy.configure(rate=0.0)
    with opened(direct) as store:
        final: dict[str, Any] = store.get_custom_status("counter")
        got = store.get_instance("counter", fetch_payloads=True)
        assert got is not None
        assert got.input == {"keep": "me"}
    return done, errors, int(final["n"])


def test_requests_dropped_before_the_server_are_sent_again(
    direct: BackendSpec, proxy: PostgresFaultProxy
) -> None:
    """The write never reached the server: the recovery sees the old etag and sends it again."""
    done, errors, final = _faulty(direct, proxy, {"drop": 1.0}, 20)
    assert proxy.counters["drop"] > 0
    assert [str(error) for error in errors] == []
    assert done == final == 20, dict(proxy.counters)


def test_lost_answers_are_recognised_as_our_own_write(
    direct: BackendSpec, proxy: PostgresFaultProxy
) -> None:
    """The server applied the write, the answer was lost: the recovery finds the etag this
    very call made, so the call succeeds and nothing is applied twice."""
    done, errors, final = _faulty(direct, proxy, {"drop_after": 1.0}, 20)
    assert proxy.counters["drop_after"] > 0
    assert [str(error) for error in errors] == []
    assert done == final == 20, dict(proxy.counters)


def test_lost_answers_with_a_second_writer_in_between_are_never_applied_twice(
    direct: BackendSpec, proxy: PostgresFaultProxy
) -> None:
    """After each lost answer, another store increments the counter before the client can
    look. The client can no longer tell whether its write landed: it must raise
    ``BackendUnavailable`` rather than retry (which would apply the increment twice)."""
    second_writes = 0
    lock = threading.Lock()
    with opened(direct) as second:

        def second_writer() -> None:
            nonlocal second_writes
            second.update("counter", lambda v: {"n": v["n"] + 1})
            with lock:
                second_writes += 1

        proxy.on_lost_answer = second_writer
        done, errors, final = _faulty(direct, proxy, {"drop_after": 1.0}, 20)
    assert proxy.counters["drop_after"] > 0
    assert second_writes > 0
    assert done + len(errors) == 20
    ours = final - second_writes
    assert done <= ours <= done + len(errors), (
        f"final {final} - {second_writes} by the second writer = {ours}; {done} returned, "
        f"{len(errors)} raised: {ours - done - len(errors)} applied twice"
    )
    assert all(isinstance(error, OutcomeUnknown) for error in errors), errors


def test_lost_create_answers_never_report_our_own_create_as_taken(
    direct: BackendSpec, proxy: PostgresFaultProxy
) -> None:
    with opened(direct):
        pass  # creates the table directly
    proxy.configure(rate=0.3, faults={"drop_after": 1.0})
    outcomes: dict[str, str] = {}
    with opened(_through(direct, proxy)) as store:
        for number in range(12):
            instance_id = f"fresh-{number}"
            try:
                store.create_instance(instance_id, name="wf", input=number)
            except InstanceExists:
                outcomes[instance_id] = "InstanceExists"
            else:
                outcomes[instance_id] = "created"
    proxy.configure(rate=0.0)
    assert proxy.counters["drop_after"] > 0
    assert set(outcomes.values()) == {"created"}, outcomes
