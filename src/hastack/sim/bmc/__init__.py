"""Simulated BMCs on the wire: IPMI 2.0 / RMCP+ over UDP and Redfish over HTTPS.

:class:`BmcFarm` serves one BMC per simulated host from one process; a :class:`BmcBackend`
(the simulated world, or :class:`InMemoryBmcBackend`) owns the power truth.  The farm is
imported lazily, so that importing the port (``hastack.sim.bmc.backend``) stays cheap and does
not pull in pyghmi or cryptography.
"""

from typing import TYPE_CHECKING, Any

from hastack.sim.bmc.backend import BmcBackend, BmcCondition, InMemoryBmcBackend, PowerAction

if TYPE_CHECKING:
    from hastack.sim.bmc.farm import BmcEndpoint, BmcFarm

__all__ = [
    "BmcBackend",
    "BmcCondition",
    "BmcEndpoint",
    "BmcFarm",
    "InMemoryBmcBackend",
    "PowerAction",
]


def __getattr__(name: str) -> Any:
    if name in ("BmcEndpoint", "BmcFarm"):
        from hastack.sim.bmc import farm  # noqa: PLC0415 (lazy on purpose)

        return getattr(farm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
