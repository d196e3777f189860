"""Every S3 operation, written once as a plan: requests out, answers in, no I/O here.

Each public method of `S3Core` returns a generator (`durastate.transport.plans`) that
yields the S3 requests it needs and returns the operation's result or raises its typed
error. `S3Backend` runs them with `run` over the sync driver, `AsyncS3Backend` with `arun`
over the asyncio driver: one logic for both. The decisions are those of the layout (`layout`, and
docs/s3.md): the status object is the commit point of every write after create; an
update is one conditional PUT with no read before it; a 412 after an attempt that may have
landed (``outcome_unknown`` on the answer) is told apart from a conflict by the write tokens
a HEAD finds; a torn pair is waited out, then settled; create commits with the record and
seals the status object for the new run.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from durastate.backends._aws import outcome_unknown
from durastate.backends.s3.keys import KeyLayout
from durastate.backends.s3.layout import (
    NO_STATUS,
    Etag,
    Record,
    Status,
    compose,
    current_status,
    landed,
    md5,
    parse_record,
    parse_status,
    record_body,
    status_body,
    stored_id,
    token,
    torn,
)
from durastate.backends.s3.objects import (
    ObjectMissing,
    PreconditionFailed,
    S3Objects,
    StoredObject,
    check_deleted,
    head_metadata,
    listed_keys,
    stored_object,
    written_etag,
)
from durastate.core.backend import skip_unreadable
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
from durastate.core.tokens import InvalidContinuationToken, decode_token, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
)
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.plans import Batch, Exchange, Pause, Plan
from durastate.transport.policy import default_may_have_landed

__all__ = ["S3Core", "within"]

T = TypeVar("T")

HEADER_RANGE = 8192  # first bytes fetched when only the record's header is wanted
MAX_RETRIES = 16  # create gives up (ConcurrencyError) after this many tries
KNOWN_CAPACITY = 4096
TORN_WAITS = 5  # torn reads waited out (5, 10, 20, 40, 80 ms) before the reader settles
TORN_TRIES = 10  # reads of one instance that keep finding a torn pair before giving up


class UnknownWrite(Exception):
    """A retried conditional PUT got 412, and the object holds a write that is not ours:
    an earlier attempt may have landed and been overwritten since, or never have landed."""


def known_etags() -> LRU[str, Etag]:
    """The last etag this backend saw per instance, so an update without one needs no read."""
    return LRU(KNOWN_CAPACITY)


def within(plan: Plan[T], seconds: float) -> Plan[T]:
    """``plan`` with every request ending by one deadline, ``seconds`` after it starts: a
    last-write-wins loop under contention, a torn pair that never settles or a slow server
    end in ``BackendUnavailable`` by then (the transport enforces the deadline per request,
    and a pause that would pass it is not taken)."""
    deadline = time.monotonic() + seconds
    reply: Any = None
    failure: BaseException | None = None
    while True:
        try:
            step = plan.send(reply) if failure is None else plan.throw(failure)
        except StopIteration as done:
            result: T = done.value
            return result
        failure = None
        if type(step) is Exchange:
            step = replace(step, deadline=deadline)
        elif isinstance(step, Batch):
            step = replace(
                step, exchanges=tuple(replace(e, deadline=deadline) for e in step.exchanges)
            )
        elif isinstance(step, Pause) and time.monotonic() + step.seconds >= deadline:
            failure = BackendUnavailable(f"s3: gave up after {seconds:g} s (deadline reached)")
            continue
        try:
            reply = yield step
        except Exception as exc:  # handed to the plan, as the runner would
            failure = exc


def contention_pause(attempt: int) -> Plan[None]:
    """A short, growing, jittered pause between last-write-wins retries (from the third)."""
    if attempt >= 2:
        yield Pause(random.uniform(0, min(0.001 * 2**attempt, 0.05)))


@dataclass(frozen=True, slots=True)
class S3Core(BackendPlans):
    """The operations of one store (bucket + prefix), as plans. ``known`` is shared by the
    sync and async faces of a backend."""

    objects: S3Objects
    keys: KeyLayout
    known: LRU[str, Etag]
    #: seconds one single-instance operation may take, all its requests and pauses included
    budget: float = 60.0

    # -- the operations (each a plan; those of one instance end by one deadline) ---------------

    def create(self, new: NewInstance, restart_if_terminal: bool = False) -> Plan[str]:
        return within(self._create(new, restart_if_terminal), self.budget)

    def read(self, instance_id: str, fetch_payloads: bool = False) -> Plan[InstanceRecord | None]:
        return within(self._read(instance_id, fetch_payloads), self.budget)

    def delete(self, instance_id: str) -> Plan[bool]:
        return within(self._delete(instance_id), self.budget)

    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[WriteResult]:
        return within(self._write_custom_status(instance_id, payload, etag, now), self.budget)

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[str]:
        plan = self._write_runtime_status(instance_id, status, output, set_output, etag, now)
        return within(plan, self.budget)

    # -- one request each ------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self.objects.bucket

    def _send(self, request: HttpRequest, *, may_have_landed: bool = False) -> Plan[HttpResponse]:
        hook = default_may_have_landed if may_have_landed else None
        response: HttpResponse = yield Exchange(request, hook)
        return response

    def _get(
        self, key: str, instance_id: str, *, head_only: bool = False
    ) -> Plan[StoredObject | None]:
        """GET an object (only its first bytes when ``head_only``); ``None`` if absent."""
        request = self.objects.get(key, first_bytes=HEADER_RANGE if head_only else None)
        response = yield from self._send(request)
        found = stored_object(response, "get_object", self.bucket, instance_id)
        if found is not None and not found.complete and b"\n" not in found.body:
            return (yield from self._get(key, instance_id))  # a header longer than the range
        return found

    def _put_answer(
        self,
        key: str,
        body: bytes,
        *,
        write: str,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
        replaces: str | None = None,
    ) -> Plan[HttpResponse]:
        """PUT with ``If-Match`` (or ``If-None-Match: *`` for `NO_STATUS`) carrying the write
        token ``w`` (and ``p``, the token it replaces); a lost answer is retried, and the
        answer then says ``outcome_unknown``."""
        meta = {**(metadata or {}), "w": write}
        if replaces is not None:
            meta["p"] = replaces
        request = self.objects.put(
            key,
            body,
            metadata=meta,
            if_match=if_match if if_match != NO_STATUS else None,
            if_none_match=if_match == NO_STATUS,
        )
        return (yield from self._send(request, may_have_landed=True))

    def _put(
        self,
        key: str,
        instance_id: str,
        body: bytes,
        *,
        write: str,
        metadata: dict[str, str] | None = None,
        if_match: str | None = None,
        replaces: str | None = None,
    ) -> Plan[str]:
        """The new ETag of a conditional PUT. A 412 after an attempt that may have landed is
        checked with a HEAD: our token there (as ``w``, or as ``p`` of the write that
        followed ours) means ours landed; another's means `UnknownWrite`."""
        response = yield from self._put_answer(
            key, body, write=write, metadata=metadata, if_match=if_match, replaces=replaces
        )
        try:
            return written_etag(response, "put_object", self.bucket, instance_id)
        except PreconditionFailed:
            if not response.outcome_unknown:
                raise
        verdict = yield from self._look_up_write(key, instance_id, write, replaces)
        if verdict is None:
            raise UnknownWrite
        if not verdict:
            raise PreconditionFailed
        return md5(body)  # a single-part object's ETag is the MD5 of its body

    def _look_up_write(
        self, key: str, instance_id: str, write: str, replaces: str | None
    ) -> Plan[bool | None]:
        """1 HEAD: did the write ``write`` land? ``None`` also when the object is gone."""
        response = yield from self._send(self.objects.head(key))
        metadata = head_metadata(response, "head_object", self.bucket, instance_id)
        return None if metadata is None else landed(metadata, write, replaces)

    def _delete_object(self, key: str, instance_id: str | None) -> Plan[None]:
        response = yield from self._send(self.objects.delete(key), may_have_landed=True)
        check_deleted(response, "delete_object", self.bucket, instance_id)

    def _load_record(self, instance_id: str, key: str, *, payloads: bool) -> Plan[Record | None]:
        found = yield from self._get(key, instance_id, head_only=not payloads)
        if found is None:
            return None
        return parse_record(instance_id, found.body, found.etag, found.complete)

    def _load_status(self, instance_id: str) -> Plan[Status | None]:
        found = yield from self._get(self.keys.status_key(instance_id), instance_id)
        if found is None:
            return None
        return parse_status(instance_id, found.body, found.etag, found.metadata)

    # -- create ------------------------------------------------------------------------------

    def _create(self, new: NewInstance, restart_if_terminal: bool = False) -> Plan[str]:
        """1 conditional PUT of the record, which carries the first custom status, then 1
        conditional PUT sealing the status object for the new run (`_seal`). A restart over
        a terminal run costs +2 GETs (the old record, the status object)."""
        record = Record(
            instance_id=new.instance_id,
            run=token(),
            name=new.name,
            runtime_status=new.runtime_status,
            created_at=new.created_at,
            last_updated_at=new.created_at,
            input=new.input,
            output=None,
            s3_etag="",
            has_payloads=True,
            custom_status=new.custom_status,
            custom_status_updated_at=new.created_at if new.custom_status else None,
            ver=token(),  # the seal gives the status object this VER
            ttl_micros=new.ttl_micros,
        )
        key = self.keys.record_key(new.instance_id)
        replacing = False
        for _ in range(MAX_RETRIES):
            outcome = yield from self._insert_record(record, key, restart_if_terminal)
            replacing = replacing or outcome == "replacing"
            if outcome == "ours":
                etag = yield from self._seal(record, assume_absent=not replacing)
                return str(etag)
        raise ConcurrencyError(new.instance_id)

    def _insert_record(
        self, record: Record, key: str, restart: bool
    ) -> Plan[Literal["ours", "replacing", "again"]]:
        """Put the record if absent, or over a terminal run: ``"ours"`` (the record in place
        is ours), ``"replacing"`` (a replace of a terminal run was sent, outcome not known
        yet), ``"again"`` (the key changed). The record names its run (random per create),
        so a 412 caused by our own write whose answer was lost is recognised."""
        body = record_body(record)
        response = yield from self._put_answer(key, body, write=token(), if_match=NO_STATUS)
        try:
            written_etag(response, "put_object", self.bucket, record.instance_id)
            return "ours"
        except PreconditionFailed:
            maybe_ours = response.outcome_unknown
        existing = yield from self._load_record(record.instance_id, key, payloads=False)
        if existing is None:
            return "again"  # deleted in between
        if existing.run == record.run:
            return "ours"  # our own write, answered 412 on the retry
        if not (restart and existing.runtime_status.is_terminal):
            if maybe_ours:  # ours may have landed and been replaced since: cannot tell
                raise outcome_unknown("create", record.instance_id)
            raise InstanceExists(record.instance_id, existing.runtime_status.value)
        # a 412 or 404 here: changed or deleted in between, or ours landed; the next try tells
        answer = yield from self._put_answer(key, body, write=token(), if_match=existing.s3_etag)
        with contextlib.suppress(PreconditionFailed, ObjectMissing):
            written_etag(answer, "put_object", self.bucket, record.instance_id)
        return "replacing"

    def _seal(self, record: Record, *, assume_absent: bool) -> Plan[Etag]:
        """Give the new run its status object (only if absent or of another run), so etags
        of any earlier run fail from now on; a writer of the new run that got there first
        keeps its write. ``assume_absent`` (a new id) tries ``If-None-Match: *`` first."""
        current: Status | None = None
        attempt = 0
        while True:
            if attempt or not assume_absent:
                current = yield from self._load_status(record.instance_id)
                if current is not None and current.run == record.run:
                    return Etag(record.run, current.ver, current.write, current.md5)
            try:
                etag = yield from self._put_status_object(
                    record.instance_id,
                    Etag(record.run, record.ver or token(), "", ""),
                    record.custom_status,
                    record.custom_status_updated_at,
                    replacing=current,
                )
            except (PreconditionFailed, ObjectMissing, UnknownWrite):
                yield from contention_pause(attempt)
                attempt += 1
                continue  # the next look tells whether another writer (or ours) is there
            self.known.put(record.instance_id, etag)
            return etag

    def _put_status_object(
        self,
        instance_id: str,
        at: Etag,
        payload: Payload | None,
        updated: datetime | None,
        *,
        replacing: Status | Etag | None,
    ) -> Plan[Etag]:
        """PUT the status object of run ``at.run`` at version ``at.ver`` with a new write
        token, conditioned on the object it replaces (``If-None-Match: *`` for none)."""
        write = token()
        etag = yield from self._put(
            self.keys.status_key(instance_id),
            instance_id,
            status_body(at.run, at.ver, write, payload),
            write=write,
            metadata={"cs-updated": updated.isoformat()} if updated else {},
            if_match=replacing.md5 if replacing is not None else NO_STATUS,
            replaces=replacing.write if replacing is not None else None,
        )
        return Etag(at.run, at.ver, write, etag)

    # -- read --------------------------------------------------------------------------------

    def _read(self, instance_id: str, fetch_payloads: bool = False) -> Plan[InstanceRecord | None]:
        """2 GETs: the record (only its first bytes unless ``fetch_payloads``) and the status
        (+1 GET of the whole record when a first custom status counts and is longer; +1 GET
        of the record when there is no status object; during a runtime change see
        `_load_pair`)."""
        key = self.keys.record_key(instance_id)
        pair = yield from self._load_pair(instance_id, payloads=fetch_payloads)
        if pair is None:
            return None
        record, status = pair
        record = yield from self._with_first_status(record, status, key)
        result = compose(record, status, fetch_payloads)
        self.known.put(instance_id, Etag.parse(instance_id, result.etag))
        return result

    def _load_pair(
        self, instance_id: str, *, payloads: bool
    ) -> Plan[tuple[Record, Status | None] | None]:
        """The record and its status object, from one and the same runtime change; ``None``
        when there is no record. No status object: 1 more GET of the record tells a create
        not sealed yet from a delete. A torn pair is read again after a short pause; if it
        stays torn, the reader settles it (`_settle`)."""
        key = self.keys.record_key(instance_id)
        for attempt in range(TORN_TRIES):
            record = yield from self._load_record(instance_id, key, payloads=payloads)
            if record is None:
                return None
            status = yield from self._load_status(instance_id)
            if status is None:
                again = yield from self._load_record(instance_id, key, payloads=payloads)
                return None if again is None else (again, None)
            if not torn(record, status):
                return record, status
            if attempt < TORN_WAITS:
                yield Pause(0.005 * 2**attempt)
            else:
                yield from self._settle(instance_id, key, record, status)
        raise BackendUnavailable(
            f"s3 read of {instance_id[:80]!r}: the record kept changing under the reader"
        )

    def _settle(self, instance_id: str, key: str, record: Record, status: Status) -> Plan[None]:
        """The committed VER wins: stamp the record read (its content unchanged) with the
        status object's VER, with ``If-Match`` on the record read. Any failure (the writer
        caught up, a delete, an unknown outcome) just means: read again."""
        whole = record
        if not record.has_payloads:
            loaded = yield from self._load_record(instance_id, key, payloads=True)
            if loaded is None:
                return
            whole = loaded
        if whole.s3_etag != record.s3_etag:
            return
        with contextlib.suppress(PreconditionFailed, ObjectMissing, UnknownWrite):
            yield from self._put(
                key,
                instance_id,
                record_body(replace(whole, ver=status.ver)),
                write=token(),
                if_match=whole.s3_etag,
            )

    def _with_first_status(self, record: Record, status: Status | None, key: str) -> Plan[Record]:
        """``record`` with its first custom status fetched, if that is the one that counts."""
        if record.has_custom_status or (status is not None and status.run == record.run):
            return record
        whole = yield from self._load_record(record.instance_id, key, payloads=True)
        return whole if whole is not None and whole.run == record.run else record

    # -- delete ------------------------------------------------------------------------------

    def _delete(self, instance_id: str) -> Plan[bool]:
        """1 HEAD + 2 DELETEs: the record first (the commit), then the status object. A crash
        between them leaves a status object without a record, which no reader sees."""
        key = self.keys.record_key(instance_id)
        response = yield from self._send(self.objects.head(key))
        existed = head_metadata(response, "head_object", self.bucket, instance_id) is not None
        self.known.pop(instance_id)
        if existed:
            yield from self._delete_object(key, instance_id)
        yield from self._delete_object(self.keys.status_key(instance_id), instance_id)
        return existed

    # -- custom status -----------------------------------------------------------------------

    def _write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[WriteResult]:
        """1 conditional PUT of the status object; 1 HEAD instead if its bytes are unchanged
        at ``etag``. Without an etag: the last etag this backend saw stands in (still 1
        request); otherwise, or if another writer got there first, read and retry until it
        lands: last write wins, never a conflict."""
        if etag is not None:
            tag = Etag.parse(instance_id, etag)
            try:
                return (yield from self._put_status(instance_id, payload, tag, now))
            except UnknownWrite:
                raise outcome_unknown("custom-status update", instance_id) from None
        known = self.known.get(instance_id)
        if known is not None:
            try:
                return (yield from self._put_status(instance_id, payload, known, now))
            except (ConcurrencyError, InstanceNotFound, UnknownWrite):
                self.known.pop(instance_id)
        return (yield from self._put_status_lww(instance_id, payload, now))

    def _put_status(
        self, instance_id: str, payload: Payload, tag: Etag, now: datetime
    ) -> Plan[WriteResult]:
        """Compare-and-swap on the status object's ETag; a HEAD with ``If-Match`` instead of
        the PUT when the body stored at ``tag`` with ``payload`` hashes to the tag's MD5."""
        if tag.md5 == md5(status_body(tag.run, tag.ver, tag.write, payload)):
            yield from self._head_status(instance_id, tag)
            return WriteResult(str(tag), written=False)
        try:
            new = yield from self._put_status_object(instance_id, tag, payload, now, replacing=tag)
        except PreconditionFailed:
            raise ConcurrencyError(instance_id, str(tag)) from None
        except ObjectMissing:
            raise InstanceNotFound(instance_id) from None
        self.known.put(instance_id, new)
        return WriteResult(str(new))

    def _head_status(self, instance_id: str, tag: Etag) -> Plan[None]:
        """Check that the status object is still at ``tag`` (ConcurrencyError if not)."""
        request = self.objects.head(self.keys.status_key(instance_id), if_match=tag.md5)
        response = yield from self._send(request)
        try:
            found = head_metadata(response, "head_object", self.bucket, instance_id)
        except PreconditionFailed:
            found = None
        if found is None:
            raise ConcurrencyError(instance_id, str(tag))

    def _put_status_lww(
        self, instance_id: str, payload: Payload, now: datetime
    ) -> Plan[WriteResult]:
        """Learn the status object's ETag, then a conditional PUT; again until it lands."""
        attempt = 0
        while True:
            tag, stored = yield from self._current_tag(instance_id)
            if stored == payload:
                return WriteResult(str(tag), written=False)
            try:
                return (yield from self._put_status(instance_id, payload, tag, now))
            except (ConcurrencyError, UnknownWrite):
                yield from contention_pause(attempt)  # ours may land after the other
                attempt += 1

    def _current_tag(self, instance_id: str) -> Plan[tuple[Etag, Payload | None]]:
        """The current etag and custom status, from 1 GET of the status object (create
        seals it for its run); no status object: a full read tells."""
        status = yield from self._load_status(instance_id)
        if status is not None:
            return Etag(status.run, status.ver, status.write, status.md5), status.payload
        current = yield from self._read(instance_id)
        if current is None:
            raise InstanceNotFound(instance_id)
        return Etag.parse(instance_id, current.etag), current.custom_status

    # -- runtime status ----------------------------------------------------------------------

    def _write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[str]:
        """2 GETs + 2 conditional PUTs: renew the status object's version, then the record
        (stamped with it). Without an etag: until it lands (last write wins)."""
        tag = Etag.parse(instance_id, etag) if etag is not None else None
        attempt = 0
        while True:
            try:
                new = yield from self._runtime_once(
                    instance_id, status, output, set_output, tag, now
                )
            except PreconditionFailed:
                if tag is not None:
                    raise ConcurrencyError(instance_id, etag) from None
            except UnknownWrite:
                if tag is not None:
                    raise outcome_unknown("runtime-status update", instance_id) from None
            else:
                self.known.put(instance_id, new)
                return str(new)
            yield from contention_pause(attempt)
            attempt += 1

    def _runtime_once(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        tag: Etag | None,
        now: datetime,
    ) -> Plan[Etag]:
        key = self.keys.record_key(instance_id)
        pair = yield from self._load_pair(instance_id, payloads=True)
        if pair is None:
            raise InstanceNotFound(instance_id)
        record, current = pair
        seen = Etag.parse(instance_id, compose(record, current, False).etag)
        if tag is not None and tag != seen:
            raise ConcurrencyError(instance_id, str(tag))
        kept, kept_at = current_status(record, current)
        try:
            new = yield from self._put_status_object(
                instance_id, Etag(record.run, token(), "", ""), kept, kept_at, replacing=seen
            )
        except ObjectMissing:
            raise PreconditionFailed from None  # deleted in between: the next try says so
        changed = replace(
            record,
            ver=new.ver,
            runtime_status=status,
            last_updated_at=now,
            output=output if set_output else record.output,
        )
        try:
            yield from self._put(
                key, instance_id, record_body(changed), write=token(), if_match=record.s3_etag
            )
        except ObjectMissing:
            raise InstanceNotFound(instance_id) from None  # deleted after the status commit
        return new

    # -- query -------------------------------------------------------------------------------

    def query(self, query: InstanceQuery) -> Plan[RecordPage]:
        """Scan by key prefix and filter here: 1 ListObjectsV2 per 1000 instances under the
        id prefix, 1 ranged GET of each record's header, 1 GET of the status object (plus
        the full record when ``fetch_payloads``) per match. The token holds the last key."""
        return (yield from self._page(query, None))

    def purge_by(self, query: InstanceQuery) -> Plan[int]:
        """Delete every match, and every unreadable record under the id prefix (its filters
        cannot be evaluated; deleting it is the only way to be rid of it)."""
        doomed: list[str] = []
        corrupt: list[str] = []  # their keys: a hashed key cannot be turned back into its id
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = yield from self._page(page_query, corrupt)
            doomed.extend(record.instance_id for record in page.items)
            if page.continuation is None:
                break
            page_query = replace(page_query, continuation=page.continuation)
        deleted = 0
        for instance_id in doomed:
            deleted += bool((yield from self._delete(instance_id)))
        for key in corrupt:
            yield from self._delete_object(self.keys.status_key_of(key), None)
            yield from self._delete_object(key, None)
        return deleted + len(corrupt)

    def _page(self, query: InstanceQuery, corrupt: list[str] | None) -> Plan[RecordPage]:
        """One page of matches; unreadable records are left out with a warning, reported in
        ``unreadable``, and their keys collected in ``corrupt`` when given."""
        prefix = self.keys.record_listing_prefix(query.prefix or "")
        after = _decode_after(query.continuation, prefix)
        items: list[InstanceRecord] = []
        unreadable: list[str] = []
        while True:
            response = yield from self._send(self.objects.list_page(prefix, start_after=after))
            listing = listed_keys(response, "list_objects_v2", self.bucket)
            keys = listing.keys
            for index, key in enumerate(keys):
                try:
                    found = yield from self._match(key, query)
                except CorruptRecord as exc:
                    skip_unreadable(exc, unreadable)
                    found = None
                    if corrupt is not None:
                        corrupt.append(key)
                if found is not None:
                    items.append(found)
                if len(items) >= query.page_size:
                    more = listing.truncated or index < len(keys) - 1
                    return RecordPage(
                        items, encode_token({"after": key}) if more else None, unreadable
                    )
            if not listing.truncated or not keys:
                return RecordPage(items, None, unreadable)
            after = keys[-1]

    def _match(self, key: str, query: InstanceQuery) -> Plan[InstanceRecord | None]:
        """The record at ``key`` if it matches; its status is fetched only for matches."""
        hint = self.keys.id_hint(key)
        found = yield from self._get(key, hint, head_only=True)
        if found is None:
            return None
        instance_id = stored_id(hint, found.body)
        if self.keys.record_key(instance_id) != key:  # copied under another id's key
            raise CorruptRecord(hint, "record object belongs to another instance")
        record = parse_record(instance_id, found.body, found.etag, found.complete)
        # the last update may be in the status object: that range is checked after (the store)
        before_status = replace(query, updated_from=None, updated_to=None)
        if not before_status.matches(compose(record, None, False)):
            return None
        if query.fetch_payloads:
            whole = yield from self._load_record(instance_id, key, payloads=True)
            if whole is None:
                return None
            record = whole
        status = yield from self._load_status(instance_id)
        if status is None or torn(record, status):  # rare: mid-create or delete, or torn
            pair = yield from self._load_pair(instance_id, payloads=query.fetch_payloads)
            if pair is None:
                return None
            record, status = pair
            if not query.matches(compose(record, status, False)):
                return None
        record = yield from self._with_first_status(record, status, key)
        return compose(record, status, query.fetch_payloads)


def _decode_after(continuation: str | None, prefix: str) -> str | None:
    """The last key of the previous page; it must lie under this query's listing prefix."""
    if continuation is None:
        return None
    after = decode_token(continuation).get("after")
    if not isinstance(after, str) or not after.startswith(prefix):
        raise InvalidContinuationToken("continuation token is not valid for this query")
    return after
