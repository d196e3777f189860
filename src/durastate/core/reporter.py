"""StatusReporter: a hot progress loop, coalesced into at most one write per interval.

``report()`` serializes the value and checks its size at the call, so a bad or oversized
value fails there (the design's promise), and parks the bytes: nothing else. Wrapping them
in an envelope (and compressing, where configured) waits for the write, which happens for
few of the reported values. A background thread writes the latest parked value once per
interval, and ``__exit__`` writes the last one, whatever ended the block. A failed write
keeps the value for the next try; on exit it is retried, and if it still fails the error
is raised, never swallowed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from durastate.core.ids import validate_instance_id
from durastate.errors import DurastateError, PayloadTooLarge

if TYPE_CHECKING:
    from durastate.core.store import StateStore

log = logging.getLogger(__name__)


class StatusReporter:
    """Use as ``with store.status_reporter(id, min_interval=0.5) as r: r.report(v)``."""

    def __init__(
        self,
        store: StateStore,
        instance_id: str,
        *,
        min_interval: float = 0.5,
        exit_retries: int = 3,
    ) -> None:
        if min_interval <= 0:
            raise ValueError("min_interval must be positive")
        self._store = store
        self._instance_id = instance_id
        self._interval = min_interval
        self._exit_retries = exit_retries
        validate_instance_id(instance_id, store.capabilities.max_instance_id_length)
        self._codec = store.codec
        self._dumps = store.codec.writer.dumps  # bound once: report() runs in hot loops
        limit = store.max_custom_status_bytes
        self._limit = sys.maxsize if limit is None else limit
        self._flush_lock = threading.Lock()  # the thread and __exit__ never write at once
        self._latest: bytes | None = None
        self._written: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reports = 0
        self.writes = 0
        self.failures = 0
        self.last_error: Exception | None = None

    def report(self, value: Any) -> None:
        """Park ``value`` as the latest status; serialization and size errors are raised here.

        The serializer runs directly (the codec's ``encode`` would add a frame and an
        envelope per call); on the rare failure the value goes through ``encode`` again,
        which raises the same typed error a direct ``set_custom_status`` would.
        """
        instance_id = self._instance_id
        try:
            data = self._dumps(value, instance_id=instance_id)
        except Exception:
            self._codec.encode(value, instance_id, "custom_status", self._limit)
            raise  # encode accepted what dumps refused: keep the serializer's own error
        if len(data) > self._limit:
            raise PayloadTooLarge(instance_id, "custom_status", len(data), self._limit)
        self._latest = data
        self.reports += 1

    @property
    def pending(self) -> bool:
        """True while a reported value has not been written yet."""
        return self._latest is not self._written

    def flush(self) -> None:
        """Write the latest value now, unless it is the one already written.

        ``report`` only replaces ``_latest`` (one attribute store, no lock); a value that
        arrives during a write is simply newer than ``_written`` and goes out next time. A
        failed write leaves ``_written`` as it was, so the value is kept for the next try.
        """
        with self._flush_lock:
            data = self._latest
            if data is None or data is self._written:
                return
            try:
                payload = self._codec.wrap(data)
                self._store.write_custom_status_payload(self._instance_id, payload)
            except Exception as exc:  # the caller (thread or exit) decides what to do
                self.failures += 1
                self.last_error = exc
                raise
            self._written = data
            self.writes += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except DurastateError as exc:
                log.warning(
                    "status reporter for %r: write failed, will retry: %s", self._instance_id, exc
                )
            except Exception:  # a bug elsewhere must not silently stop the reporting thread
                log.exception("status reporter for %r: unexpected error", self._instance_id)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self._run, name=f"durastate-reporter-{self._instance_id[:32]}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._flush_on_exit()
        finally:
            telemetry = getattr(self._store, "telemetry", None)
            if telemetry is not None:
                telemetry.record_reporter(self.reports, self.writes)

    def _flush_on_exit(self) -> None:
        for attempt in range(self._exit_retries + 1):
            try:
                self.flush()
                return
            except DurastateError:
                if attempt == self._exit_retries:
                    raise
                time.sleep(min(0.1 * 2**attempt, 1.0))
