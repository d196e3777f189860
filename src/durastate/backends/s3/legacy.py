"""s3://BUCKET/PREFIX — instances as two objects each, conditional writes for the etag.

Layout (``P`` is the prefix, ``K`` the escaped instance id, see `instance_key`)::

    P/records/K   JSON header line + first custom-status bytes + input bytes + output bytes
                  (written by create and by runtime-status changes; never by a
                  custom-status update); the header's ``ver`` is the VER it goes with
    P/status/K    b"ds2 RUN VER WRITE ENCODING\\n" + custom-status bytes;
                  metadata ``cs-updated``, ``w`` (= WRITE) and ``p`` (the WRITE it replaced)

The status object is the commit point of every write after create. Its S3 ETag is the MD5
of its body, and the body's small header names the run, a version token that every
runtime-status change renews, and a token new to each write, so every write gives the
object a new ETag. The etag handed to callers is ``RUN.VER.WRITE.MD5``:

- a custom-status update is one ``PutObject`` with ``If-Match: MD5`` and no read before it;
  if the body stored at the caller's etag (its header rebuilt from RUN, VER and WRITE, plus
  the new bytes) hashes to ``MD5``, the bytes are unchanged and one HEAD with ``If-Match``
  replaces the PUT (only S3 knows whether another process wrote since);
- a runtime-status change (rare) reads both objects, renews VER with a conditional PUT of
  the status object (the commit), then rewrites the record, stamped with that VER, with
  ``If-Match`` on its ETag;
- a read gets the record, then the status object. If their VERs differ (a runtime change
  between its two PUTs: the new etag with the old runtime status, or the reverse), it
  reads again after a short pause, so one etag always stands for one content. If the pair
  stays torn (~150 ms: the writer died between its PUTs, or is that slow), the committed VER
  wins: the reader rewrites the record at that VER, its content unchanged, with
  ``If-Match`` (`S3Backend._settle`); the change is lost, and a late record PUT of its
  writer fails its ``If-Match``. A record without ``ver`` (written before the record
  carried it) is taken as consistent. No status object beside the record: 1 more GET of
  the record tells a create not sealed yet (record still there) from a delete (gone);
- delete removes the record (the commit), then the status object: readers never see the
  record without its status object in mid-delete. A crash between the two leaves a status
  object without a record, which no reader or listing shows, create replaces, and a second
  delete removes;
- create is ``If-None-Match: *`` (a restart: ``If-Match``) on the record, which carries the
  run's first custom status, so the new run is visible whole at once; then a conditional
  PUT seals the status object for the new run (`S3Backend._seal`) at the record's VER
  without undoing a write of the new run that got there first (the etag of a run not
  sealed yet carries the record's VER, so such a write keeps the two in step).

Every PUT carries its write token in metadata ``w``, and a status write the token it
replaced in ``p``. When botocore retried a conditional PUT after an attempt that may have
reached S3 (a lost answer, a timeout, a 5xx other than 503) and the retry got 412, the first
attempt may have landed: a HEAD tells, by the tokens, whether the object holds our write or
the one write that replaced it (success), or something else (``BackendUnavailable``: the
outcome is unknown; never a conflict that ``update()`` would re-apply). A create tells by
the run id in the record it finds.

Costs in S3 requests are listed in docs/s3.md and on each method.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Self, TypeVar

import boto3  # noqa: F401 - imported eagerly so a missing SDK names the 'aws' extra
import botocore.exceptions

from durastate.backends._aws import (
    AttemptTracker,
    AwsOptions,
    aws_client,
    contention_pause,
    error_code,
    guard,
    outcome_unknown,
    refused,
    safe_endpoint,
)
from durastate.backends.s3.keys import (
    HASH_SUFFIX_BYTES as _HASH_SUFFIX_BYTES,
)
from durastate.backends.s3.keys import (
    MAX_KEY_BYTES,
    escape_id,
    instance_key,
    unescape_id,
)
from durastate.backends.s3.keys import (
    listing_prefix as _listing_prefix,
)
from durastate.core.backend import Backend, read_in_threads, skip_unreadable
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
from durastate.core.tokens import InvalidContinuationToken, decode_token, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Backend", "escape_id", "instance_key"]

_HEADER_RANGE = 8192  # first bytes fetched when only the record's header is wanted
_MAX_RETRIES = 16  # last-write-wins loops give up (ConcurrencyError) after this many tries
_NO_STATUS = "0"  # the MD5 part of an etag when the run has no status object yet
_KNOWN_CAPACITY = 4096
_TORN_WAITS = 5  # torn reads waited out (5, 10, 20, 40, 80 ms) before the reader settles
_TORN_TRIES = 10  # reads of one instance that keep finding a torn pair before giving up
_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")  # what botocore accepts (S3 is stricter)

# -- the etag --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Etag:
    """``RUN.VER.WRITE.MD5``: the run, the runtime-status version, the write that made the
    status object, and the status object's ETag (all `_NO_STATUS` when there is none)."""

    run: str
    ver: str
    write: str
    md5: str

    def __str__(self) -> str:
        return f"{self.run}.{self.ver}.{self.write}.{self.md5}"

    @classmethod
    def parse(cls, instance_id: str, etag: str) -> _Etag:
        parts = etag.split(".")
        if len(parts) != 4 or not all(parts):
            raise ConcurrencyError(instance_id, etag)  # not ours, so it cannot match
        return cls(*parts)


