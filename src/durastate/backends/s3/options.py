"""The options of an S3 store, one typed model, and where its keys and endpoint come from.

``s3://BUCKET/PREFIX?region=...&endpoint_url=...`` plus keyword options (keywords win),
validated once by `S3Options` (pydantic: ``create_bucket=false`` from a URL is a bool like
any other). Secrets are ``SecretStr``: never in a repr or an error. The keys themselves
and the transport's bounds come from `durastate.backends.aws_common`, shared with the other
lean AWS backend.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from pydantic import ValidationError

from durastate.backends._aws import AwsOptions
from durastate.backends.aws_common import transport_options
from durastate.errors import ConfigurationError
from durastate.transport import TransportOptions

__all__ = ["S3Options", "S3Url", "check_bucket", "parse_url"]

_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")  # what botocore accepts (S3 is stricter)


class S3Options(AwsOptions):
    """`AwsOptions` (region, endpoint, keys, profile, timeouts, attempts, pool) plus
    ``create_bucket``. ``retry_mode`` and ``parameter_validation`` only concern the boto3
    client kept for bucket administration; requests go through the lean transport."""

    create_bucket: bool = True

    @classmethod
    def parse(cls, options: dict[str, Any]) -> S3Options:
        """Validate keyword/URL options; errors name the fields, never their values."""
        merged = dict(options)
        if "region_name" in merged:  # boto3's spelling, accepted as an alias
            merged.setdefault("region", merged.pop("region_name"))
        unknown = sorted(set(merged) - set(cls.model_fields))
        if unknown:
            raise ConfigurationError(f"unknown s3 option(s): {', '.join(unknown)}")
        try:
            return cls(**merged)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise ConfigurationError(f"invalid s3 option(s): {fields}") from None

    def transport(self) -> TransportOptions:
        """The driver's bounds (see `aws_common.transport_options`)."""
        return transport_options(self)

    def signing_region(self) -> str:
        region = self.resolved_region()
        if not region:
            raise ConfigurationError("no AWS region for s3: pass region=..., or set AWS_REGION")
        return region

    def endpoint(self) -> str | None:
        """The endpoint URL, checked (``None``: AWS's own)."""
        url = self.endpoint_url
        if url is None:
            return None
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "invalid AWS client settings for s3 (endpoint_url must be an http:// or "
                "https:// URL with a host)"
            )
        if parts.username or parts.password:  # the SDK took them; the lean path drops them
            return urllib.parse.urlunsplit(
                (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")
            )
        return url


class S3Url:
    """A parsed ``s3://BUCKET/PREFIX`` URL with its options."""

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.options = options


def parse_url(url: str, options: dict[str, Any]) -> S3Url:
    """``s3://BUCKET/PREFIX?query``; keyword options win over the query. The bucket name
    is checked but never echoed (it may be a pasted secret)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigurationError("expected a URL of the form s3://BUCKET/PREFIX")
    if "@" in parts.netloc:
        raise ConfigurationError("s3:// URLs take no credentials: pass them as options")
    merged: dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query))
    merged.update(options)
    return S3Url(
        check_bucket(parts.netloc), urllib.parse.unquote(parts.path), S3Options.parse(merged)
    )


def check_bucket(bucket: str) -> str:
    if not _BUCKET_NAME.match(bucket):  # not echoed: it may be a pasted secret
        raise ConfigurationError(
            "s3:// needs a bucket name of 1 to 255 of a-z A-Z 0-9 . - _ "
            f"(got {len(bucket)} characters): s3://BUCKET/PREFIX"
        )
    return bucket
