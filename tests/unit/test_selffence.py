"""The self-fencing contract (policy.selffence): the node's rule and the leader's proof."""

from __future__ import annotations

import pytest

from hastack.policy.selffence import (
    PeerContact,
    Proof,
    SelfFenceSetup,
    proof_time,
    should_feed,
    watchdog_proof,
)

AFTER = 10.0
SETUP = SelfFenceSetup(after=AFTER, timeout=5.0, interval=1.0, peers=("p1", "p2"))


# ---------------------------------------------------------------- the node


def test_feeds_while_the_leader_answers() -> None:
    assert should_feed(now=105.0, last_contact=100.0, started=0.0, after=AFTER, peer_ages=[]).feed


def test_a_node_that_never_heard_a_leader_counts_from_its_start() -> None:
    assert should_feed(now=9.0, last_contact=None, started=0.0, after=AFTER, peer_ages=[]).feed
    assert not should_feed(now=11.0, last_contact=None, started=0.0, after=AFTER, peer_ages=[]).feed


def test_cut_off_alone_it_stops_feeding() -> None:
    decision = should_feed(now=111.0, last_contact=100.0, started=0.0, after=AFTER, peer_ages=[1.0])
    assert not decision.feed
    assert "in contact" in decision.reason


def test_no_peer_answering_is_being_cut_off() -> None:
    decision = should_feed(now=111.0, last_contact=100.0, started=0.0, after=AFTER, peer_ages=[])
    assert not decision.feed
    assert "no peer answered" in decision.reason


def test_when_the_peers_lost_the_controllers_too_it_keeps_running() -> None:
    decision = should_feed(
        now=111.0, last_contact=100.0, started=0.0, after=AFTER, peer_ages=[0.5, 12.0]
    )
    assert decision.feed
    assert "unreachable for all" in decision.reason


def test_peers_a_beat_behind_in_a_controller_outage_keep_it_running() -> None:
    # The controllers vanish for all; this node reaches ``after`` first, its peers heartbeat
    # out of phase and one missed an ack: they are an interval or two behind, not at ``after``.
    # Counting only peers at ``after`` reset this node (CI, test_agent).
    behind = [AFTER - 1.0, AFTER - 2.0]
    decision = should_feed(
        now=110.0, last_contact=100.0, started=0.0, after=AFTER, peer_ages=behind
    )
    assert decision.feed
    assert "unreachable for all" in decision.reason


def test_a_peer_counts_as_lost_from_half_of_after() -> None:
    def feed(age: float) -> bool:
        return should_feed(110.0, 100.0, 0.0, AFTER, [age]).feed

    assert feed(AFTER / 2)
    assert not feed(AFTER / 2 - 0.1)


# ---------------------------------------------------------------- the leader


def _proof(now: float, peers: dict[str, PeerContact], **kw: float) -> Proof:
    args = {"last_heard": 100.0, "leader_since": 0.0, "peer_gap": 3.0, "margin": 2.0, **kw}
    return watchdog_proof(
        "h",
        SETUP,
        last_heard=args["last_heard"],
        leader_since=args["leader_since"],
        peers=peers,
        now=now,
        peer_gap=args["peer_gap"],
        margin=args["margin"],
    )


def _in_contact(since: float, last: float) -> dict[str, PeerContact]:
    return {"p1": PeerContact(last, since), "p2": PeerContact(last, since)}


def test_proof_once_the_watchdog_period_has_certainly_elapsed() -> None:
    at = proof_time(SETUP, 100.0, 2.0)
    assert at == 100.0 + 10.0 + 1.0 + 5.0 + 2.0
    early = _proof(at - 0.1, _in_contact(0.0, at - 0.5))
    assert not early.proven and early.at == at
    late = _proof(at, _in_contact(0.0, at - 0.5))
    assert late.proven


def test_no_setup_no_proof() -> None:
    proof = watchdog_proof(
        "h", None, last_heard=0.0, leader_since=0.0, peers={}, now=1e9, peer_gap=1, margin=0
    )
    assert not proof.proven
    assert "did not report a watchdog" in proof.reason


@pytest.mark.parametrize(
    ("peers", "why"),
    [
        ({"p1": PeerContact(200.0, 0.0)}, "p2 not heard"),
        ({"p1": PeerContact(200.0, 0.0), "p2": PeerContact(150.0, 0.0)}, "p2 silent"),
        ({"p1": PeerContact(200.0, 0.0), "p2": PeerContact(200.0, 115.0)}, "in contact only"),
    ],
)
def test_a_peer_out_of_contact_voids_the_proof(peers: dict[str, PeerContact], why: str) -> None:
    """The node may be alive beside that peer, both cut off from the leader: no proof, ever."""
    proof = _proof(200.0, peers)
    assert not proof.proven
    assert why in proof.reason


def test_a_peer_whose_run_began_before_the_node_asked_is_enough() -> None:
    peers = {"p1": PeerContact(200.0, 110.0), "p2": PeerContact(199.0, 0.0)}
    assert _proof(200.0, peers).proven


def test_a_new_leader_counts_from_when_it_took_the_lease() -> None:
    """An earlier leader may have acked the node until its lease ran out: base moves up."""
    peers = _in_contact(150.0, 199.9)
    proof = _proof(160.0, peers, leader_since=150.0)
    assert not proof.proven
    assert proof.at == proof_time(SETUP, 150.0, 2.0)
    assert _proof(
        proof_time(SETUP, 150.0, 2.0), _in_contact(150.0, 168.0), leader_since=150.0
    ).proven


def test_a_peer_gap_not_below_half_of_after_is_refused() -> None:
    # a peer in contact must answer with an age below after/2, or the node would take it for
    # one that lost the controllers too and keep running
    proof = _proof(1e6, _in_contact(0.0, 1e6), peer_gap=AFTER / 2)
    assert not proof.proven
    assert "peer gap" in proof.reason
    assert _proof(1e6, _in_contact(0.0, 1e6), peer_gap=AFTER / 2 - 0.5).proven
