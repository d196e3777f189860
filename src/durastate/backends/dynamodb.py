"""Amazon DynamoDB backend: one item per instance, conditional writes, a status/created GSI.

Layout (table ``TABLE`` from ``dynamodb://TABLE``):

- key ``instance_id`` (S); ``name``, ``runtime_status``, ``created_at``, ``last_updated_at``,
  ``custom_status_updated_at`` (ISO-8601 UTC strings with milliseconds), ``etag`` (S);
- each payload ``F`` in (``custom_status``, ``input``, ``output``) as ``F`` (B) plus
  ``F_encoding`` (S), or, when offloaded to S3, ``F_ref`` (S, the object key) plus
  ``F_encoding``;
- GSI ``by_status_created``: partition ``runtime_status``, sort ``created_at``, KEYS_ONLY, so
  a custom-status update never writes to the index (it changes no projected attribute);
- optional TTL attribute (epoch seconds). DynamoDB deletes expired items lazily, so an item
  whose TTL has passed reads as absent here, is skipped by queries and may be recreated.

A custom-status update is one ``UpdateItem`` and no read: the condition carries the etag
(when given) and ``custom_status <> :new OR encoding <> :enc``, so identical bytes write
nothing. Why a condition failed comes from ``ReturnValuesOnConditionCheckFailure=ALL_OLD``
(moto, AWS) or, where the server ignores it (dynalite), one ``GetItem`` on the failure path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import parse_qsl, urlsplit

import boto3  # noqa: F401 - the "aws" extra; the registry's install hint keys on it
import botocore.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
from durastate.core.backend import Backend, skip_unreadable
from durastate.core.records import (
    TERMINAL_STATUSES,
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
    PayloadTooLarge,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

__all__ = ["DynamoDBBackend", "DynamoDBOptions"]

log = logging.getLogger(__name__)

Item = dict[str, Any]

#: Largest payload kept inline without offload: three of them plus keys fit in 400 KB.
INLINE_LIMIT: Final = 128 * 1024
_CCF: Final = "ConditionalCheckFailedException"
_AUTH_CODES: Final = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
_TABLE_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
_STATUS_ORDER: Final = tuple(RuntimeStatus)
_MAX_QUERY_CALLS: Final = 8  # GSI queries per page before a short page is returned

ID, NAME, STATUS, CREATED = "instance_id", "name", "runtime_status", "created_at"
UPDATED, CS_UPDATED, ETAG = "last_updated_at", "custom_status_updated_at", "etag"
PREVIOUS = "previous_etag"  # the etag each update replaced: recognises a lost answer
CS, INPUT, OUTPUT = "custom_status", "input", "output"
_NAMES: Final = {
    "#id": ID,
    "#st": STATUS,
    "#et": ETAG,
    "#pv": PREVIOUS,
    "#lu": UPDATED,
    "#cu": CS_UPDATED,
}
#: The SET part every update carries: a new etag, and the one it replaces kept beside it
#: (DynamoDB evaluates every operand against the item as it was before the update).
_NEW_ETAG: Final = "#et = :et, #pv = #et"


class DynamoDBOptions(BaseModel):
    """Backend options besides the AWS ones (``AwsOptions``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    create_table: bool = True
    index_name: str = "by_status_created"
    offload_bucket: str | None = None
    offload_endpoint_url: str | None = Field(default=None, repr=False)  # default: DynamoDB's
    offload_prefix: str = "durastate/"
    offload_threshold: int = Field(default=100_000, ge=1, le=INLINE_LIMIT)
    ttl_attribute: str | None = None
    ttl_seconds: int | None = Field(default=None, gt=0)
    table_wait_seconds: float = Field(default=60.0, gt=0)


def _ts(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds: fixed width, so strings sort as instants do."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _ceil_ms(moment: datetime) -> datetime:
    """The first whole millisecond at or after ``moment`` (stored times are whole ms)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _new_etag() -> str:
    return os.urandom(12).hex()


def _landed(old: Item | None, made: str, expected: str | None, maybe_applied: bool) -> bool | None:
    """Did this call's write land, judging by the item that failed its condition?

    botocore retries a request whose answer was lost (connection dropped, timeout, 5xx).
    When the first attempt had landed, the retry meets the item that attempt wrote and its
    condition fails. The etag ``made`` is random per call, so finding it as the item's etag,
    or as the etag a later write replaced (another writer got in before the retry), proves
    the write is ours: ``True``. ``False`` when it cannot have landed: no attempt may have
    been applied, or the write that followed ``expected`` (the etag it was conditioned on) is
    another's. ``None``: unknown (the history is gone), and the caller must not guess.
    """
    if old is not None and made in (_s(old, ETAG), _s(old, PREVIOUS)):
        return True
    if not maybe_applied:
        return False
    if old is not None and expected is not None and _s(old, PREVIOUS) == expected:
        return False
    return None


def _is_index_key(key: Any, status: RuntimeStatus) -> bool:
    """Whether ``key`` has the shape of a ``LastEvaluatedKey`` of the index for ``status``."""
    if not isinstance(key, dict) or set(key) != {ID, STATUS, CREATED}:
        return False
    if not all(
        isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values()
    ):
        return False
    return bool(key[STATUS]["S"] == status.value and key[ID]["S"] and key[CREATED]["S"])


def _s(item: Item, name: str) -> str | None:
    attribute = item.get(name)
    return None if attribute is None else str(attribute["S"])


class _Offloader:
    """Large payloads as S3 objects under unique keys; the bucket is created on first use."""

    def __init__(self, aws: AwsOptions, bucket: str, prefix: str) -> None:
        self._aws = aws
        self._bucket = bucket
        self._prefix = prefix
        self._client: S3Client | None = None
        self._lock = threading.Lock()
        self._bucket_ready = False

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                self._client = aws_client("s3", self._aws)
            return self._client

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with guard("create offload bucket", None):
            try:
                self.client.create_bucket(Bucket=self._bucket)
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    raise ConfigurationError(
                        f"cannot create offload bucket {self._bucket!r}: "
                        f"{code or 'error'} (HTTP {status})"
                    ) from None
        self._bucket_ready = True

    def put(self, instance_id: str, field: str, data: bytes) -> str:
        """Upload under a new key; a bucket deleted since first use is created again."""
        digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:32]
        key = f"{self._prefix}{digest}/{field}/{_new_etag()}"
        for attempt in range(2):
            self._ensure_bucket()
            try:
                with guard(f"offload {field}", instance_id):
                    self.client.put_object(Bucket=self._bucket, Key=key, Body=data)
                return key
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "NoSuchBucket" or attempt:
                    raise self._refused(f"offload {field}", exc) from None
                self._bucket_ready = False
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, instance_id: str, field: str, key: str) -> bytes:
        with guard(f"read offloaded {field}", instance_id):
            try:
                return self.client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if code == "NoSuchBucket":
                    reason = f"offload bucket {self._bucket!r} (with its {field}) is gone"
                    raise CorruptRecord(instance_id, reason) from None
                if code in {"NoSuchKey", "404"}:
                    reason = f"offloaded {field} object is missing"
                    raise CorruptRecord(instance_id, reason) from None
                raise self._refused(f"read offloaded {field}", exc) from None

    def _refused(self, operation: str, exc: botocore.exceptions.ClientError) -> ConfigurationError:
        """S3 refused a request (access, bucket, ...): name it by code, never by its text."""
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return ConfigurationError(
            f"{operation}: S3 refused it for offload bucket {self._bucket!r}: "
            f"{error_code(exc) or 'error'} (HTTP {status})"
        )

    def delete(self, instance_id: str, keys: Sequence[str]) -> None:
        """Best effort: a failed cleanup leaves an orphan, never fails the caller's write."""
        for key in keys:
            try:
                with guard("delete offloaded payload", instance_id):
                    self.client.delete_object(Bucket=self._bucket, Key=key)
            except (BackendUnavailable, botocore.exceptions.ClientError):
                log.warning("could not delete offloaded object of instance %r", instance_id)


@dataclass
class _Written:
    """How a conditional write went: the response, or the old item that failed the condition
    (``ours``: it carries the etag this call made, so an earlier attempt landed)."""

    response: dict[str, Any] | None = None
    old: Item | None = None
    ours: bool = False


class DynamoDBBackend(Backend):
    """Instances in one DynamoDB table (see the module docstring for the layout and costs)."""

    scheme = "dynamodb"
    capabilities = Capabilities(
        max_payload_bytes=INLINE_LIMIT,
        offload=True,
        skips_unchanged=True,
        native_query=True,
        ttl=True,
        max_instance_id_length=512,
    )

    def __init__(self, options: DynamoDBOptions, aws: AwsOptions | None = None) -> None:
        if not _TABLE_NAME.match(options.table):  # not echoed: it may be a pasted secret
            raise ConfigurationError(
                "invalid DynamoDB table name: 3 to 255 of A-Z a-z 0-9 _ . - "
                f"(got {len(options.table)} characters)"
            )
        self.options = options
        self.aws = aws or AwsOptions()
        self.table = options.table
        self.client: DynamoDBClient = aws_client("dynamodb", self.aws)
        self._attempts = AttemptTracker()
        for operation in ("PutItem", "UpdateItem"):
            self._attempts.watch(self.client, f"needs-retry.dynamodb.{operation}")
        self._offload = self._offloader(options)
        self._ttl = options.ttl_attribute
        self._old_on_failure: bool | None = None  # does the server honour ALL_OLD on failure?
        self.capabilities = Capabilities(
            max_payload_bytes=None if self._offload else INLINE_LIMIT,
            offload=self._offload is not None,
            skips_unchanged=True,
            native_query=True,
            ttl=self._ttl is not None,
            max_instance_id_length=512,
        )
        if options.create_table:
            self._create_table()

    def _offloader(self, options: DynamoDBOptions) -> _Offloader | None:
        if not options.offload_bucket:
            return None
        aws = self.aws
        if options.offload_endpoint_url:
            aws = aws.model_copy(update={"endpoint_url": options.offload_endpoint_url})
        prefix = f"{options.offload_prefix}{self.table}/"
        return _Offloader(aws, options.offload_bucket, prefix)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``dynamodb://TABLE?region=...&endpoint_url=...``; keyword options win over the URL."""
        parts = urlsplit(url)
        if parts.scheme != cls.scheme or not parts.netloc:
            raise ConfigurationError("expected a URL of the form dynamodb://TABLE")
        if "@" in parts.netloc:  # never echo it: it is likely KEY:SECRET
            raise ConfigurationError(
                "dynamodb:// URLs take no credentials: pass aws_access_key_id= and "
                "aws_secret_access_key= as options, or use the AWS environment"
            )
        merged: dict[str, Any] = {"table": parts.netloc, **dict(parse_qsl(parts.query))}
        merged.update(options)
        aws, rest = AwsOptions.pick(merged)
        try:
            return cls(DynamoDBOptions(**rest), aws)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise ConfigurationError(f"invalid DynamoDB option(s): {fields}") from None

    def __repr__(self) -> str:
        endpoint = safe_endpoint(self.aws.endpoint_url)
        return f"DynamoDBBackend(table={self.table!r}, endpoint={endpoint!r})"

    def close(self) -> None:
        self.client.close()
        if self._offload is not None and self._offload._client is not None:
            self._offload._client.close()

    # -- errors -----------------------------------------------------------------------------

    @contextmanager
    def _errors(self, operation: str, instance_id: str | None) -> Iterator[None]:
        """Service failures -> BackendUnavailable; setup mistakes -> ConfigurationError;
        a failed condition stays a ClientError for the caller; anything else is refused."""
        with guard(operation, instance_id):
            try:
                yield
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if code == "ResourceNotFoundException":
                    raise ConfigurationError(
                        f"DynamoDB table {self.table!r} (or its index) does not exist"
                    ) from None
                if code in _AUTH_CODES:
                    raise ConfigurationError(
                        f"not allowed to {operation} on DynamoDB table {self.table!r}: {code}"
                    ) from None
                if code == _CCF:
                    raise  # the caller explains a failed condition
                raise refused("DynamoDB", operation, instance_id, exc) from None

    # -- table ------------------------------------------------------------------------------

    def _create_table(self) -> None:
        """On-demand table with the status/created GSI; TTL enabled when configured."""
        with self._errors("create table", None):
            try:
                self.client.create_table(
                    TableName=self.table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": ID, "AttributeType": "S"},
                        {"AttributeName": STATUS, "AttributeType": "S"},
                        {"AttributeName": CREATED, "AttributeType": "S"},
                    ],
                    KeySchema=[{"AttributeName": ID, "KeyType": "HASH"}],
                    GlobalSecondaryIndexes=[
                        {
                            "IndexName": self.options.index_name,
                            "KeySchema": [
                                {"AttributeName": STATUS, "KeyType": "HASH"},
                                {"AttributeName": CREATED, "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "KEYS_ONLY"},
                        }
                    ],
                )
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "ResourceInUseException":
                    return
                raise
        self._wait_active()
        self._enable_ttl()

    def _wait_active(self) -> None:
        deadline = time.monotonic() + self.options.table_wait_seconds
        while True:
            with self._errors("describe table", None):
                status = self.client.describe_table(TableName=self.table)["Table"]["TableStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"DynamoDB table {self.table!r} did not become ACTIVE")
            time.sleep(0.2)

    def _enable_ttl(self) -> None:
        if self._ttl is None:
            return
        try:
            with guard("enable TTL", None):
                self.client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": self._ttl},
                )
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in _AUTH_CODES:
                raise ConfigurationError(
                    f"not allowed to enable TTL on DynamoDB table {self.table!r}"
                ) from None
            # dynalite has no UpdateTimeToLive; expired items still read as absent here.
            log.warning("could not enable TTL on %r: %s", self.table, error_code(exc))

    # -- payloads ---------------------------------------------------------------------------

    def _store_payload(
        self, instance_id: str, field: str, payload: Payload, uploaded: list[str]
    ) -> tuple[str, Any]:
        """("B", bytes) inline, or ("ref", key) after an upload; ``PayloadTooLarge`` if neither."""
        size = len(payload.data)
        if self._offload is not None and size > self.options.offload_threshold:
            key = self._offload.put(instance_id, field, payload.data)
            uploaded.append(key)
            return "ref", key
        if size > INLINE_LIMIT:
            raise PayloadTooLarge(instance_id, field, size, INLINE_LIMIT)
        return "B", payload.data

    def _payload(self, item: Item, instance_id: str, field: str) -> Payload | None:
        encoding = _s(item, f"{field}_encoding")
        if encoding is None:
            return None
        if field in item:
            return Payload.from_encoding(bytes(item[field]["B"]), encoding)
        ref = _s(item, f"{field}_ref")
        if ref is None or self._offload is None:
            raise CorruptRecord(instance_id, f"{field} has an encoding but no data")
        return Payload.from_encoding(self._offload.get(instance_id, field, ref), encoding)

    @staticmethod
    def _refs(item: Item | None) -> list[str]:
        if not item:
            return []
        return [str(item[f"{f}_ref"]["S"]) for f in (CS, INPUT, OUTPUT) if f"{f}_ref" in item]

    def _cleanup(self, instance_id: str, keys: Sequence[str]) -> None:
        if keys and self._offload is not None:
            self._offload.delete(instance_id, keys)

    # -- TTL --------------------------------------------------------------------------------

    def _expired(self, item: Item, now_epoch: float) -> bool:
        if self._ttl is None or self._ttl not in item:
            return False
        return float(item[self._ttl]["N"]) <= now_epoch

    def _ttl_set(self, now: datetime, names: dict[str, str], values: Item) -> str:
        """The SET clause part that refreshes the TTL on every write (when ``ttl_seconds``)."""
        if self._ttl is None or self.options.ttl_seconds is None:
            return ""
        names["#ttl"] = self._ttl
        values[":exp"] = {"N": str(int(now.timestamp()) + self.options.ttl_seconds)}
        return ", #ttl = :exp"

    def _alive(self, now: datetime, names: dict[str, str], values: Item) -> str:
        """A condition part that treats an expired item as absent."""
        if self._ttl is None:
            return ""
        names["#ttl"] = self._ttl
        values[":nowe"] = {"N": str(int(now.timestamp()))}
        return " AND (attribute_not_exists(#ttl) OR #ttl > :nowe)"

    # -- records ----------------------------------------------------------------------------

    def _record(self, item: Item, fetch_payloads: bool) -> InstanceRecord:
        instance_id = str(item[ID]["S"])
        try:
            custom_at = _s(item, CS_UPDATED)
            return InstanceRecord(
                instance_id=instance_id,
                name=str(item[NAME]["S"]),
                runtime_status=RuntimeStatus(item[STATUS]["S"]),
                created_at=_parse_ts(item[CREATED]["S"]),
                last_updated_at=_parse_ts(item[UPDATED]["S"]),
                custom_status_updated_at=_parse_ts(custom_at) if custom_at else None,
                etag=str(item[ETAG]["S"]),
                custom_status=self._payload(item, instance_id, CS),
                input=self._payload(item, instance_id, INPUT) if fetch_payloads else None,
                output=self._payload(item, instance_id, OUTPUT) if fetch_payloads else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptRecord(instance_id, f"bad attribute ({type(exc).__name__})") from None

    def _projection(self, fetch_payloads: bool) -> dict[str, Any]:
        if fetch_payloads:
            return {}
        attributes = [
            ID,
            NAME,
            STATUS,
            CREATED,
            UPDATED,
            CS_UPDATED,
            ETAG,
            PREVIOUS,
            CS,
            f"{CS}_encoding",
            f"{CS}_ref",
        ]
        if self._ttl is not None:
            attributes.append(self._ttl)
        names = {f"#p{i}": name for i, name in enumerate(attributes)}
        return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}

    def _write_conditionally(
        self,
        operation: str,
        instance_id: str,
        etag_made: str,
        uploaded: list[str],
        send: Callable[[], Any],
        expected: str | None = None,
    ) -> _Written:
        """Send one conditional write and sort out its offloaded uploads.

        A failed condition is explained from the old item (see `_landed`): our own write
        found there means botocore retried a write whose answer was lost and the first
        attempt landed (the uploads are in use); an unknown outcome raises
        ``BackendUnavailable`` rather than a conflict that ``update()`` would retry. Otherwise
        the uploads are deleted — except when the outcome is unknown: the item may point at
        them, and an orphaned object is better than a reference to a deleted one.
        """
        self._attempts.reset()
        try:
            with self._errors(operation, instance_id):
                return _Written(response=send())
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != _CCF:
                self._cleanup(instance_id, uploaded)
                raise
            old = self._old_item(instance_id, exc)
            landed = _landed(old, etag_made, expected, self._attempts.maybe_applied)
            if landed is None:
                raise outcome_unknown(operation, instance_id) from None
            if landed:
                return _Written(old=old, ours=True)
            self._cleanup(instance_id, uploaded)
            return _Written(old=old)
        except BackendUnavailable:
            raise
        except BaseException:
            self._cleanup(instance_id, uploaded)
            raise

    # -- create -----------------------------------------------------------------------------

    def _new_item(self, new: NewInstance, etag: str, uploaded: list[str]) -> Item:
        created = _ts(new.created_at)
        item: Item = {
            ID: {"S": new.instance_id},
            NAME: {"S": new.name},
            STATUS: {"S": new.runtime_status.value},
            CREATED: {"S": created},
            UPDATED: {"S": created},
            ETAG: {"S": etag},
        }
        for field, payload in ((INPUT, new.input), (CS, new.custom_status)):
            if payload is None:
                continue
            kind, value = self._store_payload(new.instance_id, field, payload, uploaded)
            item[field if kind == "B" else f"{field}_ref"] = (
                {"B": value} if kind == "B" else {"S": value}
            )
            item[f"{field}_encoding"] = {"S": payload.encoding}
        if new.custom_status is not None:
            item[CS_UPDATED] = {"S": created}
        if self._ttl is not None and self.options.ttl_seconds is not None:
            expires = int(new.created_at.timestamp()) + self.options.ttl_seconds
            item[self._ttl] = {"N": str(expires)}
        return item

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        """One conditional PutItem; a restart replaces the whole item (old output/status go)."""
        etag = _new_etag()
        uploaded: list[str] = []
        item = self._new_item(new, etag, uploaded)
        names: dict[str, str] = {"#id": ID}
        values: Item = {}
        condition = "attribute_not_exists(#id)"
        if restart_if_terminal:
            names["#st"] = STATUS
            terminal = sorted(TERMINAL_STATUSES)
            values.update({f":t{i}": {"S": s.value} for i, s in enumerate(terminal)})
            condition += f" OR #st IN ({', '.join(values)})"
        if self._ttl is not None:
            names["#ttl"] = self._ttl
            values[":nowe"] = {"N": str(int(new.created_at.timestamp()))}
            condition += " OR #ttl <= :nowe"
        extra: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        if self._offload is not None:
            extra["ReturnValues"] = "ALL_OLD"
        written = self._write_conditionally(
            "create",
            new.instance_id,
            etag,
            uploaded,
            lambda: self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **extra,
            ),
        )
        if written.ours:
            return etag
        if written.response is None:
            status = _s(written.old, STATUS) if written.old else None
            raise InstanceExists(new.instance_id, status)
        self._cleanup(new.instance_id, self._refs(written.response.get("Attributes")))
        return etag

    # -- reads ------------------------------------------------------------------------------

    def _get(self, instance_id: str, fetch_payloads: bool) -> Item | None:
        with self._errors("read", instance_id):
            response = self.client.get_item(
                TableName=self.table,
                Key={ID: {"S": instance_id}},
                ConsistentRead=True,
                **self._projection(fetch_payloads),
            )
        item = response.get("Item")
        if item is None or self._expired(item, time.time()):
            return None
        return item

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        """One consistent GetItem (plus S3 gets for offloaded payloads)."""
        item = self._get(instance_id, fetch_payloads)
        if item is None:
            return None
        return self._record(item, fetch_payloads)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """One consistent BatchGetItem per 100 ids (unprocessed keys retried), no GetItem."""
        found: dict[str, InstanceRecord | None] = dict.fromkeys(instance_ids)
        now = time.time()
        for start in range(0, len(instance_ids), 100):
            items = self._batch_get(instance_ids[start : start + 100], fetch_payloads)
            for instance_id, item in items.items():
                if not self._expired(item, now):
                    found[instance_id] = self._record(item, fetch_payloads)
        return found

    def _old_item(self, instance_id: str, exc: botocore.exceptions.ClientError) -> Item | None:
        """The item that failed a condition: from the error (ALL_OLD), else one GetItem."""
        item: Item | None = exc.response.get("Item")  # type: ignore[assignment]
        if item is not None:
            self._old_on_failure = True
        elif self._old_on_failure is not True:
            return self._get(instance_id, fetch_payloads=False)
        if item is None or self._expired(item, time.time()):
            return None
        return item

    # -- custom status ----------------------------------------------------------------------

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        """One UpdateItem with no read; identical bytes fail the condition and write nothing.

        Even identical bytes at the etag of this backend's own last write are sent: only the
        service can tell whether another process wrote since (a stale etag must fail).
        Without an etag a failed condition whose item changed before it could be explained
        (dynalite has no ALL_OLD on failure) is retried: last write wins, never a conflict.
        """
        attempt = 0
        while True:
            result = self._try_custom_status(instance_id, payload, etag, now)
            if result is not None:
                return result
            contention_pause(attempt)
            attempt += 1

    def _update_request(
        self,
        instance_id: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: Item,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """The UpdateItem arguments shared by status and runtime writes (unused names dropped:
        DynamoDB rejects an expression attribute name no expression uses)."""
        return {
            "TableName": self.table,
            "Key": {ID: {"S": instance_id}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {
                k: v for k, v in names.items() if k in update or k in condition
            },
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **extra,
        }

    def _custom_status_request(
        self,
        instance_id: str,
        payload: Payload,
        etag: str | None,
        now: datetime,
        new_etag: str,
        uploaded: list[str],
    ) -> dict[str, Any]:
        names = dict(_NAMES)
        names.update({"#cs": CS, "#cse": f"{CS}_encoding"})
        values: Item = {
            ":enc": {"S": payload.encoding},
            ":now": {"S": _ts(now)},
            ":et": {"S": new_etag},
        }
        kind, data = self._store_payload(instance_id, CS, payload, uploaded)
        extra: dict[str, Any] = {}
        if kind == "B":
            values[":cs"] = {"B": data}
            update = "SET #cs = :cs, #cse = :enc"
            condition = "(attribute_not_exists(#cs) OR #cs <> :cs OR #cse <> :enc)"
        else:  # offloaded: always written (comparing would need the old object)
            values[":ref"] = {"S": data}
            names["#csr"] = f"{CS}_ref"
            update = "SET #csr = :ref, #cse = :enc"
            condition = "attribute_exists(#id)"
        update += f", #cu = :now, #lu = :now, {_NEW_ETAG}" + self._ttl_set(now, names, values)
        if self._offload is not None:
            update += " REMOVE #csr" if kind == "B" else " REMOVE #cs"
            names["#csr"] = f"{CS}_ref"
            extra["ReturnValues"] = "UPDATED_OLD"
        if etag is not None:
            values[":old"] = {"S": etag}
            condition = f"#et = :old AND {condition}"
        else:
            condition = f"attribute_exists(#id) AND {condition}"
        condition += self._alive(now, names, values)
        return self._update_request(instance_id, update, condition, names, values, extra)

    def _try_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> WriteResult | None:
        new_etag = _new_etag()
        uploaded: list[str] = []
        written = self._write_conditionally(
            "write custom status",
            instance_id,
            new_etag,
            uploaded,
            lambda: self.client.update_item(
                **self._custom_status_request(instance_id, payload, etag, now, new_etag, uploaded)
            ),
            expected=etag,
        )
        if written.ours:
            return WriteResult(new_etag, written=True)
        if written.response is None:
            return self._explain_failure(instance_id, payload, etag, written.old)
        old = written.response.get("Attributes")
        if old and f"{CS}_ref" in old:
            self._cleanup(instance_id, [str(old[f"{CS}_ref"]["S"])])
        return WriteResult(new_etag, written=True)

    @staticmethod
    def _explain_failure(
        instance_id: str, payload: Payload, etag: str | None, old: Item | None
    ) -> WriteResult | None:
        """Missing, stale etag, or unchanged bytes; ``None`` means "changed meanwhile, retry"."""
        if old is None:
            raise InstanceNotFound(instance_id) from None
        old_etag = str(old[ETAG]["S"])
        if etag is not None and old_etag != etag:
            raise ConcurrencyError(instance_id, etag) from None
        stored = old.get(CS)
        if (
            stored is not None
            and bytes(stored["B"]) == payload.data
            and _s(old, f"{CS}_encoding") == payload.encoding
        ):
            return WriteResult(old_etag, written=False)
        return None

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
        """One conditional UpdateItem: status, timestamps, etag, and the output if asked."""
        new_etag = _new_etag()
        uploaded: list[str] = []
        written = self._write_conditionally(
            "write runtime status",
            instance_id,
            new_etag,
            uploaded,
            lambda: self.client.update_item(
                **self._runtime_request(
                    instance_id, status, output, set_output, etag, now, new_etag, uploaded
                )
            ),
            expected=etag,
        )
        if written.ours:
            return new_etag
        if written.response is None:
            if written.old is None:
                raise InstanceNotFound(instance_id)
            raise ConcurrencyError(instance_id, etag)
        old_attributes = written.response.get("Attributes")
        if old_attributes and f"{OUTPUT}_ref" in old_attributes:
            self._cleanup(instance_id, [str(old_attributes[f"{OUTPUT}_ref"]["S"])])
        return new_etag

    def _runtime_request(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
        new_etag: str,
        uploaded: list[str],
    ) -> dict[str, Any]:
        names = dict(_NAMES)
        values: Item = {":st": {"S": status.value}, ":now": {"S": _ts(now)}, ":et": {"S": new_etag}}
        sets = ["#st = :st", "#lu = :now", _NEW_ETAG]
        removes: list[str] = []
        if set_output:
            names.update({"#out": OUTPUT, "#oute": f"{OUTPUT}_encoding", "#outr": f"{OUTPUT}_ref"})
            if output is None:
                removes += ["#out", "#oute", "#outr"]
            else:
                kind, data = self._store_payload(instance_id, OUTPUT, output, uploaded)
                values[":oute"] = {"S": output.encoding}
                sets.append("#oute = :oute")
                if kind == "B":
                    values[":out"] = {"B": data}
                    sets.append("#out = :out")
                    removes.append("#outr")
                else:
                    values[":outr"] = {"S": data}
                    sets.append("#outr = :outr")
                    removes.append("#out")
        update = "SET " + ", ".join(sets) + self._ttl_set(now, names, values)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        condition = "attribute_exists(#id)"
        if etag is not None:
            values[":old"] = {"S": etag}
            condition += " AND #et = :old"
        condition += self._alive(now, names, values)
        extra: dict[str, Any] = {}
        if self._offload is not None and set_output:
            extra["ReturnValues"] = "UPDATED_OLD"
        return self._update_request(instance_id, update, condition, names, values, extra)

    # -- delete -----------------------------------------------------------------------------

    def delete(self, instance_id: str) -> bool:
        """One DeleteItem (ALL_OLD tells whether it existed), then its offloaded objects."""
        with self._errors("delete", instance_id):
            response = self.client.delete_item(
                TableName=self.table, Key={ID: {"S": instance_id}}, ReturnValues="ALL_OLD"
            )
        old = response.get("Attributes")
        if not old:
            return False
        self._cleanup(instance_id, self._refs(old))
        return not self._expired(old, time.time())

    # -- queries ----------------------------------------------------------------------------

    def query(self, query: InstanceQuery) -> RecordPage:
        """Query the GSI once per wanted status (all six without a filter), never a Scan.

        ``page_size`` bounds the keys evaluated per page (the prefix filter runs after
        DynamoDB's ``Limit``), so a page may be short or empty and still have a continuation.
        Records are then fetched by key with a consistent BatchGetItem and re-checked, as
        the index is eventually consistent. An unreadable item is left out with a warning
        naming the instance (`skip_unreadable`) and reported in ``unreadable``, so the
        generic ``purge_by`` deletes it (the index found it under the filter's statuses).
        """
        statuses = [
            s for s in _STATUS_ORDER if query.runtime_status is None or s in query.runtime_status
        ]
        position, start_key = self._decode(query.continuation, statuses)
        key_range = self._key_range(query)
        if key_range is None:
            return RecordPage(items=[], continuation=None)
        keys: list[Item] = []
        calls = 0
        while position < len(statuses) and len(keys) < query.page_size and calls < _MAX_QUERY_CALLS:
            response = self._query_index(
                statuses[position], key_range, query.prefix, query.page_size - len(keys), start_key
            )
            calls += 1
            keys.extend(response.get("Items", []))
            start_key = response.get("LastEvaluatedKey")
            if start_key is None:
                position += 1
        continuation = None
        if position < len(statuses):
            continuation = encode_token({"v": 1, "s": position, "k": start_key})
        unreadable: list[str] = []
        records = self._fetch(keys, query, unreadable)
        return RecordPage(items=records, continuation=continuation, unreadable=unreadable)

    @staticmethod
    def _decode(token: str | None, statuses: Sequence[RuntimeStatus]) -> tuple[int, Item | None]:
        """The position in ``statuses`` and the index key to start after.

        The key must be exactly what DynamoDB returned as ``LastEvaluatedKey`` for that
        status (three string attributes), so a forged or foreign token is refused here
        instead of reaching DynamoDB as a malformed ``ExclusiveStartKey``.
        """
        if token is None:
            return 0, None
        state = decode_token(token)
        position, key = state.get("s"), state.get("k")
        if (
            state.get("v") != 1
            or type(position) is not int
            or not 0 <= position < len(statuses)
            or not (key is None or _is_index_key(key, statuses[position]))
        ):
            raise InvalidContinuationToken("continuation token is not valid for this query")
        return position, key

    @staticmethod
    def _key_range(query: InstanceQuery) -> tuple[str | None, str | None] | None:
        """Inclusive ``created_at`` string bounds; ``None`` when the range is empty."""
        low = _ceil_ms(query.created_from) if query.created_from else None
        high = _ceil_ms(query.created_to) - timedelta(milliseconds=1) if query.created_to else None
        if low is not None and high is not None and low > high:
            return None
        return (_ts(low) if low else None, _ts(high) if high else None)

    def _query_index(
        self,
        status: RuntimeStatus,
        key_range: tuple[str | None, str | None],
        prefix: str | None,
        limit: int,
        start_key: Item | None,
    ) -> Mapping[str, Any]:
        names = {"#st": STATUS}
        values: Item = {":st": {"S": status.value}}
        condition = "#st = :st"
        low, high = key_range
        if low is not None or high is not None:
            names["#ca"] = CREATED
        if low is not None and high is not None:
            values.update({":lo": {"S": low}, ":hi": {"S": high}})
            condition += " AND #ca BETWEEN :lo AND :hi"
        elif low is not None:
            values[":lo"] = {"S": low}
            condition += " AND #ca >= :lo"
        elif high is not None:
            values[":hi"] = {"S": high}
            condition += " AND #ca <= :hi"
        extra: dict[str, Any] = {}
        if prefix:
            names["#id"] = ID
            values[":prefix"] = {"S": prefix}
            extra["FilterExpression"] = "begins_with(#id, :prefix)"
        if start_key is not None:
            extra["ExclusiveStartKey"] = start_key
        with self._errors("query", None):
            return self.client.query(
                TableName=self.table,
                IndexName=self.options.index_name,
                KeyConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                Limit=max(limit, 1),
                **extra,
            )

    def _fetch(
        self, keys: Sequence[Item], query: InstanceQuery, unreadable: list[str]
    ) -> list[InstanceRecord]:
        """The records for index keys, in index order; gone, expired or changed ones dropped,
        unreadable ones skipped with a warning."""
        wanted = [str(key[ID]["S"]) for key in keys]
        items: dict[str, Item] = {}
        for start in range(0, len(wanted), 100):
            items.update(self._batch_get(wanted[start : start + 100], query.fetch_payloads))
        now = time.time()
        records = []
        for instance_id in wanted:
            item = items.get(instance_id)
            if item is None or self._expired(item, now):
                continue
            try:
                record = self._record(item, query.fetch_payloads)
            except CorruptRecord as exc:
                skip_unreadable(exc, unreadable)
                continue
            if query.matches(record):
                records.append(record)
        return records

    def _batch_get(self, ids: Sequence[str], fetch_payloads: bool) -> dict[str, Item]:
        request: dict[str, Any] = {
            "Keys": [{ID: {"S": i}} for i in dict.fromkeys(ids)],
            "ConsistentRead": True,
            **self._projection(fetch_payloads),
        }
        found: dict[str, Item] = {}
        for attempt in range(8):
            if not request["Keys"]:
                break
            if attempt:
                time.sleep(min(0.05 * 2**attempt, 1.0))
            with self._errors("query", None):
                response = self.client.batch_get_item(
                    RequestItems={self.table: request}  # type: ignore[dict-item]
                )
            for item in response.get("Responses", {}).get(self.table, []):
                found[str(item[ID]["S"])] = item
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table)
            request = {**request, "Keys": unprocessed["Keys"] if unprocessed else []}
        if request["Keys"]:
            raise BackendUnavailable(f"DynamoDB table {self.table!r} kept throttling BatchGetItem")
        return found
