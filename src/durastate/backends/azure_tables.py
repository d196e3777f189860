"""azure-tables:// — Azure Table Storage, in the Durable Task Azure Storage provider's layout.

One entity per instance: PartitionKey is the instance id escaped reversibly, RowKey is "".
A custom-status update is one MERGE of the changed columns with If-Match, never a read
first. Payloads too large for a table property go gzip-compressed to a blob container
(claim check) with the blob name in the row.

Column set per payload field F (CustomStatus, Input, Output): ``F`` (a string for plain
JSON so Azure Storage Explorer shows it, binary otherwise; "" when offloaded),
``FEncoding`` (Payload.encoding; "" or missing means *no payload*) and ``FBlob`` (the blob
name, "" when inline). Every write of F writes all three, so a MERGE (which cannot remove
properties) always leaves a consistent row.

Every write also stores a random token of that one call (``_azure_write_log``). azure-core
never resends a POST or PATCH whose connection broke, because the request may have been
applied; this backend does, after reading the row (only then): if the token is there, the
write landed (even when another writer came after it); if the row is still at the etag it
sent, it sends again; if it cannot tell, it raises ``OutcomeUnknown`` (a
``BackendUnavailable``), never a conflict, so ``update()`` never applies its function twice.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential, TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.storage.blob import BlobServiceClient

from durastate.backends._azure_blob_offload import BlobOffload
from durastate.backends._azure_write_log import (
    C_WRITE_ID,
    SUPERSEDED_ETAG,
    LostWrite,
    lost_insert_outcome,
    lost_write_outcome,
    new_write_id,
    probe_columns,
    write_columns,
)
from durastate.core.backend import Backend, RecentPayloads, read_in_threads, skip_unreadable
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
from durastate.core.tokens import decode_token, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
    PayloadTooLarge,
)
from durastate.transport.policy import OutcomeUnknown

_T = TypeVar("_T")
Credential: TypeAlias = AzureNamedKeyCredential | AzureSasCredential | TokenCredential

ENV_CONNECTION_STRING = "DURASTATE_AZURE_CONNECTION_STRING"
KEY_LIMIT = 512  # 1 KiB of UTF-16: Azure (and Azurite) reject longer keys
PROPERTY_LIMIT = 64 * 1024  # bytes per property; strings count UTF-16
INLINE_LIMIT = 60 * 1024  # what we store inline at most, leaving headroom under the limit
DEFAULT_CONTAINER = "durastate-payloads"
MAX_ID_LENGTH = 512

# ---------------------------------------------------------------------------------------
# Key escaping: a prefix-free code, so prefix(id) <=> prefix(escape(id)).
# ---------------------------------------------------------------------------------------

ESCAPE = "^"
HASH_MARK = "^~"  # never produced by escape(): '~' is neither a hex digit nor 'u'
_HASH_HEX = 64
TRUNCATED_LIMIT = KEY_LIMIT - len(HASH_MARK) - _HASH_HEX
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f/\\\\#?%^\ud800-\udfff\ufffe\uffff]")
_CODEWORD = re.compile(r"\^(?:u([0-9A-F]{4})|([0-9A-F]{2}))")


def _codeword(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"^{code:02X}" if code <= 0xFF else f"^u{code:04X}"


def escape_key(instance_id: str) -> str:
    """Replace each character Azure forbids in keys (and the escape '^') by ^XX or ^uXXXX.

    Every character maps to its own codeword and no codeword is a prefix of another, so
    the escape is injective and preserves prefixes both ways. '%' is escaped too, since
    some Azure tools mishandle it in key URLs; U+FFFE/U+FFFF and lone surrogates too, so
    every key is valid Unicode.
    """
    if _NEEDS_ESCAPE.search(instance_id) is None:
        return instance_id
    return _NEEDS_ESCAPE.sub(_codeword, instance_id)


def unescape_key(key: str) -> str:
    """Inverse of ``escape_key``; ``ValueError`` for anything ``escape_key`` cannot produce."""
    if ESCAPE not in key:
        return key
    parts: list[str] = []
    position = 0
    while True:
        found = key.find(ESCAPE, position)
        if found < 0:
            parts.append(key[position:])
            return "".join(parts)
        match = _CODEWORD.match(key, found)
        if match is None:
            raise ValueError(f"not an escaped key: bad escape at {found}")
        parts.append(key[position:found])
        parts.append(chr(int(match.group(1) or match.group(2), 16)))
        position = match.end()


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, which is how Azure measures keys and strings."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _truncate_escaped(escaped: str, limit: int) -> str:
    """The longest prefix of ``escaped`` ending on a codeword boundary within ``limit``."""
    used = 0
    index = 0
    while index < len(escaped):
        step = 1
        if escaped[index] == ESCAPE:
            step = 6 if escaped[index + 1] == "u" else 3
        width = sum(2 if ord(c) > 0xFFFF else 1 for c in escaped[index : index + step])
        if used + width > limit:
            break
        used += width
        index += step
    return escaped[:index]


def partition_key(instance_id: str) -> str:
    """The PartitionKey: the escaped id, or, past 1 KiB, a truncated escape plus SHA-256.

    Hashed keys carry a mark that no escaped id contains, so a hashed key never equals a
    plain one, and their truncated part keeps prefix queries a (superset) key range.
    """
    escaped = escape_key(instance_id)
    if utf16_length(escaped) <= KEY_LIMIT:
        return escaped
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()
    return _truncate_escaped(escaped, TRUNCATED_LIMIT) + HASH_MARK + digest


def prefix_range(prefix: str) -> tuple[str, str] | None:
    """PartitionKey bounds [low, high) holding every id that starts with ``prefix``.

    A superset under both code-point and UTF-16 ordering (callers filter exactly);
    ``None`` when no useful bound exists.
    """
    low = _truncate_escaped(escape_key(prefix), TRUNCATED_LIMIT)
    while low:
        last = ord(low[-1])
        if last < 0x10FFFF:
            following = 0xE000 if 0xD7FF <= last < 0xE000 else last + 1
            return low, low[:-1] + chr(following)
        low = low[:-1]
    return None


# ---------------------------------------------------------------------------------------
# Row layout
# ---------------------------------------------------------------------------------------

C_ID = "InstanceId"
C_NAME = "Name"
C_STATUS = "RuntimeStatus"
C_CREATED = "CreatedTime"
C_UPDATED = "LastUpdatedTime"
C_STATUS_UPDATED = "CustomStatusUpdatedTime"
C_OFFLOADED = "Offloaded"  # set once a payload of this run went to a blob: purge sweeps
F_CUSTOM = "CustomStatus"
F_INPUT = "Input"
F_OUTPUT = "Output"
_FIELD_NAMES = {F_CUSTOM: "custom_status", F_INPUT: "input", F_OUTPUT: "output"}

_BASE_COLUMNS = [C_ID, C_NAME, C_STATUS, C_CREATED, C_UPDATED, C_STATUS_UPDATED, C_OFFLOADED]


def _field_columns(field: str) -> list[str]:
    return [field, f"{field}Encoding", f"{field}Blob"]


_SELECT_LIGHT = _BASE_COLUMNS + _field_columns(F_CUSTOM)
_SELECT_FULL = _SELECT_LIGHT + _field_columns(F_INPUT) + _field_columns(F_OUTPUT)
_BLOB_COLUMNS = [f"{field}Blob" for field in _FIELD_NAMES]


def _as_utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, tzinfo=UTC,
    )  # fmt: skip


def _inline_value(payload: Payload) -> str | bytes:
    """Plain JSON as a string property (readable in Storage Explorer), the rest as binary."""
    if payload.encoding == "json":
        try:
            text = payload.data.decode("utf-8")
        except UnicodeDecodeError:
            return payload.data
        if "\x00" not in text:
            return text
    return payload.data


def _stored_size(value: str | bytes) -> int:
    return 2 * utf16_length(value) if isinstance(value, str) else len(value)


@dataclass
class _Prepared:
    """The columns for one payload field, and the blob uploaded for it (if any)."""

    columns: dict[str, Any]
    blob: str | None = None


# ---------------------------------------------------------------------------------------
# Our own retries of writes azure-core will not retry
# ---------------------------------------------------------------------------------------

#: Connection failures: azure-core retries them for GET/PUT/DELETE, never for POST/PATCH.
_CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _is_transient(exc: AzureError) -> bool:
    """Worth trying again: the connection failed or timed out, or the service was busy."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


