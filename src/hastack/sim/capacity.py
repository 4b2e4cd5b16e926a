"""Placement-style capacity and the simulated scheduler's host choice.

Inventories follow Nova's defaults for a libvirt host: VCPU at allocation ratio 4.0, MEMORY_MB with
512 MiB reserved at ratio 1.0, DISK_GB at ratio 1.0.  A volume-backed instance allocates no DISK_GB,
as in Nova.  Usage is kept incrementally so a scheduling pass over 10,000 hosts stays cheap.
"""

from __future__ import annotations

import dataclasses

from hastack.sim.model import Flavor, Host

CPU_RATIO = 4.0
RAM_RATIO = 1.0
DISK_RATIO = 1.0
RAM_RESERVED = 512


@dataclasses.dataclass
class Usage:
    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0


def request_of(flavor: Flavor, volume_backed: bool) -> Usage:
    disk = 0 if volume_backed else flavor.disk + flavor.ephemeral + flavor.swap // 1024
    return Usage(flavor.vcpus, flavor.ram, disk)


def inventories(host: Host) -> dict[str, dict[str, float | int]]:
    """The host's resource provider inventories, as Placement returns them."""

    def inv(total: int, reserved: int, ratio: float) -> dict[str, float | int]:
        return {
            "total": total,
            "reserved": reserved,
            "min_unit": 1,
            "max_unit": total,
            "step_size": 1,
            "allocation_ratio": ratio,
        }

    return {
        "VCPU": inv(host.vcpus, 0, CPU_RATIO),
        "MEMORY_MB": inv(host.memory_mb, RAM_RESERVED, RAM_RATIO),
        "DISK_GB": inv(host.disk_gb, 0, DISK_RATIO),
    }


def free(host: Host, used: Usage) -> Usage:
    return Usage(
        int(host.vcpus * CPU_RATIO) - used.vcpus,
        int((host.memory_mb - RAM_RESERVED) * RAM_RATIO) - used.memory_mb,
        int(host.disk_gb * DISK_RATIO) - used.disk_gb,
    )


def fits(host: Host, used: Usage, want: Usage) -> bool:
    f = free(host, used)
    return f.vcpus >= want.vcpus and f.memory_mb >= want.memory_mb and f.disk_gb >= want.disk_gb
