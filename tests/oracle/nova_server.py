#!/usr/bin/env python3
"""The contract-test oracle: real OpenStack Nova and Placement in one process.

Runs inside ``.venv-oracle`` (see scripts/oracle-venv.sh), never in the dev venv.

What is real: the Nova API (its paste pipeline, including ``NovaKeystoneContext`` and
the default policies), nova-conductor, nova-scheduler and N nova-compute services with
``fake.FakeDriver`` (1000 vCPU / 800 GB RAM / 600 TB disk each), Placement, sqlite
databases (api, cell0, cell1, placement) created by their own migrations, cells v2
mappings. RPC runs over oslo.messaging's in-memory ``fake://`` driver.

Adapted because every service and host shares one process (each marked where done):
sqlite writers BEGIN IMMEDIATE behind a per-file lock, pooled connections; fake://
RPC listeners woken on delivery instead of polling; the resource tracker's
"compute_resources" lock made per host; a service's first heartbeat sent at once; the
per-host node-identity file check and the process-wide executor shutdown of a stopped
compute skipped. Periodic tasks are off (as in Nova's functional tests).

What is a stand-in: Keystone (a tiny v3 password-auth service issuing opaque tokens and
a catalog), the token check in front of Nova/Placement/Glance (in place of
keystonemiddleware's auth_token), Glance (Nova's own ``GlanceFixture`` as the store,
plus a minimal Images v2 HTTP API over the same data) and Neutron (Nova's
``NeutronFixture``; boot with ``networks='none'``).

Everything is served over real HTTP on 127.0.0.1, one port, devstack-style paths:
``/identity``, ``/compute/v2.1``, ``/placement``, ``/image`` and the control protocol
(``/control/...``, see tests/contract/backends/base.py).

CLI: ``nova_server.py --hosts N --workdir DIR [--port P]``. When ready it writes
``DIR/clouds.yaml`` (cloud ``oracle``) and prints one JSON line on stdout.
"""

# (Runs in the oracle venv; excluded from the dev lint in pyproject.toml.)

import os
import sys

# Nova must decide its concurrency mode before anything imports eventlet: native
# threads, like `nova-api`/`nova-compute` started with this variable.
os.environ["OS_NOVA_DISABLE_EVENTLET_PATCHING"] = "1"
from nova import monkey_patch  # noqa: E402

monkey_patch.patch("threading")

import argparse  # noqa: E402
import collections  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging as std_logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
from unittest import mock  # noqa: E402

import fixtures  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402
from werkzeug import serving  # noqa: E402
from oracle_common import (  # noqa: E402 (after the start-up patching above)
    REGION,
    PASSWORD,
    NS,
    _id,
    _iso,
    _json_response,
    _read_json,
    _base_url,
    install_sqlite_tuning,
    install_fake_rpc_wakeups,
    sqlite_url,
    make_wal_file,
    Keystone,
    unauthorized,
    TokenAuth,
    Router,
    _watch_parent,
)

LOG = std_logging.getLogger("nova_oracle")

def nova_authtoken_filter_factory(global_conf, **local_conf):
    """Used in Nova's api-paste.ini in place of keystonemiddleware.auth_token."""
    return lambda app: TokenAuth(app)


# --------------------------------------------------------------------------------------
# Glance v2 (minimal) over the GlanceFixture's store
# --------------------------------------------------------------------------------------
_GLANCE_CORE = {
    "id", "name", "status", "visibility", "protected", "container_format", "disk_format",
    "size", "virtual_size", "min_ram", "min_disk", "tags", "owner", "checksum",
    "os_hash_algo", "os_hash_value", "created_at", "updated_at", "os_hidden",
}
_GLANCE_READONLY = {"status", "size", "virtual_size", "checksum", "os_hash_algo",
                    "os_hash_value", "created_at", "updated_at", "self", "file", "schema",
                    "locations", "direct_url"}


