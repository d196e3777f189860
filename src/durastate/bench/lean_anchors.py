"""The lean limit: the same conditional write (and read) as the SDK anchors, by hand.

What a Python client can physically cost per request (issue 11): the request is built by
hand, serialized with orjson, signed by durastate's pure signing functions
(`durastate.transport.aws_sigv4`, `durastate.transport.azure_auth`) and sent by the sync
`HttpDriver` (http.client, keep-alive) with its default policy. Nothing else: no entity
model, no parameter validation, no event hooks. durastate's network backends are judged
against the SDK anchors; this cell shows how far below the SDK a client can go at all.

- Azure Tables: ``MERGE`` with ``If-Match`` (SharedKey), ``GET`` of the entity;
- DynamoDB: ``UpdateItem`` with a version condition (SigV4), ``GetItem``;
- S3: ``PutObject`` with ``If-Match`` (SigV4), ``GetObject``.

Tables and buckets are created with the SDK (administration), as the backends do.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast
from urllib.parse import quote

import orjson

from durastate.bench.anchors import RAW_BUCKET, RAW_DYNAMO_TABLE, RAW_TABLE
from durastate.bench.references import AwsTarget, Reference
from durastate.bench.timing import Op
from durastate.transport import HttpDriver, HttpRequest, HttpResponse, TransportOptions
from durastate.transport.aws_sigv4 import FrozenCredentials, sign_sigv4
from durastate.transport.azure_auth import AccountKey, sign_table_shared_key

LEAN = "lean"  # the reference subject of these cells, next to "anchor" and "peer"


def _expect(response: HttpResponse, status: int, what: str) -> HttpResponse:
    if response.status != status:
        raise RuntimeError(f"{what}: HTTP {response.status}, expected {status}")
    return response


def _connection_settings(connection_string: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in connection_string.split(";") if part)
    return {name.strip().lower(): value.strip() for name, _, value in pairs}


def azure_endpoint_and_key(connection_string: str) -> tuple[str, AccountKey]:
    """The table endpoint and the account key of a connection string."""
    settings = _connection_settings(connection_string)
    endpoint = settings.get("tableendpoint") or (
        f"{settings.get('defaultendpointsprotocol', 'https')}://"
        f"{settings['accountname']}.table.{settings.get('endpointsuffix', 'core.windows.net')}"
    )
    return endpoint, AccountKey(settings["accountname"], settings["accountkey"])


def azure_entity_path(table: str, key: str) -> str:
    return f"/{table}(PartitionKey='{quote(key, safe='')}',RowKey='')"


def azure_merge(endpoint: str, key: AccountKey, path: str, status: bytes,
                etag: str) -> HttpRequest:
    """A signed MERGE of the entity's ``CustomStatus`` with ``If-Match``."""
    body = orjson.dumps({"CustomStatus": status.decode()})
    request = HttpRequest.to("MERGE", endpoint, path, headers={
        "x-ms-version": "2019-02-02", "dataserviceversion": "3.0",
        "content-type": "application/json",
        "accept": "application/json;odata=nometadata", "if-match": etag,
    }, body=body)
    return sign_table_shared_key(request, key)


class LeanAzureTables:
    """One entity per instance (PartitionKey = id, RowKey = ""), as the backend lays it out."""

    def __init__(self, connection_string: str, read: bool) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableServiceClient

        self.endpoint, self.key = azure_endpoint_and_key(connection_string)
        self.read = read
        with TableServiceClient.from_connection_string(connection_string) as service, \
                contextlib.suppress(ResourceExistsError):
            service.create_table(RAW_TABLE)
        self.driver = HttpDriver(TransportOptions())

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        send, dumps, path = self.driver.send, orjson.dumps, azure_entity_path(RAW_TABLE, key)
        endpoint, account = self.endpoint, self.key
        put = HttpRequest.to("PUT", self.endpoint, path, headers={  # insert or replace
            "x-ms-version": "2019-02-02", "dataserviceversion": "3.0",
            "content-type": "application/json", "accept": "application/json;odata=nometadata",
        }, body=orjson.dumps({"CustomStatus": dumps(values[1]).decode()}))
        state = [str(_expect(send(sign_table_shared_key(put, self.key)), 204,
                             "Azure insert-or-replace").header("etag"))]
        if self.read:
            get = HttpRequest.to("GET", self.endpoint, path, headers={
                "x-ms-version": "2019-02-02", "dataserviceversion": "3.0",
                "accept": "application/json;odata=nometadata"})

            def get_entity(i: int) -> None:
                body = _expect(send(sign_table_shared_key(get, self.key)), 200, "Azure GET").body
                orjson.loads(orjson.loads(body)["CustomStatus"])

            return get_entity

        def merge_if_match(i: int) -> None:
            answer = send(azure_merge(endpoint, account, path, dumps(values[i & 1]), state[0]))
            state[0] = str(_expect(answer, 204, "Azure MERGE").header("etag"))

        return merge_if_match

    def close(self) -> None:
        self.driver.close()


