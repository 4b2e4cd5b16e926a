"""The evacuation plan: which instances of a failed host move, in what order, and where to.

Four questions, answered in turn for every instance Nova lists on the failed host:

1. **Protected?** ``Protect.ALL`` protects every instance an opt-out rule does not match;
   ``Protect.OPT_IN`` only those an opt-in rule matches.  Opt-outs always win.
2. **Safe?** Only ACTIVE, SHUTOFF and ERROR instances with no task in progress are evacuated;
   a local-disk instance is rebuilt from its image (its data is lost), so it is refused unless
   the policy allows that.  Refusals fail closed: the instance stays where it is.
3. **When?** Restart groups (metadata ``group_key``) wait for the groups they depend on
   (``depends_key``): waves are the topological levels of the groups present; a cycle goes to a
   final wave.  Within a wave, higher ``priority_key`` first, then by name.
4. **Where?** In ``PlacementMode.PLAN``, greedily in execution order, to the enabled, up host
   with room and the most free RAM, honouring availability zones, server groups and spare
   hosts, never over-committing.  In ``SCHEDULER`` mode Nova chooses and capacity is not checked.

Pure and total: odd input gives a plan whose reasons say what was odd, never an exception.
Cost is about linear: hosts sit in heaps ordered by free RAM, one per (spare, zone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from hastack.domain.instances import (
    HostCapacity,
    InstanceInfo,
    PlacementMode,
    Protect,
    RecoveryPolicy,
    Rule,
    RuleKind,
    ServerGroupInfo,
)
from hastack.policy.placement import (
    Candidate,
    Placer,
    Pool,
    members_elsewhere,
    open_rooms,
    smallest_demand,
)

EVACUABLE_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
LOCAL_DISK_REFUSAL = (
    "local disk: evacuation rebuilds from image and loses its data "
    "(neither shared_storage nor allow_local_disk_rebuild is set)"
)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclasses.dataclass(frozen=True)
class Evacuation:
    instance: str
    name: str
    target: str | None  # None when Nova's scheduler chooses
    wave: int  # starts only after every instance of the waves before it is ACTIVE
    priority: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Skip:
    instance: str
    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class EvacuationPlan:
    evacuations: tuple[Evacuation, ...]  # execution order: wave, priority (desc), name
    unprotected: tuple[Skip, ...]  # not protected by policy: left alone by design
    unplaceable: tuple[Skip, ...]  # protected, but no destination fits
    refused: tuple[Skip, ...]  # protected, but unsafe to evacuate
    spare_hosts_used: tuple[str, ...]
    verdict: str


# ---------------------------------------------------------------- protection


def is_protected(
    instance: InstanceInfo, policy: RecoveryPolicy, host_aggregates: Mapping[str, frozenset[str]]
) -> tuple[bool, str]:
    """Whether the policy protects ``instance``, and which rule decided it.  Fails closed: when
    an image rule is in play and the image's properties could not be read, it is not
    protected (an unreadable opt-out must not evacuate it, an unreadable opt-in cannot)."""
    if instance.image_unreadable and any(
        r.kind == RuleKind.IMAGE for r in (*policy.opt_out, *policy.opt_in)
    ):
        return False, "image properties unreadable: protection cannot be decided (fail closed)"
    for rule in policy.opt_out:
        if _matches(rule, instance, host_aggregates):
            return False, f"opted out by {_describe_rule(rule)}"
    if policy.protect == Protect.ALL:
        return True, "protected: the policy protects all instances"
    for rule in policy.opt_in:
        if _matches(rule, instance, host_aggregates):
            return True, f"protected by {_describe_rule(rule)}"
    wanted = " or ".join(_describe_rule(r) for r in policy.opt_in) or "an opt-in rule (none set)"
    return False, f"not opted in (needs {wanted})"


def _matches(
    rule: Rule, instance: InstanceInfo, host_aggregates: Mapping[str, frozenset[str]]
) -> bool:
    if rule.kind == RuleKind.AGGREGATE:
        return rule.value in host_aggregates.get(instance.host, frozenset())
    if rule.kind == RuleKind.PROJECT:
        return instance.project_id == rule.value
    sources = {
        RuleKind.METADATA: instance.metadata,
        RuleKind.FLAVOR: instance.flavor.extra_specs,
        RuleKind.IMAGE: instance.image_properties,
    }
    actual = sources.get(rule.kind, {}).get(rule.key)
    return actual is not None and _same_value(str(actual), rule.value)


def _same_value(actual: str, wanted: str) -> bool:
    a, w = actual.strip().lower(), wanted.strip().lower()
    booleans = _TRUE | _FALSE
    if a in booleans and w in booleans:
        return (a in _TRUE) == (w in _TRUE)
    return actual == wanted


def _describe_rule(rule: Rule) -> str:
    if rule.kind in (RuleKind.AGGREGATE, RuleKind.PROJECT):
        return f"{rule.kind} {rule.value}"
    return f"{rule.kind} {rule.key}={rule.value}"


# ---------------------------------------------------------------- safety and notes


def _refusal(instance: InstanceInfo, failed_host: str, policy: RecoveryPolicy) -> str | None:
    if instance.host != failed_host:
        return f"Nova places it on {instance.host or 'no host'}, not on {failed_host}"
    if str(instance.status).upper() not in EVACUABLE_STATUSES:
        return f"status {instance.status}: only ACTIVE, SHUTOFF and ERROR are evacuated"
    if instance.task_state is not None:
        return f"task {instance.task_state} in progress: Nova would refuse (409)"
    if not instance.volume_backed and not (
        policy.shared_storage or policy.allow_local_disk_rebuild
    ):
        return LOCAL_DISK_REFUSAL
    return None


def _notes(instance: InstanceInfo, policy: RecoveryPolicy) -> list[str]:
    notes = []
    if str(instance.status).upper() == "ERROR":
        notes.append("in ERROR: its state is reset before evacuating")
    if instance.locked:
        notes.append("locked: evacuated as admin")
    if not instance.volume_backed and not policy.shared_storage:
        notes.append("local disk: rebuilt from image, its disk data is lost")
    return notes


# ---------------------------------------------------------------- order


def _priority(instance: InstanceInfo, key: str) -> tuple[int, str | None]:
    raw = instance.metadata.get(key)
    if raw is None:
        return 0, None
    try:
        return int(str(raw).strip()), None
    except ValueError:
        return 0, f"priority {raw!r} is not an integer, using 0"


def _split(raw: str | None) -> frozenset[str]:
    return frozenset(p.strip() for p in (raw or "").split(",") if p.strip())


def _levels(deps: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """Kahn's algorithm by levels; groups left out are in (or wait on) a cycle."""
    waiting = {g: len(d) for g, d in deps.items()}
    dependents: dict[str, list[str]] = {}
    for group, needs in deps.items():
        for need in needs:
            dependents.setdefault(need, []).append(group)
    level = {g: 0 for g, n in waiting.items() if n == 0}
    ready = list(level)
    reached: dict[str, int] = {}
    while ready:
        group = ready.pop()
        for dependent in dependents.get(group, ()):
            reached[dependent] = max(reached.get(dependent, 0), level[group] + 1)
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                level[dependent] = reached[dependent]
                ready.append(dependent)
    return level


