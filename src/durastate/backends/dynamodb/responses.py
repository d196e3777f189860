"""DynamoDB answers as plain data: the parsed body, the error code, and the typed error.

DynamoDB answers JSON; an error carries ``__type`` (``...#ConditionalCheckFailedException``)
and a message. Errors are built from the code and the HTTP status only, never from the
message, which may quote the request. A failed condition is not an error here: the plan
explains it from the old item (`condition_failed`).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError
from durastate.transport.messages import HttpResponse

__all__ = [
    "CONDITION_FAILED",
    "THROTTLED",
    "body_of",
    "error_code",
    "error_for",
]

CONDITION_FAILED: Final = "ConditionalCheckFailedException"
#: DynamoDB throttles with HTTP 400 and one of these codes: nothing was applied; try again.
THROTTLED: Final = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)
_UNAVAILABLE: Final = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        *THROTTLED,
    }
)
_AUTH: Final = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


def body_of(response: HttpResponse) -> dict[str, Any]:
    """The JSON body (``{}`` when empty or not an object)."""
    if not response.body:
        return {}
    try:
        parsed = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def error_code(response: HttpResponse, body: dict[str, Any] | None = None) -> str:
    """The error's code: ``__type`` after its ``#`` (or the ``x-amzn-errortype`` header)."""
    if body is None:
        body = body_of(response)
    kind = body.get("__type")
    if not isinstance(kind, str):
        kind = (response.header("x-amzn-errortype") or "").split(":", 1)[0]
    return kind.rsplit("#", 1)[-1]


def error_for(
    response: HttpResponse,
    operation: str,
    instance_id: str | None,
    table: str,
    code: str | None = None,
) -> DurastateError:
    """The typed error of an answer that is neither success nor a failed condition."""
    code = error_code(response) if code is None else code
    subject = f" of instance {instance_id!r}" if instance_id is not None else ""
    detail = f"{code or 'error'} (HTTP {response.status})"
    if code == "ResourceNotFoundException":
        return ConfigurationError(f"DynamoDB table {table!r} (or its index) does not exist")
    if code in _AUTH or response.status == 403:
        return ConfigurationError(
            f"not allowed to {operation} on DynamoDB table {table!r}: {code or response.status}"
        )
    if code in _UNAVAILABLE or response.status >= 500:
        return BackendUnavailable(f"{operation}{subject} failed: AWS unavailable: {detail}")
    return DurastateError(f"{operation}{subject} was refused by DynamoDB: {detail}")
