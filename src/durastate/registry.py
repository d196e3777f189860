"""Which backend serves a URL scheme, and which serializer an id names.

Built-ins are listed lazily (module path + the extra that provides their SDK), as fsspec's
``known_implementations`` does, so importing durastate never imports a cloud SDK. Plugins
come from the entry-point groups ``durastate.backends`` and ``durastate.serializers``; an
entry point never silently replaces a built-in (``register(..., clobber=True)`` does, on
purpose, in code).
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from durastate.errors import ConfigurationError, MissingDependency

if TYPE_CHECKING:
    from durastate.core.backend import Backend
    from durastate.serializers.base import Serializer

log = logging.getLogger(__name__)

BACKEND_GROUP = "durastate.backends"
SERIALIZER_GROUP = "durastate.serializers"


@dataclass(frozen=True)
class Known:
    """A lazily imported implementation: ``module:attribute``, and the extra it needs."""

    target: str
    extra: str | None = None
    requires: str | None = None  # the top-level module the extra installs
    origin: str = "built-in"

    def load(self, what: str) -> Any:
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or ""
            if (
                self.extra
                and self.requires
                and missing.split(".")[0] == self.requires.split(".")[0]
            ):
                raise MissingDependency(what, self.extra, self.requires) from None
            raise ConfigurationError(f"{what} could not be imported: {exc}") from exc
        try:
            return functools.reduce(getattr, attribute.split("."), module)
        except AttributeError:
            raise ConfigurationError(
                f"{what}: {module_name!r} has no attribute {attribute!r}"
            ) from None


BUILTIN_BACKENDS: dict[str, Known] = {
    "memory": Known("durastate.backends.memory:MemoryBackend"),
    "sqlite": Known("durastate.backends.sqlite:SQLiteBackend"),
    "azure-tables": Known(
        "durastate.backends.azure_tables:AzureTablesBackend", "azure", "azure.data.tables"
    ),
    "dynamodb": Known("durastate.backends.dynamodb:DynamoDBBackend", "aws", "boto3"),
    "s3": Known("durastate.backends.s3:S3Backend", "aws", "boto3"),
    "redis": Known("durastate.backends.redis:RedisBackend", "redis", "redis"),
    "rediss": Known("durastate.backends.redis:RedisBackend", "redis", "redis"),
    "unix": Known("durastate.backends.redis:RedisBackend", "redis", "redis"),
}

BUILTIN_SERIALIZERS: dict[str, Known] = {
    "json": Known("durastate.serializers.json:JsonSerializer"),
    "msgpack": Known("durastate.serializers.msgpack:MsgpackSerializer", "msgpack", "msgpack"),
    "pickle-safe": Known("durastate.serializers.pickle_safe:SafePickleSerializer"),
}


class _Registry:
    """One table of names -> implementations, filled from built-ins and entry points."""

    def __init__(self, kind: str, group: str, builtins: dict[str, Known]) -> None:
        self.kind = kind
        self.group = group
        self._known: dict[str, Known] = dict(builtins)
        self._loaded: dict[str, Any] = {}
        self._discovered = False
        self._lock = threading.Lock()

    def register(self, name: str, implementation: Any, *, clobber: bool = False) -> None:
        """Register an implementation in code; replacing an existing name needs ``clobber``."""
        self._discover()  # an installed plugin of that name counts as existing
        with self._lock:
            if not clobber and (name in self._known or name in self._loaded):
                raise ConfigurationError(
                    f"{self.kind} {name!r} is already registered; pass clobber=True to replace it"
                )
            self._known.pop(name, None)
            self._loaded[name] = implementation

    def _discover(self) -> None:
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            for entry in entry_points(group=self.group):
                self._add_entry_point(entry)
            self._discovered = True

    def _add_entry_point(self, entry: EntryPoint) -> None:
        if entry.name in self._known or entry.name in self._loaded:
            log.warning(
                "ignoring entry point %s=%s in %s: %r is already registered (%s)",
                entry.name,
                entry.value,
                self.group,
                entry.name,
                self._known[entry.name].origin if entry.name in self._known else "in code",
            )
            return
        dist = entry.dist.name if entry.dist is not None else "unknown distribution"
        self._known[entry.name] = Known(f"{entry.module}:{entry.attr}", origin=f"plugin {dist}")

    def names(self) -> list[str]:
        self._discover()
        return sorted({*self._known, *self._loaded})

    def origin(self, name: str) -> str:
        self._discover()
        if name in self._loaded and name not in self._known:
            return "registered in code"
        return self._known[name].origin

    def get(self, name: str) -> Any:
        self._discover()
        if name in self._loaded:
            return self._loaded[name]
        known = self._known.get(name)
        if known is None:
            raise ConfigurationError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            )
        implementation = known.load(f"{self.kind} {name!r}")
        with self._lock:
            self._loaded[name] = implementation
        return implementation


backends = _Registry("backend", BACKEND_GROUP, BUILTIN_BACKENDS)
serializers = _Registry("serializer", SERIALIZER_GROUP, BUILTIN_SERIALIZERS)


def register_backend(scheme: str, backend_class: type[Backend], *, clobber: bool = False) -> None:
    """Register a backend class for a URL scheme in code (tests, applications)."""
    backends.register(scheme, backend_class, clobber=clobber)


def register_serializer(
    serializer_id: str, serializer_class: type[Serializer], *, clobber: bool = False
) -> None:
    """Register a serializer class under its id in code."""
    serializers.register(serializer_id, serializer_class, clobber=clobber)


def backend_class(scheme: str) -> type[Backend]:
    cls: type[Backend] = backends.get(scheme)
    return cls


def serializer_class(serializer_id: str) -> type[Serializer]:
    cls: type[Serializer] = serializers.get(serializer_id)
    return cls


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        # the text is not echoed: a misplaced connection string would carry its key
        raise ConfigurationError(
            f"not a store URL: expected scheme://... (got {len(url)} characters without '://')"
        )
    return scheme.lower()
