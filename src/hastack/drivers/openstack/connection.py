"""Opening an openstacksdk connection, and raw JSON calls over its sessions.

:func:`connect` builds a :class:`~openstack.connection.Connection` from one clouds.yaml entry,
ignoring the ``OS_*`` variables of whatever shell started the process.

:class:`RawApi` is the driver's one door to the cloud: it sends a request through an sdk
proxy's keystoneauth session, with the endpoint and token the sdk's auth plugin gave for that
proxy, and returns the decoded JSON or raises a hastack error.  Bulk reads use it instead of the
sdk's resource classes, which cost ~0.75 ms per row to build.  No vendor exception leaves this
module.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openstack
import openstack.utils
import requests.adapters
from keystoneauth1 import exceptions as ks_exc
from openstack import config as os_config
from openstack import exceptions as sdk_exc

from hastack.errors import PermanentError, TransientError

PAGE = 1000  # rows per page for our own marker/limit pagination
POOL = 64  # HTTP connections kept per host
TOKEN_MARGIN = 60.0  # seconds: a kept token is replaced this long before it expires
TOKEN_KEEP = 600.0  # seconds: the longest a token and endpoint are kept without asking again


def connect(clouds_yaml: str | pathlib.Path | None, cloud: str) -> openstack.connection.Connection:
    """A connection to ``cloud`` of ``clouds_yaml`` (None: openstacksdk's usual search path,
    e.g. /etc/openstack/clouds.yaml); ``OS_*`` environment variables are ignored.

    Raises :class:`PermanentError` when the file or the entry is unusable."""
    try:
        files = [str(clouds_yaml)] if clouds_yaml is not None else None
        config = os_config.OpenStackConfig(config_files=files, load_envvars=False)
        conn = openstack.connection.Connection(config=config.get_one(cloud=cloud))
    except (sdk_exc.SDKException, ks_exc.ClientException, OSError) as exc:
        raise PermanentError(f"cannot use cloud {cloud!r} of {clouds_yaml}: {exc}") from exc
    # The engine calls Nova from many worker threads at once (hundreds of evacuations):
    # keep a connection per worker instead of requests' default pool of 10.
    http = conn.session.session
    for prefix in ("http://", "https://"):
        http.mount(prefix, requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=POOL))
    return conn


def error_message(body: Any, fallback: str) -> str:
    """The service's own message from an error body (``{"badRequest": {"message": ...}}`` for
    Nova, ``{"errors": [{"detail": ...}]}`` for Placement), else ``fallback``."""
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("detail") or errors[0].get("title") or fallback)
    return fallback


def error_kind(body: Any) -> str:
    """The error's type name when the body carries one (Neutron's
    ``{"NeutronError": {"type": "RouterNotFound", ...}}``), else ""."""
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and isinstance(value.get("type"), str):
                return str(value["type"])
    return ""


class HttpRefusal(PermanentError):
    """A 4xx answer; ``status`` (and ``kind``, the service's error type when it names one) let
    callers treat one refusal (say a 404) as an answer."""

    def __init__(self, status: int, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def open_proxy(conn: openstack.connection.Connection, name: str, service: str) -> Any:
    """The sdk proxy ``conn.<name>`` (say ``network``).  Building one authenticates and reads
    the catalog, so it can fail like any request: the failure comes out translated."""
    try:
        return getattr(conn, name)
    except (ks_exc.ClientException, sdk_exc.SDKException) as exc:
        raise _translate(exc, service) from exc


class RawApi:
    """JSON requests on one sdk proxy (``conn.compute``, ``conn.placement``, ``conn.image``).

    The endpoint and token come from the sdk's auth plugin and are kept until shortly before
    the token expires.  Sending through the proxy itself would ask the plugin for them on every
    request, under the plugin's lock, three times a request: hundreds of worker threads issuing
    evacuations at once queued on that lock for most of their time (measured with py-spy).  A
    401 drops the kept token and the request is sent once more with a fresh one."""

    def __init__(self, proxy: Any, service: str, timeout: float) -> None:
        self.proxy = proxy
        self.service = service
        self.timeout = timeout
        self._lock = threading.Lock()
        self._kept: tuple[str, str, float] | None = None  # endpoint, token, replace after

    def max_microversion(self, client_max: str) -> str | None:
        """The highest microversion <= ``client_max`` the cloud supports (None: unknown)."""
        try:
            found = openstack.utils.maximum_supported_microversion(self.proxy, client_max)
        except (ks_exc.ClientException, sdk_exc.SDKException) as exc:
            raise _translate(exc, self.service) from exc
        return str(found) if found else None

    def _credentials(self) -> tuple[str, str]:
        """The proxy's endpoint and a token, kept while the token has life left."""
        kept = self._kept
        if kept is not None and time.time() < kept[2]:
            return kept[0], kept[1]
        with self._lock:
            kept = self._kept
            now = time.time()
            if kept is not None and now < kept[2]:
                return kept[0], kept[1]
            session = self.proxy.session
            token = self.proxy.get_token()
            endpoint = self.proxy.get_endpoint()
            if not token or not endpoint:
                raise PermanentError(f"{self.service}: no token or no endpoint in the catalog")
            expires = getattr(session.auth.get_access(session), "expires", None)
            until = now + TOKEN_KEEP
            if expires is not None:
                until = min(until, expires.timestamp() - TOKEN_MARGIN)
            self._kept = (str(endpoint).rstrip("/"), str(token), until)
            return self._kept[0], self._kept[1]

    def _forget_token(self) -> None:
        with self._lock:
            self._kept = None
            self.proxy.session.invalidate()

    def _send(self, method: str, url: str, mv: str | None, body: Any) -> Any:
        endpoint, token = self._credentials()
        kwargs: dict[str, Any] = {"timeout": self.timeout}
        if body is not None:
            kwargs["json"] = body
        if mv is not None:
            kwargs["microversion"] = mv
            kwargs["microversion_service_type"] = self.proxy.service_type
        return self.proxy.session.request(
            f"{endpoint}/{url.lstrip('/')}",
            method,
            authenticated=False,
            headers={"X-Auth-Token": token},
            raise_exc=False,
            **kwargs,
        )

    def call(self, method: str, url: str, *, mv: str | None = None, body: Any = None) -> Any:
        """Send one request; the decoded JSON body (None when empty).  Raises
        :class:`TransientError` for 5xx and transport errors, :class:`HttpRefusal` for 4xx."""
        what = f"{self.service} {method} {url.split('?', 1)[0]}"
        try:
            resp = self._send(method, url, mv, body)
            if resp.status_code == 401:  # the kept token was revoked or expired early
                self._forget_token()
                resp = self._send(method, url, mv, body)
        except (ks_exc.ClientException, sdk_exc.SDKException) as exc:
            raise _translate(exc, what) from exc
        status = resp.status_code
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = None
        if status >= 500:
            raise TransientError(f"{what}: {status} {error_message(data, resp.reason or '')}")
        if status >= 400:
            message = f"{what}: {status} {error_message(data, resp.reason or '')}"
            raise HttpRefusal(status, message, error_kind(data))
        return data

    def get(self, url: str, mv: str | None = None) -> Any:
        return self.call("GET", url, mv=mv)

    def pages(self, url: str, key: str, *, mv: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a collection, following ``<key>_links`` next links (Nova) or marker and
        limit (when the cloud sends no link but a full page)."""
        sep = "&" if "?" in url else "?"
        next_url: str | None = f"{url}{sep}limit={PAGE}"
        while next_url:
            data = self.get(next_url, mv) or {}
            rows = data.get(key) or []
            yield from rows
            next_url = _next_link(data.get(f"{key}_links"), url)
            if next_url is None and len(rows) >= PAGE and rows[-1].get("id"):
                next_url = f"{url}{sep}limit={PAGE}&marker={rows[-1]['id']}"


def _next_link(links: Any, url: str) -> str | None:
    """The path-and-query of a ``rel: next`` link, relative to the proxy's endpoint: the
    endpoint's own prefix (``/v2.1``, ``/compute/v2.1``) is cut at the collection's name."""
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            parts = urlsplit(str(link["href"]))
            collection = urlsplit(url).path.lstrip("/").split("/", 1)[0]
            path = parts.path
            at = path.find(f"/{collection}")
            path = path[at:] if at >= 0 else path
            return f"{path}?{parts.query}" if parts.query else path
    return None


def _translate(exc: Exception, what: str) -> Exception:
    """A vendor exception as a hastack error (the message never carries credentials: sdk and
    keystoneauth messages name the URL and the status, not headers)."""
    status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
    if isinstance(exc, ks_exc.RetriableConnectionFailure | ks_exc.ConnectionError):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ks_exc.RequestTimeout | ks_exc.DiscoveryFailure):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(status, int) and status >= 500:
        return TransientError(f"{what}: {status} {exc}")
    if isinstance(status, int) and status >= 400:
        return HttpRefusal(status, f"{what}: {status} {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")
