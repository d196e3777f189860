"""The drivers against real servers: hand-built, hand-signed requests to Azurite, moto_server
and dynalite (started by the fixtures in tests/conftest.py), through both drivers.

Each scenario is written once against a `Sender`, which runs it through the sync driver or,
from a private event loop, through the async one; the parity test runs every scenario both
ways and compares the answers. Faults come from the project's fault proxy
(tests/reliability/faultproxy.py), a socket that accepts and never answers, a closed port,
and a frozen (SIGSTOP) emulator of the test's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import orjson
import pytest

from durastate.errors import BackendUnavailable, SerializationError
from durastate.testing.emulators import AZURITE_ACCOUNT, AZURITE_KEY, RunningEmulator, free_port
from durastate.transport import (
    Failure,
    HttpDriver,
    HttpRequest,
    HttpResponse,
    LandedHook,
    OutcomeUnknown,
    TransportOptions,
)
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.aws_sigv4 import FrozenCredentials, sign_sigv4
from durastate.transport.azure_auth import (
    AccountKey,
    SasToken,
    sign_blob_shared_key,
    sign_table_shared_key,
    sign_table_shared_key_lite,
)
from tests.reliability.conftest import PrivateEmulator
from tests.reliability.faultproxy import FaultProxy

pytestmark = pytest.mark.emulator

Kind = Literal["sync", "async"]
KINDS: tuple[Kind, ...] = ("sync", "async")
AWS_KEYS = FrozenCredentials("testing", "testing")
TABLE_KEY = AccountKey(AZURITE_ACCOUNT, AZURITE_KEY)
FAST = TransportOptions(connect_timeout=1.0, read_timeout=5.0, deadline=20.0, backoff_base=0.01)


class Sender:
    """One driver of either kind behind a sync ``send`` (async runs in a private loop)."""

    def __init__(self, kind: Kind, options: TransportOptions = FAST) -> None:
        self.kind = kind
        if kind == "sync":
            self._sync = HttpDriver(options, seed=1)
        else:
            self._runner = asyncio.Runner()
            self._async = AsyncHttpDriver(options, seed=1)

    def send(self, request: HttpRequest, hook: LandedHook | None = None) -> HttpResponse:
        if self.kind == "sync":
            return self._sync.send(request, hook)
        return self._runner.run(self._async.send(request, hook))

    def pause(self, seconds: float) -> None:
        """Idle time between calls; an async app's loop runs meanwhile (and sees EOFs)."""
        if self.kind == "sync":
            time.sleep(seconds)
        else:
            self._runner.run(asyncio.sleep(seconds))

    def close(self) -> None:
        if self.kind == "sync":
            self._sync.close()
        else:
            self._runner.run(self._async.close())
            self._runner.close()


@pytest.fixture(params=KINDS)
def sender(request: pytest.FixtureRequest) -> Iterator[Sender]:
    sender = Sender(request.param)
    yield sender
    sender.close()


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:12]


# -- request builders (what a backend core will do) -------------------------------------


def table_request(
    endpoint: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    lite: bool = False,
) -> HttpRequest:
    all_headers = {
        "x-ms-version": "2019-02-02",
        "DataServiceVersion": "3.0",
        "Accept": "application/json;odata=nometadata",
        **(headers or {}),
    }
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    request = HttpRequest.to(
        method, endpoint, path, headers=all_headers, body=orjson.dumps(body) if body else b""
    )
    sign = sign_table_shared_key_lite if lite else sign_table_shared_key
    return sign(request, TABLE_KEY)


def dynamodb_request(endpoint: str, target: str, payload: dict[str, Any]) -> HttpRequest:
    request = HttpRequest.to(
        "POST",
        endpoint,
        "/",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{target}",
        },
        body=orjson.dumps(payload),
    )
    return sign_sigv4(request, AWS_KEYS, "us-east-1", "dynamodb")


