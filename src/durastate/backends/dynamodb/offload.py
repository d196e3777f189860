"""Large payloads as S3 objects, as plans over the same lean transport as the table.

Each offloaded payload gets a new object key (``PREFIX/TABLE/sha256(id)[:32]/FIELD/<random>``),
so an upload never overwrites anything a record points at and may be retried freely; the
bucket is created on first use (and again if someone deleted it). Requests are path-style
(``/BUCKET/KEY``), signed with S3's SigV4 rules. Deleting replaced objects is best effort:
a failed cleanup leaves an orphan and a warning, never a failed write.

The S3 object requests of the rebuilt S3 backend (``backends/s3/objects.py``) were not on
main when this was written; once they are, these few requests can move onto them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote, urlsplit

from durastate.backends.dynamodb.layout import new_etag
from durastate.errors import BackendUnavailable, ConfigurationError, CorruptRecord
from durastate.transport.aws_sigv4 import AwsCredentials, sign_sigv4
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.plans import Exchange, Plan
from durastate.transport.policy import default_may_have_landed

__all__ = ["Offload"]

log = logging.getLogger(__name__)

_CODE: Final = re.compile(rb"<Code>([^<]{1,64})</Code>")
_OWNED: Final = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def s3_code(response: HttpResponse) -> str:
    """The ``<Code>`` of an S3 XML error ("" when there is none)."""
    found = _CODE.search(response.body)
    return found.group(1).decode("ascii", "replace") if found else ""


class Offload:
    """The offload bucket of one table: upload, download and delete objects as plans."""

    def __init__(
        self, endpoint: str, region: str, credentials: AwsCredentials, bucket: str, prefix: str
    ) -> None:
        try:  # userinfo in the endpoint is never sent nor shown
            parts = urlsplit(endpoint)
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            raise ConfigurationError("the S3 offload endpoint URL is malformed") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("the S3 offload endpoint must be an http:// or https:// URL")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._base = f"{parts.scheme}://{host}{port}"
        self._region = region
        self._credentials = credentials
        self.bucket = bucket
        self.prefix = prefix
        self._bucket_ready = False

    def _request(self, method: str, key: str = "", body: bytes = b"") -> HttpRequest:
        path = f"/{quote(self.bucket, safe='')}" + (f"/{quote(key, safe='/~')}" if key else "")
        request = HttpRequest.to(method, self._base, path, body=body)
        return sign_sigv4(request, self._credentials.frozen(), self._region, "s3", s3=True)

    def _exchange(
        self, request: HttpRequest, what: str, instance_id: str | None
    ) -> Plan[HttpResponse]:
        """One idempotent S3 request (unique keys: a retry after a lost answer is safe)."""
        try:
            response: HttpResponse = yield Exchange(request, default_may_have_landed)
        except BackendUnavailable as exc:
            subject = f" of instance {instance_id!r}" if instance_id is not None else ""
            raise BackendUnavailable(f"{what}{subject} failed: {exc}") from None
        return response

    def _refused(self, what: str, response: HttpResponse) -> ConfigurationError:
        """S3 refused a request (access, bucket, ...): name it by code, never by its text."""
        return ConfigurationError(
            f"{what}: S3 refused it for offload bucket {self.bucket!r}: "
            f"{s3_code(response) or 'error'} (HTTP {response.status})"
        )

    def _ensure_bucket(self) -> Plan[None]:
        if self._bucket_ready:
            return
        body = b""
        if self._region != "us-east-1":
            body = (
                b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b"<LocationConstraint>" + self._region.encode() + b"</LocationConstraint>"
                b"</CreateBucketConfiguration>"
            )
        response = yield from self._exchange(
            self._request("PUT", body=body), "create offload bucket", None
        )
        if response.status >= 300 and s3_code(response) not in _OWNED:
            raise ConfigurationError(
                f"cannot create offload bucket {self.bucket!r}: "
                f"{s3_code(response) or 'error'} (HTTP {response.status})"
            )
        self._bucket_ready = True

    def upload(self, instance_id: str, field: str, data: bytes) -> Plan[str]:
        """Upload under a new key; a bucket deleted since first use is created again."""
        digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:32]
        key = f"{self.prefix}{digest}/{field}/{new_etag()}"
        what = f"offload {field}"
        for attempt in range(2):
            yield from self._ensure_bucket()
            response = yield from self._exchange(self._request("PUT", key, data), what, instance_id)
            if response.status < 300:
                return key
            if s3_code(response) != "NoSuchBucket" or attempt:
                raise self._refused(what, response)
            self._bucket_ready = False
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, instance_id: str, field: str, key: str) -> Plan[bytes]:
        what = f"read offloaded {field}"
        response = yield from self._exchange(self._request("GET", key), what, instance_id)
        if response.status == 200:
            return response.body
        code = s3_code(response)
        if code == "NoSuchBucket":
            reason = f"offload bucket {self.bucket!r} (with its {field}) is gone"
            raise CorruptRecord(instance_id, reason)
        if code == "NoSuchKey" or response.status == 404:
            raise CorruptRecord(instance_id, f"offloaded {field} object is missing")
        raise self._refused(what, response)

    def delete(self, instance_id: str, keys: Sequence[str]) -> Plan[None]:
        """Best effort: a failed cleanup leaves an orphan, never fails the caller's write."""
        for key in keys:
            try:
                response = yield from self._exchange(
                    self._request("DELETE", key), "delete offloaded payload", instance_id
                )
                failed = response.status >= 300 and response.status != 404
            except BackendUnavailable:
                failed = True
            if failed:
                log.warning("could not delete offloaded object of instance %r", instance_id)
