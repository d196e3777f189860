"""The sync driver: `http.client` over a small keep-alive pool, following `RetryPolicy`.

`http.client` was measured cheaper per request than urllib3's pool on the same signed
request (docs/transport.md has the figures): the pool here is a list of idle connections per
(scheme, host), checked for a peer that hung up before reuse, as urllib3 does. One driver
is safe to share between threads; a connection is used by one request at a time.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from typing import Literal

from durastate.transport.connections import Proxy, proxy_of, ssl_context
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.policy import (
    CERTIFICATE_FAILED,
    Failure,
    LandedHook,
    RetryPolicy,
    Timeouts,
    TransportOptions,
)
from durastate.transport.response_head import LeanResponse, ResponseHeaders

__all__ = ["BODY_METHODS", "HttpDriver", "reason_of"]

_Key = tuple[str, str]
#: Methods that send a Content-Length even with an empty body (servers expect one).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE"})


class _Pool:
    """Idle keep-alive connections per (scheme, host), at most ``size`` each."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        """An idle connection whose peer has not hung up, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                connection = idle.pop()
            if not _dropped(connection):
                return connection
            connection.close()

    def give_back(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._size:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            every = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in every:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed by the server. ``poll``
    where there is one: ``select`` fails on descriptors above 1023, and would then cost
    every request a new connection in a process with many files open."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class HttpDriver:
    """Sends `HttpRequest`s with retries, timeouts and a deadline; returns `HttpResponse`s.

    Use as a context manager or call `close`. ``may_have_landed`` (see
    `durastate.transport.policy`) is how a backend core takes responsibility for requests
    whose answer was lost.
    """

    def __init__(self, options: TransportOptions | None = None, *, seed: int | None = None) -> None:
        self.policy = RetryPolicy(options, seed=seed)
        self._pool = _Pool(self.policy.options.pool_size)
        self._proxy = proxy_of(self.policy.options)
        self._tls: ssl.SSLContext | None = None

    def send(
        self,
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        call = self.policy.call(request, may_have_landed, deadline)
        while True:
            verdict = call.judge(self._attempt(request, call.timeouts()))
            if isinstance(verdict, HttpResponse):
                return verdict
            time.sleep(verdict)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> HttpDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpDriver(proxy={'yes' if self._proxy else 'no'})"

    # -- one attempt --------------------------------------------------------------------

    def _attempt(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse | Failure:
        key = (request.scheme, request.host)
        stage: Literal["connect", "send", "response"] = "connect"
        connection = self._pool.take(key)
        try:
            if connection is None:
                connection = self._connect(request, timeouts.connect)
            stage = "send"
            assert connection.sock is not None
            connection.sock.settimeout(timeouts.read)
            self._write(connection, request)
            stage = "response"
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                return Failure(stage, CERTIFICATE_FAILED, retryable=False)
            return Failure(stage, reason_of(exc))
        headers: ResponseHeaders = answer.headers  # type: ignore[assignment]
        response = HttpResponse(answer.status, headers.by_name, body)
        if answer.will_close:
            connection.close()
        else:
            self._pool.give_back(key, connection)
        return response

    def _connect(self, request: HttpRequest, timeout: float) -> http.client.HTTPConnection:
        proxy = self._proxy
        connection: http.client.HTTPConnection
        if request.scheme == "https":
            if self._tls is None:
                self._tls = ssl_context(self.policy.options)
            if proxy is None:
                connection = http.client.HTTPSConnection(
                    request.host, timeout=timeout, context=self._tls
                )
            else:
                connection = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=timeout, context=self._tls
                )
                connection.set_tunnel(request.host, headers=_proxy_headers(proxy))
        elif proxy is None:
            connection = http.client.HTTPConnection(request.host, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        connection.response_class = LeanResponse
        connection.connect()
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _write(self, connection: http.client.HTTPConnection, request: HttpRequest) -> None:
        proxy = self._proxy
        plain_proxy = proxy is not None and request.scheme == "http"
        target = request.url if plain_proxy else request.target
        connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        headers = request.headers
        if "host" not in headers:
            connection.putheader("Host", request.host)
        body = request.body
        if (body or request.method in BODY_METHODS) and "content-length" not in headers:
            connection.putheader("Content-Length", str(len(body)))
        for name, value in headers.items():
            connection.putheader(name, value)
        if plain_proxy:
            for name, value in _proxy_headers(proxy).items():  # type: ignore[arg-type]
                connection.putheader(name, value)
        connection.endheaders(body or None)


def _proxy_headers(proxy: Proxy) -> dict[str, str]:
    return {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}


def reason_of(exc: BaseException) -> str:
    """A safe description of a transport error: its class, and "timed out" for timeouts."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return type(exc).__name__
