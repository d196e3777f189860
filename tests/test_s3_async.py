"""The native async face of S3 (`AsyncS3Backend`, from ``S3Backend.to_async()``) and where
its keys come from; the async conformance suite runs it too (tests/test_s3.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid

import pytest

from durastate.backends.s3 import S3Backend
from durastate.backends.s3.aio import AsyncS3Backend
from durastate.core.async_backend import ThreadPoolAsyncBackend
from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.errors import ConfigurationError
from durastate.testing.emulators import RunningEmulator
from tests.test_s3 import CREDS, make_backend

pytestmark = pytest.mark.emulator


def test_async_writes_run_on_the_loop_without_threads(moto_server: RunningEmulator) -> None:
    """After the bucket check of first use, async calls start no thread: they are awaited
    over the asyncio driver, not handed to a pool as before the rebuild."""
    backend = make_backend(moto_server.endpoint)
    store = AsyncStateStore(StateStore(backend, serializer="json"))
    assert isinstance(store.backend, AsyncS3Backend)

    async def check() -> set[threading.Thread]:
        await store.create_instance("a", name="wf", custom_status=0)
        before = set(threading.enumerate())
        etag = await store.set_custom_status("a", 1)
        for n in range(2, 12):
            etag = await store.set_custom_status("a", n, etag=etag)
        assert await store.get_custom_status("a") == 11
        results = await asyncio.gather(*(store.get_instance("a") for _ in range(5)))
        assert all(r is not None and r.etag == etag for r in results)
        new = set(threading.enumerate()) - before
        await store.close()
        return new

    assert asyncio.run(check()) == set()
    backend.close()


def test_sync_and_async_faces_share_one_store(moto_server: RunningEmulator) -> None:
    with make_backend(moto_server.endpoint) as backend:
        sync = StateStore(backend, serializer="json")
        etag = sync.create_instance("s", name="wf", custom_status={"n": 0})

        async def check() -> str:
            aio = AsyncStateStore(sync)
            try:
                assert await aio.get_custom_status("s") == {"n": 0}
                return await aio.set_custom_status("s", {"n": 1}, etag=etag)
            finally:
                await aio.close()

        new = asyncio.run(check())
        got = sync.get_instance("s")
        assert got is not None
        assert (got.custom_status, got.etag) == ({"n": 1}, new)


def test_keys_come_from_botocores_chain_when_not_given(
    moto_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    url = f"s3://ds-chain-{uuid.uuid4().hex[:10]}/p"
    with S3Backend.from_url(url, endpoint_url=moto_server.endpoint, region="us-east-1") as b:
        store = StateStore(b, serializer="json")
        store.create_instance("c", name="wf", custom_status=1)
        assert store.get_custom_status("c") == 1
        assert "from-env" not in repr(b)


def test_options_are_one_typed_model() -> None:
    base = "s3://ds-opt/p?endpoint_url=http://127.0.0.1:9&region=us-east-1"
    for flag, expected in (("false", False), ("0", False), ("off", False), ("yes", True)):
        opened = S3Backend.from_url(f"{base}&create_bucket={flag}", **CREDS)
        assert opened._options.create_bucket is expected
        opened.close()
    with pytest.raises(ConfigurationError, match="create_bucket") as raised:
        S3Backend.from_url(f"{base}&create_bucket=perhaps", **CREDS)
    assert "perhaps" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        S3Backend.from_url(f"{base}&max_attempts=0", **CREDS)
    secret = {**CREDS, "aws_secret_access_key": "s3cr3t-value"}
    options = S3Backend.from_url(base, **secret)._options
    assert "s3cr3t-value" not in repr(options)
    assert options.transport().deadline == 3 * (2.0 + 10.0)


def test_without_aiohttp_the_async_store_is_still_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``durastate[aws]`` alone, no aiohttp: the async driver is asyncio alone, so
    ``to_async()`` gives the native face, not the thread pool, and warns of nothing."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    for name in ("durastate.transport.aio", "durastate.backends.s3.aio"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    backend = S3Backend.from_url(
        "s3://ds-noaio/p",
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        **{k: v for k, v in CREDS.items() if k != "region"},
    )
    with backend:
        face = backend.to_async()
        assert type(face).__name__ == AsyncS3Backend.__name__  # re-imported above
        assert not isinstance(face, ThreadPoolAsyncBackend)
    assert "pip install" not in caplog.text
