"""The async driver's connections: one ``asyncio.Protocol`` each, RESP2 (`resp`), a pool.

Why not ``redis.asyncio``: its per-command machinery (pool lock and observability hooks,
``asyncio.timeout``, a stream reader, the retry wrapper) made an async update cost about
twice the client CPU of a sync one. Here a command is one ``transport.write`` and one
future, resolved by ``data_received``; a pipeline is one write and one future for all its
replies. redis-py still does what it is good at: reading the URL and options (the pool's
``connection_kwargs``), the TLS context (its ``SSLConnection``'s, so verification is the
same), the error classes (`resp.error_reply`), and pub/sub (``push``).

Failures are redis-py's exception classes with redis-py's meanings, so ``failures`` maps
them as before: a connection that cannot be made is ``ConnectionError("Error ... connecting
to ...")`` (nothing was sent), one lost with a call in flight ``ConnectionError`` (the call
may have landed), no answer within the timeout ``TimeoutError``. A connection whose answer
is late, lost or abandoned (a cancelled caller) is closed, never reused: a late answer can
never reach the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis import exceptions
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from durastate.backends.redis.resp import ProtocolError, ReplyReader, pack_command, pack_commands


class Settings:
    """Where and how to connect, read from a ``redis.asyncio`` pool made from the same URL
    and options (host/port or unix path, db, username/password, TLS context)."""

    def __init__(self, pool: redis.asyncio.ConnectionPool, timeout: float) -> None:
        kwargs = pool.connection_kwargs
        self.timeout = timeout
        self.max_connections: int = pool.max_connections
        self.path: str | None = None
        self.host: str = kwargs.get("host", "localhost")
        self.port: int = int(kwargs.get("port", 6379))
        self.ssl: ssl.SSLContext | None = None
        if issubclass(pool.connection_class, UnixDomainSocketConnection):
            self.path = kwargs["path"]
        elif issubclass(pool.connection_class, SSLConnection):
            self.ssl = pool.connection_class(**kwargs).ssl_context.get()
        self.where = self.path or f"{self.host}:{self.port}"
        self.db: int = int(kwargs.get("db") or 0)
        self.client_name: str | None = kwargs.get("client_name")
        username, password = kwargs.get("username"), kwargs.get("password")
        self.auth: tuple[str, ...] = ()
        if password:
            self.auth = (username, password) if username else (password,)


class RespConnection(asyncio.Protocol):
    """One connection; one caller at a time (the pool sees to it)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = ReplyReader()
        self.waiter: asyncio.Future[list[Any]] | None = None
        self.expected = 0
        self.replies: list[Any] = []
        self.broken = False  # lost, timed out or abandoned: never used again

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            replies = self.reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        except ValueError as exc:  # a length that is not a number
            self._fail(ProtocolError(f"not a RESP2 reply from {self.where} ({exc})"))
            return
        if not replies:
            return
        waiter = self.waiter
        if waiter is None:  # nobody asked: the connection is out of step
            self._fail(ProtocolError(f"an unexpected reply from {self.where}"))
            return
        self.replies += replies
        if len(self.replies) >= self.expected:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(self.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f" ({exc})" if exc is not None else ""
        lost = exceptions.ConnectionError(f"Error while reading from {self.where}: closed{why}")
        self._fail(lost)

    # -- calls ----------------------------------------------------------------------------

    def _fail(self, exc: exceptions.RedisError) -> None:
        self.broken = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _timed_out(self, waiter: asyncio.Future[list[Any]]) -> None:
        if waiter is self.waiter:
            self._fail(exceptions.TimeoutError(f"Timeout reading from {self.where}"))

    async def request(self, data: bytes, count: int, timeout: float) -> list[Any]:
        """Send ``data`` (``count`` commands) and return their ``count`` replies."""
        assert self.transport is not None
        waiter = self.waiter = self.loop.create_future()
        self.expected, self.replies = count, []
        self.transport.write(data)
        timer = self.loop.call_later(timeout, self._timed_out, waiter)
        try:
            replies: list[Any] = await waiter
        finally:
            timer.cancel()
        return replies

    def close(self) -> None:
        self.broken = True
        if self.transport is None:
            return
        if not self.loop.is_closed():
            self.transport.abort()
        else:  # its loop cannot close it any more: at least the server lets it go now
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _raised(replies: list[Any]) -> None:
    """redis-py raises an error reply that condemns the connection (``LOADING``, a refused
    ``AUTH``, too many clients), even inside a pipeline: the same here."""
    for reply in replies:
        if isinstance(reply, exceptions.ConnectionError):
            raise reply


class RespPool:
    """Connections to one server, at most ``max_connections`` in use; a caller that finds
    them all busy waits (up to the timeout) for one to come back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: list[RespConnection] = []
        self._all: set[RespConnection] = set()
        # the connections in use are counted per event loop (a semaphore belongs to one);
        # a store that moves on to a new loop leaves the old loop's connections behind
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def execute(self, command: Sequence[Any]) -> Any:
        """One command's reply; an error reply raised as redis-py's exception."""
        reply = (await self._exchange(pack_command(command), 1))[0]
        if isinstance(reply, exceptions.RedisError):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one round trip; an error reply stays in its place."""
        return await self._exchange(pack_commands(commands), len(commands))

    async def _exchange(self, data: bytes, count: int) -> list[Any]:
        loop = asyncio.get_running_loop()
        slots = self._slots if self._slots_loop is loop else self._make_slots(loop)
        assert slots is not None
        if slots.locked():
            await self._wait_for_a_slot(slots)
        else:
            await slots.acquire()
        try:
            connection = self._take(loop)
            if connection is None:
                connection = await self._connect()
            try:
                replies = await connection.request(data, count, self.settings.timeout)
                _raised(replies)
            except BaseException:
                self._drop(connection)
                raise
            if self._closed:
                self._drop(connection)
            else:
                self._idle.append(connection)
            return replies
        finally:
            slots.release()

    def _make_slots(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        self._slots, self._slots_loop = asyncio.Semaphore(self.settings.max_connections), loop
        return self._slots

    async def _wait_for_a_slot(self, slots: asyncio.Semaphore) -> None:
        try:
            await asyncio.wait_for(slots.acquire(), self.settings.timeout)
        except TimeoutError:
            # nothing was sent: worded like a connection that could not be made
            raise exceptions.ConnectionError(
                f"Error connecting to {self.settings.where}: all "
                f"{self.settings.max_connections} connections stayed busy for "
                f"{self.settings.timeout} s"
            ) from None

    def _take(self, loop: asyncio.AbstractEventLoop) -> RespConnection | None:
        """An idle connection still open on ``loop``, if any (one the server closed may not
        have heard its ``connection_lost`` yet: its transport is closing)."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if (
                not connection.broken
                and connection.loop is loop
                and transport is not None
                and not transport.is_closing()
            ):
                return connection
            self._drop(connection)
        return None

    def _drop(self, connection: RespConnection) -> None:
        self._all.discard(connection)
        connection.close()

    async def _connect(self) -> RespConnection:
        """A new connection, authenticated and on its database, within the timeout."""
        settings = self.settings
        if self._closed:
            raise exceptions.ConnectionError(f"Error connecting to {settings.where}: closed")
        loop = asyncio.get_running_loop()
        connection: RespConnection | None = None
        try:
            async with asyncio.timeout(settings.timeout):
                if settings.path is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: RespConnection(settings.where), settings.path
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: RespConnection(settings.where),
                        settings.host,
                        settings.port,
                        ssl=settings.ssl,
                    )
                await self._handshake(connection)
        except TimeoutError:
            if connection is not None:
                connection.close()
            raise exceptions.TimeoutError("Timeout connecting to server") from None
        except OSError as exc:
            raise exceptions.ConnectionError(
                f"Error {exc.errno} connecting to {settings.where}. {exc.strerror or exc}."
            ) from None
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        self._all.add(connection)
        return connection

    async def _handshake(self, connection: RespConnection) -> None:
        """As redis-py's ``on_connect`` with RESP2: AUTH, then the client name and SELECT."""
        settings, timeout = self.settings, self.settings.timeout
        if settings.auth:
            (reply,) = await connection.request(pack_command(("AUTH", *settings.auth)), 1, timeout)
            if isinstance(reply, exceptions.AuthenticationWrongNumberOfArgsError):
                # a server before Redis 6 takes the password alone (as redis-py retries)
                auth = ("AUTH", settings.auth[-1])
                (reply,) = await connection.request(pack_command(auth), 1, timeout)
            if isinstance(reply, exceptions.RedisError):
                raise reply
            if reply != b"OK":
                raise exceptions.AuthenticationError("Invalid Username or Password")
        setup: list[tuple[Any, ...]] = []
        if settings.client_name:
            setup.append(("CLIENT", "SETNAME", settings.client_name))
        if settings.db:
            setup.append(("SELECT", settings.db))
        if setup:
            for reply in await connection.request(pack_commands(setup), len(setup), timeout):
                if isinstance(reply, exceptions.RedisError):
                    raise reply

    async def close(self) -> None:
        """Close every connection (a call still waiting on one fails as a lost connection)."""
        self._closed = True
        connections, self._idle = list(self._all), []
        for connection in connections:
            self._drop(connection)
