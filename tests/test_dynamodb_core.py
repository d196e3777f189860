"""The DynamoDB core without a server: requests byte for byte, answers into typed results.

The core (`durastate.backends.dynamodb.plans`) is plain data in, plain data out: a plan
yields the requests it wants sent and receives `HttpResponse`s. These tests drive plans by
hand (``send``), so each case says exactly which answer leads to which result. The same
core runs against moto and dynalite in tests/test_dynamodb.py.
"""

from __future__ import annotations

import base64
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from durastate.backends.dynamodb import DynamoDBBackend
from durastate.backends.dynamodb.options import parse_url
from durastate.backends.dynamodb.plans import DynamoCore
from durastate.backends.dynamodb.requests import DynamoRequests, TableLayout
from durastate.core.records import Payload, WriteResult
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    DurastateError,
    InstanceNotFound,
)
from durastate.transport import HttpResponse, OutcomeUnknown
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials
from durastate.transport.plans import Exchange, Plan
from tests.test_transport_signing import botocore_headers

KEYS = FrozenCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
NOW = datetime(2026, 11, 29, 7, 30, 5, 250000, tzinfo=UTC)
STATUS = Payload(b'{"pct":42}', "json")
CCF = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"


def requests(**layout: Any) -> DynamoRequests:
    return DynamoRequests(
        TableLayout("workflows", **layout),
        "http://127.0.0.1:8000",
        "us-east-1",
        AwsCredentials(fixed=KEYS),
    )


def core() -> DynamoCore:
    return DynamoCore(requests(), None, 100_000)


def answer(status: int, body: dict[str, Any], *, unknown: bool = False) -> HttpResponse:
    return HttpResponse(status, {}, orjson.dumps(body), outcome_unknown=unknown)


def item(etag: str, previous: str | None = None, status: bytes = b'"old"') -> dict[str, Any]:
    found = {
        "instance_id": {"S": "job-1"},
        "etag": {"S": etag},
        "custom_status": {"B": base64.b64encode(status).decode()},
        "custom_status_encoding": {"S": "json"},
    }
    if previous is not None:
        found["previous_etag"] = {"S": previous}
    return found


def sent(step: Any) -> dict[str, Any]:
    """The JSON body of the request a plan yielded."""
    assert isinstance(step, Exchange)
    parsed: dict[str, Any] = orjson.loads(step.request.body)
    return parsed


def exchange(step: Any) -> Exchange:
    assert isinstance(step, Exchange)
    return step


def made_etag(step: Any) -> str:
    return str(sent(step)["ExpressionAttributeValues"][":et"]["S"])


def finish(plan: Plan[Any], response: HttpResponse) -> Any:
    with pytest.raises(StopIteration) as done:
        plan.send(response)
    return done.value.value


def test_a_conditional_status_write_is_this_request_byte_for_byte() -> None:
    body = requests().custom_status_update("job-1", STATUS, ("B", STATUS.data), "e-old", NOW,
                                           "e-new")
    request = requests().sign("UpdateItem", body, now=NOW)
    assert (request.method, request.scheme, request.host, request.path, request.query) == (
        "POST", "http", "127.0.0.1:8000", "/", ())
    assert request.body == (
        b'{"TableName":"workflows","Key":{"instance_id":{"S":"job-1"}},'
        b'"UpdateExpression":"SET #cs = :cs, #cse = :enc, #cu = :now, #lu = :now, '
        b'#et = :et, #pv = #et",'
        b'"ConditionExpression":"#et = :old AND (attribute_not_exists(#cs) OR #cs <> :cs '
        b'OR #cse <> :enc)",'
        b'"ExpressionAttributeNames":{"#et":"etag","#pv":"previous_etag",'
        b'"#lu":"last_updated_at","#cu":"custom_status_updated_at","#cs":"custom_status",'
        b'"#cse":"custom_status_encoding"},'
        b'"ExpressionAttributeValues":{":enc":{"S":"json"},'
        b'":now":{"S":"2026-11-29T07:30:05.250Z"},":et":{"S":"e-new"},'
        b'":cs":{"B":"eyJwY3QiOjQyfQ=="},":old":{"S":"e-old"}},'
        b'"ReturnValuesOnConditionCheckFailure":"ALL_OLD"}'
    )
    assert dict(request.headers) == {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.UpdateItem",
        "x-amz-date": "20261129T073005Z",
        "authorization": (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
            "Signature=7b2a67f85e14d8bd9ecc57af79f2964bb42f95d52e3820cbeeb46d3a92c6e5e7"
        ),
    }
    # botocore's SigV4Auth, given the same request at the same instant, signs it alike
    unsigned = request.with_all_headers(
        {k: v for k, v in request.headers.items() if k in ("content-type", "x-amz-target")}
    )
    oracle = botocore_headers(unsigned, KEYS, "us-east-1", "dynamodb", s3=False)
    assert oracle["authorization"] == request.headers["authorization"]