class _LeanAws:
    service = ""

    def __init__(self, target: AwsTarget, read: bool) -> None:
        import boto3

        self.target = target
        self.read = read
        self.credentials = FrozenCredentials(target.access_key or "", target.secret_key or "")
        self.endpoint = target.endpoint_url or (
            f"https://{self.service}.{target.region}.amazonaws.com")
        client: Any = cast(Any, boto3).client(self.service, **target.client_kwargs())
        with contextlib.closing(client):
            self.prepare(client)
        self.driver = HttpDriver(TransportOptions())

    def prepare(self, client: Any) -> None:
        """Create the table or bucket the SDK anchors use (administration: the SDK)."""

    def sign(self, request: HttpRequest) -> HttpRequest:
        return sign_sigv4(request, self.credentials, self.target.region, self.service,
                          s3=self.service == "s3")

    def close(self) -> None:
        self.driver.close()


class LeanDynamoDB(_LeanAws):
    service = "dynamodb"

    def prepare(self, client: Any) -> None:
        if RAW_DYNAMO_TABLE not in client.list_tables().get("TableNames", []):
            client.create_table(
                TableName=RAW_DYNAMO_TABLE,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            client.get_waiter("table_exists").wait(
                TableName=RAW_DYNAMO_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def _call(self, action: str, body: dict[str, Any]) -> HttpRequest:
        return self.sign(HttpRequest.to("POST", self.endpoint, "/", headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": f"DynamoDB_20120810.{action}"}, body=orjson.dumps(body)))

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        send, dumps, call, table = self.driver.send, orjson.dumps, self._call, RAW_DYNAMO_TABLE
        item = {"pk": {"S": key}, "ver": {"N": "0"}, "cs": {"S": dumps(values[1]).decode()}}
        _expect(send(call("PutItem", {"TableName": table, "Item": item})), 200, "PutItem")
        if self.read:
            get = {"TableName": table, "Key": {"pk": {"S": key}}, "ConsistentRead": True}

            def get_item(i: int) -> None:
                body = _expect(send(call("GetItem", get)), 200, "GetItem").body
                orjson.loads(orjson.loads(body)["Item"]["cs"]["S"])

            return get_item

        state = [0]

        def update_item(i: int) -> None:
            version = state[0]
            _expect(send(call("UpdateItem", {
                "TableName": table,
                "Key": {"pk": {"S": key}},
                "UpdateExpression": "SET cs = :v, ver = :n",
                "ConditionExpression": "ver = :o",
                "ExpressionAttributeValues": {
                    ":v": {"S": dumps(values[i & 1]).decode()},
                    ":n": {"N": str(version + 1)},
                    ":o": {"N": str(version)},
                },
            })), 200, "UpdateItem")
            state[0] = version + 1

        return update_item


class LeanS3(_LeanAws):
    service = "s3"

    def prepare(self, client: Any) -> None:
        if RAW_BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
            client.create_bucket(Bucket=RAW_BUCKET)

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        send, dumps, sign = self.driver.send, orjson.dumps, self.sign
        path = f"/{RAW_BUCKET}/{quote(key, safe='')}"

        def put(body: bytes, etag: str | None) -> str:
            headers = {"content-type": "application/json"}
            if etag is not None:
                headers["if-match"] = etag
            answer = send(sign(HttpRequest.to("PUT", self.endpoint, path, headers=headers,
                                              body=body)))
            return str(_expect(answer, 200, "PutObject").header("etag"))

        state = [put(dumps(values[1]), None)]
        if self.read:
            def get_object(i: int) -> None:
                answer = send(sign(HttpRequest.to("GET", self.endpoint, path)))
                orjson.loads(_expect(answer, 200, "GetObject").body)

            return get_object

        def put_if_match(i: int) -> None:
            state[0] = put(dumps(values[i & 1]), state[0])

        return put_if_match


_NAME = "hand-signed request over http.client (durastate.transport)"


def lean_anchors_for(scheme: str, url: str, options: dict[str, Any]) -> list[Reference]:
    """The lean-limit cells of a network backend: its update and its read; none elsewhere."""
    if scheme == "azure-tables":
        conn = str(options.get("connection_string") or "")
        return [
            Reference(LEAN, f"Azure MERGE If-Match, {_NAME}", "orjson", "update_cas",
                      lambda: LeanAzureTables(conn, read=False)),
            Reference(LEAN, f"Azure GET entity, {_NAME}", "orjson", "read",
                      lambda: LeanAzureTables(conn, read=True), operation="raw_read"),
        ]
    if scheme not in ("dynamodb", "s3"):
        return []
    target = AwsTarget.from_options(url, options)
    if scheme == "dynamodb":
        return [
            Reference(LEAN, f"DynamoDB UpdateItem (version condition), {_NAME}", "orjson",
                      "update_cas", lambda: LeanDynamoDB(target, read=False)),
            Reference(LEAN, f"DynamoDB GetItem, {_NAME}", "orjson", "read",
                      lambda: LeanDynamoDB(target, read=True), operation="raw_read"),
        ]
    return [
        Reference(LEAN, f"S3 PutObject If-Match, {_NAME}", "orjson", "update_cas",
                  lambda: LeanS3(target, read=False)),
        Reference(LEAN, f"S3 GetObject, {_NAME}", "orjson", "read",
                  lambda: LeanS3(target, read=True), operation="raw_read"),
    ]
