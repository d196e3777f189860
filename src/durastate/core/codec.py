"""The envelope: value <-> Payload (bytes + serializer id + compression id).

Writes use the configured serializer; reads dispatch on the id stored with the payload,
never on today's configuration, and only for ids on the accept-list.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import SecretStr

from durastate.core.compression import DEFAULT_MAX_INFLATED_BYTES, inflate
from durastate.core.records import Payload
from durastate.errors import (
    CorruptRecord,
    MissingDependency,
    PayloadTooLarge,
    SerializationError,
)
from durastate.registry import serializer_class
from durastate.serializers.base import Serializer, SerializerSettings, plain_default
from durastate.serializers.json import (
    JsonSerializer,
    cannot_serialize,
    may_hide_non_finite,
    refuse_non_finite,
)

COMPRESSION_ZLIB = "zlib"
#: Readers a codec accepts when no accept-list is given (besides its writer, and
#: pickle-safe when signing keys are configured).
DEFAULT_READERS: Final = ("json", "msgpack")


def _plain_loads(reader: Serializer) -> Callable[[bytes], Any] | None:
    """A ``loads`` that needs no instance id, called without a frame of ours: plain JSON's
    is orjson's own. ``None`` for every other reader (they go through ``reader.loads``)."""
    return orjson.loads if type(reader) is JsonSerializer else None


class PayloadCodec:
    """Encodes with one serializer, decodes with any accepted one."""

    def __init__(
        self,
        writer: Serializer,
        readers: Mapping[str, Serializer],
        *,
        compress_above: int | None = None,
        max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    ) -> None:
        self.writer = writer
        self._dumps = writer.dumps  # bound once: encode runs on every write
        self._writer_id = writer.id
        #: plain JSON is encoded here with orjson's own call: a frame less per write
        self._plain_json = type(writer) is JsonSerializer
        self.readers = dict(readers)
        self.readers.setdefault(writer.id, writer)
        #: serializer id -> a ``loads(data)`` for uncompressed payloads (or None): readers
        #: that may call it directly must map its failures with `corrupt`, as decode does
        self.plain_loaders = {key: _plain_loads(reader) for key, reader in self.readers.items()}
        self.compress_above = compress_above
        #: A compressed payload may inflate to this many bytes, no more (decompression
        #: bombs); the store raises it to its own limits when they are larger.
        self.max_inflated_bytes = max_inflated_bytes

    def encode(
        self, value: Any, instance_id: str, field: str = "payload", limit: int | None = None
    ) -> Payload:
        """Serialize now, so a bad value fails at the caller; check ``limit`` before any I/O."""
        try:
            if self._plain_json:  # JsonSerializer.dumps, inline
                try:
                    data = orjson.dumps(value, default=plain_default)
                except TypeError as exc:
                    raise cannot_serialize(exc) from None
                if may_hide_non_finite(data):
                    refuse_non_finite(value, data)
            else:
                data = self._dumps(value, instance_id=instance_id)
        except SerializationError as exc:
            raise SerializationError(f"instance {instance_id!r}: {exc}") from None
        except RecursionError:
            raise SerializationError(
                f"instance {instance_id!r}: value is nested too deeply to serialize"
            ) from None
        if limit is not None and len(data) > limit:
            raise PayloadTooLarge(instance_id, field, len(data), limit)
        if self.compress_above is not None:
            return self.wrap(data)
        return Payload(data, self._writer_id)

    def wrap(self, data: bytes) -> Payload:
        """The envelope of bytes the writer produced: compressed above the threshold."""
        if self.compress_above is not None and len(data) > self.compress_above:
            return Payload(zlib.compress(data, 6), self._writer_id, COMPRESSION_ZLIB)
        return Payload(data, self._writer_id)

    def decode(self, payload: Payload, *, instance_id: str) -> Any:
        plain = self.plain_loaders.get(payload.serializer)
        if plain is not None and payload.compression is None:  # the common case
            try:
                return plain(payload.data)
            except Exception as exc:  # any decoder failure is this record's corruption
                raise self.corrupt(payload, instance_id, exc) from None
        reader = self.readers.get(payload.serializer)
        if reader is None:
            raise SerializationError(
                f"instance {instance_id!r} holds a payload written by serializer "
                f"{payload.serializer!r}, which is not on the accept-list "
                f"({', '.join(sorted(self.readers))})"
            )
        data = payload.data
        if payload.compression == COMPRESSION_ZLIB:
            data = inflate(
                data,
                container="zlib",
                instance_id=instance_id,
                what=f"{payload.encoding} payload",
                limit=self.max_inflated_bytes,
            )
        try:
            if payload.compression not in (None, COMPRESSION_ZLIB):
                raise ValueError(f"unknown compression {payload.compression!r}")
            return reader.loads(data, instance_id=instance_id)
        except Exception as exc:  # any decoder failure is this record's corruption
            raise self.corrupt(payload, instance_id, exc) from None

    @staticmethod
    def corrupt(payload: Payload, instance_id: str, exc: Exception) -> CorruptRecord:
        """The error for a payload its reader could not decode: this record's corruption."""
        return CorruptRecord(instance_id, f"{payload.encoding} payload: {exc}")


@dataclass
class NoSerializerSettings:
    """The settings of a store built in code without any: no signing keys, no allow-list."""

    pickle_keys: dict[str, SecretStr] = field(default_factory=dict)
    pickle_allow: list[str] = field(default_factory=list)


def default_reader_ids(writer_id: str, *, signing_keys: bool) -> list[str]:
    """The accept-list when none is configured: json, msgpack, the writer, and pickle-safe
    only when keys to check its signatures are configured."""
    ids = [*DEFAULT_READERS, writer_id]
    if signing_keys:
        ids.append("pickle-safe")
    return list(dict.fromkeys(ids))


def build_codec(
    serializer: str | Serializer = "json",
    accept: Iterable[str | Serializer] | None = None,
    *,
    compress_above: int | None = None,
    settings: SerializerSettings | None = None,
) -> PayloadCodec:
    """The one way a codec is built, for ``StateStore(...)`` and ``open_store(...)`` alike.

    The writer and every reader named by id come from the registry, configured by
    ``settings`` (signing keys, allow-list). Without an accept-list the readers are
    `default_reader_ids`, and a default one whose extra is missing (msgpack) is simply not
    offered; a reader the caller named must be available.
    """
    configured: SerializerSettings = settings if settings is not None else NoSerializerSettings()

    def build(item: str | Serializer) -> Serializer:
        if isinstance(item, Serializer):
            return item
        return serializer_class(item).from_settings(configured)

    writer = build(serializer)
    readers: dict[str, Serializer] = {writer.id: writer}
    named = accept is not None
    wanted: Iterable[str | Serializer] = (
        accept
        if accept is not None
        else default_reader_ids(writer.id, signing_keys=bool(configured.pickle_keys))
    )
    for item in wanted:
        if (item if isinstance(item, str) else item.id) in readers:
            continue
        try:
            reader = build(item)
        except MissingDependency:
            if named:
                raise
            continue
        readers.setdefault(reader.id, reader)
    return PayloadCodec(writer, readers, compress_above=compress_above)
