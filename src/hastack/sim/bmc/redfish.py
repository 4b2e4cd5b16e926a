"""Simulated Redfish service: one HTTPS server, one ComputerSystem (and Manager) per host.

Resources served (what ``fence_redfish`` and sushy 5 request)::

    /redfish/v1/                      ServiceRoot (no authentication, as the standard requires)
    /redfish/v1/Systems               collection of the systems the caller's credentials open
    /redfish/v1/Systems/<host>        ComputerSystem: PowerState, Actions/#ComputerSystem.Reset
    /redfish/v1/Systems/<host>/Actions/ComputerSystem.Reset    POST {"ResetType": ...} -> 204
    /redfish/v1/Managers[/<host>]     the host's BMC
    /redfish/v1/SessionService        POST Sessions -> X-Auth-Token; DELETE Sessions/<id>
                                      (sushy logs in with a session, falls back to Basic)

Each system's credentials are its host's BMC username/password (HTTP Basic or a session token
created with them); collections and the session service accept any configured credential.
The backend's :class:`BmcCondition` applies to ``Systems/<host>`` and ``Managers/<host>``.
Two threads accept (see :class:`~hastack.sim.bmc.tls.ThreadingHTTPSServer`); each connection
gets a thread (TLS handshake included), kept while the client keeps it alive (30 s idle at most).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import dataclasses
import hmac
import json
import logging
import secrets
import socket
import ssl
import threading
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hastack.sim.bmc.backend import BmcBackend, BmcCondition, PowerAction
from hastack.sim.bmc.tls import ThreadingHTTPSServer

if TYPE_CHECKING:
    from hastack.sim.bmc.farm import BmcEndpoint

log = logging.getLogger(__name__)

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
RESET_TYPES: dict[str, PowerAction] = {
    "On": PowerAction.ON,
    "ForceOff": PowerAction.OFF,
    "GracefulShutdown": PowerAction.SOFT,
    "ForceRestart": PowerAction.RESET,
    "GracefulRestart": PowerAction.RESET,  # no OS in the simulation: restart is a reset
    "PowerCycle": PowerAction.CYCLE,
}
MAX_SESSIONS = 1024
RETRY_AFTER_SECONDS = 2
_IDLE_TIMEOUT = 30.0
_ACCEPTORS = 2  # see tls.ThreadingHTTPSServer
_MAX_BODY = 65536

Json = dict[str, Any]
Headers = dict[str, str]
Reply = tuple[int, Json | None, Headers]


@dataclasses.dataclass
class _Fail(Exception):
    """Answer with a Redfish error body."""

    status: int
    message_id: str
    message: str
    headers: Headers = dataclasses.field(default_factory=dict)


class _NoAnswer(Exception):
    """The BMC says nothing (DEAD or HUNG): no response is written."""


def _error_reply(fail: _Fail) -> Reply:
    message_id = f"Base.1.8.{fail.message_id}"
    severity = "Critical" if fail.status >= 500 else "Warning"
    info = {"MessageId": message_id, "Message": fail.message, "Severity": severity}
    error = {"code": message_id, "message": fail.message, "@Message.ExtendedInfo": [info]}
    return fail.status, {"error": error}, fail.headers


def _unauthorized() -> _Fail:
    headers = {"WWW-Authenticate": 'Basic realm="hastack simulated BMC"'}
    return _Fail(401, "NoValidSession", "Authentication required or credentials invalid", headers)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Fail(
            405,
            "OperationNotAllowed",
            f"{method} is not allowed here",
            {"Allow": ", ".join(allowed)},
        )


def _get(method: str, body: Json) -> Reply:
    _allow(method, "GET")
    return 200, body, {}


def _ref(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def _collection(uri: str, odata_type: str, members: list[str]) -> Json:
    return {
        "@odata.id": uri,
        "@odata.type": f"#{odata_type}.{odata_type}",
        "Name": uri.rsplit("/", 1)[-1],
        "Members": [_ref(m) for m in members],
        "Members@odata.count": len(members),
    }


def _system(host: str, on: bool) -> Json:
    return {
        "@odata.id": f"{ROOT}/Systems/{host}",
        "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
        "Id": host,
        "Name": host,
        "HostName": host,
        "SystemType": "Physical",
        "UUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)),
        "PowerState": "On" if on else "Off",
        "Status": {"State": "Enabled" if on else "StandbyOffline", "Health": "OK"},
        "Links": {"ManagedBy": [_ref(f"{ROOT}/Managers/{host}")]},
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": f"{ROOT}/Systems/{host}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            }
        },
    }


def _manager(host: str) -> Json:
    return {
        "@odata.id": f"{ROOT}/Managers/{host}",
        "@odata.type": "#Manager.v1_10_0.Manager",
        "Id": host,
        "Name": f"BMC of {host}",
        "ManagerType": "BMC",
        "PowerState": "On",
        "FirmwareVersion": "1.0",
        "Status": {"State": "Enabled", "Health": "OK"},
        "Links": {"ManagerForServers": [_ref(f"{ROOT}/Systems/{host}")]},
    }


def _session(session_id: str, user: str) -> Json:
    return {
        "@odata.id": f"{SESSIONS}/{session_id}",
        "@odata.type": "#Session.v1_3_0.Session",
        "Id": session_id,
        "Name": "User Session",
        "UserName": user,
    }


class RedfishService:
    """The HTTPS server and what it knows: credentials, sessions, the backend."""

    def __init__(
        self,
        backend: BmcBackend,
        endpoints: Sequence[BmcEndpoint],
        *,
        ssl_context: ssl.SSLContext,
        bind: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.backend = backend
        self.hosts = sorted(e.host for e in endpoints)
        self._known = frozenset(self.hosts)
        self._credentials: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        for e in endpoints:
            self._credentials[e.username].append((e.password, e.host))
        # token -> (session id, user name, hosts it opens); oldest evicted beyond MAX_SESSIONS
        self.sessions: collections.OrderedDict[str, tuple[str, str, frozenset[str]]]
        self.sessions = collections.OrderedDict()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.uuid = str(uuid.uuid4())
        handler = type("RedfishHandler", (_Handler,), {"service": self})
        self._server = ThreadingHTTPSServer((bind, port), handler, ssl_context)
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def knows(self, host: str) -> bool:
        return host in self._known

    def start(self) -> None:
        for n in range(_ACCEPTORS):
            thread = threading.Thread(
                target=self._server.serve, args=(self.stopping,), name=f"bmc-redfish-{n}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._server.close()

    def hosts_for(self, username: str, password: str) -> frozenset[str]:
        """The hosts these credentials open (passwords compared in constant time)."""
        return frozenset(
            host
            for secret, host in self._credentials.get(username, ())
            if hmac.compare_digest(secret.encode(), password.encode())
        )

    def new_session(self, username: str, hosts: frozenset[str]) -> tuple[str, str]:
        token, session_id = secrets.token_urlsafe(24), secrets.token_hex(8)
        with self.lock:
            self.sessions[token] = (session_id, username, hosts)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return token, session_id


class _Handler(BaseHTTPRequestHandler):
    service: RedfishService  # set on the per-service subclass
    protocol_version = "HTTP/1.1"
    server_version = "hastack-sim-bmc/1.0"
    timeout = _IDLE_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("Redfish %s: " + format, self.client_address[0], *args)

    def _do(self) -> None:
        try:
            status, body, headers = self._route(self.command, self._read_body())
        except _NoAnswer:
            self.close_connection = True
            return
        except _Fail as fail:
            status, body, headers = _error_reply(fail)
        except Exception:
            log.exception("Redfish %s %s failed", self.command, urlsplit(self.path).path)
            status, body, headers = _error_reply(_Fail(500, "InternalError", "Internal error"))
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if self.close_connection:  # the client asked (sushy does): say so, or it may reuse it
            self.send_header("Connection", "close")
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("OData-Version", "4.0")
        self.send_header("Cache-Control", "no-cache")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _do  # noqa: N815 (http.server names)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            raise _Fail(413 if length > 0 else 400, "GeneralError", "Bad Content-Length")
        return self.rfile.read(length) if length else b""

    # -- routing

    def _route(self, method: str, body: bytes) -> Reply:
        path = urlsplit(self.path).path.rstrip("/")
        parts = path.split("/")[3:] if path.startswith(ROOT + "/") else []
        if path in ("", "/redfish"):
            return _get(method, {"v1": ROOT + "/"})
        if path == ROOT:
            return _get(method, self._service_root())
        if parts and parts[0] == "SessionService":
            return self._session_service(method, parts[1:], body)
        if len(parts) == 1 and parts[0] in ("Systems", "Managers"):
            hosts = self._authorized()
            members = [f"{path}/{h}" for h in self.service.hosts if h in hosts]
            kind = "ComputerSystemCollection" if parts[0] == "Systems" else "ManagerCollection"
            return _get(method, _collection(path, kind, members))
        if len(parts) >= 2 and parts[0] in ("Systems", "Managers"):
            return self._host_resource(method, parts[0], parts[1], parts[2:], body)
        raise _Fail(404, "ResourceMissingAtURI", f"{path} does not exist")

    def _host_resource(
        self, method: str, kind: str, host: str, rest: list[str], body: bytes
    ) -> Reply:
        if not self.service.knows(host):
            self._authorized()
            raise _Fail(404, "ResourceMissingAtURI", f"no such {kind[:-1].lower()}: {host}")
        self._gate(host)
        if host not in self._authorized():
            raise _unauthorized()
        if kind == "Managers" and not rest:
            return _get(method, _manager(host))
        if kind == "Systems" and not rest:
            on = self.service.backend.power_is_on(host)
            return _get(method, _system(host, on))
        if kind == "Systems" and rest == ["Actions", "ComputerSystem.Reset"]:
            _allow(method, "POST")
            return self._reset(host, body)
        raise _Fail(404, "ResourceMissingAtURI", f"{self.path} does not exist")

    def _gate(self, host: str) -> None:
        """Apply the BMC's condition: raise unless the request is to be answered normally."""
        condition = self.service.backend.bmc_condition(host)
        if condition == BmcCondition.DEAD:  # close at once, without a response
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
            raise _NoAnswer
        if condition == BmcCondition.HUNG:
            self._hang()
            raise _NoAnswer
        if condition == BmcCondition.BUSY:
            raise _Fail(
                503,
                "ServiceTemporarilyUnavailable",
                "The BMC is busy; retry later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if condition == BmcCondition.SLOW:
            self.service.stopping.wait(max(0.0, float(self.service.backend.bmc_delay(host))))
        if self.service.stopping.is_set():
            raise _NoAnswer

    def _hang(self) -> None:
        """Say nothing until the client hangs up (or the farm stops)."""
        self.connection.settimeout(0.25)
        while not self.service.stopping.is_set():
            try:
                if not self.connection.recv(4096):
                    return
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError):
                return

    def _authorized(self) -> frozenset[str]:
        """The hosts the request's credentials open; 401 if they open none."""
        token = self.headers.get("X-Auth-Token")
        if token is not None:
            with self.service.lock:
                session = self.service.sessions.get(token)
            if session is not None:
                return session[2]
            raise _unauthorized()
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                decoded = base64.b64decode(encoded, validate=True).decode()
                user, _, password = decoded.partition(":")
                if hosts := self.service.hosts_for(user, password):
                    return hosts
        raise _unauthorized()

    # -- resources

    def _service_root(self) -> Json:
        return {
            "@odata.id": ROOT + "/",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "Name": "hastack simulated BMC farm",
            "RedfishVersion": "1.8.0",
            "UUID": self.service.uuid,
            "Systems": _ref(f"{ROOT}/Systems"),
            "Managers": _ref(f"{ROOT}/Managers"),
            "SessionService": _ref(f"{ROOT}/SessionService"),
            "Links": {"Sessions": _ref(SESSIONS)},
        }

    def _reset(self, host: str, body: bytes) -> Reply:
        try:
            request = json.loads(body or b"null")
        except ValueError:
            raise _Fail(400, "MalformedJSON", "The request body is not valid JSON") from None
        reset_type = request.get("ResetType") if isinstance(request, dict) else None
        if reset_type not in RESET_TYPES:
            message_id = "ActionParameterNotSupported" if reset_type else "ActionParameterMissing"
            raise _Fail(400, message_id, f"ResetType must be one of {', '.join(RESET_TYPES)}")
        log.info("BMC %s (Redfish): reset %s", host, reset_type)
        self.service.backend.set_power(host, RESET_TYPES[reset_type])
        return 204, None, {}

    def _session_service(self, method: str, rest: list[str], body: bytes) -> Reply:
        if rest == ["Sessions"] and method == "POST":
            return self._create_session(body)
        hosts = self._authorized()
        if not rest:
            return _get(
                method,
                {
                    "@odata.id": f"{ROOT}/SessionService",
                    "Id": "SessionService",
                    "@odata.type": "#SessionService.v1_1_8.SessionService",
                    "Name": "Session Service",
                    "ServiceEnabled": True,
                    "SessionTimeout": 1800,
                    "Sessions": _ref(SESSIONS),
                },
            )
        if len(rest) == 2 and rest[0] == "Sessions":  # sushy deletes its session when done
            _allow(method, "DELETE")
            with self.service.lock:
                for token, (session_id, _, opens) in list(self.service.sessions.items()):
                    if session_id == rest[1] and opens == hosts:
                        del self.service.sessions[token]
                        return 204, None, {}
        raise _Fail(404, "ResourceMissingAtURI", f"{self.path} does not exist")

    def _create_session(self, body: bytes) -> Reply:
        try:
            request = json.loads(body or b"null")
            user, password = str(request["UserName"]), str(request["Password"])
        except (ValueError, TypeError, KeyError):
            raise _Fail(400, "MalformedJSON", "Expected UserName and Password") from None
        hosts = self.service.hosts_for(user, password)
        if not hosts:
            raise _unauthorized()
        token, session_id = self.service.new_session(user, hosts)
        headers = {"X-Auth-Token": token, "Location": f"{SESSIONS}/{session_id}"}
        return 201, _session(session_id, user), headers
