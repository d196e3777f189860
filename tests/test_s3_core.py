"""The S3 core driven by hand: each plan's requests byte for byte, and what each answer
means, with no server and no driver (`durastate.backends.s3.plans`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from durastate.backends.s3.keys import KeyLayout
from durastate.backends.s3.layout import Etag
from durastate.backends.s3.plans import S3Core, known_etags
from durastate.core.records import NewInstance, Payload, RuntimeStatus, WriteResult
from durastate.errors import BackendUnavailable, ConcurrencyError, InstanceExists
from durastate.transport import HttpRequest, HttpResponse, default_may_have_landed
from durastate.transport.plans import Exchange, Plan
from tests.test_s3_objects import ENDPOINT, objects_at
from tests.test_transport_signing import KEYS, NOW, botocore_headers

STATUS = Payload(b'{"p": 1}', "json")
OLD = Etag("run1", "ver1", "w1", "0" * 32)


def core() -> S3Core:
    return S3Core(objects_at(ENDPOINT), KeyLayout.under("p"), known_etags())


def first(plan: Plan[Any]) -> HttpRequest:
    step = next(plan)
    assert isinstance(step, Exchange)
    return step.request


def answer(plan: Plan[Any], response: HttpResponse) -> Any:
    """Send ``response`` into the plan; the next request, or the plan's result."""
    try:
        step = plan.send(response)
    except StopIteration as finished:
        return finished.value
    assert isinstance(step, Exchange)
    return step.request


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def test_a_conditional_status_write_is_one_put_byte_for_byte() -> None:
    plan = core().write_custom_status("inst/1", STATUS, str(OLD), NOW)
    step = next(plan)
    assert isinstance(step, Exchange)
    assert step.may_have_landed is default_may_have_landed  # a lost answer is retried
    request = step.request
    write = request.headers["x-amz-meta-w"]
    assert (request.method, request.url) == ("PUT", f"{ENDPOINT}/bucket/p/status/inst%252F1")
    assert request.body == f"ds2 run1 ver1 {write} json\n".encode() + b'{"p": 1}'
    expected = {
        "if-match": f'"{"0" * 32}"',
        "x-amz-meta-cs-updated": NOW.isoformat(),
        "x-amz-meta-w": write,
        "x-amz-meta-p": "w1",
    }
    assert {name: request.headers[name] for name in expected} == expected
    signed = botocore_headers(request.with_all_headers(expected), KEYS, "eu-west-1", "s3", s3=True)
    assert dict(request.headers) == signed
    result = answer(plan, HttpResponse(200, {"etag": f'"{md5(request.body)}"'}))
    assert result == WriteResult(f"run1.ver1.{write}.{md5(request.body)}")


def test_a_failed_condition_is_a_concurrency_error() -> None:
    plan = core().write_custom_status("i", STATUS, str(OLD), NOW)
    next(plan)
    body = b"<Error><Code>PreconditionFailed</Code></Error>"
    with pytest.raises(ConcurrencyError):
        plan.send(HttpResponse(412, {}, body))


def test_unchanged_bytes_are_checked_with_a_head_not_written() -> None:
    stored = b"ds2 run1 ver1 w1 json\n" + STATUS.data
    at = Etag("run1", "ver1", "w1", md5(stored))
    plan = core().write_custom_status("i", STATUS, str(at), NOW)
    request = first(plan)
    assert (request.method, request.path, request.headers["if-match"]) == (
        "HEAD",
        "/bucket/p/status/i",
        f'"{at.md5}"',
    )
    assert answer(plan, HttpResponse(200, {})) == WriteResult(str(at), written=False)
    stale = core().write_custom_status("i", STATUS, str(at), NOW)
    next(stale)
    with pytest.raises(ConcurrencyError):
        stale.send(HttpResponse(412, {}))


def _lost_answer_then(head_metadata: dict[str, str] | None) -> Any:
    """A PUT whose first answer was lost: the retry met 412 (``outcome_unknown``); the core
    looks with a HEAD, which finds ``head_metadata`` (``None``: the object is gone)."""
    plan = core().write_custom_status("i", STATUS, str(OLD), NOW)
    put = first(plan)
    write = put.headers["x-amz-meta-w"]
    head = answer(plan, HttpResponse(412, {}, b"", attempts=2, outcome_unknown=True))
    assert (head.method, head.path) == ("HEAD", "/bucket/p/status/i")
    if head_metadata is None:
        found = HttpResponse(404, {})
    else:
        meta = {name: value.replace("OURS", write) for name, value in head_metadata.items()}
        found = HttpResponse(200, {f"x-amz-meta-{k}": v for k, v in meta.items()})
    return answer(plan, found), write, put


def test_a_lost_answer_is_recognised_as_our_write() -> None:
    result, write, put = _lost_answer_then({"w": "OURS", "p": "w1"})
    assert result == WriteResult(f"run1.ver1.{write}.{md5(put.body)}")
    # ours landed, then a second writer replaced it before the retry: still ours
    result, write, put = _lost_answer_then({"w": "other", "p": "OURS"})
    assert result == WriteResult(f"run1.ver1.{write}.{md5(put.body)}")


def test_a_lost_answer_followed_by_another_writer_is_told_apart() -> None:
    with pytest.raises(ConcurrencyError):  # the write after w1 is another's: ours never landed
        _lost_answer_then({"w": "other", "p": "w1"})
    with pytest.raises(BackendUnavailable, match="unknown"):  # cannot tell: never a conflict
        _lost_answer_then({"w": "x", "p": "y"})
    with pytest.raises(BackendUnavailable, match="unknown"):
        _lost_answer_then(None)


def test_create_puts_the_record_create_only_in_todays_layout() -> None:
    new = NewInstance("a b", "wf", RuntimeStatus.RUNNING, NOW, Payload(b"[1]", "json"), STATUS)
    plan = core().create(new)
    request = first(plan)
    assert (request.method, request.path, request.headers["if-none-match"]) == (
        "PUT",
        "/bucket/p/records/a%20b",
        "*",
    )
    line, _, rest = request.body.partition(b"\n")
    header = json.loads(line)
    assert header == {
        "v": 1,
        "id": "a b",
        "run": header["run"],
        "name": "wf",
        "rs": "running",
        "created": NOW.isoformat(),
        "updated": NOW.isoformat(),
        "cs": ["json", 8],
        "csu": NOW.isoformat(),
        "in": ["json", 3],
        "out": None,
        "ver": header["ver"],
    }
    assert rest == STATUS.data + b"[1]"
    seal = answer(plan, HttpResponse(200, {"etag": '"e"'}))
    assert (seal.method, seal.path, seal.headers["if-none-match"]) == (
        "PUT",
        "/bucket/p/status/a%20b",
        "*",
    )
    assert seal.body.startswith(f"ds2 {header['run']} {header['ver']} ".encode())


def test_create_over_an_existing_run_is_instance_exists() -> None:
    new = NewInstance("i", "wf", RuntimeStatus.RUNNING, NOW, None, None)
    plan = core().create(new)
    next(plan)
    look = answer(plan, HttpResponse(412, {}))
    assert (look.method, look.headers["range"]) == ("GET", "bytes=0-8191")
    other = b'{"v":1,"id":"i","run":"theirs","name":"wf","rs":"completed","created":"' + (
        NOW.isoformat().encode() + b'","updated":"' + NOW.isoformat().encode() + b'"}\n'
    )
    with pytest.raises(InstanceExists):
        plan.send(
            HttpResponse(206, {"etag": '"x"', "content-range": f"bytes 0-9/{len(other)}"}, other)
        )
