"""Identity as openstacksdk sees it: password auth, the catalog, version discovery.

Note for readers: in the oracle, Keystone itself is a stand-in (tests/oracle/nova_server.py)
in front of real Nova and Placement; what these tests pin down is what keystoneauth needs,
and that the services behind the catalog answer an unauthenticated call like
keystonemiddleware does (401 + ``WWW-Authenticate: Keystone uri=...``).
"""

from __future__ import annotations

import openstack
import pytest
import requests
from openstack import config as os_config

from .backends.base import CloudUnderTest


def test_password_auth_issues_a_project_scoped_admin_token(conn):
    token = conn.authorize()
    assert isinstance(token, str) and token
    access = conn.session.auth.get_access(conn.session)
    assert access.username == "admin"
    assert access.project_name == "admin"
    assert access.project_id  # opaque id, not the name
    assert access.project_id != "admin"
    assert "admin" in access.role_names


def test_catalog_lists_compute_placement_image_identity(conn):
    catalog = conn.session.auth.get_access(conn.session).service_catalog
    assert {"compute", "placement", "image", "identity"} <= set(catalog.get_endpoints())
    for service_type in ("compute", "placement", "image", "identity"):
        url = catalog.url_for(
            service_type=service_type, interface="public", region_name="RegionOne"
        )
        assert url.startswith("http://127.0.0.1:"), url


def test_version_discovery(conn):
    compute = conn.compute.get_endpoint_data()
    assert compute.api_version == (2, 1)
    assert compute.min_microversion == (2, 1)
    # Everything the suite uses (2.95 evacuate-to-stopped, 2.80 migration filters,
    # 2.88 hypervisors) must be offered.
    assert compute.max_microversion >= (2, 95)
    assert conn.placement.get_endpoint_data().max_microversion >= (1, 39)
    assert conn.image.get_endpoint_data().api_version[0] == 2
    assert conn.identity.get_endpoint_data().api_version[0] == 3


def test_identity_root_lists_v3(conn):
    auth_url = conn.config.config["auth"]["auth_url"]
    r = conn.session.get(auth_url, authenticated=False, raise_exc=False)
    assert r.status_code == 300
    versions = r.json()["versions"]["values"]
    assert any(v["id"].startswith("v3.") and v["status"] == "stable" for v in versions)


def test_token_validates(conn):
    r = conn.identity.get("/auth/tokens", headers={"X-Subject-Token": conn.auth_token})
    assert r.status_code == 200
    assert r.json()["token"]["project"]["name"] == "admin"


def test_wrong_password_is_refused(cloud: CloudUnderTest):
    config = os_config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)], load_envvars=False)
    region = config.get_one(cloud=cloud.cloud_name, auth={"password": "wrong"})
    bad = openstack.connection.Connection(config=region)
    # authorize() wraps keystoneauth's Unauthorized in a plain SDKException.
    with pytest.raises(openstack.exceptions.SDKException, match=r"\(HTTP 401\)"):
        bad.authorize()


@pytest.mark.parametrize("service_type", ["compute", "placement", "image"])
def test_unauthenticated_service_call_gets_401(conn, service_type):
    url = conn.session.get_endpoint(service_type=service_type, interface="public")
    path = {"compute": "/servers", "placement": "/resource_providers", "image": "/v2/images"}[
        service_type
    ]
    r = requests.get(url.rstrip("/") + path, timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Keystone uri=")
    r = requests.get(url.rstrip("/") + path, headers={"X-Auth-Token": "bogus"}, timeout=30)
    assert r.status_code == 401
