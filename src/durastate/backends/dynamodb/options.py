"""The backend's options: one typed model for the table, the shared `AwsOptions` for the
connection, and how they resolve into an endpoint, a region, credentials and transport
settings.

Every option is parsed by pydantic, whether it came from the URL's query string (text)
or as a keyword (typed): ``create_table=false``, ``=0`` and ``=False`` mean the same.
Secrets are ``SecretStr`` (in `AwsOptions`) and never appear in a repr or an error.
Credentials come from the options when given, otherwise from botocore's own chain
(environment, shared files, SSO, container, instance metadata; refreshable ones rotate).
"""

from __future__ import annotations

import os
import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import botocore.exceptions
import botocore.session
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from durastate.backends._aws import NO_CREDENTIALS_HINT, AwsOptions
from durastate.backends.dynamodb.layout import INLINE_LIMIT
from durastate.errors import ConfigurationError
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials
from durastate.transport.policy import TransportOptions

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
        session = botocore.session.Session(profile=aws.profile_name)
        try:
            region = aws.resolved_region() or session.get_config_variable("region")
        except botocore.exceptions.ProfileNotFound:
            raise ConfigurationError(f"AWS profile {aws.profile_name!r} not found") from None
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
        self.offload_endpoint = (
            options.offload_endpoint_url
            or aws.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://s3.{region}.amazonaws.com"
        )
        self.credentials = _credentials(aws, session)
        # Each attempt may wait to connect and then to read; the deadline bounds them all.
        per_attempt = aws.connect_timeout + aws.read_timeout
        self.transport = TransportOptions(
            connect_timeout=aws.connect_timeout,
            read_timeout=aws.read_timeout,
            max_attempts=aws.max_attempts,
            deadline=aws.max_attempts * per_attempt,
            pool_size=aws.max_pool_connections,
        )


def _credentials(aws: AwsOptions, session: botocore.session.Session) -> AwsCredentials:
    """Explicit keys, or botocore's chain (read afresh for every signature)."""
    secret = aws.aws_secret_access_key
    if aws.aws_access_key_id and secret is None:
        raise ConfigurationError("aws_access_key_id is set but aws_secret_access_key is not")
    if aws.aws_access_key_id and secret is not None:
        token = aws.aws_session_token
        return AwsCredentials(
            fixed=FrozenCredentials(
                aws.aws_access_key_id,
                secret.get_secret_value(),
                token.get_secret_value() if token else None,
            )
        )
    try:
        found = session.get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ConfigurationError(f"AWS profile {aws.profile_name!r} not found") from None
    except botocore.exceptions.BotoCoreError as exc:  # its text may quote a file's content
        raise ConfigurationError(
            f"AWS credentials could not be read: {type(exc).__name__}"
        ) from None
    if found is None:
        raise ConfigurationError(f"no AWS credentials found: {NO_CREDENTIALS_HINT}")
    return AwsCredentials.from_botocore(found)
