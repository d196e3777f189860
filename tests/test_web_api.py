"""The HTTP status API over a real uvicorn server: Durable Functions' paths, JSON, status
codes and paging; ETags; purge; problem+json errors; auth, CORS and forwarded headers.
Every backend case runs on memory, SQLite and Azure Tables (Azurite)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from durastate.opening import open_async_store
from durastate.web import create_app
from durastate.web.live import LiveServer
from tests.web_server import Served, assert_problem

pytest_plugins = ["tests.web_server"]  # the served and store_factory fixtures

DF = "/runtime/webhooks/durabletask"


# -- GET one instance ----------------------------------------------------------------------


def test_running_instance_is_202_with_location_and_retry_after(served: Served) -> None:
    served.create("job-1")
    served.set_status("job-1", {"percent": 40, "stage": "resize"})
    response = served.http.get("/instances/job-1")
    assert response.status_code == 202
    assert response.headers["location"] == f"{served.server.url}/instances/job-1"
    assert response.headers["retry-after"] == "0"
    body = response.json()
    assert list(body) == [
        "name",
        "instanceId",
        "runtimeStatus",
        "input",
        "customStatus",
        "output",
        "createdTime",
        "lastUpdatedTime",
        "customStatusUpdatedTime",
    ]
    assert body["runtimeStatus"] == "Running"
    assert body["customStatus"] == {"percent": 40, "stage": "resize"}
    assert body["input"] is None  # only with showInput=true
    for key in ("createdTime", "lastUpdatedTime", "customStatusUpdatedTime"):
        assert body[key].endswith("Z")


@pytest.mark.parametrize("status", ["pending", "suspended"])
def test_pending_and_suspended_are_202(served: Served, status: str) -> None:
    served.create("job-p", status)
    response = served.http.get("/instances/job-p")
    assert response.status_code == 202
    assert response.json()["runtimeStatus"] == status.capitalize()


def test_show_input_accepts_true_in_any_case_and_output_is_shown(served: Served) -> None:
    served.create("job-2", "completed", output={"file": "b.png"})
    for flag in ("true", "True"):
        body = served.http.get(f"/instances/job-2?showInput={flag}").json()
        assert body["input"] == {"file": "a.png"}
    response = served.http.get("/instances/job-2")
    assert response.status_code == 200
    assert "location" not in response.headers
    assert response.json()["output"] == {"file": "b.png"}
    assert response.json()["runtimeStatus"] == "Completed"
    assert served.http.get("/instances/job-2?showOutput=false").json()["output"] is None
    assert_problem(served.http.get("/instances/job-2?showInput=yes"), 400, "showInput")


@pytest.mark.parametrize("value", [0, "", False, [], {}])
def test_a_falsy_custom_status_stays_falsy(served: Served, value: Any) -> None:
    served.create("job-f")
    served.set_status("job-f", value)
    assert served.http.get("/instances/job-f").json()["customStatus"] == value


def test_durable_functions_path_answers_the_same(served: Served) -> None:
    served.create("job-3")
    response = served.http.get(f"{DF}/instances/job-3")
    assert response.status_code == 202
    assert response.headers["location"] == f"{served.server.url}{DF}/instances/job-3"
    assert response.json()["instanceId"] == "job-3"


def test_unknown_instance_is_404(served: Served) -> None:
    assert_problem(served.http.get("/instances/nope"), 404)
    assert_problem(served.http.get(f"{DF}/instances/nope"), 404)


def test_failed_is_500_only_when_asked(served: Served) -> None:
    served.create("job-x", "failed", output={"error": "boom"})
    assert served.http.get("/instances/job-x").status_code == 200
    asked = served.http.get("/instances/job-x?returnInternalServerErrorOnFailure=true")
    assert asked.status_code == 500
    assert asked.json()["runtimeStatus"] == "Failed"
    served.create("job-ok", "completed")
    done = served.http.get("/instances/job-ok?returnInternalServerErrorOnFailure=true")
    assert done.status_code == 200


def test_etag_and_if_none_match(served: Served) -> None:
    served.create("job-e")
    first = served.http.get("/instances/job-e")
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    same = served.http.get("/instances/job-e", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    weak = served.http.get("/instances/job-e", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    served.set_status("job-e", {"percent": 1})
    changed = served.http.get("/instances/job-e", headers={"If-None-Match": etag})
    assert changed.status_code == 202
    assert changed.headers["etag"] != etag


def test_an_instance_id_with_slashes_and_spaces(served: Served) -> None:
    served.create("tenant/a b#1")
    response = served.http.get("/instances/tenant%2Fa%20b%231")
    assert response.json()["instanceId"] == "tenant/a b#1"


def test_durable_functions_client_loop_polls_location_until_200(served: Served) -> None:
    """A client as Durable Functions' samples write it: GET the status URL, follow
    ``Location`` while 202, sleep ``Retry-After`` seconds, stop at 200."""
    served.create("job-loop")

    def workflow() -> None:
        for percent in (25, 50, 75):
            time.sleep(0.05)
            served.set_status("job-loop", {"percent": percent})
        served.server.call(
            served.store.set_runtime_status("job-loop", "completed", output={"done": True})
        )

    worker = threading.Thread(target=workflow)
    worker.start()
    url = f"{served.server.url}{DF}/instances/job-loop"
    seen = []
    polls = 0
    with httpx.Client(timeout=10) as client:
        response = client.get(url)
        while response.status_code == 202:
            polls += 1
            seen.append(response.json()["customStatus"])
            time.sleep(float(response.headers["retry-after"]) + 0.01)
            response = client.get(response.headers["location"])
    worker.join()
    assert response.status_code == 200
    assert response.json()["output"] == {"done": True}
    assert polls >= 1
    assert seen[0] in (None, {"percent": 25}, {"percent": 50}, {"percent": 75})


# -- query ---------------------------------------------------------------------------------


def test_query_filters_by_status_and_prefix(served: Served) -> None:
    served.create("a-1")
    served.create("a-2", "completed")
    served.create("b-1")
    running = served.http.get("/instances?runtimeStatus=Running").json()
    assert sorted(item["instanceId"] for item in running) == ["a-1", "b-1"]
    both = served.http.get("/instances?runtimeStatus=running,Completed&instanceIdPrefix=a-").json()
    assert sorted(item["instanceId"] for item in both) == ["a-1", "a-2"]
    future = served.http.get("/instances?createdTimeFrom=2999-01-01T00:00:00Z").json()
    assert future == []
    past = served.http.get("/instances?createdTimeTo=2999-01-01T00:00:00").json()
    assert len(past) == 3


def test_query_pages_with_the_continuation_header(served: Served) -> None:
    for number in range(5):
        served.create(f"p-{number}")
    seen: list[str] = []
    headers: dict[str, str] = {}
    pages = 0
    while True:
        response = served.http.get("/instances?top=2", headers=headers)
        assert response.status_code == 200
        assert len(response.json()) <= 2
        seen += [item["instanceId"] for item in response.json()]
        pages += 1
        token = response.headers.get("x-ms-continuation-token")
        if not token:
            break
        headers = {"x-ms-continuation-token": token}
    assert sorted(seen) == [f"p-{number}" for number in range(5)]
    assert pages >= 3


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("top=0", "top"),
        ("top=abc", "top"),
        ("top=100000", "top"),
        ("runtimeStatus=Sleeping", "runtimeStatus"),
        ("createdTimeFrom=yesterday", "createdTimeFrom"),
        ("createdTimeTo=2020-13-01", "createdTimeTo"),
        ("showInput=maybe", "showInput"),
        ("lastUpdatedTimeFrom=soon", "lastUpdatedTimeFrom"),
        ("lastUpdatedTimeTo=2020-02-30T00:00:00Z", "lastUpdatedTimeTo"),
        ("name=" + "n" * 1100, "name"),
    ],
)
def test_bad_query_parameters_are_400_problems(served: Served, query: str, parameter: str) -> None:
    assert_problem(served.http.get(f"/instances?{query}"), 400, parameter)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("runtimeStatus=Sleeping", "runtimeStatus"),
        ("createdTimeFrom=yesterday", "createdTimeFrom"),
        ("lastUpdatedTimeTo=later", "lastUpdatedTimeTo"),
        ("name=" + "n" * 1100, "name"),
    ],
)
def test_bad_count_parameters_are_400_problems(served: Served, query: str, parameter: str) -> None:
    assert_problem(served.http.get(f"/counts?{query}"), 400, parameter)
    assert_problem(served.http.get(f"{DF}/counts?{query}"), 400, parameter)


def test_query_by_name_and_last_update(served: Served) -> None:
    served.create("n-1")
    time.sleep(0.01)  # timestamps are milliseconds: n-2 is created after n-1
    served.server.call(served.store.create_instance("n-2", name="thumbnail"))
    between = served.server.call(served.store.get_instance("n-2"))
    assert between is not None
    served.set_status("n-1", {"step": 2})  # n-1: created before the cut, updated after
    cut = between.last_updated_at.isoformat().replace("+00:00", "Z")
    created_before = served.http.get(f"/instances?createdTimeTo={cut}").json()
    assert [item["instanceId"] for item in created_before] == ["n-1"]
    by_name = served.http.get("/instances?name=thumbnail").json()
    assert [item["instanceId"] for item in by_name] == ["n-2"]
    assert served.http.get("/instances?name=nothing-by-this-name").json() == []
    newer = served.http.get(f"/instances?lastUpdatedTimeFrom={cut}").json()
    assert sorted(item["instanceId"] for item in newer) == ["n-1", "n-2"]
    older = served.http.get(f"{DF}/instances?lastUpdatedTimeTo={cut}").json()
    assert older == []
    after = served.http.get("/instances", params={"lastUpdatedTimeFrom": cut, "name": "resize"})
    assert [item["instanceId"] for item in after.json()] == ["n-1"]


def test_counts_per_status_with_the_query_filters(served: Served) -> None:
    served.create("k-1")
    served.create("k-2", "completed")
    served.create("k-3", "failed")
    served.create("x-1")
    served.server.call(served.store.create_instance("k-4", name="other"))
    response = served.http.get("/counts")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    everything = response.json()
    assert everything == {
        "Pending": 1, "Running": 2, "Completed": 1, "Failed": 1, "Terminated": 0,
        "Suspended": 0,
    }  # fmt: skip
    running = served.http.get(f"{DF}/counts?runtimeStatus=Running,Completed&instanceIdPrefix=k-")
    assert running.json() == {**dict.fromkeys(everything, 0), "Running": 1, "Completed": 1}
    assert served.http.get("/counts?name=other").json()["Pending"] == 1
    assert sum(served.http.get("/counts?createdTimeFrom=2999-01-01T00:00:00Z").json().values()) == 0
    served.create("count")  # an instance may be called "count": its status URL still works
    assert served.http.get("/instances/count").json()["instanceId"] == "count"


def test_a_forged_continuation_token_is_a_400_problem(served: Served) -> None:
    served.create("c-1")
    response = served.http.get("/instances", headers={"x-ms-continuation-token": "forged!"})
    assert_problem(response, 400, "x-ms-continuation-token")


def test_an_instance_id_over_the_limit_is_a_400_problem(served: Served) -> None:
    assert_problem(served.http.get("/instances/" + "x" * 600), 400, "instanceId")


# -- purge ---------------------------------------------------------------------------------


def test_purge_is_refused_unless_allowed(served: Served) -> None:
    served.create("keep")
    assert_problem(served.http.delete("/instances/keep"), 403)
    assert served.http.get("/instances/keep").status_code == 202


def test_purge_when_allowed(store_factory: Any) -> None:
    served = store_factory(allow_purge=True)
    served.create("gone")
    response = served.http.delete(f"{DF}/instances/gone")
    assert response.status_code == 200
    assert response.json() == {"instancesDeleted": 1}
    assert_problem(served.http.get("/instances/gone"), 404)
    assert_problem(served.http.delete("/instances/gone"), 404)


# -- security ------------------------------------------------------------------------------


def test_a_token_guards_every_data_route(store_factory: Any) -> None:
    served = store_factory(token="s3cret-token", allow_purge=True)
    served.create("t-1")
    for method, path in [
        ("GET", "/instances/t-1"),
        ("GET", f"{DF}/instances/t-1"),
        ("GET", "/instances"),
        ("GET", "/counts"),
        ("GET", f"{DF}/counts"),
        ("GET", "/instances/t-1/events"),
        ("DELETE", "/instances/t-1"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            response = served.http.request(method, path, headers=headers)
            assert_problem(response, 401)
            assert "s3cret-token" not in response.text
    good = {"Authorization": "Bearer s3cret-token"}
    assert served.http.get("/instances/t-1", headers=good).status_code == 202
    # the page shell, its files and the health check hold no data: open
    for path in ("/", "/ui/instances/t-1", "/static/app.js", "/healthz"):
        response = served.http.get(path)
        assert response.status_code == 200
        assert "s3cret-token" not in response.text


def test_no_secret_of_the_store_in_any_answer(served: Served) -> None:
    served.create("s-1")
    answers = [
        served.http.get(path)
        for path in (
            "/",
            "/instances",
            "/instances/s-1",
            "/instances/nope",
            "/instances?top=0",
            "/healthz",
            "/static/app.js",
            "/ui/instances/s-1",
        )
    ]
    for response in answers:
        text = response.text + str(response.headers)
        assert served.secret is None or served.secret not in text
        assert "AccountKey" not in text


def test_location_uses_base_url(store_factory: Any) -> None:
    served = store_factory(base_url="https://status.example.com/api/")
    served.create("l-1")
    response = served.http.get("/instances/l-1?showInput=true")
    assert response.headers["location"] == (
        "https://status.example.com/api/instances/l-1?showInput=true"
    )


def test_forwarded_headers_are_honoured_only_when_trusted(store_factory: Any) -> None:
    forwarded = {"X-Forwarded-Host": "public.example.com", "X-Forwarded-Proto": "https"}
    plain = store_factory()
    plain.create("f-1")
    location = plain.http.get("/instances/f-1", headers=forwarded).headers["location"]
    assert location == f"{plain.server.url}/instances/f-1"
    trusting = store_factory(trust_forwarded=True)
    trusting.create("f-1")
    location = trusting.http.get("/instances/f-1", headers=forwarded).headers["location"]
    assert location == "https://public.example.com/instances/f-1"


def test_cors_is_off_unless_an_origin_is_given(store_factory: Any) -> None:
    origin = {"Origin": "https://app.example.com"}
    closed = store_factory()
    closed.create("o-1")
    assert (
        "access-control-allow-origin"
        not in closed.http.get("/instances/o-1", headers=origin).headers
    )
    opened = store_factory(cors_origins=["https://app.example.com"])
    opened.create("o-1")
    response = opened.http.get("/instances/o-1", headers=origin)
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "location" in response.headers["access-control-expose-headers"].lower()
    other = opened.http.get("/instances/o-1", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_mounted_under_a_prefix() -> None:
    store = open_async_store("memory://")
    parent = Starlette(routes=[Mount("/status", create_app(store))])
    server = LiveServer(parent).start()
    try:
        server.call(store.create_instance("m-1", name="resize"))
        with httpx.Client(base_url=server.url) as client:
            response = client.get("/status/instances/m-1")
            assert response.status_code == 202
            assert response.headers["location"] == f"{server.url}/status/instances/m-1"
            page = client.get("/status/ui/instances/m-1")
            assert 'src="/status/static/app.js"' in page.text
            assert client.get("/status/static/app.js").status_code == 200
    finally:
        server.stop()
