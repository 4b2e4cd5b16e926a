"""A running simulated cloud: the world plus what its HTTP face needs (users, tokens, faults)."""

from __future__ import annotations

import dataclasses

from hastack.sim.faults import ApiFaults
from hastack.sim.http.keystone import TokenStore, User
from hastack.sim.world import World

ADMIN_USER = "admin"
ADMIN_PASSWORD = "hastack-sim"  # the simulator's own admin; written into its clouds.yaml
DEMO_USER = "demo"  # a member of project "demo": what a tenant, not an operator, may do
DEMO_PASSWORD = "hastack-sim-demo"

# (service type, catalog name, path prefix, path appended to the prefix in the catalog)
SERVICES = (
    ("identity", "keystone", "/identity", ""),
    ("compute", "nova", "/compute", "/v2.1"),
    ("placement", "placement", "/placement", ""),
    ("image", "glance", "/image", ""),
    ("network", "neutron", "/networking", ""),
)


@dataclasses.dataclass
class SimCloud:
    world: World
    base_url: str = "http://127.0.0.1:0"
    api_faults: ApiFaults = dataclasses.field(default_factory=ApiFaults)
    tokens: TokenStore = dataclasses.field(default_factory=TokenStore)
    users: dict[str, User] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.users:
            self.users[ADMIN_USER] = User(
                id=self.world.admin_user or "admin",
                name=ADMIN_USER,
                password=ADMIN_PASSWORD,
                project="admin",
                roles=["admin", "member", "reader"],
            )
            self.users[DEMO_USER] = User(
                id="demo",
                name=DEMO_USER,
                password=DEMO_PASSWORD,
                project="demo",
                roles=["member", "reader"],
            )

    def catalog_entries(self) -> list[tuple[str, str, str]]:
        return [(t, name, f"{self.base_url}{prefix}{tail}") for t, name, prefix, tail in SERVICES]
