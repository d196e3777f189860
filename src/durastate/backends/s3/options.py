"""The options of an S3 store, one typed model, and where its keys and endpoint come from.

``s3://BUCKET/PREFIX?region=...&endpoint_url=...`` plus keyword options (keywords win),
validated once by `S3Options` (pydantic: ``create_bucket=false`` from a URL is a bool like
any other). Secrets are ``SecretStr``: never in a repr or an error. Credentials come from
the explicit keys when given, otherwise from botocore's own chain (environment, profiles,
SSO, container, instance metadata), read on first use and then afresh for every signature
so that refreshable credentials rotate.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from typing import Any

import botocore.exceptions
import botocore.session
from pydantic import ValidationError

from durastate.backends._aws import NO_CREDENTIALS_HINT, AwsOptions
from durastate.errors import ConfigurationError
from durastate.transport import TransportOptions
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials

__all__ = ["S3Options", "S3Url", "credentials_of", "parse_url"]

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
        """The driver's bounds: each attempt ``connect_timeout`` + ``read_timeout`` at most,
        ``max_attempts`` of them, the whole call within their sum."""
        per_attempt = self.connect_timeout + self.read_timeout
        return TransportOptions(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
            deadline=self.max_attempts * per_attempt,
            pool_size=self.max_pool_connections,
        )

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


class _ChainOnFirstUse:
    """botocore's credential chain, looked up when the first request is signed (looking
    may ask instance metadata: not at open), then kept (botocore refreshes it)."""

    def __init__(self, profile_name: str | None) -> None:
        self._profile = profile_name
        self._credentials: Any = None
        self._lock = threading.Lock()

    def get_frozen_credentials(self) -> Any:
        if self._credentials is None:
            with self._lock:
                if self._credentials is None:
                    self._credentials = self._look_up()
        return self._credentials.get_frozen_credentials()

    def _look_up(self) -> Any:
        try:
            session = botocore.session.Session(profile=self._profile)
            found = session.get_credentials()
        except botocore.exceptions.ProfileNotFound:
            raise ConfigurationError(f"AWS profile {self._profile!r} not found") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigurationError(
                f"AWS credentials could not be loaded ({type(exc).__name__})"
            ) from None
        if found is None:
            raise ConfigurationError(f"no AWS credentials found: {NO_CREDENTIALS_HINT}")
        return found


def credentials_of(options: AwsOptions) -> AwsCredentials:
    """Explicit keys, or botocore's chain (with ``profile_name`` when given)."""
    secret = options.aws_secret_access_key
    if options.aws_access_key_id and secret is None:
        raise ConfigurationError("aws_access_key_id is set but aws_secret_access_key is not")
    if options.aws_access_key_id and secret is not None:
        token = options.aws_session_token
        return AwsCredentials(
            fixed=FrozenCredentials(
                options.aws_access_key_id,
                secret.get_secret_value(),
                token.get_secret_value() if token else None,
            )
        )
    return AwsCredentials(_ChainOnFirstUse(options.profile_name))
