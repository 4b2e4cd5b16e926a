"""Any Debian ``fence_*`` agent (fence-agents), driven through its stdin protocol.

The agent gets its options as ``key=value`` lines on stdin (``action=status``, ``ip=...``,
``password=...``), never on its command line, where every local user could read the password
in ``/proc``.  Exit codes, as the fence-agents API defines them: for ``status`` 0 is on, 2 is off
and 1 is an error; for ``off``/``on`` 0 is success.  Each run gets its own process group, killed
when the operation's deadline passes.

Limitation of the agents, not of this driver: ``fence_ipmilan`` hands the password to
``ipmitool`` with ``-P`` on ``ipmitool``'s command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping

from hastack.drivers.fencing import Deadline, FenceFailure, LinkFencer, PowerLink, Target
from hastack.ports.fencing import PowerState

AGENT_NAME = re.compile(r"^fence_[a-z0-9_]+$")
_OPTION_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
# set by the driver, or secrets that must come through ``password``
RESERVED_OPTIONS = frozenset({"action", "password", "passwd", "o"})
# Debian installs the agents in /usr/sbin, which an unprivileged PATH often lacks.
_SBIN = ("/usr/sbin", "/sbin")
_STATUS_EXIT = {0: PowerState.ON, 2: PowerState.OFF}
_KILL_WAIT = 2.0
_ERROR_PREFIX = re.compile(r"^.*?ERROR:\s*(Failed:\s*)?")  # "2026-11-21 20:25:45,945 ERROR: "
_USAGE_HINT = "Please use '-h' for usage"

OptionValue = str | int | bool


def find_agent(agent: str) -> str | None:
    """The agent's path on PATH (plus the sbin directories), or None."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    return shutil.which(agent, path=search)


class FenceAgentFencer(LinkFencer):
    """A host fenced by one fence agent (an IPMI, Redfish, PDU, ... agent) with fixed options."""

    def __init__(
        self,
        agent: str,
        options: Mapping[str, OptionValue],
        password: str | None = None,
    ) -> None:
        if not AGENT_NAME.match(agent):
            raise ValueError(f"agent: {agent!r} does not match {AGENT_NAME.pattern}")
        path = find_agent(agent)
        if path is None:
            raise ValueError(f"agent: {agent} is not installed (not found on PATH or in sbin)")
        for key, value in options.items():
            _check_option(key, value)
        if password is not None and _has_line_break(password):
            raise ValueError("password: must not contain line breaks")
        self.agent = agent
        self.path = path
        self.options = dict(options)
        self._password = password
        self._secrets = (password,) if password else ()
        self.name = _display_name(agent, self.options)

    def __repr__(self) -> str:
        return f"FenceAgentFencer({self.agent!r}, options={self.options!r})"

    def argv(self) -> list[str]:
        """The agent's command line: its path only; everything else goes on stdin."""
        return [self.path]

    def stdin_text(self, action: str) -> str:
        """The agent's input for ``action``; holds the password, so never log it."""
        lines = [f"action={action}"]
        for key, value in self.options.items():
            if value is False:
                continue  # an absent flag is off for every agent
            lines.append(f"{key}={_render(value)}")
        if self._password is not None:
            lines.append(f"password={self._password}")
        return "\n".join(lines) + "\n"

    @contextlib.contextmanager
    def _connect(self, deadline: Deadline) -> Iterator[PowerLink]:
        yield _AgentLink(self, deadline)


class _AgentLink:
    def __init__(self, fencer: FenceAgentFencer, deadline: Deadline) -> None:
        self._fencer = fencer
        self._deadline = deadline

    def read(self) -> PowerState:
        code, output = self._run("status")
        if code in _STATUS_EXIT:
            return _STATUS_EXIT[code]
        raise FenceFailure(_failure("status", code, output))

    def request(self, target: Target) -> None:
        code, output = self._run(target)
        if code != 0:
            raise FenceFailure(_failure(target, code, output))

    def _run(self, action: str) -> tuple[int, str]:
        fencer = self._fencer
        env = dict(os.environ, LC_ALL="C")
        env["PATH"] = os.pathsep.join([env.get("PATH", os.defpath), *_SBIN])
        process = subprocess.Popen(
            fencer.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills its children
        )
        try:
            out, err = process.communicate(
                fencer.stdin_text(action), timeout=self._deadline.remaining()
            )
        except subprocess.TimeoutExpired:
            _kill_group(process)
            waited = self._deadline.seconds
            raise FenceFailure(f"timeout after {waited:.1f}s: no answer from {action}") from None
        return process.returncode, f"{err}\n{out}"


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=_KILL_WAIT)


def _failure(action: str, code: int, output: str) -> str:
    """One line from the agent's output: its first error, without the logging prefix."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [
        _ERROR_PREFIX.sub("", line)
        for line in lines
        if "ERROR:" in line and _USAGE_HINT not in line
    ]
    line = (errors or lines[-1:] or ["no output"])[0]
    return f"agent {action} failed (exit {code}): {line[:200]}"


def _check_option(key: str, value: object) -> None:
    if not isinstance(key, str) or not _OPTION_NAME.match(key):
        raise ValueError(f"options: {key!r} is not a fence agent option name")
    if key in RESERVED_OPTIONS:
        raise ValueError(f"options.{key}: set by hastack (give the password as 'password')")
    if not isinstance(value, str | int | bool):
        raise ValueError(f"options.{key}: must be a string, an integer or a boolean")
    if isinstance(value, str) and _has_line_break(value):
        raise ValueError(f"options.{key}: must not contain line breaks")


def _has_line_break(text: str) -> bool:
    return any(c in text for c in "\r\n\0")


def _render(value: OptionValue) -> str:
    if value is True:
        return "1"
    return str(value)


def _display_name(agent: str, options: Mapping[str, OptionValue]) -> str:
    address = options.get("ip") or options.get("ipaddr")
    parts = [agent]
    if address:
        port = options.get("ipport")
        parts.append(f"{address}:{port}" if port else str(address))
    for key in ("systems_uri", "plug", "port"):
        if options.get(key):
            parts.append(f"{key}={options[key]}")
    return " ".join(parts)