def _token() -> str:
    return secrets.token_hex(6)


def _landed(metadata: Mapping[str, str], write: str, replaces: str | None) -> bool | None:
    """Did the write ``write`` (conditioned on the write ``replaces``) land, judging by the
    metadata of the object a retry met?

    ``True`` when the object holds it (``w``) or the write that replaced it (``p``);
    ``False`` when the write that followed ``replaces`` is another's (a conditional write
    could only have landed right there); ``None`` when the object's history cannot tell.
    """
    if write in (metadata.get("w"), metadata.get("p")):
        return True
    if replaces is not None and metadata.get("p") == replaces:
        return False
    return None


def _md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _strip_etag(s3_etag: str) -> str:
    return s3_etag.strip('"')


# -- object bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Status:
    """A parsed status object: its header, the custom status, and when that was set."""

    run: str
    ver: str
    write: str
    payload: Payload | None
    updated_at: datetime | None
    md5: str


def _status_body(run: str, ver: str, write: str, payload: Payload | None) -> bytes:
    encoding = urllib.parse.quote(payload.encoding, safe="+-_.~") if payload else "-"
    header = f"ds2 {run} {ver} {write} {encoding}\n".encode("ascii")
    return header + (payload.data if payload else b"")


def _parse_status(instance_id: str, body: bytes, md5: str, meta: Mapping[str, str]) -> _Status:
    header, sep, data = body.partition(b"\n")
    fields = header.decode("ascii", "replace").split(" ")
    if not sep or len(fields) != 5 or fields[0] != "ds2" or not all(fields):
        raise CorruptRecord(instance_id, "status object has no valid header")
    _, run, ver, write, encoding = fields
    payload = (
        None if encoding == "-" else Payload.from_encoding(data, urllib.parse.unquote(encoding))
    )
    updated = meta.get("cs-updated")
    return _Status(
        run, ver, write, payload, _parse_time(instance_id, updated) if updated else None, md5
    )


@dataclass(frozen=True, slots=True)
class _Record:
    """A parsed record object; ``input``/``output`` are ``None`` when not fetched.

    ``custom_status`` is the run's first custom status, written with the record by create
    (one PUT, so a new run is visible whole or not at all); it counts until the run has a
    status object of its own. ``has_custom_status`` says whether its bytes were fetched.
    """

    instance_id: str
    run: str
    name: str
    runtime_status: RuntimeStatus
    created_at: datetime
    last_updated_at: datetime
    input: Payload | None
    output: Payload | None
    s3_etag: str
    has_payloads: bool
    custom_status: Payload | None = None
    custom_status_updated_at: datetime | None = None
    has_custom_status: bool = True
    ver: str | None = None  # the status VER this record goes with; None: written before VER


def _payload_head(payload: Payload | None) -> list[Any] | None:
    return None if payload is None else [payload.encoding, len(payload.data)]


