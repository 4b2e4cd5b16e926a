"""Self-fencing by watchdog: when a node must stop feeding it, and when the leader may count it.

Both halves of one contract, pure (times are passed in):

**The node** (``hastack agent``) counts as *contact* an authenticated ack from a controller that
held the leader lease when it answered; the contact time is when the acknowledged heartbeat was
*sent*, which is no later than when the leader received it.  With no contact for ``after``
seconds it asks its peers (other agents) how long *they* have been without a leader:

- some peer has been without a leader for ``after / 2`` or longer: the controllers are down
  or unreachable for everyone, not this node alone; rebooting the cloud would not help, so
  the node keeps feeding its watchdog and asks again next interval.  Half, not all of
  ``after``: nodes heartbeat out of phase and may miss an ack, so when the controllers vanish
  for all, the first node to reach ``after`` finds its peers up to an interval or two behind
  it (a CI run caught a node resetting itself in exactly that case);
- otherwise (peers in contact, or no peer answers): the node is the one cut off, and it stops
  feeding the watchdog, which resets the machine within ``timeout`` seconds.

**The leader** counts "lease expired + watchdog period elapsed" as a fence proof for host H
(:func:`watchdog_proof`) only when all of this holds:

- H's agent reported a self-fence setup (``after``, ``timeout``, ``interval``);
- ``base`` is the later of the last heartbeat the leader received from H and the moment this
  leader took the lease (an ack from an earlier leader answered a heartbeat sent before that
  leader's lease ran out, which is before this one took it).  H's last contact is at most
  ``base``, so H started asking its peers by ``base + after``;
- every peer H named has been acknowledged by this leader without a gap longer than
  ``peer_gap`` (< ``after / 2``, so such a peer answers H with an age below ``after / 2``)
  from ``base + after`` or earlier until now: any peer H reached then said it was in
  contact, so H stopped feeding at its first check after ``base + after``, within one
  ``interval``;
- ``now >= base + after + interval + timeout + margin``: the watchdog has fired.

A peer the leader does not hear from, or that lost contact itself, voids the proof: H may be
alive with it on the far side of a partition.  That is why the proof is only ever the last
fence level, after the BMCs and fence agents, and is off unless configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class SelfFenceSetup:
    """What a node's agent enforces, as it reports it in every heartbeat."""

    after: float  # seconds without a leader's ack before the node considers itself cut off
    timeout: float  # the watchdog's period: reset this long after the last feed
    interval: float  # how often the agent checks (and heartbeats)
    peers: tuple[str, ...] = ()  # host names of the peers it asks


@dataclasses.dataclass(frozen=True)
class Feed:
    feed: bool
    reason: str


def should_feed(
    now: float, last_contact: float | None, started: float, after: float, peer_ages: Sequence[float]
) -> Feed:
    """The node's rule.  ``last_contact`` is when the last acknowledged heartbeat was sent
    (None: never; then the agent's start counts, so a node booting while the controllers are
    down is not reset at once); ``peer_ages`` are the answers of the peers that answered: how
    long each has been without a leader's ack."""
    since = last_contact if last_contact is not None else started
    silent = now - since
    if silent < after:
        return Feed(True, f"leader heard {silent:.1f}s ago")
    lost = [a for a in peer_ages if a >= after / 2]
    if lost:
        return Feed(
            True,
            f"no leader for {silent:.0f}s, but {len(lost)} peer(s) lost it too: "
            "the controllers are unreachable for all, not for this node",
        )
    why = "no peer answered" if not peer_ages else "every peer that answered is in contact"
    return Feed(False, f"no leader for {silent:.0f}s and {why}: self-fencing")


@dataclasses.dataclass(frozen=True)
class PeerContact:
    """The leader's view of one agent: when this leader last acknowledged it, and since when
    its acknowledgements have come without a gap longer than the allowed one."""

    last_ack: float
    run_start: float


@dataclasses.dataclass(frozen=True)
class Proof:
    proven: bool
    reason: str
    at: float | None = None  # when the proof holds (or will, if nothing changes)


def proof_time(setup: SelfFenceSetup, base: float, margin: float) -> float:
    return base + setup.after + setup.interval + setup.timeout + margin


def watchdog_proof(
    host: str,
    setup: SelfFenceSetup | None,
    *,
    last_heard: float | None,
    leader_since: float,
    peers: Mapping[str, PeerContact],
    now: float,
    peer_gap: float,
    margin: float,
) -> Proof:
    """The leader's rule (module docstring).  ``peers`` is this leader's contact record of
    the agents it acknowledged; ``peer_gap`` the largest gap between acks it tolerates in a
    run."""
    if setup is None:
        return Proof(False, f"{host}'s agent did not report a watchdog")
    if peer_gap >= setup.after / 2:
        return Proof(
            False, f"peer gap {peer_gap:g}s is not below half of {host}'s after={setup.after:g}s"
        )
    base = max(last_heard if last_heard is not None else leader_since, leader_since)
    at = proof_time(setup, base, margin)
    asked_by = base + setup.after
    for peer in setup.peers:
        contact = peers.get(peer)
        if contact is None:
            return Proof(False, f"peer {peer} not heard by this leader: {host} may be with it")
        if now - contact.last_ack > peer_gap:
            return Proof(
                False,
                f"peer {peer} silent {now - contact.last_ack:.1f}s: {host} may be with it",
            )
        if contact.run_start > asked_by:
            return Proof(
                False,
                f"peer {peer} in contact only since {contact.run_start - base:.1f}s "
                f"after {host}'s last heartbeat; {host} may have kept running",
                at,
            )
    if now < at:
        return Proof(False, f"watchdog of {host} fires by +{at - now:.1f}s", at)
    return Proof(
        True,
        f"{host} silent since {now - base:.0f}s ago: self-fenced after {setup.after:g}s "
        f"+ watchdog {setup.timeout:g}s elapsed",
        at,
    )
