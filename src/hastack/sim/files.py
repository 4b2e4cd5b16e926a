"""The files ``hastack sim serve`` writes so that clients and the controller can use the cloud
unchanged: a ``clouds.yaml`` for openstacksdk, a hastack configuration with every host's fence
devices, and a small state file that ``hastack sim fail/recover`` use to find the simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from hastack.sim.cloud import ADMIN_PASSWORD, ADMIN_USER, DEMO_PASSWORD, DEMO_USER

STATE_FILE = "hastack-sim.json"


def _write_private(path: Path, text: str) -> None:
    """Write a file holding credentials: created 0600, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def clouds_yaml(cloud_name: str, base_url: str) -> dict[str, Any]:
    """Two entries: ``NAME`` (the admin, as hastack uses it) and ``NAME-demo`` (a member of
    project demo, to see what a tenant sees)."""

    def entry(user: str, password: str, project: str) -> dict[str, Any]:
        return {
            "auth": {
                "auth_url": f"{base_url}/identity",
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "identity_api_version": 3,
            "interface": "public",
        }

    return {
        "clouds": {
            cloud_name: entry(ADMIN_USER, ADMIN_PASSWORD, "admin"),
            f"{cloud_name}-demo": entry(DEMO_USER, DEMO_PASSWORD, "demo"),
        }
    }


def write_clouds_yaml(path: Path, cloud_name: str, base_url: str) -> Path:
    header = "# Written by `hastack sim serve`: the simulated cloud's admin credentials.\n"
    _write_private(
        path, header + yaml.safe_dump(clouds_yaml(cloud_name, base_url), sort_keys=False)
    )
    return path


def write_hastack_config(path: Path, config: dict[str, Any]) -> Path:
    header = (
        "# hastack configuration for the simulated cloud, written by `hastack sim serve`.\n"
        "# Every host has two fence levels: IPMI, then Redfish. Holds BMC passwords: keep 0600.\n"
    )
    _write_private(path, header + yaml.safe_dump(config, sort_keys=False))
    return path


def write_state(workdir: Path, state: dict[str, Any]) -> Path:
    path = workdir / STATE_FILE
    _write_private(path, json.dumps(state, indent=2) + "\n")
    return path


def read_state(workdir: Path) -> dict[str, Any] | None:
    path = workdir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else None
