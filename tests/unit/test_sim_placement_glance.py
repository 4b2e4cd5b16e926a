"""The simulator's Placement and Glance faces: through werkzeug's test client, and through real
openstacksdk against a live server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack import config as os_config
from werkzeug.test import Client, TestResponse

from hastack.clock import Clock, SystemClock, VirtualClock
from hastack.sim import capacity
from hastack.sim.build import CloudSpec, build_world
from hastack.sim.cloud import ADMIN_PASSWORD, SimCloud
from hastack.sim.files import write_clouds_yaml
from hastack.sim.http.app import SimApp, SimServer
from hastack.sim.http.glance import GlanceFace
from hastack.sim.http.keystone import KeystoneFace
from hastack.sim.http.placement import PlacementFace
from hastack.sim.model import Aggregate
from hastack.sim.world import World

FACES = [KeystoneFace, PlacementFace, GlanceFace]  # independent of the other faces' state
PATCH = "application/openstack-images-v2.1-json-patch"


def make_cloud(hosts: int = 4, instances: int = 20, clock: Clock | None = None) -> SimCloud:
    world = World(clock or VirtualClock(), seed=1)
    build_world(world, CloudSpec(hosts=hosts, instances=instances))
    return SimCloud(world)


class Api:
    """A werkzeug test client with an admin token."""

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.world = cloud.world
        self.client = Client(SimApp(cloud, faces=FACES))
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "admin",
                        "password": ADMIN_PASSWORD,
                        "domain": {"name": "Default"},
                    }
                },
            }
        }
        r = self.client.post("/identity/v3/auth/tokens", json={"auth": auth})
        assert r.status_code == 201
        self.token = r.headers["X-Subject-Token"]

    def call(self, method: str, path: str, version: str | None = None, **kw: Any) -> TestResponse:
        headers = {"X-Auth-Token": self.token, **kw.pop("headers", {})}
        if version is not None:
            headers["OpenStack-API-Version"] = f"placement {version}"
        return self.client.open(path, method=method, headers=headers, **kw)

    def get(self, path: str, version: str | None = None, **kw: Any) -> TestResponse:
        return self.call("GET", path, version, **kw)


@pytest.fixture
def api() -> Api:
    return Api(make_cloud())


# ---------------------------------------------------------------------- placement


def test_placement_version_document_and_microversions(api: Api) -> None:
    r = api.client.get("/placement/")  # no token needed
    assert r.status_code == 200
    (doc,) = r.json["versions"]
    assert (doc["id"], doc["min_version"], doc["max_version"]) == ("v1.0", "1.0", "1.39")
    assert r.headers["OpenStack-API-Version"] == "placement 1.0"
    assert "openstack-api-version" in r.headers["Vary"]
    assert api.get("/placement/", "latest").headers["OpenStack-API-Version"] == "placement 1.39"
    assert api.get("/placement/", "1.14").headers["OpenStack-API-Version"] == "placement 1.14"
    r = api.get("/placement/resource_providers", "1.99")
    assert r.status_code == 406
    err = r.json["errors"][0]
    assert err["title"] == "Not Acceptable" and "Unacceptable version header: 1.99" in err["detail"]
    r = api.get("/placement/resource_providers", "pony.horse")
    assert r.status_code == 400
    assert "invalid version string: pony.horse" in r.json["errors"][0]["detail"]
    assert api.client.get("/placement/resource_providers").status_code == 401


def test_resource_providers_are_the_hosts(api: Api) -> None:
    r = api.get("/placement/resource_providers")
    providers = r.json["resource_providers"]
    assert [p["name"] for p in providers] == list(api.world.hosts)
    for p in providers:
        host = api.world.hosts[p["name"]]
        assert p["uuid"] == host.hypervisor_id
        assert p["generation"] >= 1
        assert {link["rel"] for link in p["links"]} == {"self", "inventories", "usages"}
        assert "root_provider_uuid" not in p  # before 1.14
    new = api.get("/placement/resource_providers", "1.14").json["resource_providers"][0]
    assert new["parent_provider_uuid"] is None and new["root_provider_uuid"] == new["uuid"]
    host = next(iter(api.world.hosts.values()))
    one = api.get(f"/placement/resource_providers/{host.hypervisor_id}", "1.14").json
    assert one == new
    for query in (
        f"name={host.name}",
        f"uuid={host.hypervisor_id}",
        f"in_tree={host.hypervisor_id}",
    ):
        got = api.get(f"/placement/resource_providers?{query}").json["resource_providers"]
        assert [p["name"] for p in got] == [host.name]
    assert api.get("/placement/resource_providers?name=nope").json["resource_providers"] == []


def test_unknown_provider_is_a_placement_404(api: Api) -> None:
    r = api.get("/placement/resource_providers/3b6f2c33-0000-4000-8000-000000000000", "1.23")
    assert r.status_code == 404
    (err,) = r.json["errors"]
    assert err["status"] == 404 and err["title"] == "Not Found"
    assert "No resource provider with uuid 3b6f2c33" in err["detail"]
    assert err["code"] == "placement.undefined_code"
    assert err["request_id"].startswith("req-")


def test_inventories_usages_and_allocations_follow_the_world(api: Api) -> None:
    world = api.world
    host = next(h for h in world.hosts.values() if world.by_host[h.name])
    rp = f"/placement/resource_providers/{host.hypervisor_id}"
    inv = api.get(f"{rp}/inventories").json
    assert inv["inventories"] == capacity.inventories(host)
    gen = inv["resource_provider_generation"]
    vcpu = api.get(f"{rp}/inventories/VCPU").json
    assert vcpu["total"] == host.vcpus and vcpu["allocation_ratio"] == capacity.CPU_RATIO
    assert vcpu["resource_provider_generation"] == gen
    assert api.get(f"{rp}/inventories/VGPU").status_code == 404
    used = world.usage[host.name]
    usages = api.get(f"{rp}/usages").json
    assert usages["usages"] == {
        "VCPU": used.vcpus,
        "MEMORY_MB": used.memory_mb,
        "DISK_GB": used.disk_gb,
    }
    consumers = api.get(f"{rp}/allocations", "1.28").json["allocations"]
    expected = {i.id for i in world.instances.values() if host.name in i.allocations}
    assert set(consumers) == expected
    total_vcpus = sum(c["resources"]["VCPU"] for c in consumers.values())
    assert total_vcpus == used.vcpus

    inst = world.instances[next(iter(world.by_host[host.name]))]
    alloc = api.get(f"/placement/allocations/{inst.id}", "1.38").json
    want = capacity.request_of(inst.flavor, inst.volume_backed)
    assert alloc["allocations"] == {
        host.hypervisor_id: {
            "generation": gen,
            "resources": {
                rc: n
                for rc, n in (
                    ("VCPU", want.vcpus),
                    ("MEMORY_MB", want.memory_mb),
                    ("DISK_GB", want.disk_gb),
                )
                if n
            },
        }
    }
    assert alloc["project_id"] == inst.project_id and alloc["user_id"] == inst.user_id
    assert alloc["consumer_generation"] == 1 and alloc["consumer_type"] == "INSTANCE"
    old = api.get(f"/placement/allocations/{inst.id}").json
    assert "project_id" not in old
    assert api.get("/placement/allocations/no-such-consumer").json == {"allocations": {}}

    # An evacuation-style second allocation bumps the destination's generation.
    other = next(h for h in world.hosts.values() if h.name not in inst.allocations)
    other_rp = f"/placement/resource_providers/{other.hypervisor_id}"
    before = api.get(other_rp).json["generation"]
    with world.lock:
        world.allocate(inst, other.name)
    assert api.get(other_rp).json["generation"] == before + 1
    alloc = api.get(f"/placement/allocations/{inst.id}").json["allocations"]
    assert set(alloc) == {host.hypervisor_id, other.hypervisor_id}


def test_project_usages(api: Api) -> None:
    world = api.world
    project = next(i.project_id for i in world.instances.values())
    mine = [i for i in world.instances.values() if i.project_id == project and i.allocations]
    vcpus = sum(i.flavor.vcpus * len(i.allocations) for i in mine)
    assert api.get(f"/placement/usages?project_id={project}").status_code == 404  # 1.9+
    assert api.get("/placement/usages", "1.9").status_code == 400
    old = api.get(f"/placement/usages?project_id={project}", "1.9").json
    assert old["usages"]["VCPU"] == vcpus
    new = api.get(f"/placement/usages?project_id={project}", "1.38").json
    assert new["usages"]["INSTANCE"]["VCPU"] == vcpus
    assert new["usages"]["INSTANCE"]["consumer_count"] == len(mine)
    assert api.get("/placement/usages?project_id=nobody", "1.38").json == {"usages": {}}


def test_aggregates_traits_and_filters(api: Api) -> None:
    world = api.world
    hosts = list(world.hosts.values())
    agg_uuid = "6f4a3b8e-1111-4222-8333-944455556666"
    with world.lock:
        world.aggregates[99] = Aggregate(99, agg_uuid, "rack1", None, [hosts[0].name], {}, 0.0)
    rp = f"/placement/resource_providers/{hosts[0].hypervisor_id}"
    assert api.get(f"{rp}/aggregates").status_code == 404  # 1.1+
    assert api.get(f"{rp}/aggregates", "1.1").json == {"aggregates": [agg_uuid]}
    assert "resource_provider_generation" in api.get(f"{rp}/aggregates", "1.19").json
    in_agg = api.get(f"/placement/resource_providers?member_of={agg_uuid}", "1.3").json
    assert [p["name"] for p in in_agg["resource_providers"]] == [hosts[0].name]
    not_in = api.get(f"/placement/resource_providers?member_of=!{agg_uuid}", "1.32").json
    assert len(not_in["resource_providers"]) == len(hosts) - 1
    assert api.get("/placement/resource_providers?member_of=bogus", "1.3").status_code == 400

    traits = api.get(f"{rp}/traits", "1.6").json
    assert "COMPUTE_NODE" in traits["traits"]
    assert "COMPUTE_STATUS_DISABLED" not in traits["traits"]
    gen = traits["resource_provider_generation"]
    world.update_service(hosts[0].name, status="disabled", disabled_reason="maintenance")
    traits = api.get(f"{rp}/traits", "1.6").json
    assert "COMPUTE_STATUS_DISABLED" in traits["traits"]
    assert traits["resource_provider_generation"] == gen + 1
    enabled = api.get("/placement/resource_providers?required=!COMPUTE_STATUS_DISABLED", "1.22")
    names = [p["name"] for p in enabled.json["resource_providers"]]
    assert names == [h.name for h in hosts[1:]]


def test_allocation_candidates(api: Api) -> None:
    world = api.world
    path = "/placement/allocation_candidates?resources=VCPU:1,MEMORY_MB:512"
    assert api.get(path).status_code == 404  # 1.10+
    r = api.get(path, "1.34").json
    assert len(r["allocation_requests"]) == len(world.hosts)
    first = r["allocation_requests"][0]
    (rp,) = first["allocations"]
    assert first["allocations"][rp] == {"resources": {"VCPU": 1, "MEMORY_MB": 512}}
    assert first["mappings"] == {"": [rp]}
    summary = r["provider_summaries"][rp]
    assert set(summary["resources"]) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    assert summary["root_provider_uuid"] == rp
    assert len(api.get(f"{path}&limit=2", "1.16").json["allocation_requests"]) == 2
    old = api.get(path, "1.10").json["allocation_requests"][0]["allocations"]
    assert isinstance(old, list) and old[0]["resource_provider"]["uuid"] == rp
    too_big = api.get("/placement/allocation_candidates?resources=VCPU:500", "1.34").json
    assert too_big == {"allocation_requests": [], "provider_summaries": {}}
    for bad in ("VCPU:0", "VCPU", "CUSTOM_FOO:1", "VCPU:x"):
        r2 = api.get(f"/placement/allocation_candidates?resources={bad}", "1.34")
        assert r2.status_code == 400, bad


def test_ten_thousand_providers_listed() -> None:
    """All 10,000, and one's usages.  (How fast: `make bench`, simulator scale over HTTP.)"""
    api = Api(make_cloud(hosts=10_000, instances=2_000))
    r = api.get("/placement/resource_providers", "1.14")
    providers = r.json["resource_providers"]
    assert len(providers) == 10_000
    assert len({p["uuid"] for p in providers}) == 10_000
    last = list(api.world.hosts.values())[-1].hypervisor_id
    usages = api.get(f"/placement/resource_providers/{last}/usages")
    assert usages.status_code == 200 and "VCPU" in usages.json["usages"]


