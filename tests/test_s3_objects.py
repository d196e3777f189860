"""The sans-I/O S3 object requests (`durastate.backends.s3.objects`): byte for byte against
botocore, and against moto_server for what S3 answers.

The request checks compare with two oracles: botocore's ``S3SigV4Auth`` signing the same
request at the same instant (every header, signature included), and the method, path and
condition headers boto3's own S3 client puts on the wire for the same call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

from durastate.backends.s3.objects import (
    ObjectMissing,
    PreconditionFailed,
    S3Objects,
    check_deleted,
    error_for,
    head_metadata,
    listed_keys,
    stored_object,
    written_etag,
)
from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError
from durastate.testing.emulators import RunningEmulator
from durastate.transport import HttpDriver, HttpResponse
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials, SigV4Signer
from tests.test_transport_signing import KEYS, NOW, botocore_headers

ENDPOINT = "http://127.0.0.1:5000"


def objects_at(endpoint: str | None, bucket: str = "bucket") -> S3Objects:
    """The requests for ``bucket``, signed with KEYS at NOW."""
    signer = SigV4Signer(AwsCredentials(fixed=KEYS), "eu-west-1", "s3", s3=True)
    return replace(S3Objects.for_endpoint(signer, bucket, endpoint), clock=lambda: NOW)


def _place(endpoint: str | None, bucket: str) -> tuple[str, bool]:
    placed = objects_at(endpoint, bucket)
    return placed.base_url, placed.path_style


def test_conditional_put_is_byte_for_byte_what_botocore_signs() -> None:
    objects = objects_at(ENDPOINT)
    request = objects.put(
        "p/status/état 🎉+&=",
        b"ds2 r v w json\n{}",
        metadata={"w": "abc", "p": "def"},
        if_match="9b2cf535f27731c974343645a3985328",
    )
    assert (request.method, request.scheme, request.host) == ("PUT", "http", "127.0.0.1:5000")
    assert request.path == "/bucket/p/status/%C3%A9tat%20%F0%9F%8E%89%2B%26%3D"
    assert request.body == b"ds2 r v w json\n{}"
    unsigned = {
        "if-match": '"9b2cf535f27731c974343645a3985328"',
        "x-amz-meta-w": "abc",
        "x-amz-meta-p": "def",
    }
    assert {k: request.headers[k] for k in unsigned} == unsigned
    bare = request.with_all_headers(unsigned)
    assert dict(request.headers) == botocore_headers(bare, KEYS, "eu-west-1", "s3", s3=True)


def test_create_only_put_and_ranged_get_and_list() -> None:
    objects = objects_at(ENDPOINT)
    put = objects.put("k", b"x", if_none_match=True)
    assert put.headers["if-none-match"] == "*"
    assert "if-match" not in put.headers
    get = objects.get("k", first_bytes=8192)
    assert (get.method, get.path, get.headers["range"]) == ("GET", "/bucket/k", "bytes=0-8191")
    listing = objects.list_page("p/records/a b", start_after="p/records/a b1")
    assert listing.path == "/bucket"
    assert dict(listing.query) == {
        "encoding-type": "url",
        "list-type": "2",
        "max-keys": "1000",
        "prefix": "p/records/a b",
        "start-after": "p/records/a b1",
    }
    assert dict(listing.headers) == botocore_headers(
        listing.with_all_headers({}), KEYS, "eu-west-1", "s3", s3=True
    )


def test_aws_endpoint_is_virtual_hosted_when_the_bucket_allows() -> None:
    assert _place(None, "my-bucket") == ("https://my-bucket.s3.eu-west-1.amazonaws.com", False)
    assert objects_at(None, "my-bucket").put("a/b", b"").path == "/a/b"
    assert _place(None, "My_Bucket") == ("https://s3.eu-west-1.amazonaws.com", True)


@pytest.mark.parametrize("key", ["plain", "p/records/a%2Fb", "sp ace+plus&amp=;:@$,?*!'()", "ünï☃"])
def test_path_is_the_one_boto3_sends(key: str) -> None:
    """boto3's client against the same endpoint, stopped before the wire: same path."""
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="eu-west-1",
        aws_access_key_id=KEYS.access_key,
        aws_secret_access_key=KEYS.secret_key,
    )
    seen: list[Any] = []

    def capture(request: Any, **_: Any) -> Any:
        seen.append(request)
        raise _Stop

    client.meta.events.register("before-send.s3", capture)
    with pytest.raises(_Stop):
        client.put_object(Bucket="bucket", Key=key, Body=b"x", IfMatch='"e"')
    sent = seen[0]
    ours = objects_at(ENDPOINT).put(key, b"x", if_match="e")
    assert ours.url == sent.url
    condition = sent.headers["If-Match"]
    assert (ours.method, ours.headers["if-match"].encode()) == (sent.method, condition)


class _Stop(Exception):
    pass


# -- answers ------------------------------------------------------------------------------


