"""Retention: how long an instance stays after its last update or after it completed.

The rule lives here once, for every backend: an instance is expired when its retention
period has passed since its last update (``retention_from="updated"``) or since it reached
a terminal status (``"completed"``, the default: a running instance never expires under
you; the last update of a terminal instance is its completion, or a later status set by a
client). The store reads expired instances as absent, leaves them out of queries and
counts, lets ``create_instance`` reuse their ids, and ``purge_expired`` deletes them.

A run created with its own ``ttl`` (stored with it: `InstanceRecord.ttl`) is measured the
same way, with its ttl in place of the store-wide period; a store with no period but
``expiring=True`` expires only such runs. Counts stay exact: the backend counts by the
store-wide period (an index or an aggregate does the work), then the runs with their own ttl
among the matches (``with_ttl``: few, and indexed where the backend can) are listed and
each is counted by its own rule instead (`correction`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from durastate.core.records import TERMINAL_STATUSES, Filterable, InstanceQuery, RuntimeStatus
from durastate.errors import InvalidArgument

RetentionFrom = Literal["updated", "completed"]

_TICK: Final = timedelta(microseconds=1)  # exclusive bounds from inclusive ones
_LIVE_STATUSES: Final = frozenset(RuntimeStatus) - TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Retention:
    """A retention period, and what it is measured from."""

    period: timedelta | None  # None: only runs with their own ttl expire
    measured_from: RetentionFrom = "completed"

    @classmethod
    def of(
        cls, period: timedelta | None, measured_from: str, expiring: bool | None = None
    ) -> Retention | None:
        """Checked settings; ``None`` when nothing expires (no period, and ``expiring`` not
        set: such a store ignores expiry, ttls included, and reads nothing before writes)."""
        if measured_from not in ("updated", "completed"):
            raise InvalidArgument(
                f"retention_from must be 'updated' or 'completed', not {str(measured_from)[:40]!r}"
            )
        if period is None:
            return cls(None, measured_from) if expiring else None  # type: ignore[arg-type]
        if expiring is False:
            raise InvalidArgument("expiring=False contradicts a retention period")
        return cls(checked_period(period, "retention"), measured_from)  # type: ignore[arg-type]

    def _expired(self, record: Filterable, period: timedelta | None, now: datetime) -> bool:
        return (
            period is not None
            and (self.measured_from == "updated" or record.runtime_status in TERMINAL_STATUSES)
            and record.last_updated_at + period <= now
        )

    def expired(self, record: Filterable, now: datetime) -> bool:
        """Whether the run has expired: by its own ttl when it has one, else by the period."""
        ttl = record.ttl
        return self._expired(record, self.period if ttl is None else ttl, now)

    def correction(self, record: Filterable, now: datetime) -> int:
        """For a run with its own ttl, what to add to a count made of `alive_queries`
        (which judged it by the store-wide period): +1, -1 or 0."""
        return int(not self._expired(record, record.ttl, now)) - int(
            not self._expired(record, self.period, now)
        )

    def alive_queries(self, query: InstanceQuery, now: datetime) -> list[InstanceQuery]:
        """Queries whose matches together are exactly the matches of ``query`` unexpired by
        the store-wide period (so a backend's own count or filter does the work): the
        statuses that never expire as they are, the others updated after the cutoff."""
        if self.period is None:
            return [query]
        after = now - self.period + _TICK
        fresh = replace(
            query,
            updated_from=after if query.updated_from is None else max(after, query.updated_from),
        )
        if self.measured_from == "updated":
            return [fresh]
        wanted = query.runtime_status or frozenset(RuntimeStatus)
        queries = []
        if wanted & _LIVE_STATUSES:
            queries.append(replace(query, runtime_status=wanted & _LIVE_STATUSES))
        if wanted & TERMINAL_STATUSES:
            queries.append(replace(fresh, runtime_status=wanted & TERMINAL_STATUSES))
        return queries

    def ttl_query(self, query: InstanceQuery) -> InstanceQuery:
        """The runs with their own ttl among ``query``'s matches, from the first page."""
        return replace(
            query,
            with_ttl=True,
            page_size=max(query.page_size, 100),
            continuation=None,
            fetch_payloads=False,
        )

    def expired_queries(self, now: datetime, page_size: int = 100) -> list[InstanceQuery]:
        """Listings that hold every expired instance between them (and more: check each
        with `expired`): the runs with their own ttl, and those past the store-wide period."""
        statuses = None if self.measured_from == "updated" else TERMINAL_STATUSES
        queries = [InstanceQuery(runtime_status=statuses, with_ttl=True, page_size=page_size)]
        if self.period is not None:
            cutoff = now - self.period + _TICK
            queries.append(
                InstanceQuery(runtime_status=statuses, updated_to=cutoff, page_size=page_size)
            )
        return queries


def checked_period(period: object, what: str) -> timedelta:
    """``period`` if it is a positive timedelta; ``InvalidArgument`` naming ``what`` if not."""
    if not isinstance(period, timedelta) or period <= timedelta(0):
        raise InvalidArgument(f"{what} must be a positive timedelta, not {period!r}"[:120])
    return period