def _order(
    accepted: Sequence[tuple[InstanceInfo, list[str]]], policy: RecoveryPolicy
) -> list[Candidate]:
    meta = [
        (i.metadata.get(policy.group_key, "").strip(), _split(i.metadata.get(policy.depends_key)))
        for i, _ in accepted
    ]
    present = {g for g, _ in meta if g}
    deps: dict[str, frozenset[str]] = dict.fromkeys(present, frozenset())
    for group, needs in meta:
        if group:
            deps[group] |= needs & present
    level = _levels(deps)
    final = max(level.values(), default=-1) + 1
    stuck = sorted(present - level.keys())
    out = []
    for (instance, notes), (group, needs) in zip(accepted, meta, strict=True):
        waits = {group} if group else needs & present
        if waits & set(stuck):
            wave = final
            notes.append(
                f"groups {', '.join(stuck)} form or wait on a dependency cycle: final wave"
            )
        else:
            wave = level[group] if group else max((level[g] + 1 for g in waits), default=0)
        priority, bad = _priority(instance, policy.priority_key)
        notes.extend([bad] if bad else [])
        out.append(Candidate(instance, tuple(notes), wave, priority))
    out.sort(key=lambda c: (c.wave, -c.priority, c.instance.name, c.instance.id))
    return out


