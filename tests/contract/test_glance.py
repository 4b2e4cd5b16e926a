"""Images v2 as openstacksdk uses it: create with properties, upload, list, show, delete.

Glance facts pinned here: custom properties are top-level keys of the image (there is no
``properties`` object on the wire); an image created without data is ``queued`` with
``size: null``; after an upload it is ``active`` with size and checksums; the default
visibility of a new image is ``shared``; lists are newest first and paginate with a
``next`` link (present whenever a page is full) and a ``first`` link that repeats the
query without its marker.

Note: in the oracle, Glance is a stand-in over Nova's GlanceFixture (see
tests/oracle/nova_server.py), modelled on the Glance v2 API reference.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def images(conn):
    created = []
    yield created
    for image in created:
        conn.image.delete_image(image, ignore_missing=True)


def test_create_image_with_properties(conn, images):
    name = f"contract-{uuid.uuid4().hex[:8]}"
    image = conn.image.create_image(
        name,
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
        hw_qemu_guest_agent="yes",
        ha_policy="evacuate",
    )
    images.append(image)
    assert image.status == "queued"
    assert image.size is None
    assert image.visibility == "shared"
    assert image.properties["ha_policy"] == "evacuate"

    r = conn.image.get(f"/images/{image.id}")
    assert r.status_code == 200
    raw = r.json()
    assert raw["ha_policy"] == "evacuate"  # top-level, like every custom property
    assert raw["hw_qemu_guest_agent"] == "yes"
    assert "properties" not in raw
    assert (raw["name"], raw["disk_format"], raw["container_format"]) == (name, "raw", "bare")
    assert raw["self"] == f"/v2/images/{image.id}"
    assert raw["file"] == f"/v2/images/{image.id}/file"
    assert raw["owner"] == conn.current_project_id


def test_upload_makes_image_active(conn, images):
    data = b"contract" * 64
    image = conn.image.create_image(
        f"contract-{uuid.uuid4().hex[:8]}",
        data=data,
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
        os_distro="cirros",
    )
    images.append(image)
    shown = conn.image.get_image(image.id)
    assert shown.status == "active"
    assert shown.size == len(data)
    assert shown.checksum
    assert shown.os_distro == "cirros"


def test_list_and_show(conn, images):
    made = [
        conn.image.create_image(
            f"contract-list-{n}", disk_format="raw", container_format="bare", allow_duplicates=True
        )
        for n in range(3)
    ]
    images.extend(made)
    listed = [i.id for i in conn.image.images()]
    assert {i.id for i in made} <= set(listed)

    r = conn.image.get("/images?limit=2")
    body = r.json()
    assert len(body["images"]) == 2
    assert body["first"] == "/v2/images?limit=2"  # the query, minus any marker
    assert body["next"] == f"/v2/images?limit=2&marker={body['images'][-1]['id']}"

    shown = conn.image.get_image(made[0].id)
    assert shown.name == "contract-list-0"


def test_missing_image_is_404(conn):
    r = conn.image.get(f"/images/{uuid.uuid4()}")
    assert r.status_code == 404


def test_delete_image(conn):
    image = conn.image.create_image(
        f"contract-{uuid.uuid4().hex[:8]}",
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
    )
    conn.image.delete_image(image)
    assert conn.image.get(f"/images/{image.id}").status_code == 404