def _record_body(record: _Record) -> bytes:
    header = {
        "v": 1,
        "id": record.instance_id,
        "run": record.run,
        "name": record.name,
        "rs": record.runtime_status.value,
        "created": record.created_at.isoformat(),
        "updated": record.last_updated_at.isoformat(),
        "cs": _payload_head(record.custom_status),
        "csu": _iso(record.custom_status_updated_at),
        "in": _payload_head(record.input),
        "out": _payload_head(record.output),
    }
    if record.ver is not None:
        header["ver"] = record.ver
    line = json.dumps(header, separators=(",", ":")).encode("ascii")  # ensure_ascii: no \n
    parts = [line, b"\n"]
    payloads = (record.custom_status, record.input, record.output)
    parts.extend(p.data for p in payloads if p is not None)
    return b"".join(parts)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_time(instance_id: str, text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CorruptRecord(instance_id, f"bad timestamp {text[:40]!r}") from None


_BODY_FIELDS = ("cs", "in", "out")  # the payloads after the header line, in this order


def _split_payloads(header: dict[str, Any], rest: bytes, complete: bool) -> list[Payload | None]:
    """The payloads of ``_BODY_FIELDS``; with ``complete=False`` only those fully in ``rest``
    (the others come back as ``None``; the caller knows which it needs)."""
    payloads: list[Payload | None] = []
    offset = 0
    for field in _BODY_FIELDS:
        head = header.get(field)
        if head is None:
            payloads.append(None)
            continue
        encoding, size = head
        if not isinstance(encoding, str) or not isinstance(size, int) or size < 0:
            raise ValueError(f"bad payload head for {field!r}")
        end = offset + size
        payloads.append(
            Payload.from_encoding(rest[offset:end], encoding) if end <= len(rest) else None
        )
        offset = end
    if complete and offset != len(rest):
        raise ValueError("payload lengths do not match the object size")
    return payloads


def _parse_record(instance_id: str, body: bytes, s3_etag: str, complete: bool) -> _Record:
    """Parse the record object of ``instance_id``; ``complete=False``: only its first bytes.

    A record whose header names another instance (an object copied or moved to this key)
    is corrupt for this instance: it must never read as the other one.
    """
    line, _, rest = body.partition(b"\n")
    try:
        header = json.loads(line)
        stored_id = header["id"]
    except (ValueError, KeyError, TypeError):
        raise CorruptRecord(instance_id, "record object has no valid header") from None
    if stored_id != instance_id:
        raise CorruptRecord(instance_id, "record object belongs to another instance")
    try:
        custom, inp, out = _split_payloads(header, rest, complete)
        custom_at = header.get("csu")
        return _Record(
            instance_id=instance_id,
            run=str(header["run"]),
            name=str(header["name"]),
            runtime_status=RuntimeStatus(header["rs"]),
            created_at=_parse_time(instance_id, header["created"]),
            last_updated_at=_parse_time(instance_id, header["updated"]),
            input=inp if complete else None,
            output=out if complete else None,
            s3_etag=s3_etag,
            has_payloads=complete,
            custom_status=custom,
            custom_status_updated_at=_parse_time(instance_id, custom_at) if custom_at else None,
            has_custom_status=header.get("cs") is None or custom is not None,
            ver=_parse_ver(header.get("ver")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"record object is malformed ({type(exc).__name__})"
        raise CorruptRecord(instance_id, reason) from None


def _parse_ver(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.isalnum():
        raise ValueError("bad ver")
    return value


def _torn(record: _Record, status: _Status | None) -> bool:
    """Do the two objects come from different runtime changes (a reader caught a runtime
    change between its two PUTs, or its writer died there)? Records written before the
    record carried VER, and statuses of another run (not sealed yet), cannot be torn."""
    return (
        status is not None
        and status.run == record.run
        and record.ver is not None
        and record.ver != status.ver
    )


def _current_status(
    record: _Record, status: _Status | None
) -> tuple[Payload | None, datetime | None]:
    """The run's custom status and when it was set: its status object's, or, until it has
    one (a status object of another run is an older run's), the one created with it."""
    if status is not None and status.run == record.run:
        return status.payload, status.updated_at
    return record.custom_status, record.custom_status_updated_at


def _compose(record: _Record, status: _Status | None, fetch_payloads: bool) -> InstanceRecord:
    """The caller's view of a record and the status object found beside it."""
    custom, updated = _current_status(record, status)
    if status is not None and (status.run == record.run or record.ver is None):
        etag = _Etag(record.run, status.ver, status.write, status.md5)
    elif status is not None:  # not sealed yet: a CAS with this etag writes the record's VER
        etag = _Etag(record.run, str(record.ver), status.write, status.md5)
    else:
        etag = _Etag(record.run, record.ver or _NO_STATUS, _NO_STATUS, _NO_STATUS)
    last = max(record.last_updated_at, updated) if updated else record.last_updated_at
    return InstanceRecord(
        instance_id=record.instance_id,
        name=record.name,
        runtime_status=record.runtime_status,
        created_at=record.created_at,
        last_updated_at=last,
        custom_status_updated_at=updated,
        etag=str(etag),
        custom_status=custom,
        input=record.input if fetch_payloads else None,
        output=record.output if fetch_payloads else None,
    )


# -- S3 calls --------------------------------------------------------------------------------


class _PreconditionFailed(Exception):
    """S3 answered 412 (or 409 ConditionalRequestConflict) to a conditional request."""


class _Missing(Exception):
    """S3 answered 404: no such key."""


class _OutcomeUnknown(Exception):
    """A retried conditional PUT got 412, and the object holds a write that is not ours.

    An earlier attempt may have landed and since been overwritten by more than one write,
    or never have landed: the caller cannot tell a conflict from a success.
    """


_T = TypeVar("_T")
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_CONFIG_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
)


@dataclass(frozen=True, slots=True)
class _Object:
    body: bytes
    etag: str
    metadata: Mapping[str, str]
    complete: bool


def _flag(value: Any) -> bool:
    """A boolean option that may arrive as a string from a URL or the environment."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ConfigurationError(f"create_bucket must be true or false, not {value!r}")
        return lowered in {"1", "true", "yes", "on"}
    return bool(value)


class _Known:
    """The last etag this backend saw per instance, so an update without one needs no read."""

    def __init__(self, capacity: int = _KNOWN_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Etag] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, instance_id: str) -> _Etag | None:
        return self._entries.get(instance_id)

    def set(self, instance_id: str, etag: _Etag) -> None:
        with self._lock:
            self._entries[instance_id] = etag
            self._entries.move_to_end(instance_id)
            if len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._entries.pop(instance_id, None)


class S3Backend(Backend):
    """Instances in an S3 bucket (or moto_server, MinIO...); see the module docstring."""

    scheme = "s3"
    capabilities = Capabilities(
        max_payload_bytes=None,  # 5 GB per object; input and output share the record
        skips_unchanged=True,
        native_query=False,
        cross_process=True,
        max_instance_id_length=512,
        extra={
            "custom_status_update": "1 PutObject (0 when unchanged with a current etag)",
            "query": "1 ListObjectsV2 per 1000 instances + 1-2 GetObject per instance",
        },
    )

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        aws: AwsOptions | None = None,
        create_bucket: bool = True,
        client: S3Client | None = None,
    ) -> None:
        if not _BUCKET_NAME.match(bucket):  # not echoed: it may be a pasted secret
            raise ConfigurationError(
                "s3:// needs a bucket name of 1 to 255 of a-z A-Z 0-9 . - _ "
                f"(got {len(bucket)} characters): s3://BUCKET/PREFIX"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        base = f"{self.prefix}/" if self.prefix else ""
        self._records = f"{base}records/"
        self._statuses = f"{base}status/"
        self._budget = MAX_KEY_BYTES - len(self._records.encode("utf-8"))
        if self._budget < 2 * _HASH_SUFFIX_BYTES:
            raise ConfigurationError(f"s3 prefix {self.prefix[:40]!r}... is too long")
        self._options = aws or AwsOptions()
        self.client: S3Client = client or aws_client("s3", self._options)
        self._create_bucket = create_bucket
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()
        self._known = _Known()
        self._attempts = AttemptTracker()
        self._attempts.watch(self.client, "needs-retry.s3.PutObject")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``s3://BUCKET/PREFIX?region=...&endpoint_url=...``; keyword options win.

        Options: the AWS ones (`AwsOptions`) and ``create_bucket`` (default true).
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != cls.scheme or not parts.netloc:
            raise ConfigurationError("expected a URL of the form s3://BUCKET/PREFIX")
        if "@" in parts.netloc:
            raise ConfigurationError("s3:// URLs take no credentials: pass them as options")
        merged: dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query))
        merged.update(options)
        aws, rest = AwsOptions.pick(merged)
        create_bucket = _flag(rest.pop("create_bucket", True))
        if rest:
            raise ConfigurationError(f"unknown s3 option(s): {', '.join(sorted(rest))}")
        prefix = urllib.parse.unquote(parts.path)
        return cls(parts.netloc, prefix, aws=aws, create_bucket=create_bucket)

    def __repr__(self) -> str:
        endpoint = safe_endpoint(self._options.endpoint_url)
        return f"S3Backend(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    def close(self) -> None:
        self.client.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, instance_id: str) -> str:
        return self._records + instance_key(instance_id, self._budget)

    def _status_key(self, instance_id: str) -> str:
        return self._statuses + instance_key(instance_id, self._budget)

    def _call(self, operation: str, instance_id: str | None, fn: Callable[[], _T]) -> _T:
        """One request; 5xx or network: BackendUnavailable, 412: _Precondition, 404: _Missing"""
        try:
            with guard(operation, instance_id):
                return fn()
        except botocore.exceptions.ClientError as exc:
            self._raise_for(exc, operation)

    def _raise_for(self, exc: botocore.exceptions.ClientError, operation: str) -> NoReturn:
        code = error_code(exc)
        if code in _PRECONDITION_CODES:
            raise _PreconditionFailed from None
        if code in _MISSING_CODES:
            raise _Missing from None
        if code in _CONFIG_CODES:
            raise ConfigurationError(
                f"s3 {operation} on bucket {self.bucket!r} was refused: {code}"
            ) from None
        raise refused("S3", operation, None, exc) from None

    def _ready(self) -> None:
        """Create the bucket on first use (unless ``create_bucket=False``)."""
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if not self._bucket_ready and self._create_bucket:
                self._ensure_bucket()
            self._bucket_ready = True

    def _ensure_bucket(self) -> None:
        try:
            self._call("head_bucket", None, lambda: self.client.head_bucket(Bucket=self.bucket))
            return
        except _Missing:
            pass
        region = self._options.resolved_region()
        config: dict[str, Any] = {}
        if region and region != "us-east-1":
            config["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with guard("create_bucket"):
                self.client.create_bucket(Bucket=self.bucket, **config)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                self._raise_for(exc, "create_bucket")

    def _get(self, key: str, instance_id: str, *, head_only: bool = False) -> _Object | None:
        """GET an object (only its first bytes when ``head_only``); ``None`` if absent."""
        kwargs: dict[str, Any] = {"Range": f"bytes=0-{_HEADER_RANGE - 1}"} if head_only else {}
        try:
            response = self._call(
                "get_object",
                instance_id,
                lambda: self.client.get_object(Bucket=self.bucket, Key=key, **kwargs),
            )
            body = self._call("get_object", instance_id, response["Body"].read)
        except _Missing:
            return None
        total = response.get("ContentRange", "").rpartition("/")[2]
        complete = not head_only or not total or int(total) == len(body)
        if head_only and not complete and b"\n" not in body:
            return self._get(key, instance_id)  # a header longer than the range: rare
        return _Object(body, _strip_etag(response["ETag"]), response["Metadata"], complete)

    def _put(
        self,
        key: str,
        instance_id: str,
        body: bytes,
        *,
        write: str,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        replaces: str | None = None,
        verify: bool = True,
    ) -> str:
        """PUT with ``If-Match`` (or ``If-None-Match: *`` for `_NO_STATUS`); the new ETag.

        ``write`` is this write's token, stored as metadata ``w``; ``replaces``, the token of
        the write it is conditioned on, as ``p``. A 412 after an attempt that may have landed
        (see `AttemptTracker`) is checked with a HEAD when ``verify``: our token there (as
        ``w``, or as ``p`` of a write that followed ours) means our write landed; another
        means `_OutcomeUnknown`.
        """
        meta = {**(metadata or {}), "w": write}
        if replaces is not None:
            meta["p"] = replaces
        kwargs: dict[str, Any] = {"Metadata": meta}
        if if_match == _NO_STATUS:
            kwargs["IfNoneMatch"] = "*"
        elif if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        self._attempts.reset()
        try:
            response = self._call(
                "put_object",
                instance_id,
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs),
            )
        except _PreconditionFailed:
            if not (verify and self._attempts.maybe_applied):
                raise
            landed = self._look_up_write(key, instance_id, write, replaces)
            if landed is None:
                raise _OutcomeUnknown from None
            if not landed:
                raise
            return _md5(body)  # a single-part object's ETag is the MD5 of its body
        return _strip_etag(response["ETag"])

    def _look_up_write(
        self, key: str, instance_id: str, write: str, replaces: str | None
    ) -> bool | None:
        """1 HEAD: did the write ``write`` (conditioned on the write ``replaces``) land?

        ``None`` also when the object is gone. See `_landed` (module level) for the rule.
        """
        try:
            response = self._call(
                "head_object",
                instance_id,
                lambda: self.client.head_object(Bucket=self.bucket, Key=key),
            )
        except _Missing:
            return None
        return _landed(response.get("Metadata", {}), write, replaces)

    def _delete_object(self, key: str, instance_id: str | None) -> None:
        self._call(
            "delete_object",
            instance_id,
            lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
        )

    def _load_record(self, instance_id: str, key: str, *, payloads: bool) -> _Record | None:
        obj = self._get(key, instance_id, head_only=not payloads)
        if obj is None:
            return None
        return _parse_record(instance_id, obj.body, obj.etag, obj.complete)

    def _load_status(self, instance_id: str, key: str) -> _Status | None:
        obj = self._get(key, instance_id)
        if obj is None:
            return None
        return _parse_status(instance_id, obj.body, obj.etag, obj.metadata)

    # -- create / read / delete -------------------------------------------------------------

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        """1 conditional PUT of the record, which carries the first custom status, then 1
        conditional PUT sealing the status object for the new run (`_seal`).

        The record PUT is the commit: readers see the new run whole or not at all. The seal
        is conditional, so it never undoes a compare-and-swap that got in before it. A
        restart over a terminal run costs +2 GETs (the old record, the status object).
        """
        self._ready()
        record = _Record(
            instance_id=new.instance_id,
            run=_token(),
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
            ver=_token(),  # the seal gives the status object this VER
        )
        key = self._key(new.instance_id)
        replacing = False
        for _ in range(_MAX_RETRIES):
            outcome = self._insert_record(record, key, restart_if_terminal)
            replacing = replacing or outcome == "replacing"
            if outcome == "ours":
                return str(self._seal(record, assume_absent=not replacing))
        raise ConcurrencyError(new.instance_id)

    def _insert_record(
        self, record: _Record, key: str, restart: bool
    ) -> Literal["ours", "replacing", "again"]:
        """Put the record if absent, or over a terminal run.

        ``"ours"``: the record in place is ours; ``"replacing"``: a replace of a terminal run
        was sent and its outcome is not known yet; ``"again"``: the key changed, try again.
        The record names its run (random per create), so a 412 caused by our own write (it
        landed, its answer was lost, botocore retried) is recognised in the record found.
        """
        body = _record_body(record)
        try:
            self._put(
                key, record.instance_id, body, write=_token(), if_match=_NO_STATUS, verify=False
            )
            return "ours"
        except _PreconditionFailed:
            maybe_ours = self._attempts.maybe_applied
        existing = self._load_record(record.instance_id, key, payloads=False)
        if existing is None:
            return "again"  # deleted in between
        if existing.run == record.run:
            return "ours"  # our own write, answered 412 on botocore's retry
        if not (restart and existing.runtime_status.is_terminal):
            if maybe_ours:  # ours may have landed and been replaced since: cannot tell
                raise outcome_unknown("create", record.instance_id)
            raise InstanceExists(record.instance_id, existing.runtime_status.value)
        # a 412 or 404 here: changed or deleted in between, or ours landed; the next try tells
        with contextlib.suppress(_PreconditionFailed, _Missing):
            self._put(
                key,
                record.instance_id,
                body,
                write=_token(),
                if_match=existing.s3_etag,
                verify=False,
            )
        return "replacing"

    def _seal(self, record: _Record, *, assume_absent: bool) -> _Etag:
        """Give the new run its status object, so etags of any earlier run fail from now on.

        Readers already see the new run whole (its record carries its first custom status,
        and a status object of another run does not count). The status object is written
        only if absent or of another run (an earlier run's, or an orphan left by a write
        that raced a delete): a writer of the new run that got there first keeps its write.
        ``assume_absent`` (a new id) tries ``If-None-Match: *`` before looking. Until the
        seal lands, a compare-and-swap with an etag of a replaced (terminal) run can still
        land on that run's status object, where nobody sees it.
        """
        key = self._status_key(record.instance_id)
        current: _Status | None = None
        attempt = 0
        while True:
            if attempt or not assume_absent:
                current = self._load_status(record.instance_id, key)
                if current is not None and current.run == record.run:
                    return _Etag(record.run, current.ver, current.write, current.md5)
            try:
                etag = self._put_status_object(
                    record.instance_id,
                    _Etag(record.run, record.ver or _token(), "", ""),
                    record.custom_status,
                    record.custom_status_updated_at,
                    replacing=current,
                )
            except (_PreconditionFailed, _Missing, _OutcomeUnknown):
                contention_pause(attempt)
                attempt += 1
                continue  # the next look tells whether another writer (or ours) is there
            self._known.set(record.instance_id, etag)
            return etag

    def _put_status_object(
        self,
        instance_id: str,
        at: _Etag,
        payload: Payload | None,
        updated: datetime | None,
        *,
        replacing: _Status | _Etag | None,
    ) -> _Etag:
        """PUT the status object of run ``at.run`` at version ``at.ver`` with a new write
        token, conditioned on the object it replaces (``If-None-Match: *`` for none)."""
        write = _token()
        md5 = self._put(
            self._status_key(instance_id),
            instance_id,
            _status_body(at.run, at.ver, write, payload),
            write=write,
            metadata={"cs-updated": updated.isoformat()} if updated else {},
            if_match=replacing.md5 if replacing is not None else _NO_STATUS,
            replaces=replacing.write if replacing is not None else None,
        )
        return _Etag(at.run, at.ver, write, md5)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """No batched read in this service: a few reads at once on threads."""
        return read_in_threads(self, instance_ids, fetch_payloads)

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        """2 GETs: the record (only its first bytes unless ``fetch_payloads``) and the status
        (+1 GET of the whole record when a first custom status counts and is longer; +1 GET
        of the record when there is no status object; during a runtime change see
        `_load_pair`)."""
        self._ready()
        key = self._key(instance_id)
        pair = self._load_pair(instance_id, payloads=fetch_payloads)
        if pair is None:
            return None
        record, status = pair
        result = _compose(self._with_first_status(record, status, key), status, fetch_payloads)
        self._known.set(instance_id, _Etag.parse(instance_id, result.etag))
        return result

    def _load_pair(
        self, instance_id: str, *, payloads: bool
    ) -> tuple[_Record, _Status | None] | None:
        """The record and its status object, from one and the same runtime change; ``None``
        when there is no record.

        No status object beside a record: a create before its seal, or a delete (record
        first, then status object) that ran between the two GETs; 1 more GET of the record
        tells (gone: no instance). A torn pair (the record's VER is not the status object's:
        a runtime change between its two PUTs) is read again after a short pause; if it
        stays torn, the reader settles it (`_settle`).
        """
        key, status_key = self._key(instance_id), self._status_key(instance_id)
        for attempt in range(_TORN_TRIES):
            record = self._load_record(instance_id, key, payloads=payloads)
            if record is None:
                return None
            status = self._load_status(instance_id, status_key)
            if status is None:
                again = self._load_record(instance_id, key, payloads=payloads)
                return None if again is None else (again, None)
            if not _torn(record, status):
                return record, status
            if attempt < _TORN_WAITS:
                time.sleep(0.005 * 2**attempt)
            else:
                self._settle(instance_id, key, record, status)
        raise BackendUnavailable(
            f"s3 read of {instance_id[:80]!r}: the record kept changing under the reader"
        )

    def _settle(self, instance_id: str, key: str, record: _Record, status: _Status) -> None:
        """The committed VER wins: stamp the record read (its content unchanged) with the
        status object's VER, with ``If-Match`` on the record read.

        The runtime change that committed that VER and has not rewritten the record by now is
        lost (its writer died, or is slow: its own ``If-Match`` on the record then fails, and
        it reports a conflict or, without an etag, tries again); the etag keeps standing for
        the content readers were shown. Any failure (the writer caught up, a delete, an
        unknown outcome) just means: read again.
        """
        whole = record if record.has_payloads else self._load_record(
            instance_id, key, payloads=True
        )
        if whole is None or whole.s3_etag != record.s3_etag:
            return
        with contextlib.suppress(_PreconditionFailed, _Missing, _OutcomeUnknown):
            self._put(
                key,
                instance_id,
                _record_body(replace(whole, ver=status.ver)),
                write=_token(),
                if_match=whole.s3_etag,
            )

    def _with_first_status(self, record: _Record, status: _Status | None, key: str) -> _Record:
        """``record`` with its first custom status fetched, if that is the one that counts."""
        if record.has_custom_status or (status is not None and status.run == record.run):
            return record
        whole = self._load_record(record.instance_id, key, payloads=True)
        return whole if whole is not None and whole.run == record.run else record

    def delete(self, instance_id: str) -> bool:
        """1 HEAD + 2 DELETEs: the record first (the commit: a reader that finds the record
        but no status object looks at the record again, see `_load_pair`), then the status
        object.

        A crash between them leaves a status object without a record: readers and listings
        see no instance, create replaces it (`_seal`), and deleting again removes it.
        """
        self._ready()
        key = self._key(instance_id)
        try:
            self._call(
                "head_object",
                instance_id,
                lambda: self.client.head_object(Bucket=self.bucket, Key=key),
            )
            existed = True
        except _Missing:
            existed = False
        self._known.forget(instance_id)
        if existed:
            self._delete_object(key, instance_id)
        self._delete_object(self._status_key(instance_id), instance_id)
        return existed

    # -- custom status ----------------------------------------------------------------------

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        """1 conditional PUT of the status object; 1 HEAD instead if its bytes are unchanged
        at ``etag`` (only S3 can tell whether another process wrote since: a stale etag fails).

        Without an etag: the last etag this backend saw for the instance stands in for it
        (still 1 PUT, or 1 HEAD if unchanged); otherwise, or if another writer got there
        first, read (2 GETs) and retry until it lands — last write wins, never a conflict.
        """
        self._ready()
        if etag is not None:
            tag = _Etag.parse(instance_id, etag)
            try:
                return self._put_status(instance_id, payload, tag, now)
            except _OutcomeUnknown:
                raise outcome_unknown("custom-status update", instance_id) from None
        known = self._known.get(instance_id)
        if known is not None:
            try:
                return self._put_status(instance_id, payload, known, now)
            except (ConcurrencyError, InstanceNotFound, _OutcomeUnknown):
                self._known.forget(instance_id)
        return self._put_status_lww(instance_id, payload, now)

    def _put_status(
        self,
        instance_id: str,
        payload: Payload,
        tag: _Etag,
        now: datetime,
    ) -> WriteResult:
        """Compare-and-swap on the status object's ETag.

        The object stored at ``tag`` is ``_status_body(RUN, VER, WRITE, its payload)``; if
        that body with ``payload`` hashes to the tag's MD5, the bytes are unchanged, and a
        HEAD with ``If-Match`` checks that the object is still at ``tag`` instead of a PUT.
        """
        if tag.md5 == _md5(_status_body(tag.run, tag.ver, tag.write, payload)):
            self._head_status(instance_id, tag)
            return WriteResult(str(tag), written=False)
        try:
            new = self._put_status_object(instance_id, tag, payload, now, replacing=tag)
        except _PreconditionFailed:
            raise ConcurrencyError(instance_id, str(tag)) from None
        except _Missing:
            raise InstanceNotFound(instance_id) from None
        self._known.set(instance_id, new)
        return WriteResult(str(new))

    def _head_status(self, instance_id: str, tag: _Etag) -> None:
        """Check that the status object is still at ``tag`` (ConcurrencyError if not)."""
        key = self._status_key(instance_id)
        try:
            self._call(
                "head_object",
                instance_id,
                lambda: self.client.head_object(
                    Bucket=self.bucket, Key=key, IfMatch=f'"{tag.md5}"'
                ),
            )
        except (_PreconditionFailed, _Missing):
            raise ConcurrencyError(instance_id, str(tag)) from None

    def _put_status_lww(self, instance_id: str, payload: Payload, now: datetime) -> WriteResult:
        """Learn the status object's ETag, then a conditional PUT; again until it lands."""
        attempt = 0
        while True:
            tag, stored = self._current_tag(instance_id)
            if stored == payload:
                return WriteResult(str(tag), written=False)
            try:
                return self._put_status(instance_id, payload, tag, now)
            except (ConcurrencyError, _OutcomeUnknown):
                contention_pause(attempt)  # last write wins: ours may land after the other
                attempt += 1

    def _current_tag(self, instance_id: str) -> tuple[_Etag, Payload | None]:
        """The current etag and custom status, from 1 GET of the status object.

        Create seals the status object for its run, so the one found belongs to the current
        run; only while a restart is between its two PUTs can it still be the replaced
        run's (a write landing there then is dropped by the seal). No status object (a
        create still sealing, or no instance at all): a full read tells.
        """
        status = self._load_status(instance_id, self._status_key(instance_id))
        if status is not None:
            return _Etag(status.run, status.ver, status.write, status.md5), status.payload
        current = self.read(instance_id)
        if current is None:
            raise InstanceNotFound(instance_id)
        return _Etag.parse(instance_id, current.etag), current.custom_status

    # -- runtime status ---------------------------------------------------------------------

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
        """2 GETs + 2 conditional PUTs: renew the status object's version, then the record
        (stamped with it). The GETs wait out another runtime change as a read does."""
        self._ready()
        tag = _Etag.parse(instance_id, etag) if etag is not None else None
        attempt = 0
        while True:  # without an etag: until it lands (last write wins, never a conflict)
            try:
                new = self._runtime_once(instance_id, status, output, set_output, tag, now)
            except _PreconditionFailed:
                if tag is not None:
                    raise ConcurrencyError(instance_id, etag) from None
            except _OutcomeUnknown:
                if tag is not None:
                    raise outcome_unknown("runtime-status update", instance_id) from None
            else:
                self._known.set(instance_id, new)
                return str(new)
            contention_pause(attempt)
            attempt += 1

    def _runtime_once(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        tag: _Etag | None,
        now: datetime,
    ) -> _Etag:
        key = self._key(instance_id)
        pair = self._load_pair(instance_id, payloads=True)
        if pair is None:
            raise InstanceNotFound(instance_id)
        record, current = pair
        seen = _Etag.parse(instance_id, _compose(record, current, False).etag)
        if tag is not None and tag != seen:
            raise ConcurrencyError(instance_id, str(tag))
        kept, kept_at = _current_status(record, current)
        try:
            new = self._put_status_object(
                instance_id, _Etag(record.run, _token(), "", ""), kept, kept_at, replacing=seen
            )
        except _Missing:
            raise _PreconditionFailed from None  # deleted in between: the next try says so
        changed = replace(
            record,
            ver=new.ver,
            runtime_status=status,
            last_updated_at=now,
            output=output if set_output else record.output,
        )
        try:
            self._put(
                key, instance_id, _record_body(changed), write=_token(), if_match=record.s3_etag
            )
        except _Missing:
            raise InstanceNotFound(instance_id) from None  # deleted after the status commit
        return new

    # -- query ------------------------------------------------------------------------------

    def query(self, query: InstanceQuery) -> RecordPage:
        """Scan by key prefix and filter here (``native_query=False``).

        Cost: 1 ListObjectsV2 per 1000 instances under the id prefix, 1 ranged GET of each
        record's header, and 1 GET of the status object (plus the full record when
        ``fetch_payloads``) per match; a match with no status object or a torn pair is read
        again as `read` does. Pages follow key order; the token holds the last key.
        """
        return self._page(query, None)

    def purge_by(self, query: InstanceQuery) -> int:
        """Delete every match, and every unreadable record under the id prefix.

        A record whose header cannot be read cannot be matched against the filter; it is
        deleted with the matches (it is unreadable for everyone, and deleting it is the only
        way to get rid of it through the API).
        """
        doomed: list[str] = []
        corrupt: list[str] = []  # their keys: a hashed key cannot be turned back into its id
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = self._page(page_query, corrupt)
            doomed.extend(record.instance_id for record in page.items)
            if page.continuation is None:
                break
            page_query = replace(page_query, continuation=page.continuation)
        deleted = sum(1 for instance_id in doomed if self.delete(instance_id))
        for key in corrupt:
            self._delete_object(self._statuses + key[len(self._records) :], None)
            self._delete_object(key, None)
        return deleted + len(corrupt)

    def _page(self, query: InstanceQuery, corrupt: list[str] | None) -> RecordPage:
        """One page of matches; unreadable records are left out with a warning
        (`skip_unreadable`), reported in ``unreadable``, and their keys collected in
        ``corrupt`` when given."""
        self._ready()
        prefix = self._records + _listing_prefix(query.prefix or "", self._budget)
        after = self._decode_after(query.continuation, prefix)
        items: list[InstanceRecord] = []
        unreadable: list[str] = []
        keys = self._list(prefix, after)
        for key, more in keys:
            try:
                found = self._match(key, query)
            except CorruptRecord as exc:
                skip_unreadable(exc, unreadable)
                found = None
                if corrupt is not None:
                    corrupt.append(key)
            if found is not None:
                items.append(found)
            if len(items) >= query.page_size:
                token = encode_token({"after": key}) if more else None
                return RecordPage(items, token, unreadable)
        return RecordPage(items, None, unreadable)

    @staticmethod
    def _decode_after(continuation: str | None, prefix: str) -> str | None:
        """The last key of the previous page; it must lie under this query's listing prefix."""
        if continuation is None:
            return None
        after = decode_token(continuation).get("after")
        if not isinstance(after, str) or not after.startswith(prefix):
            raise InvalidContinuationToken("continuation token is not valid for this query")
        return after

    def _list(self, prefix: str, after: str | None) -> Iterator[tuple[str, bool]]:
        """Record keys under ``prefix`` after ``after``, each with "are there more keys"."""
        while True:
            response = self._list_page(prefix, after)
            keys = [item["Key"] for item in response.get("Contents", [])]
            truncated = bool(response.get("IsTruncated"))
            for index, key in enumerate(keys):
                yield key, truncated or index < len(keys) - 1
            if not truncated or not keys:
                return
            after = keys[-1]

    def _list_page(self, prefix: str, after: str | None) -> Any:
        kwargs: dict[str, Any] = {"StartAfter": after} if after else {}
        return self._call(
            "list_objects_v2",
            None,
            lambda: self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, MaxKeys=1000, **kwargs
            ),
        )

    def _match(self, key: str, query: InstanceQuery) -> InstanceRecord | None:
        """The record at ``key`` if it matches; its status is fetched only for matches."""
        suffix = key[len(self._records) :]
        hint = unescape_id(suffix) if "%~" not in suffix else suffix  # hashed: no way back
        obj = self._get(key, hint, head_only=True)
        if obj is None:
            return None
        record = _parse_record(self._listed_id(key, hint, obj.body), obj.body, obj.etag, False)
        # the last update may be in the status object: that range is checked after (the store)
        before_status = replace(query, updated_from=None, updated_to=None)
        if not before_status.matches(_compose(record, None, False)):
            return None
        if query.fetch_payloads:
            whole = self._load_record(record.instance_id, key, payloads=True)
            if whole is None:
                return None
            record = whole
        status = self._load_status(record.instance_id, self._statuses + suffix)
        if status is None or _torn(record, status):  # rare: mid-create or delete, or torn
            pair = self._load_pair(record.instance_id, payloads=query.fetch_payloads)
            if pair is None:
                return None
            record, status = pair
            if not query.matches(_compose(record, status, False)):
                return None
        record = self._with_first_status(record, status, key)
        return _compose(record, status, query.fetch_payloads)

    def _listed_id(self, key: str, hint: str, body: bytes) -> str:
        """The instance a listed record object belongs to: its header's id, if that id's key
        is ``key`` (so an object copied under another id's key never lists as that id)."""
        try:
            stored = json.loads(body.partition(b"\n")[0])["id"]
        except (ValueError, KeyError, TypeError):
            raise CorruptRecord(hint, "record object has no valid header") from None
        if not isinstance(stored, str) or self._key(stored) != key:
            raise CorruptRecord(hint, "record object belongs to another instance")
        return stored
