"""Glance v2 images: version discovery, list (filters, sort, limit/marker pagination with a
``next`` link), show, create, JSON-patch update, delete, tags and data upload.

Images live in ``world.images``.  What :class:`~hastack.sim.model.Image` does not record (tags,
protection, hashes, ``updated_at``) is kept here beside it, keyed by image id.  Shapes and
messages follow Glance 33 (webob's JSON error body, extra properties at the top level).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http
import re
import urllib.parse
import uuid as uuidlib
from typing import Any

from hastack.sim.errors import BadRequest, CloudError, Conflict, Forbidden, NotFound
from hastack.sim.http.base import ApiFace, ApiRequest, Reply, iso
from hastack.sim.model import Image

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
READ_ONLY = {"created_at", "updated_at", "status", "checksum", "size", "virtual_size", "id"}
READ_ONLY |= {"direct_url", "self", "file", "schema", "os_hash_algo", "os_hash_value"}
RESERVED = ("location", "locations", "deleted", "deleted_at", "stores")
# attributes of the image itself (may be replaced, never removed); the rest are properties
BASE_SETTABLE = {"name", "visibility", "protected", "os_hidden", "min_ram", "min_disk", "owner"}
BASE_SETTABLE |= {"disk_format", "container_format", "tags"}
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
_SORTABLE = ("name", "status", "container_format", "disk_format", "size", "id", "created_at")
SORT_KEYS = (*_SORTABLE, "updated_at")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_EXPLAIN = {
    400: "The server could not comply with the request since it is either malformed or "
    "otherwise incorrect.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    405: "The method is not allowed for this resource.",
    409: "There was a conflict when trying to complete your request.",
    415: "The request media type is not supported by this server.",
}


class UnsupportedMediaTypeError(CloudError):
    status = 415


@dataclasses.dataclass
class _Extra:
    """What Glance records about an image beyond :class:`~hastack.sim.model.Image`."""

    updated: float
    tags: list[str] = dataclasses.field(default_factory=list)
    protected: bool = False
    hidden: bool = False
    checksum: str | None = None
    sha512: str | None = None
    virtual_size: int | None = None


class GlanceFace(ApiFace):
    prefix = "/image"
    service_type = "image"

    def routes(self) -> None:
        self._extra: dict[str, _Extra] = {}
        self.route("/", self.versions)
        self.route("/versions", self.versions_explicit)
        self.route("/v2", self.versions_explicit)
        self.route("/v2/images", self.list_images)
        self.route("/v2/images", self.create_image, ("POST",))
        self.route("/v2/images/<image_id>", self.show_image)
        self.route("/v2/images/<image_id>", self.update_image, ("PATCH",))
        self.route("/v2/images/<image_id>", self.delete_image, ("DELETE",))
        self.route("/v2/images/<image_id>/file", self.upload, ("PUT",))
        self.route("/v2/images/<image_id>/tags/<tag>", self.add_tag, ("PUT",))
        self.route("/v2/images/<image_id>/tags/<tag>", self.delete_tag, ("DELETE",))

    def error_body(self, exc: CloudError) -> Any:
        try:
            title = http.HTTPStatus(exc.status).phrase
        except ValueError:
            title = "Error"
        explain = _EXPLAIN.get(exc.status, "")
        return {
            "message": f"{explain}<br /><br />\n{exc.message}\n\n",
            "code": f"{exc.status} {title}",
            "title": title,
        }

    def response_headers(self, req: ApiRequest) -> dict[str, str]:
        return {"x-openstack-request-id": f"req-{uuidlib.uuid4()}"}

    # ------------------------------------------------------------------ versions

    def _versions_doc(self) -> dict[str, Any]:
        link = [{"rel": "self", "href": f"{self.public_url}/v2/"}]
        minors = range(17, -1, -1)
        return {
            "versions": [
                {"id": f"v2.{m}", "status": "CURRENT" if m == 17 else "SUPPORTED", "links": link}
                for m in minors
            ]
        }

    def versions(self, req: ApiRequest) -> Reply:
        return Reply(self._versions_doc(), 300)

    def versions_explicit(self, req: ApiRequest) -> Any:
        return self._versions_doc()

    # ------------------------------------------------------------------ rendering

    def _extra_of(self, img: Image) -> _Extra:
        extra = self._extra.get(img.id)
        if extra is None:
            extra = self._extra[img.id] = _Extra(updated=img.created)
            if img.status == "active":  # seeded images: stable stand-ins for the data's hashes
                seed = f"{img.id}:{img.size}".encode()
                extra.checksum = hashlib.md5(seed, usedforsecurity=False).hexdigest()
                extra.sha512 = hashlib.sha512(seed).hexdigest()
        return extra

    def _doc(self, img: Image) -> dict[str, Any]:
        extra = self._extra_of(img)
        has_data = extra.checksum is not None
        doc = dict(img.properties)
        doc.update(
            id=img.id,
            name=img.name or None,
            status=img.status,
            visibility=img.visibility,
            protected=extra.protected,
            os_hidden=extra.hidden,
            checksum=extra.checksum,
            os_hash_algo="sha512" if has_data else None,
            os_hash_value=extra.sha512,
            owner=img.owner or self.world.admin_project or None,
            size=img.size if has_data else None,
            virtual_size=extra.virtual_size,
            min_ram=img.min_ram,
            min_disk=img.min_disk,
            disk_format=img.disk_format or None,
            container_format=img.container_format or None,
            created_at=iso(img.created),
            updated_at=iso(extra.updated),
            tags=list(extra.tags),
            self=f"/v2/images/{img.id}",
            file=f"/v2/images/{img.id}/file",
            schema="/v2/schemas/image",
        )
        return doc

    def _image(self, image_id: str) -> Image:
        img = self.world.images.get(image_id)
        if img is None:
            raise NotFound(f"No image found with ID {image_id}")
        return img

    # ------------------------------------------------------------------ reads

    def _visible(self, req: ApiRequest, img: Image, visibility: str | None) -> bool:
        """Glance's listing rules: admins see everything, others public images, their own and
        (when asked for) community ones; ``visibility`` narrows either."""
        if visibility not in (None, "all") and img.visibility != visibility:
            return False
        token = req.token
        if token is None or "admin" in token.roles or img.visibility == "public":
            return True
        if (img.owner or self.world.admin_project) == token.project_id:
            return True
        return visibility == "community"

    def list_images(self, req: ApiRequest) -> Any:
        args = req.args
        visibility = args.get("visibility")
        if visibility not in (None, "all", *VISIBILITIES):
            raise BadRequest(f"Invalid visibility value: {visibility}")
        hidden = _bool_arg(args.get("os_hidden", "false"), "os_hidden")
        protected = args.get("protected")
        want_protected = None if protected is None else _bool_arg(protected, "protected")
        limit = _limit(args.get("limit"))
        sort_key = args.get("sort_key", "created_at")
        sort_dir = args.get("sort_dir", "desc")
        if sort_key not in SORT_KEYS:
            raise BadRequest(
                f"Invalid sort key: {sort_key}. It must be one of the following: "
                f"{', '.join(SORT_KEYS)}."
            )
        if sort_dir not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {sort_dir}")
        tags = set(args.getlist("tag"))
        with self.world.lock:
            docs = []
            for img in self.world.images.values():
                doc = self._doc(img)
                if not self._visible(req, img, visibility) or doc["os_hidden"] != hidden:
                    continue
                if want_protected is not None and doc["protected"] != want_protected:
                    continue
                if any(k in args and str(doc[k]) != args[k] for k in ("name", "status", "owner")):
                    continue
                if tags - set(doc["tags"]):
                    continue
                docs.append(doc)
            marker = args.get("marker")
            marker_doc = None if marker is None else self._doc(self._marker(marker))

        def key(doc: dict[str, Any]) -> tuple[str, str]:
            value = doc[sort_key]
            return (f"{value:020d}" if isinstance(value, int) else str(value or ""), doc["id"])

        docs.sort(key=key, reverse=sort_dir == "desc")
        if marker_doc is not None:
            mk = key(marker_doc)
            docs = [d for d in docs if (key(d) < mk if sort_dir == "desc" else key(d) > mk)]
        page = docs[:limit]
        params = {k: v for k, v in args.items() if k != "marker"}
        query = urllib.parse.urlencode(params)
        body: dict[str, Any] = {
            "images": page,
            "first": "/v2/images" + (f"?{query}" if query else ""),
            "schema": "/v2/schemas/images",
        }
        if page and len(page) == limit:
            body["next"] = "/v2/images?" + urllib.parse.urlencode(
                {**params, "marker": page[-1]["id"]}
            )
        return body

    def _marker(self, marker: str) -> Image:
        img = self.world.images.get(marker)
        if img is None:
            raise BadRequest(f"No image found with ID {marker}")
        return img

    def show_image(self, req: ApiRequest, image_id: str) -> Any:
        with self.world.lock:
            return self._doc(self._image(image_id))

    # ------------------------------------------------------------------ writes

    def create_image(self, req: ApiRequest) -> Reply:
        body = req.body_dict()
        for key in body:
            if key in READ_ONLY and key != "id":
                raise Forbidden(f"Attribute '{key}' is read-only.")
            if key in RESERVED or key.startswith("os_glance"):
                raise Forbidden(f"Attribute '{key}' is reserved.")
        image_id = body.pop("id", None)
        if image_id is not None and (not isinstance(image_id, str) or not _UUID.match(image_id)):
            raise BadRequest(
                f"Provided object does not match schema 'image': {image_id!r} is not a 'uuid'"
            )
        with self.world.lock:
            if image_id is not None and image_id in self.world.images:
                raise Conflict(f"Image with identifier {image_id} already exists!")
            now = self.world.clock.now()
            token = req.token
            img = Image(
                id=image_id or self.world.new_uuid(),
                name="",
                size=0,
                created=now,
                status="queued",
                visibility="shared",
                owner=token.project_id if token is not None else "",
                disk_format="",
                container_format="",
            )
            extra = _Extra(updated=now)
            _apply(img, extra, body)
            self.world.add_image(img)
            self._extra[img.id] = extra
            doc = self._doc(img)
        return Reply(doc, 201, {"Location": f"{self.public_url}/v2/images/{img.id}"})

    def update_image(self, req: ApiRequest, image_id: str) -> Any:
        content_type = req.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != PATCH_TYPE:
            raise UnsupportedMediaTypeError(f"Unsupported Content-Type {content_type or 'None'}")
        changes = req.json()
        if not isinstance(changes, list):
            raise BadRequest("Request body must be a JSON array of operation objects.")
        with self.world.lock:
            img = self._image(image_id)
            extra = self._extra_of(img)
            new_img, new_extra = dataclasses.replace(img), dataclasses.replace(extra)
            new_img.properties = dict(img.properties)
            new_extra.tags = list(extra.tags)
            for change in changes:
                _patch(new_img, new_extra, change)
            new_extra.updated = self.world.clock.now()
            for field in dataclasses.fields(Image):
                setattr(img, field.name, getattr(new_img, field.name))
            self._extra[img.id] = new_extra
            return self._doc(img)

    def delete_image(self, req: ApiRequest, image_id: str) -> Reply:
        with self.world.lock:
            img = self._image(image_id)
            if self._extra_of(img).protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            del self.world.images[image_id]
            self._extra.pop(image_id, None)
        return Reply(None, 204)

    def upload(self, req: ApiRequest, image_id: str) -> Reply:
        data = req.raw.get_data()
        with self.world.lock:
            img = self._image(image_id)
            if img.status != "queued":
                raise Conflict(
                    f"Image status transition from {img.status} to saving is not allowed"
                )
            extra = self._extra_of(img)
            img.size = len(data)
            img.status = "active"
            extra.checksum = hashlib.md5(data, usedforsecurity=False).hexdigest()
            extra.sha512 = hashlib.sha512(data).hexdigest()
            extra.virtual_size = len(data) if img.disk_format == "raw" else None
            extra.updated = self.world.clock.now()
        return Reply(None, 204)

    def add_tag(self, req: ApiRequest, image_id: str, tag: str) -> Reply:
        with self.world.lock:
            extra = self._extra_of(self._image(image_id))
            if tag not in extra.tags:
                extra.tags.append(tag)
                extra.updated = self.world.clock.now()
        return Reply(None, 204)

    def delete_tag(self, req: ApiRequest, image_id: str, tag: str) -> Reply:
        with self.world.lock:
            extra = self._extra_of(self._image(image_id))
            if tag not in extra.tags:
                raise NotFound(f"Tag {tag} not found")
            extra.tags.remove(tag)
            extra.updated = self.world.clock.now()
        return Reply(None, 204)


# ---------------------------------------------------------------------- helpers


def _bool_arg(value: str, name: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise BadRequest(
            f"Invalid value '{value}' for '{name}' filter. Valid values are 'true' or 'false'."
        )
    return value.lower() == "true"


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return min(limit, MAX_LIMIT)


def _invalid(key: str, value: Any, why: str) -> BadRequest:
    return BadRequest(
        f"Provided object does not match schema 'image': {value!r} {why}\n\n"
        f"Failed validating '{key}'"
    )


def _apply(img: Image, extra: _Extra, body: dict[str, Any]) -> None:
    """Set attributes and properties from ``body`` (a create body or one patch value)."""
    for key, value in body.items():
        if key in ("name", "owner"):
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise _invalid(key, value, "is not of type 'string', 'null'")
            setattr(img, key, value or "")
        elif key == "visibility":
            if value not in VISIBILITIES:
                raise _invalid(key, value, f"is not one of {list(VISIBILITIES)}")
            img.visibility = value
        elif key in ("protected", "os_hidden"):
            if not isinstance(value, bool):
                raise _invalid(key, value, "is not of type 'boolean'")
            setattr(extra, "protected" if key == "protected" else "hidden", value)
        elif key in ("min_ram", "min_disk"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _invalid(key, value, "is not a non-negative integer")
            setattr(img, key, value)
        elif key in ("disk_format", "container_format"):
            allowed = DISK_FORMATS if key == "disk_format" else CONTAINER_FORMATS
            if value is not None and value not in allowed:
                raise _invalid(key, value, f"is not one of {[None, *allowed]}")
            setattr(img, key, value or "")
        elif key == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise _invalid(key, value, "is not of type 'array' of strings")
            extra.tags = list(dict.fromkeys(value))
        else:
            if not isinstance(value, str):
                raise _invalid(key, value, "is not of type 'string'")
            if len(key) > 255:
                raise BadRequest("Custom property should not be greater than 255 characters.")
            img.properties[key] = value


def _patch(img: Image, extra: _Extra, change: Any) -> None:
    """One JSON-patch operation (draft 10 paths, as in the v2.1 media type)."""
    if not isinstance(change, dict) or change.get("op") not in ("add", "replace", "remove"):
        raise BadRequest(
            "Unable to find `op` in JSON Schema change. It must be one of the "
            "following: add, remove, replace."
        )
    op, path = change["op"], change.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "/" in path[1:]:
        raise BadRequest(f"Invalid JSON pointer for this resource: '{path}'")
    key = path[1:].replace("~1", "/").replace("~0", "~")
    if key in READ_ONLY:
        raise Forbidden(f"Attribute '{key}' is read-only.")
    if key in RESERVED or key.startswith("os_glance"):
        raise Forbidden(f"Attribute '{key}' is reserved.")
    is_base = key in BASE_SETTABLE
    if op == "remove":
        if is_base:
            raise Forbidden(f"Property {key} may not be removed.")
        if key not in img.properties:
            raise Conflict(f"Property {key} does not exist.")
        del img.properties[key]
        return
    if "value" not in change:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    if op == "replace" and not is_base and key not in img.properties:
        raise Conflict(f"Property {key} does not exist.")
    _apply(img, extra, {key: change["value"]})
