"""The routes: Durable Functions' status API, the event stream, health, and the page."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durastate.core.async_store import AsyncStateStore
from durastate.core.models import InstanceMetadata
from durastate.errors import DurastateError, InstanceNotFound
from durastate.web import status
from durastate.web.auth import BearerAuth
from durastate.web.events import StreamSlots, event_stream
from durastate.web.links import public_url
from durastate.web.problems import BadRequest, problem, problem_of

DF_PREFIX = "/runtime/webhooks/durabletask"
JSON = "application/json"
#: The page may talk only to this app: no inline script, no other origin.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class InstanceIdConvertor(Convertor[str]):
    """An instance id (slashes allowed) that is not ``…/events``: lets the status route come
    before the event-stream route."""

    regex = r"(?:(?!/events$).)+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("durastate_id", InstanceIdConvertor())


def query_of(request: Request) -> Mapping[str, str]:
    """The query parameters; none parsed when there are none (the common status poll)."""
    return request.query_params if request.scope.get("query_string") else {}


@dataclass(frozen=True)
class WebOptions:
    """What `create_app` accepts besides the store."""

    allow_purge: bool = False
    token: str | None = None
    base_url: str | None = None
    trust_forwarded: bool = False
    cors_origins: tuple[str, ...] = ()
    retry_after: int = 1
    max_streams: int = 1000
    heartbeat: float = 15.0
    poll_interval: float | None = None


class StatusApi:
    """The handlers, over one store and one set of options."""

    def __init__(self, store: AsyncStateStore, options: WebOptions) -> None:
        self.store = store
        self.options = options
        self.slots = StreamSlots(options.max_streams)
        self.page = (resources.files(__package__) / "page.html").read_text("utf-8")

    # -- instances ------------------------------------------------------------------------

    async def get_instance(self, request: Request) -> Response:
        try:
            instance_id = request.path_params["instance_id"]
            params = query_of(request)
            show_input = status.flag(params, "showInput", False)
            show_output = status.flag(params, "showOutput", True)
            fail_500 = status.flag(params, "returnInternalServerErrorOnFailure", False)
            item = await self.store.get_instance(
                instance_id, fetch_payloads=show_input or show_output
            )
        except DurastateError as error:
            return problem_of(error)
        if item is None:
            return problem(404, "Not found", f"instance {instance_id!r} not found")
        headers = {"ETag": f'"{status.etag_token(item.etag)}"'}
        if status.if_none_match(request.headers.get("if-none-match"), item.etag):
            return Response(status_code=304, headers=headers)
        try:
            body = orjson.dumps(
                status.status_body(item, show_input=show_input, show_output=show_output)
            )
        except DurastateError as error:
            return problem_of(error)
        code = 200
        if not item.runtime_status.is_terminal:
            code = 202
            headers["Location"] = public_url(
                request,
                base_url=self.options.base_url,
                trust_forwarded=self.options.trust_forwarded,
            )
            headers["Retry-After"] = str(self.options.retry_after)
        elif fail_500 and item.runtime_status.value == "failed":
            code = 500
        return Response(body, code, headers=headers, media_type=JSON)

    async def list_instances(self, request: Request) -> Response:
        params = request.query_params
        try:
            show_input = status.flag(params, "showInput", False)
            show_output = status.flag(params, "showOutput", True)
            page = await self.store.query(
                **status.filters(params),
                page_size=status.top(params),
                continuation=request.headers.get("x-ms-continuation-token") or None,
                fetch_payloads=show_input or show_output,
            )
            shape = partial(status.status_body, show_input=show_input, show_output=show_output)
            body = orjson.dumps([shape(item) for item in page.items])
        except DurastateError as error:
            return problem_of(error, parameter="query")
        headers = {}
        if page.continuation is not None:
            headers["x-ms-continuation-token"] = page.continuation
        return Response(body, 200, headers=headers, media_type=JSON)

    async def count_instances(self, request: Request) -> Response:
        """How many instances match, per runtime status (what a dashboard shows)."""
        try:
            counts = await self.store.count(**status.filters(request.query_params))
        except DurastateError as error:
            return problem_of(error, parameter="query")
        return Response(orjson.dumps(status.counts_body(counts)), 200, media_type=JSON)

    async def purge(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        if not self.options.allow_purge:
            detail = "purging is turned off on this server (durastate serve --allow-purge)"
            return problem(403, "Forbidden", detail)
        try:
            deleted = await self.store.purge(instance_id)
        except DurastateError as error:
            return problem_of(error)
        if not deleted:
            return problem(404, "Not found", f"instance {instance_id!r} not found")
        return Response(orjson.dumps({"instancesDeleted": 1}), 200, media_type=JSON)

    # -- live events ----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        params = request.query_params
        try:
            show_input = status.flag(params, "showInput", False)
            show_output = status.flag(params, "showOutput", True)
            last = request.headers.get("last-event-id") or params.get("lastEventId")
            since = status.etag_of_token(last) if last else None
        except BadRequest as error:
            return problem_of(error)
        if not self.slots.take():
            detail = f"too many open event streams (at most {self.slots.limit})"
            return problem(503, "Too many streams", detail, {"Retry-After": "5"})
        watch = self.store.watch(
            instance_id, since_etag=since, poll_interval=self.options.poll_interval
        )
        # a fresh stream answers with the current state; a resumed one may have nothing new
        # to send yet, so it only checks that the instance exists before answering
        first = await (self._exists(instance_id) if since else self._first(watch, instance_id))
        if isinstance(first, Response):
            self.slots.give_back()
            return first

        def shape(item: InstanceMetadata) -> dict[str, Any]:
            return status.status_body(item, show_input=show_input, show_output=show_output)

        async def enrich(item: InstanceMetadata) -> InstanceMetadata:
            """The same state with input/output, read again only when asked for: input on
            every event, output once terminal (a watch reads custom status alone)."""
            wanted = show_input or (show_output and item.runtime_status.is_terminal)
            if not wanted or item.payloads_fetched:
                return item
            fresh = await self.store.get_instance(item.instance_id, fetch_payloads=True)
            return fresh or item

        stream = event_stream(
            first,
            watch,
            shape,
            enrich,
            heartbeat=self.options.heartbeat,
            on_close=self.slots.give_back,
        )
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @staticmethod
    async def _first(
        watch: AsyncIterator[InstanceMetadata], instance_id: str
    ) -> InstanceMetadata | Response | None:
        """The watch's first state (``None`` when it ended at once), or the error response."""
        try:
            return await anext(watch)
        except StopAsyncIteration:
            return None
        except InstanceNotFound:
            return problem(404, "Not found", f"instance {instance_id!r} not found")
        except DurastateError as error:
            return problem_of(error)

    async def _exists(self, instance_id: str) -> Response | None:
        try:
            found = await self.store.get_instance(instance_id)
        except DurastateError as error:
            return problem_of(error)
        return None if found else problem(404, "Not found", f"instance {instance_id!r} not found")

    # -- health and page ------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def page_view(self, request: Request) -> Response:
        root = html.escape(request.scope.get("root_path", ""), quote=True)
        body = self.page.replace("{{root}}", root)
        headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"}
        return HTMLResponse(body, headers=headers)


