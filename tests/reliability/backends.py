"""How the reliability tests reach each backend: a picklable spec (URL + options).

A spec is all a child process needs to open its own store (``spec.open()``), so the
concurrency tests can use the multiprocessing "spawn" context. The worker functions live
here, at module level, so that spawned children can import them.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, cast

from durastate import AsyncStateStore, open_async_store, open_store
from durastate.core.backend import Backend
from durastate.core.store import StateStore
from durastate.errors import DurastateError, InstanceExists
from durastate.testing.emulators import RunningEmulator
from durastate.testing.targets import StoreTarget

#: Client settings that make a dead or frozen endpoint fail fast (each test states its bound).
AZURE_FAST: dict[str, Any] = {
    "retry_total": 1,
    "retry_backoff_factor": 0.01,
    "retry_backoff_max": 1,
    "connection_timeout": 0.5,
    "read_timeout": 1.0,
    "operation_timeout": 2.0,
}
AWS_FAST: dict[str, Any] = {"max_attempts": 2, "connect_timeout": 0.5, "read_timeout": 1.0}

#: Client settings that ride out a flaky link (the transient-fault tests).
AZURE_PATIENT: dict[str, Any] = {
    "retry_total": 10,
    "retry_backoff_factor": 0.01,
    "retry_backoff_max": 1,
    "connection_timeout": 2.0,
    "read_timeout": 5.0,
    "operation_timeout": 60.0,
}
AWS_PATIENT: dict[str, Any] = {"max_attempts": 10, "connect_timeout": 2.0, "read_timeout": 5.0}
REDIS_FAST: dict[str, Any] = {"timeout": 1.0}
REDIS_PATIENT: dict[str, Any] = {"timeout": 5.0}

#: The two faces every reliability test runs on: the sync store, and the async store (its
#: calls made through `BlockingAsyncStore`, so concurrent callers are concurrent tasks).
FACES = ("sync", "async")

NETWORK_KINDS = ("azure-tables", "dynamodb-moto", "dynamodb-dynalite", "s3", "redis")
#: SQL servers: their faults go through `pgproxy.PostgresFaultProxy` (test_postgres_faults.py)
SQL_KINDS = ("postgres",)
ALL_KINDS = ("memory", "sqlite", *NETWORK_KINDS, *SQL_KINDS)

#: PostgreSQL settings that make a dead or frozen server fail fast.
POSTGRES_FAST: dict[str, Any] = {"timeout": 2.0, "connect_timeout": 2.0}


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class BackendSpec:
    """One backend under test: ``kind`` names it in test ids, ``url`` + ``options`` open it."""

    kind: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    face: str = "sync"

    def open(self, **overrides: Any) -> StateStore:
        """A `StateStore`, or for the async face the async store behind a blocking front
        (typed as a `StateStore`: it has the same call signatures)."""
        options = {**self.options, **overrides}
        if self.face == "async":
            return cast(StateStore, BlockingAsyncStore(open_async_store(self.url, **options)))
        return open_store(self.url, **options)

    def with_options(self, **overrides: Any) -> BackendSpec:
        return replace(self, options={**self.options, **overrides})

    def with_face(self, face: str) -> BackendSpec:
        return replace(self, face=face)

    @property
    def cross_process(self) -> bool:
        return self.kind != "memory"

    def timeout_budget(self) -> float:
        """The time a call may take to fail with these options ("the configured timeout").

        Azure: ``operation_timeout`` bounds all tries of one call. PostgreSQL: ``timeout``
        bounds one call, pool wait and lost-answer recovery included. AWS: every attempt may
        wait ``connect_timeout`` + ``read_timeout`` (botocore's backoff between attempts is
        well under a second for non-throttling errors); an S3 PutObject also waits up to
        1 s per attempt for ``100 Continue`` (botocore sends ``Expect: 100-continue`` with
        every object body). SQLite: the busy ``timeout``. Redis: ``timeout`` (connect, and each
        reply; a write whose reply timed out is not sent again).
        """
        if self.kind == "azure-tables":
            return float(self.options.get("operation_timeout", 60.0))
        if self.kind in ("dynamodb-moto", "dynamodb-dynalite", "s3"):
            attempts = int(self.options.get("max_attempts", 3))
            per_try = float(self.options.get("connect_timeout", 2.0)) + float(
                self.options.get("read_timeout", 10.0)
            )
            if self.kind == "s3":
                per_try += 1.0  # botocore's fixed wait for "100 Continue"
            return attempts * per_try
        if self.kind in ("sqlite", "redis", "postgres"):
            return float(self.options.get("timeout", 10.0 if self.kind == "postgres" else 5.0))
        return 0.0


def _network_spec(kind: str, target: StoreTarget, **options: Any) -> BackendSpec:
    return BackendSpec(kind, target.url, {**target.options, **options})


def azure_spec(emulator: RunningEmulator, **options: Any) -> BackendSpec:
    return _network_spec(
        "azure-tables", emulator.target(unique("T")), container=unique("c-"), **options
    )


def dynamodb_spec(emulator: RunningEmulator, kind: str, **options: Any) -> BackendSpec:
    return _network_spec(kind, emulator.target(unique("ds-rel-")), **options)


def s3_spec(emulator: RunningEmulator, **options: Any) -> BackendSpec:
    return _network_spec("s3", emulator.target(f"{unique('ds-rel-')}/p", scheme="s3"), **options)


def redis_spec(emulator: RunningEmulator, **options: Any) -> BackendSpec:
    """A store of its own (a fresh key prefix) on a Redis server."""
    return BackendSpec(
        "redis", emulator.endpoints["redis"], {"prefix": unique("rel-") + ":", **options}
    )


def postgres_spec(emulator: RunningEmulator, **options: Any) -> BackendSpec:
    """A fresh table on the server (the URL carries the test cluster's password)."""
    return BackendSpec("postgres", emulator.endpoint, {"table": unique("t_"), **options})


def sqlite_spec(path: os.PathLike[str] | str, **options: Any) -> BackendSpec:
    return BackendSpec("sqlite", f"sqlite:///{path}", dict(options))


def memory_spec() -> BackendSpec:
    return BackendSpec("memory", f"memory://{unique('rel-')}")


def spec_for(kind: str, emulator: RunningEmulator, **options: Any) -> BackendSpec:
    """The spec of a network backend ``kind`` on ``emulator``."""
    if kind == "azure-tables":
        return azure_spec(emulator, **options)
    if kind in ("dynamodb-moto", "dynamodb-dynalite"):
        return dynamodb_spec(emulator, kind, **options)
    if kind == "s3":
        return s3_spec(emulator, **options)
    if kind == "redis":
        return redis_spec(emulator, **options)
    if kind == "postgres":
        return postgres_spec(emulator, **options)
    raise ValueError(kind)


def network_options(kind: str, which: dict[str, Any], aws: dict[str, Any]) -> dict[str, Any]:
    """The client settings of ``kind`` for a profile named by its Azure and AWS variants."""
    if kind == "redis":
        return dict(REDIS_FAST if which is AZURE_FAST else REDIS_PATIENT)
    return dict(which if kind == "azure-tables" else aws)


class BlockingAsyncStore:
    """An `AsyncStateStore` with the `StateStore` call signatures, so every reliability test
    runs unchanged on the async code path: each call is a coroutine run on one event loop of
    this object's own, and calls from several threads run there as concurrent tasks."""

    def __init__(self, store: AsyncStateStore) -> None:
        self.aio = store
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return repr(self.aio)

    @property
    def backend(self) -> Backend:
        """The sync backend under the async face: tests plant records through it."""
        return self.aio.store.backend

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.aio, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._run(attribute(*args, **kwargs))
        if name in ("iter_instances", "watch"):
            return lambda *args, **kwargs: iter(self._run(_collect(attribute(*args, **kwargs))))
        return attribute

    def update(self, instance_id: str, fn: Callable[[Any], Any], **options: Any) -> Any:
        return self._run(self.aio.update(instance_id, fn, **options))

    def close(self) -> None:
        try:
            self._run(self.aio.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> BlockingAsyncStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def store_object(store: Any) -> Any:
    """The store a test was given: the `AsyncStateStore` behind a `BlockingAsyncStore` (what
    ``durastate.telemetry.instrument`` traces), or the `StateStore` itself."""
    return store.aio if isinstance(store, BlockingAsyncStore) else store


def sync_face(store: Any) -> StateStore:
    """The `StateStore` of a test's store (an async store's shared configuration)."""
    inner = store_object(store)
    return cast(StateStore, inner.store if isinstance(inner, AsyncStateStore) else inner)


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


@contextmanager
def opened(spec: BackendSpec, **overrides: Any) -> Iterator[StateStore]:
    store = spec.open(**overrides)
    try:
        yield store
    finally:
        store.close()


# -- workers for spawned processes ----------------------------------------------------------


def increment_worker(
    spec: BackendSpec, instance_id: str, threads: int, increments: int, start: Any
) -> None:
    """Open a store, then ``threads`` threads each add 1 ``increments`` times via update()."""
    errors: list[BaseException] = []
    with opened(spec) as store:

        def work() -> None:
            try:
                for _ in range(increments):
                    store.update(instance_id, lambda v: {"n": v["n"] + 1}, retries=2000)
            except BaseException as exc:  # reported through the exit code
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        start.wait(timeout=120)  # every process is ready: start together
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if errors:
        raise SystemExit(f"{len(errors)} thread(s) failed: {errors[0]!r}")


def create_worker(
    spec: BackendSpec,
    instance_id: str,
    threads: int,
    process_no: int,
    start: Any,
    results: Any,
) -> None:
    """``threads`` threads race to create ``instance_id``; each reports won/lost/error."""
    with opened(spec) as store:
        barrier = threading.Barrier(threads)

        def work(thread_no: int) -> None:
            me = f"p{process_no}t{thread_no}"
            barrier.wait()
            try:
                store.create_instance(instance_id, name=me, input=me, custom_status=me)
            except InstanceExists:
                results.put((me, "lost"))
            except DurastateError as exc:
                results.put((me, f"error {type(exc).__name__}: {exc}"))
            else:
                results.put((me, "won"))

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        start.wait(timeout=120)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()


def sqlite_writer(url: str, instance_ids: list[str], acked: Any, size: int) -> None:
    """Rewrite every instance forever: status, then output, generation by generation.

    ``acked[i]`` holds the last generation whose writes returned for instance i, so the
    parent knows, after SIGKILL, that each record must be at that generation or the next.
    """
    store = open_store(url, max_custom_status_bytes=4 * size + 1024)
    generation = 0
    while True:
        generation += 1
        for index, instance_id in enumerate(instance_ids):
            value = generation_value(instance_id, generation, size)
            store.set_custom_status(instance_id, value)
            store.set_runtime_status(instance_id, "running", output=value)
            acked[index] = generation


def generation_value(instance_id: str, generation: int, size: int) -> dict[str, Any]:
    """A self-checking value: its filler is derived from the id and generation."""
    seed = f"{instance_id}:{generation}:"
    filler = (seed * (size // len(seed) + 1))[:size]
    return {"id": instance_id, "gen": generation, "filler": filler}
