"""Placement 1.x, read-only: one root resource provider per compute host (uuid = the hypervisor
id) with its inventories, usages, aggregates (Nova's, mirrored) and traits; consumers'
allocations, project usages and allocation candidates, all derived from the world on every read.

Shapes, microversion gates and error texts follow openstack-placement 16.0.0.  A provider's
generation is kept here: it bumps whenever its usage or its disabled trait changes, as the real
one does on every allocation and trait write.
"""

from __future__ import annotations

import email.utils
import http
import re
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from typing import Any

from hastack.sim import capacity
from hastack.sim.errors import BadRequest, CloudError, NotFound
from hastack.sim.http.base import ApiFace, ApiRequest
from hastack.sim.model import Host, Instance, VmState

MIN_VERSION = (1, 0)
MAX_VERSION = (1, 39)
_RC = re.compile(r"^[A-Z0-9_]+$")
# What nova-compute (libvirt) reports on every compute node provider; nova adds
# COMPUTE_STATUS_DISABLED while the host's compute service is disabled.
HOST_TRAITS = ("COMPUTE_NODE", "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_NET_ATTACH_INTERFACE")
DISABLED_TRAIT = "COMPUTE_STATUS_DISABLED"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# webob's explanations, which placement's error formatter keeps in "detail"
_EXPLAIN = {
    400: "The server could not comply with the request since it is either malformed or "
    "otherwise incorrect.",
    404: "The resource could not be found.",
    405: "The method is not allowed for this resource.",
    406: "The resource could not be generated that was acceptable to your browser "
    "(content of type application/json.",
    409: "There was a conflict when trying to complete your request.",
}


class NotAcceptableError(CloudError):
    status = 406


