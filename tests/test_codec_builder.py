"""One codec builder: ``StateStore(backend, ...)`` and ``open_store(url, ...)`` encode and
decode alike for the same settings (writer, readers, compression)."""

from __future__ import annotations

from typing import Any

import pytest

from durastate import StateStore, open_store
from durastate.backends.memory import MemoryBackend
from durastate.core.codec import PayloadCodec, build_codec
from durastate.errors import ConfigurationError, MissingDependency, SerializationError
from durastate.registry import serializers
from durastate.serializers.pickle_safe import SafePickleSerializer

KEY = "codec-builder-key-0123456789"
VALUE: dict[str, Any] = {"percent": 40, "stage": "resize", "log": "x" * 300}


def _shape(codec: PayloadCodec) -> tuple[Any, ...]:
    return (
        type(codec.writer),
        {key: type(reader) for key, reader in codec.readers.items()},
        codec.compress_above,
        codec.max_inflated_bytes,
    )


SETTINGS: list[dict[str, Any]] = [
    {},
    {"serializer": "msgpack"},
    {"compress_above": 64},
    {"serializer": "msgpack", "compress_above": 0, "accept": ["msgpack"]},
    {"accept": ["json"]},
    {"accept": ["msgpack", "json"], "compress_above": 1024},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=repr)
def test_store_and_open_store_build_the_same_codec(settings: dict[str, Any]) -> None:
    by_hand = StateStore(MemoryBackend(), **settings).codec
    configured = open_store("memory://", **settings).codec
    assert _shape(by_hand) == _shape(configured)
    for writer, reader in ((by_hand, configured), (configured, by_hand)):
        payload = writer.encode(VALUE, "i")
        assert payload == reader.encode(VALUE, "i")  # the same bytes and envelope
        assert reader.decode(payload, instance_id="i") == VALUE


def test_signed_pickles_decode_alike_from_code_and_from_settings() -> None:
    by_hand = StateStore(MemoryBackend(), serializer=SafePickleSerializer({"k": KEY})).codec
    configured = open_store("memory://", serializer="pickle-safe", pickle_keys={"k": KEY}).codec
    assert _shape(by_hand) == _shape(configured)
    value = {1, 2, 3}
    assert configured.decode(by_hand.encode(value, "i"), instance_id="i") == value
    assert by_hand.decode(configured.encode(value, "i"), instance_id="i") == value
    # keys configured while writing json: their reader is on the default accept-list
    reader = open_store("memory://", pickle_keys={"k": KEY}).codec
    assert reader.decode(by_hand.encode(value, "i"), instance_id="i") == value
    strict = open_store("memory://", pickle_keys={"k": KEY}, accept=["json"]).codec
    with pytest.raises(SerializationError, match="pickle-safe"):
        strict.decode(by_hand.encode(value, "i"), instance_id="i")


def test_a_configured_key_that_is_unusable_is_an_error_not_a_silent_drop() -> None:
    """A short pickle key configured next to the json writer used to leave pickle-safe off
    the readers without a word: records signed with it then read as not accepted."""
    with pytest.raises(ConfigurationError, match="pickle-safe key") as raised:
        open_store("memory://", pickle_keys={"k": "too-short"})
    assert "too-short" not in str(raised.value)


def test_a_default_reader_without_its_extra_is_left_out_a_named_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_get = serializers.get

    def without_msgpack(name: str) -> Any:
        if name == "msgpack":
            raise MissingDependency("serializer 'msgpack'", "msgpack", "msgpack")
        return real_get(name)

    monkeypatch.setattr(serializers, "get", without_msgpack)
    assert set(StateStore(MemoryBackend()).codec.readers) == {"json"}
    assert set(open_store("memory://").codec.readers) == {"json"}
    assert set(build_codec().readers) == {"json"}
    with pytest.raises(MissingDependency, match=r"durastate\[msgpack\]"):
        StateStore(MemoryBackend(), accept=["json", "msgpack"])
    with pytest.raises(MissingDependency, match=r"durastate\[msgpack\]"):
        open_store("memory://", accept=["json", "msgpack"])
    with pytest.raises(MissingDependency):
        open_store("memory://", serializer="msgpack")
