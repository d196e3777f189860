"""The shortcuts of the hot paths (issue 10) keep every guarantee of the long way.

``set_custom_status`` and ``get_instance`` remember the last id they found valid (by
identity), the codec encodes plain JSON without the serializer's frame, and memory://
numbers its etags in one C call. Each test here breaks if a shortcut decides differently
from the path it replaces.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel

from durastate import StateStore
from durastate.backends.memory import MemoryBackend
from durastate.errors import InvalidInstanceId, SerializationError
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
