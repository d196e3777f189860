"""StateStore: the user's API over one backend and one payload codec."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
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
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.errors import (
    ConcurrencyError,
    ConfigurationError,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    MissingDependency,
)
from durastate.serializers.base import Serializer

if TYPE_CHECKING:
    from durastate.core.reporter import StatusReporter
    from durastate.core.watch import SyncWatchHub

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


def _query(
    runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
    prefix: str | None,
    **paging: Any,
) -> InstanceQuery:
    """The backend query, every filter checked first (naive datetimes, non-str prefixes)."""
    return InstanceQuery(
        runtime_status=_statuses(runtime_status),
        created_from=validate_moment(created_from, "created_from"),
        created_to=validate_moment(created_to, "created_to"),
        prefix=validate_prefix(prefix),
        **paging,
    )


def page_query(
    *,
    runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
    prefix: str | None,
    page_size: int,
    continuation: str | None = None,
    fetch_payloads: bool = False,
) -> InstanceQuery:
    """``query``'s (or ``iter_instances``') keyword arguments checked, as one backend query
    (shared by the sync and async stores)."""
    if type(page_size) is not int or page_size < 1:
        raise ConfigurationError("page_size must be an int of at least 1")
    if continuation is not None and not isinstance(continuation, str):
        raise InvalidContinuationToken("continuation token must be a str")
    return _query(
        runtime_status,
        created_from,
        created_to,
        prefix,
        page_size=page_size,
        continuation=continuation,
        fetch_payloads=fetch_payloads,
    )


def purge_query(
    created_from: datetime | None,
    created_to: datetime | None,
    runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None,
    prefix: str | None,
) -> InstanceQuery:
    """``purge_by``'s filters as a query; at least one is required."""
    if created_from is None and created_to is None and runtime_status is None and not prefix:
        raise ConfigurationError(
            "purge_by needs a filter (created range, runtime status or prefix)"
        )
    return _query(runtime_status, created_from, created_to, prefix)


def update_backoff(attempt: int) -> float:
    """Seconds to wait before the next ``update`` attempt after a conflict (jittered)."""
    return min(0.001 * (1 << attempt), 0.05) * (0.5 + random.random())


