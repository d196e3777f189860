"""StateStore: the user's API over one backend and one payload codec."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Self

from durastate.core.backend import Backend
from durastate.core.codec import PayloadCodec
from durastate.core.ids import (
    validate_instance_id,
    validate_moment,
    validate_name,
    validate_prefix,
)
from durastate.core.models import InstanceMetadata, Page
from durastate.core.records import (
    Capabilities,
    InstanceQuery,
    NewInstance,
    Payload,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.retention import Retention, RetentionFrom
from durastate.errors import (
    ConcurrencyError,
    ConfigurationError,
    InstanceExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    MissingDependency,
)
from durastate.serializers.base import Serializer
from durastate.telemetry import StoreTelemetry, instrument, provider_configured

if TYPE_CHECKING:
    from durastate.core.reporter import StatusReporter

log = logging.getLogger(__name__)

DEFAULT_MAX_CUSTOM_STATUS_BYTES: Final = 16 * 1024


class _NotSet:
    def __repr__(self) -> str:
        return "NOT_SET"


NOT_SET: Final = _NotSet()

Clock = Callable[[], datetime]


_last_millisecond: tuple[int, datetime] = (0, datetime.fromtimestamp(0, UTC))


def utc_now_ms() -> datetime:
    """Now, in UTC, truncated to milliseconds (what every backend can store exactly).

    Hot loops write many times per millisecond; the datetime of the current millisecond is
    built once and reused (the pair is swapped in one assignment, so threads agree).
    """
    global _last_millisecond
    millis = time.time_ns() // 1_000_000
    last = _last_millisecond
    if last[0] == millis:
        return last[1]
    now = datetime.fromtimestamp(millis / 1000, UTC)
    _last_millisecond = (millis, now)
    return now


def _status(value: RuntimeStatus | str) -> RuntimeStatus:
    if type(value) is RuntimeStatus:
        return value
    try:
        return RuntimeStatus(value)
    except ValueError:
        known = ", ".join(status.value for status in RuntimeStatus)
        raise InvalidArgument(
            f"runtime status must be one of {known}, not {str(value)[:40]!r}"
        ) from None


def _statuses(
    value: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None,
) -> frozenset[RuntimeStatus] | None:
    if value is None:
        return None
    if isinstance(value, RuntimeStatus | str):
        value = [value]
    try:
        return frozenset(_status(item) for item in value)
    except TypeError:
        raise InvalidArgument(
            f"runtime_status must be a status or statuses, not {type(value).__name__}"
        ) from None


Statuses = RuntimeStatus | str | Iterable[RuntimeStatus | str] | None


def _query(
    runtime_status: Statuses,
    created_from: datetime | None,
    created_to: datetime | None,
    prefix: str | None,
    *,
    name: str | None = None,
    updated_from: datetime | None = None,
    updated_to: datetime | None = None,
    **paging: Any,
) -> InstanceQuery:
    """The backend query, every filter checked first (naive datetimes, non-str prefixes)."""
    return InstanceQuery(
        runtime_status=_statuses(runtime_status),
        created_from=validate_moment(created_from, "created_from"),
        created_to=validate_moment(created_to, "created_to"),
        prefix=validate_prefix(prefix),
        name=None if name is None else validate_name(name),
        updated_from=validate_moment(updated_from, "updated_from"),
        updated_to=validate_moment(updated_to, "updated_to"),
        **paging,
    )


class StateStore:
    """Workflow instances and their custom status, on any backend.

    Custom status is serialized when set (a bad value fails here), checked against the size
    limit before any I/O, written alone (never input/output again), and not written at all
    when its bytes are unchanged.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        serializer: str | Serializer = "json",
        accept: Iterable[str | Serializer] | None = None,
        max_custom_status_bytes: int = DEFAULT_MAX_CUSTOM_STATUS_BYTES,
        max_payload_bytes: int | None = None,
        compress_above: int | None = None,
        clock: Clock | None = None,
        codec: PayloadCodec | None = None,
        telemetry: bool | None = None,
        retention: timedelta | None = None,
        retention_from: RetentionFrom = "completed",
    ) -> None:
        """``telemetry``: spans and metrics per call (`durastate.telemetry`); by default on
        when OpenTelemetry is installed and a tracer or meter provider is configured.
        ``retention``: how long an instance stays after its last update or its completion
        (``retention_from``); see `durastate.core.retention`."""
        self.backend = backend
        self.codec = codec or _build_codec(serializer, accept, compress_above)
        caps = backend.capabilities
        inline = None if caps.offload else caps.max_payload_bytes
        self.max_custom_status_bytes = _tighter(max_custom_status_bytes, inline)
        self.max_payload_bytes = _tighter(max_payload_bytes, inline)
        # what this store writes fits its limits; older records may have had larger ones
        self.codec.max_inflated_bytes = max(
            self.codec.max_inflated_bytes, max_custom_status_bytes, max_payload_bytes or 0
        )
        self._max_id_length = caps.max_instance_id_length
        self._clock = clock or utc_now_ms
        self.retention = Retention.of(retention, retention_from)
        self._encode_status = self.codec.encode  # bound once: set_custom_status is hot
        self.telemetry: StoreTelemetry | None = None
        if telemetry or (telemetry is None and provider_configured()):
            instrument(self)

    def __repr__(self) -> str:
        return f"StateStore(backend={self.backend!r}, serializer={self.codec.writer.id!r})"

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    # -- writes ---------------------------------------------------------------------------

    def _encode(self, value: Any, instance_id: str, field: str, limit: int | None) -> Payload:
        return self.codec.encode(value, instance_id=instance_id, field=field, limit=limit)

    def create_instance(
        self,
        instance_id: str,
        *,
        name: str,
        input: Any = None,
        custom_status: Any = NOT_SET,
        runtime_status: RuntimeStatus | str = RuntimeStatus.PENDING,
        restart_if_terminal: bool = False,
    ) -> str:
        """Insert a new run and return its etag.

        ``InstanceExists`` if a run with this id exists, unless it is terminal and
        ``restart_if_terminal`` is set: then the new run replaces it, and the old run's
        custom status and output are gone.
        """
        validate_instance_id(instance_id, self._max_id_length)
        validate_name(name)
        status_payload = None
        if custom_status is not NOT_SET:
            status_payload = self._encode(
                custom_status, instance_id, "custom_status", self.max_custom_status_bytes
            )
        new = NewInstance(
            instance_id=instance_id,
            name=name,
            runtime_status=_status(runtime_status),
            created_at=self._clock(),
            input=self._encode(input, instance_id, "input", self.max_payload_bytes),
            custom_status=status_payload,
        )
        try:
            return self.backend.create(new, restart_if_terminal=restart_if_terminal)
        except InstanceExists:
            if self.retention is None:
                raise
            return self._replace_expired(new)

    def _replace_expired(self, new: NewInstance) -> str:
        """Create over an expired run of the id (still stored: no native expiry swept it)."""
        assert self.retention is not None
        current = self.backend.read(new.instance_id)
        if current is not None and not self.retention.expired(current, self._clock()):
            raise InstanceExists(new.instance_id, current.runtime_status.value)
        if current is not None and current.runtime_status.is_terminal:
            return self.backend.create(new, restart_if_terminal=True)  # atomic on the backend
        self.backend.delete(new.instance_id)  # "updated": an expired run may still be live
        return self.backend.create(new)

    def _refuse_expired(self, instance_id: str) -> None:
        """With retention, a write to an expired instance is refused as to an absent one."""
        assert self.retention is not None
        current = self.backend.read(instance_id)
        if current is None or self.retention.expired(current, self._clock()):
            raise InstanceNotFound(instance_id)

    def set_custom_status(self, instance_id: str, value: Any, *, etag: str | None = None) -> str:
        """Replace the custom status; with ``etag``, only if nobody wrote since. New etag."""
        if not (  # validate_instance_id's common case, inline: the hottest call
            type(instance_id) is str
            and 0 < len(instance_id) <= self._max_id_length
            and instance_id.isascii()
        ):
            validate_instance_id(instance_id, self._max_id_length)
        payload = self._encode_status(
            value, instance_id, "custom_status", self.max_custom_status_bytes
        )
        if self.retention is not None:
            self._refuse_expired(instance_id)
        return self.backend.write_custom_status(
            instance_id, payload, etag=etag, now=self._clock()
        ).etag

    def encode_custom_status(self, instance_id: str, value: Any) -> Payload:
        """Validate the id, serialize and size-check a custom status without writing it."""
        validate_instance_id(instance_id, self._max_id_length)
        return self.codec.encode(
            value,
            instance_id=instance_id,
            field="custom_status",
            limit=self.max_custom_status_bytes,
        )

    def write_custom_status_payload(
        self, instance_id: str, payload: Payload, *, etag: str | None = None
    ) -> WriteResult:
        """Write an already encoded custom status (the reporter's path)."""
        if self.retention is not None:
            self._refuse_expired(instance_id)
        return self.backend.write_custom_status(instance_id, payload, etag=etag, now=self._clock())

    def set_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus | str,
        *,
        output: Any = NOT_SET,
        etag: str | None = None,
    ) -> str:
        """Move the instance to ``status``; the output is written only when given."""
        validate_instance_id(instance_id, self._max_id_length)
        status = _status(status)
        set_output = output is not NOT_SET
        payload = (
            self._encode(output, instance_id, "output", self.max_payload_bytes)
            if set_output
            else None
        )
        if self.retention is not None:
            self._refuse_expired(instance_id)
        return self.backend.write_runtime_status(
            instance_id,
            status,
            output=payload,
            set_output=set_output,
            etag=etag,
            now=self._clock(),
        )

    def update(self, instance_id: str, fn: Callable[[Any], Any], *, retries: int = 20) -> Any:
        """Read-modify-write of the custom status, retried on etag conflicts.

        ``fn`` gets the current value and returns the new one; it may run more than once.
        Returns the value that was stored.
        """
        for attempt in range(retries + 1):
            current = self.get_instance(instance_id)
            if current is None:
                raise InstanceNotFound(instance_id)
            new_value = fn(current.custom_status)
            try:
                self.set_custom_status(instance_id, new_value, etag=current.etag)
            except ConcurrencyError:
                if attempt == retries:
                    raise
                time.sleep(min(0.001 * 2**attempt, 0.05) * (0.5 + random.random()))
                continue
            return new_value
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reads ----------------------------------------------------------------------------

    def get_instance(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceMetadata | None:
        """The instance with its custom status, or ``None``; input/output only when asked."""
        if not (  # validate_instance_id's common case, inline: every read
            type(instance_id) is str
            and 0 < len(instance_id) <= self._max_id_length
            and instance_id.isascii()
        ):
            validate_instance_id(instance_id, self._max_id_length)
        if fetch_payloads:
            record = self.backend.read(instance_id, fetch_payloads=True)
        else:
            record = self.backend.read(instance_id)  # positional: keywords cost on a hot call
        if record is None:
            return None
        if self.retention is not None and self.retention.expired(record, self._clock()):
            return None
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def get_custom_status(self, instance_id: str) -> Any:
        """Just the custom status value; ``InstanceNotFound`` if there is no such instance."""
        metadata = self.get_instance(instance_id)
        if metadata is None:
            raise InstanceNotFound(instance_id)
        return metadata.custom_status

    def query(
        self,
        *,
        runtime_status: Statuses = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        name: str | None = None,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
        page_size: int = 100,
        continuation: str | None = None,
        fetch_payloads: bool = False,
    ) -> Page:
        """One page of instances matching every given filter (statuses: any of).

        ``created_from``/``updated_from`` are inclusive, ``created_to``/``updated_to``
        exclusive; ``name`` is the exact workflow name. A page may hold fewer than
        ``page_size`` items while a continuation token still follows.
        """
        if type(page_size) is not int or page_size < 1:
            raise ConfigurationError("page_size must be an int of at least 1")
        if continuation is not None and not isinstance(continuation, str):
            raise InvalidContinuationToken("continuation token must be a str")
        query = _query(
            runtime_status,
            created_from,
            created_to,
            prefix,
            name=name,
            updated_from=updated_from,
            updated_to=updated_to,
            page_size=page_size,
            continuation=continuation,
            fetch_payloads=fetch_payloads,
        )
        page = self.backend.query(query)
        records = page.items
        if query.filters_beyond_the_basics:  # a backend may not evaluate these itself
            records = [record for record in records if query.matches(record)]
        if self.retention is not None:
            now, retention = self._clock(), self.retention
            records = [record for record in records if not retention.expired(record, now)]
        codec = self.codec
        items = [
            InstanceMetadata(record, codec, payloads_fetched=fetch_payloads) for record in records
        ]
        return Page(items, page.continuation)

    def iter_instances(
        self,
        *,
        runtime_status: Statuses = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        name: str | None = None,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
        page_size: int = 100,
        fetch_payloads: bool = False,
    ) -> Iterator[InstanceMetadata]:
        """Every matching instance, following continuation tokens page after page."""
        continuation: str | None = None
        while True:
            page = self.query(
                runtime_status=runtime_status,
                created_from=created_from,
                created_to=created_to,
                prefix=prefix,
                name=name,
                updated_from=updated_from,
                updated_to=updated_to,
                page_size=page_size,
                continuation=continuation,
                fetch_payloads=fetch_payloads,
            )
            yield from page.items
            continuation = page.continuation
            if continuation is None:
                return

    def count(
        self,
        *,
        runtime_status: Statuses = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        name: str | None = None,
        updated_from: datetime | None = None,
        updated_to: datetime | None = None,
    ) -> dict[RuntimeStatus, int]:
        """How many instances match, per runtime status (every status present, zeros too)."""
        query = _query(
            runtime_status,
            created_from,
            created_to,
            prefix,
            name=name,
            updated_from=updated_from,
            updated_to=updated_to,
            page_size=1000,
        )
        counts = dict.fromkeys(RuntimeStatus, 0)
        if self.retention is None:
            counts.update(self.backend.count(query))
            return counts
        for alive in self.retention.alive_queries(query, self._clock()):
            for status, number in self.backend.count(alive).items():
                counts[status] += number
        return counts

    def get_many(
        self, instance_ids: Iterable[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceMetadata | None]:
        """Each instance by id (``None`` where absent), in as few requests as the backend
        allows; the keys keep the order of ``instance_ids`` (duplicates once)."""
        if isinstance(instance_ids, str):
            raise InvalidArgument("get_many takes a collection of instance ids, not one str")
        ids = list(dict.fromkeys(instance_ids))
        for instance_id in ids:
            validate_instance_id(instance_id, self._max_id_length)
        records = self.backend.read_many(ids, fetch_payloads=fetch_payloads)
        if self.retention is not None:
            now, retention = self._clock(), self.retention
            records = {
                instance_id: None if record is None or retention.expired(record, now) else record
                for instance_id, record in records.items()
            }
        codec = self.codec
        return {
            instance_id: None
            if (record := records.get(instance_id)) is None
            else InstanceMetadata(record, codec, fetch_payloads)
            for instance_id in ids
        }

    # -- deletes --------------------------------------------------------------------------

    def purge(self, instance_id: str) -> bool:
        """Delete one instance and what it owns; ``False`` if it did not exist."""
        validate_instance_id(instance_id, self._max_id_length)
        return self.backend.delete(instance_id)

    def purge_by(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        runtime_status: Statuses = None,
        prefix: str | None = None,
    ) -> int:
        """Delete every instance matching the filters; at least one filter is required."""
        if created_from is None and created_to is None and runtime_status is None and not prefix:
            raise ConfigurationError(
                "purge_by needs a filter (created range, runtime status or prefix)"
            )
        return self.backend.purge_by(_query(runtime_status, created_from, created_to, prefix))

    def purge_expired(self) -> int:
        """Delete every expired instance: what the backend's own expiry left stored
        (``Backend.purge_expired``), then what the store's ``retention`` expired (listed page
        by page, then deleted one by one). How many were deleted."""
        retention = self.retention
        if retention is None and not self.capabilities.ttl:
            raise ConfigurationError(
                "purge_expired needs a retention period: retention=timedelta(...) or "
                "DURASTATE_RETENTION"
            )
        swept = self.backend.purge_expired()
        if retention is None:
            return swept
        now = self._clock()
        query = retention.expired_query(now)
        doomed: list[str] = []
        while True:
            page = self.backend.query(query)
            doomed.extend(r.instance_id for r in page.items if retention.expired(r, now))
            if page.continuation is None:
                break
            query = replace(query, continuation=page.continuation)
        deleted = swept + sum(1 for instance_id in doomed if self.backend.delete(instance_id))
        log.info("purged %d expired instance(s)", deleted)
        return deleted

    # -- helpers --------------------------------------------------------------------------

    def status_reporter(self, instance_id: str, *, min_interval: float = 0.5) -> StatusReporter:
        """A context manager that coalesces a hot loop of progress reports into few writes."""
        from durastate.core.reporter import StatusReporter

        return StatusReporter(self, instance_id, min_interval=min_interval)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _tighter(limit: int | None, other: int | None) -> int | None:
    if limit is None:
        return other
    if other is None:
        return limit
    return min(limit, other)


def _build_codec(
    serializer: str | Serializer,
    accept: Iterable[str | Serializer] | None,
    compress_above: int | None,
) -> PayloadCodec:
    from durastate.registry import serializer_class

    def build(item: str | Serializer) -> Serializer:
        return serializer_class(item)() if isinstance(item, str) else item

    writer = build(serializer)
    readers = {writer.id: writer}
    for item in accept if accept is not None else ("json", "msgpack"):
        try:
            reader = writer if item == writer.id else build(item)
        except MissingDependency:
            if accept is not None:
                raise
            continue  # msgpack is an extra; without it, it is simply not a default reader
        readers.setdefault(reader.id, reader)
    return PayloadCodec(writer, readers, compress_above=compress_above)
