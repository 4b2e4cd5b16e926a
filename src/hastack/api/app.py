"""The REST API and the dashboard, as an ASGI app (FastAPI): routes are thin; the work is in
:mod:`hastack.api.service`.  ``/openapi.json`` documents every route; every error is an
:class:`~hastack.api.models.ErrorBody`.

A follower forwards every ``/v1`` request to the leader (whose address the leader advertises
in the store), so any controller's URL shows the one truth; with no leader to forward to it
answers what it can itself (status, operations, events) and 503 for the rest.
"""

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import requests
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hastack import __version__
from hastack.api import models
from hastack.api.auth import Authenticator, AuthError, Caller, Role
from hastack.api.service import ApiError, Service

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
IDENT = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"  # host names and operation ids: ASCII, no slash
NAME = Annotated[str, PathParam(min_length=1, max_length=255, pattern=IDENT)]
OP_ID = Annotated[str, PathParam(min_length=1, max_length=255, pattern=IDENT)]
STATES = "^(ok|suspect|failed|fencing|fenced|fence_failed|recovering|recovered|maintenance)$"
OP_STATES = "^(open|done|failed|cancelled)$"
FORWARDED = "x-hastack-forwarded"  # set on a forwarded request: never forwarded twice


def _known_query(request: Request) -> None:
    """An unknown query parameter is a mistake worth a precise 422, not something to ignore
    (``?stat=failed`` silently listing every host would mislead)."""
    allowed: set[str] = set()
    todo = [getattr(request.scope.get("route"), "dependant", None)]
    while todo:
        dependant = todo.pop()
        if dependant is not None:
            allowed.update(p.alias for p in dependant.query_params)
            todo.extend(dependant.dependencies)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(422, f"unknown query parameter {unknown[0]!r}", unknown[0])


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = models.ErrorBody(status=status, error=message, field=field)
    return JSONResponse(body.model_dump(), status_code=status)


