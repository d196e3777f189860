"""A small fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a real emulator.

Clients (azure-core, botocore) connect to the proxy as if it were the service. The proxy
reads one request at a time from each client connection (headers, then a Content-Length or
chunked body), and for a configurable share of requests, chosen by a seeded RNG:

- ``"503"``: answers ``503 Service Unavailable`` itself; the request never reaches the server;
- ``"429"``: answers ``429 Too Many Requests`` (with ``Retry-After: 0`` and the service's
  throttling error code), the request never reaches the server;
- ``"drop"``: closes the client connection without an answer, before forwarding;
- ``"drop_after"``: forwards the request, lets the server apply it, then closes the client
  connection without passing the answer on (a response lost on the way back).

Every other request is forwarded unchanged, and the answer relayed. ``counters`` records how
many requests arrived, were forwarded, and met each fault.

``RespFaultProxy`` does the same for Redis's protocol (RESP): one command at a time, where
``"503"`` answers ``-LOADING`` and ``"429"`` answers ``-BUSY`` (the server's own "not run,
try again" errors), and ``methods`` names commands (``EVALSHA``).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Self
from urllib.parse import urlsplit

Fault = Literal["503", "429", "drop", "drop_after", "late"]
Flavor = Literal["azure", "dynamodb", "s3", "redis"]

_MAX_HEADER = 64 * 1024


class _Closed(Exception):
    """The peer closed its side (between requests, or in the middle of one)."""


class _Reader:
    """Buffered reads of lines and exact byte counts from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed
        self.buffer += chunk

    def until(self, marker: bytes) -> bytes:
        while True:
            found = self.buffer.find(marker)
            if found >= 0:
                end = found + len(marker)
                data, self.buffer = self.buffer[:end], self.buffer[end:]
                return data
            if len(self.buffer) > _MAX_HEADER:
                raise _Closed
            self._fill()

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def rest(self) -> bytes:
        """Everything until the peer closes (a response without a length)."""
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        data, self.buffer = self.buffer, b""
        return data


@dataclass
class _Message:
    head: bytes  # start line + headers, ending with the blank line
    headers: dict[str, str]
    body: bytes  # as framed on the wire (chunked stays chunked)

    @property
    def start_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")


def _parse_head(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers


def _read_chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = reader.until(b"\r\n")
        parts.append(size_line)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the blank line
                line = reader.until(b"\r\n")
                parts.append(line)
                if line == b"\r\n":
                    return b"".join(parts)
        parts.append(reader.exactly(size + 2))


def _read_body(reader: _Reader, headers: Mapping[str, str], *, until_close: bool) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(reader)
    if "content-length" in headers:
        return reader.exactly(int(headers["content-length"]))
    return reader.rest() if until_close else b""


def _read_request(reader: _Reader, client: socket.socket) -> _Message:
    head = reader.until(b"\r\n\r\n")
    headers = _parse_head(head)
    if headers.get("expect", "").lower() == "100-continue":
        # Answer the interim response ourselves and drop the header upstream.
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"expect:")]
        head = b"\r\n".join(lines)
    body = _read_body(reader, headers, until_close=False)
    return _Message(head, headers, body)


def _read_response(reader: _Reader, method: str) -> _Message:
    while True:
        head = reader.until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status >= 200:
            break  # skip interim 1xx answers
    headers = _parse_head(head)
    if method == "HEAD" or status in (204, 304):
        body = b""
    else:
        body = _read_body(reader, headers, until_close=True)
    return _Message(head, headers, body)


def _canned(status: int, reason: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: keep-alive\r\n\r\n"
    ).encode("latin-1") + body


