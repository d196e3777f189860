"""The conformance suite every backend (built-in or plugin) must pass.

Use it from a test module::

    import pytest
    from durastate.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            backend = MyBackend(...)        # a fresh, empty namespace for each test
            yield backend
            backend.close()

Tests are gated by the backend's declared ``Capabilities``, never by its name.

Two more fixtures have defaults a backend's test module may override:

- ``open_other_backend``: a callable that opens another, independent backend object on the
  same namespace as ``backend``, as a second process would (the cross-writer checks use
  it). The default calls the module's ``backend`` fixture function again with the same
  arguments, which is right when that function opens a fixed place (a ``tmp_path`` file
  or directory); override it when ``backend`` makes a fresh random namespace (a new table
  or bucket prefix). For a backend that is not ``cross_process`` (memory://), the default
  is the ``backend`` object itself: its namespace lives in that object.
- ``corrupt_record``: a callable that damages the stored record of one instance the way a
  disk fault or a foreign writer would. The default stores undecodable custom-status bytes;
  override it to damage the record itself (SQLite: a runtime status that does not exist).
"""

from __future__ import annotations

import base64
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from durastate.core.backend import Backend
from durastate.core.ids import MAX_NAME_LENGTH
from durastate.core.records import InstanceQuery, Payload, RuntimeStatus
from durastate.core.retention import RetentionFrom
from durastate.core.store import StateStore
from durastate.core.tokens import encode_token
from durastate.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    InstanceExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidInstanceId,
    PayloadTooLarge,
    SerializationError,
)
from durastate.testing.async_conformance import AsyncAndWatchConformance
from durastate.testing.capability_checks import (
    LARGEST_CHECKED_PAYLOAD,
    assert_writes_are_heard,
    json_of_size,
    new_instance,
)
from durastate.testing.counting import CountingBackend

FALSY_AND_AWKWARD_VALUES: list[Any] = [
    0,
    "",
    False,
    [],
    {},
    None,
    0.0,
    -1,
    2**53,
    "0",
    [None],
    {"": None},
    {"a": [0, "", False]},
    "é漢字🙂\u0000\n",
    1.5e-300,
]

AWKWARD_IDS: list[str] = [
    "plain",
    "Plain",
    "a/b",
    "a\\b",
    "a#b",
    "a?b",
    "a%2Fb",
    "a%b",
    "%",
    "a b",
    " leading",
    "trailing ",
    "tab\tnew\nline",
    "ctl\u0001\u007f\u0085",
    "nul\u0000byte",
    "é",
    "e\u0301",
    "漢字",
    "🙂emoji",
    "..",
    ".",
    "'quote\"",
    "a" * 512,
    "🙂" * 512,
]


class ProgressModel(BaseModel):
    """A typed custom status, as a user would declare it."""

    percent: int
    stage: str
    eta_seconds: float | None = None


