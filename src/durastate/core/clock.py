"""Timestamps as integers: microseconds since the Unix epoch, as SQLite, Redis and
PostgreSQL rows store them (an integer sorts, compares and indexes exactly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)

_last_micros: tuple[datetime | None, int] = (None, 0)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch; the store's clock repeats one datetime per millisecond,
    so the last conversion is kept (swapped in one assignment: thread-safe)."""
    global _last_micros
    last = _last_micros
    if last[0] is moment:
        return last[1]
    micros = (moment - EPOCH) // MICROSECOND
    _last_micros = (moment, micros)
    return micros


def from_micros(micros: int) -> datetime:
    """The UTC datetime of a stored microsecond count."""
    return EPOCH + timedelta(microseconds=micros)
