"""What a backend stores and returns: plain, immutable records of bytes and timestamps.

Backends never see user values, only `Payload`s that the store already serialized, so a
backend cannot get serialization wrong and every payload carries the id of its encoder.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class RuntimeStatus(enum.StrEnum):
    """The lifecycle state of a workflow instance (Durable Task's names)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"
    SUSPENDED = "suspended"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED}
)


@dataclass(slots=True)
class Payload:
    """Serialized bytes plus the ids of the serializer and compression that produced them.

    Treat it as immutable. Not ``frozen``: one is built per write, on the hottest path,
    and a frozen dataclass costs twice as much to build.
    """

    data: bytes
    serializer: str
    compression: str | None = None

    @property
    def encoding(self) -> str:
        """One string for storage: ``json`` or ``json+zlib``."""
        if self.compression:
            return f"{self.serializer}+{self.compression}"
        return self.serializer

    @classmethod
    def from_encoding(cls, data: bytes, encoding: str) -> Payload:
        serializer, _, compression = encoding.partition("+")
        return cls(data, serializer, compression or None)


@dataclass(frozen=True, slots=True)
class NewInstance:
    """Everything a backend needs to insert a new run of an instance."""

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    created_at: datetime
    input: Payload | None
    custom_status: Payload | None


@dataclass(slots=True)
class InstanceRecord:
    """One stored instance as a backend returns it.

    Treat it as immutable. Not ``frozen``: one is built per read and per query item, and a
    frozen dataclass costs twice as much to build.

    ``input`` and ``output`` are ``None`` when absent or when the read did not ask for them;
    ``custom_status`` is ``None`` only when no status was ever set on this run.
    """

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    created_at: datetime
    last_updated_at: datetime
    custom_status_updated_at: datetime | None
    etag: str
    custom_status: Payload | None = None
    input: Payload | None = None
    output: Payload | None = None


@dataclass(slots=True)
class WriteResult:
    """The etag after a write, and whether anything was written at all (not frozen: hot)."""

    etag: str
    written: bool = True


class Filterable(Protocol):
    """What a query filters on: a record, or a backend's own row with the same fields."""

    @property
    def instance_id(self) -> str: ...
    @property
    def runtime_status(self) -> RuntimeStatus: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def name(self) -> str: ...
    @property
    def last_updated_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """A filter over instances, as in Durable Task's OrchestrationQuery.

    ``created_from``/``updated_from`` are inclusive and ``created_to``/``updated_to``
    exclusive; ``runtime_status`` matches any of the given statuses; ``name`` is the exact
    workflow name; ``continuation`` is the opaque token of the previous page. Backends that
    do not evaluate ``name`` or the update range themselves may ignore them: the store
    applies `matches` to every page that has them.
    """

    runtime_status: frozenset[RuntimeStatus] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    prefix: str | None = None
    page_size: int = 100
    continuation: str | None = None
    fetch_payloads: bool = False
    name: str | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None

    @property
    def filters_beyond_the_basics(self) -> bool:
        """True when ``name`` or the update range is set (filters added after version 1)."""
        return self.name is not None or self.updated_from is not None or self.updated_to is not None

    def matches(self, record: Filterable) -> bool:
        """The reference semantics, used by backends that filter client-side."""
        if self.runtime_status is not None and record.runtime_status not in self.runtime_status:
            return False
        if self.created_from is not None and record.created_at < self.created_from:
            return False
        if self.created_to is not None and record.created_at >= self.created_to:
            return False
        if self.name is not None and record.name != self.name:
            return False
        if self.updated_from is not None and record.last_updated_at < self.updated_from:
            return False
        if self.updated_to is not None and record.last_updated_at >= self.updated_to:
            return False
        return self.prefix is None or record.instance_id.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of query results; ``continuation`` is ``None`` on the last page.

    ``unreadable`` names the instances on this page whose records could not be decoded at
    all (see `durastate.core.backend.skip_unreadable`): listing skips them with a warning,
    and the generic ``purge_by`` still deletes them.
    """

    items: Sequence[InstanceRecord]
    continuation: str | None = None
    unreadable: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do natively. The store acts on these, and the conformance suite
    checks every flag both ways (``test_capability_*``): declare them truthfully.

    - ``max_payload_bytes``: the largest single payload (input, output or custom status)
      stored inline, all three together on one instance (``None``: no practical limit).
      Without ``offload`` the store refuses a larger one with `PayloadTooLarge` before any
      I/O.
    - ``offload``: payloads above the inline limit, even above the service's row or item
      limit, go to object storage, so the store only enforces the user's configured limit.
    - ``skips_unchanged``: a custom-status write of the stored bytes writes nothing
      (``written=False``) even without an etag; false, such a write is written. (With the
      etag this backend object wrote or read those bytes at, every backend skips it.)
    - ``native_query``: filters run in the service (an index), not by scanning. Documented
      only: no behaviour tells an index from a scan, so the suite cannot check it.
    - ``ttl``: records expire by the backend's own options; ``purge_expired`` then works
      without a store retention. False: ``Backend.purge_expired`` is a no-op returning 0.
    - ``cross_process``: several backend objects (processes) may share one store, each
      seeing the others' writes (not true of memory://).
    - ``push``: ``subscribe`` announces each write (memory:// in-process, Redis pub/sub,
      PostgreSQL NOTIFY), so a watcher need not poll; false, it raises NotImplementedError.
    - ``max_instance_id_length``: ids of up to this many characters (any, four-byte ones
      included) work; the store refuses a longer one with `InvalidInstanceId` before I/O.
    - ``extra``: free-form facts for people (`durastate backends`), never checked.
    """

    max_payload_bytes: int | None = None
    offload: bool = False
    skips_unchanged: bool = True
    native_query: bool = True
    ttl: bool = False
    cross_process: bool = True
    push: bool = False
    max_instance_id_length: int = 512
    extra: dict[str, str] = field(default_factory=dict)