def test_without_etag_the_condition_is_existence_and_changed_bytes() -> None:
    body = requests().custom_status_update("job-1", STATUS, ("B", STATUS.data), None, NOW, "e")
    assert body["ConditionExpression"] == (
        "attribute_exists(#id) AND (attribute_not_exists(#cs) OR #cs <> :cs OR #cse <> :enc)"
    )
    assert ":old" not in body["ExpressionAttributeValues"]


def test_a_ttl_makes_expired_items_absent_and_refreshes_on_write() -> None:
    body = requests(ttl_attribute="exp", ttl_seconds=60).custom_status_update(
        "job-1", STATUS, ("B", STATUS.data), None, NOW, "e"
    )
    assert body["ConditionExpression"].endswith(" AND (attribute_not_exists(#ttl) OR #ttl > :nowe)")
    assert ", #ttl = :exp" in body["UpdateExpression"]
    assert body["ExpressionAttributeValues"][":exp"] == {"N": str(int(NOW.timestamp()) + 60)}


def test_a_failed_condition_at_another_etag_is_a_concurrency_error() -> None:
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    step = exchange(next(plan))
    assert step.request.headers["x-amz-target"] == "DynamoDB_20120810.UpdateItem"
    with pytest.raises(ConcurrencyError) as raised:
        plan.send(answer(400, {"__type": CCF, "Item": item("e-theirs", "e-old")}))
    assert raised.value.instance_id == "job-1"


def test_a_failed_condition_on_no_item_is_instance_not_found() -> None:
    dynamo = core()
    dynamo.old_on_failure = True  # the server returns ALL_OLD: no item means none
    plan = dynamo.write_custom_status("gone", STATUS, None, NOW)
    next(plan)
    with pytest.raises(InstanceNotFound):
        plan.send(answer(400, {"__type": CCF}))


def test_identical_bytes_fail_the_condition_and_return_the_old_etag() -> None:
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    next(plan)
    result = finish(plan, answer(400, {"__type": CCF, "Item": item("e-old", status=STATUS.data)}))
    assert result == WriteResult("e-old", written=False)


def test_a_server_without_all_old_is_asked_with_one_get_item() -> None:
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    next(plan)
    get = exchange(plan.send(answer(400, {"__type": CCF})))  # dynalite: no Item with the failure
    assert get.request.headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert sent(get)["ConsistentRead"] is True
    with pytest.raises(ConcurrencyError):
        plan.send(answer(200, {"Item": item("e-theirs")}))


@pytest.mark.parametrize("where", ["etag", "previous_etag"])
def test_a_lost_answer_is_recognised_as_our_own_write(where: str) -> None:
    """The retry of a landed write fails its condition on the item that write made: the
    etag this call made is there (or is the one a second writer then replaced)."""
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    step = exchange(next(plan))
    assert step.may_have_landed is not None  # the driver may retry it: the core can tell
    made = made_etag(step)
    old = item(made, "e-old") if where == "etag" else item("e-theirs", made)
    result = finish(plan, answer(400, {"__type": CCF, "Item": old}, unknown=True))
    assert result == WriteResult(made, written=True)


def test_a_lost_answer_that_cannot_be_told_is_reported_unknown_never_a_conflict() -> None:
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    next(plan)
    failure = {"__type": CCF, "Item": item("e-third", "e-second")}
    with pytest.raises(BackendUnavailable, match="unknown") as raised:
        plan.send(answer(400, failure, unknown=True))
    assert not isinstance(raised.value, ConcurrencyError)
    assert "job-1" in str(raised.value)


def test_a_lost_answer_followed_by_another_writer_on_our_etag_is_a_conflict() -> None:
    """The write that followed the caller's etag is another's: ours never landed."""
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    next(plan)
    with pytest.raises(ConcurrencyError):
        plan.send(answer(400, {"__type": CCF, "Item": item("e-theirs", "e-old")}, unknown=True))


