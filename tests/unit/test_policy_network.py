"""Network HA planning over plain data: routers and DHCP off dead agents, rebalance, HA checks."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.network import AgentInfo, AgentKind, AgentMode, NetworkInfo, RouterInfo
from hastack.policy.network import ha_anomalies, plan_dhcp, plan_rebalance, plan_router_moves


def l3(i: int, *, alive: bool = True, up: bool = True, az: str = "az1",
       mode: AgentMode = AgentMode.LEGACY) -> AgentInfo:  # fmt: skip
    return AgentInfo(f"l3-{i:02d}", AgentKind.L3, f"net{i:02d}", alive, up, az, mode)


def dhcp(i: int, *, alive: bool = True, az: str = "az1") -> AgentInfo:
    return AgentInfo(f"dhcp-{i:02d}", AgentKind.DHCP, f"net{i:02d}", alive, True, az)


def router(i: int, *agents: str, **kw: object) -> RouterInfo:
    return RouterInfo(f"r{i:04d}", f"router-{i}", tuple(agents), **kw)  # type: ignore[arg-type]


def test_thousand_routers_off_a_dead_agent_spread_evenly() -> None:
    agents = [l3(0, alive=False)] + [l3(i) for i in range(1, 21)]
    routers = [router(i, "l3-00") for i in range(1000)]
    plan = plan_router_moves(routers, agents, {"l3-00"})
    assert len(plan.moves) == 1000 and not plan.stuck
    per_target = collections.Counter(m.target for m in plan.moves)
    assert set(per_target) == {f"l3-{i:02d}" for i in range(1, 21)}
    assert max(per_target.values()) - min(per_target.values()) <= 1
    assert all(m.source == "l3-00" for m in plan.moves)


def test_targets_are_usable_mode_compatible_and_prefer_the_az() -> None:
    agents = [
        l3(0, alive=False, az="az1"),
        l3(1, az="az2"),
        l3(2, az="az1", up=False),  # disabled by an operator
        l3(3, az="az1", mode=AgentMode.DVR),  # compute-node DVR: never hosts a legacy router
        l3(4, az="az1"),
        l3(5, az="az1", mode=AgentMode.DVR_SNAT),
    ]
    plan = plan_router_moves([router(1, "l3-00"), router(2, "l3-00")], agents, {"l3-00"})
    assert [m.target for m in plan.moves] == ["l3-04", "l3-05"]
    assert "same AZ" in plan.moves[0].reason
    hinted = plan_router_moves([router(3, "l3-00", availability_zones=("az2",))], agents, {"l3-00"})
    assert hinted.moves[0].target == "l3-01" and "AZ hints" in hinted.moves[0].reason


def test_dvr_snat_moves_to_dvr_snat_and_compute_dvr_bindings_stay() -> None:
    agents = [
        l3(0, alive=False, mode=AgentMode.DVR_SNAT),
        l3(1, mode=AgentMode.DVR_SNAT),
        l3(2, alive=False, mode=AgentMode.DVR),
        l3(3, mode=AgentMode.LEGACY),
    ]
    r = router(1, "l3-00", "l3-02", distributed=True)
    plan = plan_router_moves([r], agents, {"l3-00", "l3-02"})
    assert [(m.source, m.target) for m in plan.moves] == [("l3-00", "l3-01")]
    assert "SNAT" in plan.moves[0].reason


def test_ha_router_regains_redundancy_and_stuck_is_reported() -> None:
    agents = [l3(0, alive=False), l3(1), l3(2)]
    r = router(1, "l3-00", "l3-01", ha=True)
    plan = plan_router_moves([r], agents, {"l3-00"})
    assert [(m.source, m.target) for m in plan.moves] == [("l3-00", "l3-02")]
    full = router(2, "l3-00", "l3-01", "l3-02", ha=True)
    plan = plan_router_moves([full], agents, {"l3-00"})
    assert not plan.moves and plan.stuck and "no usable agent" in plan.stuck[0].reason


def test_dhcp_keeps_the_target_number_of_live_agents() -> None:
    agents = [dhcp(0, alive=False), dhcp(1), dhcp(2), dhcp(3)]
    nets = [NetworkInfo(f"n{i}", f"net-{i}", ("dhcp-00", "dhcp-01")) for i in range(6)]
    plan = plan_dhcp(nets, agents, {"dhcp-00"}, target=2)
    assert len(plan.moves) == 6 and all(m.source == "dhcp-00" for m in plan.moves)
    assert {m.target for m in plan.moves} <= {"dhcp-02", "dhcp-03"}
    counts = collections.Counter(m.target for m in plan.moves)
    assert abs(counts["dhcp-02"] - counts["dhcp-03"]) <= 1
    # already enough live agents: the dead binding is only removed
    plan = plan_dhcp([NetworkInfo("n", "n", ("dhcp-00", "dhcp-01"))], agents, {"dhcp-00"}, 1)
    assert [(m.source, m.target) for m in plan.moves] == [("dhcp-00", None)]


def test_rebalance_evens_out_within_each_az() -> None:
    agents = [l3(1), l3(2), l3(3), l3(4, az="az2"), l3(5, az="az2")]
    routers = [router(i, "l3-01") for i in range(10)] + [router(100 + i, "l3-04") for i in range(4)]
    plan = plan_rebalance(routers, agents)
    assert "spread afterwards 1" in plan.verdict or "spread afterwards 0" in plan.verdict
    az2 = [m for m in plan.moves if m.source == "l3-04"]
    assert len(az2) == 2 and all(m.target == "l3-05" for m in az2)


def test_ha_anomalies() -> None:
    agents = {a.id: a for a in (l3(0, alive=False), l3(1), l3(2))}
    routers = [
        router(1, "l3-01", "l3-02", ha=True, ha_states={"l3-01": "active", "l3-02": "standby"}),
        router(2, "l3-01", "l3-02", ha=True, ha_states={"l3-01": "active", "l3-02": "active"}),
        router(3, "l3-00", "l3-01", ha=True, ha_states={"l3-00": "active", "l3-01": "standby"}),
    ]
    found = dict(ha_anomalies(routers, agents))
    assert set(found) == {"r0002", "r0003"}
    assert "split brain" in found["r0002"] and "no active" in found["r0003"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.booleans(),
            st.sampled_from(["az1", "az2"]),
            st.sampled_from(list(AgentMode)[:3]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11), st.booleans()), max_size=60),
    st.sets(st.integers(0, 11), max_size=4),
)
def test_every_dead_binding_is_moved_once_or_stuck_and_targets_are_valid(
    specs: list[tuple[bool, bool, str, AgentMode]],
    bindings: list[tuple[int, int, bool]],
    dead_idx: set[int],
) -> None:
    agents = [l3(i, alive=a, up=u, az=z, mode=m) for i, (a, u, z, m) in enumerate(specs)]
    ids = [a.id for a in agents]
    dead = {ids[i] for i in dead_idx if i < len(ids)}
    routers = []
    for n, (x, y, ha) in enumerate(bindings):
        hosts = tuple(
            dict.fromkeys([ids[x % len(ids)], ids[y % len(ids)]] if ha else [ids[x % len(ids)]])
        )
        routers.append(router(n, *hosts, ha=ha))
    plan = plan_router_moves(routers, agents, dead)
    by_id = {a.id: a for a in agents}
    wanted = collections.Counter(
        (r.id, s)
        for r in routers
        for s in r.agents
        if s in dead and not (r.distributed and by_id[s].mode == AgentMode.DVR)
    )
    got = collections.Counter((m.subject, m.source) for m in plan.moves)
    stuck = collections.Counter(s.subject for s in plan.stuck)
    for (rid, source), n in wanted.items():
        assert got[(rid, source)] + stuck[rid] >= n
    assert all(v == 1 for v in got.values()), "each dead binding moved once"
    for m in plan.moves:
        target = by_id[m.target or ""]
        assert target.usable and target.id not in dead
        assert target.mode in (AgentMode.LEGACY, AgentMode.DVR_SNAT)
        r = next(r for r in routers if r.id == m.subject)
        assert target.id not in r.agents, "never a second binding on the same agent"
    targets = [(m.subject, m.target) for m in plan.moves]
    assert len(targets) == len(set(targets))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=0, max_size=80), st.integers(2, 8))
def test_rebalance_leaves_a_spread_of_at_most_one(placement: list[int], n_agents: int) -> None:
    agents = [l3(i) for i in range(n_agents)]
    routers = [router(k, f"l3-{i % n_agents:02d}") for k, i in enumerate(placement)]
    plan = plan_rebalance(routers, agents)
    where = {r.id: r.agents[0] for r in routers}
    for m in plan.moves:
        assert where[m.subject] == m.source
        where[m.subject] = m.target or ""
    counts = collections.Counter(where.values())
    loads = [counts.get(a.id, 0) for a in agents]
    assert max(loads) - min(loads) <= 1
    assert len({m.subject for m in plan.moves}) == len(plan.moves), "each router moves once"
