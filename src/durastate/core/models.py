"""What users get back: instance metadata with lazily decoded payloads, and query pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, PrivateAttr, TypeAdapter, computed_field

from durastate.core.records import InstanceRecord, Payload, RuntimeStatus

T = TypeVar("T")

Decoder = Callable[[Payload], Any]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(target: Any) -> TypeAdapter[Any]:
    """One TypeAdapter per target type: building one costs far more than validating."""
    adapter = _ADAPTERS.get(target)
    if adapter is None:
        adapter = _ADAPTERS[target] = TypeAdapter(target)
    return adapter


class InstanceMetadata(BaseModel):
    """One instance as a client sees it.

    Payloads decode on first access, so one corrupt payload raises ``CorruptRecord`` for
    that instance only, and reading custom status never needs input or output.
    ``input`` and ``output`` are ``None`` unless the read asked for payloads.
    """

    model_config = ConfigDict(frozen=True)

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    created_at: datetime
    last_updated_at: datetime
    custom_status_updated_at: datetime | None
    etag: str
    payloads_fetched: bool = False

    _payloads: dict[str, Payload | None] = PrivateAttr(default_factory=dict)
    _decode: Decoder | None = PrivateAttr(default=None)
    _values: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_record(
        cls, record: InstanceRecord, decode: Decoder, *, payloads_fetched: bool
    ) -> InstanceMetadata:
        metadata = cls(
            instance_id=record.instance_id,
            name=record.name,
            runtime_status=record.runtime_status,
            created_at=record.created_at,
            last_updated_at=record.last_updated_at,
            custom_status_updated_at=record.custom_status_updated_at,
            etag=record.etag,
            payloads_fetched=payloads_fetched,
        )
        metadata._payloads = {
            "custom_status": record.custom_status,
            "input": record.input,
            "output": record.output,
        }
        metadata._decode = decode
        return metadata

    def _value(self, field: str) -> Any:
        if field not in self._values:
            payload = self._payloads.get(field)
            if payload is None or self._decode is None:
                return None
            self._values[field] = self._decode(payload)
        return self._values[field]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def custom_status(self) -> Any:
        """The plain value (dict, list, str, number, bool or None)."""
        return self._value("custom_status")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def input(self) -> Any:
        return self._value("input")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def output(self) -> Any:
        return self._value("output")

    @property
    def has_custom_status(self) -> bool:
        """False when this run never set a custom status (it reads as ``None``)."""
        return self._payloads.get("custom_status") is not None

    def read_custom_status_as(self, target: type[T]) -> T:
        """Validate the custom status into a pydantic model or any TypeAdapter-able type."""
        return cast(T, _adapter(target).validate_python(self.custom_status))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query; pass ``continuation`` back to get the next one."""

    items: Sequence[InstanceMetadata]
    continuation: str | None = None

    def __iter__(self) -> Iterator[InstanceMetadata]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
