"""DynamoDB backend against two independent real servers: moto_server and dynalite.

Servers come only from the session fixtures in conftest.py (real HTTP on 127.0.0.1);
nothing here patches boto3.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durastate.backends._aws import AwsOptions, aws_client, unavailable
from durastate.backends.dynamodb import INLINE_LIMIT, DynamoDBBackend
from durastate.core.backend import Backend
from durastate.core.records import (
    InstanceQuery,
    NewInstance,
    Payload,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.store import StateStore
from durastate.core.tokens import InvalidContinuationToken, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
    PayloadTooLarge,
)
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.emulators import RunningEmulator, free_port
from durastate.transport import HttpRequest, HttpResponse

pytestmark = pytest.mark.emulator

CREDS: dict[str, Any] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region": "us-east-1",
}
T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _table() -> str:
    return f"ds-{uuid.uuid4().hex[:16]}"


def make_backend(endpoint: str, **options: Any) -> DynamoDBBackend:
    return DynamoDBBackend.from_url(
        f"dynamodb://{_table()}", endpoint_url=endpoint, **CREDS, **options
    )


@pytest.fixture(params=["moto", "dynalite"])
def server(request: pytest.FixtureRequest) -> RunningEmulator:
    name = "moto_server" if request.param == "moto" else "dynalite"
    emulator: RunningEmulator = request.getfixturevalue(name)
    return emulator


@pytest.fixture
def backend(server: RunningEmulator) -> Iterator[DynamoDBBackend]:
    with make_backend(server.endpoint) as created:
        yield created


def new(instance_id: str, *, status: RuntimeStatus = RuntimeStatus.RUNNING,
        created_at: datetime = T0, custom: bytes | None = b'"start"',
        data: bytes = b'{"x": 1}') -> NewInstance:
    return NewInstance(
        instance_id=instance_id,
        name="wf",
        runtime_status=status,
        created_at=created_at,
        input=Payload(data, "json"),
        custom_status=Payload(custom, "json") if custom is not None else None,
    )


class CallCounter:
    """Counts the HTTP requests a backend sends, by DynamoDB operation (``x-amz-target``),
    at its driver: every request of the lean path goes through ``driver.send``."""

    def __init__(self, backend: DynamoDBBackend) -> None:
        self.calls: Counter[str] = Counter()
        send = backend.driver.send

        def counting(
            request: HttpRequest, may_have_landed: Any = None, *, deadline: float | None = None
        ) -> HttpResponse:
            target = request.headers.get("x-amz-target", f"S3.{request.method}")
            self.calls[target.rsplit(".", 1)[-1]] += 1
            return send(request, may_have_landed, deadline=deadline)

        backend.driver.send = counting  # type: ignore[method-assign]


# -- records --------------------------------------------------------------------------------


def test_create_and_read_round_trip(backend: DynamoDBBackend) -> None:
    etag = backend.create(new("a/b#c?"))
    record = backend.read("a/b#c?")
    assert record is not None
    assert record.etag == etag
    assert record.created_at == T0
    assert record.created_at.tzinfo is not None
    assert record.last_updated_at == T0
    assert record.custom_status_updated_at == T0
    assert record.custom_status == Payload(b'"start"', "json")
    assert record.input is None
    assert record.output is None
    full = backend.read("a/b#c?", fetch_payloads=True)
    assert full is not None
    assert full.input == Payload(b'{"x": 1}', "json")
    assert backend.read("nope") is None


def test_empty_bytes_and_compressed_encoding_round_trip(backend: DynamoDBBackend) -> None:
    backend.create(new("e", custom=None))
    record = backend.read("e")
    assert record is not None
    assert record.custom_status is None
    assert record.custom_status_updated_at is None
    backend.write_custom_status("e", Payload(b"", "raw", "zlib"), etag=None, now=T0)
    record = backend.read("e")
    assert record is not None
    assert record.custom_status == Payload(b"", "raw", "zlib")


def test_create_is_insert_only(backend: DynamoDBBackend) -> None:
    backend.create(new("i"))
    with pytest.raises(InstanceExists) as caught:
        backend.create(new("i"))
    assert caught.value.runtime_status == "running"
    with pytest.raises(InstanceExists):
        backend.create(new("i"), restart_if_terminal=True)


def test_restart_of_terminal_run_clears_old_output_and_status(backend: DynamoDBBackend) -> None:
    etag = backend.create(new("r"))
    backend.write_runtime_status("r", RuntimeStatus.COMPLETED, output=Payload(b"1", "json"),
                                 set_output=True, etag=etag, now=T0)
    later = T0 + timedelta(seconds=5)
    backend.create(new("r", custom=None, created_at=later), restart_if_terminal=True)
    record = backend.read("r", fetch_payloads=True)
    assert record is not None
    assert record.runtime_status is RuntimeStatus.PENDING or record.runtime_status is (
        RuntimeStatus.RUNNING)
    assert record.output is None
    assert record.custom_status is None
    assert record.created_at == later


def test_runtime_status_and_output(backend: DynamoDBBackend) -> None:
    etag = backend.create(new("s"))
    with pytest.raises(ConcurrencyError):
        backend.write_runtime_status("s", RuntimeStatus.FAILED, output=None, set_output=False,
                                     etag="stale", now=T0)
    later = T0 + timedelta(seconds=1)
    etag2 = backend.write_runtime_status("s", RuntimeStatus.COMPLETED,
                                         output=Payload(b"[]", "json"), set_output=True,
                                         etag=etag, now=later)
    record = backend.read("s", fetch_payloads=True)
    assert record is not None
    assert record.etag == etag2
    assert record.runtime_status is RuntimeStatus.COMPLETED
    assert record.output == Payload(b"[]", "json")
    assert record.last_updated_at == later
    assert record.custom_status == Payload(b'"start"', "json")
    backend.write_runtime_status("s", RuntimeStatus.COMPLETED, output=None, set_output=True,
                                 etag=None, now=later)
    record = backend.read("s", fetch_payloads=True)
    assert record is not None
    assert record.output is None
    with pytest.raises(InstanceNotFound):
        backend.write_runtime_status("missing", RuntimeStatus.FAILED, output=None,
                                     set_output=False, etag=None, now=T0)


# -- custom status --------------------------------------------------------------------------


def test_custom_status_cas_and_missing(backend: DynamoDBBackend) -> None:
    etag = backend.create(new("c"))
    later = T0 + timedelta(milliseconds=7)
    result = backend.write_custom_status("c", Payload(b"0", "json"), etag=etag, now=later)
    assert result.written
    assert result.etag != etag
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("c", Payload(b"1", "json"), etag=etag, now=later)
    record = backend.read("c", fetch_payloads=True)
    assert record is not None
    assert record.custom_status == Payload(b"0", "json")
    assert record.custom_status_updated_at == later
    assert record.last_updated_at == later
    assert record.input == Payload(b'{"x": 1}', "json")  # untouched
    for etag_given in (None, "whatever"):
        with pytest.raises(InstanceNotFound):
            backend.write_custom_status("gone", Payload(b"1", "json"), etag=etag_given, now=T0)
    assert backend.read("gone") is None  # the failed update created nothing


def test_unchanged_bytes_write_nothing(backend: DynamoDBBackend) -> None:
    etag = backend.create(new("u"))
    payload = Payload(b'"start"', "json")
    assert backend.write_custom_status("u", payload, etag=None, now=T0) == WriteResult(
        etag, written=False)
    assert backend.write_custom_status("u", payload, etag=etag, now=T0) == WriteResult(
        etag, written=False)
    # same bytes, other encoding: a real change
    changed = backend.write_custom_status("u", Payload(b'"start"', "msgpack"), etag=etag, now=T0)
    assert changed.written
    with pytest.raises(ConcurrencyError):  # unchanged bytes but a stale etag
        backend.write_custom_status("u", Payload(b'"start"', "msgpack"), etag=etag, now=T0)


def test_stale_etag_with_unchanged_bytes_fails_across_backends(server: RunningEmulator) -> None:
    """A writes P (etag E1), B writes Q, A writes P again with E1: a conflict, Q stays.

    A's own cache of "P is stored at E1" cannot know about B; the write must reach the
    service, whose condition sees the stale etag.
    """
    table = _table()
    with make_backend(server.endpoint, table=table) as a, make_backend(
        server.endpoint, table=table, create_table=False
    ) as b:
        a.create(new("x", custom=None))
        mine, theirs = Payload(b'"P"', "json"), Payload(b'"Q"', "json")
        e1 = a.write_custom_status("x", mine, etag=None, now=T0).etag
        b.write_custom_status("x", theirs, etag=None, now=T0)
        counter = CallCounter(a)
        with pytest.raises(ConcurrencyError):
            a.write_custom_status("x", mine, etag=e1, now=T0)
        assert counter.calls["UpdateItem"] == 1
        record = b.read("x")
        assert record is not None
        assert record.custom_status == theirs


def test_unchanged_bytes_at_the_current_etag_cost_one_failed_condition(
    backend: DynamoDBBackend, server: RunningEmulator
) -> None:
    """Identical bytes at a current etag write nothing, but the service is asked."""
    etag = backend.create(new("same"))
    counter = CallCounter(backend)
    result = backend.write_custom_status("same", Payload(b'"start"', "json"), etag=etag, now=T0)
    assert result == WriteResult(etag, written=False)
    assert counter.calls["UpdateItem"] == 1


def test_one_custom_status_update_is_one_update_item(
    backend: DynamoDBBackend, server: RunningEmulator
) -> None:
    etag = backend.create(new("n"))
    counter = CallCounter(backend)
    backend.write_custom_status("n", Payload(b'{"pct": 42}', "json"), etag=etag, now=T0)
    assert counter.calls == Counter({"UpdateItem": 1})
    counter.calls.clear()
    backend.write_custom_status("n", Payload(b'{"pct": 43}', "json"), etag=None, now=T0)
    assert counter.calls == Counter({"UpdateItem": 1})
    counter.calls.clear()
    result = backend.write_custom_status("n", Payload(b'{"pct": 43}', "json"), etag=None, now=T0)
    assert not result.written
    # moto returns the old item with the failure; dynalite ignores the option (one GetItem).
    expected = {"UpdateItem": 1} if server.name == "moto_server" else {
        "UpdateItem": 1, "GetItem": 1}
    assert counter.calls == Counter(expected)


def test_store_set_custom_status_costs_one_request(server: RunningEmulator) -> None:
    with make_backend(server.endpoint) as backend:
        store = StateStore(backend, serializer="json", max_custom_status_bytes=16384)
        etag = store.create_instance("hot", name="wf", input={"big": "x" * 1000})
        counter = CallCounter(backend)
        for percent in range(10):
            etag = store.set_custom_status("hot", {"percent": percent}, etag=etag)
        assert counter.calls == Counter({"UpdateItem": 10})
        got = store.get_instance("hot")
        assert got is not None
        assert got.custom_status == {"percent": 9}


def test_registry_resolves_the_scheme(moto_server: RunningEmulator) -> None:
    from durastate import registry

    backend_class = registry.backend_class("dynamodb")
    assert backend_class is DynamoDBBackend


def _race_writer(backend: DynamoDBBackend, instance_id: str, etag: str, value: bytes,
                 barrier: threading.Barrier, outcomes: list[str]) -> None:
    barrier.wait()
    try:
        backend.write_custom_status(instance_id, Payload(value, "json"), etag=etag, now=T0)
        outcomes.append("won")
    except ConcurrencyError:
        outcomes.append("lost")




def test_two_writers_on_one_etag_exactly_one_wins(backend: DynamoDBBackend) -> None:
    for round_ in range(5):
        instance_id = f"race-{round_}"
        etag = backend.create(new(instance_id))
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=_race_writer,
                             args=(backend, instance_id, etag, value, barrier, outcomes))
            for value in (b"1", b"2")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["lost", "won"]
        record = backend.read(instance_id)
        assert record is not None
        assert record.etag != etag


# -- delete and query -----------------------------------------------------------------------


def test_delete(backend: DynamoDBBackend) -> None:
    backend.create(new("d"))
    assert backend.delete("d") is True
    assert backend.delete("d") is False
    assert backend.read("d") is None


def _seed(backend: DynamoDBBackend) -> None:
    statuses = [RuntimeStatus.RUNNING, RuntimeStatus.COMPLETED, RuntimeStatus.FAILED]
    for i in range(12):
        instance_id = f"{'job' if i % 2 else 'task'}-{i:02d}"
        backend.create(new(instance_id, status=statuses[i % 3],
                           created_at=T0 + timedelta(minutes=i)))


def _all(backend: DynamoDBBackend, query: InstanceQuery) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    for _ in range(100):
        page = backend.query(InstanceQuery(
            runtime_status=query.runtime_status, created_from=query.created_from,
            created_to=query.created_to, prefix=query.prefix, page_size=query.page_size,
            continuation=token, fetch_payloads=query.fetch_payloads))
        assert len(page.items) <= query.page_size
        ids.extend(r.instance_id for r in page.items)
        token = page.continuation
        if token is None:
            return ids
    raise AssertionError("query did not terminate")


def test_query_filters_and_paging(backend: DynamoDBBackend) -> None:
    _seed(backend)
    everything = _all(backend, InstanceQuery(page_size=5))
    assert sorted(everything) == sorted(
        f"{'job' if i % 2 else 'task'}-{i:02d}" for i in range(12))
    running = _all(backend, InstanceQuery(runtime_status=frozenset({RuntimeStatus.RUNNING}),
                                          page_size=2))
    assert running == ["task-00", "job-03", "task-06", "job-09"]  # created order
    two = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED})
    ranged = _all(backend, InstanceQuery(runtime_status=two,
                                         created_from=T0 + timedelta(minutes=2),
                                         created_to=T0 + timedelta(minutes=8), page_size=3))
    assert sorted(ranged) == ["job-05", "job-07", "task-02", "task-04"]
    jobs = _all(backend, InstanceQuery(prefix="job-", page_size=4))
    assert sorted(jobs) == [f"job-{i:02d}" for i in range(1, 12, 2)]
    # sub-millisecond bounds: from is inclusive, to exclusive, at stored (ms) precision
    exact = _all(backend, InstanceQuery(created_from=T0 + timedelta(minutes=3),
                                        created_to=T0 + timedelta(minutes=3, microseconds=1)))
    assert exact == ["job-03"]
    assert _all(backend, InstanceQuery(created_from=T0 + timedelta(minutes=3, microseconds=1),
                                       created_to=T0 + timedelta(minutes=4))) == []


def test_query_projection(backend: DynamoDBBackend) -> None:
    _seed(backend)
    page = backend.query(InstanceQuery(prefix="task-00"))
    assert [r.instance_id for r in page.items] == ["task-00"]
    assert page.items[0].input is None
    assert page.items[0].custom_status is not None
    page = backend.query(InstanceQuery(prefix="task-00", fetch_payloads=True))
    assert page.items[0].input == Payload(b'{"x": 1}', "json")


def test_bad_continuation_token(backend: DynamoDBBackend) -> None:
    with pytest.raises(InvalidContinuationToken):
        backend.query(InstanceQuery(continuation="not-a-token"))


@pytest.mark.parametrize(
    "state",
    [
        {"v": 1, "s": 0, "k": {"instance_id": {"N": "1"}}},
        {"v": 1, "s": 0, "k": {"instance_id": {"S": "a"}, "runtime_status": {"S": "running"},
                               "created_at": {"S": "2024"}}},  # not the index of status 0
        {"v": 1, "s": True, "k": None},
        {"v": 1, "s": 9, "k": None},
        {"after": "records/x"},  # an S3 token
    ],
)
def test_forged_and_foreign_continuation_tokens_are_refused(
    backend: DynamoDBBackend, state: dict[str, Any]
) -> None:
    backend.create(new("t"))
    with pytest.raises(InvalidContinuationToken):
        backend.query(InstanceQuery(continuation=encode_token(state)))


def test_one_corrupt_item_does_not_break_listing_and_is_purged(
    backend: DynamoDBBackend, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("p-1", "p-2", "p-3"):
        backend.create(new(name))
    backend.client.update_item(
        TableName=backend.table,
        Key={"instance_id": {"S": "p-2"}},
        UpdateExpression="SET last_updated_at = :bad",
        ExpressionAttributeValues={":bad": {"S": "yesterday"}},
    )
    with pytest.raises(CorruptRecord):
        backend.read("p-2")
    assert sorted(_all(backend, InstanceQuery())) == ["p-1", "p-3"]
    assert "'p-2'" in caplog.text
    assert backend.purge_by(InstanceQuery(prefix="p-")) == 3
    assert _all(backend, InstanceQuery()) == []


def test_purge_by(backend: DynamoDBBackend) -> None:
    _seed(backend)
    gone = backend.purge_by(InstanceQuery(runtime_status=frozenset({RuntimeStatus.FAILED})))
    assert gone == 4
    assert len(_all(backend, InstanceQuery())) == 8


# -- TTL ------------------------------------------------------------------------------------


def test_expired_items_read_as_absent(server: RunningEmulator) -> None:
    with make_backend(server.endpoint, ttl_attribute="expires_at", ttl_seconds=3600) as backend:
        start = datetime.now(UTC).replace(microsecond=0)
        backend.create(new("live", created_at=start))
        backend.create(new("old", created_at=start))
        key = {"instance_id": {"S": "live"}}
        raw = backend.client.get_item(TableName=backend.table, Key=key)
        assert int(raw["Item"]["expires_at"]["N"]) == int(start.timestamp()) + 3600
        backend.client.update_item(
            TableName=backend.table, Key={"instance_id": {"S": "old"}},
            UpdateExpression="SET expires_at = :past",
            ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 10)}},
        )
        now = datetime.now(UTC)
        assert backend.read("old") is None
        assert [r.instance_id for r in backend.query(InstanceQuery()).items] == ["live"]
        with pytest.raises(InstanceNotFound):
            backend.write_custom_status("old", Payload(b"1", "json"), etag=None, now=now)
        backend.create(new("old", created_at=now))  # an expired run is out of the way
        assert backend.read("old") is not None


# -- large payloads -------------------------------------------------------------------------


def test_payload_too_large_without_offload_writes_nothing(backend: DynamoDBBackend) -> None:
    assert backend.capabilities.max_payload_bytes == INLINE_LIMIT
    assert not backend.capabilities.offload
    big = b"x" * (INLINE_LIMIT + 1)
    with pytest.raises(PayloadTooLarge):
        backend.create(new("big", data=big))
    assert backend.read("big") is None
    etag = backend.create(new("big"))
    with pytest.raises(PayloadTooLarge):
        backend.write_custom_status("big", Payload(big, "json"), etag=etag, now=T0)
    record = backend.read("big")
    assert record is not None
    assert record.etag == etag
    assert record.custom_status == Payload(b'"start"', "json")
    # the inline limit is safe: three payloads at the limit fit in one item
    full = b"y" * INLINE_LIMIT
    backend.create(new("full", data=full, custom=full))
    backend.write_runtime_status("full", RuntimeStatus.COMPLETED, output=Payload(full, "json"),
                                 set_output=True, etag=None, now=T0)
    record = backend.read("full", fetch_payloads=True)
    assert record is not None
    assert record.output == Payload(full, "json")


def _objects(moto_server: RunningEmulator, bucket: str) -> list[str]:
    s3 = aws_client("s3", AwsOptions(endpoint_url=moto_server.endpoint, **CREDS))
    listing = s3.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_offload_to_s3_round_trips_and_cleans_up(moto_server: RunningEmulator) -> None:
    bucket = f"ds-offload-{uuid.uuid4().hex[:12]}"
    with make_backend(moto_server.endpoint, offload_bucket=bucket) as backend:
        assert backend.capabilities.offload
        assert backend.capabilities.max_payload_bytes is None
        big = bytes(range(256)) * 2000  # 512 KB: over the item limit itself
        etag = backend.create(new("o", data=big, custom=b"s" * 150_000))
        assert len(_objects(moto_server, bucket)) == 2
        record = backend.read("o", fetch_payloads=True)
        assert record is not None
        assert record.input == Payload(big, "json")
        assert record.custom_status == Payload(b"s" * 150_000, "json")
        # replacing an offloaded status with a small one removes the old object
        etag = backend.write_custom_status("o", Payload(b"1", "json"), etag=etag, now=T0).etag
        assert len(_objects(moto_server, bucket)) == 1
        # a failed conditional write leaves no orphan behind
        with pytest.raises(ConcurrencyError):
            backend.write_custom_status("o", Payload(big, "json"), etag="stale", now=T0)
        assert len(_objects(moto_server, bucket)) == 1
        backend.write_runtime_status("o", RuntimeStatus.COMPLETED, output=Payload(big, "json"),
                                     set_output=True, etag=etag, now=T0)
        assert len(_objects(moto_server, bucket)) == 2
        page = backend.query(InstanceQuery(fetch_payloads=True))
        assert page.items[0].output == Payload(big, "json")
        assert backend.delete("o")
        assert _objects(moto_server, bucket) == []


def test_a_request_dynamodb_refuses_is_a_typed_error(backend: DynamoDBBackend) -> None:
    """A 500 KB name (the store refuses it first; a backend used directly does not) makes an
    item over 400 KB: DynamoDB's ValidationException comes back typed, naming the code."""
    huge = NewInstance("big-name", "n" * 500_000, RuntimeStatus.RUNNING, T0, None, None)
    with pytest.raises(DurastateError) as raised:
        backend.create(huge)
    assert "ValidationException" in str(raised.value)
    assert "big-name" in str(raised.value)
    assert "nnnn" not in str(raised.value)
    assert backend.read("big-name") is None


