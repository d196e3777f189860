"""memory:// — a dict behind a lock; for tests, benchmarks and single-process tools.

Rows are mutable slots objects so a custom-status update is a few attribute stores;
immutable records are built only on read.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

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
from durastate.core.tokens import decode_token, encode_token
from durastate.errors import ConcurrencyError, ConfigurationError, InstanceExists, InstanceNotFound

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend

# instance id -> the callbacks of its watchers; one such map per namespace
Listeners = dict[str, list[Callable[[], None]]]


class _Row:
    __slots__ = (
        "created_at",
        "custom_status",
        "custom_status_updated_at",
        "etag",
        "input",
        "last_updated_at",
        "name",
        "output",
        "runtime_status",
    )

    def __init__(self, new: NewInstance, etag: str) -> None:
        self.name = new.name
        self.runtime_status = new.runtime_status
        self.created_at = new.created_at
        self.last_updated_at = new.created_at
        self.custom_status: Payload | None = new.custom_status
        self.custom_status_updated_at = new.created_at if new.custom_status else None
        self.input = new.input
        self.output: Payload | None = None
        self.etag = etag

    def record(self, instance_id: str, fetch_payloads: bool) -> InstanceRecord:
        return InstanceRecord(
            instance_id=instance_id,
            name=self.name,
            runtime_status=self.runtime_status,
            created_at=self.created_at,
            last_updated_at=self.last_updated_at,
            custom_status_updated_at=self.custom_status_updated_at,
            etag=self.etag,
            custom_status=self.custom_status,
            input=self.input if fetch_payloads else None,
            output=self.output if fetch_payloads else None,
        )


class MemoryBackend(Backend):
    """Process-local storage; ``memory://NAME`` shares one namespace per name in a process."""

    scheme = "memory"
    capabilities = Capabilities(cross_process=False, push=True)
    async_mode: ClassVar[str] = "native"

    _namespaces: dict[str, tuple[dict[str, _Row], threading.Lock]] = {}
    _namespaces_lock = threading.Lock()
    _namespace_listeners: dict[str, Listeners] = {}
    _etags = itertools.count(1)  # one counter per process: etags never repeat across runs

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        if namespace:
            with self._namespaces_lock:
                rows, lock = self._namespaces.setdefault(namespace, ({}, threading.Lock()))
                listeners = self._namespace_listeners.setdefault(namespace, {})
        else:
            rows, lock, listeners = {}, threading.Lock(), {}
        self._rows = rows
        self._lock = lock
        self._listeners = listeners

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        if options:
            raise ConfigurationError(f"memory:// takes no options, got {sorted(options)}")
        return cls(url.partition("://")[2].strip("/"))

    def __repr__(self) -> str:
        return f"MemoryBackend(namespace={self.namespace!r})"

    def _next_etag(self) -> str:
        return str(next(self._etags))

    # -- push -----------------------------------------------------------------------------

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """``notify`` runs under the namespace lock after each change: it must only signal
        (set an event, schedule a callback), never call the backend."""
        with self._lock:
            self._listeners.setdefault(instance_id, []).append(notify)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._listeners.get(instance_id, [])
                if notify in callbacks:
                    callbacks.remove(notify)
                if not callbacks:
                    self._listeners.pop(instance_id, None)

        return unsubscribe

    def _announce(self, instance_id: str) -> None:
        """Tell the watchers of ``instance_id`` (called with the lock held)."""
        for notify in self._listeners.get(instance_id, ()):
            notify()

    def to_async(self) -> AsyncBackend:
        """Every call is a few dict operations under a lock: run inline on the loop."""
        from durastate.core.async_backend import SyncBackendAdapter

        return SyncBackendAdapter(self)

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        with self._lock:
            existing = self._rows.get(new.instance_id)
            if existing is not None and not (
                restart_if_terminal and existing.runtime_status.is_terminal
            ):
                raise InstanceExists(new.instance_id, existing.runtime_status.value)
            row = _Row(new, self._next_etag())
            self._rows[new.instance_id] = row
            if self._listeners:
                self._announce(new.instance_id)
            return row.etag

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        with self._lock:
            row = self._rows.get(instance_id)
            return None if row is None else row.record(instance_id, fetch_payloads)

    def _row_for_write(self, instance_id: str, etag: str | None) -> _Row:
        row = self._rows.get(instance_id)
        if row is None:
            raise InstanceNotFound(instance_id)
        if etag is not None and etag != row.etag:
            raise ConcurrencyError(instance_id, etag)
        return row

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        with self._lock:
            row = self._rows.get(instance_id)
            if row is None:
                raise InstanceNotFound(instance_id)
            if etag is not None and etag != row.etag:
                raise ConcurrencyError(instance_id, etag)
            old = row.custom_status
            if (
                old is not None
                and old.data == payload.data
                and old.serializer == payload.serializer
                and old.compression == payload.compression
            ):
                return WriteResult(row.etag, False)
            row.custom_status = payload
            row.custom_status_updated_at = row.last_updated_at = now
            row.etag = etag = str(next(self._etags))
            if self._listeners:
                self._announce(instance_id)
            return WriteResult(etag)

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
        with self._lock:
            row = self._row_for_write(instance_id, etag)
            row.runtime_status = status
            if set_output:
                row.output = output
            row.last_updated_at = now
            row.etag = self._next_etag()
            if self._listeners:
                self._announce(instance_id)
            return row.etag

    def delete(self, instance_id: str) -> bool:
        with self._lock:
            deleted = self._rows.pop(instance_id, None) is not None
            if deleted and self._listeners:
                self._announce(instance_id)
            return deleted

    def query(self, query: InstanceQuery) -> RecordPage:
        """Sorted by id; the token is the last id returned (keyset paging)."""
        after = decode_token(query.continuation)["after"] if query.continuation else None
        with self._lock:
            ids = sorted(
                instance_id
                for instance_id, row in self._rows.items()
                if (after is None or instance_id > after)
                and query.matches(row.record(instance_id, False))
            )
            page_ids = ids[: query.page_size]
            items = [self._rows[i].record(i, query.fetch_payloads) for i in page_ids]
        more = len(ids) > query.page_size
        return RecordPage(items, encode_token({"after": page_ids[-1]}) if more else None)