def _maybe_applied(exc: AzureError) -> bool:
    """False only when the request surely never reached the service, or the service refused
    it without acting (429 throttled, 503 ServerBusy); a 500 or 504 may have been applied."""
    if isinstance(exc, ServiceRequestError):
        return False
    return not (isinstance(exc, HttpResponseError) and exc.status_code in (429, 503))


def _failure_detail(exc: AzureError) -> str:
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return f"{status} {_error_code(exc)}".strip() if status else type(exc).__name__


@dataclass(frozen=True)
class RetryLimits:
    """The client's retry and timeout options, which also bound this backend's own retries."""

    retry_total: int = 3
    retry_backoff_factor: float = 0.2
    retry_backoff_max: float = 4.0
    connection_timeout: float = 5.0
    read_timeout: float = 20.0
    operation_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RetryLimits:
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})


class _Retry:
    """One call's time and retries: every request of the call (blob uploads and downloads
    included) ends within ``operation_timeout`` of the call's start, and at most
    ``retry_total`` failed requests are tried again.

    The first table request of a call may use azure-core's own retries (bounded by the same
    ``operation_timeout``); every later request is a single HTTP attempt whose timeouts end
    by the deadline (``options``), and this object decides whether to try again.
    """

    def __init__(
        self, limits: RetryLimits, where: Callable[[], str], started: float, operation: str
    ) -> None:
        self.limits = limits
        self.operation = operation
        self.where = where  # built only for a message: most calls never need it
        self.started = started
        self.deadline = started + limits.operation_timeout
        self.failures = 0
        self.used = False  # some request already ran under this budget
        self.maybe_applied = False  # some request of this write may have been applied

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def failed(self, exc: AzureError, *, write: bool) -> None:
        """Count a transient failure and back off, or raise ``BackendUnavailable``."""
        self.failures += 1
        if write and _maybe_applied(exc):
            self.maybe_applied = True
        if self.failures > self.limits.retry_total or self.remaining() <= 0:
            raise self.exhausted(exc)
        if self.failures > 1:  # like azure-core: the first retry goes at once
            backoff = self.limits.retry_backoff_factor * 2 ** (self.failures - 1)
            time.sleep(max(0.0, min(backoff, self.limits.retry_backoff_max, self.remaining())))
            if self.remaining() <= 0:
                raise self.exhausted(exc)

    def exhausted(self, exc: AzureError) -> BackendUnavailable:
        elapsed = time.monotonic() - self.started
        tries = "request" if self.failures == 1 else "requests"
        message = (
            f"{self.where()} failed: {_failure_detail(exc)} ({self.failures} failed {tries} "
            f"in {elapsed:.1f} s; retry_total={self.limits.retry_total}, "
            f"operation_timeout={self.limits.operation_timeout:g} s)"
        )
        if self.maybe_applied:
            message += "; the outcome of the write is unknown (it may or may not have been applied)"
            return OutcomeUnknown(message)
        return BackendUnavailable(message)

    def unknown(self) -> OutcomeUnknown:
        """The answer to a write was lost and the row cannot tell whether it landed."""
        return OutcomeUnknown(
            f"{self.where()}: the answer to the write was lost and another writer has "
            "written since; the outcome of the write is unknown (it may or may not have "
            "been applied, so it is not sent again)"
        )

    def options(self) -> dict[str, Any]:
        """Per-request options: one attempt, timeouts that end by the deadline."""
        self.used = True
        remaining = max(self.remaining(), 0.001)
        return {
            "retry_total": 0,
            "connection_timeout": min(self.limits.connection_timeout, remaining),
            "read_timeout": min(self.limits.read_timeout, remaining),
        }

    def run(self, request: Callable[..., _T]) -> _T:
        """``request(**options)`` as single attempts, retrying transient failures (for
        reads and idempotent writes: blob downloads and uploads under unique names)."""
        while True:
            try:
                return request(**self.options())
            except AzureError as exc:
                if not _is_transient(exc):
                    raise
                self.failed(exc, write=False)


# ---------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------


def _option_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")


