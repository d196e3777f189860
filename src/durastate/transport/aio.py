"""The async driver: asyncio keep-alive connections, following the same `RetryPolicy`.

Every decision (timeouts, deadline, backoff, what is retried, outcome unknown) is taken by
`durastate.transport.policy.Call`, exactly as in the sync driver; this module only moves
bytes, over `HttpConnection`s (one `asyncio.Protocol` per connection) from a pool that
holds at most ``pool_size`` connections per (scheme, host); a request that finds them all
busy waits for one (within the connect timeout). It needs nothing beyond the standard
library: measured, aiohttp cost up to twice its CPU per request (docs/transport.md).

A connection is never used again after a timeout, a cancellation, a cut-off answer or a
peer that hung up; and no request is ever re-sent here: a PUT whose answer was lost on a
reused connection reaches the policy as a `Failure` at stage "response", so the backend
core's ``may_have_landed`` decides (aiohttp re-sent such a request by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

from durastate.transport.aio_connection import HttpConnection, request_bytes
from durastate.transport.connections import proxy_of, ssl_context
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.policy import (
    CERTIFICATE_FAILED,
    Failure,
    LandedHook,
    RetryPolicy,
    Timeouts,
    TransportOptions,
)
from durastate.transport.sync import reason_of

__all__ = ["AsyncHttpDriver"]

_Key = tuple[str, str]
_Connector = Callable[[], Awaitable[HttpConnection]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Host:
    """The connections to one (scheme, host): idle ones, how many are open, who waits."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[HttpConnection] = []
        self.open = 0
        #: a waiter gets a released connection, or None: "a slot is yours, connect"
        self.waiters: deque[asyncio.Future[HttpConnection | None]] = deque()


class _Pool:
    """At most ``size`` open connections per (scheme, host), reused while they last."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._hosts: dict[_Key, _Host] = {}
        self._every: set[HttpConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def take_idle(self, key: _Key) -> HttpConnection | None:
        """An idle connection whose peer has not hung up, or None (no await: the hot path)."""
        host = self._hosts.get(key)
        if host is None:
            return None
        idle = host.idle
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
            self.discard(key, connection)
        return None

    async def acquire(self, key: _Key, connect: _Connector) -> HttpConnection:
        """An idle connection, a new one if fewer than ``size`` are open, or the next one
        released. The caller bounds the wait (the connect timeout)."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host()
        while True:
            connection = self.take_idle(key)
            if connection is not None:
                return connection
            if host.open < self._size:
                host.open += 1
                return await self._open(key, connect)
            waiter: asyncio.Future[HttpConnection | None]
            waiter = asyncio.get_running_loop().create_future()
            host.waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # handed over, then cancelled
                    given = waiter.result()
                    if given is None:
                        self._free_slot(key)
                    else:
                        self.give_back(key, given)
                raise
            if handed is None:
                return await self._open(key, connect)
            if handed.usable:
                return handed
            self._close(handed)
            return await self._open(key, connect)

    async def _open(self, key: _Key, connect: _Connector) -> HttpConnection:
        """Connect within a slot already counted as open; the slot is freed on failure."""
        try:
            connection = await connect()
        except BaseException:
            self._free_slot(key)
            raise
        self._every.add(connection)
        return connection

    def give_back(self, key: _Key, connection: HttpConnection) -> None:
        """A connection whose answer was read whole: to a waiter, or idle."""
        if not connection.usable:
            self.discard(key, connection)
            return
        host = self._hosts.get(key)
        if host is None:  # the pool was closed meanwhile
            self._close(connection)
            return
        while host.waiters:
            waiter = host.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        host.idle.append(connection)

    def discard(self, key: _Key, connection: HttpConnection) -> None:
        """Close a connection that must not be reused, and free its slot."""
        self._close(connection)
        self._free_slot(key)

    def _close(self, connection: HttpConnection) -> None:
        connection.close()
        self._every.discard(connection)

    def _free_slot(self, key: _Key) -> None:
        host = self._hosts.get(key)
        if host is None:
            return
        while host.waiters:
            waiter = host.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: ``open`` stays counted
                return
        host.open -= 1

    def close(self) -> None:
        for connection in list(self._every):
            connection.abandon()
        self._every.clear()
        for host in self._hosts.values():
            for waiter in host.waiters:
                if not waiter.done():
                    with contextlib.suppress(RuntimeError):  # a closed loop's waiter
                        waiter.set_exception(ConnectionAbortedError("the driver was closed"))
        self._hosts.clear()


