"""Transient faults: a proxy between client and emulator answers 503/429 or drops connections.

The SDKs retry with backoff and ``StateStore.update`` retries etag conflicts, so a run of
counter increments through a flaky link ends at exactly the count of a fault-free run:
nothing lost, nothing applied twice.

Setup and the final read go straight to the emulator; only the run goes through the proxy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from durastate.errors import BackendUnavailable, InstanceExists
from durastate.testing.emulators import AZURITE_ACCOUNT, AZURITE_KEY, RunningEmulator
from tests.reliability.backends import (
    AWS_PATIENT,
    AZURE_PATIENT,
    BackendSpec,
    network_options,
    opened,
    spec_for,
)
from tests.reliability.faultproxy import Fault, FaultProxy, Flavor, RespFaultProxy

_FLAVOR: dict[str, Flavor] = {
    "azure-tables": "azure",
    "dynamodb-moto": "dynamodb",
    "dynamodb-dynalite": "dynamodb",
    "s3": "s3",
    "redis": "redis",
}


def _through(spec: BackendSpec, proxy: FaultProxy) -> BackendSpec:
    """The same store (same table/bucket/prefix), reached through the proxy."""
    if spec.kind == "redis":
        return replace(spec, url=proxy.url)
    if spec.kind == "azure-tables":
        connection_string = (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint={proxy.url};"
        )
        return spec.with_options(connection_string=connection_string, offload=False)
    return spec.with_options(endpoint_url=proxy.url)


@pytest.fixture
def direct(network_kind: str, shared_emulator: RunningEmulator, face: str) -> BackendSpec:
    return spec_for(
        network_kind,
        shared_emulator,
        **network_options(network_kind, AZURE_PATIENT, AWS_PATIENT),
    ).with_face(face)


@pytest.fixture
def proxy(network_kind: str, shared_emulator: RunningEmulator) -> Iterator[FaultProxy]:
    target = (
        shared_emulator.endpoints["table"]
        if network_kind == "azure-tables"
        else (shared_emulator.endpoint)
    )
    kind = RespFaultProxy if network_kind == "redis" else FaultProxy
    with kind(target, _FLAVOR[network_kind], seed=20240601) as running:
        yield running


def _run_increments(
    spec: BackendSpec, threads: int, increments: int
) -> tuple[int, list[BaseException]]:
    """``threads`` x ``increments`` update() calls; (successful calls, errors raised)."""
    done = 0
    errors: list[BaseException] = []
    lock = threading.Lock()
    with opened(spec) as store:

        def work() -> None:
            nonlocal done
            for _ in range(increments):
                try:
                    store.update("counter", lambda v: {"n": v["n"] + 1}, retries=500)
                except BackendUnavailable as exc:
                    with lock:
                        errors.append(exc)
                else:
                    with lock:
                        done += 1

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return done, errors


def _final_count(spec: BackendSpec) -> int:
    with opened(spec) as store:
        value: dict[str, Any] = store.get_custom_status("counter")
        return int(value["n"])


def _setup(spec: BackendSpec) -> None:
    with opened(spec) as store:
        store.create_instance("counter", name="wf", input={"keep": "me"}, custom_status={"n": 0})


def _faulty_run(
    direct: BackendSpec,
    proxy: FaultProxy,
    faults: dict[Fault, float],
    rate: float,
    threads: int,
    increments: int,
) -> tuple[int, list[BaseException], int]:
    _setup(direct)
    proxy.configure(rate=rate, faults=faults)
    done, errors = _run_increments(_through(direct, proxy), threads, increments)
    proxy.configure(rate=0.0)
    return done, errors, _final_count(direct)


@pytest.mark.atomic_moto  # 3 threads race conditional writes on one item
def test_503_and_429_are_retried_and_count_is_exact(direct: BackendSpec, proxy: FaultProxy) -> None:
    threads, increments = 3, 8
    done, errors, final = _faulty_run(
        direct, proxy, {"503": 3.0, "429": 1.0}, 0.25, threads, increments
    )
    assert proxy.counters["503"] > 0
    assert proxy.counters["429"] > 0
    assert errors == []
    assert done == threads * increments
    assert final == threads * increments, dict(proxy.counters)
    with opened(direct) as store:
        got = store.get_instance("counter", fetch_payloads=True)
        assert got is not None
        assert got.input == {"keep": "me"}


def test_connections_dropped_before_the_server_are_retried(
    direct: BackendSpec, proxy: FaultProxy
) -> None:
    """The request never reached the server: a retry is safe, and every update lands once."""
    increments = 16
    done, errors, final = _faulty_run(direct, proxy, {"drop": 1.0}, 0.2, 1, increments)
    assert proxy.counters["drop"] > 0
    assert "\n".join(str(e) for e in errors) == ""
    assert done == increments
    assert final == increments, dict(proxy.counters)


def test_lost_responses_never_apply_an_increment_twice(
    direct: BackendSpec, proxy: FaultProxy
) -> None:
    """The server applied the write but its answer was lost on the way back.

    The client cannot know the write landed. It may retry only if it can tell its own
    write from another writer's; otherwise it must raise ``BackendUnavailable``. Either
    way the final count lies between the updates that returned and those plus the ones
    that raised: never above (a duplicate), never below (a lost increment).
    """
    increments = 16
    done, errors, final = _faulty_run(direct, proxy, {"drop_after": 1.0}, 0.2, 1, increments)
    assert proxy.counters["drop_after"] > 0
    assert done + len(errors) == increments
    assert done <= final <= done + len(errors), (
        f"final count {final}, {done} updates returned, {len(errors)} raised: "
        f"{final - done - len(errors)} increment(s) applied twice; {dict(proxy.counters)}"
    )


def test_lost_create_responses_never_report_our_own_create_as_taken(
    direct: BackendSpec, proxy: FaultProxy
) -> None:
    """A create whose answer was lost must not come back as ``InstanceExists``.

    Create is insert-only. If the insert landed and the SDK retried it, the retry meets the
    instance this very call created; the caller must get success (or, if the backend cannot
    tell, ``BackendUnavailable``), never "someone else owns this id".
    """
    _setup(direct)
    proxy.configure(rate=0.3, faults={"drop_after": 1.0})
    outcomes: dict[str, str] = {}
    with opened(_through(direct, proxy)) as store:
        for number in range(12):
            instance_id = f"fresh-{number}"
            try:
                store.create_instance(instance_id, name="wf", input=number)
            except InstanceExists:
                outcomes[instance_id] = "InstanceExists"
            except BackendUnavailable:
                outcomes[instance_id] = "unavailable"
            else:
                outcomes[instance_id] = "created"
    proxy.configure(rate=0.0)
    assert proxy.counters["drop_after"] > 0
    wrongly_refused = sorted(i for i, outcome in outcomes.items() if outcome == "InstanceExists")
    assert wrongly_refused == [], outcomes
