"""AsyncStateStore: the `StateStore` API as coroutines, over an `AsyncBackend`.

Every decision (id checks, encoding, size limits, query filters, decoding, update's retry
rule) is the sync store's: this class asks its `StateStore` to prepare each call and to
interpret each answer, and only awaits the backend in between. So both stores accept,
refuse and store exactly the same things.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, Unpack

from durastate.core import store_plans
from durastate.core.async_backend import AsyncBackend
from durastate.core.models import InstanceMetadata, Page
from durastate.core.records import Capabilities, RuntimeStatus
from durastate.core.steps import adrive
from durastate.core.store import (
    NOT_SET,
    Filters,
    StateStore,
    Statuses,
    count_query,
    page_query,
    purge_query,
)
from durastate.core.store_plans import require_instance
from durastate.errors import InstanceExists

if TYPE_CHECKING:
    from durastate.core.reporter import AsyncStatusReporter
    from durastate.core.watch import AsyncWatchHub
    from durastate.telemetry import StoreTelemetry


class AsyncStateStore:
    """Workflow instances and their custom status, for asyncio code.

    Open one with ``durastate.open_async_store(...)``; ``store`` is the sync face it shares
    its configuration with, ``backend`` the async backend it awaits.
    """

    def __init__(self, store: StateStore, backend: AsyncBackend | None = None) -> None:
        self.store = store
        self.backend = backend if backend is not None else store.backend.to_async()
        self.codec = store.codec
        self._watch_hub: AsyncWatchHub | None = None
        self.telemetry: StoreTelemetry | None = None
        if store.telemetry is not None:  # the sync face is traced: so is this one
            from durastate.telemetry import instrument

            instrument(self)

    def __repr__(self) -> str:
        return f"AsyncStateStore(backend={self.backend!r}, serializer={self.codec.writer.id!r})"

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def max_custom_status_bytes(self) -> int | None:
        return self.store.max_custom_status_bytes

    # -- writes ---------------------------------------------------------------------------

    async def create_instance(
        self,
        instance_id: str,
        *,
        name: str,
        input: Any = None,
        custom_status: Any = NOT_SET,
        runtime_status: RuntimeStatus | str = RuntimeStatus.PENDING,
        restart_if_terminal: bool = False,
    ) -> str:
        """As `StateStore.create_instance`."""
        new = self.store.new_instance(instance_id, name, input, custom_status, runtime_status)
        try:
            return await self.backend.create(new, restart_if_terminal=restart_if_terminal)
        except InstanceExists:
            if self.store.retention is None:
                raise
        return await adrive(store_plans.replace_expired(self.store, new), self._perform)

    async def refuse_expired(self, instance_id: str) -> None:
        """With retention, a write to an expired instance is refused as to an absent one."""
        if self.store.retention is not None:
            self.store.refuse_expired(instance_id, await self.backend.read(instance_id))

    async def set_custom_status(
        self, instance_id: str, value: Any, *, etag: str | None = None
    ) -> str:
        """As `StateStore.set_custom_status`: serialized and size-checked before any I/O."""
        store = self.store
        payload = store.encode_custom_status(instance_id, value)
        if store.retention is not None:  # (no coroutine on the hot path without one)
            await self.refuse_expired(instance_id)
        result = await self.backend.write_custom_status(
            instance_id, payload, etag=etag, now=store.now()
        )
        return result.etag

    async def set_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus | str,
        *,
        output: Any = NOT_SET,
        etag: str | None = None,
    ) -> str:
        """As `StateStore.set_runtime_status`."""
        checked, payload = self.store.runtime_status_change(instance_id, status, output)
        await self.refuse_expired(instance_id)
        write = self.backend.write_runtime_status
        set_output = output is not NOT_SET
        return await write(
            instance_id, checked, output=payload, set_output=set_output, etag=etag,
            now=self.store.now(),
        )  # fmt: skip

    async def update(
        self,
        instance_id: str,
        fn: Callable[[Any], Any] | Callable[[Any], Awaitable[Any]],
        *,
        retries: int = 20,
    ) -> Any:
        """As `StateStore.update`; ``fn`` may be a plain function or a coroutine function.

        Only an etag conflict is retried: any other failure (an unknown outcome) is raised,
        so ``fn`` is never applied again to a write that may have landed.
        """
        return await adrive(store_plans.update(self.store, instance_id, fn, retries), self._perform)

    # -- reads ----------------------------------------------------------------------------

    async def get_instance(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceMetadata | None:
        """As `StateStore.get_instance`."""
        self.store.check_id(instance_id)
        record = await self.backend.read(instance_id, fetch_payloads=fetch_payloads)
        return self.store.visible(record, fetch_payloads)

    async def get_custom_status(self, instance_id: str) -> Any:
        """As `StateStore.get_custom_status`."""
        return require_instance(await self.get_instance(instance_id), instance_id).custom_status

    async def query(
        self,
        *,
        page_size: int = 100,
        continuation: str | None = None,
        fetch_payloads: bool = False,
        **filters: Unpack[Filters],
    ) -> Page:
        """As `StateStore.query`."""
        query = page_query(
            page_size=page_size,
            continuation=continuation,
            fetch_payloads=fetch_payloads,
            **filters,
        )
        return self.store.page(await self.backend.query(query), query)

    async def iter_instances(
        self, *, page_size: int = 100, fetch_payloads: bool = False, **filters: Unpack[Filters]
    ) -> AsyncIterator[InstanceMetadata]:
        """As `StateStore.iter_instances`, page by page as the caller iterates."""
        query = page_query(page_size=page_size, fetch_payloads=fetch_payloads, **filters)
        while True:
            page = self.store.page(await self.backend.query(query), query)
            for item in page.items:
                yield item
            if page.continuation is None:
                return
            query = replace(query, continuation=page.continuation)

    async def count(self, **filters: Unpack[Filters]) -> dict[RuntimeStatus, int]:
        """As `StateStore.count`."""
        query = count_query(**filters)
        store = self.store
        return store.tally([await self.backend.count(q) for q in store.count_queries(query)])

    async def get_many(
        self, instance_ids: Iterable[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceMetadata | None]:
        """As `StateStore.get_many`."""
        ids = self.store.many_ids(instance_ids)
        records = await self.backend.read_many(ids, fetch_payloads=fetch_payloads)
        return self.store.many(ids, records, fetch_payloads)

    # -- deletes --------------------------------------------------------------------------

    async def purge(self, instance_id: str) -> bool:
        """As `StateStore.purge`."""
        self.store.check_id(instance_id)
        return await self.backend.delete(instance_id)

    async def purge_by(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        runtime_status: Statuses = None,
        prefix: str | None = None,
    ) -> int:
        """As `StateStore.purge_by`."""
        query = purge_query(created_from, created_to, runtime_status, prefix)
        return await self.backend.purge_by(query)

    async def purge_expired(self) -> int:
        """As `StateStore.purge_expired`."""
        return await adrive(store_plans.purge_expired(self.store), self._perform)

    async def _perform(self, step: store_plans.Step) -> Any:
        """One step of a `store_plans` plan, awaited (``update``'s function too, when it
        returns an awaitable)."""
        if isinstance(step, store_plans.Call):
            owner = self.backend if step.on_backend else self
            return await getattr(owner, step.name)(*step.args, **step.kwargs)
        if isinstance(step, store_plans.Apply):
            value = step.fn(step.value)
            return (await value) if inspect.isawaitable(value) else value
        await asyncio.sleep(step.seconds)
        return None

    # -- watching and reporting -----------------------------------------------------------

    def watch(
        self, instance_id: str, *, since_etag: str | None = None, poll_interval: float | None = None
    ) -> AsyncIterator[InstanceMetadata]:
        """As `StateStore.watch`, as an async iterator (``async for state in ...``)."""
        from durastate.core.watch import watch_async

        self.store.check_id(instance_id)
        return watch_async(self, instance_id, since_etag, poll_interval)

    def watch_hub(self) -> AsyncWatchHub:
        """The watchers' shared polls and subscriptions of this store (one event loop)."""
        if self._watch_hub is None:
            from durastate.core.watch import AsyncWatchHub

            self._watch_hub = AsyncWatchHub(self)
        return self._watch_hub

    def status_reporter(
        self, instance_id: str, *, min_interval: float = 0.5
    ) -> AsyncStatusReporter:
        """``async with store.status_reporter(id) as r: r.report(v)`` (``report`` never
        blocks; one task per event loop writes for every reporter)."""
        from durastate.core.reporter import AsyncStatusReporter

        return AsyncStatusReporter(self, instance_id, min_interval=min_interval)

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
