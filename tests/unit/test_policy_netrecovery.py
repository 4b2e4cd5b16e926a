"""decide_network(): network HA step by step, over plain data."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.hosts import HostState
from hastack.domain.network import AgentInfo, AgentKind, AgentMode, NetworkInfo, RouterInfo
from hastack.engine.journal import Operation, OpState, Step, StepState
from hastack.policy import netrecovery as nr
from hastack.policy import recovery as rec
from hastack.policy.recovery import Outcome, Run
from hastack.ports.network import ROUTER_GATEWAY, ROUTER_INTERFACE, PortState, RouterHealth

NOW = 1000.0
S = nr.NetSettings(stale_after=10, agent_grace=60, verify_timeout=30, retries=1)


def l3(i: int, *, alive: bool = True, beat: float = NOW, zone: str = "nova") -> AgentInfo:
    return AgentInfo(f"l3-{i}", AgentKind.L3, f"net{i}", alive, True, zone, AgentMode.LEGACY, beat)


def dhcp(i: int, *, alive: bool = True, beat: float = NOW) -> AgentInfo:
    return AgentInfo(f"dhcp-{i}", AgentKind.DHCP, f"net{i}", alive, True, "nova", heartbeat_at=beat)


def snap(agents: list[AgentInfo], **kw: object) -> nr.NetSnapshot:
    base: dict[str, object] = {"now": NOW, "agents": {a.id: a for a in agents}, "agents_ok": True}
    base.update(kw)
    return nr.NetSnapshot(**base)  # type: ignore[arg-type]


def routers_on(agent: str, n: int, *, ha: bool = False) -> list[RouterInfo]:
    return [RouterInfo(f"r{k}", f"router-{k}", (agent,), ha=ha) for k in range(n)]


def decide(s: nr.NetSnapshot, ops: list[Operation], running: set[tuple[str, str]] | None = None):
    return nr.decide_network(s, ops, running or set(), S, {})


def apply(ops: list[Operation], d: nr.NetDecision) -> list[Operation]:
    by_id = {op.id: op for op in ops}
    by_id.update({op.id: op for op in d.writes})
    return list(by_id.values())


def at(s: nr.NetSnapshot, t: float, **kw: object) -> nr.NetSnapshot:
    """``s`` at ``NOW + t``: live agents have kept heartbeating, dead ones have not."""
    agents = {
        i: dataclasses.replace(a, heartbeat_at=NOW + t) if a.alive else a
        for i, a in s.agents.items()
    }
    return dataclasses.replace(s, now=NOW + t, agents=agents, **kw)  # type: ignore[arg-type]


def healthy(rid: str, host: str) -> RouterHealth:
    ports = (
        PortState("p1", ROUTER_INTERFACE, "ACTIVE", host),
        PortState("p2", ROUTER_GATEWAY, "ACTIVE", host),
    )
    return RouterHealth(rid, ports, (("f1", "ACTIVE"),))


DEAD = l3(1, alive=False, beat=NOW - 30)
LIVE = [l3(2), l3(3), l3(4)]


def open_plan(host_state: HostState = HostState.FENCED, n: int = 3, **kw: object):
    agents = [DEAD, *LIVE]
    s = snap(agents, host_states={"net1": host_state}, routers=routers_on("l3-1", n), **kw)
    d = decide(s, [])
    return s, d, apply([], d)


def test_an_agent_down_with_its_host_up_is_not_dead_before_the_grace() -> None:
    s = snap([DEAD, *LIVE], host_states={"net1": HostState.OK})
    d = decide(s, [])
    assert d.writes == () and d.runs == ()
    assert "3/4 L3/DHCP agents up" in d.verdict


def test_agent_only_failure_counts_as_dead_after_the_grace() -> None:
    gone = l3(1, alive=False, beat=NOW - 61)
    d = decide(snap([gone, *LIVE], host_states={"net1": HostState.OK}), [])
    assert len(d.writes) == 1
    assert "agent-only failure" in d.writes[0].log[0]


def test_plan_waits_for_the_routers_then_spreads_them_least_loaded() -> None:
    s = snap([DEAD, *LIVE], host_states={"net1": HostState.FAILED})
    d = decide(s, [])
    (op,) = d.writes
    assert op.kind == nr.RECOVER_AGENT and op.step(nr.PLAN).state == StepState.PENDING
    assert nr.reads_needed([op], set()).routers
    d2 = decide(dataclasses.replace(s, routers=routers_on("l3-1", 6)), [op])
    (op2,) = d2.writes
    moves = [st for st in op2.steps if st.kind == nr.ROUTER]
    assert len(moves) == 6
    targets = [m.params["target"] for m in moves]
    assert sorted(targets.count(a.id) for a in LIVE) == [2, 2, 2]


def test_legacy_moves_wait_for_a_fence_proof() -> None:
    s, d, ops = open_plan(HostState.FAILED)
    assert d.runs == ()
    steps = [s for s in ops[0].steps if s.kind == nr.ROUTER]
    assert all(st.result.startswith("waiting: net1 is not proven off") for st in steps)
    assert "waiting for a fence proof" in d.verdict
    d2 = decide(dataclasses.replace(s, host_states={"net1": HostState.FENCED}), ops)
    assert len(d2.runs) == 3
    assert all(
        r.action == nr.MOVE_ROUTER and r.args["proof"] == "net1 fenced (fenced)" for r in d2.runs
    )


def test_bmc_power_off_is_a_proof_too() -> None:
    _s, d, _ops = open_plan(HostState.FAILED, power_off=frozenset({"net1"}))
    assert {r.args["proof"] for r in d.runs} == {"net1's BMC reports power off"}


def test_unfenced_moves_only_by_policy_and_after_their_grace() -> None:
    gone = l3(1, alive=False, beat=NOW - 100)
    s = snap([gone, *LIVE], host_states={"net1": HostState.OK}, routers=routers_on("l3-1", 1))
    relaxed = dataclasses.replace(S, unfenced_moves=True, unfenced_grace=90)
    d = nr.decide_network(s, [], set(), relaxed, {})
    assert [r.args["proof"].startswith("unfenced") for r in d.runs] == [True]
    strict = nr.decide_network(s, [], set(), S, {})
    assert strict.runs == ()


def test_ha_binding_replacement_needs_no_fence_proof() -> None:
    routers = [RouterInfo("h1", "ha-1", ("l3-1", "l3-2"), ha=True)]
    s = snap([DEAD, *LIVE], host_states={"net1": HostState.FAILED}, routers=routers)
    d = decide(s, [])
    (run,) = d.runs
    assert run.args["mode"] == "ha" and run.args["target"] in ("l3-3", "l3-4")


def test_a_move_is_verified_from_ports_and_floating_ips() -> None:
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    op = nr.mark_running(ops[0], run, NOW)
    op = nr.apply_outcome(op, Outcome(run, True, "moved"), S, NOW + 1)
    step = op.step(run.step)
    assert step.state == StepState.RUNNING and step.params["phase"] == "verifying"
    needs = nr.reads_needed([op], set())
    assert needs.health == {"r0"}
    host = step.params["target_host"]
    down = RouterHealth("r0", (PortState("p1", ROUTER_INTERFACE, "DOWN", "net1"),), ())
    d2 = decide(dataclasses.replace(s, now=NOW + 2, health={"r0": down}), [op])
    assert "not ACTIVE" in d2.writes[0].step(run.step).result
    d3 = decide(dataclasses.replace(s, now=NOW + 3, health={"r0": healthy("r0", host)}), [op])
    done = d3.writes[0]
    assert done.step(run.step).state == StepState.DONE
    assert done.state == OpState.DONE


def test_an_unverified_move_is_retried_on_another_agent_then_fails() -> None:
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    first = run.args["target"]
    op = nr.apply_outcome(nr.mark_running(ops[0], run, NOW), Outcome(run, True, "moved"), S, NOW)
    late = at(s, 31, health={"r0": healthy("r0", "elsewhere")})
    d2 = decide(late, [op])
    op2 = d2.writes[0]
    assert op2.step(run.step).params["phase"] == "retarget"
    bound = [RouterInfo("r0", "router-0", (first,))]
    d3 = decide(dataclasses.replace(late, routers=bound, health={}), [op2])
    (retry,) = d3.runs
    assert retry.args["source"] == first and retry.args["target"] not in (first, "l3-1")
    op3 = d3.writes[0]
    op3 = nr.apply_outcome(
        nr.mark_running(op3, retry, NOW + 32), Outcome(retry, True, ""), S, NOW + 32
    )
    d4 = decide(at(s, 70, routers=None), [op3])
    final = d4.writes[0]
    assert final.step(run.step).state == StepState.FAILED
    assert final.state == OpState.FAILED


def test_a_router_left_unbound_by_a_failed_add_is_placed_again() -> None:
    """remove went through, add failed: the router is bound nowhere.  The retry must still find
    it a live agent (it once stayed "unplaced: no target" forever)."""
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    failed = Outcome(run, False, "add_router: 503 Service Unavailable")
    op = nr.apply_outcome(nr.mark_running(ops[0], run, NOW), failed, S, NOW)
    unbound = [RouterInfo("r0", "router-0", ())]
    d2 = decide(dataclasses.replace(s, routers=unbound), [op])
    (retry,) = d2.runs
    assert retry.args["target"] not in (run.args["target"], "l3-1")
    assert retry.args["source"] == run.args["source"]


def test_someone_else_moved_it_already() -> None:
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    op = nr.apply_outcome(nr.mark_running(ops[0], run, NOW), Outcome(run, False, "409"), S, NOW)
    assert op.step(run.step).params["phase"] == "retarget"
    moved = [RouterInfo("r0", "router-0", ("l3-4",))]
    d2 = decide(dataclasses.replace(s, routers=moved), [op])
    step = d2.writes[0].step(run.step)
    assert step.params["phase"] == "verifying" and step.params["target"] == "l3-4"
    assert d2.runs == ()


def test_a_step_journaled_running_is_run_again_after_a_crash() -> None:
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    op = nr.mark_running(ops[0], run, NOW)
    d2 = decide(s, [op])  # a new leader: nothing in flight in this process
    assert [r.step for r in d2.runs] == [run.step]
    d3 = decide(s, [op], {(op.id, run.step)})
    assert d3.runs == ()


def test_agent_back_before_planning_closes_the_operation() -> None:
    s = snap([DEAD, *LIVE], host_states={"net1": HostState.FAILED})
    (op,) = decide(s, []).writes
    back = snap([l3(1, beat=NOW + 5), *LIVE], now=NOW + 5, host_states={"net1": HostState.OK})
    (done,) = decide(back, [op]).writes
    assert done.state == OpState.DONE and "nothing moved" in done.log[-1]


def fence_op(host: str, fenced: float) -> Operation:
    """Instance HA's recover-host operation for ``host``, its fence step done at ``fenced``."""
    fence = Step(rec.FENCE, "fence", {}, StepState.DONE, result="power off", updated=fenced)
    return Operation(f"op-{host}", rec.RECOVER, host, NOW - 20, steps=[fence])


