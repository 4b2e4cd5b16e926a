"""IPMI 2.0 (RMCP+) fencing with pyghmi.

pyghmi keeps process-global session state: ``Session.__new__`` hands a new ``Command`` the
session of an earlier one with the same address and credentials (``bmc_handlers``, and
``initting_sessions`` while it logs in), and a session left logged in is kept alive by pyghmi's
I/O thread for ever.  So each operation opens its own ``Command`` and logs out at the end.

The credentials go to pyghmi as bytes, on purpose: pyghmi (1.6) files a logging-in session in
``initting_sessions`` under the credentials as given, but removes it under their encoded (bytes)
form.  Given ``str``, the entry is never removed, and every later ``Command`` for that BMC is
handed the first session ever made, logged out or broken: one failure would poison the BMC for
the life of the process.  Given bytes, both keys agree and a failed session is forgotten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as pyghmi_command

from hastack.drivers.fencing import Deadline, FenceFailure, LinkFencer, PowerLink, Target
from hastack.ports.fencing import PowerState

_AUTH_ERRORS = ("incorrect password", "unauthorized name", "unauthorized", "privilege")
_RETRY_MARGIN = 1.0  # seconds a login needs at least, when the BMC answers
_SILENT_ERRORS = ("timeout", "timed out", "no longer connected", "unable to establish")


class IpmiFencer(LinkFencer):
    """A host's BMC over IPMI-over-LAN (lanplus): chassis power status, off and on."""

    def __init__(
        self,
        address: str,
        username: str,
        password: str,
        *,
        port: int = 623,
    ) -> None:
        if not address:
            raise ValueError("address: must not be empty")
        if not 1 <= port <= 65535:
            raise ValueError(f"port: {port} is not a UDP port")
        self.address = address
        self.port = port
        self.username = username
        self._password = password
        self._secrets = (password,)
        self.name = f"ipmi {address}:{port}"

    def __repr__(self) -> str:
        return f"IpmiFencer({self.address!r}, port={self.port}, username={self.username!r})"

    @contextlib.contextmanager
    def _connect(self, deadline: Deadline) -> Iterator[PowerLink]:
        while True:
            try:
                command = self._login()
                break
            except FenceFailure as failure:
                # A new Command joins a login still pending from an earlier, timed-out call
                # and fails with it: try again with a fresh session while there is time.
                if not failure.transient or deadline.remaining() < _RETRY_MARGIN:
                    raise
        try:
            yield _IpmiLink(command)
        finally:
            # Log out, so that pyghmi neither keeps the session alive nor hands it out again.
            with contextlib.suppress(Exception):
                command.ipmi_session.logout()

    def _login(self) -> pyghmi_command.Command:
        with _translated():
            command = pyghmi_command.Command(
                bmc=self.address,
                userid=self.username.encode(),  # bytes: see the module docstring
                password=self._password.encode(),
                port=self.port,
            )
        if command.ipmi_session.broken:
            # pyghmi returns, without raising, a pending login it joined that failed meanwhile
            raise FenceFailure("no answer (session broken during login)", transient=True)
        return command


class _IpmiLink:
    def __init__(self, command: pyghmi_command.Command) -> None:
        self._command = command

    def read(self) -> PowerState:
        with _translated():
            answer = self._command.get_power()
        state = answer.get("powerstate") if isinstance(answer, dict) else None
        return {"on": PowerState.ON, "off": PowerState.OFF}.get(str(state), PowerState.UNKNOWN)

    def request(self, target: Target) -> None:
        with _translated():
            self._command.set_power(target)  # "off" is a hard power off, not ACPI soft-off


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn pyghmi's exceptions into :class:`FenceFailure` reasons."""
    try:
        yield
    except pyghmi_exc.IpmiException as error:
        reason = _reason(error)
        raise FenceFailure(reason, transient=reason.startswith(("BMC busy", "no answer"))) from None
    except (OSError, pyghmi_exc.PyghmiException) as error:
        raise FenceFailure(f"IPMI error: {type(error).__name__}: {error}") from None


def _is_busy(error: pyghmi_exc.IpmiException) -> bool:
    return getattr(error, "ipmicode", 0) == 0xC0 or "busy" in str(error).lower()


def _reason(error: pyghmi_exc.IpmiException) -> str:
    text = str(error).strip()
    lowered = text.lower()
    if _is_busy(error):
        return "BMC busy (0xC0)"
    if any(marker in lowered for marker in _AUTH_ERRORS):
        return f"authentication failed ({text})"
    if text in ("", "None") or any(marker in lowered for marker in _SILENT_ERRORS):
        return f"no answer ({text or 'session timed out'})"
    return f"IPMI error: {text}"
