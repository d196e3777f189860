"""The cells of `durastate bench --web`: what `durastate serve` costs, on memory and SQLite.

- ``web_get``: two uvicorn servers (one worker each, subprocesses, access log off) over the
  same kind of store holding one running instance: ``durastate.web.create_app`` and a minimal
  hand-written Starlette endpoint that reads the instance the same way
  (``get_instance(fetch_payloads=True)``) and returns its JSON. A keep-alive asyncio client
  with 8 connections hammers each in turn, rounds interleaved; the figure is the server's CPU
  per request (utime+stime from /proc), and the ratio app / minimal per round (median). The
  same comparison in-process (each app called as ASGI, no HTTP server) is in ``extra``.
- ``web_sse_latency``: the app on a thread; a client holds ``/instances/{id}/events`` open;
  the time from ``set_custom_status`` returning to the event's arrival, on memory (push) and
  SQLite (polled every ``poll interval``, written by a second store object on the file).
- ``web_sse_fanout``: many concurrent SSE clients of one instance (1,000; 50 with
  ``--quick``); backend reads counted with `CountingBackend` over an idle period and for one
  change.

``benchmarks/web_serve.py`` prints the same cells without the rest of the matrix.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durastate.bench.matrix import BackendSpec
from durastate.bench.results import Measurement
from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_async_store, open_store

INSTANCE = "bench-1"
STATUS = {"percent": 42, "stage": "resize", "eta_s": 12}
#: Where the web cells run (the issue's targets name memory and SQLite).
WEB_SCHEMES = frozenset({"memory", "sqlite"})
CONNECTIONS = 8
#: The GET cell's server subprocess: ``python -c SERVE KIND URL PORT``.
SERVE = (
    "import sys; from durastate.bench.web_cells import serve_one; "
    "serve_one(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
)


@dataclass(frozen=True)
class WebEffort:
    """How long the web cells run."""

    rounds: int  # interleaved GET rounds per server
    seconds: float  # length of one GET round
    asgi_calls: int  # in-process calls per round
    samples: int  # set_custom_status -> event samples
    poll_interval: float  # the app's poll interval on SQLite (and for the fan-out)
    clients: int  # concurrent SSE clients in the fan-out cell

    @classmethod
    def quick(cls) -> WebEffort:
        return cls(rounds=2, seconds=0.3, asgi_calls=300, samples=5, poll_interval=0.1, clients=50)

    @classmethod
    def full(cls) -> WebEffort:
        return cls(
            rounds=5, seconds=2.0, asgi_calls=5000, samples=30, poll_interval=0.5, clients=1000
        )


def _measurement(spec: BackendSpec, operation: str, **extra: Any) -> Measurement:
    return Measurement(
        "durastate", "durastate", spec.name, "json", "150B", "dict", operation, extra=extra
    )


def fill(store: StateStore) -> None:
    store.create_instance(INSTANCE, name="resize", input={"file": "a.png"})
    store.set_runtime_status(INSTANCE, "running")
    store.set_custom_status(INSTANCE, STATUS)


async def fill_async(store: AsyncStateStore) -> None:
    await store.create_instance(INSTANCE, name="resize", input={"file": "a.png"})
    await store.set_runtime_status(INSTANCE, "running")
    await store.set_custom_status(INSTANCE, STATUS)


# -- web_get: server CPU per request against a minimal endpoint --------------------------------


def minimal_app(store: AsyncStateStore) -> Any:
    """The yardstick: one hand-written route reading the instance as the app does."""
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def minimal(request: Request) -> Response:
        item = await store.get_instance(request.path_params["id"], fetch_payloads=True)
        if item is None:
            return Response(status_code=404)
        body = {
            "name": item.name,
            "instanceId": item.instance_id,
            "runtimeStatus": item.runtime_status.value,
            "customStatus": item.custom_status,
            "output": item.output,
            "createdTime": item.created_at.isoformat(),
            "lastUpdatedTime": item.last_updated_at.isoformat(),
        }
        return Response(orjson.dumps(body), 202, media_type="application/json")

    return Starlette(routes=[Route("/instances/{id}", minimal)])


def _apps(store: AsyncStateStore) -> dict[str, Any]:
    from durastate.web import create_app

    return {"app": create_app(store), "minimal": minimal_app(store)}


def serve_one(kind: str, url: str, port: int) -> None:
    """The server subprocess: ``app`` or ``minimal`` over ``url`` (memory:// is filled here)."""
    import uvicorn

    store = open_async_store(url)
    if url.startswith("memory"):
        fill(store.store)
    uvicorn.run(
        _apps(store)[kind], host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


def asgi_costs(url: str, rounds: int, calls: int) -> dict[str, float]:
    """Each app called in-process (ASGI) on one loop: CPU µs per call, and the median ratio
    of rounds; what the app adds, free of the HTTP server's noise."""
    store = open_async_store(url)
    if url.startswith("memory"):
        fill(store.store)
    apps = _apps(store)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/instances/{INSTANCE}",
        "raw_path": b"",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def measure(app: Any) -> float:
        started = time.process_time()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / calls * 1e6

    costs: dict[str, list[float]] = {"app": [], "minimal": []}
    loop = asyncio.new_event_loop()
    try:
        for _ in range(rounds):
            for kind, app in apps.items():
                costs[kind].append(loop.run_until_complete(measure(app)))
        loop.run_until_complete(store.close())
    finally:
        loop.close()
    ratios = [a / m for a, m in zip(costs["app"], costs["minimal"], strict=True)]
    return {
        "asgi_app_cpu_us": round(statistics.median(costs["app"]), 2),
        "asgi_minimal_cpu_us": round(statistics.median(costs["minimal"]), 2),
        "asgi_cpu_ratio_vs_minimal": round(statistics.median(ratios), 3),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(port: int, seconds: float, connections: int = CONNECTIONS) -> int:
    """Keep-alive GETs on ``connections`` sockets for ``seconds``; the number answered."""
    request = f"GET /instances/{INSTANCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    done = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return done


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    import httpx

    for _ in range(400):
        if process.poll() is not None:
            raise RuntimeError(f"server subprocess exited with {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/instances/{INSTANCE}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def web_get(spec: BackendSpec, url: str, effort: WebEffort) -> Measurement:
    from durastate.testing.emulators import free_port

    if not url.startswith("memory"):
        with open_store(url) as store:
            fill(store)
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for kind in ("app", "minimal"):
            port = free_port()
            process = subprocess.Popen([sys.executable, "-c", SERVE, kind, url, str(port)])
            servers[kind] = (process, port)
        for process, port in servers.values():
            wait_ready(port, process)
        costs: dict[str, list[float]] = {"app": [], "minimal": []}
        rates: dict[str, list[float]] = {"app": [], "minimal": []}
        for round_number in range(effort.rounds):
            order = ("app", "minimal") if round_number % 2 == 0 else ("minimal", "app")
            for kind in order:
                process, port = servers[kind]
                before = cpu_seconds(process.pid)
                started = time.perf_counter()
                count = asyncio.run(hammer(port, effort.seconds))
                elapsed = time.perf_counter() - started
                costs[kind].append((cpu_seconds(process.pid) - before) / count * 1e6)
                rates[kind].append(count / elapsed)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
    ratios = [a / m for a, m in zip(costs["app"], costs["minimal"], strict=True)]
    m = _measurement(
        spec,
        "web_get",
        rounds=effort.rounds,
        round_seconds=effort.seconds,
        connections=CONNECTIONS,
        minimal_cpu_us=round(statistics.median(costs["minimal"]), 1),
        minimal_requests_per_s=round(statistics.median(rates["minimal"]), 1),
        cpu_ratio_vs_minimal=round(statistics.median(ratios), 3),
        round_ratios=[round(r, 3) for r in ratios],
        **asgi_costs(url, effort.rounds, effort.asgi_calls),
    )
    m.ops = sum(1 for _ in ratios)
    m.median_us = m.cpu_us = statistics.median(costs["app"])
    m.ops_per_s = statistics.median(rates["app"])
    return m


# -- web_sse_latency: set_custom_status -> SSE event ------------------------------------------


def web_sse_latency(spec: BackendSpec, url: str, effort: WebEffort) -> Measurement:
    import httpx

    from durastate.web import create_app
    from durastate.web.live import LiveServer

    push = url.startswith("memory")
    store = open_async_store(url)
    writer = store.store if push else open_store(url)  # SQLite: a second store on the file
    poll_interval = None if push else effort.poll_interval
    server = LiveServer(create_app(store, poll_interval=poll_interval)).start()
    try:
        if push:
            server.call(fill_async(store))
        else:
            fill(writer)
        arrived: list[float] = []
        seen = threading.Event()

        def listen() -> None:
            try:
                events = f"{server.url}/instances/{INSTANCE}/events"
                with httpx.stream("GET", events, timeout=30) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            arrived.append(time.perf_counter())
                            seen.set()
            except httpx.HTTPError:
                return  # the server stopped under the open stream at the end

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        if not seen.wait(10):
            raise RuntimeError("the event stream sent nothing within 10 s")
        delays = []
        for sample in range(effort.samples):
            time.sleep(0.05 + (sample % 7) * 0.03)  # land at different points of a poll
            seen.clear()
            if push:
                server.call(store.set_custom_status(INSTANCE, {"percent": sample}))
            else:
                writer.set_custom_status(INSTANCE, {"percent": sample})
            written = time.perf_counter()
            if not seen.wait(10):
                raise RuntimeError("no event within 10 s of a change")
            delays.append((arrived[-1] - written) * 1000)
        # a terminal status ends the stream: the client leaves before the server stops
        if push:
            server.call(store.set_runtime_status(INSTANCE, "completed"))
        else:
            writer.set_runtime_status(INSTANCE, "completed")
        listener.join(10)
    finally:
        server.stop()
        if not push:
            writer.close()
    delays.sort()
    m = _measurement(
        spec,
        "web_sse_latency",
        push=push,
        poll_interval_s=poll_interval,
        p90_ms=round(delays[max(int(len(delays) * 0.9) - 1, 0)], 2),
        max_ms=round(delays[-1], 2),
    )
    m.ops, m.median_us = len(delays), statistics.median(delays) * 1000
    return m


# -- web_sse_fanout: many SSE clients, backend reads per poll interval ------------------------


def web_sse_fanout(spec: BackendSpec, url: str, effort: WebEffort) -> Measurement:
    """On SQLite written by a second store; on memory:// written through the served store
    (push)."""
    import httpx

    from durastate.testing.counting import CountingBackend
    from durastate.web import create_app
    from durastate.web.live import LiveServer

    push = url.startswith("memory")
    reader = open_store(url)
    counting = CountingBackend(reader.backend)
    writer = StateStore(counting, codec=reader.codec) if push else open_store(url)
    fill(writer)
    clients, interval = effort.clients, effort.poll_interval
    store = AsyncStateStore(StateStore(counting, codec=reader.codec))
    app = create_app(store, poll_interval=interval, max_streams=clients)
    server = LiveServer(app).start()
    figures: dict[str, Any] = {}

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients + 10)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            got = [0] * clients
            opened = asyncio.Event()
            ready = 0

            async def one(index: int) -> None:
                nonlocal ready
                async with client.stream("GET", f"/instances/{INSTANCE}/events") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            got[index] += 1
                            if got[index] == 1:
                                ready += 1
                                if ready == clients:
                                    opened.set()

            tasks = [asyncio.ensure_future(one(index)) for index in range(clients)]
            try:
                await asyncio.wait_for(opened.wait(), 120)
                await asyncio.sleep(interval * 2)
                before, started = counting.calls["read"], time.monotonic()
                await asyncio.sleep(interval * 5)
                idle = counting.calls["read"] - before
                intervals = (time.monotonic() - started) / interval
                before = counting.calls["read"]
                changed = time.perf_counter()
                await asyncio.to_thread(writer.set_custom_status, INSTANCE, {"percent": 99})
                deadline = time.monotonic() + 30
                while sum(1 for n in got if n >= 2) < clients and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                figures.update(
                    delivered_s=time.perf_counter() - changed,
                    delivered=sum(1 for n in got if n >= 2),
                    idle_reads=idle,
                    idle_intervals=round(intervals, 2),
                    reads_per_interval=round(idle / intervals, 3),
                    change_reads=counting.calls["read"] - before,
                )
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(run())
    finally:
        server.stop()
        writer.close()
    delivered_s = figures.pop("delivered_s")
    m = _measurement(
        spec, "web_sse_fanout", push=push, poll_interval_s=interval, clients=clients, **figures
    )
    m.ops = clients
    m.median_us = delivered_s * 1e6  # from the write's return to the last client's event
    return m


CELLS: tuple[Callable[[BackendSpec, str, WebEffort], Measurement], ...] = (
    web_get,
    web_sse_latency,
    web_sse_fanout,
)


def web_url(spec: BackendSpec, folder: Path, cell: str) -> str:
    """A fresh store of the spec's kind for one cell: memory://, or a new SQLite file."""
    return "memory://" if spec.scheme == "memory" else f"sqlite:///{folder / (cell + '.db')}"


def run_web_cells(
    spec: BackendSpec, quick: bool, effort: WebEffort | None = None
) -> list[Measurement]:
    """Every web cell on one embedded backend (none elsewhere); a cell that fails is
    recorded with its error."""
    if spec.scheme not in WEB_SCHEMES:
        return []
    effort = effort or (WebEffort.quick() if quick else WebEffort.full())
    out: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="durastate-web-bench-") as folder:
        for cell in CELLS:
            try:
                out.append(cell(spec, web_url(spec, Path(folder), cell.__name__), effort))
            except Exception as exc:
                failed = _measurement(spec, cell.__name__)
                failed.error = f"{type(exc).__name__}: {exc}"[:500]
                out.append(failed)
    return out
