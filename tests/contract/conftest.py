"""Fixtures for the contract suite: one suite, every cloud backend.

``cloud`` is parametrized over the backends; a backend that cannot run on this machine
(e.g. the oracle virtualenv is missing) is skipped with its reason, except in CI where
``HASTACK_REQUIRE_ORACLE=1`` turns that skip into a failure.

The suite talks to the cloud only through openstacksdk (``conn``): the sdk's proxies
where they have the call, and the sdk's own session (``conn.compute.get(url,
microversion=...)``) where a test pins a microversion or checks the wire shape. Hosts are
failed and recovered through the control protocol (``cloud.control``).

The cloud is shared by the whole session, so every test leaves it as it found it: the
``servers`` fixture deletes what a test booted, ``failures`` brings failed hosts back
(recovered, not forced down, enabled, up).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import openstack
import pytest
import requests
import yaml
from openstack import config as os_config

from .backends.base import CloudUnderTest

BACKENDS = ["sim", "nova_oracle"]
HOSTS = 4

POLL = 0.1  # seconds between polls
BOOT_TIMEOUT = 60.0
ACTION_TIMEOUT = 60.0

T = TypeVar("T")


@pytest.fixture(
    scope="session",
    # `-m oracle` / `-m "not oracle"` select or drop the real-Nova runs.
    params=[
        pytest.param(b, id=b, marks=[pytest.mark.oracle] if b == "nova_oracle" else [])
        for b in BACKENDS
    ],
)
def cloud(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudUnderTest]:
    yield from start_backend(request.param, "nova_oracle", HOSTS, tmp_path_factory)


def start_backend(
    name: str, oracle: str, size: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Start backend ``name`` with ``size`` hosts for the session.  One that cannot run here
    is skipped with its reason, except ``oracle`` under ``HASTACK_REQUIRE_ORACLE=1`` (CI),
    where that is a failure."""
    try:
        module = importlib.import_module(f"tests.contract.backends.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.contract.backends.{name}":
            raise
        pytest.skip(f"{name} backend not written yet")
    reason = module.unavailable() if hasattr(module, "unavailable") else None
    if reason:
        if name == oracle and os.environ.get("HASTACK_REQUIRE_ORACLE") == "1":
            pytest.fail(f"{name} required but unavailable: {reason}")
        pytest.skip(f"{name} backend unavailable: {reason}")
    tmp: pathlib.Path = tmp_path_factory.mktemp(name)
    with contextlib.ExitStack() as stack:
        yield stack.enter_context(module.start(tmp, size))


def _connect(cloud: Any, cloud_name: str) -> openstack.connection.Connection:
    """A connection to entry ``cloud_name`` of ``cloud.clouds_yaml`` (any backend's cloud)."""
    # openstack.connect() does not take config_files; build the region ourselves, and
    # ignore OS_* variables of the developer's shell.
    config = os_config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud_name))


@pytest.fixture(scope="session")
def conn(cloud: CloudUnderTest) -> Iterator[openstack.connection.Connection]:
    # No default microversion is pinned: sdk proxies negotiate their own, and tests pass
    # an explicit microversion on every raw call whose behaviour depends on one.
    c = _connect(cloud, cloud.cloud_name)
    yield c
    c.close()


@pytest.fixture(scope="session")
def demo_conn(cloud: CloudUnderTest) -> Iterator[openstack.connection.Connection]:
    """A non-admin (member) user's connection: clouds.yaml entry ``<cloud>-demo``."""
    clouds = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"]
    name = f"{cloud.cloud_name}-demo"
    if name not in clouds:
        pytest.skip(f"backend {cloud.backend} offers no non-admin cloud entry {name!r}")
    c = _connect(cloud, name)
    yield c
    c.close()


