"""The lean HTTP transport the network backends stand on.

- `messages`: `HttpRequest` / `HttpResponse`, the plain data a backend core builds and reads;
- `policy`: timeouts, deadline, retries with jittered backoff, outcome-unknown hook;
- `sync`: `HttpDriver` (http.client, keep-alive pool); `aio`: `AsyncHttpDriver` (a pool of
  asyncio connections, `aio_connection`; no extra needed);
- `aws_sigv4`, `azure_auth`: request signing as pure functions.

See docs/transport.md for the design and the measurements behind it.
"""

from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.policy import (
    Failure,
    LandedHook,
    OutcomeUnknown,
    RetryPolicy,
    TransportOptions,
    default_may_have_landed,
)
from durastate.transport.sync import HttpDriver

__all__ = [
    "Failure",
    "HttpDriver",
    "HttpRequest",
    "HttpResponse",
    "LandedHook",
    "OutcomeUnknown",
    "RetryPolicy",
    "TransportOptions",
    "default_may_have_landed",
]
