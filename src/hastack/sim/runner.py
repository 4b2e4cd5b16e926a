"""Run the simulated cloud in real time: the world, its HTTP face and its BMCs, together.

Used by ``hastack sim serve``, the demo, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from pathlib import Path
from types import TracebackType
from typing import Any

from hastack.clock import SystemClock
from hastack.sim.bmc.farm import BmcEndpoint, BmcFarm
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.cloud import SimCloud
from hastack.sim.files import write_clouds_yaml, write_hastack_config, write_state
from hastack.sim.http.app import SimServer
from hastack.sim.probe import ProbeFarm
from hastack.sim.world import SimConfig, World

log = logging.getLogger(__name__)

# Above this many hosts the BMCs and probe ports are off unless asked for: one UDP socket and
# one TCP socket per host add up.
BMC_AUTO_LIMIT = 2000


@dataclasses.dataclass
class SimOptions:
    spec: CloudSpec = dataclasses.field(default_factory=CloudSpec)
    timing: SimConfig = dataclasses.field(default_factory=SimConfig)
    workdir: Path = Path()
    cloud_name: str = "hastack-sim"
    port: int = 0
    bmc: bool | None = None  # None: on when hosts <= BMC_AUTO_LIMIT
    probe: bool | None = None  # a TCP probe port per host; None: on when the BMCs are
    ipmi_port_base: int = 0  # 0: free ports chosen by the OS
    redfish_port: int = 0
    write_files: bool = True


def _fds_for(count: int, headroom: int = 1024) -> bool:
    """Whether the hard descriptor limit leaves room for ``count`` more sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard == resource.RLIM_INFINITY or count + headroom <= hard


class RunningSim:
    """A started simulated cloud; a context manager that stops everything on exit."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.clock = SystemClock()
        self.world = World(self.clock, seed=options.spec.seed, config=options.timing)
        build_world(self.world, options.spec)
        self.cloud = SimCloud(self.world)
        self.server = SimServer(self.cloud, port=options.port)
        want_bmc = options.bmc if options.bmc is not None else options.spec.hosts <= BMC_AUTO_LIMIT
        self.farm: BmcFarm | None = None
        if want_bmc:
            endpoints = []
            for i, host in enumerate(sorted(self.world.hosts.values(), key=lambda h: h.name)):
                port = options.ipmi_port_base + i if options.ipmi_port_base else 0
                endpoints.append(BmcEndpoint(host.name, host.bmc_username, host.bmc_password, port))
            self.farm = BmcFarm(
                self.world,
                endpoints,
                redfish_port=options.redfish_port,
                cert_dir=options.workdir / "sim-tls",
            )
        want_probe = options.probe if options.probe is not None else want_bmc
        if options.probe is None and want_probe and not _fds_for(2 * len(self.world.hosts)):
            log.warning(
                "probe ports off: %d hosts need more descriptors than RLIMIT_NOFILE allows "
                "beside the BMCs (pass probe=True to insist)",
                len(self.world.hosts),
            )
            want_probe = False
        self.probes: ProbeFarm | None = None
        if want_probe:
            self.probes = ProbeFarm(self.world, sorted(self.world.hosts))
        self.files: dict[str, Path] = {}

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> RunningSim:
        self.server.start()
        if self.farm is not None:
            self.farm.start()
            for host in self.world.hosts.values():
                host.ipmi_port = self.farm.ipmi_port(host.name)
        if self.probes is not None:
            self.probes.start()
            for host in self.world.hosts.values():
                host.probe_port = self.probes.port(host.name)
        if self.options.write_files:
            self.write_files()
        return self

    def stop(self) -> None:
        if self.probes is not None:
            self.probes.stop()
        if self.farm is not None:
            self.farm.stop()
        self.server.stop()
        self.clock.stop()

    def __enter__(self) -> RunningSim:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def write_files(self) -> None:
        workdir = self.options.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        clouds = write_clouds_yaml(workdir / "clouds.yaml", self.options.cloud_name, self.url)
        config = write_hastack_config(workdir / "hastack.yaml", self.hastack_config(clouds))
        state = write_state(
            workdir,
            {
                "control_url": f"{self.url}/control",
                "base_url": self.url,
                "clouds_yaml": str(clouds),
                "config": str(config),
                "redfish_url": self.farm.redfish_url if self.farm else None,
            },
        )
        self.files = {"clouds_yaml": clouds, "config": config, "state": state}

    def hastack_config(self, clouds: Path) -> dict[str, Any]:
        """The controller configuration for this cloud: every instance protected, every host
        with IPMI as fence level 1 and Redfish as level 2 (when the BMCs are on the wire) and
        its TCP probe port (when the probe ports are on)."""
        hosts: dict[str, Any] = {}
        # Network nodes too: hastack fences a failed network node before moving its routers.
        for host in sorted(self.world.hosts.values(), key=lambda h: h.name):
            levels: list[dict[str, Any]] = []
            if self.farm is not None:
                creds = {"username": host.bmc_username, "password": host.bmc_password}
                levels.append(
                    {
                        "devices": [
                            {
                                "type": "ipmi",
                                "address": "127.0.0.1",
                                "port": host.ipmi_port,
                                **creds,
                            }
                        ]
                    }
                )
                levels.append(
                    {
                        "devices": [
                            {
                                "type": "redfish",
                                "address": self.farm.redfish_url,
                                "system": self.farm.systems_uri(host.name),
                                "verify_tls": False,
                                **creds,
                            }
                        ]
                    }
                )
            hosts[host.name] = {"fencing": levels}
            if self.probes is not None:
                hosts[host.name]["probe"] = {"address": "127.0.0.1", "port": host.probe_port}
        return {
            "cloud": {"name": self.options.cloud_name, "clouds_yaml": str(clouds)},
            "profile": "default",
            "store": {
                "driver": "sqlite",
                "path": str(self.options.workdir.resolve() / "hastack.db"),
            },
            # Every instance protected: the simulated hosts' disks count as shared storage,
            # so local-disk instances move too (on a real cloud, say so only if it is true).
            "segments": [
                {
                    "name": "default",
                    "hosts": ["*"],
                    "recovery": {"protect": "all", "shared_storage": True},
                }
            ],
            # A heartbeat older than 2.5 report intervals is down (Neutron's own default
            # agent_down_time is 2.5 x report_interval as well).
            "network": {"stale_after": 2.5 * self.world.neutron.config.report_interval},
            "hosts": hosts,
            # any free port: several controllers may share this machine; each prints its URL
            "api": {"listen": "127.0.0.1:0"},
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "identity": f"{self.url}/identity",
            "compute": f"{self.url}/compute/v2.1",
            "placement": f"{self.url}/placement",
            "image": f"{self.url}/image",
            "control": f"{self.url}/control",
            "hosts": len(self.world.hosts),
            "instances": len(self.world.instances),
        }
        if self.farm is not None:
            out["redfish"] = self.farm.redfish_url
            ports = sorted(h.ipmi_port for h in self.world.hosts.values())
            out["ipmi_ports"] = f"{ports[0]}-{ports[-1]}" if ports else ""
        if self.probes is not None:
            ports = sorted(h.probe_port for h in self.world.hosts.values())
            out["probe_ports"] = f"{ports[0]}-{ports[-1]}" if ports else ""
        out.update({k: str(v) for k, v in self.files.items()})
        return out