def answer(status: int, body: bytes = b"", **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def s3_error(code: str, message: str = "the request's canonical string ...") -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def test_a_failed_condition_is_precondition_failed() -> None:
    with pytest.raises(PreconditionFailed):
        written_etag(answer(412, s3_error("PreconditionFailed")), "put_object")
    with pytest.raises(PreconditionFailed):
        written_etag(answer(409, s3_error("ConditionalRequestConflict")), "put_object")
    with pytest.raises(PreconditionFailed):
        head_metadata(answer(412), "head_object")  # a HEAD has no body: the status says it


def test_errors_are_typed_and_never_quote_the_message() -> None:
    secret = "AKIA-canonical-request-SECRET"
    cases: list[tuple[HttpResponse, type[Exception]]] = [
        (answer(404, s3_error("NoSuchBucket", secret)), ConfigurationError),
        (answer(403, s3_error("SignatureDoesNotMatch", secret)), ConfigurationError),
        (answer(403), ConfigurationError),
        (answer(503, s3_error("SlowDown", secret)), BackendUnavailable),
        (answer(500, s3_error("InternalError", secret)), BackendUnavailable),
        (answer(400, s3_error("InvalidArgument", secret)), DurastateError),
    ]
    for response, kind in cases:
        error = error_for(response, "get_object", "bucket", "inst-1")
        assert type(error) is kind, (response, error)
        assert secret not in str(error)
    refused = error_for(answer(400, s3_error("InvalidArgument")), "put_object", "b", "inst-1")
    assert (
        str(refused)
        == "put_object of instance 'inst-1' was refused by S3: InvalidArgument (HTTP 400)"
    )
    with pytest.raises(ObjectMissing):
        written_etag(answer(404, s3_error("NoSuchKey")), "put_object")


def test_reads_of_missing_keys_are_none() -> None:
    assert stored_object(answer(404, s3_error("NoSuchKey")), "get_object") is None
    assert head_metadata(answer(404), "head_object") is None
    check_deleted(answer(204), "delete_object")
    with pytest.raises(ConfigurationError):
        stored_object(answer(404, s3_error("NoSuchBucket")), "get_object")


def test_a_ranged_answer_says_whether_it_is_whole() -> None:
    part = answer(206, b"abc", etag='"e1"', content_range="bytes 0-2/10", x_amz_meta_w="t")
    found = stored_object(part, "get_object")
    assert found is not None
    assert (found.body, found.etag, found.metadata, found.complete) == (
        b"abc",
        "e1",
        {"w": "t"},
        False,
    )
    whole = stored_object(answer(206, b"abc", etag='"e1"', content_range="bytes 0-2/3"), "g")
    assert whole is not None
    assert whole.complete


def test_listing_keys_are_decoded_and_truncation_read() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Name>b</Name><Prefix>p</Prefix><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        b"<Contents><Key>p/a+b%2B%C3%A9</Key><ETag>&quot;x&quot;</ETag></Contents>"
        b"<Contents><Key>p/c</Key></Contents></ListBucketResult>"
    )
    page = listed_keys(answer(200, body), "list_objects_v2")
    assert (page.keys, page.truncated) == (["p/a b+é", "p/c"], True)
    with pytest.raises(BackendUnavailable):
        listed_keys(answer(200, b"<html>a captive portal</html>"), "list_objects_v2")


# -- against moto_server -------------------------------------------------------------------


@pytest.fixture
def live(moto_server: RunningEmulator) -> Iterator[tuple[S3Objects, HttpDriver]]:
    bucket = f"ds-obj-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    signer = SigV4Signer(
        AwsCredentials(fixed=FrozenCredentials("testing", "testing")), "us-east-1", "s3", s3=True
    )
    with HttpDriver() as driver:
        yield S3Objects.for_endpoint(signer, bucket, moto_server.endpoint), driver


@pytest.mark.emulator
def test_object_round_trip_on_moto(live: tuple[S3Objects, HttpDriver]) -> None:
    objects, driver = live
    key = "p/status/sp ace+plus&é%2F"
    etag = written_etag(
        driver.send(objects.put(key, b"one", metadata={"w": "t1"}, if_none_match=True)),
        "put_object",
    )
    with pytest.raises(PreconditionFailed):
        written_etag(driver.send(objects.put(key, b"two", if_none_match=True)), "put_object")
    with pytest.raises(PreconditionFailed):
        written_etag(driver.send(objects.put(key, b"two", if_match="0" * 32)), "put_object")
    second = written_etag(
        driver.send(objects.put(key, b"two", metadata={"w": "t2", "p": "t1"}, if_match=etag)),
        "put_object",
    )
    found = stored_object(driver.send(objects.get(key)), "get_object")
    assert found is not None
    assert (found.body, found.etag, found.metadata) == (b"two", second, {"w": "t2", "p": "t1"})
    assert head_metadata(driver.send(objects.head(key, if_match=second)), "head_object") == {
        "w": "t2",
        "p": "t1",
    }
    with pytest.raises(PreconditionFailed):
        head_metadata(driver.send(objects.head(key, if_match=etag)), "head_object")
    written_etag(driver.send(objects.put("p/status/z", b"0123456789")), "put_object")
    part = stored_object(driver.send(objects.get("p/status/z", first_bytes=4)), "get_object")
    assert part is not None
    assert (part.body, part.complete) == (b"0123", False)
    page = listed_keys(
        driver.send(objects.list_page("p/status/", start_after=None, max_keys=1)), "list_objects_v2"
    )
    assert (page.keys, page.truncated) == ([key], True)
    rest = listed_keys(driver.send(objects.list_page("p/status/", start_after=key)), "l")
    assert (rest.keys, rest.truncated) == (["p/status/z"], False)
    check_deleted(driver.send(objects.delete(key)), "delete_object")
    check_deleted(driver.send(objects.delete(key)), "delete_object")
    assert stored_object(driver.send(objects.get(key)), "get_object") is None
    assert head_metadata(driver.send(objects.head(key)), "head_object") is None
