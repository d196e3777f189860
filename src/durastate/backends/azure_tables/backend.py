"""azure-tables:// — the sync store: each call drives its plan (`plans.AzureTablesPlans`,
through `PlannedBackend`) over the keep-alive `HttpDriver`; the table is created once
through the SDK (administration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from durastate.backends.azure_tables import plans
from durastate.backends.azure_tables.account import Account, TableCreator, resolve
from durastate.backends.azure_tables.keys import KEY_LIMIT
from durastate.backends.azure_tables.layout import INLINE_LIMIT, PROPERTY_LIMIT
from durastate.backends.azure_tables.offload import BlobOffload
from durastate.backends.azure_tables.options import AzureTablesOptions, parse_options
from durastate.backends.azure_tables.requests import TableRequests
from durastate.core.backend import read_in_threads
from durastate.core.planned import PlannedBackend
from durastate.core.records import Capabilities, InstanceRecord
from durastate.core.steps import Plan
from durastate.transport.plans import Step, perform
from durastate.transport.sync import HttpDriver

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend

T = TypeVar("T")
MAX_ID_LENGTH = 512

CAPABILITIES = Capabilities(
    max_payload_bytes=INLINE_LIMIT,
    offload=True,
    skips_unchanged=False,
    native_query=True,
    ttl=False,
    cross_process=True,
    max_instance_id_length=MAX_ID_LENGTH,
    extra={"key_limit_utf16": str(KEY_LIMIT), "property_limit_bytes": str(PROPERTY_LIMIT)},
)


def open_core(options: AzureTablesOptions) -> tuple[plans.AzureTablesCore, Account]:
    """The shared core of a store, and its account (endpoints, signatures, admin)."""
    account = resolve(options)
    tables = TableRequests(account.table.endpoint, options.table, account.table.auth)
    blobs = None
    if account.blob is not None:
        blob = account.blob
        blobs = BlobOffload(blob.endpoint, blob.auth, options.container, options.table)
    return plans.AzureTablesCore(tables, blobs, options), account


def capabilities_of(core: plans.AzureTablesCore) -> Capabilities:
    return CAPABILITIES if core.offload_enabled else replace(CAPABILITIES, offload=False)


class AzureTablesBackend(PlannedBackend):
    """Azure Table Storage, one entity per instance; offloads big payloads to blobs."""

    scheme = "azure-tables"
    capabilities = CAPABILITIES
    async_mode: ClassVar[str] = "native"

    def __init__(self, options: AzureTablesOptions, *, driver: HttpDriver | None = None) -> None:
        """Prefer ``from_url``; see docs/azure.md for the options. ``driver`` replaces the
        HTTP driver the options describe (tests record requests with it)."""
        self.options = options
        self.core, self.account = open_core(options)
        self.plans = plans.AzureTablesPlans(self.core)
        self.table_name = options.table
        self.account_name = self.account.name
        self.capabilities = capabilities_of(self.core)
        self.offload_threshold = self.core.offload_threshold
        self.tables = TableCreator(self.account.admin, options)
        self._driver = driver or HttpDriver(options.transport())

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``azure-tables://Table`` or ``azure-tables:///?table=Table``; see docs/azure.md."""
        return cls(parse_options(url, options))

    def __repr__(self) -> str:
        return f"AzureTablesBackend(account={self.account_name!r}, table={self.table_name!r})"

    def close(self) -> None:
        self._driver.close()
        self.tables.close()

    def to_async(self) -> AsyncBackend:
        """The native async store on the same core (the async driver is asyncio alone)."""
        from durastate.backends.azure_tables.aio import AsyncAzureTablesBackend

        return AsyncAzureTablesBackend(self)

    def ensure_table(self, instance_id: str | None = None) -> None:
        self.tables.ensure(partial(self.core.where, instance_id, "create table"))

    def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        """Create the table on first use (unless ``create_table=False``), then drive."""
        if not self.tables.ready:
            self.ensure_table(instance_id)
        return super()._drive(plan, instance_id)

    def _perform(self, step: Step) -> Any:
        return perform(step, self._driver)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """No batched read in this service: a few reads at once on threads."""
        return read_in_threads(self, instance_ids, fetch_payloads)
