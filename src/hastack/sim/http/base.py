"""The small web framework under the simulator's HTTP face.

Each OpenStack service is an :class:`ApiFace` with a werkzeug routing table; the handlers take an
:class:`ApiRequest` and return plain data.  Refusals are :class:`~hastack.sim.errors.CloudError`
raised from the world model or the handler and rendered in the service's own error format.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from hastack.sim.errors import BadRequest, CloudError

if TYPE_CHECKING:
    from hastack.sim.cloud import SimCloud
    from hastack.sim.http.keystone import Token

Handler = Callable[..., Any]
log = logging.getLogger(__name__)


class Reply:
    """A handler's answer when it is not a plain 200 with a JSON body."""

    def __init__(
        self, body: Any = None, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers or {}


class ApiRequest:
    def __init__(self, request: Request, face: ApiFace, token: Token | None) -> None:
        self.raw = request
        self.face = face
        self.token = token
        self.args = request.args
        self.headers = request.headers
        self.method = request.method
        self.microversion: tuple[int, int] = (0, 0)

    def json(self) -> Any:
        """The JSON body; a missing or malformed body is a 400 in the service's format."""
        data = self.raw.get_data(cache=True)
        if not data:
            raise BadRequest("Malformed request body")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadRequest(f"Malformed request body: {exc}") from None

    def body_dict(self, key: str | None = None) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise BadRequest("Malformed request body: expected a JSON object")
        if key is None:
            return body
        value = body.get(key)
        if not isinstance(value, dict):
            raise BadRequest(f"Invalid input for field/attribute {key}. Value: {value}.")
        return value

    def at_least(self, version: str) -> bool:
        return self.microversion >= _parse_version(version)

    @property
    def url_root(self) -> str:
        return self.face.public_url


@functools.cache
def _parse_version(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


class ApiFace:
    """One OpenStack service mounted under ``prefix`` (e.g. ``/compute``)."""

    prefix = ""
    service_type = ""
    requires_token = True

    def __init__(self, cloud: SimCloud, public_url: str) -> None:
        self.cloud = cloud
        self.world = cloud.world
        self.public_url = public_url.rstrip("/")
        self.url_map = Map(strict_slashes=False, merge_slashes=False)
        self.open_paths: set[str] = set()  # endpoints served without a token (version documents)
        self.routes()

    def routes(self) -> None:
        raise NotImplementedError

    def route(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        self.url_map.add(Rule(path, endpoint=handler, methods=list(methods)))

    def error_body(self, exc: CloudError) -> Any:
        return {"error": {"code": exc.status, "title": type(exc).__name__, "message": exc.message}}

    def negotiate(self, req: ApiRequest) -> None:
        """Microversion negotiation hook; raises a CloudError for an unacceptable version."""

    def response_headers(self, req: ApiRequest) -> dict[str, str]:
        return {}

    def dispatch(self, request: Request, path: str, token: Token | None) -> Response:
        req = ApiRequest(request, self, token)
        adapter = self.url_map.bind("sim", path_info=path or "/")
        try:
            handler, values = adapter.match(method=request.method)
            self.negotiate(req)
            result = handler(req, **values)
        except CloudError as exc:
            return self.render(req, Reply(self.error_body(exc), exc.status))
        except HTTPException as exc:  # werkzeug: 404 no route, 405 wrong method
            status = exc.code or 500
            err = CloudError(exc.description or exc.name)
            err.status = status
            err.nova_key = {404: "itemNotFound", 405: "methodNotAllowed"}.get(status, "badRequest")
            return self.render(req, Reply(self.error_body(err), status))
        except Exception:  # a bug here must look like a service's 500, and be logged
            log.exception("unexpected error serving %s %s", request.method, request.path)
            err = CloudError(
                "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ "
                "and attach the Nova API log if possible."
            )
            return self.render(req, Reply(self.error_body(err), 500))
        reply = result if isinstance(result, Reply) else Reply(result)
        return self.render(req, reply)

    def render_error(self, exc: CloudError) -> Response:
        return Response(
            json.dumps(self.error_body(exc)), status=exc.status, content_type="application/json"
        )

    def render(self, req: ApiRequest, reply: Reply) -> Response:
        headers = {**self.response_headers(req), **reply.headers}
        if reply.body is None or reply.status == 204:
            return Response(b"", status=reply.status, headers=headers)
        return Response(
            json.dumps(reply.body),
            status=reply.status,
            headers=headers,
            content_type="application/json",
        )


def iso(ts: float | None, *, micro: bool = False, z: bool = True) -> str | None:
    """Timestamps the way OpenStack prints them: ``2026-01-01T00:00:00Z`` or with microseconds."""
    if ts is None:
        return None
    total_us = round(ts * 1_000_000)
    seconds, us = divmod(total_us, 1_000_000)
    t = time.gmtime(seconds if micro else int(ts))
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    if micro:
        text += f".{us:06d}"
    return text + ("Z" if z else "")


def page_limit(req: ApiRequest, max_limit: int = 1000) -> int:
    """The page size Nova serves: ``limit`` capped at max_limit (1,000 by default)."""
    raw = req.args.get("limit")
    if raw is None:
        return max_limit
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return min(limit, max_limit)


def paginate(
    items: list[Any], req: ApiRequest, key: Callable[[Any], str], max_limit: int = 1000
) -> tuple[list[Any], bool]:
    """limit/marker pagination as Nova does it: the marker is the last id of the previous page;
    an unknown marker is a 400.  Returns the page and whether a ``next`` link is due."""
    limit = page_limit(req, max_limit)
    marker = req.args.get("marker")
    start = 0
    if marker is not None:
        for i, item in enumerate(items):
            if key(item) == marker:
                start = i + 1
                break
        else:
            raise BadRequest(f"marker [{marker}] not found")
    page = items[start : start + limit]
    return page, bool(limit) and len(page) == limit