def test_an_agent_on_a_fenced_host_is_dead_before_neutron_notices() -> None:
    # net1 was fenced at NOW - 2; its agent's last beat (NOW - 5) is not stale yet.
    fresh = l3(1, beat=NOW - 5)
    s = snap([fresh, *LIVE], host_states={"net1": HostState.FENCED}, routers=routers_on("l3-1", 2))
    assert not nr.is_down(fresh, NOW, S)
    (op,) = decide(s, [fence_op("net1", NOW - 2)]).writes
    assert op.kind == nr.RECOVER_AGENT and "fenced" in op.log[0]
    # The same agent with a beat after the fence: the node is back, nothing opens.
    later = l3(1, beat=NOW - 1)
    s2 = snap([later, *LIVE], host_states={"net1": HostState.FENCED})
    assert decide(s2, [fence_op("net1", NOW - 2)]).writes == ()
    # A fence record without the host's state proven off (e.g. it rejoined) proves nothing.
    s3 = snap([fresh, *LIVE], host_states={"net1": HostState.OK})
    assert decide(s3, [fence_op("net1", NOW - 2)]).writes == ()


def test_a_suspect_host_reading_power_off_kills_its_agents_at_once() -> None:
    fresh = l3(1, beat=NOW - 5)
    suspect = snap([fresh, *LIVE], host_states={"net1": HostState.SUSPECT}, power_off={"net1"})
    (op,) = decide(suspect, []).writes
    assert "BMC reports power off" in op.log[0]
    # A host nobody suspects is not judged on one BMC reading.
    ok = dataclasses.replace(suspect, host_states={"net1": HostState.OK})
    assert decide(ok, []).writes == ()


