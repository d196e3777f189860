"""Table and Blob answers as plain data: rows, etags, pages, and the typed error for each
status and service error code. Messages name the table, operation and instance, never a
key, signature or token (the answers carry none, and nothing here reads the request)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from durastate.backends.azure_tables.layout import decode_entity
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
)
from durastate.transport.messages import HttpResponse

#: Answers that may come from a write the service applied ("the operation may have
#: succeeded"); the policy returns them without retrying a write that has no hook.
MAYBE_APPLIED = frozenset({500, 502, 504})


@dataclass(frozen=True, slots=True)
class Row:
    """One entity: its properties (typed) and its etag."""

    entity: dict[str, Any]
    etag: str


def error_code(response: HttpResponse) -> str:
    """The service's error code: the ``x-ms-error-code`` header, else the OData JSON body."""
    code = response.header("x-ms-error-code")
    if code:
        return code
    try:
        body = orjson.loads(response.body)
        return str(body["odata.error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    match = re.search(rb"<Code>([A-Za-z]+)</Code>", response.body[:4096])
    return match.group(1).decode("ascii") if match else ""


def etag_of(response: HttpResponse) -> str:
    return response.header("etag") or ""


def row_of(response: HttpResponse, instance_id: str) -> Row:
    """The row of a GET of one entity."""
    raw = _json(response, instance_id)
    if not isinstance(raw, dict):
        raise DurastateError(f"azure-tables: an entity of {instance_id!r} is not a JSON object")
    return Row(decode_entity(raw), etag_of(response) or str(raw.get("odata.etag", "")))


def page_of(response: HttpResponse) -> tuple[list[Row], dict[str, str] | None]:
    """The rows of a query page and the service's resume position (``None``: last page)."""
    body = _json(response, None)
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list):
        raise DurastateError("azure-tables: a query answer has no 'value' list")
    rows = [
        Row(decode_entity(raw), str(raw.get("odata.etag", "")))
        for raw in values
        if isinstance(raw, dict)
    ]
    next_pk = response.header("x-ms-continuation-nextpartitionkey")
    next_rk = response.header("x-ms-continuation-nextrowkey")
    if not next_pk and not next_rk:
        return rows, None
    return rows, {"NextPartitionKey": next_pk or "", "NextRowKey": next_rk or ""}


def _json(response: HttpResponse, instance_id: str | None) -> Any:
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError:
        whose = f" for {instance_id!r}" if instance_id is not None else ""
        raise DurastateError(f"azure-tables: the answer{whose} is not JSON") from None


def error_for(
    response: HttpResponse,
    where: str,
    instance_id: str | None,
    etag: str | None = None,
) -> DurastateError:
    """The typed error for an answer that is not a success."""
    status = response.status
    code = error_code(response)
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
    if 400 <= status < 500 and status not in (408, 429):
        return DurastateError(f"{where} was rejected: {status} {code}")
    return BackendUnavailable(f"{where} failed: {status} {code}".rstrip())
