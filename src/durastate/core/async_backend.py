"""The async backend contract, and the adapters that give a sync backend an async face.

`AsyncBackend` mirrors `Backend` call for call, with the same records, semantics and typed
errors (see core/backend.py), so `AsyncStateStore` makes the same decisions as `StateStore`.
A backend with its own async driver implements it directly; any other backend is reached
through `SyncBackendAdapter`: inline for one whose calls never block (memory://), or
through a bounded thread pool (a plugin with only a sync backend; SQLite has a pool of four
connection threads of its own), so the event loop never waits on I/O.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from durastate.core.backend import Backend
from durastate.core.records import (
    Capabilities,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)

T = TypeVar("T")

DEFAULT_POOL_SIZE = 16


class AsyncBackend(ABC):
    """Stores instance records, with coroutines; the semantics of `Backend`."""

    capabilities: Capabilities

    @abstractmethod
    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        """Insert a new run and return its etag; ``InstanceExists`` if a run is in the way."""

    @abstractmethod
    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        """The record, with input/output only when ``fetch_payloads``; ``None`` if absent."""

    @abstractmethod
    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        """Replace the custom status (and its timestamps) only."""

    @abstractmethod
    async def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        """Change the runtime status, and the output when ``set_output``; return the etag."""

    @abstractmethod
    async def delete(self, instance_id: str) -> bool:
        """Remove the instance and anything it owns; ``False`` if absent."""

    @abstractmethod
    async def query(self, query: InstanceQuery) -> RecordPage:
        """One page of matching records."""

    @abstractmethod
    async def purge_by(self, query: InstanceQuery) -> int:
        """Delete every match; the number deleted."""

    async def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        """As `Backend.count`. Generic fallback: walk the pages of ``query``."""
        counts: dict[RuntimeStatus, int] = {}
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = await self.query(page_query)
            for record in page.items:
                if query.matches(record):
                    counts[record.runtime_status] = counts.get(record.runtime_status, 0) + 1
            if page.continuation is None:
                return counts
            page_query = replace(page_query, continuation=page.continuation)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """As `Backend.read_many`. Generic fallback: the reads, all at once."""
        records = await asyncio.gather(
            *(self.read(instance_id, fetch_payloads=fetch_payloads) for instance_id in instance_ids)
        )
        return dict(zip(instance_ids, records, strict=True))

    async def purge_expired(self) -> int:
        """As `Backend.purge_expired`: the default has no records of its own expiry."""
        return 0

    @abstractmethod
    async def close(self) -> None:
        """Release connections (and threads)."""

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """As `Backend.subscribe`: for backends that declare ``Capabilities.push``."""
        raise NotImplementedError(f"{type(self).__name__} does not push changes")


class SyncBackendAdapter(AsyncBackend):
    """A sync `Backend` behind the async contract; calls run inline (memory://: they never
    block). Subclasses choose where a call runs by overriding `_call`."""

    def __init__(self, backend: Backend) -> None:
        self.sync = backend
        self.capabilities = backend.capabilities

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync!r})"

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return await self._call(self.sync.create, new, restart_if_terminal=restart_if_terminal)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return await self._call(self.sync.read, instance_id, fetch_payloads=fetch_payloads)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        return await self._call(
            self.sync.write_custom_status, instance_id, payload, etag=etag, now=now
        )

    async def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        write = functools.partial(
            self.sync.write_runtime_status, output=output, set_output=set_output
        )
        return await self._call(write, instance_id, status, etag=etag, now=now)

    async def delete(self, instance_id: str) -> bool:
        return await self._call(self.sync.delete, instance_id)

    async def query(self, query: InstanceQuery) -> RecordPage:
        return await self._call(self.sync.query, query)

    async def purge_by(self, query: InstanceQuery) -> int:
        return await self._call(self.sync.purge_by, query)

    async def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        return await self._call(self.sync.count, query)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return await self._call(self.sync.read_many, instance_ids, fetch_payloads=fetch_payloads)

    async def purge_expired(self) -> int:
        return await self._call(self.sync.purge_expired)

    async def close(self) -> None:
        await self._call(self.sync.close)

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        return self.sync.subscribe(instance_id, notify)


class InlineAsyncBackend(SyncBackendAdapter):
    """For a backend whose calls never block (memory://): the two hot calls go straight to
    the sync backend, without the `_call` hop (a coroutine each: a third of the async
    store's overhead on memory://)."""

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return self.sync.read(instance_id, fetch_payloads=fetch_payloads)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        return self.sync.write_custom_status(instance_id, payload, etag=etag, now=now)


class Workers:
    """At most ``max_workers`` threads, started only when every started one is busy.

    Unlike ``ThreadPoolExecutor``, a thread counts as idle *before* its result reaches the
    loop, so calls made one after another (a reporter writer, a watch poller) reuse one
    thread instead of growing the pool to its bound.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fn = functools.partial(contextvars.copy_context().run, fn)  # the caller's trace span
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put((loop, future, fn))
        return future

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            loop, future, fn = job
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except BaseException as exc:  # handed to the awaiting task
                outcome = (False, exc)
            with self._lock:
                self._idle += 1
            loop.call_soon_threadsafe(_settle, future, outcome)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    succeeded, value = outcome
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)


class ThreadPoolAsyncBackend(SyncBackendAdapter):
    """Each call runs on one of at most ``max_workers`` threads, never on the loop."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_workers: int = DEFAULT_POOL_SIZE,
        thread_name: str = "durastate-async",
    ) -> None:
        super().__init__(backend)
        self.max_workers = max_workers
        self._workers = Workers(max_workers, thread_name)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await self._workers.run(call)

    async def close(self) -> None:
        try:
            await super().close()  # on a worker: a connection per thread closes there
        finally:
            self._workers.shutdown()
