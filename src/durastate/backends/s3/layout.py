"""The two objects of an instance, and the etag that covers both (the stored layout).

Layout (``P`` is the prefix, ``K`` the escaped instance id, see `keys`)::

    P/records/K   JSON header line + first custom-status bytes + input bytes + output bytes
                  (written by create and by runtime-status changes; never by a
                  custom-status update); the header's ``ver`` is the VER it goes with
    P/status/K    b"ds2 RUN VER WRITE ENCODING\\n" + custom-status bytes;
                  metadata ``cs-updated``, ``w`` (= WRITE) and ``p`` (the WRITE it replaced)

Pure functions and values: bodies built and parsed, the etag ``RUN.VER.WRITE.MD5``, which
of the two objects' custom status counts, and whether a write landed judging by the tokens
a retry met. docs/s3.md explains why the layout is what it is; it must not change, so data
written by any earlier version reads.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from durastate.core.records import InstanceRecord, Payload, RuntimeStatus
from durastate.errors import ConcurrencyError, CorruptRecord

NO_STATUS = "0"  # the MD5 part of an etag when the run has no status object yet

# -- the etag -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Etag:
    """``RUN.VER.WRITE.MD5``: the run, the runtime-status version, the write that made the
    status object, and the status object's ETag (all `NO_STATUS` when there is none)."""

    run: str
    ver: str
    write: str
    md5: str

    def __str__(self) -> str:
        return f"{self.run}.{self.ver}.{self.write}.{self.md5}"

    @classmethod
    def parse(cls, instance_id: str, etag: str) -> Etag:
        parts = etag.split(".")
        if len(parts) != 4 or not all(parts):
            raise ConcurrencyError(instance_id, etag)  # not ours, so it cannot match
        return cls(*parts)


def token() -> str:
    return secrets.token_hex(6)


def landed(metadata: Mapping[str, str], write: str, replaces: str | None) -> bool | None:
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


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


# -- object bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """A parsed status object: its header, the custom status, and when that was set."""

    run: str
    ver: str
    write: str
    payload: Payload | None
    updated_at: datetime | None
    md5: str


def status_body(run: str, ver: str, write: str, payload: Payload | None) -> bytes:
    encoding = urllib.parse.quote(payload.encoding, safe="+-_.~") if payload else "-"
    header = f"ds2 {run} {ver} {write} {encoding}\n".encode("ascii")
    return header + (payload.data if payload else b"")


def parse_status(instance_id: str, body: bytes, md5: str, meta: Mapping[str, str]) -> Status:
    header, sep, data = body.partition(b"\n")
    fields = header.decode("ascii", "replace").split(" ")
    if not sep or len(fields) != 5 or fields[0] != "ds2" or not all(fields):
        raise CorruptRecord(instance_id, "status object has no valid header")
    _, run, ver, write, encoding = fields
    payload = (
        None if encoding == "-" else Payload.from_encoding(data, urllib.parse.unquote(encoding))
    )
    updated = meta.get("cs-updated")
    return Status(
        run, ver, write, payload, parse_time(instance_id, updated) if updated else None, md5
    )


@dataclass(frozen=True, slots=True)
class Record:
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


def record_body(record: Record) -> bytes:
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


def parse_time(instance_id: str, text: str) -> datetime:
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


def parse_record(instance_id: str, body: bytes, s3_etag: str, complete: bool) -> Record:
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
        return Record(
            instance_id=instance_id,
            run=str(header["run"]),
            name=str(header["name"]),
            runtime_status=RuntimeStatus(header["rs"]),
            created_at=parse_time(instance_id, header["created"]),
            last_updated_at=parse_time(instance_id, header["updated"]),
            input=inp if complete else None,
            output=out if complete else None,
            s3_etag=s3_etag,
            has_payloads=complete,
            custom_status=custom,
            custom_status_updated_at=parse_time(instance_id, custom_at) if custom_at else None,
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


def torn(record: Record, status: Status | None) -> bool:
    """Do the two objects come from different runtime changes (a reader caught a runtime
    change between its two PUTs, or its writer died there)? Records written before the
    record carried VER, and statuses of another run (not sealed yet), cannot be torn."""
    return (
        status is not None
        and status.run == record.run
        and record.ver is not None
        and record.ver != status.ver
    )


def current_status(record: Record, status: Status | None) -> tuple[Payload | None, datetime | None]:
    """The run's custom status and when it was set: its status object's, or, until it has
    one (a status object of another run is an older run's), the one created with it."""
    if status is not None and status.run == record.run:
        return status.payload, status.updated_at
    return record.custom_status, record.custom_status_updated_at


def compose(record: Record, status: Status | None, fetch_payloads: bool) -> InstanceRecord:
    """The caller's view of a record and the status object found beside it."""
    custom, updated = current_status(record, status)
    if status is not None and (status.run == record.run or record.ver is None):
        etag = Etag(record.run, status.ver, status.write, status.md5)
    elif status is not None:  # not sealed yet: a CAS with this etag writes the record's VER
        etag = Etag(record.run, str(record.ver), status.write, status.md5)
    else:
        etag = Etag(record.run, record.ver or NO_STATUS, NO_STATUS, NO_STATUS)
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


def stored_id(hint: str, body: bytes) -> str:
    """The instance id a record object's header names (``hint`` names it in errors)."""
    try:
        stored = json.loads(body.partition(b"\n")[0])["id"]
    except (ValueError, KeyError, TypeError):
        raise CorruptRecord(hint, "record object has no valid header") from None
    if not isinstance(stored, str):
        raise CorruptRecord(hint, "record object has no valid header")
    return stored
