"""Plans run the same on the sync and the async driver, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from durastate.errors import BackendUnavailable
from durastate.transport import HttpDriver, HttpRequest, HttpResponse, TransportOptions
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.plans import Batch, Exchange, Pause, Plan, arun, exchange, run


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200 if not self.path.startswith("/missing") else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _read_then_batch(base: str) -> Plan[list[bytes]]:
    first: HttpResponse = yield exchange(HttpRequest.to("GET", base, "/one"))
    if first.status != 200:
        raise AssertionError("the core decides what a status means")
    missing: HttpResponse = yield exchange(HttpRequest.to("GET", base, "/missing"))
    assert missing.status == 404
    yield Pause(0.001)
    many: list[HttpResponse] = yield Batch(
        tuple(Exchange(HttpRequest.to("GET", base, f"/p{i}")) for i in range(5)), concurrency=3
    )
    return [first.body] + [r.body for r in many]


def _catches_driver_errors() -> Plan[str]:
    try:
        yield exchange(HttpRequest.to("GET", "http://127.0.0.1:9", "/"))
    except BackendUnavailable:
        return "caught"
    return "sent"


_EXPECTED = [b"/one", b"/p0", b"/p1", b"/p2", b"/p3", b"/p4"]
_SHORT = TransportOptions(deadline=0.5)


def test_a_plan_runs_over_the_sync_driver(base: str) -> None:
    with HttpDriver() as driver:
        assert run(_read_then_batch(base), driver) == _EXPECTED
    with HttpDriver(_SHORT) as driver:
        assert run(_catches_driver_errors(), driver) == "caught"


def test_the_same_plan_runs_over_the_async_driver(base: str) -> None:
    async def main() -> None:
        async with AsyncHttpDriver() as driver:
            assert await arun(_read_then_batch(base), driver) == _EXPECTED
        async with AsyncHttpDriver(_SHORT) as driver:
            assert await arun(_catches_driver_errors(), driver) == "caught"

    asyncio.run(main())


def test_an_uncaught_driver_error_leaves_the_plan_as_itself() -> None:
    def plan() -> Plan[None]:
        yield exchange(HttpRequest.to("GET", "http://127.0.0.1:9", "/"))

    with HttpDriver(_SHORT) as driver, pytest.raises(BackendUnavailable):
        run(plan(), driver)
