"""Guards against partitions and storms: which failed hosts may be fenced now, and which not.

Every guard fails *closed* — when in doubt hastack does not fence — and every refusal is a
verdict with its numbers.  In order:

1. **store**: the controller cannot read or write its store: no action at all.
2. **visibility**: it observes fewer than ``min_visible_fraction`` of the hosts: it is probably
   the one that is cut off, so it stops acting.
3. **cliff**: at least ``cliff_hosts`` hosts (or ``cliff_percent`` of them) started losing
   signals within ``cliff_window`` seconds of each other: that looks like a partition or a
   shared outage, not independent host failures, so all fencing stops and an operator is
   alerted.  It latches: it holds while those hosts stay lost, until an operator acknowledges.
4. **budgets**: per failure domain (segment, aggregate, availability zone, or the whole cloud),
   at most ``max_hosts`` and ``max_percent`` of the domain's hosts fenced per ``window``.
5. **per tick**: at most ``max_fences_per_tick`` new fences in one pass.

Pure: the caller passes the history and the time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Budget:
    kind: str  # "segment", "aggregate", "az" or "cloud"
    max_hosts: int
    max_percent: float
    window: float  # seconds

    def limit(self, domain_size: int) -> int:
        """Hosts that may be fenced in one window, the stricter of the two budgets.  The
        percentage never rounds a non-empty domain down to zero (a 3-host cloud at 20% may
        still fence one host); ``max_hosts: 0`` is how fencing is switched off."""
        by_percent = math.floor(domain_size * self.max_percent / 100.0)
        if domain_size > 0 and self.max_percent > 0:
            by_percent = max(1, by_percent)
        return max(0, min(self.max_hosts, by_percent))


@dataclasses.dataclass(frozen=True)
class GuardPolicy:
    budgets: tuple[Budget, ...] = (Budget("cloud", 10, 20.0, 600.0),)
    max_fences_per_tick: int = 5
    cliff_hosts: int = 5
    cliff_percent: float = 20.0
    cliff_window: float = 30.0
    min_visible_fraction: float = 0.5


@dataclasses.dataclass(frozen=True)
class GuardInput:
    candidates: Sequence[str]  # failed hosts asking to be fenced, most urgent first
    domains: Mapping[str, Mapping[str, str]]  # host -> {kind: domain name}
    domain_sizes: Mapping[tuple[str, str], int]  # (kind, name) -> hosts in that domain
    fence_starts: Sequence[tuple[str, float]]  # (host, when its fencing started)
    # (host, when it first lost a signal) for every host losing signals now; the caller leaves
    # out onsets an operator acknowledged.  The cliff therefore latches: it holds while the
    # hosts of one burst stay lost, however long ago the burst was.
    lost_onsets: Sequence[tuple[str, float]]
    hosts_total: int
    hosts_visible: int
    store_ok: bool
    now: float


@dataclasses.dataclass(frozen=True)
class GuardDecision:
    allowed: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  # (host, why)
    halted: str | None  # a cluster-wide stop, with its reason

    @property
    def verdict(self) -> str:
        if self.halted:
            return self.halted
        if self.refused:
            return "; ".join(f"{h}: {why}" for h, why in self.refused)
        return f"fencing allowed for {len(self.allowed)} host(s)"


def check(policy: GuardPolicy, data: GuardInput) -> GuardDecision:
    """Split ``data.candidates`` into hosts that may be fenced now and refusals with reasons."""
    if not data.candidates:
        return GuardDecision((), (), None)
    halted = _halt_reason(policy, data)
    if halted is not None:
        return GuardDecision((), tuple((h, halted) for h in data.candidates), halted)
    used = _used_budgets(policy, data)
    allowed: list[str] = []
    refused: list[tuple[str, str]] = []
    for host in data.candidates:
        if len(allowed) >= policy.max_fences_per_tick:
            refused.append((host, f"per-tick cap reached ({policy.max_fences_per_tick})"))
            continue
        why = _over_budget(policy, data, used, host)
        if why is not None:
            refused.append((host, why))
            continue
        allowed.append(host)
        for budget in policy.budgets:
            key = (budget.kind, _domain_of(data, host, budget.kind))
            used[key] = used.get(key, 0) + 1
    return GuardDecision(tuple(allowed), tuple(refused), None)


def _halt_reason(policy: GuardPolicy, data: GuardInput) -> str | None:
    if not data.store_ok:
        return "halted: the store is unreachable; no action without a journal"
    if data.hosts_total > 0:
        seen = data.hosts_visible / data.hosts_total
        if seen < policy.min_visible_fraction:
            return (
                f"halted: this controller sees {data.hosts_visible} of {data.hosts_total} hosts "
                f"({seen:.0%} < {policy.min_visible_fraction:.0%}); it may be the partitioned one"
            )
    cluster = _largest_cluster(sorted(at for _, at in data.lost_onsets), policy.cliff_window)
    threshold = policy.cliff_hosts
    if data.hosts_total > 0:
        threshold = min(threshold, max(2, math.ceil(data.hosts_total * policy.cliff_percent / 100)))
    if cluster >= threshold:
        return (
            f"halted: cliff — {cluster} hosts lost signals within {policy.cliff_window:g}s "
            f"(threshold {threshold}); looks like a partition or shared outage, not host failures; "
            "holds while they stay lost, until an operator acknowledges it"
        )
    return None


def _largest_cluster(onsets: Sequence[float], window: float) -> int:
    """The most onsets that fall within one ``window`` (onsets sorted)."""
    best, start = 0, 0
    for end, at in enumerate(onsets):
        while at - onsets[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _domain_of(data: GuardInput, host: str, kind: str) -> str:
    if kind == "cloud":
        return "cloud"
    return data.domains.get(host, {}).get(kind, "")


def _domain_size(data: GuardInput, kind: str, name: str) -> int:
    if kind == "cloud":
        return data.domain_sizes.get(("cloud", "cloud"), data.hosts_total)
    return data.domain_sizes.get((kind, name), 0)


def _used_budgets(policy: GuardPolicy, data: GuardInput) -> dict[tuple[str, str], int]:
    used: dict[tuple[str, str], int] = {}
    for budget in policy.budgets:
        for host, at in data.fence_starts:
            if data.now - at < budget.window:
                key = (budget.kind, _domain_of(data, host, budget.kind))
                used[key] = used.get(key, 0) + 1
    return used


def _over_budget(
    policy: GuardPolicy, data: GuardInput, used: dict[tuple[str, str], int], host: str
) -> str | None:
    for budget in policy.budgets:
        name = _domain_of(data, host, budget.kind)
        if not name:
            return f"not in any {budget.kind}: no {budget.kind} budget applies, refusing"
        size = _domain_size(data, budget.kind, name)
        limit = budget.limit(size)
        count = used.get((budget.kind, name), 0)
        if count >= limit:
            return (
                f"{budget.kind} {name} budget spent: {count} fenced in {budget.window:g}s, "
                f"limit {limit} (max {budget.max_hosts} hosts, {budget.max_percent:g}% of {size})"
            )
    return None


@dataclasses.dataclass(frozen=True)
class BudgetUse:
    kind: str
    domain: str
    used: int  # fences started in the window
    limit: int
    window: float


def usage(policy: GuardPolicy, data: GuardInput) -> list[BudgetUse]:
    """Every budget's use per domain, for operators: the domains with fences in the window,
    and always the whole cloud."""
    used = _used_budgets(policy, data)
    out = []
    for budget in policy.budgets:
        names = {name for kind, name in used if kind == budget.kind}
        if budget.kind == "cloud":
            names.add("cloud")
        for name in sorted(names):
            limit = budget.limit(_domain_size(data, budget.kind, name))
            count = used.get((budget.kind, name), 0)
            out.append(BudgetUse(budget.kind, name, count, limit, budget.window))
    return out
