"""The shape of a running cloud under test, shared by every backend.

Control protocol (HTTP+JSON on ``control_url``), implemented by the simulator and by the
real-Nova oracle alike, so the contract tests never know which one they talk to:

- ``GET  /control/info`` -> ``{"backend": str, "hosts": [str], "service_down_time": int,
  "report_interval": int}``
- ``POST /control/hosts/{host}/fail``  body ``{"mode": "power" | "compute-crash" | ...}``
  -> 200 ``{"host": str, "mode": str}``; 400 ``{"error": str}`` for a mode the backend lacks;
  404 for an unknown host.
- ``POST /control/hosts/{host}/recover`` -> 200 ``{"host": str}``: the host and its services
  come back (a restarted compute service cleans up instances evacuated away from it).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import requests


@dataclasses.dataclass
class Control:
    url: str

    def info(self) -> dict[str, Any]:
        r = requests.get(f"{self.url}/control/info", timeout=30)
        r.raise_for_status()
        return r.json()

    def fail(self, host: str, mode: str = "power", agent: str | None = None) -> requests.Response:
        body = {"mode": mode} if agent is None else {"mode": mode, "agent": agent}
        return requests.post(f"{self.url}/control/hosts/{host}/fail", json=body, timeout=60)

    def recover(self, host: str) -> requests.Response:
        return requests.post(f"{self.url}/control/hosts/{host}/recover", json={}, timeout=60)


@dataclasses.dataclass
class CloudUnderTest:
    backend: str  # "sim" or "nova_oracle"
    clouds_yaml: pathlib.Path  # a clouds.yaml usable by openstacksdk
    cloud_name: str  # the entry in clouds.yaml
    control: Control
    hosts: list[str]  # compute host names, e.g. ["compute01", ...]
    service_down_time: int  # seconds after which Nova reports a silent service down


@dataclasses.dataclass
class NetworkCloudUnderTest:
    """A cloud with a Neutron: the simulator's Neutron face or the real-Neutron oracle.

    The control protocol is the one above; both backends accept the fail modes ``power``,
    ``agents-down`` (every Neutron agent on the host stops heartbeating, the host stays up) and
    ``agent-dead`` with body ``{"mode": "agent-dead", "agent": "l3" | "dhcp" | "ovs" |
    "metadata"}`` (that one agent dies, the host and its other agents stay up).
    """

    backend: str  # "sim_network" or "neutron_oracle"
    clouds_yaml: pathlib.Path
    cloud_name: str  # admin entry; "<cloud_name>-demo" is a member of another project
    control: Control
    hosts: list[str]  # network node names, e.g. ["network01", ...]
    agent_down_time: int  # seconds after which Neutron reports a silent agent dead