def _fault_response(fault: Fault, flavor: Flavor) -> bytes:
    """A 503 or 429 answer shaped like the service's own, so SDKs classify it correctly."""
    if fault == "503":
        status, reason = 503, "Service Unavailable"
        codes = {"azure": "ServerBusy", "dynamodb": "ServiceUnavailable", "s3": "SlowDown"}
    else:
        status, reason = 429, "Too Many Requests"
        codes = {"azure": "TooManyRequests", "dynamodb": "ThrottlingException", "s3": "SlowDown"}
    code = codes[flavor]
    extra = "Retry-After: 0\r\n" if status == 429 else ""
    if flavor == "azure":
        body = (
            '{"odata.error":{"code":"' + code + '","message":{"lang":"en-US",'
            '"value":"injected by faultproxy"}}}'
        ).encode()
        return _canned(
            status,
            reason,
            body,
            "application/json;odata=minimalmetadata",
            extra + f"x-ms-error-code: {code}\r\n",
        )
    if flavor == "dynamodb":
        body = (
            '{"__type":"com.amazonaws.dynamodb.v20120810#' + code + '",'
            '"message":"injected by faultproxy"}'
        ).encode()
        return _canned(status, reason, body, "application/x-amz-json-1.0", extra)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>injected by faultproxy</Message></Error>"
    ).encode()
    return _canned(status, reason, body, "application/xml", extra)


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target`` (``http://host:port``), injecting faults.

    ``rate`` is the share of requests that meet a fault; ``faults`` weighs the kinds.
    ``methods``, when given, limits faults to those HTTP methods (others always pass).
    Use as a context manager, or call ``start()``/``stop()``.
    """

    target: str
    flavor: Flavor
    rate: float = 0.0
    faults: Mapping[Fault, float] = field(default_factory=lambda: {"503": 1.0})
    seed: int = 0
    methods: frozenset[str] | None = None
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._path_suffix = parts.path  # e.g. /devstoreaccount1 for Azurite
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so stop() does not wait on a blocked accept()
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """The proxy's base URL, with the target's path (Azurite's account) kept."""
        return f"http://127.0.0.1:{self.port}{self._path_suffix}"

    def configure(
        self, *, rate: float | None = None, faults: Mapping[Fault, float] | None = None
    ) -> None:
        with self._lock:
            if rate is not None:
                self.rate = rate
            if faults is not None:
                self.faults = dict(faults)

    def _choose(self, method: str) -> Fault | None:
        with self._lock:
            self.counters["requests"] += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            kinds = list(self.faults)
            fault = self._rng.choices(kinds, weights=[self.faults[k] for k in kinds])[0]
            self.counters[fault] += 1
            return fault

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        thread = threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="faultproxy-conn", daemon=True
            )
            thread.start()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        upstream_reader: _Reader | None = None
        reader = _Reader(client)
        try:
            while not self._stopping.is_set():
                try:
                    request = _read_request(reader, client)
                except (_Closed, OSError, ValueError):
                    return
                method = request.start_line.split(" ", 1)[0].upper()
                fault = self._choose(method)
                if fault in ("503", "429"):
                    client.sendall(_fault_response(fault, self.flavor))
                    continue
                if fault == "drop":
                    return  # closed in finally: the request never reached the server
                if upstream is None:
                    upstream = socket.create_connection(self._upstream, timeout=30)
                    self._track(upstream)
                    upstream_reader = _Reader(upstream)
                assert upstream_reader is not None
                upstream.sendall(request.head + request.body)
                self._count("forwarded")
                try:
                    response = _read_response(upstream_reader, method)
                except (_Closed, OSError, ValueError):
                    return
                if fault == "drop_after":
                    return  # the server applied it; the answer is lost
                client.sendall(response.head + response.body)
                framed = (
                    "content-length" in response.headers
                    or "chunked" in response.headers.get("transfer-encoding", "").lower()
                )
                if response.headers.get("connection", "").lower() == "close" or (
                    not framed and method != "HEAD" and response.body
                ):
                    return
        except OSError:
            return
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream)


def _read_resp(reader: _Reader) -> bytes:
    """One RESP2 value as framed on the wire (a command array or a reply)."""
    line = reader.until(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-", b":"):
        return line
    if kind == b"$":
        size = int(rest)
        return line if size < 0 else line + reader.exactly(size + 2)
    if kind == b"*":
        count = int(rest)
        return line + b"".join(_read_resp(reader) for _ in range(max(count, 0)))
    return line  # an inline command (PING from a readiness probe)


def _command_name(command: bytes) -> str:
    """The first word of a RESP command array (``EVALSHA``), with the script's SHA for
    EVALSHA (``EVALSHA 1f0c...``), so ``methods`` can single out one script."""
    parts = command.split(b"\r\n")
    if not command.startswith(b"*") or len(parts) < 3:
        return parts[0].decode("latin-1").upper()
    name = parts[2].decode("latin-1").upper()
    if name == "EVALSHA" and len(parts) > 4:
        return f"{name} {parts[4].decode('latin-1')}"
    return name


class RespFaultProxy(FaultProxy):
    """The fault proxy for Redis: RESP framing instead of HTTP, same faults and counters.

    ``between``, when set, runs after a ``drop_after`` answer was withheld and before the
    client's connection is closed: a second writer acting between a lost answer and the
    client's retry (the client waits for the answer until the connection closes). A
    ``"late"`` fault runs ``between`` (a pause) and then passes the answer on, on the same
    connection: an answer that arrives after the client stopped waiting.
    """

    between: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        upstream_reader: _Reader | None = None
        reader = _Reader(client)
        try:
            while not self._stopping.is_set():
                try:
                    command = _read_resp(reader)
                except (_Closed, OSError, ValueError):
                    return
                fault = self._choose(_command_name(command))
                if fault == "503":
                    client.sendall(b"-LOADING injected by faultproxy\r\n")
                    continue
                if fault == "429":
                    client.sendall(b"-BUSY injected by faultproxy\r\n")
                    continue
                if fault == "drop":
                    return
                if upstream is None:
                    upstream = socket.create_connection(self._upstream, timeout=30)
                    self._track(upstream)
                    upstream_reader = _Reader(upstream)
                assert upstream_reader is not None
                upstream.sendall(command)
                self._count("forwarded")
                try:
                    reply = _read_resp(upstream_reader)
                except (_Closed, OSError, ValueError):
                    return
                if fault in ("drop_after", "late") and self.between is not None:
                    self.between()
                if fault == "drop_after":
                    return
                client.sendall(reply)
        except OSError:
            return
        finally:
            self._untrack(client)
            if upstream is not None:
                self._untrack(upstream)
