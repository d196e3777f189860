"""Shared fixtures: real emulator processes, started once per test session.

A backend test never skips because its server is missing: if the emulator cannot start, the
fixture raises and the tests fail, naming the fix (scripts/install-emulators).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from durastate.testing import emulators


@pytest.fixture(scope="session")
def azurite() -> Iterator[emulators.RunningEmulator]:
    with emulators.running(emulators.start_azurite()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def moto_server() -> Iterator[emulators.RunningEmulator]:
    with emulators.running(emulators.start_moto()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def dynalite() -> Iterator[emulators.RunningEmulator]:
    with emulators.running(emulators.start_dynalite()) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def redis_server() -> Iterator[emulators.RunningEmulator]:
    with emulators.running(emulators.start_redis()) as emulator:
        yield emulator
