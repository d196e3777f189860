"""Status reporters: a hot progress loop, coalesced into at most one write per interval.

``report()`` serializes the value and checks its size at the call, so a bad or oversized
value fails there (the design's promise), and parks the bytes: nothing else. Wrapping them
in an envelope (and compressing, where configured) waits for the write, which happens for
few of the reported values. One writer per process writes the latest parked value of every
reporter once per interval: a single thread for the reporters of sync stores, a single task
per event loop for those of async stores, so a thousand reporters cost no more threads
than one. Leaving the block writes the last value, whatever ended it. A failed write keeps
the value for the next try; on exit it is retried, and if it still fails the error is
raised, never swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from durastate.errors import ConfigurationError, DurastateError, PayloadTooLarge

if TYPE_CHECKING:
    from durastate.core.async_store import AsyncStateStore
    from durastate.core.store import StateStore

log = logging.getLogger(__name__)

R = TypeVar("R", bound="_Reporter[Any]")
S = TypeVar("S")


class _Reporter(Generic[S]):
    """What both reporters share: the parked value, what was written, the counters."""

    def __init__(
        self,
        store: S,
        instance_id: str,
        *,
        min_interval: float = 0.5,
        exit_retries: int = 3,
    ) -> None:
        if type(min_interval) not in (int, float) or not 0 < min_interval < math.inf:
            raise ConfigurationError(  # a ValueError too, as it always was
                f"min_interval must be a positive number, not {min_interval!r:.40}"
            )
        sync = self._sync_face(store)
        sync.check_id(instance_id)
        self._store = store
        self._flush_lock = self._new_lock()
        self._instance_id = instance_id
        self.interval = min_interval
        self._exit_retries = exit_retries
        self._codec = sync.codec
        self._dumps = sync.codec.writer.dumps  # bound once: report() runs in hot loops
        limit = sync.max_custom_status_bytes
        self._limit = sys.maxsize if limit is None else limit
        self._latest: bytes | None = None  # serialized, not yet wrapped in an envelope
        self._written: bytes | None = None
        self.active = False
        self.reports = 0
        self.writes = 0
        self.failures = 0
        self.last_error: Exception | None = None

    @staticmethod
    def _sync_face(store: S) -> StateStore:
        """The sync store whose codec and limits this reporter uses."""
        raise NotImplementedError

    @staticmethod
    def _new_lock() -> Any:
        """The lock that keeps the writer and the exit from writing at once."""
        raise NotImplementedError

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

    def _due(self) -> bytes | None:
        """The serialized value to write now, or ``None`` if the latest one is written.

        ``report`` only replaces ``_latest`` (one attribute store, no lock); a value that
        arrives during a write is simply newer than ``_written`` and goes out next time.
        The writer wraps the bytes in their envelope (``codec.wrap``) just before writing.
        """
        data = self._latest
        return None if data is None or data is self._written else data

    def _wrote(self, data: bytes) -> None:
        self._written = data
        self.writes += 1

    def _failed(self, exc: Exception) -> None:
        """A failed write leaves ``_written`` as it was: the value is kept for the next try."""
        self.failures += 1
        self.last_error = exc

    def _log_failure(self, exc: Exception) -> None:
        if isinstance(exc, DurastateError):
            log.warning(
                "status reporter for %r: write failed, will retry: %s", self._instance_id, exc
            )
        else:  # a bug elsewhere must not silently stop the writer
            log.error("status reporter for %r: unexpected error", self._instance_id, exc_info=exc)

    def _exit_delays(self) -> Iterator[float]:
        """The pauses between the exit's write attempts (the last failure is raised)."""
        return (min(0.1 * 2**attempt, 1.0) for attempt in range(self._exit_retries))

    def _record_exit(self) -> None:
        """Tell the store's telemetry (if any) how many values were reported and written."""
        telemetry = getattr(self._sync_face(self._store), "telemetry", None)
        if telemetry is not None:
            telemetry.record_reporter(self.reports, self.writes)


