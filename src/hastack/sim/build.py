"""Build a simulated cloud from a seed: hosts, flavors, images, projects, aggregates, instances.

The same spec and seed give the same cloud, id for id.  Bulk instances are placed straight onto
hosts with room (not through the scheduler, which would be quadratic at 100,000 instances) and
start ACTIVE, as if the cloud had been running for a while.
"""

from __future__ import annotations

import dataclasses

from hastack.sim import capacity
from hastack.sim.model import Aggregate, Flavor, Image, Instance, ServerGroup, VmState
from hastack.sim.neutron_build import build_network
from hastack.sim.world import World

FLAVORS = (
    # id, name, vcpus, ram MiB, disk GiB
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
)
IMAGES = (
    ("cirros-0.6.2", 21430272, {"os_distro": "cirros", "hw_disk_bus": "virtio"}),
    ("ubuntu-24.04", 614203392, {"os_distro": "ubuntu", "os_version": "24.04"}),
    ("debian-12", 429916160, {"os_distro": "debian", "os_version": "12"}),
)
TENANTS = ("web", "db", "batch", "demo")  # "demo" is the non-admin user's project
GROUP_SIZE = 8  # members per seeded anti-affinity group, as small as real ones tend to be


@dataclasses.dataclass
class CloudSpec:
    hosts: int = 20
    instances: int = 200
    seed: int = 0
    azs: int = 1
    host_vcpus: int = 32
    host_memory_mb: int = 131072
    host_disk_gb: int = 2000
    volume_backed_ratio: float = 0.5
    # Fraction of instances tagged HA_Enabled=True (Masakari's convention); the rest untagged.
    ha_enabled_ratio: float = 1.0
    anti_affinity_groups: int = 2
    network_nodes: int = 0  # hosts running Neutron's agents (hastack.sim.neutron_build)
    routers: int = 0
    networks: int = 0
    ha_routers: int = 0  # of the routers, how many are HA (VRRP)
    dvr: bool = False  # DVR: dvr_snat agents on network nodes, dvr L3 + OVS agents on computes


def host_names(count: int) -> list[str]:
    width = max(2, len(str(count)))
    return [f"compute{i:0{width}d}" for i in range(1, count + 1)]


def az_names(count: int) -> list[str]:
    return ["nova"] if count <= 1 else [f"az{i}" for i in range(1, count + 1)]


def build_world(world: World, spec: CloudSpec) -> None:
    """Populate an empty ``world`` according to ``spec``."""
    with world.lock:
        now = world.clock.now()
        world.admin_project = world.new_uuid().replace("-", "")
        world.admin_user = world.new_uuid().replace("-", "")
        world.projects[world.admin_project] = "admin"
        tenants = []
        for name in TENANTS:
            pid = world.new_uuid().replace("-", "")
            world.projects[pid] = name
            tenants.append(pid)
        for fid, name, vcpus, ram, disk in FLAVORS:
            world.add_flavor(Flavor(id=fid, name=name, vcpus=vcpus, ram=ram, disk=disk))
        world.flavors["3"].extra_specs["hastack:protect"] = "true"
        for name, size, props in IMAGES:
            world.add_image(
                Image(
                    id=world.new_uuid(), name=name, size=size, created=now, properties=dict(props)
                )
            )
        zones = az_names(spec.azs)
        names = host_names(spec.hosts)
        for i, name in enumerate(names):
            world.add_host(
                name,
                az=zones[i % len(zones)],
                vcpus=spec.host_vcpus,
                memory_mb=spec.host_memory_mb,
                disk_gb=spec.host_disk_gb,
                host_ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                bmc_username="admin",
                bmc_password=f"bmc-{world.rng.getrandbits(48):012x}",
            )
        if spec.azs > 1:
            for zone in zones:
                members = [h.name for h in world.hosts.values() if h.az == zone]
                agg_id = world.next_id()
                world.aggregates[agg_id] = Aggregate(
                    id=agg_id,
                    uuid=world.new_uuid(),
                    name=f"{zone}-hosts",
                    az=zone,
                    hosts=members,
                    metadata={"availability_zone": zone},
                    created=now,
                )
        groups = []
        for g in range(spec.anti_affinity_groups):
            sg = ServerGroup(
                id=world.new_uuid(),
                name=f"anti-affinity-{g + 1}",
                policy="anti-affinity",
                project_id=tenants[g % len(tenants)],
                user_id=world.admin_user,
            )
            world.server_groups[sg.id] = sg
            groups.append(sg)
        _seed_instances(world, spec, tenants, groups)
        if spec.network_nodes > 0:
            build_network(world, spec)


def _seed_instances(
    world: World, spec: CloudSpec, tenants: list[str], groups: list[ServerGroup]
) -> None:
    rng = world.rng
    hosts = list(world.hosts.values())
    flavors = [world.flavors[f[0]] for f in FLAVORS[:4]]
    images = list(world.images.values())
    now = world.clock.now()
    group_hosts: dict[str, set[str]] = {g.id: set() for g in groups}
    for n in range(spec.instances):
        flavor = flavors[rng.randrange(len(flavors))]
        volume_backed = rng.random() < spec.volume_backed_ratio
        group = None
        if groups and rng.random() < 0.05:
            group = groups[rng.randrange(len(groups))]
            if len(group.members) >= GROUP_SIZE:
                group = None
        want = capacity.request_of(flavor, volume_backed)
        host = None
        for _ in range(64):
            candidate = hosts[rng.randrange(len(hosts))]
            if group is not None and candidate.name in group_hosts[group.id]:
                continue
            if capacity.fits(candidate, world.usage[candidate.name], want):
                host = candidate
                break
        if host is None:
            break  # the cloud is full: stop seeding rather than overcommit
        metadata = {}
        if rng.random() < spec.ha_enabled_ratio:
            metadata["HA_Enabled"] = "True"
        inst = Instance(
            id=world.new_uuid(),
            name=f"vm-{n + 1:06d}",
            project_id=tenants[rng.randrange(len(tenants))],
            user_id=world.admin_user,
            flavor=flavor,
            image_id="" if volume_backed else images[rng.randrange(len(images))].id,
            created=now - (spec.instances - n) * 1e-3,
            host=None,
            az=host.az,
            metadata=metadata,
            server_group=group.id if group else None,
            volume_backed=volume_backed,
            vm_state=VmState.ACTIVE,
            power_state=1,
            launched_at=now,
            updated=now,
            number=world.next_id(),
        )
        world.instances[inst.id] = inst
        world.assign(inst, host.name)
        world.allocate(inst, host.name)
        inst.running_on.add(host.name)
        if group is not None:
            group.members.append(inst.id)
            group_hosts[group.id].add(host.name)
    world.invalidate_order()
