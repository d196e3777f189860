"""memory://: queries that touch the matches, not the table, and a small footprint.

Costs are counted (rows the filter looks at, bytes allocated), never timed.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durastate import StateStore
from durastate.backends.memory import MemoryBackend
from durastate.core.records import InstanceQuery, RuntimeStatus


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rows the query filter is asked about."""
    count = [0]
    original = InstanceQuery.matches

    def counting(self: InstanceQuery, record: Any) -> bool:
        count[0] += 1
        return original(self, record)

    monkeypatch.setattr(InstanceQuery, "matches", counting)
    return count


def _fill(store: StateStore, total: int, running: int) -> None:
    for n in range(total):
        store.create_instance(f"job-{n:06d}", name="job", custom_status={"n": n})
    for n in range(0, total, total // running):
        store.set_runtime_status(f"job-{n:06d}", "running")


def test_a_status_query_looks_only_at_instances_with_that_status(looked_at: list[int]) -> None:
    store = StateStore(MemoryBackend())
    _fill(store, 5000, 50)
    looked_at[0] = 0
    page = store.query(runtime_status="running", page_size=100)
    assert len(page) == 50
    assert page.continuation is None
    assert all(item.runtime_status is RuntimeStatus.RUNNING for item in page)
    assert looked_at[0] <= 50


def test_iterating_everything_looks_at_each_instance_about_once(looked_at: list[int]) -> None:
    store = StateStore(MemoryBackend())
    _fill(store, 3000, 30)
    looked_at[0] = 0
    ids = [item.instance_id for item in store.iter_instances(page_size=50)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3000
    assert looked_at[0] <= 3000 + 3000 // 50  # a page stops one row past its end


def test_a_small_instance_costs_under_2_kb() -> None:
    store = StateStore(MemoryBackend())
    status = {"stage": "resize", "percent": 42.5, "done": 1000, "total": 2400,
              "message": "x" * 60}
    store.create_instance("warm", name="job", custom_status=status)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(2000):
            instance_id = f"job-{n:06d}"
            store.create_instance(instance_id, name="job", input={"file": f"{n}.png"})
            store.set_custom_status(instance_id, {**status, "done": n})
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / 2000 < 2048, f"{grown / 2000:.0f} bytes per instance"


ALPHABET = "ab/"
statuses = st.sampled_from(list(RuntimeStatus))
operations = st.lists(
    st.tuples(st.sampled_from(["create", "status", "delete", "restart"]),
              st.text(ALPHABET, min_size=1, max_size=4), statuses),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=operations,
    wanted=st.none() | st.frozensets(statuses, min_size=1, max_size=3),
    prefix=st.none() | st.text(ALPHABET, min_size=1, max_size=2),
    page_size=st.integers(1, 7),
)
def test_paged_queries_match_a_plain_filter_after_any_history(
    ops: list[tuple[str, str, RuntimeStatus]],
    wanted: frozenset[RuntimeStatus] | None,
    prefix: str | None,
    page_size: int,
) -> None:
    store = StateStore(MemoryBackend())
    model: dict[str, RuntimeStatus] = {}
    for action, instance_id, status in ops:
        if action == "create" and instance_id not in model:
            store.create_instance(instance_id, name="job", runtime_status=status)
            model[instance_id] = status
        elif action == "status" and instance_id in model:
            store.set_runtime_status(instance_id, status)
            model[instance_id] = status
        elif action == "delete":
            assert store.purge(instance_id) == (model.pop(instance_id, None) is not None)
        elif action == "restart" and instance_id in model and model[instance_id].is_terminal:
            store.create_instance(instance_id, name="job", runtime_status=status,
                                  restart_if_terminal=True)
            model[instance_id] = status
    expected = sorted(
        instance_id for instance_id, status in model.items()
        if (wanted is None or status in wanted)
        and (prefix is None or instance_id.startswith(prefix))
    )
    got = [(item.instance_id, item.runtime_status) for item in store.iter_instances(
        runtime_status=wanted, prefix=prefix, page_size=page_size)]
    assert [instance_id for instance_id, _ in got] == expected
    assert all(status == model[instance_id] for instance_id, status in got)
