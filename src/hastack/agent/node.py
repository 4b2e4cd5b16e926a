"""The node agent's loop: heartbeat every controller, run the local checks, feed the watchdog.

Three threads, so that nothing slow holds the heartbeat: the main loop (a heartbeat to every
controller each ``interval``, then the self-fence decision and the watchdog), the receiver
(acks from controllers, questions and answers between peers), and the checker (the local
checks, every ``check_interval``, each bounded by its own timeout).

Time here is the agent's monotonic clock: intervals only, never compared with a controller's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hastack.agent.checks import run_check
from hastack.agent.config import AgentConfig
from hastack.agent.protocol import MAX_DATAGRAM, BadMessage, decode, encode
from hastack.agent.watchdog import Watchdog, open_watchdog
from hastack.policy.selffence import should_feed

log = logging.getLogger(__name__)

_KEEP_SENT = 64  # heartbeats remembered for matching acks


class NodeAgent:
    def __init__(
        self,
        config: AgentConfig,
        key: bytes,
        *,
        watchdog: Watchdog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        check: Callable[[Any], str | None] = run_check,
    ) -> None:
        self.config = config
        self.key = key
        self.host = config.host
        self._monotonic = monotonic
        self._wall = wall
        self._check = check
        self.boot = os.urandom(8).hex()
        self.seq = 0
        self.started = monotonic()
        self.last_contact: float | None = None  # send time of the last heartbeat a leader acked
        self.leader: str | None = None
        self.failed: dict[str, str] = {}
        self.feeding = True
        self.feed_reason = "starting"
        self._sent: dict[int, float] = {}
        self._answers: dict[str, dict[str, float]] = {}  # nonce -> peer -> its contact age
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._controllers = config.controller_addresses()
        self._peers = config.peer_addresses()
        sf = config.self_fence
        self.watchdog = watchdog
        if sf.enabled and watchdog is None:
            self.watchdog = open_watchdog(sf.watchdog, sf.timeout, sf.soft_action)
        host, port = config.listen_address()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.5)
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    # ------------------------------------------------------------ lifecycle

    def start(self) -> NodeAgent:
        for target, name in ((self._receive, "receiver"), (self._run_checks, "checks")):
            t = threading.Thread(target=target, name=f"hastack-agent-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        main = threading.Thread(target=self.run, name="hastack-agent", daemon=True)
        main.start()
        self._threads.append(main)
        return self

    def stop(self, *, disarm: bool = True) -> None:
        """Stop; ``disarm`` the watchdog (a clean stop).  Without it, the watchdog fires."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        if self.watchdog is not None and disarm:
            self.watchdog.disarm()
        self._sock.close()

    def run(self) -> None:
        """The main loop, until :meth:`stop`."""
        interval = self.config.interval
        next_beat = self._monotonic()
        while not self._stop.is_set():
            self.beat()
            self.guard()
            next_beat += interval
            delay = next_beat - self._monotonic()
            if delay < 0:  # fell behind (a paused process): start afresh, no burst
                next_beat, delay = self._monotonic(), 0.0
            self._stop.wait(delay)

    # ------------------------------------------------------------ heartbeats

    def heartbeat(self) -> dict[str, Any]:
        now = self._monotonic()
        self.seq += 1
        with self._lock:
            self._sent[self.seq] = now
            for old in [s for s in self._sent if s <= self.seq - _KEEP_SENT]:
                del self._sent[old]
            contact = None if self.last_contact is None else round(now - self.last_contact, 3)
            failed = dict(self.failed)
        message: dict[str, Any] = {
            "t": "hb",
            "host": self.host,
            "boot": self.boot,
            "seq": self.seq,
            "ts": round(self._wall(), 3),
            "failed": failed,
            "contact": contact,
        }
        sf = self.config.self_fence
        if sf.enabled:
            message["sf"] = {
                "after": sf.after,
                "timeout": sf.timeout,
                "interval": self.config.interval,
                "peers": sorted(sf.peers),
            }
        return message

    def beat(self) -> None:
        datagram = encode(self.key, self.heartbeat())
        for address in self._controllers:
            try:
                self._sock.sendto(datagram, address)
            except OSError as exc:  # unresolvable or unreachable: that controller is silent
                log.debug("heartbeat to %s:%d: %s", *address, exc)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.1)
                continue
            try:
                reply = self.handle(decode(self.key, data))
            except BadMessage as exc:
                log.debug("dropped a datagram from %s: %s", peer[0], exc)
                continue
            if reply is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendto(reply, peer)

    def handle(self, message: Mapping[str, Any]) -> bytes | None:
        kind = message["t"]
        if kind == "ack":
            if message.get("boot") != self.boot or message["host"] != self.host:
                return None
            with self._lock:
                sent = self._sent.get(message.get("seq", -1))
                if sent is not None and message.get("leader") is True:
                    if self.last_contact is None or sent > self.last_contact:
                        self.last_contact = sent
                    self.leader = str(message.get("ctl"))
            return None
        if kind == "peer?":
            with self._lock:
                last = self.last_contact
            since = last if last is not None else self.started
            age = self._monotonic() - since
            answer = {"t": "peer", "host": self.host, "nonce": message.get("nonce"), "contact": age}
            return encode(self.key, answer)
        if kind == "peer":
            nonce, told = message.get("nonce"), message.get("contact")
            with self._lock:
                if nonce in self._answers and isinstance(told, int | float):
                    self._answers[nonce][message["host"]] = float(told)
            return None
        return None

    # ------------------------------------------------------------ self-fencing

    def guard(self) -> None:
        """Decide whether to feed the watchdog (policy.selffence.should_feed), and do it.
        Once it has stopped, it never feeds again: a self-fence, once begun, completes (an
        ack arriving in the watchdog's last seconds does not undo it)."""
        sf = self.config.self_fence
        if not sf.enabled or self.watchdog is None or not self.feeding:
            return
        now = self._monotonic()
        with self._lock:
            last = self.last_contact
        since = last if last is not None else self.started
        ages: list[float] = []
        if now - since >= sf.after and self._peers:
            ages = self.ask_peers(min(1.0, self.config.interval / 2))
        decision = should_feed(self._monotonic(), last, self.started, sf.after, ages)
        if not decision.feed:
            log.critical(
                "watchdog: %s; the watchdog resets this node within %ds",
                decision.reason,
                sf.timeout,
            )
        elif decision.reason.split()[0] != self.feed_reason.split()[0]:  # leader / no leader
            log.info("watchdog: %s", decision.reason)
        self.feeding, self.feed_reason = decision.feed, decision.reason
        if decision.feed:
            try:
                self.watchdog.feed()
            except OSError as exc:
                log.error("watchdog feed failed: %s", exc)

    def ask_peers(self, wait: float) -> list[float]:
        nonce = os.urandom(8).hex()
        with self._lock:
            self._answers = {nonce: {}}
        question = encode(self.key, {"t": "peer?", "host": self.host, "nonce": nonce})
        for address in self._peers.values():
            with contextlib.suppress(OSError):
                self._sock.sendto(question, address)
        self._stop.wait(wait)
        with self._lock:
            answers = self._answers.pop(nonce, {})
        return [age for peer, age in answers.items() if peer in self._peers]

    # ------------------------------------------------------------ local checks

    def _run_checks(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.config.check_interval)

    def check_once(self) -> dict[str, str]:
        failed = {}
        for check in self.config.checks:
            problem = self._check(check)
            if problem is not None:
                failed[check.name] = problem
        with self._lock:
            changed = failed != self.failed
            self.failed = failed
        if changed:
            log.warning("checks failing: %s", failed or "none")
        return failed
