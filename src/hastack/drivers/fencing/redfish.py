"""Redfish fencing with sushy.

Authentication is HTTP Basic on every request, never a Redfish session: a session would be
deleted by ``Sushy.__del__`` on whatever thread the garbage collector picks, which can deadlock
an in-process server and leaks sessions on a BMC when the process dies.  Each operation opens
its own client, with its HTTP timeouts sized from the operation's deadline.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import sushy
import sushy.auth
from sushy import exceptions as sushy_exc

from hastack.drivers.fencing import Deadline, FenceFailure, LinkFencer, PowerLink, Target
from hastack.ports.fencing import PowerState

_MIN_HTTP_TIMEOUT = 0.5
_RESETS = {"off": sushy.ResetType.FORCE_OFF, "on": sushy.ResetType.ON}
_STATES = {sushy.PowerState.ON: PowerState.ON, sushy.PowerState.OFF: PowerState.OFF}


class RedfishFencer(LinkFencer):
    """One ComputerSystem of a Redfish service: PowerState, and ForceOff / On resets.

    ``system`` is the system's URI (``/redfish/v1/Systems/compute01``); without it the service
    must expose exactly one system to these credentials.
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        system: str | None = None,
        verify_tls: bool = True,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError(f"url: {url!r} is not an http(s)://host[:port] URL")
        if parsed.username or parsed.password:
            raise ValueError("url: must not carry credentials (use username and password)")
        if system is not None and not system.startswith("/"):
            raise ValueError(f"system: {system!r} is not an absolute URI path")
        self.url = url.rstrip("/")
        self.system = system
        self.username = username
        self.verify_tls = verify_tls
        self._password = password
        self._secrets = (password,)
        self.name = f"redfish {self.url}{system or ''}"

    def __repr__(self) -> str:
        return f"RedfishFencer({self.url!r}, system={self.system!r}, username={self.username!r})"

    @contextlib.contextmanager
    def _connect(self, deadline: Deadline) -> Iterator[PowerLink]:
        timeout = max(deadline.remaining(), _MIN_HTTP_TIMEOUT)
        auth = sushy.auth.BasicAuth(username=self.username, password=self._password)
        with _translated():
            root = sushy.Sushy(
                self.url,
                auth=auth,
                verify=self.verify_tls,
                server_side_retries=0,  # a busy BMC is reported, the caller decides to retry
                server_side_retries_delay=0,
                read_timeout=timeout,
                connect_timeout=timeout,
            )
        try:
            with _translated():
                system = root.get_system(self.system) if self.system else root.get_system()
            yield _RedfishLink(system)
        finally:
            with contextlib.suppress(Exception):
                root._conn.close()  # the HTTP connection pool; BasicAuth holds nothing else


class _RedfishLink:
    def __init__(self, system: Any) -> None:
        self._system = system
        self._fresh = True  # get_system has just read it

    def read(self) -> PowerState:
        with _translated():
            if not self._fresh:
                self._system.refresh(force=True)
            self._fresh = False
            return _STATES.get(self._system.power_state, PowerState.UNKNOWN)

    def request(self, target: Target) -> None:
        with _translated():
            self._system.reset_system(_RESETS[target])


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn sushy's and the HTTP stack's exceptions into :class:`FenceFailure` reasons."""
    try:
        yield
    except sushy_exc.AccessError as error:
        raise FenceFailure(f"authentication failed (HTTP {error.status_code})") from None
    except sushy_exc.HTTPError as error:
        status = error.status_code
        if status == 503:
            raise FenceFailure("BMC busy (503)", transient=True) from None
        raise FenceFailure(f"Redfish error: HTTP {status}: {_first_line(error)}") from None
    except sushy_exc.ConnectionError as error:
        raise FenceFailure(f"no answer ({_first_line(error)})") from None
    except sushy_exc.SushyError as error:
        raise FenceFailure(f"Redfish error: {_first_line(error)}") from None
    except OSError as error:
        raise FenceFailure(f"no answer ({type(error).__name__}: {error})") from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
