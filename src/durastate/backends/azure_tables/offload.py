"""Claim-check storage for payloads too large for one table property, over the Blob REST API.

A payload goes gzip-compressed into its own blob with a unique name under the instance's
prefix (``{table}/{sha256(id)[:32]}/{field}-{uuid}.json.gz``, the layout written before the
lean transport), and the row keeps only the name. Unique names mean an upload never
overwrites a blob another row still references, so a failed or lost write can always
delete exactly what it uploaded. The container is made on first use, and again if it was
deleted since.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import uuid
from collections.abc import Generator, Iterable
from typing import Any, Final
from urllib.parse import quote

from durastate.backends.azure_tables.budget import Budget
from durastate.backends.azure_tables.requests import BLOB_VERSION, Auth, Endpoint
from durastate.backends.azure_tables.responses import error_code
from durastate.core.compression import inflate
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    DurastateError,
    OutcomeUnknown,
)
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.plans import Step
from durastate.transport.policy import default_may_have_landed

BLOB_SUFFIX: Final = ".json.gz"
DEFAULT_CONTAINER: Final = "durastate-payloads"
_NAME = re.compile(rb"<Name>([^<]*)</Name>")
_MARKER = re.compile(rb"<NextMarker>([^<]+)</NextMarker>")

Plan = Generator[Step, Any, Any]


def instance_prefix(table: str, instance_id: str) -> str:
    """Every blob of one instance lives under this prefix, so purge can sweep them all."""
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{table}/{digest}/"


def _xml_text(raw: bytes) -> str:
    text = raw.decode("utf-8")
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'")):
        text = text.replace(entity, char)
    return text.replace("&amp;", "&")


class BlobOffload:
    """The blob requests of one container, and the small plans that use them."""

    def __init__(self, endpoint: Endpoint, auth: Auth, container: str, table: str) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self.container_name = container
        self.table = table
        self._container_path = "/" + container

    def __repr__(self) -> str:
        return f"BlobOffload({self.endpoint!r}, container={self.container_name!r})"

    # -- requests ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        query: Iterable[tuple[str, str]] = (),
    ) -> HttpRequest:
        all_headers = {"x-ms-version": BLOB_VERSION, **(headers or {})}
        return self.auth.apply(self.endpoint.request(method, path, all_headers, body, query))

    def _blob_path(self, name: str) -> str:
        return f"{self._container_path}/{quote(name, safe='/')}"

    def put_request(self, name: str, body: bytes) -> HttpRequest:
        """Create-only (``If-None-Match: *``): a resend of a PUT that landed meets 409."""
        headers = {
            "x-ms-blob-type": "BlockBlob",
            "content-type": "application/gzip",
            "if-none-match": "*",
        }
        return self._request("PUT", self._blob_path(name), headers, body)

    def get_request(self, name: str) -> HttpRequest:
        return self._request("GET", self._blob_path(name))

    def delete_request(self, name: str) -> HttpRequest:
        return self._request("DELETE", self._blob_path(name))

    def create_container_request(self) -> HttpRequest:
        return self._request("PUT", self._container_path, query=(("restype", "container"),))

    def list_request(self, prefix: str, marker: str | None) -> HttpRequest:
        query = [("restype", "container"), ("comp", "list"), ("prefix", prefix)]
        if marker:
            query.append(("marker", marker))
        return self._request("GET", self._container_path, query=query)

    def new_name(self, instance_id: str, field: str) -> str:
        return f"{instance_prefix(self.table, instance_id)}{field}-{uuid.uuid4().hex}{BLOB_SUFFIX}"

    # -- plans ------------------------------------------------------------------------

    def upload(self, budget: Budget, instance_id: str, field: str, data: bytes) -> Plan:
        """Store ``data`` gzip-compressed under a fresh name; return the name.

        A PUT whose answer was lost is sent again (the policy does it: the name is ours
        alone); if the lost one landed, the resend meets 409, and that blob is ours, whole.
        """
        name = self.new_name(instance_id, field)
        body = gzip.compress(data, compresslevel=6, mtime=0)
        for _ in range(3):
            request = self.put_request(name, body)
            try:
                response: HttpResponse = yield budget.exchange(request, default_may_have_landed)
            except OutcomeUnknown as exc:
                # only the blob's fate is unknown (a purge sweeps it): the row is untouched
                raise BackendUnavailable(
                    f"azure-tables upload of the {field} of instance {instance_id!r} failed: "
                    f"{exc}; nothing refers to the blob"
                ) from None
            if response.status in (201, 409):
                return name
            if response.status == 404 and error_code(response) == "ContainerNotFound":
                yield from self.create_container(budget)
                continue
            raise self._failed(response, f"upload of {field}", instance_id)
        raise BackendUnavailable(
            f"azure-tables: the offload container {self.container_name!r} vanished again "
            f"while uploading the {field} of {instance_id!r}"
        )

    def create_container(self, budget: Budget) -> Plan:
        response: HttpResponse = yield budget.exchange(
            self.create_container_request(), default_may_have_landed
        )
        if response.status not in (201, 409):
            raise self._failed(response, "creation of the offload container", None)

    def download(self, budget: Budget, name: str, instance_id: str, what: str) -> Plan:
        """The original bytes, or ``None`` when the blob is gone (replaced meanwhile).

        A missing container is a ``ConfigurationError`` naming it; a blob that does not
        inflate (truncated, not gzip, a decompression bomb) is ``CorruptRecord``.
        """
        response: HttpResponse = yield budget.exchange(self.get_request(name))
        if response.status == 404:
            if error_code(response) == "ContainerNotFound":
                raise ConfigurationError(
                    f"azure-tables: the offload container {self.container_name!r} does not "
                    f"exist (deleted?), so the {what} of instance {instance_id!r} is lost"
                )
            return None
        if response.status != 200:
            raise self._failed(response, f"download of the {what}", instance_id)
        return inflate(response.body, container="gzip", instance_id=instance_id, what=what)

    def delete(self, budget: Budget, names: Iterable[str]) -> Plan:
        """Best effort, one request each: a blob already gone is fine, and a failure only
        leaves garbage (a purge sweeps the instance's prefix)."""
        for name in names:
            with contextlib.suppress(DurastateError):
                yield budget.exchange(self.delete_request(name))

    def sweep(self, budget: Budget, instance_id: str, keep: Iterable[str] = ()) -> Plan:
        """Delete every blob under the instance's prefix except ``keep`` (purge, restart)."""
        try:
            names = yield from self.list_names(budget, instance_prefix(self.table, instance_id))
        except DurastateError:
            return
        keep_set = set(keep)
        yield from self.delete(budget, [n for n in names if n not in keep_set])

    def list_names(self, budget: Budget, prefix: str) -> Plan:
        """Blob names under ``prefix`` (every page)."""
        names: list[str] = []
        marker: str | None = None
        while True:
            response: HttpResponse = yield budget.exchange(self.list_request(prefix, marker))
            if response.status == 404:
                return names
            if response.status != 200:
                raise self._failed(response, "listing of offloaded payloads", None)
            names.extend(_xml_text(raw) for raw in _NAME.findall(response.body))
            found = _MARKER.search(response.body)
            if found is None:
                return names
            marker = _xml_text(found.group(1))

    def _failed(self, response: HttpResponse, what: str, instance_id: str | None) -> DurastateError:
        whose = f" of instance {instance_id!r}" if instance_id is not None else ""
        detail = f"{response.status} {error_code(response)}".rstrip()
        where = f"azure-tables {what}{whose} in container {self.container_name!r}"
        if response.status in (401, 403):
            return ConfigurationError(f"{where}: access denied ({detail})")
        if 400 <= response.status < 500 and response.status not in (408, 429):
            return DurastateError(f"{where} was rejected: {detail}")
        return BackendUnavailable(f"{where} failed: {detail}")
