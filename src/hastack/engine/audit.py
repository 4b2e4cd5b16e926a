"""The audit trail: every decision, refusal and operator request, with who and why, in the store.

The leader appends what a tick decided (the events of the pure core: a host declared failed and
why, fencing refused by a guard, a plan, an evacuation confirmed or failed) and every change of
its verdict, as one key per tick, written under its lease: a deposed leader cannot add to it.
Operator requests (``hastack host confirm-off``, ``pause``, ...) are appended by the API (or the
store-level command) that takes them, with the operator's name, before the request is stored.
Any controller reads it back from the store (``GET /v1/events``, ``hastack event list``).

Keys are ``/hastack/audit/<time>-<suffix>``, the time zero-padded so that keys sort in time
order; a value is a JSON list of entries.  The trail keeps ``keep`` seconds (7 days) and at most
``max_keys`` keys; the leader prunes it every five minutes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence

from hastack.ports.store import Lease, Store

log = logging.getLogger(__name__)

AUDIT = "/hastack/audit/"
KEEP = 7 * 86400.0
MAX_KEYS = 5000
CHUNK = 500  # entries per key: a few hundred bytes each


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    at: float
    subject: str  # a host, an agent, "network" or "cluster"
    message: str  # what, and why
    by: str  # "ctl-1 (epoch 42)" or "operator alice"
    kind: str = "decision"  # decision | verdict | request

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _key(at: float, suffix: str) -> str:
    return f"{AUDIT}{at:017.6f}-{suffix}"


class AuditTrail:
    def __init__(self, store: Store, *, keep: float = KEEP, max_keys: int = MAX_KEYS) -> None:
        self.store = store
        self.keep = keep
        self.max_keys = max_keys
        self._seq = 0
        self._nonce = os.urandom(3).hex()  # two writers in one second never share a key
        self._pruned_at = 0.0

    def record(self, entries: Sequence[AuditEntry], lease: Lease | None = None) -> None:
        """Append ``entries``, in keys of at most ``CHUNK`` entries (etcd refuses requests
        over 1.5 MB); under ``lease`` (the leader's) when given.  Raises the store's errors
        (LeadershipLost for a deposed leader)."""
        for start in range(0, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            self._seq += 1
            who = f"e{lease.epoch}" if lease is not None else f"p{os.getpid()}"
            value = json.dumps([e.to_dict() for e in chunk], separators=(",", ":"))
            key = _key(chunk[0].at, f"{who}-{self._nonce}-{self._seq}")
            self.store.put(key, value, expect=0, lease=lease)

    def read(
        self,
        *,
        since: float | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries in time order (the newest ``limit`` of them), from ``since`` on, about
        ``subject`` when given.  An unreadable key is skipped with a warning."""
        out: list[AuditEntry] = []
        for item in sorted(self.store.list(AUDIT), key=lambda e: e.key):
            if since is not None and _time_of(item.key) < since - 1e-6:
                continue
            out.extend(e for e in _parse(item.key, item.value) if subject in (None, e.subject))
        out.sort(key=lambda e: e.at)
        return out[-limit:] if limit else out

    def prune(self, now: float, lease: Lease | None = None, *, every: float = 300.0) -> int:
        """Delete keys older than ``keep`` and the oldest beyond ``max_keys``, at most once
        per ``every`` seconds; the number deleted."""
        if now - self._pruned_at < every:
            return 0
        self._pruned_at = now
        keys = sorted(e.key for e in self.store.list(AUDIT))
        old = [k for k in keys if _time_of(k) < now - self.keep]
        excess = keys[: max(0, len(keys) - self.max_keys)]
        doomed = sorted(set(old) | set(excess))
        for key in doomed:
            self.store.delete(key, lease=lease)
        return len(doomed)


def _time_of(key: str) -> float:
    try:
        return float(key[len(AUDIT) :].partition("-")[0])
    except ValueError:
        return 0.0


def _parse(key: str, value: str) -> Iterable[AuditEntry]:
    try:
        raw = json.loads(value)
        return [
            AuditEntry(
                float(e["at"]),
                str(e["subject"]),
                str(e["message"]),
                str(e["by"]),
                str(e.get("kind", "decision")),
            )
            for e in raw
        ]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("audit key %s unreadable, skipped: %s", key, exc)
        return []
