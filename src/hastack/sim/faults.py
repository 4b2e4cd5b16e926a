"""Failure injection: every way a host, its BMC or an API can fail, and the way back.

Modes (``hastack sim fail HOST --mode MODE``):

========== =================================================================================
power      power loss: heartbeats stop, every VM on the host dies, the BMC reports Off
hang       kernel hang: no heartbeats, VMs frozen but not dead, power still On, BMC answers
isolate    network isolation: no heartbeats reach the cloud, VMs keep running (split brain)
compute-crash  nova-compute dies: no heartbeats, VMs keep running
agent-dead one Neutron agent on the host dies (``agent``: l3 by default, dhcp, ovs, metadata);
           the host and its other agents stay up
agents-down every Neutron agent on the host dies: no agent heartbeats, the host stays up
bmc-dead   the BMC does not answer at all
bmc-hang   the BMC accepts connections and never answers
bmc-busy   the BMC answers "node busy" (IPMI 0xC0, Redfish 503)
bmc-slow   the BMC answers after a delay
========== =================================================================================

``recover`` undoes all of them: power returns (the host boots, nova-compute starts and cleans up
what was evacuated away), the hang clears, the network returns, the BMC answers normally.
"""

from __future__ import annotations

import dataclasses
import re

from hastack.sim.bmc.backend import BmcCondition
from hastack.sim.errors import BadRequest
from hastack.sim.world import World

HOST_MODES = ("power", "hang", "isolate", "compute-crash", "agent-dead", "agents-down")
BMC_MODES = {
    "bmc-dead": BmcCondition.DEAD,
    "bmc-hang": BmcCondition.HUNG,
    "bmc-busy": BmcCondition.BUSY,
    "bmc-slow": BmcCondition.SLOW,
}
MODES = (*HOST_MODES, *BMC_MODES)


def fail(world: World, host_name: str, mode: str, *, agent: str | None = None) -> None:
    """Inject ``mode`` on ``host_name`` (``agent``: which agent ``agent-dead`` kills).
    Raises NotFound / BadRequest for bad input."""
    with world.lock:
        host = world.host(host_name)
        if mode == "power":
            world.power_off(host)
        elif mode == "hang":
            if host.power_on:
                world.set_physical(host, hung=True)
        elif mode == "isolate":
            world.set_physical(host, isolated=True)
        elif mode == "compute-crash":
            world.set_physical(host, compute_running=False)
        elif mode == "agent-dead":
            world.neutron.kill_agent(host_name, agent or "l3")
        elif mode == "agents-down":
            world.neutron.kill_agents(host_name)
        elif mode in BMC_MODES:
            host.bmc_condition = BMC_MODES[mode]
        else:
            raise BadRequest(f"unknown failure mode {mode!r}; choose from {', '.join(MODES)}")
        world.emit("fault", host=host_name, mode=mode)


def recover(world: World, host_name: str) -> None:
    """Undo every fault on ``host_name``."""
    with world.lock:
        host = world.host(host_name)
        host.bmc_condition = BmcCondition.OK
        if host.hung or host.isolated:
            world.set_physical(host, hung=False, isolated=False)
        world.neutron.start_agents(host_name)  # a powered-off host starts them when it boots
        if not host.power_on:
            world.power_on(host)  # boots, then starts nova-compute
        elif host.compute and not host.compute_running:
            world.start_compute(host)
        world.emit("recover", host=host_name)


@dataclasses.dataclass
class ApiFault:
    """Make requests to one endpoint fail (``status``) or lag (``latency`` seconds).

    ``service`` is ``compute``, ``placement``, ``image``, ``identity`` or ``*``; ``path`` a regular
    expression searched in the request path; ``count`` how many requests it affects (None: all).
    """

    service: str
    method: str
    path: str
    status: int | None = None
    latency: float = 0.0
    count: int | None = None
    id: int = 0

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            self.service in ("*", service)
            and self.method in ("*", method.upper())
            and re.search(self.path, path) is not None
        )


class ApiFaults:
    """The set of active API faults, consulted by the HTTP face for every request."""

    def __init__(self) -> None:
        self._faults: list[ApiFault] = []
        self._next = 1

    def add(self, fault: ApiFault) -> ApiFault:
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise BadRequest("status must be an HTTP error status (400-599)")
        if fault.latency < 0:
            raise BadRequest("latency must be >= 0")
        try:
            re.compile(fault.path)
        except re.error as exc:
            raise BadRequest(f"path is not a valid regular expression: {exc}") from None
        fault.id = self._next
        self._next += 1
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[ApiFault]:
        return list(self._faults)

    def take(self, service: str, method: str, path: str) -> ApiFault | None:
        """The first fault matching this request, counting it against its ``count``."""
        for fault in self._faults:
            if fault.matches(service, method, path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None