class AzureTablesBackend(Backend):
    """Azure Table Storage, one entity per instance; offloads big payloads to blobs."""

    scheme = "azure-tables"
    capabilities = Capabilities(
        max_payload_bytes=INLINE_LIMIT,
        offload=True,
        skips_unchanged=False,
        native_query=True,
        ttl=False,
        cross_process=True,
        max_instance_id_length=MAX_ID_LENGTH,
        extra={"key_limit_utf16": str(KEY_LIMIT), "property_limit_bytes": str(PROPERTY_LIMIT)},
    )

    def __init__(
        self,
        table: TableClient,
        *,
        blob_factory: Any = None,
        container: str = DEFAULT_CONTAINER,
        create_table: bool = True,
        offload: bool = True,
        offload_threshold: int = INLINE_LIMIT,
        limits: RetryLimits | None = None,
    ) -> None:
        """Prefer ``from_url``; this takes a ready TableClient (reused for every call).

        ``limits`` should match the client's retry and timeout settings: they bound the
        backend's own retries of writes azure-core will not retry.
        """
        self._table = table
        self._limits = limits or RetryLimits()
        self.table_name = table.table_name
        self.account_name = table.account_name
        self._create_table = create_table
        self._table_ready = not create_table
        self._table_lock = threading.Lock()
        self._offload_enabled = offload and blob_factory is not None
        self.offload_threshold = min(max(int(offload_threshold), 0), INLINE_LIMIT)
        self._blobs = (
            BlobOffload(blob_factory, container, self.table_name) if blob_factory else None
        )
        self._recent = RecentPayloads()
        self._known_blobs: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._known_lock = threading.Lock()
        if not self._offload_enabled:
            self.__dict__["capabilities"] = replace(type(self).capabilities, offload=False)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``azure-tables://Table`` or ``azure-tables:///?table=Table``; see docs/azure.md."""
        options = {**_url_options(url), **options}
        table_name = str(options.pop("table", "") or "")
        if not _TABLE_NAME.match(table_name):
            raise ConfigurationError(
                "azure-tables needs a table name of 3-63 letters and digits, starting with a "
                f"letter (azure-tables://Instances), got {_shown(table_name)}"
            )
        container = str(options.pop("container", DEFAULT_CONTAINER))
        if not _CONTAINER_NAME.match(container):
            raise ConfigurationError(
                "azure-tables needs a blob container name of 3-63 lowercase letters, digits "
                f"and single hyphens (container=durastate-payloads), got {_shown(container)}"
            )
        transport_options = _transport_options(options)
        table = _table_client(table_name, options, transport_options)
        blob_factory = _blob_factory(options, transport_options)
        backend = cls(
            table,
            blob_factory=blob_factory,
            container=container,
            create_table=_option_bool(options.pop("create_table", True)),
            offload=_option_bool(options.pop("offload", True)),
            offload_threshold=int(options.pop("offload_threshold", INLINE_LIMIT)),
            limits=RetryLimits.from_settings(transport_options),
        )
        if options:
            backend.close()
            raise ConfigurationError(f"azure-tables: unknown options {sorted(options)}")
        return backend

    def __repr__(self) -> str:
        return f"AzureTablesBackend(account={self.account_name!r}, table={self.table_name!r})"

    def close(self) -> None:
        self._table.close()
        if self._blobs is not None:
            self._blobs.close()

    # -- helpers --------------------------------------------------------------------------

    def _ensure_table(self, instance_id: str | None = None) -> None:
        """Create the table on first use (one extra call, once per backend object).

        Creating is idempotent (409 = it exists), so a POST whose connection broke, which
        azure-core will not retry, is simply sent again.
        """
        if self._table_ready:
            return
        with self._table_lock:
            if self._table_ready:
                return
            started = time.monotonic()
            retry: _Retry | None = None
            options: dict[str, Any] = {}
            while True:
                try:
                    self._table.create_table(**options)
                except ResourceExistsError:
                    pass
                except AzureError as exc:
                    if not self._retryable(exc, retry is not None):
                        raise self._translate(exc, instance_id, "create table") from None
                    retry = retry or self._retry(instance_id, "create table", started)
                    retry.failed(exc, write=False)
                    options = retry.options()
                    continue
                break
            self._table_ready = True

    def _where(self, instance_id: str | None, operation: str) -> str:
        where = f"azure-tables {operation} on table {self.table_name!r}"
        if instance_id is not None:
            where += f" for instance {instance_id!r}"
        return where

    def _retry(self, instance_id: str | None, operation: str, started: float) -> _Retry:
        where = partial(self._where, instance_id, operation)
        return _Retry(self._limits, where, started, operation)

    @staticmethod
    def _retryable(exc: AzureError, own: bool) -> bool:
        """Ours to retry: a connection failure of a request sent with the client's retries
        (azure-core retried the rest already), or any transient failure of our own tries."""
        if not own:
            return isinstance(exc, _CONNECTION_ERRORS)
        return _is_transient(exc)

    def _translate(
        self, exc: AzureError, instance_id: str | None, operation: str, etag: str | None = None
    ) -> DurastateError:
        """The typed error for an SDK error; messages carry ids and codes, never secrets."""
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        code = _error_code(exc)
        where = self._where(instance_id, operation)
        if status == 412:
            return ConcurrencyError(instance_id or "", etag)
        if status == 404 and code == "TableNotFound":
            return ConfigurationError(f"{where}: the table does not exist (create_table=False?)")
        if status == 404 and instance_id is not None:
            return InstanceNotFound(instance_id)
        if status == 409 and instance_id is not None:
            return InstanceExists(instance_id)
        if status in (401, 403):
            return ConfigurationError(f"{where}: access denied ({status} {code})")
        if status is None and isinstance(exc, ClientAuthenticationError):
            return ConfigurationError(
                f"{where}: the credential cannot sign requests (is the account key valid "
                "base64, the SAS token complete?)"
            )
        if status is not None and 400 <= status < 500 and status != 429:
            return DurastateError(f"{where} was rejected: {status} {code}")
        limits = self._limits
        return BackendUnavailable(
            f"{where} failed: {_failure_detail(exc)} (retry_total={limits.retry_total}, "
            f"operation_timeout={limits.operation_timeout:g} s)"
        )

    def _remember_blob(self, instance_id: str, field: str, name: str | None) -> str | None:
        """Record the blob now referenced by ``field``; return the one it replaces, if known."""
        key = (instance_id, field)
        with self._known_lock:
            previous = self._known_blobs.pop(key, None)
            if name:
                self._known_blobs[key] = name
                if len(self._known_blobs) > 4096:
                    self._known_blobs.popitem(last=False)
        return previous if previous != name else None

    def _forget_blobs(self, instance_id: str) -> None:
        with self._known_lock:
            for field in _FIELD_NAMES:
                self._known_blobs.pop((instance_id, field), None)

    def _discard(self, names: list[str], retry: _Retry) -> None:
        if names and self._blobs is not None:
            self._blobs.delete(names, retry)

    # -- payload columns ------------------------------------------------------------------

    def _prepare(
        self, instance_id: str, field: str, payload: Payload | None, retry: _Retry
    ) -> _Prepared:
        """Columns for one field: inline when small, otherwise upload a blob first."""
        encoding_col, blob_col = f"{field}Encoding", f"{field}Blob"
        if payload is None:
            return _Prepared({field: "", encoding_col: "", blob_col: ""})
        value = _inline_value(payload)
        size = _stored_size(value)
        if size <= INLINE_LIMIT and len(payload.data) <= self.offload_threshold:
            return _Prepared({field: value, encoding_col: payload.encoding, blob_col: ""})
        if not self._offload_enabled or self._blobs is None:
            limit = self.offload_threshold if size <= INLINE_LIMIT else INLINE_LIMIT
            raise PayloadTooLarge(instance_id, _FIELD_NAMES[field], size, limit)
        try:
            name = self._blobs.upload(instance_id, _FIELD_NAMES[field], payload.data, retry)
        except AzureError as exc:
            raise self._translate(exc, instance_id, f"upload of {_FIELD_NAMES[field]}") from None
        columns = {field: "", encoding_col: payload.encoding, blob_col: name, C_OFFLOADED: True}
        return _Prepared(columns, name)

    def _load(
        self, instance_id: str, entity: Mapping[str, Any], field: str, retry: _Retry
    ) -> Payload | None:
        """The payload of ``field`` from a row, following a blob reference."""
        encoding = entity.get(f"{field}Encoding")
        if not encoding:
            return None
        blob = entity.get(f"{field}Blob")
        if blob:
            data = self._download(instance_id, field, str(blob), retry)
            if data is None:
                return None  # replaced while we read; the caller re-reads
            return Payload.from_encoding(data, str(encoding))
        value = entity.get(field)
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, bytes):
            data = value
        elif value is None:
            data = b""
        else:
            kind = type(value).__name__
            raise CorruptRecord(instance_id, f"{_FIELD_NAMES[field]} has type {kind}")
        return Payload.from_encoding(data, str(encoding))

    def _download(self, instance_id: str, field: str, name: str, retry: _Retry) -> bytes | None:
        what = f"offloaded {_FIELD_NAMES[field]}"
        if self._blobs is None:
            raise CorruptRecord(instance_id, f"{what}: no blob storage is configured")
        try:
            return self._blobs.download(name, instance_id, what, retry)
        except AzureError as exc:
            raise self._translate(exc, instance_id, f"download of {_FIELD_NAMES[field]}") from None

    # -- create ---------------------------------------------------------------------------

    def _new_entity(self, new: NewInstance, retry: _Retry) -> tuple[dict[str, Any], list[str]]:
        entity: dict[str, Any] = {
            "PartitionKey": partition_key(new.instance_id),
            "RowKey": "",
            C_ID: escape_key(new.instance_id),
            C_NAME: new.name,
            C_STATUS: new.runtime_status.value,
            C_CREATED: new.created_at,
            C_UPDATED: new.created_at,
            **write_columns(new_write_id()),
        }
        uploaded: list[str] = []
        try:
            for field, payload in ((F_CUSTOM, new.custom_status), (F_INPUT, new.input)):
                if payload is None:
                    continue
                prepared = self._prepare(new.instance_id, field, payload, retry)
                entity.update(prepared.columns)
                if prepared.blob:
                    uploaded.append(prepared.blob)
        except BaseException:
            self._discard(uploaded, retry)
            raise
        if new.custom_status is not None:
            entity[C_STATUS_UPDATED] = new.created_at
        return entity, uploaded

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        retry = self._retry(new.instance_id, "create", time.monotonic())
        self._ensure_table(new.instance_id)
        entity, uploaded = self._new_entity(new, retry)
        try:
            etag = self._insert_or_restart(new.instance_id, entity, restart_if_terminal, retry)
        except BaseException as exc:
            if not (isinstance(exc, BackendUnavailable) or retry.maybe_applied):
                self._discard(uploaded, retry)  # surely not stored: nothing refers to them
            raise
        self._recent.remember(new.instance_id, etag, new.custom_status)
        self._remember_blob(new.instance_id, F_CUSTOM, entity.get(f"{F_CUSTOM}Blob"))
        self._remember_blob(new.instance_id, F_INPUT, entity.get(f"{F_INPUT}Blob"))
        self._remember_blob(new.instance_id, F_OUTPUT, None)
        return etag

    def _insert_or_restart(
        self, instance_id: str, entity: dict[str, Any], restart_if_terminal: bool, retry: _Retry
    ) -> str:
        """Insert; on conflict replace a terminal run with If-Match so racing writers lose.

        A row carrying this call's write token is this call's own insert (or restart) whose
        answer was lost: success, never ``InstanceExists``. After an insert that failed but
        may have landed, the row is read before anything is sent again.
        """
        write_id = entity[C_WRITE_ID]
        own = retry.used  # uploads ran first: from here on, single attempts by the deadline
        conflicts = 0
        while True:
            try:
                options = retry.options() if own else {}
                return str(self._table.create_entity(entity, **options)["etag"])
            except ResourceExistsError:
                pass
            except AzureError as exc:
                if not self._retryable(exc, own):
                    raise self._translate(exc, instance_id, "create") from None
                own = True
                retry.failed(exc, write=True)
                if not retry.maybe_applied:
                    continue  # never reached the service: send it again
            select = [C_STATUS, C_OFFLOADED, *probe_columns(write_id), *_BLOB_COLUMNS]
            old = self._probe(instance_id, select, retry) if own else self._get(instance_id, select)
            if old is not None:
                found = lost_insert_outcome(old, write_id, maybe_applied=retry.maybe_applied)
                if found is LostWrite.LANDED:
                    return str(old.metadata["etag"])  # our own insert or restart landed
                if found is LostWrite.SUPERSEDED:
                    return SUPERSEDED_ETAG
                if found is LostWrite.UNKNOWN:
                    raise retry.unknown()
                status = str(old.get(C_STATUS, ""))
                if not restart_if_terminal or not _is_terminal(status):
                    raise InstanceExists(instance_id, status or None)
                etag = self._replace(instance_id, entity, str(old.metadata["etag"]), retry, own)
                if etag is not None:
                    self._after_restart(instance_id, old, entity, retry)
                    return etag
            conflicts += 1  # deleted or replaced meanwhile: try again
            if conflicts >= 8:
                raise InstanceExists(instance_id)

    def _replace(
        self, instance_id: str, entity: dict[str, Any], etag: str, retry: _Retry, own: bool
    ) -> str | None:
        """REPLACE the whole row at ``etag``; ``None`` if the row changed or vanished, or if
        the answer was lost (the caller then reads the row and looks for its write token).

        azure-core retries this PUT itself; a retry of one that landed meets 412.
        """
        try:
            result = self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified,
                **(retry.options() if own else {}),
            )  # fmt: skip
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if isinstance(exc, ResourceNotFoundError) or exc.status_code == 412:
                return None
            if not (own and _is_transient(exc)):
                raise self._translate(exc, instance_id, "restart") from None
            retry.failed(exc, write=True)
            return None
        except AzureError as exc:
            if not (own and _is_transient(exc)):
                raise self._translate(exc, instance_id, "restart") from None
            retry.failed(exc, write=True)
            return None
        return str(result["etag"])

    def _after_restart(
        self, instance_id: str, old: Mapping[str, Any], entity: Mapping[str, Any], retry: _Retry
    ) -> None:
        """The old run's blobs are unreferenced now; delete them (and any older orphans)."""
        if self._blobs is None:
            return
        keep = [str(entity[c]) for c in _BLOB_COLUMNS if entity.get(c)]
        if old.get(C_OFFLOADED):
            self._blobs.sweep(instance_id, retry, keep=keep)

    # -- read -----------------------------------------------------------------------------

    def _probe(self, instance_id: str, select: list[str], retry: _Retry) -> TableEntity | None:
        """``_get`` within an own-retry budget: single attempts, transient failures counted."""
        while True:
            try:
                return self._table.get_entity(
                    partition_key(instance_id), "", select=select, **retry.options()
                )
            except ResourceNotFoundError as exc:
                if _error_code(exc) == "TableNotFound":
                    raise self._translate(exc, instance_id, "read") from None
                return None
            except AzureError as exc:
                if not _is_transient(exc):
                    raise self._translate(exc, instance_id, "read") from None
                retry.failed(exc, write=False)

    def _get(self, instance_id: str, select: list[str]) -> TableEntity | None:
        try:
            return self._table.get_entity(partition_key(instance_id), "", select=select)
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "TableNotFound":
                raise self._translate(exc, instance_id, "read") from None
            return None
        except AzureError as exc:
            raise self._translate(exc, instance_id, "read") from None

    def _read_row(self, instance_id: str, select: list[str], retry: _Retry) -> TableEntity | None:
        """The first request of a call uses the client's retries; later ones the budget."""
        if retry.used:
            return self._probe(instance_id, select, retry)
        return self._get(instance_id, select)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """No batched read in this service: a few reads at once on threads."""
        return read_in_threads(self, instance_ids, fetch_payloads)

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        retry = self._retry(instance_id, "read", time.monotonic())
        self._ensure_table(instance_id)
        select = _SELECT_FULL if fetch_payloads else _SELECT_LIGHT
        for _ in range(5):
            entity = self._read_row(instance_id, select, retry)
            if entity is None:
                return None
            record = self._record(instance_id, entity, fetch_payloads, retry)
            if record is not None:
                self._recent.remember(instance_id, record.etag, record.custom_status)
                return record
        raise CorruptRecord(instance_id, "an offloaded payload's blob is missing")

    def _record(
        self, instance_id: str, entity: TableEntity, fetch_payloads: bool, retry: _Retry
    ) -> InstanceRecord | None:
        """Build the record; ``None`` if a referenced blob vanished (a concurrent rewrite)."""
        if entity.get(C_ID) not in (None, escape_key(instance_id)):
            raise CorruptRecord(instance_id, "row belongs to another instance id")
        payloads: dict[str, Payload | None] = {}
        for field in (F_CUSTOM, F_INPUT, F_OUTPUT) if fetch_payloads else (F_CUSTOM,):
            payload = self._load(instance_id, entity, field, retry)
            if payload is None and entity.get(f"{field}Encoding") and entity.get(f"{field}Blob"):
                return None
            payloads[field] = payload
            if entity.get(f"{field}Blob"):
                self._remember_blob(instance_id, field, str(entity[f"{field}Blob"]))
        return self._build_record(instance_id, entity, payloads)

    def _build_record(
        self, instance_id: str, entity: TableEntity, payloads: dict[str, Payload | None]
    ) -> InstanceRecord:
        created = _as_utc(entity.get(C_CREATED))
        updated = _as_utc(entity.get(C_UPDATED))
        try:
            status = RuntimeStatus(str(entity.get(C_STATUS)))
        except ValueError:
            detail = f"unknown runtime status {entity.get(C_STATUS)!r}"
            raise CorruptRecord(instance_id, detail) from None
        if created is None or updated is None:
            raise CorruptRecord(instance_id, "timestamps are missing")
        return InstanceRecord(
            instance_id=instance_id,
            name=str(entity.get(C_NAME, "")),
            runtime_status=status,
            created_at=created,
            last_updated_at=updated,
            custom_status_updated_at=_as_utc(entity.get(C_STATUS_UPDATED)),
            etag=str(entity.metadata["etag"]),
            custom_status=payloads.get(F_CUSTOM),
            input=payloads.get(F_INPUT),
            output=payloads.get(F_OUTPUT),
        )

    # -- writes ---------------------------------------------------------------------------

    def _merge(
        self, instance_id: str, columns: dict[str, Any], etag: str | None, retry: _Retry
    ) -> str:
        """One MERGE of ``columns``: If-Match ``etag``, or ``*`` (never an upsert).

        Exactly one PATCH unless it fails (``_send_until_decided``). Each PATCH is a
        single attempt: azure-core would resend it after a 500, 503 or 504 even though it
        may have been applied, and a resend of an applied write meets 412, a false conflict.
        """
        write_id = new_write_id()
        entity = {
            "PartitionKey": partition_key(instance_id), "RowKey": "", **columns,
            **write_columns(write_id, etag),
        }  # fmt: skip
        return self._send_until_decided(instance_id, entity, write_id, etag, retry)

    def _send_merge(self, entity: dict[str, Any], etag: str | None, **options: Any) -> str:
        if etag is None:
            result = self._table.update_entity(entity, mode=UpdateMode.MERGE, **options)
        else:
            result = self._table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag,
                match_condition=MatchConditions.IfNotModified, **options,
            )  # fmt: skip
        return str(result["etag"])

    def _send_until_decided(
        self,
        instance_id: str,
        entity: dict[str, Any],
        write_id: str,
        etag: str | None,
        retry: _Retry,
    ) -> str:
        """Send a MERGE until it is decided, reading the row first whenever an earlier try
        may have landed: the write log there says whether it did (``lost_write_outcome``)."""
        while True:
            if retry.maybe_applied:
                row = self._probe(instance_id, probe_columns(write_id), retry)
                if row is None:
                    raise InstanceNotFound(instance_id)
                row_etag = str(row.metadata["etag"])
                found = lost_write_outcome(row, row_etag, write_id, etag)
                if found is LostWrite.LANDED:
                    return row_etag
                if found is LostWrite.SUPERSEDED:
                    return SUPERSEDED_ETAG
                if found is LostWrite.STALE:
                    raise ConcurrencyError(instance_id, etag)
                if found is LostWrite.UNKNOWN:
                    raise retry.unknown()
            try:
                return self._send_merge(entity, etag, **retry.options())
            except AzureError as exc:
                status = exc.status_code if isinstance(exc, HttpResponseError) else None
                if status == 412 and retry.maybe_applied:
                    continue  # ours (an earlier try landed late) or another writer's: read
                if not _is_transient(exc):
                    raise self._translate(exc, instance_id, retry.operation, etag) from None
                retry.failed(exc, write=True)

    def _write_field(
        self,
        instance_id: str,
        field: str,
        payload: Payload | None,
        extra: dict[str, Any],
        etag: str | None,
        retry: _Retry,
    ) -> str:
        """MERGE one payload field plus ``extra``; clean up blobs on both outcomes."""
        prepared = self._prepare(instance_id, field, payload, retry)
        try:
            new_etag = self._merge(instance_id, {**prepared.columns, **extra}, etag, retry)
        except DurastateError as exc:
            surely_failed = not isinstance(exc, BackendUnavailable) and not retry.maybe_applied
            if prepared.blob and surely_failed:
                self._discard([prepared.blob], retry)  # nothing refers to it
            raise
        previous = self._remember_blob(instance_id, field, prepared.blob)
        self._discard([previous] if previous else [], retry)
        return new_etag

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        retry = self._retry(instance_id, "custom-status update", time.monotonic())
        if self._recent.unchanged(instance_id, etag, payload):
            assert etag is not None
            return self._unchanged_at(instance_id, etag, retry)
        self._ensure_table(instance_id)
        times = {C_STATUS_UPDATED: now, C_UPDATED: now}
        try:
            new_etag = self._write_field(instance_id, F_CUSTOM, payload, times, etag, retry)
        except BaseException:
            self._recent.forget(instance_id)
            raise
        self._recent.remember(instance_id, new_etag, payload)
        return WriteResult(new_etag)

    def _unchanged_at(self, instance_id: str, etag: str, retry: _Retry) -> WriteResult:
        """The bytes stored at ``etag`` are the ones to write; write nothing if the row is
        still at ``etag``. Another process may have written since, so only the service can
        tell: one GET of the etag (a write would have changed it), never an unchecked skip.
        """
        row = self._read_row(instance_id, ["PartitionKey"], retry)
        if row is None:
            self._forget(instance_id)
            raise InstanceNotFound(instance_id)
        if str(row.metadata["etag"]) != etag:
            self._recent.forget(instance_id)
            raise ConcurrencyError(instance_id, etag)
        return WriteResult(etag, written=False)

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
        retry = self._retry(instance_id, "runtime-status update", time.monotonic())
        self._ensure_table(instance_id)
        columns: dict[str, Any] = {C_STATUS: status.value, C_UPDATED: now}
        self._recent.forget(instance_id)
        if not set_output:
            return self._merge(instance_id, columns, etag, retry)
        return self._write_field(instance_id, F_OUTPUT, output, columns, etag, retry)

    # -- delete ---------------------------------------------------------------------------

    def delete(self, instance_id: str) -> bool:
        """Delete the row at the etag read (so no blob is missed), then its blobs."""
        retry = self._retry(instance_id, "delete", time.monotonic())
        self._ensure_table(instance_id)
        sent: TableEntity | None = None  # the row a DELETE whose answer was lost was sent for
        for _ in range(8):
            entity = self._read_row(instance_id, [C_OFFLOADED, *_BLOB_COLUMNS], retry)
            if entity is None:
                self._forget(instance_id)
                if sent is not None:  # our DELETE may have landed: its blobs must go too
                    self._delete_blobs(instance_id, sent, retry)
                return sent is not None
            try:
                self._table.delete_entity(
                    partition_key(instance_id), "", etag=str(entity.metadata["etag"]),
                    match_condition=MatchConditions.IfNotModified, **retry.options(),
                )  # fmt: skip
            except HttpResponseError as exc:
                if exc.status_code in (404, 412):
                    continue  # changed or gone meanwhile: read it again
                if not _is_transient(exc):
                    raise self._translate(exc, instance_id, "delete") from None
                retry.failed(exc, write=False)
                continue
            except AzureError as exc:
                if not _is_transient(exc):
                    raise self._translate(exc, instance_id, "delete") from None
                retry.failed(exc, write=False)  # a DELETE at an etag is safe to resend
                sent = entity
                continue
            self._forget(instance_id)
            self._delete_blobs(instance_id, entity, retry)
            return True
        raise ConcurrencyError(instance_id)

    def _forget(self, instance_id: str) -> None:
        self._recent.forget(instance_id)
        self._forget_blobs(instance_id)

    def _delete_blobs(self, instance_id: str, entity: Mapping[str, Any], retry: _Retry) -> None:
        if self._blobs is None:
            return
        names = [str(entity[c]) for c in _BLOB_COLUMNS if entity.get(c)]
        self._blobs.delete(names, retry)
        if entity.get(C_OFFLOADED):
            self._blobs.sweep(instance_id, retry)

    # -- query ----------------------------------------------------------------------------

    def query(self, query: InstanceQuery) -> RecordPage:
        """OData filter in the service; the prefix is re-checked exactly on the client."""
        if query.runtime_status is not None and not query.runtime_status:
            return RecordPage([])
        retry = self._retry(None, "query", time.monotonic())
        odata = _odata_filter(query)
        fingerprint = _query_fingerprint(self.table_name, odata)
        token = None
        if query.continuation is not None:  # "" is a forged token too, not "from the start"
            token = _decode_continuation(query.continuation, fingerprint)
        self._ensure_table()
        select = _SELECT_FULL if query.fetch_payloads else _SELECT_LIGHT
        items: list[InstanceRecord] = []
        unreadable: list[str] = []
        while True:
            entities, token = self._page(odata, select, query.page_size, token)
            items.extend(self._matching(entities, query, retry, unreadable))
            if items or unreadable or token is None:
                break
        continuation = _encode_continuation(token, fingerprint) if token else None
        return RecordPage(items, continuation, unreadable)

    def _page(
        self,
        odata: str,
        select: list[str],
        page_size: int,
        token: dict[str, Any] | None,
    ) -> tuple[list[TableEntity], dict[str, Any] | None]:
        try:
            pages = self._table.query_entities(
                odata, select=select, results_per_page=page_size
            ).by_page(continuation_token=cast(Any, token))  # the SDK's token is a dict
            entities = list(next(pages, iter(())))
            next_token: dict[str, Any] | None = pages.continuation_token  # type: ignore[attr-defined]
        except AzureError as exc:
            raise self._translate(exc, None, "query") from None
        return entities, next_token or None

    def _matching(
        self,
        entities: list[TableEntity],
        query: InstanceQuery,
        retry: _Retry,
        unreadable: list[str],
    ) -> Iterator[InstanceRecord]:
        for entity in entities:
            instance_id = _listed_id(entity, query.prefix)
            if instance_id is None:
                continue
            try:
                record = self._record(instance_id, entity, query.fetch_payloads, retry)
                if record is None:  # a blob vanished under a concurrent rewrite: read again
                    record = self.read(instance_id, fetch_payloads=query.fetch_payloads)
            except CorruptRecord as exc:  # that instance alone: the others still list
                skip_unreadable(exc, unreadable)
                continue
            if record is not None and query.matches(record):
                yield record

    def purge_by(self, query: InstanceQuery) -> int:
        """Delete every match, by ids read straight from the rows: no payload is fetched or
        decoded, so a corrupt record goes like any other."""
        if query.runtime_status is not None and not query.runtime_status:
            return 0
        self._ensure_table()
        odata = _odata_filter(query)
        ids: list[str] = []
        token: dict[str, Any] | None = None
        while True:
            entities, token = self._page(odata, [C_ID], 1000, token)
            ids.extend(i for i in (_listed_id(e, query.prefix) for e in entities) if i is not None)
            if token is None:
                break
        return sum(1 for instance_id in ids if self.delete(instance_id))


