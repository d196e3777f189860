"""The shortcuts of the hot paths (issue 10) keep every guarantee of the long way.

``set_custom_status`` and ``get_instance`` remember the last id they found valid (by
identity), the codec encodes plain JSON without the serializer's frame, memory:// pops its
etags from blocks drawn from one counter and returns a write's bare etag to the store, and
the store probes the clock's per-millisecond cache itself. Each test here breaks if a
shortcut decides differently from the path it replaces.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from durastate import StateStore
from durastate.backends.memory import MemoryBackend
from durastate.core import store as store_module
from durastate.core.records import Payload, WriteResult
from durastate.core.store import utc_now_ms
from durastate.errors import (
    ConcurrencyError,
    InstanceNotFound,
    InvalidInstanceId,
    SerializationError,
)
from durastate.serializers.json import JsonSerializer


def _store(**kwargs: Any) -> StateStore:
    store = StateStore(MemoryBackend(), **kwargs)
    store.create_instance("job", name="wf", custom_status={"n": 0})
    return store


@pytest.mark.parametrize("bad", [None, "", 7, "x" * 513, "\ud800"])
def test_every_bad_id_is_refused_first_call_and_after_a_good_one(bad: Any) -> None:
    """The remembered id starts as an object no caller has: ``None`` or ``""`` (interned,
    so always the same object) are checked on the very first call too."""
    for warm in (False, True):
        store = _store()
        if warm:
            store.set_custom_status("job", {"n": 1})
            assert store.get_instance("job") is not None
        with pytest.raises(InvalidInstanceId):
            store.set_custom_status(bad, {"n": 2})
        with pytest.raises(InvalidInstanceId):
            store.get_instance(bad)
        assert store.get_custom_status("job") == ({"n": 1} if warm else {"n": 0})


class Shouting(JsonSerializer):
    """A subclass with its own ``dumps``: the codec must not take plain JSON's shortcut."""

    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        return super().dumps(value, instance_id=instance_id).upper()


def test_a_json_subclass_keeps_its_own_dumps() -> None:
    store = _store(serializer=Shouting())
    store.set_custom_status("job", {"stage": "resize"})
    assert store.get_custom_status("job") == {"STAGE": "RESIZE"}


class Reading(BaseModel):
    value: float


UNSERIALIZABLE = [
    {"eta": None, "steps": [{"seconds": math.nan}]},
    (1, 2, [None, -math.inf]),
    Reading(value=math.inf),
    {"tags": {1, 2}},
    {"raw": b"bytes"},
    {1: "not a str key"},
    {"big": 2**70},
    {"who": object()},
]


@pytest.mark.parametrize("value", UNSERIALIZABLE, ids=lambda v: type(v).__name__)
def test_the_codec_refuses_exactly_what_the_json_serializer_refuses(value: Any) -> None:
    """Same refusal, same message (with the instance named), and nothing stored."""
    with pytest.raises(SerializationError) as direct:
        JsonSerializer().dumps(value, instance_id="job")
    store = _store()
    with pytest.raises(SerializationError) as through_store:
        store.set_custom_status("job", value)
    assert str(through_store.value) == f"instance 'job': {direct.value}"
    assert store.get_custom_status("job") == {"n": 0}


def test_none_values_and_finite_floats_still_round_trip() -> None:
    store = _store()
    value = {"eta_s": None, "percent": 42.5, "steps": [{"seconds": None, "ok": False}], "z": 0}
    store.set_custom_status("job", value)
    assert store.get_custom_status("job") == value


def test_memory_etags_are_new_text_on_every_write_of_every_backend_object() -> None:
    first, second = _store(), _store()
    etags = []
    for n in range(5):
        etags.append(first.set_custom_status("job", {"n": n + 1}))
        etags.append(second.set_custom_status("job", {"n": n + 1}))
    assert all(type(etag) is str for etag in etags)
    assert len(set(etags)) == len(etags)
    assert [int(etag) for etag in etags] == sorted(int(etag) for etag in etags)
    assert first.get_instance("job").etag == etags[-2]  # type: ignore[union-attr]


