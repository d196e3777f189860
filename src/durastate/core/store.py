"""StateStore: the user's API over one backend and one payload codec."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Self, TypedDict, Unpack

from durastate.core import store_plans
from durastate.core.backend import Backend
from durastate.core.codec import PayloadCodec, build_codec
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
from durastate.core.retention import Retention, RetentionFrom, checked_period
from durastate.core.steps import drive
from durastate.core.store_plans import require_instance
from durastate.errors import (
    ConfigurationError,
    InstanceExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
)
from durastate.serializers.base import Serializer
from durastate.telemetry import StoreTelemetry, instrument, provider_configured

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
#: memory://'s ``write_custom_status_etag``: the new etag, or the result of a skipped write
StatusEtagWrite = Callable[[str, Payload, str | None, datetime], str | WriteResult]


_last_millisecond: tuple[int, datetime] = (0, datetime.fromtimestamp(0, UTC))
_last_second: tuple[int, datetime] = (0, datetime.fromtimestamp(0, UTC))
_MILLISECONDS: Final = tuple(timedelta(milliseconds=n) for n in range(1000))
_time_ns = time.time_ns  # a global, not an attribute lookup, on every write


def utc_now_ms() -> datetime:
    """Now, in UTC, truncated to milliseconds (what every backend can store exactly).

    Hot loops write many times per millisecond; the datetime of the current millisecond is
    built once and reused (the pair is swapped in one assignment, so threads agree).
    """
    millis = _time_ns() // 1_000_000
    last = _last_millisecond
    if last[0] == millis:
        return last[1]
    return _new_millisecond(millis)


#: the clock whose cache ``set_custom_status`` probes itself (not a replacement patched in)
_SYSTEM_CLOCK: Final = utc_now_ms


def _new_millisecond(millis: int) -> datetime:
    """The datetime of a millisecond the cache does not hold: the second's datetime (kept
    too: writes a few milliseconds apart share it) plus a prebuilt ``timedelta``, about a
    quarter of what building the datetime from the timestamp costs."""
    global _last_millisecond, _last_second
    second = millis // 1000
    base = _last_second
    if base[0] != second:
        base = _last_second = (second, datetime.fromtimestamp(second, UTC))
    now = base[1] + _MILLISECONDS[millis % 1000]
    _last_millisecond = (millis, now)
    return now


def _etag_write(backend: Backend) -> StatusEtagWrite | None:
    """The backend's ``write_custom_status_etag`` (memory://), when its
    ``write_custom_status`` is the one that method serves: a subclass or an instance that
    replaces ``write_custom_status`` (a test double, a tracer) is called as it chose."""
    kind = type(backend)
    owner = next((c for c in kind.__mro__ if "write_custom_status_etag" in vars(c)), None)
    if (
        owner is None
        or kind.write_custom_status is not vars(owner).get("write_custom_status")
        or "write_custom_status" in getattr(backend, "__dict__", ())
    ):
        return None
    write: StatusEtagWrite = backend.write_custom_status_etag  # type: ignore[attr-defined]
    return write


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


class Filters(TypedDict, total=False):
    """The filters of ``query``, ``iter_instances`` and ``count``; an instance matches when
    it matches every one given. ``runtime_status``: any of these; ``created_from`` and
    ``updated_from`` inclusive, ``created_to`` and ``updated_to`` exclusive; ``prefix`` of
    the instance id; ``name``: the exact workflow name."""

    runtime_status: Statuses
    created_from: datetime | None
    created_to: datetime | None
    prefix: str | None
    name: str | None
    updated_from: datetime | None
    updated_to: datetime | None


def _query(filters: Filters, **paging: Any) -> InstanceQuery:
    """The backend query, every filter checked first (naive datetimes, non-str prefixes)."""
    unknown = set(filters) - Filters.__optional_keys__
    if unknown:
        raise InvalidArgument(f"unknown filter {sorted(unknown)[0]!r:.60}")
    name = filters.get("name")
    return InstanceQuery(
        runtime_status=_statuses(filters.get("runtime_status")),
        created_from=validate_moment(filters.get("created_from"), "created_from"),
        created_to=validate_moment(filters.get("created_to"), "created_to"),
        prefix=validate_prefix(filters.get("prefix")),
        name=None if name is None else validate_name(name),
        updated_from=validate_moment(filters.get("updated_from"), "updated_from"),
        updated_to=validate_moment(filters.get("updated_to"), "updated_to"),
        **paging,
    )


def page_query(
    *,
    page_size: int,
    continuation: str | None = None,
    fetch_payloads: bool = False,
    **filters: Unpack[Filters],
) -> InstanceQuery:
    """``query``'s (or ``iter_instances``') keyword arguments checked, as one backend query
    (shared by the sync and async stores)."""
    if type(page_size) is not int or page_size < 1:
        raise ConfigurationError("page_size must be an int of at least 1")
    if continuation is not None and not isinstance(continuation, str):
        raise InvalidContinuationToken("continuation token must be a str")
    return _query(
        filters, page_size=page_size, continuation=continuation, fetch_payloads=fetch_payloads
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
    return _query(
        {
            "runtime_status": runtime_status,
            "created_from": created_from,
            "created_to": created_to,
            "prefix": prefix,
        }
    )


def count_query(**filters: Unpack[Filters]) -> InstanceQuery:
    """``count``'s keyword arguments checked, as one backend query (sync and async)."""
    return _query(filters, page_size=1000)


