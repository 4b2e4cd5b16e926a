"""A farm of simulated BMCs in one process: IPMI on UDP (one port per host) and one Redfish server.

Cost: one thread for all IPMI BMCs together (:class:`UdpLoop`, a ``selectors`` loop), two Redfish
accept threads plus one thread per open Redfish connection; one UDP socket (file descriptor) per
host, one small Python object per BMC and per live IPMI session (about 3-4 MiB of RSS and 40 ms
of start-up for 1,000 hosts).  :meth:`BmcFarm.start` raises the process's soft file-descriptor
limit when the hosts need more than it allows.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import re
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hastack.sim.bmc import tls
from hastack.sim.bmc.backend import BmcBackend
from hastack.sim.bmc.ipmi import Address, SimBmc
from hastack.sim.bmc.redfish import ROOT, RedfishService

log = logging.getLogger(__name__)

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FD_HEADROOM = 256
_SWEEP_INTERVAL = 5.0
_MAX_DATAGRAMS_PER_WAKEUP = 64


@dataclass(frozen=True)
class BmcEndpoint:
    """One host's BMC: its credentials and UDP port (0 = pick a free one)."""

    host: str
    username: str
    password: str = field(repr=False)  # never shown
    ipmi_port: int

    def __post_init__(self) -> None:
        if not _HOST_NAME.match(self.host):
            raise ValueError(f"host name {self.host!r} cannot be a Redfish resource id")
        if not 1 <= len(self.username.encode()) <= 16:
            raise ValueError(f"{self.host}: IPMI user names are 1 to 16 bytes")
        if len(self.password.encode()) > 20:
            raise ValueError(f"{self.host}: IPMI 2.0 passwords are at most 20 bytes")
        if ":" in self.username:
            raise ValueError(f"{self.host}: a user name with ':' cannot use HTTP Basic auth")