def test_nothing_is_done_for_a_host_in_maintenance() -> None:
    s = snap([DEAD, *LIVE], host_states={"net1": HostState.MAINTENANCE}, power_off={"net1"})
    assert decide(at(s, 600), []).writes == ()


def test_dhcp_restores_the_target_count() -> None:
    dead = dhcp(1, alive=False, beat=NOW - 30)
    live = [dhcp(2), dhcp(3)]
    nets = [
        NetworkInfo("n1", "net-1", ("dhcp-1", "dhcp-2")),
        NetworkInfo("n2", "net-2", ("dhcp-1",)),
    ]
    s = snap([dead, *live], host_states={"net1": HostState.FAILED}, networks=nets)
    d = decide(s, [])
    assert not any(r.args.get("proof") for r in d.runs)
    by_net = {r.args["network"]: r for r in d.runs if r.args["source"] == "dhcp-1"}
    assert by_net["n1"].args["target"] == "dhcp-3"
    adds = sorted(r.args["target"] for r in d.runs if r.args["network"] == "n2")
    assert adds == ["dhcp-2", "dhcp-3"]
    op = d.writes[0]
    for r in d.runs:
        op = nr.apply_outcome(nr.mark_running(op, r, NOW), Outcome(r, True, "ok"), S, NOW)
    assert op.state == OpState.OPEN
    (closed,) = decide(s, [op]).writes
    assert closed.state == OpState.DONE