def test_memory_etags_never_repeat_across_threads_backends_and_blocks() -> None:
    """Etags come from blocks of 256 drawn from one process-wide counter: writes from many
    threads, on several backend objects, across many blocks, never see one etag twice, and
    one thread's etags keep rising across a block boundary."""
    stores = [_store() for _ in range(4)]
    results: list[list[str]] = [[] for _ in range(8)]

    def write(n: int) -> None:
        store = stores[n % len(stores)]
        for i in range(700):
            results[n].append(store.set_custom_status("job", {"thread": n, "i": i}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [etag for etags in results for etag in etags]
    assert len(every) == 8 * 700
    assert len(set(every)) == len(every)
    alone = _store()
    mine = [alone.set_custom_status("job", {"i": i}) for i in range(600)]
    assert [int(etag) for etag in mine] == sorted(int(etag) for etag in mine)


class _Drained(list[str]):
    """A pool that other threads empty as soon as a block lands in it."""

    def extend(self, items: Any) -> None:
        pass


def _empty_pop() -> str:
    raise IndexError("pop from empty list")


def test_a_writer_whose_fresh_block_is_taken_by_others_still_gets_its_etag() -> None:
    """Refilling the etag pool and taking one from it are two steps: the writer keeps an
    etag of its own block, so other threads emptying the pool in between cost it nothing."""
    backend = MemoryBackend()
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    backend._etag_pool = _Drained()  # type: ignore[misc]
    backend._pop_etag = _empty_pop  # type: ignore[method-assign,assignment]
    etags = [store.set_custom_status("job", {"n": n}) for n in range(5)]
    assert len(set(etags)) == 5
    assert [int(etag) for etag in etags] == sorted(int(etag) for etag in etags)
    record = store.get_instance("job")
    assert record is not None
    assert (record.custom_status, record.etag) == ({"n": 4}, etags[-1])


class Recording(MemoryBackend):
    """A subclass that replaces ``write_custom_status``: the store must call it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        self.writes.append(payload.data)
        return super().write_custom_status(instance_id, payload, etag=etag, now=now)


def test_a_backend_that_replaces_write_custom_status_sees_every_write() -> None:
    """memory://'s bare-etag write is a shortcut for its own ``write_custom_status`` only: a
    subclass's override, or one set on the instance (a tracer, a test double), still runs."""
    subclassed = Recording()
    store = StateStore(subclassed)
    store.create_instance("job", name="wf")
    store.set_custom_status("job", {"n": 1})
    assert subclassed.writes == [b'{"n":1}']

    shadowed = MemoryBackend()
    seen: list[bytes] = []
    real = shadowed.write_custom_status

    def spy(instance_id: str, payload: Payload, *, etag: str | None, now: datetime) -> WriteResult:
        seen.append(payload.data)
        return real(instance_id, payload, etag=etag, now=now)

    shadowed.write_custom_status = spy  # type: ignore[method-assign]
    store = StateStore(shadowed)
    store.create_instance("job", name="wf")
    store.set_custom_status("job", {"n": 2})
    assert seen == [b'{"n":2}']


def test_memory_write_results_say_whether_anything_was_written() -> None:
    """The contract's ``write_custom_status`` and the store's shortcut agree: a write gives
    a new etag (``written``), the same bytes again give the current one (not written), a
    missing instance or a stale etag are refused by both and change nothing."""
    backend = MemoryBackend()
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    now = utc_now_ms()
    first = backend.write_custom_status("job", Payload(b'{"n":1}', "json"), etag=None, now=now)
    assert first.written
    again = backend.write_custom_status("job", Payload(b'{"n":1}', "json"), etag=None, now=now)
    assert (again.etag, again.written) == (first.etag, False)
    assert store.set_custom_status("job", {"n": 1}) == first.etag  # unchanged: same etag
    second = store.set_custom_status("job", {"n": 2}, etag=first.etag)
    assert second != first.etag
    with pytest.raises(ConcurrencyError):
        store.set_custom_status("job", {"n": 3}, etag=first.etag)
    with pytest.raises(ConcurrencyError):
        backend.write_custom_status("job", Payload(b'{"n":3}', "json"), etag=first.etag, now=now)
    with pytest.raises(InstanceNotFound):
        store.set_custom_status("nobody", {"n": 1})
    with pytest.raises(InstanceNotFound):
        backend.write_custom_status("nobody", Payload(b"1", "json"), etag=None, now=now)
    record = store.get_instance("job")
    assert record is not None
    assert (record.custom_status, record.etag) == ({"n": 2}, second)


MOMENTS_MS = [
    0,
    999,
    1_000,
    1_764_400_000_000,
    1_764_400_000_001,
    1_764_400_000_999,
    1_764_400_001_000,
    1_764_400_059_999,
    1_764_400_060_000,
    1_764_399_999_999,  # back in time (a clock step): a second the cache left behind
]


def test_the_clock_is_now_truncated_to_the_millisecond_in_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The millisecond cache and the second it builds on: each moment, in order (new
    millisecond, new second, new minute, back in time), comes out exact, through
    ``utc_now_ms`` and through ``set_custom_status``'s own probe of the cache."""
    store = _store()
    for millis in MOMENTS_MS:
        nanos = millis * 1_000_000 + 999_999  # the last nanosecond of that millisecond
        expected = datetime.fromtimestamp(millis / 1000, UTC)
        assert expected.microsecond % 1000 == 0
        monkeypatch.setattr(store_module, "_time_ns", lambda nanos=nanos: nanos)
        store.set_custom_status("job", {"at": millis})
        record = store.get_instance("job")
        assert record is not None
        assert record.custom_status_updated_at == expected, millis
        monkeypatch.setattr(store_module, "_last_millisecond", (0, datetime.fromtimestamp(0, UTC)))
        assert store_module.utc_now_ms() == expected, millis


def test_a_store_with_its_own_clock_records_that_clock() -> None:
    moment = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    store = StateStore(MemoryBackend(), clock=lambda: moment)
    store.create_instance("job", name="wf")
    store.set_custom_status("job", {"n": 1})
    record = store.get_instance("job")
    assert record is not None
    assert record.custom_status_updated_at == moment


# -- the NaN check, at any depth (hypothesis) -----------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
PLAIN = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=25,
)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


class Inner(BaseModel):
    x: float
    note: str | None = None


class Outer(BaseModel):
    items: list[Inner]
    extra: dict[str, Any]


@dataclasses.dataclass
class Point:
    x: float
    y: Any


def _embed(value: Any, bad: Any, data: st.DataObject) -> Any:
    """``value`` with ``bad`` put somewhere inside it, at a depth hypothesis chooses."""
    kind = type(value)
    if kind is dict and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: _embed(value[key], bad, data)}
    if kind in (list, tuple) and value and data.draw(st.booleans()):
        items = list(value)
        at = data.draw(st.integers(0, len(items) - 1))
        items[at] = _embed(items[at], bad, data)
        return kind(items)
    if kind is dict:
        return {**value, "bad": bad}
    if kind in (list, tuple):
        return kind([*value, bad])
    return [value, bad]


