"""The etcd store under etcd's own faults, on a real 3-member cluster (Debian ``etcd``): a dead
endpoint is skipped, the cluster losing its raft leader stalls writes only briefly, a member
killed and restarted rejoins, and nothing reachable means StoreUnavailable, quickly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.clock import SystemClock
from hastack.drivers.store.etcd import EtcdStore
from hastack.errors import LeadershipLost, StoreUnavailable
from hastack.etcd_cluster import LocalEtcdCluster
from tests.etcd_required import require_etcd

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalEtcdCluster]:
    """A cluster of its own: these tests kill members."""
    require_etcd()
    with LocalEtcdCluster(tmp_path / "etcd") as c:
        yield c


def write_soon(store: EtcdStore, key: str, limit: float = 10.0) -> float:
    """Seconds until a write to ``key`` succeeds."""
    start = time.monotonic()
    while True:
        try:
            store.put(key, "x")
            return time.monotonic() - start
        except StoreUnavailable:
            if time.monotonic() - start > limit:
                raise
            time.sleep(0.05)


def test_a_dead_endpoint_is_skipped(cluster: LocalEtcdCluster) -> None:
    store = EtcdStore(["http://127.0.0.1:9", *cluster.endpoints], SystemClock(), timeout=1.0)
    rev = store.put("/k", "v", expect=0)
    entry = store.get("/k")
    assert entry is not None and entry.revision == rev


def test_losing_the_raft_leader_stalls_writes_briefly_and_keeps_the_fence(
    cluster: LocalEtcdCluster,
) -> None:
    store = EtcdStore(cluster.endpoints, SystemClock(), timeout=1.0)
    lease = store.acquire("leader", "ctl-1", ttl=10.0)
    assert lease is not None
    store.put("/ops/1", "before", lease=lease)
    leader = cluster.leader()
    assert leader is not None
    cluster.kill(leader)
    stalled = write_soon(store, "/probe")
    assert stalled < 8.0, stalled  # measured 2-3 s: a new raft election
    # The lease lives on through the election (etcd extends leases on a leader change).
    store.put("/ops/1", "after", lease=store.renew(lease, 10.0))
    cluster.restart(leader)
    assert leader.healthy()
    entry = store.get("/ops/1")
    assert entry is not None and entry.value == "after"


def test_a_second_controller_cannot_write_with_the_first_ones_lease(
    cluster: LocalEtcdCluster,
) -> None:
    a = EtcdStore(cluster.endpoints[:1], SystemClock())
    b = EtcdStore(cluster.endpoints[1:], SystemClock())
    mine = a.acquire("leader", "ctl-a", ttl=2.0)
    assert mine is not None
    assert b.acquire("leader", "ctl-b", ttl=2.0) is None
    deadline = time.monotonic() + 5
    theirs = None
    while theirs is None and time.monotonic() < deadline:  # a stops renewing: it expires
        time.sleep(0.2)
        theirs = b.acquire("leader", "ctl-b", ttl=2.0)
    assert theirs is not None and theirs.epoch > mine.epoch
    with pytest.raises(LeadershipLost):
        a.put("/ops/x", "deposed", lease=mine)
    with pytest.raises(LeadershipLost):
        a.renew(mine, 2.0)
    b.put("/ops/x", "leader", lease=theirs)


def test_nothing_reachable_is_store_unavailable_within_the_timeout() -> None:
    store = EtcdStore(["http://127.0.0.1:9", "http://127.0.0.1:10"], SystemClock(), timeout=0.5)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="etcd unreachable"):
        store.get("/k")
    assert time.monotonic() - start < 2.0


def test_an_abandoned_lease_is_taken_as_it_ends_never_before(cluster: LocalEtcdCluster) -> None:
    """etcd's lessor frees expired leases only every 500 ms; a contender that has read
    "0 s left" twice, 1 s apart, revokes it itself.  Never before the holder's own expiry."""
    clock = SystemClock()
    for round_ in range(2):
        holder = EtcdStore(cluster.endpoints, clock)
        contender = EtcdStore(cluster.endpoints, clock)
        name = f"leader-{round_}"
        abandoned = holder.acquire(name, "ctl-a", ttl=3.0)
        assert abandoned is not None
        taken = None
        while taken is None:
            assert clock.now() < abandoned.expires_at + 2.0, "never taken"
            taken = contender.acquire(name, "ctl-b", ttl=3.0)
            if taken is None:
                time.sleep(0.05)
        at = clock.now()
        assert at >= abandoned.expires_at, "taken while the holder still believed it held it"
        assert at <= abandoned.expires_at + 0.35, at - abandoned.expires_at
        assert taken.epoch > abandoned.epoch
        with pytest.raises(LeadershipLost):
            holder.renew(abandoned, 3.0)
