"""Signing as pure functions, checked byte for byte against the SDKs' own signers.

The oracles are botocore's ``SigV4Auth`` / ``S3SigV4Auth`` and the ``SharedKeyCredentialPolicy``
classes of azure-data-tables and azure-storage-blob, fed the same request and the same fixed
time. botocore reads the clock through ``botocore.auth.get_current_datetime``; the tests pin
that one function so both sides sign the same instant (the oracle is not what is tested).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from unittest import mock
from urllib.parse import quote

import orjson
import pytest
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest as AzureRequest
from azure.data.tables._authentication import (
    SharedKeyCredentialPolicy as TableSharedKeyPolicy,
)
from azure.storage.blob._shared.authentication import (
    SharedKeyCredentialPolicy as BlobSharedKeyPolicy,
)
from azure.storage.blob._shared.authentication import _storage_header_sort
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from durastate.errors import ConfigurationError
from durastate.testing.emulators import AZURITE_KEY
from durastate.transport import HttpRequest
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials, SigV4Signer, sign_sigv4
from durastate.transport.azure_auth import (
    AccountKey,
    BearerTokenCache,
    SasToken,
    _header_order,
    sign_blob_shared_key,
    sign_table_shared_key,
)
from tests.test_transport_drivers import update_item_payload

NOW = datetime(2026, 11, 29, 7, 30, 5, tzinfo=UTC)
KEYS = FrozenCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION_KEYS = FrozenCredentials("ASIAEXAMPLE", "c2VjcmV0/+=", "FwoGZXIvYXdzEJr//token+/=")
DYNAMO_ENDPOINTS = ["http://127.0.0.1:8000", "https://dynamodb.eu-west-1.amazonaws.com"]
S3_ENDPOINTS = ["http://127.0.0.1:5000", "https://s3.eu-west-1.amazonaws.com"]


def botocore_headers(
    request: HttpRequest, keys: FrozenCredentials, region: str, service: str, *, s3: bool
) -> dict[str, str]:
    """What botocore's signer adds to the same request at the same instant."""
    aws = AWSRequest(
        method=request.method, url=request.url, headers=dict(request.headers), data=request.body
    )
    signer_class = S3SigV4Auth if s3 else SigV4Auth
    signer = signer_class(Credentials(*keys), service, region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(aws)
    return {name.lower(): value for name, value in aws.headers.items()}


def dynamodb_update(endpoint: str, table: str, key: str) -> HttpRequest:
    body = orjson.dumps(update_item_payload(table, key, 7, "42 % done"))
    return HttpRequest.to(
        "POST",
        endpoint,
        "/",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.UpdateItem",
        },
        body=body,
    )


@pytest.mark.parametrize("endpoint", DYNAMO_ENDPOINTS)
@pytest.mark.parametrize("keys", [KEYS, SESSION_KEYS], ids=["keys", "session-token"])
def test_sigv4_dynamodb_post_matches_botocore(endpoint: str, keys: FrozenCredentials) -> None:
    request = dynamodb_update(endpoint, "durastate", "ünïcode/id ☃")
    ours = sign_sigv4(request, keys, "eu-west-1", "dynamodb", now=NOW)
    assert dict(ours.headers) == botocore_headers(request, keys, "eu-west-1", "dynamodb", s3=False)
    assert ours.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={keys[0]}/")


def s3_key_path(bucket: str, key: str) -> str:
    return f"/{bucket}/{quote(key, safe='/~')}"


