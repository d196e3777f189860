"""The backend's options: one typed model for the table, the shared `AwsOptions` for the
connection, and how they resolve into an endpoint, a region, credentials and transport
settings.

Every option is parsed by pydantic, whether it came from the URL's query string (text)
or as a keyword (typed): ``create_table=false``, ``=0`` and ``=False`` mean the same.
Secrets are ``SecretStr`` (in `AwsOptions`) and never appear in a repr or an error.
Credentials and the transport's bounds come from `durastate.backends.aws_common` (shared
with S3): the options' keys when given, otherwise botocore's own chain (environment, shared
files, SSO, container, instance metadata; refreshable ones rotate), looked up at the first
request.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import botocore.exceptions
import botocore.session
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from durastate.backends._aws import AwsOptions
from durastate.backends.aws_common import credentials_of, transport_options
from durastate.backends.dynamodb.layout import INLINE_LIMIT
from durastate.errors import ConfigurationError

__all__ = ["Connection", "DynamoDBOptions", "parse_url"]

_TABLE_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")


class DynamoDBOptions(BaseModel):
    """Backend options besides the AWS ones (``AwsOptions``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    create_table: bool = True
    index_name: str = "by_status_created"
    offload_bucket: str | None = None
    offload_endpoint_url: str | None = Field(default=None, repr=False)  # default: DynamoDB's
    offload_prefix: str = "durastate/"
    offload_threshold: int = Field(default=100_000, ge=1, le=INLINE_LIMIT)
    ttl_attribute: str | None = None
    ttl_seconds: int | None = Field(default=None, gt=0)
    table_wait_seconds: float = Field(default=60.0, gt=0)


def parse_url(scheme: str, url: str, options: dict[str, Any]) -> tuple[DynamoDBOptions, AwsOptions]:
    """``dynamodb://TABLE?region=...&endpoint_url=...``; keyword options win over the URL."""
    parts = urlsplit(url)
    if parts.scheme != scheme or not parts.netloc:
        raise ConfigurationError("expected a URL of the form dynamodb://TABLE")
    if "@" in parts.netloc:  # never echo it: it is likely KEY:SECRET
        raise ConfigurationError(
            "dynamodb:// URLs take no credentials: pass aws_access_key_id= and "
            "aws_secret_access_key= as options, or use the AWS environment"
        )
    merged: dict[str, Any] = {"table": parts.netloc, **dict(parse_qsl(parts.query))}
    merged.update(options)
    aws, rest = AwsOptions.pick(merged)
    try:
        return DynamoDBOptions(**rest), aws
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        raise ConfigurationError(f"invalid DynamoDB option(s): {fields}") from None


def check_table_name(table: str) -> None:
    if not _TABLE_NAME.match(table):  # not echoed: it may be a pasted secret
        raise ConfigurationError(
            "invalid DynamoDB table name: 3 to 255 of A-Z a-z 0-9 _ . - "
            f"(got {len(table)} characters)"
        )


class Connection:
    """Where requests go and how they are signed, resolved once when the backend opens."""

    __slots__ = ("credentials", "endpoint", "offload_endpoint", "region", "transport")

    def __init__(self, options: DynamoDBOptions, aws: AwsOptions) -> None:
        region = aws.resolved_region() or _profile_region(aws.profile_name)
        if not region:
            raise ConfigurationError(
                "no AWS region for dynamodb: pass region=..., or set AWS_REGION"
            )
        self.region: str = region
        self.endpoint = (
            aws.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://dynamodb.{region}.amazonaws.com"
        )
        self.offload_endpoint: str | None = (  # None: AWS's own S3 endpoint of the region
            options.offload_endpoint_url
            or aws.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.credentials = credentials_of(aws)
        self.transport = transport_options(aws)


def _profile_region(profile_name: str | None) -> str | None:
    """The region of the AWS config (``~/.aws/config``, the profile's when named)."""
    try:
        region = botocore.session.Session(profile=profile_name).get_config_variable("region")
    except botocore.exceptions.ProfileNotFound:
        raise ConfigurationError(f"AWS profile {profile_name!r} not found") from None
    return str(region) if region else None
