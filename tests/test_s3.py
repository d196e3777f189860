"""S3 backend against moto_server over real HTTP (the session fixture in conftest.py).

moto_server enforces ``If-Match`` / ``If-None-Match: *`` on PutObject (checked below), so the
concurrency tests here exercise S3's own conditional writes. Nothing is mocked; requests
are counted, and other writers act between them, by `intercept`, which sees every request
the backend's driver sends to moto_server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durastate.backends.s3 import (
    MAX_KEY_BYTES,
    S3Backend,
    escape_id,
    instance_key,
    unescape_id,
)
from durastate.backends.s3.layout import Etag as S3Etag
from durastate.core.backend import Backend
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.core.store import StateStore
from durastate.core.tokens import InvalidContinuationToken, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
)
from durastate.opening import open_backend
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.emulators import RunningEmulator, free_port
from durastate.transport import HttpRequest, HttpResponse, LandedHook
from durastate.transport.plans import Plan, run

pytestmark = pytest.mark.emulator

CREDS: dict[str, Any] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region": "us-east-1",
}
BUCKET = "durastate-tests"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_backend(
    endpoint: str, *, bucket: str = BUCKET, prefix: str | None = None, **options: Any
) -> S3Backend:
    prefix = prefix if prefix is not None else f"t-{uuid.uuid4().hex[:12]}"
    return S3Backend.from_url(f"s3://{bucket}/{prefix}", endpoint_url=endpoint, **CREDS, **options)


@pytest.fixture
def backend(moto_server: RunningEmulator) -> Iterator[S3Backend]:
    with make_backend(moto_server.endpoint) as created:
        yield created


def intercept(backend: S3Backend, before: Callable[[HttpRequest], None]) -> None:
    """Call ``before(request)`` ahead of every request the backend sends (then sent as is)."""
    send = backend.driver.send

    def sending(
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        before(request)
        return send(request, may_have_landed, deadline=deadline)

    backend.driver.send = sending  # type: ignore[method-assign]


def record_key(backend: S3Backend, instance_id: str) -> str:
    return backend.core.keys.record_key(instance_id)


def run_plan(backend: S3Backend, plan: Plan[Any]) -> Any:
    """Run one of the core's plans (a step of an operation) over the backend's driver."""
    return run(plan, backend.driver)


class Requests:
    """Every HTTP request a backend sends, as (method, path) pairs."""

    def __init__(self, backend: S3Backend) -> None:
        self.sent: list[tuple[str, str]] = []
        intercept(backend, self._record)

    def _record(self, request: HttpRequest) -> None:
        self.sent.append((request.method, request.path.rsplit("/", 2)[-2]))

    def clear(self) -> None:
        self.sent.clear()

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


def new(
    instance_id: str,
    *,
    status: RuntimeStatus = RuntimeStatus.RUNNING,
    custom: bytes | None = b'"start"',
    data: bytes = b'{"x": 1}',
) -> NewInstance:
    return NewInstance(
        instance_id=instance_id,
        name="wf",
        runtime_status=status,
        created_at=T0,
        input=Payload(data, "json"),
        custom_status=Payload(custom, "json") if custom is not None else None,
    )


def status(data: bytes) -> Payload:
    return Payload(data, "json")


# -- the conformance suite -------------------------------------------------------------------


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def backend(self, moto_server: RunningEmulator) -> Iterator[Backend]:
        with make_backend(moto_server.endpoint) as created:
            yield created

    @pytest.fixture
    def open_other_backend(
        self, moto_server: RunningEmulator, backend: S3Backend
    ) -> Iterator[Callable[[], Backend]]:
        yield from closing_opener(lambda: make_backend(moto_server.endpoint, prefix=backend.prefix))

    @pytest.fixture
    def corrupt_record(self, backend: S3Backend) -> Callable[[str], None]:
        def corrupt(instance_id: str) -> None:  # the record object overwritten with garbage
            key = record_key(backend, instance_id)
            backend.client.put_object(Bucket=backend.bucket, Key=key, Body=b"\x00garbage{")

        return corrupt


# -- the emulator enforces what the backend relies on ----------------------------------------


def test_moto_server_enforces_conditional_puts(backend: S3Backend) -> None:
    backend.create(new("probe"))
    client, key = backend.client, backend.core.keys.status_key("probe")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x", IfNoneMatch="*")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x", IfMatch=f'"{"0" * 32}"')
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


# -- instance ids -> keys --------------------------------------------------------------------


@given(st.text(min_size=1, max_size=512), st.text(min_size=1, max_size=512))
def test_escaping_is_reversible_injective_and_prefix_preserving(a: str, b: str) -> None:
    assert unescape_id(escape_id(a)) == a
    if a != b:
        assert escape_id(a) != escape_id(b)
    assert escape_id(a + b).startswith(escape_id(a))
    assert "/" not in escape_id(a)


@given(st.text(min_size=1, max_size=512), st.text(min_size=1, max_size=512))
def test_keys_fit_s3_and_never_collide(a: str, b: str) -> None:
    budget = MAX_KEY_BYTES - len("some/prefix/records/")
    key_a, key_b = instance_key(a, budget), instance_key(b, budget)
    assert len(key_a.encode("utf-8")) <= budget
    assert (key_a == key_b) == (a == b)


def test_long_ids_are_hashed_but_still_listed_by_prefix(backend: S3Backend) -> None:
    long_ids = ["🙂" * 400 + "a", "🙂" * 400 + "b", "🙂" * 512]
    for number, instance_id in enumerate(long_ids):
        backend.create(new(instance_id, custom=str(number).encode()))
    assert all("%~" in record_key(backend, i) for i in long_ids)
    page = backend.query(InstanceQuery(prefix="🙂" * 400))
    assert sorted(r.instance_id for r in page.items) == sorted(long_ids)
    page = backend.query(InstanceQuery(prefix="🙂" * 400 + "a"))
    assert [r.instance_id for r in page.items] == [long_ids[0]]


# -- what a custom-status update costs --------------------------------------------------------


def test_custom_status_update_is_one_put_and_no_read(backend: S3Backend) -> None:
    etag = backend.create(new("cost"))
    requests = Requests(backend)
    result = backend.write_custom_status("cost", status(b'{"p": 1}'), etag=etag, now=T0)
    assert requests.sent == [("PUT", "status")]
    requests.clear()
    backend.write_custom_status("cost", status(b'{"p": 2}'), etag=None, now=T0)
    assert requests.sent == [("PUT", "status")]  # the etag this backend last saw stands in
    assert result.written


def test_unchanged_status_with_current_etag_costs_one_head(backend: S3Backend) -> None:
    """Even at this backend's own latest etag: only S3 knows whether another process wrote."""
    backend.create(new("same"))
    etag = backend.write_custom_status("same", status(b"[1]"), etag=None, now=T0).etag
    requests = Requests(backend)
    again = backend.write_custom_status("same", status(b"[1]"), etag=etag, now=T0)
    assert (again.etag, again.written) == (etag, False)
    assert requests.sent == [("HEAD", "status")]


