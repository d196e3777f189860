"""The row layout (Durable Task's: one entity per instance) and its OData JSON form.

One entity per instance: PartitionKey is the escaped id, RowKey is "". Per payload field F
(CustomStatus, Input, Output): ``F`` (a string for plain JSON so Azure Storage Explorer
shows it, binary otherwise; "" when offloaded), ``FEncoding`` (Payload.encoding; "" or
missing means *no payload*) and ``FBlob`` (the blob name, "" when inline). Every write of F
writes all three, so a MERGE (which cannot remove properties) leaves a consistent row.

The wire form is the one azure-data-tables writes (so rows written before the lean
transport read after it, and the SDK reads ours): strings and booleans as JSON, datetimes
as ``Edm.DateTime`` and bytes as ``Edm.Binary`` (base64), each with its ``@odata.type``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from durastate.backends.azure_tables.keys import escape_key, unescape_key, utf16_length
from durastate.core.records import InstanceRecord, Payload, RuntimeStatus
from durastate.errors import CorruptRecord

PROPERTY_LIMIT: Final = 64 * 1024  # bytes per property; strings count UTF-16
INLINE_LIMIT: Final = 60 * 1024  # what we store inline at most, leaving headroom

C_ID: Final = "InstanceId"
C_NAME: Final = "Name"
C_STATUS: Final = "RuntimeStatus"
C_CREATED: Final = "CreatedTime"
C_UPDATED: Final = "LastUpdatedTime"
C_STATUS_UPDATED: Final = "CustomStatusUpdatedTime"
C_OFFLOADED: Final = "Offloaded"  # set once a payload of this run went to a blob: purge sweeps
F_CUSTOM: Final = "CustomStatus"
F_INPUT: Final = "Input"
F_OUTPUT: Final = "Output"
FIELD_NAMES: Final = {F_CUSTOM: "custom_status", F_INPUT: "input", F_OUTPUT: "output"}

_BASE_COLUMNS = [C_ID, C_NAME, C_STATUS, C_CREATED, C_UPDATED, C_STATUS_UPDATED, C_OFFLOADED]


def field_columns(field: str) -> list[str]:
    return [field, f"{field}Encoding", f"{field}Blob"]


SELECT_LIGHT: Final = _BASE_COLUMNS + field_columns(F_CUSTOM)
SELECT_FULL: Final = SELECT_LIGHT + field_columns(F_INPUT) + field_columns(F_OUTPUT)
BLOB_COLUMNS: Final = [f"{field}Blob" for field in FIELD_NAMES]

_EDM_DATETIME = "Edm.DateTime"
_EDM_BINARY = "Edm.Binary"
_EDM_INT64 = "Edm.Int64"
_EDM_DOUBLE = "Edm.Double"
_TYPE_SUFFIX = "@odata.type"


# -- entity <-> JSON ----------------------------------------------------------------------


def datetime_text(value: datetime) -> str:
    """``Edm.DateTime`` as the SDK writes it: UTC, microseconds, ``Z``."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # cheaper than strftime


def entity_json(entity: Mapping[str, Any]) -> bytes:
    """The request body of an insert, merge or replace (typed properties annotated)."""
    body: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, datetime):
            body[name] = datetime_text(value)
            body[name + _TYPE_SUFFIX] = _EDM_DATETIME
        elif isinstance(value, bytes):
            body[name] = base64.b64encode(value).decode("ascii")
            body[name + _TYPE_SUFFIX] = _EDM_BINARY
        elif isinstance(value, float):  # a JSON number without it would be an Int32
            body[name] = value
            body[name + _TYPE_SUFFIX] = _EDM_DOUBLE
        else:
            body[name] = value
    return orjson.dumps(body)


def parse_datetime(text: str) -> datetime | None:
    """An ``Edm.DateTime`` (Azure sends 7 fractional digits, or none) as aware UTC."""
    if not text.endswith("Z") or len(text) < 20:
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        parsed = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
        micros = int((fraction + "000000")[:6]) if fraction else 0
    except ValueError:
        return None
    return parsed.replace(microsecond=micros, tzinfo=UTC)


