"""Building blocks the Neutron contract suites share."""

from __future__ import annotations

import ipaddress
from typing import Any


def create_public_network(network_proxy: Any, name: str, cidr: str) -> Any:
    """A flat external network (physnet ``public``) with one subnet without DHCP, its gateway
    the subnet's first address: what routers' gateways and floating IPs hang off."""
    public = network_proxy.create_network(
        name=name,
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    network_proxy.create_subnet(
        network_id=public.id,
        ip_version=4,
        cidr=cidr,
        gateway_ip=str(next(ipaddress.ip_network(cidr).hosts())),
        is_dhcp_enabled=False,
        name=f"{name}-subnet",
    )
    return public