class _Schedule(Generic[R]):
    """When each active reporter is due next (a heap; left reporters are dropped lazily)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, R]] = []
        self._order = itertools.count()

    def add(self, reporter: R, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._order), reporter))

    def next_due(self) -> float | None:
        while self._heap and not self._heap[0][2].active:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[R]:
        due: list[R] = []
        while self._heap and self._heap[0][0] <= now:
            reporter = heapq.heappop(self._heap)[2]
            if reporter.active:
                due.append(reporter)
        return due


# -- sync: one thread for the whole process ----------------------------------------------


class StatusReporter(_Reporter["StateStore"]):
    """Use as ``with store.status_reporter(id, min_interval=0.5) as r: r.report(v)``."""

    @staticmethod
    def _sync_face(store: StateStore) -> StateStore:
        return store

    @staticmethod
    def _new_lock() -> threading.Lock:
        return threading.Lock()

    def flush(self) -> None:
        """Write the latest value now, unless it is the one already written."""
        with self._flush_lock:
            data = self._due()
            if data is None:
                return
            try:
                payload = self._codec.wrap(data)
                self._store.write_custom_status_payload(self._instance_id, payload)
            except Exception as exc:  # the caller (writer or exit) decides what to do
                self._failed(exc)
                raise
            self._wrote(data)

    def __enter__(self) -> Self:
        _sync_writer().add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.active = False
        try:
            self._flush_on_exit()
        finally:
            self._record_exit()

    def _flush_on_exit(self) -> None:
        for delay in self._exit_delays():
            try:
                self.flush()
                return
            except DurastateError:
                time.sleep(delay)
        self.flush()


class SyncReporterWriter:
    """The one thread that writes for every sync reporter of the process."""

    def __init__(self) -> None:
        self._schedule: _Schedule[StatusReporter] = _Schedule()
        self._wake = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="durastate-reporters", daemon=True)
        self.thread.start()

    def add(self, reporter: StatusReporter) -> None:
        reporter.active = True
        with self._wake:
            self._schedule.add(reporter, time.monotonic() + reporter.interval)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._schedule.next_due()
                now = time.monotonic()
                if due is None or due > now:
                    self._wake.wait(None if due is None else due - now)
                    continue
                reporters = self._schedule.pop_due(now)
            for reporter in reporters:
                try:
                    reporter.flush()
                except Exception as exc:
                    reporter._log_failure(exc)
            with self._wake:
                for reporter in reporters:
                    self._schedule.add(reporter, time.monotonic() + reporter.interval)


_sync_writer_instance: SyncReporterWriter | None = None
_sync_writer_lock = threading.Lock()


def _sync_writer() -> SyncReporterWriter:
    global _sync_writer_instance
    with _sync_writer_lock:
        if _sync_writer_instance is None:
            _sync_writer_instance = SyncReporterWriter()
        return _sync_writer_instance


def _forget_writer_after_fork() -> None:
    global _sync_writer_instance, _sync_writer_lock
    _sync_writer_instance = None  # its thread does not exist in the child
    _sync_writer_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_writer_after_fork)


# -- async: one task per event loop ------------------------------------------------------


class AsyncStatusReporter(_Reporter["AsyncStateStore"]):
    """Use as ``async with store.status_reporter(id) as r: r.report(v)``."""

    @staticmethod
    def _sync_face(store: AsyncStateStore) -> StateStore:
        return store.store

    @staticmethod
    def _new_lock() -> asyncio.Lock:
        return asyncio.Lock()

    async def flush(self) -> None:
        """Write the latest value now, unless it is the one already written."""
        async with self._flush_lock:
            data = self._due()
            if data is None:
                return
            store = self._store
            try:
                payload = self._codec.wrap(data)
                await store.refuse_expired(self._instance_id)  # as write_custom_status_payload
                await store.backend.write_custom_status(
                    self._instance_id, payload, etag=None, now=store.store.now()
                )
            except Exception as exc:
                self._failed(exc)
                raise
            self._wrote(data)

    async def __aenter__(self) -> Self:
        _async_writer().add(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.active = False
        try:
            await self._flush_on_exit()
        finally:
            self._record_exit()

    async def _flush_on_exit(self) -> None:
        for delay in self._exit_delays():
            try:
                await self.flush()
                return
            except DurastateError:
                await asyncio.sleep(delay)
        await self.flush()


class AsyncReporterWriter:
    """The one task, per event loop, that writes for every async reporter on that loop; it
    ends when the last reporter leaves and starts again with the next one."""

    def __init__(self) -> None:
        self._schedule: _Schedule[AsyncStatusReporter] = _Schedule()
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, reporter: AsyncStatusReporter) -> None:
        reporter.active = True
        self._schedule.add(reporter, time.monotonic() + reporter.interval)
        self._wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while (due := self._schedule.next_due()) is not None:
            delay = due - time.monotonic()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            reporters = self._schedule.pop_due(time.monotonic())
            for reporter in reporters:
                try:
                    await reporter.flush()
                except Exception as exc:
                    reporter._log_failure(exc)
                self._schedule.add(reporter, time.monotonic() + reporter.interval)


_async_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncReporterWriter] = (
    weakref.WeakKeyDictionary()
)


def _async_writer() -> AsyncReporterWriter:
    loop = asyncio.get_running_loop()
    writer = _async_writers.get(loop)
    if writer is None:
        writer = _async_writers[loop] = AsyncReporterWriter()
    return writer
