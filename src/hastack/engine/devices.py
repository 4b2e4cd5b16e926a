"""Fence devices as the engine holds them: named, per host, by level, one call at a time.

A BMC handles one session badly and two concurrent ones worse, and the BMC signal and the
fencing step both use the same devices: every call to one device goes through its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from hastack.ports.fencing import FenceDevice, FenceResult


class Serialized:
    """A :class:`FenceDevice` whose calls never overlap."""

    def __init__(self, device: FenceDevice) -> None:
        self.device = device
        self.name = device.name
        self._lock = threading.Lock()

    def status(self, timeout: float) -> FenceResult:
        with self._lock:
            return self.device.status(timeout)

    def off(self, timeout: float) -> FenceResult:
        with self._lock:
            return self.device.off(timeout)

    def on(self, timeout: float) -> FenceResult:
        with self._lock:
            return self.device.on(timeout)


class FenceTopology:
    """Every host's fence levels: ``levels(host)`` gives the device names the pure core plans
    with, ``device(host, name)`` the device the executor calls."""

    def __init__(self, hosts: Mapping[str, Sequence[Sequence[FenceDevice]]]) -> None:
        self._levels: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._devices: dict[tuple[str, str], Serialized] = {}
        for host, levels in hosts.items():
            names: list[tuple[str, ...]] = []
            for level in levels:
                level_names = []
                for device in level:
                    wrapped = device if isinstance(device, Serialized) else Serialized(device)
                    self._devices[(host, wrapped.name)] = wrapped
                    level_names.append(wrapped.name)
                names.append(tuple(level_names))
            self._levels[host] = tuple(names)

    def levels(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return dict(self._levels)

    def device(self, host: str, name: str) -> Serialized | None:
        return self._devices.get((host, name))

    def first_level(self) -> dict[str, list[FenceDevice]]:
        """Per host, the devices of its first level: what the BMC signal reads."""
        out: dict[str, list[FenceDevice]] = {}
        for host, levels in self._levels.items():
            if levels:
                out[host] = [self._devices[(host, n)] for n in levels[0]]
        return out
