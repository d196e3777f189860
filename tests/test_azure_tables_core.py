"""The azure-tables core without any I/O: requests byte for byte, answers to typed errors,
and a lost answer recognised, by driving the plans by hand (`plan.send`, `plan.throw`)."""

from __future__ import annotations

import base64
import gzip
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from durastate.backends.azure_tables import write_log
from durastate.backends.azure_tables.layout import decode_entity, entity_json
from durastate.backends.azure_tables.offload import BlobOffload
from durastate.backends.azure_tables.options import parse_options
from durastate.backends.azure_tables.plans import (
    AzureTablesCore,
    create,
    read,
    write_custom_status,
)
from durastate.backends.azure_tables.requests import Endpoint, TableRequests
from durastate.core.records import NewInstance, Payload, RuntimeStatus
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
)
from durastate.transport import HttpRequest, HttpResponse, OutcomeUnknown
from durastate.transport.plans import Exchange, Step
from durastate.transport.policy import RetryPolicy, TransportOptions

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ETAG = "W/\"datetime'2030-01-02T03%3A04%3A05.6789010Z'\""
NEW_ETAG = "W/\"datetime'2030-01-02T03%3A04%3A06.0000000Z'\""


class Unsigned:
    """An `Auth` that leaves the request as built (signing is tested in the transport)."""

    def apply(self, request: HttpRequest) -> HttpRequest:
        return request


def _core(**options: Any) -> AzureTablesCore:
    parsed = parse_options("azure-tables://Instances", {"account_url": "http://x", **options})
    endpoint = Endpoint("http://127.0.0.1:10002/devstoreaccount1")
    tables = TableRequests(endpoint, "Instances", Unsigned())
    blobs = BlobOffload(
        Endpoint("http://127.0.0.1:10000/devstoreaccount1"), Unsigned(), "c", "Instances"
    )
    return AzureTablesCore(tables, blobs, parsed)


def _req(step: Step) -> HttpRequest:
    assert isinstance(step, Exchange)
    return step.request


