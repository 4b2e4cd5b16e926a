"""The store on etcd v3, for several controllers: the JSON gateway over HTTP, no gRPC.

etcd (Debian ``etcd-server`` 3.4) serves its v3 API as JSON under ``/v3/`` on the client URL.
This driver speaks it with ``requests``: keys and values are base64, 64-bit integers are JSON
strings, and a field at its default value (``false``, ``0``, empty) is left out of answers.

How the :mod:`hastack.ports.store` contract maps onto etcd:

- ``revision`` is etcd's store-wide revision: a put's answer header, an entry's
  ``mod_revision``.  ``expect=0`` compares the key's ``create_revision`` with 0 (absent);
  ``expect=n`` its ``mod_revision`` with n, in one transaction with the write.
- A lease is a key, ``<lease_prefix><name>``, attached to an etcd lease of ``ttl`` seconds
  (rounded up; etcd's minimum applies).  The fencing token (``epoch``) is that key's
  ``create_revision``: a new holder creates the key anew, so the token strictly increases, and
  the key vanishes when etcd expires the lease.  A write guarded by ``lease=`` compares the
  key's ``create_revision`` with the epoch in the same transaction: a deposed leader's write
  finds another create revision, or none, and is refused.
- ``expires_at`` is the local clock when the grant or keep-alive was *sent*, plus the TTL: never
  later than etcd's own expiry, so a holder stops acting before etcd frees the lease.
- A lease past its expiry is revoked by the next contender rather than left to etcd, whose
  leader looks for expired leases only every 500 ms.  etcd reports the time left in whole
  seconds, rounded toward zero, so an answer of 0 read at ``t`` means the lease ends before
  ``t + 1``; a second 0, read 1 s later (this process's monotonic clock) and before a
  keep-alive could have been hidden by it, proves it ended, and the contender revokes it and
  takes the key.  The holder's own ``expires_at`` was earlier still, so it has stopped acting;
  its token check refuses anything after.

Endpoints: every request goes to the endpoint that answered last; a connection error, a
timeout or a 5xx tries the next one, and :class:`~hastack.errors.StoreUnavailable` is raised
once all have failed.  A write that timed out may have been applied: retried elsewhere, a
compare-and-set then reports a conflict (the safe answer); an unconditional put is rewritten
with the same value.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import requests

from hastack.clock import Clock
from hastack.errors import LeadershipLost, RevisionConflict, StoreUnavailable
from hastack.ports.store import Entry, Lease

LEASE_PREFIX = "/hastack-leases/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _equal(key: str, target: str, revision: int) -> dict[str, str]:
    """A transaction compare: ``key``'s create (``CREATE``) or mod (``MOD``) revision equals
    ``revision`` (a create revision of 0: the key does not exist)."""
    field = "create_revision" if target == "CREATE" else "mod_revision"
    return {"key": _b64(key), "target": target, "result": "EQUAL", field: str(revision)}


def _prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix`` (etcd's convention)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return base64.b64encode(bytes(raw)).decode()
        raw.pop()
    return _b64("\0")  # every key


class _Held(NamedTuple):
    holder: str
    lease_id: str
    epoch: int  # the lease key's create revision: the fencing token
    instance: str  # the store handle (process) that created it


class EtcdStore:
    """:class:`hastack.ports.store.Store` on an etcd v3 cluster.

    ``endpoints``: client URLs (``http://127.0.0.1:2379``...); ``timeout``: seconds per request,
    per endpoint."""

    def __init__(
        self,
        endpoints: Sequence[str],
        clock: Clock,
        *,
        timeout: float = 2.0,
        lease_prefix: str = LEASE_PREFIX,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd: at least one endpoint is needed")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._clock = clock
        self._timeout = timeout
        self._lease_prefix = lease_prefix
        self._instance = os.urandom(8).hex()  # this handle: only it may re-take its own lease
        self._ending: dict[str, tuple[float, float]] = {}  # lease id -> etcd's first "0 s left"
        self._http = requests.Session()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ transport

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        with self._lock:
            start = self._current
        for n in range(len(self._endpoints)):
            index = (start + n) % len(self._endpoints)
            url = f"{self._endpoints[index]}/v3/{path}"
            try:
                r = self._http.post(url, data=json.dumps(body), timeout=self._timeout)
            except requests.RequestException as exc:
                errors.append(f"{self._endpoints[index]}: {type(exc).__name__}")
                continue
            if r.status_code >= 500:
                errors.append(f"{self._endpoints[index]}: HTTP {r.status_code} {r.text[:200]}")
                continue
            if r.status_code != 200:
                raise StoreUnavailable(f"etcd refused {path}: HTTP {r.status_code} {r.text[:200]}")
            with self._lock:
                self._current = index
            try:
                data = r.json()
            except ValueError as exc:
                raise StoreUnavailable(f"etcd answered {path} with non-JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise StoreUnavailable(f"etcd answered {path} with {type(data).__name__}")
            return data
        raise StoreUnavailable(f"etcd unreachable for {path}: " + "; ".join(errors))

    @staticmethod
    def _revision(data: dict[str, Any]) -> int:
        return int(data.get("header", {}).get("revision", 0))

    def _range(self, key: str) -> dict[str, Any] | None:
        kvs = self._call("kv/range", {"key": _b64(key)}).get("kvs") or []
        return kvs[0] if kvs else None

    # ------------------------------------------------------------------ key-value

    def get(self, key: str) -> Entry | None:
        kv = self._range(key)
        if kv is None:
            return None
        return Entry(key, _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)))

    def list(self, prefix: str) -> list[Entry]:
        data = self._call(
            "kv/range",
            {"key": _b64(prefix), "range_end": _prefix_end(prefix), "sort_target": "KEY"},
        )
        return [
            Entry(_unb64(kv["key"]), _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)))
            for kv in data.get("kvs") or []
        ]

    def _guarded(
        self, key: str, expect: int | None, lease: Lease | None, op: dict[str, Any]
    ) -> dict[str, Any]:
        """Run ``op`` in a transaction guarded by ``expect`` and ``lease``; raise if a guard
        failed (the lease first: a deposed leader learns that before anything else)."""
        compare = []
        if expect is not None:
            compare.append(_equal(key, "CREATE", 0) if expect == 0 else _equal(key, "MOD", expect))
        lease_key = self._lease_prefix + lease.name if lease is not None else ""
        if lease is not None:
            compare.append(_equal(lease_key, "CREATE", lease.epoch))
        failure = [{"request_range": {"key": _b64(key)}}]
        if lease is not None:
            failure.append({"request_range": {"key": _b64(lease_key)}})
        data = self._call("kv/txn", {"compare": compare, "success": [op], "failure": failure})
        if data.get("succeeded"):
            return data
        answers = data.get("responses") or []

        def found(n: int) -> dict[str, Any] | None:
            if n >= len(answers):
                return None
            kvs = answers[n].get("response_range", {}).get("kvs") or []
            return kvs[0] if kvs else None

        if lease is not None:
            holder = found(1)
            if holder is None or int(holder.get("create_revision", 0)) != lease.epoch:
                raise LeadershipLost(f"lease {lease.name} epoch {lease.epoch} is no longer held")
        current = found(0)
        actual = int(current.get("mod_revision", 0)) if current else 0
        raise RevisionConflict(key, expect if expect is not None else -1, actual)

    def put(
        self, key: str, value: str, *, expect: int | None = None, lease: Lease | None = None
    ) -> int:
        op = {"request_put": {"key": _b64(key), "value": _b64(value)}}
        if expect is None and lease is None:
            return self._revision(self._call("kv/put", op["request_put"]))
        return self._revision(self._guarded(key, expect, lease, op))

    def delete(self, key: str, *, expect: int | None = None, lease: Lease | None = None) -> None:
        op = {"request_delete_range": {"key": _b64(key)}}
        if expect is None and lease is None:
            self._call("kv/deleterange", op["request_delete_range"])
            return
        self._guarded(key, expect, lease, op)

    # ------------------------------------------------------------------ leases

    def _holder(self, name: str) -> _Held | None:
        """Who holds lease ``name`` (None when free)."""
        kv = self._range(self._lease_prefix + name)
        if kv is None:
            return None
        try:
            doc = json.loads(_unb64(kv.get("value", "")))
            return _Held(
                str(doc["holder"]),
                str(doc["lease"]),
                int(kv.get("create_revision", 0)),
                str(doc.get("instance", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"lease {name}: unreadable holder record: {exc}") from exc

    def _expired(self, held: _Held) -> bool:
        """Whether ``held``'s etcd lease has certainly ended (module docstring): two answers
        of "0 s left" at least 1 s apart, and less than ``granted - 1`` s apart, so that no
        keep-alive can have come between them (it would have reset the lease to ``granted``
        seconds; etcd refuses keep-alives once a lease has expired)."""
        sent = time.monotonic()
        data = self._call("lease/timetolive", {"ID": held.lease_id})
        received = time.monotonic()
        left, granted = int(data.get("TTL", 0)), int(data.get("grantedTTL", 0))
        first = self._ending.get(held.lease_id)
        if left != 0 or granted < 3:  # gone, alive, or too short to reason about
            self._ending.pop(held.lease_id, None)
            return False
        # first: (sent, received) of the first 0; it ended before first-received + 1
        if first is None or received - first[0] >= granted - 1:
            self._ending[held.lease_id] = (sent, received)
            if len(self._ending) > 64:  # leases seen ending long ago
                for lease_id in list(self._ending)[:32]:
                    self._ending.pop(lease_id)
            return False
        return sent - first[1] >= 1.0  # etcd read this after the end: no keep-alive since

    def _keepalive(self, lease_id: str) -> int:
        """Renew etcd lease ``lease_id``; its remaining TTL in seconds (0: gone)."""
        data = self._call("lease/keepalive", {"ID": lease_id})
        return int((data.get("result") or {}).get("TTL", 0))

    def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        sent = self._clock.now()
        seconds = max(1, math.ceil(ttl))
        held = self._holder(name)
        # Only this very store handle may take its own lease back (after a failed tick): a
        # restarted controller with the same name waits for the old lease to end, or a frozen
        # predecessor and it would share one fencing token.
        if held is not None and (held.holder != holder or held.instance != self._instance):
            if not self._expired(held):
                return None
            try:
                self._call("lease/revoke", {"ID": held.lease_id})  # ended: see the docstring
            except StoreUnavailable as exc:
                if "lease not found" not in str(exc):  # etcd revoked it first: as good
                    raise
            held = None
        if held is not None:
            granted = self._keepalive(held.lease_id)
            if granted > 0:
                return Lease(name, holder, held.epoch, sent + min(granted, seconds))
            # expired between the read and the keep-alive: take it anew below
        grant = self._call("lease/grant", {"TTL": str(seconds)})
        lease_id = str(grant.get("ID", ""))
        granted = int(grant.get("TTL", 0))
        if not lease_id or granted <= 0:
            raise StoreUnavailable(f"etcd did not grant a lease: {grant.get('error', grant)}")
        key = _b64(self._lease_prefix + name)
        record = _b64(json.dumps({"holder": holder, "lease": lease_id, "instance": self._instance}))
        data = self._call(
            "kv/txn",
            {
                "compare": [_equal(self._lease_prefix + name, "CREATE", 0)],
                "success": [{"request_put": {"key": key, "value": record, "lease": lease_id}}],
                "failure": [],
            },
        )
        if not data.get("succeeded"):
            self._call("lease/revoke", {"ID": lease_id})
            return None
        return Lease(name, holder, self._revision(data), sent + min(granted, seconds))

    def renew(self, lease: Lease, ttl: float) -> Lease:
        """Keep ``lease`` alive.  etcd renews a lease for the TTL it was granted with; a
        different ``ttl`` takes effect at the next acquire."""
        sent = self._clock.now()
        held = self._holder(lease.name)
        if held is None or held.holder != lease.holder or held.epoch != lease.epoch:
            raise LeadershipLost(f"lease {lease.name} epoch {lease.epoch} expired or taken")
        granted = self._keepalive(held.lease_id)
        if granted <= 0:
            raise LeadershipLost(f"lease {lease.name} epoch {lease.epoch} expired")
        return Lease(lease.name, lease.holder, lease.epoch, sent + min(granted, math.ceil(ttl)))

    def release(self, lease: Lease) -> None:
        held = self._holder(lease.name)
        if held is not None and held.holder == lease.holder and held.epoch == lease.epoch:
            self._call("lease/revoke", {"ID": held.lease_id})

    def current(self, name: str) -> Lease | None:
        sent = self._clock.now()
        held = self._holder(name)
        if held is None:
            return None
        holder, lease_id, epoch = held.holder, held.lease_id, held.epoch
        # whole seconds left, rounded down; 0 (left out of the answer): under a second;
        # -1: etcd expired it
        left = int(self._call("lease/timetolive", {"ID": lease_id}).get("TTL", 0))
        if left < 0:
            return None
        return Lease(name, holder, epoch, sent + left)

    def close(self) -> None:
        self._http.close()
