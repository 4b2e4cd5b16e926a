"""The simulator's WSGI application and its HTTP server on 127.0.0.1.

All faces share one port, devstack-style: ``/identity``, ``/compute/v2.1``, ``/placement``,
``/image``, plus ``/control`` for failure injection.  For every request the app checks the
Keystone token (except version documents and the control port's paths), then any API fault
injected for that endpoint (latency first, then the error status).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cheroot import wsgi as cheroot_wsgi
from werkzeug.wrappers import Request, Response

from hastack.sim.errors import CloudError
from hastack.sim.http.base import ApiFace, Reply

if TYPE_CHECKING:
    from hastack.sim.cloud import SimCloud

log = logging.getLogger(__name__)


def default_faces() -> list[type[ApiFace]]:
    # Imported here: the faces import the cloud, which imports this package (a cycle at load).
    from hastack.sim.http.control import ControlFace  # noqa: PLC0415
    from hastack.sim.http.glance import GlanceFace  # noqa: PLC0415
    from hastack.sim.http.keystone import KeystoneFace  # noqa: PLC0415
    from hastack.sim.http.neutron import NeutronFace  # noqa: PLC0415
    from hastack.sim.http.nova import NovaFace  # noqa: PLC0415
    from hastack.sim.http.placement import PlacementFace  # noqa: PLC0415

    return [KeystoneFace, NovaFace, PlacementFace, GlanceFace, NeutronFace, ControlFace]


class SimApp:
    def __init__(self, cloud: SimCloud, faces: Iterable[type[ApiFace]] | None = None) -> None:
        self.cloud = cloud
        self.faces: list[ApiFace] = []
        for face_cls in faces if faces is not None else default_faces():
            self.faces.append(face_cls(cloud, f"{cloud.base_url}{face_cls.prefix}"))
        # Longest prefix first so "/compute" never shadows a longer mount.
        self.faces.sort(key=lambda f: len(f.prefix), reverse=True)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        path = request.path
        for face in self.faces:
            if path == face.prefix or path.startswith(face.prefix + "/"):
                return self._serve(face, request, path[len(face.prefix) :])
        return Response('{"error": "not found"}', 404, content_type="application/json")

    def _unauthorized(self) -> Response:
        return _keystonemiddleware_401(f"{self.cloud.base_url}/identity")

    def _serve(self, face: ApiFace, request: Request, sub: str) -> Response:
        token = None
        if face.requires_token and not _is_version_document(sub):
            now = self.cloud.world.clock.now()
            token = self.cloud.tokens.validate(request.headers.get("X-Auth-Token"), now)
            if token is None:
                return self._unauthorized()
        if face.service_type != "control":
            with self.cloud.world.lock:
                fault = self.cloud.api_faults.take(face.service_type, request.method, sub)
            if fault is not None:
                if fault.latency:
                    time.sleep(fault.latency)
                if fault.status is not None:
                    err = CloudError(f"injected fault {fault.id}: HTTP {fault.status}")
                    err.status = fault.status
                    return face.render_error(err)
        return face.dispatch(request, sub, token)


def _keystonemiddleware_401(identity_url: str) -> Response:
    """keystonemiddleware answers an unauthenticated request before any service sees it: the
    same body for every service, and the place to authenticate in WWW-Authenticate."""
    body = {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The request you have made requires authentication.",
        }
    }
    return Response(
        json.dumps(body),
        401,
        content_type="application/json",
        headers={"WWW-Authenticate": f"Keystone uri='{identity_url}'"},
    )


def _is_version_document(sub: str) -> bool:
    parts = [p for p in sub.split("/") if p]
    return len(parts) == 0 or (len(parts) == 1 and parts[0].startswith("v"))


class SimServer:
    """Serves a :class:`SimApp` from a thread; ``port=0`` picks a free port.

    cheroot (CherryPy's WSGI server) keeps HTTP/1.1 connections alive, as the web servers in
    front of real OpenStack APIs do; werkzeug's development server, used before, closed every
    connection, so each request cost both sides a new TCP connection and the server a new
    thread.  ``THREADS`` requests run at once; idle kept-alive connections hold no thread."""

    THREADS = 32

    def __init__(self, cloud: SimCloud, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cloud = cloud
        self._server = cheroot_wsgi.Server(
            (host, port), self._app, numthreads=self.THREADS, request_queue_size=256
        )
        self._server.keep_alive_conn_limit = 1024  # cheroot's default, 10, closes the rest
        self._prepare()
        self.port = self._server.bind_addr[1]
        cloud.base_url = f"http://{host}:{self.port}"
        self.app = SimApp(cloud)
        self._thread: threading.Thread | None = None

    def _prepare(self) -> None:
        """Bind and start cheroot's worker threads from a daemon thread: threads inherit their
        daemon flag from the thread that starts them, and a server nobody stopped must not keep
        the process from exiting (werkzeug's server thread was a daemon too)."""
        failed: list[BaseException] = []

        def prepare() -> None:
            try:
                self._server.prepare()
            except BaseException as exc:  # re-raised in the caller's thread below
                failed.append(exc)

        starter = threading.Thread(target=prepare, name="sim-http-start", daemon=True)
        starter.start()
        starter.join()
        if failed:
            raise failed[0]

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        return self.cloud.base_url

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve, name="sim-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = ["Reply", "SimApp", "SimServer"]
