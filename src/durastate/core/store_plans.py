"""The store operations that take several calls, once, as plans (see `durastate.core.steps`).

`StateStore` and `AsyncStateStore` run the same plans: ``update`` (read, apply, write,
retry on conflict), ``purge_expired`` (the backend's sweep, then the retention's listing
and deletes) and a create over an expired run. A plan yields `Call` (a method of the store
or of its backend, by name: the sync store calls it, the async store awaits it), `Apply`
(the user's function; the async store awaits it when it returns an awaitable) or `Pause`.
The one-call hot paths (``set_custom_status``, ``get_instance``) are no plans: they pay
nothing for this.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias

from durastate.core.steps import Pause, Plan
from durastate.errors import ConcurrencyError, InstanceNotFound

if TYPE_CHECKING:
    from durastate.core.models import InstanceMetadata
    from durastate.core.records import NewInstance
    from durastate.core.store import StateStore

log = logging.getLogger("durastate.core.store")


@dataclass(frozen=True, slots=True)
class Call:
    """``name(*args, **kwargs)`` on the store (``on_backend=False``) or on its backend."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    on_backend: bool = True


@dataclass(frozen=True, slots=True)
class Apply:
    """``fn(value)``: the user's function of ``update``."""

    fn: Callable[[Any], Any]
    value: Any


Step: TypeAlias = Call | Apply | Pause


def update_backoff(attempt: int) -> float:
    """Seconds to wait before the next ``update`` attempt after a conflict (jittered)."""
    return min(0.001 * (1 << attempt), 0.05) * (0.5 + random.random())


def require_instance(metadata: InstanceMetadata | None, instance_id: str) -> InstanceMetadata:
    if metadata is None:
        raise InstanceNotFound(instance_id)
    return metadata


def update(store: StateStore, instance_id: str, fn: Any, retries: int) -> Plan[Step, Any]:
    """Read-modify-write of the custom status, retried on etag conflicts only: any other
    failure (an unknown outcome) is raised, so ``fn`` is never applied again to a write
    that may have landed. Returns the value stored."""
    for attempt in range(retries + 1):
        current = yield Call("get_instance", (instance_id,), on_backend=False)
        current = require_instance(current, instance_id)
        new_value = yield Apply(fn, current.custom_status)
        try:
            yield Call("set_custom_status", (instance_id, new_value), {"etag": current.etag}, False)
        except ConcurrencyError:
            if attempt == retries:
                raise
            yield Pause(update_backoff(attempt))
            continue
        return new_value
    raise AssertionError("unreachable")  # pragma: no cover


def replace_expired(store: StateStore, new: NewInstance) -> Plan[Step, str]:
    """Create over an expired run of the id (still stored: no native expiry swept it)."""
    current = yield Call("read", (new.instance_id,))
    etag: str
    if store.restart_over_expired(new.instance_id, current):
        etag = yield Call("create", (new,), {"restart_if_terminal": True})  # atomic
        return etag
    yield Call("delete", (new.instance_id,))  # "updated": an expired run may still be live
    etag = yield Call("create", (new,))
    return etag


def purge_expired(store: StateStore) -> Plan[Step, int]:
    """What the backend's own expiry left stored, then what the store's retention expired
    (listed page by page, then deleted one by one); how many were deleted."""
    sweep = store.expiry_sweep()
    swept: int = yield Call("purge_expired")
    if sweep is None:
        return swept
    query = sweep.query
    doomed: list[str] = []
    while True:
        page = yield Call("query", (query,))
        doomed.extend(sweep.expired_ids(page))
        if page.continuation is None:
            break
        query = replace(query, continuation=page.continuation)
    deleted = swept
    for instance_id in doomed:
        deleted += bool((yield Call("delete", (instance_id,))))
    log.info("purged %d expired instance(s)", deleted)
    return deleted
