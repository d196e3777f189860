"""Serializers: exact round trips, eager refusal, and pickle-safe's two locks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from durastate.core.codec import PayloadCodec
from durastate.errors import ConfigurationError, CorruptRecord, SerializationError
from durastate.serializers.json import JsonSerializer
from durastate.serializers.msgpack import MsgpackSerializer
from durastate.serializers.pickle_safe import PayloadRejected, SafePickleSerializer

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