def _listed_id(entity: Mapping[str, Any], prefix: str | None) -> str | None:
    """The instance id of a listed row; ``None`` for a row that is not ours or whose id
    misses the prefix (the key range is a superset)."""
    try:
        instance_id = unescape_key(str(entity[C_ID]))
    except (KeyError, ValueError):
        return None
    if prefix and not instance_id.startswith(prefix):
        return None
    return instance_id


# ---------------------------------------------------------------------------------------
# Continuation tokens: the SDK's resume position, bound to one table and one filter
# ---------------------------------------------------------------------------------------

_TOKEN_MARK = "azure-tables"  # noqa: S105 - a key name, not a secret


def _query_fingerprint(table: str, odata: str) -> str:
    """Names the table and filter a token belongs to, so a foreign token is refused."""
    text = f"{table}\n{odata}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:24]


def _encode_continuation(position: Mapping[str, Any], fingerprint: str) -> str:
    return encode_token(
        {_TOKEN_MARK: fingerprint, "pk": position.get("PartitionKey"), "rk": position.get("RowKey")}
    )


def _decode_continuation(token: str, fingerprint: str) -> dict[str, Any]:
    """The SDK's resume position; ``InvalidContinuationToken`` for a token this table and
    filter did not produce (the service would silently start again at page 1)."""
    state = decode_token(token)
    position = {"PartitionKey": state.get("pk"), "RowKey": state.get("rk")}
    well_formed = set(state) == {_TOKEN_MARK, "pk", "rk"} and all(
        value is None or isinstance(value, str) for value in position.values()
    )
    if not well_formed or not any(position.values()):
        raise InvalidContinuationToken(
            "continuation token was not made by an azure-tables store (forged or truncated?)"
        )
    if state[_TOKEN_MARK] != fingerprint:
        raise InvalidContinuationToken(
            "continuation token belongs to another table or another filter: pass the token "
            "only to the same query on the same store"
        )
    return position