def test_stale_etag_with_unchanged_bytes_fails_across_backends(
    moto_server: RunningEmulator,
) -> None:
    """A writes P (etag E1), B writes Q, A writes P again with E1: a conflict, Q stays."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        a.create(new("x", custom=None))
        e1 = a.write_custom_status("x", status(b'"P"'), etag=None, now=T0).etag
        b.write_custom_status("x", status(b'"Q"'), etag=None, now=T0)
        with pytest.raises(ConcurrencyError):
            a.write_custom_status("x", status(b'"P"'), etag=e1, now=T0)
        got = b.read("x")
        assert got is not None
        assert got.custom_status == status(b'"Q"')


def test_unchanged_status_without_etag_costs_one_head(backend: S3Backend) -> None:
    backend.create(new("same"))
    etag = backend.write_custom_status("same", status(b"[1]"), etag=None, now=T0).etag
    requests = Requests(backend)
    again = backend.write_custom_status("same", status(b"[1]"), etag=None, now=T0)
    assert (again.etag, again.written) == (etag, False)
    assert requests.methods == ["HEAD"]


def test_unchanged_skip_works_across_backends(moto_server: RunningEmulator) -> None:
    """Another process cannot know its etag is current: one HEAD confirms, no PUT."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as one,
        make_backend(moto_server.endpoint, prefix=prefix) as two,
    ):
        etag = one.create(new("shared", custom=b'"x"'))
        two._ready()  # the bucket check of first use, outside the count
        requests = Requests(two)
        result = two.write_custom_status("shared", status(b'"x"'), etag=etag, now=T0)
        assert (result.etag, result.written, requests.methods) == (etag, False, ["HEAD"])


