"""The backend contract: the small interface every storage backend implements.

Semantics (Dapr's, adapted to workflow instances):

- ``create`` is insert-only. A run whose status is terminal may be replaced only when the
  caller asks (``restart_if_terminal``); the new run starts with no output and the custom
  status given (or none), never the old run's.
- Writes take an optional etag. With one, the write succeeds only if it still matches
  (``ConcurrencyError`` otherwise); without one, last write wins. A missing instance is
  ``InstanceNotFound``. No backend reads before it writes on the custom-status path.
- ``write_custom_status`` writes only the custom status and its timestamps. Every backend
  must skip a write of the bytes it wrote (or read) at the etag it is given, while that
  etag is current: nothing is written, and it returns that etag with ``written=False``. A
  stale etag is ``ConcurrencyError``, unchanged bytes or not. Without an etag, a backend
  declaring ``skips_unchanged`` compares with the stored bytes and skips the same way; one
  that cannot tell without a read declares ``skips_unchanged=False`` and writes
  (``written=True``). The conformance suite checks all three
  (``test_capability_skips_unchanged``, ``test_unchanged_bytes_are_not_written``).
- Timestamps come from the store (``now``) so every backend records the same clock.
- Backends never deserialize payloads; they keep ``Payload.data`` and ``Payload.encoding``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from durastate.core.lru import DEFAULT_CAPACITY, LRU
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
from durastate.errors import CorruptRecord

log = logging.getLogger(__name__)


def skip_unreadable(error: CorruptRecord, unreadable: list[str]) -> None:
    """Leave a record that cannot be decoded out of a listing, with a warning naming it.

    One corrupt record must not break listing for every other instance. Reading it by id
    still raises `CorruptRecord`; ``purge``/``purge_by`` delete it. Backends call this for
    each such record of a page and return ``unreadable`` in the `RecordPage`: a record whose
    filters cannot be evaluated any more counts as a match there (it is only ever deleted,
    never returned).
    """
    log.warning(
        "listing skips instance %r: its stored record is unreadable (%s)",
        error.instance_id,
        error.reason,
    )
    unreadable.append(error.instance_id)


if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend


class Backend(ABC):
    """Stores instance records. Subclass it, declare ``capabilities``, register a scheme."""

    scheme: ClassVar[str] = ""
    # A class default; a backend whose abilities depend on its options (offload on or off)
    # assigns its own in __init__.
    capabilities: Capabilities = Capabilities()
    # How the async store reaches this backend: "native" (its own async path),
    # "connection threads" (a few threads of its own) or "thread pool" (the generic adapter).
    async_mode: ClassVar[str] = "thread pool"

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build the backend from its URL (``scheme://...``) and keyword options."""

    @abstractmethod
    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        """Insert a new run and return its etag; ``InstanceExists`` if a run is in the way."""

    @abstractmethod
    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        """The record, with input/output only when ``fetch_payloads``; ``None`` if absent."""

    @abstractmethod
    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        """Replace the custom status (and its timestamps) only."""

    @abstractmethod
    def write_runtime_status(
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
    def delete(self, instance_id: str) -> bool:
        """Remove the instance and anything it owns (offloaded blobs); ``False`` if absent."""

    @abstractmethod
    def query(self, query: InstanceQuery) -> RecordPage:
        """One page of matching records; the continuation token is opaque to callers."""

    def purge_by(self, query: InstanceQuery) -> int:
        """Delete every match. Generic fallback: collect ids page by page, then delete
        (unreadable records that a page reports too)."""
        ids: list[str] = []
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = self.query(page_query)
            ids.extend(record.instance_id for record in page.items)
            ids.extend(page.unreadable)
            if page.continuation is None:
                break
            page_query = replace(page_query, continuation=page.continuation)
        return sum(1 for instance_id in ids if self.delete(instance_id))

    def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        """Matches per runtime status. Generic fallback: walk the pages of ``query`` (a
        backend with an index or a server-side aggregate overrides it)."""
        counts: dict[RuntimeStatus, int] = {}
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = self.query(page_query)
            for record in page.items:
                if query.matches(record):
                    counts[record.runtime_status] = counts.get(record.runtime_status, 0) + 1
            if page.continuation is None:
                return counts
            page_query = replace(page_query, continuation=page.continuation)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """Records by id (``None`` where absent). Generic fallback: one ``read`` per id (a
        backend with a batched request overrides it)."""
        return {
            instance_id: self.read(instance_id, fetch_payloads=fetch_payloads)
            for instance_id in instance_ids
        }

    def purge_expired(self) -> int:
        """Delete what the backend's own expiry (its ttl options) hides but still stores;
        how many. The default has no such records: no native expiry, or a service that
        sweeps by itself (Redis)."""
        return 0

    def close(self) -> None:
        """Release connections; the default has nothing to release."""

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` (from any thread, without arguments) after each change of the
        instance; return the function that ends the subscription. Backends that declare
        ``Capabilities.push`` implement it; the others are polled."""
        raise NotImplementedError(f"{type(self).__name__} does not push changes")

    def to_async(self) -> AsyncBackend:
        """The async face of this backend; the default runs each call in a bounded pool."""
        from durastate.core.async_backend import ThreadPoolAsyncBackend

        return ThreadPoolAsyncBackend(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_in_threads(
    backend: Backend, instance_ids: Sequence[str], fetch_payloads: bool, workers: int = 8
) -> dict[str, InstanceRecord | None]:
    """``read_many`` for services without a batched read (Azure Tables, S3): the reads go
    out on a few threads at once (their clients are thread-safe); the first error raises."""
    if len(instance_ids) < 2:
        return Backend.read_many(backend, instance_ids, fetch_payloads=fetch_payloads)
    with ThreadPoolExecutor(min(workers, len(instance_ids)), "durastate-read") as pool:
        records = pool.map(lambda i: backend.read(i, fetch_payloads=fetch_payloads), instance_ids)
        return dict(zip(instance_ids, records, strict=True))


class RecentPayloads:
    """Remembers the custom-status bytes stored at an etag, for backends that cannot compare.

    A backend that has just written (or read) payload P at etag E knows that the record at E
    holds P; a later write of P with etag E can then be skipped without any I/O.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._entries: LRU[str, tuple[str, Payload]] = LRU(capacity)

    def remember(self, instance_id: str, etag: str, payload: Payload | None) -> None:
        if payload is None:
            self._entries.pop(instance_id)
        else:
            self._entries.put(instance_id, (etag, payload))

    def forget(self, instance_id: str) -> None:
        self._entries.pop(instance_id)

    def unchanged(self, instance_id: str, etag: str | None, payload: Payload) -> bool:
        """True when ``etag`` is the one at which exactly ``payload`` was stored."""
        if etag is None:
            return False
        entry = self._entries.get(instance_id)
        return entry is not None and entry[0] == etag and entry[1] == payload