def create_app(
    service: Service,
    auth: Authenticator,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    *,
    verify: bool | str = True,
) -> FastAPI:
    """``verify``: how a follower checks the leader's certificate when forwarding (a CA
    bundle's path, or True for the system's)."""
    app = FastAPI(
        title="hastack",
        version=__version__,
        description="High availability for OpenStack: hosts, recoveries, guards, the audit "
        "trail, and the operator's levers.  Authenticate with X-Auth-Token (a static token "
        "or a Keystone token); readers may read, operators may also act.",
        dependencies=[Depends(_known_query)],
        responses={
            400: {"model": models.ErrorBody, "description": "a body that is not JSON"},
            401: {"model": models.ErrorBody, "description": "no token, or a refused one"},
            422: {"model": models.ErrorBody, "description": "a malformed request"},
            503: {"model": models.ErrorBody, "description": "no leader or no store to answer"},
        },
    )
    token_header = APIKeyHeader(name="X-Auth-Token", auto_error=False)

    def require(role: Role) -> Callable[..., Caller]:
        def check(request: Request, _token: str | None = Depends(token_header)) -> Caller:
            try:
                caller = auth.authenticate(request.headers)
            except AuthError as exc:
                raise ApiError(exc.status, str(exc)) from None
            if not caller.may(role):
                raise ApiError(403, f"{caller.name} is a {caller.role}: this needs the {role} role")
            return caller

        return check

    reader = Annotated[Caller, Depends(require("reader"))]
    operator = Annotated[Caller, Depends(require("operator"))]
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"model": models.ErrorBody, "description": "the operator role is needed"},
        409: {"model": models.ErrorBody, "description": "not possible in the current state"},
    }
    missing: dict[int | str, dict[str, Any]] = {
        404: {"model": models.ErrorBody, "description": "no such host or operation"}
    }

    _error_handlers(app)

    @app.middleware("http")
    async def forward(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith("/v1/") or FORWARDED in request.headers:
            return await call_next(request)
        url = await run_in_threadpool(service.leader_url)
        if url is None:
            return await call_next(request)
        return await _forward(request, url, verify)

    # ---------------------------------------------------------------- unauthenticated

    @app.get("/healthz", tags=["meta"])
    def healthz() -> models.Health:
        return models.Health(ok=True, controller=service.controller, leading=service.leading())

    if metrics is not None:

        @app.get("/metrics", tags=["meta"], response_class=Response)
        def prometheus() -> Response:
            """Prometheus metrics (text exposition format); no authentication, no secrets."""
            body, content_type = metrics()
            return Response(body, headers={"Content-Type": content_type})

    @app.get("/", include_in_schema=False, response_model=None)
    def dashboard() -> Response:
        index = STATIC / "index.html"
        if not index.exists():
            return _error(404, "the dashboard is not installed")
        return FileResponse(index)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---------------------------------------------------------------- reads

    @app.get("/v1/whoami", tags=["cluster"])
    def whoami(caller: reader) -> models.WhoAmI:
        return models.WhoAmI(name=caller.name, role=caller.role, source=caller.source)

    @app.get("/v1/status", tags=["cluster"])
    def status(_: reader) -> models.Status:
        return service.status()

    @app.get("/v1/hosts", tags=["hosts"], response_model=models.HostList)
    def hosts(_: reader, state: Annotated[str | None, Query(pattern=STATES)] = None) -> Response:
        return Response(service.hosts_json(state), media_type="application/json")

    @app.get("/v1/hosts/{name}", tags=["hosts"], responses=missing)
    def host(_: reader, name: NAME) -> models.HostDetail:
        return service.host(name)

    @app.get(
        "/v1/hosts/{name}/what-if",
        tags=["hosts"],
        responses={**missing, 502: {"model": models.ErrorBody}},
    )
    def what_if(_: reader, name: NAME) -> models.WhatIf:
        """A dry run: what a recovery would do if the host failed now (same pure core)."""
        return service.what_if(name)

    @app.get("/v1/operations", tags=["operations"])
    def operations(
        _: reader,
        state: Annotated[str | None, Query(pattern=OP_STATES)] = None,
        host: Annotated[str | None, Query(min_length=1, max_length=255, pattern=IDENT)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> models.OperationList:
        return service.operations(state, host, limit)

    @app.get("/v1/operations/{op_id}", tags=["operations"], responses=missing)
    def operation(_: reader, op_id: OP_ID) -> models.OperationDetail:
        return service.operation(op_id)

    @app.get("/v1/events", tags=["events"])
    def events(
        _: reader,
        host: Annotated[str | None, Query(min_length=1, max_length=255, pattern=IDENT)] = None,
        since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    ) -> models.EventList:
        return service.events(host, since, limit)

    # ---------------------------------------------------------------- actions

    acted = {**forbidden, **missing}

    @app.post("/v1/hosts/{name}/maintenance", tags=["hosts"], status_code=202, responses=acted)
    def maintenance_on(
        caller: operator, name: NAME, body: models.ActionBody | None = None
    ) -> models.Accepted:
        return service.maintenance(caller, name, True, _comment(body))

    @app.delete("/v1/hosts/{name}/maintenance", tags=["hosts"], status_code=202, responses=acted)
    def maintenance_off(
        caller: operator, name: NAME, body: models.ActionBody | None = None
    ) -> models.Accepted:
        return service.maintenance(caller, name, False, _comment(body))

    @app.post("/v1/hosts/{name}/confirm-off", tags=["hosts"], status_code=202, responses=acted)
    def confirm_off(caller: operator, name: NAME, body: models.ConfirmBody) -> models.Accepted:
        """The operator's fence proof: the host is powered off (audited)."""
        return service.confirm_off(caller, name, body.comment)

    @app.post("/v1/hosts/{name}/rejoin", tags=["hosts"], status_code=202, responses=acted)
    def rejoin(
        caller: operator, name: NAME, body: models.ActionBody | None = None
    ) -> models.Accepted:
        return service.rejoin(caller, name, _comment(body))

    @app.post("/v1/operations/{op_id}/retry", tags=["operations"], status_code=202, responses=acted)
    def retry(
        caller: operator, op_id: OP_ID, body: models.ActionBody | None = None
    ) -> models.Accepted:
        return service.lever(caller, op_id, "retry", _comment(body))

    @app.post(
        "/v1/operations/{op_id}/cancel", tags=["operations"], status_code=202, responses=acted
    )
    def cancel(
        caller: operator, op_id: OP_ID, body: models.ActionBody | None = None
    ) -> models.Accepted:
        return service.lever(caller, op_id, "cancel", _comment(body))

    for action in ("pause", "resume", "ack-cliff"):
        _cluster_route(app, service, operator, action, forbidden)

    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = first.get("msg", "invalid request")
        return _error(422, f"{where}: {message}" if where else str(message), where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed")
        return _error(500, f"internal error: {type(exc).__name__}")


def _comment(body: models.ActionBody | None) -> str:
    return body.comment if body is not None else ""


def _cluster_route(
    app: FastAPI, service: Service, operator: Any, action: str, responses: dict[int | str, Any]
) -> None:
    def handler(caller: operator, body: models.ActionBody | None = None) -> models.Accepted:
        return service.cluster(caller, action, _comment(body))

    handler.__name__ = f"cluster_{action.replace('-', '_')}"
    app.post(f"/v1/cluster/{action}", tags=["cluster"], status_code=202, responses=responses)(
        handler
    )


async def _forward(request: Request, base: str, verify: bool | str) -> Response:
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED}
    headers[FORWARDED] = "1"
    url = base.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query

    def call() -> requests.Response:
        return requests.request(
            request.method, url, data=body, headers=headers, timeout=30, verify=verify
        )

    try:
        answer = await run_in_threadpool(call)
    except requests.RequestException as exc:
        return _error(503, f"the leader at {base} does not answer: {exc}")
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type", "application/json"),
    )


_PASSED = ("x-auth-token", "authorization", "content-type", "accept")
