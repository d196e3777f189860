"""Counting what an operation costs in calls: backend calls, real writes, HTTP requests.

Counting runs in its own pass, never while timing. Backend calls come from
``durastate.testing.CountingBackend``; a write that the backend skipped (unchanged bytes)
returns ``written=False`` and is not counted as a write. HTTP requests are counted at the
bottom of Python's HTTP stack, ``http.client.HTTPConnection.putrequest``, which every
request of urllib3 (so botocore and azure-core's requests transport) goes through: this
counts what actually went on the wire, retries included, for any SDK or plugin built on it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from durastate.core.records import Payload, WriteResult
from durastate.testing.counting import CountingBackend


class WriteCountingBackend(CountingBackend):
    """``CountingBackend`` that also counts custom-status writes that really wrote."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.writes = 0

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        result = super().write_custom_status(instance_id, payload, etag=etag, now=now)
        if result.written:
            self.writes += 1
        return result


class HttpCounter:
    """The number of HTTP requests started while counting was on (all threads)."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.requests += 1


_original_putrequest = http.client.HTTPConnection.putrequest
_active: list[HttpCounter] = []
_patch_lock = threading.Lock()


def _counting_putrequest(self: http.client.HTTPConnection, *args: Any, **kwargs: Any) -> None:
    for counter in tuple(_active):
        counter.add()
    _original_putrequest(self, *args, **kwargs)


@contextmanager
def count_http() -> Iterator[HttpCounter]:
    """Count HTTP requests made by anything in this process while the block runs."""
    counter = HttpCounter()
    with _patch_lock:
        if not _active:
            http.client.HTTPConnection.putrequest = _counting_putrequest  # type: ignore[method-assign]
        _active.append(counter)
    try:
        yield counter
    finally:
        with _patch_lock:
            _active.remove(counter)
            if not _active:
                http.client.HTTPConnection.putrequest = _original_putrequest  # type: ignore[method-assign]
