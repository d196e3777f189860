"""DynamoDB requests as plain data: the JSON bodies of each operation, signed `HttpRequest`s.

The bodies are DynamoDB's wire form (the same shapes boto3's low-level client sends), with
the conditions that carry the backend's guarantees: create is insert-only (or replaces a
terminal run), every update checks the etag when given and sets ``etag = :new,
previous_etag = etag`` (DynamoDB evaluates operands against the item before the update),
a custom-status update fails its condition on identical bytes (nothing written), and with
a TTL an expired item counts as absent. No socket and no clock here beyond the ``now``
given; `DynamoRequests.sign` is a pure function of the body, the credentials and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from durastate.backends.dynamodb.layout import (
    CREATED,
    CS,
    CS_UPDATED,
    ETAG,
    ID,
    INPUT,
    NAME,
    OUTPUT,
    PREVIOUS,
    STATUS,
    UPDATED,
    Item,
    binary,
    projection,
    timestamp,
)
from durastate.core.records import TERMINAL_STATUSES, NewInstance, Payload, RuntimeStatus
from durastate.errors import ConfigurationError
from durastate.transport.aws_sigv4 import AwsCredentials, sign_sigv4
from durastate.transport.messages import HttpRequest

__all__ = ["DynamoRequests", "Stored", "TableLayout"]

_TARGET_PREFIX: Final = "DynamoDB_20120810."
_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_NAMES: Final = {
    "#id": ID,
    "#st": STATUS,
    "#et": ETAG,
    "#pv": PREVIOUS,
    "#lu": UPDATED,
    "#cu": CS_UPDATED,
}
#: The SET part every update carries: a new etag, and the one it replaces kept beside it.
_NEW_ETAG: Final = "#et = :et, #pv = #et"

#: How a payload is stored: ("B", bytes) inline, or ("ref", S3 key) when offloaded.
Stored = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class TableLayout:
    """What the request bodies depend on besides the operation's own arguments."""

    table: str
    index_name: str = "by_status_created"
    ttl_attribute: str | None = None
    ttl_seconds: int | None = None
    offload: bool = False


def _attribute(stored: Stored) -> dict[str, Any]:
    kind, value = stored
    return binary(value) if kind == "B" else {"S": value}


