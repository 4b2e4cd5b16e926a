"""One suite for every store driver (hastack.ports.store): compare-and-set, revisions, leases
and the fencing token.  sqlite runs on a real file; etcd on a real 3-member cluster of Debian's
``etcd`` started on 127.0.0.1 for the session (hastack.etcd_cluster).

Time: sqlite's leases follow a virtual clock the tests advance; etcd's follow etcd's own clock,
so for etcd "advancing" sleeps, and an expiry is awaited (etcd's lessor checks every 500 ms)
rather than asserted at the instant.
"""

from __future__ import annotations

import base64
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from hastack.clock import SystemClock, VirtualClock
from hastack.drivers.store.etcd import EtcdStore
from hastack.drivers.store.sqlite import SqliteStore
from hastack.errors import LeadershipLost, RevisionConflict
from hastack.etcd_cluster import LocalEtcdCluster
from hastack.ports.store import Store
from tests.etcd_required import require_etcd

Factory = Callable[[], Store]


class RealTime(SystemClock):
    """The wall clock, "advanced" by sleeping: etcd's leases expire in real time."""

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcdCluster]:
    require_etcd()
    with LocalEtcdCluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


def _wipe(cluster: LocalEtcdCluster) -> None:
    """Every key gone: each test starts from an empty store."""
    everything = base64.b64encode(b"\0").decode()
    r = requests.post(
        f"{cluster.endpoints[0]}/v3/kv/deleterange",
        json={"key": everything, "range_end": everything},
        timeout=5,
    )
    r.raise_for_status()


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def make(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Factory, VirtualClock | RealTime]]:
    stores: list[Store] = []
    if request.param == "sqlite":
        clock: VirtualClock | RealTime = VirtualClock()

        def factory() -> Store:
            store = SqliteStore(tmp_path / "hastack.db", clock)  # type: ignore[arg-type]
            stores.append(store)
            return store

    else:
        cluster = request.getfixturevalue("etcd_cluster")
        _wipe(cluster)
        clock = RealTime()

        def factory() -> Store:
            store = EtcdStore(cluster.endpoints, clock)
            stores.append(store)
            return store

    yield factory, clock
    for store in stores:
        store.close()


def eventually(check: Callable[[], object], clock: VirtualClock | RealTime) -> object:
    """``check()`` now under a virtual clock; within 3 s of real time under etcd's."""
    if isinstance(clock, VirtualClock):
        return check()
    deadline = time.monotonic() + 3.0
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_put_get_list_delete_with_increasing_revisions(make) -> None:
    factory, _ = make
    store = factory()
    r1 = store.put("/ops/a", "1")
    r2 = store.put("/ops/b", "2")
    r3 = store.put("/ops/a", "3")
    assert r1 < r2 < r3
    entry = store.get("/ops/a")
    assert entry is not None and (entry.value, entry.revision) == ("3", r3)
    store.put("/other/x", "x")
    assert [e.key for e in store.list("/ops/")] == ["/ops/a", "/ops/b"]
    store.delete("/ops/a")
    assert store.get("/ops/a") is None


def test_compare_and_set(make) -> None:
    factory, _ = make
    store = factory()
    rev = store.put("/k", "v1", expect=0)  # create only
    with pytest.raises(RevisionConflict):
        store.put("/k", "again", expect=0)
    with pytest.raises(RevisionConflict) as info:
        store.put("/k", "stale", expect=rev - 1)
    assert info.value.actual == rev
    new = store.put("/k", "v2", expect=rev)
    with pytest.raises(RevisionConflict):
        store.delete("/k", expect=rev)
    store.delete("/k", expect=new)
    assert store.get("/k") is None


def test_a_second_handle_sees_the_same_data(make) -> None:
    factory, _ = make
    a, b = factory(), factory()
    a.put("/shared", "from a")
    entry = b.get("/shared")
    assert entry is not None and entry.value == "from a"


