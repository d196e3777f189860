"""StatusReporter: coalescing, timely writes, the last value always lands, errors surface."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from durastate.backends.memory import MemoryBackend
from durastate.core.records import Payload, WriteResult
from durastate.core.store import StateStore
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    PayloadTooLarge,
    SerializationError,
)
from durastate.testing import CountingBackend


class FlakyBackend(MemoryBackend):
    """Fails custom-status writes while ``failing`` is set (a real outage, simulated here)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = threading.Event()

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        if self.failing.is_set():
            raise BackendUnavailable("simulated outage")
        return super().write_custom_status(instance_id, payload, etag=etag, now=now)


@pytest.fixture
def counting() -> CountingBackend:
    return CountingBackend(MemoryBackend())


@pytest.fixture
def store(counting: CountingBackend) -> StateStore:
    store = StateStore(counting)
    store.create_instance("job", name="wf")
    counting.calls.clear()
    return store


def test_hot_loop_is_coalesced_and_last_value_lands(
    store: StateStore, counting: CountingBackend
) -> None:
    interval = 0.05
    started = time.monotonic()
    with store.status_reporter("job", min_interval=interval) as reporter:
        for step in range(20_000):
            reporter.report({"step": step})
    elapsed = time.monotonic() - started
    assert store.get_custom_status("job") == {"step": 19_999}
    writes = counting.calls["write_custom_status"]
    assert writes == reporter.writes
    assert 1 <= writes <= elapsed / interval + 2


def test_pending_value_is_written_within_one_interval(store: StateStore) -> None:
    with store.status_reporter("job", min_interval=0.05) as reporter:
        reporter.report("halfway")
        deadline = time.monotonic() + 1.0
        while store.get_custom_status("job") != "halfway" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store.get_custom_status("job") == "halfway"
        assert not reporter.pending


def test_last_value_written_even_when_block_raises(store: StateStore) -> None:
    with (  # noqa: PT012 - the block is the subject
        pytest.raises(RuntimeError, match="boom"),
        store.status_reporter("job", min_interval=60) as reporter,
    ):
        reporter.report({"stage": "before crash"})
        raise RuntimeError("boom")
    assert store.get_custom_status("job") == {"stage": "before crash"}


def test_serialization_error_raised_at_report(store: StateStore) -> None:
    with store.status_reporter("job", min_interval=60) as reporter:
        reporter.report("good")
        with pytest.raises(SerializationError):
            reporter.report(object())
    assert store.get_custom_status("job") == "good"


def test_failed_writes_keep_value_and_retry() -> None:
    backend = FlakyBackend()
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    backend.failing.set()
    with store.status_reporter("job", min_interval=0.02) as reporter:
        reporter.report("survives the outage")
        time.sleep(0.1)  # several failed background attempts
        assert reporter.failures >= 1
        assert reporter.pending
        backend.failing.clear()
    assert store.get_custom_status("job") == "survives the outage"


def test_exit_raises_when_the_last_value_cannot_be_written() -> None:
    backend = FlakyBackend()
    store = StateStore(backend)
    store.create_instance("job", name="wf", custom_status="old")
    backend.failing.set()
    with (  # noqa: PT012 - the exit is the subject
        pytest.raises(BackendUnavailable),
        store.status_reporter("job", min_interval=60) as reporter,
    ):
        reporter._exit_retries = 1
        reporter.report("never stored")
    assert store.get_custom_status("job") == "old"


def test_unchanged_reports_do_not_change_the_record(store: StateStore) -> None:
    with store.status_reporter("job", min_interval=0.01) as reporter:
        reporter.report("same")
        time.sleep(0.05)
        first = store.get_instance("job")
        for _ in range(3):
            reporter.report("same")
            time.sleep(0.03)
    last = store.get_instance("job")
    assert first is not None
    assert last is not None
    assert first.custom_status == "same"
    assert last.etag == first.etag
    assert last.last_updated_at == first.last_updated_at


def test_report_refuses_at_the_call_what_set_custom_status_refuses() -> None:
    """report() runs the serializer itself; its errors must be the store's typed ones."""
    store = StateStore(MemoryBackend(), max_custom_status_bytes=64)
    store.create_instance("job", name="wf")
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with store.status_reporter("job", min_interval=60) as reporter:
        reporter.report({"percent": 1})
        with pytest.raises(PayloadTooLarge, match="'job'"):
            reporter.report("x" * 100)
        with pytest.raises(SerializationError, match="'job'"):
            reporter.report(float("nan"))
        with pytest.raises(SerializationError, match="'job'"):
            reporter.report(deep)
    assert store.get_custom_status("job") == {"percent": 1}


def test_reported_values_are_compressed_like_direct_writes() -> None:
    backend = CountingBackend(MemoryBackend())
    store = StateStore(backend, compress_above=32)
    store.create_instance("job", name="wf")
    with store.status_reporter("job", min_interval=60) as reporter:
        reporter.report({"stage": "resize", "message": "y" * 200})
    record = backend.read("job")
    assert record is not None
    assert record.custom_status is not None
    assert record.custom_status.compression == "zlib"
    assert store.get_custom_status("job") == {"stage": "resize", "message": "y" * 200}


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), "0.5", None, True])
def test_a_min_interval_must_be_a_positive_number(store: StateStore, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="min_interval"):
        store.status_reporter("job", min_interval=bad)  # type: ignore[arg-type]
