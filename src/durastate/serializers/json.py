"""JSON via orjson: fast, UTF-8, readable in storage explorers."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import orjson

from durastate.errors import SerializationError
from durastate.serializers.base import Serializer, plain_default

_has_null = re.compile(rb"null").search  # measured faster than `b"null" in data`

_NESTED = frozenset({dict, list, tuple})


def _is_model(value: Any) -> bool:
    return hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None))


_SCALARS = frozenset({str, int, bool, type(None)})


def _non_finite_float(value: Any) -> bool:
    """True when a NaN or infinity sits anywhere in ``value``, models and dataclasses too."""
    todo = [value]
    for item in todo:  # grows as containers are opened
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float or isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif kind is dict or isinstance(item, dict):
            todo.extend(item.values())
        elif kind is list or kind is tuple or isinstance(item, list | tuple):
            todo.extend(item)
        elif _is_model(item):
            todo.append(item.model_dump())  # python mode: floats stay floats
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo.extend(getattr(item, field.name) for field in dataclasses.fields(item))
    return False


def _hides_non_finite(value: Any, data: bytes) -> bool:
    """orjson writes NaN and infinities as ``null``: was any ``null`` in ``data`` one of them?

    Reading ``data`` back and comparing runs in C: when the result equals the value, every
    ``null`` was a ``None`` (a NaN would compare unequal to the ``None`` read back). Only
    values that do not compare equal (tuples, models, dataclasses, datetimes, or a real NaN)
    are walked in Python.
    """
    plain = value if type(value) is dict or not _is_model(value) else value.model_dump()
    return orjson.loads(data) != plain and _non_finite_float(plain)


NON_FINITE = "json cannot serialize NaN or infinity exactly"

#: Whether encoded bytes hold a ``null`` that might stand for a NaN or an infinity.
may_hide_non_finite = _has_null


def refuse_non_finite(value: Any, data: bytes) -> None:
    """``SerializationError`` when a ``null`` in ``data`` (orjson's output for ``value``)
    stands for a NaN or an infinity; called only when `may_hide_non_finite` says so.

    A tree of plain dicts, lists, tuples and scalars is walked once, here (cheaper than
    reading ``data`` back and comparing, and one frame: it runs on every write of a status
    with a ``None`` in it). Only exact types are trusted, so nothing can hide a float behind
    an overridden ``values()`` or ``__iter__``; ``x - x`` is ``0.0`` for every finite float
    and NaN (truthy) for NaN and the infinities. Any other type (a model, a dataclass, a
    subclass, a datetime) sends the value the general way.
    """
    if type(value) in _NESTED:
        todo: list[Any] = [value]
        for node in todo:  # grows as containers are opened
            for item in node.values() if type(node) is dict else node:
                kind = type(item)
                if kind in _SCALARS:
                    continue
                if kind is float:
                    if item - item:
                        raise SerializationError(NON_FINITE)
                elif kind in _NESTED:
                    todo.append(item)
                else:
                    break  # a type the walk cannot decide
            else:
                continue
            break
        else:
            return  # walked to the end: no NaN, no infinity
    if _hides_non_finite(value, data):
        raise SerializationError(NON_FINITE)


def cannot_serialize(exc: Exception) -> SerializationError:
    """The error for a value orjson refused (its ``TypeError``)."""
    return SerializationError(f"json cannot serialize this value: {exc}")


class JsonSerializer(Serializer):
    """JSON types round-trip exactly; other values are converted the way orjson does.

    Kept exactly: ``None``, bools, str, ints up to 64 bits, finite floats, lists and dicts
    with str keys. Converted (they read back as plain JSON): tuples to lists, pydantic models
    and dataclasses to dicts, ``datetime``/``date``/``time`` to ISO 8601 strings, ``UUID`` to
    its string, ``Enum`` members to their values. Refused with ``SerializationError`` at the
    call, never changed in storage: NaN and infinities (anywhere, models and dataclasses
    included), non-str keys, integers over 64 bits, bytes, lone surrogates, other objects.
    """

    id = "json"

    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        try:
            data = orjson.dumps(value, default=plain_default)
        except TypeError as exc:
            raise cannot_serialize(exc) from None
        if may_hide_non_finite(data):  # orjson writes NaN and the infinities as null
            refuse_non_finite(value, data)
        return data

    def loads(self, data: bytes, *, instance_id: str) -> Any:
        return orjson.loads(data)