def require_instance(metadata: InstanceMetadata | None, instance_id: str) -> InstanceMetadata:
    if metadata is None:
        raise InstanceNotFound(instance_id)
    return metadata


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
    ) -> None:
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
        self._encode_status = self.codec.encode  # bound once: set_custom_status is hot
        self._watch_hub: SyncWatchHub | None = None
        self._watch_hub_lock = threading.Lock()

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
        new = self.new_instance(instance_id, name, input, custom_status, runtime_status)
        return self.backend.create(new, restart_if_terminal=restart_if_terminal)

    def new_instance(
        self,
        instance_id: str,
        name: str,
        input: Any,
        custom_status: Any,
        runtime_status: RuntimeStatus | str,
    ) -> NewInstance:
        """``create_instance``'s arguments checked and encoded: the record to insert."""
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
        return new

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
        return self.backend.write_custom_status(
            instance_id, payload, etag=etag, now=self._clock()
        ).etag

    def check_id(self, instance_id: str) -> None:
        """``InvalidInstanceId`` unless this store's backend can hold the id."""
        validate_instance_id(instance_id, self._max_id_length)

    def now(self) -> datetime:
        """The store's clock: every timestamp a write records."""
        return self._clock()

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
        status, payload = self.runtime_status_change(instance_id, status, output)
        return self.backend.write_runtime_status(
            instance_id,
            status,
            output=payload,
            set_output=output is not NOT_SET,
            etag=etag,
            now=self._clock(),
        )

    def runtime_status_change(
        self, instance_id: str, status: RuntimeStatus | str, output: Any
    ) -> tuple[RuntimeStatus, Payload | None]:
        """``set_runtime_status``'s arguments checked; the output encoded when given."""
        validate_instance_id(instance_id, self._max_id_length)
        checked = _status(status)
        if output is NOT_SET:
            return checked, None
        return checked, self._encode(output, instance_id, "output", self.max_payload_bytes)

    def update(self, instance_id: str, fn: Callable[[Any], Any], *, retries: int = 20) -> Any:
        """Read-modify-write of the custom status, retried on etag conflicts.

        ``fn`` gets the current value and returns the new one; it may run more than once.
        Returns the value that was stored.
        """
        for attempt in range(retries + 1):
            current = require_instance(self.get_instance(instance_id), instance_id)
            new_value = fn(current.custom_status)
            try:
                self.set_custom_status(instance_id, new_value, etag=current.etag)
            except ConcurrencyError:  # any other error (an unknown outcome) is never retried
                if attempt == retries:
                    raise
                time.sleep(update_backoff(attempt))
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
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def metadata(self, record: InstanceRecord, fetch_payloads: bool) -> InstanceMetadata:
        """What a user gets for a backend record (payloads decode lazily)."""
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def page(self, page: RecordPage, fetch_payloads: bool) -> Page:
        """What a user gets for a backend page."""
        codec = self.codec
        return Page(
            [InstanceMetadata(record, codec, fetch_payloads) for record in page.items],
            page.continuation,
        )

    def get_custom_status(self, instance_id: str) -> Any:
        """Just the custom status value; ``InstanceNotFound`` if there is no such instance."""
        return require_instance(self.get_instance(instance_id), instance_id).custom_status

    def query(
        self,
        *,
        runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        page_size: int = 100,
        continuation: str | None = None,
        fetch_payloads: bool = False,
    ) -> Page:
        """One page of instances matching every given filter (statuses: any of).

        ``created_from`` is inclusive, ``created_to`` exclusive. A page may hold fewer than
        ``page_size`` items while a continuation token still follows.
        """
        query = page_query(
            runtime_status=runtime_status,
            created_from=created_from,
            created_to=created_to,
            prefix=prefix,
            page_size=page_size,
            continuation=continuation,
            fetch_payloads=fetch_payloads,
        )
        return self.page(self.backend.query(query), fetch_payloads)

    def iter_instances(
        self,
        *,
        runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        page_size: int = 100,
        fetch_payloads: bool = False,
    ) -> Iterator[InstanceMetadata]:
        """Every matching instance, following continuation tokens page after page."""
        query = page_query(
            runtime_status=runtime_status,
            created_from=created_from,
            created_to=created_to,
            prefix=prefix,
            page_size=page_size,
            fetch_payloads=fetch_payloads,
        )
        while True:
            page = self.page(self.backend.query(query), fetch_payloads)
            yield from page.items
            if page.continuation is None:
                return
            query = replace(query, continuation=page.continuation)

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
        runtime_status: RuntimeStatus | str | Iterable[RuntimeStatus | str] | None = None,
        prefix: str | None = None,
    ) -> int:
        """Delete every instance matching the filters; at least one filter is required."""
        return self.backend.purge_by(purge_query(created_from, created_to, runtime_status, prefix))

    # -- helpers --------------------------------------------------------------------------

    def watch(
        self,
        instance_id: str,
        *,
        since_etag: str | None = None,
        poll_interval: float | None = None,
    ) -> Iterator[InstanceMetadata]:
        """The instance now (unless ``since_etag`` is its etag), then each time it changes,
        until a terminal status; ``InstanceNotFound`` when it is (or gets) purged. See
        core/watch.py for push, polling and what a watcher sees."""
        from durastate.core.watch import watch_sync

        validate_instance_id(instance_id, self._max_id_length)
        return watch_sync(self, instance_id, since_etag, poll_interval)

    def watch_hub(self) -> SyncWatchHub:
        """The watchers' shared polls and subscriptions of this store."""
        with self._watch_hub_lock:
            if self._watch_hub is None:
                from durastate.core.watch import SyncWatchHub

                self._watch_hub = SyncWatchHub(self)
            return self._watch_hub

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
