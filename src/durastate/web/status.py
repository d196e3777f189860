"""Instances as Durable Functions' HTTP API shows them (names, PascalCase statuses, UTC
times with ``Z``), and the query-string parameters that API takes, checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, unquote

from durastate.core.ids import validate_name
from durastate.core.models import InstanceMetadata
from durastate.core.records import RuntimeStatus
from durastate.errors import InvalidArgument
from durastate.web.problems import BadRequest

#: Durable Functions' spelling of each runtime status.
PASCAL: Final = {status: status.value.capitalize() for status in RuntimeStatus}
_BY_NAME: Final = {status.value: status for status in RuntimeStatus}
MAX_TOP: Final = 1000
_SAFE: Final = "-_.~:;=+!$&'()*,@/"
_PLAIN: Final = re.compile(r"[A-Za-z0-9\-_.~:;=+!$&'()*,@/]*")


def utc_text(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with a ``Z`` and milliseconds (freshness of a status is sub-second)."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def status_body(item: InstanceMetadata, *, show_input: bool, show_output: bool) -> dict[str, Any]:
    """The GET body: Durable Functions' fields plus ``customStatusUpdatedTime``."""
    return {
        "name": item.name,
        "instanceId": item.instance_id,
        "runtimeStatus": PASCAL[item.runtime_status],
        "input": item.input if show_input else None,
        "customStatus": item.custom_status,
        "output": item.output if show_output else None,
        "createdTime": utc_text(item.created_at),
        "lastUpdatedTime": utc_text(item.last_updated_at),
        "customStatusUpdatedTime": utc_text(item.custom_status_updated_at),
    }


def etag_token(etag: str) -> str:
    """The store's etag as an opaque tag (no quotes, spaces or newlines): the ``ETag`` header
    between quotes and the SSE ``id``; `etag_of_token` reverses it."""
    return url_safe(etag)


def url_safe(text: str) -> str:
    """``text`` percent-encoded where it must be (most ids and etags need nothing)."""
    if _PLAIN.fullmatch(text):
        return text
    return quote(text, safe=_SAFE)


def etag_of_token(token: str) -> str:
    return unquote(token)


def if_none_match(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names this etag (or ``*``)."""
    if not header:
        return False
    wanted = etag_token(etag)
    for tag in header.split(","):
        tag = tag.strip()
        tag = tag.removeprefix("W/").strip('"')
        if tag in ("*", wanted):
            return True
    return False


def flag(params: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean parameter; Durable Functions clients send ``True`` as well as ``true``."""
    text = params.get(name)
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest(name, f"{name} must be true or false, not {text[:40]!r}")


def statuses(params: Mapping[str, str], name: str = "runtimeStatus") -> list[RuntimeStatus] | None:
    """``runtimeStatus=Running,Pending`` (any case), or ``None`` for every status."""
    text = params.get(name)
    if not text:
        return None
    chosen: list[RuntimeStatus] = []
    for part in text.split(","):
        status = _BY_NAME.get(part.strip().lower())
        if status is None:
            known = ", ".join(PASCAL.values())
            raise BadRequest(name, f"{name}: unknown status {part.strip()[:40]!r} (one of {known})")
        chosen.append(status)
    return chosen


def moment(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO-8601 time; one without an offset is UTC, as Durable Functions sends them."""
    text = params.get(name)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(name, f"{name} is not an ISO-8601 time: {text[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def workflow_name(params: Mapping[str, str], name: str = "name") -> str | None:
    """The exact workflow name (the ``name`` of the status body), or ``None`` for any."""
    text = params.get(name)
    if not text:
        return None
    try:
        return validate_name(text)
    except InvalidArgument as error:
        raise BadRequest(name, f"{name}: {error}") from None


def filters(params: Mapping[str, str]) -> dict[str, Any]:
    """The instance filters of a query string, as the store's keyword arguments (shared by
    the instance list and the counts). Names follow the status body: ``createdTimeFrom``/
    ``createdTimeTo`` and ``lastUpdatedTimeFrom``/``lastUpdatedTimeTo`` (from inclusive,
    to exclusive), ``name``, ``runtimeStatus``, ``instanceIdPrefix``."""
    return {
        "runtime_status": statuses(params),
        "created_from": moment(params, "createdTimeFrom"),
        "created_to": moment(params, "createdTimeTo"),
        "updated_from": moment(params, "lastUpdatedTimeFrom"),
        "updated_to": moment(params, "lastUpdatedTimeTo"),
        "name": workflow_name(params),
        "prefix": params.get("instanceIdPrefix") or None,
    }


def counts_body(counts: Mapping[RuntimeStatus, int]) -> dict[str, int]:
    """``{"Pending": 0, "Running": 3, ...}``: every status, in Durable Functions' spelling."""
    return {PASCAL[status]: counts.get(status, 0) for status in RuntimeStatus}


def top(params: Mapping[str, str], default: int = 100) -> int:
    text = params.get("top")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        raise BadRequest(
            "top", f"top must be a whole number from 1 to {MAX_TOP}, not {text[:40]!r}"
        )
    return int(text)
