"""Serializers: exact round trips, eager refusal, and pickle-safe's two locks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import pickle
import uuid
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from durastate.core.codec import PayloadCodec
from durastate.core.records import RuntimeStatus
from durastate.errors import ConfigurationError, CorruptRecord, SerializationError
from durastate.serializers.json import JsonSerializer
from durastate.serializers.msgpack import MsgpackSerializer
from durastate.serializers.pickle_safe import MAGIC, PayloadRejected, SafePickleSerializer

KEY = "k" * 32

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (0 is not False, 0.0 is not 0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_round_trips_every_json_value(value: Any) -> None:
    serializer = JsonSerializer()
    assert _same(serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i"), value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_msgpack_round_trips_every_json_value(value: Any) -> None:
    serializer = MsgpackSerializer()
    assert _same(serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i"), value)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_pickle_safe_round_trips_every_json_value(value: Any) -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    assert _same(serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i"), value)


@pytest.mark.parametrize("bad", [float("nan"), [float("inf")], {"x": -float("inf")}])
def test_json_refuses_non_finite_floats(bad: Any) -> None:
    with pytest.raises(SerializationError, match="NaN"):
        JsonSerializer().dumps(bad, instance_id="i")


def test_json_null_with_finite_floats_is_fine() -> None:
    assert JsonSerializer().dumps({"a": None, "b": 1.5}, instance_id="i") == b'{"a":null,"b":1.5}'


@pytest.mark.parametrize("bad", [{1: "a"}, object(), 2**70, b"bytes"])
def test_json_refuses_what_it_cannot_carry_exactly(bad: Any) -> None:
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(bad, instance_id="i")


def test_msgpack_keeps_bytes_and_int_keys() -> None:
    serializer = MsgpackSerializer()
    value = {1: b"\x00raw", "s": "text"}
    assert serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i") == value


class Progress(BaseModel):
    percent: int
    when: dt.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()], ids=repr)
def test_models_and_dataclasses_become_plain_values(serializer: Any) -> None:
    moment = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {"progress": Progress(percent=5, when=moment), "point": Point(1, 2)}
    decoded = serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i")
    assert decoded["progress"]["percent"] == 5
    assert Progress.model_validate(decoded["progress"]).when == moment
    assert decoded["point"] == {"x": 1, "y": 2}


def test_pickle_safe_refuses_without_key() -> None:
    serializer = SafePickleSerializer()
    with pytest.raises(ConfigurationError, match="HMAC key"):
        serializer.dumps(1, instance_id="i")
    with pytest.raises(ConfigurationError, match="HMAC key"):
        serializer.loads(b"DSP1", instance_id="i")


def test_pickle_safe_rejects_short_keys() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        SafePickleSerializer({"k": "short"})


def test_pickle_safe_carries_allowed_python_types() -> None:
    serializer = SafePickleSerializer({"k1": SecretStr(KEY)})
    value = {
        "when": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        "amount": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=7),
        "tags": {"a", "b"},
        "pair": (1, 2),
    }
    assert serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i") == value


def test_pickle_safe_refuses_unlisted_class_when_writing() -> None:
    with pytest.raises(SerializationError, match="allow-list"):
        SafePickleSerializer({"k1": KEY}).dumps(Point(1, 2), instance_id="i")
    allowed = SafePickleSerializer({"k1": KEY}, allow=[f"{__name__}:Point"])
    assert allowed.loads(allowed.dumps(Point(1, 2), instance_id="i"), instance_id="i") == Point(
        1, 2
    )


class _Exploit:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.path),))


def _signed(serializer: SafePickleSerializer, body: bytes, instance_id: str) -> bytes:
    key_id = b"k1"
    mac = serializer._mac(KEY.encode(), key_id, instance_id, body)
    return b"DSP1" + bytes([len(key_id)]) + key_id + mac + body


def test_pickle_safe_never_runs_a_signed_but_unlisted_global(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    serializer = SafePickleSerializer({"k1": KEY})
    body = pickle.dumps(_Exploit(str(marker)))
    with pytest.raises(PayloadRejected, match="allow-list"):
        serializer.loads(_signed(serializer, body, "i"), instance_id="i")
    assert not marker.exists()


def test_pickle_safe_refuses_tampering_moving_and_unknown_keys(tmp_path: Path) -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    data = serializer.dumps({"n": 1}, instance_id="a")
    tampered = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
    with pytest.raises(PayloadRejected, match="signature"):
        serializer.loads(tampered, instance_id="a")
    with pytest.raises(PayloadRejected, match="signature"):
        serializer.loads(data, instance_id="b")  # moved to another instance
    other = SafePickleSerializer({"k2": "z" * 32})
    with pytest.raises(PayloadRejected, match="'k1'"):
        other.loads(data, instance_id="a")
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Exploit(str(marker)))
    forged = data[: 5 + 2 + 32] + evil  # valid header, someone else's body
    with pytest.raises(PayloadRejected):
        serializer.loads(forged, instance_id="a")
    assert not marker.exists()


def test_pickle_safe_key_rotation() -> None:
    old = SafePickleSerializer({"2025": "o" * 32})
    rotated = SafePickleSerializer({"2026": "n" * 32, "2025": "o" * 32})
    written_before = old.dumps("old", instance_id="i")
    assert rotated.loads(written_before, instance_id="i") == "old"
    written_after = rotated.dumps("new", instance_id="i")
    assert written_after[5:9] == b"2026"  # the first key signs
    retired = SafePickleSerializer({"2026": "n" * 32})
    with pytest.raises(PayloadRejected):
        retired.loads(written_before, instance_id="i")


def test_pickle_safe_repr_has_no_secret() -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    assert KEY not in repr(serializer)
    assert "k1" in repr(serializer)


def test_codec_compresses_above_threshold_and_records_it() -> None:
    writer = JsonSerializer()
    codec = PayloadCodec(writer, {}, compress_above=100)
    small = codec.encode("x", instance_id="i")
    large = codec.encode("y" * 1000, instance_id="i")
    assert small.compression is None
    assert large.compression == "zlib"
    assert large.encoding == "json+zlib"
    assert len(large.data) < 100
    assert codec.decode(large, instance_id="i") == "y" * 1000
    plain_reader = PayloadCodec(writer, {})
    assert plain_reader.decode(large, instance_id="i") == "y" * 1000  # dispatch on stored id


def test_codec_reports_corruption_with_instance() -> None:
    codec = PayloadCodec(JsonSerializer(), {})
    from durastate.core.records import Payload

    with pytest.raises(CorruptRecord, match="'inst'"):
        codec.decode(Payload(b"{", "json"), instance_id="inst")
    with pytest.raises(CorruptRecord, match="compression"):
        codec.decode(Payload(b"{}", "json", "lz9"), instance_id="inst")
    with pytest.raises(SerializationError, match="accept-list"):
        codec.decode(Payload(b"{}", "pickle-safe"), instance_id="inst")


# -- what each serializer writes, it reads back (or refuses at the write) ----------------------


class Reading(BaseModel):
    value: float
    note: str | None = None


class Readings(BaseModel):
    latest: Reading
    history: list[Reading] = []


@dataclasses.dataclass
class Sample:
    value: float
    extra: Any = None


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    "wrap",
    [
        lambda f: Reading(value=f),
        lambda f: Readings(latest=Reading(value=1.0, note=None), history=[Reading(value=f)]),
        lambda f: {"a": None, "model": Reading(value=f)},
        lambda f: Sample(value=f),
        lambda f: [None, Sample(value=1.0, extra=(None, f))],
        lambda f: {"t": (None, f)},
    ],
    ids=["model", "nested-model", "model-in-dict", "dataclass", "tuple-in-dataclass", "tuple"],
)
def test_json_refuses_non_finite_floats_inside_models_and_dataclasses(
    wrap: Any, bad: float
) -> None:
    with pytest.raises(SerializationError, match="NaN"):
        JsonSerializer().dumps(wrap(bad), instance_id="i")


def test_json_keeps_nulls_inside_models_and_dataclasses() -> None:
    serializer = JsonSerializer()
    value = {"m": Readings(latest=Reading(value=1.5), history=[]), "d": Sample(2.0), "n": None}
    assert serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i") == {
        "m": {"latest": {"value": 1.5, "note": None}, "history": []},
        "d": {"value": 2.0, "extra": None},
        "n": None,
    }


@pytest.mark.parametrize(
    "bad",
    [{(1, 2): "x"}, {"outer": [{(1,): 1}]}, {("a", ("b",)): None}],
    ids=["tuple-key", "nested-tuple-key", "nested-tuple-in-key"],
)
def test_msgpack_refuses_tuple_keys_at_the_write(bad: Any) -> None:
    with pytest.raises(SerializationError, match="tuple as a dict key"):
        MsgpackSerializer().dumps(bad, instance_id="i")


def test_msgpack_keeps_enum_values_and_turns_tuples_into_lists() -> None:
    import enum

    class Colour(str, enum.Enum):  # noqa: UP042 - str() of this one is "Colour.RED"
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    serializer = MsgpackSerializer()
    value = {"c": Colour.RED, Colour.RED: Level.HIGH, "t": (1, (2, None)), 7: b"\x00"}
    read = serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i")
    assert read == {"c": "red", "red": 3, "t": [1, [2, None]], 7: b"\x00"}
    assert type(read["c"]) is str
    assert type(read["red"]) is int


def _plain(value: Any) -> Any:
    """What a JSON-like serializer promises to give back: tuples as lists, all the way."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _equal(a: Any, b: Any) -> bool:
    """Equality that counts NaN as equal to NaN (msgpack and pickle keep NaN)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=6)
)
_keys = st.text(max_size=4) | st.integers(-3, 3) | st.none() | st.tuples(st.integers(0, 2))
awkward_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(_keys, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(awkward_values)
def test_every_serializer_reads_back_what_it_wrote_or_refuses_at_the_write(value: Any) -> None:
    serializers: list[Any] = [
        JsonSerializer(),
        MsgpackSerializer(),
        SafePickleSerializer({"k1": KEY}),
    ]
    for serializer in serializers:
        try:
            data = serializer.dumps(value, instance_id="i")
        except SerializationError:
            continue
        read = serializer.loads(data, instance_id="i")  # never fails for what was written
        expected = value if serializer.id == "pickle-safe" else _plain(value)
        assert _equal(read, expected), (serializer.id, value, read)


# -- pickle-safe: bounded allocation, opcode walk ----------------------------------------------


def _bomb(global_module: str, global_name: str, argument_opcodes: bytes) -> bytes:
    """A protocol 5 pickle calling ``module.name(<argument>)`` (one REDUCE)."""

    def unicode(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    return (
        b"\x80\x05"
        + unicode(global_module)
        + unicode(global_name)
        + b"\x93"  # STACK_GLOBAL
        + argument_opcodes
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE
        + b"."
    )


_INT_2_31 = b"\x8a\x05\x00\x00\x00\x80\x00"  # LONG1: 2**31
BOMBS = {
    "bytearray(2**31)": _bomb("builtins", "bytearray", _INT_2_31),
    "set(range(2**31))": (
        b"\x80\x05\x8c\x08builtins\x8c\x03set\x93"
        + _bomb("builtins", "range", _INT_2_31)[2:-1]
        + b"\x85R."
    ),
    "Fraction('1e999999999')": _bomb("fractions", "Fraction", b"\x8c\x0b1e999999999"),
}


_LOAD_ONE_BOMB = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024,) * 2)  # a regression fails here
from durastate.serializers.pickle_safe import PayloadRejected, SafePickleSerializer
serializer = SafePickleSerializer({"k1": sys.argv[1]})
try:
    serializer.loads(bytes.fromhex(sys.argv[2]), instance_id="i")
except PayloadRejected as exc:
    print("rejected:", exc)
else:
    print("loaded")
"""


