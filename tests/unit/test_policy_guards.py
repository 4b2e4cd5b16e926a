"""Guards: budgets per failure domain, the cliff, visibility, the store; each refusal explained."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.policy.guards import Budget, GuardInput, GuardPolicy, check

HOSTS = [f"compute{i:02d}" for i in range(1, 21)]
AZ = {h: {"az": "az1" if i < 10 else "az2", "segment": "seg"} for i, h in enumerate(HOSTS)}
SIZES = {("az", "az1"): 10, ("az", "az2"): 10, ("segment", "seg"): 20, ("cloud", "cloud"): 20}


def data(candidates, *, fences=(), onsets=(), visible=20, store_ok=True, now=1000.0) -> GuardInput:
    return GuardInput(
        candidates=list(candidates),
        domains=AZ,
        domain_sizes=SIZES,
        fence_starts=list(fences),
        lost_onsets=list(onsets),
        hosts_total=20,
        hosts_visible=visible,
        store_ok=store_ok,
        now=now,
    )


POLICY = GuardPolicy(
    budgets=(Budget("az", 2, 50.0, 600.0), Budget("cloud", 3, 20.0, 600.0)),
    max_fences_per_tick=5,
    cliff_hosts=5,
    cliff_percent=25.0,
    cliff_window=30.0,
)


def test_allows_within_budget() -> None:
    d = check(POLICY, data(["compute01"], onsets=[("compute01", 990.0)]))
    assert d.allowed == ("compute01",) and not d.refused and d.halted is None


def test_az_budget_refuses_with_numbers() -> None:
    fences = [("compute01", 900.0), ("compute02", 950.0)]
    d = check(POLICY, data(["compute03", "compute15"], fences=fences))
    assert d.allowed == ("compute15",)
    ((host, why),) = d.refused
    assert host == "compute03"
    assert "az az1 budget spent: 2 fenced in 600s, limit 2" in why


def test_old_fences_fall_out_of_the_window() -> None:
    fences = [("compute01", 100.0), ("compute02", 200.0)]  # more than 600 s ago
    assert check(POLICY, data(["compute03"], fences=fences)).allowed == ("compute03",)


def test_percent_budget_is_the_stricter_one() -> None:
    policy = GuardPolicy(budgets=(Budget("az", 100, 10.0, 600.0),))  # 10% of 10 hosts = 1
    d = check(policy, data(["compute01", "compute02"]))
    assert d.allowed == ("compute01",) and "limit 1" in d.refused[0][1]


def test_cliff_halts_everything() -> None:
    onsets = [(h, 995.0) for h in HOSTS[:5]]
    d = check(POLICY, data(["compute01"], onsets=onsets))
    assert d.allowed == () and d.halted is not None
    assert "cliff" in d.halted and "5 hosts lost signals within 30s" in d.halted


def test_visibility_and_store_halt() -> None:
    d = check(POLICY, data(["compute01"], visible=8))
    assert d.halted is not None and "sees 8 of 20 hosts" in d.halted
    d = check(POLICY, data(["compute01"], store_ok=False))
    assert d.halted is not None and "store" in d.halted


def test_per_tick_cap() -> None:
    policy = GuardPolicy(budgets=(Budget("cloud", 100, 100.0, 600.0),), max_fences_per_tick=2,
                         cliff_hosts=100, cliff_percent=100.0)  # fmt: skip
    d = check(policy, data(HOSTS[:4]))
    assert d.allowed == tuple(HOSTS[:2]) and all("per-tick cap" in why for _, why in d.refused)


def test_host_outside_every_domain_is_refused() -> None:
    d = check(GuardPolicy(budgets=(Budget("aggregate", 5, 50.0, 600.0),)), data(["compute01"]))
    assert d.allowed == () and "not in any aggregate" in d.refused[0][1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1.0, 300.0), st.lists(st.sampled_from(HOSTS), max_size=6, unique=True)),
        min_size=1,
        max_size=30,
    )
)
def test_never_more_fences_than_the_budget_in_any_window(ticks) -> None:
    """Property: replaying what the guards allow, no window ever holds more fences per domain
    than its budget."""
    now, fences = 0.0, []
    for gap, candidates in ticks:
        now += gap
        fenced = {h for h, _ in fences}
        todo = [h for h in candidates if h not in fenced]
        decision = check(POLICY, data(todo, fences=fences, now=now))
        assert set(decision.allowed) <= set(todo)
        assert len(decision.allowed) <= POLICY.max_fences_per_tick
        fences += [(h, now) for h in decision.allowed]
        for budget in POLICY.budgets:
            in_window = [h for h, at in fences if now - at < budget.window]
            for domain in {AZ[h].get(budget.kind, "cloud") for h in in_window}:
                members = [h for h in in_window if AZ[h].get(budget.kind, "cloud") == domain]
                size = SIZES[(budget.kind, domain)]
                assert len(members) <= budget.limit(size)
