"""Bucket administration: create the bucket on first use, through boto3 (rare, not hot).

The hot path never calls the SDK; this one HEAD (and maybe one CreateBucket) per backend
does, once, so botocore's own endpoint and region rules decide how a bucket is created.
The boto3 client is made only when needed, and is also what tests use as an oracle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from durastate.backends._aws import AwsOptions, aws_client, error_code, guard, refused
from durastate.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_MISSING = frozenset({"404", "NoSuchBucket", "NotFound"})
_REFUSED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


class BucketAdmin:
    """Makes sure the bucket exists before the first request (``create_bucket``)."""

    def __init__(self, bucket: str, options: AwsOptions, *, create: bool) -> None:
        self.bucket = bucket
        self._options = options
        self._create = create
        self._client: S3Client | None = None
        self._lock = threading.RLock()  # ensure() takes it, then the client
        self.ready = not create

    @property
    def client(self) -> S3Client:
        """A boto3 S3 client with the backend's options (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws_client("s3", self._options)
        return self._client

    def ensure(self) -> None:
        """HEAD the bucket; create it when missing. Once per backend."""
        if self.ready:
            return
        with self._lock:
            if not self.ready:
                self._ensure()
                self.ready = True

    def _ensure(self) -> None:
        client = self.client
        try:
            with guard("head_bucket"):
                client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            self._check(exc, "head_bucket", _MISSING)
        region = self._options.resolved_region()
        config: dict[str, Any] = {}
        if region and region != "us-east-1":
            config["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with guard("create_bucket"):
                client.create_bucket(Bucket=self.bucket, **config)
        except botocore.exceptions.ClientError as exc:
            self._check(exc, "create_bucket", {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})

    def _check(
        self,
        exc: botocore.exceptions.ClientError,
        operation: str,
        expected: frozenset[str] | set[str],
    ) -> None:
        code = error_code(exc)
        if code in expected:
            return
        if code in _REFUSED:
            raise ConfigurationError(
                f"s3 {operation} on bucket {self.bucket!r} was refused: {code}"
            ) from None
        raise refused("S3", operation, None, exc) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
