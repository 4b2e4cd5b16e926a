#!/usr/bin/env python3
"""A real-Neutron test oracle: OpenStack Neutron 29 (neutron-server) in one process.

Runs inside ``.venv-neutron-oracle`` (see scripts/neutron-oracle-venv.sh), never in the
dev venv. Modelled on tests/oracle/nova_server.py (same stand-in Keystone, token filter,
sqlite tuning, fake:// RPC wake-ups and CLI/ready-line protocol).

What is real: the Neutron API (its paste pipeline incl. ``NeutronKeystoneContext``, pecan
controllers, default policies, quotas), the ML2 plugin (type drivers flat + vxlan,
mechanism driver openvswitch, port_security), the L3 router service plugin, the DHCP and
L3 agent schedulers, Neutron's agent RPC server side (``report_state`` handled by
``AgentExtRpcCallback`` over oslo.messaging's in-memory ``fake://`` transport), the
plugins' periodic workers (DB janitors; with ``--auto-failover on`` also
``reschedule_routers_from_down_agents`` and ``remove_networks_from_down_agents``).

What is a stand-in: Keystone (the tiny v3 service of nova_server.py), the token check in
front of Neutron (instead of keystonemiddleware.auth_token), and the agents: for each of
N network nodes (``network01``..) an L3 agent (legacy), a DHCP agent, an Open vSwitch
agent and a Metadata agent exist only as heartbeats -- each host's thread sends
``report_state`` for its four agents through ``neutron.agent.rpc.PluginReportStateAPI``
every ``--report-interval`` seconds. Nothing consumes the casts to the agents' topics
(they queue on the fake bus), so routers/DHCP are scheduled but never "implemented".

Adapted because everything shares one process: schema created from Neutron's models
(the alembic migrations do not run on sqlite), sqlite writers BEGIN IMMEDIATE behind a
per-file lock, RPC and periodic workers started as threads in this process.

Served over real HTTP on 127.0.0.1, one port: ``/identity``, ``/networking`` (Neutron,
catalog type ``network``) and the control protocol:
``GET /control/info``, ``POST /control/hosts/<host>/fail`` (stop that host's agent
heartbeats = node death), ``POST /control/hosts/<host>/recover`` (resume them).

CLI: ``neutron_server.py --hosts N --workdir DIR [--port P] [--agent-down-time S]
[--auto-failover on|off]``. When ready it writes ``DIR/clouds.yaml`` (cloud ``oracle``)
and prints one JSON line on stdout.
"""

# (Runs in the oracle venv; excluded from the dev lint like nova_server.py.)

import os
import sys

import neutron  # noqa: F401  (selects oslo.service's threading backend first)

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging as std_logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402

import sqlalchemy  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_db.sqlalchemy import enginefacade  # noqa: E402
from werkzeug import serving  # noqa: E402

LOG = std_logging.getLogger("neutron_oracle")

REGION = "RegionOne"
PASSWORD = "oracle-secret"
NS = uuid.UUID("5d4a7e0c-6a4b-4f0e-9a53-2b1f3c1d0a11")


def _id(kind, name):
    """Stable Keystone-style (32 hex) ids, so runs are comparable."""
    return uuid.uuid5(NS, f"{kind}:{name}").hex



def _iso(dt):
    if isinstance(dt, str):
        return dt
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")



def _json_response(start_response, status, body, headers=()):
    data = json.dumps(body).encode() if body is not None else b""
    hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    hdrs.extend(headers)
    start_response(status, hdrs)
    return [data]



def _read_json(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw:
        return {}
    return json.loads(raw)



def _base_url(environ):
    return f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}{environ.get('SCRIPT_NAME', '')}"



_TX_MODES = threading.local()



