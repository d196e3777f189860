"""The async driver's own wire handling, against a real local server that answers with
scripted raw bytes: body framing (Content-Length, chunked, close-delimited, none for
HEAD/204/304), interim 1xx answers, folded headers, keep-alive reuse, a peer that closes
an idle connection, a connection that dies mid-answer, read timeouts, cancellation and the
pool's bound. Where the sync driver meets the same fault, both must report the same
failure (stage and reason) to the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from durastate.errors import BackendUnavailable, OutcomeUnknown
from durastate.transport import Failure, HttpDriver, HttpRequest, HttpResponse, TransportOptions
from durastate.transport.aio import AsyncHttpDriver

FAST = TransportOptions(connect_timeout=1.0, read_timeout=2.0, deadline=10.0, backoff_base=0.01)

#: ``(request number, request head, connection) -> keep the connection open?``
Script = Callable[[int, bytes, socket.socket], bool]


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class ScriptedServer:
    """A socket server on 127.0.0.1: reads each request (head and Content-Length body) and
    lets ``script`` answer it with raw bytes. Counts connections, requests, and the most
    connections open at once."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self.listener.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.closed_by_client = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open_now += 1
                self.most_open = max(self.most_open, self.open_now)
                self._sockets.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        with self._lock:
                            self.closed_by_client += 1
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                buffer = buffer[length:]
                with self._lock:
                    self.requests.append(head)
                    number = len(self.requests)
                if not self.script(number, head, sock):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self.open_now -= 1
            sock.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def serve(script: Script) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script)
    try:
        yield server
    finally:
        server.close()


def send_all(sock: socket.socket, *parts: bytes, pause: float = 0.0) -> None:
    """Send ``parts`` as separate segments (with a pause between), so the client sees an
    answer arrive in pieces."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for part in parts:
        sock.sendall(part)
        if pause:
            time.sleep(pause)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def fetch_all(
    requests: list[HttpRequest], options: TransportOptions = FAST
) -> list[HttpResponse]:
    async with AsyncHttpDriver(options, seed=1) as driver:
        return [await driver.send(request) for request in requests]


def get(server: ScriptedServer, path: str = "/", method: str = "GET") -> HttpRequest:
    return HttpRequest.to(method, server.endpoint, path, body=b"{}" if method == "PUT" else b"")


# -- framing ---------------------------------------------------------------------------------


def test_a_chunked_body_in_pieces_with_extensions_and_trailers_is_read_whole() -> None:
    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        send_all(
            sock,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
            b"lo\r\n",
            b"7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            pause=0.02,
        )
        return True

    with serve(script) as server:
        answers = run(fetch_all([get(server), get(server)]))
        assert [a.body for a in answers] == [b"hello, world"] * 2
        assert server.connections == 1  # the trailer was consumed: the connection was reused


def test_a_body_delimited_by_the_close_is_read_to_the_end_and_the_connection_not_reused() -> None:
    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        send_all(sock, b"HTTP/1.1 200 OK\r\n\r\nfirst part, ", b"and the rest", pause=0.02)
        return False  # the end of the body is the end of the connection

    with serve(script) as server:
        answers = run(fetch_all([get(server), get(server)]))
        assert [a.body for a in answers] == [b"first part, and the rest"] * 2
        assert [a.attempts for a in answers] == [1, 1]
        assert server.connections == 2


def test_interim_answers_head_204_304_and_folded_headers() -> None:
    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        path = head.split(b" ")[1]
        if path == b"/continue":
            send_all(sock, b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"after 100"), pause=0.02)
        elif path == b"/head":  # announces a length it does not send
            send_all(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
        elif path == b"/204":
            send_all(sock, b"HTTP/1.1 204 No Content\r\n\r\n")
        elif path == b"/304":
            send_all(sock, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")
        else:
            send_all(sock, ok(extra=b"X-Folded: one\r\n  two\r\n\tthree\r\n"))
        return True

    with serve(script) as server:
        answers = run(
            fetch_all(
                [
                    get(server, "/continue"),
                    get(server, "/head", "HEAD"),
                    get(server, "/204"),
                    get(server, "/304"),
                    get(server, "/folded"),
                ]
            )
        )
        assert [(a.status, a.body) for a in answers] == [
            (200, b"after 100"),
            (200, b""),
            (204, b""),
            (304, b""),
            (200, b"ok"),
        ]
        assert answers[-1].header("x-folded") == "one two three"
        assert server.connections == 1


def test_connection_close_is_honoured() -> None:
    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        send_all(sock, ok(extra=b"Connection: close\r\n"))
        return True  # the server would keep it; the client must not

    with serve(script) as server:
        answers = run(fetch_all([get(server), get(server), get(server)]))
        assert [a.status for a in answers] == [200] * 3
        assert server.connections == 3


# -- keep-alive and dead connections ---------------------------------------------------------


def always_ok(number: int, head: bytes, sock: socket.socket) -> bool:
    send_all(sock, ok())
    return True


def test_keep_alive_reuses_one_connection() -> None:
    with serve(always_ok) as server:
        answers = run(fetch_all([get(server, f"/{n}", "PUT") for n in range(20)]))
        assert [a.body for a in answers] == [b"ok"] * 20
        assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_not_retried() -> None:
    """Every answer is followed by the server hanging up (without saying so): the next
    request must find that out before it writes, and go out on a new connection, once."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        send_all(sock, ok())
        return False

    async def three_puts(server: ScriptedServer) -> list[HttpResponse]:
        async with AsyncHttpDriver(FAST, seed=1) as driver:
            answers = []
            for n in range(3):
                answers.append(await driver.send(get(server, f"/{n}", "PUT")))
                await asyncio.sleep(0.05)  # the loop sees the EOF meanwhile
            return answers

    with serve(script) as server:
        answers = run(three_puts(server))
        assert [(a.status, a.attempts) for a in answers] == [(200, 1)] * 3
        assert len(server.requests) == 3
        assert server.connections == 3


