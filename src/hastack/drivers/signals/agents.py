"""The AGENT signal: heartbeats from ``hastack agent`` on each node, over UDP, signed.

Every controller listens (leader or not), so a new leader already knows who is alive; only a
controller holding the lease acknowledges as leader, and a node's agent counts only those acks
as contact with the cluster (:mod:`hastack.policy.selffence`).  One thread receives, checks the
signature, the sequence and the time stamp, records the host as heard *now* on the controller's
clock (the agent's clock is only used against replays), and answers at once.

Why UDP: measured by ``bench/agents.py`` (``make bench``), one thread here takes 10,000 agents
each heartbeating once a second with a few per cent of lost datagrams at most, while an HTTP
request or an etcd lease keep-alive per heartbeat costs ten to a hundred times more CPU per
beat; see docs/own-ha.md.  A heartbeat is one datagram each way and nothing is kept per host
but the last one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from hastack.agent.protocol import MAX_DATAGRAM, REPLAY_WINDOW, BadMessage, decode, encode
from hastack.clock import Clock
from hastack.domain.hosts import Reading, Signal
from hastack.policy.detection import DetectionProfile, agent_reading
from hastack.policy.selffence import PeerContact, Proof, SelfFenceSetup, watchdog_proof
from hastack.ports.signals import Leadership

log = logging.getLogger(__name__)

DEFAULT_PORT = 7420


def _follower() -> Leadership:
    return Leadership(False)


@dataclasses.dataclass
class AgentState:
    """The last word of one host's agent, as this controller heard it."""

    boot: str
    seq: int
    last_seen: float
    failed: dict[str, str]
    contact: float | None  # the agent's own: seconds since its last leader ack
    setup: SelfFenceSetup | None
    last_ack: float = 0.0  # when this controller last acknowledged it as leader
    run_start: float = 0.0  # start of the current run of acks without a long gap
    ack_epoch: int = -1


@dataclasses.dataclass
class ListenerStats:
    received: int = 0
    accepted: int = 0
    dropped: int = 0  # not ours, bad signature, replayed, stale
    acked: int = 0