def test_update_without_any_known_etag_costs_one_get_and_one_put(
    moto_server: RunningEmulator,
) -> None:
    """A cold last-write-wins update: the status object's ETag, then a conditional PUT."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as one,
        make_backend(moto_server.endpoint, prefix=prefix) as two,
    ):
        one.create(new("cold"))
        two._ready()
        requests = Requests(two)
        two.write_custom_status("cold", status(b"7"), etag=None, now=T0)
        assert requests.sent == [("GET", "status"), ("PUT", "status")]
        got = one.read("cold")
        assert got is not None
        assert got.custom_status == status(b"7")


def test_status_update_leaves_the_record_object_alone(backend: S3Backend) -> None:
    etag = backend.create(new("alone", data=b'{"input": "' + b"i" * 5000 + b'"}'))
    key = record_key(backend, "alone")
    before = backend.client.head_object(Bucket=BUCKET, Key=key)
    time.sleep(1.1)  # LastModified has one-second resolution
    for n in range(3):
        etag = backend.write_custom_status(
            "alone", status(str(n).encode()), etag=etag, now=T0 + timedelta(seconds=n)
        ).etag
    after = backend.client.head_object(Bucket=BUCKET, Key=key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    got = backend.read("alone", fetch_payloads=True)
    assert got is not None
    assert got.input == Payload(b'{"input": "' + b"i" * 5000 + b'"}', "json")
    assert got.custom_status == status(b"2")
    assert got.custom_status_updated_at == T0 + timedelta(seconds=2)


def test_other_operation_costs(backend: S3Backend) -> None:
    backend._ready()
    requests = Requests(backend)
    etag = backend.create(new("ops"))
    assert requests.methods == ["PUT", "PUT"]
    requests.clear()
    assert backend.read("ops") is not None
    assert requests.methods == ["GET", "GET"]
    requests.clear()
    backend.write_runtime_status(
        "ops", RuntimeStatus.COMPLETED, output=None, set_output=False, etag=etag, now=T0
    )
    assert requests.methods == ["GET", "GET", "PUT", "PUT"]
    requests.clear()
    assert backend.delete("ops") is True
    assert requests.methods == ["HEAD", "DELETE", "DELETE"]


# -- concurrency ---------------------------------------------------------------------------------


def _race(writers: list[Any]) -> list[BaseException | None]:
    barrier = threading.Barrier(len(writers))
    outcomes: list[BaseException | None] = [None] * len(writers)

    def run(index: int) -> None:
        barrier.wait()
        try:
            writers[index]()
        except BaseException as exc:  # collected and asserted on by the caller
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("rounds", [range(10)])
def test_two_backends_racing_on_one_etag_one_wins(
    moto_server: RunningEmulator, rounds: range
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as one,
        make_backend(moto_server.endpoint, prefix=prefix) as two,
    ):
        etag = one.create(new("race"))
        for n in rounds:
            outcomes = _race(
                [
                    lambda n=n, e=etag: one.write_custom_status(
                        "race", status(f'"one-{n}"'.encode()), etag=e, now=T0
                    ),
                    lambda n=n, e=etag: two.write_custom_status(
                        "race", status(f'"two-{n}"'.encode()), etag=e, now=T0
                    ),
                ]
            )
            assert sum(o is None for o in outcomes) == 1, outcomes
            assert all(isinstance(o, ConcurrencyError) for o in outcomes if o is not None)
            current = one.read("race")
            assert current is not None
            winner = "one" if outcomes[0] is None else "two"
            assert current.custom_status == status(f'"{winner}-{n}"'.encode())
            etag = current.etag


def test_runtime_and_custom_writers_racing_on_one_etag(backend: S3Backend) -> None:
    for n in range(8):
        instance_id = f"mixed-{n}"
        etag = backend.create(new(instance_id))
        outcomes = _race(
            [
                lambda i=instance_id, e=etag: backend.write_custom_status(
                    i, status(b'"custom"'), etag=e, now=T0
                ),
                lambda i=instance_id, e=etag: backend.write_runtime_status(
                    i, RuntimeStatus.COMPLETED, output=None, set_output=False, etag=e, now=T0
                ),
            ]
        )
        assert sum(o is None for o in outcomes) == 1, outcomes
        got = backend.read(instance_id)
        assert got is not None
        if outcomes[0] is None:
            assert (got.custom_status, got.runtime_status) == (
                status(b'"custom"'),
                RuntimeStatus.RUNNING,
            )
        else:
            assert (got.custom_status, got.runtime_status) == (
                status(b'"start"'),
                RuntimeStatus.COMPLETED,
            )


def test_create_is_atomic_for_readers_and_writers(moto_server: RunningEmulator) -> None:
    """Between create's two PUTs, another store reads the new run whole (its first custom
    status included) and its compare-and-swap there is not undone by create's second PUT."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        seen: list[Any] = []

        def between(request: HttpRequest) -> None:
            if request.method == "PUT" and "/status/" in request.url and not seen:
                got = b.read("c")
                assert got is not None
                seen.append(got.custom_status)
                seen.append(b.write_custom_status("c", status(b'"B"'), etag=got.etag, now=T0))

        a._ready()
        intercept(a, between)
        a.create(new("c", custom=b'"first"'))
        assert seen[0] == status(b'"first"')  # the reader saw the new run whole
        assert seen[1].written  # B's compare-and-swap succeeded ...
        got = b.read("c")
        assert got is not None
        assert got.custom_status == status(b'"B"')  # ... and create did not undo it


