"""Fixtures for the reliability suite: a store spec on every backend, and private emulators.

Tests that stop, freeze or restart a server use the ``private_*`` fixtures, which start an
emulator of their own for that one test, so the session emulators other tests share are
never touched. Everything else uses the session emulators of durastate's pytest plugin
(`durastate.testing.pytest_plugin`), each test in a fresh table, bucket or file.

moto: the suite runs on stock ``moto_server``, as users run it. Stock moto serves requests
on many threads and its models take no locks, so two conditional writes racing on one item
can both pass their check (AWS evaluates a condition atomically). A test that races
conditional writes on one item is marked ``atomic_moto`` and gets moto served one request
at a time (`durastate.testing.moto_serial`) instead; its result would otherwise measure
moto's threading, not the backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from durastate.testing import emulators
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import (
    ALL_KINDS,
    FACES,
    NETWORK_KINDS,
    BackendSpec,
    memory_spec,
    spec_for,
    sqlite_spec,
)

_EMULATOR_OF = {
    "azure-tables": "azurite",
    "dynamodb-moto": "moto_server",
    "dynamodb-dynalite": "dynalite",
    "s3": "moto_server",
    "redis": "redis_server",
    "postgres": "postgres_server",
}


def _atomic_moto(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("atomic_moto") is not None


def _emulator_fixture(request: pytest.FixtureRequest, kind: str) -> str:
    """The session fixture serving ``kind``: stock moto unless the test is ``atomic_moto``."""
    name = _EMULATOR_OF[kind]
    if name == "moto_server" and not _atomic_moto(request):
        return "moto_server_stock"
    return name


def _shared_spec(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> BackendSpec:
    if kind == "memory":
        return memory_spec()
    if kind == "sqlite":
        return sqlite_spec(tmp_path / "store.db")
    emulator: RunningEmulator = request.getfixturevalue(_emulator_fixture(request, kind))
    return spec_for(kind, emulator)


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    """The sync store, or the async store (through `BlockingAsyncStore`)."""
    return str(request.param)


@pytest.fixture(params=ALL_KINDS)
def any_spec(request: pytest.FixtureRequest, tmp_path: Path, face: str) -> BackendSpec:
    """Every backend (memory, sqlite and the network ones on the shared emulators)."""
    return _shared_spec(request, str(request.param), tmp_path).with_face(face)


@pytest.fixture(params=[kind for kind in ALL_KINDS if kind != "memory"])
def durable_spec(request: pytest.FixtureRequest, tmp_path: Path, face: str) -> BackendSpec:
    """Every backend that several processes can share."""
    return _shared_spec(request, str(request.param), tmp_path).with_face(face)


@pytest.fixture(params=NETWORK_KINDS)
def network_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def shared_emulator(request: pytest.FixtureRequest, network_kind: str) -> RunningEmulator:
    """The session emulator that serves ``network_kind`` (never stopped by these tests)."""
    emulator: RunningEmulator = request.getfixturevalue(_emulator_fixture(request, network_kind))
    return emulator


def _start(kind: str, *, atomic_moto: bool) -> RunningEmulator:
    name = _EMULATOR_OF[kind]
    if name == "azurite":
        return emulators.start_azurite()
    if name == "moto_server":
        return emulators.start_moto(serialized=atomic_moto)
    if name == "redis_server":
        return emulators.start_redis()
    if name == "postgres_server":
        return emulators.start_postgres()
    return emulators.start_dynalite()


class PrivateEmulator:
    """An emulator owned by one test: it may stop, freeze, thaw and restart it."""

    def __init__(self, kind: str, *, atomic_moto: bool = False) -> None:
        self.kind = kind
        self.emulator = _start(kind, atomic_moto=atomic_moto)

    def stop(self) -> None:
        self.emulator.stop(keep_workdir=True)  # PostgreSQL's data, for restart()

    def freeze(self) -> None:
        """SIGSTOP the server's processes: connections are accepted, nothing answers."""
        import signal

        self.emulator.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        import signal

        self.emulator.signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start on the same ports (the emulators keep data in memory: all lost;
        PostgreSQL keeps its data directory)."""
        self.emulator = emulators.restart(self.emulator)

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(ProcessLookupError):
            self.thaw()
        self.emulator.stop()


@pytest.fixture
def private_emulator(
    network_kind: str, request: pytest.FixtureRequest
) -> Iterator[PrivateEmulator]:
    """A fresh emulator process for ``network_kind``, for this test alone."""
    private = PrivateEmulator(network_kind, atomic_moto=_atomic_moto(request))
    try:
        yield private
    finally:
        private.close()
