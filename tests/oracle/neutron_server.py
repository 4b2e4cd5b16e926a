#!/usr/bin/env python3
"""A real-Neutron test oracle: OpenStack Neutron 29 (neutron-server) in one process.

Runs inside ``.venv-neutron-oracle`` (see scripts/oracle-venv.sh neutron), never in the
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
every ``--report-interval`` seconds. The L3 and DHCP agents consume their RPC topics and accept
everything; the L3 agent also syncs the routers it is given (binding their ports to its host)
and reports their ports up or down as the host's Open vSwitch agent would, so a router's ports
turn ACTIVE on the host it moved to. DHCP is scheduled but never "implemented".

Adapted because everything shares one process: schema created from Neutron's models
(the alembic migrations do not run on sqlite), sqlite writers BEGIN IMMEDIATE behind a
per-file lock, RPC and periodic workers started as threads in this process.

Served over real HTTP on 127.0.0.1, one port: ``/identity``, ``/networking`` (Neutron,
catalog type ``network``) and the control protocol:
``GET /control/info``, ``POST /control/hosts/<host>/fail`` (mode ``power`` / ``agents-down``:
stop that host's agent heartbeats = node death; mode ``agent-dead`` with ``agent`` l3, dhcp, ovs
or metadata: only that agent dies), ``POST /control/hosts/<host>/recover`` (resume them all).

CLI: ``neutron_server.py --hosts N --workdir DIR [--port P] [--agent-down-time S]
[--auto-failover on|off]``. When ready it writes ``DIR/clouds.yaml`` (cloud ``oracle``)
and prints one JSON line on stdout.
"""

# (Runs in the oracle venv; excluded from the dev lint like nova_server.py.)

import os
import sys

import neutron  # noqa: F401  (selects oslo.service's threading backend first)

import argparse  # noqa: E402
import json  # noqa: E402
import logging as std_logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from oslo_config import cfg  # noqa: E402
from werkzeug import serving  # noqa: E402
from oracle_common import (  # noqa: E402 (after the start-up patching above)
    REGION,
    PASSWORD,
    _json_response,
    _read_json,
    install_sqlite_tuning,
    install_fake_rpc_wakeups,
    sqlite_url,
    make_wal_file,
    Keystone,
    TokenAuth,
    Router,
    _watch_parent,
)

LOG = std_logging.getLogger("neutron_oracle")


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


# agent-dead's "agent" names, by agent type and by RPC topic (neutron_lib constants / topics)
AGENT_KINDS = {"L3 agent": "l3", "DHCP agent": "dhcp", "Open vSwitch agent": "ovs",
               "Metadata agent": "metadata", "l3_agent": "l3", "dhcp_agent": "dhcp"}


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