def test_a_first_custom_status_longer_than_the_ranged_read_is_fetched_whole(
    moto_server: RunningEmulator,
) -> None:
    """Before the seal, the record's first custom status counts; reads and listings that
    fetched only the record's first bytes fetch the rest when it does not fit."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    big = b'"' + b"s" * 20_000 + b'"'
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        seen: list[Any] = []

        def between(request: HttpRequest) -> None:
            if request.method == "PUT" and "/status/" in request.url and not seen:
                got = b.read("big")
                assert got is not None
                seen.append(got.custom_status)
                seen.append(b.query(InstanceQuery()).items[0].custom_status)

        a._ready()
        intercept(a, between)
        a.create(new("big", custom=big))
        assert seen == [status(big), status(big)]


def test_restart_is_atomic_for_readers(moto_server: RunningEmulator) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        etag = a.create(new("r", custom=b'"old"'))
        a.write_runtime_status(
            "r", RuntimeStatus.COMPLETED, output=status(b"1"), set_output=True, etag=etag, now=T0
        )
        seen: list[Any] = []

        def between(request: HttpRequest) -> None:
            if request.method == "PUT" and "/status/" in request.url and not seen:
                seen.append(b.read("r", fetch_payloads=True))

        intercept(a, between)
        a.create(new("r", custom=b'"new"'), restart_if_terminal=True)
        mid = seen[0]
        assert (mid.runtime_status, mid.custom_status, mid.output) == (
            RuntimeStatus.RUNNING,
            status(b'"new"'),
            None,
        )


def test_restart_survives_its_status_object_vanishing_before_the_seal(
    backend: S3Backend,
) -> None:
    """The status object is deleted between the restart's GET and its seal: the seal looks
    again and writes the new run's, instead of an internal 404 escaping create()."""
    etag = backend.create(new("v", custom=b'"old"'))
    backend.write_runtime_status(
        "v", RuntimeStatus.FAILED, output=None, set_output=False, etag=etag, now=T0
    )
    deleted: list[bool] = []

    def vanish(request: HttpRequest) -> None:
        if request.method == "PUT" and "/status/" in request.url and not deleted:
            deleted.append(True)
            backend.client.delete_object(Bucket=BUCKET, Key=backend.core.keys.status_key("v"))

    intercept(backend, vanish)
    fresh = backend.create(new("v", custom=b'"new"'), restart_if_terminal=True)
    got = backend.read("v")
    assert got is not None
    assert deleted
    assert (got.etag, got.custom_status) == (fresh, status(b'"new"'))


