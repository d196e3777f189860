"""What the lean AWS backends share: where the keys come from, and the transport's bounds.

Kept apart from `_aws` (the boto3 plumbing of bucket and table administration): these are
the pieces a backend that signs its own requests needs, from the same `AwsOptions`.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.exceptions
import botocore.session

from durastate.backends._aws import NO_CREDENTIALS_HINT, AwsOptions
from durastate.errors import ConfigurationError
from durastate.transport import TransportOptions
from durastate.transport.aws_sigv4 import AwsCredentials, FrozenCredentials

__all__ = ["credentials_of", "transport_options"]


def transport_options(aws: AwsOptions) -> TransportOptions:
    """Each attempt ``connect_timeout`` + ``read_timeout`` at most, ``max_attempts`` of
    them, the whole call within their sum; ``max_pool_connections`` connections (open at
    once in the async driver, idle in the sync one)."""
    per_attempt = aws.connect_timeout + aws.read_timeout
    return TransportOptions(
        connect_timeout=aws.connect_timeout,
        read_timeout=aws.read_timeout,
        max_attempts=aws.max_attempts,
        deadline=aws.max_attempts * per_attempt,
        pool_size=aws.max_pool_connections,
    )


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