class GlanceAPI:
    """Images v2 as Glance shows them (properties as top-level keys), backed by the dict
    Nova's GlanceFixture serves to nova-compute, so a created image is bootable."""

    def __init__(self, fixture, keystone):
        self.fx = fixture
        self.keystone = keystone
        self.lock = threading.Lock()

    def view(self, img):
        out = {}
        for k in _GLANCE_CORE:
            if k in img:
                out[k] = img[k]
        out.setdefault("visibility", "public")
        out.setdefault("protected", False)
        out.setdefault("os_hidden", False)
        out.setdefault("tags", [])
        out.setdefault("virtual_size", None)
        out.setdefault("checksum", None)
        out.setdefault("os_hash_algo", None)
        out.setdefault("os_hash_value", None)
        out.setdefault("min_ram", 0)
        out.setdefault("min_disk", 0)
        out["created_at"] = _iso(img["created_at"])
        out["updated_at"] = _iso(img["updated_at"])
        props = dict(img.get("properties") or {})
        out.setdefault("owner", props.pop("owner", None))
        props.pop("owner", None)
        for k, v in props.items():
            if k not in out and v is not None:
                out[k] = v if isinstance(v, str) else str(v)
        out["self"] = f"/v2/images/{img['id']}"
        out["file"] = f"/v2/images/{img['id']}/file"
        out["schema"] = "/v2/schemas/image"
        return out

    @staticmethod
    def error(start_response, status, message):
        code, title = status.split(" ", 1)
        # Glance answers errors with webob's HTML-ish/plain bodies; JSON keeps sdk happy.
        return _json_response(start_response, status, {
            "code": int(code), "title": title, "message": message})

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ["REQUEST_METHOD"]
        base = _base_url(environ)
        if path in ("", "/versions"):
            versions = [{"id": f"v2.{n}", "status": "CURRENT" if n == 16 else "SUPPORTED",
                         "links": [{"rel": "self", "href": f"{base}/v2/"}]}
                        for n in range(16, -1, -1)]
            status = "300 Multiple Choices" if path == "" else "200 OK"
            return _json_response(start_response, status, {"versions": versions})
        tok = self.keystone.validate(environ.get("HTTP_X_AUTH_TOKEN"))
        if tok is None:
            return unauthorized(start_response, self.keystone.identity_url)
        project_id = tok["token"]["project"]["id"]
        if path == "/v2/images" and method == "GET":
            return self.list(environ, start_response)
        if path == "/v2/images" and method == "POST":
            return self.create(environ, start_response, project_id)
        if path == "/v2/info/import" and method == "GET":
            return _json_response(start_response, "200 OK", {"import-methods": {
                "description": "Import methods available.", "type": "array",
                "value": ["glance-direct", "web-download"]}})
        if path == "/v2/info/stores" and method == "GET":
            return self.error(start_response, "404 Not Found",
                              "Multi backend is not supported at this site.")
        m = re.fullmatch(r"/v2/images/([^/]+)(/file)?", path)
        if not m:
            return self.error(start_response, "404 Not Found", "Not Found")
        image_id, file_part = m.group(1), m.group(2)
        with self.lock:
            img = self.fx.images.get(image_id)
        if img is None:
            return self.error(start_response, "404 Not Found",
                              f"No image found with ID {image_id}")
        if file_part:
            if method == "PUT":
                return self.upload(environ, start_response, image_id)
            if method == "GET":
                data = self.fx._imagedata.get(image_id, b"")
                start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(len(data)))])
                return [data]
            return self.error(start_response, "405 Method Not Allowed", "Method not allowed")
        if method == "GET":
            return _json_response(start_response, "200 OK", self.view(img))
        if method == "DELETE":
            with self.lock:
                self.fx.images.pop(image_id, None)
            start_response("204 No Content", [("Content-Length", "0")])
            return [b""]
        if method == "PATCH":
            return self.patch(environ, start_response, image_id)
        return self.error(start_response, "405 Method Not Allowed", "Method not allowed")

    def list(self, environ, start_response):
        q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        limit = min(int(q.get("limit", ["25"])[0]), 1000)
        marker = q.get("marker", [None])[0]
        with self.lock:
            imgs = [self.view(i) for i in self.fx.images.values()]
        for key in ("name", "status", "visibility", "owner", "container_format",
                    "disk_format"):
            if key in q:
                imgs = [i for i in imgs if i.get(key) == q[key][0]]
        imgs.sort(key=lambda i: (i["created_at"], i["id"]), reverse=True)
        if marker:
            idx = next((n for n, i in enumerate(imgs) if i["id"] == marker), None)
            if idx is None:
                return self.error(start_response, "400 Bad Request",
                                  f"marker {marker} could not be found.")
            imgs = imgs[idx + 1:]
        page = imgs[:limit]
        # As Glance's ResponseSerializer.index: "first" repeats the query without the
        # marker, and "next" appears whenever the page is full (even if nothing follows).
        params = [(k, v) for k, v in urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""))
                  if k != "marker"]
        first = "/v2/images"
        if params:
            first += "?" + urllib.parse.urlencode(params)
        body = {"images": page, "schema": "/v2/schemas/images", "first": first}
        if page and len(page) == limit:
            body["next"] = "/v2/images?" + urllib.parse.urlencode(
                params + [("marker", page[-1]["id"])])
        return _json_response(start_response, "200 OK", body)

    def create(self, environ, start_response, project_id):
        try:
            req = _read_json(environ)
        except ValueError:
            return self.error(start_response, "400 Bad Request", "Malformed JSON")
        bad = sorted(k for k in req if k in _GLANCE_READONLY)
        if bad:
            return self.error(start_response, "403 Forbidden",
                              f"Attribute '{bad[0]}' is read-only.")
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        image_id = str(req.get("id") or uuid.uuid4())
        img = {"id": image_id, "status": "queued", "size": None, "created_at": now,
               "updated_at": now, "deleted": False, "deleted_at": None,
               "visibility": "shared", "protected": False, "min_ram": 0, "min_disk": 0,
               "tags": [], "owner": project_id, "properties": {},
               "container_format": None, "disk_format": None, "name": None}
        for k, v in req.items():
            if k in _GLANCE_CORE:
                img[k] = v
            else:
                if not isinstance(v, str):
                    return self.error(
                        start_response, "400 Bad Request",
                        f"Provided object does not match schema 'image': {v!r} is not "
                        f"of type 'string'")
                img["properties"][k] = v
        with self.lock:
            if image_id in self.fx.images:
                return self.error(start_response, "409 Conflict",
                                  f"Image with identifier {image_id} already exists!")
            self.fx.images[image_id] = img
        return _json_response(start_response, "201 Created", self.view(img),
                              [("Location", f"{_base_url(environ)}/v2/images/{image_id}")])

    def upload(self, environ, start_response, image_id):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            data = environ["wsgi.input"].read(length)
        else:
            data = b"".join(iter(lambda: environ["wsgi.input"].read(65536), b""))
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        with self.lock:
            img = self.fx.images[image_id]
            self.fx._imagedata[image_id] = data
            img.update(status="active", size=len(data), updated_at=now,
                       checksum=hashlib.md5(data).hexdigest(), os_hash_algo="sha512",
                       os_hash_value=hashlib.sha512(data).hexdigest(), virtual_size=None)
        start_response("204 No Content", [("Content-Length", "0")])
        return [b""]

    def patch(self, environ, start_response, image_id):
        try:
            ops = _read_json(environ)
        except ValueError:
            return self.error(start_response, "400 Bad Request", "Malformed JSON")
        with self.lock:
            img = self.fx.images[image_id]
            for op in ops:
                name = op.get("path", "").lstrip("/")
                if name in _GLANCE_READONLY:
                    return self.error(start_response, "403 Forbidden",
                                      f"Attribute '{name}' is read-only.")
                target = img if name in _GLANCE_CORE else img.setdefault("properties", {})
                if op.get("op") in ("add", "replace"):
                    target[name] = op.get("value")
                elif op.get("op") == "remove":
                    if name not in target:
                        return self.error(start_response, "409 Conflict",
                                          f"Property {name} does not exist.")
                    target.pop(name, None)
            img["updated_at"] = datetime.datetime.now(datetime.timezone.utc).replace(
                microsecond=0)
            view = self.view(img)
        return _json_response(start_response, "200 OK", view)