def test_lease_acquire_renew_expire_and_epochs(make) -> None:
    factory, clock = make
    store = factory()
    first = store.acquire("leader", "ctl-1", ttl=2.0)
    assert first is not None
    assert store.acquire("leader", "ctl-2", ttl=2.0) is None  # held
    again = store.acquire("leader", "ctl-1", ttl=2.0)  # same holder: renewal, same epoch
    assert again is not None and again.epoch == first.epoch
    clock.advance(1.5)
    renewed = store.renew(first, ttl=2.0)
    assert renewed.expires_at > first.expires_at
    clock.advance(1.5)
    held = store.current("leader")  # renewal moved the expiry
    assert held is not None and (held.holder, held.epoch) == ("ctl-1", first.epoch)
    clock.advance(1.0)
    assert eventually(lambda: store.current("leader") is None, clock)  # expired
    with pytest.raises(LeadershipLost):
        store.renew(renewed, ttl=2.0)
    second = store.acquire("leader", "ctl-2", ttl=2.0)
    assert second is not None and second.epoch > first.epoch


def test_a_restarted_controller_does_not_inherit_its_predecessors_token(make) -> None:
    """Same name, another process (another store handle): it waits for the old lease to
    expire and gets a new epoch; otherwise a frozen predecessor would share its token."""
    factory, clock = make
    old, restarted = factory(), factory()
    first = old.acquire("leader", "ctl-1", ttl=2.0)
    assert first is not None
    assert restarted.acquire("leader", "ctl-1", ttl=2.0) is None
    clock.advance(2.5)
    assert eventually(lambda: restarted.current("leader") is None, clock)
    second = restarted.acquire("leader", "ctl-1", ttl=2.0)
    assert second is not None and second.epoch > first.epoch
    with pytest.raises(LeadershipLost):
        old.renew(first, ttl=2.0)


def test_writes_guarded_by_a_lost_lease_are_refused(make) -> None:
    """The fencing token: once another controller holds the lease, the old one cannot write."""
    factory, clock = make
    store = factory()
    old = store.acquire("leader", "ctl-1", ttl=2.0)
    assert old is not None
    store.put("/ops/1", "step 1", lease=old)
    clock.advance(2.5)
    new = eventually(lambda: store.acquire("leader", "ctl-2", ttl=2.0), clock)
    assert new is not None
    with pytest.raises(LeadershipLost):
        store.put("/ops/1", "step 2 by a deposed leader", lease=old)
    with pytest.raises(LeadershipLost):
        store.delete("/ops/1", lease=old)
    entry = store.get("/ops/1")
    assert entry is not None and entry.value == "step 1"
    store.put("/ops/1", "step 2", lease=new)


def test_release_frees_the_lease(make) -> None:
    factory, _ = make
    store = factory()
    lease = store.acquire("leader", "ctl-1", ttl=30.0)
    assert lease is not None
    store.release(lease)
    assert store.current("leader") is None
    taken = store.acquire("leader", "ctl-2", ttl=30.0)
    assert taken is not None and taken.epoch > lease.epoch


def test_concurrent_compare_and_set_has_one_winner_per_revision(make) -> None:
    factory, _ = make
    store = factory()
    rev = store.put("/counter", "0")
    wins: list[int] = []

    def contend() -> None:
        entry = store.get("/counter")
        assert entry is not None
        try:
            store.put("/counter", str(int(entry.value) + 1), expect=entry.revision)
            wins.append(1)
        except RevisionConflict:
            pass

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = store.get("/counter")
    assert entry is not None and int(entry.value) == len(wins) >= 1
    assert entry.revision > rev


def _other_process_acquires(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteStore(path, SystemClock())
    lease = store.acquire("leader", "ctl-other", ttl=60.0)
    out.put(None if lease is None else lease.epoch)
    store.close()


def test_two_processes_share_one_file(tmp_path: Path) -> None:
    """A restarted controller beside a dying one: leases hold across processes."""
    path = tmp_path / "shared.db"
    store = SqliteStore(path, SystemClock())
    mine = store.acquire("leader", "ctl-1", ttl=60.0)
    assert mine is not None
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_other_process_acquires, args=(str(path), queue))
    proc.start()
    proc.join(timeout=30)
    assert queue.get(timeout=5) is None  # the other process could not take a held lease
    store.close()