def install_sqlite_tuning():
    """Make file-backed sqlite safe for Neutron's many threads (API, RPC, periodic).

    oslo.db disables pysqlite's implicit BEGIN and emits a plain (deferred) BEGIN. Two
    deferred transactions that both read and then write deadlock (or fail with
    SQLITE_BUSY_SNAPSHOT under WAL) instead of waiting. So a transaction opened by an
    enginefacade *writer* begins IMMEDIATE (takes the write lock up front and waits for
    it via busy_timeout); readers stay deferred so they never block writers in WAL mode.
    The mode is tracked per thread on a stack pushed by the enginefacade transaction
    context that owns the session/connection (nested scopes reuse their owner's mode;
    `.independent` scopes get their own).
    """
    ctx_cls = enginefacade._TransactionContext

    def _wrap(orig):
        @contextlib.contextmanager
        def wrapper(self, *args, **kwargs):
            stack = getattr(_TX_MODES, "stack", None)
            if stack is None:
                stack = _TX_MODES.stack = []
            stack.append(self.mode)
            try:
                with orig(self, *args, **kwargs) as res:
                    yield res
            finally:
                stack.pop()

        return wrapper

    ctx_cls._session = _wrap(ctx_cls._session)
    ctx_cls._connection = _wrap(ctx_cls._connection)

    # oslo.db gives file-backed sqlite a NullPool: a new sqlite connection (and its
    # connect hooks) for every transaction, which costs this one-process cloud a lot of
    # its (GIL-bound) CPU. Pool them instead; pysqlite connections may cross threads.
    from oslo_db.sqlalchemy import engines as oslo_engines

    def _sqlite_connection_args(url, engine_args, kw):
        for key in ("max_pool_size", "max_overflow", "pool_timeout"):
            kw.pop(key, None)  # or oslo's generic hook applies [database] pool sizes
        if url.database and url.database != ":memory:":
            engine_args["poolclass"] = sqlalchemy.pool.QueuePool
            engine_args["pool_size"] = 8
            engine_args["max_overflow"] = -1
            engine_args["pool_timeout"] = 60
            engine_args.setdefault("connect_args", {})["check_same_thread"] = False
        else:
            engine_args["poolclass"] = sqlalchemy.pool.StaticPool
            engine_args.setdefault("connect_args", {})["check_same_thread"] = False

    oslo_engines._init_connection_args.reg["sqlite"]["*"] = [_sqlite_connection_args]

    # One writer at a time per database file, queued on a Python lock: sqlite's own
    # busy handler makes waiting writers sleep-and-retry, which starves unlucky ones
    # (service heartbeats went stale under load). Taken when a writer BEGINs, released
    # at COMMIT/ROLLBACK (or when the connection goes back to the pool).
    file_locks = collections.defaultdict(threading.Lock)
    file_locks_guard = threading.Lock()

    def _writer_lock(conn):
        with file_locks_guard:
            return file_locks[conn.engine.url.database]

    def _release(info):
        held = info.pop("oracle_writer_lock", None)
        if held is not None:
            held.release()

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "commit")
    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "rollback")
    def _on_end(conn):
        _release(conn.info)

    @sqlalchemy.event.listens_for(sqlalchemy.pool.Pool, "checkin")
    def _on_checkin(_dbapi_con, record):
        # oslo.db's "in_transaction" marker lives on the pooled connection record; it
        # must not survive into the next checkout (NullPool never had to care).
        if record is not None:
            record.info.pop("in_transaction", None)
            _release(record.info)

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
    def _on_connect(dbapi_con, _record):
        if isinstance(dbapi_con, sqlite3.Connection):
            dbapi_con.execute("PRAGMA busy_timeout = 60000")

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "begin")
    def _on_begin(conn):
        if conn.engine.dialect.name != "sqlite" or "in_transaction" in conn.info:
            return
        stack = getattr(_TX_MODES, "stack", None)
        if stack and stack[-1] is enginefacade._WRITER:
            lock = _writer_lock(conn)
            # Same-thread nesting of two writers on one file would wait forever here;
            # after the timeout fall back to sqlite's busy handler (and its error).
            if lock.acquire(timeout=30):
                conn.info["oracle_writer_lock"] = lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            # oslo.db's own listener checks this marker and then skips its BEGIN.
            conn.info["in_transaction"] = True



