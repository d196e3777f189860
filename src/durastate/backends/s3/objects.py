"""Sans-I/O S3 object requests and answers: PUT (with ``If-Match``/``If-None-Match: *``),
GET (whole or first bytes), HEAD, DELETE and ListObjectsV2 pages, and their error mapping.

Plain data in, plain data out: `S3Objects` builds signed `HttpRequest`s for one bucket, and
the functions below turn `HttpResponse`s into results or typed errors. Nothing here sends,
sleeps or awaits; a driver (`durastate.transport`) moves the bytes, usually from a plan
(`durastate.transport.plans`). Used by the S3 backend and by DynamoDB's S3 offload.

The small API::

    objects = S3Objects.for_endpoint(signer, bucket, endpoint_url)   # path style on emulators
    response = driver.send(objects.put(key, body, metadata={"w": token}, if_match=etag))
    etag = written_etag(response, "put_object")        # PreconditionFailed on 412/409
    found = stored_object(driver.send(objects.get(key)), "get_object")   # None when absent
    meta = head_metadata(driver.send(objects.head(key)), "head_object")  # None when absent
    check_deleted(driver.send(objects.delete(key)), "delete_object")
    page = listed_keys(driver.send(objects.list_page(prefix, start_after=k)), "list_objects_v2")

Errors: 412 (and 409 ``ConditionalRequestConflict``) raise `PreconditionFailed`; a missing
key is `None` for reads and `ObjectMissing` for writes; ``AccessDenied``, bad keys and
``NoSuchBucket`` raise ``ConfigurationError``; 5xx and throttling ``BackendUnavailable``;
anything else a ``DurastateError`` naming the operation, S3's error code and the HTTP status,
never S3's message (it may quote the request).
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError
from durastate.transport.aws_sigv4 import SigV4Signer
from durastate.transport.messages import HttpRequest, HttpResponse

__all__ = [
    "KeyPage",
    "ObjectMissing",
    "PreconditionFailed",
    "S3Objects",
    "StoredObject",
    "check_deleted",
    "error_for",
    "head_metadata",
    "listed_keys",
    "stored_object",
    "written_etag",
]

META = "x-amz-meta-"
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_TRUNCATED = re.compile(rb"<IsTruncated>\s*true\s*</IsTruncated>", re.IGNORECASE)
_URL_ENCODED = re.compile(rb"<EncodingType>\s*url\s*</EncodingType>")
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_CONFIG_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
)


class PreconditionFailed(Exception):
    """S3 answered 412 (or 409 ``ConditionalRequestConflict``) to a conditional request."""


class ObjectMissing(Exception):
    """S3 answered 404 (no such key) to a request that needs the object."""


@dataclass(frozen=True, slots=True)
class S3Objects:
    """Request builders for the objects of one bucket.

    ``base_url`` is the endpoint; with ``path_style`` the bucket is the first path segment
    (emulators, custom endpoints), otherwise the endpoint already names the bucket
    (``https://BUCKET.s3.REGION.amazonaws.com``). ``clock`` pins the signing time (tests).
    """

    signer: SigV4Signer
    bucket: str
    base_url: str
    path_style: bool = True
    clock: Callable[[], datetime] | None = None

    @classmethod
    def for_endpoint(cls, signer: SigV4Signer, bucket: str, endpoint_url: str | None) -> S3Objects:
        """Path style on a given endpoint (moto_server, MinIO: as botocore does for IP
        hosts); AWS's own endpoint virtual-hosted when the bucket name allows it."""
        if endpoint_url:
            return cls(signer, bucket, endpoint_url.rstrip("/"), path_style=True)
        region = signer.region
        if re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket):
            return cls(signer, bucket, f"https://{bucket}.s3.{region}.amazonaws.com", False)
        return cls(signer, bucket, f"https://s3.{region}.amazonaws.com", True)

    def path(self, key: str = "") -> str:
        """The percent-encoded path of ``key`` (``""``: the bucket), as botocore encodes it."""
        encoded = urllib.parse.quote(key, safe="/~")
        if self.path_style:
            return f"/{self.bucket}/{encoded}" if key else f"/{self.bucket}"
        return f"/{encoded}"

    def _signed(
        self,
        method: str,
        key: str,
        *,
        query: tuple[tuple[str, str], ...] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> HttpRequest:
        request = HttpRequest.to(
            method, self.base_url, self.path(key), query=query, headers=headers, body=body
        )
        return self.signer.sign(request, self.clock() if self.clock else None)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> HttpRequest:
        """PutObject; ``if_match`` is an ETag without quotes, ``if_none_match`` is ``*``."""
        headers = {META + name: value for name, value in (metadata or {}).items()}
        if if_match is not None:
            headers["if-match"] = f'"{if_match}"'
        if if_none_match:
            headers["if-none-match"] = "*"
        return self._signed("PUT", key, headers=headers, body=body)

    def get(self, key: str, *, first_bytes: int | None = None) -> HttpRequest:
        """GetObject, whole or only its first ``first_bytes`` bytes (a ranged GET)."""
        headers = {"range": f"bytes=0-{first_bytes - 1}"} if first_bytes else None
        return self._signed("GET", key, headers=headers)

    def head(self, key: str, *, if_match: str | None = None) -> HttpRequest:
        """HeadObject (412 when ``if_match`` is not the object's ETag)."""
        headers = {"if-match": f'"{if_match}"'} if if_match is not None else None
        return self._signed("HEAD", key, headers=headers)

    def delete(self, key: str) -> HttpRequest:
        return self._signed("DELETE", key)

    def list_page(
        self, prefix: str, *, start_after: str | None = None, max_keys: int = 1000
    ) -> HttpRequest:
        """One ListObjectsV2 page of keys under ``prefix`` after ``start_after`` (keys come
        back URL-encoded, so any key survives the XML)."""
        query = [
            ("encoding-type", "url"),
            ("list-type", "2"),
            ("max-keys", str(max_keys)),
            ("prefix", prefix),
        ]
        if start_after is not None:
            query.append(("start-after", start_after))
        return self._signed("GET", "", query=tuple(query))


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object read: its bytes, ETag (unquoted), user metadata, and whether ``body`` is
    the whole object (a ranged GET of a longer object is not)."""

    body: bytes
    etag: str
    metadata: Mapping[str, str]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One listing page: the keys in order, and whether more follow."""

    keys: list[str]
    truncated: bool


def error_code(response: HttpResponse) -> str:
    """S3's error code from the XML body (HEAD answers have none: the status then)."""
    found = _CODE.search(response.body[:2048]) if response.body else None
    return found.group(1).decode("ascii", "replace") if found else str(response.status)


def error_for(
    response: HttpResponse, operation: str, bucket: str, instance_id: str | None = None
) -> Exception:
    """The exception for an answer that is not a success (see the module docstring)."""
    code = error_code(response)
    status = response.status
    if status == 412 or code in _PRECONDITION_CODES:
        return PreconditionFailed()
    if code in _CONFIG_CODES or status == 403:
        return ConfigurationError(f"s3 {operation} on bucket {bucket!r} was refused: {code}")
    if status == 404:
        return ObjectMissing()
    subject = f" of instance {instance_id!r}" if instance_id is not None else ""
    if status >= 500 or status == 429 or code in _UNAVAILABLE_CODES:
        return BackendUnavailable(
            f"{operation}{subject} failed: AWS unavailable: {code} (HTTP {status})"
        )
    return DurastateError(f"{operation}{subject} was refused by S3: {code} (HTTP {status})")


def _raise(
    response: HttpResponse, operation: str, bucket: str, instance_id: str | None
) -> NoReturn:
    raise error_for(response, operation, bucket, instance_id)


def metadata_of(response: HttpResponse) -> dict[str, str]:
    """The user metadata (``x-amz-meta-*``) of an answer, by name without the prefix."""
    cut = len(META)
    return {name[cut:]: value for name, value in response.headers.items() if name.startswith(META)}


def _etag(response: HttpResponse) -> str:
    return (response.header("etag") or "").strip('"')


def written_etag(
    response: HttpResponse, operation: str, bucket: str = "", instance_id: str | None = None
) -> str:
    """The new ETag of a PUT; `PreconditionFailed`, `ObjectMissing` or a typed error."""
    if response.status == 200:
        return _etag(response)
    _raise(response, operation, bucket, instance_id)


def stored_object(
    response: HttpResponse, operation: str, bucket: str = "", instance_id: str | None = None
) -> StoredObject | None:
    """The object a GET returned (``complete=False`` when a ranged GET got only part of
    it); ``None`` when the key does not exist."""
    status = response.status
    if status == 200:
        return StoredObject(response.body, _etag(response), metadata_of(response))
    if status == 206:
        total = (response.header("content-range") or "").rpartition("/")[2]
        complete = not total or total == "*" or int(total) == len(response.body)
        return StoredObject(response.body, _etag(response), metadata_of(response), complete)
    if status == 404 and error_code(response) in ("NoSuchKey", "404"):
        return None
    _raise(response, operation, bucket, instance_id)


def head_metadata(
    response: HttpResponse, operation: str, bucket: str = "", instance_id: str | None = None
) -> dict[str, str] | None:
    """The user metadata a HEAD returned; ``None`` when the key does not exist."""
    if response.status == 200:
        return metadata_of(response)
    if response.status == 404:
        return None
    _raise(response, operation, bucket, instance_id)


def check_deleted(
    response: HttpResponse, operation: str, bucket: str = "", instance_id: str | None = None
) -> None:
    """A DELETE succeeded (S3 answers 204 whether or not the key existed)."""
    if response.status not in (200, 204, 404) or (
        response.status == 404 and error_code(response) not in ("NoSuchKey", "404")
    ):
        _raise(response, operation, bucket, instance_id)


def listed_keys(response: HttpResponse, operation: str, bucket: str = "") -> KeyPage:
    """The keys of a ListObjectsV2 page, decoded, in S3's order. The answer is read with
    three patterns, not an XML parser: its shape is fixed and the keys come URL-encoded."""
    if response.status != 200:
        _raise(response, operation, bucket, None)
    body = response.body
    if not body.lstrip().startswith(b"<") or b"ListBucketResult" not in body[:512]:
        raise BackendUnavailable(f"{operation}: S3 answered with something other than a listing")
    raw = [match.decode("utf-8") for match in _KEY.findall(body)]
    truncated = _TRUNCATED.search(body) is not None
    if _URL_ENCODED.search(body) is not None:
        keys = [urllib.parse.unquote_plus(key) for key in raw]
    else:
        keys = [html.unescape(key) for key in raw]
    return KeyPage(keys, truncated)
