"""durastate: pluggable, measurable storage for workflow instance state and custom status."""

from __future__ import annotations

from durastate.core.async_backend import AsyncBackend
from durastate.core.async_store import AsyncStateStore
from durastate.core.backend import Backend
from durastate.core.models import InstanceMetadata, Page
from durastate.core.records import Capabilities, RuntimeStatus
from durastate.core.reporter import AsyncStatusReporter, StatusReporter
from durastate.core.store import NOT_SET, StateStore
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidInstanceId,
    MissingDependency,
    OutcomeUnknown,
    PayloadTooLarge,
    SerializationError,
)
from durastate.opening import open_async_store, open_backend, open_store
from durastate.registry import register_backend, register_serializer

__version__ = "0.1.0"

__all__ = [
    "NOT_SET",
    "AsyncBackend",
    "AsyncStateStore",
    "AsyncStatusReporter",
    "Backend",
    "BackendUnavailable",
    "Capabilities",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptRecord",
    "DurastateError",
    "InstanceExists",
    "InstanceMetadata",
    "InstanceNotFound",
    "InvalidArgument",
    "InvalidContinuationToken",
    "InvalidInstanceId",
    "MissingDependency",
    "OutcomeUnknown",
    "Page",
    "PayloadTooLarge",
    "RuntimeStatus",
    "SerializationError",
    "StateStore",
    "StatusReporter",
    "open_async_store",
    "open_backend",
    "open_store",
    "register_backend",
    "register_serializer",
]