def test_mass_agent_loss_halts_until_acknowledged() -> None:
    gone = [l3(i, alive=False, beat=NOW - 30) for i in (1, 2, 3)]
    states = {f"net{i}": HostState.FAILED for i in (1, 2, 3)}
    s = snap([*gone, l3(4)], host_states=states)
    d = decide(s, [])
    assert d.writes == () and "3/4 L3/DHCP agents down at once" in d.verdict
    acked = dataclasses.replace(s, cliff_ack=NOW)
    assert len(decide(acked, []).writes) == 3


def test_pause_and_instance_ha_halts_stop_new_moves() -> None:
    for kw in ({"paused": True}, {"halted": "halted: cliff"}):
        _, d, _ = open_plan(**kw)
        assert d.runs == () and d.writes == ()


def test_rebalance_request_moves_between_live_agents_without_proof() -> None:
    agents = [l3(1), l3(2)]
    routers = routers_on("l3-1", 4)
    d = decide(snap(agents, routers=routers, rebalance=NOW), [])
    assert d.rebalance_taken
    assert len(d.runs) == 2  # 4/0 becomes 2/2
    assert all(r.args["rebalance"] and r.args["target"] == "l3-2" for r in d.runs)
    assert all(r.args["proof"] is None for r in d.runs)


def test_ha_anomalies_are_reported_once_and_cleared() -> None:
    split = RouterInfo(
        "h1", "ha", ("l3-2", "l3-3"), ha=True, ha_states={"l3-2": "active", "l3-3": "active"}
    )
    d = decide(snap(LIVE, routers=[split]), [])
    assert d.anomalies == {"h1": "2 active instances (l3-2, l3-3): split brain"}
    assert any("split brain" in e.message for e in d.events)
    again = nr.decide_network(snap(LIVE, routers=[split]), [], set(), S, d.anomalies)
    assert not again.events
    fixed = dataclasses.replace(split, ha_states={"l3-2": "active", "l3-3": "standby"})
    cleared = nr.decide_network(snap(LIVE, routers=[fixed]), [], set(), S, d.anomalies)
    assert cleared.anomalies == {} and cleared.events


