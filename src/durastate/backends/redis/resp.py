"""RESP2 on the wire, sans-I/O: commands to bytes, bytes to replies (the lean async path).

The async driver speaks RESP2 itself (`aio_connections`) because ``redis.asyncio``'s
per-command machinery (pool lock, observability hooks, ``asyncio.timeout``, stream reader)
cost about twice the client CPU of the sync client. The replies look exactly like redis-py's
with ``protocol=2``: bulk and simple strings as ``bytes``, integers as ``int``, nil as
``None``, arrays as lists, and an error reply as redis-py's own exception object
(``NoScriptError``, ``NoPermissionError``, ``BusyLoadingError``...), so the plans and
``failures`` read them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis import exceptions
from redis._parsers import _RESP2Parser

# redis-py's table from an error reply's first word to its exception class; one parser
# object only lends its ``parse_error`` (a classmethod on redis-py 8, a method on 5)
_ERRORS = _RESP2Parser(socket_read_size=65536)  # type: ignore[no-untyped-call]


def error_reply(text: str) -> exceptions.RedisError:
    """The exception redis-py makes of the error reply ``text`` (``NOSCRIPT ...`` etc.)."""
    error: exceptions.RedisError = _ERRORS.parse_error(text)  # type: ignore[no-untyped-call]
    return error


def _encoded(arg: Any) -> bytes:
    kind = type(arg)
    if kind is bytes:
        return arg  # type: ignore[no-any-return]
    if kind is str:
        return arg.encode()  # type: ignore[no-any-return]
    if kind is int or kind is float:
        return repr(arg).encode()
    if isinstance(arg, bytearray | memoryview):
        return bytes(arg)
    # as redis-py: a bool, None or an object is a mistake, not a value
    raise exceptions.DataError(f"cannot send an argument of type {kind.__name__} to Redis")


def pack_command(args: Sequence[Any]) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encoded(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def pack_commands(commands: Iterable[Sequence[Any]]) -> bytes:
    """Several commands in one buffer: one write, one round trip (a pipeline)."""
    return b"".join(pack_command(command) for command in commands)


class ProtocolError(exceptions.ConnectionError):
    """The server sent bytes that are not RESP2: the connection cannot be trusted."""


class ReplyReader:
    """Turns the bytes a connection receives, in whatever chunks they come, into replies.

    Resumable: an array whose elements are still arriving keeps its place on a stack, so a
    large reply is read once, not again from its start with every chunk.
    """

    __slots__ = ("_buffer", "_open")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._open: list[list[Any]] = []  # arrays being filled: [items, elements missing]

    def feed(self, data: bytes) -> list[Any]:
        """Every reply ``data`` completes, in order (none if it completes none)."""
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        stack = self._open
        replies: list[Any] = []
        position = 0
        value: Any
        while position < size:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                break
            kind = buffer[position]
            if kind == 36:  # $ bulk string
                length = int(buffer[position + 1 : end])
                if length < 0:
                    value, position = None, end + 2
                else:
                    stop = end + 2 + length
                    if stop + 2 > size:
                        break  # the rest comes later; the header is read again then
                    value, position = bytes(buffer[end + 2 : stop]), stop + 2
            elif kind == 42:  # * array
                count = int(buffer[position + 1 : end])
                position = end + 2
                if count > 0:
                    stack.append([[], count])
                    continue
                value = None if count < 0 else []
            elif kind == 58:  # : integer
                value, position = int(buffer[position + 1 : end]), end + 2
            elif kind == 43:  # + simple string
                value, position = bytes(buffer[position + 1 : end]), end + 2
            elif kind == 45:  # - error
                value = error_reply(buffer[position + 1 : end].decode("utf-8", "replace"))
                position = end + 2
            else:
                raise ProtocolError(f"not a RESP2 reply (first byte {bytes([kind])!r})")
            while stack:  # an element completes its array, which may complete its parent
                frame = stack[-1]
                frame[0].append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                value = stack.pop()[0]
            else:
                replies.append(value)
        del buffer[:position]
        return replies