class BmcFarm:
    """Serve every endpoint's BMC, driven by ``backend``; usable as a context manager."""

    def __init__(
        self,
        backend: BmcBackend,
        endpoints: Sequence[BmcEndpoint],
        *,
        redfish_port: int,
        bind: str = "127.0.0.1",
        cert_dir: Path,
    ) -> None:
        hosts = [e.host for e in endpoints]
        if len(set(hosts)) != len(hosts):
            raise ValueError("duplicate host in BMC endpoints")
        self.backend = backend
        self.endpoints = tuple(endpoints)
        self.bind = bind
        self._redfish_port = redfish_port
        self._cert_dir = cert_dir
        self._ipmi: UdpLoop | None = None
        self._redfish: RedfishService | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Bind every socket and start the threads; returns when all are listening."""
        with self._lock:
            if self._ipmi is not None or self._stopped:
                raise RuntimeError("a BmcFarm starts once")
            ensure_fd_limit(len(self.endpoints))
            cert, key = tls.ensure_self_signed_cert(self._cert_dir, names=(self.bind,))
            context = tls.server_context(cert, key)
            ipmi = UdpLoop(self.backend, self.endpoints, bind=self.bind)
            ipmi.start()
            try:
                redfish = RedfishService(
                    self.backend,
                    self.endpoints,
                    ssl_context=context,
                    bind=self.bind,
                    port=self._redfish_port,
                )
                redfish.start()
            except BaseException:
                ipmi.stop()
                raise
            self._ipmi, self._redfish = ipmi, redfish

    def stop(self) -> None:
        """Close every socket and join the threads.  Idempotent."""
        with self._lock:
            self._stopped = True
            ipmi, redfish = self._ipmi, self._redfish
        if redfish is not None:
            redfish.stop()
        if ipmi is not None:
            ipmi.stop()

    def __enter__(self) -> BmcFarm:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def redfish_port(self) -> int:
        if self._redfish is None:
            raise RuntimeError("the farm is not started")
        return self._redfish.port

    @property
    def redfish_url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.bind, self.bind)
        return (
            f"https://[{host}]:{self.redfish_port}"
            if ":" in host
            else f"https://{host}:{self.redfish_port}"
        )

    def systems_uri(self, host: str) -> str:
        return f"{ROOT}/Systems/{host}"

    def ipmi_port(self, host: str) -> int:
        if self._ipmi is None:
            raise RuntimeError("the farm is not started")
        return self._ipmi.port(host)


def ensure_fd_limit(more: int) -> None:
    """Raise the soft descriptor limit, if needed, to fit ``more`` beyond those open now
    (plus headroom); the BMC farm and the probe ports both call it before opening sockets."""
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 0  # not Linux: the headroom has to do
    needed = in_use + more + _FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class UdpLoop:
    """Every BMC's UDP socket in one ``selectors`` loop on one thread.

    Replies held back for SLOW BMCs wait on a heap, so one slow BMC never delays another; idle
    IPMI sessions are swept every few seconds.
    """

    def __init__(
        self, backend: BmcBackend, endpoints: Sequence[BmcEndpoint], *, bind: str = "127.0.0.1"
    ) -> None:
        self._bind = bind
        self._bmcs = {
            e.host: SimBmc(backend, self, e.host, e.username, e.password) for e in endpoints
        }
        self._requested_ports = {e.host: e.ipmi_port for e in endpoints}
        self._selector = selectors.DefaultSelector()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._delayed: list[tuple[float, int, socket.socket, bytes, Address]] = []
        self._counter = 0
        self._delay = 0.0
        self._with_sessions: set[SimBmc] = set()
        self._next_sweep = 0.0

    def port(self, host: str) -> int:
        return int(self._bmcs[host].port)

    def start(self) -> None:
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            for host, bmc in self._bmcs.items():
                family, kind, proto, _, addr = socket.getaddrinfo(
                    self._bind, self._requested_ports[host], type=socket.SOCK_DGRAM
                )[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.bind(addr)
                    sock.setblocking(False)
                except OSError:
                    sock.close()
                    raise
                bmc.attach(sock)
                self._selector.register(sock, selectors.EVENT_READ, bmc)
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._run, name="bmc-ipmi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._selector.close()
        for bmc in self._bmcs.values():
            if bmc.sock is not None:
                bmc.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the ipmi.Loop protocol, called on the loop thread by the BMCs and their sessions

    @contextlib.contextmanager
    def reply_delay(self, seconds: float) -> Iterator[None]:
        self._delay = seconds
        try:
            yield
        finally:
            self._delay = 0.0

    def send(self, sock: socket.socket, data: bytes, addr: Address) -> None:
        if self._delay > 0:
            self._counter += 1
            due = time.monotonic() + self._delay
            heapq.heappush(self._delayed, (due, self._counter, sock, data, addr))
            return
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            log.debug("IPMI reply to %s dropped: %s", addr, exc)

    def note_sessions(self, bmc: SimBmc) -> None:
        self._with_sessions.add(bmc)

    # -- the loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            wakeup = min(
                self._delayed[0][0] if self._delayed else self._next_sweep, self._next_sweep
            )
            for key, _ in self._selector.select(max(0.0, wakeup - now)):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    self._drain(key.data)
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, sock, data, addr = heapq.heappop(self._delayed)
                self.send(sock, data, addr)
            if now >= self._next_sweep:
                self._next_sweep = now + _SWEEP_INTERVAL
                for bmc in list(self._with_sessions):
                    bmc.expire_sessions(now)
                    if not bmc.sessions:
                        self._with_sessions.discard(bmc)

    def _drain(self, bmc: SimBmc) -> None:
        assert bmc.sock is not None
        for _ in range(_MAX_DATAGRAMS_PER_WAKEUP):
            try:
                data, addr = bmc.sock.recvfrom(3000)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("BMC %s: receive failed: %s", bmc.host, exc)
                return
            try:
                bmc.datagram_received(bytearray(data), addr)
            except Exception:
                log.exception("BMC %s: failed to handle a datagram from %s", bmc.host, addr)
