"""Evacuation plan: protection, safety refusals, waves and priority, placement, with reasons."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.domain.instances import (
    FlavorInfo,
    HostCapacity,
    InstanceInfo,
    PlacementMode,
    Protect,
    RecoveryPolicy,
    Rule,
    RuleKind,
    ServerGroupInfo,
)
from hastack.policy.evacuation import (
    LOCAL_DISK_REFUSAL,
    EvacuationPlan,
    is_protected,
    plan_evacuation,
)

FAILED = "compute01"
POLICY = RecoveryPolicy()  # protect all, opt out with HA_Enabled=False, volume-backed only


def inst(
    name: str,
    *,
    ram: int = 1024,
    vcpus: int = 1,
    disk: int = 10,
    meta: dict[str, str] | None = None,
    volume: bool = True,
    status: str = "ACTIVE",
    task: str | None = None,
    locked: bool = False,
    groups: tuple[str, ...] = (),
    az: str = "",
    pinned: bool = False,
    host: str = FAILED,
    project: str = "p1",
    extra: dict[str, str] | None = None,
    image: dict[str, str] | None = None,
    id: str | None = None,
) -> InstanceInfo:
    return InstanceInfo(
        id=id or f"id-{name}",
        name=name,
        host=host,
        project_id=project,
        status=status,
        task_state=task,
        locked=locked,
        flavor=FlavorInfo("f", vcpus, ram, disk, extra or {}),
        metadata=meta or {},
        image_properties=image or {},
        volume_backed=volume,
        server_groups=groups,
        availability_zone=az,
        pinned_az=pinned,
    )


def dest(
    host: str,
    *,
    ram: int = 8192,
    vcpus: int = 8,
    disk: int = 100,
    az: str = "az1",
    enabled: bool = True,
    up: bool = True,
    spare: bool = False,
) -> HostCapacity:
    return HostCapacity(host, az, frozenset(), enabled, up, vcpus, ram, disk, spare)


def plan(
    instances: list[InstanceInfo],
    dests: list[HostCapacity],
    *,
    groups: dict[str, ServerGroupInfo] | None = None,
    where: dict[str, str] | None = None,
    aggs: dict[str, frozenset[str]] | None = None,
    policy: RecoveryPolicy = POLICY,
) -> EvacuationPlan:
    return plan_evacuation(FAILED, instances, dests, groups or {}, where or {}, aggs or {}, policy)


def targets(p: EvacuationPlan) -> dict[str, str | None]:
    return {e.name: e.target for e in p.evacuations}


# ---------------------------------------------------------------- protection


def test_protect_all_honours_the_opt_out_case_insensitively() -> None:
    p = plan([inst("a"), inst("b", meta={"HA_Enabled": "FALSE"})], [dest("c2")])
    assert targets(p) == {"a": "c2"}
    assert p.unprotected[0].name == "b"
    assert p.unprotected[0].reason == "opted out by metadata HA_Enabled=False"


def test_opt_in_is_masakaris_ha_enabled_and_booleans_compare_loosely() -> None:
    policy = RecoveryPolicy(protect=Protect.OPT_IN)
    on = [inst(n, meta={"HA_Enabled": v}) for n, v in (("a", "True"), ("b", "true"), ("c", "1"))]
    off = [inst("d"), inst("e", meta={"HA_Enabled": "no"}), inst("f", meta={"HA_Enabled": "x"})]
    p = plan(on + off, [dest("c2")], policy=policy)
    assert sorted(targets(p)) == ["a", "b", "c"]
    assert {s.name for s in p.unprotected} == {"d", "e", "f"}
    assert "protected by metadata HA_Enabled=True" in p.evacuations[0].reason
    assert p.unprotected[0].reason == "not opted in (needs metadata HA_Enabled=True)"


def test_opt_out_wins_over_opt_in() -> None:
    policy = RecoveryPolicy(
        protect=Protect.OPT_IN,
        opt_in=(Rule(RuleKind.PROJECT, value="p1"),),
        opt_out=(Rule(RuleKind.FLAVOR, "ha:skip", "yes"),),
    )
    i = inst("a", extra={"ha:skip": "True"})
    assert is_protected(i, policy, {}) == (False, "opted out by flavor ha:skip=yes")
    assert is_protected(inst("b"), policy, {}) == (True, "protected by project p1")


def test_image_aggregate_and_project_rules() -> None:
    def protected(rule: Rule, i: InstanceInfo, aggs: dict[str, frozenset[str]]) -> bool:
        return is_protected(i, RecoveryPolicy(protect=Protect.OPT_IN, opt_in=(rule,)), aggs)[0]

    image_rule = Rule(RuleKind.IMAGE, "os_distro", "debian")
    assert protected(image_rule, inst("a", image={"os_distro": "debian"}), {})
    assert not protected(image_rule, inst("a", image={"os_distro": "Debian"}), {})  # not boolean
    agg_rule = Rule(RuleKind.AGGREGATE, value="ha-hosts")
    assert protected(agg_rule, inst("a"), {FAILED: frozenset({"ha-hosts", "ssd"})})
    assert not protected(agg_rule, inst("a"), {"compute02": frozenset({"ha-hosts"})})
    assert not protected(Rule(RuleKind.PROJECT, value="p2"), inst("a"), {})


# ---------------------------------------------------------------- safety


def test_local_disk_is_refused_unless_allowed() -> None:
    p = plan([inst("a", volume=False)], [dest("c2")])
    assert p.refused[0].reason == LOCAL_DISK_REFUSAL and not p.evacuations
    allowed = RecoveryPolicy(allow_local_disk_rebuild=True)
    p = plan([inst("a", volume=False)], [dest("c2")], policy=allowed)
    assert targets(p) == {"a": "c2"} and "its disk data is lost" in p.evacuations[0].reason


def test_task_in_progress_and_odd_status_are_refused_with_their_names() -> None:
    p = plan([inst("a", task="rebuilding"), inst("b", status="BUILD")], [dest("c2")])
    reasons = {s.name: s.reason for s in p.refused}
    assert reasons["a"] == "task rebuilding in progress: Nova would refuse (409)"
    assert reasons["b"] == "status BUILD: only ACTIVE, SHUTOFF and ERROR are evacuated"


def test_error_shutoff_and_locked_are_evacuated_with_notes() -> None:
    p = plan([inst("a", status="ERROR"), inst("b", status="SHUTOFF", locked=True)], [dest("c2")])
    reasons = {e.name: e.reason for e in p.evacuations}
    assert "in ERROR: its state is reset before evacuating" in reasons["a"]
    assert "locked: evacuated as admin" in reasons["b"]


def test_an_instance_nova_places_elsewhere_is_refused() -> None:
    p = plan([inst("a", host="compute09")], [dest("c2")])
    assert p.refused[0].reason == "Nova places it on compute09, not on compute01"


# ---------------------------------------------------------------- order


def test_priority_desc_then_name_and_malformed_priority_is_zero() -> None:
    key = POLICY.priority_key
    p = plan(
        [inst("b"), inst("a"), inst("z", meta={key: "10"}), inst("m", meta={key: "high"})],
        [dest("c2", ram=100000)],
    )
    assert [(e.name, e.priority) for e in p.evacuations] == [
        ("z", 10), ("a", 0), ("b", 0), ("m", 0)
    ]  # fmt: skip
    assert "priority 'high' is not an integer, using 0" in p.evacuations[3].reason


def test_waves_follow_restart_group_dependencies() -> None:
    g, d = POLICY.group_key, POLICY.depends_key
    p = plan(
        [
            inst("web", meta={g: "web", d: "app, cache"}),
            inst("app", meta={g: "app", d: "db,absent"}),  # 'absent' is not on this host
            inst("db", meta={g: "db"}),
            inst("loner"),
            inst("watcher", meta={d: "db"}),  # no group of its own
        ],
        [dest("c2", ram=100000)],
    )
    waves = {e.name: e.wave for e in p.evacuations}
    assert waves == {"db": 0, "loner": 0, "app": 1, "watcher": 1, "web": 2}
    assert [e.name for e in p.evacuations] == ["db", "loner", "app", "watcher", "web"]
    assert p.verdict == "5 to evacuate in 3 waves"


def test_a_dependency_cycle_goes_to_a_final_wave_and_says_so() -> None:
    g, d = POLICY.group_key, POLICY.depends_key
    p = plan(
        [
            inst("a", meta={g: "a", d: "b"}),
            inst("b", meta={g: "b", d: "a"}),
            inst("c", meta={g: "c", d: "a"}),  # waits on the cycle
            inst("x", meta={g: "x"}),
            inst("y", meta={g: "y", d: "x"}),
        ],
        [dest("c2", ram=100000)],
    )
    waves = {e.name: e.wave for e in p.evacuations}
    assert waves == {"x": 0, "y": 1, "a": 2, "b": 2, "c": 2}
    assert (
        "groups a, b, c form or wait on a dependency cycle: final wave" in p.evacuations[-1].reason
    )


# ---------------------------------------------------------------- placement


def test_spreads_to_most_free_ram_and_subtracts_what_it_placed() -> None:
    p = plan(
        [inst("a", ram=4000), inst("b", ram=4000), inst("c", ram=4000)],
        [dest("c2", ram=9000), dest("c3", ram=6000)],
    )
    assert targets(p) == {"a": "c2", "b": "c3", "c": "c2"}
    assert "to c2 (most free RAM)" in p.evacuations[0].reason


def test_ties_go_to_the_first_host_name() -> None:
    p = plan([inst("a")], [dest("c9"), dest("c3"), dest("c5")])
    assert targets(p) == {"a": "c3"}


def test_never_overcommits_and_says_what_was_missing() -> None:
    p = plan(
        [inst("a", ram=6000), inst("big", ram=16384, az="az1", pinned=True), inst("c", vcpus=9)],
        [dest("c2", ram=8192, vcpus=8)],
    )
    assert targets(p) == {"a": "c2"}
    reasons = {s.name: s.reason for s in p.unplaceable}
    assert reasons["big"].endswith("no host with 16384 MB RAM, 1 vCPU free in az1")
    assert reasons["c"].endswith("no host with 1024 MB RAM, 9 vCPU free")
    assert p.verdict == "1 to evacuate in 1 wave, 2 cannot be placed (big: " + (
        "no host with 16384 MB RAM, 1 vCPU free in az1, ...)"
    )


def test_disk_counts_only_for_local_disk_instances() -> None:
    policy = RecoveryPolicy(allow_local_disk_rebuild=True)
    p = plan(
        [inst("vol", disk=500), inst("local", disk=500, volume=False)],
        [dest("c2", disk=100)],
        policy=policy,
    )
    assert targets(p) == {"vol": "c2"}
    assert p.unplaceable[0].reason.endswith("no host with 1024 MB RAM, 1 vCPU, 500 GB disk free")


def test_availability_zones_pinned_stay_others_prefer_theirs() -> None:
    dests = [dest("c2", az="az1", ram=2048), dest("c3", az="az2", ram=8192)]
    p = plan(
        [
            inst("a", az="az1", pinned=True, ram=2048),
            inst("b", az="az1", pinned=True),  # az1 is full now
            inst("c", az="az1"),  # not pinned: may leave az1
        ],
        dests,
    )
    assert targets(p) == {"a": "c2", "c": "c3"}
    assert "to c3 (none fits in az1)" in p.evacuations[1].reason
    assert p.unplaceable[0].name == "b"


def test_anti_affinity_against_planned_members_and_members_elsewhere() -> None:
    group = ServerGroupInfo("g1", "anti-affinity", frozenset({"id-a", "id-b", "id-c", "id-d"}))
    p = plan(
        [inst(n, groups=("g1",)) for n in ("a", "b", "c")],
        [dest("c2", ram=90000), dest("c3"), dest("c4")],
        groups={"g1": group},
        where={"id-d": "c2", "id-a": FAILED},  # d lives on c2; a is moving, not staying
    )
    assert targets(p) == {"a": "c3", "b": "c4"}
    assert p.unplaceable[0].reason.endswith(
        "no host with 1024 MB RAM, 1 vCPU free (anti-affinity rules out 3 host(s))"
    )


def test_soft_anti_affinity_falls_back_with_a_note() -> None:
    group = ServerGroupInfo("g1", "soft-anti-affinity", frozenset({"id-a", "id-b"}))
    p = plan(
        [inst("a", groups=("g1",)), inst("b", groups=("g1",))], [dest("c2")], groups={"g1": group}
    )
    assert targets(p) == {"a": "c2", "b": "c2"}
    assert "soft anti-affinity not kept" in p.evacuations[1].reason


def test_affinity_keeps_members_together_and_joins_a_live_member() -> None:
    together = ServerGroupInfo("g1", "affinity", frozenset({"id-a", "id-b"}))
    p = plan(
        [inst("a", groups=("g1",)), inst("b", groups=("g1",))],
        [dest("c2", ram=4000), dest("c3", ram=3000)],
        groups={"g1": together},
    )
    assert targets(p) == {"a": "c2", "b": "c2"}
    assert "to c2 (affinity group g1)" in p.evacuations[1].reason
    joined = ServerGroupInfo("g2", "affinity", frozenset({"id-a", "id-x"}))
    p = plan(
        [inst("a", groups=("g2",))],
        [dest("c2", ram=9000), dest("c3")],
        groups={"g2": joined},
        where={"id-x": "c3"},
    )
    assert targets(p) == {"a": "c3"}


def test_affinity_that_cannot_be_kept_is_said() -> None:
    joined = ServerGroupInfo("g2", "affinity", frozenset({"id-a", "id-x"}))
    p = plan(
        [inst("a", groups=("g2",), ram=5000)],
        [dest("c2", ram=9000), dest("c3", ram=4000)],
        groups={"g2": joined},
        where={"id-x": "c3"},
    )
    assert targets(p) == {"a": "c2"}
    assert "affinity group g2 not kept: c3 cannot take it" in p.evacuations[0].reason


def test_spare_hosts_only_when_nothing_else_fits_and_allowed() -> None:
    dests = [dest("c2", ram=1024), dest("s1", spare=True, ram=90000)]
    p = plan([inst("a"), inst("b")], dests)
    assert targets(p) == {"a": "c2", "b": "s1"}
    assert p.spare_hosts_used == ("s1",)
    assert "to s1 (spare host: no other host fits)" in p.evacuations[1].reason
    assert p.verdict == "2 to evacuate in 1 wave, spare hosts used: s1"
    p = plan([inst("a"), inst("b")], dests, policy=RecoveryPolicy(use_spare_hosts=False))
    assert p.unplaceable[0].reason.endswith("(spare hosts not used: use_spare_hosts is off)")


def test_failed_down_and_disabled_hosts_are_never_destinations() -> None:
    dests = [
        dest(FAILED, ram=99999),
        dest("down", up=False, ram=99999),
        dest("off", enabled=False, ram=99999),
    ]
    p = plan([inst("a")], dests)
    assert not p.evacuations
    assert p.unplaceable[0].reason.endswith("no enabled, up destination host")


def test_scheduler_mode_orders_but_does_not_place() -> None:
    policy = RecoveryPolicy(placement=PlacementMode.SCHEDULER)
    p = plan([inst("a", ram=10**6), inst("b", volume=False)], [], policy=policy)
    assert targets(p) == {"a": None}
    assert p.verdict == (
        "1 to evacuate in 1 wave, 1 refused (" + LOCAL_DISK_REFUSAL + "), "
        "Nova's scheduler chooses destinations (capacity not checked)"
    )


def test_odd_input_gives_reasons_not_exceptions() -> None:
    assert plan([], []).verdict == "none to evacuate"
    p = plan(
        [inst("a", groups=("nope",)), inst("a"), inst("b", groups=("weird",), ram=-5, vcpus=-1)],
        [dest("c2", ram=-100, vcpus=-1), dest("c3"), dest("c3", ram=999999)],
        groups={"weird": ServerGroupInfo("weird", "sometimes", frozenset())},
    )
    assert [e.name for e in p.evacuations] == ["a", "b"]  # 'a' twice is planned once
    assert {e.target for e in p.evacuations} == {"c3"}  # c2 is negative; the first c3 counts
    assert "server group nope unknown: not applied" in p.evacuations[0].reason
    assert "server group weird has unknown policy 'sometimes'" in p.evacuations[1].reason


def test_500_instances_over_10000_hosts_plan_quickly() -> None:
    """A sanity check only: the measured figure is printed; `make bench` will keep it."""
    dests = [
        dest(f"c{i:05d}", az=f"az{i % 3}", ram=8192 + (i * 7919) % 65536, vcpus=4 + i % 29)
        for i in range(10_000)
    ]
    anti = ServerGroupInfo("g", "anti-affinity", frozenset(f"id-v{i}" for i in range(0, 500, 5)))
    instances = [
        inst(f"v{i}", ram=512 * (1 + i % 32), vcpus=1 + i % 8, az=f"az{i % 3}", pinned=i % 2 == 0,
             groups=("g",) if i % 5 == 0 else ())
        for i in range(500)
    ]  # fmt: skip
    start = time.perf_counter()
    p = plan(instances, dests, groups={"g": anti})
    elapsed = time.perf_counter() - start
    print(f"\nplanned 500 instances over 10,000 hosts in {elapsed * 1000:.0f} ms: {p.verdict}")
    assert len(p.evacuations) == 500
    assert elapsed < 10.0  # generous: a guard against a quadratic regression, not a benchmark


# ---------------------------------------------------------------- properties

GK, DK = POLICY.group_key, POLICY.depends_key
DEPENDS = {"": ["", "db"], "db": ["", "", "web"], "app": ["db"], "web": ["app", "db, app"]}
HOSTS = [FAILED, "c2", "c3", "c4", "c5", "c6", "s7"]
GROUPS = {
    "anti": ServerGroupInfo("anti", "anti-affinity", frozenset({"id-0", "id-1", "id-2", "x1"})),
    "aff": ServerGroupInfo("aff", "affinity", frozenset({"id-3", "id-4", "x2"})),
    "soft": ServerGroupInfo("soft", "soft-anti-affinity", frozenset({"id-5", "id-6"})),
}


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[list[InstanceInfo], list[HostCapacity], dict[str, str], RecoveryPolicy]:
    hosts = [
        dest(
            name,
            ram=draw(st.one_of(st.integers(4000, 16000), st.integers(-1000, 16000))),
            vcpus=draw(st.one_of(st.integers(3, 8), st.integers(-1, 8))),
            disk=draw(st.one_of(st.integers(40, 100), st.integers(-10, 100))),
            az=draw(st.sampled_from(["az1", "az2"])),
            enabled=draw(st.sampled_from([True, True, True, False])),
            up=draw(st.sampled_from([True, True, True, False])),
            spare=draw(st.sampled_from([False, False, True])),
        )
        for name in draw(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=8))
    ]
    instances = []
    for n in range(draw(st.integers(0, 16) | st.integers(8, 16))):
        group = draw(st.sampled_from(list(DEPENDS)))
        ha = draw(st.sampled_from(["True", "1", "yes", "True", "false", "maybe"]))
        meta = {GK: group, DK: draw(st.sampled_from(DEPENDS[group])), "HA_Enabled": ha}
        instances.append(
            inst(
                str(n % 10),  # ids repeat sometimes
                id=f"id-{n % 10}",
                ram=draw(st.integers(0, 3000)),
                vcpus=draw(st.integers(0, 2)),
                disk=draw(st.integers(0, 40)),
                meta=meta,
                volume=draw(st.sampled_from([True, True, True, False])),
                status=draw(st.sampled_from(["ACTIVE"] * 5 + ["SHUTOFF", "ERROR", "BUILD"])),
                task=draw(st.sampled_from([None] * 6 + ["rebuilding"])),
                groups=tuple(g for g in GROUPS if f"id-{n % 10}" in GROUPS[g].members)
                + draw(st.sampled_from([(), (), ("ghost",)])),
                az=draw(st.sampled_from(["", "az1", "az2"])),
                pinned=draw(st.booleans()),
                host=draw(st.sampled_from([FAILED] * 7 + ["c2"])),
            )
        )
    where = {"x1": draw(st.sampled_from(["c2", "c3", FAILED])), "x2": "c4"}
    policy = RecoveryPolicy(
        protect=draw(st.sampled_from(list(Protect))),
        allow_local_disk_rebuild=draw(st.booleans()),
        use_spare_hosts=draw(st.booleans()),
    )
    return instances, hosts, where, policy


def run(
    world: tuple[list[InstanceInfo], list[HostCapacity], dict[str, str], RecoveryPolicy],
) -> EvacuationPlan:
    instances, hosts, where, policy = world
    return plan_evacuation(FAILED, instances, hosts, GROUPS, where, {}, policy)


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_every_instance_lands_in_exactly_one_place(world) -> None:
    instances, _, _, policy = world
    p = run(world)
    buckets = [p.evacuations, p.unprotected, p.unplaceable, p.refused]
    ids = [x.instance for bucket in buckets for x in bucket]
    assert len(ids) == len(set(ids)) == len({i.id for i in instances})
    first = {i.id: i for i in reversed(instances)}
    for e in p.evacuations:
        assert is_protected(first[e.instance], policy, {})[0]
    for s in p.unprotected:
        assert not is_protected(first[s.instance], policy, {})[0]


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_no_destination_is_overcommitted_and_bad_hosts_are_never_used(world) -> None:
    instances, hosts, _, policy = world
    p = run(world)
    first_cap: dict[str, HostCapacity] = {}
    for h in hosts:
        first_cap.setdefault(h.host, h)
    first = {i.id: i for i in reversed(instances)}
    used: dict[str, list[int]] = {}
    for e in p.evacuations:
        assert e.target is not None and e.target != FAILED
        cap = first_cap[e.target]
        assert cap.enabled and cap.up and (policy.use_spare_hosts or not cap.spare)
        i = first[e.instance]
        assert i.volume_backed or policy.allow_local_disk_rebuild
        u = used.setdefault(e.target, [0, 0, 0])
        u[0] += i.flavor.vcpus
        u[1] += i.flavor.ram_mb
        u[2] += 0 if i.volume_backed else i.flavor.disk_gb
    for host, (vcpus, ram, disk) in used.items():
        cap = first_cap[host]
        assert vcpus <= cap.free_vcpus and ram <= cap.free_ram_mb and disk <= cap.free_disk_gb
    assert set(p.spare_hosts_used) == {h for h in used if first_cap[h].spare}


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_anti_affinity_is_never_broken(world) -> None:
    _, _, where, _ = world
    p = run(world)
    members = GROUPS["anti"].members
    placed = [e.target for e in p.evacuations if e.instance in members]
    assert len(placed) == len(set(placed))
    elsewhere = {where[m] for m in members if where.get(m) not in (None, FAILED)}
    assert not set(placed) & elsewhere


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_waves_respect_dependencies_absent_cycles(world) -> None:
    instances, _, _, _ = world
    p = run(world)
    if any("dependency cycle" in e.reason for e in p.evacuations):
        return
    first = {i.id: i for i in reversed(instances)}
    accepted = [first[x.instance] for x in (*p.evacuations, *p.unplaceable)]
    present = {i.metadata[GK] for i in accepted if i.metadata[GK]}
    wave = {e.instance: e.wave for e in p.evacuations}
    for a in p.evacuations:
        needs = {d.strip() for d in first[a.instance].metadata[DK].split(",") if d.strip()}
        group = first[a.instance].metadata[GK]
        if group:  # a group waits for what any of its members waits for
            needs = {
                d.strip() for i in accepted if i.metadata[GK] == group
                for d in i.metadata[DK].split(",") if d.strip()
            }  # fmt: skip
        for b in p.evacuations:
            if first[b.instance].metadata[GK] in needs & present - {group}:
                assert wave[a.instance] > wave[b.instance]


@settings(max_examples=100, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_same_input_same_plan_whatever_the_order(world, rnd) -> None:
    instances, hosts, where, policy = world
    assert run(world) == run(world)
    unique = list({i.id: i for i in reversed(instances)}.values())
    shuffled = unique[:]
    rnd.shuffle(shuffled)
    a, b = run((unique, hosts, where, policy)), run((shuffled, hosts, where, policy))
    assert (a.evacuations, a.unplaceable, a.spare_hosts_used) == (
        b.evacuations, b.unplaceable, b.spare_hosts_used
    )  # fmt: skip
    assert set(a.refused) == set(b.refused) and set(a.unprotected) == set(b.unprotected)


def test_unreadable_image_properties_fail_closed_when_an_image_rule_is_in_play() -> None:
    inst = InstanceInfo(
        "i1", "vm", "h1", "p", "ACTIVE", None, False, FlavorInfo("f", 1, 512, 1),
        metadata={"HA_Enabled": "True"}, image_unreadable=True,
    )  # fmt: skip
    image_opt_out = RecoveryPolicy(
        protect=Protect.ALL, opt_out=(Rule(RuleKind.IMAGE, "ha", "off"),)
    )
    protected, why = is_protected(inst, image_opt_out, {})
    assert not protected and "unreadable" in why
    # no image rule in play: the unreadable image does not matter
    assert is_protected(inst, RecoveryPolicy(protect=Protect.OPT_IN), {})[0]
