"""Large payloads as S3 objects, as plans over the same lean transport as the table.

Each offloaded payload gets a new object key (``PREFIX/TABLE/sha256(id)[:32]/FIELD/<random>``),
so an upload never overwrites anything a record points at and may be retried freely; the
bucket is created on first use (and again if someone deleted it). The requests (path-style
on a given endpoint, virtual-hosted on AWS's own) are built by the S3 backend's sans-I/O
object requests (`durastate.backends.s3.objects`). Deleting replaced objects is best effort: a
failed cleanup leaves an orphan and a warning, never a failed write.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from durastate.backends.dynamodb.layout import new_etag
from durastate.backends.s3.objects import S3Objects, error_code
from durastate.errors import BackendUnavailable, ConfigurationError, CorruptRecord
from durastate.transport.aws_sigv4 import AwsCredentials, SigV4Signer
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.plans import Exchange, Plan
from durastate.transport.policy import default_may_have_landed

__all__ = ["Offload"]

log = logging.getLogger(__name__)

_OWNED: Final = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def _clean_endpoint(endpoint: str | None) -> str | None:
    """Scheme, host and port of the endpoint (its userinfo is never sent nor shown)."""
    if endpoint is None:
        return None
    try:
        parts = urlsplit(endpoint)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        raise ConfigurationError("the S3 offload endpoint URL is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("the S3 offload endpoint must be an http:// or https:// URL")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Offload:
    """The offload bucket of one table: upload, download and delete objects as plans.

    ``endpoint`` ``None`` is AWS's own S3 endpoint of ``region``."""

    def __init__(
        self,
        endpoint: str | None,
        region: str,
        credentials: AwsCredentials,
        bucket: str,
        prefix: str,
    ) -> None:
        signer = SigV4Signer(credentials, region, "s3", s3=True)
        self._objects = S3Objects.for_endpoint(signer, bucket, _clean_endpoint(endpoint))
        self._region = region
        self.bucket = bucket
        self.prefix = prefix
        self._bucket_ready = False

    def _create_bucket_request(self) -> HttpRequest:
        body = b""
        if self._region != "us-east-1":
            body = (
                b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                b"<LocationConstraint>" + self._region.encode() + b"</LocationConstraint>"
                b"</CreateBucketConfiguration>"
            )
        objects = self._objects
        request = HttpRequest.to("PUT", objects.base_url, objects.path(""), body=body)
        return objects.signer.sign(request)

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
            f"{error_code(response)} (HTTP {response.status})"
        )

    def _ensure_bucket(self) -> Plan[None]:
        if self._bucket_ready:
            return
        response = yield from self._exchange(
            self._create_bucket_request(), "create offload bucket", None
        )
        if response.status >= 300 and error_code(response) not in _OWNED:
            raise ConfigurationError(
                f"cannot create offload bucket {self.bucket!r}: "
                f"{error_code(response)} (HTTP {response.status})"
            )
        self._bucket_ready = True

    def upload(self, instance_id: str, field: str, data: bytes) -> Plan[str]:
        """Upload under a new key; a bucket deleted since first use is created again."""
        digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:32]
        key = f"{self.prefix}{digest}/{field}/{new_etag()}"
        what = f"offload {field}"
        for attempt in range(2):
            yield from self._ensure_bucket()
            request = self._objects.put(key, data)
            response = yield from self._exchange(request, what, instance_id)
            if response.status < 300:
                return key
            if error_code(response) != "NoSuchBucket" or attempt:
                raise self._refused(what, response)
            self._bucket_ready = False
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, instance_id: str, field: str, key: str) -> Plan[bytes]:
        what = f"read offloaded {field}"
        response = yield from self._exchange(self._objects.get(key), what, instance_id)
        if response.status == 200:
            return response.body
        code = error_code(response)
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
                    self._objects.delete(key), "delete offloaded payload", instance_id
                )
                failed = response.status >= 300 and response.status != 404
            except BackendUnavailable:
                failed = True
            if failed:
                log.warning("could not delete offloaded object of instance %r", instance_id)
