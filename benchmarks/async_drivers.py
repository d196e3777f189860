"""Client CPU per request of the three HTTP drivers, side by side in one run.

    .venv/bin/python benchmarks/async_drivers.py                     # Azurite, dynalite, moto
    .venv/bin/python benchmarks/async_drivers.py --only dynalite --rounds 30

The same hand-signed conditional writes as ``benchmarks/lean_clients.py`` (Azure MERGE +
If-Match, DynamoDB UpdateItem + condition, S3 PutObject + If-Match), sent by:

- ``sync http.client``: `HttpDriver` (the sync store's driver), the baseline;
- ``async aiohttp``: the async driver as it was until 2026-11-29 (aiohttp ClientSession, the
  same `RetryPolicy`), kept here only as the yardstick (`AiohttpDriver` below);
- ``async asyncio``: `AsyncHttpDriver`, its replacement (an asyncio.Protocol per connection).

One at a time (each write awaited before the next, in a running loop), and with
``--in-flight N`` also N writers at once (N items, one request each in flight). Rounds are
interleaved in rotating order; CPU is this thread's (the loop runs in it; the emulators are
other processes); the ratio is the median of per-round ratios to the sync driver.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yarl

from durastate.transport import HttpRequest, HttpResponse, TransportOptions
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.messages import merge_headers
from durastate.transport.policy import Failure, RetryPolicy, Timeouts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks.lean_clients import (
    Contender,
    LeanAsync,
    LeanSync,
    Service,
    interleave,
    started,
    table,
)


class AiohttpDriver:
    """The former async driver (aiohttp, same policy), for comparison only."""

    def __init__(self, options: TransportOptions) -> None:
        self.policy = RetryPolicy(options)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        call = self.policy.call(request)
        while True:
            verdict = call.judge(await self._attempt(request, call.timeouts()))
            if isinstance(verdict, HttpResponse):
                return verdict
            await asyncio.sleep(verdict)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _attempt(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse | Failure:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit_per_host=self.policy.options.pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
            self._session._retry_connection = False
        timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
        )
        try:
            async with self._session.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                headers=request.headers,
                data=request.body or None,
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                return HttpResponse(answer.status, merge_headers(answer.headers.items()), body)
        except (aiohttp.ClientError, OSError) as exc:
            return Failure("response", type(exc).__name__)


class LeanAiohttp(LeanAsync):
    def __init__(self, service: Service) -> None:
        super().__init__(service, AiohttpDriver(TransportOptions()))


class InFlight:
    """``writers`` writers at once over one driver (a pool of ``writers`` connections), each
    with its own item; an op is one request of one writer, so CPU per op is per request."""

    def __init__(self, driver: Any, service: Service, writers: int) -> None:
        self.runner = asyncio.Runner()
        self.driver = driver
        self.service = service
        self.states = [service.first_state() for _ in range(writers)]

    async def _writer(self, number: int, count: int) -> None:
        service, driver = self.service, self.driver
        for i in range(count):
            response = await driver.send(service.request(self.states[number], i))
            self.states[number] = service.next_state(
                self.states[number], i, response.status, dict(response.headers)
            )

    def run(self, count: int) -> None:
        per_writer = max(count // len(self.states), 1)

        async def everyone() -> None:
            await asyncio.gather(*(self._writer(n, per_writer) for n in range(len(self.states))))

        self.runner.run(everyone())

    def close(self) -> None:
        self.runner.run(self.driver.close())
        self.runner.close()


def one_at_a_time(service: Service) -> dict[str, Contender]:
    return {
        "sync http.client": LeanSync(service),
        "async aiohttp": LeanAiohttp(service),
        "async asyncio": LeanAsync(service),
    }


def in_flight(service: Service, writers: int) -> dict[str, Contender]:
    options = TransportOptions(pool_size=writers)
    return {
        "async aiohttp": InFlight(AiohttpDriver(options), service, writers),
        "async asyncio": InFlight(AsyncHttpDriver(options), service, writers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=40, help="requests per contender per round")
    parser.add_argument("--in-flight", type=int, default=0, help="also N writers at once")
    parser.add_argument(
        "--only", action="append", choices=["azure", "dynalite", "moto", "s3"], default=None
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["azure", "dynalite", "moto"])
    print(f"# async drivers: {args.rounds} interleaved rounds x {args.ops} requests")
    print(f"# command: {' '.join(sys.argv)}")
    with started(only) as services:
        for service in services:
            figures = interleave(one_at_a_time(service), args.rounds, args.ops, "sync http.client")
            print(table(f"{service.name}, one at a time", figures, "sync http.client"))
            if args.in_flight:
                figures = interleave(
                    in_flight(service, args.in_flight),
                    args.rounds,
                    args.ops * 5,
                    "async aiohttp",
                )
                title = f"{service.name}, {args.in_flight} in flight"
                print(table(title, figures, "async aiohttp"))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
