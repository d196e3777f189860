"""A backend wrapper that counts the calls the store makes: proof of "no I/O before X"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Self

from durastate.core.backend import Backend
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)


class CountingBackend(Backend):
    """Delegates every call to ``inner`` and counts it by method name in ``calls``."""

    scheme = "counting"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.capabilities = inner.capabilities

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        raise NotImplementedError("wrap an existing backend: CountingBackend(backend)")

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        self.calls["create"] += 1
        return self.inner.create(new, restart_if_terminal=restart_if_terminal)

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        self.calls["read"] += 1
        return self.inner.read(instance_id, fetch_payloads=fetch_payloads)

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        self.calls["write_custom_status"] += 1
        return self.inner.write_custom_status(instance_id, payload, etag=etag, now=now)

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
        self.calls["write_runtime_status"] += 1
        return self.inner.write_runtime_status(
            instance_id, status, output=output, set_output=set_output, etag=etag, now=now
        )

    def delete(self, instance_id: str) -> bool:
        self.calls["delete"] += 1
        return self.inner.delete(instance_id)

    def query(self, query: InstanceQuery) -> RecordPage:
        self.calls["query"] += 1
        return self.inner.query(query)

    def purge_by(self, query: InstanceQuery) -> int:
        self.calls["purge_by"] += 1
        return self.inner.purge_by(query)

    def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        self.calls["count"] += 1
        return self.inner.count(query)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        self.calls["read_many"] += 1
        return self.inner.read_many(instance_ids, fetch_payloads=fetch_payloads)

    def purge_expired(self) -> int:
        self.calls["purge_expired"] += 1
        return self.inner.purge_expired()

    def close(self) -> None:
        self.inner.close()

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        unsubscribe = self.inner.subscribe(instance_id, notify)
        self.calls["subscribe"] += 1  # counted once it worked: watchers then need no poll
        return unsubscribe

    @property
    def total(self) -> int:
        return sum(self.calls.values())
