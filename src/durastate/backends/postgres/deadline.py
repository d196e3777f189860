"""Bound a blocking psycopg call in time: shut its socket down when its deadline passes.

libpq has no read timeout, and a server that is frozen (or a link that silently drops
packets) leaves a statement waiting forever while the kernel keeps the TCP connection up.
``statement_timeout`` cannot help (the server enforces it). So every call registers its
connection's socket with a deadline; one daemon thread per process shuts down the sockets of
overdue calls, psycopg then fails with a broken connection, and the caller turns that into
`BackendUnavailable`. Registering costs a dict write.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time

_POLL_SECONDS = 0.05


class SocketDeadlines:
    """Armed sockets and their deadlines, without a lock on the hot path.

    ``dict.pop`` is atomic, so a call and the watchdog never both take one entry: whoever
    pops it first decides. A call that ends just as its deadline passes may leave its
    connection shut down for the next user, who then sees a broken connection and goes
    through the same recovery as after any other break.
    """

    def __init__(self) -> None:
        self._after_fork()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._armed: dict[int, tuple[float, int]] = {}
        self._fired: set[int] = set()
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def arm(self, fd: int, deadline: float) -> int:
        """Watch ``fd`` until `disarm`; returns the key to disarm it with."""
        if self._thread is None:
            self._start()
        key = next(self._keys)
        self._armed[key] = (deadline, fd)
        return key

    def disarm(self, key: int) -> bool:
        """Stop watching; True if the deadline passed and the socket was shut down."""
        if self._armed.pop(key, None) is not None:
            return False
        if key in self._fired:
            self._fired.discard(key)
            return True
        return False

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="durastate-pg-deadlines", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(_POLL_SECONDS)
            now = time.monotonic()
            for key, (deadline, fd) in list(self._armed.items()):
                if deadline <= now and self._armed.pop(key, None) is not None:
                    self._fired.add(key)
                    shut_down(fd)


def shut_down(fd: int) -> None:
    """Shut the socket behind ``fd`` down both ways (the fd stays open for its owner)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


deadlines = SocketDeadlines()
