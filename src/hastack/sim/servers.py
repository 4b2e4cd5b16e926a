"""Server lifecycle with Nova's rules: boot, stop/start, lock, reset-state, delete, evacuate.

Each function takes the world lock, validates like ``nova.compute.api`` (same refusals, same
messages), changes the API view at once and schedules the asynchronous rest on the world's clock.
"""

from __future__ import annotations

from hastack.sim.errors import BadRequest, Conflict, NotFound
from hastack.sim.model import Instance, VmState
from hastack.sim.world import EVACUABLE_STATES, World

RUNNING = 1
SHUTDOWN = 4


def create_server(
    world: World,
    *,
    name: str,
    flavor_id: str,
    image_id: str | None,
    project_id: str,
    user_id: str,
    metadata: dict[str, str] | None = None,
    host: str | None = None,
    availability_zone: str | None = None,
    server_group: str | None = None,
    volume_backed: bool = False,
) -> Instance:
    """Boot a server.  It is BUILD at once and ACTIVE after ``boot_seconds``; ERROR with
    "No valid host was found." when nothing fits (as Nova's scheduler answers)."""
    with world.lock:
        flavor = world.flavors.get(flavor_id)
        if flavor is None:
            raise BadRequest(f"Flavor {flavor_id} could not be found.")
        if not volume_backed and (not image_id or image_id not in world.images):
            raise BadRequest(f"Image {image_id} could not be found.")
        group = None
        if server_group is not None:
            group = world.server_groups.get(server_group)
            if group is None:
                raise BadRequest(f"Invalid server group {server_group}")
        requested_az = availability_zone
        forced_host = host
        if availability_zone and ":" in availability_zone:
            requested_az, _, forced_host = availability_zone.partition(":")
            requested_az = requested_az or None
        if forced_host is not None and forced_host not in world.hosts:
            raise BadRequest(f"Compute host {forced_host} could not be found.")
        if requested_az is not None and not any(h.az == requested_az for h in world.hosts.values()):
            raise BadRequest(f"The requested availability zone is not available: {requested_az}")
        now = world.clock.now()
        inst = Instance(
            id=world.new_uuid(),
            name=name,
            project_id=project_id,
            user_id=user_id,
            flavor=flavor,
            image_id="" if volume_backed else (image_id or ""),
            created=now + world.next_id() * 1e-6,  # strictly increasing, as DB rows are
            host=None,
            az=requested_az or world.default_az,
            requested_az=requested_az,
            metadata=dict(metadata or {}),
            server_group=server_group,
            volume_backed=volume_backed,
            updated=now,
            number=world.next_id(),
        )
        world.instances[inst.id] = inst
        world.invalidate_order()
        if group is not None:
            group.members.append(inst.id)
        world.record_action(inst, "create")
        candidates = [world.hosts[forced_host]] if forced_host else None
        target = world.place(inst, candidates)
        if target is None:
            inst.vm_state = VmState.ERROR
            inst.fault = "No valid host was found. "
            world.emit("server", id=inst.id, status=inst.status)
            return inst
        inst.az = target.az
        world.assign(inst, target.name)
        world.allocate(inst, target.name)
        inst.task_state = "spawning"

        def booted() -> None:
            if inst.vm_state != VmState.BUILDING:
                return
            if not world.hosts[target.name].heartbeating:
                return  # the host died under it; the build never finishes
            inst.vm_state = VmState.ACTIVE
            inst.task_state = None
            inst.power_state = RUNNING
            inst.launched_at = world.clock.now()
            inst.running_on.add(target.name)
            world.touch(inst)
            world.emit("server", id=inst.id, status=inst.status, host=inst.host)

        world.later(world.config.boot_seconds, booted)
        return inst


def delete_server(world: World, server_id: str) -> None:
    with world.lock:
        inst = world.instance(server_id)
        inst.vm_state = VmState.DELETED
        inst.task_state = None
        inst.running_on.clear()
        for host in list(inst.allocations):
            world.deallocate(inst, host)
        world.assign(inst, None)
        for group in world.server_groups.values():
            if inst.id in group.members:
                group.members.remove(inst.id)
        world.invalidate_order()
        world.emit("server", id=inst.id, status="DELETED")


def stop_server(world: World, server_id: str) -> None:
    """os-stop: ACTIVE or ERROR -> SHUTOFF (task_state powering-off meanwhile)."""
    _power_action(world, server_id, "stop", (VmState.ACTIVE, VmState.ERROR), VmState.STOPPED)


def start_server(world: World, server_id: str) -> None:
    """os-start: SHUTOFF -> ACTIVE (task_state powering-on meanwhile)."""
    _power_action(world, server_id, "start", (VmState.STOPPED,), VmState.ACTIVE)


def _power_action(
    world: World, server_id: str, action: str, allowed: tuple[VmState, ...], final: VmState
) -> None:
    with world.lock:
        inst = world.instance(server_id)
        world.check_state(inst, action, allowed)
        inst.task_state = "powering-on" if final == VmState.ACTIVE else "powering-off"
        world.record_action(inst, action)
        world.touch(inst)

        def done() -> None:
            host = world.hosts.get(inst.host or "")
            if host is None or not host.heartbeating:
                return  # an RPC to a dead compute never completes
            inst.task_state = None
            inst.vm_state = final
            if final == VmState.ACTIVE:
                inst.power_state = RUNNING
                inst.running_on.add(host.name)
            else:
                inst.power_state = SHUTDOWN
                inst.running_on.discard(host.name)
            world.touch(inst)
            world.emit("server", id=inst.id, status=inst.status)

        world.later(world.config.action_seconds, done)