@pytest.mark.parametrize(
    "cut",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"],
    ids=["before-the-answer", "in-the-head", "in-the-body"],
)
def test_a_put_whose_connection_dies_mid_answer_is_a_response_failure_never_resent(
    cut: bytes,
) -> None:
    """The second PUT reaches the server and its connection dies before the answer is
    whole: without a hook that is `OutcomeUnknown` and the PUT arrived once; with a hook,
    the hook sees a Failure at stage "response" (the same as the sync driver reports)."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        if number % 2 == 0:
            send_all(sock, cut)
            return False
        send_all(sock, ok())
        return True

    failures: dict[str, list[Failure]] = {"sync": [], "async": []}

    def hook_of(kind: str) -> Callable[[HttpRequest, Failure], bool]:
        def may_have_landed(request: HttpRequest, failure: Failure) -> bool:
            failures[kind].append(failure)
            return True

        return may_have_landed

    async def async_puts(server: ScriptedServer) -> None:
        async with AsyncHttpDriver(FAST, seed=1) as driver:
            assert (await driver.send(get(server, "/a", "PUT"))).status == 200
            with pytest.raises(OutcomeUnknown):
                await driver.send(get(server, "/a", "PUT"))
            assert len(server.requests) == 2  # received once, never sent again
            assert (await driver.send(get(server, "/b", "PUT"))).status == 200
            answer = await driver.send(get(server, "/b", "PUT"), hook_of("async"))
            assert (answer.status, answer.attempts, answer.outcome_unknown) == (200, 2, True)

    with serve(script) as server:
        run(async_puts(server))
    with serve(script) as server, HttpDriver(FAST, seed=1) as sync:
        assert sync.send(get(server, "/b", "PUT")).status == 200
        sync.send(get(server, "/b", "PUT"), hook_of("sync"))
    assert [f.stage for f in failures["async"]] == ["response"]
    if cut != b"HTTP/1.1 200 OK\r\nContent-Le":
        assert failures["async"] == failures["sync"]
    # else http.client takes a head cut off by the close for a whole one and returns an
    # empty 200; the async driver reports the incomplete answer


def test_a_read_timeout_fails_the_attempt_and_closes_its_connection() -> None:
    """The first answer stalls after its head; the GET is tried again on a new connection
    and the stalled one is closed by the client, never reused."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        if number == 1:
            send_all(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
            return True  # ... and nothing more: the client must give up on it
        send_all(sock, ok(b"second"))
        return True

    options = TransportOptions(read_timeout=0.3, deadline=5, backoff_base=0.01)
    with serve(script) as server:
        started = time.monotonic()
        (answer,) = run(fetch_all([get(server)], options))
        assert (answer.body, answer.attempts) == (b"second", 2)
        assert 0.3 <= time.monotonic() - started < 2.0
        assert server.connections == 2
        deadline = time.monotonic() + 2
        while server.closed_by_client < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.closed_by_client == 2  # the stalled one at the timeout, then at close()


def test_a_deadline_shorter_than_the_read_timeout_ends_a_trickling_answer() -> None:
    """A server that sends a byte every 0.1 s never trips the read timeout; the call's
    deadline still ends it."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        send_all(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(40):
            sock.sendall(b"x")
            time.sleep(0.1)
        return False

    options = TransportOptions(read_timeout=1.0, deadline=0.8, max_attempts=1)
    with serve(script) as server:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="timed out"):
            run(fetch_all([get(server)], options))
        assert time.monotonic() - started < 0.8 + 0.5


def test_a_cancelled_request_closes_its_connection() -> None:
    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        if number == 1:
            return True  # never answers the first request
        send_all(sock, ok())
        return True

    async def cancel_then_send(server: ScriptedServer) -> HttpResponse:
        async with AsyncHttpDriver(FAST, seed=1) as driver:
            task = asyncio.ensure_future(driver.send(get(server)))
            while not server.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):
                if server.closed_by_client:
                    break
                await asyncio.sleep(0.01)
            assert server.closed_by_client == 1
            return await driver.send(get(server))

    with serve(script) as server:
        answer = run(cancel_then_send(server))
        assert answer.body == b"ok"
        assert server.connections == 2


# -- the pool --------------------------------------------------------------------------------


def test_the_pool_bounds_the_connections_open_at_once() -> None:
    """50 requests at once through a pool of 4: never more than 4 connections, every
    request answered, and the 4 reused."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        time.sleep(0.01)
        send_all(sock, ok(head.split(b" ")[1]))
        return True

    async def fifty(server: ScriptedServer) -> list[HttpResponse]:
        options = TransportOptions(pool_size=4, connect_timeout=5, deadline=20)
        async with AsyncHttpDriver(options, seed=1) as driver:
            return list(
                await asyncio.gather(*(driver.send(get(server, f"/{n}")) for n in range(50)))
            )

    with serve(script) as server:
        answers = run(fifty(server))
        assert [a.body for a in answers] == [f"/{n}".encode() for n in range(50)]
        assert server.most_open <= 4
        assert server.connections == 4


def test_waiting_for_a_pooled_connection_is_bounded_by_the_connect_timeout() -> None:
    """Pool of 1, one request holding it: the next waits, then fails at stage "connect"
    (nothing was sent), and the pool still works afterwards."""

    def script(number: int, head: bytes, sock: socket.socket) -> bool:
        if number == 1:
            time.sleep(0.8)
        send_all(sock, ok())
        return True

    async def contend(server: ScriptedServer) -> tuple[HttpResponse, Failure, HttpResponse]:
        options = TransportOptions(pool_size=1, connect_timeout=0.2, read_timeout=5)
        async with AsyncHttpDriver(options, seed=1) as driver:
            first = asyncio.ensure_future(driver.send(get(server)))
            await asyncio.sleep(0.05)
            failure = await driver._attempt(get(server), driver.policy.call(get(server)).timeouts())
            assert isinstance(failure, Failure)
            return await first, failure, await driver.send(get(server))

    with serve(script) as server:
        first, failure, after = run(contend(server))
        assert (first.status, after.status) == (200, 200)
        assert (failure.stage, failure.reason) == ("connect", "timed out")
        assert server.connections == 1
        assert len(server.requests) == 2


def test_a_request_leaves_in_one_write_of_head_and_body() -> None:
    """Head and body go to the transport together (no second write for the kernel to send
    as a second segment)."""
    body = b"x" * 20_000

    async def spied_put(server: ScriptedServer) -> list[bytes]:
        async with AsyncHttpDriver(FAST, seed=1) as driver:
            request = HttpRequest.to("PUT", server.endpoint, "/k", body=body)
            assert (await driver.send(request)).status == 200
            key = (request.scheme, request.host)
            connection = driver._pool.take_idle(key)
            assert connection is not None
            assert connection.transport is not None
            writes: list[bytes] = []
            write = connection.transport.write

            def counted(data: Any) -> None:
                writes.append(bytes(data))
                write(data)

            connection.transport.write = counted  # type: ignore[method-assign]
            driver._pool.give_back(key, connection)
            assert (await driver.send(request)).status == 200
            return writes

    with serve(always_ok) as server:
        writes = run(spied_put(server))
    assert len(writes) == 1
    assert writes[0].startswith(b"PUT /k HTTP/1.1\r\n")
    assert writes[0].endswith(b"\r\n\r\n" + body)
    assert b"Content-Length: 20000\r\n" in writes[0]


def test_a_driver_used_from_a_new_event_loop_drops_the_old_loops_connections() -> None:
    """Connections belong to the loop that opened them: after that loop is closed, the same
    driver used from a new loop opens a new connection instead of failing."""
    driver = AsyncHttpDriver(FAST, seed=1)
    with serve(always_ok) as server:
        first = asyncio.run(driver.send(get(server)))  # asyncio.run closes its loop
        second = asyncio.run(driver.send(get(server)))
        asyncio.run(driver.close())
        assert (first.status, second.status, second.attempts) == (200, 200, 1)
        assert server.connections == 2