# ---------------------------------------------------------------------- glance


def test_glance_versions(api: Api) -> None:
    r = api.client.get("/image/")
    assert r.status_code == 300
    current = [v for v in r.json["versions"] if v["status"] == "CURRENT"]
    assert len(current) == 1 and current[0]["links"][0]["href"].endswith("/image/v2/")
    assert api.client.get("/image/versions").status_code == 200
    assert api.client.get("/image/v2/images").status_code == 401


def test_glance_lists_the_world_images(api: Api) -> None:
    r = api.get("/image/v2/images")
    assert r.status_code == 200
    images = r.json["images"]
    assert {i["id"] for i in images} == set(api.world.images)
    assert r.json["schema"] == "/v2/schemas/images" and "next" not in r.json
    cirros = next(i for i in images if i["name"] == "cirros-0.6.2")
    assert cirros["os_distro"] == "cirros"  # properties at the top level
    assert cirros["status"] == "active" and cirros["size"] == 21430272
    assert cirros["self"] == f"/v2/images/{cirros['id']}"
    assert cirros["file"] == f"/v2/images/{cirros['id']}/file"
    assert cirros["os_hash_algo"] == "sha512" and len(cirros["checksum"]) == 32
    for key in (
        "visibility",
        "protected",
        "owner",
        "virtual_size",
        "min_ram",
        "min_disk",
        "disk_format",
        "container_format",
        "created_at",
        "updated_at",
        "tags",
        "schema",
        "os_hash_value",
    ):
        assert key in cirros
    assert api.get(f"/image/v2/images/{cirros['id']}").json == cirros
    assert [i["id"] for i in api.get("/image/v2/images?name=debian-12").json["images"]] == [
        i.id for i in api.world.images.values() if i.name == "debian-12"
    ]
    assert api.get("/image/v2/images?status=queued").json["images"] == []
    assert len(api.get("/image/v2/images?visibility=public").json["images"]) == 3
    assert api.get("/image/v2/images?visibility=bogus").status_code == 400


