"""Each Redis backend operation once, as a plan of commands (see `durastate.core.steps`).

A plan yields what it wants sent and receives the reply: a command (a tuple of
``execute_command`` arguments), a `Pipelined` group of commands (one round trip; receives
their replies in order, errors in place), or a `Pause`. Sending a script, falling back to
EVAL when the server lacks it, retrying after a dropped connection (`Attempts`) and reading
the replies (`RedisCore`) all happen here, so the sync driver (redis-py) and the async
driver (its own RESP2 connections, `aio_connections`) only perform the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeAlias

from redis import exceptions

from durastate.backends.redis.core import RedisCore, Reply, ScriptCall
from durastate.backends.redis.failures import Attempts
from durastate.backends.redis.options import RedisTarget
from durastate.core.planned import BackendPlans
from durastate.core.records import (
    Capabilities,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.steps import Pause, Plan

Command: TypeAlias = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Pipelined:
    """Commands sent together without a transaction; the plan receives every reply, an
    exception object in place of a failed one."""

    commands: tuple[Command, ...]


Step: TypeAlias = Command | Pipelined | Pause


def evalsha(call: ScriptCall) -> Command:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def eval_source(call: ScriptCall) -> Command:
    return ("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)


MAX_VALUE_BYTES = 512 * 1024 * 1024  # Redis's limit for one string


def capabilities_for(target: RedisTarget) -> Capabilities:
    return Capabilities(
        max_payload_bytes=MAX_VALUE_BYTES,
        skips_unchanged=True,
        native_query=True,
        ttl=target.options.ttl_seconds is not None,
        push=True,
    )


class RedisPlans(BackendPlans):
    """The operations of one store (its core and its target's timeout and secrets)."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.core = RedisCore(target.options.prefix, target.options.ttl_seconds)
        self.capabilities = capabilities_for(target)

    def sent(self, call: ScriptCall, operation: str) -> Plan[Step, Reply]:
        """A script's reply; `Attempts` decides what follows a failure (see there)."""
        attempts: Attempts | None = None  # made on the first failure: none on the hot path
        while True:
            try:
                try:
                    return (yield evalsha(call))
                except exceptions.NoScriptError:  # a new or restarted server: EVAL caches it
                    return (yield eval_source(call))
            except exceptions.RedisError as exc:
                attempts = attempts or Attempts(call, operation, self.target)
                call, pause = attempts.after(exc)
            if pause:
                yield Pause(pause)

    # -- the backend contract -------------------------------------------------------------

    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[Step, str]:
        call = self.core.create(new, restart=restart_if_terminal)
        return self.core.created(call, (yield from self.sent(call, "create")))

    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[Step, InstanceRecord | None]:
        values = yield from self.sent(self.core.read(instance_id, fetch_payloads), "read")
        return self.core.record(values, fetch_payloads, instance_id)

    def read_many(
        self, instance_ids: Sequence[str], fetch_payloads: bool
    ) -> Plan[Step, dict[str, InstanceRecord | None]]:
        """The read scripts of every id in one pipeline (one round trip); an id whose reply
        failed (a script not loaded yet, a broken connection) is read alone, with the usual
        retries and typed errors."""
        calls = [self.core.read(instance_id, fetch_payloads) for instance_id in instance_ids]
        replies: list[Any]
        try:
            replies = yield Pipelined(tuple(evalsha(call) for call in calls))
        except exceptions.RedisError:
            replies = [None] * len(calls)  # every id is read alone below
        found: dict[str, InstanceRecord | None] = {}
        for instance_id, call, reply in zip(instance_ids, calls, replies, strict=True):
            if reply is None or isinstance(reply, Exception):
                reply = yield from self.sent(call, "read")
            found[instance_id] = self.core.record(reply, fetch_payloads, instance_id)
        return found

    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[Step, WriteResult]:
        call = self.core.custom_status(instance_id, payload, etag, now)
        return self.core.status_written(call, (yield from self.sent(call, "custom-status update")))

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[Step, str]:
        call = self.core.runtime_status(
            instance_id, status, output=output, set_output=set_output, etag=etag, now=now
        )
        return self.core.runtime_written(
            call, (yield from self.sent(call, "runtime-status update"))
        )

    def delete(self, instance_id: str) -> Plan[Step, bool]:
        return self.core.deleted((yield from self.sent(self.core.delete(instance_id), "delete")))

    def query(self, query: InstanceQuery) -> Plan[Step, RecordPage]:
        return self.core.page(query, (yield from self.sent(self.core.query(query), "query")))

    def purge_by(self, query: InstanceQuery) -> Plan[Step, int]:
        """One atomic script per batch of up to 500 matches, walking the same index."""
        total = 0
        next_query: InstanceQuery | None = query
        while next_query is not None:
            reply = yield from self.sent(self.core.query(next_query, purge=True), "purge")
            count, next_query = self.core.purged(query, reply)
            total += count
        return total

    def count(self, query: InstanceQuery) -> Plan[Step, dict[RuntimeStatus, int]]:
        """Counted by the query script on the server, a batch of index entries per call:
        no record crosses the wire."""
        counts: dict[RuntimeStatus, int] = {}
        next_query: InstanceQuery | None = replace(query, continuation=None)
        while next_query is not None:
            reply = yield from self.sent(self.core.query(next_query, count=True), "count")
            next_query = self.core.counted(query, reply, counts)
        return counts