# --------------------------------------------------------------------------------------
# One HTTP server, devstack-style path prefixes
# --------------------------------------------------------------------------------------

class _Harness(fixtures.Fixture):
    """The bits of nova.test.TestCase that Nova's Glance/Neutron fixtures call."""

    def stub_out(self, old, new):
        self.useFixture(fixtures.MonkeyPatch(old, new))

    def flags(self, **kw):
        group = kw.pop("group", None)
        for k, v in kw.items():
            cfg.CONF.set_override(k, v, group)


# --------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------
class Oracle:
    def __init__(self, args):
        self.args = args
        self.workdir = os.path.abspath(args.workdir)
        self.hosts = [f"compute{n:02d}" for n in range(1, args.hosts + 1)]
        self.computes = {}  # host -> nova.service.Service
        self.drivers = {}  # host -> FakeDriver kept across a compute-crash
        self.failed = {}  # host -> mode
        self.control_lock = threading.Lock()
        self.router = Router("nova")
        self.server = serving.make_server("127.0.0.1", args.port, self.router, threaded=True)
        self.port = self.server.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keystone = Keystone(
            self.base_url,
            service_users=("nova", "placement"),
            endpoints=(
                ("compute", "nova", "/compute/v2.1"),
                ("placement", "placement", "/placement"),
                ("image", "glance", "/image"),
            ),
        )
        TokenAuth.KEYSTONE = self.keystone

    # -- configuration -----------------------------------------------------------------
    def write_nova_conf(self):
        w = self.workdir
        self.db = {name: sqlite_url(os.path.join(w, f"{name}.sqlite"))
                   for name in ("nova_api", "nova_cell0", "nova_cell1", "placement")}
        for sub in ("state", "instances", "locks", "tmp"):
            os.makedirs(os.path.join(w, sub), exist_ok=True)
        paste = os.path.join(sys.prefix, "etc", "nova", "api-paste.ini")
        with open(paste) as f:
            ini = f.read()
        ini = ini.replace("paste.filter_factory = keystonemiddleware.auth_token:filter_factory",
                          "paste.filter_factory = __main__:nova_authtoken_filter_factory")
        if "__main__:nova_authtoken_filter_factory" not in ini:
            raise RuntimeError("could not replace authtoken in api-paste.ini")
        self.paste_ini = os.path.join(w, "api-paste.ini")
        with open(self.paste_ini, "w") as f:
            f.write(ini)
        a = self.args
        conf = f"""
[DEFAULT]
host = controller
transport_url = fake://
compute_driver = fake.FakeDriver
state_path = {w}/state
instances_path = {w}/instances
tempdir = {w}/tmp
my_ip = 127.0.0.1
report_interval = {a.report_interval}
service_down_time = {a.service_down_time}
periodic_enable = false
periodic_fuzzy_delay = 0
manager_shutdown_timeout = 0
graceful_shutdown_timeout = 5
rpc_response_timeout = 20
long_rpc_timeout = 60
max_concurrent_builds = 64
debug = {str(a.debug).lower()}
use_stderr = false
log_file = {w}/nova.log
default_log_levels = amqp=WARN,sqlalchemy=WARN,oslo_messaging=INFO,oslo.messaging=INFO,routes=INFO,stevedore=WARN,keystoneauth=WARN,urllib3=WARN,openstack=WARN,werkzeug=WARN,oslo_policy=INFO,alembic=WARN,placement.requestlog=WARN,nova.api.openstack.requestlog=INFO
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = {self.paste_ini}
[api_database]
connection = {self.db['nova_api']}
sqlite_synchronous = false
[database]
connection = {self.db['nova_cell1']}
sqlite_synchronous = false
[oslo_concurrency]
lock_path = {w}/locks
[oslo_messaging_notifications]
driver = noop
[notifications]
notification_format = unversioned
[quota]
instances = -1
cores = -1
ram = -1
server_groups = -1
server_group_members = -1
key_pairs = -1
metadata_items = -1
[scheduler]
discover_hosts_in_cells_interval = -1
max_attempts = 3
[filter_scheduler]
host_subset_size = 1
build_failure_weight_multiplier = 0
[placement]
auth_type = password
auth_url = {self.keystone.identity_url}
username = nova
password = {PASSWORD}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
valid_interfaces = public
[glance]
api_servers = {self.base_url}/image
[neutron]
auth_type = password
auth_url = {self.keystone.identity_url}
username = nova
password = {PASSWORD}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = {REGION}
[key_manager]
backend = nova.keymgr.conf_key_mgr.ConfKeyManager
[oslo_limit]
endpoint_id = {_id('endpoint', 'compute:public')}
[workarounds]
disable_compute_service_check_for_ffu = true
"""
        self.nova_conf = os.path.join(w, "nova.conf")
        with open(self.nova_conf, "w") as f:
            f.write(conf)

    # -- databases ---------------------------------------------------------------------
    def create_databases(self):
        from nova.db import migration
        from nova.db.main import api as main_db_api
        from nova.db.api import api as api_db_api

        for url in self.db.values():
            make_wal_file(url[len("sqlite:///"):])
        api_db_api.configure(cfg.CONF)
        main_db_api.configure(cfg.CONF)
        migration.db_sync(database="api")
        migration.db_sync(database="main")  # cell1 ([database] connection)
        # cell0 gets the same schema: replay cell1's schema dump (what nova's own
        # CellDatabases fixture does), much faster than a second alembic run.
        cell1 = self.db["nova_cell1"][len("sqlite:///"):]
        cell0 = self.db["nova_cell0"][len("sqlite:///"):]
        src = sqlite3.connect(cell1)
        dump = "\n".join(line for line in src.iterdump()
                         if not line.startswith(("BEGIN", "COMMIT")))
        src.close()
        dst = sqlite3.connect(cell0)
        dst.executescript(dump)
        dst.commit()
        dst.close()

    def create_cells(self):
        from nova import context, objects

        ctxt = context.get_admin_context()
        objects.CellMapping(
            context=ctxt, uuid=objects.CellMapping.CELL0_UUID, name="cell0",
            transport_url="fake://", database_connection=self.db["nova_cell0"]).create()
        self.cell1 = objects.CellMapping(
            context=ctxt, uuid=str(uuid.uuid5(NS, "cell1")), name="cell1",
            transport_url="fake://", database_connection=self.db["nova_cell1"])
        self.cell1.create()

    def share_cell1_engine(self):
        """target_cell(cell1) would build a second engine on cell1.sqlite; hand back the
        global [database] one instead (one writer-lock domain per file), and put every
        `fake://` cell transport on the one in-memory bus (as nova's RPCFixture does)."""
        from nova.db.main import api as main_db_api
        from nova import rpc

        real_create = main_db_api.create_context_manager
        cell1_url = self.db["nova_cell1"]

        def create_context_manager(connection=None):
            if connection in (None, cell1_url):
                return main_db_api.context_manager
            return real_create(connection)

        main_db_api.create_context_manager = create_context_manager
        rpc.init(cfg.CONF)
        rpc.create_transport = lambda url: rpc.TRANSPORT

    # -- placement ---------------------------------------------------------------------
    def load_placement(self):
        from placement import auth as placement_auth, conf as placement_conf
        from placement import db_api as placement_db, deploy as placement_deploy

        pconf = cfg.ConfigOpts()
        placement_conf.register_opts(pconf)
        path = os.path.join(self.workdir, "placement.conf")
        with open(path, "w") as f:
            f.write(f"""
[placement_database]
connection = {self.db['placement']}
sqlite_synchronous = false
sync_on_startup = true
[api]
auth_strategy = keystone
""")
        pconf([], project="placement", default_config_files=[path])
        placement_db.configure(pconf)
        placement_auth.filter_factory = lambda global_conf, **kw: (
            lambda app: TokenAuth(app, public_paths={"", "/"}))
        app = placement_deploy.loadapp(pconf)
        self.router.mount("/placement", app)

    # -- Nova API ----------------------------------------------------------------------
    def load_nova_api(self):
        from paste import deploy
        from nova.api.openstack import wsgi_app

        wsgi_app._setup_service(cfg.CONF.host, "osapi_compute")
        app = deploy.loadapp(f"config:{self.paste_ini}", name="osapi_compute")
        self.router.mount("/compute", app)

    def install_fixtures(self):
        from nova.tests.fixtures import glance as glance_fx, neutron as neutron_fx

        self.harness = _Harness()
        self.harness.setUp()
        self.glance = glance_fx.GlanceFixture(self.harness)
        self.harness.useFixture(self.glance)
        self.harness.useFixture(neutron_fx.NeutronFixture(self.harness))
        # Replace the fixture's eleven look-alike test images with one plausible image.
        self.glance.images.clear()
        ts = datetime.datetime(2024, 1, 1, 0, 0, 0, tzinfo=datetime.timezone.utc)
        data = b"\0" * 1024
        self.glance.images["a1f0e4c2-5b7d-4c55-9d2e-6f3a8b9c0d11"] = {
            "id": "a1f0e4c2-5b7d-4c55-9d2e-6f3a8b9c0d11", "name": "cirros-0.6.2-x86_64-disk",
            "created_at": ts, "updated_at": ts, "deleted_at": None, "deleted": False,
            "status": "active", "is_public": True, "container_format": "bare",
            "disk_format": "qcow2", "size": len(data), "min_ram": 0, "min_disk": 0,
            "protected": False, "visibility": "public", "tags": [],
            "owner": self.keystone.projects["admin"]["id"],
            "checksum": hashlib.md5(data).hexdigest(), "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(data).hexdigest(),
            "properties": {"hw_architecture": "x86_64", "os_distro": "cirros"},
        }
        self.glance._imagedata["a1f0e4c2-5b7d-4c55-9d2e-6f3a8b9c0d11"] = data
        self.router.mount("/image", GlanceAPI(self.glance, self.keystone))
        self.router.mount("/identity", self.keystone)
        self.router.mount("/control", self.control)

    def create_flavors(self):
        from nova import context, objects

        ctxt = context.get_admin_context()
        for fid, name, ram, vcpus, disk in (("1", "m1.tiny", 512, 1, 1),
                                            ("2", "m1.small", 2048, 1, 20),
                                            ("3", "m1.medium", 4096, 2, 40),
                                            ("4", "m1.large", 8192, 4, 80),
                                            ("5", "m1.xlarge", 16384, 8, 160)):
            objects.Flavor(context=ctxt, flavorid=fid, name=name, memory_mb=ram,
                           vcpus=vcpus, root_gb=disk, ephemeral_gb=0, swap=0,
                           rxtx_factor=1.0, disabled=False, is_public=True).create()

    # -- services ----------------------------------------------------------------------
    def _patch_process_wide_shutdown(self):
        # A compute manager's cleanup_host() shuts down the process-wide executors
        # (one process = one service in real life). Here a "failed" compute is one of many
        # services in the process, so that must not take the others' thread pools away.
        from nova import thread_pool_factory

        thread_pool_factory.shutdown_all_executors = lambda: None

    def _patch_single_process_quirks(self):
        from nova.compute import manager as compute_manager
        from nova.servicegroup import api as servicegroup_api

        # A service's first heartbeat comes INITIAL_REPORTING_DELAY (5 s) after start.
        # With the short service_down_time used here (real clouds: 60 s) a freshly
        # (re)started compute would read "down" for a moment and even be evacuable;
        # report at once instead, as it effectively is with production timings.
        servicegroup_api.INITIAL_REPORTING_DELAY = 0
        # A real compute host keeps its node identity in its own state_path/compute_id;
        # here all hosts share one state_path, and FakeDriver reports stable per-node
        # UUIDs anyway. Nova's own functional tests stub this check the same way.
        compute_manager.ComputeManager._ensure_existing_node_identity = (
            lambda self, service_ref: None)
        self._per_host_resource_lock()

    @staticmethod
    def _per_host_resource_lock():
        """Each nova-compute serializes its resource tracker on a process-wide named
        lock ("compute_resources"): one lock per host in real life, but one lock for all
        hosts in this process -- every claim of every host in single file, with placement
        HTTP calls inside (200 boots took minutes). Re-wrap those methods with a lock
        per ResourceTracker host instead."""
        import functools
        import inspect

        from nova.compute import resource_tracker as rt_mod

        locks = collections.defaultdict(threading.RLock)
        guard = threading.Lock()

        def host_lock(host):
            with guard:
                return locks[host]

        cls = rt_mod.ResourceTracker
        for name, fn in list(vars(cls).items()):
            inner = getattr(fn, "__wrapped__", None)
            if inner is None or not callable(fn):
                continue
            if inspect.getclosurevars(fn).nonlocals.get("name") != (
                    rt_mod.COMPUTE_RESOURCE_SEMAPHORE):
                continue

            def make(inner):
                @functools.wraps(inner)
                def locked(self, *args, **kwargs):
                    with host_lock(self.host):
                        return inner(self, *args, **kwargs)
                return locked

            setattr(cls, name, make(inner))

    def start_service(self, binary):
        """nova-conductor / nova-scheduler on the controller host."""
        from nova import service

        svc = service.Service.create(binary=binary, host=cfg.CONF.host)
        svc.start()
        return svc

    def start_compute(self, host, driver=None):
        """Start nova-compute for ``host`` (optionally on an existing FakeDriver, i.e.
        with the guests it still runs) and map it into cell1 like discover_hosts."""
        from nova import context, exception, objects, service
        from nova.compute import rpcapi as compute_rpcapi

        ctxt = context.get_admin_context()
        try:
            objects.HostMapping.get_by_host(ctxt, host)
            mapped = True
        except exception.HostMappingNotFound:
            objects.HostMapping(context=ctxt, host=host, cell_mapping=self.cell1).create()
            mapped = False

        def create():
            return service.Service.create(binary="nova-compute", host=host,
                                          topic_alt=compute_rpcapi.RPC_TOPIC_ALT)

        if driver is not None:
            with mock.patch("nova.virt.driver.load_compute_driver", return_value=driver):
                svc = create()
        else:
            svc = create()
        svc.start()
        if not mapped:
            node = objects.ComputeNode.get_by_service_id(ctxt, svc.service_ref.id)
            node.mapped = 1
            node.save()
        self.computes[host] = svc
        self.drivers[host] = svc.manager.driver
        return svc

    def fail_host(self, host, mode):
        svc = self.computes.pop(host, None)
        self.failed[host] = mode
        if svc is not None:
            # Stops the RPC servers and the report_state timer: heartbeats stop, the
            # service row's updated_at freezes, and after service_down_time Nova reports
            # it down. Casts to the host queue up on the bus as they would in RabbitMQ.
            svc.stop()
        if mode == "power":
            # The hypervisor lost power: its guests are gone when it comes back.
            self.drivers.pop(host, None)

    def recover_host(self, host):
        if host in self.computes:
            return
        driver = self.drivers.get(host)
        self.start_compute(host, driver=driver)
        self.failed.pop(host, None)

    # -- control protocol --------------------------------------------------------------
    def control(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ["REQUEST_METHOD"]
        if path == "/info" and method == "GET":
            return _json_response(start_response, "200 OK", {
                "backend": "nova_oracle", "hosts": self.hosts,
                "service_down_time": self.args.service_down_time,
                "report_interval": self.args.report_interval,
                "failed": dict(self.failed),
            })
        m = re.fullmatch(r"/hosts/([^/]+)/(fail|recover)", path)
        if not m or method != "POST":
            return _json_response(start_response, "404 Not Found", {"error": "not found"})
        host, verb = m.groups()
        if host not in self.hosts:
            return _json_response(start_response, "404 Not Found",
                                  {"error": f"unknown host {host}"})
        try:
            body = _read_json(environ)
        except ValueError:
            return _json_response(start_response, "400 Bad Request",
                                  {"error": "malformed JSON"})
        with self.control_lock:
            if verb == "fail":
                mode = body.get("mode", "power")
                if mode not in ("power", "compute-crash"):
                    return _json_response(start_response, "400 Bad Request", {
                        "error": f"mode {mode!r} is not supported by the nova oracle "
                                 f"(supported: power, compute-crash)"})
                self.fail_host(host, mode)
                return _json_response(start_response, "200 OK", {"host": host, "mode": mode})
            self.recover_host(host)
            return _json_response(start_response, "200 OK", {"host": host})

    # -- boot --------------------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        self.write_nova_conf()

        from nova import config, objects

        objects.register_all()
        config.parse_args(["nova-oracle", "--config-file", self.nova_conf],
                          configure_db=False, init_rpc=False)
        logging.setup(cfg.CONF, "nova")
        std_logging.getLogger("werkzeug").setLevel(std_logging.WARNING)
        install_sqlite_tuning()
        install_fake_rpc_wakeups()
        self.share_cell1_engine()
        self._patch_process_wide_shutdown()
        self._patch_single_process_quirks()

        self.create_databases()
        self.create_cells()
        self.create_flavors()
        self.load_placement()
        self.install_fixtures()
        self.load_nova_api()
        self.conductor = self.start_service("nova-conductor")
        self.scheduler = self.start_service("nova-scheduler")
        for host in self.hosts:
            self.start_compute(host)
        elapsed = time.monotonic() - t0
        LOG.info("oracle ready in %.1f s on %s", elapsed, self.base_url)
        return elapsed

    def write_clouds_yaml(self):
        path = os.path.join(self.workdir, "clouds.yaml")
        with open(path, "w") as f:
            f.write(f"""clouds:
  oracle:
    auth:
      auth_url: {self.keystone.identity_url}
      username: admin
      password: {PASSWORD}
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    interface: public
    identity_api_version: 3
  oracle-demo:
    auth:
      auth_url: {self.keystone.identity_url}
      username: demo
      password: {PASSWORD}
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    interface: public
    identity_api_version: 3
""")
        return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--workdir", required=True)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--report-interval", type=int, default=1)
    p.add_argument("--service-down-time", type=int, default=4)
    p.add_argument("--max-lifetime", type=float, default=3600.0)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="exit when stdin closes (the parent test runner is gone)")
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)

    # stdout carries exactly one line (the ready line); anything else goes to stderr.
    ready_out = sys.stdout
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    _watch_parent(args.exit_on_stdin_eof, args.max_lifetime)

    oracle = Oracle(args)
    try:
        elapsed = oracle.run()
    except Exception:
        traceback.print_exc()
        ready_out.write(json.dumps({"ready": False, "error": traceback.format_exc()}) + "\n")
        ready_out.flush()
        os._exit(1)
    clouds = oracle.write_clouds_yaml()
    ready_out.write(json.dumps({
        "ready": True, "clouds_yaml": clouds, "cloud": "oracle",
        "control_url": oracle.base_url, "hosts": oracle.hosts,
        "service_down_time": args.service_down_time,
        "report_interval": args.report_interval, "startup_seconds": round(elapsed, 2),
        "log": os.path.join(oracle.workdir, "nova.log"), "pid": os.getpid(),
    }) + "\n")
    ready_out.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
