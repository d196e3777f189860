"""Errors as RFC 9457 ``application/problem+json`` bodies, and which HTTP status each
durastate error deserves. Messages come from the typed errors, which never carry secrets."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from durastate.errors import (
    BackendUnavailable,
    DurastateError,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
)

PROBLEM_TYPE = "application/problem+json"


class BadRequest(DurastateError):
    """A request parameter is wrong; ``parameter`` names it."""

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        super().__init__(detail)


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_TYPE)


def bad_request(parameter: str, detail: str) -> Response:
    return problem(400, "Bad request", detail, parameter=parameter)


def problem_of(error: DurastateError, *, parameter: str = "instanceId") -> Response:
    """The response for an error of the store (``parameter``: what an InvalidArgument is about)."""
    if isinstance(error, BadRequest):
        return bad_request(error.parameter, str(error))
    if isinstance(error, InvalidContinuationToken):
        return bad_request("x-ms-continuation-token", str(error))
    if isinstance(error, InvalidArgument):
        return bad_request(parameter, str(error))
    if isinstance(error, InstanceNotFound):
        return problem(404, "Not found", str(error))
    if isinstance(error, BackendUnavailable):
        return problem(503, "Backend unavailable", str(error), {"Retry-After": "1"})
    return problem(500, type(error).__name__, str(error))
