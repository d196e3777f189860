"""`durastate serve --demo`: sample workflows on a temporary SQLite store that keep
reporting progress, so the page has something live to show."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import Final

from durastate.core.store import StateStore
from durastate.errors import DurastateError

#: (instance id, workflow name, seconds per step, stages)
SAMPLES: Final = (
    ("resize-photos-7f3a", "resize", 0.2, ("download", "resize", "upload")),
    ("nightly-report-2291", "report", 0.35, ("query", "aggregate", "render")),
    ("video-transcode-0b1e", "transcode", 0.5, ("probe", "encode", "package")),
)


def run_sample(
    store: StateStore, stop: threading.Event, sample: tuple[str, str, float, tuple[str, ...]]
) -> None:
    """One sample workflow, restarted each time it completes, until ``stop`` is set."""
    instance_id, name, step, stages = sample
    for run in itertools.count(1):
        store.create_instance(instance_id, name=name, input={"run": run}, restart_if_terminal=True)
        store.set_runtime_status(instance_id, "running")
        for percent in range(0, 101, 2):
            if stop.wait(step):
                return
            stage = stages[min(percent * len(stages) // 100, len(stages) - 1)]
            store.set_custom_status(instance_id, {"percent": percent, "stage": stage})
        store.set_runtime_status(instance_id, "completed", output={"run": run, "ok": True})
        if stop.wait(2.0):
            return


def start_demo(store: StateStore) -> tuple[threading.Event, list[threading.Thread]]:
    """Start the sample workflows on threads; set the event to stop them."""
    stop = threading.Event()
    threads = []
    for sample in SAMPLES:
        thread = threading.Thread(target=_guarded, args=(store, stop, sample), daemon=True)
        thread.start()
        threads.append(thread)
    store.create_instance(
        "import-customers-55c1", name="import", input={"rows": 1200}, restart_if_terminal=True
    )
    store.set_custom_status("import-customers-55c1", {"imported": 1200, "skipped": 3})
    store.set_runtime_status("import-customers-55c1", "completed", output={"rows": 1197})
    return stop, threads


def _guarded(
    store: StateStore, stop: threading.Event, sample: tuple[str, str, float, tuple[str, ...]]
) -> None:
    with contextlib.suppress(DurastateError):  # the store closes under a stopping demo
        run_sample(store, stop, sample)


def stop_demo(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    deadline = time.monotonic() + 5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