def _ids(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    queue = list(ids)
    monkeypatch.setattr(write_log, "new_write_id", lambda: queue.pop(0))


def _answer(status: int, body: Any = b"", **headers: str) -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def test_a_conditional_custom_status_write_is_one_merge_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ids(monkeypatch, "a" * 16)
    plan = write_custom_status(_core(), "job/1's", Payload(b'{"p":1}', "json"), ETAG, T0)
    step = next(plan)
    assert isinstance(step, Exchange)
    request = step.request
    assert step.may_have_landed is None  # a lost answer comes back to the plan, not retried
    assert request.method == "PATCH"
    assert request.url == (
        "http://127.0.0.1:10002/devstoreaccount1/Instances(PartitionKey='job%5E2F1%27%27s',RowKey='')"
    )
    assert dict(request.headers) == {
        "x-ms-version": "2019-02-02",
        "dataserviceversion": "3.0",
        "accept": "application/json",
        "content-type": "application/json",
        "if-match": ETAG,
    }
    assert orjson.loads(request.body) == {
        "PartitionKey": "job^2F1's",
        "RowKey": "",
        "CustomStatus": '{"p":1}',
        "CustomStatusEncoding": "json",
        "CustomStatusBlob": "",
        "CustomStatusUpdatedTime": "2030-01-02T03:04:05.678901Z",
        "CustomStatusUpdatedTime@odata.type": "Edm.DateTime",
        "LastUpdatedTime": "2030-01-02T03:04:05.678901Z",
        "LastUpdatedTime@odata.type": "Edm.DateTime",
        "WriteId": "a" * 16,
        "WriteLogA": "a" * 16,
        "WriteBase": ETAG,
    }
    with pytest.raises(StopIteration) as done:
        plan.send(_answer(204, etag=NEW_ETAG))
    assert done.value.value.etag == NEW_ETAG
    assert done.value.value.written


def test_an_unconditional_write_matches_any_etag_and_is_never_an_upsert() -> None:
    plan = write_custom_status(_core(), "j", Payload(b"\x00\x01", "msgpack"), None, T0)
    request = _req(next(plan))
    assert request.headers["if-match"] == "*"
    body = orjson.loads(request.body)
    assert body["CustomStatus"] == base64.b64encode(b"\x00\x01").decode()
    assert body["CustomStatus@odata.type"] == "Edm.Binary"
    with pytest.raises(InstanceNotFound):
        plan.send(_answer(404, {"odata.error": {"code": "ResourceNotFound"}}))


def test_a_conditional_failure_is_a_concurrency_error() -> None:
    plan = write_custom_status(_core(), "job", Payload(b"1", "json"), ETAG, T0)
    next(plan)
    with pytest.raises(ConcurrencyError) as raised:
        plan.send(_answer(412, {"odata.error": {"code": "UpdateConditionNotSatisfied"}}))
    assert raised.value.instance_id == "job"


def test_a_lost_answer_is_recognised_by_the_write_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MERGE's answer was lost: the plan reads the row's write log (no resend), finds
    its own token and returns the row's etag."""
    _ids(monkeypatch, "b" + "0" * 15)
    plan = write_custom_status(_core(), "job", Payload(b"1", "json"), ETAG, T0)
    assert _req(next(plan)).method == "PATCH"
    probe = plan.throw(OutcomeUnknown("PATCH http://...: may have been applied; not retried"))
    assert _req(probe).method == "GET"
    assert dict(_req(probe).query) == {"$select": "WriteId,WriteBase,WriteLogB"}
    row = {"odata.etag": NEW_ETAG, "WriteId": "b" + "0" * 15, "WriteBase": ETAG}
    with pytest.raises(StopIteration) as done:
        plan.send(_answer(200, row, etag=NEW_ETAG))
    assert done.value.value.etag == NEW_ETAG


def test_a_lost_answer_then_a_stale_row_is_a_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another write replaced the very etag ours was sent with: ours can never apply."""
    _ids(monkeypatch, "c" + "0" * 15)
    plan = write_custom_status(_core(), "job", Payload(b"1", "json"), ETAG, T0)
    next(plan)
    plan.throw(OutcomeUnknown("lost"))
    row = {"WriteId": "d" * 16, "WriteBase": ETAG, "WriteLogC": ""}
    with pytest.raises(ConcurrencyError):
        plan.send(_answer(200, row, etag=NEW_ETAG))


def test_a_500_after_the_write_is_read_back_then_sent_again_if_not_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ids(monkeypatch, "e" + "0" * 15)
    plan = write_custom_status(_core(), "job", Payload(b"1", "json"), ETAG, T0)
    first = next(plan)
    probe = plan.send(_answer(500, {"odata.error": {"code": "OperationTimedOut"}}))
    assert _req(probe).method == "GET"
    again = plan.send(_answer(200, {"WriteId": "x", "WriteBase": ""}, etag=ETAG))
    assert _req(again).method == "PATCH"
    assert _req(again).body == _req(first).body  # the same write, the same token
    with pytest.raises(StopIteration):
        plan.send(_answer(204, etag=NEW_ETAG))


def test_create_is_an_insert_and_a_conflict_reads_then_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ids(monkeypatch, "f" + "0" * 15)
    new = NewInstance("job", "wf", RuntimeStatus.RUNNING, T0, Payload(b"[1]", "json"), None)
    plan = create(_core(), new, False)
    insert = _req(next(plan))
    assert (insert.method, insert.path) == ("POST", "/devstoreaccount1/Instances")
    assert insert.headers["prefer"] == "return-no-content"
    assert insert.headers["content-type"] == "application/json;odata=nometadata"
    body = orjson.loads(insert.body)
    assert body["CreatedTime@odata.type"] == "Edm.DateTime"
    assert (body["InstanceId"], body["Input"], body["InputEncoding"]) == ("job", "[1]", "json")
    probe = plan.send(_answer(409, {"odata.error": {"code": "EntityAlreadyExists"}}))
    assert _req(probe).method == "GET"
    with pytest.raises(InstanceExists):
        plan.send(_answer(200, {"RuntimeStatus": "running", "WriteId": "0" * 16}, etag=ETAG))


def test_a_row_read_in_the_sdk_layout_becomes_the_record() -> None:
    plan = read(_core(), "job", False)
    request = _req(next(plan))
    assert request.headers["accept"] == "application/json;odata=minimalmetadata"
    row = {
        "odata.etag": ETAG,
        "InstanceId": "job",
        "Name": "wf",
        "RuntimeStatus": "completed",
        "CreatedTime@odata.type": "Edm.DateTime",
        "CreatedTime": "2030-01-02T03:04:05.6789012Z",
        "LastUpdatedTime@odata.type": "Edm.DateTime",
        "LastUpdatedTime": "2030-01-02T03:04:05Z",
        "CustomStatus@odata.type": "Edm.Binary",
        "CustomStatus": base64.b64encode(b"\x91\x01").decode(),
        "CustomStatusEncoding": "msgpack",
        "CustomStatusBlob": "",
    }
    with pytest.raises(StopIteration) as done:
        plan.send(_answer(200, row, etag=ETAG))
    record = done.value.value
    assert record.etag == ETAG
    assert record.created_at == datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert record.runtime_status is RuntimeStatus.COMPLETED
    assert record.custom_status == Payload(b"\x91\x01", "msgpack")


def test_a_row_of_another_instance_or_with_bad_types_is_corrupt() -> None:
    for row in ({"InstanceId": "other"}, {"CustomStatus": 5, "CustomStatusEncoding": "json"}):
        plan = read(_core(), "job", False)
        next(plan)
        with pytest.raises(CorruptRecord):
            plan.send(_answer(200, {"RuntimeStatus": "running", **row}, etag=ETAG))


def test_missing_table_and_refused_key_are_configuration_errors() -> None:
    for status, code in ((404, "TableNotFound"), (403, "AuthenticationFailed")):
        plan = read(_core(), "job", False)
        next(plan)
        with pytest.raises(ConfigurationError) as raised:
            plan.send(_answer(status, {"odata.error": {"code": code}}))
        assert "'job'" in str(raised.value)


def test_entity_json_round_trips_types() -> None:
    entity = {"A": T0, "B": b"\xff", "C": "text", "D": True, "E": 1e12}
    assert decode_entity(orjson.loads(entity_json(entity))) == entity


def test_every_request_of_a_call_ends_by_the_calls_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write and the read after its lost answer carry one deadline, and the driver's
    retry policy keeps to it (a call of several requests never takes several timeouts)."""
    _ids(monkeypatch, "a" + "1" * 15)
    started = time.monotonic()
    plan = write_custom_status(_core(operation_timeout=2.5), "job", Payload(b"1", "json"), ETAG, T0)
    write = next(plan)
    probe = plan.throw(OutcomeUnknown("lost"))
    assert isinstance(write, Exchange)
    assert isinstance(probe, Exchange)
    assert write.deadline is not None
    assert write.deadline == probe.deadline
    assert started + 2.5 <= write.deadline <= time.monotonic() + 2.5
    call = RetryPolicy(TransportOptions(deadline=30)).call(probe.request, None, write.deadline)
    assert call.deadline == write.deadline
    assert call.timeouts().total <= 2.5


def test_an_offloaded_status_goes_to_a_create_only_blob_then_the_row() -> None:
    """A payload over the threshold: a gzip blob `PUT` with ``If-None-Match: *`` (a resend
    of a landed upload meets 409: ours), then the MERGE naming it. If the upload's outcome
    stays unknown, the write surely did not happen: a plain `BackendUnavailable`."""
    big = Payload(b'"' + b"z" * 70_000 + b'"', "json")
    plan = write_custom_status(_core(), "job", big, ETAG, T0)
    upload = next(plan)
    assert isinstance(upload, Exchange)
    assert upload.may_have_landed is not None  # the transport may resend it
    request = upload.request
    assert (request.method, request.headers["if-none-match"]) == ("PUT", "*")
    assert request.path.startswith("/devstoreaccount1/c/Instances/")
    assert gzip.decompress(request.body) == big.data
    merge = _req(plan.send(_answer(409, x_ms_error_code="BlobAlreadyExists")))
    columns = orjson.loads(merge.body)
    assert (columns["CustomStatus"], columns["Offloaded"]) == ("", True)
    assert request.path.endswith(quote(columns["CustomStatusBlob"], safe="/"))

    again = write_custom_status(_core(), "job", big, ETAG, T0)
    next(again)
    with pytest.raises(BackendUnavailable) as raised:
        again.throw(OutcomeUnknown("PUT ...: gave up; an earlier attempt may have been applied"))
    assert not isinstance(raised.value, OutcomeUnknown)
    assert "'job'" in str(raised.value)


def test_options_from_the_url_and_keywords_are_typed_alike() -> None:
    """One model: booleans, numbers and the TLS flag parse the same from a URL's query as
    from keywords; a bad value names the option, never the value; secrets stay hidden."""
    from_url = parse_options(
        "azure-tables://Tab?create_table=off&offload=0&verify=false&retry_total=5", {}
    )
    from_keywords = parse_options(
        "azure-tables://Tab", {"create_table": False, "offload": False, "verify": False,
                               "retry_total": 5}
    )  # fmt: skip
    assert from_url == from_keywords
    assert from_url.transport().max_attempts == 6
    assert parse_options("azure-tables://Tab?verify=/etc/ca.pem", {}).verify == "/etc/ca.pem"
    secret = "c2VjcmV0LWtleS1zaG91bGQtbm90LXNob3c="
    with pytest.raises(ConfigurationError) as raised:
        parse_options("azure-tables://Tab", {"retry_total": "many", "account_key": secret})
    assert "retry_total" in str(raised.value)
    assert "many" not in str(raised.value)
    options = parse_options("azure-tables://Tab", {"account_key": secret, "proxy": secret})
    assert secret not in repr(options)
    assert secret not in str(options.model_dump())


def test_the_connection_pool_is_an_option_and_reaches_both_drivers() -> None:
    """``max_pool_connections`` (the AWS backends' name): 100 by default, so 100 requests in
    flight each get a connection; from the URL or keywords; the async driver bounds its
    open connections by it."""
    from durastate.backends.azure_tables import AzureTablesBackend
    from durastate.backends.azure_tables.aio import AsyncAzureTablesBackend

    assert parse_options("azure-tables://Tab", {}).transport().pool_size == 100
    assert parse_options("azure-tables://Tab?max_pool_connections=7", {}).transport().pool_size == 7
    with pytest.raises(ConfigurationError, match="max_pool_connections"):
        parse_options("azure-tables://Tab", {"max_pool_connections": 0})
    backend = AzureTablesBackend.from_url(
        "azure-tables://Instances", account_url="http://127.0.0.1:9/acct",
        sas_token="sv=2020&sig=abc", create_table=False, max_pool_connections=250,
    )  # fmt: skip
    face = backend.to_async()
    assert isinstance(face, AsyncAzureTablesBackend)
    assert face._driver._pool._size == 250
    backend.close()


def test_without_aiohttp_the_async_store_is_still_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The async driver is asyncio alone: no extra, no thread-pool fallback, no warning."""
    from durastate.backends.azure_tables import AzureTablesBackend
    from durastate.backends.azure_tables.aio import AsyncAzureTablesBackend

    # None in sys.modules makes `import aiohttp` raise ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.delitem(sys.modules, "durastate.transport.aio", raising=False)
    monkeypatch.delitem(sys.modules, "durastate.backends.azure_tables.aio", raising=False)
    backend = AzureTablesBackend.from_url(
        "azure-tables://Instances", account_url="http://127.0.0.1:9/acct",
        sas_token="sv=2020&sig=abc", create_table=False,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        face = backend.to_async()
    assert type(face).__name__ == AsyncAzureTablesBackend.__name__  # re-imported above
    assert "pip install" not in caplog.text
    backend.close()
