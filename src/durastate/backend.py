"""Everything a backend author needs, from one import: ``from durastate.backend import ...``.

The modules under ``durastate.core`` are the library's own and may move; the names here are
the stable surface for backends (built-in or plugin). In brief:

**Implement** a subclass of `Backend`: ``from_url``, ``create``, ``read``,
``write_custom_status``, ``write_runtime_status``, ``delete``, ``query``. ``purge_by``,
``count``, ``read_many``, ``purge_expired``, ``subscribe`` and ``to_async`` have generic
fallbacks (override them when the service can do better). A native async face implements
`AsyncBackend` and is returned by ``to_async``; without one the async store runs the sync
backend in a bounded thread pool (`ThreadPoolAsyncBackend`).

**Semantics** (the conformance suite checks every one; see `durastate.core.backend`):
``create`` is insert-only (`InstanceExists`; a terminal run is replaced only with
``restart_if_terminal``, and the new run keeps nothing of the old). A write with an etag
succeeds only at that etag (`ConcurrencyError`), without one the last write wins; a missing
instance is `InstanceNotFound`. ``write_custom_status`` writes only the status and its
timestamps; given the stored bytes and the current etag it writes nothing and returns
``WriteResult(etag, written=False)``. Timestamps come from the store (``now``). Backends
store `Payload` bytes and their ``encoding`` and never deserialize them.

**Declare** `Capabilities` truthfully: the suite checks each flag both ways.
``max_payload_bytes`` (the inline limit; a bigger payload raises `PayloadTooLarge` before
anything changes, unless ``offload`` stores it elsewhere), ``skips_unchanged`` (the same
bytes *without* an etag are not written again), ``ttl`` (``purge_expired`` sweeps records
the backend's own expiry hides), ``cross_process`` (a second backend object on the same
namespace sees the writes), ``push`` (``subscribe`` notifies on each change; otherwise it
raises ``NotImplementedError``), ``max_instance_id_length``. ``native_query`` is
documentation only: no behaviour tells an index from a scan.

**Raise** the typed errors re-exported here, never a client library's own; name the
instance, never a secret. A write whose answer was lost and that cannot be recognised
afterwards is `OutcomeUnknown` (a `BackendUnavailable`), never a blind retry.

**Reuse** the helpers: `skip_unreadable` (one corrupt record never breaks a listing),
`read_in_threads` (``read_many`` without a batched read), `LRU` and `RecentPayloads`
(bounded per-instance memory), `Listeners` (who a push backend notifies), `inflate`
(bounded decompression of offloaded payloads), `encode_token`/`decode_token` and
`after_token`/`decode_after` (opaque continuation tokens; a foreign one is
`InvalidContinuationToken`).

**Register** with one entry point in the group `BACKEND_GROUP` (``durastate.backends``), the
URL scheme as its name::

    [project.entry-points."durastate.backends"]
    dirstore = "durastate_dirstore:DirStoreBackend"

(or `register_backend` in code). An entry point never replaces a built-in.

**Prove** it with ``durastate.testing.BackendConformance`` (``pip install
'durastate[testing]'``): subclass it and provide a ``backend`` fixture;
``examples/durastate-dirstore`` is a complete plugin that imports only from this module.
"""

from __future__ import annotations

from durastate.core.async_backend import AsyncBackend, SyncBackendAdapter, ThreadPoolAsyncBackend
from durastate.core.backend import Backend, RecentPayloads, read_in_threads, skip_unreadable
from durastate.core.compression import inflate
from durastate.core.lru import LRU
from durastate.core.push import Listeners
from durastate.core.records import (
    TERMINAL_STATUSES,
    Capabilities,
    Filterable,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.tokens import after_token, decode_after, decode_token, encode_token
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    InstanceExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidInstanceId,
    MissingDependency,
    OutcomeUnknown,
    PayloadTooLarge,
)
from durastate.registry import BACKEND_GROUP, register_backend

__all__ = [
    "BACKEND_GROUP",
    "LRU",
    "TERMINAL_STATUSES",
    "AsyncBackend",
    "Backend",
    "BackendUnavailable",
    "Capabilities",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptRecord",
    "DurastateError",
    "Filterable",
    "InstanceExists",
    "InstanceNotFound",
    "InstanceQuery",
    "InstanceRecord",
    "InvalidArgument",
    "InvalidContinuationToken",
    "InvalidInstanceId",
    "Listeners",
    "MissingDependency",
    "NewInstance",
    "OutcomeUnknown",
    "Payload",
    "PayloadTooLarge",
    "RecentPayloads",
    "RecordPage",
    "RuntimeStatus",
    "SyncBackendAdapter",
    "ThreadPoolAsyncBackend",
    "WriteResult",
    "after_token",
    "decode_after",
    "decode_token",
    "encode_token",
    "inflate",
    "read_in_threads",
    "register_backend",
    "skip_unreadable",
]
