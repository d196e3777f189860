"""The serializer interface: values <-> bytes, under a stable id stored with every payload."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol, Self

from pydantic import SecretStr


class Serializer(ABC):
    """Turns a value into bytes and back.

    ``id`` is written next to every payload, so records stay readable after the configured
    serializer changes. ``dumps`` raises ``SerializationError`` for a value it cannot encode
    exactly; ``loads`` raises any exception for bytes it cannot decode (the store reports it
    as ``CorruptRecord`` of that instance). ``instance_id`` lets a signed format bind a
    payload to its instance; plain formats ignore it.
    """

    id: ClassVar[str]

    @abstractmethod
    def dumps(self, value: Any, *, instance_id: str) -> bytes:
        """Encode ``value``; never loses information silently."""

    @abstractmethod
    def loads(self, data: bytes, *, instance_id: str) -> Any:
        """Decode bytes this serializer (any version of it) wrote."""

    @classmethod
    def from_settings(cls, settings: SerializerSettings) -> Self:
        """Build from settings; plain formats need none."""
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"


def plain_default(value: Any) -> Any:
    """The ``default`` hook for JSON-like formats: pydantic models and dataclasses as dicts."""
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and hasattr(type(value), "model_fields"):
        return model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Type is not serializable: {type(value).__name__}")


class SerializerSettings(Protocol):
    """The part of the settings a serializer may read (keys, allow-lists)."""

    pickle_keys: dict[str, SecretStr]
    pickle_allow: list[str]