def lock_server(world: World, server_id: str, reason: str | None = None, by: str = "admin") -> None:
    with world.lock:
        inst = world.instance(server_id)
        inst.locked = True
        inst.locked_reason = reason
        inst.locked_by = by
        world.record_action(inst, "lock")
        world.touch(inst)


def unlock_server(world: World, server_id: str) -> None:
    with world.lock:
        inst = world.instance(server_id)
        inst.locked = False
        inst.locked_reason = None
        inst.locked_by = None
        world.record_action(inst, "unlock")
        world.touch(inst)


def reset_state(world: World, server_id: str, state: str) -> None:
    """os-resetState: sets vm_state to ``error`` or ``active`` and clears task_state."""
    with world.lock:
        inst = world.instance(server_id)
        if state not in ("error", "active"):
            raise BadRequest(f"Invalid input for field/attribute state. Value: {state}.")
        inst.vm_state = VmState(state)
        inst.task_state = None
        world.record_action(inst, "resetState")
        world.touch(inst)
        world.emit("server", id=inst.id, status=inst.status)


def evacuate_server(
    world: World,
    server_id: str,
    *,
    host: str | None = None,
    force: bool = False,
    target_state: VmState | None = None,
) -> None:
    """Evacuate like ``nova.api.openstack.compute.evacuate`` + ``compute.api.evacuate``.

    Refuses (NotFound) an unknown target host, (BadRequest) the same host, (Conflict) a server not
    ACTIVE/STOPPED/ERROR or with a task, and (BadRequest) "Compute service of H is still in use."
    while the source service is up.  Accepted: task_state ``rebuilding``, an ``evacuate``
    instance action and an ``evacuation`` migration (``accepted``); then the scheduler picks a
    destination (``pre-migrating``), the rebuild runs, the server turns ACTIVE (SHUTOFF for
    ``target_state`` stopped, i.e. microversion 2.95) still naming the source host for
    ``evacuate_stale_window``, and finally moves host with its migration ``done``.  No valid
    host: migration ``error`` and the server ERROR, as conductor does.
    """
    with world.lock:
        inst = world.instance(server_id)
        if host is not None and host not in world.hosts:
            raise NotFound(f"Compute host {host} not found.")
        if inst.host == host:
            raise BadRequest("The target host can't be the same one.")
        world.check_state(inst, "evacuate", EVACUABLE_STATES)
        source = world.hosts[inst.host] if inst.host else None
        if source is None:
            raise Conflict(f"Cannot 'evacuate' instance {inst.id} while it is in vm_state error")
        if world.service_is_up(source):
            raise BadRequest(f"Compute service of {source.name} is still in use.")
        original = inst.vm_state
        inst.task_state = "rebuilding"
        world.touch(inst)
        world.record_action(inst, "evacuate")
        mig = world.new_migration(inst, "evacuation", source.name)
        mig.dest_compute = host
        world.emit("evacuate", id=inst.id, source=source.name, migration=mig.id)
        world.later(
            world.config.schedule_seconds,
            lambda: _evacuate_scheduled(world, inst, mig.id, host, force, original, target_state),
        )


def _evacuate_scheduled(  # noqa: PLR0917 (a scheduled continuation of evacuate_server)
    world: World,
    inst: Instance,
    mig_id: int,
    requested: str | None,
    force: bool,
    original: VmState,
    target_state: VmState | None,
) -> None:
    mig = world.migrations[mig_id]
    if requested is not None and force:
        dest = world.hosts[requested]
    else:
        candidates = [world.hosts[requested]] if requested is not None else None
        found = world.place(inst, candidates)
        if found is None:
            mig.status = "error"
            mig.updated = world.clock.now()
            inst.vm_state = VmState.ERROR
            inst.task_state = None
            inst.fault = "No valid host was found. "
            world.touch(inst)
            world.record_action(inst, "evacuate", "No valid host was found.")
            world.emit("server", id=inst.id, status=inst.status, error="No valid host")
            return
        dest = found
    world.allocate(inst, dest.name)
    mig.dest_compute = dest.name
    mig.status = "pre-migrating"
    mig.updated = world.clock.now()
    jitter = world.config.evacuate_jitter * world.config.evacuate_seconds
    duration = max(0.05, world.config.evacuate_seconds + world.rng.uniform(-jitter, jitter))

    def rebuilt() -> None:
        if not dest.heartbeating:
            return  # the destination died mid-rebuild: the server stays REBUILD, as in Nova
        if VmState.STOPPED in (target_state, original):
            inst.vm_state, inst.power_state = VmState.STOPPED, SHUTDOWN
        else:
            inst.vm_state, inst.power_state = VmState.ACTIVE, RUNNING
            inst.running_on.add(dest.name)
        inst.task_state = None
        world.touch(inst)
        world.later(world.config.evacuate_stale_window, finished)

    def finished() -> None:
        world.assign(inst, dest.name)
        inst.az = dest.az
        mig.status = "done"
        mig.updated = world.clock.now()
        world.touch(inst)
        world.emit("server", id=inst.id, status=inst.status, host=dest.name)

    world.later(duration, rebuilt)


__all__ = [
    "create_server",
    "delete_server",
    "evacuate_server",
    "lock_server",
    "reset_state",
    "start_server",
    "stop_server",
    "unlock_server",
]
