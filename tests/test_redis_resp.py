"""RESP2 of the async driver (`durastate.backends.redis.resp`), without a server.

The bytes a command becomes, and the replies bytes become however the network splits them:
redis-py's reading is the oracle (same values, same exception classes for error replies).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import exceptions

from durastate.backends.redis.resp import (
    ProtocolError,
    ReplyReader,
    pack_command,
    pack_commands,
)


def test_a_command_is_one_array_of_bulk_strings() -> None:
    command = ("EVALSHA", "ab12", 1, "k:{é}", b"\x00\r\n", 2.5)
    assert pack_command(command) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$4\r\nab12\r\n$1\r\n1\r\n$6\r\nk:{\xc3\xa9}\r\n"
        b"$3\r\n\x00\r\n\r\n$3\r\n2.5\r\n"
    )
    assert pack_commands([("PING",), ("GET", "k")]) == (
        b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


@pytest.mark.parametrize("wrong", [None, True, object()])
def test_an_argument_redis_cannot_take_is_a_data_error(wrong: object) -> None:
    """As redis-py: a bool, None or an object is refused (a RedisError the plans map)."""
    with pytest.raises(exceptions.DataError):
        pack_command(("SET", "k", wrong))


def test_every_reply_type_reads_as_redis_py_reads_it() -> None:
    reader = ReplyReader()
    replies = reader.feed(
        b"$5\r\nhello\r\n$0\r\n\r\n$-1\r\n:42\r\n:-7\r\n+OK\r\n*-1\r\n*0\r\n"
        b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n"
    )
    assert replies == [b"hello", b"", None, 42, -7, b"OK", None, [], [b"a", [1, None], []]]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("NOSCRIPT No matching script. Please use EVAL.", exceptions.NoScriptError),
        ("NOPERM this user has no permissions to run the 'hmget' command", None),
        ("LOADING Redis is loading the dataset in memory", exceptions.BusyLoadingError),
        ("WRONGPASS invalid username-password pair", exceptions.AuthenticationError),
        ("BUSY Redis is busy running a script.", exceptions.ResponseError),
        ("ERR max number of clients reached", exceptions.ConnectionError),
        ("WRONGTYPE Operation against a key holding the wrong kind", exceptions.ResponseError),
    ],
)
def test_error_replies_are_redis_py_exceptions(line: str, kind: type[Exception] | None) -> None:
    from redis._parsers import _RESP2Parser

    expected = _RESP2Parser(socket_read_size=65536).parse_error(line)  # type: ignore[no-untyped-call]
    (reply,) = ReplyReader().feed(b"-" + line.encode() + b"\r\n")
    assert type(reply) is type(expected)
    assert str(reply) == str(expected)
    if kind is not None:
        assert isinstance(reply, kind)
    (nested,) = ReplyReader().feed(b"*2\r\n:1\r\n-" + line.encode() + b"\r\n")
    assert nested[0] == 1
    assert type(nested[1]) is type(expected)


def test_bytes_that_are_not_resp_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ReplyReader().feed(b"HTTP/1.1 400 Bad Request\r\n")
    assert issubclass(ProtocolError, exceptions.ConnectionError)  # the connection is dropped


def _wire(value: Any) -> bytes:
    """The server's side: a reply value as RESP2."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(_wire(item) for item in value)


replies = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


@given(st.lists(replies, min_size=1, max_size=4), st.data())
def test_replies_split_anywhere_read_the_same(values: list[Any], data: st.DataObject) -> None:
    """However the bytes are cut (one byte at a time included), each reply comes out once,
    whole and in order."""
    wire = b"".join(_wire(value) for value in values)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=12)))
    reader, got, start = ReplyReader(), [], 0
    for cut in [*cuts, len(wire)]:
        got += reader.feed(wire[start:cut])
        start = cut
    assert got == values
    byte_by_byte = ReplyReader()
    got = []
    for index in range(len(wire)):
        got += byte_by_byte.feed(wire[index : index + 1])
    assert got == values


def test_a_large_reply_in_small_chunks_is_read_once_not_again_per_chunk() -> None:
    """20,000 elements in 4 KiB chunks: the reader keeps its place. Halfway through, the
    elements received are already read and their bytes gone (a reader that started over
    with each chunk would keep them all and read them again, hundreds of times)."""
    value = [[b"x" * 20, number] for number in range(20_000)]
    wire = _wire(value)
    reader: ReplyReader = ReplyReader()
    got: list[Any] = []
    half = len(wire) // 2
    for start in range(0, len(wire), 4096):
        got += reader.feed(wire[start : start + 4096])
        if start <= half < start + 4096:
            (outer,) = reader._open[:1]
            assert len(outer[0]) >= 9_990  # about half the elements, read once
            assert len(reader._buffer) < 4096  # only an unfinished element is kept
    assert got == [value]
    assert reader._open == []
    assert len(reader._buffer) == 0
