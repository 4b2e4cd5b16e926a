"""A refused password reaches the drivers' callers as a hastack error (PermanentError), never
as a keystoneauth exception: the engine and the CLI only know hastack's errors.  A token is
kept across requests, and a revoked one is replaced without the caller noticing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hastack.drivers.openstack.compute import NovaCompute
from hastack.drivers.openstack.connection import connect
from hastack.drivers.openstack.network import NeutronNetwork
from hastack.errors import PermanentError
from hastack.sim.build import CloudSpec
from hastack.sim.runner import RunningSim, SimOptions

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSim]:
    workdir = tmp_path_factory.mktemp("auth")
    spec = CloudSpec(hosts=2, instances=0, network_nodes=1, routers=0, networks=0)
    running = RunningSim(SimOptions(spec=spec, workdir=workdir, bmc=False, probe=False)).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_token_is_kept_across_requests_and_replaced_when_revoked(sim: RunningSim) -> None:
    compute = NovaCompute(connect(sim.files["clouds_yaml"], "hastack-sim"))
    tokens = sim.cloud.tokens.tokens
    issued = len(tokens)
    for _ in range(20):
        assert sorted(s.host for s in compute.services()) == ["compute01", "compute02"]
    assert len(tokens) == issued  # twenty requests, no new token
    tokens.clear()  # Keystone forgets every token: the kept one now gets a 401
    assert len(compute.services()) == 2
    assert len(tokens) == 1  # one fresh token, and the request went through with it


@pytest.fixture(scope="module")
def wrong_password(sim: RunningSim, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's clouds.yaml, copied with a password Keystone refuses."""
    clouds = yaml.safe_load(Path(sim.files["clouds_yaml"]).read_text())
    clouds["clouds"]["hastack-sim"]["auth"]["password"] = "not-the-password"
    path = tmp_path_factory.mktemp("wrong") / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    return path


def test_nova_driver_reports_a_refused_password(wrong_password: Path) -> None:
    conn = connect(wrong_password, "hastack-sim")
    with pytest.raises(PermanentError, match="401"):
        NovaCompute(conn)


def test_neutron_driver_reports_a_refused_password(wrong_password: Path) -> None:
    conn = connect(wrong_password, "hastack-sim")
    with pytest.raises(PermanentError, match="401"):
        NeutronNetwork(conn).agents()
