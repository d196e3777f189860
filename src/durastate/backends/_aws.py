"""Shared boto3 plumbing for the DynamoDB and S3 backends.

One place decides how a client is built (region, endpoint, credentials, retries, timeouts)
and how a failure that outlived botocore's retries becomes ``BackendUnavailable``, so both
AWS backends behave alike and neither leaks a credential into an error message.

Credentials come from the options when given, otherwise from the usual AWS chain
(environment, shared config/credentials files, instance metadata), as boto3 resolves them.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "AWS_OPTION_NAMES",
    "AttemptTracker",
    "AwsOptions",
    "aws_client",
    "contention_pause",
    "error_code",
    "guard",
    "is_unavailable",
    "outcome_unknown",
    "refused",
    "safe_endpoint",
    "unavailable",
]

#: Error codes that mean "the service is overloaded or broken", not "your request is wrong".
_UNAVAILABLE_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "SlowDown",
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.EndpointConnectionError,  # includes ConnectTimeoutError
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)

_GUARDED: tuple[type[BaseException], ...] = (botocore.exceptions.ClientError, *_CONNECTION_ERRORS)


class AwsOptions(BaseModel):
    """How to reach AWS (or an emulator). Secrets are ``SecretStr``: never in repr or errors.

    ``max_attempts`` counts the first try; with the default timeouts a dead endpoint turns
    into ``BackendUnavailable`` after roughly ``max_attempts * connect_timeout`` seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str | None = None
    #: Out of the repr: a URL may carry userinfo (``https://user:secret@host``).
    endpoint_url: str | None = Field(default=None, repr=False)
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    profile_name: str | None = None
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=3, ge=1, le=20)
    connect_timeout: float = Field(default=2.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    #: connections per endpoint: the async store opens at most this many at once (100
    #: requests in flight need 100), the sync store keeps at most this many idle; the same
    #: knob and default as Azure Tables' (botocore's own default, for the admin client, is 10)
    max_pool_connections: int = Field(default=100, ge=1)
    #: botocore checks every request against the service model (~50 µs CPU per DynamoDB
    #: update). A backend builds its requests in code (and the tests prove them against real
    #: servers), so the check is off by default; ``parameter_validation=True`` restores it.
    parameter_validation: bool = False

    @classmethod
    def pick(cls, options: Mapping[str, Any]) -> tuple[AwsOptions, dict[str, Any]]:
        """Split keyword options into the AWS ones (validated) and the rest."""
        ours = {k: v for k, v in options.items() if k in AWS_OPTION_NAMES}
        rest = {k: v for k, v in options.items() if k not in AWS_OPTION_NAMES}
        if "region_name" in rest:  # boto3's spelling, accepted as an alias
            ours.setdefault("region", rest.pop("region_name"))
        try:
            return cls(**ours), rest
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise ConfigurationError(f"invalid AWS option(s): {fields}") from None

    def resolved_region(self) -> str | None:
        """The region to use; an emulator endpoint without one gets us-east-1."""
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and self.endpoint_url:
            return "us-east-1"
        return region

    def botocore_config(self) -> botocore.config.Config:
        """Retries and timeouts bounded, so a dead endpoint fails in predictable time."""
        return botocore.config.Config(
            region_name=self.resolved_region(),
            retries={"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=self.max_pool_connections,
            parameter_validation=self.parameter_validation,
        )


#: The option names ``AwsOptions.pick`` takes out of a backend's keyword options.
AWS_OPTION_NAMES = frozenset(AwsOptions.model_fields)


def _session(options: AwsOptions) -> boto3.session.Session:
    secret = options.aws_secret_access_key
    token = options.aws_session_token
    if options.aws_access_key_id and secret is None:
        raise ConfigurationError("aws_access_key_id is set but aws_secret_access_key is not")
    return boto3.session.Session(
        aws_access_key_id=options.aws_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        aws_session_token=token.get_secret_value() if token else None,
        region_name=options.resolved_region(),
        profile_name=options.profile_name,
    )


@overload
def aws_client(service: Literal["dynamodb"], options: AwsOptions) -> DynamoDBClient: ...
@overload
def aws_client(service: Literal["s3"], options: AwsOptions) -> S3Client: ...
def aws_client(service: Literal["dynamodb", "s3"], options: AwsOptions) -> Any:
    """A low-level boto3 client; build it once per backend and reuse it (it is thread-safe)."""
    try:
        session = _session(options)
        return session.client(
            service,
            endpoint_url=options.endpoint_url,
            config=options.botocore_config(),
        )
    except botocore.exceptions.NoRegionError:
        raise ConfigurationError(
            f"no AWS region for {service}: pass region=..., or set AWS_REGION"
        ) from None
    except botocore.exceptions.ProfileNotFound:
        raise ConfigurationError(f"AWS profile {options.profile_name!r} not found") from None
    except ValueError:  # e.g. a malformed endpoint_url; botocore's text quotes the URL
        raise ConfigurationError(
            f"invalid AWS client settings for {service} "
            f"(endpoint_url {safe_endpoint(options.endpoint_url)!r})"
        ) from None


def safe_endpoint(url: str | None) -> str:
    """An endpoint URL as it may be shown: scheme, host and port only, never userinfo, path,
    query or fragment (``"aws"`` when none is set: the SDK's default endpoint)."""
    if not url:
        return "aws"
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else "<malformed URL>"


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError (``""`` for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _http_status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure is the service's (network, timeout, 5xx, throttling)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        return error_code(exc) in _UNAVAILABLE_CODES or _http_status(exc) >= 500
    return False


def _where(exc: BaseException) -> str:
    """Host and port of the endpoint, if the error names one (never userinfo or query)."""
    url = getattr(exc, "kwargs", {}).get("endpoint_url")
    if not isinstance(url, str):
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f" at {host}:{parts.port}" if parts.port else f" at {host}"


def unavailable(operation: str, instance_id: str | None, exc: BaseException) -> BackendUnavailable:
    """A ``BackendUnavailable`` naming the operation and instance, built from codes only.

    The message never quotes the SDK's text, which for signature errors can echo the
    request's canonical string; it names the exception type, error code and HTTP status.
    """
    subject = f" of instance {instance_id!r}" if instance_id is not None else ""
    if isinstance(exc, botocore.exceptions.ClientError):
        detail = f"{error_code(exc) or 'error'} (HTTP {_http_status(exc)})"
    else:
        detail = type(exc).__name__
    return BackendUnavailable(
        f"{operation}{subject} failed: AWS unavailable{_where(exc)}: {detail}"
    )


#: What to do when no credentials were found: the chain botocore searches, in order.
NO_CREDENTIALS_HINT = (
    "pass aws_access_key_id= and aws_secret_access_key= (or profile_name=) as options, "
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment, "
    "or configure ~/.aws/credentials"
)


@contextlib.contextmanager
def guard(operation: str, instance_id: str | None = None) -> Iterator[None]:
    """Turn a service-side failure into ``BackendUnavailable``; let request errors through.

    Missing credentials surface only when the first request is signed; they become a
    ``ConfigurationError`` saying how to give them, not botocore's traceback.
    """
    try:
        yield
    except _GUARDED as exc:
        if is_unavailable(exc):
            raise unavailable(operation, instance_id, exc) from None
        raise
    except botocore.exceptions.NoCredentialsError:
        raise ConfigurationError(f"no AWS credentials found: {NO_CREDENTIALS_HINT}") from None
    except botocore.exceptions.ParamValidationError:  # its text quotes the parameters
        raise ConfigurationError(
            f"{operation}: botocore refused the request's parameters"
        ) from None


def refused(
    service: str, operation: str, instance_id: str | None, exc: botocore.exceptions.ClientError
) -> DurastateError:
    """A request the service refused for a reason no backend maps to a sharper error.

    Typed (never the SDK's ``ClientError``) and built from the code and HTTP status only,
    never from the service's message, which may quote the request.
    """
    subject = f" of instance {instance_id!r}" if instance_id is not None else ""
    return DurastateError(
        f"{operation}{subject} was refused by {service}: "
        f"{error_code(exc) or 'error'} (HTTP {_http_status(exc)})"
    )


def outcome_unknown(operation: str, instance_id: str) -> BackendUnavailable:
    """The error for a write whose answer was lost and whose effect cannot be told.

    Never a ``ConcurrencyError``: ``update()`` would re-apply its function to a value that
    may already contain it.
    """
    return BackendUnavailable(
        f"{operation} of instance {instance_id!r}: an answer was lost and the retry found "
        "another write in place; whether this one was applied is unknown"
    )


#: Failures that happen before a request is sent: an attempt ending in one cannot have landed.
_NOT_SENT: tuple[type[BaseException], ...] = (botocore.exceptions.ConnectionError,)


class AttemptTracker:
    """Whether an attempt of this thread's last write may have reached the service and landed.

    botocore retries a request whose answer was lost; if the first attempt had landed, a
    conditional retry then fails on our own write. Registered as a ``needs-retry`` hook
    (called after every attempt, in the calling thread), it notes attempts that may have
    been applied: no answer after the request was sent (closed connection, read timeout) or
    a 5xx other than 503. 4xx answers (throttling included) and 503 were not applied.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def watch(self, client: Any, event: str) -> None:
        """Follow the attempts of ``event`` (e.g. ``needs-retry.s3.PutObject``)."""
        client.meta.events.register(event, self.note)

    def reset(self) -> None:
        self._local.maybe_applied = False

    @property
    def maybe_applied(self) -> bool:
        return bool(getattr(self._local, "maybe_applied", False))

    def note(self, response: Any = None, caught_exception: Any = None, **_: Any) -> None:
        if caught_exception is not None:
            applied = not isinstance(caught_exception, _NOT_SENT)
        elif response is not None:
            status = int(getattr(response[0], "status_code", 0) or 0)
            applied = status >= 500 and status != 503
        else:
            applied = False
        if applied:
            self._local.maybe_applied = True


def contention_pause(attempt: int) -> None:
    """A short, growing, jittered pause between last-write-wins retries under contention.

    A last-write-wins write never reports a conflict; it retries until it lands. The pause
    spreads writers that keep colliding (up to ~50 ms after a few rounds).
    """
    if attempt >= 2:
        time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