class FakeClock:
    """A clock the tests move by hand, in whole milliseconds, always UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


OpenOther = Callable[[], Backend]
CorruptHook = Callable[[str], None]

#: Tokens no backend makes: garbage, wrong JSON, other services' shapes, wrong types.
FORGED_TOKENS: list[Any] = [
    "",
    "!!!",
    "not a token",
    "x" * 10_000,
    base64.urlsafe_b64encode(b"\xff\xfe\x00garbage").decode(),
    base64.urlsafe_b64encode(b'{"after": "a"').decode(),  # truncated JSON
    encode_token([]),  # type: ignore[arg-type]  # JSON, but not an object
    encode_token({}),
    encode_token({"after": 5}),
    encode_token({"after": None}),
    encode_token({"after": ["a"]}),
    encode_token({"ContinuationToken": "1abcdefg"}),
    encode_token({"ExclusiveStartKey": {"instance_id": {"S": "x"}}}),
    encode_token({"page": 2, "offset": 100}),
    42,
    b"bytes",
]


def closing_opener(open_one: Callable[[], Backend]) -> Iterator[OpenOther]:
    """The body of an ``open_other_backend`` override: hands out ``open_one`` and closes
    every backend it opened when the test ends::

        @pytest.fixture
        def open_other_backend(self, backend):
            yield from closing_opener(lambda: MyBackend(backend.table_name))
    """
    opened: list[Backend] = []

    def open_other() -> Backend:
        other = open_one()
        opened.append(other)
        return other

    yield open_other
    for other in opened:
        other.close()


def _same_fixture_again(request: pytest.FixtureRequest, backend: Backend) -> OpenOther:
    """Call the test module's ``backend`` fixture function again with the same arguments.

    pytest has no public way to call a fixture function twice; this reads its fixture
    definitions, and says to override ``open_other_backend`` if that ever stops working.
    """
    try:
        definitions = request._fixturemanager.getfixturedefs("backend", request.node)
        function = (definitions or [])[-1].func
    except (AttributeError, IndexError, TypeError) as exc:  # pragma: no cover - pytest moved
        raise RuntimeError(
            "cannot call the `backend` fixture again on this pytest: override "
            "`open_other_backend` (see durastate.testing.conformance)"
        ) from exc
    function = getattr(function, "_get_wrapped_function", lambda: function)()
    function = inspect.unwrap(function)
    bound = function.__get__(request.instance) if request.instance is not None else function
    names = [name for name in inspect.signature(bound).parameters if name != "request"]
    kwargs = {name: request.getfixturevalue(name) for name in names}
    if "request" in inspect.signature(bound).parameters:
        kwargs["request"] = request
    opened: list[Iterator[Any]] = []

    def open_other() -> Backend:
        made = bound(**kwargs)
        if inspect.isgenerator(made):
            opened.append(made)
            made = next(made)
        if not isinstance(made, Backend) or made is backend:
            raise RuntimeError(
                "calling the `backend` fixture again did not open a second backend object: "
                "override `open_other_backend`"
            )
        return made

    request.addfinalizer(lambda: [next(gen, None) for gen in reversed(opened)])
    return open_other


def _every_payload_round_trips(store: StateStore, instance_id: str, size: int) -> None:
    """Input, output and custom status of one instance, each ``size`` bytes of JSON, are
    stored and read back."""
    value = json_of_size(size)
    store.create_instance(instance_id, name="wf", input=value, custom_status=value)
    store.set_runtime_status(instance_id, RuntimeStatus.COMPLETED, output=value)
    got = store.get_instance(instance_id, fetch_payloads=True)
    assert got is not None
    assert (got.input, got.output, got.custom_status) == (value, value, value)


class BackendConformance(AsyncAndWatchConformance):
    """Subclass this and provide a function-scoped ``backend`` fixture (fresh and empty).

    Optionally override ``open_other_backend`` and ``corrupt_record`` (see the module doc).
    The async store and watch checks come from ``AsyncAndWatchConformance``.
    """

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        raise NotImplementedError("provide a `backend` fixture yielding a fresh, empty backend")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def counting(self, backend: Backend) -> CountingBackend:
        return CountingBackend(backend)

    @pytest.fixture
    def store(self, counting: CountingBackend, clock: FakeClock) -> StateStore:
        return StateStore(counting, serializer="json", accept=["json", "msgpack"], clock=clock)

    @pytest.fixture
    def open_other_backend(self, backend: Backend, request: pytest.FixtureRequest) -> OpenOther:
        """Opens another backend object on ``backend``'s namespace (as another process)."""
        if not backend.capabilities.cross_process:
            return lambda: backend  # one process: the namespace is this object
        return _same_fixture_again(request, backend)

    @pytest.fixture
    def other_store(self, open_other_backend: OpenOther, clock: FakeClock) -> StateStore:
        """A second, independent store on the same namespace as ``store``."""
        return StateStore(
            open_other_backend(), serializer="json", accept=["json", "msgpack"], clock=clock
        )

    @pytest.fixture
    def corrupt_record(self, backend: Backend, clock: FakeClock) -> CorruptHook:
        """Damages the stored record of one instance (default: undecodable status bytes)."""

        def corrupt(instance_id: str) -> None:
            damaged = Payload(b"\xff\xfe{not json", "json")
            backend.write_custom_status(instance_id, damaged, etag=None, now=clock.now)

        return corrupt

    # -- create ----------------------------------------------------------------------------

    def test_create_is_insert_only(self, store: StateStore) -> None:
        store.create_instance("i1", name="wf", input={"n": 1}, custom_status="first")
        with pytest.raises(InstanceExists):
            store.create_instance("i1", name="other", input={"n": 2}, custom_status="second")
        got = store.get_instance("i1", fetch_payloads=True)
        assert got is not None
        assert (got.name, got.input, got.custom_status) == ("wf", {"n": 1}, "first")
        assert got.runtime_status is RuntimeStatus.PENDING

    def test_restart_needs_terminal_run_and_clears_old_status(
        self, store: StateStore, clock: FakeClock
    ) -> None:
        store.create_instance("r1", name="wf", input=1, custom_status={"step": 9})
        with pytest.raises(InstanceExists):
            store.create_instance("r1", name="wf", restart_if_terminal=True)
        store.set_runtime_status("r1", RuntimeStatus.COMPLETED, output="done")
        with pytest.raises(InstanceExists):
            store.create_instance("r1", name="wf")  # restart is explicit
        clock.advance(seconds=5)
        store.create_instance("r1", name="wf2", input=2, restart_if_terminal=True)
        got = store.get_instance("r1", fetch_payloads=True)
        assert got is not None
        assert got.name == "wf2"
        assert got.input == 2
        assert got.output is None
        assert got.custom_status is None
        assert not got.has_custom_status
        assert got.custom_status_updated_at is None
        assert got.runtime_status is RuntimeStatus.PENDING
        assert got.created_at == clock.now

    def test_missing_instance(self, store: StateStore) -> None:
        assert store.get_instance("nope") is None
        with pytest.raises(InstanceNotFound):
            store.set_custom_status("nope", 1)
        with pytest.raises(InstanceNotFound):
            store.set_runtime_status("nope", RuntimeStatus.RUNNING)
        with pytest.raises(InstanceNotFound):
            store.get_custom_status("nope")
        assert store.purge("nope") is False
        assert store.get_instance("nope") is None  # a failed update created nothing

    # -- custom status ---------------------------------------------------------------------

    @pytest.mark.parametrize("value", FALSY_AND_AWKWARD_VALUES, ids=repr)
    def test_every_value_round_trips_exactly(self, store: StateStore, value: Any) -> None:
        store.create_instance("v", name="wf", input=value, custom_status=value)
        got = store.get_instance("v", fetch_payloads=True)
        assert got is not None
        for read in (got.custom_status, got.input):
            assert read == value
            assert type(read) is type(value)
        store.set_custom_status("v", "other")
        store.set_custom_status("v", value)
        assert store.get_custom_status("v") == value
        assert type(store.get_custom_status("v")) is type(value)

    def test_null_status_is_stored_not_dropped(self, store: StateStore) -> None:
        store.create_instance("n", name="wf", custom_status={"x": 1})
        store.set_custom_status("n", None)
        got = store.get_instance("n")
        assert got is not None
        assert got.custom_status is None
        assert got.has_custom_status

    def test_unserializable_value_fails_before_any_io(
        self, store: StateStore, counting: CountingBackend
    ) -> None:
        store.create_instance("u", name="wf", custom_status="kept")
        counting.calls.clear()
        for bad in (object(), {1: "int key"}, float("nan"), 2**70):
            with pytest.raises(SerializationError):
                store.set_custom_status("u", bad)
        assert counting.total == 0
        assert store.get_custom_status("u") == "kept"

    def test_size_limit_checked_before_any_io(
        self, counting: CountingBackend, clock: FakeClock
    ) -> None:
        store = StateStore(counting, max_custom_status_bytes=1000, clock=clock)
        store.create_instance("big", name="wf", custom_status="kept")
        counting.calls.clear()
        with pytest.raises(PayloadTooLarge) as raised:
            store.set_custom_status("big", "x" * 1000)
        assert raised.value.limit == 1000
        assert raised.value.instance_id == "big"
        assert counting.total == 0
        assert store.get_custom_status("big") == "kept"
        store.set_custom_status("big", "x" * 990)  # 992 bytes of JSON: fits
        assert store.get_custom_status("big") == "x" * 990

    def test_large_status_round_trips_when_limit_raised(
        self, counting: CountingBackend, clock: FakeClock
    ) -> None:
        caps = counting.capabilities
        size = 150 * 1024
        if caps.max_payload_bytes is not None and not caps.offload:
            size = min(size, caps.max_payload_bytes - 64)
        store = StateStore(counting, max_custom_status_bytes=size + 64, clock=clock)
        store.create_instance("large", name="wf")
        value = {"blob": "y" * size}
        store.set_custom_status("large", value)
        assert store.get_custom_status("large") == value

    def test_update_writes_only_custom_status(self, store: StateStore, clock: FakeClock) -> None:
        store.create_instance("w", name="wf", input={"big": "input"})
        store.set_runtime_status("w", RuntimeStatus.RUNNING, output={"partial": True})
        clock.advance(milliseconds=1500)
        store.set_custom_status("w", {"percent": 42})
        got = store.get_instance("w", fetch_payloads=True)
        assert got is not None
        assert got.input == {"big": "input"}
        assert got.output == {"partial": True}
        assert got.runtime_status is RuntimeStatus.RUNNING
        assert got.custom_status == {"percent": 42}
        assert got.custom_status_updated_at == clock.now
        assert got.last_updated_at == clock.now

    def test_custom_status_is_readable_without_payloads(self, store: StateStore) -> None:
        store.create_instance("c", name="wf", input={"secret": "input"}, custom_status=[1, 2])
        got = store.get_instance("c")
        assert got is not None
        assert got.custom_status == [1, 2]
        assert got.input is None
        assert got.payloads_fetched is False

    def test_timestamps_are_utc_and_exact(self, store: StateStore, clock: FakeClock) -> None:
        created = clock.now
        store.create_instance("t", name="wf")
        clock.advance(milliseconds=250)
        store.set_custom_status("t", 1)
        status_time = clock.now
        clock.advance(seconds=3)
        store.set_runtime_status("t", RuntimeStatus.RUNNING)
        got = store.get_instance("t")
        assert got is not None
        assert got.created_at == created
        assert got.custom_status_updated_at == status_time
        assert got.last_updated_at == clock.now
        for moment in (got.created_at, got.custom_status_updated_at, got.last_updated_at):
            assert moment is not None
            assert moment.utcoffset() == timedelta(0)

    def test_typed_read(self, store: StateStore) -> None:
        store.create_instance("m", name="wf")
        store.set_custom_status("m", ProgressModel(percent=42, stage="resize", eta_seconds=1.5))
        got = store.get_instance("m")
        assert got is not None
        assert got.custom_status == {"percent": 42, "stage": "resize", "eta_seconds": 1.5}
        assert got.read_custom_status_as(ProgressModel) == ProgressModel(
            percent=42, stage="resize", eta_seconds=1.5
        )
        assert got.read_custom_status_as(dict[str, float | str]) == got.custom_status

    # -- concurrency -----------------------------------------------------------------------

    def test_etag_compare_and_swap(self, store: StateStore) -> None:
        first = store.create_instance("e", name="wf", custom_status=0)
        second = store.set_custom_status("e", 1, etag=first)
        assert second != first
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("e", 2, etag=first)
        assert store.get_custom_status("e") == 1
        third = store.set_custom_status("e", 3)  # no etag: last write wins
        assert store.get_custom_status("e") == 3
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("e", 4, etag=second)
        current = store.get_instance("e")
        assert current is not None
        assert current.etag == third

    def test_runtime_status_honours_etag(self, store: StateStore) -> None:
        etag = store.create_instance("rs", name="wf")
        newer = store.set_runtime_status("rs", RuntimeStatus.RUNNING, etag=etag)
        with pytest.raises(ConcurrencyError):
            store.set_runtime_status("rs", RuntimeStatus.FAILED, etag=etag)
        store.set_runtime_status("rs", RuntimeStatus.COMPLETED, output=None, etag=newer)
        got = store.get_instance("rs", fetch_payloads=True)
        assert got is not None
        assert got.runtime_status is RuntimeStatus.COMPLETED
        assert got.output is None

    def test_an_old_etag_stays_stale_when_the_value_comes_back(self, store: StateStore) -> None:
        first = store.create_instance("aba", name="wf", custom_status="A")
        store.set_custom_status("aba", "B", etag=first)
        store.set_custom_status("aba", "A")
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("aba", "C", etag=first)
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("aba", "A", etag=first)  # even a no-op write is checked
        assert store.get_custom_status("aba") == "A"

    def test_runtime_status_change_invalidates_status_etags(self, store: StateStore) -> None:
        etag = store.create_instance("inv", name="wf", custom_status="a")
        store.set_runtime_status("inv", RuntimeStatus.RUNNING)
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("inv", "b", etag=etag)
        got = store.get_instance("inv")
        assert got is not None
        assert got.custom_status == "a"
        assert got.runtime_status is RuntimeStatus.RUNNING

    def test_unchanged_bytes_are_not_written(self, store: StateStore, clock: FakeClock) -> None:
        store.create_instance("s", name="wf")
        etag = store.set_custom_status("s", {"percent": 10})
        written_at = clock.now
        clock.advance(seconds=1)
        assert store.set_custom_status("s", {"percent": 10}, etag=etag) == etag
        got = store.get_instance("s")
        assert got is not None
        assert got.etag == etag
        assert got.last_updated_at == written_at
        if store.capabilities.skips_unchanged:
            assert store.set_custom_status("s", {"percent": 10}) == etag
            again = store.get_instance("s")
            assert again is not None
            assert again.last_updated_at == written_at
        changed = store.set_custom_status("s", {"percent": 11}, etag=etag)
        assert changed != etag

    def test_threads_lose_no_update(self, store: StateStore) -> None:
        store.create_instance("counter", name="wf", custom_status={"n": 0})
        threads, increments = 6, 15

        def work() -> None:
            for _ in range(increments):
                store.update("counter", lambda value: {"n": value["n"] + 1}, retries=200)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert store.get_custom_status("counter") == {"n": threads * increments}

    def test_stale_etag_fails_across_store_objects_even_with_unchanged_bytes(
        self, store: StateStore, other_store: StateStore
    ) -> None:
        created = store.create_instance("x-cas", name="wf", custom_status="P")
        other_store.set_custom_status("x-cas", "Q")
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("x-cas", "P", etag=created)  # the bytes A last wrote
        assert other_store.get_custom_status("x-cas") == "Q"

        first = store.set_custom_status("x-cas", "P")
        other_store.set_custom_status("x-cas", "Q")
        with pytest.raises(ConcurrencyError):
            store.set_custom_status("x-cas", "P", etag=first)
        assert store.get_custom_status("x-cas") == "Q"

        running = store.set_runtime_status("x-cas", RuntimeStatus.RUNNING)
        other_store.set_runtime_status("x-cas", RuntimeStatus.SUSPENDED)
        with pytest.raises(ConcurrencyError):
            store.set_runtime_status("x-cas", RuntimeStatus.RUNNING, etag=running)
        current = other_store.get_instance("x-cas")
        assert current is not None
        assert current.runtime_status is RuntimeStatus.SUSPENDED
        assert current.custom_status == "Q"
        store.set_custom_status("x-cas", "R", etag=current.etag)  # a current etag still works
        assert other_store.get_custom_status("x-cas") == "R"

    def test_writes_without_etag_never_conflict_across_store_objects(
        self, store: StateStore, open_other_backend: OpenOther, clock: FakeClock
    ) -> None:
        store.create_instance("x-lww", name="wf", custom_status=0)
        writers = [StateStore(open_other_backend(), clock=clock) for _ in range(4)]
        rounds = 150
        failures: list[BaseException] = []
        start = threading.Barrier(len(writers))

        def work(number: int, writer: StateStore) -> None:
            start.wait()
            for step in range(rounds):
                try:  # two values only, so "unchanged" skips race with real writes
                    writer.set_custom_status("x-lww", {"v": (number + step) % 2})
                    if step % 10 == number:
                        status = RuntimeStatus.RUNNING if step % 20 else RuntimeStatus.SUSPENDED
                        writer.set_runtime_status("x-lww", status)
                except BaseException as exc:  # every failure is the finding
                    failures.append(exc)

        threads = [
            threading.Thread(target=work, args=(number, writer))
            for number, writer in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, [repr(failure) for failure in failures[:3]]
        assert store.get_custom_status("x-lww") in [{"v": 0}, {"v": 1}]

    # -- capabilities: every declared flag checked both ways -------------------------------

    def test_capability_max_payload_bytes_is_not_overstated(
        self, counting: CountingBackend, clock: FakeClock
    ) -> None:
        """Input, output and custom status of one instance, each exactly at the declared
        inline limit (at `LARGEST_CHECKED_PAYLOAD` when the limit is larger or none), are
        stored and read back: all three fit together."""
        limit = counting.capabilities.max_payload_bytes
        size = LARGEST_CHECKED_PAYLOAD if limit is None else min(limit, LARGEST_CHECKED_PAYLOAD)
        store = StateStore(
            counting, max_custom_status_bytes=size, max_payload_bytes=size, clock=clock
        )
        _every_payload_round_trips(store, "at-limit", size)

    def test_capability_offload(self, counting: CountingBackend, clock: FakeClock) -> None:
        """``offload``: payloads beyond the inline limit and beyond any service row limit
        round-trip. Without it, a payload over ``max_payload_bytes`` is `PayloadTooLarge`
        before any I/O, whatever the store allows, and nothing stored changes."""
        caps = counting.capabilities
        generous = 64 * LARGEST_CHECKED_PAYLOAD
        store = StateStore(
            counting, max_custom_status_bytes=generous, max_payload_bytes=generous, clock=clock
        )
        if caps.offload:
            size = max(caps.max_payload_bytes or 0, LARGEST_CHECKED_PAYLOAD) + 1024
            _every_payload_round_trips(store, "offloaded", size)
            return
        if caps.max_payload_bytes is None:
            return  # no inline limit, nothing to offload: the check above covers the size
        over = json_of_size(caps.max_payload_bytes + 1)
        etag = store.create_instance("kept", name="wf", input="in", custom_status="status")
        counting.calls.clear()
        with pytest.raises(PayloadTooLarge):
            store.create_instance("too-big", name="wf", input=over)
        with pytest.raises(PayloadTooLarge):
            store.set_custom_status("kept", over)
        with pytest.raises(PayloadTooLarge):
            store.set_runtime_status("kept", RuntimeStatus.COMPLETED, output=over)
        assert counting.total == 0
        assert store.get_instance("too-big") is None
        kept = store.get_instance("kept", fetch_payloads=True)
        assert kept is not None
        assert (kept.etag, kept.input, kept.custom_status) == (etag, "in", "status")
        assert kept.runtime_status is RuntimeStatus.PENDING

    def test_capability_skips_unchanged(self, backend: Backend, clock: FakeClock) -> None:
        """The same bytes again: with the etag this backend object wrote them at, never
        written (every backend); without an etag, not written exactly when the backend
        declares ``skips_unchanged``, else written (a new update time)."""
        backend.create(new_instance("same", clock.now))
        first = backend.write_custom_status(
            "same", Payload(b'{"percent":5}', "json"), etag=None, now=clock.now
        )
        assert first.written
        written_at = clock.now
        clock.advance(seconds=1)
        again = backend.write_custom_status(
            "same", Payload(b'{"percent":5}', "json"), etag=first.etag, now=clock.now
        )
        assert (again.etag, again.written) == (first.etag, False)
        clock.advance(seconds=1)
        blind = backend.write_custom_status(
            "same", Payload(b'{"percent":5}', "json"), etag=None, now=clock.now
        )
        record = backend.read("same")
        assert record is not None
        assert record.custom_status == Payload(b'{"percent":5}', "json")
        assert record.etag == blind.etag
        if backend.capabilities.skips_unchanged:
            assert (blind.etag, blind.written) == (first.etag, False)
            assert record.last_updated_at == written_at
        else:
            assert blind.written is True
            assert record.last_updated_at == clock.now

    def test_capability_push(self, backend: Backend, open_other_backend: OpenOther) -> None:
        """``push``: ``subscribe`` notifies after a write made through another backend
        object of the same store (the same object where not ``cross_process``); without
        it, ``subscribe`` raises NotImplementedError."""
        other = open_other_backend()
        now = datetime.now(UTC)
        other.create(new_instance("pushed", now))
        if not backend.capabilities.push:
            with pytest.raises(NotImplementedError):
                backend.subscribe("pushed", lambda: None)
            return
        changed = threading.Event()
        unsubscribe = backend.subscribe("pushed", changed.set)
        try:
            assert_writes_are_heard(changed, other, "pushed", now)
        finally:
            unsubscribe()

    def test_capability_ttl(self, backend: Backend, counting: CountingBackend) -> None:
        """``ttl``: ``purge_expired`` works without a store retention and sweeps only what
        the backend's own expiry hides (nothing live). Without it, the backend's
        ``purge_expired`` is a no-op returning 0, and the store's asks for a retention."""
        store = StateStore(counting)
        store.create_instance("live", name="wf", custom_status=1)
        store.create_instance("done", name="wf")
        store.set_runtime_status("done", RuntimeStatus.COMPLETED)
        if backend.capabilities.ttl:
            assert store.purge_expired() >= 0
        else:
            counting.calls.clear()
            assert backend.purge_expired() == 0
            with pytest.raises(ConfigurationError, match="retention"):
                store.purge_expired()
        assert store.get_custom_status("live") == 1
        assert store.get_instance("done") is not None

    def test_capability_cross_process(
        self, backend: Backend, open_other_backend: OpenOther, clock: FakeClock
    ) -> None:
        """``cross_process``: another backend object on the same namespace (as another
        process opens it) sees every write of this one, and this one sees its writes.
        (Not ``cross_process``: there is no second object to check.)"""
        if not backend.capabilities.cross_process:
            return
        other = open_other_backend()
        assert other is not backend
        etag = backend.create(new_instance("shared", clock.now))
        seen = other.read("shared")
        assert seen is not None
        assert seen.etag == etag
        status = Payload(b'"from the other"', "json")
        written = other.write_custom_status("shared", status, etag=etag, now=clock.now)
        mine = backend.read("shared")
        assert mine is not None
        assert (mine.etag, mine.custom_status) == (written.etag, status)
        listed = backend.query(InstanceQuery(prefix="shared"))
        assert [record.instance_id for record in listed.items] == ["shared"]
        assert other.delete("shared") is True
        assert backend.read("shared") is None

    def test_capability_max_instance_id_length(
        self, store: StateStore, counting: CountingBackend
    ) -> None:
        """Ids of exactly ``max_instance_id_length`` characters (one and four bytes of
        UTF-8 each) work everywhere; one character more is `InvalidArgument` before any
        I/O, for every call that takes an id."""
        length = store.capabilities.max_instance_id_length
        longest = ["i" * length, "🙂" * length]
        for number, instance_id in enumerate(longest):
            store.create_instance(instance_id, name="wf", custom_status=number)
            store.set_custom_status(instance_id, {"n": number})
            store.set_runtime_status(instance_id, RuntimeStatus.RUNNING)
            got = store.get_instance(instance_id)
            assert got is not None
            assert (got.instance_id, got.custom_status) == (instance_id, {"n": number})
        assert sorted(item.instance_id for item in store.iter_instances()) == sorted(longest)
        counting.calls.clear()
        too_long = "i" * (length + 1)
        calls: list[Callable[[], object]] = [
            lambda: store.create_instance(too_long, name="wf"),
            lambda: store.get_instance(too_long),
            lambda: store.set_custom_status(too_long, 1),
            lambda: store.set_runtime_status(too_long, RuntimeStatus.RUNNING),
            lambda: store.purge(too_long),
        ]
        for call in calls:
            with pytest.raises(InvalidArgument):
                call()
        assert counting.total == 0
        assert all(store.purge(instance_id) for instance_id in longest)

    # -- ids -------------------------------------------------------------------------------

    def test_awkward_ids_round_trip_and_never_collide(self, store: StateStore) -> None:
        max_length = store.capabilities.max_instance_id_length
        ids = [instance_id for instance_id in AWKWARD_IDS if len(instance_id) <= max_length]
        for number, instance_id in enumerate(ids):
            store.create_instance(instance_id, name="wf", custom_status=number)
        for number, instance_id in enumerate(ids):
            got = store.get_instance(instance_id)
            assert got is not None, instance_id
            assert got.instance_id == instance_id
            assert got.custom_status == number
        listed = [item.instance_id for item in store.iter_instances(page_size=7)]
        assert sorted(listed) == sorted(ids)

    def test_invalid_ids_are_refused(self, store: StateStore, counting: CountingBackend) -> None:
        too_long = "x" * (store.capabilities.max_instance_id_length + 1)
        for bad in ("", too_long, "lone\ud800surrogate", 42):
            with pytest.raises(InvalidInstanceId):
                store.create_instance(bad, name="wf")  # type: ignore[arg-type]
            with pytest.raises(InvalidInstanceId):
                store.set_custom_status(bad, 1)  # type: ignore[arg-type]
        assert counting.total == 0

    def test_names_are_validated_before_any_io(
        self, store: StateStore, counting: CountingBackend
    ) -> None:
        counting.calls.clear()
        for bad in (42, None, b"wf", "", "n" * (MAX_NAME_LENGTH + 1), "lone\ud800surrogate"):
            with pytest.raises(InvalidArgument):
                store.create_instance("named", name=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            store.create_instance("named", name="wf", runtime_status="exploded")
        with pytest.raises(InvalidArgument):
            store.set_runtime_status("named", "exploded")
        assert counting.total == 0
        assert store.get_instance("named") is None
        longest = "漢" * MAX_NAME_LENGTH
        store.create_instance("named", name=longest)
        got = store.get_instance("named")
        assert got is not None
        assert got.name == longest

    # -- queries ---------------------------------------------------------------------------

    def _populate(
        self, store: StateStore, clock: FakeClock
    ) -> dict[str, tuple[RuntimeStatus, datetime]]:
        statuses = [RuntimeStatus.RUNNING, RuntimeStatus.COMPLETED, RuntimeStatus.FAILED]
        made: dict[str, tuple[RuntimeStatus, datetime]] = {}
        for number in range(30):
            instance_id = f"job-{number:03d}" if number % 5 else f"other/{number:03d}"
            clock.advance(minutes=1)
            store.create_instance(instance_id, name="wf", input={"n": number}, custom_status=number)
            status = statuses[number % 3]
            store.set_runtime_status(instance_id, status)
            made[instance_id] = (status, clock.now)
        return made

    def _all_pages(self, store: StateStore, **filters: Any) -> list[str]:
        seen: list[str] = []
        continuation = None
        pages = 0
        while True:
            page = store.query(page_size=4, continuation=continuation, **filters)
            assert len(page.items) <= 4
            seen.extend(item.instance_id for item in page.items)
            pages += 1
            continuation = page.continuation
            if continuation is None:
                break
            assert pages < 200, "paging does not end"
        assert len(seen) == len(set(seen)), "an instance appeared on two pages"
        return seen

    def test_query_filters_and_pages(self, store: StateStore, clock: FakeClock) -> None:
        made = self._populate(store, clock)
        everything = self._all_pages(store)
        assert sorted(everything) == sorted(made)

        running = self._all_pages(store, runtime_status=RuntimeStatus.RUNNING)
        assert sorted(running) == sorted(
            i for i, (s, _) in made.items() if s is RuntimeStatus.RUNNING
        )

        wanted = {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED}
        either = self._all_pages(store, runtime_status=wanted)
        assert sorted(either) == sorted(i for i, (s, _) in made.items() if s in wanted)

        times = sorted(created for _, created in made.values())
        start, end = times[5], times[20]
        ranged = self._all_pages(store, created_from=start, created_to=end)
        assert sorted(ranged) == sorted(i for i, (_, c) in made.items() if start <= c < end)

        prefixed = self._all_pages(store, prefix="job-0")
        assert sorted(prefixed) == sorted(i for i in made if i.startswith("job-0"))
        assert len(prefixed) > 8  # three pages at least

        combined = self._all_pages(
            store, prefix="job-", runtime_status=[RuntimeStatus.RUNNING], created_from=start
        )
        assert sorted(combined) == sorted(
            i
            for i, (s, c) in made.items()
            if i.startswith("job-") and s is RuntimeStatus.RUNNING and c >= start
        )
        assert self._all_pages(store, prefix="zzz") == []

    def test_query_payloads_only_when_asked(self, store: StateStore, clock: FakeClock) -> None:
        self._populate(store, clock)
        lean = store.query(prefix="job-001")
        assert [item.instance_id for item in lean] == ["job-001"]
        assert lean.items[0].input is None
        assert lean.items[0].custom_status == 1
        full = store.query(prefix="job-001", fetch_payloads=True)
        assert full.items[0].input == {"n": 1}

    def test_iter_instances_follows_pages(self, store: StateStore, clock: FakeClock) -> None:
        made = self._populate(store, clock)
        found = [item.instance_id for item in store.iter_instances(page_size=3)]
        assert sorted(found) == sorted(made)

    def test_forged_and_foreign_continuation_tokens_are_refused(
        self, store: StateStore, clock: FakeClock
    ) -> None:
        for number in range(5):
            clock.advance(seconds=1)
            store.create_instance(f"tok-{number}", name="wf", custom_status=number)
        first = store.query(page_size=2)
        assert first.continuation is not None
        forged = [*FORGED_TOKENS, first.continuation[:-3], first.continuation + "AAAA"]
        for token in forged:
            with pytest.raises(InvalidContinuationToken):
                store.query(page_size=2, continuation=token)
            with pytest.raises(InvalidContinuationToken):
                store.query(page_size=2, continuation=token, prefix="tok-")
        following = store.query(page_size=2, continuation=first.continuation)
        seen = {item.instance_id for item in (*first.items, *following.items)}
        assert len(seen) == len(first.items) + len(following.items)

    def test_query_arguments_are_checked_before_any_io(
        self, store: StateStore, counting: CountingBackend
    ) -> None:
        naive = datetime(2030, 1, 1)
        calls: list[Callable[[], object]] = [
            lambda: store.query(created_from=naive),
            lambda: store.query(created_to=naive),
            lambda: list(store.iter_instances(created_from=naive)),
            lambda: store.purge_by(created_to=naive),
            lambda: store.purge_by(created_from=naive, runtime_status="completed"),
            lambda: store.query(runtime_status="exploded"),
            lambda: store.query(runtime_status=[RuntimeStatus.RUNNING, "nope"]),
            lambda: store.purge_by(runtime_status="nope"),
            lambda: store.query(prefix=5),  # type: ignore[arg-type]
            lambda: store.query(created_from="2030-01-01"),  # type: ignore[arg-type]
        ]
        counting.calls.clear()
        for call in calls:
            with pytest.raises(InvalidArgument):
                call()
        assert counting.total == 0

    def _populate_named(
        self, store: StateStore, clock: FakeClock
    ) -> dict[str, tuple[str, RuntimeStatus, datetime]]:
        """24 instances of two workflow names; each is last updated a minute after the one
        before, in reverse order of creation. Returns id -> (name, status, last update)."""
        made: dict[str, tuple[str, RuntimeStatus, datetime]] = {}
        statuses = [RuntimeStatus.RUNNING, RuntimeStatus.COMPLETED, RuntimeStatus.PENDING]
        ids = [f"named-{number:02d}" for number in range(24)]
        for number, instance_id in enumerate(ids):
            clock.advance(seconds=1)
            store.create_instance(instance_id, name="resize" if number % 3 else "encode")
        for number, instance_id in enumerate(reversed(ids)):
            clock.advance(minutes=1)
            status = statuses[number % 3]
            store.set_runtime_status(instance_id, status)
            made[instance_id] = (
                "resize" if ids.index(instance_id) % 3 else "encode",
                status,
                clock.now,
            )
        return made

    def test_query_by_name_and_update_time(self, store: StateStore, clock: FakeClock) -> None:
        made = self._populate_named(store, clock)
        store.create_instance("resize-not-a-name", name="resize2")
        resized = self._all_pages(store, name="resize")
        assert sorted(resized) == sorted(i for i, (n, _, _) in made.items() if n == "resize")
        moments = sorted(updated for _, _, updated in made.values())
        start, end = moments[4], moments[17]
        ranged = self._all_pages(store, updated_from=start, updated_to=end)
        assert sorted(ranged) == sorted(i for i, (_, _, u) in made.items() if start <= u < end)
        combined = self._all_pages(
            store, name="encode", runtime_status="running", updated_from=start, prefix="named-"
        )
        assert sorted(combined) == sorted(
            i
            for i, (n, s, u) in made.items()
            if n == "encode" and s is RuntimeStatus.RUNNING and u >= start
        )
        found = [item.instance_id for item in store.iter_instances(name="encode", page_size=2)]
        assert sorted(found) == sorted(i for i, (n, _, _) in made.items() if n == "encode")
        assert self._all_pages(store, name="nobody") == []
        for awkward in ("it's", "ctl\u0001 name", "é漢字🙂"):
            store.create_instance(f"awkward-{awkward}", name=awkward)
            assert self._all_pages(store, name=awkward) == [f"awkward-{awkward}"]

    def test_count_per_status(self, store: StateStore, clock: FakeClock) -> None:
        made = self._populate_named(store, clock)

        def expected(**keep: Any) -> dict[RuntimeStatus, int]:
            counts = dict.fromkeys(RuntimeStatus, 0)
            for instance_id, (name, status, updated) in made.items():
                if (
                    keep.get("name", name) == name
                    and updated >= keep.get("since", updated)
                    and instance_id.startswith(keep.get("prefix", ""))
                ):
                    counts[status] += 1
            return counts

        assert store.count() == expected()
        assert store.count(name="resize") == expected(name="resize")
        since = sorted(updated for _, _, updated in made.values())[10]
        assert store.count(updated_from=since) == expected(since=since)
        assert store.count(prefix="named-1", name="encode") == expected(
            prefix="named-1", name="encode"
        )
        only = store.count(runtime_status=["running", "pending"])
        assert only == {
            status: (count if status in {RuntimeStatus.RUNNING, RuntimeStatus.PENDING} else 0)
            for status, count in expected().items()
        }
        assert store.count(name="nobody") == dict.fromkeys(RuntimeStatus, 0)

    def test_get_many(self, store: StateStore, counting: CountingBackend) -> None:
        for number in range(30):
            store.create_instance(f"many-{number}", name="wf", input=number, custom_status=-number)
        wanted = ["many-3", "absent", "many-0", "many-29", "many-3", *AWKWARD_IDS[:3]]
        counting.calls.clear()
        found = store.get_many(wanted)
        assert list(found) == list(dict.fromkeys(wanted))
        assert found["absent"] is None
        assert found["plain"] is None
        three = found["many-3"]
        assert three is not None
        assert three.custom_status == -3
        assert three.input is None
        assert three.etag == store.get_instance("many-3").etag  # type: ignore[union-attr]
        full = store.get_many([f"many-{number}" for number in range(30)], fetch_payloads=True)
        assert [item.input for item in full.values() if item is not None] == list(range(30))
        assert store.get_many([]) == {}
        with pytest.raises(InvalidInstanceId):
            store.get_many(["ok", ""])
        with pytest.raises(InvalidArgument):
            store.get_many("many-1")

    def test_new_query_arguments_are_checked_before_any_io(
        self, store: StateStore, counting: CountingBackend
    ) -> None:
        naive = datetime(2030, 1, 1)
        calls: list[Callable[[], object]] = [
            lambda: store.query(updated_from=naive),
            lambda: store.query(updated_to=naive),
            lambda: store.count(updated_from=naive),
            lambda: store.count(runtime_status="nope"),
            lambda: store.query(name=""),
            lambda: store.count(name=5),  # type: ignore[arg-type]
            lambda: list(store.iter_instances(name="x" * (MAX_NAME_LENGTH + 1))),
        ]
        counting.calls.clear()
        for call in calls:
            with pytest.raises(InvalidArgument):
                call()
        assert counting.total == 0

    def test_prefix_with_nul_finds_what_it_should(self, store: StateStore) -> None:
        ids = ["nu", "nul", "nul\u0000", "nul\u0000a", "nul\u0000b\u0000", "nul\u0001", "nula"]
        for instance_id in ids:
            store.create_instance(instance_id, name="wf")
        for prefix in ("nul\u0000", "nul", "nul\u0000a", "\u0000", "nul\u0000b\u0000"):
            expected = sorted(i for i in ids if i.startswith(prefix))
            assert sorted(self._all_pages(store, prefix=prefix)) == expected, repr(prefix)
        assert store.purge_by(prefix="nul\u0000") == 3
        assert sorted(self._all_pages(store)) == ["nu", "nul", "nul\u0001", "nula"]

    # -- retention -------------------------------------------------------------------------

    def _retaining(
        self, backend: CountingBackend, clock: FakeClock, measured_from: RetentionFrom
    ) -> StateStore:
        return StateStore(
            backend,
            serializer="json",
            clock=clock,
            retention=timedelta(hours=1),
            retention_from=measured_from,
        )

    def test_retention_from_completion(self, counting: CountingBackend, clock: FakeClock) -> None:
        """An expired instance reads as absent, is left out of queries, counts and batch
        reads, refuses writes, its id can be created again, and purge_expired deletes it;
        a running one never expires."""
        store = self._retaining(counting, clock, "completed")
        store.create_instance("done", name="wf", custom_status=1)
        store.create_instance("running", name="wf", custom_status=2)
        store.set_runtime_status("done", "completed", output="o")
        clock.advance(minutes=59)
        assert store.get_instance("done") is not None
        assert store.count(name="wf")[RuntimeStatus.COMPLETED] == 1
        clock.advance(minutes=1)  # an hour after completion: expired

        assert store.get_instance("done") is None
        assert store.get_many(["done", "running"])["done"] is None
        assert [item.instance_id for item in store.iter_instances()] == ["running"]
        assert store.count() == {**dict.fromkeys(RuntimeStatus, 0), RuntimeStatus.PENDING: 1}
        assert store.count(runtime_status="completed")[RuntimeStatus.COMPLETED] == 0
        with pytest.raises(InstanceNotFound):
            store.set_custom_status("done", 3)
        with pytest.raises(InstanceNotFound):
            store.set_runtime_status("done", "running")
        with pytest.raises(InstanceNotFound):
            store.update("done", lambda value: value)

        clock.advance(days=30)
        running = store.get_instance("running")
        assert running is not None
        assert running.custom_status == 2
        store.set_custom_status("running", 4)

        assert store.purge_expired() == 1
        assert store.purge_expired() == 0
        plain = StateStore(counting, serializer="json", clock=clock)  # no retention: gone
        assert plain.get_instance("done") is None
        assert plain.get_instance("running") is not None

    def test_an_expired_id_can_be_created_again(
        self, counting: CountingBackend, clock: FakeClock
    ) -> None:
        for measured_from in ("completed", "updated"):
            store = self._retaining(counting, clock, measured_from)
            instance_id = f"again-{measured_from}"
            store.create_instance(instance_id, name="wf", custom_status="old")
            if measured_from == "completed":
                store.set_runtime_status(instance_id, "failed")
            with pytest.raises(InstanceExists):
                store.create_instance(instance_id, name="wf")
            clock.advance(hours=2)
            store.create_instance(instance_id, name="wf2", custom_status="new")
            again = store.get_instance(instance_id)
            assert again is not None
            assert (again.name, again.custom_status) == ("wf2", "new")
            assert again.runtime_status is RuntimeStatus.PENDING

    def test_retention_from_last_update(self, counting: CountingBackend, clock: FakeClock) -> None:
        store = self._retaining(counting, clock, "updated")
        store.create_instance("idle", name="wf")
        store.create_instance("busy", name="wf")
        for _ in range(3):
            clock.advance(minutes=40)
            store.set_custom_status("busy", clock.now.isoformat())
        assert store.get_instance("idle") is None  # running, but idle for two hours
        assert store.get_instance("busy") is not None
        assert [item.instance_id for item in store.iter_instances()] == ["busy"]
        assert sum(store.count().values()) == 1
        assert store.purge_expired() == 1
        assert StateStore(counting, clock=clock).get_instance("idle") is None

    def test_retention_settings_are_checked(self, counting: CountingBackend) -> None:
        with pytest.raises(InvalidArgument):
            StateStore(counting, retention=timedelta(0))
        with pytest.raises(InvalidArgument):
            StateStore(counting, retention=timedelta(hours=1), retention_from="created")  # type: ignore[arg-type]
        if not counting.capabilities.ttl:  # nothing could have expired: say what is missing
            with pytest.raises(ConfigurationError):
                StateStore(counting).purge_expired()

    # -- purge -----------------------------------------------------------------------------

    def test_purge_by_id(self, store: StateStore) -> None:
        store.create_instance("p", name="wf", input="x", custom_status="y")
        store.create_instance("q", name="wf")
        assert store.purge("p") is True
        assert store.get_instance("p") is None
        assert store.purge("p") is False
        assert store.get_instance("q") is not None
        store.create_instance("p", name="wf")  # the id is free again
        got = store.get_instance("p")
        assert got is not None
        assert got.custom_status is None

    def test_purge_by_filter(self, store: StateStore, clock: FakeClock) -> None:
        made = self._populate(store, clock)
        times = sorted(created for _, created in made.values())
        cutoff = times[15]
        doomed = {
            i
            for i, (s, c) in made.items()
            if c < cutoff and s in {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED}
        }
        purged = store.purge_by(
            created_to=cutoff, runtime_status=[RuntimeStatus.COMPLETED, RuntimeStatus.FAILED]
        )
        assert purged == len(doomed)
        remaining = {item.instance_id for item in store.iter_instances()}
        assert remaining == set(made) - doomed

    # -- stored data -----------------------------------------------------------------------

    def test_corrupt_payload_affects_only_its_instance(
        self, store: StateStore, backend: Backend, clock: FakeClock
    ) -> None:
        store.create_instance("good", name="wf", custom_status={"ok": True})
        store.create_instance("bad", name="wf", custom_status={"ok": True})
        backend.write_custom_status(
            "bad", Payload(b"\xff\xfe{not json", "json"), etag=None, now=clock.now
        )
        got = store.get_instance("bad")
        assert got is not None
        with pytest.raises(CorruptRecord) as raised:
            _ = got.custom_status
        assert raised.value.instance_id == "bad"
        assert store.get_custom_status("good") == {"ok": True}
        listed = {item.instance_id: item for item in store.query()}
        assert listed["good"].custom_status == {"ok": True}
        with pytest.raises(CorruptRecord):
            _ = listed["bad"].custom_status

    def test_a_corrupt_record_does_not_break_listing_or_purge(
        self,
        store: StateStore,
        corrupt_record: CorruptHook,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        ids = [f"c-{number}" for number in range(7)]
        for instance_id in ids:
            clock.advance(seconds=1)
            store.create_instance(instance_id, name="wf", input=instance_id, custom_status=1)
        corrupt_record("c-3")
        good = set(ids) - {"c-3"}
        with caplog.at_level(logging.WARNING):
            listings = [
                list(store.iter_instances(page_size=2)),
                list(store.iter_instances(page_size=3, fetch_payloads=True)),
                list(store.iter_instances(prefix="c-", created_from=clock.now - timedelta(1))),
            ]
        for listing in listings:
            listed = {item.instance_id: item for item in listing}
            assert good <= set(listed) <= set(ids)
            assert all(listed[instance_id].custom_status == 1 for instance_id in good)
            if "c-3" in listed:  # listed: reading its payload raises, for it alone
                with pytest.raises(CorruptRecord) as raised:
                    _ = listed["c-3"].custom_status
                assert raised.value.instance_id == "c-3"
            else:  # skipped: with a warning that names it
                assert "c-3" in caplog.text
        assert store.get_custom_status("c-4") == 1
        assert store.purge_by(created_to=clock.now + timedelta(seconds=1)) == len(ids)
        assert list(store.iter_instances()) == []
        assert store.get_instance("c-3") is None

    def test_records_stay_readable_after_serializer_switch(
        self, counting: CountingBackend, clock: FakeClock
    ) -> None:
        old = StateStore(counting, serializer="msgpack", clock=clock)
        old.create_instance("sw", name="wf", custom_status={"written": "by msgpack"})
        new = StateStore(counting, serializer="json", accept=["json", "msgpack"], clock=clock)
        assert new.get_custom_status("sw") == {"written": "by msgpack"}
        strict = StateStore(counting, serializer="json", accept=["json"], clock=clock)
        with pytest.raises(SerializationError, match="msgpack"):
            strict.get_custom_status("sw")
