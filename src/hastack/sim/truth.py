"""The simulator's physical truth about split brains, for the invariant checks of scenario
tests and fault campaigns: what runs, or forwards, in two places at once."""

from __future__ import annotations

from hastack.sim.world import World


def split_brains(world: World) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(instance id -> the hosts it runs on, legacy router id -> the hosts it forwards from),
    each only where there are two or more (isolated hosts included: the world knows)."""
    with world.lock:
        instances = {
            i.id: sorted(i.running_on) for i in world.instances.values() if len(i.running_on) > 1
        }
        neutron = world.neutron
        routers = {
            r.id: sorted(neutron.forwarding(r.id))
            for r in neutron.routers.values()
            if not r.ha and len(neutron.forwarding(r.id)) > 1
        }
    return instances, routers
