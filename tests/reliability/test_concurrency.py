"""Concurrency: 4 processes x 8 threads on one counter, and 32 racing creates of one id.

Each child process opens its own store from the backend's URL and options (multiprocessing
"spawn", so nothing is inherited), waits at a barrier, then all threads go at once.
``memory://`` is process-local, so it runs the same load as 32 threads in one process.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from typing import Any

import pytest

from durastate.errors import InstanceExists
from tests.reliability.backends import (
    BackendSpec,
    create_worker,
    increment_worker,
    memory_spec,
    opened,
)

PROCESSES, THREADS, INCREMENTS = 4, 8, 3

#: Every test here races conditional writes on one item (see conftest.py).
pytestmark = pytest.mark.atomic_moto


def test_processes_and_threads_lose_no_increment(durable_spec: BackendSpec) -> None:
    with opened(durable_spec) as store:
        store.create_instance("counter", name="wf", input="kept", custom_status={"n": 0})
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    children = [
        context.Process(
            target=increment_worker,
            args=(durable_spec, "counter", THREADS, INCREMENTS, start),
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=240)
    assert [child.exitcode for child in children] == [0] * PROCESSES
    with opened(durable_spec) as store:
        got = store.get_instance("counter", fetch_payloads=True)
        assert got is not None
        assert got.custom_status == {"n": PROCESSES * THREADS * INCREMENTS}
        assert got.input == "kept"


def test_concurrent_creates_of_one_id_exactly_one_wins(durable_spec: BackendSpec) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    children = [
        context.Process(
            target=create_worker,
            args=(durable_spec, "contested", THREADS, number, start, results),
        )
        for number in range(PROCESSES)
    ]
    for child in children:
        child.start()
    outcomes: dict[str, str] = {}
    for _ in range(PROCESSES * THREADS):
        who, outcome = results.get(timeout=240)
        outcomes[who] = outcome
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0] * PROCESSES
    _assert_one_winner(durable_spec, outcomes)


def _assert_one_winner(spec: BackendSpec, outcomes: dict[str, str]) -> None:
    winners = [who for who, outcome in outcomes.items() if outcome == "won"]
    others = {outcome for outcome in outcomes.values() if outcome not in ("won", "lost")}
    assert others == set()
    assert len(winners) == 1, winners
    assert len(outcomes) == PROCESSES * THREADS
    with opened(spec) as store:
        got = store.get_instance("contested", fetch_payloads=True)
        assert got is not None
        assert (got.name, got.input, got.custom_status) == (winners[0],) * 3


def test_memory_threads_lose_no_increment_and_one_create_wins() -> None:
    spec = memory_spec()
    with opened(spec) as store:
        store.create_instance("counter", name="wf", custom_status={"n": 0})
        barrier = threading.Barrier(PROCESSES * THREADS)
        outcomes: queue.Queue[tuple[str, str]] = queue.Queue()

        def work(number: int) -> None:
            barrier.wait()
            me = f"t{number}"
            try:
                store.create_instance("contested", name=me, input=me, custom_status=me)
            except InstanceExists:
                outcomes.put((me, "lost"))
            else:
                outcomes.put((me, "won"))
            for _ in range(INCREMENTS):
                store.update("counter", lambda v: {"n": v["n"] + 1}, retries=2000)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(PROCESSES * THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert store.get_custom_status("counter") == {"n": PROCESSES * THREADS * INCREMENTS}
        collected: dict[str, Any] = {}
        while not outcomes.empty():
            who, outcome = outcomes.get_nowait()
            collected[who] = outcome
        _assert_one_winner(spec, collected)
