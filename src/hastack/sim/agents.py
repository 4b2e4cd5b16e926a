"""Many simulated node agents in one process: the real wire protocol, the real controllers.

:class:`AgentFleet` heartbeats for ``hosts`` to every controller address, spreading the beats
evenly over the interval (as independent agents' timers would be), from a few sockets; a host
for which ``alive(host)`` is false stays silent (powered off, hung, cut off).  The benchmark
uses it for 10,000 agents against one controller; it stands in for ``hastack agent`` on
simulated hosts, which have no operating system to run one.

Acks are counted, and timed by the sequence number they answer; with ``verify`` they are also
checked against the key as a real agent does (the benchmark turns that off so that the
fleet's own CPU, which a real cloud spreads over its nodes, does not starve the controller).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence

from hastack.agent.protocol import MAGIC, MAX_DATAGRAM, BadMessage, decode, encode


@dataclasses.dataclass
class FleetStats:
    sent: int = 0  # heartbeats (one per host per beat, whatever the number of controllers)
    acks: int = 0
    leader_acks: int = 0
    rtts: list[float] = dataclasses.field(default_factory=list)  # a sample, seconds


class AgentFleet:
    def __init__(
        self,
        hosts: Sequence[str],
        controllers: Sequence[tuple[str, int]],
        key: bytes,
        *,
        interval: float = 1.0,
        alive: Callable[[str], bool] = lambda _host: True,
        sockets: int = 8,
        verify: bool = True,
    ) -> None:
        self.hosts = list(hosts)
        self.controllers = list(controllers)
        self.key = key
        self.interval = interval
        self.alive = alive
        self.verify = verify
        self.stats = FleetStats()
        self.last_sent: dict[str, float] = {}  # host -> wall time of its last heartbeat
        self._boot = os.urandom(6).hex()
        self._seq = 0
        self._sent_at: dict[int, float] = {}
        self._socks = [self._socket() for _ in range(max(1, min(sockets, len(self.hosts))))]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    def start(self) -> AgentFleet:
        for target in (self._send_loop, self._receive_loop):
            t = threading.Thread(target=target, name="hastack-fleet", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> AgentFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _send_loop(self) -> None:
        n = len(self.hosts)
        start = time.monotonic()
        done = 0  # beats sent since start, over all hosts
        while not self._stop.is_set():
            due = int((time.monotonic() - start) / self.interval * n)
            while done < due and not self._stop.is_set():
                host = self.hosts[done % n]
                if self.alive(host):
                    self._beat(host, self._socks[done % len(self._socks)])
                done += 1
            self._stop.wait(0.002)

    def _beat(self, host: str, sock: socket.socket) -> None:
        self._seq += 1
        now = time.time()
        message = {"t": "hb", "host": host, "boot": self._boot, "seq": self._seq, "ts": now}
        message.update(failed={}, contact=None)
        datagram = encode(self.key, message)
        self._sent_at[self._seq] = now
        if len(self._sent_at) > 200_000:
            for seq in list(self._sent_at)[:100_000]:
                del self._sent_at[seq]
        for address in self.controllers:
            with contextlib.suppress(OSError):
                sock.sendto(datagram, address)
        self.last_sent[host] = now
        self.stats.sent += 1

    def _receive_loop(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._socks:
            selector.register(sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in selector.select(0.2):
                ready = key.fileobj
                if not isinstance(ready, socket.socket):
                    continue
                for _ in range(256):
                    try:
                        data = ready.recv(MAX_DATAGRAM)
                    except (BlockingIOError, OSError):
                        break
                    self._ack(data)
        selector.close()

    def _ack(self, data: bytes) -> None:
        self.stats.acks += 1
        if not self.verify and self.stats.acks % 10:
            return  # without verification, only one ack in ten is read (for its time)
        try:
            if self.verify:
                message = decode(self.key, data)
            elif data.startswith(MAGIC):
                message = json.loads(data[len(MAGIC) + 32 :])
            else:
                return
        except (BadMessage, ValueError):
            self.stats.acks -= 1
            return
        if message.get("leader"):
            self.stats.leader_acks += 1
        sent = self._sent_at.get(message.get("seq", -1))
        if sent is not None and len(self.stats.rtts) < 100_000:
            self.stats.rtts.append(time.time() - sent)