@pytest.mark.parametrize("body", list(BOMBS.values()), ids=list(BOMBS))
def test_pickle_safe_signed_allocation_bombs_are_refused_without_allocating(body: bytes) -> None:
    """Run in a child with a 1.5 GB address-space limit, so that a regression fails the test
    (MemoryError, or the timeout for the Fraction) instead of exhausting the machine."""
    import subprocess
    import sys

    assert len(body) < 64
    signed = _signed(SafePickleSerializer({"k1": KEY}), body, "i")
    child = subprocess.run(
        [sys.executable, "-c", _LOAD_ONE_BOMB, KEY, signed.hex()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.stdout.startswith("rejected:"), child.stderr[-500:]
    assert "allow-list" in child.stdout


def test_pickle_safe_still_carries_bytearrays_and_sets() -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    value = {"raw": bytearray(b"\x00\x01"), "tags": {1, 2}, "frozen": frozenset({"a"})}
    assert serializer.loads(serializer.dumps(value, instance_id="i"), instance_id="i") == value


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.named: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.named.append((module, name))
        return super().find_class(module, name)


@pytest.mark.parametrize(
    "value",
    [
        {"plain": [1, 2.5, "x", None, b"b"]},
        [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)] * 3 + [dt.date(2030, 1, 2)],
        {"d": decimal.Decimal("1.5"), "u": uuid.UUID(int=1), "p": Point(1, 2)},
        {"nested": {"deeper": [Point(3, 4), {"when": dt.timedelta(seconds=5)}]}},
        {"\x93 in a key": "\x93\x82 in a value", "set": {1, 2}},
        Path("/tmp/x"),
        [type(None), type(...), int, getattr, [].append, str.upper, dt.UTC],
        {"enum": RuntimeStatus.RUNNING, "complex": 1j, "slice": slice(1, 2)},
    ],
    ids=[
        "plain",
        "memoized",
        "classes",
        "nested",
        "opcode-bytes-in-strings",
        "path",
        "types-and-builtins",
        "enum-complex-slice",
    ],
)
def test_pickle_safe_encode_names_exactly_the_globals_find_class_sees(value: Any) -> None:
    from durastate.serializers.pickle_safe import _pickle_noting_globals

    body, named = _pickle_noting_globals(value)
    assert body == pickle.dumps(value, protocol=5)
    unpickler = _RecordingUnpickler(body)
    unpickler.load()
    assert named is not None
    assert sorted(named) == sorted(set(unpickler.named))


def test_pickle_safe_encode_does_not_unpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    from durastate.serializers import pickle_safe

    def no_unpickling(self: Any) -> Any:
        raise AssertionError("encode unpickled its own output")

    monkeypatch.setattr(pickle_safe._RestrictedUnpickler, "load", no_unpickling)
    serializer = SafePickleSerializer({"k1": KEY})
    value = {"when": dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "n": [1] * 50}
    serializer.dumps(value, instance_id="i")
    with pytest.raises(SerializationError, match="allow-list"):
        serializer.dumps({"p": Point(1, 2)}, instance_id="i")


# -- the codec inflates with a bound (decompression bombs) --------------------------------------


def _zlib_bomb(inflated_mib: int) -> bytes:
    """A JSON string of ``inflated_mib`` MiB of spaces, zlib-compressed (about 1/1000 the size)."""
    deflater = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    parts = [deflater.compress(b'"')]
    parts += [deflater.compress(chunk) for _ in range(inflated_mib)]
    parts.append(deflater.compress(b'"') + deflater.flush())
    return b"".join(parts)


def test_store_refuses_a_decompression_bomb_for_that_instance_alone() -> None:
    from durastate.backends.memory import MemoryBackend
    from durastate.core.records import Payload
    from durastate.core.store import StateStore

    bomb = _zlib_bomb(80)  # 80 MiB inflated: over the 64 MiB bound
    assert len(bomb) < 100_000
    store = StateStore(MemoryBackend())
    store.create_instance("bomb", name="wf")
    store.create_instance("fine", name="wf", custom_status={"ok": True})
    now = dt.datetime.now(dt.UTC)
    store.backend.write_custom_status("bomb", Payload(bomb, "json", "zlib"), etag=None, now=now)
    with pytest.raises(CorruptRecord, match="limit") as raised:
        store.get_custom_status("bomb")
    assert raised.value.instance_id == "bomb"
    assert store.get_custom_status("fine") == {"ok": True}

    # a store configured for larger payloads reads what its limits allow
    generous = StateStore(store.backend, max_payload_bytes=100 * 1024 * 1024)
    assert len(generous.get_custom_status("bomb")) == 80 * 1024 * 1024


def test_codec_inflate_bound_is_configurable() -> None:
    from durastate.core.records import Payload

    codec = PayloadCodec(JsonSerializer(), {}, max_inflated_bytes=1000)
    fits = Payload(zlib.compress(b'"' + b"x" * 998 + b'"'), "json", "zlib")
    assert codec.decode(fits, instance_id="i") == "x" * 998
    over = Payload(zlib.compress(b'"' + b"x" * 999 + b'"'), "json", "zlib")
    with pytest.raises(CorruptRecord, match="limit of 1000 bytes"):
        codec.decode(over, instance_id="i")


def test_pickle_safe_reused_pickler_keeps_each_payload_self_contained() -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    shared = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    first = serializer.dumps({"when": shared, "tag": "same"}, instance_id="i")
    second = serializer.dumps({"when": shared, "tag": "same"}, instance_id="i")
    for data in (second, first):  # read in any order: no memo reaches across payloads
        assert serializer.loads(data, instance_id="i") == {"when": shared, "tag": "same"}
    with pytest.raises(SerializationError):  # a refusal leaves the pickler usable
        serializer.dumps({"p": Point(1, 2)}, instance_id="i")
    assert serializer.loads(serializer.dumps([shared], instance_id="i"), instance_id="i") == [
        shared
    ]


def test_pickle_safe_pickles_written_in_several_parts_are_whole() -> None:
    from durastate.serializers.pickle_safe import _pickle_noting_globals

    # Past the 64 KiB frame size the pickler writes large buffers to its file on their own.
    value = {"raw": bytearray(b"\x01" * 200_000), "blob": b"\x02" * 150_000, "after": [1.5]}
    body, named = _pickle_noting_globals(value)
    assert body == pickle.dumps(value, protocol=5)
    assert named == frozenset()
    serializer = SafePickleSerializer({"k1": KEY})
    small = {"tag": "small", "n": [1, 2]}
    large_data = serializer.dumps(value, instance_id="i")
    small_data = serializer.dumps(small, instance_id="i")  # after a large one
    assert serializer.loads(small_data, instance_id="i") == small
    assert serializer.loads(large_data, instance_id="i") == value


class _PicklesAgain:
    """Pickling it pickles another value first, through the same serializer, in this thread."""

    def __init__(self, serializer: SafePickleSerializer) -> None:
        self.serializer = serializer
        self.inner: bytes = b""

    def __reduce__(self) -> Any:
        self.inner = self.serializer.dumps({"inner": [1, 2]}, instance_id="j")
        return (frozenset, (("outer",),))


def test_pickle_safe_a_reduce_that_pickles_again_gets_its_own_pickler() -> None:
    serializer = SafePickleSerializer({"k1": KEY})
    again = _PicklesAgain(serializer)
    data = serializer.dumps({"x": again, "y": [again, "shared"]}, instance_id="i")
    assert serializer.loads(data, instance_id="i") == {
        "x": frozenset({"outer"}),
        "y": [frozenset({"outer"}), "shared"],
    }
    assert serializer.loads(again.inner, instance_id="j") == {"inner": [1, 2]}


def test_pickle_safe_threads_never_share_a_pickler() -> None:
    import threading

    serializer = SafePickleSerializer({"k1": KEY})
    failures: list[str] = []

    def work(n: int) -> None:
        for k in range(300):
            value = {"thread": n, "k": k, "when": dt.date(2030, 1, 1 + k % 28), "pad": "x" * k}
            data = serializer.dumps(value, instance_id=f"i{n}")
            if serializer.loads(data, instance_id=f"i{n}") != value:
                failures.append(f"{n}/{k}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


class _NanMember(float, enum.Enum):
    NAN = float("nan")


class _DictSubclass(dict[str, Any]):
    pass


@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
@pytest.mark.parametrize(
    "wrap",
    [
        lambda f: {"a": None, "deep": [[[{"b": [(None, f)]}]]]},
        lambda f: [None, {"s": "null"}, f],
        lambda f: {"n": None, "sub": _DictSubclass(x=f)},
        lambda f: {"n": None, "later": [1, "two", {"three": 3.0}, [f]]},
    ],
    ids=["deep-plain", "list", "dict-subclass", "last-item"],
)
def test_json_refuses_non_finite_floats_next_to_nulls(wrap: Any, bad: float) -> None:
    with pytest.raises(SerializationError, match="NaN"):
        JsonSerializer().dumps(wrap(bad), instance_id="i")


def test_json_refuses_a_float_enum_member_that_is_nan() -> None:
    with pytest.raises(SerializationError, match="NaN"):
        JsonSerializer().dumps({"n": None, "e": _NanMember.NAN}, instance_id="i")


def test_json_keeps_extreme_finite_floats_next_to_nulls() -> None:
    value = {"n": None, "big": 1.7976931348623157e308, "tiny": -5e-324, "zero": -0.0, "t": (None,)}
    data = JsonSerializer().dumps(value, instance_id="i")
    assert orjson.loads(data) == {**value, "t": [None]}


def test_pickle_safe_signature_is_the_documented_hmac() -> None:
    import hmac

    serializer = SafePickleSerializer({"k1": KEY, "k2": "z" * 32})
    data = serializer.dumps({"a": [1.5, None]}, instance_id="inst-\u00e9")
    assert data[:7] == MAGIC + b"\x02k1"
    mac, body = data[7:39], data[39:]
    parts = (b"pickle-safe", b"k1", "inst-\u00e9".encode())
    message = b"".join(len(part).to_bytes(8, "big") + part for part in parts) + body
    assert mac == hmac.digest(KEY.encode(), message, "sha256")
    assert body == pickle.dumps({"a": [1.5, None]}, protocol=5)
