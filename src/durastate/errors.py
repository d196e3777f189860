"""The typed errors of durastate.

Every error names what was wrong (the instance, the serializer id, the setting) and never
carries a secret: messages are built from ids and sizes only, never from credentials.
"""

from __future__ import annotations


class DurastateError(Exception):
    """Base class of every error this library raises on purpose."""


class InstanceNotFound(DurastateError, KeyError):
    """No instance with that id exists (or it expired)."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"instance {instance_id!r} not found")

    def __str__(self) -> str:  # KeyError would otherwise quote the message again
        return str(self.args[0])


class InstanceExists(DurastateError):
    """create_instance found a live run with that id (create is insert-only)."""

    def __init__(self, instance_id: str, runtime_status: str | None = None) -> None:
        self.instance_id = instance_id
        self.runtime_status = runtime_status
        detail = f" (runtime status {runtime_status})" if runtime_status else ""
        super().__init__(f"instance {instance_id!r} already exists{detail}")


class ConcurrencyError(DurastateError):
    """The etag given with a write no longer matches the stored record."""

    def __init__(self, instance_id: str, expected_etag: str | None = None) -> None:
        self.instance_id = instance_id
        self.expected_etag = expected_etag
        super().__init__(
            f"instance {instance_id!r} was changed by another writer "
            f"(etag {expected_etag!r} is stale)"
        )


class PayloadTooLarge(DurastateError):
    """A serialized payload exceeds the configured or the backend's limit; nothing was written."""

    def __init__(self, instance_id: str, field: str, size: int, limit: int) -> None:
        self.instance_id = instance_id
        self.field = field
        self.size = size
        self.limit = limit
        super().__init__(
            f"{field} of instance {instance_id!r} is {size} bytes serialized, "
            f"over the limit of {limit} bytes"
        )


class SerializationError(DurastateError, ValueError):
    """A value could not be serialized, or a serializer id is unknown or not accepted."""


class CorruptRecord(DurastateError):
    """A stored record or payload cannot be decoded; other instances are unaffected."""

    def __init__(self, instance_id: str, reason: str) -> None:
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"stored record of instance {instance_id!r} is unreadable: {reason}")


class BackendUnavailable(DurastateError):
    """The backend could not be reached or kept failing within the configured time."""


class OutcomeUnknown(BackendUnavailable):
    """A write may have been applied, its answer was lost, and no retry could recognise it:
    it was not retried (a blind retry could apply it twice). Read the instance to see."""


class InvalidArgument(DurastateError, ValueError):
    """An argument of a call is of the wrong type or out of range (a workflow name that is not
    a string or too long, a naive datetime in a query, ...); refused before any I/O."""


class InvalidInstanceId(InvalidArgument):
    """An instance id is empty, too long, or not a string."""


class ConfigurationError(DurastateError, ValueError):
    """A URL, option or setting is wrong, or an optional dependency is missing."""


class InvalidContinuationToken(DurastateError, ValueError):
    """A continuation token was not produced by this backend for this query (forged,
    truncated, or from another backend or store)."""


class MissingDependency(ConfigurationError, ImportError):
    """A backend or serializer needs an extra that is not installed."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        self.what = what
        self.extra = extra
        self.module = module
        super().__init__(f"{what} needs the {module!r} package: pip install 'durastate[{extra}]'")


__all__ = [
    "BackendUnavailable",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptRecord",
    "DurastateError",
    "InstanceExists",
    "InstanceNotFound",
    "InvalidArgument",
    "InvalidContinuationToken",
    "InvalidInstanceId",
    "MissingDependency",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "SerializationError",
]
