"""Writes without an etag are last-write-wins: under contention they never raise a conflict.

Six store objects (as six processes would) write custom status and runtime status of one
instance at once, without etags. Each write must land (or fail only for a reason that is
not a conflict): ``ConcurrencyError`` is for compare-and-swap, never for these.
"""

from __future__ import annotations

import threading

import pytest

from durastate.core.records import RuntimeStatus
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import opened, spec_for

#: Every test here races conditional writes on one item (see conftest.py).
pytestmark = pytest.mark.atomic_moto

KINDS = ("dynamodb-moto", "dynamodb-dynalite", "s3")
WRITERS, ROUNDS = 6, 15


@pytest.mark.parametrize("network_kind", KINDS)
def test_writes_without_etag_never_conflict_under_contention(
    network_kind: str, shared_emulator: RunningEmulator
) -> None:
    spec = spec_for(network_kind, shared_emulator)
    with opened(spec) as first:
        first.create_instance("hot", name="wf", custom_status=[0, 0])
    failures: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def work(number: int) -> None:
        with opened(spec) as store:
            start.wait()
            for round_ in range(ROUNDS):
                try:
                    if number % 2:
                        store.set_runtime_status("hot", RuntimeStatus.RUNNING, output=round_)
                    else:
                        store.set_custom_status("hot", [number, round_])
                except BaseException as exc:  # every failure is the finding
                    failures.append(exc)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with opened(spec) as store:
        final = store.get_instance("hot", fetch_payloads=True)
    assert final is not None
    assert final.custom_status in [[n, ROUNDS - 1] for n in range(0, WRITERS, 2)]
    assert final.output == ROUNDS - 1
