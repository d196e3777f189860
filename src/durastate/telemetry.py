"""OpenTelemetry spans and metrics for store calls (extra ``durastate[otel]``).

Zero cost unless used: a store is instrumented only when the OpenTelemetry API is installed
and an application configured a tracer or meter provider when the store was built (or when
it asks with ``telemetry=True``). An instrumented store shadows its public methods with
traced ones on that one object; an uninstrumented store runs the plain methods, untouched.

Each store call is one span, ``durastate.<call>``, whose children are one span per backend
request (``durastate.backend.<request>``); spans that botocore, azure-core or psycopg
instrumentation make nest under those. Attributes carry the backend scheme, serializer,
instance id, payload bytes, requests made, etag conflicts, retries and whether a write was
skipped as unchanged: never a payload, a URL or an option (which may hold a secret).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from durastate.errors import ConcurrencyError, DurastateError, MissingDependency

if TYPE_CHECKING:
    from datetime import datetime

    from durastate.core.async_store import AsyncStateStore
    from durastate.core.models import InstanceMetadata
    from durastate.core.store import StateStore

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME: Final = "durastate"

#: The store calls that get a span (their own names, after ``durastate.``).
STORE_CALLS: Final = (
    "create_instance",
    "set_custom_status",
    "write_custom_status_payload",
    "set_runtime_status",
    "update",
    "get_instance",
    "get_many",
    "query",
    "count",
    "purge",
    "purge_by",
    "purge_expired",
)

#: The async store's calls that get a span (the same names; the rest are sync-only).
ASYNC_STORE_CALLS: Final = tuple(
    call for call in STORE_CALLS if call != "write_custom_status_payload"
)

#: The backend requests that get a child span and count as requests made.
BACKEND_CALLS: Final = (
    "create",
    "read",
    "read_many",
    "write_custom_status",
    "write_runtime_status",
    "delete",
    "query",
    "count",
    "purge_by",
    "purge_expired",
)

_UNCONFIGURED_PROVIDERS: Final = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"}
)


def provider_configured() -> bool:
    """True when the OpenTelemetry API is installed and a tracer or meter provider is set."""
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        return False
    return (
        type(trace.get_tracer_provider()).__name__ not in _UNCONFIGURED_PROVIDERS
        or type(metrics.get_meter_provider()).__name__ not in _UNCONFIGURED_PROVIDERS
    )


class _CallStats:
    """What the backend requests of one store call add up to (kept in a context variable)."""

    __slots__ = ("bytes", "conflicts", "requests", "skipped")

    def __init__(self) -> None:
        self.requests = 0
        self.conflicts = 0
        self.bytes = 0
        self.skipped = 0


_current: contextvars.ContextVar[_CallStats | None] = contextvars.ContextVar(
    "durastate_call_stats", default=None
)


class StoreTelemetry:
    """The tracer, the meter and the instruments of one store."""

    def __init__(
        self,
        backend_scheme: str,
        serializer_id: str,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            raise MissingDependency("telemetry", "otel", "opentelemetry-api") from None
        from durastate import __version__

        self._trace = trace
        self.tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self.attributes: dict[str, str] = {
            "durastate.backend": backend_scheme or "unknown",
            "durastate.serializer": serializer_id,
        }
        self.updates = meter.create_counter(
            "durastate.updates", unit="{update}", description="custom-status updates asked for"
        )
        self.bytes_written = meter.create_counter(
            "durastate.bytes_written", unit="By", description="custom-status bytes written"
        )
        self.conflicts = meter.create_counter(
            "durastate.conflicts", unit="{conflict}", description="writes refused: stale etag"
        )
        self.skipped = meter.create_counter(
            "durastate.skipped_writes",
            unit="{write}",
            description="custom-status writes skipped because the bytes were unchanged",
        )
        self.reports = meter.create_counter(
            "durastate.reporter.reports", unit="{report}", description="values reported"
        )
        self.reporter_writes = meter.create_counter(
            "durastate.reporter.writes",
            unit="{write}",
            description="writes the status reporters made for those reports",
        )
        self.watch_latency = meter.create_histogram(
            "durastate.watch.latency",
            unit="s",
            description="from a change's write to its delivery to a watcher",
        )

    @contextmanager
    def store_span(self, call: str, instance_id: str | None) -> Iterator[_CallStats]:
        """One span for one store call, with the request counts its backend calls add."""
        stats = _CallStats()
        parent = _current.get()  # update() calls get_instance and set_custom_status
        token = _current.set(stats)
        attributes: dict[str, Any] = dict(self.attributes)
        if instance_id is not None:
            attributes["durastate.instance_id"] = instance_id
        try:
            with self.tracer.start_as_current_span(
                f"durastate.{call}", attributes=attributes
            ) as span:
                try:
                    yield stats
                finally:
                    span.set_attribute("durastate.requests", stats.requests)
                    span.set_attribute("durastate.etag_conflicts", stats.conflicts)
                    if stats.bytes:
                        span.set_attribute("durastate.bytes", stats.bytes)
                    if call in ("set_custom_status", "write_custom_status_payload", "update"):
                        span.set_attribute("durastate.skipped_unchanged", stats.skipped > 0)
                    if call == "update":
                        span.set_attribute("durastate.retries", stats.conflicts)
        finally:
            _current.reset(token)
            if parent is not None:
                parent.requests += stats.requests
                parent.conflicts += stats.conflicts
                parent.bytes += stats.bytes
                parent.skipped += stats.skipped

    def backend_call(self, request: str, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method`` (a bound backend method) in a child span, counted for its store call."""
        tracer = self.tracer
        name = f"durastate.backend.{request}"
        attributes = self.attributes

        @functools.wraps(method)
        def traced(*args: Any, **kwargs: Any) -> Any:
            stats = self._request_started(request)
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                try:
                    result = method(*args, **kwargs)
                except ConcurrencyError:
                    self._conflict(span, stats)
                    raise
                self._request_done(request, args, result, span, stats)
                return result

        return traced

    def async_backend_call(
        self, request: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        """`backend_call` for a coroutine method of an `AsyncBackend` (the same span, the
        same counts: one set of rules)."""
        tracer = self.tracer
        name = f"durastate.backend.{request}"
        attributes = self.attributes

        @functools.wraps(method)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            stats = self._request_started(request)
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                try:
                    result = await method(*args, **kwargs)
                except ConcurrencyError:
                    self._conflict(span, stats)
                    raise
                self._request_done(request, args, result, span, stats)
                return result

        return traced

    def _request_started(self, request: str) -> _CallStats | None:
        stats = _current.get()
        if stats is not None:
            stats.requests += 1
        if request == "write_custom_status":
            self.updates.add(1, self.attributes)
        return stats

    def _conflict(self, span: Any, stats: _CallStats | None) -> None:
        span.set_attribute("durastate.etag_conflict", True)
        if stats is not None:
            stats.conflicts += 1
        self.conflicts.add(1, self.attributes)

    def _request_done(
        self, request: str, args: tuple[Any, ...], result: Any, span: Any, stats: _CallStats | None
    ) -> None:
        if request == "write_custom_status":
            self._count_status_write(args, result, span, stats)

    def _count_status_write(
        self, args: tuple[Any, ...], result: Any, span: Any, stats: _CallStats | None
    ) -> None:
        size = len(args[1].data)
        span.set_attribute("durastate.bytes", size)
        written = bool(getattr(result, "written", True))
        span.set_attribute("durastate.written", written)
        if written:
            self.bytes_written.add(size, self.attributes)
        else:
            self.skipped.add(1, self.attributes)
        if stats is not None:
            stats.bytes += size
            stats.skipped += not written

    def record_reporter(self, reports: int, writes: int) -> None:
        """A status reporter's totals: how many reports its writes coalesced."""
        self.reports.add(reports, self.attributes)
        self.reporter_writes.add(writes, self.attributes)

    def record_watch_latency(self, seconds: float) -> None:
        self.watch_latency.record(seconds, self.attributes)

    def watch_delivery(
        self, clock: Callable[[], datetime]
    ) -> Callable[[InstanceMetadata], None]:
        """What a watcher calls as it hands over a change: records how long after its write
        (the later of ``last_updated_at`` and ``custom_status_updated_at``) by the store's
        ``clock``, never below zero when another machine's clock runs ahead."""

        def delivered(item: InstanceMetadata) -> None:
            changed_at = item.last_updated_at
            status_at = item.custom_status_updated_at
            if status_at is not None and status_at > changed_at:
                changed_at = status_at
            self.record_watch_latency(max((clock() - changed_at).total_seconds(), 0.0))

        return delivered


def _store_call(
    telemetry: StoreTelemetry, call: str, method: Callable[..., Any]
) -> Callable[..., Any]:
    @functools.wraps(method)
    def traced(*args: Any, **kwargs: Any) -> Any:
        instance_id = args[0] if args and isinstance(args[0], str) else None
        with telemetry.store_span(call, instance_id):
            try:
                return method(*args, **kwargs)
            except DurastateError as exc:
                telemetry._trace.get_current_span().set_attribute(
                    "durastate.error", type(exc).__name__
                )
                raise

    return traced


def _async_store_call(
    telemetry: StoreTelemetry, call: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        instance_id = args[0] if args and isinstance(args[0], str) else None
        with telemetry.store_span(call, instance_id):
            try:
                return await method(*args, **kwargs)
            except DurastateError as exc:
                telemetry._trace.get_current_span().set_attribute(
                    "durastate.error", type(exc).__name__
                )
                raise

    return traced


def _instrument_async(
    store: AsyncStateStore, tracer_provider: Any, meter_provider: Any
) -> StoreTelemetry:
    """`instrument` for an `AsyncStateStore`: its sync face's telemetry (which traces the
    sync backend an adapter calls, and counts its reporters), its coroutines shadowed with
    traced ones, and a native async backend's requests traced too."""
    from durastate.core.async_backend import SyncBackendAdapter

    if store.telemetry is not None:
        return store.telemetry
    telemetry = instrument(
        store.store, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    for call in ASYNC_STORE_CALLS:
        method = getattr(store, call, None)
        if method is not None:
            setattr(store, call, _async_store_call(telemetry, call, method))
    backend = store.backend
    if isinstance(backend, SyncBackendAdapter):  # its calls run the sync backend's methods
        _trace_backend(telemetry, backend.sync)
    elif not getattr(backend, "_durastate_traced", False):
        for request in BACKEND_CALLS:
            method = getattr(backend, request, None)
            if method is not None:
                setattr(backend, request, telemetry.async_backend_call(request, method))
        backend._durastate_traced = True  # type: ignore[attr-defined]
    store.telemetry = telemetry
    return telemetry


def _trace_backend(telemetry: StoreTelemetry, backend: Any) -> None:
    if getattr(backend, "_durastate_traced", False):  # a backend shared by two stores
        return
    for request in BACKEND_CALLS:
        method = getattr(backend, request, None)
        if method is not None:
            setattr(backend, request, telemetry.backend_call(request, method))
    backend._durastate_traced = True


def instrument(
    store: StateStore | AsyncStateStore,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> StoreTelemetry:
    """Trace this one store: shadow its public calls (and its backend's) with traced ones.

    Stores built while a provider is configured call this themselves; call it for a store
    built before, or with providers of your own (the global ones by default). An
    `AsyncStateStore` gets the same spans and metrics, from its coroutines.
    """
    from durastate.core.async_store import AsyncStateStore

    if isinstance(store, AsyncStateStore):
        return _instrument_async(store, tracer_provider, meter_provider)
    if store.telemetry is not None:
        return store.telemetry
    backend = store.backend
    telemetry = StoreTelemetry(
        type(backend).scheme,
        store.codec.writer.id,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    for call in STORE_CALLS:
        method = getattr(store, call, None)
        if method is not None:
            setattr(store, call, _store_call(telemetry, call, method))
    _trace_backend(telemetry, backend)
    store.telemetry = telemetry
    log.debug(
        "telemetry on for a %s store (serializer %s)",
        telemetry.attributes["durastate.backend"],
        telemetry.attributes["durastate.serializer"],
    )
    return telemetry
