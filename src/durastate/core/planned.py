"""Backends whose operations are plans (`durastate.core.steps`): the contract, once.

A backend that writes its operations as plans (`BackendPlans`: Redis, PostgreSQL) gets the
whole backend contract from `PlannedBackend` (sync) or `AsyncPlannedBackend` (async): each
method hands the operation's plan to the driver's ``_perform``. A driver then holds only
what is its own: its client, pool and connections, and how it performs one step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from durastate.core.async_backend import AsyncBackend
from durastate.core.backend import Backend
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.steps import Plan, adrive, drive

T = TypeVar("T")


class BackendPlans(ABC):
    """The backend contract's operations, each a plan of the backend's own steps."""

    @abstractmethod
    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[Any, str]: ...

    @abstractmethod
    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[Any, InstanceRecord | None]: ...

    def read_many(
        self, instance_ids: Sequence[str], fetch_payloads: bool
    ) -> Plan[Any, dict[str, InstanceRecord | None]]:
        """As `Backend.read_many`; by default one read after another (a service with a
        batched read overrides it)."""
        found: dict[str, InstanceRecord | None] = {}
        for instance_id in instance_ids:
            found[instance_id] = yield from self.read(instance_id, fetch_payloads)
        return found

    def count(self, query: InstanceQuery) -> Plan[Any, dict[RuntimeStatus, int]]:
        """As `Backend.count`; by default a walk over the pages of ``query`` (a backend with
        an index or a server-side aggregate overrides it)."""
        counts: dict[RuntimeStatus, int] = {}
        page_query = replace(query, page_size=max(query.page_size, 100), fetch_payloads=False)
        while True:
            page = yield from self.query(page_query)
            for record in page.items:
                if query.matches(record):
                    counts[record.runtime_status] = counts.get(record.runtime_status, 0) + 1
            if page.continuation is None:
                return counts
            page_query = replace(page_query, continuation=page.continuation)

    @abstractmethod
    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[Any, WriteResult]: ...

    @abstractmethod
    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[Any, str]: ...

    @abstractmethod
    def delete(self, instance_id: str) -> Plan[Any, bool]: ...

    @abstractmethod
    def query(self, query: InstanceQuery) -> Plan[Any, RecordPage]: ...

    @abstractmethod
    def purge_by(self, query: InstanceQuery) -> Plan[Any, int]: ...

    def purge_expired(self) -> Plan[Any, int]:
        """As `Backend.purge_expired`; by default nothing to sweep (a plan of no step)."""
        return 0
        yield  # (makes this a generator)


class PlannedBackend(Backend):
    """The sync backend contract over ``plans``; a subclass performs the steps."""

    plans: BackendPlans

    @abstractmethod
    def _perform(self, step: Any) -> Any:
        """Do one step of a plan; return what the plan receives (or raise)."""

    def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        """Run one operation's plan (on ``instance_id``, if it is about one instance); a
        subclass may get ready first (create its table, naming the instance if that fails)."""
        return drive(plan, self._perform)

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return self._drive(self.plans.create(new, restart_if_terminal), new.instance_id)

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        return self._drive(self.plans.read(instance_id, fetch_payloads), instance_id)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return self._drive(self.plans.read_many(instance_ids, fetch_payloads))

    def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        return self._drive(self.plans.count(query))

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        plan = self.plans.write_custom_status(instance_id, payload, etag, now)
        return self._drive(plan, instance_id)

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        plan = self.plans.write_runtime_status(instance_id, status, output, set_output, etag, now)
        return self._drive(plan, instance_id)

    def delete(self, instance_id: str) -> bool:
        return self._drive(self.plans.delete(instance_id), instance_id)

    def query(self, query: InstanceQuery) -> RecordPage:
        return self._drive(self.plans.query(query))

    def purge_by(self, query: InstanceQuery) -> int:
        return self._drive(self.plans.purge_by(query))

    def purge_expired(self) -> int:
        return self._drive(self.plans.purge_expired())


class AsyncPlannedBackend(AsyncBackend):
    """The async backend contract over ``plans``; a subclass performs (awaits) the steps."""

    plans: BackendPlans

    @abstractmethod
    async def _perform(self, step: Any) -> Any:
        """Do one step of a plan; return what the plan receives (or raise)."""

    async def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        """As `PlannedBackend._drive`."""
        return await adrive(plan, self._perform)

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return await self._drive(self.plans.create(new, restart_if_terminal), new.instance_id)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return await self._drive(self.plans.read(instance_id, fetch_payloads), instance_id)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return await self._drive(self.plans.read_many(instance_ids, fetch_payloads))

    async def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        return await self._drive(self.plans.count(query))

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        plan = self.plans.write_custom_status(instance_id, payload, etag, now)
        return await self._drive(plan, instance_id)

    async def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        plan = self.plans.write_runtime_status(instance_id, status, output, set_output, etag, now)
        return await self._drive(plan, instance_id)

    async def delete(self, instance_id: str) -> bool:
        return await self._drive(self.plans.delete(instance_id), instance_id)

    async def query(self, query: InstanceQuery) -> RecordPage:
        return await self._drive(self.plans.query(query))

    async def purge_by(self, query: InstanceQuery) -> int:
        return await self._drive(self.plans.purge_by(query))

    async def purge_expired(self) -> int:
        return await self._drive(self.plans.purge_expired())
