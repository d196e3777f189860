"""The async driver: aiohttp with a keep-alive connector, following the same `RetryPolicy`.

Every decision (timeouts, deadline, backoff, what is retried, outcome unknown) is taken by
`durastate.transport.policy.Call`, exactly as in the sync driver; this module only moves
bytes. aiohttp is imported here alone, so the sync path never pays for it
(``pip install 'durastate[async]'``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from durastate.errors import MissingDependency
from durastate.transport.connections import proxy_of, ssl_context
from durastate.transport.messages import HttpRequest, HttpResponse, merge_headers
from durastate.transport.policy import (
    CERTIFICATE_FAILED,
    Failure,
    LandedHook,
    RetryPolicy,
    Timeouts,
    TransportOptions,
)

try:
    import aiohttp
    import yarl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("the async HTTP driver", "async", "aiohttp") from exc

__all__ = ["AsyncHttpDriver"]

#: Headers aiohttp would add on its own; a signed request carries exactly what it signed.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class AsyncHttpDriver:
    """Sends `HttpRequest`s from coroutines; the session is made on first use, in the
    running loop. Use ``async with`` or await `close`."""

    def __init__(self, options: TransportOptions | None = None, *, seed: int | None = None) -> None:
        self.policy = RetryPolicy(options, seed=seed)
        proxy = proxy_of(self.policy.options)
        self._proxy = yarl.URL(proxy.url) if proxy else None
        self._proxy_headers = (
            {"Proxy-Authorization": proxy.authorization} if proxy and proxy.authorization else None
        )
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        call = self.policy.call(request, may_have_landed, deadline)
        while True:
            verdict = call.judge(await self._attempt(request, call.timeouts()))
            if isinstance(verdict, HttpResponse):
                return verdict
            await asyncio.sleep(verdict)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncHttpDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncHttpDriver(proxy={'yes' if self._proxy else 'no'})"

    def _open(self) -> aiohttp.ClientSession:
        options = self.policy.options
        ssl: Any = ssl_context(options) if options.verify is not True else True
        connector = aiohttp.TCPConnector(limit_per_host=options.pool_size, ssl=ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
        )
        # aiohttp re-sends a PUT or DELETE by itself, once, when a reused keep-alive
        # connection drops (RFC 9112 9.3.1.1); the policy must see every attempt, or a
        # write whose answer was lost comes back as a plain 412 and is reported as a
        # conflict (StateStore.update() then applies its function twice). No public
        # switch exists (aiohttp 3.14); the attribute is read per request.
        self._session._retry_connection = False
        return self._session

    async def _attempt(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse | Failure:
        session = self._session or self._open()
        timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
        )
        try:
            async with session.request(
                request.method,
                yarl.URL(request.url, encoded=True),
                headers=request.headers,
                data=request.body or None,
                timeout=timeout,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as answer:
                body = await answer.read()
                return HttpResponse(answer.status, merge_headers(answer.headers.items()), body)
        except aiohttp.ClientConnectorCertificateError:
            return Failure("connect", CERTIFICATE_FAILED, retryable=False)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return Failure("connect", type(exc).__name__)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return Failure("response", "timed out")
        except (aiohttp.ClientError, OSError) as exc:
            return Failure("response", type(exc).__name__)
