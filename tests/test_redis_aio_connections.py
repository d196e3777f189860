"""The async driver's own connections (`aio_connections`) against real redis-servers.

What redis-py used to do for the async driver and the lean connections must do as well:
authenticate (password, ACL user, wrong password refused without showing it), select the
database, reach a unix socket, speak TLS with the same certificate checks as redis-py, bound
the connections in use (waiting for one, not failing), and read large replies whole.
(A connection whose answer is late or abandoned is never reused:
``test_redis_async.py::test_a_late_answer_never_reaches_the_next_call``.)
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from durastate import open_async_store, open_store
from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError
from durastate.testing.emulators import (
    RedisEmulator,
    RunningEmulator,
    find_redis_server,
    free_port,
    running,
    spawn,
    start_redis,
)

pytestmark = pytest.mark.emulator

PASSWORD = "pw-" + "s3cr3t-" * 3


def _prefix() -> str:
    return f"lean{uuid.uuid4().hex[:10]}:"


async def _round_trip(url: str, **options: Any) -> Any:
    """Create, set and read back a custom status through the async store."""
    async with open_async_store(url, prefix=_prefix(), **options) as store:
        await store.create_instance("job", name="wf", custom_status={"n": 0})
        await store.set_custom_status("job", {"n": 1, "text": "é" * 3})
        return await store.get_custom_status("job")


async def _write(url: str) -> None:
    """One small command (an unauthenticated client may send no more than 10 arguments)."""
    async with open_async_store(url, prefix=_prefix(), timeout=2) as store:
        await store.set_custom_status("job", 1)


def test_password_acl_user_database_and_unix_socket() -> None:
    with running(start_redis(password=PASSWORD)) as server:
        host = server.endpoints["redis"].removeprefix("redis://").split("/")[0]
        admin = redis.Redis.from_url(server.endpoints["redis"], password=PASSWORD)
        try:
            admin.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", "app", "on", f">{PASSWORD}x", "~*", "&*", "+@all"
            )
            good = {"n": 1, "text": "ééé"}
            assert asyncio.run(_round_trip(f"redis://:{PASSWORD}@{host}/0")) == good
            assert asyncio.run(_round_trip(f"redis://app:{PASSWORD}x@{host}/0")) == good
            assert asyncio.run(_round_trip(f"redis://{host}/0", password=PASSWORD)) == good
            socket_url = server.endpoints["unix"] + "?db=2"
            assert asyncio.run(_round_trip(socket_url, password=PASSWORD)) == good

            prefix = _prefix()

            async def in_db_5() -> None:
                async with open_async_store(
                    f"redis://:{PASSWORD}@{host}/5", prefix=prefix
                ) as store:
                    await store.create_instance("in-5", name="wf", custom_status=5)

            asyncio.run(in_db_5())
            escaped = f"{prefix}i:{{in-5}}"
            assert admin.exists(escaped) == 0  # not in db 0
            in_five = redis.Redis.from_url(f"redis://{host}/5", password=PASSWORD)
            assert in_five.exists(escaped) == 1
            in_five.close()

            for url in (
                f"redis://:{PASSWORD}y@{host}/0",
                f"redis://app:{PASSWORD}@{host}/0",
                f"redis://{host}/0",  # no password: NOAUTH
            ):
                with pytest.raises(ConfigurationError) as refused:
                    asyncio.run(_write(url))
                assert "authentication" in str(refused.value) or "NOAUTH" in str(refused.value)
                assert PASSWORD not in str(refused.value)
                assert PASSWORD not in repr(refused.value)
        finally:
            admin.close()


# -- TLS ---------------------------------------------------------------------------------------


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (the test's own CA)."""
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RunningEmulator, Path]]:
    """redis-server speaking TLS only, on a free loopback port (stopped by PID)."""
    cert, key = _certificate(tmp_path)
    port = free_port()
    argv = [
        find_redis_server(), "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
    ]  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            client = redis.Redis.from_url(url, ssl_ca_certs=str(cert), socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    server = spawn(RedisEmulator, "redis-tls", argv, {"redis": url}, url, ready=ready)
    with running(server):
        yield server, cert


def test_tls_checks_the_certificate_as_the_sync_driver_does(
    tls_redis: tuple[RunningEmulator, Path],
) -> None:
    """rediss:// with the server's CA: works; without it (the system's CAs): refused, as the
    sync driver refuses it; ``ssl_cert_reqs=none``: works unchecked, as with redis-py."""
    server, ca = tls_redis
    url = server.endpoints["redis"]
    good = {"n": 1, "text": "ééé"}
    assert asyncio.run(_round_trip(url, ssl_ca_certs=str(ca))) == good
    assert asyncio.run(_round_trip(url, ssl_cert_reqs="none")) == good
    with pytest.raises(BackendUnavailable) as unverified:
        asyncio.run(_round_trip(url, timeout=2))
    assert "certificate verify failed" in str(unverified.value)
    with (
        open_store(url, prefix=_prefix(), timeout=2) as sync_store,  # the same verdict
        pytest.raises(BackendUnavailable, match="certificate verify failed"),
    ):
        sync_store.create_instance("job", name="wf")
    localhost = url.replace("127.0.0.1", "localhost")
    assert asyncio.run(_round_trip(localhost, ssl_ca_certs=str(ca))) == good


# -- the pool ----------------------------------------------------------------------------------


def _clients(server: RunningEmulator) -> int:
    admin = redis.Redis.from_url(server.endpoints["redis"])
    try:
        return len(admin.client_list())
    finally:
        admin.close()


def test_calls_beyond_max_connections_wait_for_one_and_all_succeed(
    redis_server: RunningEmulator,
) -> None:
    """50 concurrent writes over 2 connections: every one lands (none fails because the
    pool was busy), and the server never sees more than 2 connections from the store."""
    prefix = _prefix()
    url = redis_server.endpoints["redis"]
    seen: list[int] = []

    async def scenario() -> int:
        async with open_async_store(url, prefix=prefix, max_connections=2) as store:
            await store.create_instance("job", name="wf", custom_status=0)
            before = await asyncio.to_thread(_clients, redis_server)
            watching = True

            async def count_clients() -> None:
                while watching:
                    seen.append(await asyncio.to_thread(_clients, redis_server) - before)
                    await asyncio.sleep(0.01)

            counter = asyncio.create_task(count_clients())
            await asyncio.gather(*(store.set_custom_status("job", {"n": n}) for n in range(50)))
            watching = False
            await counter
            updated = await store.get_instance("job")
            assert updated is not None
            return len(seen)

    assert asyncio.run(scenario()) > 0
    assert max(seen) <= 1  # the store's first connection was open before the count began


def test_one_store_serves_one_event_loop_after_another(redis_server: RunningEmulator) -> None:
    """A store used in three ``asyncio.run``s (a CLI, a test suite), with more calls at once
    than its one connection: each call works, the connections of a closed loop are let go
    (the server sees them leave), none is reused."""
    store = open_async_store(redis_server.endpoints["redis"], prefix=_prefix(), max_connections=1)
    before = _clients(redis_server)

    async def call(number: int) -> Any:
        if number == 0:
            await store.create_instance("job", name="wf", custom_status=0)
        await asyncio.gather(*(store.get_custom_status("job") for _ in range(3)))
        await store.set_custom_status("job", number)
        return await store.get_custom_status("job")

    assert [asyncio.run(call(number)) for number in range(3)] == [0, 1, 2]
    assert _clients(redis_server) <= before + 1  # at most the last loop's connection
    asyncio.run(store.close())
    deadline = time.monotonic() + 2
    while _clients(redis_server) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _clients(redis_server) == before


def test_large_values_and_pages_arrive_whole(redis_server: RunningEmulator) -> None:
    """A 3 MB status and a page of 40 statuses of 64 KB statuses (both many socket reads)."""
    big = "x" * (3 * 1024 * 1024)

    async def scenario() -> None:
        async with open_async_store(
            redis_server.endpoints["redis"], prefix=_prefix(), max_custom_status_bytes=2**23
        ) as store:
            await store.create_instance("big", name="wf", custom_status=big)
            assert await store.get_custom_status("big") == big
            for number in range(40):
                await store.create_instance(
                    f"p{number:02d}", name="wf", custom_status=f"{number}" * 65536
                )
            page = await store.query(prefix="p", page_size=100, fetch_payloads=True)
            assert [item.instance_id for item in page.items] == [
                f"p{number:02d}" for number in range(40)
            ]
            for number, item in enumerate(page.items):
                assert item.custom_status == f"{number}" * 65536

    asyncio.run(scenario())


def test_a_dead_port_is_nothing_sent_and_no_secret_shown() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"

    async def scenario() -> None:
        async with open_async_store(url, prefix=_prefix(), timeout=1) as store:
            await store.set_custom_status("job", 1)

    with pytest.raises(DurastateError) as raised:
        asyncio.run(scenario())
    assert type(raised.value) is BackendUnavailable  # not OutcomeUnknown: nothing was sent
    assert "connecting to" in str(raised.value)
    assert PASSWORD not in str(raised.value)
