"""TCP reachability from the controller: one connect per host per read, all hosts at once.

A probe succeeds when a TCP connect to the host's target (an address and a port that the host's
OS answers on, sshd's 22 for instance) completes within the timeout; the connection is then
dropped with a reset (SO_LINGER 0, as HAProxy's health checks do), so that tens of thousands of
probes a minute leave no TIME_WAIT sockets behind.  :class:`TcpProbe` counts each host's
consecutive failures across reads; ``probe_failures`` of them in a row make the signal lost
(:func:`~hastack.policy.detection.probe_reading`).

Cost: non-blocking sockets on one selector, in the calling thread.  At most ``max_open`` sockets
(and never more than half the soft descriptor limit) are open at once; the others wait for a
slot, so one read takes at most ``ceil(hosts / max_open) * timeout`` plus the connect work
(about 30 µs of CPU per host).  Host names (not IP literals) are resolved once per read, with
the system resolver, in the calling thread.

What counts as what: a refused connect, an unreachable network or host, a timeout, any error
about the connection is a failed probe (the errno is in the reading's detail); the controller's
own shortage (descriptors, ephemeral ports, memory) or a name that does not resolve is no data
(``lost=None``, the count unchanged): it says nothing about the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import resource
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any

from hastack.domain.hosts import Reading, Signal
from hastack.policy.detection import DetectionProfile, probe_reading

log = logging.getLogger(__name__)

MAX_OPEN = 1000  # sockets open at once, by default
_LINGER_RESET = struct.pack("ii", 1, 0)
_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
# the controller's own shortage, not the host's fault (EAGAIN / EADDRNOTAVAIL: no local port)
_LOCAL_ERRNOS = frozenset(
    {*_NO_DESCRIPTORS, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN, errno.EADDRNOTAVAIL}
)

SockAddr = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class _Outcome:
    ok: bool | None  # None: not probed (a local problem)
    detail: str = ""


@dataclasses.dataclass
class _Attempt:
    host: str
    sock: socket.socket
    deadline: float


class TcpProbe:
    """The PROBE signal: TCP connects to ``targets`` (host -> (address, port)).

    ``read`` is meant to be called from one thread (the engine's); it never raises.
    """

    signal = Signal.PROBE

    def __init__(
        self,
        targets: Mapping[str, tuple[str, int]],
        profile: DetectionProfile,
        *,
        timeout: float = 1.0,
        max_open: int = MAX_OPEN,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout: must be positive, not {timeout!r}")
        if max_open < 1:
            raise ValueError(f"max_open: must be at least 1, not {max_open!r}")
        for host, (address, port) in targets.items():
            if not address:
                raise ValueError(f"{host}: probe address must not be empty")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"{host}: probe port {port!r} is not a TCP port")
        self.profile = profile
        self.timeout = timeout
        self.max_open = max_open
        self._targets = {h: (a, p) for h, (a, p) in targets.items()}
        self._literal = {a: _literal_family(a) for a, _ in self._targets.values()}
        self._failures: dict[str, int] = {}

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        """One probe of every host in ``hosts`` that has a target; others are skipped."""
        wanted = [h for h in dict.fromkeys(hosts) if h in self._targets]
        try:
            outcomes = self._probe_all(wanted)
        except Exception as exc:  # the port's contract: never raise
            log.exception("TCP probe: unexpected failure")
            why = _Outcome(None, f"not probed: {type(exc).__name__}: {exc}")
            outcomes = dict.fromkeys(wanted, why)
        return {h: self._reading(h, outcomes[h], now) for h in wanted}

    def _reading(self, host: str, outcome: _Outcome, now: float) -> Reading:
        if outcome.ok is None:
            return Reading(Signal.PROBE, None, now, outcome.detail)
        if outcome.ok:
            self._failures[host] = 0
            return probe_reading(0, now, self.profile)
        failures = self._failures.get(host, 0) + 1
        self._failures[host] = failures
        reading = probe_reading(failures, now, self.profile)
        address, port = self._targets[host]
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        last = f"last {where}: {outcome.detail}"
        if reading.lost:
            detail = f"{reading.detail}, {last}"
        else:
            detail = (
                f"{reading.detail} ({failures} of {self.profile.probe_failures} failed, {last})"
            )
        return dataclasses.replace(reading, detail=detail)

    # -- one pass over all hosts, in the calling thread

    def _probe_all(self, hosts: list[str]) -> dict[str, _Outcome]:
        outcomes: dict[str, _Outcome] = {}
        addresses = self._resolve({self._targets[h][0] for h in hosts})
        queue = deque(hosts)
        window = self._window()
        inflight: dict[int, _Attempt] = {}  # by descriptor, in start (so deadline) order
        selector = selectors.DefaultSelector()
        try:
            while queue or inflight:
                while queue and len(inflight) < window:
                    host = queue.popleft()
                    outcome = self._start(host, addresses, selector, inflight)
                    if outcome is _RETRY:
                        window = max(1, len(inflight))  # out of descriptors: wait for ours
                        queue.appendleft(host)
                        break
                    if outcome is not None:
                        outcomes[host] = outcome
                if inflight:
                    self._wait(selector, inflight, outcomes)
        finally:
            for attempt in inflight.values():
                attempt.sock.close()
            selector.close()
        return outcomes

    def _start(
        self,
        host: str,
        addresses: Mapping[str, tuple[int, SockAddr] | str],
        selector: selectors.BaseSelector,
        inflight: dict[int, _Attempt],
    ) -> _Outcome | None:
        """Open and start one connect: its outcome if already known, None if in flight."""
        address, port = self._targets[host]
        resolved = addresses[address]
        if isinstance(resolved, str):
            return _Outcome(None, f"not probed: cannot resolve {address}: {resolved}")
        family, sockaddr = resolved
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            if exc.errno in _NO_DESCRIPTORS and inflight:
                return _RETRY
            return _error(exc.errno)
        try:
            sock.setblocking(False)
            code = sock.connect_ex((sockaddr[0], port, *sockaddr[2:]))
            if code == errno.EINPROGRESS:
                selector.register(sock, selectors.EVENT_WRITE, host)
                inflight[sock.fileno()] = _Attempt(host, sock, time.monotonic() + self.timeout)
                return None
        except OSError as exc:
            code = exc.errno or errno.EIO
        _close(sock, connected=code == 0)
        return _Outcome(True) if code == 0 else _error(code)

    def _wait(
        self,
        selector: selectors.BaseSelector,
        inflight: dict[int, _Attempt],
        outcomes: dict[str, _Outcome],
    ) -> None:
        """Wait for connects to finish (or the oldest to time out) and record them."""
        oldest = next(iter(inflight.values()))
        for key, _ in selector.select(max(0.0, oldest.deadline - time.monotonic())):
            attempt = inflight.pop(key.fd)
            selector.unregister(attempt.sock)
            try:
                code = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as exc:
                code = exc.errno or errno.EIO
            _close(attempt.sock, connected=code == 0)
            outcomes[attempt.host] = _Outcome(True) if code == 0 else _error(code)
        now = time.monotonic()
        while inflight:
            fd, attempt = next(iter(inflight.items()))
            if attempt.deadline > now:
                break
            del inflight[fd]
            selector.unregister(attempt.sock)
            attempt.sock.close()
            outcomes[attempt.host] = _Outcome(False, f"no answer within {self.timeout:g}s")

    def _window(self) -> int:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_open
        return max(1, min(self.max_open, soft // 2))

    def _resolve(self, addresses: set[str]) -> dict[str, tuple[int, SockAddr] | str]:
        """Each address's (family, sockaddr), or why it did not resolve."""
        out: dict[str, tuple[int, SockAddr] | str] = {}
        for address in addresses:
            family = self._literal.get(address)
            if family is not None:
                out[address] = (family, (address, 0))
                continue
            try:
                info = socket.getaddrinfo(address, 0, type=socket.SOCK_STREAM)[0]
            except (OSError, UnicodeError) as exc:
                out[address] = str(exc)
                continue
            out[address] = (info[0], info[4])
        return out


_RETRY = _Outcome(None, "retry")  # a sentinel: no descriptor now, try again when one frees


def _literal_family(address: str) -> int | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _error(code: int | None) -> _Outcome:
    code = code or errno.EIO
    name = errno.errorcode.get(code, str(code))
    text = f"{os.strerror(code)} ({name})"
    if code in _LOCAL_ERRNOS:
        return _Outcome(None, f"not probed: {text}")
    return _Outcome(False, text)


def _close(sock: socket.socket, *, connected: bool) -> None:
    if connected:
        with contextlib.suppress(OSError):  # the peer may be gone: a plain close will do
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()