class AgentListener:
    """The controller's UDP endpoint for agents, and the AGENT :class:`SignalSource`."""

    signal = Signal.AGENT

    def __init__(
        self,
        address: tuple[str, int],
        key: bytes,
        clock: Clock,
        profile: DetectionProfile,
        *,
        name: str,
        peer_gap: float = 5.0,
        leadership: Callable[[], Leadership] = _follower,
    ) -> None:
        self.key = key
        self.clock = clock
        self.profile = profile
        self.name = name
        self.peer_gap = peer_gap
        self.leadership = leadership
        self.stats = ListenerStats()
        self._agents: dict[str, AgentState] = {}
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # absorb bursts: 10,000 agents start at once
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(address)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> AgentListener:
        self._thread = threading.Thread(target=self._serve, name="hastack-agents", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> AgentListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ receiving

    def _serve(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("agent socket: %s", exc)
                continue
            self.stats.received += 1
            try:
                reply = self.handle(data, self.clock.now())
            except BadMessage as exc:
                self.stats.dropped += 1
                log.debug("dropped a datagram from %s: %s", peer[0], exc)
                continue
            if reply is not None:
                with contextlib.suppress(OSError):  # the agent's problem, it will retry
                    sock.sendto(reply, peer)
                    self.stats.acked += 1

    def handle(self, data: bytes, now: float) -> bytes | None:
        """One datagram in, the ack out (None: nothing to answer).  Raises BadMessage."""
        message = decode(self.key, data)
        if message["t"] != "hb":
            raise BadMessage(f"unexpected message type {message['t']!r}")
        host, boot, seq, ts = (
            message["host"],
            message.get("boot"),
            message.get("seq"),
            message.get("ts"),
        )
        if not isinstance(boot, str) or not isinstance(seq, int) or not isinstance(ts, int | float):
            raise BadMessage(f"heartbeat of {host} without boot/seq/ts")
        if abs(ts - now) > REPLAY_WINDOW:
            if host not in self._warned:
                self._warned.add(host)
                log.warning(
                    "%s: heartbeat stamped %.0fs off our clock: dropped (NTP?)", host, ts - now
                )
            raise BadMessage("time stamp out of the replay window")
        lead = self.leadership()
        with self._lock:
            state = self._agents.get(host)
            if state is not None and state.boot == boot and seq <= state.seq:
                raise BadMessage(f"{host}: sequence {seq} already seen")
            setup = _setup(message.get("sf"))
            contact = message.get("contact")
            contact = float(contact) if isinstance(contact, int | float) else None
            failed = message.get("failed") or {}
            if failed:
                failed = (
                    {str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {}
                )
            if state is None:
                state = self._agents[host] = AgentState(boot, seq, now, failed, contact, setup)
            else:
                state.boot, state.seq, state.last_seen = boot, seq, now
                state.failed, state.contact, state.setup = failed, contact, setup
            if lead.leader:
                broken = (
                    state.ack_epoch != lead.epoch
                    or now - state.last_ack > self.peer_gap
                    or contact is None
                    or contact > self.peer_gap
                )
                if broken:
                    state.run_start = now
                state.last_ack, state.ack_epoch = now, lead.epoch
        self.stats.accepted += 1
        ack = {"t": "ack", "host": host, "boot": boot, "seq": seq, "ctl": self.name}
        ack.update(leader=lead.leader, epoch=lead.epoch)
        return encode(self.key, ack)

    # ------------------------------------------------------------ the signal

    def read(self, hosts: Collection[str], now: float) -> Mapping[str, Reading]:
        """A reading for every host in ``hosts`` that has an agent; hosts never heard from by
        this controller have no reading (no data)."""
        out: dict[str, Reading] = {}
        with self._lock:
            agents = self._agents
            for host in hosts:
                state = agents.get(host)
                if state is None:
                    continue
                reading = agent_reading(state.last_seen, now, self.profile)
                if state.failed and reading.lost is False:
                    failing = ", ".join(f"{k} ({v})" for k, v in sorted(state.failed.items()))
                    reading = dataclasses.replace(
                        reading, detail=f"{reading.detail}; failing: {failing}"
                    )
                out[host] = reading
        return out

    def status(self, host: str) -> AgentState | None:
        with self._lock:
            state = self._agents.get(host)
            return dataclasses.replace(state, failed=dict(state.failed)) if state else None

    def hosts(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    def proof(self, host: str, now: float, *, margin: float) -> Proof:
        """Whether ``host`` has certainly reset itself by watchdog (policy.selffence)."""
        lead = self.leadership()
        if not lead.leader:
            return Proof(False, "this controller does not hold the lease")
        with self._lock:
            state = self._agents.get(host)
            setup = state.setup if state else None
            last = state.last_seen if state else None
            peers = {}
            for peer in setup.peers if setup else ():
                p = self._agents.get(peer)
                if p is not None and p.ack_epoch == lead.epoch:
                    peers[peer] = PeerContact(p.last_ack, p.run_start)
        return watchdog_proof(
            host,
            setup,
            last_heard=last,
            leader_since=lead.since,
            peers=peers,
            now=now,
            peer_gap=self.peer_gap,
            margin=margin,
        )


def _setup(raw: Any) -> SelfFenceSetup | None:
    if raw is None or not isinstance(raw, dict):
        return None
    try:
        peers = raw.get("peers") or ()
        return SelfFenceSetup(
            after=float(raw["after"]),
            timeout=float(raw["timeout"]),
            interval=float(raw["interval"]),
            peers=tuple(str(p) for p in peers),
        )
    except (KeyError, TypeError, ValueError):
        raise BadMessage("malformed self-fence setup") from None