S3_CASES: list[tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]] = [
    (
        "PUT",
        "état/naïve 🎉 +&=.json",
        [],
        {"If-Match": '"9b2cf535f27731c974343645a3985328"', "Content-Type": "application/json"},
        b'{"progress": 42}',
    ),
    ("PUT", "plain.json", [("x-id", "PutObject")], {"If-None-Match": "*"}, b"{}"),
    (
        "GET",
        "a b/c~d",
        [
            ("versionId", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
            ("response-content-type", "text/plain; charset=utf-8"),
        ],
        {},
        b"",
    ),
    (
        "GET",
        "",
        [
            ("list-type", "2"),
            ("prefix", "inst/日本/"),
            ("continuation-token", "a+b/c="),
            ("max-keys", "100"),
        ],
        {"X-Amz-Meta-Note": "  spaced   out  "},
        b"",
    ),
    ("DELETE", "x", [("uploadId", "")], {}, b""),
]


@pytest.mark.parametrize("endpoint", S3_ENDPOINTS)
@pytest.mark.parametrize(("method", "key", "query", "headers", "body"), S3_CASES)
@pytest.mark.parametrize("keys", [KEYS, SESSION_KEYS], ids=["keys", "session-token"])
def test_sigv4_s3_matches_botocore(
    endpoint: str,
    method: str,
    key: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    keys: FrozenCredentials,
) -> None:
    request = HttpRequest.to(
        method, endpoint, s3_key_path("bucket", key), query=query, headers=headers, body=body
    )
    ours = sign_sigv4(request, keys, "eu-west-1", "s3", now=NOW, s3=True)
    expected = botocore_headers(request, keys, "eu-west-1", "s3", s3=True)
    assert dict(ours.headers) == expected
    assert "x-amz-content-sha256" in ours.headers


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(min_size=1, max_size=40),
    query=st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=4),
    body=st.binary(max_size=64),
    s3=st.booleans(),
)
def test_sigv4_matches_botocore_for_any_key_and_query(
    key: str, query: list[tuple[str, str]], body: bytes, s3: bool
) -> None:
    key = key.encode("utf-8", "replace").decode("utf-8")  # lone surrogates are not keys
    path = s3_key_path("b", key) if s3 else "/"
    request = HttpRequest.to("PUT", "http://127.0.0.1:9000", path, query=query, body=body)
    service = "s3" if s3 else "dynamodb"
    ours = sign_sigv4(request, KEYS, "us-east-1", service, now=NOW, s3=s3)
    assert dict(ours.headers) == botocore_headers(request, KEYS, "us-east-1", service, s3=s3)


def test_sigv4_path_of_other_services_is_normalized_like_botocore() -> None:
    request = HttpRequest.to("GET", "https://example.amazonaws.com", "/a/./b/../c//d%20e/")
    ours = sign_sigv4(request, KEYS, "us-east-1", "execute-api", now=NOW)
    assert dict(ours.headers) == botocore_headers(
        request, KEYS, "us-east-1", "execute-api", s3=False
    )