def test_runtime_change_invalidates_the_custom_status_etag(backend: S3Backend) -> None:
    etag = backend.create(new("stale"))
    backend.write_runtime_status(
        "stale", RuntimeStatus.SUSPENDED, output=None, set_output=False, etag=etag, now=T0
    )
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("stale", status(b'"new"'), etag=etag, now=T0)
    # Same bytes at a stale etag: a HEAD finds the etag stale; nothing is written.
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("stale", status(b'"start"'), etag=etag, now=T0)
    current = backend.read("stale")
    assert current is not None
    assert current.etag != etag
    assert current.runtime_status is RuntimeStatus.SUSPENDED


def test_a_read_during_a_runtime_change_never_gives_one_etag_two_contents(
    moto_server: RunningEmulator,
) -> None:
    """B reads while A's runtime change is between its status commit and its record PUT.

    Before the record carried VER, B got A's new etag with the old runtime status, and once
    A's record PUT landed the same etag stood for COMPLETED (watch missed the change). Now B
    waits, then settles the record at the committed VER; A's record PUT then fails its
    ``If-Match`` (a conflict for A, whose change is lost), so the etag B saw keeps its content.
    """
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        etag = a.create(new("torn"))
        seen: list[Any] = []

        def between(request: HttpRequest) -> None:
            if request.method == "PUT" and "/records/" in request.url and not seen:
                seen.append(b.read("torn"))

        intercept(a, between)
        outcome: BaseException | None = None
        try:
            a.write_runtime_status(
                "torn",
                RuntimeStatus.COMPLETED,
                output=None,
                set_output=False,
                etag=etag,
                now=T0,
            )
        except ConcurrencyError as exc:
            outcome = exc
        mid, after = seen[0], b.read("torn")
        assert mid is not None
        assert after is not None
        if after.etag == mid.etag:
            assert after.runtime_status is mid.runtime_status  # one etag, one content
        assert (mid.runtime_status, after.runtime_status) == (
            RuntimeStatus.RUNNING,
            RuntimeStatus.RUNNING if outcome else RuntimeStatus.COMPLETED,
        )
        assert mid.etag != etag  # the commit landed: the caller's etag is stale either way


def test_a_runtime_writer_that_died_after_its_commit_loses_its_change(
    backend: S3Backend,
) -> None:
    """The status object renewed by hand (the commit), the record never rewritten: the
    committed VER wins, with the content the record holds, stable from the first read on."""
    etag = backend.create(new("dead"))
    backend.write_custom_status("dead", status(b'"mine"'), etag=etag, now=T0)
    current = run_plan(backend, backend.core._load_status("dead"))
    assert current is not None
    run_plan(
        backend,
        backend.core._put_status_object(
            "dead",
            replace(S3Etag.parse("dead", etag), ver="deadbeef00"),
            current.payload,
            current.updated_at,
            replacing=current,
        ),
    )
    first = backend.read("dead", fetch_payloads=True)
    second = backend.read("dead", fetch_payloads=True)
    assert first is not None
    assert second is not None
    assert first == second
    assert first.etag.split(".")[1] == "deadbeef00"
    assert (first.runtime_status, first.custom_status) == (RuntimeStatus.RUNNING, status(b'"mine"'))
    assert first.input == Payload(b'{"x": 1}', "json")
    backend.write_runtime_status(
        "dead", RuntimeStatus.COMPLETED, output=None, set_output=False, etag=first.etag, now=T0
    )
    done = backend.read("dead")
    assert done is not None
    assert done.runtime_status is RuntimeStatus.COMPLETED


