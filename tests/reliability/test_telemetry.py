"""OpenTelemetry: the span tree of store calls on every backend, metrics, and nothing leaked.

Spans go to the SDK's in-memory exporter through providers given to `instrument` (the
global providers stay unset, so the rest of the suite runs uninstrumented).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durastate import open_async_store, open_store
from durastate.core.async_store import AsyncStateStore
from durastate.core.records import RuntimeStatus
from durastate.core.store import StateStore
from durastate.errors import ConcurrencyError
from durastate.telemetry import instrument
from durastate.testing.conformance import FakeClock

from .backends import BackendSpec, store_object, sync_face, unique

SECRET_STATUS = "s3cr3t-payload-7f1e"  # a payload value no attribute may carry


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def children(self, parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        return [
            span.name
            for span in self.spans()
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]

    def metrics(self) -> dict[str, float]:
        data = self.reader.get_metrics_data()
        totals: dict[str, float] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value: float = getattr(point, "value", 0) or getattr(point, "count", 0)
                        totals[metric.name] = totals.get(metric.name, 0.0) + value
        return totals


@pytest.fixture
def traced() -> Iterator[Traced]:
    traced = Traced()
    yield traced
    traced.tracer_provider.shutdown()
    traced.meter_provider.shutdown()


def _instrumented(spec: BackendSpec, traced: Traced) -> StateStore:
    store = spec.open()
    instrument(
        store_object(store),  # the async path too: the AsyncStateStore's own coroutines
        tracer_provider=traced.tracer_provider,
        meter_provider=traced.meter_provider,
    )
    return store


def test_the_span_tree_of_one_update_on_every_backend(
    any_spec: BackendSpec, traced: Traced
) -> None:
    with _instrumented(spec=any_spec, traced=traced) as store:
        instance_id = unique("otel-")
        store.create_instance(instance_id, name="resize")
        traced.exporter.clear()

        store.update(instance_id, lambda _: {"percent": 42, "note": SECRET_STATUS})

        spans = traced.spans()
        (update,) = [span for span in spans if span.name == "durastate.update"]
        assert update.parent is None
        assert traced.children(update) == ["durastate.get_instance", "durastate.set_custom_status"]
        (read,) = [span for span in spans if span.name == "durastate.get_instance"]
        (write,) = [span for span in spans if span.name == "durastate.set_custom_status"]
        assert traced.children(read) == ["durastate.backend.read"]
        assert traced.children(write) == ["durastate.backend.write_custom_status"]
        attributes = dict(update.attributes or {})
        assert attributes["durastate.backend"] == store.backend.scheme
        assert attributes["durastate.serializer"] == "json"
        assert attributes["durastate.instance_id"] == instance_id
        assert attributes["durastate.requests"] == 2
        assert attributes["durastate.retries"] == 0
        assert attributes["durastate.skipped_unchanged"] is False
        expected_bytes = len(
            sync_face(store)
            .encode_custom_status(instance_id, {"percent": 42, "note": SECRET_STATUS})
            .data
        )
        assert attributes["durastate.bytes"] == expected_bytes
        _assert_nothing_leaks(spans, any_spec)


def test_conflicts_unchanged_writes_and_errors_are_recorded(
    any_spec: BackendSpec, traced: Traced
) -> None:
    """Two store objects: the second one's write makes the first one's etag stale."""
    with _instrumented(any_spec, traced) as store, any_spec.open() as other:
        instance_id = unique("otel-")
        etag = store.create_instance(instance_id, name="resize")
        store.set_custom_status(instance_id, {"percent": 1}, etag=etag)
        store.set_custom_status(instance_id, {"percent": 1})  # unchanged bytes
        other.set_custom_status(instance_id, {"percent": 2})
        with pytest.raises(ConcurrencyError):
            store.set_custom_status(instance_id, {"percent": 3}, etag=etag)

        writes = [span for span in traced.spans() if span.name == "durastate.set_custom_status"]
        assert [dict(span.attributes or {}).get("durastate.error") for span in writes] == [
            None,
            None,
            "ConcurrencyError",
        ]
        assert [dict(span.attributes or {})["durastate.etag_conflicts"] for span in writes] == [
            0,
            0,
            1,
        ]
        totals = traced.metrics()
        assert totals["durastate.updates"] == 3
        assert totals["durastate.conflicts"] == 1
        if store.capabilities.skips_unchanged:
            assert totals["durastate.skipped_writes"] == 1
            assert dict(writes[1].attributes or {})["durastate.skipped_unchanged"] is True


def test_reporter_metrics_count_reports_and_writes(traced: Traced) -> None:
    with open_store("memory://") as store:
        instrument(
            store, tracer_provider=traced.tracer_provider, meter_provider=traced.meter_provider
        )
        store.create_instance("r", name="loop")
        with store.status_reporter("r", min_interval=60) as reporter:
            for step in range(50):
                reporter.report({"step": step})
        totals = traced.metrics()
        assert totals["durastate.reporter.reports"] == 50
        assert totals["durastate.reporter.writes"] == reporter.writes == 1


def test_async_reporter_metrics_and_spans(traced: Traced) -> None:
    """The async store records the reporter totals and the same store spans as the sync."""

    async def scenario() -> int:
        async with open_async_store("memory://") as store:
            instrument(
                store, tracer_provider=traced.tracer_provider, meter_provider=traced.meter_provider
            )
            await store.create_instance("r", name="loop")
            async with store.status_reporter("r", min_interval=60) as reporter:
                for step in range(50):
                    reporter.report({"step": step})
            assert await store.count(name="loop") == {
                status: int(status == "pending") for status in RuntimeStatus
            }
            return reporter.writes

    writes = asyncio.run(scenario())
    totals = traced.metrics()
    assert totals["durastate.reporter.reports"] == 50
    assert totals["durastate.reporter.writes"] == writes == 1
    spans = traced.spans()
    (create,) = [span for span in spans if span.name == "durastate.create_instance"]
    assert traced.children(create) == ["durastate.backend.create"]
    (count,) = [span for span in spans if span.name == "durastate.count"]
    assert traced.children(count) == ["durastate.backend.count"]
    # memory's count is the generic fallback: its page query is a request too, as on sync
    assert dict(count.attributes or {})["durastate.requests"] == 2


def _watch_latencies(traced: Traced) -> list[tuple[int, float]]:
    """(count, sum) of each data point of the watch-latency histogram."""
    data = traced.reader.get_metrics_data()
    if data is None:  # nothing recorded at all yet
        return []
    return [
        (point.count, point.sum)  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "durastate.watch.latency"
        for point in metric.data.data_points
    ]


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])  # pushed, polled
def test_watch_latency_is_recorded_for_each_change_delivered(
    traced: Traced, scheme: str, tmp_path: Path
) -> None:
    """From a change's write to the watcher being handed it, by the store's clock: the
    state found on subscribing is not a delivered change and records nothing."""
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'watch.db'}" if scheme == "sqlite" else "memory://"
    with open_store(url, clock=clock) as store:
        instrument(
            store, tracer_provider=traced.tracer_provider, meter_provider=traced.meter_provider
        )
        store.create_instance("w", name="wf", custom_status=0)
        changes = store.watch("w", poll_interval=0.05)
        assert next(changes).custom_status == 0
        assert _watch_latencies(traced) == []
        store.set_custom_status("w", 1)
        clock.advance(seconds=2.5)  # handed over 2.5 s after it was written
        assert next(changes).custom_status == 1
        store.set_runtime_status("w", "completed")
        clock.advance(milliseconds=40)
        assert next(changes).runtime_status is RuntimeStatus.COMPLETED
        assert list(changes) == []
    ((deliveries, seconds),) = _watch_latencies(traced)
    assert deliveries == 2
    assert seconds == pytest.approx(2.54)


def test_async_watch_latency_is_recorded(traced: Traced) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with AsyncStateStore(open_store("memory://", clock=clock)) as store:
            instrument(
                store, tracer_provider=traced.tracer_provider, meter_provider=traced.meter_provider
            )
            await store.create_instance("w", name="wf")
            changes = store.watch("w", poll_interval=0.05)
            assert (await anext(changes)).custom_status is None
            await store.set_runtime_status("w", "failed")
            clock.advance(seconds=7)
            assert (await anext(changes)).runtime_status is RuntimeStatus.FAILED

    asyncio.run(scenario())
    ((deliveries, seconds),) = _watch_latencies(traced)
    assert deliveries == 1
    assert seconds == pytest.approx(7.0)


def _assert_nothing_leaks(spans: list[ReadableSpan], spec: BackendSpec) -> None:
    secrets = [SECRET_STATUS, spec.url, *_secret_options(spec.options)]
    for span in spans:
        for key, value in dict(span.attributes or {}).items():
            for secret in secrets:
                assert secret not in str(value), (span.name, key)


def _secret_options(options: dict[str, Any]) -> list[str]:
    return [
        str(value)
        for name, value in options.items()
        if any(word in name for word in ("key", "secret", "token", "password", "connection"))
    ]


def test_no_provider_means_an_untouched_store() -> None:
    """Zero cost: without a configured provider the store's methods are the plain ones."""
    with open_store("memory://") as store:
        assert store.telemetry is None
        assert "set_custom_status" not in vars(store)
        assert not hasattr(store.backend, "_durastate_traced")
        assert "write_custom_status" not in vars(store.backend)


def test_a_configured_global_provider_instruments_new_stores() -> None:
    """In a fresh interpreter: set a global provider, open a store, see its span."""
    script = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from durastate import open_store
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
store = open_store("memory://")
store.create_instance("a", name="n")
print(sorted(span.name for span in exporter.get_finished_spans()))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "['durastate.backend.create', 'durastate.create_instance']"


def test_telemetry_logs_name_no_secret(
    any_spec: BackendSpec, traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="durastate"), _instrumented(any_spec, traced):
        pass
    lines = [
        record.getMessage() for record in caplog.records if record.name == "durastate.telemetry"
    ]
    assert lines
    assert "telemetry on" in lines[0]
    for line in lines:
        for secret in [any_spec.url, *_secret_options(any_spec.options)]:
            assert secret not in line
