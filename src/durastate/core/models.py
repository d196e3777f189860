"""What users get back: instance metadata with lazily decoded payloads, and query pages."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import orjson
from pydantic import TypeAdapter, ValidationError

from durastate.core.records import InstanceRecord, Payload, RuntimeStatus
from durastate.errors import CorruptRecord, SerializationError
from durastate.serializers.json import JsonSerializer

if TYPE_CHECKING:
    from durastate.core.codec import PayloadCodec

T = TypeVar("T")

Decoder = Callable[[Payload], Any]

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(target: Any) -> TypeAdapter[Any]:
    """One TypeAdapter per target type: building one costs far more than validating."""
    adapter = _ADAPTERS.get(target)
    if adapter is None:
        adapter = _ADAPTERS[target] = TypeAdapter(target)
    return adapter


class _Undecoded:
    """Marks a payload slot that has not been decoded yet (``None`` is a real value)."""

    def __repr__(self) -> str:
        return "<undecoded>"


_UNDECODED: Final = _Undecoded()

#: The names ``model_dump`` and ``to_dict`` export, in order.
FIELDS: Final = (
    "instance_id",
    "name",
    "runtime_status",
    "created_at",
    "last_updated_at",
    "custom_status_updated_at",
    "etag",
    "payloads_fetched",
    "custom_status",
    "input",
    "output",
)


class InstanceMetadata:
    """One instance as a client sees it: read-only fields over the stored record.

    A plain slots class, not a pydantic model: one is built per read and per query item, so
    it only keeps the record and decodes nothing until asked. Payloads decode on first
    access, so one corrupt payload raises ``CorruptRecord`` for that instance only, and
    reading custom status never needs input or output. ``input`` and ``output`` are
    ``None`` unless the read asked for payloads.
    """

    __slots__ = ("_codec", "_custom_status", "_fetched", "_input", "_output", "_record")

    def __init__(
        self, record: InstanceRecord, codec: PayloadCodec, payloads_fetched: bool = False
    ) -> None:
        self._record = record
        self._codec = codec
        self._fetched = payloads_fetched
        self._custom_status: Any = _UNDECODED
        # ``_input`` and ``_output`` stay unset until first read (two stores less per read)

    @classmethod
    def from_record(
        cls, record: InstanceRecord, codec: PayloadCodec, *, payloads_fetched: bool
    ) -> InstanceMetadata:
        return cls(record, codec, payloads_fetched=payloads_fetched)

    # -- fields (read-only: properties without setters) -----------------------------------

    @property
    def payloads_fetched(self) -> bool:
        """Whether this read asked for input and output."""
        return self._fetched

    @property
    def instance_id(self) -> str:
        return self._record.instance_id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def runtime_status(self) -> RuntimeStatus:
        return self._record.runtime_status

    @property
    def created_at(self) -> datetime:
        return self._record.created_at

    @property
    def last_updated_at(self) -> datetime:
        return self._record.last_updated_at

    @property
    def custom_status_updated_at(self) -> datetime | None:
        return self._record.custom_status_updated_at

    @property
    def etag(self) -> str:
        return self._record.etag

    # -- payloads -------------------------------------------------------------------------

    def _decode(self, payload: Payload | None) -> Any:
        if payload is None:
            return None
        return self._codec.decode(payload, instance_id=self._record.instance_id)

    @property
    def custom_status(self) -> Any:
        """The plain value (dict, list, str, number, bool or None)."""
        value = self._custom_status
        if value is not _UNDECODED:
            return value
        payload = self._record.custom_status
        if payload is None:
            value = None
        elif payload.compression is None and (
            plain := self._codec.plain_loaders.get(payload.serializer)
        ):  # plain JSON: decoded here, one frame less on every read
            try:
                value = plain(payload.data)
            except Exception as exc:
                raise self._codec.corrupt(payload, self._record.instance_id, exc) from None
        else:
            value = self._codec.decode(payload, instance_id=self._record.instance_id)
        self._custom_status = value
        return value

    @property
    def input(self) -> Any:
        value = getattr(self, "_input", _UNDECODED)
        if value is _UNDECODED:
            value = self._input = self._decode(self._record.input)
        return value

    @property
    def output(self) -> Any:
        value = getattr(self, "_output", _UNDECODED)
        if value is _UNDECODED:
            value = self._output = self._decode(self._record.output)
        return value

    @property
    def has_custom_status(self) -> bool:
        """False when this run never set a custom status (it reads as ``None``)."""
        return self._record.custom_status is not None

    def read_custom_status_as(self, target: type[T]) -> T:
        """Validate the custom status into a pydantic model or any TypeAdapter-able type.

        Uncompressed JSON is validated straight from the stored bytes (no dict in between);
        anything else is decoded first. A value of the wrong shape is a
        ``SerializationError``; bytes that are not JSON are this record's ``CorruptRecord``.
        """
        adapter = _adapter(target)
        payload = self._record.custom_status
        try:
            if (
                payload is not None
                and payload.compression is None
                and self._custom_status is _UNDECODED
                and type(self._codec.readers.get(payload.serializer)) is JsonSerializer
            ):
                return cast(T, adapter.validate_json(payload.data))
            return cast(T, adapter.validate_python(self.custom_status))
        except ValidationError as exc:
            raise self._validation_error(target, exc) from None

    def _validation_error(self, target: Any, exc: ValidationError) -> Exception:
        instance_id = self._record.instance_id
        errors = exc.errors(include_url=False, include_input=False)
        if any(error["type"] == "json_invalid" for error in errors):
            return CorruptRecord(instance_id, f"json payload: {errors[0]['msg']}")
        where = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in errors[:3]
        )
        name = getattr(target, "__name__", repr(target))
        return SerializationError(
            f"custom status of instance {instance_id!r} is not a valid {name}: {where}"
        )

    # -- export ---------------------------------------------------------------------------

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] = "python",
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """The fields and decoded payloads as a dict (pydantic's name, kept for callers).

        ``mode="json"`` gives JSON types (ISO timestamps, status strings); decoding a
        corrupt payload raises ``CorruptRecord`` as the property would.
        """
        names = [
            name
            for name in FIELDS
            if (include is None or name in include) and (exclude is None or name not in exclude)
        ]
        data = {name: getattr(self, name) for name in names}
        if mode == "json":
            return cast(dict[str, Any], orjson.loads(orjson.dumps(data, default=str)))
        return data

    to_dict = model_dump

    def model_dump_json(self, **options: Any) -> str:
        """The ``model_dump(mode="json")`` dict as a JSON string."""
        return orjson.dumps(self.model_dump(mode="json", **options)).decode()

    def __repr__(self) -> str:
        record = self._record
        return (
            f"InstanceMetadata(instance_id={record.instance_id!r}, name={record.name!r}, "
            f"runtime_status={record.runtime_status.value!r}, etag={record.etag!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceMetadata):
            return NotImplemented
        return (
            self._record == other._record
            and self._fetched == other._fetched
            and self._codec is other._codec
        )

    def __hash__(self) -> int:
        return hash((self._record.instance_id, self._record.etag))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query; pass ``continuation`` back to get the next one."""

    items: Sequence[InstanceMetadata]
    continuation: str | None = None

    def __iter__(self) -> Iterator[InstanceMetadata]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
