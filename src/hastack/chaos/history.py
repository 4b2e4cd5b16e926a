"""Fault histories: what a campaign run does to the cloud and to hastack, generated from a seed.

A :class:`Plan` is the whole input of one run: the cloud's shape, hastack's guards, how many
controllers, and a time-ordered list of :class:`Event`.  It is plain data (``to_dict`` /
``from_dict``), so a failing run can be shrunk by dropping events and saved as a regression
scenario file.  :func:`generate` draws a plan from a seed; the same seed gives the same plan.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

# Every kind of fault, and what it does (hastack.chaos.run applies them).
KINDS: dict[str, str] = {
    "power": "a compute host loses power (its VMs die; the BMC reads off)",
    "hang": "a compute host's kernel hangs (VMs frozen, power on, BMC answers)",
    "isolate": "a compute host is cut off the network (its VMs keep running: split brain)",
    "compute-crash": "nova-compute dies on a host (VMs keep running)",
    "flap": "a host's network goes and comes back, again and again",
    "net-power": "a network node loses power (its routers stop)",
    "net-isolate": "a network node is cut off (its routers keep forwarding)",
    "bmc-dead": "a BMC does not answer",
    "bmc-hang": "a BMC accepts connections and never answers",
    "bmc-busy": "a BMC answers busy",
    "bmc-lies": "a BMC reports power on whatever the truth, and its power-off does nothing",
    "nova-5xx": "every Nova call fails for a while",
    "nova-slow": "every Nova call takes seconds for a while",
    "neutron-5xx": "every Neutron call fails for a while",
    "neutron-slow": "every Neutron call takes seconds for a while",
    "store-outage": "the store (etcd) answers no one for a while (quorum lost, member loss)",
    "store-cut": "one controller is cut off from the store",
    "leader-crash": "the leader dies at its n-th side effect from now (before or after it)",
    "leader-pause": "the leader freezes past its lease, then wakes",
    "operator-pause": "an operator pauses automatic actions, then resumes",
    "mass": "many hosts lose power at once (must trip the guards)",
    "recover": "a host comes back (power, network, BMC)",
}

HOST_KINDS = ("power", "hang", "isolate", "compute-crash")


@dataclasses.dataclass(frozen=True)
class Event:
    at: float  # seconds after the run starts
    kind: str
    target: str = ""  # a host, or "" for cloud-wide events
    duration: float = 0.0  # for windows (API errors, outages, pauses, flapping)
    arg: int = 0  # leader-crash: the n-th side effect; + after it when odd; mass: host count

    def describe(self) -> str:
        where = f" {self.target}" if self.target else ""
        length = f" for {self.duration:g}s" if self.duration else ""
        extra = f" (#{self.arg})" if self.arg else ""
        return f"t={self.at:g} {self.kind}{where}{length}{extra}"


@dataclasses.dataclass(frozen=True)
class Plan:
    seed: int
    hosts: int = 8
    instances: int = 24
    host_memory_mb: int = 131072  # small values make capacity run out
    network_nodes: int = 0
    routers: int = 0
    controllers: int = 2
    cliff_hosts: int = 3
    budget_hosts: int = 3
    horizon: float = 150.0  # seconds of faults; the run then settles without new ones
    events: tuple[Event, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["events"] = [dataclasses.asdict(e) for e in self.events]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        events = tuple(Event(**e) for e in data.get("events", ()))
        return cls(**{**data, "events": events})

    def without(self, drop: set[int]) -> Plan:
        kept = tuple(e for i, e in enumerate(self.events) if i not in drop)
        return dataclasses.replace(self, events=kept)


# How often each kind is drawn (mass failures and crashes are rarer; several per run).
WEIGHTS: dict[str, int] = {
    "power": 8,
    "hang": 6,
    "isolate": 6,
    "compute-crash": 3,
    "flap": 3,
    "net-power": 3,
    "net-isolate": 2,
    "bmc-dead": 3,
    "bmc-hang": 2,
    "bmc-busy": 2,
    "bmc-lies": 2,
    "nova-5xx": 3,
    "nova-slow": 2,
    "neutron-5xx": 2,
    "neutron-slow": 1,
    "store-outage": 2,
    "store-cut": 2,
    "leader-crash": 4,
    "leader-pause": 3,
    "operator-pause": 2,
    "mass": 1,
}


def generate(seed: int) -> Plan:
    """A random plan: a small cloud (sometimes short of capacity, sometimes with network
    nodes), one to five faults at random times, some of them undone later."""
    rng = random.Random(seed)
    hosts = rng.randint(5, 10)
    network = rng.random() < 0.4
    tight = rng.random() < 0.2
    plan = Plan(
        seed=seed,
        hosts=hosts,
        instances=rng.randint(2, 5) * hosts,
        host_memory_mb=16384 if tight else 131072,
        network_nodes=2 if network else 0,
        routers=rng.randint(2, 6) if network else 0,
        controllers=rng.choice((1, 2, 2, 3)),
    )
    names = [f"compute{i:02d}" for i in range(1, hosts + 1)]
    nodes = [f"network{i:02d}" for i in range(1, plan.network_nodes + 1)]
    kinds = [k for k in WEIGHTS if nodes or not k.startswith(("net-", "neutron"))]
    events: list[Event] = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        at = float(rng.randint(3, int(plan.horizon) - 30))
        events += _draw(rng, kind, at, (names, nodes), plan)
    events.sort(key=lambda e: (e.at, e.kind, e.target))
    return dataclasses.replace(plan, events=tuple(events))


def _draw(
    rng: random.Random, kind: str, at: float, where: tuple[list[str], list[str]], plan: Plan
) -> list[Event]:
    names, nodes = where
    host = rng.choice(names)
    if kind in HOST_KINDS:
        out = [Event(at, kind, host)]
        if kind != "power" and rng.random() < 0.4:  # it comes back (or not: stays failed)
            out.append(Event(at + rng.randint(5, 90), "recover", host))
        return out
    if kind == "flap":
        return [Event(at, "flap", host, float(rng.randint(10, 60)), rng.randint(2, 8))]
    if kind in ("net-power", "net-isolate"):
        return [Event(at, kind, rng.choice(nodes))]
    if kind.startswith("bmc-"):
        # a host whose BMC misbehaves, and often fails too: fencing is what it tests
        out = [Event(at, kind, host)]
        if rng.random() < 0.7:
            out.append(Event(at + rng.randint(0, 10), rng.choice(("power", "hang")), host))
        return out
    if kind in ("nova-5xx", "nova-slow", "neutron-5xx", "neutron-slow", "store-outage",
                "store-cut"):  # fmt: skip
        return [Event(at, kind, "", float(rng.randint(2, 30)), rng.randint(1, 5))]
    if kind == "leader-crash":
        # often during a recovery: a host fails first
        out = [Event(at, "leader-crash", "", 0.0, rng.randint(1, 12))]
        if rng.random() < 0.7:
            out.insert(0, Event(max(1.0, at - rng.randint(0, 20)), "power", host))
        return out
    if kind == "leader-pause":
        out = [Event(at, "leader-pause", "", float(rng.randint(3, 25)))]
        if rng.random() < 0.6:
            out.insert(0, Event(max(1.0, at - rng.randint(0, 20)), "hang", host))
        return out
    if kind == "operator-pause":
        return [Event(at, "operator-pause", "", float(rng.randint(5, 60)))]
    if kind == "mass":
        count = rng.randint(plan.cliff_hosts, len(names))
        return [Event(at, "mass", "", 0.0, count)]
    raise ValueError(f"unknown fault kind {kind!r}")