def test_the_driver_giving_up_on_a_write_that_may_have_landed_says_unknown() -> None:
    plan = core().write_custom_status("job-1", STATUS, "e-old", NOW)
    next(plan)
    with pytest.raises(BackendUnavailable, match="unknown") as raised:
        plan.throw(OutcomeUnknown("POST http://127.0.0.1:8000/: gave up after 3 attempt(s)"))
    assert "job-1" in str(raised.value)


def test_throttling_is_tried_again_with_the_same_signed_request() -> None:
    plan = core().write_custom_status("job-1", STATUS, None, NOW)
    first = exchange(next(plan))
    pause = plan.send(answer(400, {"__type": "x#ProvisionedThroughputExceededException"}))
    assert type(pause).__name__ == "Pause"
    again = exchange(plan.send(None))
    assert again.request is first.request
    assert finish(plan, answer(200, {})).written


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (400, "ResourceNotFoundException", ConfigurationError),
        (400, "UnrecognizedClientException", ConfigurationError),
        (500, "InternalServerError", BackendUnavailable),
        (400, "ValidationException", DurastateError),
    ],
)
def test_errors_are_typed_by_code_and_never_quote_the_message(
    status: int, kind: str, error: type[DurastateError]
) -> None:
    plan = core().read("job-1", False)
    next(plan)
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "secret=abc"}
    with pytest.raises(error) as raised:
        plan.send(answer(status, body))
    assert "abc" not in str(raised.value)
    assert not isinstance(raised.value, ConcurrencyError)


def test_a_read_decodes_the_item_and_leaves_out_input_and_output() -> None:
    plan = core().read("job-1", False)
    step = next(plan)
    assert "input" not in sent(step)["ProjectionExpression"]
    stored = {
        **item("e1", status=b'"half"'),
        "name": {"S": "wf"},
        "runtime_status": {"S": "running"},
        "created_at": {"S": "2026-11-29T07:30:05.250Z"},
        "last_updated_at": {"S": "2026-11-29T07:30:06.000Z"},
    }
    record = finish(plan, answer(200, {"Item": stored}))
    assert record.etag == "e1"
    assert record.custom_status == Payload(b'"half"', "json")
    assert record.created_at == NOW
    assert record.custom_status_updated_at is None


def test_options_are_typed_the_same_from_the_url_and_from_keywords() -> None:
    from_url = parse_url(
        "dynamodb",
        "dynamodb://workflows?create_table=false&offload_threshold=4096&max_attempts=2",
        {},
    )
    from_keywords = parse_url(
        "dynamodb",
        "dynamodb://workflows",
        {"create_table": False, "offload_threshold": 4096, "max_attempts": 2},
    )
    assert from_url == from_keywords
    options, aws = from_url
    assert (options.create_table, options.offload_threshold, aws.max_attempts) == (
        False, 4096, 2)
    with pytest.raises(ConfigurationError, match="create_table"):
        parse_url("dynamodb", "dynamodb://workflows?create_table=perhaps", {})
    with pytest.raises(ConfigurationError, match="no_such_option"):
        parse_url("dynamodb", "dynamodb://workflows", {"no_such_option": 1})
    _, aws = parse_url("dynamodb", "dynamodb://workflows", {"aws_secret_access_key": "s3cr3t"})
    assert "s3cr3t" not in repr(aws)


@pytest.mark.parametrize("endpoint", ["ftp:/s3cr3t", "http://h:s3cr3t", "http://"])
def test_a_malformed_offload_endpoint_is_refused_at_open_without_echo(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        DynamoDBBackend.from_url(
            "dynamodb://workflows",
            endpoint_url="http://127.0.0.1:9",
            offload_bucket="bucket",
            offload_endpoint_url=endpoint,
            create_table=False,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region="us-east-1",
        )
    assert "s3cr3t" not in str(raised.value)
    assert "offload" in str(raised.value)


def test_without_aiohttp_the_async_store_is_still_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The async driver is asyncio alone: no extra, no thread-pool fallback, no warning."""

    # None in sys.modules makes `import aiohttp` raise ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.delitem(sys.modules, "durastate.transport.aio", raising=False)
    monkeypatch.delitem(sys.modules, "durastate.backends.dynamodb.aio", raising=False)
    backend = DynamoDBBackend.from_url(
        "dynamodb://workflows", endpoint_url="http://127.0.0.1:9", create_table=False,
        aws_access_key_id="k", aws_secret_access_key="s", region="us-east-1",
    )
    with caplog.at_level(logging.WARNING):
        face = backend.to_async()
    assert type(face).__name__ == "AsyncDynamoDBBackend"
    assert "pip install" not in caplog.text
    backend.close()