def test_records_written_before_ver_read_as_consistent(backend: S3Backend) -> None:
    """A record without VER in its header (written by an older version) is never torn."""
    backend.create(new("old"))
    key = record_key(backend, "old")
    body = backend.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    line, _, rest = body.partition(b"\n")
    header = json.loads(line)
    del header["ver"]
    backend.client.put_object(
        Bucket=BUCKET, Key=key, Body=json.dumps(header).encode() + b"\n" + rest
    )
    got = backend.read("old")
    assert got is not None
    assert got.custom_status == status(b'"start"')
    backend.write_runtime_status(
        "old", RuntimeStatus.COMPLETED, output=None, set_output=False, etag=got.etag, now=T0
    )
    done = backend.read("old")
    assert done is not None
    assert done.runtime_status is RuntimeStatus.COMPLETED


def test_a_read_during_a_delete_sees_the_instance_whole_or_not_at_all(
    moto_server: RunningEmulator,
) -> None:
    """Between the delete's two DELETEs, readers and listings see no instance (before, the
    record without its status object read as the run's first state with etag RUN.0.0.0)."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    with (
        make_backend(moto_server.endpoint, prefix=prefix) as a,
        make_backend(moto_server.endpoint, prefix=prefix) as b,
    ):
        a.create(new("purged"))
        a.write_custom_status("purged", status(b'"later"'), etag=None, now=T0)
        seen: list[Any] = []

        def between(request: HttpRequest) -> None:
            if request.method == "DELETE" and not seen:
                seen.append("first")
            elif request.method == "DELETE" and len(seen) == 1:
                seen.append(b.read("purged"))
                seen.append(b.query(InstanceQuery()).items)

        intercept(a, between)
        assert a.delete("purged")
        assert seen[1:] == [None, []]
        assert b.read("purged") is None


def test_create_races_insert_once(moto_server: RunningEmulator) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    backends = [make_backend(moto_server.endpoint, prefix=prefix) for _ in range(4)]
    try:
        outcomes = _race([lambda b=b: b.create(new("once")) for b in backends])
        assert sum(o is None for o in outcomes) == 1, outcomes
        assert all(isinstance(o, InstanceExists) for o in outcomes if o is not None)
    finally:
        for created in backends:
            created.close()


def test_foreign_etag_is_a_conflict(backend: S3Backend) -> None:
    backend.create(new("foreign"))
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("foreign", status(b"1"), etag="not-ours", now=T0)


def test_deleted_instance_with_known_etag(backend: S3Backend) -> None:
    etag = backend.create(new("gone"))
    backend.delete("gone")
    with pytest.raises(InstanceNotFound):
        backend.write_custom_status("gone", status(b"1"), etag=etag, now=T0)
    with pytest.raises(InstanceNotFound):
        backend.write_custom_status("gone", status(b"1"), etag=None, now=T0)
    assert backend.read("gone") is None


# -- payloads ---------------------------------------------------------------------------------


def test_several_mib_custom_status_round_trips(backend: S3Backend) -> None:
    store = StateStore(backend, serializer="json", max_custom_status_bytes=8 * 1024 * 1024)
    value = {"blob": "z" * (6 * 1024 * 1024), "n": 0}
    store.create_instance("huge", name="wf", input={"small": True})
    etag = store.set_custom_status("huge", value)
    assert store.get_custom_status("huge") == value
    assert store.set_custom_status("huge", value, etag=etag) == etag  # skipped, no upload
    got = store.get_instance("huge", fetch_payloads=True)
    assert got is not None
    assert got.input == {"small": True}


def test_large_input_and_output_survive_runtime_changes(backend: S3Backend) -> None:
    big_in, big_out = b'"' + b"i" * 300_000 + b'"', b'"' + b"o" * 200_000 + b'"'
    etag = backend.create(new("io", data=big_in))
    etag = backend.write_runtime_status(
        "io",
        RuntimeStatus.COMPLETED,
        output=Payload(big_out, "json"),
        set_output=True,
        etag=etag,
        now=T0,
    )
    backend.write_custom_status("io", status(b"1"), etag=etag, now=T0)
    got = backend.read("io", fetch_payloads=True)
    assert got is not None
    assert (got.input, got.output) == (Payload(big_in, "json"), Payload(big_out, "json"))
    lean = backend.read("io")
    assert lean is not None
    assert (lean.input, lean.output, lean.runtime_status) == (None, None, RuntimeStatus.COMPLETED)


def test_encodings_are_kept(backend: S3Backend) -> None:
    backend.create(new("enc", custom=None))
    backend.write_custom_status("enc", Payload(b"\x00\x01", "msgpack", "zlib"), etag=None, now=T0)
    got = backend.read("enc")
    assert got is not None
    assert got.custom_status == Payload(b"\x00\x01", "msgpack", "zlib")


def test_corrupt_record_object_is_reported(backend: S3Backend) -> None:
    backend.create(new("broken"))
    backend.client.put_object(Bucket=BUCKET, Key=record_key(backend, "broken"), Body=b"garbage")
    with pytest.raises(CorruptRecord) as raised:
        backend.read("broken")
    assert raised.value.instance_id == "broken"


def test_restart_replaces_the_old_runs_status_object(backend: S3Backend) -> None:
    etag = backend.create(new("again", custom=b'"old"'))
    backend.write_runtime_status(
        "again", RuntimeStatus.FAILED, output=None, set_output=False, etag=etag, now=T0
    )
    fresh = backend.create(new("again", custom=None), restart_if_terminal=True)
    got = backend.read("again")
    assert got is not None
    assert (got.etag, got.custom_status, got.custom_status_updated_at) == (fresh, None, None)
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("again", status(b"1"), etag=etag, now=T0)


# -- query paging --------------------------------------------------------------------------------


def test_query_pages_across_list_calls(backend: S3Backend) -> None:
    for n in range(25):
        backend.create(new(f"q{n:02d}"))
    found: list[str] = []
    query = InstanceQuery(page_size=10)
    while True:
        page = backend.query(query)
        found.extend(r.instance_id for r in page.items)
        if page.continuation is None:
            break
        query = InstanceQuery(page_size=10, continuation=page.continuation)
    assert found == [f"q{n:02d}" for n in range(25)]


def test_exact_last_page_has_no_continuation(backend: S3Backend) -> None:
    for n in range(4):
        backend.create(new(f"x{n}"))
    page = backend.query(InstanceQuery(page_size=4))
    assert len(page.items) == 4
    assert page.continuation is None


def test_foreign_continuation_token_is_refused(backend: S3Backend) -> None:
    with pytest.raises(InvalidContinuationToken):
        backend.query(InstanceQuery(continuation="bm90LWEtdG9rZW4"))


def test_continuation_token_of_another_query_is_refused(backend: S3Backend) -> None:
    for n in range(3):
        backend.create(new(f"a-{n}"))
        backend.create(new(f"b-{n}"))
    page = backend.query(InstanceQuery(prefix="a-", page_size=1))
    assert page.continuation is not None
    with pytest.raises(InvalidContinuationToken):
        backend.query(InstanceQuery(prefix="b-", page_size=1, continuation=page.continuation))
    forged = encode_token({"after": 17})
    with pytest.raises(InvalidContinuationToken):
        backend.query(InstanceQuery(continuation=forged))


# -- corrupt and misplaced records -----------------------------------------------------------


def test_record_copied_under_another_ids_key_is_refused(backend: S3Backend) -> None:
    """An object moved to another id's key must never read or list as that other id."""
    backend.create(new("a", custom=b'"mine"'))
    backend.create(new("b"))
    source = f"{BUCKET}/{record_key(backend, 'a')}"
    backend.client.copy_object(Bucket=BUCKET, Key=record_key(backend, "b"), CopySource=source)
    with pytest.raises(CorruptRecord) as raised:
        backend.read("b")
    assert raised.value.instance_id == "b"
    listed = [r.instance_id for r in backend.query(InstanceQuery()).items]
    assert listed == ["a"]


