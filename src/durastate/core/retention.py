"""Retention: how long an instance stays after its last update or after it completed.

The rule lives here once, for every backend: an instance is expired when its retention
period has passed since its last update (``retention_from="updated"``) or since it reached
a terminal status (``"completed"``, the default: a running instance never expires under
you; the last update of a terminal instance is its completion, or a later status set by a
client). The store reads expired instances as absent, leaves them out of queries and
counts, lets ``create_instance`` reuse their ids, and ``purge_expired`` deletes them.
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

    period: timedelta
    measured_from: RetentionFrom = "completed"

    @classmethod
    def of(cls, period: timedelta | None, measured_from: str) -> Retention | None:
        """Checked settings; ``None`` when no period is set."""
        if measured_from not in ("updated", "completed"):
            raise InvalidArgument(
                f"retention_from must be 'updated' or 'completed', not {str(measured_from)[:40]!r}"
            )
        if period is None:
            return None
        if not isinstance(period, timedelta) or period <= timedelta(0):
            raise InvalidArgument(f"retention must be a positive timedelta, not {period!r}")
        return cls(period, measured_from)  # type: ignore[arg-type]

    def _counts(self, status: RuntimeStatus) -> bool:
        return self.measured_from == "updated" or status in TERMINAL_STATUSES

    def expired(self, record: Filterable, now: datetime) -> bool:
        return self._counts(record.runtime_status) and record.last_updated_at + self.period <= now

    def alive_queries(self, query: InstanceQuery, now: datetime) -> list[InstanceQuery]:
        """Queries whose matches together are exactly the unexpired matches of ``query``
        (so a backend's own count or filter does the work): the statuses that never expire
        as they are, the others updated after the cutoff."""
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

    def expired_query(self, now: datetime, page_size: int = 100) -> InstanceQuery:
        """Every expired instance (and, for a backend that ignores the update range, more:
        check each with `expired`)."""
        return InstanceQuery(
            runtime_status=None if self.measured_from == "updated" else TERMINAL_STATUSES,
            updated_to=now - self.period + _TICK,
            page_size=page_size,
        )
