"""The runner: walk the matrix, time and count every cell, write JSON, CSV, PNG, summary."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from durastate.bench import timing
from durastate.bench.anchors import anchors_for
from durastate.bench.async_cells import run_async_cells
from durastate.bench.cells import (
    StorePair,
    durastate_op,
    make_serializer,
    new_instance_id,
    run_cell,
)
from durastate.bench.matrix import (
    BackendSpec,
    BenchConfig,
    default_backends,
    unique_labels,
)
from durastate.bench.payloads import PayloadPair, payload_pair
from durastate.bench.peers import peers_for
from durastate.bench.profiling import profile_op
from durastate.bench.ratios import add_ratios
from durastate.bench.references import Reference, Session
from durastate.bench.results import Measurement, RunResult
from durastate.bench.scale import fresh_backend, run_scale, scale_op
from durastate.bench.targets import evaluate
from durastate.bench.web_cells import WEB_SCHEMES, run_web_cells
from durastate.core.backend import Backend
from durastate.opening import open_backend, redact_url

PACKAGES = ("orjson", "msgpack", "pydantic", "boto3", "azure-data-tables", "celery",
            "matplotlib")
Tick = Callable[[str], None]


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(load, 2) for load in os.getloadavg()]
    return None


def collect_meta(config: BenchConfig, backends: list[BackendSpec]) -> dict[str, Any]:
    import sqlite3

    import durastate

    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    versions["sqlite"] = sqlite3.sqlite_version
    cal = timing.calibration()
    effort = config.effort
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": config.command or " ".join(["durastate", *sys.argv[1:]]),
        "durastate": durastate.__version__,
        "machine": {
            "cpu": _cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "load_average": {"start": _load_average()},
        "packages": versions,
        "backends": [{"label": b.name, "scheme": b.scheme, "url": redact_url(b.url)}
                     for b in backends],
        "serializers": config.serializers,
        "payloads": config.payloads,
        "kinds": config.kinds,
        "operations": config.operations,
        "quick": config.quick,
        "async_cells": config.async_cells,
        "web_cells": config.web_cells,
        "repeat": config.repeat,
        "effort": effort.__dict__,
        "max_custom_status_bytes": config.max_custom_status_bytes,
        "calibration_ns": {"loop": cal.loop_ns, "timer": cal.timer_ns},
        "method": [
            "latency: perf_counter_ns; client CPU: thread_time_ns of the calling thread "
            "(emulators are other processes, so this is the client's CPU only)",
            "fast operations are timed in batches (a round of ~200 µs, `batch` in the data) "
            "and divided; the harness loop's own cost (`calibration_ns.loop`) is subtracted; "
            "median and CPU are medians over rounds; p99 comes from a second pass timing "
            "each call (timer overhead subtracted); network operations run one per round",
            "a warm-up (about a tenth of the budget) runs before timing",
            "every update writes a different value (two same-sized variants alternate), so "
            "the unchanged-write skip does not hide the cost; `update_unchanged` measures "
            "the skipped write on its own",
            "backend calls, real writes and HTTP requests per operation are counted in a "
            "separate pass (CountingBackend; http.client requests), not while timing",
            "pickle-safe signs with a key generated for the run",
            "anchors and peers serialize the dict with their own serializer inside the timed "
            "call, as hand-written code must; ratios are durastate / reference for the "
            "durastate cell with the same job (json, dict, same payload and backend)",
            "ops_per_s = operations / total wall time of the timed pass (not 1 / median)",
        ],
    }


@dataclass
class Open:
    """What stays open until the end of the run (profiling of misses needs it)."""

    backends: list[Backend] = field(default_factory=list)
    pairs: dict[tuple[str, str], StorePair] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    named: dict[tuple[str, str], Session] = field(default_factory=dict)

    def close(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                session.close()
        for backend in self.backends:
            with contextlib.suppress(Exception):
                backend.close()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Runner:
    """One run of the matrix; ``tick`` advances the progress display."""

    def __init__(self, config: BenchConfig, backends: list[BackendSpec]) -> None:
        self.config = config
        self.backends = backends
        self.result = RunResult(meta=collect_meta(config, backends))
        self.open = Open()
        self.pairs: dict[tuple[str, str], PayloadPair] = {}

    def failed(self, problem: str) -> None:
        """A requested backend or serializer could not run: a note, and in ``failures``
        (the CLI then exits non-zero and writes nothing)."""
        self.result.notes.append(problem)
        self.result.meta.setdefault("failures", []).append(problem)

    def payload(self, size: str, kind: str) -> PayloadPair:
        key = (size, kind)
        if key not in self.pairs:
            self.pairs[key] = payload_pair(size, kind)
        return self.pairs[key]

    def references(self, spec: BackendSpec) -> list[Reference]:
        refs: list[Reference] = []
        if self.config.anchors:
            refs += anchors_for(spec)
        if self.config.peers:
            refs += peers_for(spec)
        return refs

    def cells(self, serializer: str) -> list[tuple[str, str, str]]:
        """(size, kind, operation) of every cell this run times for ``serializer``."""
        c = self.config
        return [(size, kind, operation) for size in c.payloads for kind in c.kinds
                for operation in c.operations if c.applies(operation, serializer, kind, size)]

    def total(self) -> int:
        c = self.config
        per_backend = sum(len(self.cells(serializer)) for serializer in c.serializers)
        cells = len(self.backends) * per_backend
        scale = sum(1 for spec in self.backends if c.scale_operations(spec))
        refs = sum(len(self.references(spec)) for spec in self.backends) * len(c.payloads)
        asynchronous = len(self.backends) if c.async_cells else 0
        web = sum(1 for spec in self.backends if self.web(spec))
        return cells + scale + asynchronous + web + refs

    def web(self, spec: BackendSpec) -> bool:
        return self.config.web_cells and spec.scheme in WEB_SCHEMES

    def run(self, tick: Tick) -> RunResult:
        started = time.monotonic()
        try:
            for spec in self.backends:
                self.run_backend(spec, tick)
            add_ratios(self.result)
            self.result.targets = evaluate(self.result)
            if self.config.profile_misses:
                self.profile_misses()
        finally:
            self.open.close()
        self.result.meta["duration_s"] = round(time.monotonic() - started, 3)
        self.result.meta["load_average"]["end"] = _load_average()
        return self.result

    def run_backend(self, spec: BackendSpec, tick: Tick) -> None:
        c = self.config
        try:
            backend = open_backend(spec.url, **spec.options)
        except Exception as exc:
            self.failed(f"backend {spec.name} could not be opened: {_error(exc)}")
            for serializer_id in c.serializers:
                for _ in self.cells(serializer_id):
                    tick(f"{spec.name}: skipped")
            if c.scale_operations(spec):
                tick(f"{spec.name}: skipped")
            if c.async_cells:
                tick(f"{spec.name}: skipped")
            if self.web(spec):
                tick(f"{spec.name}: skipped")
            self.run_references(spec, tick)
            return
        self.open.backends.append(backend)
        for serializer_id in c.serializers:
            try:
                serializer = make_serializer(serializer_id)
                pair = StorePair.open(spec, backend, serializer, c.max_custom_status_bytes)
                self.open.pairs[(spec.name, serializer_id)] = pair
            except Exception as exc:
                self.failed(f"serializer {serializer_id}: {_error(exc)}")
                for _ in self.cells(serializer_id):
                    tick(f"{spec.name}/{serializer_id}: skipped")
                continue
            for size, kind, operation in self.cells(serializer_id):
                tick(f"{spec.name} {serializer_id} {size} {kind} {operation}")
                self.result.measurements.append(
                    self.cell(pair, self.payload(size, kind), operation))
        if c.scale_operations(spec):
            tick(f"{spec.name}: query, iteration, footprint at {', '.join(c.scale_counts)}")
            try:
                self.result.measurements += run_scale(spec, c.effort,
                                                      c.max_custom_status_bytes,
                                                      c.scale_counts)
            except Exception as exc:
                self.result.notes.append(f"scale cells on {spec.name} failed: {_error(exc)}")
        if c.async_cells:  # a failing async cell is recorded with its error, not raised
            tick(f"{spec.name} async store, reporters, watch")
            self.result.measurements.extend(run_async_cells(spec, c.quick))
        if self.web(spec):  # like the async cells: a failing cell carries its error
            tick(f"{spec.name} HTTP app: GET, SSE latency, SSE fan-out")
            self.result.measurements.extend(run_web_cells(spec, c.quick))
        elif c.web_cells:
            self.result.notes.append(f"web cells run on memory and SQLite only: none on "
                                     f"{spec.name}")
        self.run_references(spec, tick)

    def paired_pair(self, spec: BackendSpec) -> StorePair | None:
        """The json store that runs interleaved with the references.

        SQLite gets a fresh file, like its anchors' own: both sides then start from the same
        state (the main file holds every instance the other cells made, which costs it).
        """
        key = (spec.name, "paired")
        if key in self.open.pairs:
            return self.open.pairs[key]
        main = self.open.pairs.get((spec.name, "json"))
        if main is None or spec.scheme != "sqlite":
            return main
        backend = fresh_backend(spec, "paired")
        self.open.backends.append(backend)
        pair = StorePair.open(spec, backend, main.serializer,
                              self.config.max_custom_status_bytes)
        self.open.pairs[key] = pair
        return pair

    def cell(self, pair: StorePair, payload: PayloadPair, operation: str) -> Measurement:
        effort = self.config.effort
        try:
            return run_cell(pair, payload, operation, effort, self.config.repeat)
        except Exception as exc:
            return Measurement("durastate", "durastate", pair.spec.name, pair.serializer.id,
                               payload.label, payload.kind, operation, error=_error(exc))

    def run_references(self, spec: BackendSpec, tick: Tick) -> None:
        for ref in self.references(spec):
            session: Session | None = None
            failure = None
            try:
                session = ref.open()
                self.open.sessions.append(session)
                self.open.named[(spec.name, ref.name)] = session
            except Exception as exc:
                failure = _error(exc)
                self.result.notes.append(f"{ref.subject} {ref.name!r} on {spec.name} could "
                                         f"not run: {failure}")
            if ref.note:
                self.result.notes.append(f"{ref.name} on {spec.name}: {ref.note}")
            for size in self.config.payloads:
                tick(f"{spec.name} {ref.subject}: {ref.name} {size}")
                self.result.measurements.append(
                    self.reference_cell(spec, ref, session, self.payload(size, "dict"), failure))

    def reference_cell(self, spec: BackendSpec, ref: Reference, session: Session | None,
                       payload: PayloadPair, failure: str | None) -> Measurement:
        operation = "store_result" if ref.subject == "peer" else ref.operation
        m = Measurement(ref.subject, ref.name, spec.name, ref.serializer, payload.label,
                        payload.kind, operation, compares_to=ref.compares_to, error=failure)
        if session is None:
            return m
        effort = self.config.effort
        try:
            from durastate.bench.counting import count_http

            op = session.op(payload.values, new_instance_id("ref"))
            pair = self.paired_pair(spec)
            if pair is not None:  # interleaved with durastate's counterpart: a fair ratio
                ours = durastate_op(pair.timed, ref.compares_to, payload.values)
                t, paired = timing.measure_paired(
                    op, ours, seconds=effort.seconds * 2, min_ops=effort.min_ops,
                    max_ops=effort.max_ops, repeat=self.config.repeat)
                m.extra["paired_durastate_median_us"] = paired.median_ns / 1e3
                m.extra["paired_durastate_cpu_us"] = paired.cpu_ns / 1e3
            else:
                t = timing.measure(op, seconds=effort.seconds, min_ops=effort.min_ops,
                                   max_ops=effort.max_ops, repeat=self.config.repeat,
                                   tail_ops=effort.tail_ops)
            m.ops, m.batch = t.ops, t.batch
            m.median_us, m.p99_us = t.median_ns / 1e3, t.p99_ns / 1e3
            m.cpu_us, m.ops_per_s = t.cpu_ns / 1e3, t.ops_per_s
            if ref.subject == "anchor":
                m.stored_bytes = len(orjson.dumps(payload.values[0]))
            counted = session.op(payload.values, new_instance_id("ref"))
            counted(1)
            with count_http() as http:
                for i in range(2, effort.count_ops + 2):
                    counted(i)
            m.http_requests = http.requests / effort.count_ops
        except Exception as exc:
            m.error = _error(exc)
        return m

    def profile_misses(self) -> None:
        for target in self.result.targets:
            if target["passed"] is not False:
                continue
            cell = target["profile_cell"]
            pair = self.open.pairs.get((cell["backend"], cell.get("serializer", "json")))
            if pair is None or cell["operation"] == "footprint":
                continue  # a footprint is bytes, not time: its cell says how it was taken
            if cell["operation"].startswith("web_"):
                continue  # a server and its clients: the cell's extra figures say more
            payload = self.payload(cell.get("payload", "150B"), cell.get("kind", "dict"))
            try:
                op = self._profile_op(pair, cell["operation"], payload)
                local = cell["operation"] == "report" or pair.spec.scheme == "memory"
                ops = 20_000 if local else 3000 if pair.spec.scheme == "sqlite" else 200
                if cell["operation"].startswith(("query_", "iter_")):
                    ops = 200 if cell["operation"].startswith("query_") else 3
                cpu = target["id"].startswith("network-")  # client CPU targets
                target["profile"] = profile_op(op, ops, cpu=cpu)
                reference = self.open.named.get((cell["backend"], cell.get("reference", "")))
                if reference is not None:
                    ref_op = reference.op(payload.values, new_instance_id("ref"))
                    target["profile_reference"] = profile_op(ref_op, ops, cpu=cpu)
            except Exception as exc:
                target["profile"] = f"profiling failed: {_error(exc)}"

    def _profile_op(self, pair: StorePair, operation: str,
                    payload: PayloadPair) -> timing.Op:
        if operation.startswith(("query_", "iter_")):
            backend, op = scale_op(pair.spec, operation, self.config.max_custom_status_bytes)
            self.open.backends.append(backend)
            return op
        if operation == "update_cold":
            raise ValueError("a cold write reopens the backend: see the cell's figures")
        if operation != "report":
            return durastate_op(pair.timed, operation, payload.values)
        instance_id = new_instance_id()
        pair.timed.create_instance(instance_id, name="bench")
        reporter = pair.timed.status_reporter(instance_id, min_interval=3600)
        values = payload.values

        def report(i: int) -> None:  # coalesced: the reporter's thread is not started
            reporter.report(values[i & 1])

        return report


@contextlib.contextmanager
def progress_ticker(console: Console | None, total: int, enabled: bool) -> Iterator[Tick]:
    if not enabled or console is None:
        yield lambda description: None
        return
    if not console.is_terminal:  # a file or a pipe: a plain line per backend, no redraws
        started, done, current = time.monotonic(), [0], [""]

        def line(description: str) -> None:
            backend = description.split(" ", 1)[0].rstrip(":")
            if backend != current[0]:
                current[0] = backend
                console.print(f"[{done[0]}/{total} cells, "
                              f"{time.monotonic() - started:.0f} s] {backend}")
            done[0] += 1

        yield line
        console.print(f"[{total}/{total} cells, {time.monotonic() - started:.0f} s] done")
        return
    columns = (TextColumn("[progress.description]{task.description:<55}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=total)
        first = [True]

        def tick(description: str) -> None:
            if first[0]:
                first[0] = False
            else:
                progress.advance(task)
            progress.update(task, description=description[:55])

        yield tick
        progress.advance(task)
        progress.update(task, description="done")


def preflight(config: BenchConfig) -> list[str]:
    """What cannot run: every requested backend is opened and closed, every serializer
    built, before any cell is timed. Empty when the whole matrix can run."""
    problems = []
    for spec in config.backends:
        try:
            open_backend(spec.url, **spec.options).close()
        except Exception as exc:
            problems.append(f"backend {spec.name} ({redact_url(spec.url)}) cannot run: "
                            f"{_error(exc)}")
    for serializer_id in config.serializers:
        try:
            make_serializer(serializer_id)
        except Exception as exc:
            problems.append(f"serializer {serializer_id!r} cannot run: {_error(exc)}")
    return problems


def run_bench(config: BenchConfig, *, console: Console | None = None,
              progress: bool = True) -> RunResult:
    """Run the matrix in ``config`` and return the results (files: see ``write_outputs``)."""
    config.validate()
    backends = unique_labels(config.backends or default_backends())
    runner = Runner(config, backends)
    with progress_ticker(console, runner.total(), progress) as tick:
        return runner.run(tick)
