"""azure-tables:// against a real Azurite process (never skipped: if Azurite fails, we fail)."""

from __future__ import annotations

import gzip
import logging
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durastate import open_store
from durastate.backends.azure_tables import (
    HASH_MARK,
    KEY_LIMIT,
    AzureTablesBackend,
    escape_key,
    partition_key,
    prefix_range,
    unescape_key,
    utf16_length,
    write_log,
)
from durastate.backends.azure_tables.options import parse_options
from durastate.core.backend import Backend
from durastate.core.compression import DEFAULT_MAX_INFLATED_BYTES
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.core.store import StateStore
from durastate.core.tokens import encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
    PayloadTooLarge,
)
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.emulators import (
    AZURITE_KEY,
    RunningEmulator,
    azurite_connection_string,
    free_port,
)
from durastate.transport import HttpDriver, HttpRequest, HttpResponse, OutcomeUnknown
from durastate.transport.policy import TransportOptions

T0 = datetime(2030, 1, 1, tzinfo=UTC)
CONTAINER = "durastate-test-payloads"


def _table_name() -> str:
    return "T" + uuid.uuid4().hex[:20]


class RequestCounter:
    """Counts every request: the SDK's (its ``raw_request_hook``, which creates the table)
    and the lean transport's (`RecordingDriver`)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: PipelineRequest[Any]) -> None:
        self.record(request.http_request.method, request.http_request.url)

    def record(self, method: str, url: str) -> None:
        with self._lock:
            self.requests.append((method, url))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


class RecordingDriver(HttpDriver):
    """The sync driver, telling ``hook`` about each request before it is sent (a write
    whose answer was lost is sent again by the backend's plan, so each send is one try)."""

    def __init__(self, options: TransportOptions, hook: Any) -> None:
        super().__init__(options)
        self.hook = hook

    def send(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.hook.record(request.method, request.url)
        return super().send(request, *args, **kwargs)


def _open(
    emulator: RunningEmulator, table: str | None = None, **options: Any
) -> AzureTablesBackend:
    options.setdefault("container", CONTAINER)
    return _from_url(
        f"azure-tables://{table or _table_name()}",
        connection_string=azurite_connection_string(emulator),
        **options,
    )


def _from_url(url: str, **options: Any) -> AzureTablesBackend:
    """``from_url``; with ``raw_request_hook``, the lean requests go to that hook too."""
    parsed = parse_options(url, options)
    hook = options.get("raw_request_hook")
    if hook is None:
        return AzureTablesBackend(parsed)
    return AzureTablesBackend(parsed, driver=RecordingDriver(parsed.transport(), hook))


def _sdk_table(emulator: RunningEmulator, backend: AzureTablesBackend) -> TableClient:
    """The official SDK's client of the backend's table (the test's oracle)."""
    return TableClient.from_connection_string(
        azurite_connection_string(emulator), backend.table_name
    )


def _drop(emulator: RunningEmulator, backend: AzureTablesBackend) -> None:
    backend.close()
    service = TableServiceClient.from_connection_string(azurite_connection_string(emulator))
    with service:
        service.delete_table(backend.table_name)


def _blob_names(emulator: RunningEmulator, table: str) -> list[str]:
    service = BlobServiceClient.from_connection_string(azurite_connection_string(emulator))
    with service:
        container = service.get_container_client(CONTAINER)
        if not container.exists():
            return []
        return [blob.name for blob in container.list_blobs(name_starts_with=f"{table}/")]


def _big(size: int) -> Payload:
    return Payload(b'"' + b"q" * size + b'"', "json")


def _new(instance_id: str, custom: bytes | None = None, data: bytes | None = None) -> NewInstance:
    return NewInstance(
        instance_id=instance_id,
        name="wf",
        runtime_status=RuntimeStatus.RUNNING,
        created_at=T0,
        input=Payload(data, "json") if data is not None else None,
        custom_status=Payload(custom, "json") if custom is not None else None,
    )


@pytest.fixture
def backend(azurite: RunningEmulator) -> Iterator[AzureTablesBackend]:
    backend = _open(azurite)
    yield backend
    _drop(azurite, backend)


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
def counted(azurite: RunningEmulator, counter: RequestCounter) -> Iterator[AzureTablesBackend]:
    backend = _open(azurite, raw_request_hook=counter)
    yield backend
    _drop(azurite, backend)


# ---------------------------------------------------------------------------------------
# (1) the whole conformance suite
# ---------------------------------------------------------------------------------------


class TestAzureTablesConformance(BackendConformance):
    @pytest.fixture
    def backend(self, azurite: RunningEmulator) -> Iterator[AzureTablesBackend]:
        backend = _open(azurite)
        yield backend
        _drop(azurite, backend)

    @pytest.fixture
    def open_other_backend(
        self, azurite: RunningEmulator, backend: AzureTablesBackend
    ) -> Iterator[Callable[[], Backend]]:
        yield from closing_opener(lambda: _open(azurite, backend.table_name))

    @pytest.fixture
    def corrupt_record(
        self, azurite: RunningEmulator, backend: AzureTablesBackend
    ) -> Callable[[str], None]:
        def corrupt(instance_id: str) -> None:  # a runtime status no durastate writes
            service = TableServiceClient.from_connection_string(azurite_connection_string(azurite))
            with service:
                key = partition_key(instance_id)
                service.get_table_client(backend.table_name).update_entity(
                    {"PartitionKey": key, "RowKey": "", "RuntimeStatus": "bad"}
                )

        return corrupt


# ---------------------------------------------------------------------------------------
# (3) key escaping
# ---------------------------------------------------------------------------------------

FORBIDDEN = "/\\#?" + "".join(map(chr, range(0x20))) + "".join(map(chr, range(0x7F, 0xA0)))
ids = st.text(min_size=1, max_size=512)


def test_escape_removes_every_forbidden_character() -> None:
    escaped = escape_key("a/b\\c#d?e^f%g" + FORBIDDEN + "\ufffe\uffff")
    assert not set(escaped) & set(FORBIDDEN)
    assert "\ufffe" not in escaped
    assert "\uffff" not in escaped
    assert unescape_key(escaped) == "a/b\\c#d?e^f%g" + FORBIDDEN + "\ufffe\uffff"


def test_escape_character_itself_is_escaped() -> None:
    assert escape_key("^2F") != escape_key("/")
    assert unescape_key(escape_key("^2F")) == "^2F"
    assert escape_key("plain-id_1.2") == "plain-id_1.2"  # readable keys for plain ids


def test_unescape_refuses_what_escape_never_makes() -> None:
    for bad in ("^", "^Z1", "^2", "^u12", "a^~b"):
        with pytest.raises(ValueError, match="escape"):
            unescape_key(bad)


@given(ids)
def test_escape_round_trips(instance_id: str) -> None:
    assert unescape_key(escape_key(instance_id)) == instance_id


@given(ids, ids)
def test_two_ids_never_share_a_key(first: str, second: str) -> None:
    if first != second:
        assert escape_key(first) != escape_key(second)
        assert partition_key(first) != partition_key(second)


@given(ids, st.text(max_size=40))
def test_escape_preserves_prefixes_both_ways(instance_id: str, other: str) -> None:
    for prefix in (instance_id[: len(instance_id) // 2], other):
        assert escape_key(instance_id).startswith(escape_key(prefix)) == instance_id.startswith(
            prefix
        )


@given(ids)
def test_every_key_fits_and_contains_no_forbidden_character(instance_id: str) -> None:
    key = partition_key(instance_id)
    assert utf16_length(key) <= KEY_LIMIT
    assert not set(key) & set(FORBIDDEN)
    key.encode("utf-8")  # valid unicode: no lone surrogates


@given(ids, st.integers(min_value=1, max_value=512))
def test_prefix_range_holds_every_id_with_that_prefix(instance_id: str, cut: int) -> None:
    prefix = instance_id[:cut]
    bounds = prefix_range(prefix)
    assert bounds is not None
    low, high = bounds
    key = partition_key(instance_id)
    for order in (str, lambda s: s.encode("utf-16-be", "surrogatepass")):
        assert order(low) <= order(key) < order(high)


def test_long_ids_get_hashed_keys_that_fit() -> None:
    long_id = "\U0001f642" * 512  # 1024 UTF-16 units before any escaping
    key = partition_key(long_id)
    assert HASH_MARK in key
    assert utf16_length(key) <= KEY_LIMIT
    assert partition_key(long_id[:-1] + "x") != key
    assert partition_key("a" * 512) == "a" * 512


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(ids, min_size=1, max_size=6, unique=True))
def test_ids_round_trip_through_azurite(backend: AzureTablesBackend, batch: list[str]) -> None:
    for instance_id in batch:
        backend.delete(instance_id)
    for number, instance_id in enumerate(batch):
        backend.create(_new(instance_id, custom=str(number).encode()))
    for number, instance_id in enumerate(batch):
        record = backend.read(instance_id)
        assert record is not None
        assert record.instance_id == instance_id
        assert record.custom_status == Payload(str(number).encode(), "json")
    for instance_id in batch:
        assert backend.delete(instance_id)


def test_prefix_query_with_awkward_and_long_ids(backend: AzureTablesBackend) -> None:
    family = ["p/x", "p/x/1", "p/x?2", "p/y", "p/" + "🙂" * 400, "p/" + "🙂" * 400 + "tail", "q"]
    for instance_id in family:
        backend.create(_new(instance_id))
    for prefix in ("p/", "p/x", "p/x/", "p/" + "🙂" * 300, "p/" + "🙂" * 400 + "t", "r"):
        found = _all_ids(backend, InstanceQuery(prefix=prefix, page_size=2))
        assert sorted(found) == sorted(i for i in family if i.startswith(prefix)), prefix


def _all_ids(backend: AzureTablesBackend, query: InstanceQuery) -> list[str]:
    found: list[str] = []
    while True:
        page = backend.query(query)
        found.extend(record.instance_id for record in page.items)
        if page.continuation is None:
            return found
        query = InstanceQuery(
            runtime_status=query.runtime_status, created_from=query.created_from,
            created_to=query.created_to, prefix=query.prefix, page_size=query.page_size,
            continuation=page.continuation,
        )  # fmt: skip


def test_foreign_and_forged_continuation_tokens_are_refused(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    """Azure would silently start again at page 1 for a token it cannot use; the backend
    refuses any token this table and filter did not produce."""
    for number in range(3):
        backend.create(_new(f"tok-{number}"))
    page = backend.query(InstanceQuery(page_size=1))
    assert page.continuation is not None
    other = _open(azurite)
    try:
        other.create(_new("elsewhere"))
        other.create(_new("elsewhere-2"))
        foreign = other.query(InstanceQuery(page_size=1)).continuation
    finally:
        _drop(azurite, other)
    assert foreign is not None
    other_filter = backend.query(InstanceQuery(prefix="tok-", page_size=1)).continuation
    assert other_filter is not None
    forged = [
        "",  # not "from the start"
        "not a token",
        encode_token({"after": "tok-0"}),  # another backend's keyset token
        encode_token({"PartitionKey": "tok-1", "RowKey": ""}),  # the SDK's own dict
        encode_token({"azure-tables": "0" * 24, "pk": "tok-1", "rk": ""}),
        page.continuation[:-3],
        foreign,
        other_filter,
    ]
    for token in forged:
        with pytest.raises(InvalidContinuationToken):
            backend.query(InstanceQuery(page_size=1, continuation=token))
    rest = backend.query(InstanceQuery(page_size=5, continuation=page.continuation))
    assert [r.instance_id for r in rest.items] == ["tok-1", "tok-2"]


# ---------------------------------------------------------------------------------------
# (5) what a custom-status update sends
# ---------------------------------------------------------------------------------------


def test_custom_status_update_is_exactly_one_request(
    counted: AzureTablesBackend, counter: RequestCounter
) -> None:
    etag = counted.create(_new("one", custom=b'"a"'))
    counter.reset()
    result = counted.write_custom_status("one", Payload(b'"b"', "json"), etag=etag, now=T0)
    assert result.written
    assert len(counter.requests) == 1
    assert counter.requests[0][0] == "PATCH"  # MERGE, no GET first
    counter.reset()
    counted.write_custom_status("one", Payload(b'"c"', "json"), etag=None, now=T0)
    assert [method for method, _ in counter.requests] == ["PATCH"]


def test_fresh_backend_updates_without_reading(
    azurite: RunningEmulator, backend: AzureTablesBackend, counter: RequestCounter
) -> None:
    etag = backend.create(_new("cold", custom=b"1"))
    other = _open(azurite, table=backend.table_name, raw_request_hook=counter, create_table=False)
    try:
        other.write_custom_status("cold", Payload(b"2", "json"), etag=etag, now=T0)
        assert [method for method, _ in counter.requests] == ["PATCH"]
    finally:
        other.close()
    record = backend.read("cold")
    assert record is not None
    assert record.custom_status == Payload(b"2", "json")


def test_repeated_bytes_at_known_etag_are_checked_not_written(
    counted: AzureTablesBackend, counter: RequestCounter
) -> None:
    """The same bytes at the etag they were stored at: one GET of the etag, no write."""
    etag = counted.create(_new("same"))
    first = counted.write_custom_status("same", Payload(b"[1]", "json"), etag=etag, now=T0)
    counter.reset()
    again = counted.write_custom_status("same", Payload(b"[1]", "json"), etag=first.etag, now=T0)
    assert again.etag == first.etag
    assert not again.written
    assert [method for method, _ in counter.requests] == ["GET"]
    assert not AzureTablesBackend.capabilities.skips_unchanged


def _write_status_elsewhere(connection_string: str, table: str, instance_id: str) -> None:
    """Runs in a child process: another writer, with its own backend object."""
    other = AzureTablesBackend.from_url(
        f"azure-tables://{table}", connection_string=connection_string, create_table=False
    )
    with other:
        other.write_custom_status(instance_id, Payload(b'"Q"', "json"), etag=None, now=T0)


def test_stale_etag_with_unchanged_bytes_is_refused_across_processes(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    """A writes P at E1; another process writes Q; A writes P again at E1: a conflict.

    A's memory of "P is stored at E1" is true but no longer current, and only the service
    knows that: skipping the write would report success while the record holds Q.
    """
    etag = backend.create(_new("cas", custom=b'"start"'))
    first = backend.write_custom_status("cas", Payload(b'"P"', "json"), etag=etag, now=T0)
    child = multiprocessing.get_context("spawn").Process(
        target=_write_status_elsewhere,
        args=(azurite_connection_string(azurite), backend.table_name, "cas"),
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("cas", Payload(b'"P"', "json"), etag=first.etag, now=T0)
    record = backend.read("cas")
    assert record is not None
    assert record.custom_status == Payload(b'"Q"', "json")
    # and with the etag it has now read, the same bytes are written again
    result = backend.write_custom_status("cas", Payload(b'"P"', "json"), etag=record.etag, now=T0)
    assert result.written


def test_merge_leaves_input_and_output_alone(backend: AzureTablesBackend) -> None:
    etag = backend.create(_new("m", custom=b"0", data=b'{"in":1}'))
    etag = backend.write_runtime_status(
        "m", RuntimeStatus.RUNNING, output=Payload(b'{"out":2}', "json"), set_output=True,
        etag=etag, now=T0,
    )  # fmt: skip
    backend.write_custom_status("m", Payload(b'{"p":50}', "json"), etag=etag, now=T0)
    record = backend.read("m", fetch_payloads=True)
    assert record is not None
    assert record.input == Payload(b'{"in":1}', "json")
    assert record.output == Payload(b'{"out":2}', "json")
    assert record.custom_status == Payload(b'{"p":50}', "json")


def test_null_and_absent_custom_status(backend: AzureTablesBackend) -> None:
    backend.create(_new("absent"))
    record = backend.read("absent")
    assert record is not None
    assert record.custom_status is None
    assert record.custom_status_updated_at is None
    backend.write_custom_status("absent", Payload(b"null", "json"), etag=None, now=T0)
    record = backend.read("absent")
    assert record is not None
    assert record.custom_status == Payload(b"null", "json")
    backend.write_custom_status("absent", Payload(b"", "json"), etag=None, now=T0)
    record = backend.read("absent")
    assert record is not None
    assert record.custom_status == Payload(b"", "json")


def test_binary_and_compressed_payloads_round_trip(backend: AzureTablesBackend) -> None:
    backend.create(_new("bin"))
    for payload in (
        Payload(b"\x00\xff\x81", "msgpack"),
        Payload(b"x\x9c\x03\x00", "json", "zlib"),
        Payload(b"\xff\xfe", "json"),  # not UTF-8: stored as binary, still exact
        Payload('"é漢字🙂"'.encode(), "json"),
    ):
        backend.write_custom_status("bin", payload, etag=None, now=T0)
        record = backend.read("bin")
        assert record is not None
        assert record.custom_status == payload


def test_missing_instance_errors(backend: AzureTablesBackend) -> None:
    with pytest.raises(InstanceNotFound):
        backend.write_custom_status("ghost", Payload(b"1", "json"), etag=None, now=T0)
    with pytest.raises(InstanceNotFound):
        backend.write_runtime_status(
            "ghost", RuntimeStatus.COMPLETED, output=None, set_output=False, etag=None, now=T0
        )
    assert backend.read("ghost") is None
    assert backend.delete("ghost") is False


def test_restart_replaces_terminal_run_only(backend: AzureTablesBackend) -> None:
    etag = backend.create(_new("r", custom=b'"old"', data=b"1"))
    with pytest.raises(InstanceExists):
        backend.create(_new("r"), restart_if_terminal=True)
    backend.write_runtime_status(
        "r", RuntimeStatus.COMPLETED, output=Payload(b'"done"', "json"), set_output=True,
        etag=etag, now=T0,
    )  # fmt: skip
    backend.create(_new("r", data=b"2"), restart_if_terminal=True)
    record = backend.read("r", fetch_payloads=True)
    assert record is not None
    assert record.custom_status is None
    assert record.output is None
    assert record.input == Payload(b"2", "json")


# ---------------------------------------------------------------------------------------
# (4) two writers racing on one etag
# ---------------------------------------------------------------------------------------


def test_two_backends_cas_on_one_etag(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    etag = backend.create(_new("race"))
    writers = [_open(azurite, table=backend.table_name, create_table=False) for _ in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def write(writer: AzureTablesBackend, value: bytes) -> None:
        barrier.wait()
        try:
            writer.write_custom_status("race", Payload(value, "json"), etag=etag, now=T0)
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [
        threading.Thread(target=write, args=(writer, str(n).encode()))
        for n, writer in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert sorted(outcomes) == ["lost", "won"]


def test_racing_restarts_one_wins(azurite: RunningEmulator, backend: AzureTablesBackend) -> None:
    etag = backend.create(_new("again"))
    backend.write_runtime_status(
        "again", RuntimeStatus.FAILED, output=None, set_output=False, etag=etag, now=T0
    )
    writers = [_open(azurite, table=backend.table_name, create_table=False) for _ in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(writers))

    def restart(writer: AzureTablesBackend) -> None:
        barrier.wait()
        try:
            writer.create(_new("again"), restart_if_terminal=True)
            outcomes.append("won")
        except InstanceExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=restart, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    assert outcomes.count("won") == 1
    assert outcomes.count("lost") == 3


# ---------------------------------------------------------------------------------------
# (2) offload to blobs
# ---------------------------------------------------------------------------------------


def test_several_mib_status_round_trips_and_purge_removes_blob(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    store = StateStore(backend, serializer="json", max_custom_status_bytes=8 * 1024 * 1024)
    store.create_instance("big", name="wf", input={"small": True})
    value = {"rows": [f"row {n} " + "z" * 40 for n in range(80_000)]}  # ~4 MiB of JSON
    etag = store.set_custom_status("big", value)
    assert store.get_custom_status("big") == value
    assert len(_blob_names(azurite, backend.table_name)) == 1
    store.set_custom_status("big", {"small": "again"}, etag=etag)  # back inline
    assert _blob_names(azurite, backend.table_name) == []  # the old blob went with it
    store.set_custom_status("big", value)
    assert store.purge("big")
    assert _blob_names(azurite, backend.table_name) == []


def test_overwrite_deletes_previous_blob(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    backend.create(_new("ow"))
    big = [Payload(b'"' + bytes([65 + n]) * 200_000 + b'"', "json") for n in range(3)]
    for payload in big:
        backend.write_custom_status("ow", payload, etag=None, now=T0)
    names = _blob_names(azurite, backend.table_name)
    assert len(names) == 1
    record = backend.read("ow")
    assert record is not None
    assert record.custom_status == big[-1]


def test_no_orphan_blob_after_failed_cas(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    etag = backend.create(_new("cas"))
    backend.write_custom_status("cas", Payload(b"1", "json"), etag=etag, now=T0)
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("cas", _big(300_000), etag=etag, now=T0)
    assert _blob_names(azurite, backend.table_name) == []
    with pytest.raises(InstanceNotFound):
        backend.write_custom_status("nobody", _big(300_000), etag=None, now=T0)
    assert _blob_names(azurite, backend.table_name) == []


def _replace_blob(emulator: RunningEmulator, container: str, name: str, body: bytes) -> None:
    service = BlobServiceClient.from_connection_string(azurite_connection_string(emulator))
    with service:
        service.get_container_client(container).upload_blob(name, body, overwrite=True)


def _status_blob(emulator: RunningEmulator, backend: AzureTablesBackend, instance_id: str) -> str:
    with _sdk_table(emulator, backend) as table:
        row = table.get_entity(partition_key(instance_id), "")
    return str(row["CustomStatusBlob"])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda body: body[: len(body) // 2], "truncated"),
        (lambda body: b"not gzip at all", "invalid"),
        (lambda body: gzip.compress(b"\0" * (DEFAULT_MAX_INFLATED_BYTES + 1)), "past the limit"),
    ],
    ids=["truncated", "not-gzip", "bomb"],
)
def test_damaged_blob_is_corrupt_record_for_that_instance_alone(
    azurite: RunningEmulator, backend: AzureTablesBackend, damage: Any, reason: str
) -> None:
    """A truncated blob, one that is not gzip, or a decompression bomb (65 KB that would
    inflate past 64 MiB) raise ``CorruptRecord`` naming the instance, never EOFError or
    zlib.error, and never allocate what the bomb asks for; the record can be rewritten."""
    backend.create(_new("hurt"))
    backend.create(_new("fine"))
    backend.write_custom_status("hurt", _big(200_000), etag=None, now=T0)
    backend.write_custom_status("fine", _big(200_000), etag=None, now=T0)
    name = _status_blob(azurite, backend, "hurt")
    service = BlobServiceClient.from_connection_string(azurite_connection_string(azurite))
    with service:
        body = service.get_container_client(CONTAINER).download_blob(name).readall()
    _replace_blob(azurite, CONTAINER, name, damage(body))
    with pytest.raises(CorruptRecord, match=reason) as raised:
        backend.read("hurt")
    assert raised.value.instance_id == "hurt"
    fine = backend.read("fine")
    assert fine is not None
    assert fine.custom_status == _big(200_000)
    backend.write_custom_status("hurt", Payload(b'"healed"', "json"), etag=None, now=T0)
    healed = backend.read("hurt")
    assert healed is not None
    assert healed.custom_status == Payload(b'"healed"', "json")


def test_corrupt_records_spare_listing_and_purge(
    azurite: RunningEmulator, backend: AzureTablesBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A row with an unknown runtime status and one whose blob is truncated are left out of
    listings with a warning naming them; a row with undecodable status bytes is listed and
    raises on access; the others list normally, and purge_by deletes all of them."""
    store = StateStore(backend, max_custom_status_bytes=1_000_000)
    ids = [f"c-{n}" for n in range(6)]
    for number, instance_id in enumerate(ids):
        store.create_instance(instance_id, name="wf", custom_status=number)
    with _sdk_table(azurite, backend) as table:
        table.update_entity(
            {"PartitionKey": partition_key("c-1"), "RowKey": "", "RuntimeStatus": "zombie"},
            mode=UpdateMode.MERGE,
        )
    store.set_custom_status("c-3", "x" * 200_000)
    _replace_blob(azurite, CONTAINER, _status_blob(azurite, backend, "c-3"), b"\x1f\x8b\x08")
    backend.write_custom_status("c-4", Payload(b"\xff{not json", "json"), etag=None, now=T0)
    for fetch in (False, True):
        with caplog.at_level(logging.WARNING, logger="durastate"):
            listing = store.iter_instances(page_size=2, fetch_payloads=fetch)
            listed = {metadata.instance_id: metadata for metadata in listing}
        assert set(listed) == {"c-0", "c-2", "c-4", "c-5"}
        assert [listed[i].custom_status for i in ("c-0", "c-2", "c-5")] == [0, 2, 5]
        with pytest.raises(CorruptRecord):
            _ = listed["c-4"].custom_status
        assert "'c-1'" in caplog.text
        assert "'c-3'" in caplog.text
    assert store.purge_by(prefix="c-") == len(ids)
    assert list(store.iter_instances()) == []
    assert _blob_names(azurite, backend.table_name) == []


def test_deleted_offload_container_is_named_not_instance_not_found(
    azurite: RunningEmulator,
) -> None:
    """Reading a payload from a deleted container says so (the instance exists); the next
    offloaded write makes the container again."""
    container = "c-" + uuid.uuid4().hex[:20]
    backend = _open(azurite, container=container)
    try:
        backend.create(_new("gone"))
        backend.write_custom_status("gone", _big(200_000), etag=None, now=T0)
        service = BlobServiceClient.from_connection_string(azurite_connection_string(azurite))
        with service:
            service.delete_container(container)
        with pytest.raises(ConfigurationError, match=container):
            backend.read("gone")
        etag = backend.write_custom_status("gone", _big(300_000), etag=None, now=T0).etag
        record = backend.read("gone")
        assert record is not None
        assert (record.etag, record.custom_status) == (etag, _big(300_000))
    finally:
        _drop(azurite, backend)


def test_orphans_from_other_writers_are_swept_on_purge(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    backend.create(_new("sweep"))
    big = Payload(b'"' + b"s" * 100_000 + b'"', "json")
    other = _open(azurite, table=backend.table_name, create_table=False)
    try:
        other.write_custom_status("sweep", big, etag=None, now=T0)
    finally:
        other.close()
    backend.write_custom_status("sweep", Payload(b"1", "json"), etag=None, now=T0)  # blind
    assert len(_blob_names(azurite, backend.table_name)) == 1  # orphan, unknown to `backend`
    assert backend.delete("sweep")
    assert _blob_names(azurite, backend.table_name) == []


def test_threshold_option_and_offload_off(azurite: RunningEmulator) -> None:
    low = _open(azurite, offload_threshold=100)
    off = _open(azurite, offload=False)
    try:
        low.create(_new("t", custom=b'"' + b"x" * 200 + b'"'))
        assert len(_blob_names(azurite, low.table_name)) == 1
        record = low.read("t")
        assert record is not None
        assert record.custom_status is not None
        assert len(record.custom_status.data) == 202
        assert not off.capabilities.offload
        assert AzureTablesBackend.capabilities.offload
        off.create(_new("t"))
        with pytest.raises(PayloadTooLarge):
            off.write_custom_status("t", _big(70_000), etag=None, now=T0)
    finally:
        _drop(azurite, low)
        _drop(azurite, off)


def test_large_input_and_output_offload_and_restart_cleans(
    azurite: RunningEmulator, backend: AzureTablesBackend
) -> None:
    big_in = Payload(b"\x01" * 100_000, "msgpack")
    etag = backend.create(_new("io", data=None))
    etag = backend.write_runtime_status(
        "io", RuntimeStatus.COMPLETED, output=big_in, set_output=True, etag=etag, now=T0
    )
    record = backend.read("io", fetch_payloads=True)
    assert record is not None
    assert record.output == big_in
    assert len(_blob_names(azurite, backend.table_name)) == 1
    backend.create(_new("io"), restart_if_terminal=True)
    assert _blob_names(azurite, backend.table_name) == []


# ---------------------------------------------------------------------------------------
# configuration, secrets, availability
# ---------------------------------------------------------------------------------------


def test_url_forms_and_env(azurite: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_AZURE_CONNECTION_STRING", azurite_connection_string(azurite))
    name = _table_name()
    backend = AzureTablesBackend.from_url(f"azure-tables:///?table={name}&create_table=true")
    try:
        backend.create(_new("x"))
        assert backend.table_name == name
        assert AZURITE_KEY not in repr(backend)
    finally:
        _drop(azurite, backend)
    with pytest.raises(ConfigurationError):
        AzureTablesBackend.from_url("azure-tables://")
    with pytest.raises(ConfigurationError):
        AzureTablesBackend.from_url(f"azure-tables://{name}", bogus=1)


def test_nothing_configured_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user with no account set up learns the environment variable and the options,
    not "invalid account settings"."""
    monkeypatch.delenv("DURASTATE_AZURE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        open_store("azure-tables://Instances")
    message = str(raised.value)
    for named in ("DURASTATE_AZURE_CONNECTION_STRING", "connection_string=", "account_url="):
        assert named in message
    assert "invalid" not in message


@pytest.mark.parametrize(
    "url",
    [
        "azure-tables://Tab?container=Bad_Name",
        "azure-tables://Tab?container=ab",
        "azure-tables://Tab?container=a--b",
        "azure-tables://" + "T" * 64,
        "azure-tables://1abc",
    ],
)
def test_names_azure_would_refuse_are_refused_before_any_request(
    azurite: RunningEmulator, url: str, counter: RequestCounter
) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        open_store(
            url, connection_string=azurite_connection_string(azurite), raw_request_hook=counter
        )
    assert counter.requests == []


def test_missing_table_without_create(azurite: RunningEmulator) -> None:
    backend = _open(azurite, create_table=False)
    try:
        with pytest.raises(ConfigurationError, match="does not exist"):
            backend.create(_new("x"))
    finally:
        backend.close()


def test_unreachable_service_is_backend_unavailable_without_secrets() -> None:
    secret = AZURITE_KEY
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={secret};TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    backend = AzureTablesBackend.from_url(
        "azure-tables://Nowhere", connection_string=connection_string, retry_total=1,
        retry_backoff_factor=0.01, connection_timeout=0.5, operation_timeout=3,
    )  # fmt: skip
    started = datetime.now(UTC)
    with pytest.raises(BackendUnavailable) as raised:
        backend.write_custom_status("inst-7", Payload(b"1", "json"), etag="W/x", now=T0)
    assert datetime.now(UTC) - started < timedelta(seconds=10)
    message = str(raised.value)
    assert "inst-7" in message
    assert secret not in message
    assert "AccountKey" not in message
    assert raised.value.__cause__ is None
    assert secret not in repr(backend)
    backend.close()


def test_transport_skips_proxy_environment(
    azurite: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxy variables pointing nowhere change nothing: neither the lean transport nor the
    SDK client that creates the table reads them (unless ``use_env_proxies=True``)."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("NO_PROXY", "")
    backend = _open(azurite, operation_timeout=5)
    try:
        etag = backend.create(_new("proxy"))
        backend.write_custom_status("proxy", _big(100_000), etag=etag, now=T0)  # a blob too
        record = backend.read("proxy")
        assert record is not None
        assert record.custom_status == _big(100_000)
    finally:
        monkeypatch.undo()  # the test's own SDK client (which drops the table) reads them
        _drop(azurite, backend)


def test_open_store_by_url(azurite: RunningEmulator) -> None:

    name = _table_name()
    store = open_store(
        f"azure-tables://{name}", connection_string=azurite_connection_string(azurite)
    )
    try:
        store.create_instance("via-url", name="wf", custom_status={"stage": "start"})
        assert store.get_custom_status("via-url") == {"stage": "start"}
        assert AZURITE_KEY not in repr(store)
    finally:
        store.purge("via-url")
        assert isinstance(store.backend, AzureTablesBackend)
        _drop(azurite, store.backend)


# ---------------------------------------------------------------------------------------
# (6) broken connections on writes azure-core will not retry (POST, PATCH)
# ---------------------------------------------------------------------------------------


class FaultOnce:
    """A request hook: the proxy faults requests of ``method`` until ``times`` went by.

    The hook runs before each attempt is sent, so the proxy is switched off when the
    attempt after the last faulted one is about to leave.
    """

    def __init__(self, proxy: Any, method: str, times: int = 1) -> None:
        self.proxy = proxy
        self.method = method
        self.times = times
        self.seen = 0
        self.counter = RequestCounter()
        self.before_probe: Any = None

    def __call__(self, request: PipelineRequest[Any]) -> None:
        self.record(request.http_request.method, request.http_request.url)

    def record(self, method: str, url: str) -> None:
        self.counter.record(method, url)
        if method == self.method:
            self.seen += 1
            if self.seen > self.times:
                self.proxy.configure(rate=0.0)
        if method == "GET" and self.before_probe is not None:
            hook, self.before_probe = self.before_probe, None
            hook()

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.counter.requests]


@pytest.fixture
def proxy(azurite: RunningEmulator) -> Iterator[Any]:
    from tests.reliability.faultproxy import FaultProxy

    with FaultProxy(azurite.endpoints["table"], "azure") as running:
        yield running


def _through(proxy: Any, table: str, hook: FaultOnce, **options: Any) -> AzureTablesBackend:
    from durastate.testing.emulators import AZURITE_ACCOUNT

    connection_string = (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"TableEndpoint={proxy.url};"
    )
    options.setdefault("create_table", False)
    return _from_url(
        f"azure-tables://{table}", connection_string=connection_string, offload=False,
        raw_request_hook=hook, retry_backoff_factor=0.01, **options,
    )  # fmt: skip


def _faulty(proxy: Any, method: str, fault: str, times: int = 1) -> FaultOnce:
    proxy.configure(rate=1.0, faults={fault: 1.0})
    proxy.methods = frozenset({method})
    return FaultOnce(proxy, method, times)


@pytest.mark.parametrize("with_etag", [True, False])
def test_merge_whose_answer_was_lost_is_found_by_its_write_id(
    backend: AzureTablesBackend, proxy: Any, with_etag: bool
) -> None:
    etag = backend.create(_new("lost", custom=b"0"))
    hook = _faulty(proxy, "PATCH", "drop_after")
    flaky = _through(proxy, backend.table_name, hook)
    try:
        result = flaky.write_custom_status(
            "lost", Payload(b"1", "json"), etag=etag if with_etag else None, now=T0
        )
    finally:
        flaky.close()
    assert hook.methods == ["PATCH", "GET"]  # applied once; the read found our WriteId
    record = backend.read("lost")
    assert record is not None
    assert record.custom_status == Payload(b"1", "json")
    assert result.etag == record.etag


def test_merge_answered_500_after_it_landed_is_not_applied_twice(
    backend: AzureTablesBackend, proxy: Any
) -> None:
    """The service applied the MERGE but answered 500 ("the operation may have succeeded").
    azure-core resends a PATCH on 500; the resend would meet 412 (its own write) and report
    a conflict, so ``update()`` would apply its function twice. The backend reads first."""
    store = StateStore(backend)
    store.create_instance("five", name="wf", custom_status={"n": 0})
    hook = _faulty(proxy, "PATCH", "500_after")
    flaky = StateStore(_through(proxy, backend.table_name, hook))
    with flaky:
        assert flaky.update("five", lambda value: {"n": value["n"] + 1}) == {"n": 1}
    assert hook.methods == ["GET", "PATCH", "GET"]  # read, write (500), read back: ours
    assert store.get_custom_status("five") == {"n": 1}


def test_merge_dropped_before_the_server_is_sent_again(
    backend: AzureTablesBackend, proxy: Any
) -> None:
    etag = backend.create(_new("dropped", custom=b"0"))
    hook = _faulty(proxy, "PATCH", "drop")
    flaky = _through(proxy, backend.table_name, hook)
    try:
        result = flaky.write_runtime_status(
            "dropped", RuntimeStatus.COMPLETED, output=Payload(b"7", "json"), set_output=True,
            etag=etag, now=T0,
        )  # fmt: skip
    finally:
        flaky.close()
    assert hook.methods == ["PATCH", "GET", "PATCH"]  # row still at our etag: resend
    record = backend.read("dropped", fetch_payloads=True)
    assert record is not None
    assert record.runtime_status is RuntimeStatus.COMPLETED
    assert record.output == Payload(b"7", "json")
    assert result == record.etag


def _write_ids(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    """Fix the next write tokens (in call order), so a test knows their history columns."""
    queue = list(ids)
    monkeypatch.setattr(write_log, "new_write_id", lambda: queue.pop(0))


def _race(
    backend: AzureTablesBackend, proxy: Any, fault: str, instance_id: str, *, cas: bool = False
) -> tuple[FaultOnce, AzureTablesBackend, str]:
    """Our next PATCH meets ``fault``; before we read the row back, ``backend`` (another
    writer) writes ``"other"``, without an etag or, with ``cas``, at the etag ours was sent
    with. Returns the hook, our backend and that etag."""
    etag = backend.create(_new(instance_id, custom=b"0"))
    hook = _faulty(proxy, "PATCH", fault)
    hook.before_probe = lambda: backend.write_custom_status(
        instance_id, Payload(b'"other"', "json"), etag=etag if cas else None, now=T0
    )
    return hook, _through(proxy, backend.table_name, hook), etag


def _status_of(backend: AzureTablesBackend, instance_id: str) -> Payload | None:
    record = backend.read(instance_id)
    assert record is not None
    return record.custom_status


@pytest.mark.parametrize(
    ("cas", "other_id"),
    [(False, "c" + "0" * 15), (True, "b" + "1" * 15)],
    ids=["history-column-unused", "etag-taken-and-column-hidden"],
)
def test_merge_after_a_broken_connection_and_another_writer_is_stale(
    backend: AzureTablesBackend,
    proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
    cas: bool,
    other_id: str,
) -> None:
    """Our write never arrived and another writer's did. Surely not ours, so a plain
    conflict (``update()`` may run its function again): our history column was never used,
    or the other write replaced the very etag ours was sent with (two writes cannot both
    replace one etag), even when its token went to our history column."""
    hook, flaky, etag = _race(backend, proxy, "drop", "raced", cas=cas)
    _write_ids(monkeypatch, "b" + "0" * 15, other_id)  # ours, then the other writer's
    with flaky, pytest.raises(ConcurrencyError):
        flaky.write_custom_status("raced", Payload(b'"mine"', "json"), etag=etag, now=T0)
    assert hook.methods == ["PATCH", "GET"]
    assert _status_of(backend, "raced") == Payload(b'"other"', "json")


def test_lost_answer_then_another_writer_is_recognised_as_landed(
    backend: AzureTablesBackend, proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our write landed, its answer was lost, another writer wrote: still ours (found in
    the write log), so success, with an etag no later compare-and-swap accepts."""
    hook, flaky, etag = _race(backend, proxy, "drop_after", "landed")
    _write_ids(monkeypatch, "b" + "0" * 15, "c" + "0" * 15, "d" + "0" * 15)
    with flaky:
        result = flaky.write_custom_status("landed", Payload(b"1", "json"), etag=etag, now=T0)
        assert hook.methods == ["PATCH", "GET"]  # never sent twice
        with pytest.raises(ConcurrencyError):
            flaky.write_custom_status("landed", Payload(b"3", "json"), etag=result.etag, now=T0)
    assert _status_of(backend, "landed") == Payload(b'"other"', "json")


def test_lost_answer_hidden_by_another_writer_is_reported_unknown(
    backend: AzureTablesBackend, proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other writer's token went to our history column: nobody can tell whether ours
    landed, so ``BackendUnavailable`` says so, and nothing is sent again."""
    hook, flaky, etag = _race(backend, proxy, "drop_after", "hidden")
    _write_ids(monkeypatch, "b" + "0" * 15, "b" + "1" * 15)  # same history column
    with flaky, pytest.raises(OutcomeUnknown, match="outcome of the write is unknown"):
        flaky.write_custom_status("hidden", Payload(b"1", "json"), etag=etag, now=T0)
    assert hook.methods == ["PATCH", "GET"]
    assert _status_of(backend, "hidden") == Payload(b'"other"', "json")


def test_merge_that_keeps_failing_gives_up_honestly(
    backend: AzureTablesBackend, proxy: Any
) -> None:
    etag = backend.create(_new("down", custom=b"0"))
    hook = _faulty(proxy, "PATCH", "drop", times=100)
    flaky = _through(proxy, backend.table_name, hook, retry_total=2)
    try:
        with pytest.raises(BackendUnavailable) as raised:
            flaky.write_custom_status("down", Payload(b"1", "json"), etag=etag, now=T0)
    finally:
        flaky.close()
    assert hook.methods == ["PATCH", "GET", "PATCH", "GET", "PATCH"]
    message = str(raised.value)
    assert "3 failed requests" in message
    assert "retry_total=2" in message
    assert "may or may not have been applied" in message
    assert "'down'" in message
    record = backend.read("down")
    assert record is not None
    assert record.etag == etag


def test_create_whose_answer_was_lost_is_our_own(backend: AzureTablesBackend, proxy: Any) -> None:
    assert backend.read("mine") is None  # creates the table
    hook = _faulty(proxy, "POST", "drop_after")
    flaky = _through(proxy, backend.table_name, hook)
    try:
        etag = flaky.create(_new("mine", custom=b'"c"'))
    finally:
        flaky.close()
    assert hook.methods == ["POST", "GET"]
    record = backend.read("mine")
    assert record is not None
    assert record.etag == etag
    with pytest.raises(InstanceExists):  # but a second create is refused
        backend.create(_new("mine"))


def test_create_whose_answer_was_lost_then_updated_is_still_ours(
    backend: AzureTablesBackend, proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our insert landed, its answer was lost, another writer updated the new instance
    before we looked: still our create (the write log), never ``InstanceExists``."""
    assert backend.read("taken") is None  # creates the table
    _write_ids(monkeypatch, "a" + "0" * 15, "e" + "0" * 15)  # our insert, their update
    hook = _faulty(proxy, "POST", "drop_after")
    hook.before_probe = lambda: backend.write_custom_status(
        "taken", Payload(b'"theirs"', "json"), etag=None, now=T0
    )
    with _through(proxy, backend.table_name, hook) as flaky:
        etag = flaky.create(_new("taken", custom=b'"ours"'))
    assert hook.methods == ["POST", "GET"]
    record = backend.read("taken")
    assert record is not None
    assert record.custom_status == Payload(b'"theirs"', "json")
    assert etag != record.etag  # ours is not the latest write: its etag is stale


def test_restart_whose_answer_was_lost_is_our_own(backend: AzureTablesBackend, proxy: Any) -> None:
    backend.create(_new("again", custom=b'"old"'))
    backend.write_runtime_status(
        "again", RuntimeStatus.FAILED, output=None, set_output=False, etag=None, now=T0
    )
    hook = _faulty(proxy, "PUT", "drop_after")  # the replace lands, its answer is lost
    flaky = _through(proxy, backend.table_name, hook)
    try:
        etag = flaky.create(_new("again", custom=b'"new"'), restart_if_terminal=True)
    finally:
        flaky.close()
    # insert (409), read, replace (lost), insert (409), read: our write token, ours
    assert hook.methods == ["POST", "GET", "PUT", "POST", "GET"]
    record = backend.read("again")
    assert record is not None
    assert record.etag == etag
    assert record.custom_status == Payload(b'"new"', "json")
    assert record.runtime_status is RuntimeStatus.RUNNING


def test_table_creation_is_sent_again_after_a_broken_connection(
    azurite: RunningEmulator, proxy: Any
) -> None:
    table = _table_name()
    hook = _faulty(proxy, "POST", "drop_after")  # the table is created, the answer lost
    flaky = _through(proxy, table, hook, create_table=True)
    try:
        flaky.create(_new("first"))
    finally:
        flaky.close()
    # the SDK creates the table (answer lost), again (409); the lean transport the entity
    assert hook.methods == ["POST", "POST", "POST"]
    direct = _open(azurite, table=table, create_table=False)
    try:
        assert direct.read("first") is not None
    finally:
        _drop(azurite, direct)


def test_account_url_with_account_key_works(azurite: RunningEmulator) -> None:
    """The second way to connect: an account URL plus a credential, no connection string."""
    table = _table_name()
    store = open_store(
        f"azure-tables://{table}",
        account_url=azurite.endpoints["table"],
        account_key=AZURITE_KEY,
        account_name="devstoreaccount1",
    )
    etag = store.create_instance("by-url", name="wf", input={"via": "account_url"})
    store.set_custom_status("by-url", {"percent": 7}, etag=etag)
    got = store.get_instance("by-url", fetch_payloads=True)
    assert got is not None
    assert (got.custom_status, got.input) == ({"percent": 7}, {"via": "account_url"})
    assert AZURITE_KEY not in repr(store.backend)
    store.close()
