"""The PostgreSQL core without a server: statements, outcomes, lost-write verdicts, recovery."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest

from durastate.backends.postgres import core
from durastate.core.records import InstanceQuery
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    InstanceNotFound,
    SerializationError,
)

STMTS = core.statements(core.PostgresOptions(table="jobs"))


def test_the_custom_status_update_is_one_conditional_statement() -> None:
    for sql in (STMTS.write_status, STMTS.write_status_if_match):
        assert sql.count(";") == 0
        assert "UPDATE jobs SET custom_status" in sql
        assert "IS DISTINCT FROM" in sql
        assert "pg_notify('jobs', encode(instance_id, 'hex'))" in sql
    assert "etag = %(etag)s" in STMTS.write_status_if_match
    assert "etag = %(etag)s" not in STMTS.write_status
    quiet = core.statements(core.PostgresOptions(table="jobs", notify=False))
    assert "pg_notify" not in quiet.write_status


@pytest.mark.parametrize(
    ("etag", "row", "expected"),
    [
        ("e1", None, "written"),
        (None, None, "written"),
        ("e1", (None, None), InstanceNotFound),
        (None, (None, None), InstanceNotFound),
        ("e1", ("e2", True), ConcurrencyError),  # a stale etag, even for the same bytes
        ("e1", ("e1", True), "skipped"),
        (None, ("e2", True), "skipped"),
        ("e1", ("e1", False), ConcurrencyError),  # changed between snapshot and update
        (None, ("e2", False), "again"),  # last write wins: run it again, never a conflict
    ],
)
def test_status_outcome_tells_every_case_apart(
    etag: str | None, row: tuple[Any, ...] | None, expected: Any
) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            core.status_outcome("i", etag, "new", row)
        return
    result = core.status_outcome("i", etag, "new", row)
    if expected == "again":
        assert result is None
        return
    assert result is not None
    if expected == "written":
        assert (result.etag, result.written) == ("new", True)
    else:
        assert row is not None
        assert (result.etag, result.written) == (row[0], False)


@pytest.mark.parametrize(
    ("lost", "row", "verdict"),
    [
        (core.LostWrite("i", "new", "old"), ("new", "r"), True),
        (core.LostWrite("i", "new", "old"), ("old", "r"), False),
        (core.LostWrite("i", "new", "old"), ("other", "r"), None),
        (core.LostWrite("i", "new", None), ("other", "r"), None),
        (core.LostWrite("i", "new", "old"), None, None),
        (core.LostWrite("i", "new", None, create=True), None, False),
        (core.LostWrite("i", "new", None, create=True), ("later", "new"), True),
        (core.LostWrite("i", "new", None, create=True), ("x", "someone"), None),
    ],
)
def test_a_lost_write_is_ours_surely_not_ours_or_unknown(
    lost: core.LostWrite, row: tuple[str, str] | None, verdict: bool | None
) -> None:
    assert lost.landed(row) is verdict


def _drive(
    flow: Generator[core.Run, Sequence[Any] | None, Any], answers: list[Any]
) -> tuple[list[core.Run], Any]:
    """Feed ``answers`` (rows, or ConnectionLost to throw) to a recovery; its steps and end."""
    steps = [next(flow)]
    try:
        for answer in answers:
            if isinstance(answer, core.ConnectionLost):
                steps.append(flow.throw(answer))
            else:
                steps.append(flow.send(answer))
    except StopIteration as done:
        return steps, done.value
    raise AssertionError(f"the recovery did not end: {steps[-1]}")


RESEND = core.Run("UPDATE ...", {"id": b"i"})


def test_recovery_ends_the_old_process_then_recognises_our_write() -> None:
    flow = core.recover(STMTS, core.LostWrite("i", "new", "old"), 42, RESEND, 900)
    steps, outcome = _drive(flow, [(True,), (False,), ("new", "r")])
    assert outcome is core.LANDED
    assert steps[0] == core.Run(STMTS.forget_lost_backend, (42, 900), fresh=True)
    assert steps[1].sql == STMTS.backend_alive


def test_recovery_resends_only_what_surely_did_not_land() -> None:
    flow = core.recover(STMTS, core.LostWrite("i", "new", "old"), 42, RESEND, 900)
    steps, outcome = _drive(flow, [(True,), (False,), ("old", "r"), ("old", False)])
    assert steps[3] is RESEND
    assert outcome == ("old", False)


def test_recovery_checks_again_on_a_new_connection_when_the_check_breaks() -> None:
    flow = core.recover(STMTS, core.LostWrite("i", "new", "old"), 42, RESEND, 900)
    steps, outcome = _drive(
        flow, [(True,), core.ConnectionLost(77), (True,), (False,), ("new", "r")]
    )
    assert steps[2] == core.Run(STMTS.forget_lost_backend, (42, 900), fresh=True)
    assert outcome is core.LANDED


def test_a_broken_resend_is_recovered_with_its_own_process() -> None:
    flow = core.recover(STMTS, core.LostWrite("i", "new", "old"), 42, RESEND, 900)
    steps, outcome = _drive(
        flow,
        [(True,), (False,), ("old", "r"), core.ConnectionLost(43), (True,), (False,), ("new",)],
    )
    assert steps[4] == core.Run(STMTS.forget_lost_backend, (43, 900), fresh=True)
    assert outcome is core.LANDED


@pytest.mark.parametrize(
    ("pid", "answers", "why"),
    [
        (None, [], "process is unknown"),
        (42, [(True,), (True,)], "still runs"),
        (42, [(True,), (False,), ("other", "r")], "another writer"),
    ],
)
def test_recovery_says_the_outcome_is_unknown_when_it_cannot_tell(
    pid: int | None, answers: list[Any], why: str
) -> None:
    flow = core.recover(STMTS, core.LostWrite("i", "new", "old"), pid, RESEND, 900)
    with pytest.raises(BackendUnavailable, match=why) as raised:
        _drive(flow, answers)
    assert "outcome is unknown" in str(raised.value)


def test_prefix_ranges_and_where_clauses() -> None:
    assert core._prefix_range("job-") == (b"job-", b"job.")
    assert core._prefix_range("é") == ("é".encode(), b"\xc3\xaa")
    clause, params = core.where(InstanceQuery(prefix="a", page_size=5), after=b"a1")
    assert "instance_id >= %s AND instance_id < %s" in clause
    assert params == [b"a", b"b", b"a1"]
    assert clause.startswith(" WHERE (expires_at IS NULL OR expires_at > now())")


def test_options_are_checked() -> None:
    for bad in ({"table": "1abc"}, {"table": 'a"; DROP'}, {"channel": "x y"}, {"nope": 1}):
        with pytest.raises(ConfigurationError):
            core.parse_options(bad)
    with pytest.raises(SerializationError, match="NUL"):
        core.check_name("i", "bad\x00name")
