"""MessagePack: compact binary; carries bytes and integer keys that JSON cannot."""

from __future__ import annotations

from typing import Any

import msgpack

from durastate.errors import SerializationError
from durastate.serializers.base import Serializer, plain_default

#: Packable base types and how to get a subclass instance's plain value (what msgpack packs
#: without ``strict_types``: a str Enum member packs as its value, not as "E.A").
_BASE_VALUES: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),
    (bytes, bytes),
    (int, int.__int__),
    (float, float.__float__),
    (dict, dict),
    (list, list),
)


class _TupleFound(Exception):
    """Raised from the first packing attempt: the value holds a tuple (maybe as a key)."""


def _base_value(value: Any) -> Any:
    """A subclass of a packable type (a str or int Enum, an OrderedDict) as its base value,
    as msgpack packs it without ``strict_types``; models and dataclasses as dicts."""
    for base, plain in _BASE_VALUES:
        if isinstance(value, base):
            return plain(value)
    return plain_default(value)


def _no_tuples(value: Any) -> Any:
    if isinstance(value, tuple):
        raise _TupleFound
    return _base_value(value)


def _tuples_as_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return _base_value(value)


def _pack(value: Any, default: Any) -> bytes:
    data: bytes = msgpack.packb(
        value, use_bin_type=True, datetime=False, default=default, strict_types=True
    )
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


class MsgpackSerializer(Serializer):
    """What msgpack keeps and what it refuses.

    Kept exactly: ``None``, bools, str, bytes (distinct from str: ``use_bin_type``), ints
    up to 64 bits, floats (NaN and infinities too), lists, and dicts with str, int, float,
    bytes, bool or ``None`` keys. Converted: tuples read back as lists; pydantic models and
    dataclasses as dicts (models in pydantic's JSON mode); str/int Enum members and other
    subclasses of those types as their plain values. Refused with ``SerializationError`` at
    the call: a tuple used as a dict key (it would read back as an unhashable list),
    datetimes, sets, ints over 64 bits, other objects.
    """

    id = "msgpack"

    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        try:
            try:
                return _pack(value, _no_tuples)
            except _TupleFound:
                data = _pack(value, _tuples_as_lists)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"msgpack cannot serialize this value: {exc}") from None
        try:
            _unpack(data)  # only values with tuples get here: refuse what we could not read
        except TypeError:
            raise SerializationError(
                "msgpack cannot serialize a tuple as a dict key (it would read back as an "
                "unhashable list)"
            ) from None
        return data

    def loads(self, data: bytes, *, instance_id: str) -> Any:
        return _unpack(data)