class DynamoRequests:
    """Bodies for one table, and the signed POST that carries each to the endpoint."""

    __slots__ = ("_credentials", "_host", "_path", "_region", "_scheme", "layout")

    def __init__(
        self, layout: TableLayout, endpoint: str, region: str, credentials: AwsCredentials
    ) -> None:
        try:
            parts = urlsplit(endpoint)
            port = parts.port
        except ValueError:
            raise ConfigurationError("the DynamoDB endpoint URL is malformed") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("the DynamoDB endpoint must be an http:// or https:// URL")
        # Userinfo in the endpoint is never sent nor shown (botocore ignores it too).
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._scheme = parts.scheme
        self._host = (
            host if port in (None, 443 if parts.scheme == "https" else 80) else (f"{host}:{port}")
        )
        self._path = parts.path or "/"
        self._region = region
        self._credentials = credentials
        self.layout = layout

    # -- the wire ---------------------------------------------------------------------------

    def sign(
        self, operation: str, body: dict[str, Any], now: datetime | None = None
    ) -> HttpRequest:
        """The signed POST of ``operation`` (``UpdateItem``, ...) with ``body`` as JSON."""
        request = HttpRequest(
            "POST",
            self._scheme,
            self._host,
            self._path,
            (),
            {"content-type": _CONTENT_TYPE, "x-amz-target": _TARGET_PREFIX + operation},
            orjson.dumps(body),
        )
        return sign_sigv4(request, self._credentials.frozen(), self._region, "dynamodb", now=now)

    # -- items ------------------------------------------------------------------------------

    def put_new(
        self,
        new: NewInstance,
        etag: str,
        stored: dict[str, Stored],
        *,
        restart_if_terminal: bool,
    ) -> dict[str, Any]:
        """PutItem: insert-only (or over a terminal run, or an expired item)."""
        layout = self.layout
        created = timestamp(new.created_at)
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
            kind = stored[field][0]
            item[field if kind == "B" else f"{field}_ref"] = _attribute(stored[field])
            item[f"{field}_encoding"] = {"S": payload.encoding}
        if new.custom_status is not None:
            item[CS_UPDATED] = {"S": created}
        if layout.ttl_attribute is not None and layout.ttl_seconds is not None:
            expires = int(new.created_at.timestamp()) + layout.ttl_seconds
            item[layout.ttl_attribute] = {"N": str(expires)}
        names: dict[str, str] = {"#id": ID}
        values: Item = {}
        condition = "attribute_not_exists(#id)"
        if restart_if_terminal:
            names["#st"] = STATUS
            terminal = sorted(TERMINAL_STATUSES)
            values.update({f":t{i}": {"S": s.value} for i, s in enumerate(terminal)})
            condition += f" OR #st IN ({', '.join(values)})"
        if layout.ttl_attribute is not None:
            names["#ttl"] = layout.ttl_attribute
            values[":nowe"] = {"N": str(int(new.created_at.timestamp()))}
            condition += " OR #ttl <= :nowe"
        body: dict[str, Any] = {
            "TableName": layout.table,
            "Item": item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            body["ExpressionAttributeValues"] = values
        if layout.offload:
            body["ReturnValues"] = "ALL_OLD"
        return body

    def custom_status_update(
        self,
        instance_id: str,
        payload: Payload,
        stored: Stored,
        etag: str | None,
        now: datetime,
        made: str,
    ) -> dict[str, Any]:
        """UpdateItem of the custom status alone; identical bytes fail the condition."""
        names = dict(_NAMES)
        names["#cs"] = CS
        names["#cse"] = f"{CS}_encoding"
        values: Item = {
            ":enc": {"S": payload.encoding},
            ":now": {"S": timestamp(now)},
            ":et": {"S": made},
        }
        extra: dict[str, Any] = {}
        if stored[0] == "B":
            values[":cs"] = _attribute(stored)
            update = "SET #cs = :cs, #cse = :enc"
            condition = "(attribute_not_exists(#cs) OR #cs <> :cs OR #cse <> :enc)"
        else:  # offloaded: always written (comparing would need the old object)
            values[":ref"] = _attribute(stored)
            names["#csr"] = f"{CS}_ref"
            update = "SET #csr = :ref, #cse = :enc"
            condition = "attribute_exists(#id)"
        update += f", #cu = :now, #lu = :now, {_NEW_ETAG}" + self._ttl_set(now, names, values)
        if self.layout.offload:
            update += " REMOVE #csr" if stored[0] == "B" else " REMOVE #cs"
            names["#csr"] = f"{CS}_ref"
            extra["ReturnValues"] = "UPDATED_OLD"
        if etag is not None:
            values[":old"] = {"S": etag}
            condition = f"#et = :old AND {condition}"
        else:
            condition = f"attribute_exists(#id) AND {condition}"
        condition += self._alive(now, names, values)
        return self._update(instance_id, update, condition, names, values, extra)

    def runtime_update(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: tuple[Payload, Stored] | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
        made: str,
    ) -> dict[str, Any]:
        """UpdateItem of the runtime status (and the output when ``set_output``)."""
        names = dict(_NAMES)
        values: Item = {
            ":st": {"S": status.value},
            ":now": {"S": timestamp(now)},
            ":et": {"S": made},
        }
        sets = ["#st = :st", "#lu = :now", _NEW_ETAG]
        removes: list[str] = []
        if set_output:
            names.update({"#out": OUTPUT, "#oute": f"{OUTPUT}_encoding", "#outr": f"{OUTPUT}_ref"})
            if output is None:
                removes += ["#out", "#oute", "#outr"]
            else:
                payload, stored = output
                values[":oute"] = {"S": payload.encoding}
                sets.append("#oute = :oute")
                if stored[0] == "B":
                    values[":out"] = _attribute(stored)
                    sets.append("#out = :out")
                    removes.append("#outr")
                else:
                    values[":outr"] = _attribute(stored)
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
        if self.layout.offload and set_output:
            extra["ReturnValues"] = "UPDATED_OLD"
        return self._update(instance_id, update, condition, names, values, extra)

    def get(self, instance_id: str, fetch_payloads: bool) -> dict[str, Any]:
        """A consistent GetItem (input and output only when ``fetch_payloads``)."""
        return {
            "TableName": self.layout.table,
            "Key": {ID: {"S": instance_id}},
            "ConsistentRead": True,
            **projection(fetch_payloads, self.layout.ttl_attribute),
        }

    def batch_get(self, keys: list[Item], fetch_payloads: bool) -> dict[str, Any]:
        """A consistent BatchGetItem of at most 100 keys."""
        request = {
            "Keys": keys,
            "ConsistentRead": True,
            **projection(fetch_payloads, self.layout.ttl_attribute),
        }
        return {"RequestItems": {self.layout.table: request}}

    def delete(self, instance_id: str) -> dict[str, Any]:
        """DeleteItem returning the old item (did it exist; which objects did it own)."""
        return {
            "TableName": self.layout.table,
            "Key": {ID: {"S": instance_id}},
            "ReturnValues": "ALL_OLD",
        }

    # -- parts ------------------------------------------------------------------------------

    def _update(
        self,
        instance_id: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: Item,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """The UpdateItem body (unused names dropped: DynamoDB rejects a name no expression
        uses)."""
        return {
            "TableName": self.layout.table,
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

    def _ttl_set(self, now: datetime, names: dict[str, str], values: Item) -> str:
        """The SET part that refreshes the TTL on every write (when ``ttl_seconds``)."""
        layout = self.layout
        if layout.ttl_attribute is None or layout.ttl_seconds is None:
            return ""
        names["#ttl"] = layout.ttl_attribute
        values[":exp"] = {"N": str(int(now.timestamp()) + layout.ttl_seconds)}
        return ", #ttl = :exp"

    def _alive(self, now: datetime, names: dict[str, str], values: Item) -> str:
        """A condition part that treats an expired item as absent."""
        if self.layout.ttl_attribute is None:
            return ""
        names["#ttl"] = self.layout.ttl_attribute
        values[":nowe"] = {"N": str(int(now.timestamp()))}
        return " AND (attribute_not_exists(#ttl) OR #ttl > :nowe)"