def _error_code(exc: AzureError) -> str:
    """The service's error code; create_entity's errors carry it only in the body."""
    code = getattr(exc, "error_code", None)
    if code:
        return str(code.value if isinstance(code, enum.Enum) else code)
    response = getattr(exc, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else {}
        return str(body["odata.error"]["code"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _is_terminal(status: str) -> bool:
    try:
        return RuntimeStatus(status).is_terminal
    except ValueError:
        return False


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _datetime_literal(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return "datetime'" + value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def _odata_filter(query: InstanceQuery) -> str:
    """The OData filter; every value is quoted here (the SDK's @parameters split on spaces)."""
    clauses = ["RowKey eq ''"]
    if query.runtime_status:
        ors = [f"{C_STATUS} eq {_quote(s.value)}" for s in sorted(query.runtime_status)]
        clauses.append("(" + " or ".join(ors) + ")")
    if query.created_from is not None:
        clauses.append(f"{C_CREATED} ge {_datetime_literal(query.created_from)}")
    if query.created_to is not None:
        clauses.append(f"{C_CREATED} lt {_datetime_literal(query.created_to)}")
    if query.name is not None and query.name.isprintable():  # others: the store filters
        clauses.append(f"{C_NAME} eq {_quote(query.name)}")
    if query.updated_from is not None:
        clauses.append(f"{C_UPDATED} ge {_datetime_literal(query.updated_from)}")
    if query.updated_to is not None:
        clauses.append(f"{C_UPDATED} lt {_datetime_literal(query.updated_to)}")
    bounds = prefix_range(query.prefix) if query.prefix else None
    if bounds is not None:
        low, high = bounds
        clauses.append(f"PartitionKey ge {_quote(low)} and PartitionKey lt {_quote(high)}")
    return " and ".join(clauses)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


def _url_options(url: str) -> dict[str, Any]:
    """Table name from the URL's host part, and options from its query string."""
    parts = urlsplit(url)
    if parts.scheme.lower() != AzureTablesBackend.scheme:
        raise ConfigurationError(f"not an azure-tables:// URL: {parts.scheme}://...")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "azure-tables: credentials do not belong in the URL (user:key@...); pass "
            f"connection_string=... or account_key=..., or set ${ENV_CONNECTION_STRING}"
        )
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    secret_keys = {"connection_string", "account_key", "sas_token", "sig"} & set(options)
    if secret_keys:
        raise ConfigurationError(
            f"azure-tables: pass {sorted(secret_keys)} as options or environment, not in the URL"
        )
    name = (parts.netloc + parts.path).strip("/")
    if name:
        options.setdefault("table", name)
    return options


_HARMLESS = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")


def _shown(value: str) -> str:
    """``value`` for an error message, or only its length when it might hold a secret (a
    connection string or key pasted where a table name belongs)."""
    if _HARMLESS.match(value):
        return repr(value)
    hint = ""
    if "=" in value or ";" in value:
        hint = f"; a connection string goes in connection_string=... or ${ENV_CONNECTION_STRING}"
    return f"a value of {len(value)} characters (not shown: it may hold a secret){hint}"


def _transport_options(options: dict[str, Any]) -> dict[str, Any]:
    """Retry and timeout settings shared by the table and blob clients."""
    return {
        "retry_total": int(options.pop("retry_total", 3)),
        "retry_backoff_factor": float(options.pop("retry_backoff_factor", 0.2)),
        "retry_backoff_max": int(options.pop("retry_backoff_max", 4)),
        "connection_timeout": float(options.pop("connection_timeout", 5.0)),
        "read_timeout": float(options.pop("read_timeout", 20.0)),
        "operation_timeout": float(options.pop("operation_timeout", 60.0)),
        "use_env_proxies": _option_bool(options.pop("use_env_proxies", False)),
        "raw_request_hook": options.pop("raw_request_hook", None),
    }


def _transport(settings: Mapping[str, Any]) -> RequestsTransport:
    """requests without per-call proxy lookup (~150 µs) unless the user wants env proxies."""
    return RequestsTransport(
        use_env_settings=settings["use_env_proxies"],
        connection_timeout=settings["connection_timeout"],
        read_timeout=settings["read_timeout"],
    )


def _client_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "transport": _transport(settings),
        "retry_total": settings["retry_total"],
        # azure-core caps each kind of retry at 3 unless told; retry_total is the user's bound
        "retry_status": settings["retry_total"],
        "retry_connect": settings["retry_total"],
        "retry_read": settings["retry_total"],
        "retry_backoff_factor": settings["retry_backoff_factor"],
        "retry_backoff_max": settings["retry_backoff_max"],
    }
    if settings["raw_request_hook"] is not None:
        kwargs["raw_request_hook"] = settings["raw_request_hook"]
    return kwargs


def _connection_string(options: dict[str, Any]) -> str | None:
    value = options.pop("connection_string", None) or os.environ.get(ENV_CONNECTION_STRING)
    return str(value) if value else None


def _credential(options: dict[str, Any], account_url: str) -> Any:
    """An explicit credential, an account key, or azure-identity's DefaultAzureCredential."""
    credential = options.pop("credential", None)
    account_key = options.pop("account_key", None)
    sas_token = options.pop("sas_token", None)
    if credential is not None:
        return credential
    if "sig=" in urlsplit(account_url).query:
        return None  # a SAS token in the URL itself is the credential
    if sas_token:
        return AzureSasCredential(str(sas_token))
    if account_key:
        account = str(options.pop("account_name", "") or urlsplit(account_url).hostname or "")
        return AzureNamedKeyCredential(account.split(".")[0], str(account_key))
    try:
        identity = importlib.import_module("azure.identity")  # optional dependency
    except ImportError:
        raise ConfigurationError(
            "azure-tables with account_url needs credential=..., account_key=..., "
            "sas_token=..., or the azure-identity package for DefaultAzureCredential"
        ) from None
    return identity.DefaultAzureCredential()


_NOT_CONFIGURED = (
    "azure-tables has no account configured: set the environment variable "
    f"{ENV_CONNECTION_STRING} to the storage account's connection string, or pass "
    "connection_string=..., or account_url=... with account_key=..., sas_token=... or "
    "credential=... (options of open_store, [tool.durastate.options] or DURASTATE_OPTIONS)"
)


def _table_client(
    table_name: str, options: dict[str, Any], settings: Mapping[str, Any]
) -> TableClient:
    connection_string = _connection_string(options)
    options["_connection_string"] = connection_string
    kwargs = _client_kwargs(settings)
    kwargs["timeout"] = settings["operation_timeout"]  # RetryPolicy: total time for all tries
    try:
        if connection_string:
            return TableClient.from_connection_string(connection_string, table_name, **kwargs)
        account_url = options.pop("account_url", None)
        if not account_url:
            raise ConfigurationError(_NOT_CONFIGURED)
        options["_account_url"] = str(account_url)
        credential = _credential(options, str(account_url))
        options["_credential"] = credential
        return TableClient(str(account_url), table_name, credential=credential, **kwargs)
    except ConfigurationError:
        raise
    except ValueError as exc:  # the SDK's messages may quote the key: name only the kind
        what = "connection string" if connection_string else "account_url or credential"
        raise ConfigurationError(
            f"azure-tables: the {what} is not valid ({type(exc).__name__})"
        ) from None


def _blob_factory(options: dict[str, Any], settings: Mapping[str, Any]) -> Any:
    """A zero-argument factory for the BlobServiceClient, built only when first needed."""
    connection_string = options.pop("_connection_string", None)
    account_url = options.pop("_account_url", None)
    credential = options.pop("_credential", None)
    blob_url = options.pop("blob_account_url", None)
    if blob_url is None and account_url is not None:
        blob_url = str(account_url).replace(".table.", ".blob.")
    kwargs = _client_kwargs(settings)

    def factory() -> BlobServiceClient:
        if connection_string is not None:
            return BlobServiceClient.from_connection_string(connection_string, **kwargs)
        return BlobServiceClient(str(blob_url), credential=credential, **kwargs)

    return factory
