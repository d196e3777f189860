"""Backends whose operations are plans (`durastate.core.steps`): the contract, once.

A backend that writes its operations as plans (`BackendPlans`: Redis, PostgreSQL) gets the
whole backend contract from `PlannedBackend` (sync) or `AsyncPlannedBackend` (async): each
method hands the operation's plan to the driver's ``_perform``. A driver then holds only
what is its own: its client, pool and connections, and how it performs one step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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


class BackendPlans(ABC):
    """The backend contract's operations, each a plan of the backend's own steps."""

    @abstractmethod
    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[Any, str]: ...

    @abstractmethod
    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[Any, InstanceRecord | None]: ...

    @abstractmethod
    def read_many(
        self, instance_ids: Sequence[str], fetch_payloads: bool
    ) -> Plan[Any, dict[str, InstanceRecord | None]]: ...

    @abstractmethod
    def count(self, query: InstanceQuery) -> Plan[Any, dict[RuntimeStatus, int]]: ...

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

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return drive(self.plans.create(new, restart_if_terminal), self._perform)

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        return drive(self.plans.read(instance_id, fetch_payloads), self._perform)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return drive(self.plans.read_many(instance_ids, fetch_payloads), self._perform)

    def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        return drive(self.plans.count(query), self._perform)

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        plan = self.plans.write_custom_status(instance_id, payload, etag, now)
        return drive(plan, self._perform)

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
        return drive(plan, self._perform)

    def delete(self, instance_id: str) -> bool:
        return drive(self.plans.delete(instance_id), self._perform)

    def query(self, query: InstanceQuery) -> RecordPage:
        return drive(self.plans.query(query), self._perform)

    def purge_by(self, query: InstanceQuery) -> int:
        return drive(self.plans.purge_by(query), self._perform)

    def purge_expired(self) -> int:
        return drive(self.plans.purge_expired(), self._perform)


class AsyncPlannedBackend(AsyncBackend):
    """The async backend contract over ``plans``; a subclass performs (awaits) the steps."""

    plans: BackendPlans

    @abstractmethod
    async def _perform(self, step: Any) -> Any:
        """Do one step of a plan; return what the plan receives (or raise)."""

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return await adrive(self.plans.create(new, restart_if_terminal), self._perform)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return await adrive(self.plans.read(instance_id, fetch_payloads), self._perform)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return await adrive(self.plans.read_many(instance_ids, fetch_payloads), self._perform)

    async def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        return await adrive(self.plans.count(query), self._perform)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        plan = self.plans.write_custom_status(instance_id, payload, etag, now)
        return await adrive(plan, self._perform)

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
        return await adrive(plan, self._perform)

    async def delete(self, instance_id: str) -> bool:
        return await adrive(self.plans.delete(instance_id), self._perform)

    async def query(self, query: InstanceQuery) -> RecordPage:
        return await adrive(self.plans.query(query), self._perform)

    async def purge_by(self, query: InstanceQuery) -> int:
        return await adrive(self.plans.purge_by(query), self._perform)

    async def purge_expired(self) -> int:
        return await adrive(self.plans.purge_expired(), self._perform)