@settings(max_examples=300, deadline=None)
@given(value=PLAIN)
def test_plain_values_with_none_and_tuples_are_stored_as_orjson_writes_them(value: Any) -> None:
    store = _store()
    store.set_custom_status("job", value)
    assert store.get_custom_status("job") == orjson.loads(orjson.dumps(value))


@settings(max_examples=300, deadline=None)
@given(value=PLAIN, bad=NON_FINITE, data=st.data())
def test_nan_or_infinity_at_any_depth_is_refused_and_nothing_is_stored(
    value: Any, bad: float, data: st.DataObject
) -> None:
    hidden = _embed(value, bad, data)
    store = _store()
    with pytest.raises(SerializationError, match="NaN or infinity"):
        store.set_custom_status("job", hidden)
    with pytest.raises(SerializationError, match="NaN or infinity"):
        JsonSerializer().dumps(hidden, instance_id="job")
    assert store.get_custom_status("job") == {"n": 0}


@settings(max_examples=150, deadline=None)
@given(
    xs=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4),
    extra=PLAIN,
    bad=NON_FINITE,
    data=st.data(),
)
def test_models_and_dataclasses_refuse_a_hidden_nan_and_keep_the_rest(
    xs: list[float], extra: Any, bad: float, data: st.DataObject
) -> None:
    """Models and dataclasses (which the quick walk cannot decide) go the general way: a
    NaN in a field, or in a plain value inside one, is refused; without one they are stored
    as orjson writes them, ``None`` fields included."""
    good = Outer(items=[Inner(x=x) for x in xs], extra={"v": extra, "p": Point(1.5, None)})
    store = _store()
    store.set_custom_status("job", good)
    assert store.get_custom_status("job") == orjson.loads(orjson.dumps(good.model_dump()))
    at = data.draw(st.integers(0, len(xs) - 1))
    in_a_field = good.model_copy(deep=True)
    in_a_field.items[at].x = bad
    in_plain_data = Outer(items=good.items, extra={"v": _embed(extra, bad, data)})
    in_a_dataclass = {"p": [None, Point(0.0, _embed(extra, bad, data))]}
    for hidden in (in_a_field, in_plain_data, in_a_dataclass):
        with pytest.raises(SerializationError, match="NaN or infinity"):
            store.set_custom_status("job", hidden)
    assert store.get_custom_status("job") == orjson.loads(orjson.dumps(good.model_dump()))