def test_glance_pagination_follows_next_links(api: Api) -> None:
    clock = api.world.clock
    assert isinstance(clock, VirtualClock)
    for n in range(7):
        r = api.call("POST", "/image/v2/images", json={"name": f"extra-{n}"})
        assert r.status_code == 201
        clock.advance(1)
    everything = [i["id"] for i in api.get("/image/v2/images").json["images"]]
    assert len(everything) == 10
    seen: list[str] = []
    path: str | None = "/v2/images?limit=3"
    pages = 0
    while path is not None:
        body = api.get(f"/image{path}").json
        seen += [i["id"] for i in body["images"]]
        path = body.get("next")
        pages += 1
    assert seen == everything and pages == 4
    assert api.get("/image/v2/images?marker=nope").status_code == 400
    assert api.get("/image/v2/images?limit=x").status_code == 400
    by_name = api.get("/image/v2/images?sort_key=name&sort_dir=asc").json["images"]
    assert [i["name"] for i in by_name] == sorted(i["name"] for i in by_name)


def test_glance_create_patch_upload_delete(api: Api) -> None:
    body = {"name": "fresh", "disk_format": "raw", "container_format": "bare", "hw_arch": "x86"}
    r = api.call("POST", "/image/v2/images", json=body)
    assert r.status_code == 201
    img = r.json
    assert img["status"] == "queued" and img["size"] is None and img["checksum"] is None
    assert img["visibility"] == "shared" and img["hw_arch"] == "x86"
    assert img["owner"] == api.world.admin_project
    assert r.headers["Location"].endswith(f"/image/v2/images/{img['id']}")
    assert api.world.images[img["id"]].properties == {"hw_arch": "x86"}
    url = f"/image/v2/images/{img['id']}"

    assert api.call("POST", "/image/v2/images", json={"status": "active"}).status_code == 403
    assert api.call("POST", "/image/v2/images", json={"visibility": "x"}).status_code == 400
    assert api.call("POST", "/image/v2/images", json={"id": img["id"]}).status_code == 409

    ops = [
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "add", "path": "/os_distro", "value": "fedora"},
        {"op": "remove", "path": "/hw_arch"},
    ]
    r = api.call("PATCH", url, json=ops, headers={"Content-Type": PATCH})
    assert r.status_code == 200, r.json
    assert r.json["name"] == "renamed" and r.json["os_distro"] == "fedora"
    assert "hw_arch" not in r.json
    assert (
        api.call("PATCH", url, json=ops, headers={"Content-Type": "application/json"}).status_code
        == 415
    )
    bad_ops: list[tuple[list[dict[str, Any]], int]] = [
        ([{"op": "replace", "path": "/nope", "value": "x"}], 409),
        ([{"op": "remove", "path": "/name"}], 403),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "move", "path": "/name"}], 400),
    ]
    for bad, status in bad_ops:
        r = api.call("PATCH", url, json=bad, headers={"Content-Type": PATCH})
        assert r.status_code == status, (bad, r.json)
    assert api.get(url).json["name"] == "renamed"  # a failed patch changes nothing

    data = b"\x00" * 4096
    r = api.call(
        "PUT", f"{url}/file", data=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 204
    img = api.get(url).json
    assert img["status"] == "active" and img["size"] == 4096
    assert img["checksum"] == hashlib.md5(data).hexdigest()
    assert img["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert api.call("PUT", f"{url}/file", data=data).status_code == 409

    assert api.call("PUT", f"{url}/tags/golden").status_code == 204
    assert api.get(url).json["tags"] == ["golden"]
    assert [i["id"] for i in api.get("/image/v2/images?tag=golden").json["images"]] == [img["id"]]

    protect = [{"op": "replace", "path": "/protected", "value": True}]
    api.call("PATCH", url, json=protect, headers={"Content-Type": PATCH})
    r = api.call("DELETE", url)
    assert r.status_code == 403 and "is protected" in r.json["message"]
    protect[0]["value"] = False
    api.call("PATCH", url, json=protect, headers={"Content-Type": PATCH})
    assert api.call("DELETE", url).status_code == 204
    assert img["id"] not in api.world.images
    r = api.get(url)
    assert r.status_code == 404
    assert r.json["code"] == "404 Not Found" and r.json["title"] == "Not Found"
    assert f"No image found with ID {img['id']}" in r.json["message"]


# ---------------------------------------------------------------------- real openstacksdk


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[tuple[Any, SimCloud]]:
    # Wall time, so that keystoneauth does not find the token expired and re-authenticate.
    clock = SystemClock()
    cloud = make_cloud(clock=clock)
    server = SimServer(cloud)
    server.start()
    path = write_clouds_yaml(tmp_path / "clouds.yaml", "sim", server.url)
    region = os_config.OpenStackConfig(config_files=[str(path)]).get_one(cloud="sim")
    conn = openstack.connection.Connection(config=region)
    try:
        yield conn, cloud
    finally:
        conn.close()
        server.stop()
        clock.stop()


def test_openstacksdk_placement(sdk: tuple[Any, SimCloud]) -> None:
    conn, cloud = sdk
    world = cloud.world
    providers = list(conn.placement.resource_providers())
    assert sorted(p.name for p in providers) == sorted(world.hosts)
    host = world.hosts[providers[0].name]
    rp = conn.placement.get_resource_provider(host.hypervisor_id)
    assert rp.name == host.name and rp.root_provider_id == host.hypervisor_id
    found = list(conn.placement.resource_providers(name=host.name))
    assert [p.id for p in found] == [host.hypervisor_id]

    inventories = {i.resource_class: i for i in conn.placement.resource_provider_inventories(rp)}
    assert set(inventories) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    assert inventories["MEMORY_MB"].reserved == capacity.RAM_RESERVED
    vcpu = conn.placement.get_resource_provider_inventory("VCPU", resource_provider=rp)
    assert vcpu.total == host.vcpus and vcpu.allocation_ratio == capacity.CPU_RATIO

    usages = conn.placement.fetch_resource_provider_usages(rp).usages
    assert usages["VCPU"] == world.usage[host.name].vcpus

    inst = next(i for i in world.instances.values() if i.allocations)
    alloc = conn.placement.get_allocation(inst.id)
    (alloc_rp,) = alloc.allocations
    assert alloc_rp == world.hosts[next(iter(inst.allocations))].hypervisor_id
    assert alloc.allocations[alloc_rp]["resources"]["VCPU"] == inst.flavor.vcpus

    (usage,) = list(conn.placement.usages(project_id=inst.project_id))
    assert usage.consumer_type == "INSTANCE" and usage.resources["VCPU"] >= inst.flavor.vcpus

    candidates = list(conn.placement.allocation_candidates(resources="VCPU:1", limit=2))
    assert len(candidates) == 2


def test_openstacksdk_image(sdk: tuple[Any, SimCloud]) -> None:
    conn, cloud = sdk
    names = sorted(i.name for i in conn.image.images())
    assert names == sorted(i.name for i in cloud.world.images.values())
    cirros = conn.image.find_image("cirros-0.6.2")
    assert cirros.os_distro == "cirros"  # a property Glance returns at the top level
    assert cirros.status == "active" and cirros.size == 21430272

    record = conn.image.create_image(
        "sdk-record", disk_format="qcow2", container_format="bare", hw_disk_bus="scsi"
    )
    assert record.status == "queued" and record.id in cloud.world.images
    assert cloud.world.images[record.id].properties["hw_disk_bus"] == "scsi"

    uploaded = conn.image.create_image(
        "sdk-upload", data=b"x" * 1000, disk_format="raw", container_format="bare"
    )
    fetched = conn.image.get_image(uploaded.id)
    assert fetched.status == "active" and fetched.size == 1000

    conn.image.update_image(record, min_ram=256)
    assert conn.image.get_image(record.id).min_ram == 256

    paged = [i.id for i in conn.image.images(limit=2)]
    assert len(paged) == len(cloud.world.images) == 5 and len(set(paged)) == 5

    conn.image.delete_image(record)
    assert record.id not in cloud.world.images
    assert conn.image.find_image("sdk-record") is None


def test_unknown_route_and_wrong_method_are_404_and_405_not_500(api: Api) -> None:
    assert api.get("/placement/no-such-collection").status_code == 404
    assert api.call("DELETE", "/placement/").status_code == 405