class _L3Agent(_AcceptAll):
    """RPC endpoint of a fake L3 agent that does what makes a router's data path visible in
    the API: on ``router_added_to_agent`` / ``routers_updated`` it syncs the routers like the
    real agent (``sync_routers``, which binds their ports to this host) and, standing in for
    the host's Open vSwitch agent, reports their ports up (``update_device_up``: ACTIVE); on
    ``router_removed_from_agent`` it reports them down.  Work runs on a thread of its own:
    these are casts, and the RPC consumer must not wait on calls back into the server."""

    def __init__(self, fake_host):
        super().__init__()
        self.fake_host = fake_host
        self.ports = {}  # router id -> its port ids, as last synced here

    def router_added_to_agent(self, context, payload=None, **kwargs):
        self._later(self._sync, list(payload or []))

    def routers_updated(self, context, routers=None, **kwargs):
        self._later(self._sync, list(routers or []))

    def router_removed_from_agent(self, context, payload=None, **kwargs):
        router_id = (payload or {}).get("router_id")
        self._later(self._down, self.ports.pop(router_id, []))

    def _later(self, fn, arg):
        threading.Thread(target=self._guarded, args=(fn, arg), daemon=True).start()

    def _guarded(self, fn, arg):
        try:
            if self.fake_host.alive.is_set():
                fn(arg)
        except Exception:
            LOG.exception("fake L3 agent of %s: %s failed", self.fake_host.host, fn.__name__)

    def _apis(self):
        from neutron.agent import rpc as agent_rpc
        from neutron.agent.l3.agent import L3PluginApi
        from neutron_lib.agent import topics
        from neutron_lib import context as n_context

        ctxt = n_context.get_admin_context_without_session()
        return ctxt, L3PluginApi(topics.L3PLUGIN, self.fake_host.host), agent_rpc.PluginApi(
            topics.PLUGIN)

    def _sync(self, router_ids):
        if not router_ids:
            return
        ctxt, l3, plugin = self._apis()
        host = self.fake_host.host
        for router in l3.get_routers(ctxt, router_ids=router_ids):
            ports = [p for p in [router.get("gw_port"), *router.get("_interfaces", [])] if p]
            self.ports[router["id"]] = [p["id"] for p in ports]
            for port in ports:
                plugin.update_device_up(ctxt, port["id"], f"ovs-{host}", host)

    def _down(self, port_ids):
        ctxt, _, plugin = self._apis()
        host = self.fake_host.host
        for port_id in port_ids:
            plugin.update_device_down(ctxt, port_id, f"ovs-{host}", host)


class FakeHost:
    """One network node: its four agents' heartbeat loop (a thread) and the RPC consumers
    of its L3 and DHCP agents."""

    def __init__(self, host, index, interval):
        self.host = host
        self.states = agent_states(host, index)
        self.interval = interval
        self.alive = threading.Event()
        self.dead = set()  # agent kinds killed by agent-dead ("l3", "dhcp", "ovs", "metadata")
        self.first = True
        self.last_error = None
        self.beats = 0
        self.thread = threading.Thread(target=self._loop, name=f"hb-{host}", daemon=True)

    def start_consumers(self):
        import oslo_messaging
        from neutron_lib import rpc as n_rpc
        from neutron_lib.agent import topics

        self.servers = []
        for topic, endpoint in ((topics.L3_AGENT, _L3Agent(self)),
                                (topics.DHCP_AGENT, _AcceptAll())):
            if AGENT_KINDS[topic] in self.dead:
                continue
            srv = n_rpc.get_server(oslo_messaging.Target(topic=topic, server=self.host),
                                   [endpoint])
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
            if AGENT_KINDS[state["agent_type"]] in self.dead:
                continue
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

    def kill_agent(self, kind):
        """agent-dead: one agent process dies; the host and its other agents stay up."""
        self.stop_consumers()
        self.dead.add(kind)
        if self.alive.is_set():
            self.start_consumers()

    def recover(self):
        # An agent restarted after a crash reports start_flag again.
        self.first = True
        self.dead.clear()
        self.stop_consumers()
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
        self.router = Router("neutron")
        self.server = serving.make_server("127.0.0.1", args.port, self.router, threaded=True)
        self.port = self.server.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keystone = Keystone(
            self.base_url,
            service_users=("neutron",),
            endpoints=(("network", "neutron", "/networking"),),
        )
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
                if mode not in ("power", "agents-down", "agent-dead"):
                    return _json_response(start_response, "400 Bad Request", {
                        "error": f"mode {mode!r} is not supported by the neutron oracle "
                                 f"(supported: power, agents-down, agent-dead)"})
                if mode == "agent-dead":
                    agent = body.get("agent", "l3")
                    if agent not in ("l3", "dhcp", "ovs", "metadata"):
                        return _json_response(start_response, "400 Bad Request", {
                            "error": f"unknown agent {agent!r}; choose from l3, dhcp, ovs, "
                                     f"metadata"})
                    self.fake_hosts[host].kill_agent(agent)
                    self.failed[host] = f"{mode}:{agent}"
                    return _json_response(start_response, "200 OK",
                                          {"host": host, "mode": mode})
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
