"""Telling our own landed write from another writer's, after an answer was lost.

A write whose answer never came back may or may not have been applied. Before anything is
sent again, the row is read, and these rules decide what happened. Every write stores a
random ``WriteId`` (the latest write's token) and also copies it into one of 16 history
columns, ``WriteLog0`` to ``WriteLogF``, chosen by its first hex digit. A later writer
overwrites ``WriteId`` and, one time in 16, the same history column; so a landed write is
still recognised after another writer came in between, without reading before writing.
``WriteBase`` keeps the etag the latest write was conditioned on: if that is the etag our
write was sent with, another write took our place, and ours can never apply.

Pure functions on a row (a mapping of columns plus its etag): no I/O, so any transport
(sync or async) applies the same decisions.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from typing import Any, Final

C_WRITE_ID: Final = "WriteId"  # the token of the latest write
C_WRITE_BASE: Final = "WriteBase"  # the etag the latest write replaced ("" if unconditional)
_LOG_PREFIX: Final = "WriteLog"

#: What a write that landed but was overwritten since returns as its etag: a well-formed
#: Azure etag that no row ever has, so a compare-and-swap with it is refused (the record
#: has moved on past that write).
SUPERSEDED_ETAG: Final = "W/\"datetime'1970-01-01T00%3A00%3A00.0000000Z'\""


def new_write_id() -> str:
    """A random token for one write (16 hex digits; the first picks its history column)."""
    return secrets.token_hex(8)


def log_column(write_id: str) -> str:
    """The history column that keeps ``write_id`` until a later write picks the same one."""
    return _LOG_PREFIX + write_id[0].upper()


def write_columns(write_id: str, base_etag: str | None = None) -> dict[str, str]:
    """The columns every write (insert, replace or merge) adds to its entity; ``base_etag``
    is the etag a conditional write is sent with."""
    return {C_WRITE_ID: write_id, log_column(write_id): write_id, C_WRITE_BASE: base_etag or ""}


def probe_columns(write_id: str) -> list[str]:
    """What to read back to decide: the latest write's token and base, and ``write_id``'s
    history column."""
    return [C_WRITE_ID, C_WRITE_BASE, log_column(write_id)]


class LostWrite(enum.Enum):
    """What a write whose answer was lost turned out to have done."""

    LANDED = "landed"  # ours is the latest write: the row's etag is ours
    SUPERSEDED = "superseded"  # ours landed, another write came after it
    NOT_APPLIED = "not applied"  # the row is still at the etag we sent: send it again
    STALE = "stale"  # ours did not land and another writer's did: a real conflict
    UNKNOWN = "unknown"  # ours may have landed and been overwritten: cannot tell


def _own_write(row: Mapping[str, Any], write_id: str) -> LostWrite | None:
    if row.get(C_WRITE_ID) == write_id:
        return LostWrite.LANDED
    if row.get(log_column(write_id)) == write_id:
        return LostWrite.SUPERSEDED
    return None


def lost_write_outcome(
    row: Mapping[str, Any], row_etag: str, write_id: str, sent_etag: str | None
) -> LostWrite:
    """Decide from the row read after the lost answer (``probe_columns`` at least).

    Without an etag (last write wins) a write that is not found is sent again: it may
    have landed and been overwritten twice, and then it lands once more, last, as asked.
    With one, a write not found is stale when the latest write replaced the very etag ours
    was sent with (two writes cannot both replace one etag), or when its history column was
    never written (no write, ours included, used it); otherwise the outcome is unknown.
    """
    found = _own_write(row, write_id)
    if found is not None:
        return found
    if sent_etag is None or row_etag == sent_etag:
        return LostWrite.NOT_APPLIED
    if row.get(C_WRITE_BASE) == sent_etag or not row.get(log_column(write_id)):
        return LostWrite.STALE
    return LostWrite.UNKNOWN


def lost_insert_outcome(row: Mapping[str, Any], write_id: str, *, maybe_applied: bool) -> LostWrite:
    """An insert met an existing row: ours (an earlier try landed), another run (``STALE``),
    or, when an earlier try may have landed and a later write may have hidden it, unknown."""
    found = _own_write(row, write_id)
    if found is not None:
        return found
    if not maybe_applied or not row.get(log_column(write_id)):
        return LostWrite.STALE
    return LostWrite.UNKNOWN
