"""What the REST API does, without HTTP: reads the engine's published view and the store,
checks an operator's request against the leader's state, and records it for the leader's next
tick (audited with the operator's name first).  Every refusal is an :class:`ApiError` with the
precise reason; a request is either recorded whole or not at all (one store write)."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from hastack import controller as requests_
from hastack.api import models, views
from hastack.api.auth import Caller
from hastack.engine.audit import AuditTrail
from hastack.engine.engine import CONTROL, LEADER, Engine, EngineView
from hastack.engine.journal import Journal, Operation, OpState
from hastack.errors import HastackError, StoreUnavailable
from hastack.policy import levers
from hastack.ports.store import Store

log = logging.getLogger(__name__)

ADVERTISED = "/hastack/api/leader"  # the leader's API URL, for followers to forward to


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class Service:
    def __init__(self, engine: Engine, store: Store, *, controller: str, profile: str) -> None:
        self.engine = engine
        self.store = store
        self.controller = controller
        self.profile = profile
        self._cache_lock = threading.Lock()
        self._hosts_cache: dict[str | None, tuple[EngineView, bytes]] = {}

    # ------------------------------------------------------------ reads

    @property
    def view(self) -> EngineView:
        return self.engine.view

    def leading(self) -> bool:
        return self.view.leading

    def status(self) -> models.Status:
        lease = self._store(lambda: self.store.current(LEADER))
        paused = self._store(lambda: self.store.get(f"{CONTROL}paused")) is not None
        return views.status(self.view, self.controller, lease, self.profile, paused)

    def _leader_view(self) -> EngineView:
        view = self.view
        if not view.leading:
            raise ApiError(503, f"{self.controller} is not leading and no leader answers")
        return view

    def hosts_json(self, state: str | None) -> bytes:
        """``GET /v1/hosts`` as JSON, built once per tick's view and state filter however
        many clients ask (a dashboard polls it every 2 s; 10,000 hosts take ~0.4 s)."""
        view = self._leader_view()
        with self._cache_lock:
            cached = self._hosts_cache.get(state)
            if cached is not None and cached[0] is view:
                return cached[1]
        body = views.hosts(view, state).model_dump_json().encode()
        with self._cache_lock:
            if len(self._hosts_cache) > 16:
                self._hosts_cache.clear()
            self._hosts_cache[state] = (view, body)
        return body

    def _known(self, view: EngineView, host: str) -> None:
        if host not in view.records:
            raise ApiError(404, f"no host {host!r} (hosts known: {len(view.records)})", "name")

    def host(self, name: str) -> models.HostDetail:
        view = self._leader_view()
        self._known(view, name)
        return views.host_detail(view, name, self._operations())

    def what_if(self, name: str) -> models.WhatIf:
        view = self._leader_view()
        self._known(view, name)
        try:
            workload = self.engine.compute.workload(name)
        except HastackError as exc:
            raise ApiError(502, f"cannot read {name}'s workload from Nova: {exc}") from None
        answer = levers.what_if(
            name,
            workload,
            view.settings,
            snapshot=view.snapshot,
            records=view.records,
            ops=view.ops,
        )
        return views.what_if(answer, view)

    def _operations(self) -> list[Operation]:
        return self._store(lambda: [op for op, _ in Journal(self.store).operations()])

    def operations(self, state: str | None, host: str | None, limit: int) -> models.OperationList:
        rows = views.operations(self._operations())
        rows = [r for r in rows if (state is None or r.state == state)]
        rows = [r for r in rows if (host is None or r.host == host)]
        return models.OperationList(operations=rows[:limit])

    def operation(self, op_id: str) -> models.OperationDetail:
        op = next((o for o in self._operations() if o.id == op_id), None)
        if op is None:
            raise ApiError(404, f"no operation {op_id!r}", "id")
        return views.operation(op)

    def events(self, host: str | None, since: float | None, limit: int) -> models.EventList:
        trail = AuditTrail(self.store)
        entries = self._store(lambda: trail.read(since=since, subject=host, limit=limit))
        return views.events(reversed(entries))

    # ------------------------------------------------------------ actions

    def _record(self, caller: Caller, kind: str, host: str, comment: str, **extra: Any) -> None:
        body = {"operator": caller.name, "at": time.time(), "comment": comment, **extra}
        self._store(lambda: requests_.request(self.store, kind, host, body))

    def _open_op(self, view: EngineView, host: str) -> Operation | None:
        return next(
            (op for op in view.ops if op.subject == host and op.state == OpState.OPEN), None
        )

    def maintenance(self, caller: Caller, host: str, on: bool, comment: str) -> models.Accepted:
        view = self._leader_view()
        self._known(view, host)
        inside = view.snapshot is not None and host in view.snapshot.maintenance
        if on:
            if inside:
                return models.Accepted(request="maintenance", by=caller.name, detail="already")
            self._record(caller, "maintenance", host, comment)
            detail = f"{host} is observed, never acted on, from the next tick"
            return models.Accepted(request=f"maintenance on {host}", by=caller.name, detail=detail)
        if not inside:
            raise ApiError(409, f"{host} is not in maintenance")
        self._store(
            lambda: requests_.withdraw(self.store, "maintenance", host, operator=caller.name)
        )
        return models.Accepted(
            request=f"maintenance off {host}", by=caller.name, detail="acted on again if it fails"
        )

    def confirm_off(self, caller: Caller, host: str, comment: str) -> models.Accepted:
        view = self._leader_view()
        self._known(view, host)
        op = self._open_op(view, host)
        if op is None:
            raise ApiError(
                409,
                f"{host} has no open recovery: a confirmation counts only for a recovery "
                "already open (one made earlier says nothing about its power now)",
            )
        self._record(caller, "confirm", host, comment)
        return models.Accepted(
            request=f"confirm-off {host}",
            by=caller.name,
            detail=f"{op.id} may take it as the fence proof on the next tick",
        )

    def rejoin(self, caller: Caller, host: str, comment: str) -> models.Accepted:
        view = self._leader_view()
        self._known(view, host)
        op = self._open_op(view, host)
        if op is None:
            raise ApiError(409, f"{host} has no open recovery waiting to rejoin")
        self._record(caller, "rejoin", host, comment)
        return models.Accepted(
            request=f"rejoin {host}",
            by=caller.name,
            detail=f"{op.id} re-enables it in Nova once every evacuation is settled",
        )

    def lever(self, caller: Caller, op_id: str, kind: str, comment: str) -> models.Accepted:
        view = self._leader_view()
        op = next((o for o in view.ops if o.id == op_id), None)
        if op is None:
            raise ApiError(404, f"no current operation {op_id!r}", "id")
        if kind == "retry":
            why = levers.retryable(op)
        elif op.kind != "recover-host":
            why = f"{op.kind} operations cannot be cancelled"
        elif op.state != OpState.OPEN:
            why = f"{op_id} is {op.state.value}: only an open recovery can be cancelled"
        else:
            why = None
        if why is not None:
            raise ApiError(409, why)
        self._record(caller, kind, op_id, comment)
        detail = (
            "its failed steps run again from the next tick"
            if kind == "retry"
            else f"pending steps are skipped and {op.subject} goes to maintenance"
        )
        return models.Accepted(request=f"{kind} {op_id}", by=caller.name, detail=detail)

    def cluster(self, caller: Caller, action: str, comment: str) -> models.Accepted:
        paused = self._store(lambda: self.store.get(f"{CONTROL}paused")) is not None
        if action == "pause":
            if paused:
                return models.Accepted(request="pause", by=caller.name, detail="already paused")
            self._record(caller, "paused", "", comment)
            detail = "no new automatic action from the next tick; running calls finish"
        elif action == "resume":
            if not paused:
                return models.Accepted(request="resume", by=caller.name, detail="not paused")
            self._store(lambda: requests_.withdraw(self.store, "paused", operator=caller.name))
            detail = "automatic actions resume from the next tick"
        else:
            self._record(caller, "cliff-ack", "", comment)
            detail = "hosts lost before now no longer count toward the cliff"
        return models.Accepted(request=action, by=caller.name, detail=detail)

    # ------------------------------------------------------------ leader's address

    def advertise(self, url: str) -> None:
        """Called by the leader: where followers forward requests to."""
        epoch = self.view.epoch
        body = json.dumps({"holder": self.controller, "epoch": epoch, "url": url})
        self.store.put(ADVERTISED, body)

    def leader_url(self) -> str | None:
        """The current leader's API URL, when this controller is not the leader and the
        advertised address belongs to the current lease holder."""
        if self.view.leading:
            return None
        try:
            lease = self.store.current(LEADER)
            entry = self.store.get(ADVERTISED)
        except HastackError:
            return None
        if lease is None or entry is None or lease.holder == self.controller:
            return None
        try:
            doc = json.loads(entry.value)
        except ValueError:
            return None
        if doc.get("holder") != lease.holder or doc.get("epoch") != lease.epoch:
            return None
        return str(doc.get("url") or "") or None

    def _store(self, call: Any) -> Any:
        try:
            return call()
        except StoreUnavailable as exc:
            raise ApiError(503, f"the store is unreachable: {exc}") from None