def install_fake_rpc_wakeups():
    """oslo.messaging's fake:// listener polls its queues every 50 ms. With two RPC
    servers per compute host that is hundreds of idle wake-ups a second fighting for the
    GIL, plus up to 50 ms per RPC hop. Wake a listener when a message for its topic is
    delivered instead (same queues, same delivery semantics)."""
    from oslo_messaging._drivers import base as driver_base
    from oslo_messaging._drivers import impl_fake

    waiters = collections.defaultdict(set)  # topic -> {threading.Event}
    lock = threading.Lock()
    listener_cls = impl_fake.FakeListener
    exchange_cls = impl_fake.FakeExchange
    orig_init = listener_cls.__init__
    orig_stop = listener_cls.stop
    orig_deliver = exchange_cls.deliver_message

    def __init__(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        self._wake = threading.Event()
        with lock:
            for target in self._targets:
                waiters[target.topic].add(self._wake)

    @driver_base.batch_poll_helper
    def poll(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            self._wake.clear()
            for target in self._targets:
                exchange = self._exchange_manager.get_exchange(target.exchange)
                ctxt, message, reply_q, requeue = exchange.poll(target, self._pool)
                if message is not None:
                    return impl_fake.FakeIncomingMessage(ctxt, message, reply_q, requeue)
            pause = 1.0
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
                if pause < 0:
                    break
            self._wake.wait(pause)
        return None

    def stop(self):
        orig_stop(self)
        self._wake.set()
        with lock:
            for target in self._targets:
                waiters[target.topic].discard(self._wake)

    def deliver_message(self, topic, *args, **kwargs):
        orig_deliver(self, topic, *args, **kwargs)
        with lock:
            events = list(waiters.get(topic, ()))
        for event in events:
            event.set()

    listener_cls.__init__ = __init__
    listener_cls.poll = poll
    listener_cls.stop = stop
    exchange_cls.deliver_message = deliver_message



def sqlite_url(path):
    return "sqlite:///" + os.path.abspath(path)



def make_wal_file(path):
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")



class Keystone:
    """Password auth, opaque tokens, a catalog. Not real Keystone: just enough of the
    v3 API for keystoneauth/openstacksdk (version discovery, POST/GET auth/tokens,
    projects/users read)."""

    def __init__(self, base_url):
        self.base_url = base_url  # http://127.0.0.1:P
        self.tokens = {}
        self.lock = threading.Lock()
        self.domain = {"id": "default", "name": "Default"}
        self.projects = {}
        self.users = {}
        for name in ("admin", "service", "demo"):
            self.projects[name] = {
                "id": _id("project", name), "name": name, "domain_id": "default",
                "description": "", "enabled": True, "is_domain": False,
                "parent_id": "default", "tags": [], "options": {},
            }
        # user -> (project, roles)
        self.grants = {
            "admin": ("admin", ["admin", "member", "reader"]),
            "neutron": ("service", ["admin", "service", "member", "reader"]),
            "demo": ("demo", ["member", "reader"]),
        }
        for name in self.grants:
            self.users[name] = {
                "id": _id("user", name), "name": name, "domain_id": "default",
                "enabled": True, "password_expires_at": None, "options": {},
            }

    @property
    def identity_url(self):
        return f"{self.base_url}/identity"

    def catalog(self):
        b = self.base_url
        services = [
            ("identity", "keystone", f"{b}/identity"),
            ("network", "neutron", f"{b}/networking"),
        ]
        out = []
        for stype, name, url in services:
            out.append({
                "id": _id("service", stype), "type": stype, "name": name,
                "endpoints": [
                    {"id": _id("endpoint", f"{stype}:{iface}"), "interface": iface,
                     "region": REGION, "region_id": REGION, "url": url}
                    for iface in ("public", "internal", "admin")
                ],
            })
        return out

    def _role(self, name):
        return {"id": _id("role", name), "name": name}

    def issue(self, user_name, project_name):
        now = datetime.datetime.now(datetime.timezone.utc)
        project = self.projects[project_name]
        user = self.users[user_name]
        _grant_project, roles = self.grants[user_name]
        token_id = "gAAAAA" + uuid.uuid4().hex + uuid.uuid4().hex
        body = {
            "token": {
                "methods": ["password"],
                "user": {"id": user["id"], "name": user["name"], "domain": self.domain,
                         "password_expires_at": None},
                "project": {"id": project["id"], "name": project["name"],
                            "domain": self.domain},
                "roles": [self._role(r) for r in roles],
                "catalog": self.catalog(),
                "is_domain": False,
                "audit_ids": [uuid.uuid4().hex[:22]],
                "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                "expires_at": (now + datetime.timedelta(hours=12)).strftime(
                    "%Y-%m-%dT%H:%M:%S.000000Z"),
            }
        }
        with self.lock:
            self.tokens[token_id] = body
        return token_id, body

    def validate(self, token):
        if not token:
            return None
        with self.lock:
            return self.tokens.get(token)

    # -- WSGI --------------------------------------------------------------------------
    def _version(self):
        return {
            "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.identity_url}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}],
        }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ["REQUEST_METHOD"]
        if path == "":
            return _json_response(start_response, "300 Multiple Choices",
                                  {"versions": {"values": [self._version()]}})
        if path == "/v3":
            return _json_response(start_response, "200 OK", {"version": self._version()})
        if path == "/v3/auth/tokens" and method == "POST":
            return self._post_token(environ, start_response)
        caller = self.validate(environ.get("HTTP_X_AUTH_TOKEN"))
        if caller is None:
            return unauthorized(start_response, self.identity_url)
        if path == "/v3/auth/tokens" and method in ("GET", "HEAD"):
            body = self.validate(environ.get("HTTP_X_SUBJECT_TOKEN"))
            if body is None:
                return _json_response(start_response, "404 Not Found", {"error": {
                    "code": 404, "title": "Not Found",
                    "message": "Could not find token."}})
            return _json_response(start_response, "200 OK", body,
                                  [("X-Subject-Token", environ["HTTP_X_SUBJECT_TOKEN"])])
        if path == "/v3/auth/catalog" and method == "GET":
            return _json_response(start_response, "200 OK", {"catalog": self.catalog()})
        for coll, items in (("projects", self.projects), ("users", self.users)):
            if path == f"/v3/{coll}" and method == "GET":
                vals = [dict(v, links={"self": f"{self.identity_url}/v3/{coll}/{v['id']}"})
                        for v in items.values()]
                return _json_response(start_response, "200 OK", {
                    coll: vals, "links": {"self": f"{self.identity_url}/v3/{coll}",
                                          "previous": None, "next": None}})
            m = re.fullmatch(rf"/v3/{coll}/([^/]+)", path)
            if m and method == "GET":
                for v in items.values():
                    if m.group(1) in (v["id"], v["name"]):
                        key = coll[:-1]
                        return _json_response(start_response, "200 OK", {key: dict(
                            v, links={"self": f"{self.identity_url}/v3/{coll}/{v['id']}"})})
                return _json_response(start_response, "404 Not Found", {"error": {
                    "code": 404, "title": "Not Found",
                    "message": f"Could not find {coll[:-1]}: {m.group(1)}."}})
        return _json_response(start_response, "404 Not Found", {"error": {
            "code": 404, "title": "Not Found", "message": "The resource could not be found."}})

    def _post_token(self, environ, start_response):
        try:
            req = _read_json(environ)["auth"]
            ident = req["identity"]
            if "password" not in ident.get("methods", []):
                raise KeyError("methods")
            user = ident["password"]["user"]
            name = user.get("name") or next(
                (u["name"] for u in self.users.values() if u["id"] == user.get("id")), None)
            password = user["password"]
        except (KeyError, TypeError, ValueError):
            return _json_response(start_response, "400 Bad Request", {"error": {
                "code": 400, "title": "Bad Request",
                "message": "Invalid authentication request."}})
        if name not in self.users or password != PASSWORD:
            return _json_response(start_response, "401 Unauthorized", {"error": {
                "code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}})
        project_name = self.grants[name][0]
        scope = (req.get("scope") or {}).get("project")
        if scope:
            wanted = scope.get("name") or next(
                (p["name"] for p in self.projects.values() if p["id"] == scope.get("id")), None)
            if wanted != project_name:
                return _json_response(start_response, "401 Unauthorized", {"error": {
                    "code": 401, "title": "Unauthorized",
                    "message": f"User {self.users[name]['id']} has no access to project "
                               f"{scope.get('id') or scope.get('name')}."}})
        token_id, body = self.issue(name, project_name)
        return _json_response(start_response, "201 Created", body,
                              [("X-Subject-Token", token_id)])



def unauthorized(start_response, identity_url):
    return _json_response(
        start_response, "401 Unauthorized",
        {"error": {"code": 401, "title": "Unauthorized",
                   "message": "The request you have made requires authentication."}},
        [("WWW-Authenticate", f'Keystone uri="{identity_url}"')])



_IDENTITY_HEADERS = (
    "HTTP_X_IDENTITY_STATUS", "HTTP_X_SERVICE_IDENTITY_STATUS", "HTTP_X_DOMAIN_ID",
    "HTTP_X_DOMAIN_NAME", "HTTP_X_PROJECT_ID", "HTTP_X_PROJECT_NAME",
    "HTTP_X_PROJECT_DOMAIN_ID", "HTTP_X_PROJECT_DOMAIN_NAME", "HTTP_X_USER_ID",
    "HTTP_X_USER_NAME", "HTTP_X_USER_DOMAIN_ID", "HTTP_X_USER_DOMAIN_NAME", "HTTP_X_ROLES",
    "HTTP_X_SERVICE_CATALOG", "HTTP_X_TENANT_ID", "HTTP_X_TENANT_NAME", "HTTP_X_TENANT",
    "HTTP_X_USER", "HTTP_X_ROLE", "HTTP_X_IS_ADMIN_PROJECT", "HTTP_X_SYSTEM_SCOPE",
    "HTTP_OPENSTACK_SYSTEM_SCOPE", "HTTP_X_AUTH_USER", "HTTP_X_AUTH_PROJECT_ID",
)



class TokenAuth:
    """Stands where keystonemiddleware.auth_token stands: checks X-Auth-Token against the
    Keystone stand-in and sets the same X-* headers auth_token would, so the services'
    own context middleware (NeutronKeystoneContext) runs
    unchanged."""

    KEYSTONE = None  # set before the apps are loaded

    def __init__(self, app, public_paths=()):
        self.app = app
        self.public_paths = set(public_paths)

    def __call__(self, environ, start_response):
        for h in _IDENTITY_HEADERS:
            environ.pop(h, None)
        ks = self.KEYSTONE
        body = ks.validate(environ.get("HTTP_X_AUTH_TOKEN"))
        if body is None:
            if environ.get("PATH_INFO", "") in self.public_paths:
                return self.app(environ, start_response)
            return unauthorized(start_response, ks.identity_url)
        tok = body["token"]
        environ.update({
            "HTTP_X_IDENTITY_STATUS": "Confirmed",
            "HTTP_X_USER_ID": tok["user"]["id"],
            "HTTP_X_USER_NAME": tok["user"]["name"],
            "HTTP_X_USER_DOMAIN_ID": "default",
            "HTTP_X_USER_DOMAIN_NAME": "Default",
            "HTTP_X_PROJECT_ID": tok["project"]["id"],
            "HTTP_X_PROJECT_NAME": tok["project"]["name"],
            "HTTP_X_PROJECT_DOMAIN_ID": "default",
            "HTTP_X_PROJECT_DOMAIN_NAME": "Default",
            "HTTP_X_ROLES": ",".join(r["name"] for r in tok["roles"]),
            "HTTP_X_SERVICE_CATALOG": json.dumps(tok["catalog"]),
            "HTTP_X_IS_ADMIN_PROJECT": "True" if tok["project"]["name"] == "admin" else "False",
        })
        return self.app(environ, start_response)



class Router:
    def __init__(self):
        self.mounts = {}  # prefix -> app

    def mount(self, prefix, app):
        self.mounts[prefix] = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix):]
                try:
                    return self.mounts[prefix](environ, start_response)
                except Exception:
                    LOG.exception("unhandled error under %s", prefix)
                    return _json_response(start_response, "500 Internal Server Error",
                                          {"error": traceback.format_exc(limit=3)})
        if path in ("", "/"):
            return _json_response(start_response, "200 OK", {
                "oracle": "neutron", "mounts": sorted(self.mounts)})
        return _json_response(start_response, "404 Not Found", {"error": "no such service"})



def _watch_parent(watch_stdin, max_lifetime):
    """Exit when stdin closes (the test runner died) or after max_lifetime seconds."""

    def stdin_watch():
        try:
            while sys.stdin.buffer.read(1):
                pass
        except Exception:
            pass
        os._exit(0)

    if watch_stdin:
        threading.Thread(target=stdin_watch, name="stdin-watch", daemon=True).start()
    if max_lifetime > 0:
        t = threading.Timer(max_lifetime, lambda: os._exit(3))
        t.daemon = True
        t.start()



def neutron_authtoken_filter_factory(global_conf, **local_conf):
    """Used in Neutron's api-paste.ini in place of keystonemiddleware.auth_token."""
    return lambda app: TokenAuth(app)


# --------------------------------------------------------------------------------------
# Fake agents: heartbeats only, through Neutron's real agent state-report RPC
# --------------------------------------------------------------------------------------
def agent_states(host, index):
    from neutron_lib import constants as n_const
    from neutron_lib.agent import topics

    tunnel_ip = f"10.0.0.{10 + index}"
    return [
        {"binary": n_const.AGENT_PROCESS_L3, "host": host, "topic": topics.L3_AGENT,
         "agent_type": n_const.AGENT_TYPE_L3, "availability_zone": "nova",
         "configurations": {
             "agent_mode": n_const.L3_AGENT_MODE_LEGACY,
             "handle_internal_only_routers": True,
             "interface_driver": "openvswitch", "log_agent_heartbeats": False,
             "extensions": [], "routers": 0, "ex_gw_ports": 0, "interfaces": 0,
             "floating_ips": 0}},
        {"binary": n_const.AGENT_PROCESS_DHCP, "host": host, "topic": topics.DHCP_AGENT,
         "agent_type": n_const.AGENT_TYPE_DHCP, "availability_zone": "nova",
         "configurations": {
             "dhcp_driver": "neutron.agent.linux.dhcp.Dnsmasq",
             "dhcp_lease_duration": 86400, "log_agent_heartbeats": False,
             "networks": 0, "subnets": 0, "ports": 0}},
        {"binary": n_const.AGENT_PROCESS_OVS, "host": host, "topic": "N/A",
         "agent_type": n_const.AGENT_TYPE_OVS,
         "configurations": {
             "bridge_mappings": {"public": "br-ex"}, "tunnel_types": ["vxlan"],
             "tunneling_ip": tunnel_ip, "l2_population": False,
             "arp_responder_enabled": False, "enable_distributed_routing": False,
             "integration_bridge": "br-int", "datapath_type": "system",
             "ovs_hybrid_plug": False, "devices": 0, "extensions": [],
             "log_agent_heartbeats": False}},
        {"binary": n_const.AGENT_PROCESS_METADATA, "host": host, "topic": "N/A",
         "agent_type": n_const.AGENT_TYPE_METADATA,
         "configurations": {"metadata_proxy_socket": "/var/lib/neutron/metadata_proxy",
                            "nova_metadata_host": "127.0.0.1",
                            "nova_metadata_port": 8775, "log_agent_heartbeats": False}},
    ]


class _AcceptAll:
    """RPC endpoint of a fake L3/DHCP agent: every method (router_added_to_agent,
    network_create_end, ...) succeeds and returns None. Neutron *calls* some of these
    (router_added_to_agent, with retries and growing timeouts), so a host's agents must
    consume their topics while the host is alive -- and stop when it dies."""

    def __init__(self):
        import oslo_messaging

        self.target = oslo_messaging.Target(version="1.99")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda context, **kwargs: None


class FakeHost:
    """One network node: its four agents' heartbeat loop (a thread) and the RPC consumers
    of its L3 and DHCP agents."""

    def __init__(self, host, index, interval):
        self.host = host
        self.states = agent_states(host, index)
        self.interval = interval
        self.alive = threading.Event()
        self.first = True
        self.last_error = None
        self.beats = 0
        self.thread = threading.Thread(target=self._loop, name=f"hb-{host}", daemon=True)

    def start_consumers(self):
        import oslo_messaging
        from neutron_lib import rpc as n_rpc
        from neutron_lib.agent import topics

        self.servers = []
        for topic in (topics.L3_AGENT, topics.DHCP_AGENT):
            srv = n_rpc.get_server(oslo_messaging.Target(topic=topic, server=self.host),
                                   [_AcceptAll()])
            srv.start()
            self.servers.append(srv)

    def stop_consumers(self):
        for srv in getattr(self, "servers", ()):
            srv.stop()
        self.servers = []

    def start(self):
        self.start_consumers()
        self.alive.set()
        self.thread.start()

    def report_once(self):
        from neutron.agent import rpc as agent_rpc
        from neutron_lib.agent import topics
        from neutron_lib import context as n_context

        api = getattr(self, "_api", None)
        if api is None:
            api = self._api = agent_rpc.PluginReportStateAPI(topics.REPORTS)
        ctxt = n_context.get_admin_context_without_session()
        for state in self.states:
            state = dict(state)
            if self.first:
                state["start_flag"] = True
            api.report_state(ctxt, state, use_call=True)
        self.first = False
        self.beats += 1

    def _loop(self):
        while True:
            self.alive.wait()
            t0 = time.monotonic()
            try:
                self.report_once()
                self.last_error = None
            except Exception as exc:  # keep heartbeating; log why one round failed
                self.last_error = repr(exc)
                LOG.exception("heartbeat of %s failed", self.host)
            time.sleep(max(0.0, self.interval - (time.monotonic() - t0)))

    def fail(self):
        self.alive.clear()
        self.stop_consumers()  # RPC to a dead node's agents goes unanswered

    def recover(self):
        # An agent restarted after a crash reports start_flag again.
        self.first = True
        self.start_consumers()
        self.alive.set()


# --------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------
class Oracle:
    def __init__(self, args):
        self.args = args
        self.workdir = os.path.abspath(args.workdir)
        self.hosts = [f"network{n:02d}" for n in range(1, args.hosts + 1)]
        self.fake_hosts = {}
        self.failed = {}
        self.workers = []
        self.control_lock = threading.Lock()
        self.router = Router()
        self.server = serving.make_server("127.0.0.1", args.port, self.router, threaded=True)
        self.port = self.server.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keystone = Keystone(self.base_url)
        TokenAuth.KEYSTONE = self.keystone

    # -- configuration -----------------------------------------------------------------
    def write_conf(self):
        w = self.workdir
        for sub in ("state", "locks", "tmp"):
            os.makedirs(os.path.join(w, sub), exist_ok=True)
        self.db_path = os.path.join(w, "neutron.sqlite")
        paste = os.path.join(sys.prefix, "etc", "neutron", "api-paste.ini")
        with open(paste) as f:
            ini = f.read()
        old = "paste.filter_factory = keystonemiddleware.auth_token:filter_factory"
        if old not in ini:
            raise RuntimeError("could not replace authtoken in api-paste.ini")
        ini = ini.replace(old, "paste.filter_factory = __main__:neutron_authtoken_filter_factory")
        # osprofiler is not configured; keep its filter out of the pipeline.
        ini = ini.replace(" osprofiler ", " ")
        self.paste_ini = os.path.join(w, "api-paste.ini")
        with open(self.paste_ini, "w") as f:
            f.write(ini)
        a = self.args
        failover = str(a.auto_failover == "on").lower()
        conf = f"""
[DEFAULT]
host = controller
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
api_paste_config = {self.paste_ini}
transport_url = fake://
state_path = {w}/state
agent_down_time = {a.agent_down_time}
allow_automatic_l3agent_failover = {failover}
allow_automatic_dhcp_failover = {failover}
router_scheduler_driver = neutron.scheduler.l3_agent_scheduler.LeastRoutersScheduler
network_scheduler_driver = neutron.scheduler.dhcp_agent_scheduler.WeightScheduler
router_auto_schedule = true
network_auto_schedule = true
dhcp_agents_per_network = 1
router_distributed = false
l3_ha = false
rpc_workers = 1
rpc_state_report_workers = 1
rpc_response_timeout = 20
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
global_physnet_mtu = 1500
debug = {str(a.debug).lower()}
use_stderr = false
log_file = {w}/neutron.log
default_log_levels = amqp=WARN,sqlalchemy=WARN,oslo_messaging=INFO,oslo.messaging=INFO,routes=INFO,stevedore=WARN,keystoneauth=WARN,urllib3=WARN,werkzeug=WARN,oslo_policy=INFO,neutron.api.rpc.handlers=INFO
[database]
connection = {sqlite_url(self.db_path)}
sqlite_synchronous = false
[oslo_concurrency]
lock_path = {w}/locks
[oslo_messaging_notifications]
driver = noop
[AGENT]
report_interval = {max(a.report_interval, 5)}
[quotas]
quota_network = -1
quota_subnet = -1
quota_port = -1
quota_router = -1
quota_floatingip = -1
quota_security_group = -1
quota_security_group_rule = -1
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:100000
[securitygroup]
firewall_driver = openvswitch
"""
        self.conf_file = os.path.join(w, "neutron.conf")
        with open(self.conf_file, "w") as f:
            f.write(conf)

    def init_config(self):
        from neutron.common import config
        from neutron.conf.agent import common as agent_conf

        config.register_common_config_options()
        # [AGENT] report_interval: read by the agents' PluginReportStateAPI (RPC timeout).
        agent_conf.register_agent_state_opts_helper(cfg.CONF)
        config.init(["--config-file", self.conf_file], prog="neutron-oracle")
        config.setup_logging()
        config.set_config_defaults()
        std_logging.getLogger("werkzeug").setLevel(std_logging.WARNING)

    # -- database ----------------------------------------------------------------------
    def create_schema(self):
        """Neutron's alembic migrations do not run on sqlite (ALTER TABLE); build the
        head schema from the models, as Neutron's own unit-test DB fixtures do."""
        from neutron.db.migration.models import head
        from neutron_lib.db import api as db_api

        make_wal_file(self.db_path)
        engine = db_api.get_context_manager().writer.get_engine()
        head.get_metadata().create_all(engine)

    # -- the API app, RPC servers and periodic workers -----------------------------------
    def load_api(self):
        from neutron.server import api as server_api

        app = server_api.api_server()  # paste app; loads the plugins (manager.init)
        self.router.mount("/networking", app)
        self.router.mount("/identity", self.keystone)
        self.router.mount("/control", self.control)

    def start_rpc(self):
        from neutron import service
        from neutron_lib.callbacks import events, registry, resources

        for worker in service._get_rpc_workers():
            worker.start()  # plugins' start_rpc_listeners / state-report listener
            self.workers.append(worker)
        registry.publish(resources.PROCESS, events.AFTER_SPAWN, None)

    def start_periodic(self):
        from neutron import service

        for worker in service._get_plugins_workers():
            LOG.info("starting plugin worker %s", worker.desc)
            worker.start()
            self.workers.append(worker)

    def start_agents(self):
        for n, host in enumerate(self.hosts, 1):
            fh = FakeHost(host, n, self.args.report_interval)
            fh.report_once()  # registered before we say ready
            self.fake_hosts[host] = fh
        for fh in self.fake_hosts.values():
            fh.start()

    # -- control protocol --------------------------------------------------------------
    def control(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ["REQUEST_METHOD"]
        if path == "/info" and method == "GET":
            return _json_response(start_response, "200 OK", {
                "backend": "neutron_oracle", "hosts": self.hosts,
                "agent_down_time": self.args.agent_down_time,
                "report_interval": self.args.report_interval,
                "auto_failover": self.args.auto_failover == "on",
                "failed": dict(self.failed),
                "heartbeats": {h: {"beats": f.beats, "last_error": f.last_error}
                               for h, f in self.fake_hosts.items()},
            })
        m = re.fullmatch(r"/hosts/([^/]+)/(fail|recover)", path)
        if not m or method != "POST":
            return _json_response(start_response, "404 Not Found", {"error": "not found"})
        host, verb = m.groups()
        if host not in self.fake_hosts:
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
                if mode not in ("power", "agents-down"):
                    return _json_response(start_response, "400 Bad Request", {
                        "error": f"mode {mode!r} is not supported by the neutron oracle "
                                 f"(supported: power, agents-down)"})
                self.fake_hosts[host].fail()
                self.failed[host] = mode
                return _json_response(start_response, "200 OK", {"host": host, "mode": mode})
            self.fake_hosts[host].recover()
            self.failed.pop(host, None)
            return _json_response(start_response, "200 OK", {"host": host})

    # -- boot --------------------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        self.write_conf()
        self.init_config()
        install_sqlite_tuning()
        install_fake_rpc_wakeups()
        self.create_schema()
        self.load_api()
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        self.start_rpc()
        self.start_periodic()
        self.start_agents()
        elapsed = time.monotonic() - t0
        LOG.info("neutron oracle ready in %.1f s on %s", elapsed, self.base_url)
        return elapsed

    def write_clouds_yaml(self):
        path = os.path.join(self.workdir, "clouds.yaml")
        entries = []
        for cloud, user, project in (("oracle", "admin", "admin"),
                                     ("oracle-demo", "demo", "demo")):
            entries.append(f"""  {cloud}:
    auth:
      auth_url: {self.keystone.identity_url}
      username: {user}
      password: {PASSWORD}
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    interface: public
    identity_api_version: 3
""")
        with open(path, "w") as f:
            f.write("clouds:\n" + "".join(entries))
        return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=3, help="network nodes (4 agents each)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--report-interval", type=float, default=2.0,
                   help="fake agents' heartbeat period (s)")
    p.add_argument("--agent-down-time", type=int, default=6,
                   help="Neutron's agent_down_time (s); 5-10 works, 0 refuses to start")
    p.add_argument("--auto-failover", choices=("on", "off"), default="off",
                   help="Neutron's own allow_automatic_l3agent_failover and "
                        "allow_automatic_dhcp_failover (periodic rescheduling)")
    p.add_argument("--max-lifetime", type=float, default=3600.0)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="exit when stdin closes (the parent test runner is gone)")
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)

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
        "control_url": oracle.base_url, "network_url": f"{oracle.base_url}/networking",
        "hosts": oracle.hosts, "agent_down_time": args.agent_down_time,
        "report_interval": args.report_interval,
        "auto_failover": args.auto_failover == "on", "startup_seconds": round(elapsed, 2),
        "log": os.path.join(oracle.workdir, "neutron.log"), "pid": os.getpid(),
    }) + "\n")
    ready_out.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
