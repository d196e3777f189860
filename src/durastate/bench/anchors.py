"""Anchors: the raw call a user would write by hand, on the same server and payload.

Each anchor serializes the dict with orjson inside the timed call, as hand-written code
must, and writes one small record per update:

- memory: a dict assignment of ``orjson.dumps(value)``;
- SQLite: ``INSERT ... ON CONFLICT DO UPDATE`` + ``commit()`` on its own connection to a file
  next to durastate's, in the same journal mode (WAL, ``synchronous=NORMAL``);
- Azure Tables: ``TableClient.update_entity`` (MERGE, If-Match), once with the client as a
  user builds it by default and once with durastate's transport (no per-call proxy lookup);
- DynamoDB: ``update_item`` with a version condition (what a compare-and-swap costs);
- S3: ``put_object`` (last write wins) and ``put_object(IfMatch=...)`` (compare-and-swap);
- reads on the network services: ``get_entity``, ``get_item`` (consistent), ``get_object``,
  each followed by ``orjson.loads`` of the status (what ``get_instance`` is compared with);
- PostgreSQL: psycopg ``UPDATE ... WHERE id = %s AND etag = %s`` (prepared, autocommit) on one
  connection, and the same through a ``psycopg_pool.ConnectionPool`` as durastate uses.

Network anchors come twice: with the client a user builds by default, and with the client
settings durastate uses (no per-call proxy lookup on Azure; no client-side parameter
validation on AWS), which is what the client-CPU target is judged against.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from durastate.bench.matrix import BackendSpec
from durastate.bench.payloads import Progress
from durastate.bench.references import AwsTarget, Reference, Session
from durastate.bench.timing import Op

RAW_TABLE = "durastatebenchraw"
RAW_DYNAMO_TABLE = "durastate-bench-raw"
RAW_BUCKET = "durastate-bench-raw"


class DictAnchor:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        data, dumps = self.data, orjson.dumps

        def assign(i: int) -> None:
            data[key] = dumps(values[i & 1])

        return assign

    def close(self) -> None:
        self.data.clear()


class DictReadAnchor:
    """A read by hand from a dict of stored bytes: ``orjson.loads`` or the model's own
    ``model_validate_json`` (what ``get_instance`` + ``custom_status`` /
    ``read_custom_status_as`` are compared with)."""

    def __init__(self, typed: bool) -> None:
        self.data: dict[str, bytes] = {}
        self.typed = typed

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        data = self.data
        data[key] = orjson.dumps(values[0])
        decode = Progress.model_validate_json if self.typed else orjson.loads

        def read(i: int) -> None:
            decode(data[key])

        return read

    def close(self) -> None:
        self.data.clear()


class SqliteAnchor:
    UPSERT = (
        "INSERT INTO status (id, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    )

    def __init__(self, path: Path, read: str | None = None) -> None:
        self.read = read  # None: the upsert; "plain" or "typed": a select and a decode
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS status "
            "(id TEXT PRIMARY KEY, value BLOB, updated_at INTEGER) WITHOUT ROWID"
        )
        self.connection.commit()

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        connection, dumps, sql, now = self.connection, orjson.dumps, self.UPSERT, time.time_ns
        if self.read is not None:
            connection.execute(sql, (key, dumps(values[0]), now() // 1000))
            connection.commit()
            select = "SELECT value FROM status WHERE id = ?"
            decode = Progress.model_validate_json if self.read == "typed" else orjson.loads

            def read(i: int) -> None:
                decode(connection.execute(select, (key,)).fetchone()[0])

            return read

        def upsert(i: int) -> None:
            connection.execute(sql, (key, dumps(values[i & 1]), now() // 1000))
            connection.commit()

        return upsert

    def close(self) -> None:
        self.connection.close()


class AzureTablesAnchor:
    def __init__(self, connection_string: str, tuned: bool, read: bool = False) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.core.pipeline.transport import RequestsTransport
        from azure.data.tables import TableClient

        kwargs: dict[str, Any] = {}
        if tuned:
            kwargs["transport"] = RequestsTransport(use_env_settings=False)
        self.read = read  # get_entity + orjson.loads instead of the update
        self.table = TableClient.from_connection_string(connection_string, RAW_TABLE, **kwargs)
        with contextlib.suppress(ResourceExistsError):
            self.table.create_table()

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        table, dumps = self.table, orjson.dumps
        entity = {"PartitionKey": key, "RowKey": "", "CustomStatus": dumps(values[1]).decode()}
        state = [str(table.upsert_entity(entity)["etag"])]
        merge, if_match = UpdateMode.MERGE, MatchConditions.IfNotModified
        if self.read:
            loads = orjson.loads

            def get_entity(i: int) -> None:
                loads(table.get_entity(key, "")["CustomStatus"])

            return get_entity

        def update_entity(i: int) -> None:
            entity = {"PartitionKey": key, "RowKey": "",
                      "CustomStatus": dumps(values[i & 1]).decode()}
            state[0] = table.update_entity(entity, mode=merge, etag=state[0],
                                           match_condition=if_match)["etag"]

        return update_entity

    def close(self) -> None:
        self.table.close()


class DynamoDBAnchor:
    def __init__(self, target: AwsTarget, tuned: bool = False, read: bool = False) -> None:
        import boto3

        self.read = read  # get_item (consistent) + orjson.loads instead of the update
        self.client = boto3.client("dynamodb", **target.client_kwargs(tuned=tuned))
        existing = self.client.list_tables().get("TableNames", [])
        if RAW_DYNAMO_TABLE not in existing:
            self.client.create_table(
                TableName=RAW_DYNAMO_TABLE,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            self.client.get_waiter("table_exists").wait(
                TableName=RAW_DYNAMO_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        client, dumps = self.client, orjson.dumps
        client.put_item(TableName=RAW_DYNAMO_TABLE, Item={
            "pk": {"S": key}, "ver": {"N": "0"}, "cs": {"B": dumps(values[1])}})
        state = [0]
        if self.read:
            loads, get = orjson.loads, client.get_item

            def get_item(i: int) -> None:
                loads(get(TableName=RAW_DYNAMO_TABLE, Key={"pk": {"S": key}},
                          ConsistentRead=True)["Item"]["cs"]["B"])

            return get_item

        def update_item(i: int) -> None:
            version = state[0]
            client.update_item(
                TableName=RAW_DYNAMO_TABLE,
                Key={"pk": {"S": key}},
                UpdateExpression="SET cs = :v, ver = :n",
                ConditionExpression="ver = :o",
                ExpressionAttributeValues={
                    ":v": {"B": dumps(values[i & 1])},
                    ":n": {"N": str(version + 1)},
                    ":o": {"N": str(version)},
                },
            )
            state[0] = version + 1

        return update_item

    def close(self) -> None:
        self.client.close()


class S3Anchor:
    def __init__(self, target: AwsTarget, conditional: bool, tuned: bool = False,
                 read: bool = False) -> None:
        import boto3

        self.read = read  # get_object + orjson.loads instead of the put
        self.client = boto3.client("s3", **target.client_kwargs(tuned=tuned))
        self.conditional = conditional
        buckets = [b["Name"] for b in self.client.list_buckets().get("Buckets", [])]
        if RAW_BUCKET not in buckets:
            self.client.create_bucket(Bucket=RAW_BUCKET)

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        client, dumps, bucket = self.client, orjson.dumps, RAW_BUCKET
        state = [str(client.put_object(Bucket=bucket, Key=key, Body=dumps(values[1]))["ETag"])]
        if self.read:
            loads, get = orjson.loads, client.get_object

            def get_object(i: int) -> None:
                loads(get(Bucket=bucket, Key=key)["Body"].read())

            return get_object
        if self.conditional:
            def put_if_match(i: int) -> None:
                state[0] = client.put_object(Bucket=bucket, Key=key, Body=dumps(values[i & 1]),
                                             IfMatch=state[0])["ETag"]

            return put_if_match

        def put_object(i: int) -> None:
            client.put_object(Bucket=bucket, Key=key, Body=dumps(values[i & 1]))

        return put_object

    def close(self) -> None:
        self.client.close()


class PostgresAnchor:
    """The compare-and-swap a user would write: one prepared UPDATE with the etag check."""

    TABLE = "durastate_bench_raw"
    UPDATE = f"UPDATE {TABLE} SET value = %s, etag = %s WHERE id = %s AND etag = %s"  # noqa: S608

    def __init__(self, url: str, pooled: bool) -> None:
        import psycopg
        import psycopg_pool

        self.pool = (
            psycopg_pool.ConnectionPool(url, kwargs={"autocommit": True}, min_size=1, open=False)
            if pooled else None
        )
        if self.pool is not None:
            self.pool.open(wait=True)
        self.connection = psycopg.connect(url, autocommit=True)
        self.connection.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} "
                                "(id text PRIMARY KEY, value bytea, etag bigint NOT NULL)")

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        connection, pool, dumps, sql = self.connection, self.pool, orjson.dumps, self.UPDATE
        connection.execute(f"INSERT INTO {self.TABLE} (id, value, etag) VALUES (%s, %s, 0) "  # noqa: S608
                           "ON CONFLICT (id) DO UPDATE SET etag = 0", (key, dumps(values[1])))
        state = [0]

        def update_where_etag(i: int) -> None:
            etag = state[0]
            cursor = connection.execute(sql, (dumps(values[i & 1]), etag + 1, key, etag),
                                        prepare=True)
            if cursor.rowcount != 1:
                raise RuntimeError("etag mismatch")
            state[0] = etag + 1

        if pool is None:
            return update_where_etag

        def pooled_update_where_etag(i: int) -> None:
            etag = state[0]
            with pool.connection() as conn:
                cursor = conn.execute(sql, (dumps(values[i & 1]), etag + 1, key, etag),
                                      prepare=True)
            if cursor.rowcount != 1:
                raise RuntimeError("etag mismatch")
            state[0] = etag + 1

        return pooled_update_where_etag

    def close(self) -> None:
        self.connection.close()
        if self.pool is not None:
            self.pool.close()


def _sqlite_path(spec: BackendSpec) -> Path:
    path = spec.url.partition("://")[2]
    path = path[1:] if path.startswith("/") else path
    return Path(path).with_name(Path(path).stem + "-raw.db")


def anchors_for(spec: BackendSpec) -> list[Reference]:
    """The anchors that run on the same server as ``spec``; none for unknown schemes.
    Network backends also get the lean limit (`durastate.bench.lean_anchors`)."""
    from durastate.bench.lean_anchors import lean_anchors_for

    scheme = spec.scheme
    if scheme in ("redis", "rediss", "unix"):
        from durastate.bench.redis_references import redis_anchors

        return redis_anchors(spec)
    if scheme == "memory":
        return [
            Reference("anchor", "dict + orjson.dumps", "orjson", "update_lww", DictAnchor),
            Reference("anchor", "dict + orjson.loads", "orjson", "read",
                      lambda: DictReadAnchor(typed=False), operation="raw_read"),
            Reference("anchor", "dict + Model.model_validate_json", "orjson", "read_typed",
                      lambda: DictReadAnchor(typed=True), operation="raw_read_typed"),
        ]
    if scheme == "sqlite":
        path = _sqlite_path(spec)
        return [
            Reference("anchor", "sqlite3 upsert + commit (WAL, NORMAL)", "orjson",
                      "update_lww", lambda: SqliteAnchor(path)),
            Reference("anchor", "sqlite3 select + orjson.loads", "orjson", "read",
                      lambda: SqliteAnchor(path, "plain"), operation="raw_read"),
            Reference("anchor", "sqlite3 select + Model.model_validate_json", "orjson",
                      "read_typed", lambda: SqliteAnchor(path, "typed"),
                      operation="raw_read_typed"),
        ]
    if scheme == "azure-tables":
        conn = str(spec.options.get("connection_string") or "")
        return [
            Reference("anchor", "azure-data-tables update_entity If-Match (default client)",
                      "orjson", "update_cas", lambda: AzureTablesAnchor(conn, tuned=False)),
            Reference("anchor", "azure-data-tables update_entity If-Match (no proxy lookup)",
                      "orjson", "update_cas", lambda: AzureTablesAnchor(conn, tuned=True)),
            Reference("anchor", "azure-data-tables get_entity (default client)", "orjson",
                      "read", lambda: AzureTablesAnchor(conn, tuned=False, read=True),
                      operation="raw_read"),
            *lean_anchors_for(spec.scheme, spec.url, spec.options),
        ]
    if scheme in ("postgresql", "postgres"):
        url = spec.url
        return [
            Reference("anchor", "psycopg UPDATE WHERE etag (one connection)", "orjson",
                      "update_cas", lambda: PostgresAnchor(url, pooled=False)),
            Reference("anchor", "psycopg UPDATE WHERE etag (ConnectionPool)", "orjson",
                      "update_cas", lambda: PostgresAnchor(url, pooled=True)),
        ]
    target = AwsTarget.from_options(spec.url, spec.options)
    if scheme == "dynamodb":
        return [
            Reference("anchor", "boto3 update_item (version condition, default client)",
                      "orjson", "update_cas", lambda: DynamoDBAnchor(target)),
            Reference("anchor", "boto3 update_item (version condition, no validation)",
                      "orjson", "update_cas", lambda: DynamoDBAnchor(target, tuned=True)),
            Reference("anchor", "boto3 get_item (consistent, default client)", "orjson",
                      "read", lambda: DynamoDBAnchor(target, read=True),
                      operation="raw_read"),
            *lean_anchors_for(spec.scheme, spec.url, spec.options),
        ]
    if scheme == "s3":
        return [
            Reference("anchor", "boto3 put_object (default client)", "orjson", "update_lww",
                      lambda: S3Anchor(target, conditional=False)),
            Reference("anchor", "boto3 put_object IfMatch (default client)", "orjson",
                      "update_cas", lambda: S3Anchor(target, conditional=True)),
            Reference("anchor", "boto3 put_object IfMatch (no validation)", "orjson",
                      "update_cas", lambda: S3Anchor(target, conditional=True, tuned=True)),
            Reference("anchor", "boto3 get_object (default client)", "orjson", "read",
                      lambda: S3Anchor(target, conditional=False, read=True),
                      operation="raw_read"),
            *lean_anchors_for(spec.scheme, spec.url, spec.options),
        ]
    return []


__all__ = ["Session", "anchors_for"]