def test_one_corrupt_record_does_not_break_listing_and_is_purged(
    backend: S3Backend, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("p-1", "p-2", "p-3"):
        backend.create(new(name))
    backend.client.put_object(Bucket=BUCKET, Key=record_key(backend, "p-2"), Body=b"garbage")
    listed = [r.instance_id for r in backend.query(InstanceQuery(page_size=1000)).items]
    assert listed == ["p-1", "p-3"]
    # durastate's warning names the instance, not the object key (botocore's own DEBUG
    # lines, captured when an earlier test turned DEBUG on, name keys: not ours to judge)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("durastate"))
    assert "'p-2'" in ours
    assert record_key(backend, "p-2") not in ours
    assert backend.purge_by(InstanceQuery(prefix="p-")) == 3
    assert backend.query(InstanceQuery()).items == []
    with pytest.raises(botocore.exceptions.ClientError):
        backend.client.head_object(Bucket=BUCKET, Key=record_key(backend, "p-2"))


# -- configuration and failures ----------------------------------------------------------------


def test_from_url_and_registry(moto_server: RunningEmulator) -> None:
    opened = open_backend(f"s3://{BUCKET}/a/b/", endpoint_url=moto_server.endpoint, **CREDS)
    assert isinstance(opened, S3Backend)
    assert (opened.bucket, opened.prefix) == (BUCKET, "a/b")
    assert "testing" not in repr(opened)
    opened.close()
    with pytest.raises(ConfigurationError):
        S3Backend.from_url(f"s3://{BUCKET}", endpoint_url=moto_server.endpoint, colour="red")
    with pytest.raises(ConfigurationError):
        S3Backend.from_url("s3:///prefix-only", endpoint_url=moto_server.endpoint)
    with pytest.raises(ConfigurationError) as raised:
        S3Backend.from_url("s3://AKIA:hunter2@bucket/p")
    assert "hunter2" not in str(raised.value)
    from_query = S3Backend.from_url(
        f"s3://{BUCKET}/q?create_bucket=false&region=eu-west-1",
        endpoint_url=moto_server.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert from_query._options.create_bucket is False
    assert from_query.client.meta.region_name == "eu-west-1"
    from_query.close()


def test_bucket_is_created_on_first_use(moto_server: RunningEmulator) -> None:
    bucket = f"ds-{uuid.uuid4().hex[:16]}"
    with make_backend(moto_server.endpoint, bucket=bucket) as created:
        created.create(new("first"))
        assert created.client.head_bucket(Bucket=bucket)


def test_missing_bucket_without_create_is_a_configuration_error(
    moto_server: RunningEmulator,
) -> None:
    bucket = f"ds-{uuid.uuid4().hex[:16]}"
    with (
        make_backend(moto_server.endpoint, bucket=bucket, create_bucket=False) as created,
        pytest.raises(ConfigurationError, match="NoSuchBucket"),
    ):
        created.read("x")


def test_unreachable_endpoint_is_backend_unavailable_in_bounded_time() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with (
        make_backend(dead, max_attempts=2, connect_timeout=0.5, read_timeout=0.5) as created,
        pytest.raises(BackendUnavailable) as raised,
    ):
        created.write_custom_status("x", status(b"1"), etag=None, now=T0)
    assert time.monotonic() - started < 10
    assert "testing" not in str(raised.value)
