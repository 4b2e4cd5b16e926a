"""What the test oracles share: a stand-in Keystone, the token filter in front of every
service, sqlite and fake:// RPC tuning for one-process services, a path router, and the
parent watch.  Imported by tests/oracle/nova_server.py and neutron_server.py, each running in
its own virtualenv (they import it after their own start-up patching)."""

import collections
import contextlib
import datetime
import json
import logging as std_logging
import os
import re
import sqlite3
import sys
import threading
import time
import traceback
import uuid

import sqlalchemy
from oslo_db.sqlalchemy import enginefacade

LOG = std_logging.getLogger("oracle")

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


# --------------------------------------------------------------------------------------
# SQLite: writers BEGIN IMMEDIATE, readers BEGIN (deferred)
# --------------------------------------------------------------------------------------
_TX_MODES = threading.local()


def install_sqlite_tuning():
    """Make file-backed sqlite safe for the services' many threads (API, RPC, periodic).

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


# --------------------------------------------------------------------------------------
# Keystone v3 stand-in and the token filter in front of every service
# --------------------------------------------------------------------------------------
class Keystone:
    """Password auth, opaque tokens, a catalog. Not real Keystone: just enough of the
    v3 API for keystoneauth/openstacksdk (version discovery, POST/GET auth/tokens,
    projects/users read)."""

    def __init__(self, base_url, service_users, endpoints):
        self.base_url = base_url  # http://127.0.0.1:P
        self.endpoints = list(endpoints)  # (type, name, path under base_url)
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
            **{u: ("service", ["admin", "service", "member", "reader"]) for u in service_users},
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
            *((stype, name, f"{b}{path}") for stype, name, path in self.endpoints),
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
    own context middleware (e.g. NovaKeystoneContext, NeutronKeystoneContext) runs
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
    def __init__(self, name):
        self.name = name
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
                "oracle": self.name, "mounts": sorted(self.mounts)})
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