def plan_evacuation(  # noqa: PLR0917 (the planner's seven inputs, each a different kind)
    failed_host: str,
    instances: Sequence[InstanceInfo],
    destinations: Sequence[HostCapacity],
    groups: Mapping[str, ServerGroupInfo],
    instance_hosts: Mapping[str, str],
    host_aggregates: Mapping[str, frozenset[str]],
    policy: RecoveryPolicy,
) -> EvacuationPlan:
    """Plan the evacuation of ``failed_host``'s ``instances``.

    Every instance (by id; a repeated id counts once) ends in exactly one of ``evacuations``,
    ``unprotected``, ``unplaceable`` or ``refused``, each with a reason.  In ``PLAN`` mode no
    destination receives more than its free capacity and no anti-affinity group shares a host.
    Deterministic, pure, never raises on odd input; about linear in instances plus hosts.
    """
    first: dict[str, InstanceInfo] = {}
    for instance in instances:
        first.setdefault(instance.id, instance)  # a repeated id is planned once, as first listed
    unprotected, refused, accepted = _screen(first.values(), failed_host, host_aggregates, policy)
    ordered = _order(accepted, policy)
    if policy.placement == PlacementMode.SCHEDULER:
        evacuations = [_evacuation(c, None, "Nova's scheduler chooses the host") for c in ordered]
        plan = EvacuationPlan(tuple(evacuations), unprotected, (), refused, (), "")
        return dataclasses.replace(plan, verdict=_verdict(plan, scheduler=True))
    moving = frozenset(i.id for i in first.values() if i.host == failed_host)
    gids = {g for c in ordered for g in c.instance.server_groups}
    elsewhere = members_elsewhere(groups, gids, instance_hosts, failed_host, moving)
    rooms, spares_off = open_rooms(failed_host, destinations, policy)
    placer = Placer(Pool(rooms, smallest_demand(ordered)), spares_off, groups, elsewhere)
    evacuated, unplaceable = [], []
    for c in ordered:
        target, why = placer.place(c.instance)
        if target is None:
            unplaceable.append(Skip(c.instance.id, c.instance.name, "; ".join([*c.notes, why])))
        else:
            evacuated.append(_evacuation(c, target, why))
    spares = tuple(sorted(placer.spares_used))
    plan = EvacuationPlan(tuple(evacuated), unprotected, tuple(unplaceable), refused, spares, "")
    return dataclasses.replace(plan, verdict=_verdict(plan, scheduler=False))


def _screen(
    instances: Iterable[InstanceInfo],
    failed_host: str,
    host_aggregates: Mapping[str, frozenset[str]],
    policy: RecoveryPolicy,
) -> tuple[tuple[Skip, ...], tuple[Skip, ...], list[tuple[InstanceInfo, list[str]]]]:
    """Split into unprotected, refused, and accepted (each with the notes for its reason)."""
    unprotected: list[Skip] = []
    refused: list[Skip] = []
    accepted: list[tuple[InstanceInfo, list[str]]] = []
    for instance in instances:
        protected, why = is_protected(instance, policy, host_aggregates)
        refusal = _refusal(instance, failed_host, policy) if protected else None
        if not protected or refusal:
            skips = refused if protected else unprotected
            skips.append(Skip(instance.id, instance.name, refusal or why))
        else:
            accepted.append((instance, [why, *_notes(instance, policy)]))
    return tuple(unprotected), tuple(refused), accepted


def _evacuation(c: Candidate, target: str | None, where: str) -> Evacuation:
    reason = "; ".join([*c.notes, where])
    return Evacuation(c.instance.id, c.instance.name, target, c.wave, c.priority, reason)


def _verdict(plan: EvacuationPlan, *, scheduler: bool) -> str:
    n, waves = len(plan.evacuations), len({e.wave for e in plan.evacuations})
    parts = [f"{n} to evacuate in {waves} wave{'s' * (waves != 1)}" if n else "none to evacuate"]
    if plan.unprotected:
        parts.append(f"{len(plan.unprotected)} unprotected")
    if plan.unplaceable:
        parts.append(f"{len(plan.unplaceable)} cannot be placed ({_first(plan.unplaceable, True)})")
    if plan.refused:
        parts.append(f"{len(plan.refused)} refused ({_first(plan.refused, False)})")
    if plan.spare_hosts_used:
        parts.append(f"spare hosts used: {', '.join(plan.spare_hosts_used)}")
    if scheduler:
        parts.append("Nova's scheduler chooses destinations (capacity not checked)")
    return ", ".join(parts)


def _first(skips: Sequence[Skip], last_clause: bool) -> str:
    """The first skip's reason (for an unplaceable one, its last clause: what stopped it)."""
    why = skips[0].reason.rsplit("; ", 1)[-1] if last_clause else skips[0].reason
    return why if len(skips) == 1 else f"{skips[0].name}: {why}, ..."