# ---------------------------------------------------------------- the safety property

STATES = st.sampled_from(list(HostState))


@settings(max_examples=300, deadline=None)
@given(
    state=STATES,
    power_off=st.booleans(),
    silent=st.floats(0, 1000),
    unfenced=st.booleans(),
    n=st.integers(1, 5),
)
def test_no_legacy_move_without_proof_of_the_source(
    state: HostState, power_off: bool, silent: float, unfenced: bool, n: int
) -> None:
    dead = l3(1, alive=False, beat=NOW - silent)
    s = snap(
        [dead, *LIVE],
        host_states={"net1": state},
        power_off=frozenset({"net1"} if power_off else ()),
        routers=routers_on("l3-1", n),
    )
    policy = dataclasses.replace(S, unfenced_moves=unfenced, unfenced_grace=500)
    ops: list[Operation] = []
    runs: list[Run] = []
    for _ in range(2):
        d = nr.decide_network(s, ops, set(), policy, {})
        ops = apply(ops, d)
        runs += d.runs
    proven = state in nr.PROVEN_OFF or power_off or (unfenced and silent >= 500)
    for run in runs:
        assert run.args["mode"] == "legacy"
        assert proven and run.args["proof"]


def test_a_dead_agent_is_handled_once_per_death() -> None:
    s, d, ops = open_plan(n=1)
    (run,) = d.runs
    op = nr.apply_outcome(nr.mark_running(ops[0], run, NOW), Outcome(run, True, ""), S, NOW)
    host = op.step(run.step).params["target_host"]  # type: ignore[union-attr]
    (done,) = decide(at(s, 2, health={"r0": healthy("r0", host)}), [op]).writes
    assert done.state == OpState.DONE
    later = decide(at(s, 5), [done])
    assert later.writes == ()  # still dead, already handled: no second operation
    again = dataclasses.replace(DEAD, heartbeat_at=NOW + 6)  # it came back and died again
    reborn = at(dataclasses.replace(s, agents={a.id: a for a in [again, *LIVE]}), 40)
    assert len(decide(reborn, [done]).writes) == 1


def test_routers_get_the_move_budget_before_dhcp() -> None:
    # One dead node: its DHCP agent's recovery opened first, yet its routers move first.
    dead_dhcp, live_dhcp = dhcp(1, alive=False, beat=NOW - 30), [dhcp(2), dhcp(3)]
    nets = [NetworkInfo(f"n{k}", f"net-{k}", ("dhcp-1",)) for k in range(5)]
    s = snap(
        [DEAD, *LIVE, dead_dhcp, *live_dhcp],
        host_states={"net1": HostState.FENCED},
        routers=routers_on("l3-1", 5),
        networks=nets,
    )
    ops = apply([], decide(s, []))
    dhcp_op = next(op for op in ops if op.subject == "dhcp-1")
    ops = [dataclasses.replace(dhcp_op, created=NOW - 5), *(o for o in ops if o is not dhcp_op)]
    planned = apply(ops, decide(at(s, 1), ops))
    tight = dataclasses.replace(S, max_parallel=5)
    d = nr.decide_network(at(s, 2), planned, set(), tight, {})
    assert [r.action for r in d.runs] == [nr.MOVE_ROUTER] * 5
