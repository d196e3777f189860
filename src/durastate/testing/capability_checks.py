"""What the conformance suite's capability checks share (sync and async faces alike)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from durastate.core.backend import Backend
from durastate.core.records import NewInstance, Payload, RuntimeStatus

#: The largest payload the capability checks write: a declared limit above it (SQLite,
#: Redis, PostgreSQL: hundreds of MiB) is checked at this size, not at the limit itself.
LARGEST_CHECKED_PAYLOAD = 1024 * 1024

#: Seconds a push check waits for a notification that must come.
WAIT_FOR_PUSH = 10.0


def json_of_size(size: int) -> str:
    """A string whose JSON encoding is exactly ``size`` bytes (quotes included)."""
    return "x" * (size - 2)


def new_instance(instance_id: str, now: datetime) -> NewInstance:
    return NewInstance(instance_id, "wf", RuntimeStatus.PENDING, now, None, None)


def assert_writes_are_heard(
    changed: threading.Event, writer: Backend, instance_id: str, now: datetime
) -> None:
    """``changed`` is set by a subscription to ``instance_id``: it must be set by a write of
    ``writer`` (another backend object of the same store), not only by subscribing.

    Writes until heard (a subscription may take a moment to start), waits until the signals
    of (re)subscribing are over, then writes once more and waits for that write's signal.
    """
    deadline = time.monotonic() + WAIT_FOR_PUSH
    attempt = 0
    while not changed.is_set():
        assert time.monotonic() < deadline, "subscribe() never notified a write"
        attempt += 1  # new bytes each time: an unchanged write is skipped, not announced
        status = Payload(b'{"attempt":%d}' % attempt, "json")
        writer.write_custom_status(instance_id, status, etag=None, now=now)
        changed.wait(0.5)
        now += timedelta(milliseconds=1)
    deadline = time.monotonic() + WAIT_FOR_PUSH
    while time.monotonic() < deadline:
        changed.clear()
        if not changed.wait(0.5):
            break
    writer.write_custom_status(instance_id, Payload(b'"last"', "json"), etag=None, now=now)
    assert changed.wait(WAIT_FOR_PUSH), "subscribe() did not notify a write"
