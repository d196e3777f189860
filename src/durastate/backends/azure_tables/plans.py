"""The operations, each written once as a plan (see `durastate.transport.plans`), and the
contract over them (`AzureTablesPlans`) that the sync and async backends drive. A plan
builds requests, reads answers and decides; it never touches a socket, sleeps or awaits.

A custom-status update is one MERGE of the changed columns with If-Match, never a read
first. Every write also stores a random token of that one call (`write_log`). A write whose
answer was lost (the transport raises `OutcomeUnknown`, or the service answered 500/502/504)
is not sent again blindly: the plan reads the row first. If the token is there, the write
landed (even when another writer came after it); if the row is still at the etag it sent,
it sends again; if it cannot tell, it raises `OutcomeUnknown` (a `BackendUnavailable`),
never a conflict, so ``update()`` never applies its function twice.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from durastate.backends.azure_tables import write_log
from durastate.backends.azure_tables.budget import Budget
from durastate.backends.azure_tables.keys import escape_key, partition_key
from durastate.backends.azure_tables.layout import (
    BLOB_COLUMNS,
    C_CREATED,
    C_ID,
    C_NAME,
    C_OFFLOADED,
    C_STATUS,
    C_STATUS_UPDATED,
    C_TTL,
    C_UPDATED,
    F_CUSTOM,
    F_INPUT,
    F_OUTPUT,
    FIELD_NAMES,
    INLINE_LIMIT,
    SELECT_FULL,
    SELECT_LIGHT,
    blob_columns,
    blob_of,
    build_record,
    check_owner,
    entity_json,
    inline_columns,
    inline_payload,
    inline_value,
    is_terminal,
    listed_id,
    stored_size,
)
from durastate.backends.azure_tables.offload import BlobOffload
from durastate.backends.azure_tables.options import AzureTablesOptions
from durastate.backends.azure_tables.queries import (
    decode_continuation,
    encode_continuation,
    odata_filter,
    query_fingerprint,
)
from durastate.backends.azure_tables.requests import TableRequests
from durastate.backends.azure_tables.responses import (
    MAYBE_APPLIED,
    Row,
    error_code,
    error_for,
    etag_of,
    page_of,
    row_of,
)
from durastate.backends.azure_tables.write_log import (
    C_WRITE_ID,
    SUPERSEDED_ETAG,
    LostWrite,
    lost_insert_outcome,
    lost_write_outcome,
    probe_columns,
    write_columns,
)
from durastate.core.backend import RecentPayloads, skip_unreadable
from durastate.core.lru import LRU
from durastate.core.planned import BackendPlans
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    CorruptRecord,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
    OutcomeUnknown,
    PayloadTooLarge,
)
from durastate.transport.messages import HttpResponse
from durastate.transport.plans import Step

T = TypeVar("T")
Plan = Generator[Step, Any, T]


@dataclass
class _Prepared:
    """The columns for one payload field, and the blob uploaded for it (if any)."""

    columns: dict[str, Any]
    blob: str | None = None


class AzureTablesCore:
    """What a sync and an async store of one table share: the request builders, the
    limits, and what this store object remembers (payloads at etags, blob names)."""

    def __init__(
        self,
        tables: TableRequests,
        blobs: BlobOffload | None,
        options: AzureTablesOptions,
    ) -> None:
        self.tables = tables
        self.blobs = blobs
        self.options = options
        self.table_name = tables.table
        self.offload_enabled = options.offload and blobs is not None
        self.offload_threshold = min(options.offload_threshold, INLINE_LIMIT)
        self.recent = RecentPayloads()
        self._known_blobs: LRU[tuple[str, str], str] = LRU()

    def where(self, instance_id: str | None, operation: str) -> str:
        where = f"azure-tables {operation} on table {self.table_name!r}"
        if instance_id is not None:
            where += f" for instance {instance_id!r}"
        return where

    def budget(self, instance_id: str | None, operation: str) -> Budget:
        options = self.options
        return Budget(
            partial(self.where, instance_id, operation),
            retry_total=options.retry_total,
            operation_timeout=options.operation_timeout,
            backoff_factor=options.retry_backoff_factor,
            backoff_max=options.retry_backoff_max,
        )

    def remember_blob(self, instance_id: str, field: str, name: str | None) -> str | None:
        """Record the blob now referenced by ``field``; return the one it replaces, if known."""
        previous = self._known_blobs.replace((instance_id, field), name or None)
        return previous if previous != name else None

    def forget(self, instance_id: str) -> None:
        self.recent.forget(instance_id)
        for field in FIELD_NAMES:
            self._known_blobs.pop((instance_id, field))


def named(budget: Budget, plan: Plan[T]) -> Plan[T]:
    """``plan``, with the transport's `BackendUnavailable` named by operation and instance
    (and `OutcomeUnknown` once a write of the operation may have been applied)."""
    try:
        return (yield from plan)
    except BackendUnavailable as exc:
        if str(exc).startswith(budget.where()):
            raise  # ours, already named
        raise budget.unavailable(exc) from None


# -- reading rows -------------------------------------------------------------------------


def get_row(
    core: AzureTablesCore, budget: Budget, instance_id: str, select: list[str]
) -> Plan[Row | None]:
    """The row of ``instance_id`` (``None`` when absent)."""
    request = core.tables.get(partition_key(instance_id), select)
    response: HttpResponse = yield budget.exchange(request)
    if response.status == 200:
        return row_of(response, instance_id)
    if response.status == 404 and error_code(response) != "TableNotFound":
        return None
    raise error_for(response, budget.where(), instance_id)


def _payload(
    core: AzureTablesCore, budget: Budget, instance_id: str, entity: Mapping[str, Any], field: str
) -> Plan[tuple[Payload | None, bool]]:
    """The payload of ``field`` and whether it is whole (``False``: its blob vanished)."""
    blob = blob_of(entity, field)
    if blob is None:
        return inline_payload(instance_id, entity, field), True
    what = f"offloaded {FIELD_NAMES[field]}"
    if core.blobs is None:
        raise CorruptRecord(instance_id, f"{what}: no blob storage is configured")
    data = yield from core.blobs.download(budget, blob, instance_id, what)
    if data is None:
        return None, False  # replaced while we read; the caller re-reads
    core.remember_blob(instance_id, field, blob)
    return Payload.from_encoding(data, str(entity[f"{field}Encoding"])), True


def record_of(
    core: AzureTablesCore, budget: Budget, instance_id: str, row: Row, fetch_payloads: bool
) -> Plan[InstanceRecord | None]:
    """The record of a row; ``None`` if a referenced blob vanished (a concurrent rewrite)."""
    check_owner(instance_id, row.entity)
    payloads: dict[str, Payload | None] = {}
    for field in (F_CUSTOM, F_INPUT, F_OUTPUT) if fetch_payloads else (F_CUSTOM,):
        payload, whole = yield from _payload(core, budget, instance_id, row.entity, field)
        if not whole:
            return None
        payloads[field] = payload
    return build_record(instance_id, row.entity, row.etag, payloads)


def read(
    core: AzureTablesCore, instance_id: str, fetch_payloads: bool
) -> Plan[InstanceRecord | None]:
    budget = core.budget(instance_id, "read")
    return (yield from named(budget, _read(core, budget, instance_id, fetch_payloads)))


def _read(
    core: AzureTablesCore, budget: Budget, instance_id: str, fetch_payloads: bool
) -> Plan[InstanceRecord | None]:
    select = SELECT_FULL if fetch_payloads else SELECT_LIGHT
    for _ in range(5):
        row = yield from get_row(core, budget, instance_id, select)
        if row is None:
            return None
        record = yield from record_of(core, budget, instance_id, row, fetch_payloads)
        if record is not None:
            core.recent.remember(instance_id, record.etag, record.custom_status)
            return record
    raise CorruptRecord(instance_id, "an offloaded payload's blob is missing")


# -- payload columns ----------------------------------------------------------------------


def _prepare(
    core: AzureTablesCore, budget: Budget, instance_id: str, field: str, payload: Payload | None
) -> Plan[_Prepared]:
    """Columns for one field: inline when small, otherwise upload a blob first."""
    if payload is None:
        return _Prepared(inline_columns(field, None))
    value = inline_value(payload)
    size = stored_size(value)
    if size <= INLINE_LIMIT and len(payload.data) <= core.offload_threshold:
        return _Prepared(inline_columns(field, payload, value))
    if not core.offload_enabled or core.blobs is None:
        limit = core.offload_threshold if size <= INLINE_LIMIT else INLINE_LIMIT
        raise PayloadTooLarge(instance_id, FIELD_NAMES[field], size, limit)
    name = yield from core.blobs.upload(budget, instance_id, FIELD_NAMES[field], payload.data)
    return _Prepared(blob_columns(field, payload, name), name)


def _discard(core: AzureTablesCore, budget: Budget, names: list[str]) -> Plan[None]:
    if names and core.blobs is not None:
        yield from core.blobs.delete(budget, names)


# -- create -------------------------------------------------------------------------------


def create(core: AzureTablesCore, new: NewInstance, restart_if_terminal: bool) -> Plan[str]:
    budget = core.budget(new.instance_id, "create")
    return (yield from named(budget, _create(core, budget, new, restart_if_terminal)))


def _create(
    core: AzureTablesCore, budget: Budget, new: NewInstance, restart_if_terminal: bool
) -> Plan[str]:
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(new.instance_id),
        "RowKey": "",
        C_ID: escape_key(new.instance_id),
        C_NAME: new.name,
        C_STATUS: new.runtime_status.value,
        C_CREATED: new.created_at,
        C_UPDATED: new.created_at,
        **write_columns(write_log.new_write_id()),
    }
    if new.ttl_micros is not None:
        entity[C_TTL] = float(new.ttl_micros)
    uploaded: list[str] = []
    try:
        for field, payload in ((F_CUSTOM, new.custom_status), (F_INPUT, new.input)):
            if payload is None:
                continue
            prepared = yield from _prepare(core, budget, new.instance_id, field, payload)
            entity.update(prepared.columns)
            if prepared.blob:
                uploaded.append(prepared.blob)
    except DurastateError:
        yield from _discard(core, budget, uploaded)
        raise
    if new.custom_status is not None:
        entity[C_STATUS_UPDATED] = new.created_at
    try:
        etag = yield from _insert_or_restart(
            core, budget, new.instance_id, entity, restart_if_terminal
        )
    except DurastateError as exc:
        if not (isinstance(exc, BackendUnavailable) or budget.maybe_applied):
            yield from _discard(core, budget, uploaded)  # surely not stored: unreferenced
        raise
    core.recent.remember(new.instance_id, etag, new.custom_status)
    core.remember_blob(new.instance_id, F_CUSTOM, entity.get(f"{F_CUSTOM}Blob"))
    core.remember_blob(new.instance_id, F_INPUT, entity.get(f"{F_INPUT}Blob"))
    core.remember_blob(new.instance_id, F_OUTPUT, None)
    return etag


def _insert_or_restart(
    core: AzureTablesCore,
    budget: Budget,
    instance_id: str,
    entity: dict[str, Any],
    restart_if_terminal: bool,
) -> Plan[str]:
    """Insert; on conflict replace a terminal run with If-Match so racing writers lose.

    A row carrying this call's write token is this call's own insert (or restart) whose
    answer was lost: success, never ``InstanceExists``. After an insert that may have
    landed, the row is read before anything is sent again.
    """
    write_id = entity[C_WRITE_ID]
    body = entity_json(entity)
    select = [C_STATUS, C_OFFLOADED, *write_log.probe_columns(write_id), *BLOB_COLUMNS]
    for _ in range(8):
        try:
            response: HttpResponse = yield budget.exchange(core.tables.insert(body))
        except OutcomeUnknown:
            pause = budget.lost("the answer to the insert was lost")
            if pause is not None:
                yield pause
        else:
            if response.status in (201, 204):
                return etag_of(response)
            if response.status in MAYBE_APPLIED:
                pause = budget.lost(f"{response.status} {error_code(response)}")
                if pause is not None:
                    yield pause
            elif response.status != 409:
                raise error_for(response, budget.where(), instance_id)
        old = yield from get_row(core, budget, instance_id, select)
        if old is None:
            continue  # deleted meanwhile, or our insert never landed: insert again
        found = lost_insert_outcome(old.entity, write_id, maybe_applied=budget.maybe_applied)
        if found is LostWrite.LANDED:
            return old.etag  # our own insert or restart landed
        if found is LostWrite.SUPERSEDED:
            return SUPERSEDED_ETAG
        if found is LostWrite.UNKNOWN:
            raise budget.unknown()
        status = str(old.entity.get(C_STATUS, ""))
        if not restart_if_terminal or not is_terminal(status):
            raise InstanceExists(instance_id, status or None)
        etag = yield from _replace(core, budget, instance_id, body, old.etag)
        if etag is not None:
            if core.blobs is not None and old.entity.get(C_OFFLOADED):
                keep = [str(entity[c]) for c in BLOB_COLUMNS if entity.get(c)]
                yield from core.blobs.sweep(budget, instance_id, keep)  # the old run's blobs
            return etag
    raise InstanceExists(instance_id)


def _replace(
    core: AzureTablesCore, budget: Budget, instance_id: str, body: bytes, etag: str
) -> Plan[str | None]:
    """REPLACE the whole row at ``etag``; ``None`` if the row changed or vanished, or if
    the answer was lost (the caller then reads the row and looks for its write token)."""
    request = core.tables.replace(partition_key(instance_id), body, etag)
    try:
        response: HttpResponse = yield budget.exchange(request)
    except OutcomeUnknown:
        pause = budget.lost("the answer to the restart was lost")
        if pause is not None:
            yield pause
        return None
    if response.status == 204:
        return etag_of(response)
    if response.status in (404, 412):
        return None
    if response.status in MAYBE_APPLIED:
        budget.lost(f"{response.status} {error_code(response)}")
        return None
    raise error_for(response, budget.where(), instance_id)


# -- writes -------------------------------------------------------------------------------


def _merge(
    core: AzureTablesCore,
    budget: Budget,
    instance_id: str,
    columns: dict[str, Any],
    etag: str | None,
) -> Plan[str]:
    """One MERGE of ``columns``: If-Match ``etag``, or ``*`` (never an upsert).

    Exactly one PATCH unless its answer is lost; then the row is read (the write log there
    says whether it landed, ``lost_write_outcome``) before it is sent again.
    """
    key = partition_key(instance_id)
    write_id = write_log.new_write_id()
    entity = {"PartitionKey": key, "RowKey": "", **columns, **write_columns(write_id, etag)}
    body = entity_json(entity)
    while True:
        if budget.maybe_applied:
            row = yield from get_row(core, budget, instance_id, probe_columns(write_id))
            if row is None:
                raise InstanceNotFound(instance_id)
            found = lost_write_outcome(row.entity, row.etag, write_id, etag)
            if found is LostWrite.LANDED:
                return row.etag
            if found is LostWrite.SUPERSEDED:
                return SUPERSEDED_ETAG
            if found is LostWrite.STALE:
                raise ConcurrencyError(instance_id, etag)
            if found is LostWrite.UNKNOWN:
                raise budget.unknown()
        try:
            response: HttpResponse = yield budget.exchange(core.tables.merge(key, body, etag))
        except OutcomeUnknown:
            pause = budget.lost("the answer to the write was lost")
            if pause is not None:
                yield pause
            continue
        status = response.status
        if status == 204:
            return etag_of(response)
        if status == 412 and budget.maybe_applied:
            continue  # ours (an earlier try landed late) or another writer's: read
        if status in MAYBE_APPLIED:
            pause = budget.lost(f"{status} {error_code(response)}")
            if pause is not None:
                yield pause
            continue
        raise error_for(response, budget.where(), instance_id, etag)


def _write_field(
    core: AzureTablesCore,
    budget: Budget,
    instance_id: str,
    field: str,
    payload: Payload | None,
    extra: dict[str, Any],
    etag: str | None,
) -> Plan[str]:
    """MERGE one payload field plus ``extra``; clean up blobs on both outcomes."""
    prepared = yield from _prepare(core, budget, instance_id, field, payload)
    try:
        new_etag = yield from _merge(core, budget, instance_id, {**prepared.columns, **extra}, etag)
    except DurastateError as exc:
        surely_failed = not isinstance(exc, BackendUnavailable) and not budget.maybe_applied
        if prepared.blob and surely_failed:
            yield from _discard(core, budget, [prepared.blob])  # nothing refers to it
        raise
    previous = core.remember_blob(instance_id, field, prepared.blob)
    yield from _discard(core, budget, [previous] if previous else [])
    return new_etag


def write_custom_status(
    core: AzureTablesCore, instance_id: str, payload: Payload, etag: str | None, now: datetime
) -> Plan[WriteResult]:
    budget = core.budget(instance_id, "custom-status update")
    if core.recent.unchanged(instance_id, etag, payload):
        assert etag is not None
        return (yield from named(budget, _unchanged_at(core, budget, instance_id, etag)))
    times = {C_STATUS_UPDATED: now, C_UPDATED: now}
    try:
        new_etag = yield from named(
            budget, _write_field(core, budget, instance_id, F_CUSTOM, payload, times, etag)
        )
    except DurastateError:
        core.recent.forget(instance_id)
        raise
    core.recent.remember(instance_id, new_etag, payload)
    return WriteResult(new_etag)


def _unchanged_at(
    core: AzureTablesCore, budget: Budget, instance_id: str, etag: str
) -> Plan[WriteResult]:
    """The bytes stored at ``etag`` are the ones to write; write nothing if the row is
    still at ``etag``. Another process may have written since, so only the service can
    tell: one GET of the etag (a write would have changed it), never an unchecked skip.
    """
    row = yield from get_row(core, budget, instance_id, ["PartitionKey"])
    if row is None:
        core.forget(instance_id)
        raise InstanceNotFound(instance_id)
    if row.etag != etag:
        core.recent.forget(instance_id)
        raise ConcurrencyError(instance_id, etag)
    return WriteResult(etag, written=False)


def write_runtime_status(
    core: AzureTablesCore,
    instance_id: str,
    status: RuntimeStatus,
    output: Payload | None,
    set_output: bool,
    etag: str | None,
    now: datetime,
) -> Plan[str]:
    budget = core.budget(instance_id, "runtime-status update")
    columns: dict[str, Any] = {C_STATUS: status.value, C_UPDATED: now}
    core.recent.forget(instance_id)
    if not set_output:
        return (yield from named(budget, _merge(core, budget, instance_id, columns, etag)))
    return (
        yield from named(
            budget, _write_field(core, budget, instance_id, F_OUTPUT, output, columns, etag)
        )
    )


# -- delete -------------------------------------------------------------------------------


def delete(core: AzureTablesCore, instance_id: str) -> Plan[bool]:
    budget = core.budget(instance_id, "delete")
    return (yield from named(budget, _delete(core, budget, instance_id)))


def _delete(core: AzureTablesCore, budget: Budget, instance_id: str) -> Plan[bool]:
    """Delete the row at the etag read (so no blob is missed), then its blobs."""
    sent: Row | None = None  # the row a DELETE whose answer was lost was sent for
    key = partition_key(instance_id)
    for _ in range(8):
        row = yield from get_row(core, budget, instance_id, [C_OFFLOADED, *BLOB_COLUMNS])
        if row is None:
            core.forget(instance_id)
            if sent is not None:  # our DELETE may have landed: its blobs must go too
                yield from _delete_blobs(core, budget, instance_id, sent.entity)
            return sent is not None
        try:
            response: HttpResponse = yield budget.exchange(core.tables.delete(key, row.etag))
        except OutcomeUnknown:
            sent = row  # a DELETE at an etag is safe to send again
            pause = budget.lost("the answer to the delete was lost")
            if pause is not None:
                yield pause
            continue
        if response.status in (404, 412):
            continue  # changed or gone meanwhile: read it again
        if response.status in MAYBE_APPLIED:
            sent = row
            budget.lost(f"{response.status} {error_code(response)}")
            continue
        if response.status != 204:
            raise error_for(response, budget.where(), instance_id)
        core.forget(instance_id)
        yield from _delete_blobs(core, budget, instance_id, row.entity)
        return True
    raise ConcurrencyError(instance_id)


def _delete_blobs(
    core: AzureTablesCore, budget: Budget, instance_id: str, entity: Mapping[str, Any]
) -> Plan[None]:
    if core.blobs is None:
        return
    names = [str(entity[c]) for c in BLOB_COLUMNS if entity.get(c)]
    yield from core.blobs.delete(budget, names)
    if entity.get(C_OFFLOADED):
        yield from core.blobs.sweep(budget, instance_id)


# -- query --------------------------------------------------------------------------------


def query(core: AzureTablesCore, query: InstanceQuery) -> Plan[RecordPage]:
    """OData filter in the service; the prefix is re-checked exactly on the client."""
    if query.runtime_status is not None and not query.runtime_status:
        return RecordPage([])
    budget = core.budget(None, "query")
    return (yield from named(budget, _query(core, budget, query)))


def _query(core: AzureTablesCore, budget: Budget, query: InstanceQuery) -> Plan[RecordPage]:
    odata = odata_filter(query)
    fingerprint = query_fingerprint(core.table_name, odata)
    position = None
    if query.continuation is not None:  # "" is a forged token too, not "from the start"
        position = decode_continuation(query.continuation, fingerprint)
    select = SELECT_FULL if query.fetch_payloads else SELECT_LIGHT
    items: list[InstanceRecord] = []
    unreadable: list[str] = []
    while True:
        rows, position = yield from _page(core, budget, odata, select, query.page_size, position)
        for row, instance_id in _ours(rows, query.prefix):
            try:
                record = yield from record_of(core, budget, instance_id, row, query.fetch_payloads)
                if record is None:  # a blob vanished under a concurrent rewrite: read again
                    record = yield from _read(core, budget, instance_id, query.fetch_payloads)
            except CorruptRecord as exc:  # that instance alone: the others still list
                skip_unreadable(exc, unreadable)
                continue
            if record is not None and query.matches(record):
                items.append(record)
        if items or unreadable or position is None:
            break
    continuation = encode_continuation(position, fingerprint) if position else None
    return RecordPage(items, continuation, unreadable)


def _ours(rows: list[Row], prefix: str | None) -> Iterator[tuple[Row, str]]:
    for row in rows:
        instance_id = listed_id(row.entity, prefix)
        if instance_id is not None:
            yield row, instance_id


def _page(
    core: AzureTablesCore,
    budget: Budget,
    odata: str,
    select: list[str],
    top: int,
    position: dict[str, str] | None,
) -> Plan[tuple[list[Row], dict[str, str] | None]]:
    response: HttpResponse = yield budget.exchange(core.tables.query(odata, select, top, position))
    if response.status != 200:
        raise error_for(response, budget.where(), None)
    return page_of(response)


def purge_by(core: AzureTablesCore, query: InstanceQuery) -> Plan[int]:
    """Delete every match, by ids read straight from the rows: no payload is fetched or
    decoded, so a corrupt record goes like any other."""
    if query.runtime_status is not None and not query.runtime_status:
        return 0
    budget = core.budget(None, "purge")
    odata = odata_filter(query)
    ids: list[str] = []
    position: dict[str, str] | None = None
    while True:
        rows, position = yield from named(
            budget, _page(core, budget, odata, [C_ID], 1000, position)
        )
        ids.extend(instance_id for _, instance_id in _ours(rows, query.prefix))
        if position is None:
            break
    deleted = 0
    for instance_id in ids:
        if (yield from delete(core, instance_id)):
            deleted += 1
    return deleted


query_page = query  # (the contract's ``query`` argument hides the function in a method)


class AzureTablesPlans(BackendPlans):
    """The operations above as the backend contract's plans (`PlannedBackend`), over one
    core; ``read_many`` and ``count`` are the generic ones (no batched read here)."""

    def __init__(self, core: AzureTablesCore) -> None:
        self.core = core

    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[str]:
        return create(self.core, new, restart_if_terminal)

    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[InstanceRecord | None]:
        return read(self.core, instance_id, fetch_payloads)

    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[WriteResult]:
        return write_custom_status(self.core, instance_id, payload, etag, now)

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[str]:
        return write_runtime_status(self.core, instance_id, status, output, set_output, etag, now)

    def delete(self, instance_id: str) -> Plan[bool]:
        return delete(self.core, instance_id)

    def query(self, query: InstanceQuery) -> Plan[RecordPage]:
        return query_page(self.core, query)

    def purge_by(self, query: InstanceQuery) -> Plan[int]:
        return purge_by(self.core, query)
