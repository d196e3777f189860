"""A lost answer plus a second writer: a write whose outcome is unknown is never re-applied.

Store A reaches the emulator through the fault proxy, store B goes straight to it. A runs
``update()``: the proxy forwards A's write, lets the server apply it and drops the answer;
before A's client retries, B (another store object) runs its own ``update()``. A's retry
then meets B's write. If A took that for an ordinary conflict, ``update()`` would re-run its
function on a value that already holds A's increment: 3 for 2 calls. A backend must
recognise its landed write (and return), or raise ``BackendUnavailable`` saying the outcome
is unknown; either way the counter ends at 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from durastate.errors import BackendUnavailable
from durastate.testing.emulators import RunningEmulator
from tests.reliability.backends import AWS_PATIENT, BackendSpec, opened, spec_for
from tests.reliability.faultproxy import Fault, FaultProxy, Flavor
from tests.reliability.test_transient import _through

#: How each kind's write travels: the HTTP method of its writes, and how many requests of
#: that method ``update()`` sends before its write (DynamoDB reads with a POST too).
_WRITE: dict[str, tuple[Flavor, str, int]] = {
    "dynamodb-moto": ("dynamodb", "POST", 1),
    "dynamodb-dynalite": ("dynamodb", "POST", 1),
    "s3": ("s3", "PUT", 0),
}


class LostAnswerProxy(FaultProxy):
    """Drops the answer of one write, then runs ``between`` before the next request passes.

    The next request after the dropped answer is the client's retry of that write, so
    ``between`` acts after the write landed and before the retry reaches the server.
    """

    def arm(self, method: str, skip: int, between: Callable[[], None]) -> None:
        self._write_method = method
        self._skip = skip
        self._between: Callable[[], None] | None = between
        self._dropped = False

    def _choose(self, method: str) -> Fault | None:
        between = getattr(self, "_between", None)
        if between is None:
            return None
        if self._dropped:
            self._between = None
            between()
            self._count("between")
            return None
        if method != self._write_method:
            return None
        if self._skip:
            self._skip -= 1
            return None
        self._dropped = True
        self._count("drop_after")
        return "drop_after"


@pytest.fixture
def direct(network_kind: str, shared_emulator: RunningEmulator) -> BackendSpec:
    return spec_for(network_kind, shared_emulator, **AWS_PATIENT)


@pytest.fixture
def proxy(network_kind: str, shared_emulator: RunningEmulator) -> Iterator[LostAnswerProxy]:
    flavor = _WRITE[network_kind][0]
    with LostAnswerProxy(shared_emulator.endpoint, flavor) as running:
        yield running


def _add_one(value: dict[str, Any]) -> dict[str, Any]:
    return {"n": value["n"] + 1}


@pytest.mark.parametrize("network_kind", sorted(_WRITE))
def test_lost_answer_with_second_writer_is_never_applied_twice(
    network_kind: str, direct: BackendSpec, proxy: LostAnswerProxy
) -> None:
    with opened(direct) as b:
        b.create_instance("counter", name="wf", input={"keep": "me"}, custom_status={"n": 0})
        _, method, skip = _WRITE[network_kind]
        with opened(_through(direct, proxy)) as a:
            proxy.arm(method, skip, lambda: b.update("counter", _add_one))  # A is open
            outcome = "returned"
            try:
                a.update("counter", _add_one)
            except BackendUnavailable as exc:
                outcome = str(exc)
        assert outcome == "returned" or "unknown" in outcome, outcome
        assert proxy.counters["drop_after"] == 1
        assert proxy.counters["between"] == 1  # B's update ran before A's retry
        assert b.get_custom_status("counter") == {"n": 2}, dict(proxy.counters)
        got = b.get_instance("counter", fetch_payloads=True)
        assert got is not None
        assert got.input == {"keep": "me"}