def _vstr(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


class PlacementFace(ApiFace):
    prefix = "/placement"
    service_type = "placement"

    def routes(self) -> None:
        # provider name -> (generation, what it was computed from)
        self._gens: dict[str, tuple[int, tuple[int, int, int, bool]]] = {}
        self._by_uuid: dict[str, str] = {}
        rp = "/resource_providers/<uuid>"
        self.route("/", self.versions)
        self.route("/resource_providers", self.list_providers)
        self.route(rp, self.get_provider)
        self.route(f"{rp}/inventories", self.inventories)
        self.route(f"{rp}/inventories/<rc>", self.inventory)
        self.route(f"{rp}/usages", self.provider_usages)
        self.route(f"{rp}/aggregates", self.aggregates)
        self.route(f"{rp}/traits", self.traits)
        self.route(f"{rp}/allocations", self.provider_allocations)
        self.route("/allocations/<consumer>", self.consumer_allocations)
        self.route("/usages", self.project_usages)
        self.route("/allocation_candidates", self.allocation_candidates)

    # ------------------------------------------------------------------ protocol

    def negotiate(self, req: ApiRequest) -> None:
        req.microversion = _requested_version(req.headers.get("OpenStack-API-Version"))

    def response_headers(self, req: ApiRequest) -> dict[str, str]:
        version = req.microversion
        if version == (0, 0):  # negotiation did not run (no route) or failed
            try:
                version = _requested_version(req.headers.get("OpenStack-API-Version"))
            except CloudError:
                version = MIN_VERSION
        headers = {
            "OpenStack-API-Version": f"placement {_vstr(version)}",
            "Vary": "openstack-api-version",
            "x-openstack-request-id": f"req-{uuidlib.uuid4()}",
        }
        if version >= (1, 15) and req.method == "GET":
            headers["Cache-Control"] = "no-cache"
            now = self.world.clock.now()
            headers["Last-Modified"] = email.utils.formatdate(now, usegmt=True)
        return headers

    def error_body(self, exc: CloudError) -> Any:
        try:
            title = http.HTTPStatus(exc.status).phrase
        except ValueError:
            title = "Error"
        err: dict[str, Any] = {
            "status": exc.status,
            "title": title,
            "detail": f"{_EXPLAIN.get(exc.status, '')}\n\n {exc.message}  ".lstrip(),
            "code": "placement.undefined_code",
            "request_id": f"req-{uuidlib.uuid4()}",
        }
        if isinstance(exc, NotAcceptableError):
            err.update(max_version=_vstr(MAX_VERSION), min_version=_vstr(MIN_VERSION))
        return {"errors": [err]}

    def versions(self, req: ApiRequest) -> Any:
        doc = {
            "id": f"v{_vstr(MIN_VERSION)}",
            "max_version": _vstr(MAX_VERSION),
            "min_version": _vstr(MIN_VERSION),
            "status": "CURRENT",
            "links": [{"rel": "self", "href": ""}],
        }
        return {"versions": [doc]}

    def _need(self, req: ApiRequest, version: str) -> None:
        """Placement answers 404 for a URL that is newer than the requested microversion."""
        if not req.at_least(version):
            raise NotFound("")

    # ------------------------------------------------------------------ providers

    def _host(self, rp_uuid: str) -> Host:
        host = self.world.hosts.get(self._by_uuid.get(rp_uuid, ""))
        if host is None or host.hypervisor_id != rp_uuid:
            self._by_uuid = {h.hypervisor_id: h.name for h in self.world.compute_hosts()}
            host = self.world.hosts.get(self._by_uuid.get(rp_uuid, ""))
        if host is None:
            raise NotFound(f"No resource provider with uuid {rp_uuid} found")
        return host

    def _used(self, host: Host) -> dict[str, int]:
        used = self.world.usage[host.name]
        return {"VCPU": used.vcpus, "MEMORY_MB": used.memory_mb, "DISK_GB": used.disk_gb}

    def _generation(self, host: Host) -> int:
        used = self.world.usage[host.name]
        sig = (used.vcpus, used.memory_mb, used.disk_gb, host.service.status == "disabled")
        gen, seen = self._gens.get(host.name, (0, sig))
        gen = max(gen + (seen != sig), 1)
        self._gens[host.name] = (gen, sig)
        return gen

    def _traits_of(self, host: Host) -> set[str]:
        disabled = host.service.status == "disabled"
        return set(HOST_TRAITS) | ({DISABLED_TRAIT} if disabled else set())

    def _provider_doc(self, req: ApiRequest, host: Host) -> dict[str, Any]:
        url = f"/resource_providers/{host.hypervisor_id}"
        gated = (("1.1", "aggregates"), ("1.6", "traits"), ("1.11", "allocations"))
        rels = ["inventories", "usages"] + [r for v, r in gated if req.at_least(v)]
        doc: dict[str, Any] = {
            "uuid": host.hypervisor_id,
            "name": host.name,
            "generation": self._generation(host),
            "links": [{"rel": "self", "href": url}]
            + [{"rel": rel, "href": f"{url}/{rel}"} for rel in rels],
        }
        if req.at_least("1.14"):
            doc.update(parent_provider_uuid=None, root_provider_uuid=host.hypervisor_id)
        return doc

    def list_providers(self, req: ApiRequest) -> Any:
        args = req.args
        want = _parse_resources(args["resources"]) if "resources" in args else None
        with self.world.lock:
            hosts: Iterable[Host] = self.world.compute_hosts()
            for key in ("uuid", "in_tree"):  # every provider here is the root of its own tree
                if key in args:
                    hosts = [h for h in hosts if h.hypervisor_id == args[key]]
            if "name" in args:
                hosts = [h for h in hosts if h.name == args["name"]]
            hosts = self._filter(req, hosts, want)
            return {"resource_providers": [self._provider_doc(req, h) for h in hosts]}

    def _filter(
        self, req: ApiRequest, hosts: Iterable[Host], want: dict[str, int] | None
    ) -> Iterator[Host]:
        """The common ``resources``, ``required`` and ``member_of`` filters."""
        required, forbidden = _parse_traits(req.args.getlist("required"))
        member_of = _parse_member_of(req.args.getlist("member_of"))
        agg_map: dict[str, set[str]] = {}
        if member_of:
            for agg in self.world.aggregates.values():
                for name in agg.hosts:
                    agg_map.setdefault(name, set()).add(agg.uuid)
        for host in hosts:
            if want is not None and not self._fits(host, want):
                continue
            if required or forbidden:
                traits = self._traits_of(host)
                if not required <= traits or forbidden & traits:
                    continue
            aggs = agg_map.get(host.name, set())
            if all(
                (not any_of or any_of & aggs) and not none_of & aggs
                for any_of, none_of in member_of
            ):
                yield host

    def get_provider(self, req: ApiRequest, uuid: str) -> Any:
        with self.world.lock:
            return self._provider_doc(req, self._host(uuid))

    def inventories(self, req: ApiRequest, uuid: str) -> Any:
        with self.world.lock:
            host = self._host(uuid)
            return {
                "resource_provider_generation": self._generation(host),
                "inventories": capacity.inventories(host),
            }

    def inventory(self, req: ApiRequest, uuid: str, rc: str) -> Any:
        with self.world.lock:
            host = self._host(uuid)
            inv = capacity.inventories(host).get(rc)
            if inv is None:
                raise NotFound(f"No inventory of class {rc} for {uuid}")
            return {**inv, "resource_provider_generation": self._generation(host)}

    def provider_usages(self, req: ApiRequest, uuid: str) -> Any:
        with self.world.lock:
            host = self._host(uuid)
            return {
                "resource_provider_generation": self._generation(host),
                "usages": self._used(host),
            }

    def aggregates(self, req: ApiRequest, uuid: str) -> Any:
        self._need(req, "1.1")
        with self.world.lock:
            host = self._host(uuid)
            aggs = [a.uuid for a in self.world.aggregates.values() if host.name in a.hosts]
            body: dict[str, Any] = {"aggregates": aggs}
            if req.at_least("1.19"):
                body["resource_provider_generation"] = self._generation(host)
            return body

    def traits(self, req: ApiRequest, uuid: str) -> Any:
        self._need(req, "1.6")
        with self.world.lock:
            host = self._host(uuid)
            return {
                "traits": sorted(self._traits_of(host)),
                "resource_provider_generation": self._generation(host),
            }

    # ------------------------------------------------------------------ allocations and usages

    def provider_allocations(self, req: ApiRequest, uuid: str) -> Any:
        with self.world.lock:
            host = self._host(uuid)
            allocs: dict[str, Any] = {}
            for inst in self.world.instances.values():
                if host.name in inst.allocations:
                    allocs[inst.id] = {"resources": _resources(inst)}
                    if req.at_least("1.28"):
                        allocs[inst.id]["consumer_generation"] = 1
            return {"allocations": allocs, "resource_provider_generation": self._generation(host)}

    def consumer_allocations(self, req: ApiRequest, consumer: str) -> Any:
        with self.world.lock:
            inst = self.world.instances.get(consumer)
            if inst is None or not inst.allocations:
                return {"allocations": {}}
            allocs = {}
            for name in sorted(inst.allocations):
                host = self.world.hosts[name]
                allocs[host.hypervisor_id] = {
                    "generation": self._generation(host),
                    "resources": _resources(inst),
                }
            body: dict[str, Any] = {"allocations": allocs}
            if req.at_least("1.12"):
                body.update(project_id=inst.project_id, user_id=inst.user_id)
            if req.at_least("1.28"):
                body["consumer_generation"] = 1
            if req.at_least("1.38"):
                body["consumer_type"] = "INSTANCE"
            return body

    def project_usages(self, req: ApiRequest) -> Any:
        self._need(req, "1.9")
        project_id, user_id = req.args.get("project_id"), req.args.get("user_id")
        if not project_id:
            raise BadRequest("Invalid query string parameters: 'project_id' is a required property")
        totals: dict[str, int] = {}
        count = 0
        with self.world.lock:
            for inst in self.world.instances.values():
                if inst.project_id != project_id or not inst.allocations:
                    continue
                if user_id is not None and inst.user_id != user_id:
                    continue
                count += 1
                for rc, amount in _resources(inst).items():
                    totals[rc] = totals.get(rc, 0) + amount * len(inst.allocations)
        if not req.at_least("1.38"):
            return {"usages": totals}
        if not count or req.args.get("consumer_type", "all") not in ("all", "INSTANCE"):
            return {"usages": {}}
        return {"usages": {"INSTANCE": {**totals, "consumer_count": count}}}

    # ------------------------------------------------------------------ allocation candidates

    def _fits(self, host: Host, want: dict[str, int]) -> bool:
        invs = capacity.inventories(host)
        used = self._used(host)
        for rc, amount in want.items():
            inv = invs.get(rc)
            if inv is None or not inv["min_unit"] <= amount <= inv["max_unit"]:
                return False
            if used[rc] + amount > (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]:
                return False
        return True

    def _summary(self, req: ApiRequest, host: Host, want: dict[str, int]) -> dict[str, Any]:
        used = self._used(host)
        resources = {}
        for rc, inv in capacity.inventories(host).items():
            if rc in want or req.at_least("1.27"):
                cap = int((inv["total"] - inv["reserved"]) * inv["allocation_ratio"])
                resources[rc] = {"capacity": cap, "used": used[rc]}
        doc: dict[str, Any] = {"resources": resources}
        if req.at_least("1.17"):
            doc["traits"] = sorted(self._traits_of(host))
        if req.at_least("1.29"):
            doc.update(parent_provider_uuid=None, root_provider_uuid=host.hypervisor_id)
        return doc

    def allocation_candidates(self, req: ApiRequest) -> Any:
        """Single-provider candidates (no nesting, no sharing), in provider order."""
        self._need(req, "1.10")
        args = req.args
        if "resources" not in args:
            raise BadRequest("Invalid query string parameters: 'resources' is a required property")
        want = _parse_resources(args["resources"])
        limit = _parse_limit(args.get("limit")) if req.at_least("1.16") else None
        requests: list[dict[str, Any]] = []
        summaries: dict[str, Any] = {}
        with self.world.lock:
            hosts: Iterable[Host] = self.world.compute_hosts()
            if "in_tree" in args:
                hosts = [h for h in hosts if h.hypervisor_id == args["in_tree"]]
            for host in self._filter(req, hosts, want):
                if limit is not None and len(requests) >= limit:
                    break
                rp = host.hypervisor_id
                ar: dict[str, Any] = {"allocations": {rp: {"resources": dict(want)}}}
                if not req.at_least("1.12"):
                    ar = {
                        "allocations": [
                            {"resource_provider": {"uuid": rp}, "resources": dict(want)}
                        ]
                    }
                if req.at_least("1.34"):
                    ar["mappings"] = {"": [rp]}
                requests.append(ar)
                summaries[rp] = self._summary(req, host, want)
        return {"allocation_requests": requests, "provider_summaries": summaries}


# ---------------------------------------------------------------------- request parsing


def _requested_version(header: str | None) -> tuple[int, int]:
    """The placement microversion asked for in an ``OpenStack-API-Version`` header."""
    value = None
    for part in (header or "").split(","):
        words = part.split(None, 1)
        if len(words) == 2 and words[0].lower() == "placement":
            value = words[1].strip()
    if value is None:
        return MIN_VERSION
    if value == "latest":
        return MAX_VERSION
    match = _VERSION.match(value)
    if not match:
        raise BadRequest(f"invalid version string: {value}")
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptableError(f"Unacceptable version header: {value}")
    return version


def _resources(inst: Instance) -> dict[str, int]:
    """What one allocation of ``inst`` holds; placement keeps no zero-amount rows."""
    if inst.vm_state == VmState.DELETED:
        return {}
    want = capacity.request_of(inst.flavor, inst.volume_backed)
    amounts = {"VCPU": want.vcpus, "MEMORY_MB": want.memory_mb, "DISK_GB": want.disk_gb}
    return {rc: n for rc, n in amounts.items() if n}


def _parse_resources(value: str) -> dict[str, int]:
    form = "Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024."
    if not value.strip():
        raise BadRequest(f"Badly formed resources parameter. {form} Got: empty string.")
    out: dict[str, int] = {}
    for item in value.split(","):
        rc, _, raw = item.partition(":")
        if not raw or ":" in raw:
            raise BadRequest(f"Badly formed resources parameter. {form} Got: {item}.")
        try:
            amount = int(raw)
        except ValueError:
            msg = f"Requested resource {rc} expected positive integer amount. Got: {raw}."
            raise BadRequest(msg) from None
        if amount < 1:
            raise BadRequest(f"Requested resource {rc} requires amount >= 1. Got: {amount}.")
        if not _RC.match(rc) or rc.startswith("CUSTOM_"):  # no custom classes are defined
            msg = f"Invalid resource class in resources parameter: No such resource class {rc}."
            raise BadRequest(msg)
        out[rc] = amount
    return out


def _parse_traits(values: list[str]) -> tuple[set[str], set[str]]:
    """``required`` params as (all of these, none of those); the 1.39 ``in:`` form is not
    supported."""
    required: set[str] = set()
    forbidden: set[str] = set()
    for value in values:
        for trait in (t.strip() for t in value.split(",")):
            if trait.startswith("in:"):
                raise BadRequest(f"The 'in:' form of 'required' is not supported. Got: {value}")
            (forbidden if trait.startswith("!") else required).add(trait.removeprefix("!"))
    return required, forbidden


def _parse_member_of(values: list[str]) -> list[tuple[set[str], set[str]]]:
    """Each ``member_of`` param as (any of these aggregates, none of those)."""
    out = []
    for value in values:
        body = value.removeprefix("!")
        uuids = body.removeprefix("in:").split(",")
        if not body.startswith("in:") and len(uuids) > 1:
            raise BadRequest(
                "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' "
                f"keyword using the valid microversion. Got: {value}"
            )
        for agg in uuids:
            if not _UUID.match(agg):
                raise BadRequest(
                    "Invalid query string parameters: Expected 'member_of' parameter to contain "
                    f"valid UUID(s). Got: {agg}"
                )
        out.append((set(), set(uuids)) if value.startswith("!") else (set(uuids), set()))
    return out


def _parse_limit(value: str | None) -> int | None:
    if value is not None and not (value.isdigit() and int(value) >= 1):
        raise BadRequest(f"Invalid query string parameters: '{value}' is not a positive integer")
    return None if value is None else int(value)
