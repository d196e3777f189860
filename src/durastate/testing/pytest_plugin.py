"""durastate's pytest plugin: real servers for the test session, a fresh store for each test.

Installed with ``pip install 'durastate[testing]'`` and loaded by pytest through the
``pytest11`` entry point (disable with ``-p no:durastate``). Nothing starts unless a test
asks for a fixture.

Session fixtures, each a local process on a free loopback port, stopped by PID at the end:

- ``azurite`` -> `AzuriteEmulator` (``table_endpoint``, ``blob_endpoint``,
  ``connection_string``)
- ``moto_server`` -> `MotoEmulator` (``endpoint``; DynamoDB and S3, one request at a time so
  conditional writes are atomic as on AWS)
- ``dynalite`` -> `DynaliteEmulator` (``endpoint``; DynamoDB)
- ``redis_server`` -> `RedisEmulator`, ``postgres_server`` -> `PostgresEmulator`

Each has ``store_url(name)``, ``store_options`` and ``target(name=None)``. Function fixtures
give every test a `StoreTarget` on a table, bucket or key prefix no other test uses:
``azure_target``, ``dynamodb_target`` (moto), ``dynalite_target``, ``s3_target`` (moto),
``redis_target`` and ``postgres_target``; open one with ``target.open()``.

A server that cannot start fails the tests that need it, with the reason (Node/npm or the
emulator missing, moto not installed); it never skips them.

``--durastate-containers`` runs Azurite and moto as Docker containers instead
(`durastate.testing.containers`); without a reachable Docker engine the run stops at once
with the reason. The local processes are the default and the tested path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from durastate.errors import MissingDependency

try:
    import pytest
except ModuleNotFoundError:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("durastate's pytest plugin", "testing", "pytest") from None

from durastate.testing import containers
from durastate.testing.emulators import (
    AzuriteEmulator,
    DynaliteEmulator,
    MotoEmulator,
    PostgresEmulator,
    RedisEmulator,
    RunningEmulator,
    running,
    start_azurite,
    start_dynalite,
    start_moto,
    start_postgres,
    start_redis,
)
from durastate.testing.node_tools import EmulatorError
from durastate.testing.targets import StoreTarget, fresh_name

_Server = TypeVar("_Server", bound=RunningEmulator)
_CONTAINERS_OPTION = "--durastate-containers"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("durastate").addoption(
        _CONTAINERS_OPTION,
        action="store_true",
        default=False,
        help="start Azurite and moto_server as Docker containers (needs a Docker engine); "
        "the default, local processes, is the tested path",
    )


def _containers_wanted(config: pytest.Config) -> bool:
    return bool(config.getoption("durastate_containers", default=False))


def pytest_configure(config: pytest.Config) -> None:
    if _containers_wanted(config):
        problem = containers.docker_engine_problem()
        if problem is not None:
            raise pytest.UsageError(
                f"{_CONTAINERS_OPTION}: {problem}; without the option the fixtures start "
                "the emulators as local processes"
            )


def serve(
    request: pytest.FixtureRequest,
    start: Callable[[], _Server],
    start_container: Callable[[], _Server] | None = None,
) -> Iterator[_Server]:
    """Start a server for a fixture and stop it afterwards; a failed start fails the test.

    ``start_container`` replaces ``start`` when the run asked for containers.
    """
    if start_container is not None and _containers_wanted(request.config):
        start = start_container
    try:
        server = start()
    except EmulatorError as exc:
        reason = str(exc)
    else:
        with running(server):
            yield server
        return
    pytest.fail(f"durastate: {reason}", pytrace=False)  # outside `except`: no chained trace


@pytest.fixture(scope="session")
def azurite(request: pytest.FixtureRequest) -> Iterator[AzuriteEmulator]:
    """Azurite (Azure Table + Blob storage) in memory."""
    yield from serve(request, start_azurite, containers.start_azurite_container)


@pytest.fixture(scope="session")
def moto_server(request: pytest.FixtureRequest) -> Iterator[MotoEmulator]:
    """moto's server (DynamoDB, S3), atomic per request."""
    yield from serve(request, start_moto, containers.start_moto_container)


@pytest.fixture(scope="session")
def moto_server_stock(request: pytest.FixtureRequest) -> Iterator[MotoEmulator]:
    """Stock, multi-threaded ``moto_server`` as users run it (not atomic per request)."""
    yield from serve(request, lambda: start_moto(serialized=False))


@pytest.fixture(scope="session")
def dynalite(request: pytest.FixtureRequest) -> Iterator[DynaliteEmulator]:
    """dynalite, a DynamoDB implementation independent of moto (no image: always a process)."""
    yield from serve(request, start_dynalite)


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisEmulator]:
    """redis-server without persistence, on a free loopback port and a unix socket."""
    yield from serve(request, start_redis)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresEmulator]:
    """PostgreSQL in a throwaway data directory (fsync off), as the ``postgres`` user when
    run as root."""
    yield from serve(request, start_postgres)


@pytest.fixture
def azure_target(azurite: AzuriteEmulator) -> StoreTarget:
    """A fresh ``azure-tables://`` table on the session's Azurite."""
    return azurite.target()


@pytest.fixture
def dynamodb_target(moto_server: MotoEmulator) -> StoreTarget:
    """A fresh ``dynamodb://`` table on the session's moto_server."""
    return moto_server.target()


@pytest.fixture
def dynalite_target(dynalite: DynaliteEmulator) -> StoreTarget:
    """A fresh ``dynamodb://`` table on the session's dynalite."""
    return dynalite.target()


@pytest.fixture
def s3_target(moto_server: MotoEmulator) -> StoreTarget:
    """A fresh ``s3://`` bucket (prefix ``p``) on the session's moto_server."""
    return moto_server.target(f"{fresh_name()}/p", scheme="s3")


@pytest.fixture
def redis_target(redis_server: RedisEmulator) -> StoreTarget:
    """A fresh key prefix (``redis://...?prefix=NAME:``) on the session's redis-server."""
    return redis_server.target()


@pytest.fixture
def postgres_target(postgres_server: PostgresEmulator) -> StoreTarget:
    """A fresh table (``postgresql://...?table=NAME``) on the session's PostgreSQL."""
    return postgres_server.target()
