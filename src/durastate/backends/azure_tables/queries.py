"""Queries: the OData filter of an `InstanceQuery`, and continuation tokens bound to one
table and one filter (Azure would silently start again at page 1 for a token it cannot use).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from durastate.backends.azure_tables.keys import prefix_range
from durastate.backends.azure_tables.layout import (
    C_CREATED,
    C_NAME,
    C_STATUS,
    C_UPDATED,
)
from durastate.core.records import InstanceQuery
from durastate.core.tokens import decode_token, encode_token
from durastate.errors import InvalidContinuationToken

_TOKEN_MARK = "azure-tables"  # noqa: S105 - a key name, not a secret


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _datetime_literal(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return "datetime'" + value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def odata_filter(query: InstanceQuery) -> str:
    """The OData filter; every value quoted here. The prefix becomes a key range (a
    superset: callers re-check the prefix exactly)."""
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


def query_fingerprint(table: str, odata: str) -> str:
    """Names the table and filter a token belongs to, so a foreign token is refused."""
    text = f"{table}\n{odata}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:24]


def encode_continuation(position: Mapping[str, Any], fingerprint: str) -> str:
    """The service's resume position (NextPartitionKey/NextRowKey) as an opaque token."""
    return encode_token(
        {
            _TOKEN_MARK: fingerprint,
            "pk": position.get("NextPartitionKey") or None,
            "rk": position.get("NextRowKey") or None,
        }
    )


def decode_continuation(token: str, fingerprint: str) -> dict[str, str]:
    """The resume position; ``InvalidContinuationToken`` for a token this table and filter
    did not produce."""
    state = decode_token(token)
    pk, rk = state.get("pk"), state.get("rk")
    well_formed = set(state) == {_TOKEN_MARK, "pk", "rk"} and all(
        value is None or isinstance(value, str) for value in (pk, rk)
    )
    if not well_formed or not (pk or rk):
        raise InvalidContinuationToken(
            "continuation token was not made by an azure-tables store (forged or truncated?)"
        )
    if state[_TOKEN_MARK] != fingerprint:
        raise InvalidContinuationToken(
            "continuation token belongs to another table or another filter: pass the token "
            "only to the same query on the same store"
        )
    return {"NextPartitionKey": pk or "", "NextRowKey": rk or ""}
