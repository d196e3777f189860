"""Claim-check storage for Azure payloads too large for one table property.

A payload goes gzip-compressed into its own blob with a unique name under the instance's
prefix, and the table row keeps only the name. Unique names mean an upload never
overwrites a blob another row still references, so a failed or lost write can always
delete exactly what it uploaded.

Every request runs under the calling operation's `Budget`: the blob client's own retries
wait 15 s and more between tries, far past any operation timeout, so each request here is
one attempt whose timeouts end by the operation's deadline, and the budget decides whether
to try again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from durastate.core.compression import inflate
from durastate.errors import ConfigurationError, DurastateError

BLOB_SUFFIX = ".json.gz"
_T = TypeVar("_T")


class Budget(Protocol):
    """The time and retries one operation may still spend (the backend's ``_Retry``)."""

    def run(self, request: Callable[..., _T]) -> _T:
        """Call ``request(**options)`` until it succeeds, retrying transient failures."""
        ...

    def options(self) -> dict[str, Any]:
        """Options for one single attempt that ends by the deadline."""
        ...


def instance_prefix(table: str, instance_id: str) -> str:
    """Every blob of one instance lives under this prefix, so purge can sweep them all."""
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{table}/{digest}/"


def _container_missing(exc: ResourceNotFoundError) -> bool:
    return str(getattr(exc, "error_code", "") or "") == "ContainerNotFound"


class BlobOffload:
    """Uploads, downloads and deletes offloaded payloads; the container is made on first use
    (and again if it was deleted since)."""

    def __init__(
        self, factory: Callable[[], BlobServiceClient], container: str, table: str
    ) -> None:
        self._factory = factory
        self.container_name = container
        self.table = table
        self._container: ContainerClient | None = None
        self._container_ready = False
        self._lock = threading.Lock()

    def _client(self) -> ContainerClient:
        if self._container is None:
            with self._lock:
                if self._container is None:
                    service = self._factory()
                    self._container = service.get_container_client(self.container_name)
        return self._container

    def _create_container(self, **options: Any) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._client().create_container(**options)
        self._container_ready = True

    def new_name(self, instance_id: str, field: str) -> str:
        return f"{instance_prefix(self.table, instance_id)}{field}-{uuid.uuid4().hex}{BLOB_SUFFIX}"

    def upload(self, instance_id: str, field: str, data: bytes, budget: Budget) -> str:
        """Store ``data`` gzip-compressed under a fresh name and return the name.

        A retry of a PUT whose answer was lost meets ``BlobAlreadyExists`` if the lost one
        landed. Nobody else uses this random name, so that blob is ours, committed whole.
        """
        name = self.new_name(instance_id, field)
        body = gzip.compress(data, compresslevel=6, mtime=0)
        settings = ContentSettings(content_type="application/gzip")

        def put(**options: Any) -> None:
            if not self._container_ready:
                self._create_container(**options)
            container = self._client()
            try:
                container.upload_blob(
                    name, body, overwrite=False, content_settings=settings, **options
                )
            except ResourceExistsError:
                pass
            except ResourceNotFoundError as exc:
                if not _container_missing(exc):
                    raise
                self._create_container(**options)  # deleted since we made it: make it again
                with contextlib.suppress(ResourceExistsError):
                    container.upload_blob(
                        name, body, overwrite=False, content_settings=settings, **options
                    )

        budget.run(put)
        return name

    def download(self, name: str, instance_id: str, what: str, budget: Budget) -> bytes | None:
        """The original bytes, or ``None`` when the blob is gone (replaced meanwhile).

        A missing container is a ``ConfigurationError`` naming it; a blob that does not
        inflate (truncated, not gzip, a decompression bomb) is ``CorruptRecord``.
        """
        client = self._client()
        try:
            body = budget.run(lambda **options: client.download_blob(name, **options).readall())
        except ResourceNotFoundError as exc:
            if _container_missing(exc):
                raise ConfigurationError(
                    f"azure-tables: the offload container {self.container_name!r} does not "
                    f"exist (deleted?), so the {what} of instance {instance_id!r} is lost"
                ) from None
            return None
        return inflate(body, container="gzip", instance_id=instance_id, what=what)

    def delete(self, names: Iterable[str], budget: Budget) -> None:
        """Best effort, one attempt each: a blob already gone is fine, and a failure only
        leaves garbage (a purge sweeps the instance's prefix)."""
        container = self._client()
        for name in names:
            with contextlib.suppress(AzureError, DurastateError):
                container.delete_blob(name, **budget.options())

    def sweep(self, instance_id: str, budget: Budget, keep: Iterable[str] = ()) -> None:
        """Delete every blob under the instance's prefix except ``keep`` (purge, restart)."""
        keep_set = set(keep)
        prefix = instance_prefix(self.table, instance_id)
        try:
            listed = self._client().list_blobs(name_starts_with=prefix, **budget.options())
            names = [blob.name for blob in listed if blob.name not in keep_set]
        except (AzureError, DurastateError):
            return
        self.delete(names, budget)

    def list_names(self, prefix: str = "") -> list[str]:
        """Blob names under ``prefix`` in this table's area (used by tests and tools)."""
        try:
            return [
                blob.name
                for blob in self._client().list_blobs(name_starts_with=f"{self.table}/{prefix}")
            ]
        except ResourceNotFoundError:
            return []

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
