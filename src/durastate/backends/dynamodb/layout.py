"""The stored layout: attribute names, time format, etags, and item -> record.

One item per instance in table ``TABLE``:

- key ``instance_id`` (S), stored as given: DynamoDB keys take any non-empty string up to
  2048 bytes, so no escaping is needed (unlike Azure Tables' keys);
- ``name``, ``runtime_status``, ``created_at``, ``last_updated_at``,
  ``custom_status_updated_at`` (ISO-8601 UTC with milliseconds), ``etag`` and
  ``previous_etag`` (S);
- each payload ``F`` in (``custom_status``, ``input``, ``output``) as ``F`` (B) plus
  ``F_encoding`` (S), or, when offloaded to S3, ``F_ref`` (S, the object key) plus
  ``F_encoding``;
- GSI ``by_status_created`` (``runtime_status``, ``created_at``), KEYS_ONLY;
- optional TTL attribute (N, epoch seconds): an item whose TTL has passed reads as absent.

This is exactly the layout of the boto3-based backend it replaces, so data written before
reads after. Items here are DynamoDB's JSON wire form (``{"S": ...}``, ``{"B": base64}``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from durastate.core.records import InstanceRecord, Payload, RuntimeStatus
from durastate.errors import CorruptRecord

Item = dict[str, Any]

#: Largest payload kept inline without offload: three of them plus keys fit in 400 KB.
INLINE_LIMIT: Final = 128 * 1024
MAX_INSTANCE_ID_LENGTH: Final = 512

ID, NAME, STATUS, CREATED = "instance_id", "name", "runtime_status", "created_at"
UPDATED, CS_UPDATED, ETAG = "last_updated_at", "custom_status_updated_at", "etag"
PREVIOUS = "previous_etag"  # the etag each update replaced: recognises a lost answer
CS, INPUT, OUTPUT = "custom_status", "input", "output"
PAYLOAD_FIELDS: Final = (CS, INPUT, OUTPUT)


def timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds: fixed width, so strings sort as instants do."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def ceil_ms(moment: datetime) -> datetime:
    """The first whole millisecond at or after ``moment`` (stored times are whole ms)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def new_etag() -> str:
    """A random 96-bit etag, made by the client: it recognises its own write afterwards."""
    return os.urandom(12).hex()


def text(item: Mapping[str, Any], name: str) -> str | None:
    """A string attribute, or ``None`` when absent."""
    attribute = item.get(name)
    return None if attribute is None else str(attribute["S"])


def binary(data: bytes) -> dict[str, str]:
    """A B attribute in the wire form (base64)."""
    return {"B": base64.b64encode(data).decode("ascii")}


def unbinary(attribute: Mapping[str, Any]) -> bytes:
    return base64.b64decode(attribute["B"], validate=True)


def offloaded_refs(item: Mapping[str, Any] | None) -> list[str]:
    """The S3 keys an item points at (what deleting or replacing it leaves behind)."""
    if not item:
        return []
    return [str(item[f"{f}_ref"]["S"]) for f in PAYLOAD_FIELDS if f"{f}_ref" in item]


def expired(item: Mapping[str, Any], ttl_attribute: str | None, now_epoch: float) -> bool:
    """DynamoDB deletes expired items lazily: one whose TTL has passed counts as absent."""
    if ttl_attribute is None or ttl_attribute not in item:
        return False
    return float(item[ttl_attribute]["N"]) <= now_epoch


def record_of(
    item: Mapping[str, Any], fetch_payloads: bool, offloaded: Callable[[str], bytes | None]
) -> InstanceRecord:
    """The record of an item; ``offloaded(key)`` gives an offloaded payload's bytes
    (fetched beforehand). A damaged item is ``CorruptRecord`` naming the instance."""
    instance_id = str(item[ID]["S"])
    try:
        custom_at = text(item, CS_UPDATED)
        return InstanceRecord(
            instance_id=instance_id,
            name=str(item[NAME]["S"]),
            runtime_status=RuntimeStatus(item[STATUS]["S"]),
            created_at=datetime.fromisoformat(item[CREATED]["S"]),
            last_updated_at=datetime.fromisoformat(item[UPDATED]["S"]),
            custom_status_updated_at=datetime.fromisoformat(custom_at) if custom_at else None,
            etag=str(item[ETAG]["S"]),
            custom_status=_payload(item, instance_id, CS, offloaded),
            input=_payload(item, instance_id, INPUT, offloaded) if fetch_payloads else None,
            output=_payload(item, instance_id, OUTPUT, offloaded) if fetch_payloads else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptRecord(instance_id, f"bad attribute ({type(exc).__name__})") from None


def _payload(
    item: Mapping[str, Any],
    instance_id: str,
    field: str,
    offloaded: Callable[[str], bytes | None],
) -> Payload | None:
    encoding = text(item, f"{field}_encoding")
    if encoding is None:
        return None
    if field in item:
        return Payload.from_encoding(unbinary(item[field]), encoding)
    ref = text(item, f"{field}_ref")
    data = None if ref is None else offloaded(ref)
    if data is None:
        raise CorruptRecord(instance_id, f"{field} has an encoding but no data")
    return Payload.from_encoding(data, encoding)


def wanted_refs(item: Mapping[str, Any], fetch_payloads: bool) -> list[tuple[str, str]]:
    """(field, S3 key) of the offloaded payloads a read of ``item`` needs."""
    fields = PAYLOAD_FIELDS if fetch_payloads else (CS,)
    return [(f, str(item[f"{f}_ref"]["S"])) for f in fields if f"{f}_ref" in item]


def projection(fetch_payloads: bool, ttl_attribute: str | None) -> dict[str, Any]:
    """The attributes a read asks for: input and output only when ``fetch_payloads``."""
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
    if ttl_attribute is not None:
        attributes.append(ttl_attribute)
    names = {f"#p{i}": name for i, name in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