class ExpirySweep:
    """The listings of ``purge_expired`` at one moment: the queries, and which of their
    records have expired (a backend may ignore the update range: each is checked)."""

    def __init__(self, retention: Retention, now: datetime) -> None:
        self.retention = retention
        self.now = now
        self.queries = retention.expired_queries(now)
        self.doomed: dict[str, None] = {}  # ids in order, each once (the listings overlap)

    def collect(self, page: RecordPage) -> None:
        retention, now = self.retention, self.now
        for record in page.items:
            if retention.expired(record, now):
                self.doomed[record.instance_id] = None


class CountPlan:
    """``count`` at one moment: the backend counts to add up, and (with expiry) the listing
    of runs with their own ttl, each counted by its own rule (`Retention.correction`)."""

    def __init__(self, query: InstanceQuery, retention: Retention | None, now: datetime) -> None:
        self.retention = retention
        self.now = now
        self.counts = [query] if retention is None else retention.alive_queries(query, now)
        self.ttl_query = None if retention is None else retention.ttl_query(query)
        self._corrections: dict[RuntimeStatus, int] = {}

    def correct(self, page: RecordPage) -> None:
        """Take one page of ``ttl_query`` into account."""
        retention, query, corrections = self.retention, self.ttl_query, self._corrections
        assert retention is not None
        assert query is not None
        now = self.now
        for record in page.items:
            if query.matches(record):  # the backend may ignore with_ttl or the new filters
                status = record.runtime_status
                corrections[status] = corrections.get(status, 0) + retention.correction(record, now)

    def total(self, counts: Iterable[dict[RuntimeStatus, int]]) -> dict[RuntimeStatus, int]:
        """The answer: the backend counts and the corrections summed, every status present."""
        total = dict.fromkeys(RuntimeStatus, 0)
        for partial in (*counts, self._corrections):
            for status, number in partial.items():
                total[status] += number
        return total


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
        expiring: bool | None = None,
    ) -> None:
        """``telemetry``: spans and metrics per call (`durastate.telemetry`); by default on
        when OpenTelemetry is installed and a tracer or meter provider is configured.
        ``retention``: how long an instance stays after its last update or its completion
        (``retention_from``); see `durastate.core.retention`. ``expiring``: honour expiry
        (each run's own ``ttl``) without a store-wide period; on whenever ``retention`` is
        set. A store that honours expiry reads an instance before each write to it."""
        self.backend = backend
        self.codec = codec or build_codec(serializer, accept, compress_above=compress_above)
        caps = backend.capabilities
        inline = None if caps.offload else caps.max_payload_bytes
        self.max_custom_status_bytes = _tighter(max_custom_status_bytes, inline)
        self.max_payload_bytes = _tighter(max_payload_bytes, inline)
        # what this store writes fits its limits; older records may have had larger ones
        self.codec.max_inflated_bytes = max(
            self.codec.max_inflated_bytes, max_custom_status_bytes, max_payload_bytes or 0
        )
        self._max_id_length = caps.max_instance_id_length
        # the last id the hot calls found valid; a fresh object at first, never a caller's
        self._checked_id: object = object()
        self._clock = clock or utc_now_ms
        self.retention = Retention.of(retention, retention_from, expiring)
        self._encode_status = self.codec.encode  # bound once: set_custom_status is hot
        #: memory://'s write that returns the bare etag (no `WriteResult` per write);
        #: bypassed once telemetry traces this store, so its backend spans stay
        self._write_status_etag = _etag_write(backend)
        self._watch_hub: SyncWatchHub | None = None
        self._watch_hub_lock = threading.Lock()
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
        ttl: timedelta | None = None,
    ) -> str:
        """Insert a new run and return its etag.

        ``InstanceExists`` if a run with this id exists, unless it is terminal and
        ``restart_if_terminal`` is set: then the new run replaces it, and the old run's
        custom status and output are gone. ``ttl``: this run's own retention period, in
        place of the store's (measured the same way, ``retention_from``); it is stored with
        the run, so every store that honours expiry sees it.
        """
        new = self.new_instance(instance_id, name, input, custom_status, runtime_status, ttl)
        try:
            return self.backend.create(new, restart_if_terminal=restart_if_terminal)
        except InstanceExists:
            if self.retention is None:
                raise
        return drive(store_plans.replace_expired(self, new), self._perform)

    def new_instance(
        self,
        instance_id: str,
        name: str,
        input: Any,
        custom_status: Any,
        runtime_status: RuntimeStatus | str,
        ttl: timedelta | None = None,
    ) -> NewInstance:
        """``create_instance``'s arguments checked and encoded: the record to insert."""
        validate_instance_id(instance_id, self._max_id_length)
        validate_name(name)
        if ttl is not None:
            checked_period(ttl, "ttl")
            if self.retention is None:
                raise ConfigurationError(
                    "a ttl needs a store that honours expiry: StateStore(..., expiring=True) "
                    "(DURASTATE_EXPIRING=1) or a retention period (retention=... or "
                    "DURASTATE_RETENTION)"
                )
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
            ttl=ttl,
        )
        return new

    # Retention's decisions, shared with AsyncStateStore (which awaits the reads they need).

    def restart_over_expired(self, instance_id: str, current: InstanceRecord | None) -> bool:
        """After ``InstanceExists`` under a retention, given the id's record read again:
        ``InstanceExists`` unless that run expired; then ``True`` to create over it with
        ``restart_if_terminal`` (atomic on the backend), ``False`` to delete it first (a
        run that is not terminal, expired under ``retention_from="updated"``, or gone)."""
        assert self.retention is not None
        if current is not None and not self.retention.expired(current, self._clock()):
            raise InstanceExists(instance_id, current.runtime_status.value)
        return current is not None and current.runtime_status.is_terminal

    def refuse_expired(self, instance_id: str, current: InstanceRecord | None) -> None:
        """With retention, a write to an expired instance is refused as to an absent one
        (``current``: the instance's record, read just before the write)."""
        assert self.retention is not None
        if current is None or self.retention.expired(current, self._clock()):
            raise InstanceNotFound(instance_id)

    def _refuse_expired(self, instance_id: str) -> None:
        self.refuse_expired(instance_id, self.backend.read(instance_id))

    def set_custom_status(self, instance_id: str, value: Any, *, etag: str | None = None) -> str:
        """Replace the custom status; with ``etag``, only if nobody wrote since. New etag."""
        if instance_id is not self._checked_id:  # a hot loop passes the same str again
            self._check_hot_id(instance_id)
        payload = self._encode_status(
            value, instance_id, "custom_status", self.max_custom_status_bytes
        )
        if self.retention is not None:
            self._refuse_expired(instance_id)
        clock = self._clock
        if clock is _SYSTEM_CLOCK:  # its cache, probed here: a frame less per write
            millis = _time_ns() // 1_000_000
            last = _last_millisecond
            now = last[1] if last[0] == millis else _new_millisecond(millis)
        else:
            now = clock()
        write = self._write_status_etag
        if write is not None and self.telemetry is None:
            result = write(instance_id, payload, etag, now)
            if type(result) is str:  # written; a skipped write returns its WriteResult
                return result
            return result.etag  # type: ignore[union-attr]  # no cast(): a call per write
        return self.backend.write_custom_status(instance_id, payload, etag=etag, now=now).etag

    def _check_hot_id(self, instance_id: str) -> None:
        """``validate_instance_id`` for the hot calls; an exact str that passes is kept, so
        the same object passed again (a loop's id) is known valid by identity alone."""
        if (
            type(instance_id) is str
            and 0 < len(instance_id) <= self._max_id_length
            and instance_id.isascii()
        ):
            self._checked_id = instance_id
        else:
            validate_instance_id(instance_id, self._max_id_length)

    def check_id(self, instance_id: str) -> None:
        """``InvalidInstanceId`` unless this store's backend can hold the id."""
        validate_instance_id(instance_id, self._max_id_length)

    def now(self) -> datetime:
        """The store's clock: every timestamp a write records."""
        return self._clock()

    def encode_custom_status(self, instance_id: str, value: Any) -> Payload:
        """Validate the id, serialize and size-check a custom status without writing it
        (the async store's hot path: the checks of `set_custom_status`)."""
        if not (  # validate_instance_id's common case, inline
            type(instance_id) is str
            and 0 < len(instance_id) <= self._max_id_length
            and instance_id.isascii()
        ):
            validate_instance_id(instance_id, self._max_id_length)
        return self._encode_status(
            value, instance_id, "custom_status", self.max_custom_status_bytes
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
        status, payload = self.runtime_status_change(instance_id, status, output)
        if self.retention is not None:
            self._refuse_expired(instance_id)
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
        return drive(store_plans.update(self, instance_id, fn, retries), self._perform)

    # -- reads ----------------------------------------------------------------------------

    def get_instance(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceMetadata | None:
        """The instance with its custom status, or ``None``; input/output only when asked."""
        if instance_id is not self._checked_id:  # a polling loop passes the same str again
            self._check_hot_id(instance_id)
        if fetch_payloads:
            record = self.backend.read(instance_id, fetch_payloads=True)
        else:
            record = self.backend.read(instance_id)  # positional: keywords cost on a hot call
        if record is None:
            return None
        if self.retention is not None and self.retention.expired(record, self._clock()):
            return None
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def metadata(self, record: InstanceRecord, fetch_payloads: bool) -> InstanceMetadata:
        """What a user gets for a backend record (payloads decode lazily)."""
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def visible(
        self, record: InstanceRecord | None, fetch_payloads: bool
    ) -> InstanceMetadata | None:
        """What ``get_instance`` returns for a backend read: ``None`` when absent or expired."""
        if record is None:
            return None
        if self.retention is not None and self.retention.expired(record, self._clock()):
            return None
        return InstanceMetadata(record, self.codec, fetch_payloads)

    def page(self, page: RecordPage, query: InstanceQuery) -> Page:
        """What a user gets for a backend page of ``query``: the filters a backend may not
        evaluate itself (name, update range) checked again, expired instances left out."""
        records = page.items
        if query.filters_beyond_the_basics:  # a backend may not evaluate these itself
            records = [record for record in records if query.matches(record)]
        if self.retention is not None:
            now, retention = self._clock(), self.retention
            records = [record for record in records if not retention.expired(record, now)]
        codec, fetch_payloads = self.codec, query.fetch_payloads
        return Page(
            [InstanceMetadata(record, codec, fetch_payloads) for record in records],
            page.continuation,
        )

    def get_custom_status(self, instance_id: str) -> Any:
        """Just the custom status value; ``InstanceNotFound`` if there is no such instance."""
        return require_instance(self.get_instance(instance_id), instance_id).custom_status

    def query(
        self,
        *,
        page_size: int = 100,
        continuation: str | None = None,
        fetch_payloads: bool = False,
        **filters: Unpack[Filters],
    ) -> Page:
        """One page of instances matching every given filter (`Filters`). A page may hold
        fewer than ``page_size`` items while a continuation token still follows."""
        query = page_query(
            page_size=page_size,
            continuation=continuation,
            fetch_payloads=fetch_payloads,
            **filters,
        )
        return self.page(self.backend.query(query), query)

    def iter_instances(
        self, *, page_size: int = 100, fetch_payloads: bool = False, **filters: Unpack[Filters]
    ) -> Iterator[InstanceMetadata]:
        """Every matching instance (`Filters`), following continuation tokens page after
        page."""
        query = page_query(page_size=page_size, fetch_payloads=fetch_payloads, **filters)
        while True:
            page = self.page(self.backend.query(query), query)
            yield from page.items
            if page.continuation is None:
                return
            query = replace(query, continuation=page.continuation)

    def count(self, **filters: Unpack[Filters]) -> dict[RuntimeStatus, int]:
        """How many instances match (`Filters`), per runtime status (every status present,
        zeros too)."""
        query = count_query(**filters)
        if self.retention is None:  # one backend count: no plan needed
            return self.count_plan(query).total([self.backend.count(query)])
        return drive(store_plans.count(self, query), self._perform)

    def count_plan(self, query: InstanceQuery) -> CountPlan:
        """What ``count`` asks the backend, now (shared with the async store)."""
        return CountPlan(query, self.retention, self._clock())

    def get_many(
        self, instance_ids: Iterable[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceMetadata | None]:
        """Each instance by id (``None`` where absent), in as few requests as the backend
        allows; the keys keep the order of ``instance_ids`` (duplicates once)."""
        ids = self.many_ids(instance_ids)
        return self.many(
            ids, self.backend.read_many(ids, fetch_payloads=fetch_payloads), fetch_payloads
        )

    def many_ids(self, instance_ids: Iterable[str]) -> list[str]:
        """``get_many``'s ids checked, in order, each once."""
        if isinstance(instance_ids, str):
            raise InvalidArgument("get_many takes a collection of instance ids, not one str")
        ids = list(dict.fromkeys(instance_ids))
        for instance_id in ids:
            validate_instance_id(instance_id, self._max_id_length)
        return ids

    def many(
        self,
        ids: list[str],
        records: dict[str, InstanceRecord | None],
        fetch_payloads: bool,
    ) -> dict[str, InstanceMetadata | None]:
        """What ``get_many`` returns for the backend's ``read_many`` answer (expired: None)."""
        retention, now, codec = self.retention, self._clock(), self.codec
        found: dict[str, InstanceMetadata | None] = {}
        for instance_id in ids:
            record = records.get(instance_id)
            if record is None or (retention is not None and retention.expired(record, now)):
                found[instance_id] = None
            else:
                found[instance_id] = InstanceMetadata(record, codec, fetch_payloads)
        return found

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
        return self.backend.purge_by(purge_query(created_from, created_to, runtime_status, prefix))

    def purge_expired(self) -> int:
        """Delete every expired instance: what the backend's own expiry left stored
        (``Backend.purge_expired``), then what the store's ``retention`` expired (listed page
        by page, then deleted one by one). How many were deleted."""
        return drive(store_plans.purge_expired(self), self._perform)

    def expiry_sweep(self) -> ExpirySweep | None:
        """What ``purge_expired`` lists after the backend's own sweep: ``None`` without a
        retention (only the backend's expiry), ``ConfigurationError`` with neither."""
        retention = self.retention
        if retention is None and not self.capabilities.ttl:
            raise ConfigurationError(
                "purge_expired needs a store that honours expiry: a retention period "
                "(retention=timedelta(...) or DURASTATE_RETENTION) or expiring=True "
                "(DURASTATE_EXPIRING=1)"
            )
        return None if retention is None else ExpirySweep(retention, self._clock())

    def _perform(self, step: store_plans.Step) -> Any:
        """One step of a `store_plans` plan, here and now."""
        if isinstance(step, store_plans.Call):
            owner = self.backend if step.on_backend else self
            return getattr(owner, step.name)(*step.args, **step.kwargs)
        if isinstance(step, store_plans.Apply):
            return step.fn(step.value)
        time.sleep(step.seconds)
        return None

    # -- helpers --------------------------------------------------------------------------

    def watch(
        self, instance_id: str, *, since_etag: str | None = None, poll_interval: float | None = None
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