def build_app(
    store: AsyncStateStore,
    *,
    allow_purge: bool = False,
    token: str | None = None,
    base_url: str | None = None,
    **more: Any,
) -> Starlette:
    """See `durastate.web.create_app`."""
    if "cors_origins" in more:
        more["cors_origins"] = tuple(more["cors_origins"])
    options = WebOptions(allow_purge=allow_purge, token=token, base_url=base_url, **more)
    api = StatusApi(store, options)
    instance_routes = [  # the status poll first: it is by far the most frequent request
        Route("/instances/{instance_id:durastate_id}", api.get_instance, methods=["GET"]),
        Route("/instances/{instance_id:path}/events", api.events, methods=["GET"]),
        Route("/instances", api.list_instances, methods=["GET"]),
        Route("/instances/{instance_id:path}", api.purge, methods=["DELETE"]),
        # not /instances/count: that is the status URL of an instance named "count"
        Route("/counts", api.count_instances, methods=["GET"]),
    ]
    routes = [
        *instance_routes,
        Mount(DF_PREFIX, routes=list(instance_routes)),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/", api.page_view, methods=["GET"]),
        Route("/ui/instances/{instance_id:path}", api.page_view, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("durastate.web", "static")])),
    ]
    middleware = []
    if options.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(options.cors_origins),
                allow_methods=["GET", "DELETE"],
                allow_headers=["Authorization", "Last-Event-ID", "x-ms-continuation-token"],
                expose_headers=["ETag", "Location", "Retry-After", "x-ms-continuation-token"],
            )
        )
    if token:
        middleware.append(Middleware(BearerAuth, token=token))
    return Starlette(routes=routes, middleware=middleware)