def test_deleted_offload_bucket_gives_typed_errors(moto_server: RunningEmulator) -> None:
    """Someone deletes the offload bucket: old payloads are gone (CorruptRecord for that
    instance), new large payloads go to the bucket created again, never a raw NoSuchBucket."""
    bucket = f"ds-offload-{uuid.uuid4().hex[:12]}"
    big = b"b" * 150_000
    with make_backend(moto_server.endpoint, offload_bucket=bucket) as backend:
        backend.create(new("lost", data=big))
        s3 = aws_client("s3", AwsOptions(endpoint_url=moto_server.endpoint, **CREDS))
        for key in _objects(moto_server, bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        with pytest.raises(CorruptRecord) as raised:
            backend.read("lost", fetch_payloads=True)
        assert raised.value.instance_id == "lost"
        assert bucket in raised.value.reason
        etag = backend.create(new("after", data=big))
        backend.write_custom_status("after", Payload(big, "json"), etag=etag, now=T0)
        got = backend.read("after", fetch_payloads=True)
        assert got is not None
        assert (got.input, got.custom_status) == (Payload(big, "json"), Payload(big, "json"))


def test_offload_needs_an_s3_endpoint(dynalite: RunningEmulator) -> None:
    # dynalite serves no S3: creating the bucket fails clearly and nothing is stored
    bucket = f"ds-offload-{uuid.uuid4().hex[:12]}"
    with make_backend(dynalite.endpoint, offload_bucket=bucket, max_attempts=1) as backend:
        with pytest.raises(ConfigurationError, match="offload bucket"):
            backend.create(new("o", data=b"z" * 200_000))
        assert backend.read("o") is None


def test_offload_from_dynalite_to_s3_on_moto(
    dynalite: RunningEmulator, moto_server: RunningEmulator
) -> None:
    bucket = f"ds-offload-{uuid.uuid4().hex[:12]}"
    with make_backend(dynalite.endpoint, offload_bucket=bucket,
                      offload_endpoint_url=moto_server.endpoint) as backend:
        big = b"q" * 300_000
        etag = backend.create(new("o", data=big))
        with pytest.raises(ConcurrencyError):
            backend.write_custom_status("o", Payload(big, "json"), etag="stale", now=T0)
        assert len(_objects(moto_server, bucket)) == 1
        backend.write_custom_status("o", Payload(big, "json"), etag=etag, now=T0)
        record = backend.read("o", fetch_payloads=True)
        assert record is not None
        assert record.input == Payload(big, "json")
        assert record.custom_status == record.input
        assert backend.delete("o")
        assert _objects(moto_server, bucket) == []


# -- configuration and failures -------------------------------------------------------------


def test_from_url_options_and_secret_free_repr(server: RunningEmulator) -> None:
    table = _table()
    url = (f"dynamodb://{table}?region=us-east-1&endpoint_url={server.endpoint}"
           "&max_attempts=2&retry_mode=adaptive")
    with DynamoDBBackend.from_url(url, aws_access_key_id="testing",
                                  aws_secret_access_key="s3cr3t-value") as backend:
        assert backend.table == table
        assert backend.aws.max_attempts == 2
        assert backend.aws.retry_mode == "adaptive"
        assert "s3cr3t" not in repr(backend)
        assert "s3cr3t" not in repr(backend.aws)
        backend.create(new("x"))
    with pytest.raises(ConfigurationError):
        DynamoDBBackend.from_url("dynamodb://ab", endpoint_url=server.endpoint, **CREDS)
    with pytest.raises(ConfigurationError):
        DynamoDBBackend.from_url(f"dynamodb://{table}", endpoint_url=server.endpoint,
                                 no_such_option=1, **CREDS)


def test_missing_table_without_create_is_a_configuration_error(server: RunningEmulator) -> None:
    with make_backend(server.endpoint, create_table=False) as backend, pytest.raises(
        ConfigurationError
    ):
        backend.read("x")


def test_unreachable_endpoint_is_backend_unavailable_in_bounded_time() -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        DynamoDBBackend.from_url(
            "dynamodb://table-x", endpoint_url=f"http://127.0.0.1:{free_port()}",
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="very-secret",
            region="us-east-1", max_attempts=2, connect_timeout=0.5,
        )
    assert time.monotonic() - started < 10
    assert "very-secret" not in str(caught.value)


def test_unavailable_message_names_instance_not_secrets() -> None:
    import botocore.exceptions

    response: Any = {"Error": {"Code": "InternalServerError", "Message": "secret=abc"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}
    error = botocore.exceptions.ClientError(response, "UpdateItem")
    message = str(unavailable("write custom status", "inst-1", error))
    assert "inst-1" in message
    assert "InternalServerError" in message
    assert "abc" not in message


# -- the shared conformance suite, on both servers -----------------------------------------


class _SecondObjectOnTheSameTable:
    """The suite's hooks: another backend object on the same table, and a damaged item."""

    @pytest.fixture
    def open_other_backend(self, backend: DynamoDBBackend) -> Iterator[Callable[[], Backend]]:
        yield from closing_opener(lambda: DynamoDBBackend(backend.options, backend.aws))

    @pytest.fixture
    def corrupt_record(self, backend: DynamoDBBackend) -> Callable[[str], None]:
        def corrupt(instance_id: str) -> None:  # a name of the wrong type
            backend.client.update_item(
                TableName=backend.table,
                Key={"instance_id": {"S": instance_id}},
                UpdateExpression="SET #n = :n",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={":n": {"N": "5"}},
            )

        return corrupt


class TestConformanceOnMoto(_SecondObjectOnTheSameTable, BackendConformance):
    @pytest.fixture
    def backend(self, moto_server: RunningEmulator) -> Iterator[DynamoDBBackend]:
        with make_backend(moto_server.endpoint) as created:
            yield created


class TestConformanceOnDynalite(_SecondObjectOnTheSameTable, BackendConformance):
    @pytest.fixture
    def backend(self, dynalite: RunningEmulator) -> Iterator[DynamoDBBackend]:
        with make_backend(dynalite.endpoint) as created:
            yield created


class TestConformanceOnMotoWithOffloadAndTtl(_SecondObjectOnTheSameTable, BackendConformance):
    """Offload on (large payloads to S3) and TTL configured: same behaviour expected."""

    @pytest.fixture
    def backend(self, moto_server: RunningEmulator) -> Iterator[DynamoDBBackend]:
        bucket = f"ds-conf-{uuid.uuid4().hex[:12]}"
        with make_backend(moto_server.endpoint, offload_bucket=bucket, offload_threshold=4096,
                          ttl_attribute="expires_at", ttl_seconds=10**9) as created:
            yield created


# -- the async face -------------------------------------------------------------------------


def test_the_async_store_runs_the_native_async_backend_on_the_loop_alone(
    server: RunningEmulator,
) -> None:
    """The async store gets `AsyncDynamoDBBackend` (the same core over the asyncio driver): 50
    concurrent creates and status writes start no thread, and the sync face reads them."""
    from durastate import AsyncStateStore
    from durastate.backends.dynamodb.aio import AsyncDynamoDBBackend

    async def check(store: AsyncStateStore) -> set[threading.Thread]:
        before = set(threading.enumerate())
        await asyncio.gather(*(store.create_instance(f"a{n}", name="wf") for n in range(50)))
        await asyncio.gather(*(store.set_custom_status(f"a{n}", n) for n in range(50)))
        page = await store.query(page_size=100)
        assert sorted(i.instance_id for i in page.items) == sorted(f"a{n}" for n in range(50))
        started = set(threading.enumerate()) - before
        await store.close()
        return started

    with StateStore(make_backend(server.endpoint)) as sync_store:
        aio = AsyncStateStore(sync_store)
        assert type(aio.backend) is AsyncDynamoDBBackend
        assert type(sync_store.backend).async_mode == "native"
        assert asyncio.run(check(aio)) == set()
        assert sync_store.get_custom_status("a7") == 7