class AsyncHttpDriver:
    """Sends `HttpRequest`s from coroutines; connections are opened on first use, in the
    running loop. Use ``async with`` or await `close`."""

    def __init__(self, options: TransportOptions | None = None, *, seed: int | None = None) -> None:
        self.policy = RetryPolicy(options, seed=seed)
        self._proxy = proxy_of(self.policy.options)
        self._proxy_line = (
            f"Proxy-Authorization: {self._proxy.authorization}\r\n"
            if self._proxy is not None and self._proxy.authorization
            else ""
        )
        self._pool = _Pool(self.policy.options.pool_size)
        self._tls: ssl.SSLContext | None = None

    async def send(
        self,
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        call = self.policy.call(request, may_have_landed, deadline)
        while True:
            verdict = call.judge(await self._attempt(request, call.timeouts()))
            if isinstance(verdict, HttpResponse):
                return verdict
            await asyncio.sleep(verdict)

    async def close(self) -> None:
        self._pool.close()

    async def __aenter__(self) -> AsyncHttpDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncHttpDriver(proxy={'yes' if self._proxy else 'no'})"

    # -- one attempt --------------------------------------------------------------------

    async def _attempt(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse | Failure:
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = (request.scheme, request.host)
        pool = self._pool
        if pool.loop is not loop:  # connections belong to the loop that opened them
            pool.close()
            pool.loop = loop
        stage: Literal["connect", "send", "response"] = "connect"
        connection = pool.take_idle(key)
        try:
            if connection is None:
                async with asyncio.timeout(timeouts.connect):
                    connection = await pool.acquire(key, partial(self._connect, request))
            stage = "send"
            plain_proxy = self._proxy is not None and request.scheme == "http"
            payload = (
                request_bytes(request, absolute=True, extra=self._proxy_line)
                if plain_proxy
                else request_bytes(request)
            )
            if not connection.send(payload, request.method):
                raise ConnectionResetError("the connection was closed")
            stage = "response"
            answer = await connection.receive(timeouts.read, started + timeouts.total)
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                pool.discard(key, connection)
            if isinstance(exc, ssl.SSLCertVerificationError):
                return Failure(stage, CERTIFICATE_FAILED, retryable=False)
            return Failure(stage, reason_of(exc))
        except BaseException:  # cancelled: the connection is closed, never reused
            if connection is not None:
                pool.discard(key, connection)
            raise
        response = HttpResponse(answer.status, answer.headers.by_name, answer.body)
        if answer.will_close:
            pool.discard(key, connection)
        else:
            pool.give_back(key, connection)
        return response

    async def _connect(self, request: HttpRequest) -> HttpConnection:
        loop = asyncio.get_running_loop()
        host, port = _host_and_port(request)
        tls = None
        if request.scheme == "https":
            if self._tls is None:
                self._tls = ssl_context(self.policy.options)
            tls = self._tls
        proxy = self._proxy
        if proxy is None:
            _, connection = await loop.create_connection(
                lambda: HttpConnection(loop),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls else None,
            )
            return connection
        _, connection = await loop.create_connection(
            lambda: HttpConnection(loop), proxy.host, proxy.port
        )
        if tls is None:
            return connection
        try:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            options = self.policy.options
            await connection.tunnel(authority, proxy.authorization, options.read_timeout)
            assert connection.transport is not None
            secured = await loop.start_tls(
                connection.transport, connection, tls, server_hostname=host
            )
        except BaseException:
            connection.close()
            raise
        assert isinstance(secured, asyncio.Transport)
        connection.transport = secured
        return connection


def _host_and_port(request: HttpRequest) -> tuple[str, int]:
    """Host name (brackets of an IPv6 literal removed) and port of the request's authority."""
    authority = request.host
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else _DEFAULT_PORTS[request.scheme]
    host, colon, port = authority.rpartition(":")
    if colon and port.isdigit():
        return host, int(port)
    return authority, _DEFAULT_PORTS[request.scheme]
