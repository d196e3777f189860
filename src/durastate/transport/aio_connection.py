"""One keep-alive HTTP/1.1 connection for the async driver: an `asyncio.Protocol` that
writes a request in one ``transport.write`` and parses its answer as the bytes arrive.

Why not aiohttp: its per-request machinery (request and response objects, stream readers,
timers, tracing hooks) cost 1.4-2.4x the client CPU of a keep-alive ``http.client``
request (benchmarks/results/2026-11-29-async). Here a request is a future and one timer.

The answer is framed as RFC 9112 says: Content-Length, chunked transfer coding, or the
end of the connection; 1xx answers are skipped; HEAD, 204 and 304 have no body. Headers
are parsed by `ResponseHeaders`, the sync driver's parser. Errors are the exceptions
``http.client`` raises in the same situation (`RemoteDisconnected`, `IncompleteRead`,
`BadStatusLine`), so both drivers give the policy the same failure reasons.
"""

from __future__ import annotations

import asyncio
import http.client
from typing import NamedTuple

from durastate.transport.messages import HttpRequest
from durastate.transport.response_head import ResponseHeaders
from durastate.transport.sync import BODY_METHODS

__all__ = ["Answer", "HttpConnection", "request_bytes"]

#: A head longer than this is refused (http.client: 64 KiB a line, 100 lines).
_MAX_HEAD = 256 * 1024
#: How early the loop may fire a timer (its clock resolution) without it counting as late.
_TIMER_SLACK = 0.001


class Answer(NamedTuple):
    """A parsed answer; ``will_close`` when the connection cannot carry another request."""

    status: int
    headers: ResponseHeaders
    body: bytes
    will_close: bool


def request_bytes(request: HttpRequest, *, absolute: bool = False, extra: str = "") -> bytes:
    """Head and body of ``request`` as sent: the headers ``http.client`` would send for it
    in the sync driver (Host and Content-Length unless given, nothing else). ``absolute``
    puts the whole URL in the start line (a plain-http proxy); ``extra`` is more header
    lines, each ending in CRLF (Proxy-Authorization)."""
    headers = request.headers
    body = request.body
    method = request.method
    target = request.url if absolute else request.target
    head = f"{method} {target} HTTP/1.1\r\n"
    if "host" not in headers:
        head += f"Host: {request.host}\r\n"
    if (body or method in BODY_METHODS) and "content-length" not in headers:
        head += f"Content-Length: {len(body)}\r\n"
    head += "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    wire = (head + extra + "\r\n").encode("latin-1")
    return wire + body if body else wire


