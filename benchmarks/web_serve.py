"""What `durastate serve` costs: GET requests/s against a minimal endpoint, the delay from
`set_custom_status` to the SSE event, and backend reads behind 1,000 event streams.

    .venv/bin/python benchmarks/web_serve.py                # all three parts
    .venv/bin/python benchmarks/web_serve.py --only get --rounds 5 --seconds 3

- ``get``: two uvicorn servers (one worker each, subprocesses, access log off) over the same
  kind of store holding one running instance: ``durastate.web.create_app`` and a minimal
  hand-written Starlette endpoint that reads the instance the same way
  (``get_instance(fetch_payloads=True)``) and returns its JSON. A keep-alive asyncio client
  with 8 connections hammers each in turn, rounds interleaved; the figure is the server's
  CPU per request (utime+stime from /proc) and the ratio app / minimal per round (median).
- ``latency``: the app on a thread; a client holds ``/instances/{id}/events`` open; the time
  from ``set_custom_status`` returning to the event's arrival, on memory (push) and SQLite
  (polled every ``--poll-interval`` seconds, written by a second store object on the file).
- ``fanout``: 1,000 concurrent SSE clients of one instance on SQLite; backend reads counted
  with `CountingBackend` over an idle period and per change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_async_store, open_store
from durastate.testing.counting import CountingBackend
from durastate.testing.emulators import free_port
from durastate.web import create_app
from durastate.web.live import LiveServer

INSTANCE = "bench-1"
STATUS = {"percent": 42, "stage": "resize", "eta_s": 12}


# -- get: requests/s and CPU per request -----------------------------------------------------


def minimal_app(store: AsyncStateStore) -> Starlette:
    """The yardstick: one hand-written route reading the instance as the app does."""

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


def serve_one(kind: str, url: str, port: int) -> None:
    """The server subprocess: ``app`` or ``minimal`` over ``url`` (memory:// is filled here)."""
    store = open_async_store(url)
    if url.startswith("memory"):
        fill(store.store)
    app = create_app(store) if kind == "app" else minimal_app(store)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bench_asgi(rounds: int, calls: int = 5000) -> None:
    """The same comparison without the network: each app called in-process (ASGI) on one
    loop, CPU per call; what the app adds, free of the HTTP server's noise."""
    store = open_async_store("memory://")
    fill(store.store)
    apps = {"app": create_app(store), "minimal": minimal_app(store)}
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

    async def measure(app: Starlette) -> float:
        started = time.process_time()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / calls * 1e6

    costs: dict[str, list[float]] = {"app": [], "minimal": []}
    for _ in range(rounds):
        for kind, app in apps.items():
            costs[kind].append(asyncio.run(measure(app)))
    ratios = [a / m for a, m in zip(costs["app"], costs["minimal"], strict=True)]
    print(
        f"GET /instances/{{id}} in-process (ASGI, memory), {rounds} rounds x {calls} calls: "
        f"app {statistics.median(costs['app']):.1f} us, minimal "
        f"{statistics.median(costs['minimal']):.1f} us, ratio {statistics.median(ratios):.2f}"
    )


def fill(store: StateStore) -> None:
    store.create_instance(INSTANCE, name="resize", input={"file": "a.png"})
    store.set_runtime_status(INSTANCE, "running")
    store.set_custom_status(INSTANCE, STATUS)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(port: int, seconds: float, connections: int = 8) -> int:
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


def bench_get(url: str, rounds: int, seconds: float) -> None:
    if not url.startswith("memory"):
        with open_store(url) as store:
            fill(store)
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for kind in ("app", "minimal"):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, __file__, "--server", kind, "--url", url, "--port", str(port)]
        )
        servers[kind] = (process, port)
    try:
        for _, port in servers.values():
            wait_ready(port)
        costs: dict[str, list[float]] = {"app": [], "minimal": []}
        rates: dict[str, list[float]] = {"app": [], "minimal": []}
        for round_number in range(rounds):
            order = ("app", "minimal") if round_number % 2 == 0 else ("minimal", "app")
            for kind in order:
                process, port = servers[kind]
                before = cpu_seconds(process.pid)
                started = time.perf_counter()
                count = asyncio.run(hammer(port, seconds))
                elapsed = time.perf_counter() - started
                costs[kind].append((cpu_seconds(process.pid) - before) / count * 1e6)
                rates[kind].append(count / elapsed)
        ratios = [a / m for a, m in zip(costs["app"], costs["minimal"], strict=True)]
        print(
            f"GET /instances/{{id}} on {url.split(':')[0]}, one uvicorn worker each, "
            f"{rounds} rounds x {seconds:g} s, 8 keep-alive connections"
        )
        for kind in ("app", "minimal"):
            print(
                f"  {kind:8} {statistics.median(rates[kind]):8.0f} req/s   "
                f"server CPU {statistics.median(costs[kind]):6.0f} us/request"
            )
        print(
            f"  cost ratio app/minimal (median of rounds): {statistics.median(ratios):.2f}"
            f"  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)


def wait_ready(port: int) -> None:
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/instances/{INSTANCE}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


# -- latency: set_custom_status -> SSE event --------------------------------------------------


def bench_latency(
    name: str, store: AsyncStateStore, writer: StateStore, samples: int, poll_interval: float | None
) -> None:
    server = LiveServer(create_app(store, poll_interval=poll_interval)).start()
    try:
        fill(writer) if writer is not store.store else server.call(fill_async(store))
        arrived: list[float] = []
        seen = threading.Event()

        def listen() -> None:
            url = f"{server.url}/instances/{INSTANCE}/events"
            try:
                with httpx.stream("GET", url, timeout=30) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            arrived.append(time.perf_counter())
                            seen.set()
            except httpx.HTTPError:
                return  # the server stopped under the open stream at the end

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        seen.wait(10)
        delays = []
        for sample in range(samples):
            time.sleep(0.05 + (sample % 7) * 0.03)  # land at different points of a poll
            seen.clear()
            if writer is store.store:
                server.call(store.set_custom_status(INSTANCE, {"percent": sample}))
            else:
                writer.set_custom_status(INSTANCE, {"percent": sample})
            written = time.perf_counter()
            if not seen.wait(10):
                raise RuntimeError("no event within 10 s")
            delays.append((arrived[-1] - written) * 1000)
        delays.sort()
        interval = "push" if poll_interval is None else f"poll interval {poll_interval:g} s"
        print(
            f"set_custom_status -> SSE event on {name} ({interval}), {samples} samples: "
            f"median {statistics.median(delays):.1f} ms, p90 "
            f"{delays[int(len(delays) * 0.9) - 1]:.1f} ms, max {delays[-1]:.1f} ms"
        )
    finally:
        server.stop()


async def fill_async(store: AsyncStateStore) -> None:
    await store.create_instance(INSTANCE, name="resize")
    await store.set_runtime_status(INSTANCE, "running")
    await store.set_custom_status(INSTANCE, STATUS)


# -- fanout: 1,000 SSE clients, reads per poll interval ---------------------------------------


def bench_fanout(path: Path | None, clients: int, poll_interval: float) -> None:
    """On SQLite (``path``; written by a second store) or, without a path, memory:// (push:
    written through the served store)."""
    if path is None:
        reader = open_store("memory://")
        counting = CountingBackend(reader.backend)
        writer = StateStore(counting, codec=reader.codec)
    else:
        writer = open_store(f"sqlite:///{path}")
        reader = open_store(f"sqlite:///{path}")
        counting = CountingBackend(reader.backend)
    fill(writer)
    store = AsyncStateStore(StateStore(counting, codec=reader.codec))
    server = LiveServer(create_app(store, poll_interval=poll_interval, max_streams=clients)).start()

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients + 10)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            got: list[int] = [0] * clients
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
            await asyncio.wait_for(opened.wait(), 120)
            await asyncio.sleep(poll_interval * 2)
            before, started = counting.calls["read"], time.monotonic()
            await asyncio.sleep(poll_interval * 5)
            idle = counting.calls["read"] - before
            idle_intervals = (time.monotonic() - started) / poll_interval
            before = counting.calls["read"]
            await asyncio.to_thread(writer.set_custom_status, INSTANCE, {"percent": 99})
            deadline = time.monotonic() + 30
            while sum(1 for count in got if count >= 2) < clients and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            delivered = sum(1 for count in got if count >= 2)
            change_reads = counting.calls["read"] - before
            where = "memory (push)" if path is None else "sqlite"
            print(
                f"{clients} SSE clients of one instance on {where}, poll interval "
                f"{poll_interval:g} s: {idle} backend reads over {idle_intervals:.1f} idle "
                f"intervals ({idle / idle_intervals:.2f} per interval); one change reached "
                f"{delivered}/{clients} clients with {change_reads} reads"
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(run())
    finally:
        server.stop()
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["get", "latency", "fanout"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--server", choices=["app", "minimal"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        serve_one(args.server, args.url, args.port)
        return
    with tempfile.TemporaryDirectory(prefix="durastate-web-bench-") as folder:
        if args.only in (None, "get"):
            bench_asgi(args.rounds)
            bench_get("memory://", args.rounds, args.seconds)
            bench_get(f"sqlite:///{Path(folder) / 'get.db'}", args.rounds, args.seconds)
        if args.only in (None, "latency"):
            memory = open_async_store("memory://")
            bench_latency("memory", memory, memory.store, args.samples, None)
            sqlite_url = f"sqlite:///{Path(folder) / 'latency.db'}"
            bench_latency(
                "sqlite",
                open_async_store(sqlite_url),
                open_store(sqlite_url),
                args.samples,
                args.poll_interval,
            )
        if args.only in (None, "fanout"):
            bench_fanout(Path(folder) / "fanout.db", args.clients, args.poll_interval)
            bench_fanout(None, args.clients, args.poll_interval)


if __name__ == "__main__":
    main()