def test_refreshable_credentials_are_read_for_every_request() -> None:
    """botocore's refreshable credentials (SSO, assume-role, IMDS) rotate between requests."""
    calls: list[int] = []

    def refresh() -> dict[str, str]:
        calls.append(1)
        expiry = datetime.now(UTC) + timedelta(minutes=5)  # inside the refresh window
        return {
            "access_key": f"AKID{len(calls)}",
            "secret_key": f"secret{len(calls)}",
            "token": f"token{len(calls)}",
            "expiry_time": expiry.isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    signer = SigV4Signer(AwsCredentials(refreshable), "us-east-1", "dynamodb")
    request = dynamodb_update("http://127.0.0.1:8000", "t", "k")
    first = signer.sign(request, NOW)
    second = signer.sign(request, NOW)
    assert "Credential=AKID2/" in first.headers["authorization"]
    assert first.headers["x-amz-security-token"] == "token2"
    assert "Credential=AKID3/" in second.headers["authorization"]
    assert second.headers["x-amz-security-token"] == "token3"
    assert first.headers["authorization"] != second.headers["authorization"]


def test_credentials_come_from_the_botocore_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-from-env")
    credentials = AwsCredentials.from_botocore()
    assert credentials.frozen() == FrozenCredentials(
        "AKIDFROMENV", "secret-from-env", "token-from-env"
    )
    assert "secret-from-env" not in repr(credentials)
    assert "secret-from-env" not in repr(credentials.frozen())


def test_credentials_without_a_source_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        AwsCredentials()


# -- Azure ---------------------------------------------------------------------------------


def azure_signed(policy: Any, request: HttpRequest, date: str, *, blob: bool) -> str:
    """The Authorization header an SDK policy computes for the same request."""
    sdk = AzureRequest(request.method, request.url)
    headers = {**request.headers, "x-ms-date": date}
    if blob and request.body:
        headers["content-length"] = str(len(request.body))
    sdk.headers.update(headers)
    sdk.data = request.body
    pipeline_request = PipelineRequest(sdk, PipelineContext(None))
    if blob:
        policy.on_request(pipeline_request)
    else:
        policy.sign_request(pipeline_request)
    return str(sdk.headers["Authorization"])


TABLE_ENDPOINTS = [
    "http://127.0.0.1:10002/devstoreaccount1",
    "https://myaccount.table.core.windows.net",
]


@pytest.mark.parametrize("endpoint", TABLE_ENDPOINTS)
@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        (
            "MERGE",
            "/durastate(PartitionKey='caf%C3%A9%20%5E2F%E2%98%83',RowKey='')",
            [],
            {
                "If-Match": "W/\"datetime'2026-11-29T07%3A30%3A05.1234567Z'\"",
                "Content-Type": "application/json",
                "x-ms-version": "2019-02-02",
                "DataServiceVersion": "3.0",
                "Accept": "application/json;odata=nometadata",
            },
        ),
        (
            "GET",
            "/durastate()",
            [
                ("$filter", "PartitionKey ge 'a' and RuntimeStatus eq 'x'"),
                ("$top", "100"),
                ("NextPartitionKey", "1!8!YWJj"),
            ],
            {"x-ms-version": "2019-02-02", "Accept": "application/json;odata=nometadata"},
        ),
        ("GET", "/durastate", [("comp", "acl")], {"x-ms-version": "2019-02-02"}),
        ("POST", "/Tables", [], {"Content-Type": "application/json", "Content-MD5": "abc=="}),
    ],
)
def test_table_shared_key_matches_azure_data_tables(
    endpoint: str, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    request = HttpRequest.to(method, endpoint, path, query=query, headers=headers, body=b'{"a":1}')
    key = AccountKey("devstoreaccount1", AZURITE_KEY)
    ours = sign_table_shared_key(request, key, NOW)
    policy = TableSharedKeyPolicy(AzureNamedKeyCredential("devstoreaccount1", AZURITE_KEY))  # type: ignore[no-untyped-call]
    date = format_datetime(NOW, usegmt=True)
    assert ours.headers["x-ms-date"] == date == "Sun, 29 Nov 2026 07:30:05 GMT"
    assert ours.headers["authorization"] == azure_signed(policy, request, date, blob=False)


BLOB_ENDPOINTS = ["http://127.0.0.1:10000/devstoreaccount1", "https://acct.blob.core.windows.net"]


@pytest.mark.parametrize("endpoint", BLOB_ENDPOINTS)
@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "body"),
    [
        (
            "PUT",
            "/payloads/inst%2Fé%20☃/output.json.gz",
            [],
            {
                "x-ms-version": "2025-01-05",
                "x-ms-blob-type": "BlockBlob",
                "Content-Type": "application/gzip",
                "If-None-Match": "*",
                "x-ms-meta-writeid": "w-1",
                "x-ms-client-request-id": "req-1",
            },
            b"\x1f\x8b\x08\x00payload",
        ),
        (
            "PUT",
            "/payloads/big",
            [("comp", "block"), ("blockid", "YmxvY2stMDAx")],
            {"x-ms-version": "2025-01-05", "If-Match": '"0x8D"'},
            b"block",
        ),
        (
            "GET",
            "/payloads",
            [
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", "inst/é"),
                ("marker", "2!80!MDAw"),
            ],
            {"x-ms-version": "2025-01-05", "Range": ""},
            b"",
        ),
        (
            "DELETE",
            "/payloads/x",
            [],
            {"x-ms-version": "2025-01-05", "x-ms-delete-snapshots": "include"},
            b"",
        ),
    ],
)
def test_blob_shared_key_matches_azure_storage_blob(
    endpoint: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> None:
    path = quote(path, safe="/%~")
    request = HttpRequest.to(method, endpoint, path, query=query, headers=headers, body=body)
    key = AccountKey("devstoreaccount1", AZURITE_KEY)
    ours = sign_blob_shared_key(request, key, NOW)
    policy = BlobSharedKeyPolicy("devstoreaccount1", AZURITE_KEY)  # type: ignore[no-untyped-call]
    date = format_datetime(NOW, usegmt=True)
    assert ours.headers["authorization"] == azure_signed(policy, request, date, blob=True)


@given(
    st.lists(
        st.text(alphabet="abz09_-", min_size=1, max_size=6), min_size=2, max_size=6, unique=True
    )
)
def test_x_ms_header_order_matches_azure_storage(suffixes: list[str]) -> None:
    ties = ["a-bc", "ab-c", "abc", "a-b-c", "abc-", "ab_c", "ab1", "-abc"]  # same letters
    names = [f"x-ms-{suffix}" for suffix in dict.fromkeys([*suffixes, *ties])]
    expected = [name for name, _ in _storage_header_sort([(name, "") for name in names])]
    assert sorted(names, key=_header_order) == expected


def test_account_key_is_validated_and_hidden() -> None:
    key = AccountKey("acct", AZURITE_KEY)
    assert AZURITE_KEY not in repr(key)
    with pytest.raises(ConfigurationError, match="not valid base64") as caught:
        AccountKey("acct", "not base64 !!" + AZURITE_KEY[:10])
    assert AZURITE_KEY[:10] not in str(caught.value)


def test_sas_token_is_appended_and_hidden() -> None:
    token = SasToken(
        "?sv=2019-02-02&ss=t&srt=sco&sp=rwdlacu&se=2026-12-01T00%3A00%3A00Z&sig=a%2Bb%2F%3D"
    )
    request = token.apply(
        HttpRequest.to(
            "GET", "http://127.0.0.1:10002/devstoreaccount1", "/t()", query=[("$top", "1")]
        )
    )
    assert request.query[0] == ("$top", "1")
    assert ("sig", "a+b/=") in request.query
    assert ("se", "2026-12-01T00:00:00Z") in request.query
    assert "a+b" not in repr(token)
    assert "sig" not in repr(request)
    assert "sig=" in request.url
    with pytest.raises(ConfigurationError):
        SasToken("sv=2019-02-02&sp=r")


class CountingCredential:
    """An azure-identity-style credential: ``get_token`` returns an ``AccessToken``."""

    def __init__(self, clock: list[float], lifetime: float = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.scopes: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self.lock:
            self.calls += 1
            self.scopes.append(scopes)
            return AccessToken(f"token-{self.calls}", int(self.clock[0] + self.lifetime))


def test_bearer_tokens_are_cached_until_near_expiry() -> None:
    clock = [1_000_000.0]
    credential = CountingCredential(clock)
    cache = BearerTokenCache(credential, margin=300, clock=lambda: clock[0])
    request = HttpRequest.to("GET", "https://acct.table.core.windows.net", "/t()")
    for _ in range(50):
        assert cache.apply(request).headers["authorization"] == "Bearer token-1"
    assert credential.calls == 1
    assert credential.scopes == [("https://storage.azure.com/.default",)]
    clock[0] += 3600 - 301  # still 301 s left: cached
    assert cache.header() == "Bearer token-1"
    clock[0] += 2  # 299 s left: inside the margin, fetched anew
    assert cache.header() == "Bearer token-2"
    assert cache.header() == "Bearer token-2"
    assert credential.calls == 2
    assert "token" not in repr(cache).replace("BearerTokenCache", "")


def test_bearer_token_is_fetched_once_by_concurrent_callers() -> None:
    clock = [0.0]
    credential = CountingCredential(clock)
    cache = BearerTokenCache(credential, "https://example/.default", clock=lambda: clock[0])
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def worker() -> None:
        barrier.wait()
        seen.append(cache.header())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["Bearer token-1"] * 8
    assert credential.calls == 1
    assert credential.scopes == [("https://example/.default",)]


class CountingAsyncCredential:
    """An azure-identity ``aio``-style credential: ``get_token`` is a coroutine."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(0.01)  # other tasks ask meanwhile
        return AccessToken(f"async-{self.calls}", int(self.clock[0] + 3600))

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> CountingAsyncCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


def test_async_credentials_are_awaited_once_by_concurrent_tasks() -> None:
    clock = [0.0]
    credential = CountingAsyncCredential(clock)
    cache = BearerTokenCache(credential, clock=lambda: clock[0])

    async def many() -> list[str]:
        return await asyncio.gather(*(cache.header_async() for _ in range(20)))

    assert asyncio.run(many()) == ["Bearer async-1"] * 20
    assert credential.calls == 1
    clock[0] += 3600 - 299
    assert asyncio.run(many()) == ["Bearer async-2"] * 20
    assert credential.calls == 2
    with pytest.raises(ConfigurationError, match="header_async"):
        BearerTokenCache(credential).header()  # a sync caller cannot await it


def test_sync_credentials_serve_async_callers_too() -> None:
    clock = [0.0]
    credential = CountingCredential(clock)
    cache = BearerTokenCache(credential, clock=lambda: clock[0])
    assert asyncio.run(cache.header_async()) == "Bearer token-1"
    assert cache.header() == "Bearer token-1"
    assert credential.calls == 1