def decode_entity(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Properties of a JSON entity with their ``@odata.type`` applied (datetime, bytes,
    Int64, and Double's ``NaN``/``Infinity``); a value that does not parse as its declared
    type is kept as the raw text, so the record builder reports it as corrupt for that
    instance alone."""
    entity: dict[str, Any] = {}
    for name, value in raw.items():
        if name.endswith(_TYPE_SUFFIX) or name.startswith("odata."):
            continue
        kind = raw.get(name + _TYPE_SUFFIX)
        if kind is not None and isinstance(value, str):
            value = _typed(kind, value)
        entity[name] = value
    return entity


def _typed(kind: Any, value: str) -> Any:
    if kind == _EDM_DATETIME:
        return parse_datetime(value) or value
    if kind == _EDM_BINARY:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
    if kind in (_EDM_INT64, _EDM_DOUBLE):
        try:
            return int(value) if kind == _EDM_INT64 else float(value)
        except ValueError:
            return value
    return value


# -- payload columns ----------------------------------------------------------------------


def inline_value(payload: Payload) -> str | bytes:
    """Plain JSON as a string property (readable in Storage Explorer), the rest as binary."""
    if payload.encoding == "json":
        try:
            text = payload.data.decode("utf-8")
        except UnicodeDecodeError:
            return payload.data
        if "\x00" not in text:
            return text
    return payload.data


def stored_size(value: str | bytes) -> int:
    return 2 * utf16_length(value) if isinstance(value, str) else len(value)


def inline_columns(field: str, payload: Payload | None, value: str | bytes = "") -> dict[str, Any]:
    """The three columns of ``field`` holding ``payload`` inline (or no payload)."""
    if payload is None:
        return {field: "", f"{field}Encoding": "", f"{field}Blob": ""}
    return {field: value, f"{field}Encoding": payload.encoding, f"{field}Blob": ""}


def blob_columns(field: str, payload: Payload, name: str) -> dict[str, Any]:
    """The columns of ``field`` pointing at the blob ``name``."""
    return {
        field: "",
        f"{field}Encoding": payload.encoding,
        f"{field}Blob": name,
        C_OFFLOADED: True,
    }


def inline_payload(instance_id: str, entity: Mapping[str, Any], field: str) -> Payload | None:
    """The payload of ``field`` when it is stored inline (``None``: no payload)."""
    encoding = entity.get(f"{field}Encoding")
    if not encoding:
        return None
    value = entity.get(field)
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes):
        data = value
    elif value is None:
        data = b""
    else:
        kind = type(value).__name__
        raise CorruptRecord(instance_id, f"{FIELD_NAMES[field]} has type {kind}")
    return Payload.from_encoding(data, str(encoding))


def blob_of(entity: Mapping[str, Any], field: str) -> str | None:
    """The blob holding ``field``'s payload, if it is offloaded."""
    if not entity.get(f"{field}Encoding"):
        return None
    blob = entity.get(f"{field}Blob")
    return str(blob) if blob else None


# -- records ------------------------------------------------------------------------------


def check_owner(instance_id: str, entity: Mapping[str, Any]) -> None:
    if entity.get(C_ID) not in (None, escape_key(instance_id)):
        raise CorruptRecord(instance_id, "row belongs to another instance id")


def _as_utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_record(
    instance_id: str, entity: Mapping[str, Any], etag: str, payloads: Mapping[str, Payload | None]
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
        etag=etag,
        custom_status=payloads.get(F_CUSTOM),
        input=payloads.get(F_INPUT),
        output=payloads.get(F_OUTPUT),
    )


def listed_id(entity: Mapping[str, Any], prefix: str | None) -> str | None:
    """The instance id of a listed row; ``None`` for a row that is not ours or whose id
    misses the prefix (the key range is a superset)."""
    try:
        instance_id = unescape_key(str(entity[C_ID]))
    except (KeyError, ValueError):
        return None
    if prefix and not instance_id.startswith(prefix):
        return None
    return instance_id


def is_terminal(status: str) -> bool:
    try:
        return RuntimeStatus(status).is_terminal
    except ValueError:
        return False
