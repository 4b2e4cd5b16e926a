"""The REST API's documents: what ``/openapi.json`` describes and every client relies on.

Plain data, no behaviour.  Times are Unix seconds (float).  Everything a controller decides is
here with its reason; secrets never are (a fence device shows its name and type only).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["reader", "operator"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors


class ErrorBody(_Doc):
    status: int = Field(description="the HTTP status, repeated")
    error: str = Field(description="what was wrong, precisely")
    field: str | None = Field(None, description="the request field at fault, if one is")


# ---------------------------------------------------------------- cluster


class BudgetUse(_Doc):
    kind: str = Field(description="segment, aggregate, az or cloud")
    domain: str
    used: int = Field(description="hosts fenced in this domain within the window")
    limit: int = Field(description="hosts that may be fenced in one window")
    window: float = Field(description="seconds")


class Guards(_Doc):
    halted: str | None = Field(None, description="a cluster-wide stop and its reason")
    budgets: list[BudgetUse]
    max_fences_per_tick: int
    cliff_hosts: int
    cliff_percent: float
    cliff_window: float
    min_visible_fraction: float


class Status(_Doc):
    controller: str = Field(description="the controller that answered")
    leading: bool = Field(description="whether the controller that answered holds the lease")
    leader: str | None = Field(description="the lease holder, if any")
    epoch: int | None = Field(description="the leader's fencing token")
    profile: str
    paused: bool = Field(description="automatic actions paused by an operator")
    verdict: str = Field(description="the leader's verdict of its last tick")
    tick_at: float | None = Field(description="when that tick ran")
    hosts_total: int
    hosts_visible: int
    hosts_by_state: dict[str, int]
    operations_open: int
    guards: Guards


# ---------------------------------------------------------------- hosts


class SignalView(_Doc):
    signal: str = Field(description="nova, probe, bmc or agent")
    lost: bool | None = Field(description="true: says the host is gone; null: no data")
    at: float
    detail: str


class FenceDeviceView(_Doc):
    name: str
    type: str = Field(description="ipmi, redfish, fence_agent, nova, watchdog, ...")


class HostView(_Doc):
    name: str
    state: str = Field(
        description="ok, suspect, failed, fencing, fenced, fence_failed, recovering, "
        "recovered or maintenance"
    )
    since: float = Field(description="when it entered this state (0: never changed)")
    reason: str = Field(description="the verdict that put it there")
    maintenance: bool
    segment: str | None = Field(description="the recovery segment; null: observed only")
    signals: list[SignalView] = Field(description="the latest reading of each signal")
    fence_levels: list[list[FenceDeviceView]] = Field(description="tried in order")
    operation: str | None = Field(description="the open recovery of this host, if any")


class HostList(_Doc):
    hosts: list[HostView]


class HostDetail(HostView):
    operations: list[OperationSummary] = Field(description="this host's operations, newest first")


# ---------------------------------------------------------------- operations


class OperationSummary(_Doc):
    id: str
    kind: str = Field(description="recover-host, or a network operation")
    host: str
    state: str = Field(description="open, done, failed or cancelled")
    host_state: str
    actions: int = Field(description="evacuations, or router and network moves")
    done: int = Field(description="actions completed")
    reason: str
    created: float
    updated: float


class StepView(_Doc):
    id: str
    kind: str
    state: str = Field(description="pending, running, done, failed or skipped")
    attempts: int
    result: str
    updated: float
    target: str | None = Field(None, description="an evacuation's or a move's destination")


class OperationDetail(OperationSummary):
    epoch: int = Field(description="the fencing token of the leader that last wrote it")
    steps: list[StepView]
    log: list[str] = Field(description="its verdicts, oldest first")


class OperationList(_Doc):
    operations: list[OperationSummary]


# ---------------------------------------------------------------- what-if


class PlannedEvacuation(_Doc):
    instance: str
    name: str
    target: str | None = Field(description="null: Nova's scheduler chooses")
    wave: int
    priority: int
    reason: str


class SkippedInstance(_Doc):
    instance: str
    name: str
    reason: str


class WhatIf(_Doc):
    host: str
    verdict: str = Field(description="the whole answer in one sentence")
    segment: str | None
    fencing: str = Field(description="whether the guards would let it be fenced now, and why")
    fence_levels: list[list[FenceDeviceView]]
    evacuations: list[PlannedEvacuation]
    unplaceable: list[SkippedInstance] = Field(description="protected, but nowhere fits")
    refused: list[SkippedInstance] = Field(description="protected, but unsafe to evacuate")
    unprotected: list[SkippedInstance] = Field(description="left alone by policy")
    spare_hosts_used: list[str]


# ---------------------------------------------------------------- events


class EventView(_Doc):
    at: float
    subject: str = Field(description="a host, an agent, network or cluster")
    message: str = Field(description="what, and why")
    by: str = Field(description="the controller and epoch, or the operator")
    kind: str = Field(description="decision, verdict or request")


class EventList(_Doc):
    events: list[EventView]


# ---------------------------------------------------------------- actions


class ActionBody(_Doc):
    comment: str = Field("", max_length=1000, description="why, for the audit trail")


class ConfirmBody(ActionBody):
    confirm: Literal[True] = Field(
        description="must be true: the operator asserts the host is powered off and cannot run "
        "its instances (a wrong answer can run a VM twice)"
    )


class Accepted(_Doc):
    request: str = Field(description="what was recorded for the leader")
    by: str = Field(description="the operator it is audited under")
    detail: str = Field("", description="what happens next")


class Health(_Doc):
    ok: bool
    controller: str
    leading: bool


class WhoAmI(_Doc):
    name: str
    role: Role
    source: Literal["static", "keystone"]


HostDetail.model_rebuild()
