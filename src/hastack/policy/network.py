"""Network HA planning: routers and DHCP networks off dead Neutron agents, and rebalancing.

Pure and deterministic.  The caller decides which agents are dead (two witnesses, or their
host fenced, as for compute hosts) and whether the moves may run yet (the fence proof rule);
this module only answers *what* moves *where*:

- **Routers** on a dead L3 agent: a legacy router moves to a usable agent (alive,
  ``admin_state_up``) whose mode hosts legacy routers (``legacy`` or ``dvr_snat``); a
  distributed router's SNAT part moves to another ``dvr_snat`` agent (its ``dvr`` bindings on
  compute nodes follow the VMs and are left alone); an HA router gets its dead binding replaced
  by a new one, restoring its redundancy.  Targets: the router's AZ hints, else the dead agent's
  AZ, else any AZ (said in the reason); least loaded first, ties by id.
- **DHCP networks**: each keeps ``target`` usable DHCP agents: dead bindings are dropped,
  new ones added least loaded, AZ-aware.
- **Rebalance**: legacy routers move from the most to the least loaded usable agent of the same
  AZ until loads differ by at most one.
- **HA anomalies**: HA routers with no active instance, or more than one.

Every router or network that needs a move ends in ``moves`` or ``stuck``, with its reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

from hastack.domain.network import AgentInfo, AgentKind, AgentMode, NetworkInfo, RouterInfo

LEGACY_HOSTS = (AgentMode.LEGACY, AgentMode.DVR_SNAT)


@dataclasses.dataclass(frozen=True)
class Move:
    kind: str  # "router" or "network"
    subject: str  # router or network id
    name: str
    source: str | None  # the agent binding removed (None: only an add)
    target: str | None  # the agent binding added (None: only a removal)
    reason: str


@dataclasses.dataclass(frozen=True)
class Stuck:
    kind: str
    subject: str
    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    moves: tuple[Move, ...]
    stuck: tuple[Stuck, ...]
    verdict: str


class _Loads:
    """Bindings per agent, updated as the plan assigns them."""

    def __init__(self, agents: Iterable[AgentInfo], owners: Iterable[tuple[str, ...]]) -> None:
        self.agents = {a.id: a for a in agents}
        self.load = dict.fromkeys(self.agents, 0)
        for bound in owners:
            for agent in bound:
                if agent in self.load:
                    self.load[agent] += 1

    def pick(
        self,
        candidates: Iterable[AgentInfo],
        zones: Sequence[str],
        fallback_zone: str,
    ) -> tuple[AgentInfo | None, str]:
        pool = list(candidates)
        if not pool:
            return None, "no usable agent of the right kind and mode"
        tiers: list[tuple[set[str], str]] = []
        if zones:
            tiers.append((set(zones), "in its AZ hints"))
        elif fallback_zone:
            tiers.append(({fallback_zone}, "in the same AZ"))
        for wanted, why in tiers:
            inside = [a for a in pool if a.availability_zone in wanted]
            if inside:
                best = min(inside, key=lambda a: (self.load[a.id], a.id))
                return best, f"least loaded {why} ({self.load[best.id]} before)"
        best = min(pool, key=lambda a: (self.load[a.id], a.id))
        note = " (none in the wanted AZ)" if tiers else ""
        return best, f"least loaded{note} ({self.load[best.id]} before)"

    def take(self, agent: str) -> None:
        self.load[agent] = self.load.get(agent, 0) + 1

    def drop(self, agent: str) -> None:
        self.load[agent] = max(0, self.load.get(agent, 0) - 1)


def _l3(agents: Iterable[AgentInfo]) -> list[AgentInfo]:
    return [a for a in agents if a.kind == AgentKind.L3]


def plan_router_moves(
    routers: Sequence[RouterInfo],
    agents: Sequence[AgentInfo],
    dead: Collection[str],
    avoid: Collection[str] = (),
) -> NetworkPlan:
    """Re-home every router binding on a ``dead`` agent (see the module docstring), never
    onto an agent in ``avoid`` (agents down but not yet confirmed dead, failed targets)."""
    l3 = _l3(agents)
    by_id = {a.id: a for a in l3}
    loads = _Loads(l3, (tuple(x for x in r.agents if x not in dead) for r in routers))
    moves: list[Move] = []
    stuck: list[Stuck] = []
    for router in sorted(routers, key=lambda r: r.id):
        hosting = set(router.agents)
        for source in router.agents:
            if source not in dead:
                continue
            agent = by_id.get(source)
            mode = agent.mode if agent else AgentMode.LEGACY
            if router.distributed and not router.ha and mode == AgentMode.DVR:
                continue  # compute-node DVR binding: follows the VMs, not ours to move
            wanted = (AgentMode.DVR_SNAT,) if router.distributed else LEGACY_HOSTS
            candidates = [
                a
                for a in l3
                if a.usable
                and a.mode in wanted
                and a.id not in hosting
                and a.id not in dead
                and a.id not in avoid
            ]
            zone = agent.availability_zone if agent else ""
            target, why = loads.pick(candidates, router.availability_zones, zone)
            if target is None:
                kinds = "/".join(m.value for m in wanted)
                stuck.append(Stuck("router", router.id, router.name, f"{why} ({kinds})"))
                continue
            loads.take(target.id)
            what = "HA binding replaced" if router.ha else "moved"
            if router.distributed and not router.ha:
                what = "SNAT moved"
            moves.append(
                Move("router", router.id, router.name, source, target.id, f"{what}: {why}")
            )
            hosting.add(target.id)
    return NetworkPlan(tuple(moves), tuple(stuck), _verdict("router", moves, stuck))


def plan_dhcp(
    networks: Sequence[NetworkInfo],
    agents: Sequence[AgentInfo],
    dead: Collection[str],
    target: int,
    avoid: Collection[str] = (),
) -> NetworkPlan:
    """Give every network ``target`` usable DHCP agents, dropping bindings on dead ones;
    agents in ``avoid`` are neither counted as serving nor chosen."""
    dhcp = [a for a in agents if a.kind == AgentKind.DHCP]
    by_id = {a.id: a for a in dhcp}
    usable = {a.id for a in dhcp if a.usable and a.id not in dead and a.id not in avoid}
    loads = _Loads(dhcp, (tuple(x for x in n.agents if x in usable) for n in networks))
    moves: list[Move] = []
    stuck: list[Stuck] = []
    for net in sorted(networks, key=lambda n: n.id):
        gone = [x for x in net.agents if x in dead]
        live = [x for x in net.agents if x in usable]
        hosting = set(net.agents)
        missing = max(0, target - len(live))
        zone = next((by_id[x].availability_zone for x in gone if x in by_id), "")
        for n in range(max(missing, len(gone))):
            source = gone[n] if n < len(gone) else None
            new: AgentInfo | None = None
            why = ""
            if n < missing:
                candidates = [by_id[x] for x in sorted(usable - hosting)]
                new, why = loads.pick(candidates, net.availability_zones, zone)
                if new is None:
                    stuck.append(Stuck("network", net.id, net.name, f"{why} (DHCP)"))
                else:
                    hosting.add(new.id)
                    loads.take(new.id)
            if source is None and new is None:
                continue
            reason = f"DHCP agent added: {why}" if new else "dead DHCP binding removed"
            moves.append(Move("network", net.id, net.name, source, new.id if new else None, reason))
    return NetworkPlan(tuple(moves), tuple(stuck), _verdict("network", moves, stuck))


def plan_rebalance(routers: Sequence[RouterInfo], agents: Sequence[AgentInfo]) -> NetworkPlan:
    """Move legacy routers so that, within each AZ, usable agents differ by at most one."""
    l3 = [a for a in _l3(agents) if a.usable and a.mode in LEGACY_HOSTS]
    moves: list[Move] = []
    zones = sorted({a.availability_zone for a in l3})
    for zone in zones:
        pool = sorted((a for a in l3 if a.availability_zone == zone), key=lambda a: a.id)
        ids = {a.id for a in pool}
        hosted: dict[str, list[RouterInfo]] = {a.id: [] for a in pool}
        for r in sorted(routers, key=lambda r: r.id):
            if r.legacy and len(r.agents) == 1 and r.agents[0] in ids:
                hosted[r.agents[0]].append(r)
        while pool:
            high = max(pool, key=lambda a: (len(hosted[a.id]), a.id))
            low = min(pool, key=lambda a: (len(hosted[a.id]), a.id))
            if len(hosted[high.id]) - len(hosted[low.id]) <= 1:
                break
            router = hosted[high.id].pop()
            hosted[low.id].append(router)
            moves.append(
                Move(
                    "router",
                    router.id,
                    router.name,
                    high.id,
                    low.id,
                    f"rebalance: {len(hosted[high.id]) + 1} -> {len(hosted[low.id]) - 1} routers",
                )
            )
    spread = _spread(routers, l3, moves)
    verdict = f"{len(moves)} router(s) to move; spread afterwards {spread}"
    return NetworkPlan(tuple(moves), (), verdict)


def _spread(
    routers: Sequence[RouterInfo], agents: Sequence[AgentInfo], moves: Sequence[Move]
) -> int:
    """max - min routers per usable legacy-capable agent, per AZ, after ``moves``."""
    where = {r.id: r.agents[0] for r in routers if r.legacy and len(r.agents) == 1}
    for m in moves:
        if m.target is not None:
            where[m.subject] = m.target
    worst = 0
    for zone in {a.availability_zone for a in agents}:
        ids = [a.id for a in agents if a.availability_zone == zone]
        counts = [sum(1 for v in where.values() if v == i) for i in ids]
        if counts:
            worst = max(worst, max(counts) - min(counts))
    return worst


def ha_anomalies(
    routers: Sequence[RouterInfo], agents: Mapping[str, AgentInfo]
) -> list[tuple[str, str]]:
    """HA routers with no active instance on a live agent, or more than one: (router, why)."""
    out = []
    for r in sorted(routers, key=lambda r: r.id):
        if not r.ha:
            continue
        active = sorted(
            a for a, state in r.ha_states.items() if state == "active" and _alive(agents, a)
        )
        if not active:
            out.append((r.id, "no active instance on a live agent"))
        elif len(active) > 1:
            out.append((r.id, f"{len(active)} active instances ({', '.join(active)}): split brain"))
    return out


def _alive(agents: Mapping[str, AgentInfo], agent_id: str) -> bool:
    a = agents.get(agent_id)
    return a is not None and a.alive


def _verdict(kind: str, moves: Sequence[Move], stuck: Sequence[Stuck]) -> str:
    subjects = len({m.subject for m in moves})
    text = f"{len(moves)} move(s) for {subjects} {kind}(s)" if moves else f"no {kind} to move"
    if stuck:
        text += f"; {len(stuck)} stuck ({stuck[0].name or stuck[0].subject}: {stuck[0].reason})"
    return text
