"""The store port: a small key-value store with compare-and-set and leases.

It holds the journal and the cluster-wide state.  Drivers: sqlite (embedded, one controller;
``hastack.drivers.store.sqlite``) and etcd (several controllers; issue "own HA").  One
conformance suite (tests/contract/test_store_conformance.py) runs over every driver.

Contract:

- Every successful write gets a new, strictly greater ``revision`` (store-wide, like etcd's
  mod_revision).  ``put(..., expect=0)`` creates only; ``expect=n`` writes only if the key's
  current revision is ``n``; otherwise :class:`~hastack.errors.RevisionConflict`.
- A write given ``lease=`` succeeds only if that lease is still held, unexpired, with the same
  epoch — checked atomically with the write — else :class:`~hastack.errors.LeadershipLost`.
  This is the fencing token: a controller that lost leadership cannot write.
- ``acquire`` grants a lease when it is free or expired (a new, greater epoch) or already held
  by the same holder (renewed, same epoch); otherwise it returns None.
- Failures to reach the store raise :class:`~hastack.errors.StoreUnavailable`.  Each call
  returns or raises within the driver's configured timeout (sqlite: 5 s lock wait).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    value: str
    revision: int


@dataclasses.dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    epoch: int  # the fencing token: strictly increases whenever the holder changes
    expires_at: float


class Store(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def put(
        self, key: str, value: str, *, expect: int | None = None, lease: Lease | None = None
    ) -> int: ...

    def delete(
        self, key: str, *, expect: int | None = None, lease: Lease | None = None
    ) -> None: ...

    def list(self, prefix: str) -> list[Entry]: ...

    def acquire(self, name: str, holder: str, ttl: float) -> Lease | None: ...

    def renew(self, lease: Lease, ttl: float) -> Lease: ...

    def release(self, lease: Lease) -> None: ...

    def current(self, name: str) -> Lease | None: ...

    def close(self) -> None: ...
