"""Queries on the status/created index: key conditions, continuation tokens, page state.

A query runs one DynamoDB ``Query`` per wanted runtime status (all six without a filter,
never a ``Scan``), with ``created_at`` as a key condition and the id prefix as a filter.
The continuation token holds the status position and DynamoDB's ``LastEvaluatedKey``; a
token whose key is not an index key of the status it points at is refused before any
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from durastate.backends.dynamodb.layout import CREATED, ID, STATUS, Item, ceil_ms, timestamp
from durastate.core.records import InstanceQuery, RuntimeStatus
from durastate.core.tokens import InvalidContinuationToken, decode_token, encode_token

__all__ = [
    "MAX_QUERY_CALLS",
    "KeyRange",
    "continuation",
    "index_query",
    "key_range",
    "start_of",
    "statuses_of",
]

STATUS_ORDER: Final = tuple(RuntimeStatus)
MAX_QUERY_CALLS: Final = 8  # GSI queries per page before a short page is returned

KeyRange = tuple[str | None, str | None]


def statuses_of(query: InstanceQuery) -> list[RuntimeStatus]:
    """The statuses to walk, in a fixed order (the token's position indexes it)."""
    return [s for s in STATUS_ORDER if query.runtime_status is None or s in query.runtime_status]


def _is_index_key(key: Any, status: RuntimeStatus) -> bool:
    """Whether ``key`` has the shape of a ``LastEvaluatedKey`` of the index for ``status``."""
    if not isinstance(key, dict) or set(key) != {ID, STATUS, CREATED}:
        return False
    if not all(
        isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values()
    ):
        return False
    return bool(key[STATUS]["S"] == status.value and key[ID]["S"] and key[CREATED]["S"])


def start_of(token: str | None, statuses: Sequence[RuntimeStatus]) -> tuple[int, Item | None]:
    """The position in ``statuses`` and the index key to start after."""
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


def continuation(position: int, start_key: Item | None, statuses: Sequence[Any]) -> str | None:
    """The token of the next page, ``None`` when every status has been walked."""
    if position >= len(statuses):
        return None
    return encode_token({"v": 1, "s": position, "k": start_key})


def key_range(query: InstanceQuery) -> KeyRange | None:
    """Inclusive ``created_at`` string bounds; ``None`` when the range is empty."""
    low = ceil_ms(query.created_from) if query.created_from else None
    high = ceil_ms(query.created_to) - timedelta(milliseconds=1) if query.created_to else None
    if low is not None and high is not None and low > high:
        return None
    return (timestamp(low) if low else None, timestamp(high) if high else None)


def index_query(
    table: str,
    index_name: str,
    status: RuntimeStatus,
    bounds: KeyRange,
    prefix: str | None,
    limit: int,
    start_key: Item | None,
) -> dict[str, Any]:
    """The Query body for one status."""
    names = {"#st": STATUS}
    values: Item = {":st": {"S": status.value}}
    condition = "#st = :st"
    low, high = bounds
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
    body: dict[str, Any] = {
        "TableName": table,
        "IndexName": index_name,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "Limit": max(limit, 1),
    }
    if prefix:
        names["#id"] = ID
        values[":prefix"] = {"S": prefix}
        body["FilterExpression"] = "begins_with(#id, :prefix)"
    if start_key is not None:
        body["ExclusiveStartKey"] = start_key
    return body