class HttpConnection(asyncio.Protocol):
    """One connection, one request at a time. `broken` turns true when the peer closed it,
    sent bytes nobody asked for, or an answer failed: such a connection is never reused."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.broken = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._attempt_end = 0.0
        self._last_data = 0.0
        self._reset("GET")

    def _reset(self, method: str) -> None:
        self._method = method
        self._status = 0
        self._version = b""
        self._headers: ResponseHeaders | None = None
        self._length: int | None = None  # None with _chunked False: ends with the connection
        self._chunked = False
        self._chunk_left: int | None = None
        self._body = bytearray()
        self._will_close = False
        self._received = False

    # -- the driver's side ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Idle and alive: the peer has not hung up (the loop saw its EOF) nor spoken."""
        transport = self.transport
        return not self.broken and transport is not None and not transport.is_closing()

    def send(self, payload: bytes, method: str) -> bool:
        """Write one request whole; False when the connection was already gone (nothing
        can have reached the server). The answer is awaited with `receive`."""
        transport = self.transport
        if transport is None or self.broken or transport.is_closing():
            return False
        self._reset(method)
        self._buffer.clear()
        self._waiter = self._loop.create_future()
        transport.write(payload)
        if transport.is_closing():  # the write failed at once: the socket was dead
            self._waiter = None
            self.broken = True
            return False
        return True

    async def receive(self, read_timeout: float, attempt_end: float) -> Answer:
        """The answer to the request just sent: at most ``read_timeout`` between bytes and
        nothing after ``attempt_end`` (loop time); a timeout or cancellation closes the
        connection."""
        waiter = self._waiter
        assert waiter is not None, "send() first"
        loop = self._loop
        self._read_timeout = read_timeout
        self._attempt_end = attempt_end
        self._last_data = now = loop.time()
        self._timer = loop.call_at(min(now + read_timeout, attempt_end), self._check_timeout)
        try:
            return await waiter
        except BaseException:
            self.close()
            raise
        finally:
            self._timer.cancel()
            self._timer = None
            self._waiter = None

    async def tunnel(self, authority: str, authorization: str | None, seconds: float) -> None:
        """``CONNECT authority`` through the proxy at the other end (its answer must be 2xx);
        then the caller starts TLS over this connection."""
        extra = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
        payload = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n"
        if not self.send(payload.encode("latin-1"), "CONNECT"):
            raise ConnectionResetError("the proxy closed the connection")
        answer = await self.receive(seconds, self._loop.time() + seconds)
        if not 200 <= answer.status < 300:
            self.close()
            raise OSError(f"Tunnel connection failed: {answer.status}")

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """Close, also when the loop that opened the connection is closed already."""
        try:
            self.close()
        except RuntimeError:  # its loop is closed and will never run the close: free the
            # socket now (asyncio's TransportSocket has no close(); the socket it wraps does)
            wrapped = self.transport.get_extra_info("socket") if self.transport else None
            raw = getattr(wrapped, "_sock", None)
            if raw is not None:
                raw.close()

    # -- the loop's side --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nobody asked: a peer closing an idle connection, or junk
            self.close()
            return
        self._received = True
        self._last_data = self._loop.time()
        self._buffer += data
        try:
            self._parse()
        except (http.client.HTTPException, ValueError) as exc:
            self._fail(exc if isinstance(exc, http.client.HTTPException) else _bad_answer())

    def eof_received(self) -> bool:
        self.broken = True
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        """The peer is gone: a body that runs to the end is complete, anything else cut."""
        if self._waiter is None:
            return
        delimited_by_close = self._length is None and not self._chunked
        if exc is None and self._headers is not None and delimited_by_close:
            self._finish(bytes(self._buffer), will_close=True)
            return
        if exc is not None:
            self._fail(exc)
        elif self._received:
            self._fail(http.client.IncompleteRead(bytes(self._body)))
        else:
            self._fail(http.client.RemoteDisconnected("closed without an answer"))

    def _check_timeout(self) -> None:
        due = min(self._last_data + self._read_timeout, self._attempt_end)
        now = self._loop.time()
        if now + _TIMER_SLACK < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        self._fail(TimeoutError("timed out"))

    # -- parsing ----------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while self._headers is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise http.client.LineTooLong("response head")
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            del buffer[: end + 4]
            self._head(lines)
        if self._chunked:
            self._parse_chunks()
            return
        length = self._length
        if length is None:  # delimited by the end of the connection
            return
        if len(buffer) >= length:
            body = bytes(buffer[:length]) if len(buffer) > length else bytes(buffer)
            self._finish(body, will_close=self._will_close or len(buffer) > length)

    def _head(self, lines: list[bytes]) -> None:
        """The status line and headers; an interim (1xx) answer is dropped."""
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise http.client.BadStatusLine(lines[0].decode("latin-1")[:64])
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return
        headers = ResponseHeaders(lines[1:])
        self._status = status
        self._version = version
        self._headers = headers
        self._will_close = _will_close(version, headers)
        coding = headers.get("transfer-encoding")
        no_body = (
            status in (204, 304)
            or 100 <= status < 200
            or self._method == "HEAD"
            or (self._method == "CONNECT" and 200 <= status < 300)
        )
        if no_body:
            self._length = 0
        elif coding is not None and coding.lower() == "chunked":
            self._chunked = True
        else:
            self._length = _content_length(headers)
            if self._length is None:
                self._will_close = True

    def _parse_chunks(self) -> None:
        buffer = self._buffer
        while True:
            left = self._chunk_left
            if left is None:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buffer[:end]).split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise _bad_answer()
                if size == 0:  # the last chunk: skip trailers up to the empty line
                    if buffer[end + 2 : end + 4] == b"\r\n":
                        rest = end + 4
                    else:
                        trailer_end = buffer.find(b"\r\n\r\n", end)
                        if trailer_end < 0:
                            return
                        rest = trailer_end + 4
                    leftover = len(buffer) > rest
                    self._finish(bytes(self._body), will_close=self._will_close or leftover)
                    return
                del buffer[: end + 2]
                self._chunk_left = left = size
            if len(buffer) < left + 2:
                return
            self._body += buffer[:left]
            del buffer[: left + 2]
            self._chunk_left = None

    def _finish(self, body: bytes, *, will_close: bool) -> None:
        waiter = self._waiter
        headers = self._headers
        assert headers is not None
        self._waiter = None
        if will_close:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, headers, body, will_close))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        self._waiter = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _will_close(version: bytes, headers: ResponseHeaders) -> bool:
    """``http.client``'s keep-alive rule: HTTP/1.1 unless ``Connection: close``; HTTP/1.0
    only with an explicit keep-alive."""
    connection = (headers.get("connection") or "").lower()
    if version == b"HTTP/1.1":
        return "close" in connection
    if headers.get("keep-alive") is not None or "keep-alive" in connection:
        return False
    return "keep-alive" not in (headers.get("proxy-connection") or "").lower()


def _content_length(headers: ResponseHeaders) -> int | None:
    """The declared length, or None (absent or unreadable: the body runs to the close)."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _bad_answer() -> http.client.HTTPException:
    return http.client.IncompleteRead(b"")
