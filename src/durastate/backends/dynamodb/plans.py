"""The operations, each written once as a plan: what to send, and what each answer means.

`DynamoCore` holds the table's layout, its request builder and its offload bucket, and
turns every backend call into a generator (`durastate.transport.plans`) that the sync
backend runs with `run` and the async backend with `arun`. Everything the backend decides
lives here: conditions, the offload uploads and cleanups, how a failed condition is
explained, and how a write whose answer was lost is recognised.

Lost answers. Every write carries an etag made by this call before it is sent, and every
update keeps the etag it replaced in ``previous_etag``. The requests go with the "may have
landed" hook, so the driver retries a write whose answer was lost and marks the final
answer ``outcome_unknown``. A retry that then fails its condition is explained from the
old item (`landed`): our etag there (or as the replaced one) means the first attempt
landed: success. When it cannot be told, the call raises `BackendUnavailable` saying the
outcome is unknown, never `ConcurrencyError`, so ``update()`` never applies its function
twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, NamedTuple

from durastate.backends._aws import outcome_unknown
from durastate.backends.dynamodb.layout import (
    CS,
    ETAG,
    ID,
    INLINE_LIMIT,
    INPUT,
    OUTPUT,
    PREVIOUS,
    STATUS,
    Item,
    expired,
    new_etag,
    offloaded_refs,
    record_of,
    text,
    unbinary,
    wanted_refs,
)
from durastate.backends.dynamodb.offload import Offload
from durastate.backends.dynamodb.queries import (
    MAX_QUERY_CALLS,
    continuation,
    index_query,
    key_range,
    start_of,
    statuses_of,
)
from durastate.backends.dynamodb.requests import DynamoRequests, Stored
from durastate.backends.dynamodb.responses import (
    CONDITION_FAILED,
    THROTTLED,
    body_of,
    error_code,
    error_for,
)
from durastate.core.backend import skip_unreadable
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
    InstanceExists,
    InstanceNotFound,
    PayloadTooLarge,
)
from durastate.transport import OutcomeUnknown
from durastate.transport.messages import HttpRequest
from durastate.transport.plans import Exchange, Pause, Plan
from durastate.transport.policy import Failure, default_may_have_landed

__all__ = ["DynamoCore", "landed"]

_THROTTLED_ATTEMPTS: Final = 6  # 400 + throttling code: nothing applied, try again
_BATCH_ATTEMPTS: Final = 8  # BatchGetItem rounds while keys come back unprocessed


def _never_landed(request: HttpRequest, failure: Failure) -> bool:
    """Reads (POSTs to DynamoDB) change nothing: always safe to send again."""
    return False


class Answer(NamedTuple):
    """A DynamoDB answer: success or a failed condition (any other error was raised)."""

    ok: bool
    body: dict[str, Any]
    unknown: bool  # an earlier attempt may have been applied


@dataclass
class Written:
    """How a conditional write went: the success body, or the old item that failed the
    condition (``ours``: it carries the etag this call made, so an earlier attempt landed)."""

    body: dict[str, Any] | None = None
    old: Item | None = None
    ours: bool = False


def landed(old: Item | None, made: str, expected: str | None, maybe_applied: bool) -> bool | None:
    """Did this call's write land, judging by the item that failed its condition?

    ``True`` when the item carries ``made`` as its etag or as the etag a later write
    replaced; ``False`` when it cannot have landed (no attempt may have been applied, or the
    write that followed ``expected`` is another's); ``None`` when it cannot be told.
    """
    if old is not None and made in (text(old, ETAG), text(old, PREVIOUS)):
        return True
    if not maybe_applied:
        return False
    if old is not None and expected is not None and text(old, PREVIOUS) == expected:
        return False
    return None


class DynamoCore(BackendPlans):
    """The backend's logic for one table, as plans; no socket, no sleep, no await."""

    def __init__(
        self, requests: DynamoRequests, offload: Offload | None, offload_threshold: int
    ) -> None:
        self.requests = requests
        self.layout = requests.layout
        self.offload = offload
        self.offload_threshold = offload_threshold
        self.old_on_failure: bool | None = None  # does the server honour ALL_OLD on failure?

    # -- sending ----------------------------------------------------------------------------

    def call(
        self,
        operation: str,
        body: dict[str, Any],
        what: str,
        instance_id: str | None,
        *,
        write: bool = False,
    ) -> Plan[Answer]:
        """Send one request; retry throttling; raise every error but a failed condition."""
        request = self.requests.sign(operation, body)
        hook = default_may_have_landed if write else _never_landed
        unknown = False
        for attempt in range(_THROTTLED_ATTEMPTS):
            try:
                response = yield Exchange(request, hook)
            except OutcomeUnknown as exc:
                assert instance_id is not None
                raise BackendUnavailable(
                    f"{what} of instance {instance_id!r}: {exc}; whether it was applied is unknown"
                ) from None
            except BackendUnavailable as exc:
                subject = f" of instance {instance_id!r}" if instance_id is not None else ""
                raise BackendUnavailable(f"{what}{subject} failed: {exc}") from None
            unknown = unknown or response.outcome_unknown
            if response.status == 200:
                return Answer(True, body_of(response), unknown)
            parsed = body_of(response)
            code = error_code(response, parsed)
            if code == CONDITION_FAILED:
                return Answer(False, parsed, unknown)
            if code not in THROTTLED or attempt + 1 == _THROTTLED_ATTEMPTS:
                raise error_for(response, what, instance_id, self.layout.table, code)
            yield Pause(random.uniform(0, min(0.05 * 2**attempt, 1.0)))
        raise AssertionError("unreachable")  # pragma: no cover

    def write(
        self,
        what: str,
        instance_id: str,
        operation: str,
        body: dict[str, Any],
        made: str,
        expected: str | None,
        uploaded: list[str],
    ) -> Plan[Written]:
        """One conditional write; a failed condition is explained from the old item.

        The uploads are deleted when the write surely failed, kept when it landed or its
        outcome is unknown (the item may point at them: an orphan beats a dangling ref).
        """
        try:
            answer = yield from self.call(operation, body, what, instance_id, write=True)
        except BackendUnavailable:
            raise
        except Exception:
            yield from self.cleanup(instance_id, uploaded)
            raise
        if answer.ok:
            return Written(body=answer.body)
        old = yield from self.old_item(instance_id, answer.body)
        verdict = landed(old, made, expected, answer.unknown)
        if verdict is None:
            raise outcome_unknown(what, instance_id)
        if verdict:
            return Written(old=old, ours=True)
        yield from self.cleanup(instance_id, uploaded)
        return Written(old=old)

    def old_item(self, instance_id: str, failure: dict[str, Any]) -> Plan[Item | None]:
        """The item that failed a condition: from the error (ALL_OLD), else one GetItem."""
        item: Item | None = failure.get("Item")
        if item is not None:
            self.old_on_failure = True
        elif self.old_on_failure is not True:
            return (yield from self.get_item(instance_id, False))
        if item is None or expired(item, self.layout.ttl_attribute, time.time()):
            return None
        return item

    # -- payloads ---------------------------------------------------------------------------

    def store(
        self, instance_id: str, field: str, payload: Payload, uploaded: list[str]
    ) -> Plan[Stored]:
        """("B", bytes) inline, or ("ref", key) after an upload; ``PayloadTooLarge`` if neither."""
        size = len(payload.data)
        if self.offload is not None and size > self.offload_threshold:
            key = yield from self.offload.upload(instance_id, field, payload.data)
            uploaded.append(key)
            return "ref", key
        if size > INLINE_LIMIT:
            raise PayloadTooLarge(instance_id, field, size, INLINE_LIMIT)
        return "B", payload.data

    def cleanup(self, instance_id: str, keys: Sequence[str]) -> Plan[None]:
        if keys and self.offload is not None:
            yield from self.offload.delete(instance_id, keys)

    def record(self, item: Item, fetch_payloads: bool) -> Plan[InstanceRecord]:
        """The record of an item, its offloaded payloads fetched from S3 first."""
        fetched: dict[str, bytes] = {}
        refs = wanted_refs(item, fetch_payloads)
        if refs and self.offload is not None:
            instance_id = str(item[ID]["S"])
            for field, key in refs:
                fetched[key] = yield from self.offload.download(instance_id, field, key)
        return record_of(item, fetch_payloads, fetched.get)

    # -- create -----------------------------------------------------------------------------

    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[str]:
        """One conditional PutItem; a restart replaces the whole item (old output/status go)."""
        etag = new_etag()
        uploaded: list[str] = []
        stored: dict[str, Stored] = {}
        try:
            for field, payload in ((INPUT, new.input), (CS, new.custom_status)):
                if payload is not None:
                    stored[field] = yield from self.store(new.instance_id, field, payload, uploaded)
        except Exception:
            yield from self.cleanup(new.instance_id, uploaded)
            raise
        body = self.requests.put_new(new, etag, stored, restart_if_terminal=restart_if_terminal)
        written = yield from self.write(
            "create", new.instance_id, "PutItem", body, etag, None, uploaded
        )
        if written.ours:
            return etag
        if written.body is None:
            status = text(written.old, STATUS) if written.old else None
            raise InstanceExists(new.instance_id, status)
        yield from self.cleanup(new.instance_id, offloaded_refs(written.body.get("Attributes")))
        return etag

    # -- reads ------------------------------------------------------------------------------

    def get_item(self, instance_id: str, fetch_payloads: bool) -> Plan[Item | None]:
        body = self.requests.get(instance_id, fetch_payloads)
        answer = yield from self.call("GetItem", body, "read", instance_id)
        item: Item | None = answer.body.get("Item")
        if item is None or expired(item, self.layout.ttl_attribute, time.time()):
            return None
        return item

    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[InstanceRecord | None]:
        """One consistent GetItem (plus S3 gets for offloaded payloads)."""
        item = yield from self.get_item(instance_id, fetch_payloads)
        if item is None:
            return None
        return (yield from self.record(item, fetch_payloads))

    def batch_get(self, ids: Sequence[str], fetch_payloads: bool) -> Plan[dict[str, Item]]:
        """Items by id, one consistent BatchGetItem per 100 (unprocessed keys sent again)."""
        table = self.layout.table
        found: dict[str, Item] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 100):
            keys: list[Item] = [{ID: {"S": i}} for i in unique[start : start + 100]]
            for attempt in range(_BATCH_ATTEMPTS):
                if not keys:
                    break
                if attempt:
                    yield Pause(min(0.05 * 2**attempt, 1.0))
                body = self.requests.batch_get(keys, fetch_payloads)
                answer = yield from self.call("BatchGetItem", body, "read", None)
                for item in answer.body.get("Responses", {}).get(table, []):
                    found[str(item[ID]["S"])] = item
                unprocessed = answer.body.get("UnprocessedKeys", {}).get(table)
                keys = unprocessed["Keys"] if unprocessed else []
            if keys:
                raise BackendUnavailable(f"DynamoDB table {table!r} kept throttling BatchGetItem")
        return found

    def read_many(
        self, instance_ids: Sequence[str], fetch_payloads: bool
    ) -> Plan[dict[str, InstanceRecord | None]]:
        """One consistent BatchGetItem per 100 ids, no GetItem."""
        found: dict[str, InstanceRecord | None] = dict.fromkeys(instance_ids)
        items = yield from self.batch_get(instance_ids, fetch_payloads)
        now = time.time()
        for instance_id, item in items.items():
            if not expired(item, self.layout.ttl_attribute, now):
                found[instance_id] = yield from self.record(item, fetch_payloads)
        return found

    # -- custom status ----------------------------------------------------------------------

    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[WriteResult]:
        """One UpdateItem with no read; identical bytes fail the condition and write nothing.

        Without an etag a failed condition whose item changed before it could be explained
        (dynalite has no ALL_OLD on failure) is tried again: last write wins.
        """
        attempt = 0
        while True:
            result = yield from self._try_custom_status(instance_id, payload, etag, now)
            if result is not None:
                return result
            if attempt >= 2:  # writers that keep colliding spread out (up to ~50 ms)
                yield Pause(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
            attempt += 1

    def _try_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[WriteResult | None]:
        made = new_etag()
        uploaded: list[str] = []
        stored = yield from self.store(instance_id, CS, payload, uploaded)
        body = self.requests.custom_status_update(instance_id, payload, stored, etag, now, made)
        written = yield from self.write(
            "write custom status", instance_id, "UpdateItem", body, made, etag, uploaded
        )
        if written.ours:
            return WriteResult(made, written=True)
        if written.body is None:
            return _explain_failure(instance_id, payload, etag, written.old)
        yield from self.cleanup(instance_id, _replaced(written.body, CS))
        return WriteResult(made, written=True)

    # -- runtime status ---------------------------------------------------------------------

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[str]:
        """One conditional UpdateItem: status, timestamps, etag, and the output if asked."""
        made = new_etag()
        uploaded: list[str] = []
        stored_output: tuple[Payload, Stored] | None = None
        if set_output and output is not None:
            stored = yield from self.store(instance_id, OUTPUT, output, uploaded)
            stored_output = (output, stored)
        body = self.requests.runtime_update(
            instance_id, status, stored_output, set_output, etag, now, made
        )
        written = yield from self.write(
            "write runtime status", instance_id, "UpdateItem", body, made, etag, uploaded
        )
        if written.ours:
            return made
        if written.body is None:
            if written.old is None:
                raise InstanceNotFound(instance_id)
            raise ConcurrencyError(instance_id, etag)
        yield from self.cleanup(instance_id, _replaced(written.body, OUTPUT))
        return made

    # -- delete -----------------------------------------------------------------------------

    def delete(self, instance_id: str) -> Plan[bool]:
        """One DeleteItem (ALL_OLD tells whether it existed), then its offloaded objects."""
        answer = yield from self.call(
            "DeleteItem", self.requests.delete(instance_id), "delete", instance_id, write=True
        )
        old: Item | None = answer.body.get("Attributes")
        if not old:
            return False
        yield from self.cleanup(instance_id, offloaded_refs(old))
        return not expired(old, self.layout.ttl_attribute, time.time())

    # -- queries ----------------------------------------------------------------------------

    def query(self, query: InstanceQuery) -> Plan[RecordPage]:
        """Query the GSI once per wanted status, then fetch the records by key.

        ``page_size`` bounds the keys evaluated per page (the prefix filter runs after
        DynamoDB's ``Limit``), so a page may be short or empty and still have a continuation.
        Records come from a consistent BatchGetItem and are re-checked (the index is
        eventually consistent); an unreadable one is skipped and reported in ``unreadable``.
        """
        statuses = statuses_of(query)
        position, start_key = start_of(query.continuation, statuses)
        bounds = key_range(query)
        if bounds is None:
            return RecordPage(items=[], continuation=None)
        layout = self.layout
        keys: list[Item] = []
        calls = 0
        while position < len(statuses) and len(keys) < query.page_size and calls < MAX_QUERY_CALLS:
            body = index_query(
                layout.table,
                layout.index_name,
                statuses[position],
                bounds,
                query.prefix,
                query.page_size - len(keys),
                start_key,
            )
            answer = yield from self.call("Query", body, "query", None)
            calls += 1
            keys.extend(answer.body.get("Items", []))
            start_key = answer.body.get("LastEvaluatedKey")
            if start_key is None:
                position += 1
        token = continuation(position, start_key, statuses)
        unreadable: list[str] = []
        records = yield from self._fetch(keys, query, unreadable)
        return RecordPage(items=records, continuation=token, unreadable=unreadable)

    def _fetch(
        self, keys: Sequence[Item], query: InstanceQuery, unreadable: list[str]
    ) -> Plan[list[InstanceRecord]]:
        """The records for index keys, in index order; gone, expired or changed ones dropped,
        unreadable ones skipped with a warning."""
        wanted = [str(key[ID]["S"]) for key in keys]
        items = yield from self.batch_get(wanted, query.fetch_payloads)
        now = time.time()
        records = []
        for instance_id in wanted:
            item = items.get(instance_id)
            if item is None or expired(item, self.layout.ttl_attribute, now):
                continue
            try:
                record = yield from self.record(item, query.fetch_payloads)
            except CorruptRecord as exc:
                skip_unreadable(exc, unreadable)
                continue
            if query.matches(record):
                records.append(record)
        return records

    def purge_by(self, query: InstanceQuery) -> Plan[int]:
        """Delete every match (unreadable records that a page reports too)."""
        ids: list[str] = []
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = yield from self.query(page_query)
            ids.extend(record.instance_id for record in page.items)
            ids.extend(page.unreadable)
            if page.continuation is None:
                break
            page_query = replace(page_query, continuation=page.continuation)
        deleted = 0
        for instance_id in ids:
            deleted += yield from self.delete(instance_id)
        return deleted


def _replaced(body: dict[str, Any], field: str) -> list[str]:
    """The S3 key of the offloaded payload an update replaced (``UPDATED_OLD``)."""
    old = body.get("Attributes")
    if old and f"{field}_ref" in old:
        return [str(old[f"{field}_ref"]["S"])]
    return []


def _explain_failure(
    instance_id: str, payload: Payload, etag: str | None, old: Item | None
) -> WriteResult | None:
    """Missing, stale etag, or unchanged bytes; ``None`` means "changed meanwhile, retry"."""
    if old is None:
        raise InstanceNotFound(instance_id)
    old_etag = str(old[ETAG]["S"])
    if etag is not None and old_etag != etag:
        raise ConcurrencyError(instance_id, etag)
    stored = old.get(CS)
    if (
        stored is not None
        and unbinary(stored) == payload.data
        and text(old, f"{CS}_encoding") == payload.encoding
    ):
        return WriteResult(old_etag, written=False)
    return None
