"""The live event stream (Server-Sent Events) over a real uvicorn server, on memory, SQLite
and Azure Tables (Azurite): current state first, each change once, resume after
Last-Event-ID, end after a terminal status, heartbeats, and a bounded number of streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.web_server import Served, assert_problem

pytest_plugins = ["tests.web_server"]  # the served and store_factory fixtures

DF = "/runtime/webhooks/durabletask"
pytestmark = pytest.mark.timeout(60)


class Events:
    """The events of one open stream, read as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self) -> dict[str, str] | None:
        """The next block as its fields (a heartbeat comment as ``{":": text}``), or ``None``
        when the stream ended."""
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line)
                fields[":"] = line
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        return fields or None

    def next_status(self) -> tuple[str, dict[str, Any]]:
        while True:
            event = self.next()
            assert event is not None, "the stream ended"
            if event.get("event") == "status":
                return event["id"], json.loads(event["data"])


@contextmanager
def stream(served: Served, path: str, **headers: str) -> Iterator[Events]:
    with served.http.stream("GET", path, headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


def test_current_state_then_each_change_then_the_end(served: Served) -> None:
    served.create("w-1")
    served.set_status("w-1", {"percent": 10})
    with stream(served, "/instances/w-1/events") as events:
        first_id, first = events.next_status()
        assert first["customStatus"] == {"percent": 10}
        assert first["runtimeStatus"] == "Running"
        etag = served.set_status("w-1", {"percent": 60})
        second_id, second = events.next_status()
        assert second["customStatus"] == {"percent": 60}
        assert second_id != first_id
        head = served.http.get("/instances/w-1")
        assert head.headers["etag"] == f'"{second_id}"'
        assert etag
        served.server.call(served.store.set_runtime_status("w-1", "completed", output=7))
        _, last = events.next_status()
        assert last["runtimeStatus"] == "Completed"
        assert last["output"] == 7
        assert events.next() is None  # the stream ends after a terminal status


def test_the_durable_functions_path_streams_too(served: Served) -> None:
    served.create("w-df", "completed")
    with stream(served, f"{DF}/instances/w-df/events") as events:
        _, body = events.next_status()
        assert body["runtimeStatus"] == "Completed"
        assert events.next() is None


def test_resume_after_last_event_id(served: Served) -> None:
    served.create("w-2")
    served.set_status("w-2", {"percent": 1})
    with stream(served, "/instances/w-2/events") as events:
        first_id, _ = events.next_status()
    served.set_status("w-2", {"percent": 2})
    # resumed after an older id: the newer state comes at once
    with stream(served, "/instances/w-2/events", **{"Last-Event-ID": first_id}) as events:
        second_id, body = events.next_status()
        assert body["customStatus"] == {"percent": 2}
    # resumed after the newest id: nothing is repeated, the next change comes first
    with stream(served, "/instances/w-2/events", **{"Last-Event-ID": second_id}) as events:
        served.set_status("w-2", {"percent": 3})
        third_id, body = events.next_status()
        assert body["customStatus"] == {"percent": 3}
        assert third_id not in (first_id, second_id)


def test_heartbeats_while_nothing_changes(store_factory: Any) -> None:
    served = store_factory(heartbeat=0.1)
    served.create("w-3")
    with stream(served, "/instances/w-3/events") as events:
        events.next_status()
        assert events.next() == {":": ": heartbeat"}  # nothing changed: a comment line
        assert events.next() == {":": ": heartbeat"}
        served.set_status("w-3", "after the heartbeats")
        _, body = events.next_status()
        assert body["customStatus"] == "after the heartbeats"


def test_unknown_instance_is_404_and_bad_input_400(served: Served) -> None:
    assert_problem(served.http.get("/instances/nope/events"), 404)
    served.create("w-4")
    assert_problem(served.http.get("/instances/w-4/events?showInput=perhaps"), 400, "showInput")


def test_purged_while_watched(store_factory: Any) -> None:
    served = store_factory(allow_purge=True)
    served.create("w-5")
    with stream(served, "/instances/w-5/events") as events:
        events.next_status()
        assert served.http.delete("/instances/w-5").status_code == 200
        event = events.next()
        assert event is not None
        assert event["event"] == "deleted"
        assert events.next() is None


def test_streams_past_the_limit_are_503(store_factory: Any) -> None:
    served = store_factory(max_streams=2)
    served.create("w-6")
    with (
        stream(served, "/instances/w-6/events") as one,
        stream(served, "/instances/w-6/events") as two,
    ):
        one.next_status()
        two.next_status()
        refused = served.http.get("/instances/w-6/events")
        assert_problem(refused, 503)
        assert refused.headers["retry-after"]
    # closed streams give their slot back (the server notices the disconnect)
    for _ in range(100):
        with served.http.stream("GET", "/instances/w-6/events") as response:
            if response.status_code == 200:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the slots of closed streams were never given back")
