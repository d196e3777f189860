"""The fault proxy for PostgreSQL's wire protocol (v3), in front of a real server.

It reuses `FaultProxy`'s listener, counters, seeded choice and lifecycle, and replaces the
HTTP framing with PostgreSQL's: after the startup and authentication exchange (relayed as
is), a *request* is the client's messages up to a ``Sync`` or a simple ``Query``, and its
answer is the server's messages up to ``ReadyForQuery``. Per request, with the seeded RNG:

- ``"drop"``: close both connections before forwarding (the server never sees it);
- ``"drop_after"``: forward, let the server answer, then close without passing the answer
  on (a lost answer: the server applied the write, the client cannot know); with
  ``on_lost_answer``, a second writer acts before the client notices.

PostgreSQL has no "503": the other faults are not offered. ``counters`` also counts
``round_trips`` (requests forwarded) and ``parse`` (statements parsed, i.e. not prepared).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from durastate.testing.emulators import RunningEmulator, postgres_port
from tests.reliability.faultproxy import FaultProxy, Flavor, _Closed, _Reader

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_AUTH_NEEDS_ANSWER = {3, 5, 10, 11}  # cleartext, MD5, SASL start, SASL continue


def _typed(reader: _Reader) -> tuple[bytes, bytes]:
    """One typed message: (type byte, whole message bytes)."""
    head = reader.exactly(5)
    length = int.from_bytes(head[1:5], "big")
    return head[:1], head + reader.exactly(length - 4)


def _untyped(reader: _Reader) -> tuple[int, bytes]:
    head = reader.exactly(8)
    length = int.from_bytes(head[:4], "big")
    return int.from_bytes(head[4:8], "big"), head + reader.exactly(length - 8)


@dataclass
class PostgresFaultProxy(FaultProxy):
    """``target`` is ``http://127.0.0.1:<port>`` of the server (only host and port count)."""

    flavor: Flavor = "s3"  # unused: the HTTP answers of FaultProxy do not apply here
    #: Called after the server answered a request whose answer is then lost, before the
    #: client sees the connection close: a second writer acts in between.
    on_lost_answer: Callable[[], None] | None = None

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream, timeout=30)
        self._track(upstream)
        reader, answers = _Reader(client), _Reader(upstream)
        try:
            if not self._start_up(client, upstream, reader, answers):
                return
            while not self._stopping.is_set():
                request = b""
                while True:
                    kind, message = _typed(reader)
                    request += message
                    if kind == b"P":
                        self._count("parse")
                    if kind in (b"S", b"Q", b"X"):
                        break
                if kind == b"X":
                    upstream.sendall(request)
                    return
                fault = self._choose("SQL")
                if fault == "drop":
                    return
                upstream.sendall(request)
                self._count("round_trips")
                answer = b""
                while True:
                    kind, message = _typed(answers)
                    answer += message
                    if kind == b"Z":
                        break
                if fault == "drop_after":
                    if self.on_lost_answer is not None:
                        self.on_lost_answer()
                    return
                client.sendall(answer)
        except (_Closed, OSError, ValueError):
            return
        finally:
            self._untrack(client)
            self._untrack(upstream)

    def _start_up(
        self, client: socket.socket, upstream: socket.socket, reader: _Reader, answers: _Reader
    ) -> bool:
        """Relay SSL/GSS probes, the startup message and authentication, up to ReadyForQuery."""
        while True:
            code, message = _untyped(reader)
            upstream.sendall(message)
            if code == _CANCEL_REQUEST:
                return False
            if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                break
            client.sendall(answers.exactly(1))  # "N": no encryption on this server
        while True:
            kind, message = _typed(answers)
            client.sendall(message)
            if kind == b"E":
                return False
            if kind == b"Z":
                return True
            if kind == b"R" and int.from_bytes(message[5:9], "big") in _AUTH_NEEDS_ANSWER:
                upstream.sendall(_typed(reader)[1])


def with_port(url: str, port: int) -> str:
    """The same postgresql:// URL on another port (the proxy's, or a dead one)."""
    current = url.rsplit(":", 1)[1].split("/")[0]
    return url.replace(f":{current}/", f":{port}/")


def proxy_for(server: RunningEmulator, seed: int = 0) -> PostgresFaultProxy:
    """A proxy in front of ``server`` (start it: ``with proxy_for(server) as proxy``)."""
    return PostgresFaultProxy(f"http://127.0.0.1:{postgres_port(server)}", seed=seed)