def wait_for(fn: Callable[[], T | None], what: str, timeout: float) -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(POLL)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Ops:
    """Small helpers over the sdk session, shared by the contract tests."""

    def __init__(self, conn: openstack.connection.Connection, cloud: CloudUnderTest) -> None:
        self.conn = conn
        self.cloud = cloud
        self._image_id: str | None = None
        self._flavor_id: str | None = None

    # -- timing ------------------------------------------------------------------------
    @property
    def down_timeout(self) -> float:
        """Generous bound for a silent service to be reported down."""
        return self.cloud.service_down_time * 2 + 10

    # -- raw compute calls -------------------------------------------------------------
    def get(self, url: str, mv: str | None = None) -> requests.Response:
        return self.conn.compute.get(url, microversion=mv)

    def post(self, url: str, body: Any, mv: str | None = None) -> requests.Response:
        return self.conn.compute.post(url, json=body, microversion=mv)

    def put(self, url: str, body: Any, mv: str | None = None) -> requests.Response:
        return self.conn.compute.put(url, json=body, microversion=mv)

    def action(self, server_id: str, body: Any, mv: str | None = None) -> requests.Response:
        return self.post(f"/servers/{server_id}/action", body, mv)

    def server(self, server_id: str, mv: str = "2.95") -> dict[str, Any]:
        r = self.get(f"/servers/{server_id}", mv)
        assert r.status_code == 200, r.text
        return r.json()["server"]

    def service(self, host: str, binary: str = "nova-compute") -> dict[str, Any]:
        r = self.get(f"/os-services?binary={binary}&host={host}", "2.53")
        assert r.status_code == 200, r.text
        (svc,) = r.json()["services"]
        return svc

    def set_service(self, host: str, body: dict[str, Any]) -> requests.Response:
        return self.put(f"/os-services/{self.service(host)['id']}", body, "2.53")

    def wait_service_state(
        self, host: str, state: str, timeout: float | None = None
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.service(host))["state"] == state and s,
            f"nova-compute on {host} to be {state}",
            timeout or self.down_timeout,
        )

    def migrations(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        r = self.get(f"/os-migrations?{query}", "2.80")
        assert r.status_code == 200, r.text
        return r.json()["migrations"]

    def servers_on(self, host: str) -> list[dict[str, Any]]:
        r = self.get(f"/servers/detail?all_tenants=1&host={host}", "2.95")
        assert r.status_code == 200, r.text
        return r.json()["servers"]

    def empty_host(self, exclude: tuple[str, ...] = ()) -> str:
        for host in self.cloud.hosts:
            if host not in exclude and not self.servers_on(host):
                return host
        pytest.fail("no compute host without servers: a test leaked servers")

    # -- shared resources --------------------------------------------------------------
    @property
    def image_id(self) -> str:
        if self._image_id is None:
            image = next((i for i in self.conn.image.images() if i.status == "active"), None)
            if image is None:
                image = self.conn.image.create_image(
                    "contract-boot",
                    data=b"\0" * 512,
                    disk_format="raw",
                    container_format="bare",
                    allow_duplicates=True,
                )
            self._image_id = image.id
        return self._image_id

    @property
    def flavor_id(self) -> str:
        """1 vCPU / 256 MB / 1 GB: small numbers placement usages can be checked with."""
        if self._flavor_id is None:
            flavor = self.conn.compute.find_flavor("contract.tiny")
            if flavor is None:
                flavor = self.conn.compute.create_flavor(
                    name="contract.tiny", ram=256, vcpus=1, disk=1
                )
            self._flavor_id = flavor.id
        return self._flavor_id


@pytest.fixture(scope="session")
def ops(conn: openstack.connection.Connection, cloud: CloudUnderTest) -> Ops:
    return Ops(conn, cloud)


class Servers:
    """Boots servers for one test and deletes them afterwards."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.ids: list[str] = []

    def create(
        self,
        *,
        host: str | None = None,
        name: str | None = None,
        mv: str = "2.74",
        metadata: dict[str, str] | None = None,
        group: str | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """POST /servers with ``networks: none``; ``host`` uses the 2.74 ``host`` field."""
        body: dict[str, Any] = {
            "server": {
                "name": name or f"contract-{uuid.uuid4().hex[:8]}",
                "imageRef": self.ops.image_id,
                "flavorRef": self.ops.flavor_id,
                "networks": "none",
                **extra,
            }
        }
        if host:
            body["server"]["host"] = host
        if metadata:
            body["server"]["metadata"] = metadata
        if group:
            body["os:scheduler_hints"] = {"group": group}
        r = self.ops.post("/servers", body, mv)
        assert r.status_code == 202, r.text
        server_id = r.json()["server"]["id"]
        self.ids.append(server_id)
        if not wait:
            return r.json()["server"]
        return self.wait_active(server_id)

    def wait_active(self, server_id: str) -> dict[str, Any]:
        def active() -> dict[str, Any] | None:
            s = self.ops.server(server_id)
            assert s["status"] != "ERROR", s.get("fault")
            return s if s["status"] == "ACTIVE" and s["OS-EXT-STS:task_state"] is None else None

        return wait_for(active, f"server {server_id} ACTIVE", BOOT_TIMEOUT)

    def cleanup(self) -> None:
        for server_id in self.ids:
            with contextlib.suppress(openstack.exceptions.NotFoundException):
                self.ops.conn.compute.delete_server(server_id, force=False)
        for server_id in self.ids:
            wait_for(
                lambda sid=server_id: self.ops.get(f"/servers/{sid}").status_code == 404,
                f"server {server_id} deleted",
                ACTION_TIMEOUT,
            )


@pytest.fixture
def servers(ops: Ops) -> Iterator[Servers]:
    s = Servers(ops)
    yield s
    s.cleanup()


class Failures:
    """Fails hosts through the control protocol; puts them back in teardown."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.hosts: list[str] = []

    def fail(self, host: str, mode: str = "power") -> None:
        r = self.ops.cloud.control.fail(host, mode)
        assert r.status_code == 200, r.text
        assert r.json() == {"host": host, "mode": mode}
        self.hosts.append(host)

    def restore(self) -> None:
        for host in self.hosts:
            r = self.ops.cloud.control.recover(host)
            assert r.status_code == 200, r.text
            svc = self.ops.service(host)
            if svc["forced_down"]:
                self.ops.set_service(host, {"forced_down": False})
            if svc["status"] != "enabled":
                self.ops.set_service(host, {"status": "enabled"})
            self.ops.wait_service_state(host, "up")


@pytest.fixture
def failures(ops: Ops, servers: Servers) -> Iterator[Failures]:
    # Depends on ``servers`` so that hosts are back before the servers are deleted.
    f = Failures(ops)
    yield f
    f.restore()
