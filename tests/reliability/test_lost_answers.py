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
from tests.reliability.backends import (
    AWS_PATIENT,
    AZURE_PATIENT,
    BackendSpec,
    network_options,
    opened,
    spec_for,
)
from tests.reliability.faultproxy import Fault, FaultProxy, Flavor
from tests.reliability.test_transient import _through

#: How each kind's write travels: the HTTP method of its writes, and how many requests of
#: that method ``update()`` sends before its write (a custom-status write is a MERGE, sent
#: as PATCH, after a GET; DynamoDB reads with a POST too; S3 writes with a PUT after GETs).
_WRITE: dict[str, tuple[Flavor, str, int]] = {
    "azure-tables": ("azure", "PATCH", 0),
    "dynamodb-moto": ("dynamodb", "POST", 1),
    "dynamodb-dynalite": ("dynamodb", "POST", 1),
    "s3": ("s3", "PUT", 0),
}


#: Kinds whose records name the write each update replaced (DynamoDB ``previous_etag``, S3
#: metadata ``p``): after a lost answer and one other writer, they know for sure whether
#: their write landed.
_KEEPS_THE_REPLACED_WRITE = frozenset({"dynamodb-moto", "dynamodb-dynalite", "s3"})


class LostAnswerProxy(FaultProxy):
    """Drops the answer of one write, then runs ``between`` before the next request passes.

    The next request after the dropped answer is the client's retry of that write (or its
    read of the record before a retry), so ``between`` acts after the write landed and
    before the retry reaches the server.
    """

    def arm(
        self, method: str, skip: int, between: Callable[[], None], fault: Fault = "drop_after"
    ) -> None:
        """``fault``: ``"drop_after"`` (the write lands, its answer is lost) or ``"drop"``
        (the connection closes before the write reaches the server)."""
        self._write_method = method
        self._skip = skip
        self._between: Callable[[], None] | None = between
        self._fault = fault
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
        self._count(self._fault)
        return self._fault


@pytest.fixture
def direct(network_kind: str, shared_emulator: RunningEmulator) -> BackendSpec:
    return spec_for(
        network_kind, shared_emulator, **network_options(network_kind, AZURE_PATIENT, AWS_PATIENT)
    )


@pytest.fixture
def proxy(network_kind: str, shared_emulator: RunningEmulator) -> Iterator[LostAnswerProxy]:
    flavor = _WRITE[network_kind][0]
    target = (
        shared_emulator.endpoints["table"]
        if network_kind == "azure-tables"
        else shared_emulator.endpoint
    )
    with LostAnswerProxy(target, flavor) as running:
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
        unavailable: list[BackendUnavailable] = []
        with opened(_through(direct, proxy)) as a:
            # armed once A is open: opening may send requests of its own (CreateTable)
            proxy.arm(method, skip, lambda: b.update("counter", _add_one))
            try:
                a.update("counter", _add_one)
            except BackendUnavailable as exc:
                unavailable.append(exc)
        assert all("unknown" in str(exc) for exc in unavailable), unavailable
        assert proxy.counters["drop_after"] == 1
        assert proxy.counters["between"] == 1  # B's update ran before A's retry
        assert b.get_custom_status("counter") == {"n": 2}, dict(proxy.counters)
        got = b.get_instance("counter", fetch_payloads=True)
        assert got is not None
        assert got.input == {"keep": "me"}


@pytest.mark.parametrize("network_kind", sorted(_WRITE))
@pytest.mark.parametrize(
    ("fault", "writers"),
    [("drop_after", 2), ("drop", 1)],
    ids=["landed-then-two-writers", "never-landed-then-one-writer"],
)
def test_outcome_of_a_lost_answer_is_known_or_reported_unknown(
    network_kind: str, direct: BackendSpec, proxy: LostAnswerProxy, fault: Fault, writers: int
) -> None:
    """More than one writer between A's landed write and its retry, or A's write that never
    reached the server with one writer between: A's ``update()`` either returns, having been
    applied exactly once, or raises ``BackendUnavailable`` saying the outcome is unknown.

    The counter then tells which: B's increments, plus A's if its first write landed or if
    ``update()`` returned (a write that never landed may be retried as a plain conflict).
    """
    with opened(direct) as b:
        b.create_instance("counter", name="wf", custom_status={"n": 0})
        _, method, skip = _WRITE[network_kind]
        outcome = "returned"
        with opened(_through(direct, proxy)) as a:

            def others() -> None:
                for _ in range(writers):
                    b.update("counter", _add_one)

            proxy.arm(method, skip, others, fault)
            try:
                a.update("counter", _add_one)
            except BackendUnavailable as exc:
                outcome = "unknown" if "unknown" in str(exc) else str(exc)
        assert outcome in ("returned", "unknown"), outcome
        assert proxy.counters[fault] == 1
        assert proxy.counters["between"] == 1
        if fault == "drop" and network_kind in _KEEPS_THE_REPLACED_WRITE:
            assert outcome == "returned"  # the next write names the one it replaced: not ours
        applied = fault == "drop_after" or outcome == "returned"
        assert b.get_custom_status("counter") == {"n": writers + applied}, (outcome, fault)
