"""Claim-check storage for Azure payloads too large for one table property.

A payload goes gzip-compressed into its own blob with a unique name under the instance's
prefix, and the table row keeps only the name. Unique names mean an upload never
overwrites a blob another row still references, so a failed or lost write can always
delete exactly what it uploaded.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

BLOB_SUFFIX = ".json.gz"


def instance_prefix(table: str, instance_id: str) -> str:
    """Every blob of one instance lives under this prefix, so purge can sweep them all."""
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{table}/{digest}/"


class BlobOffload:
    """Uploads, downloads and deletes offloaded payloads; the container is made on first use."""

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

    def _ensure_container(self) -> ContainerClient:
        container = self._client()
        if not self._container_ready:
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
            self._container_ready = True
        return container

    def new_name(self, instance_id: str, field: str) -> str:
        return f"{instance_prefix(self.table, instance_id)}{field}-{uuid.uuid4().hex}{BLOB_SUFFIX}"

    def upload(self, instance_id: str, field: str, data: bytes) -> str:
        """Store ``data`` gzip-compressed under a fresh name and return the name.

        azure-core retries a PUT whose answer was lost; if the lost one had landed, the
        retry meets ``BlobAlreadyExists``. Nobody else uses this random name, so that blob
        is ours, committed whole: success.
        """
        name = self.new_name(instance_id, field)
        body = gzip.compress(data, compresslevel=6, mtime=0)
        container = self._ensure_container()
        with contextlib.suppress(ResourceExistsError):
            container.upload_blob(
                name,
                body,
                overwrite=False,
                content_settings=ContentSettings(content_type="application/gzip"),
            )
        return name

    def download(self, name: str) -> bytes | None:
        """The original bytes, or ``None`` when the blob is gone."""
        try:
            body = self._client().download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        return gzip.decompress(body)

    def delete(self, names: Iterable[str]) -> None:
        """Best effort: a blob already gone is fine, and a failure only leaves garbage."""
        container = self._client()
        for name in names:
            with contextlib.suppress(AzureError):
                container.delete_blob(name)

    def sweep(self, instance_id: str, keep: Iterable[str] = ()) -> None:
        """Delete every blob under the instance's prefix except ``keep`` (purge, restart)."""
        keep_set = set(keep)
        container = self._client()
        try:
            names = [
                blob.name
                for blob in container.list_blobs(
                    name_starts_with=instance_prefix(self.table, instance_id)
                )
                if blob.name not in keep_set
            ]
        except ResourceNotFoundError:
            return
        self.delete(names)

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
