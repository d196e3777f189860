"""The lost-answer guarantee on the async face of DynamoDB (its native backend).

tests/reliability/test_lost_answers.py proves it for the sync store; the async backend runs
the same core's plans over another driver, so here the same scenario runs through it:
store A (async, through the fault proxy) runs ``update()``; the proxy lets A's write land,
drops its answer, and lets store B (another store object, direct) run its own ``update()``
before A's retry reaches the server. A must recognise its landed write, or say its outcome
is unknown; never re-apply its function (the counter ends at 2).
"""

from __future__ import annotations

from typing import Any

import pytest

from durastate.errors import BackendUnavailable
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import AWS_PATIENT, opened, spec_for
from tests.reliability.test_lost_answers import LostAnswerProxy
from tests.reliability.test_transient import _through

from .test_dynamodb import server  # noqa: F401  (the moto and dynalite fixture)

pytestmark = pytest.mark.emulator


def _add_one(value: dict[str, Any]) -> dict[str, Any]:
    return {"n": value["n"] + 1}


def test_a_lost_answer_on_the_async_face_is_never_applied_twice(
    server: RunningEmulator,  # noqa: F811
) -> None:
    kind = "dynamodb-moto" if server.name == "moto_server" else "dynamodb-dynalite"
    direct = spec_for(kind, server, **AWS_PATIENT)
    unavailable: list[BackendUnavailable] = []
    with opened(direct) as b, LostAnswerProxy(server.endpoint, "dynamodb") as proxy:
        b.create_instance("counter", name="wf", input={"keep": "me"}, custom_status={"n": 0})
        with opened(_through(direct, proxy).with_face("async")) as a:
            assert type(a.backend).async_mode == "native"
            # update() reads (a POST GetItem), then writes: drop the write's answer
            proxy.arm("POST", 1, lambda: b.update("counter", _add_one))
            try:
                a.update("counter", _add_one)
            except BackendUnavailable as exc:
                unavailable.append(exc)
        assert all("unknown" in str(exc) for exc in unavailable), unavailable
        assert proxy.counters["drop_after"] == 1
        assert proxy.counters["between"] == 1
        assert b.get_custom_status("counter") == {"n": 2}, dict(proxy.counters)