def s3_request(
    endpoint: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> HttpRequest:
    request = HttpRequest.to(method, endpoint, path, headers=headers, body=body)
    return sign_sigv4(request, AWS_KEYS, "us-east-1", "s3", s3=True)


def update_item_payload(table: str, key: str, old: int, status: str) -> dict[str, Any]:
    """UpdateItem of the status, on condition that the version is still ``old``."""
    return {
        "TableName": table,
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "SET #s = :s, #v = :new",
        "ConditionExpression": "#v = :old",
        "ExpressionAttributeNames": {"#s": "status", "#v": "version"},
        "ExpressionAttributeValues": {
            ":s": {"S": status},
            ":new": {"N": str(old + 1)},
            ":old": {"N": str(old)},
        },
    }


def dynamodb_update(endpoint: str, table: str, key: str, old: int, status: str) -> HttpRequest:
    return dynamodb_request(endpoint, "UpdateItem", update_item_payload(table, key, old, status))


def dynamodb_table(send: Callable[[HttpRequest], HttpResponse], endpoint: str) -> str:
    table = unique("t")
    created = send(
        dynamodb_request(
            endpoint,
            "CreateTable",
            {
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            },
        )
    )
    assert created.status == 200, created.body
    for _ in range(100):  # dynalite answers CREATING for a moment
        described = send(dynamodb_request(endpoint, "DescribeTable", {"TableName": table}))
        if orjson.loads(described.body)["Table"]["TableStatus"] == "ACTIVE":
            return table
        time.sleep(0.02)
    raise AssertionError("table never became ACTIVE")


def dynamodb_item_version(
    send: Callable[[HttpRequest], HttpResponse], endpoint: str, table: str, key: str
) -> int:
    read = send(
        dynamodb_request(
            endpoint,
            "GetItem",
            {"TableName": table, "Key": {"pk": {"S": key}}, "ConsistentRead": True},
        )
    )
    assert read.status == 200, read.body
    return int(orjson.loads(read.body)["Item"]["version"]["N"])


def error_type(response: HttpResponse) -> str:
    return str(orjson.loads(response.body)["__type"]).rsplit("#", 1)[-1]


# -- scenarios, written once for both drivers ---------------------------------------------


def azure_merge_scenario(send: Callable[[HttpRequest], HttpResponse], endpoint: str) -> list[Any]:
    """Create a table and an entity, MERGE with its etag (204), again with the stale etag (412)."""
    table = unique("t")
    created = send(
        table_request(
            endpoint, "POST", "/Tables", {"TableName": table}, {"Prefer": "return-no-content"}
        )
    )
    pk = "inst é☃"  # escaping forbidden characters is the core's job; this one needs URL encoding
    entity_path = f"/{table}(PartitionKey='{quote(pk)}',RowKey='')"
    inserted = send(
        table_request(
            endpoint,
            "POST",
            f"/{table}",
            {"PartitionKey": pk, "RowKey": "", "Status": "0 %", "Input": "big"},
            {"Prefer": "return-no-content"},
        )
    )
    etag = inserted.header("etag")
    assert etag, inserted.body
    merged = send(
        table_request(endpoint, "MERGE", entity_path, {"Status": "42 %"}, {"If-Match": etag})
    )
    stale = send(
        table_request(endpoint, "MERGE", entity_path, {"Status": "43 %"}, {"If-Match": etag})
    )
    read = send(table_request(endpoint, "GET", entity_path))
    entity = orjson.loads(read.body)
    assert merged.header("etag") not in (None, etag)
    assert entity["Status"] == "42 %"
    assert entity["Input"] == "big"  # MERGE left the other properties alone
    return [created.status, inserted.status, merged.status, stale.status, read.status]


def dynamodb_condition_scenario(
    send: Callable[[HttpRequest], HttpResponse], endpoint: str
) -> list[Any]:
    """UpdateItem with a ConditionExpression: 200 at the right version, then a conditional
    failure at the stale one; the item holds the first update."""
    table = dynamodb_table(send, endpoint)
    put = send(
        dynamodb_request(
            endpoint,
            "PutItem",
            {
                "TableName": table,
                "Item": {"pk": {"S": "inst-1"}, "version": {"N": "1"}, "input": {"S": "big"}},
            },
        )
    )
    updated = send(dynamodb_update(endpoint, table, "inst-1", 1, "42 %"))
    stale = send(dynamodb_update(endpoint, table, "inst-1", 1, "43 %"))
    assert dynamodb_item_version(send, endpoint, table, "inst-1") == 2
    return [put.status, updated.status, stale.status, error_type(stale)]


def s3_if_match_scenario(send: Callable[[HttpRequest], HttpResponse], endpoint: str) -> list[Any]:
    """PutObject, then PutObject with If-Match: 200 at the current ETag, 412 at a stale one."""
    bucket = unique("b")
    created = send(s3_request(endpoint, "PUT", f"/{bucket}"))
    key = f"/{bucket}/inst%2F%C3%A9%E2%98%83/status.json"
    first = send(s3_request(endpoint, "PUT", key, b'{"p": 0}'))
    etag = first.header("etag")
    assert etag
    second = send(s3_request(endpoint, "PUT", key, b'{"p": 42}', {"If-Match": etag}))
    stale = send(s3_request(endpoint, "PUT", key, b'{"p": 43}', {"If-Match": etag}))
    read = send(s3_request(endpoint, "GET", key))
    assert read.body == b'{"p": 42}'
    return [created.status, first.status, second.status, stale.status, read.status]


def test_azure_tables_merge_with_if_match(sender: Sender, azurite: RunningEmulator) -> None:
    statuses = azure_merge_scenario(sender.send, azurite.endpoints["table"])
    assert statuses == [204, 204, 204, 412, 200]


@pytest.mark.parametrize("emulator_name", ["moto_server", "dynalite"])
def test_dynamodb_update_item_with_condition(
    sender: Sender, emulator_name: str, request: pytest.FixtureRequest
) -> None:
    emulator: RunningEmulator = request.getfixturevalue(emulator_name)
    statuses = dynamodb_condition_scenario(sender.send, emulator.endpoint)
    assert statuses == [200, 200, 400, "ConditionalCheckFailedException"]


def test_s3_put_object_with_if_match(sender: Sender, moto_server: RunningEmulator) -> None:
    assert s3_if_match_scenario(sender.send, moto_server.endpoint) == [200, 200, 200, 412, 200]


def test_sync_and_async_drivers_give_the_same_answers(
    azurite: RunningEmulator, moto_server: RunningEmulator, dynalite: RunningEmulator
) -> None:
    scenarios: list[tuple[Callable[..., list[Any]], str]] = [
        (azure_merge_scenario, azurite.endpoints["table"]),
        (dynamodb_condition_scenario, moto_server.endpoint),
        (dynamodb_condition_scenario, dynalite.endpoint),
        (s3_if_match_scenario, moto_server.endpoint),
    ]
    answers: dict[Kind, list[list[Any]]] = {}
    for kind in KINDS:
        sender = Sender(kind)
        try:
            answers[kind] = [scenario(sender.send, endpoint) for scenario, endpoint in scenarios]
        finally:
            sender.close()
    assert answers["sync"] == answers["async"]


def test_shared_key_lite_and_sas_are_accepted_and_a_wrong_key_is_refused(
    sender: Sender, azurite: RunningEmulator
) -> None:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.data.tables import AccountSasPermissions, ResourceTypes, generate_account_sas

    endpoint = azurite.endpoints["table"]
    table = unique("t")
    created = sender.send(
        table_request(
            endpoint,
            "POST",
            "/Tables",
            {"TableName": table},
            {"Prefer": "return-no-content"},
            lite=True,
        )
    )
    assert created.status == 204
    wrong = AccountKey(AZURITE_ACCOUNT, "d3Jvbmcga2V5")
    refused = sender.send(
        sign_table_shared_key(
            HttpRequest.to("GET", endpoint, f"/{table}()", headers={"x-ms-version": "2019-02-02"}),
            wrong,
        )
    )
    assert refused.status == 403
    sas = generate_account_sas(
        AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    query = HttpRequest.to(
        "GET",
        endpoint,
        f"/{table}()",
        headers={"x-ms-version": "2019-02-02", "Accept": "application/json;odata=nometadata"},
    )
    listed = sender.send(SasToken(sas).apply(query))
    assert listed.status == 200, listed.body
    assert orjson.loads(listed.body)["value"] == []
    tampered = sas.replace("sig=", "sig=A")
    assert sender.send(SasToken(tampered).apply(query)).status == 403


# -- timeouts and the deadline --------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes handshakes (kernel backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


SECRET_REQUEST_PARTS = ("sig=s3cr3tSAS", "Bearer s3cr3tTOKEN")


def secret_laden_request(port: int) -> HttpRequest:
    return HttpRequest.to(
        "POST",
        f"http://127.0.0.1:{port}",
        "/devstoreaccount1/table",
        query=[("sig", "s3cr3tSAS")],
        headers={"Authorization": "Bearer s3cr3tTOKEN"},
        body=b"{}",
    )


def timed_failure(
    kind: Kind, options: TransportOptions, port: int, hook: LandedHook | None
) -> tuple[float, BackendUnavailable]:
    """Send the secret-laden request to ``port``; how long until it failed, and with what."""
    sender = Sender(kind, options)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            sender.send(secret_laden_request(port), hook)
    finally:
        sender.close()
    return time.monotonic() - started, caught.value


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_never_answers_fails_within_the_deadline(
    kind: Kind, silent_port: int
) -> None:
    options = TransportOptions(read_timeout=30, deadline=1.5, max_attempts=5)
    elapsed, error = timed_failure(kind, options, silent_port, lambda request, failure: True)
    assert 1.4 <= elapsed < 1.5 + 1.0
    message = str(error)
    assert "timed out" in message
    assert "/devstoreaccount1/table" in message
    for secret in ("s3cr3t", "sig", "Bearer"):
        assert secret not in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_timeout_of_an_unsafe_request_without_hook_is_outcome_unknown(
    kind: Kind, silent_port: int
) -> None:
    options = TransportOptions(read_timeout=0.3, deadline=10, max_attempts=5)
    elapsed, error = timed_failure(kind, options, silent_port, None)
    assert isinstance(error, OutcomeUnknown)
    assert "1 attempt" in str(error)
    assert elapsed < 0.3 + 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_retried_then_unavailable(kind: Kind) -> None:
    port = free_port()  # nothing listens there
    sender = Sender(kind, TransportOptions(max_attempts=3, backoff_base=0.01, deadline=5))
    try:
        with pytest.raises(BackendUnavailable, match="3 attempt") as caught:
            sender.send(secret_laden_request(port))  # POST: not sent, so safe to retry
    finally:
        sender.close()
    assert not isinstance(caught.value, OutcomeUnknown)
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_frozen_emulator_fails_within_the_deadline_and_works_after_thaw(kind: Kind) -> None:
    private = PrivateEmulator("dynamodb-dynalite")
    sender = Sender(kind, TransportOptions(read_timeout=30, deadline=2.0, backoff_base=0.01))
    try:
        endpoint = private.emulator.endpoint
        table = dynamodb_table(sender.send, endpoint)  # a pooled keep-alive connection now
        private.freeze()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            sender.send(dynamodb_request(endpoint, "DescribeTable", {"TableName": table}))
        assert time.monotonic() - started < 2.0 + 1.0
        private.thaw()
        described = sender.send(dynamodb_request(endpoint, "DescribeTable", {"TableName": table}))
        assert described.status == 200
    finally:
        sender.close()
        private.close()


# -- retries through the fault proxy ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["503", "429"])
def test_503_and_429_are_retried_until_each_write_lands_once(
    kind: Kind, fault: str, moto_server: RunningEmulator
) -> None:
    sender = Sender(kind, TransportOptions(max_attempts=10, backoff_base=0.001, deadline=30))
    direct = Sender("sync")
    proxy = FaultProxy(moto_server.endpoint, "dynamodb", rate=0.0, seed=7).start()
    try:
        table = dynamodb_table(direct.send, moto_server.endpoint)
        direct.send(
            dynamodb_request(
                moto_server.endpoint,
                "PutItem",
                {"TableName": table, "Item": {"pk": {"S": "k"}, "version": {"N": "0"}}},
            )
        )
        proxy.configure(rate=0.5, faults={fault: 1.0})  # type: ignore[dict-item]
        attempts = 0
        for version in range(12):
            response = sender.send(dynamodb_update(proxy.url, table, "k", version, f"{version}"))
            assert response.status == 200, response.body
            assert not response.outcome_unknown
            attempts += response.attempts
        assert proxy.counters[fault] > 0
        assert attempts == proxy.counters["requests"] == 12 + proxy.counters[fault]
        assert dynamodb_item_version(direct.send, moto_server.endpoint, table, "k") == 12
    finally:
        proxy.stop()
        sender.close()
        direct.close()


@pytest.mark.parametrize("kind", KINDS)
def test_503_on_azure_merge_is_retried(kind: Kind, azurite: RunningEmulator) -> None:
    sender = Sender(kind, TransportOptions(max_attempts=10, backoff_base=0.001))
    proxy = FaultProxy(azurite.endpoints["table"], "azure", rate=0.0, seed=3).start()
    try:
        proxy.configure(rate=0.5)
        assert azure_merge_scenario(sender.send, proxy.url) == [204, 204, 204, 412, 200]
        assert proxy.counters["503"] > 0
    finally:
        proxy.stop()
        sender.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_lost_answer_is_retried_only_with_a_hook_and_flagged_outcome_unknown(
    kind: Kind, moto_server: RunningEmulator
) -> None:
    """The first attempt lands and its answer is lost; a second writer moves the item on
    before the retry. With the core's hook the retry's conflict comes back flagged
    ``outcome_unknown`` (so the core can look for its own write); without it, no retry."""
    endpoint = moto_server.endpoint
    sender = Sender(kind)
    other = Sender("sync")
    proxy = FaultProxy(endpoint, "dynamodb", rate=1.0, faults={"drop_after": 1.0}).start()
    try:
        table = dynamodb_table(other.send, endpoint)
        other.send(
            dynamodb_request(
                endpoint,
                "PutItem",
                {"TableName": table, "Item": {"pk": {"S": "k"}, "version": {"N": "1"}}},
            )
        )
        with pytest.raises(OutcomeUnknown):
            sender.send(dynamodb_update(proxy.url, table, "k", 1, "ours"))
        assert proxy.counters["forwarded"] == 1  # applied once, never sent again
        assert dynamodb_item_version(other.send, endpoint, table, "k") == 2

        failures: list[Failure] = []

        def core_hook(request: HttpRequest, failure: Failure) -> bool:
            failures.append(failure)
            proxy.configure(rate=0.0)
            moved = other.send(dynamodb_update(endpoint, table, "k", 3, "second writer"))
            assert moved.status == 200
            return True

        response = sender.send(dynamodb_update(proxy.url, table, "k", 2, "ours again"), core_hook)
        assert response.status == 400
        assert error_type(response) == "ConditionalCheckFailedException"
        assert response.outcome_unknown
        assert response.attempts == 2
        assert [f.stage for f in failures] == ["response"]
        assert (
            dynamodb_item_version(other.send, endpoint, table, "k") == 4
        )  # ours once, theirs once
    finally:
        proxy.stop()
        sender.close()
        other.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_proxy_is_used_only_when_configured(
    kind: Kind, moto_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxies are opt-in: HTTP_PROXY in the environment is ignored, ``proxy=`` is used."""
    endpoint = moto_server.endpoint
    proxy = FaultProxy(endpoint, "dynamodb").start()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    plain = Sender(kind)
    proxied = Sender(kind, TransportOptions(proxy=f"http://user:pw@127.0.0.1:{proxy.port}"))  # type: ignore[arg-type]
    try:
        assert plain.send(dynamodb_request(endpoint, "ListTables", {})).status == 200
        assert proxy.counters["requests"] == 0
        assert proxied.send(dynamodb_request(endpoint, "ListTables", {})).status == 200
        assert proxy.counters["forwarded"] == 1
    finally:
        plain.close()
        proxied.close()
        proxy.stop()


class _TinyHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET and POST with 200 "ok"; with ``hang_up`` it then closes the
    connection without saying so (as a server's idle timeout would)."""

    protocol_version = "HTTP/1.1"
    hang_up = False

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        self.close_connection = self.hang_up

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HangingUpHandler(_TinyHandler):
    hang_up = True


@pytest.mark.parametrize("kind", KINDS)
def test_a_pooled_connection_the_server_closed_is_not_reused(kind: Kind) -> None:
    """Without the check, the second POST would go out on a dead socket and come back as an
    unknown outcome; with it, a fresh connection serves it on the first attempt."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HangingUpHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sender = Sender(kind)
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        for _ in range(3):
            response = sender.send(HttpRequest.to("POST", endpoint, "/", body=b"{}"))
            assert (response.status, response.body, response.attempts) == (200, b"ok", 1)
            sender.pause(0.05)
    finally:
        sender.close()
        server.shutdown()
        server.server_close()


class _SecondPutLostHandler(_TinyHandler):
    """Answers PUTs on a keep-alive connection, except the second one it receives: that one
    is read whole (so it "landed") and the connection closed without an answer."""

    puts: ClassVar[list[int]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.puts.append(1)
        if len(self.puts) == 2:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.mark.parametrize("kind", KINDS)
def test_a_put_whose_answer_was_lost_is_never_sent_again_behind_the_policy(kind: Kind) -> None:
    """aiohttp re-sent a PUT by itself when a reused connection dropped; neither driver
    re-sends anything, so the policy sees the lost answer: without a hook, ``OutcomeUnknown`` and
    the PUT was received exactly once (before the fix: twice, answered 200 as if fresh)."""
    _SecondPutLostHandler.puts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SecondPutLostHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sender = Sender(kind)
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert sender.send(HttpRequest.to("PUT", endpoint, "/k", body=b"1")).status == 200
        with pytest.raises(OutcomeUnknown):
            sender.send(HttpRequest.to("PUT", endpoint, "/k", body=b"2"))
        assert len(_SecondPutLostHandler.puts) == 2
    finally:
        sender.close()
        server.shutdown()
        server.server_close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "durastate transport test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; yields (URL, CA file)."""
    cert_path, key_path = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TinyHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_path
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", KINDS)
def test_tls_is_verified_by_default(kind: Kind, tls_server: tuple[str, Path]) -> None:
    """An unknown certificate fails at once (no retry cures it); a CA bundle or an explicit
    ``verify=False`` lets the same request through."""
    url, ca_file = tls_server
    request = HttpRequest.to("GET", url, "/")
    for options, expected in [
        (TransportOptions(max_attempts=5), None),
        (TransportOptions(verify=str(ca_file)), b"ok"),
        (TransportOptions(verify=False), b"ok"),
    ]:
        sender = Sender(kind, options)
        try:
            if expected is None:
                with pytest.raises(
                    BackendUnavailable, match=r"1 attempt.*certificate verification"
                ):
                    sender.send(request)
            else:
                assert sender.send(request).body == expected
        finally:
            sender.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", {"x-ms-meta-note": "a\r\nx-injected: 1"}),
        ("/", {"x-ms-meta-note": "é☃"}),
        ("/", {"x-bad\n": "value"}),
        ("/a b", {}),
        ("/é", {}),
    ],
)
def test_unsendable_requests_are_refused_before_any_io(
    kind: Kind, path: str, headers: dict[str, str]
) -> None:
    """Both drivers refuse the same requests alike (http.client would reject some, a
    plain socket write send others as UTF-8), with a typed error that shows no header
    value."""
    request = HttpRequest.to("GET", f"http://127.0.0.1:{free_port()}", path, headers=headers)
    sender = Sender(kind)
    try:
        with pytest.raises(SerializationError) as caught:
            sender.send(request)
    finally:
        sender.close()
    for value in headers.values():
        assert value not in str(caught.value)


def test_one_driver_serves_many_threads_and_one_async_driver_many_tasks(
    dynalite: RunningEmulator,
) -> None:
    """8 threads share one HttpDriver, 8 tasks one AsyncHttpDriver; each writer moves its own
    item through 10 conditional versions, and every write lands exactly once."""
    endpoint = dynalite.endpoint
    direct = Sender("sync")
    table = dynamodb_table(direct.send, endpoint)
    keys = [f"k{n}" for n in range(16)]
    for key in keys:
        item = {"pk": {"S": key}, "version": {"N": "0"}}
        direct.send(dynamodb_request(endpoint, "PutItem", {"TableName": table, "Item": item}))
    failures: list[str] = []

    with HttpDriver(FAST) as shared:

        def thread_writer(key: str) -> None:
            for version in range(10):
                answer = shared.send(dynamodb_update(endpoint, table, key, version, "t"))
                if answer.status != 200:
                    failures.append(f"{key}@{version}: {answer.status}")

        threads = [threading.Thread(target=thread_writer, args=(key,)) for key in keys[:8]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    async def task_writers() -> None:
        async with AsyncHttpDriver(FAST) as driver:

            async def task_writer(key: str) -> None:
                for version in range(10):
                    request = dynamodb_update(endpoint, table, key, version, "a")
                    answer = await driver.send(request)
                    if answer.status != 200:
                        failures.append(f"{key}@{version}: {answer.status}")

            await asyncio.gather(*(task_writer(key) for key in keys[8:]))

    asyncio.run(task_writers())
    try:
        assert failures == []
        assert [dynamodb_item_version(direct.send, endpoint, table, k) for k in keys] == [10] * 16
    finally:
        direct.close()


class _ConnectProxy:
    """A minimal HTTPS proxy: answers ``CONNECT host:port`` with 200, then relays bytes.
    Records each CONNECT target and its Proxy-Authorization header."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connects: list[tuple[str, str | None]] = []
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        authorization = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines
                if line.lower().startswith("proxy-authorization:")
            ),
            None,
        )
        self.connects.append((target, authorization))
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.sockets.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_https_goes_through_a_configured_proxy_by_connect(
    kind: Kind, tls_server: tuple[str, Path]
) -> None:
    url, ca_file = tls_server
    proxy = _ConnectProxy()
    options = TransportOptions(
        verify=str(ca_file),
        proxy=f"http://alice:hunter2@127.0.0.1:{proxy.port}",  # type: ignore[arg-type]
    )
    sender = Sender(kind, options)
    try:
        assert sender.send(HttpRequest.to("GET", url, "/")).body == b"ok"
    finally:
        sender.close()
        proxy.close()
    expected_auth = "Basic " + base64.b64encode(b"alice:hunter2").decode()
    assert proxy.connects == [(url.removeprefix("https://"), expected_auth)]


def test_blob_shared_key_puts_with_conditions_on_azurite(
    sender: Sender, azurite: RunningEmulator
) -> None:
    """The offload path: create-only and If-Match blob writes, signed with Blob SharedKey."""
    endpoint = azurite.endpoints["blob"]
    container = unique("c")
    blob = f"/{container}/inst%2F%C3%A9%20%E2%98%83/output.json.gz"

    def blob_request(
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes = b"",
        key: AccountKey = TABLE_KEY,
    ) -> HttpResponse:
        all_headers = {"x-ms-version": "2021-08-06", **headers}
        request = HttpRequest.to(
            method, endpoint, path, query=query, headers=all_headers, body=body
        )
        return sender.send(sign_blob_shared_key(request, key))

    assert blob_request("PUT", f"/{container}", [("restype", "container")], {}).status == 201
    put = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/gzip"}
    created = blob_request("PUT", blob, [], {**put, "If-None-Match": "*"}, b"first")
    etag = created.header("etag")
    assert (created.status, bool(etag)) == (201, True)
    taken = blob_request("PUT", blob, [], {**put, "If-None-Match": "*"}, b"second")
    assert taken.status == 409
    assert etag is not None
    assert blob_request("PUT", blob, [], {**put, "If-Match": etag}, b"third").status == 201
    assert blob_request("PUT", blob, [], {**put, "If-Match": etag}, b"fourth").status == 412
    assert blob_request("GET", blob, [], {}).body == b"third"
    listing = blob_request(
        "GET",
        f"/{container}",
        [("restype", "container"), ("comp", "list"), ("prefix", "inst/é")],
        {},
    )
    assert listing.status == 200
    assert b"output.json.gz" in listing.body
    wrong = AccountKey(AZURITE_ACCOUNT, "d3Jvbmcga2V5")
    assert blob_request("GET", blob, [], {}, key=wrong).status == 403


def test_keep_alive_survives_a_process_with_many_open_files(dynalite: RunningEmulator) -> None:
    """With more than 1024 descriptors open, the connection's descriptor is above what
    ``select`` handles; the pooled connection must still be reused, not replaced."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    filler = [socket.socket() for _ in range(1100)]
    try:
        with HttpDriver(FAST) as driver:
            request = dynamodb_request(dynalite.endpoint, "ListTables", {})
            assert driver.send(request).status == 200
            connection = driver._pool.take(("http", request.host))
            assert connection is not None
            assert connection.sock is not None
            assert connection.sock.fileno() > 1024
            driver._pool.give_back(("http", request.host), connection)
            assert driver.send(request).status == 200
            assert driver._pool.take(("http", request.host)) is connection  # reused
    finally:
        for sock in filler:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
