"""What a backend class declares (``durastate backends`` lists it) is what it can do with its
options: an instance opened with every option on declares exactly those flags, one opened
with the defaults no flag the class lacks. The conformance suite checks that each
instance's flags are true."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from pathlib import Path

import pytest

from durastate.backend import Backend, Capabilities
from durastate.backends.memory import MemoryBackend
from durastate.backends.sqlite import SQLiteBackend
from durastate.registry import backends

pytestmark = pytest.mark.emulator

Opener = Callable[[pytest.FixtureRequest, Path, bool], AbstractContextManager[Backend]]


@contextmanager
def _closing(backend: Backend) -> Iterator[Backend]:
    try:
        yield backend
    finally:
        backend.close()


def _memory(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    return _closing(MemoryBackend())


def _sqlite(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    return _closing(SQLiteBackend(tmp / "caps.db"))


def _dirstore(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    return _closing(backends.get("dirstore").from_url(f"dirstore://{tmp}/caps", fsync=False))


@contextmanager
def _azure(request: pytest.FixtureRequest, tmp: Path, all_on: bool) -> Iterator[Backend]:
    from tests.test_azure_tables import _drop, _open

    azurite = request.getfixturevalue("azurite")
    backend = _open(azurite)
    try:
        yield backend
    finally:
        _drop(azurite, backend)


def _dynamodb(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    from tests.test_dynamodb import make_backend

    endpoint = request.getfixturevalue("moto_server").endpoint
    if not all_on:
        return _closing(make_backend(endpoint))
    bucket = f"ds-caps-{uuid.uuid4().hex[:12]}"
    return _closing(
        make_backend(endpoint, offload_bucket=bucket, ttl_attribute="expires_at", ttl_seconds=60)
    )


def _s3(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    from tests.test_s3 import make_backend

    return _closing(make_backend(request.getfixturevalue("moto_server").endpoint))


def _redis(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    from tests.test_redis import make_backend

    options = {"ttl_seconds": 60} if all_on else {}
    return _closing(make_backend(request.getfixturevalue("redis_server"), **options))


def _postgres(
    request: pytest.FixtureRequest, tmp: Path, all_on: bool
) -> AbstractContextManager[Backend]:
    from durastate.backends.postgres import PostgresBackend, PostgresOptions
    from tests.test_postgres import fresh_table

    options = PostgresOptions(table=fresh_table(), ttl_seconds=60 if all_on else None)
    return _closing(PostgresBackend(request.getfixturevalue("postgres_server").endpoint, options))


OPENERS: dict[str, Opener] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "dirstore": _dirstore,
    "azure-tables": _azure,
    "dynamodb": _dynamodb,
    "s3": _s3,
    "redis": _redis,
    "postgresql": _postgres,
}
FLAGS = [item.name for item in fields(Capabilities) if item.type in (bool, "bool")]


def _flags(capabilities: Capabilities) -> dict[str, bool]:
    return {name: getattr(capabilities, name) for name in FLAGS}


def test_every_flag_is_compared() -> None:
    assert set(FLAGS) == {
        "offload", "skips_unchanged", "native_query", "ttl", "cross_process", "push"
    }  # fmt: skip


@pytest.mark.parametrize("scheme", sorted(OPENERS))
def test_the_class_declares_what_its_options_can_turn_on(
    scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    declared = backends.get(scheme).capabilities
    with OPENERS[scheme](request, tmp_path, True) as everything_on:
        assert _flags(everything_on.capabilities) == _flags(declared)
        assert everything_on.capabilities.max_instance_id_length == (
            declared.max_instance_id_length
        )
        if not everything_on.capabilities.offload:
            assert everything_on.capabilities.max_payload_bytes == declared.max_payload_bytes
    with OPENERS[scheme](request, tmp_path, False) as defaults:
        on = {name for name, value in _flags(defaults.capabilities).items() if value}
        assert on <= {name for name, value in _flags(declared).items() if value}
